"""Typed recipe configs: strict validation, YAML 1.2, old keys, and a CLI generated from them."""

from __future__ import annotations

import pytest

from ebmlab.cli.config_options import config_options
from ebmlab.experiments.config import (
    ConfigError,
    apply_renames,
    config_from_mapping,
    read_yaml,
    set_dotted,
)
from ebmlab.experiments.rbm import RBMExperimentConfig, RBMRecipe
from ebmlab.experiments.registry import recipes


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"training": {"persistent": "false"}}, "training.persistent = 'false'"),
        ({"seed": "abc"}, "seed = 'abc'"),
        ({"n_hidden": 2.5}, "n_hidden = 2.5"),
        ({"device": ["cpu"]}, "device = ['cpu']"),
        ({"n_hiden": 3}, "unknown setting 'n_hiden'"),
        ({"training": {"lr": -1.0}}, "lr must be a finite number > 0"),
    ],
)
def test_bad_values_name_the_key_and_the_value(settings, message):
    with pytest.raises(ConfigError) as error:
        RBMRecipe.config_from(settings)
    assert message in str(error.value)


def test_yaml_1_2_numbers_and_booleans(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 1e-3\n  persistent: true\nvisible: no\n")
    settings = read_yaml(path)
    # YAML 1.1 (PyYAML) reads 1e-3 as the string '1e-3' and `no` as False.
    assert settings == {"training": {"lr": 0.001, "persistent": True}, "visible": "no"}


def test_a_yaml_file_for_another_model_is_refused():
    with pytest.raises(ConfigError, match="describes a 'jem' run, not 'rbm'"):
        config_from_mapping(RBMExperimentConfig, {"model": "jem"}, model="rbm")


def test_renames_move_old_keys_and_never_overwrite_new_ones():
    old = {"n_epochs": 3, "training": {"n_iterations": 5, "lr": 1.0}, "epochs": 7}
    renamed = apply_renames(
        old, {"n_epochs": "epochs", "training.n_iterations": "training.iterations"}
    )
    assert renamed == {"epochs": 7, "training": {"iterations": 5, "lr": 1.0}}
    assert old["training"]["n_iterations"] == 5  # the input is not changed


def test_set_dotted_reaches_every_item_of_a_list_section():
    settings = {"training": [{"lr": 1.0}, {"lr": 2.0}]}
    set_dotted(settings, "training.epochs", 4)
    set_dotted(settings, "finetune.lr", 0.1)
    assert settings == {"training": [{"lr": 1.0, "epochs": 4}, {"lr": 2.0, "epochs": 4}],
                        "finetune": {"lr": 0.1}}  # fmt: skip


def test_gaussian_units_get_their_defaults_from_python_and_from_settings():
    assert RBMExperimentConfig(visible="gaussian").training.lr == 1e-3
    from_settings = RBMRecipe.config_from({"visible": "gaussian", "training": {"epochs": 2}})
    assert (from_settings.training.lr, from_settings.training.final_momentum) == (1e-3, 0.5)
    given = RBMRecipe.config_from({"visible": "gaussian", "training": {"lr": 0.01}})
    assert given.training.lr == 0.01


def test_config_round_trips_through_its_yaml(tmp_path):
    from ebmlab.experiments.config import config_to_mapping, dump_yaml

    config = RBMRecipe.config_from(
        {"n_hidden": 7, "training": {"lr": 1e-3, "sparsity_target": 0.1}}
    )
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(config_to_mapping(config, model="rbm")))
    assert RBMRecipe.config_from(read_yaml(path)) == config


@pytest.mark.parametrize("name", sorted(recipes()))
def test_every_config_field_has_help_and_one_flag(name):
    recipe = recipes()[name]
    options = config_options(recipe.config_class)
    assert options, name
    flags = [option.flag for option in options]
    assert len(flags) == len(set(flags)), name
    for option in options:
        assert option.help.strip(), f"{name}: {option.dotted} has no help text"


@pytest.mark.parametrize("name", sorted(recipes()))
def test_help_shows_every_option_with_the_dataclass_default(name, capsys, monkeypatch):
    from ebmlab.cli.app import main

    monkeypatch.setenv("COLUMNS", "250")  # rich shortens long flags on narrow terminals
    main(["train", name, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    config = recipes()[name].config_class()
    for option in config_options(type(config)):
        assert option.flag in text, (name, option.flag)
        # The default --help shows is the value a config gets when the option is not given.
        value = config
        for part in option.dotted.split("."):
            value = value[0] if isinstance(value, list) else value
            value = getattr(value, part)
        assert option.default == value, (name, option.dotted, option.default, value)
