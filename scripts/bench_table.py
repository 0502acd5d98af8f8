"""Prints the engine's criterion medians next to LangGraph's baseline, as a Markdown table.

Usage: bench_table.py LANGGRAPH_OUTPUT CRITERION_DIR
"""

import json
import re
import sys
from pathlib import Path

ROWS = [
    # (label, LangGraph line prefix, criterion bench id, goal in microseconds)
    ("10-node chain", "chain10 no-ckpt", "chain10", 50.0),
    ("10-node chain + in-memory checkpointer", "chain10 mem-ckpt", "chain10_inmemory_saver", 133.0),
    ("100-way Send fan-out", "fanout100 (Send)", "fanout100_send", 500.0),
]


def langgraph_ms(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            match = re.search(r"([0-9.]+) ms/run", line)
            if match:
                return float(match.group(1))
    sys.exit(f"bench_table: no '{prefix}' line in the LangGraph output")


def median_us(criterion: Path, bench: str) -> float:
    estimates = criterion / bench / "new" / "estimates.json"
    data = json.loads(estimates.read_text())
    return data["median"]["point_estimate"] / 1000.0


def main() -> None:
    baseline = Path(sys.argv[1]).read_text()
    criterion = Path(sys.argv[2])
    print("| graph | LangGraph (ms/run) | agent-core (µs/run, median) | speed-up | goal |")
    print("|---|---|---|---|---|")
    for label, prefix, bench, goal in ROWS:
        lg = langgraph_ms(baseline, prefix)
        ours = median_us(criterion, bench)
        verdict = "met" if ours <= goal else "missed"
        speed_up = lg * 1000 / ours
        print(f"| {label} | {lg:.2f} | {ours:.1f} | {speed_up:.0f}× | ≤ {goal:.0f} µs: {verdict} |")


if __name__ == "__main__":
    main()
