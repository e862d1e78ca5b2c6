"""Optional TensorBoard logging for run folders (``--tensorboard``; the ``tensorboard`` extra).

Scalars from every metrics record, histograms of every parameter, and sample
grids, written under ``RUN_DIR/tensorboard/``. Without the package installed,
asking for it raises one clear error instead of failing later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

STEP_KEYS = ("epoch", "iteration")  # the x axis, not a scalar
INSTALL_HINT = "pip install 'ebmlab[tensorboard]' (or pip install tensorboard)"


def check_tensorboard_available() -> None:
    """Raise one clear error, before a run starts, when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError as error:
        raise ValueError(f"--tensorboard needs the tensorboard package: {INSTALL_HINT}") from error


class TensorBoardLogger:
    """Writes one run's metrics, parameter histograms and sample grids for TensorBoard.

    Parameters
    ----------
    log_dir : Path
        Where the event files go (the run's ``tensorboard/`` folder).
    resumed_after : int, optional
        The step of the checkpoint a resumed run continues from: TensorBoard
        then discards what a killed run logged after it (as ``metrics.jsonl``
        is truncated), instead of drawing both.
    """

    def __init__(self, log_dir: str | Path, *, resumed_after: int | None = None) -> None:
        check_tensorboard_available()
        from torch.utils.tensorboard import SummaryWriter

        purge_step = None if not resumed_after else resumed_after + 1
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def log_record(self, step: int, record: dict[str, Any], model: nn.Module | None = None) -> None:
        """Every numeric entry of a metrics record as a scalar, and the parameters as histograms."""
        for key, value in record.items():
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and key not in STEP_KEYS
            ):
                self.writer.add_scalar(key, value, step)
        if model is not None:
            for name, parameter in model.named_parameters():
                self.writer.add_histogram(name, parameter.detach().float().cpu(), step)

    def log_images(
        self, tag: str, images: torch.Tensor, image_shape: tuple[int, int], step: int
    ) -> None:
        """Flattened grey images in [0, 1] as one grid."""
        from ebmlab.viz.images import tile_images

        grid = torch.from_numpy(tile_images(images, image_shape)).float()
        # Grey grids are (H, W); colour grids (H, W, 3).
        self.writer.add_image(tag, grid, step, dataformats="HWC" if grid.ndim == 3 else "HW")

    def close(self) -> None:
        self.writer.close()
