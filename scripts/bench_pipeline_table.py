#!/usr/bin/env python3
"""Markdown table of `make bench-pipeline`: the Rust system next to the Python baseline.

Usage: bench_pipeline_table.py --title TITLE --rust RUST.json --rust-rss RUST-RSS.txt
                               [--python PYTHON.txt]

  RUST.json      the loadgen's JSON line (target/release/loadgen)
  RUST-RSS.txt   lines "rss_kb NAME RSS_KB peak_kb HWM_KB" (task-generator, task-solver, ...)
  PYTHON.txt     the output of ../shared/baselines/pipeline/run.sh python N C: a JSON line
                 from its loadgen.py and "rss_kb RSS_KB COMMAND" lines, generator first
"""

import argparse
import json
import sys


def json_line(path):
    """The last line of PATH that parses as a JSON object, or None."""
    found = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    found = json.loads(line)
                except json.JSONDecodeError:
                    pass
    return found


def rust_rss(path):
    """{name: (rss_kb, peak_kb)} from "rss_kb NAME RSS peak_kb HWM" lines."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0] == "rss_kb" and parts[3] == "peak_kb":
                out[parts[1]] = (int(parts[2]), int(parts[4]))
    return out


def python_rss(path):
    """[(rss_kb, None), ...] from run.sh's "rss_kb RSS COMMAND" lines.

    In order: generator, solver.
    """
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "rss_kb" and parts[1].isdigit():
                out.append((int(parts[1]), None))
    return out


def mib(kb):
    return f"{kb / 1024:.1f}"


def rss_cell(pair):
    if pair is None:
        return "–"
    rss, peak = pair
    return mib(rss) if peak is None else f"{mib(rss)} (peak {mib(peak)})"


def cell(value):
    return "–" if value is None else str(value)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--title", default="")
    ap.add_argument("--rust", required=True)
    ap.add_argument("--rust-rss", required=True)
    ap.add_argument("--python")
    a = ap.parse_args()

    rust = json_line(a.rust)
    if rust is None:
        sys.exit(f"bench_pipeline_table: no JSON line in {a.rust}")
    rss = rust_rss(a.rust_rss)
    columns = [("rust", rust, [rss.get("task-generator"), rss.get("task-solver")])]
    if a.python:
        python = json_line(a.python)
        if python is None:
            print(
                f"bench_pipeline_table: no JSON line in {a.python}; baseline left out",
                file=sys.stderr,
            )
        else:
            prss = python_rss(a.python) + [None, None]
            columns.append(("python", python, prss[:2]))

    rows = [
        ("tasks/s", "tasks_per_s"),
        ("posts/s", "posts_per_s"),
        ("p50 ms", "p50_ms"),
        ("p95 ms", "p95_ms"),
        ("p99 ms", "p99_ms"),
        ("completed", "completed"),
        ("lost", "lost"),
        ("post errors", "post_errors"),
    ]
    if a.title:
        print(f"### {a.title}\n")
    print("| | " + " | ".join(name for name, _, _ in columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for label, key in rows:
        print(f"| {label} | " + " | ".join(cell(data.get(key)) for _, data, _ in columns) + " |")
    for i, label in enumerate(["RSS task-generator MiB", "RSS task-solver MiB"]):
        print(f"| {label} | " + " | ".join(rss_cell(r[i]) for _, _, r in columns) + " |")
    totals = []
    for _, _, r in columns:
        totals.append(mib(r[0][0] + r[1][0]) if r[0] and r[1] else "–")
    print("| RSS generator + solver MiB | " + " | ".join(totals) + " |")

    if len(columns) == 2:
        r, p = columns[0][1].get("tasks_per_s"), columns[1][1].get("tasks_per_s")
        ratio = f"{r / p:.2f}×" if r and p else "–"
        print(f"\ntasks/s rust/python: {ratio}")


if __name__ == "__main__":
    main()
