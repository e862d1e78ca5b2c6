"""Training curves from a run's metrics.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ebmlab.viz._mpl import pyplot, save_figure


def save_training_curves(
    records: list[dict[str, Any]], path: str | Path, *, keys: list[str] | None = None
) -> Path:
    """Plot each numeric metric against the epoch, one panel per metric.

    A metric ``m`` logged with ``m_lower`` and ``m_upper`` (an estimate's interval, e.g.
    the cheap AIS log-likelihood) is drawn as one panel with the interval shaded.
    """
    plt = pyplot()
    numeric = {
        k for r in records for k, v in r.items() if k != "epoch" and isinstance(v, int | float)
    }
    bounds = {k for k in numeric if k.endswith(("_lower", "_upper"))}
    keys = keys or sorted(numeric - {k for k in bounds if k.rsplit("_", 1)[0] in numeric})
    columns = min(3, max(len(keys), 1))
    rows = max(1, -(-len(keys) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis, key in zip(axes.flat, keys, strict=False):
        points = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), int | float)]
        if points:
            axis.plot(*zip(*points, strict=True), marker="o", markersize=3)
        _shade_interval(axis, records, key)
        axis.set_title(key)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(keys) :]:
        axis.set_axis_off()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(figure, path, dpi=110)
    plt.close(figure)
    return path


def _shade_interval(axis: Any, records: list[dict[str, Any]], key: str) -> None:
    """Shade ``key``'s interval where both of its finite bounds were logged."""
    band = [
        (r["epoch"], r[f"{key}_lower"], r[f"{key}_upper"])
        for r in records
        if isinstance(r.get(f"{key}_lower"), int | float)
        and isinstance(r.get(f"{key}_upper"), int | float)
    ]
    if band:
        epochs, lower, upper = zip(*band, strict=True)
        axis.fill_between(epochs, lower, upper, alpha=0.25, label="interval")
