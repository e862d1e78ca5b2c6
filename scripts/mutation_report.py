"""Summarise mutmut's results per module: killed, survived, timeout, no tests, kill rate.

``make mutation`` runs mutmut over the core packages (``[tool.mutmut]`` in
pyproject.toml) and then this script, which reads ``mutmut results --all true``
and writes docs/mutation.md: a table per module and the surviving mutants by
name (``mutmut show NAME`` prints one as a diff). Mutants listed in
``tests/mutation_equivalent.txt`` (``NAME  # why it cannot change behaviour``)
are counted apart and shown with their reason.

The kill rate is (killed + timeout) / (all - equivalent - not checked - skipped): a
mutant that no test reaches ("no tests") counts against it like a survivor; one the
last run did not get to ("not checked") counts neither way, and a module with none
checked shows no rate.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tests" / "mutation_equivalent.txt"
KILLED = ("killed", "timeout")
COLUMNS = ("killed", "timeout", "survived", "no tests", "equivalent", "other", "not checked")
UNCOUNTED = ("equivalent", "not checked")  # neither for nor against the kill rate


def read_results(lines: list[str]) -> dict[str, str]:
    """``{mutant name: status}`` from the lines of ``mutmut results --all true``."""
    results = {}
    for line in lines:
        name, sep, status = line.strip().rpartition(": ")
        if sep and name.startswith("ebmlab."):
            results[name] = status.strip()
    return results


def read_equivalent(path: Path = EQUIVALENT) -> dict[str, str]:
    """``{mutant name: reason}`` from the equivalent-mutant list (comments after ``#``)."""
    if not path.is_file():
        return {}
    listed = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, _, reason = line.partition("#")
        if name.strip():
            listed[name.strip()] = reason.strip()
    return listed


def module_of(mutant: str) -> str:
    """``ebmlab.samplers.schedules`` of ``ebmlab.samplers.schedules.xǁClassǁmethod__mutmut_3``."""
    return mutant.rsplit(".", 1)[0]


def tally(results: dict[str, str], equivalent: dict[str, str]) -> dict[str, Counter]:
    """Counts per module of each column of :data:`COLUMNS`."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for name, status in results.items():
        if name in equivalent and status != "killed":
            column = "equivalent"
        elif status in COLUMNS:
            column = status
        elif status == "skipped":
            continue
        else:  # suspicious, segfault, not checked, ...: shown, never counted as killed
            column = "other"
        counts[module_of(name)][column] += 1
    return dict(sorted(counts.items()))


def kill_rate(count: Counter) -> float:
    """(killed + timeout) over every counted mutant that is not listed as equivalent."""
    tested = sum(count[c] for c in COLUMNS if c not in UNCOUNTED)
    return sum(count[c] for c in KILLED) / tested if tested else float("nan")


def _rate(count: Counter) -> str:
    rate = kill_rate(count)
    return "-" if rate != rate else f"{rate:.1%}"


def render(results: dict[str, str], equivalent: dict[str, str]) -> str:
    """docs/mutation.md: per-package and per-module tables, then the survivors."""
    counts = tally(results, equivalent)
    packages: dict[str, Counter] = defaultdict(Counter)
    for module, count in counts.items():
        packages[".".join(module.split(".")[:2])].update(count)
    total = sum(packages.values(), Counter())
    lines = [
        "# Mutation testing",
        "",
        "`make mutation` changes the core's code one small edit at a time (mutmut: operators,",
        "constants, arguments, return values) and runs the fast tests that reach the changed",
        "function; a mutant the tests do not notice *survives*. This page is written by",
        "`scripts/mutation_report.py` from the last run; `mutmut show NAME` prints a mutant.",
        "Kill rate = (killed + timeout) / every checked mutant not listed as equivalent",
        '(tests/mutation_equivalent.txt gives the reason for each); "not checked": the run',
        "stopped before it (`make mutation` continues where it stopped).",
        "",
        "| package | " + " | ".join(COLUMNS) + " | kill rate |",
        "| --- |" + " ---: |" * (len(COLUMNS) + 1),
    ]
    for name, count in [*sorted(packages.items()), ("all", total)]:
        cells = " | ".join(str(count[c]) for c in COLUMNS)
        lines.append(f"| {name} | {cells} | {_rate(count)} |")
    lines += ["", "## Per module", "", "| module | " + " | ".join(COLUMNS) + " | kill rate |",
              "| --- |" + " ---: |" * (len(COLUMNS) + 1)]  # fmt: skip
    for module, count in counts.items():
        cells = " | ".join(str(count[c]) for c in COLUMNS)
        lines.append(f"| {module} | {cells} | {_rate(count)} |")
    survivors = sorted(n for n, s in results.items() if s in ("survived", "no tests")
                       and n not in equivalent)  # fmt: skip
    lines += ["", f"## Survivors ({len(survivors)})", ""]
    lines += [f"- `{name}` ({results[name]})" for name in survivors] or ["None."]
    listed = sorted(n for n in equivalent if n in results and results[n] != "killed")
    lines += ["", f"## Listed as equivalent ({len(listed)})", ""]
    lines += [f"- `{name}`: {equivalent[name]}" for name in listed] or ["None."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the page here (default: print it)")
    args = parser.parse_args(argv)
    mutmut = Path(sys.executable).with_name("mutmut")
    output = subprocess.run([str(mutmut), "results", "--all", "true"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    results = read_results(output.splitlines())
    if not results:
        print("no mutmut results: run `make mutation` first", file=sys.stderr)
        return 1
    page = render(results, read_equivalent())
    if args.write:
        args.write.write_text(page, encoding="utf-8")
        print(f"wrote {args.write}")
    else:
        print(page, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
