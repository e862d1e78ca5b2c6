"""One benchmark command: every workload against its peer, measured side by side.

    python benchmarks/run_all.py --quick          # about a minute: smaller sizes
    python benchmarks/run_all.py --write          # full sizes; rewrites the table in RESULTS.md

Each workload runs in its own child process so its peak resident memory can be
reported; within a workload, ebmlab and its peer run in the same process, one
after the other, so their ratio is measured under the same conditions.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
from _common import cpu_model, machine_summary

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"


def run_workload(name: str, quick: bool) -> list[dict]:
    """Run one workload in a child process, which reports its rows and its own peak RSS."""
    command = [sys.executable, str(HERE / "run_all.py"), "--child", name] + (
        ["--quick"] if quick else []
    )
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return [{"workload": name, "note": f"failed: {tail[0]}"}]
    return json.loads(done.stdout.strip().splitlines()[-1])


def format_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def table(rows: list[dict]) -> str:
    lines = [
        "| workload | CPU | threads | precision | ebmlab | unit | peer | peer's figure | speed-up vs peer | of machine bound | peak RSS (MiB) | note |",
        "| --- | --- | ---: | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    cpu, threads = cpu_model(), torch.get_num_threads()
    for r in rows:
        bound = "-" if r.get("of_bound") is None else f"{r['of_bound']:.0%}"
        speedup = "-" if r.get("speedup") is None else f"{r['speedup']:.2f}x"
        lines.append(
            f"| {r['workload']} | {cpu} | {threads} | {r.get('precision', 'float32')} "
            f"| {format_value(r.get('ebmlab'))} | {r.get('unit', '')} | {r.get('peer', '')} "
            f"| {format_value(r.get('peer_value'))} | {speedup} | {bound} | {format_value(r.get('peak_rss_mib'))} "
            f"| {r.get('note', '')} |"
        )
    return "\n".join(lines)


def write_results(markdown: str, command: str) -> None:
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else f"# Benchmark results\n\n{BEGIN}\n{END}\n"
    block = f"{BEGIN}\nMachine: {machine_summary()}\n\nCommand: `{command}`\n\n{markdown}\n{END}"
    start, end = text.find(BEGIN), text.find(END)
    text = (
        text[:start] + block + text[end + len(END) :]
        if start >= 0 and end >= 0
        else text + "\n" + block + "\n"
    )
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--only", nargs="*", help="workloads to run (default: all)")
    parser.add_argument(
        "--write", action="store_true", help="rewrite the table in benchmarks/RESULTS.md"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import workloads

    suite = workloads.QUICK if args.quick else workloads.FULL
    if args.child:
        rows = workloads.timed(suite[args.child])
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
        print(json.dumps([{**row, "peak_rss_mib": peak_mib} for row in rows]))
        return
    names = args.only or list(suite)
    unknown = sorted(set(names) - set(suite))
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {sorted(suite)}")
    print(f"machine: {machine_summary()}", flush=True)
    rows = []
    for name in names:
        result = run_workload(name, args.quick)
        rows.extend(result)
        print(
            table(result).splitlines()[-1]
            if len(result) == 1
            else "\n".join(table(result).splitlines()[2:]),
            flush=True,
        )
    markdown = table(rows)
    print("\n" + markdown)
    if args.write:
        write_results(markdown, " ".join(["python", "benchmarks/run_all.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
