"""`ebmlab table`: the family's plan fits its budget, runs stop at their time limit, a killed
table resumes the model it was training instead of starting it again, and the report lists
every model."""

from __future__ import annotations

import csv
import json

import pytest

from ebmlab.experiments import driver
from ebmlab.experiments.family_table import (
    REPORT_SHARE,
    SLACK,
    UNMEASURED_SLACK,
    build_table,
    cpu_kind,
    family,
    plan_table,
    replan,
    seconds_per_unit,
)
from ebmlab.experiments.registry import get_recipe, open_run


@pytest.fixture(autouse=True)
def intel_costs(monkeypatch):
    """Plans from the Intel cost table whatever CPU runs the tests (the plans differ by kind)."""
    from ebmlab.experiments import family_table

    monkeypatch.setattr(family_table, "cpu_kind", lambda cpuinfo=None: "intel")


@pytest.mark.parametrize("dataset", ["digits", "fashion-mnist"])
@pytest.mark.parametrize("budget", [600.0, 9000.0])
def test_plan_spends_the_training_budget_and_no_more(dataset, budget):
    plans = plan_table(dataset, budget)
    training = budget * (1 - REPORT_SHARE)
    assert {p.entry.name for p in plans} == {e.name for e in family(dataset)}
    spent = sum(p.time_limit for p in plans)
    if all(p.units == p.entry.units[1] for p in plans):  # every model at its maximum
        assert spent <= training * SLACK
    else:
        assert spent == pytest.approx(training * SLACK)
    for plan in plans:
        low, high = plan.entry.units
        assert low <= plan.units <= high
        cost = seconds_per_unit(dataset)[plan.entry.name]
        allotted = plan.time_limit / SLACK
        if plan.units == high:  # at its maximum: given what it needs, the rest went on
            assert plan.units * cost <= allotted + 1e-9
        elif plan.units > low:  # the units fill the share to within one unit
            assert allotted - cost - 1e-9 < plan.units * cost <= allotted + 1e-9


def test_time_an_entry_cannot_use_goes_to_the_others():
    plans = {p.entry.name: p for p in plan_table("fashion-mnist", 9000.0)}
    rbm, jem, dbm = plans["rbm"], plans["jem"], plans["dbm"]
    assert rbm.units == rbm.entry.units[1]  # 100 epochs need less than its share
    share = 9000.0 * (1 - REPORT_SHARE) * SLACK / sum(e.share for e in family("fashion-mnist"))
    assert rbm.time_limit < share * rbm.entry.share
    for plan in (jem, dbm):  # so the others get more than their plain share
        assert plan.time_limit > share * plan.entry.share
    assert jem.time_limit / dbm.time_limit == pytest.approx(jem.entry.share / dbm.entry.share)


def test_plan_of_a_subset_gives_it_the_whole_budget():
    plans = plan_table("digits", 100.0, ["rbm", "dbm"])
    assert [p.entry.name for p in plans] == ["rbm", "dbm"]
    assert sum(p.time_limit for p in plans) == pytest.approx(100 * (1 - REPORT_SHARE) * SLACK)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cifar", 60.0, None), "dataset must be one of"),
        (("digits", 0.0, None), "budget must be a positive"),
        (("digits", float("nan"), None), "budget must be a positive"),
        (("digits", 60.0, ["rbm", "vae"]), "models must be names from"),
        (("digits", 60.0, []), "models must be names from"),
    ],
)
def test_plan_refuses_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        plan_table(*args)


def test_costs_follow_the_cpu_kind_and_an_unknown_one_gets_the_slowest():
    assert cpu_kind("processor : 0\nvendor_id : AuthenticAMD\n") == "amd"
    assert cpu_kind("vendor_id\t: GenuineIntel\nmodel name : Xeon\n") == "intel"
    assert cpu_kind("vendor_id : HygonGenuine\n") == cpu_kind("no vendor line") == "unknown"
    intel, amd = (
        seconds_per_unit("fashion-mnist", "intel"),
        seconds_per_unit("fashion-mnist", "amd"),
    )
    assert intel != amd and set(intel) == set(amd) == {e.name for e in family("fashion-mnist")}
    unknown = seconds_per_unit("fashion-mnist", "unknown")
    assert unknown == {name: max(intel[name], amd[name]) for name in intel}
    assert seconds_per_unit("digits", "amd") == seconds_per_unit("digits", "intel")  # only one


def _record(seconds, *, fraction=1.0, resumed=False):
    """A table.json record of a model trained for ``fraction`` of 10 units in ``seconds``."""
    return {"status": "finished" if fraction == 1 else "cut", "steps": int(100 * fraction),
            "total_steps": 100, "units": 10, "seconds": seconds, "resumed": resumed}  # fmt: skip


