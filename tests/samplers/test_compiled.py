"""CompiledFunction: a failed compile warns once and the same function runs eagerly."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from ebmlab.samplers.compiled import CompiledFunction
from tests.helpers.mutation import UNDER_MUTATION_TESTING


def double(x: torch.Tensor) -> torch.Tensor:
    return 2 * x


def test_a_failed_compile_warns_once_and_runs_the_function_eagerly():
    function = CompiledFunction(double, "the test runs")

    def broken(*arguments):
        raise RuntimeError("no C compiler found")

    function._run = broken  # what torch.compile's wrapper does where it cannot build
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed \(RuntimeError: no C "
                      r"compiler found\); the test runs eagerly") as caught:  # fmt: skip
        assert torch.equal(function(torch.ones(3)), torch.full((3,), 2.0))
    assert function.compiled is False
    assert Path(caught[0].filename).name != "compiled.py"  # not the line that raises it
    if not UNDER_MUTATION_TESTING:  # mutmut's trampolines add a frame
        assert [w.filename for w in caught] == [__file__]  # the warning names the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise here
        assert torch.equal(function(torch.ones(2)), torch.full((2,), 2.0))


def test_an_eager_function_raises_its_own_errors():
    function = CompiledFunction(double, "the test runs", compile=False)
    assert function._run is double
    with pytest.raises(TypeError):
        function("not a tensor", "two arguments")


@pytest.mark.parametrize(("threads", "options"), [(1, {"cpp.threads": 1}), (None, None)])
def test_cpu_tensors_get_the_cpp_loops_with_the_thread_option(monkeypatch, threads, options):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda f, **kw: calls.append((f, kw)) or f)
    function = CompiledFunction(double, "the test runs", kernel_threads=threads)
    assert function._run is None and function.cuda_graphs is False  # built at the first call
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback: the compiled function itself ran
        assert torch.equal(function(torch.ones(3)), torch.full((3,), 2.0))
    assert calls == [(double, {"dynamic": False, "options": options})]
    assert function.cuda_graphs is False and function.compiled is True
    function(torch.ones(3))
    assert len(calls) == 1  # compiled once


def test_cuda_tensors_get_cuda_graphs_with_cloned_outputs(monkeypatch):
    # Without a GPU: the device test and torch.compile replaced, the wiring checked.
    from ebmlab.samplers import compiled

    calls, steps, results = [], [], []

    def graph_replay(x):
        results.append(2 * x)  # what a replayed graph hands out: its static output buffer
        return results[-1], (x,), 3

    monkeypatch.setattr(torch, "compile", lambda f, **kw: calls.append((f, kw)) or graph_replay)
    # The device test sees the call's own arguments.
    monkeypatch.setattr(compiled, "on_cuda", lambda arguments: arguments[0] is x)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    function = CompiledFunction(double, "the test runs", kernel_threads=1)
    x = torch.ones(3)
    doubled, (same,), count = function(x)
    assert count == 3  # other outputs pass through
    assert calls == [(double, {"dynamic": False, "mode": "reduce-overhead"})]  # no threads
    assert function.cuda_graphs and steps == [1]
    assert torch.equal(doubled, torch.full((3,), 2.0))
    # Outputs are copies: the next replay's writes into its buffers do not reach them.
    assert doubled.data_ptr() != results[-1].data_ptr() and same.data_ptr() != x.data_ptr()
    results[-1].zero_()
    assert torch.equal(doubled, torch.full((3,), 2.0))


def test_on_cuda_looks_through_nested_arguments():
    from ebmlab.samplers.compiled import on_cuda

    class FakeCuda(torch.Tensor):
        is_cuda = True

    assert not on_cuda((torch.ones(2), [torch.zeros(1), {"a": torch.ones(1)}], 3, "x"))
    assert on_cuda((torch.ones(2), [3, {"a": torch.ones(1).as_subclass(FakeCuda)}]))
    if torch.cuda.is_available():
        assert on_cuda((1, [{"a": torch.ones(1, device="cuda")}]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_compiled_chain_on_cuda_draws_what_the_eager_one_draws():
    from ebmlab.samplers import CompiledChain, Langevin

    def energy(x):
        return 0.5 * (x**2).sum(-1)

    sampler = Langevin(energy, step_size=0.1)
    x0 = torch.zeros(64, 2, device="cuda")
    eager, graphed = (CompiledChain(sampler, steps_per_call=5, compile=c) for c in (False, True))
    states = [chain.init(x0, generator=torch.Generator("cuda").manual_seed(3))
              for chain in (eager, graphed)]  # fmt: skip
    for _ in range(3):
        states = [
            chain.run(state, 10)[0] for chain, state in zip((eager, graphed), states, strict=True)
        ]
    assert graphed._block.cuda_graphs
    torch.testing.assert_close(states[1].x, states[0].x, rtol=1e-5, atol=1e-5)
