#!/usr/bin/env bash
# End-to-end demo: start everything (scripts/run-local.sh), post one task to the
# task-generator, then poll for its result every second until it is completed or
# failed (DEMO_TIMEOUT_SECS, default 180).  Leaves the system running; stop it
# with scripts/stop-local.sh.  Exit status 0 only when the task completed.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEMO_TIMEOUT_SECS="${DEMO_TIMEOUT_SECS:-180}"

die() { echo "demo: error: $*" >&2; exit 1; }
pretty() { python3 -m json.tool 2>/dev/null <<<"$1" || printf '%s\n' "$1"; }
# json_field FIELD <<<JSON: print a top-level field ('' when absent or not JSON).
json_field() {
    python3 -c 'import json,sys
try: v = json.load(sys.stdin).get(sys.argv[1], "")
except Exception: v = ""
print("" if v is None else v)' "$1"
}

"$SCRIPTS/run-local.sh"

echo
echo '$ curl -sS -X POST localhost:8001/generate-task -H "Content-Type: application/json" -d '"'"'{"conversation_history": "User: I need help with my project"}'"'"
t0="$(now)"
answer="$(curl -sS -X POST localhost:8001/generate-task -H "Content-Type: application/json" -d '{"conversation_history": "User: I need help with my project"}')" \
    || die "POST /generate-task failed (see $LOCAL_DIR/task-generator.log)"
pretty "$answer"
task_id="$(json_field task_id <<<"$answer")"
[[ -n "$task_id" ]] || die "no task_id in the answer above (see $LOCAL_DIR/task-generator.log)"

echo
echo "polling GET localhost:8001/task-result/$task_id every second (timeout ${DEMO_TIMEOUT_SECS}s)"
body_file="$(mktemp)"
trap 'rm -f "$body_file"' EXIT
deadline=$((SECONDS + DEMO_TIMEOUT_SECS))
status=""
while :; do
    code="$(curl -sS -o "$body_file" -w '%{http_code}' "localhost:8001/task-result/$task_id" 2>/dev/null || echo 000)"
    body="$(cat "$body_file")"
    status="$(json_field status <<<"$body")"
    printf '  [%5ss] HTTP %s status=%s\n' "$(since "$t0")" "$code" "${status:--}"
    [[ "$status" == completed || "$status" == failed ]] && break
    if ((SECONDS >= deadline)); then
        echo "demo: no result after ${DEMO_TIMEOUT_SECS}s; last answer:" >&2
        pretty "$body" >&2
        echo "demo: see the logs in $LOCAL_DIR (task-solver.log, agent-comms.log)" >&2
        exit 1
    fi
    sleep 1
done
elapsed="$(since "$t0")"

echo
pretty "$body"
echo
echo "demo: task $task_id $status in ${elapsed}s (from the POST to the result)"
[[ "$status" == completed ]]
