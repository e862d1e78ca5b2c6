"""The documentation stays true: examples run, the CLI reference is current, links resolve.

The site itself is built with ``mkdocs build --strict`` when mkdocs is installed (the
``docs`` extra); the other checks need nothing beyond the test dependencies.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted([*DOCS.glob("*.md"), *DOCS.glob("models/*.md"), ROOT / "README.md"])
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TINY_EXAMPLES = [path for path in EXAMPLES if '"--tiny"' in path.read_text()]
# Measured on one loaded core: these finish their --tiny run in under ~10 s (torch import
# included); any other example, including ones added later, is treated as slow.
FAST_EXAMPLES = {"rbm_digits.py", "langevin_2d.py", "sgld_mixture.py"}

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
FENCED_CODE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
SNIPPET = re.compile(r"^\s*--8<--\s+\"([^\"]+)\"", re.MULTILINE)


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts/gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _example_params():
    for path in TINY_EXAMPLES:
        marks = () if path.name in FAST_EXAMPLES else (pytest.mark.slow,)
        yield pytest.param(path, id=path.stem, marks=marks)


# ----- (1) examples run on tiny settings -----------------------------------------------


@pytest.mark.parametrize("script", list(_example_params()))
def test_example_runs_tiny_and_writes_its_figure(script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(script), "--tiny", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
    figures = list(tmp_path.rglob("*.png"))
    assert figures, f"{script.name} --tiny wrote no PNG under --out {tmp_path}"
    assert all(path.stat().st_size > 0 for path in figures)


def test_the_gallery_scripts_support_tiny() -> None:
    # The three gallery scripts must stay testable; a script losing --tiny drops out silently.
    assert {path.name for path in TINY_EXAMPLES} >= FAST_EXAMPLES


# ----- (2) the CLI reference is generated from the code and current ---------------------


def test_cli_reference_is_current() -> None:
    expected = _load_generator().render_cli_reference()
    current = (DOCS / "cli.md").read_text()
    assert current == expected, "docs/cli.md is stale: run `python scripts/gen_cli_docs.py`"


def test_cli_generator_walks_the_command_tree() -> None:
    # A made-up app: new groups, commands and options must appear without touching the script.
    app = typer.Typer(help="Top help.")
    train = typer.Typer(help="Train things.")
    app.add_typer(train, name="train")

    @train.command("widget")
    def widget(
        size: int = typer.Option(3, help="How big | how wide."),
        fast: bool = typer.Option(False, "--fast/--slow", help="Speed."),
        name: str = typer.Argument(..., help="The widget's name."),
    ) -> None:
        """Train a widget."""

    @train.command("gadget", hidden=True)
    def gadget() -> None:
        """Hidden."""

    text = _load_generator().render_cli_reference(app, program="tool")
    assert "#### tool train widget" in text
    assert "Train a widget." in text
    assert "| `--size` | int | `3` | How big \\| how wide. |" in text
    assert "| `--fast` / `--slow` | flag | `--slow` | Speed. |" in text
    assert "| `NAME` (argument) | str | required | The widget's name. |" in text
    assert "[tool train widget](#tool-train-widget)" in text
    assert "gadget" not in text


# ----- (3) links in the Markdown pages resolve ------------------------------------------


def _relative_links(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCED_CODE.sub("", page.read_text()))
    targets = LINK.findall(text) + REFERENCE_LINK.findall(text)
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", t, re.IGNORECASE)]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_point_to_existing_files(page: Path) -> None:
    missing = [
        target
        for target in _relative_links(page)
        if not (page.parent / target.split("#")[0].split("?")[0]).exists()
    ]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_link_checker_sees_links_and_skips_code(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "[a](a.md#x) ![b](fig/b.png) [web](https://x.org) [top](#top)\n"
        "`[not](code.md)`\n```\n[nor](fenced.md)\n```\n[ref]: c.md\n"
    )
    assert sorted(_relative_links(page)) == ["a.md#x", "c.md", "fig/b.png"]


# ----- the site's configuration ---------------------------------------------------------


def _nav_files(entries) -> list[str]:
    files = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        files += _nav_files(value) if isinstance(value, list) else [value]
    return files


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    nav = _nav_files(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert sorted(pages - set(nav)) == [], "pages missing from the nav in mkdocs.yml"
    assert sorted(set(nav) - pages) == [], "nav entries without a page"


def test_embedded_files_exist() -> None:
    # Pages embed files with `--8<-- "path"` (relative to the repository root) at build time.
    missing = [
        f"{page.name}: {path}"
        for page in DOCS.rglob("*.md")
        for path in SNIPPET.findall(page.read_text())
        if not (ROOT / path).is_file()
    ]
    assert not missing, f"embedded files missing: {missing}"


# ----- (4) the site builds, offline and strictly ----------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs and mkdocs-material are not installed (pip install -e '.[docs]')",
)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "cli.html").is_file()
    assert (tmp_path / "index.html").is_file()
