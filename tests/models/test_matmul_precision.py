"""bfloat16 operands for the Bernoulli RBM: close to float32, never under autograd, never stale."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import pytest
import torch

from ebmlab.estimators import ais_log_partition, exact_log_partition
from ebmlab.estimators.exact import exact_log_likelihood
from ebmlab.models.matmul_precision import check_precision, cpu_has_native_bfloat16
from ebmlab.models.rbm import BernoulliRBM
from ebmlab.training.trainer import CDConfig, CDTrainer
from tests.helpers.mutation import UNDER_MUTATION_TESTING

# bfloat16 keeps 8 significant bits: relative rounding 2^-9 per operand and per result.
BF16_EPS = 2.0**-8


def make_rbm(n_visible=20, n_hidden=12, seed=0, precision="float32") -> BernoulliRBM:
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(n_visible, n_hidden, weight_std=1.0, generator=generator,
                         precision=precision)  # fmt: skip
    with torch.no_grad():
        model.visible_bias.normal_(generator=generator)
        model.hidden_bias.normal_(generator=generator)
    return model


def binary(n, d, seed, p=0.4):
    return torch.bernoulli(torch.full((n, d), p), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx512f amx_bf16 amx_tile", True), ("fpu avx512f avx512_bf16", True),
     ("fpu avx2 avx512f avx512_vnni", False)],
)  # fmt: skip
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
    assert cpu_has_native_bfloat16(cpuinfo) is expected
    assert cpu_has_native_bfloat16(tmp_path / "missing") is False


def test_the_flags_after_the_colon_are_read_and_a_file_without_them_says_no(tmp_path):
    tight, none = tmp_path / "tight", tmp_path / "none"
    tight.write_text("flags:amx_bf16 fpu\n")  # no blank after the colon: still the first flag
    none.write_text("processor\t: 0\nmodel name\t: Some CPU\n")
    assert cpu_has_native_bfloat16(tight) is True
    assert cpu_has_native_bfloat16(none) is False


@pytest.mark.parametrize(("features", "expected"), [("fp asimd sve bf16 i8mm", True),
                                                    ("fp asimd sve i8mm", False)])  # fmt: skip
def test_arm_cpus_are_read_from_their_features_line(tmp_path, features, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nFeatures\t: {features}\nCPU part\t: 0xd40\n")
    assert cpu_has_native_bfloat16(cpuinfo) is expected


def test_by_default_this_machines_flags_are_read():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo on this system")
    flags = next(
        (line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), ""
    )
    expected = bool({"amx_bf16", "avx512_bf16"} & set(flags.split(":", 1)[-1].split()))
    assert cpu_has_native_bfloat16() is expected


def test_bad_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16; got 'bf8'"):
        check_precision("bf8")
    with pytest.raises(ValueError, match="precision"):
        BernoulliRBM(4, 3, precision="half")
    with pytest.raises(ValueError, match="precision"):
        CDConfig(precision="fp16")
    from ebmlab.models import GaussianBernoulliRBM

    with pytest.raises(ValueError, match="needs a BernoulliRBM"):
        CDTrainer(GaussianBernoulliRBM(4, 3), CDConfig(precision="bfloat16"),
                  generator=torch.Generator())  # fmt: skip


@torch.no_grad()
def test_conditionals_round_only_to_bfloat16_accuracy():
    full, reduced = make_rbm(), make_rbm(precision="bfloat16")
    v, h = binary(64, 20, 1), binary(64, 12, 2)
    for name in ("hidden_preactivation", "visible_preactivation"):
        x = v if name == "hidden_preactivation" else h
        exact, rounded = getattr(full, name)(x), getattr(reduced, name)(x)
        assert rounded.dtype == torch.float32
        # Rounding each weight and the result (2^-9 relative each), with slack for a
        # kernel that rounds partial sums: bounded by 2^-7 of sum |x| |W|.
        scale = x.abs() @ full.weight.abs() if x is v else x.abs() @ full.weight.t().abs()
        assert ((rounded - exact).abs() <= 2 * BF16_EPS * scale + 1e-6).all()
        assert not torch.equal(rounded, exact)  # the reduced path really ran


def test_products_that_autograd_differentiates_stay_in_float32():
    full, reduced = make_rbm(), make_rbm(precision="bfloat16")
    v = binary(16, 20, 3)
    for model in (full, reduced):
        model.free_energy(v).sum().backward()
    for a, b in zip(full.parameters(), reduced.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


@torch.no_grad()
def test_the_bfloat16_weights_follow_every_in_place_change():
    model = make_rbm(precision="bfloat16")
    v = binary(8, 20, 4)
    before = model.hidden_preactivation(v)
    model.weight.add_(0.5)
    after = model.hidden_preactivation(v)
    expected = torch.mm(v.bfloat16(), model.weight.bfloat16()).float() + model.hidden_bias
    torch.testing.assert_close(after, expected, rtol=0, atol=0)
    assert not torch.equal(after, before)
    model.load_state_dict(make_rbm(seed=5).state_dict())
    reloaded = torch.mm(v.bfloat16(), model.weight.bfloat16()).float() + model.hidden_bias
    torch.testing.assert_close(model.hidden_preactivation(v), reloaded, rtol=0, atol=0)
    assert model.weight_bfloat16() is model.weight_bfloat16()  # cached while unchanged
    twin = copy.deepcopy(model)  # its own cache: changing the twin leaves the original alone
    twin.weight.mul_(2.0)
    torch.testing.assert_close(model.hidden_preactivation(v), reloaded, rtol=0, atol=0)


@torch.no_grad()
def test_a_replaced_weight_tensor_is_never_served_from_the_old_copy():
    model = make_rbm(precision="bfloat16")
    v = binary(8, 20, 4)
    model.hidden_preactivation(v)
    replacement = torch.nn.Parameter(model.weight.detach().clone() + 1.0)
    while replacement._version < model.weight._version:  # equal versions: only identity differs
        replacement.add_(0.0)
    assert replacement._version == model.weight._version
    model.weight = replacement
    expected = torch.mm(v.bfloat16(), replacement.bfloat16()).float() + model.hidden_bias
    torch.testing.assert_close(model.hidden_preactivation(v), expected, rtol=0, atol=0)


def test_float64_models_ignore_the_setting():
    generator = torch.Generator().manual_seed(0)
    model = BernoulliRBM(6, 4, generator=generator, dtype=torch.float64, precision="bfloat16")
    v = binary(5, 6, 6).double()
    with torch.no_grad():
        torch.testing.assert_close(
            model.hidden_preactivation(v),
            torch.addmm(model.hidden_bias, v, model.weight),
            rtol=0,
            atol=0,
        )


@pytest.mark.parametrize("seed", [0, 1])
def test_bfloat16_ais_interval_contains_the_exact_log_z(seed):
    """The bfloat16 annealing still estimates the float32 model's log Z within its interval."""
    model = make_rbm(seed=seed, precision="bfloat16")
    exact = exact_log_partition(model)
    estimate = ais_log_partition(model, n_chains=100, betas=3000, progress=False,
                                 generator=torch.Generator().manual_seed(seed))  # fmt: skip
    assert estimate.log_z_lower <= exact <= estimate.log_z_upper, (estimate, exact)
    assert estimate.log_z_upper - estimate.log_z_lower < 0.3


