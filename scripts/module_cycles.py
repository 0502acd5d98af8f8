"""Refuse import cycles between the top-level modules of each Rust crate (`make lint`).

A module's edges are the `crate::<module>` paths in its files (`use crate::{a::…, b}`
included), test files and `#[cfg(test)] mod tests` blocks left out: tests may build
their input through any module. Prints each crate's edges; exits 1 naming any cycle.

    python3 scripts/module_cycles.py crates/*/src
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CRATE_PATH = re.compile(r"crate::([a-z_][a-z0-9_]*)")
USE_GROUP = re.compile(r"use crate::\{([^;]*)\};", re.S)
GROUP_ITEM = re.compile(r"(?:^|[,{\s])([a-z_][a-z0-9_]*)(?=::|\s*[,}])")
TEST_BLOCK = "#[cfg(test)]\nmod tests {"
ROOTS = {"lib", "main"}


def code_of(path: Path) -> str:
    """The file's text without its test block and its comments."""
    text = path.read_text(encoding="utf-8")
    cut = text.find(TEST_BLOCK)
    if cut >= 0:
        text = text[:cut]
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("//"))


def edges_of(src: Path) -> dict[str, set[str]]:
    """Top-level module → the other top-level modules its code names."""
    modules = {p.stem if p.is_file() else p.name for p in src.iterdir()} - ROOTS
    edges: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.rs")):
        relative = path.relative_to(src)
        if path.name == "tests.rs" or "tests" in relative.parts[:-1]:
            continue
        top = relative.parts[0].removesuffix(".rs")
        if top in ROOTS:
            continue
        code = code_of(path)
        named = set(CRATE_PATH.findall(code))
        for group in USE_GROUP.findall(code):
            named.update(GROUP_ITEM.findall(group))
        named &= modules
        named.discard(top)
        edges.setdefault(top, set()).update(named)
    return edges


def cycles_of(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle reachable in `edges`, each once, as a path back to its start."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt) :] + [nxt]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    found.append(cycle)
            else:
                walk(nxt, path + [nxt])

    for start in sorted(edges):
        walk(start, [start])
    return found


def main(args: list[str]) -> int:
    failed = False
    for arg in args:
        src = Path(arg)
        edges = edges_of(src)
        shown = ", ".join(f"{m} → {'/'.join(sorted(t)) or '∅'}" for m, t in sorted(edges.items()))
        print(f"module-cycles: {src}: {shown}")
        for cycle in cycles_of(edges):
            failed = True
            print(f"module-cycles: {src}: cycle {' → '.join(cycle)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