def test_replan_plans_the_rest_at_the_speed_the_trained_runs_measured():
    plans = plan_table("fashion-mnist", 7200.0)
    cost = seconds_per_unit("fashion-mnist")["classifier"]
    # The classifier took twice what the cost table predicts for the 8 units it trained.
    runs = {"classifier": _record(2 * 8 * cost, fraction=0.8)}
    rest = replan("fashion-mnist", 7200.0, plans, runs)
    assert [p.entry.name for p in rest] == [p.entry.name for p in plans[1:]]
    left = 7200.0 * (1 - REPORT_SHARE) - runs["classifier"]["seconds"]
    assert sum(p.time_limit for p in rest) == pytest.approx(left * SLACK)
    jem = rest[0]
    assert jem.estimated_seconds == pytest.approx(
        jem.units * 2 * seconds_per_unit("fashion-mnist")["jem"]
    )
    assert jem.units < plans[1].units  # a slower CPU buys fewer iterations, not a cut run


def test_replan_is_loose_until_a_speed_is_measured():
    plans = plan_table("fashion-mnist", 7200.0)
    first = replan("fashion-mnist", 7200.0, plans, {})
    assert [p.units for p in first] == [p.units for p in plans]
    assert first[0].time_limit == pytest.approx(plans[0].time_limit / SLACK * UNMEASURED_SLACK)
    # A resumed run's seconds cover only its resumed part: spent, but not a speed.
    runs = {"classifier": _record(30.0, resumed=True)}
    rest = replan("fashion-mnist", 7200.0, plans, runs)
    left = 7200.0 * (1 - REPORT_SHARE) - 30.0
    assert sum(p.time_limit for p in rest) == pytest.approx(left * UNMEASURED_SLACK)


def test_replan_with_the_budget_spent_gives_each_model_its_minimum():
    plans = plan_table("digits", 60.0, ["rbm", "dbm"])
    rest = replan("digits", 60.0, plans, {"rbm": _record(500.0)})
    (dbm,) = rest
    assert dbm.units == dbm.entry.units[0]
    assert dbm.time_limit == pytest.approx(dbm.estimated_seconds * SLACK) and dbm.time_limit > 0


def _rbm_config(epochs: int):
    return get_recipe("rbm").config_from_file(
        None, {"n_hidden": 8, "training.epochs": epochs, "validation_fraction": 0.0}
    )


def test_time_limit_stops_at_a_checkpoint_that_resume_continues(tmp_path):
    folder = driver.train(_rbm_config(4), tmp_path / "run", progress=False, time_limit=1e-9)
    recipe = open_run(folder.path)
    assert recipe.completed_steps() == 1  # the first step ends past any limit
    assert (folder.figures / "training_curves.png").is_file()  # a cut run still gets figures
    driver.resume(folder.path, progress=False)
    assert open_run(folder.path).completed_steps() == 4
    epochs = [r["epoch"] for r in folder.read_metrics() if "event" not in r]
    assert epochs == [1, 2, 3, 4]


def test_time_limit_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="time_limit must be a positive"):
        driver.train(_rbm_config(1), tmp_path / "run", progress=False, time_limit=0)


def _table(out, **options):
    options = {"models": ["rbm", "gaussian-rbm"], "n_samples": 16, "loglik": False,
               "progress": False, "echo": lambda line: None, **options}  # fmt: skip
    return build_table("digits", 30.0, out, **options)


def test_table_trains_each_model_and_reports_them_all(tmp_path):
    page = _table(tmp_path)
    assert page == tmp_path / "report.html" and page.is_file()
    state = json.loads((tmp_path / "table.json").read_text())
    assert set(state["runs"]) == {"rbm", "gaussian-rbm"}
    for name, record in state["runs"].items():
        assert record["status"] in ("finished", "cut")
        assert open_run(tmp_path / "runs" / name).completed_steps() == record["steps"]
    with (tmp_path / "report.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["model_class"] for r in rows) == ["Gaussian RBM", "RBM"]
    assert all(r["samples_figure"] for r in rows)


def test_killed_table_resumes_the_model_it_was_training(tmp_path):
    plan = plan_table("digits", 30.0, ["rbm", "gaussian-rbm"])[0]
    assert plan.entry.name == "rbm" and plan.units > 2
    settings = plan.entry.config_settings("digits", plan.units, None)
    config = get_recipe("rbm").config_from_file(None, settings)
    # What a kill during the rbm's third epoch leaves: a run folder checkpointed at epoch 2.
    run = driver.train(config, tmp_path / "runs" / "rbm", progress=False, stop_after=2)
    first = (run.path / "metrics.jsonl").read_text().splitlines()[:2]
    _table(tmp_path)
    record = json.loads((tmp_path / "table.json").read_text())["runs"]["rbm"]
    assert record["resumed"] is True
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    assert lines[:2] == first  # the first two epochs were kept, not trained again
    epochs = [json.loads(line)["epoch"] for line in lines if "event" not in json.loads(line)]
    assert epochs == list(range(1, record["steps"] + 1))


def test_finished_models_are_not_trained_again(tmp_path):
    _table(tmp_path)
    checkpoints = sorted((tmp_path / "runs" / "rbm" / "checkpoints").iterdir())
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    _table(tmp_path)
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps


def test_table_refuses_a_folder_made_with_other_arguments(tmp_path):
    _table(tmp_path, models=["rbm"])
    with pytest.raises(ValueError, match="holds a table made with"):
        _table(tmp_path)
