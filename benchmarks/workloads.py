"""The benchmark workloads of `run_all.py`: each returns one table row as a dict.

Every workload times ebmlab and its peer in the same process, so their ratio is
measured under the same load; peers that are not installed are reported as such.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from _common import best_of, gemm_flops_per_second

N_VISIBLE, N_HIDDEN, BATCH = 784, 500, 100
# CD-1/PCD-1 updates cost 5 GEMMs of B*V*H multiply-adds, PCD-1 6 when the hidden means
# of the chains are recomputed under the new parameters (see ebmlab.training.cd).
GEMMS = {"CD-1": 5, "PCD-1": 5, "PCD-1, fresh hidden means": 6}


def precisions() -> tuple[str, ...]:
    """The precisions to time: bfloat16 only on a CPU with bfloat16 units (or when
    ``EBMLAB_BENCH_BFLOAT16=1`` asks). Emulated bfloat16 GEMMs run 3x (AVX-512) to 60x
    (AVX2) slower than float32, so their rows say nothing new and the AIS row alone would
    take twenty minutes; :func:`skipped_bfloat16` reports the emulated rate instead."""
    from ebmlab.models.matmul_precision import cpu_has_native_bfloat16

    forced = os.environ.get("EBMLAB_BENCH_BFLOAT16") == "1"
    return ("float32", "bfloat16") if forced or cpu_has_native_bfloat16() else ("float32",)


def skipped_bfloat16(workload: str) -> list[dict]:
    """A row saying the bfloat16 rows were skipped, with this CPU's two GEMM rates."""
    if "bfloat16" in precisions():
        return []
    rates = {p: gemm_flops_per_second(BATCH, N_VISIBLE, N_HIDDEN, dtype=getattr(torch, p)) / 1e9
             for p in ("float32", "bfloat16")}  # fmt: skip
    note = (f"skipped: no bfloat16 units; GEMM {rates['bfloat16']:.0f} GFLOP/s in bfloat16 "
            f"against {rates['float32']:.0f} in float32 (EBMLAB_BENCH_BFLOAT16=1 runs it)")  # fmt: skip
    return [_row(workload, None, "", "-", None, higher_is_better=True, note=note,
                 precision="bfloat16")]  # fmt: skip


def _row(
    workload: str,
    value: float,
    unit: str,
    peer: str,
    peer_value: float | None,
    *,
    higher_is_better: bool,
    bound: float | None = None,
    note: str = "",
    precision: str = "float32",
) -> dict:
    ratio = None
    if peer_value:
        ratio = value / peer_value if higher_is_better else peer_value / value
    return {
        "workload": workload, "precision": precision, "ebmlab": value, "unit": unit,
        "peer": peer, "peer_value": peer_value, "speedup": ratio, "of_bound": bound, "note": note,
    }  # fmt: skip


def fashion_binary(n_samples: int) -> torch.Tensor:
    from ebmlab.data import load_dataset

    return (load_dataset("fashion-mnist", split="train").images[:n_samples] > 0.5).float()


def ebmlab_rbm_epoch(
    data: torch.Tensor,
    *,
    persistent: bool,
    precision: str = "float32",
    centering: bool = False,
    compile: bool = False,
    reuse_hidden_means: bool | None = None,
) -> Callable[[], None]:
    """One epoch of ebmlab's CD-1/PCD-1; uncentered by default, scikit-learn's algorithm
    (PCD reuses the chains' hidden means from the previous update unless told not to)."""
    reuse = persistent if reuse_hidden_means is None else reuse_hidden_means
    from ebmlab.models import BernoulliRBM
    from ebmlab.training import CDConfig, CDTrainer

    def run() -> None:
        generator = torch.Generator().manual_seed(0)
        model = BernoulliRBM(N_VISIBLE, N_HIDDEN, generator=generator)
        config = CDConfig(epochs=1, batch_size=BATCH, lr=0.01, persistent=persistent,
                          precision=precision, centering=centering, compile=compile,
                          reuse_hidden_means=reuse)  # fmt: skip
        CDTrainer(model, config, generator=generator).train_epoch(data)

    return run


def sklearn_rbm_epoch(data: np.ndarray) -> Callable[[], None]:
    from sklearn.neural_network import BernoulliRBM

    def run() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            BernoulliRBM(
                n_components=N_HIDDEN,
                batch_size=BATCH,
                n_iter=1,
                learning_rate=0.01,
                random_state=0,
            ).fit(data)

    return run


