# Sourced by scripts/test.sh and scripts/demo.sh: create .venv and install the project into it.
# torch is pinned (==2.13.0) so that pip takes the CPU build already on this machine's disk.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PROMPTMM_VENV:-$REPO/.venv}"
PY="$VENV/bin/python"

setup_env() {
  local extras="$1"
  local stamp="$VENV/.installed-$(echo "$extras" | tr -c 'a-z0-9' '_')"
  if [ ! -x "$PY" ]; then
    echo "==> creating $VENV"
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ "$REPO/pyproject.toml" -nt "$stamp" ]; then
    echo "==> installing .[$extras] (first run: a minute or two)"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e "$REPO[$extras]"
    touch "$stamp"
  fi
}
