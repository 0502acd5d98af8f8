#!/usr/bin/env bash
# `make bench-agents`: the agent runtime's request/reply round trip over a broker. One
# Tansu broker (in memory) and two processes of the release `agent-bench`: `serve`
# answers the `echo` agent type (at the runtime's defaults), `call` warms up (WARMUP
# requests), then sends N requests from 1 caller and N from C concurrent callers, timing
# each from `send_message` to its reply, and prints requests/s and p50/p99.
#
#   N       requests at each level (default 2000)
#   C       concurrent callers of the second level (default 64)
#   WARMUP  requests before measuring (default 200)
#   CONCURRENCY  requests the echo agent answers at once (default 8, the runtime's)
# Logs and results go to target/bench-agents/<UTC time>/.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$SCRIPTS/lib.sh"
cd "$REPO"

N="${N:-2000}"
C="${C:-64}"
WARMUP="${WARMUP:-200}"
CONCURRENCY="${CONCURRENCY:-8}"

log() { echo "bench-agents: $*" >&2; }
die() { log "error: $*"; exit 1; }

for var in N C WARMUP CONCURRENCY; do
    [[ "${!var}" =~ ^[0-9]+$ ]] || die "$var must be a whole number, not '${!var}'"
done
((N > 0 && C > 0 && CONCURRENCY > 0)) || die "N, C and CONCURRENCY must be above 0"

BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
OUT="$REPO/target/bench-agents/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"

log "building the release agent-bench"
cargo build --release --locked -p pipeline-bench --bin agent-bench
"$SCRIPTS/bootstrap.sh"
eval "$("$SCRIPTS/paths.sh")"
[[ -x "$TANSU_BIN" ]] || die "no tansu binary at $TANSU_BIN"

# shellcheck source=scripts/bench-lib.sh
source "$SCRIPTS/bench-lib.sh"

# A fresh topic prefix per run: no request or reply of an earlier run is read.
PREFIX="bench$RANDOM$RANDOM"
log "N=$N C=$C WARMUP=$WARMUP CONCURRENCY=$CONCURRENCY prefix $PREFIX; logs in $OUT"
start_tansu
client=(env -u KAFKA_BOOTSTRAP_SERVERS RUST_LOG=warn "$BIN/agent-bench"
    --brokers "$BOOTSTRAP" --topic-prefix "$PREFIX")
start echo "${client[@]}" serve --instance-id echo-1 --concurrency "$CONCURRENCY"
ECHO_PID="${pids[-1]}"
for _ in $(seq 300); do
    grep -q '^ready ' "$OUT/echo.log" && break
    kill -0 "$ECHO_PID" 2>/dev/null || die "agent-bench serve stopped (see $OUT/echo.log)"
    sleep 0.1
done
grep -q '^ready ' "$OUT/echo.log" || die "agent-bench serve not ready within 30 s (see $OUT/echo.log)"

"${client[@]}" call -n "$N" -c "1,$C" --warmup "$WARMUP" \
    >"$OUT/agents.json" 2> >(tee "$OUT/call.log" >&2)
cat "$OUT/agents.json"
lines="$(grep -cE 'WARN|ERROR|panicked' "$OUT/echo.log" || true)"
((lines == 0)) || log "echo: $lines WARN/ERROR lines in $OUT/echo.log"
log "echo RSS: $(awk '/^VmRSS:/ { print $2 / 1000 " MB" }' "/proc/$ECHO_PID/status" 2>/dev/null || echo '?')"
