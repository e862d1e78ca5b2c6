"""A 2-hidden-layer DBM against an RBM of the same top width on binarised Fashion-MNIST.

Trains both on the first ``--n-train`` training images (fixed stochastic binarisation),
then reports, as one JSON file:

* the DBM's test log-likelihood lower bound (mean-field ELBO, AIS log Z with its 3-sigma
  interval) and the RBM's AIS test log-likelihood (exact given Z, same AIS settings);
* test accuracy of logistic regression on mean-field / p(h|v) features and of the
  fine-tuned network (docs/models/dbm.md);
* wall-clock times; sample grids are written next to the JSON.

Usage: ``python examples/dbm_vs_rbm_fashion.py --out /tmp/dbm_fashion [--quick]``
(needs Fashion-MNIST: ``apt-get install dataset-fashion-mnist`` or ``--data-dir``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ebmlab.estimators.ais import ais_log_partition
from ebmlab.estimators.dbm import dbm_elbo
from ebmlab.estimators.likelihood import log_likelihood
from ebmlab.experiments import driver
from ebmlab.experiments.dbm import DBMExperimentConfig
from ebmlab.experiments.registry import open_run
from ebmlab.models.dbm import DBM, DBMClassifier
from ebmlab.models.rbm import BernoulliRBM
from ebmlab.samplers.gibbs import sample_visible
from ebmlab.training.dbm import DBMTrainingConfig, classifier_accuracy, fit_classifier
from ebmlab.training.trainer import CDConfig, CDTrainer
from ebmlab.viz.images import save_image_grid


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dbm_vs_rbm_fashion"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--hidden", type=int, nargs=2, default=[200, 200])
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rbm-epochs", type=int, default=100)
    parser.add_argument(
        "--n-betas", type=int, default=None, help="AIS temperatures (default 14,501)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny settings to check the script")
    return parser.parse_args()


def dbm_config(args) -> DBMExperimentConfig:
    training = DBMTrainingConfig(
        epochs=args.epochs,
        lr=0.01,
        final_lr_fraction=0.1,
        weight_decay=2e-4,
        n_chains=100,
        gibbs_steps=5,
        mean_field_iterations=10,
        pretraining=CDConfig(
            epochs=args.pretrain_epochs, lr=0.05, persistent=True, weight_decay=2e-4
        ),
    )
    return DBMExperimentConfig(
        dataset="fashion-mnist",
        data_dir=args.data_dir,
        layers=list(args.hidden),
        binarization="stochastic",
        n_train=args.n_train,
        classifier_epochs=20,
        fine_tune_epochs=20,
        classifier_lr=3e-3,
        training=training,
    )


def evaluate_dbm_run(recipe, n_betas) -> dict:
    model, data, scores = recipe.model, recipe.data, recipe.classifier
    generator = torch.Generator().manual_seed(0)
    log_z = ais_log_partition(
        model, n_chains=100, betas=n_betas, base_data=data.train, generator=generator
    )
    bound = dbm_elbo(model, data.test, log_z, n_iterations=30)
    return {
        "loglik_bound": bound.to_dict(),
        "log_z": log_z.to_dict(),
        "linear_accuracy": scores["linear_accuracy"],
        "test_accuracy": scores["test_accuracy"],
    }


def train_rbm(args, data, n_hidden) -> tuple[BernoulliRBM, float]:
    generator = torch.Generator().manual_seed(0)
    rbm = BernoulliRBM(data.train.shape[1], n_hidden, generator=generator)
    rbm.init_visible_bias(data.train)
    config = CDConfig(epochs=args.rbm_epochs, lr=0.05, persistent=True, weight_decay=2e-4)
    trainer = CDTrainer(rbm, config, generator=generator)
    start = time.perf_counter()
    for _ in range(config.epochs):
        trainer.train_epoch(data.train)
    return rbm, time.perf_counter() - start


def rbm_classifier(rbm: BernoulliRBM, data, labels, test_labels) -> dict:
    # A one-hidden-layer DBM is the RBM: reuse the DBM classifier (h = sigma(b + W^T v)).
    as_dbm = DBM([rbm.n_visible, rbm.n_hidden])
    with torch.no_grad():
        as_dbm.weights[0].copy_(rbm.weight)
        as_dbm.biases[0].copy_(rbm.visible_bias)
        as_dbm.biases[1].copy_(rbm.hidden_bias)
    classifier = DBMClassifier(as_dbm, 10)
    train_inputs, test_inputs = (data.train, []), (data.test, [])
    # The same classifier settings as the DBM recipe's (dbm_config).
    options = {"lr": 3e-3, "batch_size": 100, "generator": torch.Generator().manual_seed(2)}
    fit_classifier(classifier, train_inputs, labels, epochs=20, fine_tune=False, **options)
    linear = classifier_accuracy(classifier, test_inputs, test_labels)
    fit_classifier(classifier, train_inputs, labels, epochs=20, **options)
    return {
        "linear_accuracy": linear,
        "test_accuracy": classifier_accuracy(classifier, test_inputs, test_labels),
    }


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.n_train, args.hidden, args.pretrain_epochs, args.epochs = 1000, [50, 50], 2, 2
        args.rbm_epochs, args.n_betas = 4, 1000
    args.out.mkdir(parents=True, exist_ok=True)
    config = dbm_config(args)
    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    }

    start = time.perf_counter()
    driver.train(config, args.out / "dbm_run", overwrite=True, progress=False)
    report["dbm"] = {
        "train_seconds": time.perf_counter() - start,
        "layer_sizes": [784, *args.hidden],
    }
    start = time.perf_counter()
    recipe = open_run(args.out / "dbm_run")  # the trained DBM, its data and classifier scores
    data, labels, test_labels = recipe.data, recipe.labels, recipe.test_labels
    report["dbm"].update(evaluate_dbm_run(recipe, args.n_betas))
    report["dbm"]["eval_seconds"] = time.perf_counter() - start

    rbm, seconds = train_rbm(args, data, args.hidden[-1])
    report["rbm"] = {
        "train_seconds": seconds,
        "n_hidden": args.hidden[-1],
        "epochs": args.rbm_epochs,
    }
    start = time.perf_counter()
    log_z = ais_log_partition(
        rbm,
        n_chains=100,
        betas=args.n_betas,
        base_data=data.train,
        generator=torch.Generator().manual_seed(0),
    )
    report["rbm"]["test_loglik"] = log_likelihood(rbm, data.test, log_z).to_dict()
    report["rbm"]["log_z"] = log_z.to_dict()
    report["rbm"]["eval_seconds"] = time.perf_counter() - start
    report["rbm"].update(rbm_classifier(rbm, data, labels, test_labels))
    samples = sample_visible(rbm, 64, 1000, generator=torch.Generator().manual_seed(1))
    save_image_grid(
        samples, (28, 28), args.out / "rbm_samples.png", title="RBM samples (1,000 sweeps)"
    )

    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
