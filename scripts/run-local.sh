#!/usr/bin/env bash
# Start the whole system locally, in the background:
#   tansu (in-memory Kafka) on 127.0.0.1:$KAFKA_PORT            -> $LOCAL_DIR/tansu.{log,pid}
#   SmolLM2-135M via llama.cpp on 127.0.0.1:$MODEL_PORT           -> $LOCAL_DIR/model-server.{log,pid}
#   task-generator :8001, agent-comms :8000, task-solver :8002   -> $LOCAL_DIR/<name>.{log,pid}
# then waits for each one to answer.  Stop everything with scripts/stop-local.sh.
#
# Environment (defaults):
#   KAFKA_PORT=9092  MODEL_PORT=8080  BIN_DIR=<repo>/target/release  LOCAL_DIR=<repo>/.local
#   LGK_VENV=<repo>/.venv  MODEL_CTX_SIZE=4096  BIND_ADDRESS=127.0.0.1
#   KAFKA_WAIT_SECS=15  MODEL_WAIT_SECS=120  SERVICE_WAIT_SECS=60  TANSU_LOG=warn
#   CHECKPOINTER=sqlite: the solver checkpoints each task in $LOCAL_DIR/data/checkpoints.sqlite,
#                        so a solver restarted while the broker runs resumes its tasks
#                        (memory or postgres as the services take them; postgres needs
#                        DATABASE_URL)
# Data ($LOCAL_DIR/data: the results view, the checkpoints) lives as long as the broker
# it describes: kept while our tansu runs, removed when a new one starts.
# LLM:
#   default                        local SmolLM2 (OPENAI_MODEL=smollm2, OPENAI_API_KEY=local)
#   OPENAI_API_KEY set, no BASE_URL OpenAI itself; no local model (OPENAI_MODEL as set, or
#                                  the services' default)
#   OPENAI_BASE_URL set            that OpenAI-compatible server; no local model
# A component whose pid file names a live process, or whose port already
# answers, is not started again (so running this twice is harmless).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_PORT="${KAFKA_PORT:-9092}"
MODEL_PORT="${MODEL_PORT:-8080}"
BIN_DIR="${BIN_DIR:-$REPO/target/release}"
KAFKA_WAIT_SECS="${KAFKA_WAIT_SECS:-15}"
MODEL_WAIT_SECS="${MODEL_WAIT_SECS:-120}"
SERVICE_WAIT_SECS="${SERVICE_WAIT_SECS:-60}"

die() { echo "run-local: error: $*" >&2; exit 1; }
# One progress line per component: "<name padded> <message>".
line() { printf '%-15s %s\n' "$1" "$2"; }

# Report a component that did not come up, with the end of its log, and stop.
fail() {
    local name="$1" msg="$2" log="$LOCAL_DIR/$1.log"
    line "$name" "FAILED: $msg"
    if [[ -s "$log" ]]; then
        echo "----- last 20 lines of $log -----" >&2
        tail -n 20 "$log" >&2
        echo "-----" >&2
    fi
    echo "run-local: scripts/stop-local.sh stops what was started" >&2
    exit 1
}

# start NAME CMD...: run CMD in the background in its own session (so it
# outlives this script and a closed terminal), output to NAME.log, pid to NAME.pid.
# Runs in $REPO.
start() {
    local name="$1"; shift
    # Without job control a background subshell is not a process-group leader,
    # so setsid execs CMD without forking: $! is CMD's own pid.
    (cd "$REPO" && exec setsid "$@" >"$LOCAL_DIR/$name.log" 2>&1 </dev/null) &
    echo "$!" >"$LOCAL_DIR/$name.pid"
}

# await NAME TARGET SECS: wait for TARGET (HOST:PORT or URL) while NAME's process lives.
await() {
    local name="$1" target="$2" secs="$3" pid rc=0
    pid="$(tr -dc '0-9' <"$LOCAL_DIR/$name.pid")"
    "$SCRIPTS/wait-for.sh" -q -t "$secs" -p "$pid" -n "$name" "$target" 2>/dev/null || rc=$?
    case "$rc" in
        0) ;;
        3) fail "$name" "exited before $target answered" ;;
        *) fail "$name" "$target did not answer within ${secs}s (still running as pid $pid)" ;;
    esac
}

# --- preflight: everything we will need, before starting anything ----------
for svc in "${SERVICES[@]}"; do
    [[ -x "$BIN_DIR/$svc" ]] \
        || die "$BIN_DIR/$svc not found; build with 'cargo build --release' (or set BIN_DIR)"
done
command -v curl >/dev/null 2>&1 || die "curl is required"
command -v setsid >/dev/null 2>&1 || die "setsid (util-linux) is required"

"$SCRIPTS/bootstrap.sh"
eval "$("$SCRIPTS/paths.sh")"   # TANSU_BIN, SMOLLM2_GGUF, LGK_PYTHON
mkdir -p "$LOCAL_DIR"

# --- kafka (tansu) ----------------------------------------------------------
# The broker keeps nothing across its runs, so neither does DATA_DIR: a results view or
# checkpoints of the last broker's topics would show tasks this broker never had. While
# our broker runs they stay, so a service started again (a solver that crashed or was
# stopped) resumes where it was.
t0="$(now)"
if pid="$(live_pid tansu)" && [[ -n "$pid" ]]; then
    line kafka "already running (pid $pid) on 127.0.0.1:$KAFKA_PORT; keeping $LOCAL_DIR/data"
