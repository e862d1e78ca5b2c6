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
