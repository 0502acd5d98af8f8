# shellcheck shell=bash
# Shared by bench-streams.sh and bench-review.sh (sourced after lib.sh, once OUT, BIN,
# TANSU_BIN and die are set): their processes, a broker and the OpenAI stand-in.

# Every process started, stopped (TERM, then KILL a second later) when the script exits.
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 1
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
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

# start_tansu: a Tansu broker in memory on a free port, waited for; sets BOOTSTRAP.
# Tansu logs 40 MB/s at info: always warn.
start_tansu() {
    BOOTSTRAP="127.0.0.1:$(free_port)"
    start tansu env RUST_LOG=warn "$TANSU_BIN" broker \
        --listener-url "tcp://$BOOTSTRAP" --advertised-listener-url "tcp://$BOOTSTRAP" \
        --storage-engine memory://tansu/
    "$SCRIPTS/wait-for.sh" -q -t 20 -n tansu -p "${pids[-1]}" "$BOOTSTRAP"
}

# start_stand_in ARGS...: the OpenAI stand-in (openai-stand-in ARGS) on a free port of
# its own choosing; sets LLM_PORT once it printed it.
start_stand_in() {
    start stand-in "$BIN/openai-stand-in" --port 0 "$@"
    LLM_PORT=""
    for _ in $(seq 100); do
        LLM_PORT="$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$OUT/stand-in.log")"
        [[ -n "$LLM_PORT" ]] && return
        sleep 0.1
    done
    die "the stand-in printed no port within 10 s (see $OUT/stand-in.log)"
}
