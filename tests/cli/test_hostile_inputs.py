"""Property-based: configs and checkpoint headers mutated at random get one clear error or work.

Never a traceback of another kind (a KeyError deep in a recipe, a RuntimeError from
the allocator): every failure is the error type the CLI turns into ``error: ...``
and exit 2, and nothing in the run folder changes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebmlab.cli.app import _user_errors
from ebmlab.experiments.config import ConfigError, config_to_mapping
from ebmlab.experiments.registry import open_run, recipes

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["false", "true", "1e-3", "abc", "cpu:abc", "cuda", ""]),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def dotted_keys(mapping: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            keys += dotted_keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def set_key(mapping: dict, dotted: str, value) -> None:
    *sections, last = dotted.split(".")
    for name in sections:
        mapping = mapping[name]
    mapping[last] = value


@pytest.mark.parametrize("name", sorted(recipes()))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_configs_validate_or_fail_with_a_config_error(name, data):
    recipe = recipes()[name]
    mapping = config_to_mapping(recipe.config_class(), model=name)
    keys = [k for k in dotted_keys(mapping) if k not in ("model", "ebmlab_version")]
    for _ in range(data.draw(st.integers(1, 3))):
        set_key(mapping, data.draw(st.sampled_from(keys)), data.draw(ODD_VALUES))
    if data.draw(st.booleans()):
        mapping[data.draw(st.text(min_size=1, max_size=6))] = 1  # an unknown key
    try:
        config = recipe.config_from(mapping)
    except ConfigError:
        return
    assert dataclasses.is_dataclass(config)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from ebmlab.cli.app import main

    run = tmp_path_factory.mktemp("runs") / "rbm"
    main(["train", "rbm", "--n-hidden", "4", "--epochs", "1", "--no-progress", "--out", str(run)])
    return run


def skeleton_paths(node, path=()):
    """Every place in a checkpoint's JSON skeleton where a value could be replaced."""
    yield path
    if isinstance(node, dict) and "__dict__" in node:
        for index, (_, value) in enumerate(node["__dict__"]):
            yield from skeleton_paths(value, (*path, "__dict__", index, 1))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from skeleton_paths(value, (*path, index))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(data=st.data())
def test_mutated_checkpoint_headers_get_one_clear_error(tiny_run, tmp_path_factory, data):
    from safetensors import safe_open
    from safetensors.torch import save

    run = tmp_path_factory.mktemp("mutated") / "run"
    shutil.copytree(tiny_run, run)
    path = sorted((run / "checkpoints").glob("step-*.safetensors"))[-1]
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    skeleton = json.loads(metadata["extra"])
    where = data.draw(st.sampled_from(list(skeleton_paths(skeleton))[1:]))
    target = skeleton
    for part in where[:-1]:
        target = target[part]
    target[where[-1]] = data.draw(ODD_VALUES)
    metadata["extra"] = json.dumps(skeleton)
    if data.draw(st.booleans()):
        metadata[data.draw(st.sampled_from(["model_keys", "format_version"]))] = data.draw(
            st.sampled_from(["", "{}", "[]", "2", '{"weight": 3}'])
        )
    path.write_bytes(save(tensors, metadata=metadata))
    try:
        open_run(run)
    except _user_errors():
        pass