def learnergy_rbm_epoch(data: torch.Tensor) -> Callable[[], None] | None:
    try:
        from learnergy.models.bernoulli import RBM
    except ImportError:
        return None
    dataset = torch.utils.data.TensorDataset(data, torch.zeros(len(data)))

    def run() -> None:
        torch.manual_seed(0)  # learnergy draws from the global generator
        model = RBM(
            n_visible=N_VISIBLE, n_hidden=N_HIDDEN, steps=1, learning_rate=0.01, use_gpu=False
        )
        model.fit(dataset, batch_size=BATCH, epochs=1)

    return run


def rbm(n_samples: int, repeats: int) -> list[dict]:
    """RBM CD-1 and PCD-1 throughput against scikit-learn (and learnergy), in both precisions.

    ebmlab runs scikit-learn's algorithm (plain gradient, no momentum, no centering, PCD's
    sweep from the hidden means of the previous update), so the ratio compares
    implementations; the "fresh hidden means" and centered rows show what the exact PCD
    chain and the default update cost.
    Each precision's "of machine bound" is against that precision's measured GEMM rate.
    """
    data = fashion_binary(n_samples)
    rates = {
        precision: gemm_flops_per_second(
            BATCH, N_VISIBLE, N_HIDDEN, dtype=getattr(torch, precision)
        )
        for precision in precisions()
    }
    sklearn_rate = n_samples / best_of(sklearn_rbm_epoch(data.numpy()), repeats)
    learnergy = learnergy_rbm_epoch(data)
    learnergy_rate = None if learnergy is None else n_samples / best_of(learnergy, repeats)
    rows = []
    variants = [(name, persistent, precision, False, False)
                for precision in precisions()
                for name, persistent in (("CD-1", False), ("PCD-1", True))]  # fmt: skip
    variants += [(name, persistent, precision, False, True)
                 for precision in precisions()
                 for name, persistent in (("CD-1", False), ("PCD-1", True))]  # fmt: skip
    variants += [("PCD-1, fresh hidden means", True, "float32", False, False),
                 ("PCD-1", True, "float32", True, False)]  # fmt: skip
    for name, persistent, precision, centering, compile in variants:
        epoch = ebmlab_rbm_epoch(data, persistent=persistent, precision=precision,
                                 centering=centering, compile=compile,
                                 reuse_hidden_means=persistent and "fresh" not in name)  # fmt: skip
        value = n_samples / best_of(epoch, repeats)  # its warm-up call compiles
        bound = value * 2 * GEMMS[name] * N_VISIBLE * N_HIDDEN / rates[precision]
        label = f"RBM {name} 784-500 b100" + (", centered" if centering else "")
        label += ", compiled sweeps" if compile else ""
        note = f"GEMM rate {rates[precision] / 1e9:.0f} GFLOP/s"
        note += "; compile time excluded" if compile else ""
        rows.append(_row(label, value, "samples/s", "scikit-learn", sklearn_rate,
                         higher_is_better=True, bound=bound, precision=precision,
                         note=note))  # fmt: skip
        if precision == "float32" and not (centering or compile):
            peer_note = (
                "learnergy not installed (pip install -e .[bench])"
                if learnergy_rate is None
                else "learnergy runs CD-1"
            )
            rows.append(_row(label, value, "samples/s", "learnergy", learnergy_rate,
                             higher_is_better=True, bound=bound, note=peer_note))  # fmt: skip
    return rows + skipped_bfloat16("RBM CD-1 and PCD-1 784-500 b100")


