#!/usr/bin/env bash
# `make bench-streams`: the live-streams benchmark. One Tansu broker (in memory), an
# OpenAI stand-in that streams each answer word by word, and the release builds of
# task-generator and task-solver; then `stream-bench` measures
#   1. the time to the first token after POST /generate-task (Accept: text/event-stream),
#      N tasks from C clients;
#   2. STREAMS streams open at once on the one task-generator replica: its RSS and CPU;
#   3. the baseline of the same run: as many clients polling GET /task-result every second
#      (what clients did before streams), the same figures.
#
#   N                  tasks timed for the first token (default 200)
#   C                  clients while timing them (default 4)
#   STREAMS            streams at once, and polling clients (default 1000)
#   TOKENS             words of each streamed answer (default 100)
#   TOKEN_INTERVAL_MS  the stand-in's pause between words (default 20: 50 tokens/s)
#   DELAY_MS           the stand-in's delay before every answer (default 0)
# Any other service setting in the environment (STREAM_CHUNK_MS, SOLVER_CONCURRENCY, ...)
# reaches the services. Logs and results go to target/bench-streams/<UTC time>/.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$SCRIPTS/lib.sh"
cd "$REPO"

N="${N:-200}"
C="${C:-4}"
STREAMS="${STREAMS:-1000}"
TOKENS="${TOKENS:-100}"
TOKEN_INTERVAL_MS="${TOKEN_INTERVAL_MS:-20}"
DELAY_MS="${DELAY_MS:-0}"

log() { echo "bench-streams: $*" >&2; }
die() { log "error: $*"; exit 1; }

for var in N C STREAMS TOKENS TOKEN_INTERVAL_MS DELAY_MS; do
    [[ "${!var}" =~ ^[0-9]+$ ]] || die "$var must be a whole number, not '${!var}'"
done
# Each stream is a connection of the client and of the replica.
if (( $(ulimit -n) < 2 * STREAMS + 1024 )); then
    ulimit -n $((2 * STREAMS + 1024)) 2>/dev/null \
        || die "open files limit $(ulimit -n) is too low for STREAMS=$STREAMS (ulimit -n)"
fi

BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
OUT="$REPO/target/bench-streams/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"

log "building release binaries"
cargo build --release --locked -p task-generator -p task-solver -p pipeline-bench
"$SCRIPTS/bootstrap.sh"
eval "$("$SCRIPTS/paths.sh")"
[[ -x "$TANSU_BIN" ]] || die "no tansu binary at $TANSU_BIN"

# shellcheck source=scripts/bench-lib.sh
source "$SCRIPTS/bench-lib.sh"

PREFIX="bench$RANDOM$RANDOM"
log "N=$N C=$C STREAMS=$STREAMS TOKENS=$TOKENS TOKEN_INTERVAL_MS=$TOKEN_INTERVAL_MS; logs in $OUT"
start_tansu
start_stand_in --delay-ms "$DELAY_MS" --stream-tokens "$TOKENS" --token-interval-ms "$TOKEN_INTERVAL_MS"

GENERATOR_PORT="$(free_port)"
SOLVER_PORT="$(free_port)"
service=(env -u KAFKA_TOPIC -u KAFKA_RESULTS_TOPIC -u KAFKA_DEAD_LETTER_TOPIC
    -u KAFKA_PROGRESS_TOPIC -u CONFIG_FILE
    KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" KAFKA_TOPIC_PREFIX="$PREFIX"
    OPENAI_BASE_URL="http://127.0.0.1:$LLM_PORT/v1" OPENAI_API_KEY=sk-bench
    DISABLECHECKPOINTER=true RUST_LOG=warn BIND_ADDRESS=127.0.0.1 DATA_DIR="$OUT/data")
start task-generator "${service[@]}" PORT="$GENERATOR_PORT" "$BIN/task-generator"
GENERATOR_PID="${pids[-1]}"
start task-solver "${service[@]}" PORT="$SOLVER_PORT" "$BIN/task-solver"
SOLVER_PID="${pids[-1]}"
"$SCRIPTS/wait-for.sh" -t 60 -n task-generator -p "$GENERATOR_PID" "http://127.0.0.1:$GENERATOR_PORT/ready"
"$SCRIPTS/wait-for.sh" -t 60 -n task-solver -p "$SOLVER_PID" "http://127.0.0.1:$SOLVER_PORT/ready"

# The warm-up also waits out the solver's group join (~3 s on Tansu).
log "warm-up: 20 streamed tasks"
"$BIN/stream-bench" --url "http://127.0.0.1:$GENERATOR_PORT" --pid "$GENERATOR_PID" \
    -n 20 -c 4 --streams 4 >"$OUT/warmup.json" 2>"$OUT/warmup.log" \
    || die "the warm-up failed (see $OUT/warmup.log)"

"$BIN/stream-bench" --url "http://127.0.0.1:$GENERATOR_PORT" --pid "$GENERATOR_PID" \
    -n "$N" -c "$C" --streams "$STREAMS" >"$OUT/streams.json" 2> >(tee "$OUT/stream-bench.log" >&2)
cat "$OUT/streams.json"
for name in task-generator task-solver; do
    lines="$(grep -cE 'WARN|ERROR|panicked' "$OUT/$name.log" || true)"
    ((lines == 0)) || log "$name: $lines WARN/ERROR lines in $OUT/$name.log"
done
log "solver RSS: $(awk '/^VmRSS:/ { print $2 / 1000 " MB" }' "/proc/$SOLVER_PID/status" 2>/dev/null || echo '?')"
