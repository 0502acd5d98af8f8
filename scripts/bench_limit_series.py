#!/usr/bin/env python3
"""Prints the LLM concurrency limit over time from `/health` samples.

Input: lines `EPOCH_SECONDS JSON` (the body of a service's GET /health, or `{}` when it
did not answer), as scripts/bench-pipeline.sh samples them every second.
Output: one line per sample with the seconds since the first, the adaptive limit, the
requests in flight and waiting, and the overloads (429/503/timeouts) seen so far.
"""

import json
import sys


def main(path: str) -> None:
    start = None
    for line in open(path, encoding="utf-8"):
        stamp, _, body = line.strip().partition(" ")
        try:
            at = float(stamp)
            limit = json.loads(body or "{}").get("llm_concurrency")
        except ValueError:
            continue
        if not limit:
            continue
        start = at if start is None else start
        print(
            f"t={at - start:6.1f}s limit={limit['limit']:4d} in_flight={limit['in_flight']:4d} "
            f"waiting={limit['waiting']:4d} overloads={limit['overloads']} "
            f"decreases={limit['decreases']}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
