"""`ebmlab report` writes report.html: one page, grouped as in the lecture, offline, with notes.

Also: the class of a run comes from its config, the estimate line is printed before
the work and measured rather than guessed, and --no-progress silences the bars.
"""

from __future__ import annotations

import base64
import csv
import re
import time
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
import torch

from ebmlab.experiments.dbm import DBMExperimentConfig
from ebmlab.experiments.dbn import DBNExperimentConfig
from ebmlab.experiments.jem import JEMExperimentConfig
from ebmlab.experiments.rbm import RBMExperimentConfig
from ebmlab.experiments.report_costs import SamplerTiming, time_sampler
from ebmlab.experiments.report_features import (
    inception_note,
    is_standard_inception,
    shipped_net_note,
)
from ebmlab.experiments.report_rows import GROUPS, ModelClass, model_class
from ebmlab.training.finetune import FinetuneConfig
from ebmlab.training.jem import JEMConfig
from tests.experiments.test_report import run_cli

PNG = b"\x89PNG\r\n\x1a\n"
TINY_JEM = ["--backbone", "small-cnn", "--width", "4", "--n-train", "64", "--iterations", "4",
            "--batch-size", "8", "--buffer-size", "40", "--n-steps", "2",
            "--warmup-iterations", "1", "--checkpoint-every", "2", "--log-every", "2",
            "--lr", "1e-3", "--no-progress"]  # fmt: skip


def jem(**training) -> JEMExperimentConfig:
    return JEMExperimentConfig(training=JEMConfig(**training))


@pytest.mark.parametrize(
    ("recipe", "config", "expected"),
    [
        ("jem", jem(), ModelClass("hybrid", "JEM")),
        ("jem", jem(p_x_weight=0.0), ModelClass("discriminative", "classifier")),
        (
            "jem",
            jem(p_x_weight=0.0, p_x_given_y_weight=1.0),
            ModelClass("hybrid", "JEM, p(x|y) factorisation"),
        ),  # fmt: skip
        ("jem", jem(p_x_given_y_weight=0.5), ModelClass("hybrid", "JEM + p(x|y) term")),
        ("dbn", DBNExperimentConfig(), ModelClass("hybrid", "DBN, fine-tuned")),
        (
            "dbn",
            DBNExperimentConfig(finetune=FinetuneConfig(epochs=0)),
            ModelClass("generative", "DBN"),
        ),  # fmt: skip
        ("dbm", DBMExperimentConfig(), ModelClass("generative", "DBM")),
        ("dbm", DBMExperimentConfig(classifier_epochs=3), ModelClass("generative", "DBM")),
        (
            "dbm",
            DBMExperimentConfig(classifier_epochs=3, fine_tune_epochs=2),
            ModelClass("hybrid", "DBM, fine-tuned"),
        ),  # fmt: skip
        ("rbm", RBMExperimentConfig(), ModelClass("generative", "RBM")),
        ("rbm", RBMExperimentConfig(visible="gaussian"), ModelClass("generative", "Gaussian RBM")),
        ("bm", SimpleNamespace(), ModelClass("generative", "Boltzmann machine")),
        ("ebm2d", SimpleNamespace(), ModelClass("generative", "2-D EBM")),
        ("somebody-elses-model", SimpleNamespace(), ModelClass("other", "somebody-elses-model")),
    ],
)
def test_model_class_comes_from_the_config(recipe, config, expected):
    assert model_class(recipe, config) == expected
    assert expected.group in GROUPS


def test_only_the_standard_inception_file_is_comparable_to_papers(tmp_path):
    fake = tmp_path / "pt_inception-2015-12-05-6726825d.pth"  # the right name, wrong bytes
    fake.write_bytes(b"not the weights")
    assert not is_standard_inception(fake)
    assert "not the standard" in inception_note(fake, False)
    assert "comparable to published" in inception_note(fake, True)
    shipped = shipped_net_note("digits-cnn", {"dataset": "digits", "test_accuracy": 0.99})
    assert "only within ebmlab" in shipped and "comparable to published" not in shipped


class SleepySampler:
    """A recipe whose sampler costs a known time: per call, per step, per chain-step."""

    name, device = "sleepy", "cpu"
    call, step, chain_step = 0.010, 0.004, 0.0001

    def sample(self, n, n_steps, *, generator):
        time.sleep(self.call + n_steps * (self.step + n * self.chain_step))
        return torch.zeros(n, 2), "naps"


def test_time_sampler_measures_fixed_and_per_chain_costs():
    timing = time_sampler(SleepySampler(), chains=64)
    assert isinstance(timing, SamplerTiming) and timing.description == "naps"
    truth = 4 * SleepySampler.call + 50 * (4 * SleepySampler.step + 256 * SleepySampler.chain_step)
    # Sleeping overshoots a little, and a loaded machine more: generous, one-sided slack.
    assert 0.8 * truth <= timing.seconds(256, 50, n_calls=4) <= 1.6 * truth
    # A linear-only model (no fixed part per step) would be off by more than this for 8 chains.
    small = 50 * (SleepySampler.step + 8 * SleepySampler.chain_step) + SleepySampler.call
    assert 0.8 * small <= timing.seconds(8, 50) <= 1.6 * small


