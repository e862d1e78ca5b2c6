"""Lazy matplotlib import with the non-interactive Agg backend (no display needed)."""

from __future__ import annotations


def pyplot():
    """Return ``matplotlib.pyplot`` configured for Agg."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
