"""Seconds per JEM training iteration on the CPU, and where the time goes.

    python benchmarks/bench_jem.py [--iterations 10] [--width 16] [--n-steps 20] [--batch-size 64]

A small CNN on 28x28 inputs (Fashion-MNIST's shape; random data, so no dataset
is needed), batch 64, 20 SGLD steps: the paper's per-iteration work at CPU
size. Reports the median over iterations of: the whole update; SGLD sampling
(20 forward + input-gradient passes on the batch); the buffer's own work (draw,
reinitialise, push back) measured apart; and the classifier step (one forward
of data + negatives, backward, Adam). Also the classifier-only baseline
(``p_x_weight = 0``) and JEM with bfloat16 sampling (``sampling_dtype``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from _common import machine_summary

from ebmlab.models.jem import JEM
from ebmlab.models.nets.small_cnn import SmallCNN
from ebmlab.training.jem import JEMConfig
from ebmlab.training.jem_trainer import JEMTrainer


def build(
    args, p_x_weight: float, sampling_dtype: str = "float32"
) -> tuple[JEMTrainer, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    model = JEM(SmallCNN(1, 28, 10, args.width, generator=generator), 10)
    config = JEMConfig(
        batch_size=args.batch_size, n_steps=args.n_steps, p_x_weight=p_x_weight,
        warmup_iterations=0, sampling_dtype=sampling_dtype,
        buffer_init="uniform",  # the default per-class Gaussians need real data to fit
    )  # fmt: skip
    trainer = JEMTrainer(model, config, seed=0, sample_shape=(784,))
    x = torch.rand((args.batch_size, 784), generator=generator) * 2 - 1
    y = torch.randint(10, (args.batch_size,), generator=generator)
    return trainer, x, y


def buffer_seconds(trainer: JEMTrainer, batch_size: int, repeats: int = 50) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        x, slots = trainer.buffer.sample(batch_size, generator=trainer.generator)
        trainer.buffer.push(x, slots)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(args, p_x_weight: float, sampling_dtype: str = "float32") -> dict[str, float]:
    trainer, x, y = build(args, p_x_weight, sampling_dtype)
    trainer.update(x, y)  # warm-up: allocator, kernels
    records = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        record = trainer.update(x, y)
        record["total_seconds"] = time.perf_counter() - start
        records.append(record)
    result = {
        key: statistics.median(r[key] for r in records)
        for key in ("total_seconds", "sample_seconds", "step_seconds")
    }
    if trainer.buffer is not None:
        result["buffer_seconds"] = buffer_seconds(trainer, args.batch_size)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--n-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    print(machine_summary())
    jem = measure(args, 1.0)
    jem_bf16 = measure(args, 1.0, "bfloat16")
    baseline = measure(args, 0.0)
    results = {"jem": jem, "jem_bfloat16_sampling": jem_bf16, "classifier_only": baseline}
    print(json.dumps({**results, **vars(args)}, indent=2))
    share = jem["sample_seconds"] / jem["total_seconds"]
    print(
        f"JEM: {jem['total_seconds']:.3f} s/iteration (sampling {100 * share:.0f}%, of which "
        f"buffer {1000 * jem['buffer_seconds']:.2f} ms; classifier step "
        f"{jem['step_seconds']:.3f} s); classifier alone {baseline['total_seconds']:.3f} s"
    )
    print(
        f"JEM with bfloat16 sampling: {jem_bf16['total_seconds']:.3f} s/iteration "
        f"({jem['total_seconds'] / jem_bf16['total_seconds']:.2f}x float32)"
    )


if __name__ == "__main__":
    main()