class Page(HTMLParser):
    """What the tests look at: group headings, images, links, notes, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.groups, self.images, self.links, self.scripts = [], [], [], 0
        self.notes, self._in_note = [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "tr" and "group" in classes:
            self.groups.append([c for c in classes if c != "group"][0])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag in ("a", "link") and "href" in attrs:
            self.links.append(attrs["href"])
        self.scripts += tag == "script"
        if tag == "div" and "note" in classes:
            self._in_note += 1
            self.notes.append("")

    def handle_endtag(self, tag):
        if tag == "div" and self._in_note:
            self._in_note -= 1

    def handle_data(self, data):
        if self._in_note:
            self.notes[-1] += data


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-html")
    jem_run, classifier, rbm = root / "jem", root / "classifier", root / "rbm"
    assert run_cli(["train", "jem", *TINY_JEM, "--out", str(jem_run)]) == 0
    assert run_cli(["train", "jem", *TINY_JEM, "--p-x-weight", "0", "--out", str(classifier)]) == 0
    rbm_args = ["train", "rbm", "--n-hidden", "8", "--epochs", "1", "--no-progress"]
    assert run_cli([*rbm_args, "--out", str(rbm)]) == 0
    return root, [str(jem_run), str(classifier), str(rbm)]


def report(runs, out, *extra) -> int:
    args = ["report", *runs, "--out", str(out), "--n-samples", "20", "--n-steps", "3", *extra]
    return run_cli(args)


def test_report_html_is_one_offline_page_grouped_as_in_the_lecture(runs, capsys):
    root, run_dirs = runs
    out = root / "out"
    assert report(run_dirs, out) == 0, capsys.readouterr().err
    text = (out / "report.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    assert page.groups == ["hybrid", "discriminative", "generative"]
    assert page.scripts == 0 and not re.search(r"(src|href)\s*=\s*[\"']?\s*https?:", text)
    assert all(not link.startswith(("http:", "https:", "//")) for link in page.links)
    # Three runs: samples and curves each, and JEM's two reliability diagrams.
    assert len(page.images) == 8
    for source in page.images:
        if source.startswith("data:"):
            assert source.startswith("data:image/png;base64,")
            assert base64.b64decode(source.split(",", 1)[1], validate=True).startswith(PNG)
        else:
            assert (out / source).is_file()
    notes = " | ".join(page.notes)
    assert "20 samples x 3 SGLD steps from buffer" in notes  # the JEM's chains and start
    assert "20 samples x 3 SGLD steps from noise" in notes  # the classifier has no buffer
    assert "20 samples x 3 Gibbs sweeps" in notes and "digits-cnn" in notes
    # The RBM has no classifier: its accuracy is the report's linear probe, marked as one.
    assert "linear probe: logistic regression on frozen hidden means" in notes
    assert re.search(r"<b>\d+\.\d+% \(linear probe\)</b>", text)
    assert "accuracy of a linear probe the report fits" in text  # the reading notes say so
    assert "comparable only within ebmlab" in text and "comparable to published" not in text
    assert len(text) < 3_000_000


def test_report_prints_its_estimate_first_and_no_progress_silences_bars(runs, capsys):
    root, run_dirs = runs
    capsys.readouterr()
    assert report(run_dirs, root / "quiet", "--no-progress") == 0
    quiet = capsys.readouterr().err
    lines = quiet.splitlines()
    estimate = next(i for i, line in enumerate(lines) if line.startswith("jem 00-jem: evaluated"))
    assert re.search(r"20 samples x 3 SGLD steps from buffer \(about [\d.]+ s\)", lines[estimate])
    assert re.search(r"IS/FID features of \d+ images \(digits-cnn\)", lines[estimate])
    assert estimate < next(i for i, line in enumerate(lines) if "done in" in line)
    rbm = next(line for line in lines if line.startswith("rbm 02-rbm: evaluated"))
    assert re.search(r"linear probe on \d+ train \+ \d+ test images \(8 features\)", rbm)
    assert "%|" not in quiet and "sample/s" not in quiet
    assert report(run_dirs, root / "loud", "--no-probe") == 0
    assert "00-jem sampling" in capsys.readouterr().err  # the bar of the same steps
    # --no-probe: the RBM's accuracy stays empty, and the page says why.
    rbm_row = list(csv.DictReader((root / "loud" / "report.csv").open()))[2]
    assert rbm_row["test_accuracy"] == "" and rbm_row["accuracy_note"].endswith("(probe off)")
    assert "The report fitted no probe (--no-probe)" in (root / "loud" / "report.html").read_text()
