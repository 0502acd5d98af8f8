#!/usr/bin/env bash
# Wait until a TCP port accepts connections or an HTTP URL answers 2xx.
#
#   scripts/wait-for.sh [-t SECONDS] [-n NAME] [-p PID] [-q] TARGET
#
#   TARGET   HOST:PORT (TCP connect) or http(s)://... (GET, success on 2xx;
#            e.g. a llama.cpp server answers 503 while it loads the model)
#   -t SECS  give up after SECS seconds (default 30; decimals allowed)
#   -n NAME  name used in messages (default TARGET)
#   -p PID   stop waiting early if process PID exits
#   -q       print nothing on success (default: "NAME ready after X.Xs" on stderr)
#
# Exit status: 0 ready, 1 timed out, 2 usage error, 3 process PID exited.
set -euo pipefail

usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

timeout_s=30 name="" pid="" quiet=0
while getopts ":t:n:p:qh" opt; do
    case "$opt" in
        t) timeout_s="$OPTARG" ;;
        n) name="$OPTARG" ;;
        p) pid="$OPTARG" ;;
        q) quiet=1 ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -eq 1 ]] || usage
target="$1"
name="${name:-$target}"
[[ "$timeout_s" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "wait-for: bad timeout '$timeout_s'" >&2; exit 2; }

case "$target" in
    http://* | https://*)
        command -v curl >/dev/null 2>&1 || { echo "wait-for: curl is required for URLs" >&2; exit 2; }
        probe() { curl -fsS -o /dev/null --max-time 2 "$target" 2>/dev/null; } ;;
    *:*)
        host="${target%:*}" port="${target##*:}"
        [[ "$port" =~ ^[0-9]+$ && -n "$host" ]] || { echo "wait-for: bad target '$target' (HOST:PORT or URL)" >&2; exit 2; }
        # shellcheck disable=SC2016  # $1/$2 expand in the inner bash
        probe() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; } ;;
    *) echo "wait-for: bad target '$target' (HOST:PORT or URL)" >&2; exit 2 ;;
esac

# Elapsed time in tenths of a second, from bash's EPOCHREALTIME (no forks).
now_ds() { local t="${EPOCHREALTIME/[.,]/}"; echo $((t / 100000)); }
start=$(now_ds)
limit=$(awk -v t="$timeout_s" 'BEGIN { printf "%d", t * 10 }')
elapsed() { local d=$(($(now_ds) - start)); printf '%d.%d' $((d / 10)) $((d % 10)); }

while :; do
    if probe; then
        ((quiet)) || echo "wait-for: $name ready after $(elapsed)s" >&2
        exit 0
    fi
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
        echo "wait-for: $name: process $pid exited before $target answered (after $(elapsed)s)" >&2
        exit 3
    fi
    if (($(now_ds) - start >= limit)); then
        echo "wait-for: $name did not answer at $target within ${timeout_s}s" >&2
        exit 1
    fi
    sleep 0.2
done
