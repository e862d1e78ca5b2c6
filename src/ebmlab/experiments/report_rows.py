"""What each cell of the model-quality report says: a run's class, accuracy and likelihood.

Functions of a run's recipe name, config and evaluation result (never of a run
folder), so the mapping from a run to the lecture's table is testable without
training anything. :mod:`ebmlab.experiments.report` calls them for every row.

The lecture groups models by what they are trained for:

- *hybrid*: one model that classifies and generates (JEM, its :math:`p(x \\mid y)`
  factorisation, DBNs and DBMs fine-tuned for classification);
- *discriminative*: the plain classifier (a JEM run without a generative term);
- *generative*: RBM, Gaussian RBM, DBN, DBM, Boltzmann machine, 2-D EBM.

Runs that model no data distribution (the SGLD posterior sampler) go to *other*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Groups in the order the report shows them, with their headings.
GROUPS = {
    "hybrid": "Hybrid: one model classifies and generates",
    "discriminative": "Discriminative: classifier only",
    "generative": "Generative: a model of p(x)",
    "other": "Other runs",
}
# Short names of the recipes whose class does not depend on their config.
_FIXED_CLASSES = {
    "bm": ("generative", "Boltzmann machine"),
    "ebm2d": ("generative", "2-D EBM"),
    "sgld-mixture": ("other", "SGLD posterior"),
}
# Config fields worth a glance in the table, per recipe; absent ones are skipped.
_KEY_SETTINGS = {
    "jem": (
        "dataset",
        "backbone",
        "width",
        "n_train",
        "training.iterations",
        "training.p_x_weight",
        "training.p_x_given_y_weight",
        "training.n_steps",
        "training.step_size",
        "training.noise_scale",
        "training.buffer_size",
        "training.class_conditional",
    ),  # fmt: skip
    "rbm": (
        "dataset",
        "visible",
        "n_hidden",
        "training.epochs",
        "training.cd_k",
        "training.persistent",
        "training.lr",
    ),  # fmt: skip
    "dbn": ("dataset", "layers", "training.epochs", "training.cd_k", "finetune.epochs"),
    "dbm": (
        "dataset",
        "layers",
        "n_train",
        "training.epochs",
        "training.n_chains",
        "training.gibbs_steps",
        "classifier_epochs",
        "fine_tune_epochs",
    ),  # fmt: skip
    "bm": ("dataset", "image_size", "n_hidden", "epochs", "data_term", "model_term"),
    "ebm2d": ("dataset", "hidden_sizes", "iterations", "n_steps", "step_size", "persistent"),
    "sgld-mixture": ("n_steps", "n_chains"),
}


@dataclass(frozen=True)
class ModelClass:
    """A row's group (a key of :data:`GROUPS`) and the model's name within it."""

    group: str
    label: str


def _field(config: Any, dotted: str) -> Any:
    value = config
    for name in dotted.split("."):
        value = getattr(value, name, None)
        if value is None:
            return None
    return value


def _positive(config: Any, dotted: str) -> bool:
    value = _field(config, dotted)
    return isinstance(value, int | float) and value > 0


def model_class(recipe_name: str, config: Any) -> ModelClass:
    """The report group and label of a run, decided by its recipe and config.

    JEM is hybrid while a generative term is on (``p_x_weight`` for :math:`\\log p(x)`,
    ``p_x_given_y_weight`` for the :math:`\\log p(x \\mid y)` factorisation) and
    the plain classifier when both are 0; a DBN or DBM is hybrid once it was
    fine-tuned for classification (``finetune.epochs``, ``fine_tune_epochs``),
    generative otherwise (a DBM's softmax head on frozen features is a probe of
    a generative model, not fine-tuning). An unknown recipe goes to ``"other"``.
    """
    if recipe_name == "jem":
        joint = _positive(config, "training.p_x_weight")
        factored = _positive(config, "training.p_x_given_y_weight")
        if joint and factored:
            return ModelClass("hybrid", "JEM + p(x|y) term")
        if joint:
            return ModelClass("hybrid", "JEM")
        if factored:
            return ModelClass("hybrid", "JEM, p(x|y) factorisation")
        return ModelClass("discriminative", "classifier")
    if recipe_name == "dbn":
        tuned = _positive(config, "finetune.epochs")
        return ModelClass("hybrid", "DBN, fine-tuned") if tuned else ModelClass("generative", "DBN")
    if recipe_name == "dbm":
        tuned = _positive(config, "fine_tune_epochs")
        return ModelClass("hybrid", "DBM, fine-tuned") if tuned else ModelClass("generative", "DBM")
    if recipe_name == "rbm":
        gaussian = _field(config, "visible") == "gaussian"
        return ModelClass("generative", "Gaussian RBM" if gaussian else "RBM")
    group, label = _FIXED_CLASSES.get(recipe_name, ("other", recipe_name))
    return ModelClass(group, label)


def architecture(result: dict[str, Any]) -> str:
    """Layer sizes (``784-500-500``) or the backbone of an evaluation result."""
    sizes = result.get("layer_sizes") or [result.get("n_visible"), result.get("n_hidden")]
    described = "-".join(str(s) for s in sizes if s is not None)
    return described or str(result.get("backbone") or result.get("model") or "")


def key_settings(recipe_name: str, config: Any) -> str:
    """``name=value`` for the config fields that tell runs of one recipe apart."""
    parts = []
    for dotted in _KEY_SETTINGS.get(recipe_name, ("dataset", "seed")):
        value = _field(config, dotted)
        if value is None or isinstance(value, list) and not value:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        parts.append(f"{dotted.removeprefix('training.')}={value}")
    return ", ".join(parts)


def accuracy_cell(
    recipe_name: str, config: Any, result: dict[str, Any]
) -> tuple[float | None, str]:
    """``(test accuracy or None, what it measures)`` of the run's own classifier, if it has one.

    A generative run without one gets None here; :mod:`ebmlab.experiments.report`
    then fits a linear probe on its features (:mod:`ebmlab.experiments.report_probe`).
    """
    n_test = result.get("n_test")
    on_test = f"test split ({n_test} images)" if n_test else "test split"
    if recipe_name == "dbm":
        linear = result.get("linear_accuracy")
        if linear is None:
            return None, "no classifier trained (classifier_epochs=0)"
        if _positive(config, "fine_tune_epochs"):
            return result.get("test_accuracy"), (
                f"fine-tuned unrolled network, {on_test}; the linear probe on mean-field "
                f"features before fine-tuning scored {linear:.4g}"
            )
        return linear, f"linear probe: a softmax head on frozen mean-field features, {on_test}"
    value = result.get("test_accuracy")
    if value is None:
        return None, "no classifier in this run"
    if recipe_name == "dbn":
        return value, f"fine-tuned up-pass (backpropagation through the DBN), {on_test}"
    note = f"classifier's argmax, {on_test}"
    if isinstance(result.get("ece"), float):
        note += f"; calibration error (ECE) {result['ece']:.3f}"
    return value, note


@dataclass(frozen=True)
class LoglikCell:
    """A log-likelihood cell: nats per example, its interval where there is one, what it is."""

    value: float | None = None
    lower: float | None = None
    upper: float | None = None
    kind: str = ""
    note: str = ""


def _interval(entry: dict[str, Any]) -> tuple[float | None, float | None]:
    lower, upper = entry.get("lower"), entry.get("upper")
    finite = all(isinstance(v, int | float) and abs(v) != float("inf") for v in (lower, upper))
    return (lower, upper) if finite else (None, None)


def _ais_note(result: dict[str, Any]) -> str:
    log_z = result.get("log_z") or {}
    chains, betas, ess = log_z.get("n_chains"), log_z.get("n_betas"), log_z.get("weight_ess")
    note = (
        f"AIS log Z with {chains} chains x {betas:,} temperatures"
        if chains and betas
        else "AIS log Z"
    )
    if isinstance(ess, float) and ess == ess:  # runs evaluated before the ESS was recorded lack it
        note += f" (weight ESS {ess:.1f} of {chains})"
    if log_z.get("interval_closed") is False:
        note += "; the interval is OPEN: the estimate is not a usable number"
    return note


def loglik_cell(recipe_name: str, result: dict[str, Any], *, asked: bool) -> LoglikCell:
    """The test log-likelihood (nats per example) of an evaluation result, and what it is.

    ``asked``: whether the report ran with ``loglik`` (the note then says why a
    cell stays empty rather than telling the user to add the flag).
    """
    if isinstance(result.get("test_loglik"), dict):  # a Bernoulli RBM: AIS, with RAISE beside it
        entry = result["test_loglik"]
        note = f"{_ais_note(result)}; interval from the log Z interval; test split"
        raised = (result.get("raise_loglik") or {}).get("value")
        if isinstance(raised, float):
            note += f"; reverse AIS (conservative) gives {raised:.4g}"
        return LoglikCell(entry.get("value"), *_interval(entry), "AIS", note)
    if isinstance(result.get("loglik_bound"), dict):
        entry = result["loglik_bound"]
        what = "mean-field ELBO" if recipe_name == "dbm" else "variational bound"
        note = f"lower bound ({what}) with {_ais_note(result)}; interval from the log Z interval"
        return LoglikCell(entry.get("value"), *_interval(entry), "lower bound", note)
    if isinstance(result.get("log_likelihood"), float):
        note = "exact: log Z by enumerating every state; on the training patterns"
        return LoglikCell(result["log_likelihood"], None, None, "exact", note)
    if recipe_name == "jem":
        return LoglikCell(note="none: JEM's log Z is intractable")
    if recipe_name in ("rbm", "dbn", "dbm"):
        why = "AIS applies to Bernoulli units only" if asked else "not estimated (add --loglik)"
        return LoglikCell(note=why)
    return LoglikCell(note="this model's evaluation gives no log-likelihood")
