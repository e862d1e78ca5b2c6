"""RBM, DBN and DBM under torchrun: 2 gloo processes follow the 1-process trajectory.

Every rank draws the same global minibatch from the shared generator and keeps its
share; the gradients are averaged over ranks before each SGD step, so both ranks
hold the same parameters and take the 1-process step for the same global batch
(up to the Gibbs samples, which each rank draws from its own stream). The
trajectories therefore differ only by sampling noise: the test bounds the
difference by the spread between two 1-process seeds. Parameters must be bitwise
equal across ranks, and a stopped and resumed 2-process run bitwise equal to an
uninterrupted one (each rank restores its own chains from checkpoints/rank-1/).
"""

from __future__ import annotations

import json

import pytest
import torch

from ebmlab.experiments.driver import train
from ebmlab.experiments.rbm import RBMExperimentConfig
from ebmlab.training.checkpoint import load_checkpoint
from ebmlab.training.trainer import CDConfig
from tests.helpers.torchrun import run_torchrun

pytestmark = pytest.mark.slow  # two processes start torch and join a gloo group: ~20-40 s

# lr 0.5: at the default 0.1 (no momentum, decaying to zero) six epochs of digits move the
# pseudo-likelihood by less than the seed-to-seed spread, and "it learned" could not be shown.
RBM = dict(n_hidden=32, training=dict(epochs=6, batch_size=50, lr=0.5, persistent=True))
SCRIPT = """
import sys
import torch
from safetensors.torch import save_file
from ebmlab.experiments.driver import resume, train
from ebmlab.experiments.dbm import DBMRecipe
from ebmlab.experiments.dbn import DBNRecipe
from ebmlab.experiments.rbm import RBMRecipe
from ebmlab.experiments.registry import open_run
from ebmlab.training.distributed import init_distributed, shutdown

out = sys.argv[1]
rank = init_distributed("cpu").rank
config = RBMRecipe.config_from({RBM})
train(config, out + "/rbm", progress=False)
train(config, out + "/rbm-parted", progress=False, stop_after=3)
resume(out + "/rbm-parted", progress=False)
# Each rank's own parameters (only rank 0 writes the model checkpoint).
model = open_run(out + "/rbm").model
save_file(model.state_dict(), out + f"/params-rank{rank}.safetensors")
train(DBNRecipe.config_from({"layers": [16, 8], "training": {"epochs": 1}, "finetune": {"epochs": 1}}),
      out + "/dbn", progress=False)
train(DBMRecipe.config_from({"layers": [16, 8], "training": {"epochs": 1, "pretraining": {"epochs": 1}}}),
      out + "/dbm", progress=False)
shutdown(init_distributed("cpu"))
"""


def curve(run_dir, key: str) -> list[float]:
    return [json.loads(line)[key] for line in (run_dir / "metrics.jsonl").open()]


def final(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(sorted((run_dir / "checkpoints").glob("step-*.safetensors"))[-1])[0]


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    script = folder / "script.py"
    script.write_text(SCRIPT.replace("{RBM}", repr(RBM)))
    run_torchrun(script, str(folder))
    return folder


def test_two_rbm_processes_follow_one_process(ddp, tmp_path):
    singles = []
    for seed in (0, 1):
        config = RBMExperimentConfig(seed=seed, **{**RBM, "training": CDConfig(**RBM["training"])})
        singles.append(train(config, tmp_path / f"single-{seed}", progress=False).path)
    for key in ("reconstruction_error", "pseudo_loglik"):
        one, other, parallel = (
            curve(singles[0], key),
            curve(singles[1], key),
            curve(ddp / "rbm", key),
        )
        spread = max(abs(a - b) for a, b in zip(one, other, strict=True))
        assert len(parallel) == len(one) == 6
        for epoch, (a, b) in enumerate(zip(one, parallel, strict=True), start=1):
            assert abs(a - b) <= 3 * spread, (key, epoch, a, b, spread)
    # It learned: the pseudo-likelihood rose by more than the tolerance.
    pll = curve(ddp / "rbm", "pseudo_loglik")
    spread = max(abs(a - b) for a, b in zip(curve(singles[0], "pseudo_loglik"), curve(singles[1], "pseudo_loglik"), strict=True))  # fmt: skip
    assert pll[-1] - pll[0] > spread


def test_ranks_hold_the_same_parameters(ddp):
    from safetensors.torch import load_file

    first, second = (
        load_file(ddp / "params-rank0.safetensors"),
        load_file(ddp / "params-rank1.safetensors"),
    )
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_a_resumed_two_process_run_equals_an_uninterrupted_one(ddp):
    whole, parted = final(ddp / "rbm"), final(ddp / "rbm-parted")
    for name in whole:
        assert torch.equal(whole[name], parted[name]), name
    assert curve(ddp / "rbm", "loss") == curve(ddp / "rbm-parted", "loss")


def sampling_streams(state, path=""):
    """Every ``sampling_generator`` state in a nested checkpoint state, by its path."""
    if isinstance(state, dict):
        found = {}
        for key, value in state.items():
            if key == "sampling_generator":
                found[f"{path}.{key}"] = value
            else:
                found |= sampling_streams(value, f"{path}.{key}")
        return found
    return {}


@pytest.mark.parametrize("model", ["rbm", "dbn", "dbm"])
def test_every_rank_checkpoints_its_own_chains(ddp, model):
    checkpoints = ddp / model / "checkpoints"
    last = sorted((checkpoints / "rank-1").glob("step-*.safetensors"))[-1]
    own = sampling_streams(load_checkpoint(last)[1]["local"])
    main = sampling_streams(load_checkpoint(checkpoints / last.name)[1]["local"])
    assert own and own.keys() == main.keys(), model
    for path in own:  # one stream per rank, not one copied
        assert not torch.equal(own[path], main[path]), (model, path)
