"""Train a shipped feature network (ebmlab.metrics.feature_nets) on CPU.

Usage (the commands that made the shipped files are recorded in their sidecars):

    python scripts/train_feature_net.py fashion-mnist --epochs 4 --width 12 --seed 0 --threads 1
    python scripts/train_feature_net.py digits --epochs 60 --width 16 --seed 0 --threads 1

Writes ``<name>.safetensors`` and ``<name>.json`` (architecture, data split,
test accuracy, command) to ``src/ebmlab/metrics/weights/`` by default.

Half of each training batch is stochastically binarised (pixel -> Bernoulli
of its intensity), so the features stay meaningful for samples of binary
models (RBM, DBN, DBM) as well as for grayscale images.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save
from torch.nn import functional as F

from ebmlab.data import DIGITS_SPLIT_SEED, Dataset, load_dataset
from ebmlab.models.nets.small_cnn import SmallCNN

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "ebmlab" / "metrics" / "weights"


def load_split(dataset: str, split: str, data_dir: Path | None) -> Dataset:
    """One split through ebmlab.data (digits: its fixed stratified 80/20 split)."""
    return load_dataset(dataset, split=split, data_dir=data_dir, download=False)


def binarise_half(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Replace a random half of the rows by Bernoulli samples of their intensities."""
    rows = torch.rand(x.shape[0], 1, generator=generator) < 0.5
    binary = (torch.rand(x.shape, generator=generator) < x).to(x.dtype)
    return torch.where(rows, binary, x)


def evaluate(net: SmallCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        predictions = torch.cat([net(batch).argmax(1) for batch in x.split(1000)])
    return float((predictions == y).double().mean())


def train(
    net: SmallCNN, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace, gen: torch.Generator
) -> None:
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    n_steps = args.epochs * ((x.shape[0] + args.batch_size - 1) // args.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_steps)
    for epoch in range(args.epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        for rows in order.split(args.batch_size):
            loss = F.cross_entropy(net(binarise_half(x[rows], gen)), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * rows.shape[0]
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {total / x.shape[0]:.4f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=["fashion-mnist", "digits"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="IDX folder (ebmlab.data's search)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)

    train_set = load_split(args.dataset, "train", args.data_dir)
    test_set = load_split(args.dataset, "test", args.data_dir)
    image_size = train_set.image_shape[0]
    if args.dataset == "digits":
        split = f"ebmlab.data digits: stratified 80/20, DIGITS_SPLIT_SEED={DIGITS_SPLIT_SEED}"
    else:
        split = "official train (60,000) / t10k test (10,000)"
    x_train, y_train = train_set.images, train_set.labels
    x_test, y_test = test_set.images, test_set.labels

    net = SmallCNN(1, image_size, 10, args.width, generator=gen)
    start = time.perf_counter()
    train(net, x_train, y_train, args, gen)
    seconds = time.perf_counter() - start
    net.eval()
    accuracy = evaluate(net, x_test, y_test)
    binary_test = (
        torch.rand(x_test.shape, generator=torch.Generator().manual_seed(1)) < x_test
    ).float()
    accuracy_binary = evaluate(net, binary_test, y_test)
    print(
        f"test accuracy {accuracy:.4f} (binarised {accuracy_binary:.4f}); {seconds:.0f} s",
        flush=True,
    )

    name = f"{args.dataset}-cnn"
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / f"{name}.safetensors"
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    # save() + write_bytes: the file gets the usual umask permissions (save_file uses 0600).
    weights.write_bytes(save(state, metadata={"name": name}))
    info = {
        "name": name,
        "architecture": "ebmlab.models.nets.small_cnn.SmallCNN",
        "config": net.config(),
        "input": {"shape": ["N", 1, image_size, image_size], "flat_ok": True, "range": [0.0, 1.0]},
        "dataset": args.dataset,
        "data_source": test_set.source,
        "split": split,
        "n_train": int(x_train.shape[0]),
        "n_test": int(x_test.shape[0]),
        "test_accuracy": round(accuracy, 4),
        "test_accuracy_binarized": round(accuracy_binary, 4),
        "binarized_eval": "pixels ~ Bernoulli(intensity), torch.Generator seed 1",
        "training": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": f"Adam, lr {args.lr} with cosine decay to 0",
            "augmentation": "half of each batch binarised",
            "seed": args.seed,
            "seconds": round(seconds, 1),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "command": "python scripts/train_feature_net.py "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    (args.out / f"{name}.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {weights} ({weights.stat().st_size / 1024:.0f} KiB) and {name}.json")


if __name__ == "__main__":
    main()
