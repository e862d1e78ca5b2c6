r"""JEM training iterations: SGLD negatives from the replay buffer, Adam steps, rollback.

:class:`JEMTrainer` runs :func:`~ebmlab.training.jem.jem_loss` updates under the
warm-up + step-decay schedule and, when training diverges, rolls back to the last
good checkpoint with fresh randomness instead of crashing (the official code's
``1/0``) or silently replacing NaNs. The loop around it (checkpoints, metrics
lines) is the experiment driver's (:mod:`ebmlab.experiments.jem`); the objective,
configuration and data stream live in :mod:`ebmlab.training.jem`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from ebmlab.models.jem import JEM
from ebmlab.samplers.base import run_chain
from ebmlab.samplers.replay_buffer import ReplayBuffer
from ebmlab.training import sam
from ebmlab.training.distributed import DistributedContext, any_rank, mean_over_ranks
from ebmlab.training.jem import (
    RANK_SEED_STRIDE,
    ROLLBACK_SEED_STRIDE,
    DivergenceError,
    JEMConfig,
    MinibatchStream,
    WarmupStepDecay,
    build_buffer,
    divergence_reason,
    jem_loss,
    jem_sampler,
)
from ebmlab.training.step_control import adapted_steps


class JEMTrainer:
    r"""Runs :func:`jem_loss` updates with SGLD negatives, checkpoints and rollback.

    Parameters
    ----------
    model : JEM
        The model (sampling always uses it directly, never a DDP wrapper).
    config : JEMConfig
        Hyperparameters.
    seed : int
        Seeds the sampler stream (buffer draws, reinitialisation, SGLD noise);
        rank ``r`` after ``k`` rollbacks uses
        ``seed + r * RANK_SEED_STRIDE + k * ROLLBACK_SEED_STRIDE``.
    context : DistributedContext, optional
        This process's rank; each rank keeps its own buffer shard of
        ``buffer_size / world_size`` slots.
    forward : callable, optional
        The logits function of the loss, e.g. ``DistributedDataParallel(model)``.
    fit_data : (Tensor, Tensor), optional
        Scaled training data and labels, for the class-Gaussian buffer initialisations.

    Notes
    -----
    One update (:meth:`update`): lr :math:`= \eta \, s \, \mathrm{schedule}(t)`
    (:math:`s` the rollback scale); negatives :math:`\hat x` by ``n_steps`` of
    :math:`x \leftarrow x - \alpha \nabla_x E(x) + \sigma \xi` from the buffer,
    pushed back; the loss; a divergence check agreed by all ranks *before*
    ``backward`` (so no rank waits in DDP's gradient all-reduce); an Adam step.
    """

    def __init__(
        self,
        model: JEM,
        config: JEMConfig,
        *,
        seed: int = 0,
        context: DistributedContext | None = None,
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
        sample_shape: tuple[int, ...],
        fit_data: tuple[torch.Tensor, torch.Tensor] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.model, self.config, self.seed = model, config, seed
        self.context = context or DistributedContext(device=str(device))
        self.forward = forward or model
        self.generator = torch.Generator(device=device).manual_seed(self._stream_seed(0))
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.schedule = WarmupStepDecay(*config.schedule_points, config.decay_rate)
        self.buffer: ReplayBuffer | None = None
        if config.uses_sampling:
            size, world = config.buffer_size, self.context.world_size
            n_blocks = world * (model.n_classes if config.class_conditional else 1)
            if size % n_blocks:
                raise ValueError(
                    f"buffer_size must be divisible by world_size x n_classes (class-conditional) "
                    f"= {n_blocks}; got {size}"
                )
            self.buffer = build_buffer(
                config,
                sample_shape=tuple(sample_shape),
                n_classes=model.n_classes,
                size=size // world,
                fit_data=fit_data,
                generator=self.generator,
            )
        self.iteration = 0
        self.rollbacks = 0
        self.lr_scale = 1.0
        self.n_steps = config.n_steps  # moves with adaptive_steps (step_control)
        self.window = _Window()  # metrics since the last log record
        # Test/fault-injection hook: (iteration, loss) -> loss, applied before the divergence check.
        self.fault_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None

    def _stream_seed(self, rollbacks: int) -> int:
        return self.seed + self.context.rank * RANK_SEED_STRIDE + rollbacks * ROLLBACK_SEED_STRIDE

    # ----- sampling ------------------------------------------------------------------------
    def sample(self, batch_size: int, y: torch.Tensor | None = None) -> torch.Tensor:
        """``n_steps`` of SGLD from the buffer on :math:`E(x)` (or :math:`E(x, y)`), pushed back."""
        if self.buffer is None:
            raise ValueError(
                "this trainer has no replay buffer (p_x_weight and p_x_given_y_weight are 0)"
            )
        conditional = y is not None and self.buffer.n_classes is not None
        x0, slots = self.buffer.sample(
            batch_size, generator=self.generator, y=y if conditional else None
        )
        sampler = jem_sampler(self.model, self.config, y)
        state, _, _ = run_chain(sampler, sampler.init(x0), self.n_steps, generator=self.generator)
        self.buffer.push(state.x, slots)
        return state.x

    # ----- one update ----------------------------------------------------------------------
    def update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One training step on a (local) batch; raises :class:`DivergenceError` before stepping."""
        config, n = self.config, len(x)
        lr = config.lr * self.lr_scale * self.schedule(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        timings: dict[str, float] = {}
        start = time.perf_counter()
        x_negative = x_negative_y = y_negative = None
        if config.p_x_weight > 0:
            y_q = None
            if config.class_conditional:
                y_q = torch.randint(
                    self.model.n_classes, (n,), generator=self.generator, device=x.device
                )
            x_negative = self.sample(n, y_q)
        if config.p_x_given_y_weight > 0:
            y_negative = y
            x_negative_y = self.sample(n, y_negative)
        timings["sample_seconds"] = time.perf_counter() - start

        def objective():
            return jem_loss(
                self.forward,
                x,
                y,
                x_negative=x_negative,
                x_negative_y=x_negative_y,
                y_negative=y_negative,
                p_x_weight=config.p_x_weight,
                p_x_given_y_weight=config.p_x_given_y_weight,
                l2_weight=config.l2_weight,
            )

        parts = objective()
        loss = (
            parts.loss if self.fault_hook is None else self.fault_hook(self.iteration, parts.loss)
        )
        reason = divergence_reason(parts, loss, config.divergence_threshold)
        if any_rank(reason is not None, self.context):
            raise DivergenceError(
                f"training diverged at iteration {self.iteration + 1}: "
                f"{reason or 'another process diverged'}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.sam_rho > 0:
            # SAM: the same batch and negatives, the gradient at the ascended point.
            steps = sam.ascend(self.model.parameters(), config.sam_rho)
            self.optimizer.zero_grad(set_to_none=True)
            objective().loss.backward()
            sam.descend_back(self.model.parameters(), steps)
        self.optimizer.step()
        self.iteration += 1
        timings["step_seconds"] = time.perf_counter() - start - timings["sample_seconds"]
        return {
            "loss": float(loss.detach()),
            "classification_loss": float(parts.classification),
            "generative_loss": float(parts.generative),
            "generative_y_loss": float(parts.generative_y),
            "energy_data": float(parts.energy_data),
            "energy_negative": float(parts.energy_negative),
            "train_accuracy": float(parts.accuracy),
            "lr": lr,
            **timings,
        }

    # ----- one iteration and rollback ---------------------------------------------------------
    def iterate(self, stream: MinibatchStream) -> dict[str, float] | None:
        """One update on global batch ``iteration`` of ``stream``; the window means every ``log_every``.

        Returns the means over this window's iterations (and over ranks, so every rank
        must call it), with ``rollbacks``, when ``iteration`` reaches a multiple of
        ``log_every`` or ``config.iterations``; None otherwise. Raises
        :class:`DivergenceError` (nothing updated) for :meth:`roll_back`.
        """
        x, y = stream.batch(self.iteration, self.rollbacks)
        self.window.add(self.update(x, y))
        config = self.config
        if self.iteration % config.log_every and self.iteration != config.iterations:
            return None
        record = mean_over_ranks(self.window.means(), self.context)
        self.window = _Window()
        record = {**record, "rollbacks": self.rollbacks, "n_steps": self.n_steps}
        if config.adaptive_steps and self.buffer is not None:
            gap = record.get("energy_data", 0.0) - record.get("energy_negative", 0.0)
            self.n_steps = adapted_steps(
                self.n_steps, gap, min_steps=config.n_steps, max_steps=config.max_steps,
                tolerance=config.gap_tolerance,
            )  # fmt: skip
        return record

    def roll_back(self, error: DivergenceError, restore: Callable[[], Any]) -> dict[str, Any]:
        """Restore the last checkpoint, reseed the sampler stream, scale the lr; or give up.

        ``restore()`` loads the newest checkpoint (through :meth:`load_state`); the
        rollback count and lr scale survive it. Returns the ``event: rollback`` record.
        """
        diverged_at = self.iteration + 1
        rollbacks, lr_scale = self.rollbacks + 1, self.lr_scale * self.config.rollback_lr_factor
        if rollbacks > self.config.max_rollbacks:
            raise DivergenceError(
                f"{error}; gave up after {self.config.max_rollbacks} rollbacks (max_rollbacks). "
                f"Lower the learning rate, raise l2_weight or n_steps, or set rollback_lr_factor < 1"
            ) from error
        restore()
        self.rollbacks, self.lr_scale = rollbacks, lr_scale
        self.generator.manual_seed(self._stream_seed(rollbacks))
        return {
            "event": "rollback",
            "iteration": self.iteration,
            "diverged_at": diverged_at,
            "reason": str(error),
            "rollbacks": rollbacks,
            "lr_scale": lr_scale,
        }

    # ----- checkpoint state ------------------------------------------------------------------
    def shared_state(self) -> dict[str, Any]:
        """State identical on every rank: counters and the optimizer (the model is saved apart)."""
        return {
            "iteration": self.iteration,
            "rollbacks": self.rollbacks,
            "lr_scale": self.lr_scale,
            "n_steps": self.n_steps,
            "optimizer": self.optimizer.state_dict(),
        }

    def local_state(self) -> dict[str, Any]:
        """This rank's state: sampler generator, buffer shard and the open metrics window."""
        return {
            "generator": self.generator.get_state(),
            "buffer": None if self.buffer is None else self.buffer.state_dict(),
            "window": {"sums": dict(self.window.sums), "count": self.window.count},
        }

    def load_state(self, shared: dict[str, Any], local: dict[str, Any]) -> None:
        """Load :meth:`shared_state` and :meth:`local_state` (a checkpoint without a window: empty)."""
        self.iteration = int(shared["iteration"])
        self.rollbacks, self.lr_scale = int(shared["rollbacks"]), float(shared["lr_scale"])
        self.n_steps = int(shared.get("n_steps", self.config.n_steps))  # older checkpoints: fixed
        self.optimizer.load_state_dict(shared["optimizer"])
        self.generator.set_state(local["generator"])
        if self.buffer is not None:
            self.buffer.load_state_dict(local["buffer"])
        window = local.get("window") or {"sums": {}, "count": 0}
        self.window = _Window()
        self.window.sums, self.window.count = dict(window["sums"]), int(window["count"])


class _Window:
    """Running sums of per-iteration metrics between two log records."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, record: dict[str, float]) -> None:
        for key, value in record.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def means(self) -> dict[str, float]:
        return {key: value / max(self.count, 1) for key, value in self.sums.items()}