def test_one_bfloat16_update_matches_float32_to_bfloat16_accuracy():
    data = binary(50, 20, 7)
    steps = {}
    for precision in ("float32", "bfloat16"):
        model = make_rbm()
        config = CDConfig(epochs=1, batch_size=50, lr=0.1, precision=precision)
        trainer = CDTrainer(model, config, generator=torch.Generator().manual_seed(8))
        start = model.weight.detach().clone()
        trainer.update(data)
        steps[precision] = model.weight.detach() - start
    # Same chains (the same uniforms; a flipped comparison near p is possible but rare).
    difference = (steps["bfloat16"] - steps["float32"]).abs().max()
    assert 0 < difference < 0.1 * 16 * BF16_EPS + 0.02, difference


def test_bfloat16_training_learns_as_well_as_float32():
    """A bfloat16-trained RBM's exact log-likelihood lies inside float32's seed-to-seed spread."""
    generator = torch.Generator().manual_seed(9)
    prototypes = binary(4, 10, 10, p=0.5)
    rows = prototypes[torch.randint(0, 4, (400,), generator=generator)]
    data = (rows + torch.bernoulli(torch.full_like(rows, 0.05), generator=generator)) % 2
    scores: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for precision, seeds in (("float32", range(5)), ("bfloat16", range(2))):
        for seed in seeds:
            model = BernoulliRBM(10, 8, generator=torch.Generator().manual_seed(seed))
            config = CDConfig(epochs=30, batch_size=10, lr=0.2, persistent=True,
                              precision=precision)  # fmt: skip
            trainer = CDTrainer(model, config, generator=torch.Generator().manual_seed(seed))
            for _ in range(config.epochs):
                trainer.train_epoch(data)
            scores[precision].append(exact_log_likelihood(model, data))
    reference = torch.tensor(scores["float32"])
    start = exact_log_likelihood(BernoulliRBM(10, 8), data)
    # Training does learn: from 10 log 2 = 6.9 nats to near the data's entropy (3.4 nats).
    assert reference.max() < -3.0 and reference.min() > start + 2.0
    spread = 3 * float(reference.std()) + 0.05
    for score in scores["bfloat16"]:
        assert abs(score - float(reference.mean())) < spread, (score, scores)
    assert math.isfinite(spread)


@pytest.mark.parametrize("native", [False, True])
def test_bfloat16_on_a_cpu_without_its_units_warns_that_float32_is_faster(monkeypatch, native):
    from ebmlab.models import matmul_precision

    monkeypatch.setattr(matmul_precision, "cpu_has_native_bfloat16", lambda: native)
    model = BernoulliRBM(4, 3, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.set_precision("bfloat16")
        model.set_precision("float32")  # never warns
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if native:
        assert messages == []
    else:
        assert messages == [
            "precision='bfloat16' on a CPU without bfloat16 matrix units (no AMX-BF16 or "
            "AVX512-BF16 flag): the products are emulated and slower than float32, by up to "
            "60x; use precision='float32' here"
        ]
        assert Path(caught[0].filename).name != "matmul_precision.py"  # not where it is raised
        if not UNDER_MUTATION_TESTING:  # mutmut's trampolines add a frame
            assert all(w.filename == __file__ for w in caught)  # the user's line, not ebmlab's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        BernoulliRBM(4, 3, precision="bfloat16")
    assert len(caught) == (0 if native else 1)
    if not UNDER_MUTATION_TESTING:  # mutmut's trampolines add a frame
        assert [w.filename for w in caught] == ([] if native else [__file__])
