#!/usr/bin/env bash
# `make bench-pipeline`: the end-to-end pipeline benchmark. A task goes in (POST
# /generate-task, or produced straight onto the events topic) and is timed until its result
# record is on the results topic, on one Tansu broker (in memory) and an OpenAI stand-in
# answering after DELAY_MS; then the Python system the project replaces is run the same
# way by ../shared/baselines/pipeline/run.sh (when present) and both are printed side by
# side.
#
#   N               tasks (default 1000)
#   C               concurrent HTTP clients (default 32)
#   DELAY_MS        the stand-in's answer delay (default 0)
#   MODE            post (default): POST /generate-task, the whole pipeline;
#                   topic: tasks produced onto the events topic, the solver's capacity
#                   with a backlog (no baseline: run.sh only POSTs)
#   MAX_CONCURRENT  the stand-in answers 429 + Retry-After past this many requests in
#                   flight (default 0: no limit; not applied to the baseline's stand-in)
#   SKIP_BASELINE   1: do not run the Python baseline
#   TIMEOUT_SECS    how long to wait for missing results after the last send (default 120)
# Any other service setting in the environment (SOLVER_CONCURRENCY, OPENAI_MODEL, ...)
# reaches the services. Logs and results go to target/bench-pipeline/<UTC time>/.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$SCRIPTS/lib.sh"
cd "$REPO"

N="${N:-1000}"
C="${C:-32}"
DELAY_MS="${DELAY_MS:-0}"
MODE="${MODE:-post}"
MAX_CONCURRENT="${MAX_CONCURRENT:-0}"
SKIP_BASELINE="${SKIP_BASELINE:-0}"
TIMEOUT_SECS="${TIMEOUT_SECS:-120}"

log() { echo "bench-pipeline: $*" >&2; }
die() { log "error: $*"; exit 1; }

for var in N C DELAY_MS MAX_CONCURRENT TIMEOUT_SECS; do
    [[ "${!var}" =~ ^[0-9]+$ ]] || die "$var must be a whole number, not '${!var}'"
done
[[ "$MODE" == post || "$MODE" == topic ]] || die "MODE must be post or topic, not '$MODE'"

BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
OUT="$REPO/target/bench-pipeline/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"

log "building release binaries"
cargo build --release --locked -p task-generator -p task-solver -p pipeline-bench
"$SCRIPTS/bootstrap.sh"
eval "$("$SCRIPTS/paths.sh")"
[[ -x "$TANSU_BIN" ]] || die "no tansu binary at $TANSU_BIN"

# ---------------------------------------------------------------- processes
# Everything started is in pids (our own processes) or groups (a process group of its
# own, for the baseline run.sh and what it starts); cleanup stops them all.
pids=()
groups=()

# A process that still runs (not a zombie waiting for its parent).
alive() {
    local state
    state="$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

cleanup() {
    local pid i deadline
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
    for pid in "${groups[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 5))
    for pid in "${pids[@]}"; do
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${groups[@]}"; do
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    pids=()
    groups=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME COMMAND...: runs COMMAND in the background, output in $OUT/NAME.log.
start() {
    local name="$1"
    shift
    "$@" >"$OUT/$name.log" 2>&1 &
    pids+=("$!")
}

# run_fg COMMAND...: runs COMMAND and waits for it, in the background so that a signal to
# this script runs its trap at once (bash runs traps only between foreground commands).
run_fg() {
    local pid status=0
    "$@" &
    pid=$!
    pids+=("$pid")
    wait "$pid" || status=$?
    unset 'pids[-1]'
    return "$status"
}

used_ports=()
# A port on 127.0.0.1 nothing listens on, not handed out before.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        [[ " ${used_ports[*]} " == *" $port "* ]] && continue
        port_open 127.0.0.1 "$port" && continue
        used_ports+=("$port")
        echo "$port"
        return
    done
}

# rss NAME PID: "rss_kb NAME RSS_KB peak_kb HWM_KB" from /proc/PID/status (VmRSS, VmHWM).
rss() {
    if ! alive "$2"; then
        log "$1 (pid $2) is no longer running: no RSS (see $OUT/$1.log)"
        return 0
    fi
    awk -v name="$1" '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 }
        END { printf "rss_kb %s %s peak_kb %s\n", name, r, h }' "/proc/$2/status"
}

# ---------------------------------------------------------------- the Rust system
KAFKA_PORT="$(free_port)"
GENERATOR_PORT="$(free_port)"
SOLVER_PORT="$(free_port)"
PREFIX="bench$RANDOM$RANDOM"
EVENTS="$PREFIX-langgraph-agent-events"
RESULTS="$PREFIX-langgraph-task-results"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"

log "N=$N C=$C DELAY_MS=$DELAY_MS MODE=$MODE MAX_CONCURRENT=$MAX_CONCURRENT; logs in $OUT"
# Tansu logs 40 MB/s at info: always warn.
start tansu env RUST_LOG=warn "$TANSU_BIN" broker \
    --listener-url "tcp://$BOOTSTRAP" --advertised-listener-url "tcp://$BOOTSTRAP" \
    --storage-engine memory://tansu/
"$SCRIPTS/wait-for.sh" -q -t 20 -n tansu -p "${pids[-1]}" "$BOOTSTRAP"
for topic in "$EVENTS" "$RESULTS"; do
    RUST_LOG=warn "$TANSU_BIN" topic create --broker "tcp://$BOOTSTRAP" --partitions 3 "$topic" \
        >>"$OUT/topics.log" 2>&1 || die "cannot create topic $topic (see $OUT/topics.log)"
done

start stand-in "$BIN/openai-stand-in" --port 0 --delay-ms "$DELAY_MS" --max-concurrent "$MAX_CONCURRENT"
STAND_IN_PID="${pids[-1]}"
LLM_PORT=""
for _ in $(seq 100); do
    LLM_PORT="$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$OUT/stand-in.log")"
    [[ -n "$LLM_PORT" ]] && break
    alive "$STAND_IN_PID" || die "the stand-in exited (see $OUT/stand-in.log)"
    sleep 0.1
