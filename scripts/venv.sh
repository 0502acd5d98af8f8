# shellcheck shell=bash
# ensure_venv: a project-local Python venv holding a pinned requirements file, installed
# once and again only when that file changes. Sourced by k8s-check.sh and lint-scripts.sh.

# ensure_venv VENV REQUIREMENTS MARKER MESSAGE PYTHON_VAR
#   Creates VENV (with ${PYTHON_VAR:-python3}, e.g. PYTHON_VAR=K8S_PYTHON) and
#   pip-installs REQUIREMENTS into it, unless VENV/bin/MARKER exists and the file's
#   sha256 is the one of the last install (kept in VENV/.<file name>.sha256). MESSAGE
#   is the one line printed (on stdout) when it installs. One installer at a time
#   (flock) when several scripts start together. Exits 1 when no venv can be made.
ensure_venv() {
  local venv="$1" requirements="$2" marker="$3" message="$4" python_var="$5"
  local stamp want
  stamp="${venv}/.$(basename "${requirements}" .txt).sha256"
  want="$(sha256sum "${requirements}" | cut -d' ' -f1)"
  if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" && -x "${venv}/bin/${marker}" ]]; then
    return 0
  fi
  mkdir -p "${venv}"
  (
    if command -v flock > /dev/null; then
      exec 9> "${venv}/.install.lock"
      flock 9
    fi
    if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${want}" && -x "${venv}/bin/${marker}" ]]; then
      exit 0
    fi
    echo "${message}"
    local python="${!python_var:-python3}"
    if [[ ! -x "${venv}/bin/python" ]] && ! "${python}" -m venv "${venv}"; then
      echo "cannot create a venv with ${python} (Debian/Ubuntu: apt-get install python3-venv;" \
        "or point ${python_var} at another Python 3.11+)" >&2
      exit 1
    fi
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
      --requirement "${requirements}"
    echo "${want}" > "${stamp}"
  )
}
