"""CDTrainer's schedule and data handling, checked by what the updates do (not by the lines)."""

from __future__ import annotations

import copy

import pytest
import torch

from ebmlab.models import BernoulliRBM
from ebmlab.training.trainer import CDConfig, CDTrainer

F64 = torch.float64


def binary_data(n: int = 40, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 6), 0.4, dtype=F64), generator=generator)


def trainer_for(**settings) -> CDTrainer:
    model = BernoulliRBM(6, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    config = CDConfig(batch_size=10, **settings)
    return CDTrainer(model, config, generator=torch.Generator().manual_seed(1))


def parameters(trainer: CDTrainer) -> dict[str, torch.Tensor]:
    return copy.deepcopy({k: v.detach() for k, v in trainer.model.state_dict().items()})


def test_rate_falls_linearly_to_the_final_fraction_and_a_zero_rate_stops_learning():
    trainer = trainer_for(epochs=3, lr=0.2, final_lr_fraction=0.0)
    data = binary_data()
    rates, moved = [], []
    for _ in range(3):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        before = parameters(trainer)
        trainer.train_epoch(data)
        after = parameters(trainer)
        moved.append(max(float((after[k] - before[k]).abs().max()) for k in before))
    assert rates == pytest.approx([0.2, 0.1, 0.0])
    # The first two epochs learn; the last, at rate 0, leaves every parameter where it was.
    assert moved[0] > 1e-3 and moved[1] > 1e-3 and moved[2] == 0.0


def test_momentum_switches_at_its_epoch():
    trainer = trainer_for(epochs=4, momentum=0.5, final_momentum=0.9, momentum_switch_epoch=2)
    seen = []
    update = trainer._update

    def recording_update(v):
        seen.append((trainer.epoch, trainer.optimizer.param_groups[0]["momentum"]))
        return update(v)

    trainer._update = recording_update
    for _ in range(4):
        trainer.train_epoch(binary_data())
    by_epoch = {epoch: momentum for epoch, momentum in seen}
    assert by_epoch == {0: 0.5, 1: 0.5, 2: 0.9, 3: 0.9}


def test_dynamic_binarisation_trains_on_fresh_binary_draws_of_the_grey_levels():
    grey = torch.full((400, 6), 0.3, dtype=F64)
    # No centering: its start-up statistics would record grey rows too.
    trainer = trainer_for(epochs=2, dynamic_binarization=True, centering=False)
    batches = []
    mean_h = trainer.model.mean_h

    def recording_mean_h(v):
        batches.append(v.detach().clone())
        return mean_h(v)

    trainer.model.mean_h = recording_mean_h
    for _ in range(2):
        trainer.train_epoch(grey)
    positives = torch.cat(batches[0::2])  # each update: data first, then the negatives
    assert set(positives.unique().tolist()) == {0.0, 1.0}
    # Their mean estimates the grey level: 4,800 draws, standard error 0.0066.
    assert abs(float(positives.mean()) - 0.3) < 4 * (0.3 * 0.7 / positives.numel()) ** 0.5
    # Fresh draws every epoch: the two epochs do not see the same binary data.
    n_per_epoch = len(positives) // 2
    assert not torch.equal(positives[:n_per_epoch], positives[n_per_epoch:])


def test_without_dynamic_binarisation_the_data_are_used_as_given():
    grey = torch.full((40, 6), 0.3, dtype=F64)
    trainer = trainer_for(epochs=1, centering=False)
    batches = []
    mean_h = trainer.model.mean_h
    trainer.model.mean_h = lambda v: batches.append(v.detach().clone()) or mean_h(v)
    trainer.train_epoch(grey)
    assert torch.equal(batches[0], grey[:10])
