#!/usr/bin/env bash
# Stop what scripts/run-local.sh started, by the pid files in $LOCAL_DIR
# (default <repo>/.local): the services first, then the model server and tansu.
# Each gets SIGTERM, up to STOP_WAIT_SECS (default 10) to exit, then SIGKILL.
# Pid files are removed.  Idempotent: nothing running is not an error.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STOP_WAIT_SECS="${STOP_WAIT_SECS:-10}"

# stop_group NAME...: TERM all of them, wait for all, KILL the stragglers.
stop_group() {
    local name pid t0 deadline
    local -A pids=()
    for name in "$@"; do
        [[ -f "$LOCAL_DIR/$name.pid" ]] || continue
        pid="$(live_pid "$name")"
        if [[ -z "$pid" ]]; then
            printf '%-15s %s\n' "$name" "not running (stale pid file removed)"
            rm -f "$LOCAL_DIR/$name.pid"
            continue
        fi
        kill -TERM "$pid" 2>/dev/null || true
        pids[$name]="$pid"
    done
    ((${#pids[@]})) || return 0
    t0="$(now)"
    deadline=$(($(now_ds) + STOP_WAIT_SECS * 10))
    while :; do
        for name in "${!pids[@]}"; do
            if ! kill -0 "${pids[$name]}" 2>/dev/null; then
                printf '%-15s %s\n' "$name" "stopped (pid ${pids[$name]}) in $(since "$t0")s"
                rm -f "$LOCAL_DIR/$name.pid"
                unset "pids[$name]"
            fi
        done
        ((${#pids[@]})) || return 0
        (($(now_ds) < deadline)) || break
        sleep 0.2
    done
    for name in "${!pids[@]}"; do
        kill -KILL "${pids[$name]}" 2>/dev/null || true
        printf '%-15s %s\n' "$name" "killed (pid ${pids[$name]}): still running ${STOP_WAIT_SECS}s after SIGTERM"
        rm -f "$LOCAL_DIR/$name.pid"
    done
}

if [[ ! -d "$LOCAL_DIR" ]]; then
    echo "stop-local: nothing to stop ($LOCAL_DIR does not exist)"
    exit 0
fi
stop_group "${SERVICES[@]}"
stop_group model-server tansu
# Any other pid file left in the folder (e.g. renamed components).
shopt -s nullglob
others=()
for file in "$LOCAL_DIR"/*.pid; do
    others+=("$(basename "$file" .pid)")
done
((${#others[@]} == 0)) || stop_group "${others[@]}"
echo "stop-local: done"
