"""The command line end to end on digits: train, eval, sample, data; errors exit 2 without a traceback."""

from __future__ import annotations

import json

import pytest
import torch

from ebmlab.cli.app import main

TRAIN = [
    "train",
    "rbm",
    "--dataset",
    "digits",
    "--n-hidden",
    "16",
    "--epochs",
    "2",
    "--batch-size",
    "50",
    "--no-progress",
]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_eval_sample_on_digits(tmp_path, capsys):
    run = tmp_path / "run"
    code, out, _ = run_cli([*TRAIN, "--out", str(run)], capsys)
    assert code == 0 and "run folder" in out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["epoch_seconds"] > 0 for r in records)
    for figure in ("samples.png", "filters.png", "training_curves.png"):
        assert (run / "figures" / figure).stat().st_size > 1000
    assert "n_hidden: 16" in (run / "config.yaml").read_text()

    code, out, _ = run_cli(["eval", str(run), "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and result["n_hidden"] == 16 and result["test_pseudo_loglik"] < 0

    code, out, _ = run_cli(
        ["sample", str(run), "--n", "9", "--n-steps", "5", "--out", str(tmp_path / "s.png")], capsys
    )
    assert code == 0 and (tmp_path / "s.png").is_file()

    # JEM-only evaluation options are refused for an RBM run, naming the flag.
    for option in (["--ood", "noise"], ["--refine-steps", "2"]):
        code, _, err = run_cli(["eval", str(run), *option], capsys)
        assert code == 2 and f"{option[0]} does not apply to 'rbm' runs" in err


def test_data_list_and_info(capsys):
    code, out, _ = run_cli(["data", "list"], capsys)
    assert code == 0 and "digits" in out and "fashion-mnist" in out
    code, out, _ = run_cli(["data", "info", "digits"], capsys)
    assert code == 0 and json.loads(out)["n_classes"] == 10


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lr", "-1"], "error: lr must be a finite number > 0; got -1.0"),
        (["--n-hidden", "0"], "error: n_hidden must be a positive integer; got 0"),
        (["--dataset", "nope"], "error: unknown dataset 'nope'"),
        (["--binarization", "fuzzy"], "error: binarization must be one of"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, extra, message):
    code, _, err = run_cli([*TRAIN, "--out", str(tmp_path / "r"), *extra], capsys)
    assert code == 2
    assert err.strip().splitlines() == [err.strip()] and err.startswith(message), err
    assert "Traceback" not in err


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    code, _, err = run_cli([*TRAIN, "--out", str(run)], capsys)
    assert code == 2 and "not empty" in err and (run / "keep.txt").read_text() == "mine"


def test_eval_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, _, err = run_cli(["eval", str(tmp_path)], capsys)
    assert code == 2 and "not an ebmlab run folder" in err


def files_of(run) -> dict:
    """Every file of a run folder and its bytes (the lock file aside: it is the lock)."""
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path, capsys):
    whole, run = tmp_path / "whole", tmp_path / "run"
    # The redone epoch is the last: at the default final_lr_fraction=0 it runs at rate 0, and
    # the comparison below would pass whatever the resume restored. Half the rate still learns.
    train = [*TRAIN, "--final-lr-fraction", "0.5"]
    run_cli([*train, "--out", str(whole)], capsys)
    run_cli([*train, "--out", str(run)], capsys)
    *_, before, latest = sorted((run / "checkpoints").glob("step-*.safetensors"))
    latest.write_bytes(latest.read_bytes()[:50])  # a kill or a full disk mid-write
    code, _, err = run_cli(["eval", str(run)], capsys)
    assert code == 2 and "truncated or corrupted" in err  # eval never guesses
    with pytest.warns(UserWarning, match="resuming from the checkpoint before it"):
        code, _, err = run_cli(["train", "rbm", "--resume", str(run), "--no-progress"], capsys)
    assert code == 0, err
    from ebmlab.training.checkpoint import load_checkpoint

    (model, _), (reference, _), (resumed_from, _) = (
        load_checkpoint(latest),
        load_checkpoint(whole / latest.relative_to(run)),
        load_checkpoint(before),
    )
    assert all(torch.equal(model[k], reference[k]) for k in reference)  # redone, the same bits
    # The redone epoch learned: every parameter moved, so the comparison could fail.
    assert all(not torch.equal(model[k], resumed_from[k]) for k in reference)
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").open()] == [1, 2]


def test_resume_with_no_readable_checkpoint_exits_2_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    run_cli([*TRAIN, "--out", str(run)], capsys)
    for path in (run / "checkpoints").glob("step-*.safetensors"):
        path.write_bytes(path.read_bytes()[:50])
    before = files_of(run)
    with pytest.warns(UserWarning):
        code, _, err = run_cli(["train", "rbm", "--resume", str(run), "--no-progress"], capsys)
    assert code == 2 and "truncated or corrupted" in err
    assert files_of(run) == before


def test_config_file_redoes_a_run_and_options_override_it(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    # A constant rate: the default decay to zero depends on the run's length.
    run_cli([*TRAIN, "--lr", "0.02", "--final-lr-fraction", "1", "--out", str(first)], capsys)
    code, _, err = run_cli(
        [
            "train",
            "rbm",
            "--config",
            str(first / "config.yaml"),
            "--epochs",
            "3",
            "--out",
            str(second),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    original = (first / "config.yaml").read_text()
    assert (second / "config.yaml").read_text() == original.replace("epochs: 2", "epochs: 3")
    # The first two epochs repeat bit for bit: same seed, same settings.
    lines = [
        p.read_text().splitlines()[:2] for p in (first / "metrics.jsonl", second / "metrics.jsonl")
    ]
    strip = [
        [{k: v for k, v in json.loads(x).items() if k != "epoch_seconds"} for x in ls]
        for ls in lines
    ]
    assert strip[0] == strip[1]


def test_config_file_for_another_model_is_refused(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("model: dbm\n")
    code, _, err = run_cli(
        ["train", "rbm", "--config", str(bad), "--out", str(tmp_path / "r")], capsys
    )
    assert code == 2 and "describes a 'dbm' run" in err


def test_gaussian_visible_units_train_with_their_own_defaults(tmp_path, capsys):
    run = tmp_path / "grbm"
    code, _, err = run_cli([*TRAIN, "--visible", "gaussian", "--out", str(run)], capsys)
    assert code == 0, err
    config = (run / "config.yaml").read_text()
    assert (
        "visible: gaussian" in config and "lr: 0.001" in config and "final_momentum: 0.5" in config
    )
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "pseudo_loglik" not in record and record["reconstruction_error"] > 0
    code, out, _ = run_cli(["eval", str(run), "--json"], capsys)
    assert code == 0 and json.loads(out)["visible"] == "gaussian"
    code, _, err = run_cli(["eval", str(run), "--loglik"], capsys)
    assert code == 2 and "Bernoulli RBMs only" in err


def tensorboard_events(run):
    """The run's TensorBoard events, every histogram and image kept (skips without the package)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(
        str(run / "tensorboard"), size_guidance={"histograms": 0, "images": 0}
    )
    events.Reload()
    return events


def test_tensorboard_logs_scalars_histograms_and_samples(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    code, _, err = run_cli([*TRAIN, "--tensorboard", "--out", str(run)], capsys)
    assert code == 0, err
    events = tensorboard_events(run)
    tags = events.Tags()
    assert {"reconstruction_error", "pseudo_loglik", "epoch_seconds"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("pseudo_loglik")] == [1, 2]
    assert "weight" in tags["histograms"] and "samples" in tags["images"]


def test_tensorboard_for_a_jem_run(tmp_path, capsys, monkeypatch):
    pytest.importorskip("tensorboard")
    run = tmp_path / "jem"
    args = ["train", "jem", "--iterations", "4", "--batch-size", "8", "--buffer-size", "40",
            "--n-steps", "2", "--width", "4", "--n-train", "64", "--warmup-iterations", "1",
            "--log-every", "2", "--checkpoint-every", "2", "--no-progress", "--tensorboard",
            "--out", str(run)]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    events = tensorboard_events(run)
    tags = events.Tags()
    assert {"loss", "classification_loss", "energy_negative"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss")] == [2, 4]
    assert tags["histograms"] and [e.step for e in events.Images("replay_buffer")] == [0, 2, 4]
    assert "tensorboard: true" in (run / "config.yaml").read_text()
    # Reading the run back needs no tensorboard: only training writes to it.
    hide_tensorboard(monkeypatch)
    code, out, err = run_cli(["eval", str(run), "--json"], capsys)
    assert code == 0 and "test_accuracy" in json.loads(out), err


def test_resumed_tensorboard_log_drops_what_a_killed_run_logged_past_its_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from ebmlab.experiments.driver import resume, train
    from ebmlab.experiments.jem import JEMExperimentConfig
    from ebmlab.training.jem import JEMConfig

    training = JEMConfig(iterations=8, batch_size=8, buffer_size=40, n_steps=2,
                         warmup_iterations=1, checkpoint_every=2, log_every=2)  # fmt: skip
    config = JEMExperimentConfig(backbone="mlp", hidden_sizes=[8], n_train=64, tensorboard=True,
                                 training=training)  # fmt: skip
    run = tmp_path / "run"
    train(config, run, progress=False, stop_after=4)
    # What a run killed after iteration 6's log line but before its checkpoint left behind.
    with SummaryWriter(str(run / "tensorboard")) as writer:
        writer.add_scalar("loss", 999.0, 6)
    resume(run, progress=False)
    losses = tensorboard_events(run).Scalars("loss")
    assert [e.step for e in losses] == [2, 4, 6, 8]
    assert 999.0 not in [e.value for e in losses]


def hide_tensorboard(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)


def test_tensorboard_missing_is_one_clear_error(tmp_path, capsys, monkeypatch):
    hide_tensorboard(monkeypatch)
    run = tmp_path / "run"
    code, _, err = run_cli([*TRAIN, "--tensorboard", "--out", str(run)], capsys)
    assert code == 2 and "needs the tensorboard package" in err and not run.exists()


def test_every_train_command_runs_a_tiny_model(tmp_path, capsys):
    tiny = {
        "dbn": ["--layers", "8,4", "--epochs", "1", "--finetune-epochs", "1"],
        "dbm": ["--layers", "8,4", "--epochs", "1", "--pretrain-epochs", "1"],
        "bm": ["--n-hidden", "1", "--epochs", "2"],
        "jem": [
            "--iterations",
            "3",
            "--n-steps",
            "1",
            "--buffer-size",
            "100",
            "--warmup-iterations",
            "1",
        ],
        "ebm2d": ["--iterations", "3", "--n-steps", "1"],
        "sgld-mixture": ["--n-steps", "40", "--n-chains", "4", "--steps-per-chunk", "20"],
    }
    for model, options in tiny.items():
        code, out, err = run_cli(["train", model, *options, "--out", str(tmp_path / model)], capsys)
        assert code == 0, (model, err)
        assert (tmp_path / model / "config.yaml").is_file(), model


def test_resume_refuses_other_settings_and_extends_the_length(tmp_path, capsys):
    run = tmp_path / "run"
    run_cli([*TRAIN, "--out", str(run)], capsys)
    code, _, err = run_cli(["train", "rbm", "--resume", str(run), "--lr", "0.3"], capsys)
    assert (
        code == 2
        and "may change only ['loglik_every', 'training.epochs'], not ['training.lr']" in err
    )
    code, _, err = run_cli(["train", "rbm", "--resume", str(run), "--out", str(run)], capsys)
    assert code == 2 and "drop --out" in err
    code, _, err = run_cli(
        ["train", "rbm", "--resume", str(run), "--epochs", "3", "--no-progress"], capsys
    )
    assert code == 0, err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert "epochs: 3" in (run / "config.yaml").read_text()


def test_demo_sgld_mixture_is_the_recipe_run(tmp_path, capsys):
    run = tmp_path / "demo"
    demo = ["demo", "sgld-mixture", "--out", str(run), "--n-steps", "40", "--n-chains", "4"]
    code, out, err = run_cli([*demo, "--no-progress"], capsys)
    assert code == 0, err
    assert json.loads(out[: out.rindex("}") + 1])["n_kept_per_chain"] == 36
    assert "model: sgld-mixture" in (run / "config.yaml").read_text()
    assert (run / "figures" / "posterior.png").is_file()
    code, out, _ = run_cli(["eval", str(run), "--json"], capsys)
    assert code == 0 and json.loads(out)["n_chains"] == 4


def test_eval_and_sample_of_bm_ebm2d_and_sgld_runs(tmp_path, capsys):
    runs = {
        "bm": (["--image-size", "3", "--n-hidden", "1", "--epochs", "2"], "log_likelihood"),
        "ebm2d": (["--iterations", "3", "--n-steps", "1", "--n-data", "200"], "total_variation"),
        "sgld-mixture": (["--n-steps", "40", "--n-chains", "4"], "fraction_mode_upper_sgld"),
    }
    for model, (options, key) in runs.items():
        run = tmp_path / model
        train = ["train", model, *options, "--out", str(run), "--no-progress"]
        code, _, err = run_cli(train, capsys)
        assert code == 0, (model, err)
        code, out, err = run_cli(["eval", str(run), "--json"], capsys)
        assert code == 0 and isinstance(json.loads(out)[key], float), (model, err)
        figure = tmp_path / f"{model}.png"
        code, _, err = run_cli(
            ["sample", str(run), "--n", "4", "--n-steps", "2", "--out", str(figure)], capsys
        )
        assert code == 0 and figure.stat().st_size > 1000, (model, err)


def test_jem_giving_up_after_its_rollbacks_is_one_error_line(tmp_path, capsys):
    tiny = ["--backbone", "mlp", "--hidden-sizes", "8", "--n-train", "64", "--batch-size", "8",
            "--iterations", "4", "--n-steps", "1", "--buffer-size", "20", "--no-progress"]  # fmt: skip
    args = ["train", "jem", *tiny, "--divergence-threshold", "1e-9", "--max-rollbacks", "0"]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "run")], capsys)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "gave up after 0 rollbacks" in err


@pytest.mark.slow
def test_eval_runs_ais_through_the_compiled_path_on_request(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli([*TRAIN, "--out", str(run)], capsys)
    assert code == 0, err
    estimate = ["eval", str(run), "--loglik", "--n-chains", "10", "--n-betas", "50", "--json",
                "--no-progress"]  # fmt: skip
    results = []
    for extra in ([], ["--compiled-ais"]):
        code, out, err = run_cli([*estimate, *extra], capsys)
        assert code == 0, err
        results.append(json.loads(out)["log_z"])
    assert results[0]["n_betas"] == results[1]["n_betas"] == 50
    # The compiled path draws from its counter stream: another estimate of the same log Z.
    assert results[0]["value"] != results[1]["value"]
    assert abs(results[0]["value"] - results[1]["value"]) < 5.0
