"""CompiledFunction: a failed compile warns once and the same function runs eagerly."""

from __future__ import annotations

import warnings

import pytest
import torch

from ebmlab.samplers.compiled import CompiledFunction


def double(x: torch.Tensor) -> torch.Tensor:
    return 2 * x


def test_a_failed_compile_warns_once_and_runs_the_function_eagerly():
    function = CompiledFunction(double, "the test runs")

    def broken(*arguments):
        raise RuntimeError("no C compiler found")

    function._run = broken  # what torch.compile's wrapper does where it cannot build
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed \(RuntimeError: no C "
                      r"compiler found\); the test runs eagerly"):  # fmt: skip
        assert torch.equal(function(torch.ones(3)), torch.full((3,), 2.0))
    assert function.compiled is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        assert torch.equal(function(torch.ones(2)), torch.full((2,), 2.0))


def test_an_eager_function_raises_its_own_errors():
    function = CompiledFunction(double, "the test runs", compile=False)
    assert function._run is double
    with pytest.raises(TypeError):
        function("not a tensor", "two arguments")
