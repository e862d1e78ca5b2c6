"""Reliability diagram: per-bin accuracy against confidence.

matplotlib is imported inside the functions, and figures are drawn on an
Agg canvas without touching pyplot's global state, so the module is safe to
import on a headless machine and in library code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ebmlab.viz._mpl import save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ebmlab.metrics.classification import ECEResult


def plot_reliability_diagram(
    result: ECEResult, *, ax: Axes | None = None, title: str | None = None
) -> Figure:
    """Draw a reliability diagram from an :class:`~ebmlab.metrics.classification.ECEResult`.

    Bars show each bin's accuracy; the gap to the diagonal (perfect
    calibration) is shaded; empty bins are left blank.

    Parameters
    ----------
    result : ECEResult
        Bins, per-bin accuracy and confidence, and the ECE.
    ax : matplotlib Axes, optional
        Where to draw; a new Agg figure is made when omitted.
    title : str, optional
        Title; the ECE (in percent) is appended.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if ax is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(4.0, 4.0))
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
    edges = np.asarray(result.bin_edges)
    centres, widths = 0.5 * (edges[:-1] + edges[1:]), np.diff(edges)
    filled = np.asarray(result.bin_count) > 0
    accuracy = np.where(filled, result.bin_accuracy, 0.0)
    confidence = np.where(filled, result.bin_confidence, 0.0)
    ax.bar(
        centres[filled],
        accuracy[filled],
        width=widths[filled],
        color="tab:blue",
        edgecolor="black",
        label="accuracy",
    )
    ax.bar(
        centres[filled],
        (confidence - accuracy)[filled],
        bottom=accuracy[filled],
        width=widths[filled],
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
    heading = f"ECE = {100 * result.ece:.2f}%"
    ax.set_title(heading if title is None else f"{title} ({heading})")
    ax.legend(loc="upper left", fontsize="small")
    return ax.figure


def save_reliability_diagram(
    result: ECEResult, path: str | Path, *, title: str | None = None
) -> Path:
    """Draw :func:`plot_reliability_diagram` and save it to ``path`` (format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = plot_reliability_diagram(result, title=title)
    save_figure(figure, path, dpi=120, bbox_inches="tight")
    return path
