#!/usr/bin/env bash
# `make bench`: the engine's criterion benches and LangGraph's baseline
# (../shared/baselines/bench_langgraph.py, or scripts/bench_langgraph.py when shared/
# is absent), run one after the other on this machine, printed side by side.
#
#   BENCH_VENV   venv for LangGraph (default <repo>/.venv-bench; created when missing)
#   LANGGRAPH_VERSION   default 1.2.22 (the version the baseline was recorded with)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$REPO/.venv-bench}"
LANGGRAPH_VERSION="${LANGGRAPH_VERSION:-1.2.22}"
OUT="$REPO/target/bench"
mkdir -p "$OUT"

baseline="$REPO/../shared/baselines/bench_langgraph.py"
[[ -f "$baseline" ]] || baseline="$REPO/scripts/bench_langgraph.py"

if ! "$VENV/bin/python" -c "import langgraph, importlib.metadata as m; assert m.version('langgraph') == '$LANGGRAPH_VERSION'" 2>/dev/null; then
    echo "bench: installing langgraph==$LANGGRAPH_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "langgraph==$LANGGRAPH_VERSION"
fi

echo "bench: LangGraph $LANGGRAPH_VERSION baseline ($baseline)" >&2
"$VENV/bin/python" "$baseline" | tee "$OUT/langgraph.txt"

echo "bench: agent-core engine (criterion)" >&2
cargo bench --locked -p agent-core --bench engine -- --noplot 2>&1 | grep -E "time:|^[a-z0-9_]+ +time" | tee "$OUT/engine.txt"

python3 "$REPO/scripts/bench_table.py" "$OUT/langgraph.txt" "$REPO/target/criterion" | tee "$OUT/table.md"
