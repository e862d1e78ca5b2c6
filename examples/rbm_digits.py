"""A Bernoulli RBM on scikit-learn's 8x8 digits: CD-1, PCD-1 and tempering, exact likelihoods.

With 20 hidden units the partition function is a sum over 2^20 hidden states, so the
test log-likelihood of every checkpoint is exact (no AIS error bar to argue about).
All models start from the same weights and see the same minibatches. Four ways to train:
CD-1 and PCD-1 at the defaults (centered gradient, no momentum, learning rate falling to
zero), PCD-1 with parallel tempering over 5 replicas, and PCD-1 with the classic recipe
of earlier releases (no centering, momentum 0.5 then 0.9, a constant rate). Writes
OUT/rbm_digits.png: the exact test log-likelihood per epoch, samples of the tempered
model (1,000 Gibbs sweeps from noise) and its filters.

    python examples/rbm_digits.py --out docs/figures      # the docs figure, about 80 s on 1 core
    python examples/rbm_digits.py --out /tmp/x --tiny     # a few seconds: checks the script runs
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ebmlab.data import load_dataset
from ebmlab.estimators import exact_log_likelihood
from ebmlab.models import BernoulliRBM
from ebmlab.samplers import sample_visible
from ebmlab.training import CDConfig, CDTrainer
from ebmlab.viz._mpl import pyplot
from ebmlab.viz.images import tile_images

FULL = {"n_hidden": 20, "epochs": 40, "eval_every": 4, "n_gibbs": 1000}
TINY = {"n_hidden": 6, "epochs": 2, "eval_every": 1, "n_gibbs": 20}


def binary_digits(split: str) -> torch.Tensor:
    """The digits thresholded at half intensity: (N, 64) in {0, 1}."""
    return (load_dataset("digits", split=split).images > 0.5).float()


# What each run sets on top of CDConfig's defaults.
VARIANTS = {
    "CD-1": {},
    "PCD-1": {"persistent": True},
    "PT-5 (PCD-1, 5 replicas)": {"persistent": True, "tempering": 5},
    "PCD-1, classic recipe": {
        "persistent": True, "centering": False, "lr": 0.05,
        "momentum": 0.5, "final_momentum": 0.9, "final_lr_fraction": 1.0,
    },
}  # fmt: skip


def train(
    train_data: torch.Tensor,
    test_data: torch.Tensor,
    *,
    variant: dict,
    settings: dict,
    seed: int,
) -> tuple[BernoulliRBM, list[tuple[int, float]]]:
    """Train one RBM; returns it and its (epoch, exact test log-likelihood) curve."""
    generator = torch.Generator().manual_seed(seed)  # same seed: same start, same minibatches
    rbm = BernoulliRBM(64, settings["n_hidden"], generator=generator).init_visible_bias(train_data)
    config = CDConfig(epochs=settings["epochs"], batch_size=20, **variant)
    trainer = CDTrainer(rbm, config, generator=generator)
    curve = [(0, exact_log_likelihood(rbm, test_data))]
    for epoch in range(1, settings["epochs"] + 1):
        trainer.train_epoch(train_data)
        if epoch % settings["eval_every"] == 0 or epoch == settings["epochs"]:
            curve.append((epoch, exact_log_likelihood(rbm, test_data)))
    return rbm, curve


def plot(curves: dict[str, list], rbm: BernoulliRBM, samples: torch.Tensor, path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1.4, 1, 1]})
    for label, curve in curves.items():
        epochs, values = zip(*curve, strict=True)
        axes[0].plot(epochs, values, marker="o", markersize=3, label=label)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("exact test log-likelihood (nats)")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    axes[1].imshow(tile_images(samples, (8, 8), n_columns=8), cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("PT-5 samples (p(v | h))")
    filters = rbm.weight.detach().t()
    axes[2].imshow(tile_images(filters, (8, 8), normalize_each=True), cmap="gray")
    axes[2].set_title(f"filters of the {filters.shape[0]} hidden units")
    for axis in axes[1:]:
        axis.set_axis_off()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="figure folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="tiny settings (for the tests)")
    args = parser.parse_args()
    settings = TINY if args.tiny else FULL
    train_data, test_data = binary_digits("train"), binary_digits("test")
    started = time.perf_counter()
    curves, models = {}, {}
    for label, variant in VARIANTS.items():
        models[label], curves[label] = train(
            train_data, test_data, variant=variant, settings=settings, seed=args.seed
        )
        rounded = [(epoch, round(value, 2)) for epoch, value in curves[label]]
        print(f"{label}: exact test log-likelihood by epoch {rounded}")
    shown = models["PT-5 (PCD-1, 5 replicas)"]
    generator = torch.Generator().manual_seed(args.seed + 1)
    samples = sample_visible(shown, 32, settings["n_gibbs"], generator=generator)
    path = args.out / "rbm_digits.png"
    plot(curves, shown, samples, path)
    print(f"wrote {path} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
