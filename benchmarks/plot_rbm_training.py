"""The figure of experiment_rbm_training.py: held-out log-likelihood against CPU time, per variant.

Reads every ``*.json`` that experiment_rbm_training.py wrote in ``--out`` and draws the
cheap AIS curve (16 chains x 1,000 temperatures on 1,000 test images, its interval
shaded) against the training CPU seconds, with each variant's final AIS estimate (100+
chains, 14,501 temperatures, all 10,000 test images) as a marker at its end. Also prints
the markdown table for benchmarks/RESULTS.md.

    python benchmarks/plot_rbm_training.py --out benchmarks/results/rbm_training
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ebmlab.viz._mpl import pyplot

ORDER = ["CD-1", "CD-10", "PCD-1", "centered PCD-1", "PT-10", "centered PT-10"]


def slug(name: str) -> str:
    """The file stem experiment_rbm_training.py gives a variant."""
    return "".join(c if c.isalnum() else "_" for c in name.lower())


def load(folder: Path) -> dict[str, dict]:
    names = {slug(name): name for name in ORDER}
    runs = {}
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text())
        if "curve" in result:
            runs[names.get(path.stem, path.stem)] = result
    return runs


def interval(low, high) -> str:
    high = "+inf" if high is None or high == float("inf") else f"{high:.2f}"
    return f"[{low:.2f}, {high}]"


def table(runs: dict[str, dict]) -> str:
    lines = [
        "| variant | epochs | test log-likelihood, AIS (nats) | AIS chains | RAISE, first 100 | AIS, same 100 |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name in sorted(runs, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        result = runs[name]
        ll, raised = result["test_loglik"], result["raise_loglik"]
        lines.append(
            f"| {name} | {result['config']['epochs']} | {ll['value']:.2f} "
            f"{interval(ll['lower'], ll['upper'])} | {result['log_z']['n_chains']} | "
            f"{raised['value']:.2f} | {raised['ais_value']:.2f} |"
        )
    return "\n".join(lines)


def plot(runs: dict[str, dict], path: Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for name, result in runs.items():
        points = [p for p in result["curve"] if p["value"] is not None]
        seconds = [p["cpu_seconds"] for p in points]
        (line,) = axis.plot(seconds, [p["value"] for p in points], marker="o", ms=3, label=name)
        band = [p for p in points if p["lower"] is not None and p["upper"] is not None]
        if band:
            axis.fill_between(
                [p["cpu_seconds"] for p in band],
                [p["lower"] for p in band],
                [p["upper"] for p in band],
                color=line.get_color(),
                alpha=0.2,
            )
        axis.plot(seconds[-1], result["test_loglik"]["value"], "*", ms=11, color=line.get_color())
    axis.set_xlabel("training CPU seconds (one thread)")
    axis.set_ylabel("test log-likelihood (nats)")
    axis.set_title("784-500 RBMs on binarised Fashion-MNIST: cheap AIS curve, final AIS (*)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rbm_training"))
    args = parser.parse_args()
    runs = load(args.out)
    plot(runs, args.out / "loglik_vs_time.png")
    print(table(runs))


if __name__ == "__main__":
    main()
