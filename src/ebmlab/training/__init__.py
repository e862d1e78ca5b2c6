"""Objectives, training loops and checkpoints (kept apart from the models)."""

from ebmlab.training.bm import BMTrainer, mean_field_hidden
from ebmlab.training.cd import ContrastiveDivergence, cd_loss, sparsity_penalty
from ebmlab.training.checkpoint import (
    CheckpointError,
    CheckpointManager,
    load_checkpoint,
    save_checkpoint,
)
from ebmlab.training.dbm import DBMTrainer, DBMTrainingConfig
from ebmlab.training.dbm_pretrain import GreedyPretrainer, compose_dbm
from ebmlab.training.finetune import DBNClassifier, FinetuneConfig, finetune
from ebmlab.training.greedy import GreedyTrainer, train_greedy
from ebmlab.training.jem import DivergenceError, JEMConfig, jem_loss
from ebmlab.training.jem_trainer import JEMTrainer
from ebmlab.training.trainer import CDConfig, CDTrainer, NonFiniteError

__all__ = [
    "BMTrainer",
    "CDConfig",
    "CDTrainer",
    "CheckpointError",
    "CheckpointManager",
    "ContrastiveDivergence",
    "DBMTrainer",
    "DBMTrainingConfig",
    "DBNClassifier",
    "DivergenceError",
    "FinetuneConfig",
    "GreedyPretrainer",
    "GreedyTrainer",
    "JEMConfig",
    "JEMTrainer",
    "NonFiniteError",
    "cd_loss",
    "compose_dbm",
    "finetune",
    "jem_loss",
    "load_checkpoint",
    "mean_field_hidden",
    "save_checkpoint",
    "sparsity_penalty",
    "train_greedy",
]