elif port_open 127.0.0.1 "$KAFKA_PORT"; then
    rm -f "$LOCAL_DIR/tansu.pid"
    rm -rf "$LOCAL_DIR/data"
    line kafka "something already listens on 127.0.0.1:$KAFKA_PORT; using it (not managed by stop-local)"
else
    rm -rf "$LOCAL_DIR/data"
    # Tansu logs tens of MB a second at info: warnings only, unless TANSU_LOG says.
    start tansu env RUST_LOG="${TANSU_LOG:-warn}" "$TANSU_BIN" broker \
        --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --storage-engine memory://tansu/
    await tansu "127.0.0.1:$KAFKA_PORT" "$KAFKA_WAIT_SECS"
    line kafka "tansu up on 127.0.0.1:$KAFKA_PORT in $(since "$t0")s (pid $(cat "$LOCAL_DIR/tansu.pid"), log $LOCAL_DIR/tansu.log)"
fi

# --- LLM --------------------------------------------------------------------
SERVICE_ENV=(
    "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT"
    "KAFKA_SESSION_TIMEOUT_MS=6000"
    "BIND_ADDRESS=${BIND_ADDRESS:-127.0.0.1}"
    # Finish draining before stop-local's 10 s TERM->KILL deadline.
    "SHUTDOWN_DRAIN_SECS=${SHUTDOWN_DRAIN_SECS:-8}"
    "DATA_DIR=$LOCAL_DIR/data"
    # A review or a half-solved task survives a restart of the solver.
    "CHECKPOINTER=${CHECKPOINTER:-sqlite}"
)
if [[ -n "${OPENAI_BASE_URL:-}" ]]; then
    line model "using OPENAI_BASE_URL=$OPENAI_BASE_URL (model ${OPENAI_MODEL:-<service default>}); no local model"
elif [[ -n "${OPENAI_API_KEY:-}" ]]; then
    line model "OPENAI_API_KEY is set: using OpenAI (model ${OPENAI_MODEL:-<service default>}); no local model"
else
    t0="$(now)"
    model_url="http://127.0.0.1:$MODEL_PORT"
    if pid="$(live_pid model-server)" && [[ -n "$pid" ]]; then
        await model-server "$model_url/health" "$MODEL_WAIT_SECS"
        line model "already running (pid $pid) at $model_url/v1"
    elif port_open 127.0.0.1 "$MODEL_PORT"; then
        rm -f "$LOCAL_DIR/model-server.pid"
        "$SCRIPTS/wait-for.sh" -q -t "$MODEL_WAIT_SECS" -n model "$model_url/health" \
            || die "127.0.0.1:$MODEL_PORT is taken but $model_url/health does not answer 2xx"
        line model "something already answers at $model_url; using it as the LLM (not managed by stop-local)"
    else
        start model-server "$LGK_PYTHON" "$SCRIPTS/model-server.py" \
            --host 127.0.0.1 --port "$MODEL_PORT" --model "$SMOLLM2_GGUF" \
            --ctx-size "${MODEL_CTX_SIZE:-4096}" --alias smollm2
        await model-server "$model_url/health" "$MODEL_WAIT_SECS"
        line model "smollm2 up at $model_url/v1 in $(since "$t0")s (pid $(cat "$LOCAL_DIR/model-server.pid"), log $LOCAL_DIR/model-server.log)"
    fi
    SERVICE_ENV+=(
        "OPENAI_BASE_URL=$model_url/v1"
        "OPENAI_MODEL=smollm2"
        "OPENAI_API_KEY=local"
        # A 135M model on 2 busy cores can take minutes for one answer.
        "OPENAI_TIMEOUT_SECS=${OPENAI_TIMEOUT_SECS:-180}"
        # The local server answers 2 requests at a time (model-server.py --parallel):
        # a few more queue there, the rest wait in the services.
        "OPENAI_INITIAL_CONCURRENCY=${OPENAI_INITIAL_CONCURRENCY:-4}"
        "OPENAI_MAX_CONCURRENCY=${OPENAI_MAX_CONCURRENCY:-4}"
    )
fi

# --- the services -----------------------------------------------------------
for svc in "${SERVICES[@]}"; do
    port="${SERVICE_PORT[$svc]}"
    url="http://127.0.0.1:$port/health"
    t0="$(now)"
    if pid="$(live_pid "$svc")" && [[ -n "$pid" ]]; then
        await "$svc" "$url" "$SERVICE_WAIT_SECS"
        line "$svc" "already running (pid $pid) on :$port"
        continue
    fi
    if port_open 127.0.0.1 "$port"; then
        rm -f "$LOCAL_DIR/$svc.pid"
        if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
            line "$svc" "something already answers $url; not starting another (not managed by stop-local)"
            continue
        fi
        die "$svc: port $port is taken by another program (see: ss -ltnp 'sport = :$port')"
    fi
    start "$svc" env "${SERVICE_ENV[@]}" "PORT=$port" "$BIN_DIR/$svc"
    # /ready answers 2xx once the service reaches the broker (/health answers at once).
    await "$svc" "http://127.0.0.1:$port/ready" "$SERVICE_WAIT_SECS"
    status="$(curl -fsS --max-time 2 "$url" 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status","?"))' 2>/dev/null || echo '?')"
    line "$svc" "up on :$port in $(since "$t0")s, /health status=$status (pid $(cat "$LOCAL_DIR/$svc.pid"), log $LOCAL_DIR/$svc.log)"
done

echo "run-local: all up; logs and pids in $LOCAL_DIR; stop with scripts/stop-local.sh"
