#!/usr/bin/env bash
# `make bench-view`: the results-view benchmark. Starts a Tansu broker (in memory), puts
# N tasks and their results on the topics, then for each store starts the release
# task-generator and measures first start to ready, restart to ready, resident memory,
# and GET /task-result/{id} and GET /task-results?limit=50 latency from C clients
# (bench/src/view/, binary view-bench). The in-memory store, today's view before this
# one, runs at MEMORY_N tasks for comparison.
#
#   N             tasks (and results) for the sqlite and postgres stores (default 1000000)
#   MEMORY_N      tasks for the in-memory store (default 200000; 0 skips it)
#   STORES        comma-separated: sqlite, postgres, memory (default all three)
#   C             concurrent clients of the latency probes (default 16)
#   PROBE_SECS    how long each probe runs (default 10)
#   DATABASE_URL  the PostgreSQL server for the postgres store (a fresh database is made
#                 and dropped; default postgres://postgres@127.0.0.1:5432/test)
# Logs, the stores and view-bench.json go to target/bench-view/<UTC time>/.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$SCRIPTS/lib.sh"
cd "$REPO"

N="${N:-1000000}"
MEMORY_N="${MEMORY_N:-200000}"
STORES="${STORES:-sqlite,postgres,memory}"
C="${C:-16}"
PROBE_SECS="${PROBE_SECS:-10}"
for var in N MEMORY_N C PROBE_SECS; do
    [[ "${!var}" =~ ^[0-9]+$ ]] || { echo "bench-view: $var must be a whole number" >&2; exit 1; }
done

OUT="$REPO/target/bench-view/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
echo "bench-view: building release binaries" >&2
cargo build --release --locked -p task-generator -p pipeline-bench
"$SCRIPTS/bootstrap.sh"
eval "$("$SCRIPTS/paths.sh")"
export TANSU_BIN
# Where cargo put them: CARGO_TARGET_DIR when set.
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
exec "$BIN/view-bench" \
    --tasks "$N" --memory-tasks "$MEMORY_N" --stores "$STORES" \
    --clients "$C" --probe-secs "$PROBE_SECS" \
    --generator "$BIN/task-generator" --out "$OUT"
