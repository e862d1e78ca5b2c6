"""Property-based checks: bad input to the public API and the CLI gets one clear error, never a crash."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebmlab.cli.app import main
from ebmlab.models import BernoulliRBM
from ebmlab.training.trainer import CDConfig, CDTrainer

numbers = st.one_of(
    st.integers(-10, 10),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.text(max_size=3),
)


@given(n_visible=numbers, n_hidden=numbers)
def test_rbm_constructor_accepts_or_names_the_argument(n_visible, n_hidden):
    try:
        model = BernoulliRBM(n_visible, n_hidden)
    except ValueError as error:
        assert "n_visible" in str(error) or "n_hidden" in str(error)
    else:
        assert model.weight.shape == (n_visible, n_hidden)


FIELDS = [
    "epochs",
    "batch_size",
    "lr",
    "cd_k",
    "momentum",
    "weight_decay",
    "final_lr_fraction",
    "sparsity_cost",
]


@given(field=st.sampled_from(FIELDS), value=numbers)
def test_training_config_accepts_or_names_the_field(field, value):
    try:
        CDConfig(**{field: value})
    except ValueError as error:
        assert str(error).startswith(field)


@given(
    rows=st.integers(0, 4),
    columns=st.integers(1, 5),
    fill=st.floats(allow_nan=True, allow_infinity=True, width=32),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool]),
)
def test_training_data_is_checked_before_use(rows, columns, fill, dtype):
    model = BernoulliRBM(3, 2)
    trainer = CDTrainer(
        model, CDConfig(epochs=1, batch_size=2), generator=torch.Generator().manual_seed(0)
    )
    data = torch.full((rows, columns), fill).to(dtype)
    valid = (
        rows > 0
        and columns == 3
        and dtype == torch.float32
        and math.isfinite(fill)
        and 0 <= fill <= 1
    )
    if valid:
        assert math.isfinite(trainer.train_epoch(data)["loss"])
    else:
        with pytest.raises((ValueError, TypeError), match="data"):
            trainer.train_epoch(data)


def run_cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit_:
        return exit_.code or 0
    return 0


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_hidden=st.sampled_from(["-3", "0", "2", "x", "1e9"]),
    lr=st.sampled_from(["nan", "inf", "-0.1", "0", "0.01", "abc"]),
    batch_size=st.sampled_from(["0", "-1", "50", "1.5"]),
    cd_k=st.sampled_from(["0", "1", "-2"]),
)
def test_cli_exits_0_or_2_and_never_prints_a_traceback(
    tmp_path, capsys, n_hidden, lr, batch_size, cd_k
):
    out = tmp_path / f"run-{n_hidden}-{lr}-{batch_size}-{cd_k}"
    args = [
        "train",
        "rbm",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--n-hidden",
        n_hidden,
        "--lr",
        lr,
    ]
    args += [
        "--batch-size",
        batch_size,
        "--cd-k",
        cd_k,
        "--out",
        str(out),
        "--overwrite",
        "--no-progress",
    ]
    code = run_cli(args)
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert "error" in err.lower() or "invalid" in err.lower()


@pytest.mark.parametrize(
    "content",
    [
        "model: [unclosed",
        "just a string",
        "model: rbm\nn_hidden: -4\n",
        "model: rbm\nbogus_key: 1\n",
        "model: martian\n",
    ],
)
def test_malformed_run_config_exits_2(tmp_path, capsys, content):
    (tmp_path / "config.yaml").write_text(content)
    code = run_cli(["eval", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "Traceback" not in err, err


# ----- model methods: empty, non-finite and out-of-range inputs --------------------------------
def _models():
    from ebmlab.models import DBM, DBN, JEM, BoltzmannMachine, GaussianBernoulliRBM
    from ebmlab.models.nets.mlp import MLP

    generator = torch.Generator().manual_seed(0)
    return {
        "rbm": BernoulliRBM(3, 2, generator=generator),
        "grbm": GaussianBernoulliRBM(3, 2, generator=generator),
        "bm": BoltzmannMachine(3, 2, generator=generator),
        "dbm": DBM([3, 2, 2], generator=generator),
        "dbn": DBN([3, 2, 2], generator=generator),
        "jem": JEM(MLP(3, 4, hidden_sizes=(5,), generator=generator), 4),
    }


def _filled(shape, value):
    return torch.full(shape, value)


EMPTY, NAN, INF = torch.zeros(0, 3), _filled((2, 3), math.nan), _filled((2, 3), math.inf)
# (model, method, call, argument named in the message, what the message says)
MODEL_ENTRY_POINTS = [
    ("rbm", "init_visible_bias", lambda m: m.init_visible_bias(EMPTY), "data", "must not be empty"),
    ("rbm", "init_visible_bias", lambda m: m.init_visible_bias(NAN), "data", "NaN or inf"),
    ("rbm", "init_visible_bias", lambda m: m.init_visible_bias(INF - INF), "data", "NaN or inf"),
    (
        "rbm",
        "init_visible_bias",
        lambda m: m.init_visible_bias(_filled((2, 3), 1.5)),
        "data",
        r"lie in \[0, 1\]",
    ),
    (
        "rbm",
        "init_visible_bias",
        lambda m: m.init_visible_bias(_filled((2, 3), 1.0), smoothing=0.0),
        "smoothing",
        r"lie in \(0, 0.5\)",
    ),
    (
        "rbm",
        "init_visible_bias",
        lambda m: m.init_visible_bias(_filled((2, 3), 1.0), smoothing=0.7),
        "smoothing",
        r"lie in \(0, 0.5\)",
    ),
    (
        "rbm",
        "init_visible_bias",
        lambda m: m.init_visible_bias(_filled((2, 3), 0.0), smoothing=1e-30),
        "smoothing",
        "at least 1.19209e-07 for torch.float32 data",
    ),
    ("rbm", "free_energy", lambda m: m.free_energy(NAN), "v", "NaN or inf"),
    ("rbm", "free_energy", lambda m: m.free_energy(torch.zeros(2, 4)), "v", "3 columns"),
    ("rbm", "free_energy_hidden", lambda m: m.free_energy_hidden(NAN[:, :2]), "h", "NaN or inf"),
    (
        "grbm",
        "init_visible_bias",
        lambda m: m.init_visible_bias(EMPTY),
        "data",
        "must not be empty",
    ),
    ("grbm", "init_visible_bias", lambda m: m.init_visible_bias(INF), "data", "NaN or inf"),
    ("grbm", "free_energy", lambda m: m.free_energy(NAN), "v", "NaN or inf"),
    ("grbm", "free_energy_hidden", lambda m: m.free_energy_hidden(INF[:, :2]), "h", "NaN or inf"),
    ("bm", "init_visible_bias", lambda m: m.init_visible_bias(EMPTY), "data", "must not be empty"),
    (
        "bm",
        "init_visible_bias",
        lambda m: m.init_visible_bias(_filled((2, 3), 0.0), smoothing=-0.1),
        "smoothing",
        r"lie in \(0, 0.5\)",
    ),
    ("bm", "free_energy", lambda m: m.free_energy(NAN), "x", "NaN or inf"),
    ("dbm", "init_visible_bias", lambda m: m.init_visible_bias(EMPTY), "data", "must not be empty"),
    (
        "dbm",
        "init_visible_bias",
        lambda m: m.init_visible_bias(_filled((2, 3), 0.5), smoothing=math.nan),
        "smoothing",
        r"lie in \(0, 0.5\)",
    ),
    ("dbm", "mean_field", lambda m: m.mean_field(EMPTY), "v", "must not be empty"),
    ("dbm", "mean_field", lambda m: m.mean_field(NAN), "v", "NaN or inf"),
    (
        "dbm",
        "mean_field",
        lambda m: m.mean_field(torch.zeros(2, 3), init=[_filled((2, 2), math.nan)] * 2),
        r"init\[0\]",
        "NaN or inf",
    ),
    (
        "dbm",
        "mean_field",
        lambda m: m.mean_field(torch.zeros(2, 3), init=[torch.zeros(2, 2), _filled((2, 2), 3.0)]),
        r"init\[1\]",
        r"lie in \[0, 1\]",
    ),
    (
        "dbm",
        "mean_field",
        lambda m: m.mean_field(torch.zeros(2, 3), init=[torch.zeros(5, 2)] * 2),
        r"init\[0\]",
        "2 rows",
    ),
    ("dbn", "transform", lambda m: m.transform(NAN), "v", "NaN or inf"),
    ("dbn", "down_pass", lambda m: m.down_pass(NAN[:, :2], layer=2), "h", "NaN or inf"),
    ("dbn", "down_pass", lambda m: m.down_pass(torch.zeros(2, 3), layer=2), "h", "2 columns"),
    (
        "dbn",
        "down_pass",
        lambda m: m.down_pass(_filled((2, 2), -1.0), layer=1),
        "h",
        r"lie in \[0, 1\]",
    ),
    ("jem", "log_px_unnormalised", lambda m: m.log_px_unnormalised(NAN), "x", "NaN or inf"),
    ("jem", "log_px_unnormalised", lambda m: m.log_px_unnormalised(EMPTY), "x", "not be empty"),
    ("jem", "log_prob_y", lambda m: m.log_prob_y(INF), "x", "NaN or inf"),
]


@pytest.mark.parametrize(
    ("model_name", "method", "call", "argument", "says"),
    MODEL_ENTRY_POINTS,
    ids=[f"{m}.{f}-{a}-{s}" for m, f, _, a, s in MODEL_ENTRY_POINTS],
)
def test_model_methods_refuse_bad_inputs_naming_the_argument(
    model_name, method, call, argument, says
):
    model = _models()[model_name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=f"^{argument} .*{says}"):
        call(model)
    # A refused call changes nothing: no NaN bias is left behind.
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(0, 3),
    fill=st.floats(allow_nan=True, allow_infinity=True, width=32),
    smoothing=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 1)),
)
def test_init_visible_bias_is_finite_or_refused(rows, fill, smoothing):
    model = BernoulliRBM(3, 2)
    data = torch.full((rows, 3), fill)
    valid = rows > 0 and math.isfinite(fill) and 0 <= fill <= 1
    valid_smoothing = not isinstance(smoothing, bool) and math.isfinite(smoothing)
    # Below float32's eps, 1 - smoothing rounds to 1 and a constant pixel's logit is infinite.
    valid_smoothing = valid_smoothing and torch.finfo(torch.float32).eps <= smoothing < 0.5
    try:
        model.init_visible_bias(data, smoothing=smoothing)
    except ValueError as error:
        assert not (valid and valid_smoothing)
        assert str(error).startswith(("data ", "smoothing "))
    else:
        assert valid and valid_smoothing
        assert torch.isfinite(model.visible_bias).all()


def test_the_cheap_finiteness_check_is_exact():
    from ebmlab._validation import all_finite, check_matrix

    big = torch.full((2, 3), 3e38)  # finite entries whose sum overflows float32
    assert all_finite(big) and check_matrix("x", big) is big
    assert all_finite(torch.zeros(0, 3))
    for bad in (math.nan, math.inf, -math.inf):
        x = torch.zeros(2, 3)
        x[1, 2] = bad
        assert not all_finite(x)
    opposite = torch.tensor([[math.inf, -math.inf]])  # sums to NaN, not to a finite 0
    assert not all_finite(opposite)
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        check_matrix("x", opposite)