def ais(n_betas: int) -> list[dict]:
    """AIS on a 784-500 RBM, 100 chains: seconds against its GEMMs' time, in both precisions.

    The bfloat16 row also says how far its log Z lies from float32's, in units of the two
    intervals' half-widths combined (below 1: they agree).
    """
    from bench_ais import build_model, gemm_bound_seconds

    from ebmlab.estimators import ais_log_partition

    rows, estimates = [], {}
    for precision in precisions():
        model = build_model(N_VISIBLE, N_HIDDEN, seed=0).set_precision(precision)
        estimates[precision] = estimate = ais_log_partition(
            model,
            n_chains=100,
            betas=n_betas,
            generator=torch.Generator().manual_seed(0),
            progress=False,
        )
        bound = gemm_bound_seconds(model, 100, n_betas - 1, dtype=getattr(torch, precision))
        note = (
            f"log Z {estimate.log_z:.2f} [{estimate.log_z_lower:.2f}, {estimate.log_z_upper:.2f}]"
        )
        if precision == "bfloat16":
            full = estimates["float32"]
            width = (full.log_z_upper - full.log_z_lower + estimate.log_z_upper
                     - estimate.log_z_lower) / 2  # fmt: skip
            note += f"; {abs(estimate.log_z - full.log_z) / width:.2f} half-widths from float32"
        rows.append(_row(f"AIS 784-500, 100 chains, {n_betas} betas", estimate.seconds, "s",
                         "GEMM bound", bound, higher_is_better=False,
                         bound=bound / estimate.seconds, note=note,
                         precision=precision))  # fmt: skip
    rows.append(_compiled_ais(n_betas, estimates["float32"], rows[0]["peer_value"]))
    return rows + skipped_bfloat16(f"AIS 784-500, 100 chains, {n_betas} betas")


