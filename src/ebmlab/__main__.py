"""``python -m ebmlab`` runs the command-line interface (also under torchrun)."""

from ebmlab.cli.app import main

if __name__ == "__main__":
    main()
