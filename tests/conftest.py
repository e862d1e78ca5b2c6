"""Shared fixtures: tiny models whose distributions the tests enumerate."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

# Timing varies wildly on a shared 2-core machine; correctness, not speed, is tested here.
settings.register_profile("ebmlab", deadline=None, max_examples=50)
settings.load_profile("ebmlab")


@pytest.fixture
def tiny_rbm():
    """A 6-visible, 4-hidden float64 RBM with strong random weights (std 1)."""
    from ebmlab.models import BernoulliRBM

    generator = torch.Generator().manual_seed(1234)
    model = BernoulliRBM(6, 4, weight_std=1.0, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        model.visible_bias.normal_(0, 0.5, generator=generator)
        model.hidden_bias.normal_(0, 0.5, generator=generator)
    return model