def _compiled_ais(n_betas: int, reference, bound: float) -> dict:
    """The compiled path (one fused step per temperature, counter-based draws), compile excluded."""
    from bench_ais import build_model

    from ebmlab.estimators import ais_log_partition

    model = build_model(N_VISIBLE, N_HIDDEN, seed=0)
    started = time.perf_counter()  # compiles the step for these shapes (cached on disk)
    ais_log_partition(model, n_chains=100, betas=2, progress=False, compiled=True,
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    compile_seconds = time.perf_counter() - started
    estimate = ais_log_partition(model, n_chains=100, betas=n_betas, progress=False,
                                 compiled=True, generator=torch.Generator().manual_seed(0))  # fmt: skip
    width = (reference.log_z_upper - reference.log_z_lower + estimate.log_z_upper
             - estimate.log_z_lower) / 2  # fmt: skip
    note = (
        f"compiled, counter-based draws; compile {compile_seconds:.0f} s excluded; log Z "
        f"{estimate.log_z:.2f} [{estimate.log_z_lower:.2f}, {estimate.log_z_upper:.2f}], "
        f"{abs(estimate.log_z - reference.log_z) / width:.2f} half-widths from eager"
    )
    return _row(f"AIS 784-500, 100 chains, {n_betas} betas", estimate.seconds, "s",
                "GEMM bound", bound, higher_is_better=False, bound=bound / estimate.seconds,
                note=note)  # fmt: skip


def _mixture_energy():
    """A 2-D mixture of 8 Gaussians (std 0.5 on a radius-4 circle) as an energy module."""
    angles = torch.arange(8) * (2 * torch.pi / 8)
    centers = 4 * torch.stack([angles.cos(), angles.sin()], 1)

    class MixtureEnergy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            squared = ((x[:, None, :] - centers) ** 2).sum(-1)
            return -torch.logsumexp(-squared / (2 * 0.25), 1)

        energy = forward

    return MixtureEnergy()


def langevin(n_particles: int, n_steps: int, repeats: int) -> list[dict]:
    """Langevin sampling of a 2-D mixture: ebmlab against torchebm's LangevinDynamics."""
    from ebmlab.samplers import CompiledChain, Langevin, run_chain

    energy = _mixture_energy()
    x0 = torch.randn(n_particles, 2, generator=torch.Generator().manual_seed(0))
    sampler = Langevin.calibrated(energy, 0.01)

    def ebmlab_run() -> None:
        run_chain(sampler, sampler.init(x0), n_steps, generator=torch.Generator().manual_seed(1))

    seconds = best_of(ebmlab_run, repeats)
    peer_seconds, note = None, "torchebm not installed (pip install -e .[bench])"
    try:
        from torchebm.core import BaseModel
        from torchebm.samplers import LangevinDynamics
    except ImportError:
        pass
    else:

        class Wrapped(BaseModel):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return energy(x)

        # Same update: x + step * (-grad E) + sqrt(2 step) * noise.
        peer = LangevinDynamics(Wrapped(), step_size=0.01, noise_scale=1.0)
        peer_seconds = best_of(
            lambda: peer.sample(
                x=x0.clone(), n_steps=n_steps, generator=torch.Generator().manual_seed(1)
            ),
            repeats,
        )
        note = ""
    # The same chain in compiled blocks of 10 steps (CompiledChain); best_of's untimed
    # warm-up call compiles.
    chain = CompiledChain(sampler, steps_per_call=10)
    compiled_seconds = best_of(
        lambda: chain.run(chain.init(x0, generator=torch.Generator().manual_seed(1)), n_steps),
        repeats,
    )
    peer_rate = None if peer_seconds is None else n_particles * n_steps / peer_seconds
    label = f"Langevin 2-D mixture, {n_particles} particles x {n_steps} steps"
    compiled_note = "compile time excluded" + (f"; {note}" if note else "")
    return [
        _row(label, n_particles * n_steps / seconds, "particle-steps/s", "torchebm",
             peer_rate, higher_is_better=True, note=note),
        _row(label + ", compiled blocks", n_particles * n_steps / compiled_seconds,
             "particle-steps/s", "torchebm", peer_rate, higher_is_better=True,
             note=compiled_note),
    ]  # fmt: skip


def sgld(n_chains: int, n_steps: int) -> list[dict]:
    """SGLD on Welling & Teh's mixture posterior: effective samples per second against BlackJAX."""
    from bench_sgld import bench_blackjax, bench_ebmlab, bench_parallel

    from ebmlab.experiments.sgld_mixture import mixture_data

    data = mixture_data(0)
    ours = bench_ebmlab(data, n_chains, n_steps, 0)
    parallel = bench_parallel(data, n_chains, n_steps, 0)
    try:
        peer, note = (
            bench_blackjax(data, n_chains, n_steps, 0)["ess_per_second"],
            "BlackJAX compile time excluded",
        )
    except ImportError:
        peer, note = None, "blackjax not installed (pip install -e .[bench])"
    return [
        _row(
            f"SGLD mixture posterior, {n_chains} chains x {n_steps} steps",
            ours["ess_per_second"],
            "ESS/s",
            "BlackJAX",
            peer,
            higher_is_better=True,
            note=note,
        ),
        _row(
            f"SGLD mixture posterior, {n_chains} chains x {n_steps} steps, ParallelSGLD",
            parallel["ess_per_second"],
            "ESS/s",
            "BlackJAX",
            peer,
            higher_is_better=True,
            note=f"compiled blocks of 10 steps; compile {parallel['compile_seconds']:.0f} s and "
            "BlackJAX's excluded",
        ),
    ]


def jem(n_iterations: int) -> list[dict]:
    """JEM with the small CNN, batch 64, 20 SGLD steps: seconds per iteration and where they go."""
    from argparse import Namespace

    from bench_jem import measure

    settings = Namespace(iterations=n_iterations, width=16, n_steps=20, batch_size=64)
    jem_times, classifier_times = measure(settings, 1.0), measure(settings, 0.0)
    total = jem_times["total_seconds"]
    note = (
        f"sampling {jem_times['sample_seconds'] / total:.0%}, buffer {1000 * jem_times['buffer_seconds']:.2f} ms, "
        f"classifier step {jem_times['step_seconds']:.3f} s; classifier alone {classifier_times['total_seconds']:.3f} s"
    )
    rows = [
        _row(
            "JEM small CNN b64, 20 SGLD steps",
            total,
            "s/iteration",
            "-",
            None,
            higher_is_better=False,
            note=note,
        )
    ]
    if "bfloat16" not in precisions():
        return rows + skipped_bfloat16("JEM as above, bfloat16 sampling")
    bf16_times = measure(settings, 1.0, "bfloat16")
    return rows + [
        _row(
            "JEM as above, bfloat16 sampling",
            bf16_times["total_seconds"],
            "s/iteration",
            "ebmlab float32",
            total,
            higher_is_better=False,
            note=f"sampling {bf16_times['sample_seconds'] / bf16_times['total_seconds']:.0%}",
        ),
    ]


QUICK = {
    "rbm": lambda: rbm(2000, 1),
    "ais": lambda: ais(1000),
    "langevin": lambda: langevin(1000, 100, 1),
    "sgld": lambda: sgld(100, 1000),
    "jem": lambda: jem(3),
}
FULL = {
    "rbm": lambda: rbm(20_000, 3),
    "ais": lambda: ais(14_501),
    "langevin": lambda: langevin(1000, 1000, 3),
    "sgld": lambda: sgld(1000, 10_000),
    "jem": lambda: jem(20),
}


def timed(function: Callable[[], list[dict]]) -> list[dict]:
    start = time.perf_counter()
    rows = function()
    for row in rows:
        row["wall_seconds"] = time.perf_counter() - start
    return rows
