"""Every registered recipe passes one lifecycle through the command line.

train tiny -> stop part-way (as a killed job) -> resume -> same result as an
uninterrupted run -> eval --json -> sample -> report. A new recipe without an
entry in TINY fails here, so none ships untested.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from ebmlab.cli.app import main
from ebmlab.experiments.registry import recipes
from ebmlab.experiments.run_folder import RunFolder
from ebmlab.training.checkpoint import load_checkpoint

# Options that make each recipe's run take a second or two, and the steps to stop after.
TINY: dict[str, tuple[list[str], int]] = {
    # PCD with tempering and a likelihood logged while training: every replica and the
    # centering offsets must resume bit for bit (plain PCD: tests/experiments/test_resume.py).
    "rbm": (
        [
            "--n-hidden",
            "8",
            "--epochs",
            "3",
            "--batch-size",
            "50",
            "--persistent",
            "--tempering",
            "3",
            "--loglik-every",
            "1",
            "--loglik-chains",
            "4",
            "--loglik-betas",
            "20",
        ],
        1,
    ),  # fmt: skip
    "dbn": (["--layers", "8,4", "--epochs", "1", "--finetune-epochs", "2"], 1),
    "dbm": (["--layers", "8,4", "--epochs", "2", "--pretrain-epochs", "1"], 1),
    "bm": (["--n-hidden", "1", "--epochs", "4", "--checkpoint-every", "1"], 2),
    "jem": (
        [
            "--backbone",
            "mlp",
            "--hidden-sizes",
            "8",
            "--n-train",
            "64",
            "--batch-size",
            "8",
            "--iterations",
            "6",
            "--n-steps",
            "1",
            "--buffer-size",
            "20",
            "--warmup-iterations",
            "1",
            "--log-every",
            "2",
            "--checkpoint-every",
            "2",
        ],
        2,
    ),  # fmt: skip
    "ebm2d": (
        [
            "--iterations",
            "6",
            "--n-steps",
            "1",
            "--buffer-size",
            "50",
            "--hidden-sizes",
            "8",
            "--log-every",
            "2",
            "--checkpoint-every",
            "2",
            "--n-data",
            "500",
        ],
        2,
    ),  # fmt: skip
    "sgld-mixture": (["--n-steps", "200", "--n-chains", "4", "--steps-per-chunk", "50"], 2),
}
TIMING_KEYS = ("seconds", "epoch_seconds")


def cli(args: list[str], capsys) -> str:
    try:
        main(args)
    except SystemExit as exit_:
        assert not exit_.code, capsys.readouterr().err
    return capsys.readouterr().out


def untimed(folder: RunFolder) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k not in TIMING_KEYS and not k.endswith("_seconds")}
        for r in folder.read_metrics()
    ]


def final_model(folder: RunFolder) -> dict[str, torch.Tensor]:
    return load_checkpoint(folder.checkpoints.latest())[0]


def test_every_recipe_has_a_lifecycle_entry():
    assert sorted(recipes()) == sorted(TINY)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_lifecycle(name, tmp_path, capsys):
    options, stop_after = TINY[name]
    train = ["train", name, *options, "--no-progress"]
    whole, parted = tmp_path / "whole", tmp_path / "parted"
    cli([*train, "--out", str(whole)], capsys)
    cli([*train, "--out", str(parted), "--stop-after", str(stop_after)], capsys)
    stopped = RunFolder(parted)
    assert not any(stopped.figures.iterdir()), "a stopped run drew its final figures"
    cli(["train", name, "--resume", str(parted), "--no-progress"], capsys)

    reference, resumed = RunFolder(whole), RunFolder(parted)
    expected, got = final_model(reference), final_model(resumed)
    assert expected.keys() == got.keys()
    for key in expected:  # bit for bit on CPU
        assert torch.equal(expected[key], got[key]), (name, key)
    assert untimed(resumed) == untimed(reference)
    assert (resumed.path / "config.yaml").read_text() == (whole / "config.yaml").read_text()

    result = json.loads(cli(["eval", str(parted), "--json"], capsys))
    assert result["model"] == name

    figure = tmp_path / "samples.png"
    cli(["sample", str(parted), "--n", "4", "--n-steps", "2", "--out", str(figure)], capsys)
    assert figure.stat().st_size > 500

    report = tmp_path / "report"
    cli(
        ["report", str(parted), "--out", str(report), "--n-samples", "16", "--n-steps", "2"], capsys
    )
    with (report / "report.csv").open() as handle:
        (row,) = csv.DictReader(handle)
    assert row["run"] == str(parted) and row["model"]


@pytest.mark.parametrize(
    ("name", "options", "longer"),
    [
        ("dbn", ["--layers", "8,4", "--epochs", "1", "--finetune-epochs", "0"], ["--epochs", "2"]),
        ("dbm", ["--layers", "8,4", "--epochs", "1", "--pretrain-epochs", "1"], ["--pretrain-epochs", "2"]),
    ],
)  # fmt: skip
def test_finished_pretraining_cannot_grow_on_resume(name, options, longer, tmp_path, capsys):
    run = tmp_path / name
    cli(["train", name, *options, "--no-progress", "--out", str(run)], capsys)
    before = (run / "config.yaml").read_text()
    with pytest.raises(SystemExit) as exit_:
        main(["train", name, "--resume", str(run), *longer, "--no-progress"])
    assert exit_.value.code == 2
    assert "cannot change when resuming" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == before  # refused before anything was written
