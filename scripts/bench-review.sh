#!/usr/bin/env bash
# `make bench-review`: what tasks waiting for review cost a solver. One Tansu broker (in
# memory), an OpenAI stand-in and the release task-solver with CHECKPOINTER=sqlite; tasks
# are produced straight onto the events topic (loadgen --mode topic) and timed until their
# first result on the results topic:
#   1. N plain tasks: the solver's throughput and RSS (the baseline of this run);
#   2. WAITING tasks with human_review: each pauses after its plan (an interrupted
#      result); the solver's RSS once they all wait;
#   3. N plain tasks again, with the WAITING tasks still waiting: throughput and RSS.
#
#   N        plain tasks in each of phases 1 and 3 (default 2000)
#   WAITING  tasks paused for review (default 1000)
# Logs and results go to target/bench-review/<UTC time>/.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$SCRIPTS/lib.sh"
cd "$REPO"

N="${N:-2000}"
WAITING="${WAITING:-1000}"
log() { echo "bench-review: $*" >&2; }
die() { log "error: $*"; exit 1; }
for var in N WAITING; do
    [[ "${!var}" =~ ^[0-9]+$ ]] || die "$var must be a whole number, not '${!var}'"
done

BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
OUT="$REPO/target/bench-review/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT/data"

log "building release binaries"
cargo build --release --locked -p task-solver -p pipeline-bench
"$SCRIPTS/bootstrap.sh"
eval "$("$SCRIPTS/paths.sh")"
[[ -x "$TANSU_BIN" ]] || die "no tansu binary at $TANSU_BIN"

# shellcheck source=scripts/bench-lib.sh
source "$SCRIPTS/bench-lib.sh"
# rss PID: resident memory in MB.
rss() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1000 }' "/proc/$1/status"; }

PREFIX="bench$RANDOM$RANDOM"
EVENTS="$PREFIX-langgraph-agent-events"
RESULTS="$PREFIX-langgraph-task-results"
log "N=$N WAITING=$WAITING; logs in $OUT"
start_tansu
for topic in "$EVENTS" "$RESULTS"; do
    RUST_LOG=warn "$TANSU_BIN" topic create --broker "tcp://$BOOTSTRAP" --partitions 3 "$topic" \
        >>"$OUT/topics.log" 2>&1 || die "cannot create topic $topic (see $OUT/topics.log)"
done

start_stand_in --delay-ms 0

SOLVER_PORT="$(free_port)"
start task-solver env -u KAFKA_TOPIC -u KAFKA_RESULTS_TOPIC -u KAFKA_DEAD_LETTER_TOPIC \
    -u KAFKA_PROGRESS_TOPIC -u CONFIG_FILE -u DISABLECHECKPOINTER \
    KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" KAFKA_TOPIC_PREFIX="$PREFIX" \
    OPENAI_BASE_URL="http://127.0.0.1:$LLM_PORT/v1" OPENAI_API_KEY=sk-bench \
    CHECKPOINTER=sqlite DATA_DIR="$OUT/data" RUST_LOG=warn BIND_ADDRESS=127.0.0.1 \
    PORT="$SOLVER_PORT" "$BIN/task-solver"
SOLVER_PID="${pids[-1]}"
"$SCRIPTS/wait-for.sh" -t 60 -n task-solver -p "$SOLVER_PID" "http://127.0.0.1:$SOLVER_PORT/ready"

loadgen=("$BIN/loadgen" --mode topic --bootstrap "$BOOTSTRAP" --events-topic "$EVENTS"
    --results-topic "$RESULTS" --timeout-secs 300)
log "warm-up: 50 tasks (and the solver's group join)"
"${loadgen[@]}" -n 50 >"$OUT/warmup.json" 2>"$OUT/warmup.log" || die "warm-up failed"

log "1. $N plain tasks"
"${loadgen[@]}" -n "$N" >"$OUT/before.json" 2>"$OUT/before.log"
RSS_BEFORE="$(rss "$SOLVER_PID")"
log "2. $WAITING tasks paused for review"
"${loadgen[@]}" -n "$WAITING" --human-review >"$OUT/paused.json" 2>"$OUT/paused.log"
sleep 2
RSS_WAITING="$(rss "$SOLVER_PID")"
THREADS="$(python3 - "$OUT/data/checkpoints.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("SELECT count(DISTINCT thread_id) FROM checkpoints").fetchone()[0])
PY
)"
log "3. $N plain tasks with $WAITING waiting"
"${loadgen[@]}" -n "$N" >"$OUT/after.json" 2>"$OUT/after.log"
RSS_AFTER="$(rss "$SOLVER_PID")"

python3 - "$OUT" "$RSS_BEFORE" "$RSS_WAITING" "$RSS_AFTER" "$THREADS" "$N" "$WAITING" <<'PY' | tee "$OUT/table.md"
import json, sys
out, before_rss, waiting_rss, after_rss, threads, n, waiting = sys.argv[1:]
load = lambda name: json.load(open(f"{out}/{name}.json"))
before, paused, after = load("before"), load("paused"), load("after")
print(f"| phase | tasks | completed | tasks/s | p50 / p99 ms | solver RSS after |")
print("|---|---|---|---|---|---|")
print(f"| 1. plain | {n} | {before['completed']} | {before['tasks_per_s']:.0f} | {before['p50_ms']:.0f} / {before['p99_ms']:.0f} | {before_rss} MB |")
print(f"| 2. human_review (paused) | {waiting} | {paused['completed']} interrupted | {paused['tasks_per_s']:.0f} | {paused['p50_ms']:.0f} / {paused['p99_ms']:.0f} | {waiting_rss} MB |")
print(f"| 3. plain, {waiting} waiting | {n} | {after['completed']} | {after['tasks_per_s']:.0f} | {after['p50_ms']:.0f} / {after['p99_ms']:.0f} | {after_rss} MB |")
print()
print(f"throughput with {waiting} waiting / without: {after['tasks_per_s'] / before['tasks_per_s']:.2f}x; "
      f"RSS {float(after_rss) - float(before_rss):+.1f} MB; threads in the checkpoint file: {threads}")
PY
lines="$(grep -cE 'WARN|ERROR|panicked' "$OUT/task-solver.log" || true)"
((lines == 0)) || log "task-solver: $lines WARN/ERROR lines in $OUT/task-solver.log"
