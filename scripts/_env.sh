# Shared by scripts/launch and scripts/test: a Python 3.11+ virtualenv in .venv with SAFE Lab.
# Sourced, not run. Sets VENV and PY.

VENV="${SAFELAB_VENV:-$PWD/.venv}"
PY="$VENV/bin/python"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else
    echo "safelab: need root to run: $*  (run it as root, or install sudo)" >&2
    return 1
  fi
}

apt_install_missing() {
  # Installs the Debian packages given that are not installed yet; nothing if all are.
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "safelab: installing Debian packages: ${missing[*]}" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

ensure_venv() {
  # $1: pip extras ("" or "[test]").
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "safelab: $python is older than 3.11 (or missing); set PYTHON=/path/to/python3.11" >&2
    return 1
  fi
  if [ ! -x "$PY" ]; then
    if ! "$python" -m venv "$VENV" 2>/dev/null; then
      apt_install_missing python3-venv
      "$python" -m venv "$VENV"
    fi
  fi
  "$PY" -m pip install -q --disable-pip-version-check -e ".$1"
}
