"""Recipe: an MLP energy trained on a 2-D toy density with Langevin negatives.

``run_ebm2d(EBM2DConfig(dataset="8gaussians"), out_dir)`` writes a run folder
with ``config.yaml``, ``metrics.jsonl``, ``checkpoints/`` (resumable bit for bit
on CPU) and ``figures/density.png`` (data | learned :math:`e^{-E}` | samples).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import ebmlab
from ebmlab._validation import (
    check_choice,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from ebmlab.data import TOY2D_NAMES, sample_toy2d
from ebmlab.experiments.run_folder import RunFolder, RunFolderError
from ebmlab.models.nets.mlp import MLPEnergy
from ebmlab.samplers.langevin import Langevin
from ebmlab.samplers.replay_buffer import ReplayBuffer, UniformInit
from ebmlab.training.checkpoint import atomic_write_bytes, load_checkpoint, load_model_state
from ebmlab.training.ebm import LangevinNegatives, contrastive_step

# Fields that may change between a run and its resumption (they do not change the result).
_RESUMABLE_CHANGES = ("n_iterations", "log_every", "checkpoint_every")


@dataclass
class EBM2DConfig:
    """Everything needed to redo a 2-D EBM run (saved as the run's ``config.yaml``).

    The sampler is a Langevin chain with ``step_size`` and ``noise_scale``
    (``noise_scale=None`` means calibrated, :math:`\\sqrt{2\\,\\text{step\\_size}}`),
    run for ``n_sampler_steps`` per update from a replay buffer
    (``persistent=True``) or from uniform noise on ``data_range``.
    """

    dataset: str = "8gaussians"
    n_data: int = 20000
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    activation: str = "silu"
    lr: float = 1e-3
    batch_size: int = 256
    n_iterations: int = 2000
    step_size: float = 0.01
    noise_scale: float | None = None
    n_sampler_steps: int = 20
    persistent: bool = True
    buffer_size: int = 10000
    reinit_prob: float = 0.05
    l2_weight: float = 0.01
    data_range: list[float] = field(default_factory=lambda: [-4.0, 4.0])
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 500
    keep_last: int = 2

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, tuple(TOY2D_NAMES))
        for name in ("n_data", "batch_size", "n_iterations", "n_sampler_steps", "buffer_size"):
            check_positive_int(name, getattr(self, name))
        for name in ("log_every", "checkpoint_every", "keep_last"):
            check_positive_int(name, getattr(self, name))
        self.hidden_sizes = [check_positive_int("hidden_sizes[i]", w) for w in self.hidden_sizes]
        check_positive_float("lr", self.lr)
        check_positive_float("step_size", self.step_size)
        if self.noise_scale is not None:
            check_nonnegative_float("noise_scale", self.noise_scale)
        check_probability("reinit_prob", self.reinit_prob)
        check_nonnegative_float("l2_weight", self.l2_weight)
        self.data_range = [float(v) for v in self.data_range]
        if len(self.data_range) != 2 or not self.data_range[0] < self.data_range[1]:
            raise ValueError(
                f"data_range must be [low, high] with low < high; got {self.data_range}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"model": "ebm2d", "ebmlab_version": ebmlab.__version__, **asdict(self)}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> EBM2DConfig:
        fields = {k: v for k, v in config.items() if k not in ("model", "ebmlab_version")}
        try:
            return cls(**fields)
        except TypeError as error:
            raise RunFolderError(f"config.yaml does not describe an ebm2d run: {error}") from error


@dataclass
class _Setup:
    model: MLPEnergy
    optimizer: torch.optim.Optimizer
    negatives: LangevinNegatives
    generator: torch.Generator
    data: torch.Tensor


def build_ebm2d(config: EBM2DConfig) -> _Setup:
    """Data, model, optimizer and negative sampler of a run, all from ``config.seed``."""
    # A separate stream for the data keeps the training set fixed whatever the model.
    data_generator = torch.Generator().manual_seed(config.seed + 1_000_003)
    data = sample_toy2d(config.dataset, config.n_data, generator=data_generator)
    generator = torch.Generator().manual_seed(config.seed)
    model = MLPEnergy(
        2, hidden_sizes=config.hidden_sizes, activation=config.activation, generator=generator
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    low, high = config.data_range
    init = UniformInit((2,), low=low, high=high)
    noise_scale = config.noise_scale
    if noise_scale is None:
        sampler = Langevin.calibrated(model, config.step_size)
    else:
        sampler = Langevin(model, step_size=config.step_size, noise_scale=noise_scale)
    if config.persistent:
        buffer = ReplayBuffer(
            config.buffer_size, init, reinit_prob=config.reinit_prob, generator=generator
        )
        negatives = LangevinNegatives(sampler, n_steps=config.n_sampler_steps, buffer=buffer)
    else:
        negatives = LangevinNegatives(sampler, n_steps=config.n_sampler_steps, init=init)
    return _Setup(model, optimizer, negatives, generator, data)


def _save(run: RunFolder, setup: _Setup, iteration: int) -> None:
    extra: dict[str, Any] = {
        "iteration": iteration,
        "optimizer": setup.optimizer.state_dict(),
        "generator": setup.generator.get_state(),
    }
    if setup.negatives.buffer is not None:
        extra["buffer"] = setup.negatives.buffer.state_dict()
    run.checkpoints.save(iteration, setup.model.state_dict(), extra, is_best=False)


def _restore(run: RunFolder, setup: _Setup) -> int:
    """Load the newest checkpoint into ``setup``; returns its iteration (0 if none)."""
    latest = run.checkpoints.latest()
    if latest is None:
        return 0
    model_state, extra = load_checkpoint(latest)
    load_model_state(setup.model, model_state, source=str(latest))
    setup.optimizer.load_state_dict(extra["optimizer"])
    setup.generator.set_state(extra["generator"])
    if setup.negatives.buffer is not None:
        setup.negatives.buffer.load_state_dict(extra["buffer"])
    return int(extra["iteration"])


def _truncate_metrics(run: RunFolder, last_iteration: int) -> None:
    # Records written after the checkpoint would be repeated by the resumed run.
    kept = [r for r in run.read_metrics() if r.get("iteration", 0) <= last_iteration]
    text = "".join(json.dumps(r) + "\n" for r in kept)
    atomic_write_bytes(run.metrics_path, text.encode())


def _train(run: RunFolder, setup: _Setup, config: EBM2DConfig, start: int) -> None:
    started = time.perf_counter()
    for iteration in range(start + 1, config.n_iterations + 1):
        rows = torch.randint(len(setup.data), (config.batch_size,), generator=setup.generator)
        stats = contrastive_step(
            setup.model,
            setup.optimizer,
            setup.data[rows],
            setup.negatives,
            l2_weight=config.l2_weight,
            generator=setup.generator,
        )
        if iteration % config.log_every == 0 or iteration == config.n_iterations:
            seconds = round(time.perf_counter() - started, 3)
            run.append_metrics({"iteration": iteration, **stats, "seconds": seconds})
        if iteration % config.checkpoint_every == 0 or iteration == config.n_iterations:
            _save(run, setup, iteration)


def _figure(run: RunFolder, setup: _Setup, config: EBM2DConfig) -> Path:
    from ebmlab.viz.density2d import save_density2d

    low, high = config.data_range
    if setup.negatives.buffer is not None:
        samples = setup.negatives.buffer.buffer
    else:
        samples, _ = setup.negatives.sample(2000, generator=torch.Generator().manual_seed(0))
    return save_density2d(
        setup.model,
        run.figures / "density.png",
        data=setup.data[:5000],
        samples=samples,
        extent=(low, high, low, high),
        title=f"{config.dataset}: data | exp(-E(x)) / Z | Langevin samples",
    )


def _resolve_config(run: RunFolder, config: EBM2DConfig | None) -> EBM2DConfig:
    saved = EBM2DConfig.from_dict(run.read_config())
    if config is None:
        return saved
    changed = [
        f.name
        for f in dataclasses.fields(EBM2DConfig)
        if getattr(config, f.name) != getattr(saved, f.name) and f.name not in _RESUMABLE_CHANGES
    ]
    if changed:
        raise ValueError(
            f"config differs from the run's config.yaml in {changed}; a resumed run may only "
            f"change {list(_RESUMABLE_CHANGES)}"
        )
    return config


def run_ebm2d(
    config: EBM2DConfig | None,
    out_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train (or resume) a 2-D EBM into the run folder ``out_dir``; returns the folder.

    With ``resume=True`` the run continues from its newest checkpoint to
    ``config.n_iterations`` (``config=None`` reuses the saved config), giving
    the same parameters, bit for bit on CPU, as an uninterrupted run.
    """
    run = RunFolder(out_dir, keep_last=(config.keep_last if config else 2))
    if resume:
        config = _resolve_config(run, config)
        run.checkpoints.keep_last = config.keep_last
    elif config is None:
        raise ValueError("config must be given unless resume=True")
    else:
        run.create(overwrite=overwrite)
    run.write_config(config.to_dict())
    setup = build_ebm2d(config)
    start = _restore(run, setup) if resume else 0
    if resume:
        _truncate_metrics(run, start)
    _train(run, setup, config, start)
    _figure(run, setup, config)
    return run.path
