"""JEM against the same classifier trained without the generative term, on Fashion-MNIST.

Trains two runs with identical settings except ``p_x_weight`` (1 for JEM, 0 for
the plain classifier), evaluates accuracy, ECE and OOD AUROC for both, and writes
``OUT/results.json`` plus each run folder (samples, reliability diagrams).

    python examples/jem_fashion.py --iterations 6000 --out runs/jem-fashion
    python examples/jem_fashion.py --tiny --out /tmp/jem-tiny     # seconds, for tests
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ebmlab.experiments.driver import train
from ebmlab.experiments.jem import JEMExperimentConfig
from ebmlab.experiments.registry import evaluate_run
from ebmlab.training.jem import JEMConfig


def settings(args: argparse.Namespace, p_x_weight: float) -> JEMExperimentConfig:
    iterations = 20 if args.tiny else args.iterations
    training = JEMConfig(
        iterations=iterations,
        batch_size=64,
        lr=args.lr,
        warmup_iterations=max(1, iterations // 12),
        decay_iterations=[int(0.7 * iterations), int(0.9 * iterations)],
        p_x_weight=p_x_weight,
        n_steps=2 if args.tiny else args.n_steps,
        buffer_size=640 if args.tiny else 10_000,
        buffer_init=args.buffer_init,
        clamp=args.clamp,
        sampling_dtype=args.sampling_dtype,
        l2_weight=0.1,  # a small energy penalty keeps JEM stable (Grathwohl et al., appendix)
        checkpoint_every=max(1, iterations // 10),
        log_every=max(1, iterations // 100),
    )
    return JEMExperimentConfig(
        dataset="digits" if args.tiny else "fashion-mnist",
        backbone="small-cnn",
        width=8 if args.tiny else 16,
        n_train=500 if args.tiny else None,
        seed=args.seed,
        training=training,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=6000)
    parser.add_argument("--n-steps", type=int, default=10, help="SGLD steps per iteration")
    parser.add_argument(
        "--refine-steps", type=int, default=10, help="SGLD steps of refined classification"
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (peak)")
    parser.add_argument(
        "--buffer-init",
        choices=("uniform", "class-gaussian", "class-gaussian-diagonal"),
        default="uniform",
        help="replay-buffer initialisation: U(-1, 1) (JEM) or per-class Gaussians (JEM++)",
    )
    parser.add_argument("--clamp", action="store_true", help="keep samples in [-1, 1] (JEM++)")
    parser.add_argument(
        "--sampling-dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="precision of the SGLD passes (bfloat16: faster on CPUs with AMX)",
    )
    parser.add_argument(
        "--only", choices=("classifier", "jem"), help="train and evaluate one of the two runs"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="digits, 20 iterations: a smoke test")
    parser.add_argument("--out", type=Path, default=Path("runs/jem-fashion"))
    args = parser.parse_args()
    results = {}
    runs = (("classifier", 0.0), ("jem", 1.0))
    for name, p_x_weight in runs:
        if args.only not in (None, name):
            continue
        run_dir = args.out / name
        start = time.perf_counter()
        folder = train(settings(args, p_x_weight), run_dir, overwrite=True, progress=not args.tiny)
        seconds = time.perf_counter() - start
        # digits resized to 28x28: a real-image OOD set (the tiny run trains on digits itself).
        real = () if args.tiny else ("digits:resized",)
        result = evaluate_run(
            run_dir,
            ood=("noise", "constant", "flip", *real),
            sample_steps=20 if args.tiny else 100,
            refine_steps=args.refine_steps,
            seed=args.seed,
            figures=folder.figures,
        )
        results[name] = {"train_seconds": seconds, **result}
        summary = {k: result[k] for k in ("test_accuracy", "ece")}
        print(f"{name}: {summary}, trained in {seconds:.0f} s", flush=True)
    suffix = f"-{args.only}" if args.only else ""
    (args.out / f"results{suffix}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
