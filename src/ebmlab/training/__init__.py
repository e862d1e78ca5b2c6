"""Objectives, training loops and checkpoints (kept apart from the models)."""

from ebmlab.training.cd import ContrastiveDivergence, cd_loss, sparsity_penalty
from ebmlab.training.checkpoint import (
    CheckpointError,
    CheckpointManager,
    load_checkpoint,
    save_checkpoint,
)
from ebmlab.training.trainer import CDConfig, CDTrainer, NonFiniteError

__all__ = [
    "CDConfig",
    "CDTrainer",
    "CheckpointError",
    "CheckpointManager",
    "ContrastiveDivergence",
    "NonFiniteError",
    "cd_loss",
    "load_checkpoint",
    "save_checkpoint",
    "sparsity_penalty",
]