done
[[ -n "$LLM_PORT" ]] || die "the stand-in printed no port within 10 s"

# Defaults for everything else; the environment's own service settings pass through,
# but the topic names and addresses are this run's.
service=(env -u KAFKA_TOPIC -u KAFKA_RESULTS_TOPIC -u KAFKA_DEAD_LETTER_TOPIC -u CONFIG_FILE
    KAFKA_BOOTSTRAP_SERVERS="$BOOTSTRAP" KAFKA_TOPIC_PREFIX="$PREFIX"
    OPENAI_BASE_URL="http://127.0.0.1:$LLM_PORT/v1" OPENAI_API_KEY=sk-bench
    DISABLECHECKPOINTER=true RUST_LOG=warn BIND_ADDRESS=127.0.0.1)
start task-generator "${service[@]}" PORT="$GENERATOR_PORT" "$BIN/task-generator"
GENERATOR_PID="${pids[-1]}"
start task-solver "${service[@]}" PORT="$SOLVER_PORT" "$BIN/task-solver"
SOLVER_PID="${pids[-1]}"
"$SCRIPTS/wait-for.sh" -t 60 -n task-generator -p "$GENERATOR_PID" "http://127.0.0.1:$GENERATOR_PORT/ready"
"$SCRIPTS/wait-for.sh" -t 60 -n task-solver -p "$SOLVER_PID" "http://127.0.0.1:$SOLVER_PORT/ready"

# The solver's adaptive LLM concurrency limit, sampled every second from /health.
sample_health() {
    while :; do
        printf '%s %s\n' "$(date +%s.%N)" "$(curl -fsS --max-time 1 "$1/health" || echo '{}')"
        sleep 1
    done
}

loadgen=("$BIN/loadgen" --url "http://127.0.0.1:$GENERATOR_PORT" --bootstrap "$BOOTSTRAP"
    --results-topic "$RESULTS" --events-topic "$EVENTS")

# The warm-up also waits out the solver's group join (~3 s on Tansu).
log "warm-up: 50 tasks from 8 clients"
run_fg "${loadgen[@]}" -n 50 -c 8 --timeout-secs 60 >"$OUT/warmup.json"
log "warm-up: $(cat "$OUT/warmup.json")"

log "rust: $N tasks, mode $MODE"
start solver-health sample_health "http://127.0.0.1:$SOLVER_PORT"
run_fg "${loadgen[@]}" -n "$N" -c "$C" --mode "$MODE" --timeout-secs "$TIMEOUT_SECS" >"$OUT/rust.json"
cat "$OUT/rust.json"
{
    rss task-generator "$GENERATOR_PID"
    rss task-solver "$SOLVER_PID"
    rss stand-in "$STAND_IN_PID"
} | tee "$OUT/rust-rss.txt"
echo "stand-in stats: $(curl -fsS "http://127.0.0.1:$LLM_PORT/stats")"
python3 "$SCRIPTS/bench_limit_series.py" "$OUT/solver-health.log" >"$OUT/solver-limit.txt"
log "the solver's LLM concurrency limit over time: $OUT/solver-limit.txt"
# A long run is summarised: every 5th sample.
awk 'NR % 5 == 1' "$OUT/solver-limit.txt"
for name in task-generator task-solver; do
    # Levels are wrapped in colour codes, hence no \b.
    lines="$(grep -cE 'WARN|ERROR|panicked' "$OUT/$name.log" || true)"
    ((lines == 0)) || log "$name: $lines WARN/ERROR lines in $OUT/$name.log"
done
cleanup

# ---------------------------------------------------------------- the Python baseline
baseline="$REPO/../shared/baselines/pipeline/run.sh"
table=(python3 "$SCRIPTS/bench_pipeline_table.py" --rust "$OUT/rust.json" --rust-rss "$OUT/rust-rss.txt"
    --title "pipeline, N=$N C=$C DELAY_MS=$DELAY_MS MODE=$MODE MAX_CONCURRENT=$MAX_CONCURRENT")
if [[ "$SKIP_BASELINE" == 1 ]]; then
    log "Python baseline skipped (SKIP_BASELINE=1)"
elif [[ "$MODE" != post ]]; then
    log "Python baseline skipped: it only runs MODE=post"
elif [[ ! -f "$baseline" ]]; then
    log "Python baseline skipped: $baseline is absent on this machine"
else
    ((MAX_CONCURRENT == 0)) || log "note: the baseline's stand-in has no MAX_CONCURRENT limit"
    log "python: $N tasks from $C clients ($baseline; its first run creates a venv under ~/.cache)"
    # A process group of its own, so cleanup stops it and everything it started.
    RUST_LOG=warn DELAY_MS="$DELAY_MS" TANSU_BIN="$TANSU_BIN" \
        setsid bash "$baseline" python "$N" "$C" >"$OUT/python.txt" 2>"$OUT/python.log" &
    groups+=("$!")
    status=0
    wait "${groups[-1]}" || status=$?
    groups=()
    cat "$OUT/python.txt"
    ((status == 0)) || log "the baseline exited with status $status (see $OUT/python.log)"
    table+=(--python "$OUT/python.txt")
fi

echo
"${table[@]}" | tee "$OUT/table.md"
