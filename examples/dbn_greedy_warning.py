"""Greedy layer-wise training does not always work: a measured case, computed exactly.

Data: the 30 bars-and-stripes 4x4 patterns (the best possible log-likelihood is
-log 30 = -3.401 nats). Everything is small enough to enumerate, so every number below is
exact: the RBM's log-likelihood, each DBN's variational bound and each DBN's true log p(v).

1. A good first layer: a 16-8 RBM fitted by exact maximum likelihood (gradient of the
   enumerated log-likelihood). Second layers of several kinds are added greedily with the
   library's CD training; the bound and the true log-likelihood are compared with the RBM's.
2. A poor first layer: the same RBM trained by CD-1 for a short while. The same kind of
   second layer now helps a lot.

Writes docs/figures/dbn_greedy_warning.png (bounds), docs/figures/dbn_greedy_samples.png
(samples) and prints a Markdown table. About 1-2 minutes on one CPU core.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ebmlab.data import bars_and_stripes
from ebmlab.estimators.dbn_bound import dbn_exact_log_likelihood, dbn_log_likelihood_bound
from ebmlab.estimators.exact import enumerate_binary
from ebmlab.models.dbn import DBN
from ebmlab.training.greedy import train_greedy
from ebmlab.training.trainer import CDConfig

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
N_HIDDEN = 8
# (label, second-layer width, start from the transposed first layer, CD steps, propagation)
SECOND_LAYERS = [
    ("16 units, W1^T init, CD-10, sampled", 16, True, 10, "sample"),
    ("16 units, random init, CD-10, sampled", 16, False, 10, "sample"),
    ("16 units, random init, CD-1, sampled", 16, False, 1, "sample"),
    ("16 units, random init, CD-10, mean-field", 16, False, 10, "mean"),
    ("4 units, random init, CD-10, sampled", 4, False, 10, "sample"),
    ("2 units, random init, CD-10, sampled", 2, False, 10, "sample"),
]


def fit_rbm_exactly(data: torch.Tensor, n_steps: int = 1500) -> DBN:
    """A one-layer DBN whose RBM maximises the exact log-likelihood (Adam on the enumerated log Z)."""
    one = DBN([16, N_HIDDEN], weight_std=0.1, generator=torch.Generator().manual_seed(0))
    one = one.double()
    rbm = one.rbms[0]
    hidden_states = enumerate_binary(N_HIDDEN, dtype=torch.float64)
    optimizer = torch.optim.Adam(rbm.parameters(), lr=0.05)
    for _ in range(n_steps):
        log_z = torch.logsumexp(-rbm.free_energy_hidden(hidden_states), 0)
        loss = rbm.free_energy(data).mean() + log_z  # = -mean log p(v)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return one


def fit_rbm_by_cd(data: torch.Tensor) -> DBN:
    """The same RBM trained briefly by CD-1, as greedy pretraining usually does."""
    one = DBN([16, N_HIDDEN], generator=torch.Generator().manual_seed(0)).double()
    config = CDConfig(epochs=30, batch_size=30, lr=0.05, cd_k=1, weight_decay=0.0)
    train_greedy(one, data.repeat(10, 1), config, generator=torch.Generator().manual_seed(1))
    return one


def add_layer(
    one: DBN, data: torch.Tensor, width: int, transposed: bool, cd_k: int, propagation: str
) -> DBN:
    """Stack a second RBM on ``one`` and train it greedily (the first layer stays fixed).

    "sample": a fresh binary sample of Q(h1|v) every epoch (the probabilities redrawn by
    dynamic binarisation); "mean": the probabilities themselves as data (mean field).
    """
    two = DBN([16, N_HIDDEN, width], generator=torch.Generator().manual_seed(1)).double()
    two.rbms[0].load_state_dict(one.rbms[0].state_dict())
    config = CDConfig(
        epochs=200,
        batch_size=30,
        lr=0.05,
        cd_k=cd_k,
        weight_decay=0.0,
        dynamic_binarization=propagation == "sample",
    )
    train_greedy(
        two,
        data.repeat(10, 1),
        config,
        propagation="mean",
        generator=torch.Generator().manual_seed(2),
        init_from_below=transposed,
        start_layer=1,
    )
    return two


def measure(dbn: DBN, data: torch.Tensor) -> tuple[float, float]:
    """(exact variational bound, exact log-likelihood), mean over the 30 patterns."""
    bound = dbn_log_likelihood_bound(dbn, data, exact=True).value
    return bound, dbn_exact_log_likelihood(dbn, data).mean().item()


def save_figures(rows: list[tuple], samples: dict[str, torch.Tensor]) -> None:
    from ebmlab.viz._mpl import pyplot
    from ebmlab.viz.images import tile_images

    plt = pyplot()
    FIGURES.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(9, 4.5))
    for first, marker in (("good (exact ML)", "o"), ("poor (CD-1)", "s")):
        picked = [r for r in rows if r[0] == first]
        axis.plot([r[3] for r in picked], range(len(picked)), marker, label=f"{first}: bound")
        axis.plot(
            [r[4] for r in picked],
            range(len(picked)),
            marker,
            mfc="none",
            label=f"{first}: log p(v)",
        )
    labels = [r[1] for r in rows if r[0] == "good (exact ML)"]
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.axvline(-math.log(30), color="grey", linestyle=":", label="optimum -log 30")
    axis.set_xlabel("nats per pattern (exact)")
    axis.set_title("Adding a second layer: bound and true log-likelihood")
    axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(FIGURES / "dbn_greedy_warning.png", dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(1, len(samples), figsize=(3 * len(samples), 3.4))
    for axis, (title, images) in zip(axes, samples.items(), strict=True):
        axis.imshow(tile_images(images, (4, 4), n_columns=6), cmap="gray", vmin=0, vmax=1)
        axis.set_title(title, fontsize=8)
        axis.set_axis_off()
    figure.tight_layout()
    figure.savefig(FIGURES / "dbn_greedy_samples.png", dpi=110)
    plt.close(figure)


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = bars_and_stripes(4).double()
    rows, samples = [], {}
    for first, one in (
        ("good (exact ML)", fit_rbm_exactly(data)),
        ("poor (CD-1)", fit_rbm_by_cd(data)),
    ):
        rbm_value = measure(one, data)[1]
        rows.append((first, "RBM alone", N_HIDDEN, rbm_value, rbm_value))
        generator = torch.Generator().manual_seed(3)
        samples[f"{first}: RBM"] = one.sample(36, 1000, mean=False, generator=generator)
        for label, width, transposed, cd_k, propagation in SECOND_LAYERS:
            two = add_layer(one, data, width, transposed, cd_k, propagation)
            rows.append((first, f"+ {label}", width, *measure(two, data)))
            if first.startswith("good") and (transposed or width == 2):
                name = f"{first}: + {width} units" + (", W1^T init" if transposed else "")
                samples[name] = two.sample(36, 1000, mean=False, generator=generator)
    print("| first layer | model | bound (nats) | exact log p(v) (nats) |")
    print("|---|---|---:|---:|")
    for first, label, _, bound, exact in rows:
        print(f"| {first} | {label} | {bound:.3f} | {exact:.3f} |")
    save_figures(rows, samples)
    print(f"\noptimum -log 30 = {-math.log(30):.3f}; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
