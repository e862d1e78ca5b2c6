"""scripts/mutation_report.py: mutmut's result lines become per-module counts and a kill
rate in which untested mutants count against the score and listed equivalents do not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _report():
    spec = importlib.util.spec_from_file_location(
        "mutation_report", ROOT / "scripts/mutation_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LINES = [
    "    ebmlab.samplers.gibbs.xǁGibbsǁstep__mutmut_1: killed",
    "    ebmlab.samplers.gibbs.xǁGibbsǁstep__mutmut_2: survived",
    "    ebmlab.samplers.gibbs.x_run_chain__mutmut_1: timeout",
    "    ebmlab.samplers.gibbs.x_run_chain__mutmut_2: no tests",
    "    ebmlab.models.rbm.xǁRBMǁenergy__mutmut_1: survived",
    "    ebmlab.models.rbm.xǁRBMǁenergy__mutmut_2: killed",
    "    ebmlab.models.rbm.xǁRBMǁenergy__mutmut_3: skipped",
    "    ebmlab.models.rbm.xǁRBMǁenergy__mutmut_4: not checked",
    "    ebmlab.models.bm.xǁBMǁenergy__mutmut_1: not checked",
    "a line mutmut prints that is not a result",
]


def test_results_are_counted_per_module_and_equivalents_apart():
    report = _report()
    results = report.read_results(LINES)
    assert len(results) == 9
    equivalent = {"ebmlab.models.rbm.xǁRBMǁenergy__mutmut_1": "same value"}
    counts = report.tally(results, equivalent)
    gibbs, rbm = counts["ebmlab.samplers.gibbs"], counts["ebmlab.models.rbm"]
    assert (gibbs["killed"], gibbs["timeout"], gibbs["survived"], gibbs["no tests"]) == (1, 1, 1, 1)
    assert (rbm["killed"], rbm["equivalent"], rbm["not checked"]) == (1, 1, 1)
    assert sum(rbm.values()) == 3  # skipped: dropped
    assert report.kill_rate(gibbs) == pytest.approx(2 / 4)  # untested counts against
    assert report.kill_rate(rbm) == pytest.approx(1.0)  # equivalent and unchecked: not counted
    assert report.kill_rate(counts["ebmlab.models.bm"]) != report.kill_rate(
        counts["ebmlab.models.bm"]
    )


def test_page_lists_survivors_and_reasons(tmp_path):
    report = _report()
    listed = tmp_path / "equivalent.txt"
    listed.write_text("# comment line\nebmlab.models.rbm.xǁRBMǁenergy__mutmut_1  # same value\n")
    equivalent = report.read_equivalent(listed)
    page = report.render(report.read_results(LINES), equivalent)
    assert "| all | 2 | 1 | 1 | 1 | 1 | 0 | 2 | 60.0% |" in page
    assert "| ebmlab.models.bm | 0 | 0 | 0 | 0 | 0 | 0 | 1 | - |" in page  # none checked: no rate
    assert "`ebmlab.samplers.gibbs.xǁGibbsǁstep__mutmut_2` (survived)" in page
    assert "`ebmlab.samplers.gibbs.x_run_chain__mutmut_2` (no tests)" in page
    assert "`ebmlab.models.rbm.xǁRBMǁenergy__mutmut_1`: same value" in page
