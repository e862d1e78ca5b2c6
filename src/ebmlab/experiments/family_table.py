"""``ebmlab table``: train the whole family within a wall-clock budget, then report it.

The lecture closes with one table over the family (hybrid, discriminative and
generative models; accuracy, IS, FID). :func:`build_table` reproduces it on one
dataset in three steps:

1. **Plan.** Every model of :func:`family` gets a share of the training budget
   and, from its measured cost per unit of training (an epoch, or an iteration
   for JEM; :func:`seconds_per_unit`, by CPU kind), as many units as fit, clamped to a range
   where its recommended settings make sense; what a model at its maximum cannot
   use is shared out among the others. The plan is printed before any work starts.
2. **Train** each model into ``OUT/runs/NAME`` with a time limit of its share
   (plus :data:`SLACK`), so the budget holds on a slower CPU: a model that runs
   out of time stops at a checkpoint and is reported as cut. Before each model
   the rest of the plan is made again (:func:`replan`) from the training time
   left and the CPU's speed measured on the models trained so far, so a CPU
   slower or faster than the one the costs were measured on shortens or
   lengthens the later runs instead of cutting them. ``OUT/table.json``
   records what is finished; a killed ``ebmlab table`` run again with the same
   arguments resumes the model it was training from its last checkpoint and
   skips the finished ones.
3. **Report**: :func:`~ebmlab.experiments.report.write_report` over all runs,
   into ``OUT`` (``report.html``, ``report.md``, ``report.csv``).

The cost tables were measured on the machines of :data:`COSTS_MEASURED_ON`, one per
CPU kind; on another CPU the first model's estimate is off by their speed ratio (its
time limit is therefore looser, :data:`UNMEASURED_SLACK`), the later ones are planned
at the measured ratio, and the time limits keep the budget regardless.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebmlab.experiments import report_costs as costs

#: Datasets the table knows recommended settings for.
DATASETS = ("fashion-mnist", "digits")
#: Fraction of the budget kept for the report (sampling, IS/FID features, AIS).
REPORT_SHARE = 0.15
#: A model may run this much past its share before its time limit stops it.
SLACK = 1.25
#: The time limit's slack while the CPU's speed is unknown (the first model trained):
#: the costs may come from a faster CPU (AMD Zen 4 ran the classifier 1.37x slower than
#: the Intel machine), and what the first model overruns is taken from the later ones.
UNMEASURED_SLACK = 2.0


@dataclass(frozen=True)
class TableEntry:
    """One model of the table: its recipe, recommended settings and how they scale.

    ``scaled`` maps config fields (dotted) to multipliers of the entry's units:
    ``{"training.epochs": 1, "finetune.epochs": 2}`` gives a DBN of ``u`` greedy
    epochs per layer and up to ``2u`` fine-tuning epochs. ``share`` is the
    fraction of the training budget it gets; ``units`` the range its settings are
    meant for (a run below the minimum is not worth reporting; time a run at its
    maximum cannot use goes to the others, :func:`plan_table`).
    """

    name: str
    recipe: str
    settings: dict[str, Any]
    scaled: dict[str, float]
    share: float
    units: tuple[int, int]
    unit: str = "epoch"

    def config_settings(self, dataset: str, units: int, data_dir: str | None) -> dict[str, Any]:
        """The dotted settings of this entry's run with ``units`` units of training."""
        values = {"dataset": dataset, **self.settings}
        if data_dir is not None:
            values["data_dir"] = data_dir
        for dotted, multiplier in self.scaled.items():
            values[dotted] = max(1, round(multiplier * units))
        return values


# JEM++'s sampler (Yang & Ji 2021): few SGLD steps from a class-Gaussian buffer, clamped.
_JEM_PLUS_PLUS = {
    "training.lr": 1e-3,
    "training.n_steps": 5,
    "training.buffer_init": "class-gaussian",
    "training.clamp": True,
}


