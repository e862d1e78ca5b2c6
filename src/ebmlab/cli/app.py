"""The ``ebmlab`` command: wiring only; every action is a Python function elsewhere.

Mistakes of the user (bad arguments, missing data, corrupt checkpoints) print one
line ``error: ...`` and exit with code 2, without a traceback.
"""

from __future__ import annotations

import sys

import typer

from ebmlab.cli import (
    data_commands,
    demo_commands,
    inspect_commands,
    table_commands,
    train_commands,
)

app = typer.Typer(
    name="ebmlab",
    help="Hierarchical energy-based models: train, sample, evaluate and report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(train_commands.app, name="train")
app.add_typer(data_commands.app, name="data")
app.add_typer(demo_commands.app, name="demo")
app.command("sample")(inspect_commands.sample)
app.command("eval")(inspect_commands.evaluate)
app.command("report")(inspect_commands.report)
app.command("table")(table_commands.table)


def _user_errors() -> tuple[type[BaseException], ...]:
    from ebmlab.experiments.run_folder import RunFolderError
    from ebmlab.training.checkpoint import CheckpointError

    return (ValueError, TypeError, FileNotFoundError, RunFolderError, CheckpointError)


def argv_names_training(argv: list[str] | None) -> bool:
    """Whether the command line is an ``ebmlab train ...`` command."""
    args = sys.argv[1:] if argv is None else argv
    return bool(args) and args[0] == "train"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ebmlab`` console script."""
    try:
        app(args=argv, standalone_mode=False)
    except FloatingPointError as error:  # NonFiniteError, JEM's DivergenceError: training failed
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except _user_errors() as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as error:  # e.g. a read-only or missing folder given by the user
        where = f": {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        hint = "; resume with --resume RUN_DIR" if argv_names_training(argv) else ""
        print(f"interrupted{hint}", file=sys.stderr)
        raise SystemExit(130) from None
    except typer.Exit as exit_:
        raise SystemExit(exit_.exit_code) from None
    except typer.TyperException as error:
        # Usage errors from the argument parser: one line, exit code 2 (--help shows usage).
        format_message = getattr(error, "format_message", None)
        message = format_message() if format_message is not None else str(error)
        if message:  # empty when bare `ebmlab` printed its help
            print(f"error: {message}", file=sys.stderr)
        raise SystemExit(getattr(error, "exit_code", 2)) from None
