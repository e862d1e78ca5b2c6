"""Tests of ebmlab.training: CD/PCD, checkpoints, layer-wise, JEM and distributed training."""
