"""`ebmlab report` on two tiny runs: one table row per run, numbers with their settings."""

from __future__ import annotations

import csv

from ebmlab.cli.app import main


def run_cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit_:
        return exit_.code or 0
    return 0


def test_report_on_two_tiny_runs(tmp_path, capsys):
    rbm, bm, out = tmp_path / "rbm", tmp_path / "bm", tmp_path / "report"
    common = ["--no-progress"]
    assert (
        run_cli(["train", "rbm", "--n-hidden", "8", "--epochs", "1", "--out", str(rbm), *common])
        == 0
    )
    assert run_cli(["train", "bm", "--n-hidden", "1", "--epochs", "3", "--out", str(bm)]) == 0
    code = run_cli(
        [
            "report",
            str(rbm),
            str(bm),
            "--out",
            str(out),
            "--n-samples",
            "50",
            "--n-steps",
            "10",
            "--loglik",
            "--n-betas",
            "50",
        ]
    )
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [r["model_class"] for r in rows] == ["RBM", "Boltzmann machine"]
    rbm_row, bm_row = rows
    # IS lies in [1, n_classes]; FID is a squared distance; digits has its own feature net.
    assert 1.0 <= float(rbm_row["inception_score"]) <= 10.0 and float(rbm_row["fid"]) >= 0
    assert "digits-cnn" in rbm_row["settings"] and "50 samples" in rbm_row["settings"]
    assigned = int(rbm_row["classes_assigned"])  # the feature net's verdicts on 50 samples
    assert 1 <= assigned <= 10 and 1.0 <= float(rbm_row["effective_classes"]) <= assigned
    assert f"assigns {assigned} of 10 classes to the samples" in rbm_row["is_note"]
    assert rbm_row["loglik_kind"] == "AIS" and float(rbm_row["test_loglik"]) < 0
    assert (
        bm_row["loglik_kind"] == "exact" and bm_row["fid"] == ""
    )  # no feature net for bars-and-stripes
    # The RBM has no classifier: the report's linear probe on its 8 hidden means, marked so
    # (chance is 0.1); the Boltzmann machine's bars and stripes carry no labels to probe.
    assert rbm_row["accuracy_kind"] == "linear probe" and float(rbm_row["test_accuracy"]) > 0.2
    assert rbm_row["accuracy_note"].startswith("linear probe: logistic regression on frozen")
    assert "(8 features)" in rbm_row["accuracy_note"]
    assert bm_row["test_accuracy"] == "" and bm_row["accuracy_kind"] == ""
    assert "no linear probe: a bm run has no hidden-unit features" in bm_row["accuracy_note"]
    text = (out / "report.md").read_text()
    # One row per run, each under the lecture's class column (both are generative).
    assert text.count("\n| generative | RBM |") == 1
    assert " (linear probe) |" in text.split("\n| generative | RBM |")[1].split("\n")[0]
    assert text.count("\n| generative | Boltzmann machine |") == 1
    assert (out / rbm_row["samples_figure"]).is_file() and (out / "report.html").is_file()


def test_report_marks_a_run_that_stopped_early(tmp_path):
    run, out = tmp_path / "rbm", tmp_path / "report"
    train = ["train", "rbm", "--n-hidden", "8", "--epochs", "3", "--stop-after", "1"]
    assert run_cli([*train, "--out", str(run), "--no-progress"]) == 0
    args = ["report", str(run), "--out", str(out), "--n-samples", "20", "--n-steps", "5"]
    assert run_cli([*args, "--no-probe", "--no-progress"]) == 0
    with (out / "report.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["key_settings"].endswith("UNFINISHED: trained 1 of 3 epochs")
    assert "UNFINISHED: trained 1 of 3 epochs" in (out / "report.html").read_text()


def test_loglik_note_gives_the_weight_ess_and_says_when_the_interval_is_open():
    from ebmlab.experiments.report_rows import loglik_cell

    log_z = {"n_chains": 100, "n_betas": 14501, "weight_ess": 37.25, "interval_closed": True}
    entry = {"value": -230.0, "lower": -230.4, "upper": -229.7}
    cell = loglik_cell("rbm", {"test_loglik": entry, "log_z": log_z}, asked=True)
    assert (cell.value, cell.lower, cell.upper) == (-230.0, -230.4, -229.7)
    assert "100 chains x 14,501 temperatures (weight ESS 37.2 of 100)" in cell.note
    assert "OPEN" not in cell.note
    opened = {**log_z, "weight_ess": 1.01, "interval_closed": False}
    bound = {"value": -300.0, "lower": -301.0, "upper": float("inf")}
    cell = loglik_cell("dbm", {"loglik_bound": bound, "log_z": opened}, asked=True)
    assert (cell.lower, cell.upper) == (None, None) and "the interval is OPEN" in cell.note
    old = loglik_cell("rbm", {"test_loglik": entry, "log_z": {"n_chains": 100}}, asked=True)
    assert "ESS" not in old.note  # evaluated before the ESS was recorded
