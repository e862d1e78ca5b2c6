"""The documentation and the architecture stay true."""
