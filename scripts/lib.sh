# shellcheck shell=bash
# Shared helpers for run-local.sh / stop-local.sh / demo.sh (sourced, not run).

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPTS/.." && pwd)"
LOCAL_DIR="${LOCAL_DIR:-$REPO/.local}"

# The three services: binary name and HTTP port.
# shellcheck disable=SC2034  # used by the scripts that source this file
SERVICES=(task-generator agent-comms task-solver)
# shellcheck disable=SC2034
declare -A SERVICE_PORT=([task-generator]=8001 [agent-comms]=8000 [task-solver]=8002)

# Seconds since the epoch with microseconds, without forking.
now() { echo "${EPOCHREALTIME/,/.}"; }
# Tenths of a second since the epoch (integer; for deadlines).
now_ds() { local t="${EPOCHREALTIME/[.,]/}"; echo $((t / 100000)); }
# Seconds elapsed since a now() value, one decimal.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# True when something accepts TCP connections on HOST PORT.
# shellcheck disable=SC2016  # $1/$2 expand in the inner bash
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# The pid recorded for NAME if that process is still alive and is NAME (guards
# against a stale pid file whose pid was reused); prints nothing otherwise.
live_pid() {
    local name="$1" file="$LOCAL_DIR/$1.pid" pid
    [[ -f "$file" ]] || return 0
    pid="$(tr -dc '0-9' <"$file")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    if [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$name"; then
        return 0
    fi
    echo "$pid"
}
