#!/usr/bin/env bash
# Lint of the repository's scripts, run by `make lint`: ShellCheck on every
# scripts/*.sh and .ci/run (following what they source), then `ruff check` and
# `ruff format --check` on every Python file of the repository (scripts/, tests/, …;
# ruff.toml leaves out the venvs and target/).
#
#   scripts/lint-scripts.sh        check; exit 1 if any check fails
#   scripts/lint-scripts.sh fix    ruff format and ruff check --fix, then check
#
# The tools are PyPI packages pinned in scripts/requirements-lint.txt, installed into
# ${LINT_VENV:-<repo>/.venv-lint} on the first run (scripts/venv.sh). LINT_PYTHON is
# the Python that makes the venv (default python3).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LINT_VENV:-${REPO}/.venv-lint}"

# shellcheck source=scripts/venv.sh
source "${REPO}/scripts/venv.sh"
ensure_venv "${VENV}" "${REPO}/scripts/requirements-lint.txt" shellcheck \
  "Installing ruff and shellcheck into ${VENV}" LINT_PYTHON

cd "${REPO}"
shell_files=(scripts/*.sh .ci/run)

case "${1:-check}" in
  check) ;;
  fix)
    "${VENV}/bin/ruff" format .
    "${VENV}/bin/ruff" check --fix . || true
    ;;
  *)
    echo "usage: scripts/lint-scripts.sh [check|fix]" >&2
    exit 2
    ;;
esac

failed=()
echo "shellcheck: ${#shell_files[@]} files"
"${VENV}/bin/shellcheck" -x "${shell_files[@]}" || failed+=(shellcheck)
python_files="$("${VENV}/bin/ruff" check --show-files . | grep -c '\.py$' || true)"
echo "ruff check, ruff format --check: ${python_files} files"
"${VENV}/bin/ruff" check --quiet . || failed+=("ruff check")
"${VENV}/bin/ruff" format --check --quiet . || failed+=("ruff format")

if ((${#failed[@]})); then
  echo "lint-scripts: failed: $(IFS=,; echo "${failed[*]}") (scripts/lint-scripts.sh fix formats and fixes what ruff can)"
  exit 1
fi
echo "lint-scripts: shellcheck, ruff check and ruff format clean"
