"""Does generative pretraining help a classifier? A DBN against the same MLP from random weights.

Pretrains a DBN greedily on every Fashion-MNIST training image (no labels), then fine-tunes
its up-pass as a sigmoid MLP with a softmax head, and trains the same MLP from a random
initialisation, with 60,000, 1,000 and 100 labelled examples; both are scored on the
10,000 test images. Writes a JSON of settings, accuracies and timings (updated after every
case, so a stopped run keeps what it finished).

Run (about 30 minutes on one CPU core with the defaults)::

    python examples/dbn_fashion_finetune.py --out benchmarks/dbn_fashion.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ebmlab.data import load_dataset
from ebmlab.models.dbn import DBN
from ebmlab.training.finetune import (
    DBNClassifier,
    FinetuneConfig,
    classifier_accuracy,
    finetune,
    labelled_subset,
)
from ebmlab.training.greedy import train_greedy
from ebmlab.training.trainer import CDConfig


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dbn_fashion_finetune.json"))
    parser.add_argument("--layers", type=int, nargs="+", default=[500, 500])
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--labelled", type=int, nargs="+", default=[60000, 1000, 100])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def finetune_config(n_labelled: int) -> FinetuneConfig:
    # Few labels: many cheap epochs, early stopping on the (small) held-out tenth.
    if n_labelled >= 10_000:
        return FinetuneConfig(epochs=15, lr=1e-3, batch_size=100, patience=3)
    return FinetuneConfig(epochs=200, lr=1e-3, batch_size=min(100, n_labelled // 2), patience=20)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    train = load_dataset("fashion-mnist", split="train")
    test = load_dataset("fashion-mnist", split="test")
    cd = CDConfig(
        epochs=args.pretrain_epochs, batch_size=100, lr=0.05, cd_k=1, dynamic_binarization=True
    )
    upper = CDConfig(epochs=args.pretrain_epochs, batch_size=100, lr=0.05, cd_k=1)
    report: dict = {
        "dataset": "fashion-mnist",
        "layer_sizes": [784, *args.layers],
        "pretraining": {"bottom": cd.to_dict(), "upper": upper.to_dict(), "propagation": "mean"},
        "threads": args.threads,
        "seed": args.seed,
        "cases": [],
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))

    generator = torch.Generator().manual_seed(args.seed)
    dbn = DBN([784, *args.layers], generator=generator)
    start = time.perf_counter()
    epochs: list[dict] = []

    def log_epoch(layer: int, epoch: int, record: dict) -> None:
        seconds = record["epoch_seconds"]
        epochs.append({"layer": layer, "epoch": epoch, "loss": record["loss"], "seconds": seconds})
        print(f"pretrain layer {layer} epoch {epoch}: {seconds:.1f} s", flush=True)

    layer_configs = [cd, *[upper] * (len(args.layers) - 1)]
    train_greedy(dbn, train.images, layer_configs, generator=generator, on_epoch=log_epoch)
    report["pretraining"].update(seconds=time.perf_counter() - start, epochs=epochs)
    save()

    for n_labelled in args.labelled:
        index = labelled_subset(train.labels, n_labelled, seed=args.seed)
        images, labels = train.images[index], train.labels[index]
        config = finetune_config(n_labelled)
        for init in ("dbn", "random"):
            head_generator = torch.Generator().manual_seed(args.seed + 2)
            if init == "dbn":
                model = DBNClassifier.from_dbn(dbn, 10, generator=head_generator)
            else:
                model = DBNClassifier(dbn.layer_sizes, 10, generator=head_generator)
            start = time.perf_counter()
            trainer = finetune(model, images, labels, config, seed=args.seed)
            case = {
                "n_labelled": int(index.numel()),
                "init": init,
                "test_accuracy": classifier_accuracy(model, test.images, test.labels),
                "validation_accuracy": trainer.best_accuracy,
                "best_epoch": trainer.best_epoch,
                "epochs_run": trainer.epoch,
                "seconds": time.perf_counter() - start,
                "finetune": config.to_dict(),
            }
            report["cases"].append(case)
            save()
            print(json.dumps(case), flush=True)


if __name__ == "__main__":
    main()