def family(dataset: str) -> list[TableEntry]:
    """The models of the lecture's table with their recommended settings on ``dataset``.

    Hybrid: JEM, its :math:`p(x \\mid y)` factorisation and a fine-tuned DBN;
    discriminative: the same backbone as a plain classifier; generative: an RBM, a
    Gaussian-Bernoulli RBM and a DBM (their accuracy comes from the report's
    linear probe or the DBM's softmax head on frozen features).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
    small = dataset == "digits"  # 8x8 images: smaller layers, units are cheap
    hidden, deep = (200, [200, 200]) if small else (500, [500, 500])
    iterations = (300, 20_000) if small else (500, 30_000)
    return [
        TableEntry("classifier", "jem", {**_JEM_PLUS_PLUS, "training.p_x_weight": 0.0},
                   {"training.iterations": 1}, 0.06, iterations, "iteration"),
        TableEntry("jem", "jem", dict(_JEM_PLUS_PLUS),
                   {"training.iterations": 1}, 0.24, iterations, "iteration"),
        TableEntry("jem-pxy", "jem",
                   {**_JEM_PLUS_PLUS, "training.p_x_weight": 0.0,
                    "training.p_x_given_y_weight": 1.0, "training.class_conditional": True},
                   {"training.iterations": 1}, 0.14, iterations, "iteration"),
        TableEntry("dbn", "dbn", {"layers": deep},
                   {"training.epochs": 1, "finetune.epochs": 2}, 0.14, (2, 50)),
        TableEntry("rbm", "rbm", {"n_hidden": hidden, "training.persistent": True},
                   {"training.epochs": 1}, 0.12, (2, 100)),
        TableEntry("gaussian-rbm", "rbm", {"n_hidden": hidden, "visible": "gaussian"},
                   {"training.epochs": 1}, 0.10, (2, 100)),
        TableEntry("dbm", "dbm",
                   {"layers": [hidden, 2 * hidden]},
                   {"training.epochs": 1, "training.pretraining.epochs": 1}, 0.20, (2, 100)),
    ]  # fmt: skip


#: Seconds per unit of each entry, by CPU kind and dataset, with torch's 2 threads, on the
#: machines of :data:`COSTS_MEASURED_ON`. intel fashion-mnist: seconds / units of the whole
#: runs of the 75-minute table; amd fashion-mnist: those of the 2-hour table, whose CPU was
#: shared with other work (an overestimate for a quiet machine, the safe side); digits:
#: ``benchmarks/time_family_table.py`` (the first 2 epochs or 40 iterations, data loading
#: included, so an overestimate for long runs). The ratios differ by model: the AMD machine
#: ran the convolutional JEMs 1.7x and the GEMM-bound DBN 2.3x slower than the Intel one,
#: which is why one speed factor cannot stand in for a table per CPU.
COSTS: dict[str, dict[str, dict[str, float]]] = {
    "intel": {
        "fashion-mnist": {
            "classifier": 0.024,
            "jem": 0.122,
            "jem-pxy": 0.090,
            "dbn": 3.26,
            "rbm": 1.89,
            "gaussian-rbm": 1.96,
            "dbm": 41.3,
        },
        "digits": {
            "classifier": 0.051,
            "jem": 0.039,
            "jem-pxy": 0.034,
            "dbn": 0.39,
            "rbm": 0.26,
            "gaussian-rbm": 0.23,
            "dbm": 0.63,
        },
    },
    "amd": {
        "fashion-mnist": {
            "classifier": 0.042,
            "jem": 0.208,
            "jem-pxy": 0.197,
            "dbn": 7.60,
            "rbm": 3.77,
            "gaussian-rbm": 4.33,
            "dbm": 54.0,
        },
    },
}
COSTS_MEASURED_ON = {
    "intel": "Intel Xeon (Sapphire Rapids class, AMX), 2 cores, torch 2.13",
    "amd": "AMD EPYC (Zen 4), 2 cores, torch 2.13",
}


def _costs_source(dataset: str) -> str:
    kind = cpu_kind()
    if dataset in COSTS.get(kind, {}):
        return f"this CPU's kind ({COSTS_MEASURED_ON[kind]})"
    return "another CPU kind (the slowest measured of each model)"


def cpu_kind(cpuinfo: str | None = None) -> str:
    """``"intel"``, ``"amd"`` or ``"unknown"``, from the vendor line of /proc/cpuinfo."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "unknown"
    for line in cpuinfo.splitlines():
        if line.startswith("vendor_id"):
            vendor = line.split(":", 1)[1].strip()
            return {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(vendor, "unknown")
    return "unknown"


def seconds_per_unit(dataset: str, kind: str | None = None) -> dict[str, float]:
    """The cost table of ``dataset`` for a CPU ``kind`` (default: this machine's).

    A kind without a table of its own for the dataset (another vendor, digits on AMD)
    gets, per entry, the slowest cost measured anywhere: the plan then errs towards
    finishing early, and the re-plan after the first model corrects the speed.
    """
    kind = cpu_kind() if kind is None else kind
    own = COSTS.get(kind, {}).get(dataset)
    if own is not None:
        return own
    tables = [by_dataset[dataset] for by_dataset in COSTS.values() if dataset in by_dataset]
    return {name: max(table[name] for table in tables) for name in tables[0]}


@dataclass(frozen=True)
class PlannedRun:
    """An entry with the units that fit its share and the time it may take."""

    entry: TableEntry
    units: int
    estimated_seconds: float
    time_limit: float

    def line(self) -> str:
        """One line of the printed plan."""
        return (
            f"  {self.entry.name:<13} {self.entry.recipe:<4} {self.units:>6,} "
            f"{self.entry.unit}s  ~{costs.duration(self.estimated_seconds):>8}  "
            f"(stops at {costs.duration(self.time_limit)})"
        )


def plan_table(dataset: str, budget: float, models: list[str] | None = None) -> list[PlannedRun]:
    """Units and time limits of each model for a ``budget`` in seconds (report included).

    ``models`` restricts the table to those entry names; their shares are
    renormalised so the training budget is still used.
    """
    if not (isinstance(budget, int | float) and math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a positive number of seconds, got {budget!r}")
    entries = family(dataset)
    if models is not None:
        known = [e.name for e in entries]
        unknown = sorted(set(models) - set(known))
        if unknown or not models:
            raise ValueError(f"models must be names from {', '.join(known)}; got {models!r}")
        entries = [e for e in entries if e.name in models]
    return _plan(entries, budget * (1 - REPORT_SHARE), seconds_per_unit(dataset))


def _plan(entries: list[TableEntry], seconds: float, costs_: dict[str, float],
          speed: float = 1.0, slack: float = SLACK) -> list[PlannedRun]:  # fmt: skip
    """Units and time limits for ``entries`` sharing ``seconds`` of training on a CPU
    ``speed`` times slower than the one ``costs_`` were measured on. A model always gets
    the time its minimum units need, even when the budget is spent."""
    local = {name: cost * speed for name, cost in costs_.items()}
    allotted = _share_out(entries, seconds, local)
    plans = []
    for entry in entries:
        per_unit, (low, high) = local[entry.name], entry.units
        units = min(high, max(low, int(allotted[entry.name] / per_unit + 1e-9)))
        limit = max(allotted[entry.name], units * per_unit) * slack
        plans.append(PlannedRun(entry, units, units * per_unit, limit))
    return plans


def replan(dataset: str, budget: float, plans: list[PlannedRun],
           runs: dict[str, dict[str, Any]]) -> list[PlannedRun]:  # fmt: skip
    """The plan for the models of ``plans`` not in ``runs`` (records of ``table.json``).

    They share the training time the recorded runs left, at the speed those runs
    measured: their seconds over what :func:`seconds_per_unit` predicts for the steps
    they trained. Resumed runs count their seconds but not towards the speed (their
    seconds cover only the resumed part). With no speed measured yet the time
    limits use :data:`UNMEASURED_SLACK`.
    """
    costs_ = seconds_per_unit(dataset)
    spent = sum(runs[p.entry.name]["seconds"] for p in plans if p.entry.name in runs)
    measured = [(p.entry.name, runs[p.entry.name]) for p in plans
                if p.entry.name in runs and not runs[p.entry.name]["resumed"]]  # fmt: skip
    predicted = sum(r["steps"] / r["total_steps"] * r["units"] * costs_[name]
                    for name, r in measured)  # fmt: skip
    speed = sum(r["seconds"] for _, r in measured) / predicted if predicted > 0 else 1.0
    left = [p.entry for p in plans if p.entry.name not in runs]
    seconds = max(0.0, budget * (1 - REPORT_SHARE) - spent)
    return _plan(left, seconds, costs_, speed, SLACK if predicted > 0 else UNMEASURED_SLACK)


def _share_out(entries: list[TableEntry], seconds: float, costs_: dict[str, float]) -> dict:
    """Seconds per entry: by share, and what an entry at its maximum units cannot use goes
    to the others by their shares (water-filling), so a long budget buys longer JEM and
    DBM runs rather than idle time."""
    allotted, open_ = {}, list(entries)
    while open_:
        total = sum(e.share for e in open_)
        full = [e for e in open_ if e.units[1] * costs_[e.name] < seconds * e.share / total]
        if not full:
            allotted.update({e.name: seconds * e.share / total for e in open_})
            break
        for entry in full:  # these get exactly what their maximum needs
            allotted[entry.name] = entry.units[1] * costs_[entry.name]
            seconds -= allotted[entry.name]
            open_.remove(entry)
    return allotted


@dataclass
class TableState:
    """``OUT/table.json``: the table's arguments and, per model, how its training ended."""

    path: Path
    dataset: str
    budget: float
    models: list[str]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, out: Path, dataset: str, budget: float, models: list[str]) -> TableState:
        """The state in ``out``, new or left by an earlier call with the same arguments."""
        path = out / "table.json"
        if not path.is_file():
            return cls(path, dataset, budget, models)
        saved = json.loads(path.read_text(encoding="utf-8"))
        mine = {"dataset": dataset, "budget": budget, "models": models}
        theirs = {key: saved.get(key) for key in mine}
        if theirs != mine:
            raise ValueError(
                f"{out} holds a table made with {theirs}; resume it with the same arguments "
                f"or choose another --out"
            )
        return cls(path, dataset, budget, models, saved.get("runs", {}))

    def save(self) -> None:
        record = {"dataset": self.dataset, "budget": self.budget, "models": self.models,
                  "runs": self.runs}  # fmt: skip
        temp = self.path.with_suffix(".json.tmp")
        temp.write_text(json.dumps(record, indent=2), encoding="utf-8")
        temp.replace(self.path)  # a kill mid-write leaves the old state, never half of it


def _train_one(plan: PlannedRun, dataset: str, run_dir: Path, data_dir: str | None,
               progress: bool) -> dict[str, Any]:  # fmt: skip
    """Train (or resume) one model under its time limit; what ``table.json`` records of it."""
    from ebmlab.experiments import driver
    from ebmlab.experiments.registry import get_recipe, open_run
    from ebmlab.experiments.run_folder import RunFolder

    start = time.perf_counter()
    folder = RunFolder(run_dir)
    has_checkpoint = folder.config_path.is_file() and folder.checkpoints.latest() is not None
    if has_checkpoint:
        driver.resume(run_dir, progress=progress, time_limit=plan.time_limit)
    else:
        recipe_class = get_recipe(plan.entry.recipe)
        settings = plan.entry.config_settings(dataset, plan.units, data_dir)
        config = recipe_class.config_from_file(None, settings)
        driver.train(config, run_dir, overwrite=True, progress=progress,
                     time_limit=plan.time_limit)  # fmt: skip
    recipe = open_run(run_dir)
    done, total = recipe.completed_steps(), recipe.total_steps()
    return {
        "status": "finished" if done >= total else "cut",
        "steps": done,
        "total_steps": total,
        "units": plan.units,
        "seconds": time.perf_counter() - start,
        "resumed": has_checkpoint,
    }


def build_table(
    dataset: str,
    budget: float,
    out: str | Path,
    *,
    data_dir: str | None = None,
    models: list[str] | None = None,
    n_samples: int = 256,
    loglik: bool = True,
    seed: int = 0,
    progress: bool = True,
    echo: Callable[[str], None] = costs.to_stderr,
) -> Path:
    """Train the family on ``dataset`` within ``budget`` seconds and write its report.

    Parameters
    ----------
    dataset : {"fashion-mnist", "digits"}
        The data every model trains and is scored on.
    budget : float
        Wall-clock seconds for everything: training (each model a share, see
        :func:`plan_table`) and the report (:data:`REPORT_SHARE`).
    out : path
        Folder of the table: ``runs/NAME`` per model, ``table.json``, the report.
    models : list of str, optional
        Only these entries of :func:`family` (default: all).
    n_samples, loglik, seed
        Passed to :func:`~ebmlab.experiments.report.write_report` (AIS with 100
        chains and its default schedule where ``loglik``).

    Returns
    -------
    Path
        ``out/report.html``.
    """
    from ebmlab.experiments.report import write_report

    plans = plan_table(dataset, budget, models)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [p.entry.name for p in plans]
    state = TableState.open(out, dataset, float(budget), names)
    estimate = sum(p.estimated_seconds for p in plans)
    echo(f"table: {len(plans)} models on {dataset}, budget {costs.duration(budget)} "
         f"(training ~{costs.duration(estimate)}, the rest for the report); "
         f"costs for {_costs_source(dataset)}")  # fmt: skip
    for plan in plans:
        status = state.runs.get(plan.entry.name, {}).get("status")
        echo(plan.line() + (f"  [{status}]" if status else ""))
    for name in names:
        if state.runs.get(name, {}).get("status") in ("finished", "cut"):
            continue
        plan = replan(dataset, budget, plans, state.runs)[0]
        echo(f"table: training {name} ({plan.units:,} {plan.entry.unit}s, "
             f"stops at {costs.duration(plan.time_limit)})")  # fmt: skip
        state.runs[name] = _train_one(plan, dataset, out / "runs" / name, data_dir, progress)
        state.save()
        record = state.runs[name]
        echo(f"table: {name} {record['status']} at step {record['steps']} of "
             f"{record['total_steps']} in {costs.duration(record['seconds'])}")  # fmt: skip
    write_report([out / "runs" / n for n in names], out, n_samples=n_samples, loglik=loglik,
                 seed=seed, progress=progress, echo=echo)  # fmt: skip
    return out / "report.html"
