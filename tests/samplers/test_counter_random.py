"""The counter-based generator: the mixer's arithmetic, uniformity, independence, streams.

The statistical checks run on a fixed key, so they are deterministic; their thresholds
are the usual 0.1 % levels, and a deliberately broken generator fails them.
"""

from __future__ import annotations

import random

import pytest
import torch
from scipy import stats

from ebmlab.samplers.counter_random import (
    CounterStream,
    counter_bits,
    counter_integers,
    counter_normal,
    counter_uniform,
    mix32,
)

N = 1 << 18
KEY = torch.tensor([0x1234ABCD, 0x0BADF00D], dtype=torch.int64)


def reference_mix32(x: int) -> int:
    """The mixer in Python's unbounded integers, written out from its definition."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) % 2**32
    x ^= x >> 15
    x = (x * 0x846CA68B) % 2**32
    return x ^ (x >> 16)


def failed_checks(u: torch.Tensor) -> list[str]:
    """Names of the checks ``u`` (float uniforms in [0, 1)) fails at the 0.1 % level."""
    u = u.double()
    n, failures = u.numel(), []
    counts = torch.histc(u, bins=256, min=0.0, max=1.0)
    if stats.chisquare(counts.numpy()).pvalue < 1e-3:
        failures.append("uniformity")
    for lag in (1, 2, 3):
        a, b = u[:-lag] - 0.5, u[lag:] - 0.5
        if abs(float((a * b).mean() / (a * a).mean())) > 3.3 / (n - lag) ** 0.5:
            failures.append(f"serial correlation at lag {lag}")
    pairs = (u[0::2] * 16).long() * 16 + (u[1::2] * 16).long()  # consecutive pairs on a grid
    if stats.chisquare(torch.bincount(pairs, minlength=256).numpy()).pvalue < 1e-3:
        failures.append("pairs")
    return failures


def test_mixer_matches_its_definition_in_exact_integers():
    values = [0, 1, 2, 0xFFFF, 0x10000, 2**31 - 1, 2**31, 2**32 - 1]
    values += [random.Random(0).randrange(2**32) for _ in range(200)]
    words = torch.tensor([v - 2**32 if v >= 2**31 else v for v in values], dtype=torch.int32)
    got = (mix32(words).to(torch.int64) & 0xFFFFFFFF).tolist()  # the int32 bits, unsigned
    assert got == [reference_mix32(v) for v in values]


@pytest.mark.parametrize(
    "counter",
    [0, 5, 2**31 - 3, 2**32 - 7, 2**32, 3 * 2**32 - 1, 2**40 + 12345, 2**62 + 2**32 - 2],
    ids=lambda c: hex(c),
)
@pytest.mark.parametrize("key", [(0x1234ABCD, 0x0BADF00D), (0xFEDCBA98, 0x80000001)],
                         ids=["low-keys", "keys-above-2^31"])  # fmt: skip
def test_words_follow_the_64_bit_counter_across_the_low_words_wrap(counter, key):
    # i = 2^32 i_1 + i_0, x_i = g(g(i_0 ^ k_0) ^ i_1 ^ k_1), in unbounded integers.
    n = 16
    expected = [
        reference_mix32(reference_mix32(((counter + i) & 0xFFFFFFFF) ^ key[0])
                        ^ ((counter + i) >> 32) ^ key[1])
        for i in range(n)
    ]  # fmt: skip
    key_tensor = torch.tensor(key, dtype=torch.int64)
    got = counter_bits(key_tensor, torch.tensor(counter, dtype=torch.int64), n)
    assert got.dtype == torch.int64 and got.tolist() == expected
    uniforms = counter_uniform(key_tensor, torch.tensor(counter, dtype=torch.int64), n)
    assert uniforms.tolist() == [(x >> 8) * 2.0**-24 for x in expected]


def test_stream_passes_uniformity_and_independence_checks():
    u = counter_uniform(KEY, torch.tensor(0), N)
    assert u.dtype == torch.float32 and float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert failed_checks(u) == []


def test_a_broken_generator_fails_the_same_checks():
    # Dropping the mixer leaves u_i = (i xor k) / 2^32: sequential counters give a ramp.
    index = torch.arange(N, dtype=torch.int64)
    broken = (((index ^ KEY[0]) & 0xFFFFFFFF) >> 8).float() * 2.0**-24
    assert "serial correlation at lag 1" in failed_checks(broken)
    # Uniform marginals but dependent neighbours: every second number mirrors the one before.
    good = counter_uniform(KEY, torch.tensor(0), N // 2)
    mirrored = torch.stack([good, 1 - good], 1).flatten()
    assert "uniformity" not in failed_checks(mirrored)
    assert {"serial correlation at lag 1", "pairs"} <= set(failed_checks(mirrored))


def test_neighbouring_keys_and_high_counter_words_give_unrelated_streams():
    base = counter_uniform(KEY, torch.tensor(0), N)
    for other in (
        counter_uniform(KEY + torch.tensor([1, 0]), torch.tensor(0), N),
        counter_uniform(KEY + torch.tensor([0, 1]), torch.tensor(0), N),
        counter_uniform(KEY, torch.tensor(2**32), N),  # same low words, next high word
    ):
        correlation = float(torch.corrcoef(torch.stack([base, other]).double())[0, 1])
        assert abs(correlation) < 3.3 / N**0.5
        assert failed_checks(other) == []


def test_streams_are_reproducible_resumable_and_split_consistently():
    streams = [CounterStream.from_generator(torch.Generator().manual_seed(3)) for _ in range(2)]
    whole = streams[0].uniform((10, 7))
    first, second = streams[1].uniform((30,)), streams[1].uniform((40,))
    assert torch.equal(torch.cat([first, second]), whole.flatten())
    assert streams[1].counter == 70
    resumed = CounterStream.from_state_dict(streams[1].state_dict())
    assert torch.equal(resumed.uniform((5,)), streams[1].uniform((5,)))
    other_seed = CounterStream.from_generator(torch.Generator().manual_seed(4))
    assert not torch.equal(other_seed.key, streams[0].key)


def test_a_bad_key_is_refused_by_name():
    with pytest.raises(ValueError, match="key must be an int64 tensor of shape"):
        CounterStream.from_state_dict({"key": torch.zeros(3, dtype=torch.int64), "counter": 0})


def test_keys_are_two_full_32_bit_words():
    keys = torch.stack(
        [CounterStream.from_generator(torch.Generator().manual_seed(s)).key for s in range(500)]
    )
    assert keys.dtype == torch.int64 and keys.shape == (500, 2)
    assert int(keys.min()) >= 0 and int(keys.max()) < 2**32
    assert int(keys.max()) >= 2**31  # the high half of the range is used too


def normal_failures(z: torch.Tensor) -> list[str]:
    """Names of the checks ``z`` (meant to be standard normals) fails at the 0.1 % level."""
    z, failures = z.double(), []
    if stats.kstest(z.numpy(), "norm").pvalue < 1e-3:
        failures.append("normal marginal")
    a, b = z[:-1], z[1:]
    if abs(float((a * b).mean())) > 3.3 / len(z) ** 0.5:
        failures.append("serial correlation")
    return failures


def test_normals_are_standard_normal_and_independent():
    z = counter_normal(KEY, torch.tensor(5), N, torch.float64)
    assert z.dtype == torch.float64 and z.shape == (N,)
    assert normal_failures(z) == []
    assert float(z.abs().max()) <= (48 * torch.log(torch.tensor(2.0))).sqrt() + 1e-6
    # Box-Muller pairs uniform i with uniform n + i: the normals are those of the uniforms.
    u = counter_uniform(KEY, torch.tensor(5), 2 * N).double()
    expected = (-2 * torch.log1p(-u[:N])).sqrt() * torch.cos(2 * torch.pi * u[N:])
    torch.testing.assert_close(z, expected)


def test_a_broken_box_muller_fails_the_normal_checks():
    u = counter_uniform(KEY, torch.tensor(0), 2 * N).double()
    no_factor_two = torch.sqrt(-torch.log1p(-u[:N])) * torch.cos(2 * torch.pi * u[N:])
    assert "normal marginal" in normal_failures(no_factor_two)
    same_angle = torch.sqrt(-2 * torch.log1p(-u[:N])) * torch.cos(2 * torch.pi * u[:N])
    assert "normal marginal" in normal_failures(same_angle)


def test_integers_are_uniform_on_their_range_and_follow_the_words():
    high = 100
    values = counter_integers(KEY, torch.tensor(0), N, high)
    assert values.dtype == torch.int64 and int(values.min()) >= 0 and int(values.max()) < high
    assert stats.chisquare(torch.bincount(values, minlength=high).numpy()).pvalue > 1e-3
    assert torch.equal(values, counter_bits(KEY, torch.tensor(0), N) % high)
    assert torch.equal((counter_bits(KEY, torch.tensor(0), N) >> 8).float() * 2.0**-24,
                       counter_uniform(KEY, torch.tensor(0), N))  # fmt: skip


def test_an_int32_counter_gives_the_int64_counters_words_and_huge_draws_are_refused():
    counter = torch.tensor(2**31 - 2, dtype=torch.int64)
    assert torch.equal(counter_bits(KEY, counter.to(torch.int32), 8), counter_bits(KEY, counter, 8))
    with pytest.raises(ValueError, match=r"n must be below 2\*\*31"):
        counter_uniform(KEY, counter, 2**31)
