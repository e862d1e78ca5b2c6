"""Lazy matplotlib import with the non-interactive Agg backend (no display needed)."""

from __future__ import annotations


def pyplot():
    """Return ``matplotlib.pyplot`` configured for Agg."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path, **options) -> None:
    """``figure.savefig(path, **options)`` written atomically, never through a symbolic link."""
    import io
    from pathlib import Path

    from ebmlab._files import atomic_write

    path = Path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=path.suffix.lstrip(".") or "png", **options)
    atomic_write(path, buffer.getvalue())
