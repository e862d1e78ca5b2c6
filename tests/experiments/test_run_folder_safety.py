"""Nothing lost, nothing unbounded: run folders against careless users, hostile files and kills."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from ebmlab.cli.app import main
from ebmlab.training.checkpoint import encode_checkpoint, load_checkpoint

TRAIN = ["train", "rbm", "--n-hidden", "8", "--epochs", "3", "--batch-size", "50", "--no-progress"]


def cli(args: list[str], capsys) -> tuple[int, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    return code, capsys.readouterr().err


def files_of(run) -> dict:
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}


def test_overwrite_keeps_the_files_ebmlab_did_not_write(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli([*TRAIN, "--out", str(run)], capsys)[0] == 0
    mine = [run / "notes.md", run / "figures" / "my-plot.png", run / "checkpoints" / "mine.pt"]
    for path in mine:
        path.write_text("the user's own")
    assert cli([*TRAIN, "--out", str(run), "--overwrite"], capsys)[0] == 0
    assert all(path.read_text() == "the user's own" for path in mine)
    assert "config.yaml" in json.loads((run / "manifest.json").read_text())["files"]


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("...")
    code, err = cli([*TRAIN, "--out", str(folder), "--overwrite"], capsys)
    assert code == 2 and "not an ebmlab run folder" in err
    assert (folder / "chapter1.tex").read_text() == "..."


def test_a_bad_new_config_leaves_the_old_run_untouched(tmp_path, capsys):
    run = tmp_path / "run"
    cli([*TRAIN, "--out", str(run)], capsys)
    before = files_of(run)
    for bad in (["--lr", "-1"], ["--dataset", "nope"]):
        code, err = cli([*TRAIN, "--out", str(run), "--overwrite", *bad], capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert files_of(run) == before


def test_a_planted_symlink_is_replaced_never_followed(tmp_path, capsys):
    run, outside = tmp_path / "run", tmp_path / "precious.txt"
    outside.write_text("do not touch")
    cli([*TRAIN, "--out", str(run)], capsys)
    for name in ("samples.png", "training_curves.png"):
        (run / "figures" / name).unlink()
        (run / "figures" / name).symlink_to(outside)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(outside)
    assert cli([*TRAIN, "--out", str(tmp_path / "new")], capsys)[0] == 0
    code, _ = cli(["train", "rbm", "--resume", str(run), "--epochs", "4", "--no-progress"], capsys)
    assert code == 0
    assert outside.read_text() == "do not touch"
    assert not (run / "figures" / "samples.png").is_symlink()


def test_a_second_writer_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    cli([*TRAIN, "--out", str(run)], capsys)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from filelock import FileLock
            lock = FileLock({str(run / ".lock")!r})
            lock.acquire()
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = files_of(run)
        code, err = cli(
            ["train", "rbm", "--resume", str(run), "--epochs", "5", "--no-progress"], capsys
        )
        assert code == 2 and "in use by another ebmlab process" in err
        code, err = cli([*TRAIN, "--out", str(run), "--overwrite"], capsys)
        assert code == 2 and "in use" in err
        assert files_of(run) == before
    finally:
        holder.kill()
        holder.wait()


KILL_IN_WRITE = """
import os, signal
import ebmlab._files as files

real = files.atomic_write

def dying_write(path, payload):
    # Die with the temporary file half written, as a SIGKILL or power cut would.
    if str(path).endswith("step-00000002.safetensors"):
        temp = path.parent / ("." + path.name + ".killed.tmp")
        temp.write_bytes(payload[: len(payload) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, payload)

files.atomic_write = dying_write
"""


def test_a_kill_inside_a_checkpoint_write_resumes_cleanly(tmp_path, capsys):
    whole, run = tmp_path / "whole", tmp_path / "run"
    cli([*TRAIN, "--persistent", "--out", str(whole)], capsys)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_IN_WRITE)
    env = {"PYTHONPATH": str(hook), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ebmlab", *TRAIN, "--persistent", "--out", str(run)],
        env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == -9, done.stderr.decode()
    assert list((run / "checkpoints").glob(".*.tmp")), "the kill should leave a temp file"
    with pytest.warns(UserWarning, match="killed mid-write"):
        assert cli(["train", "rbm", "--resume", str(run), "--no-progress"], capsys)[0] == 0
    assert not list(run.rglob("*.tmp"))
    got, expected = (load_checkpoint(p / "checkpoints" / "step-00000003.safetensors")[0] for p in (run, whole))  # fmt: skip
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def rewrite_latest(run, edit) -> None:
    """Rewrite the newest checkpoint with ``edit(model_state, extra)`` applied (a crafted file)."""
    path = sorted((run / "checkpoints").glob("step-*.safetensors"))[-1]
    model_state, extra = load_checkpoint(path)
    edit(model_state, extra)
    path.write_bytes(encode_checkpoint(model_state, extra))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m, e: e["driver"].update(step=-3), "driver.step must be an integer >= 0"),
        (lambda m, e: e["driver"].update(step="2"), "driver.step must be an integer >= 0"),
        (lambda m, e: e["driver"].update(step=1), "says step 1 but its training state is at step 3"),
        (lambda m, e: e.pop("driver"), "field 'driver' must be a mapping"),
        (lambda m, e: e["shared"].pop("trainer"), "lacks the recipe's state"),
        (lambda m, e: e.update(shared=[1]), "must be mappings"),
        (lambda m, e: e["shared"]["trainer"].update(generator=torch.zeros(3, dtype=torch.uint8)), "lacks the recipe's state"),
        (lambda m, e: e["shared"]["trainer"].update(epoch=[3]), "lacks the recipe's state"),
        (lambda m, e: m["weight"].fill_(float("nan")), "weight holds NaN"),
        (lambda m, e: m.update(weight=torch.zeros(64, 9)), "weight has shape (64, 9)"),
        (lambda m, e: m.pop("hidden_bias"), "do not match the model's"),
    ],
)  # fmt: skip
def test_crafted_checkpoints_get_one_clear_error(edit, message, tmp_path, capsys):
    run = tmp_path / "run"
    cli([*TRAIN, "--out", str(run)], capsys)
    rewrite_latest(run, edit)
    before = files_of(run)
    code, err = cli(["eval", str(run)], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert files_of(run) == before


def test_sizes_beyond_the_machine_are_refused_before_allocating(tmp_path, capsys):
    start = time.perf_counter()
    code, err = cli([*TRAIN, "--n-hidden", "1000000000", "--out", str(tmp_path / "big")], capsys)
    assert code == 2 and "GiB of memory" in err and not (tmp_path / "big").exists()
    run = tmp_path / "run"
    cli([*TRAIN, "--out", str(run)], capsys)
    code, err = cli(["sample", str(run), "--n", "1000000000"], capsys)
    assert code == 2 and "sampling n=1000000000 needs about" in err
    assert time.perf_counter() - start < 60


def test_a_yaml_alias_bomb_is_refused(tmp_path, capsys):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    code, err = cli([*TRAIN, "--config", str(bomb), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "expands to more than" in err
