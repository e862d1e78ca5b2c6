"""The RBM recipe's training options through the command line: centering, tempering, AIS curves."""

from __future__ import annotations

import json

import pytest

from ebmlab.cli.app import main

TRAIN = ["train", "rbm", "--dataset", "digits", "--n-hidden", "16", "--batch-size", "50"]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tempering_and_cheap_likelihood_are_logged_and_plotted(tmp_path, capsys):
    run = tmp_path / "run"
    args = [*TRAIN, "--epochs", "4", "--persistent", "--tempering", "4", "--loglik-every", "2",
            "--loglik-chains", "8", "--loglik-betas", "200", "--no-progress", "--out", str(run)]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    logged = records(run)
    # The estimate every second epoch only, with its interval and what it is.
    with_ais = [r["epoch"] for r in logged if "validation_loglik_ais" in r]
    assert with_ais == [2, 4]
    last = logged[-1]
    assert last["validation_loglik_ais_lower"] <= last["validation_loglik_ais"] < 0
    assert "AIS, 8 chains x 200 temperatures" in last["validation_loglik_ais_method"]
    # Swap acceptance per neighbour pair of the 4 replicas, each a rate.
    assert len(last["tempering_swap_acceptance"]) == 3
    assert all(0 <= a <= 1 for a in last["tempering_swap_acceptance"])
    assert last["tempering_swap_acceptance_min"] == min(last["tempering_swap_acceptance"])
    assert 0 < last["tempering_min_beta"] < 1
    assert (run / "figures" / "training_curves.png").stat().st_size > 1000
    config = (run / "config.yaml").read_text()
    assert "centering: true" in config and "tempering: 4" in config


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tempering", "3"], "tempering > 1 needs persistent=True"),
        (["--persistent", "--tempering", "0"], "tempering must be a positive integer"),
        (["--persistent", "--tempering", "3", "--tempering-min-beta", "1.5"], "min_beta"),
        (["--persistent", "--tempering", "3", "--tempering-ladder", "cubic"], "kind"),
        (["--persistent", "--tempering", "3", "--tempering-target-acceptance", "1"],
         "tempering_target_acceptance must lie in (0, 1)"),
        (["--offset-rate", "0"], "offset_rate must lie in (0, 1]"),
        (["--loglik-every", "-1"], "loglik_every"),
        (["--loglik-every", "1", "--visible", "gaussian"], "loglik_every needs visible='bernoulli'"),
    ],
)  # fmt: skip
def test_bad_training_options_are_one_clear_error(tmp_path, capsys, extra, message):
    code, _, err = run_cli([*TRAIN, *extra, "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
