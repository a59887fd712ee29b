#!/usr/bin/env bash
# The project's test command: sets up .venv (every extra the tests use), makes sure a Redis
# answers (starting one, and installing redis-server if needed), runs the linters and the whole
# pytest suite, and stops whatever it started. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup-env.sh"
cd "$REPO"
setup_env "service,training,features,dev"

export OMP_WAIT_POLICY=PASSIVE
redis_answers() { "$PY" - "$1" <<'PY'
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
        s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

STARTED_REDIS=""
cleanup() {
  if [ -n "$STARTED_REDIS" ]; then
    redis-cli -p "$STARTED_REDIS" shutdown nosave >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

if [ -z "${PROMPTMM_TEST_REDIS_URL:-}" ]; then
  if redis_answers 6379; then
    export PROMPTMM_TEST_REDIS_URL="redis://127.0.0.1:6379/15"
  else
    if ! command -v redis-server >/dev/null; then
      echo "==> installing redis-server"
      if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
      $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
    fi
    port=6399
    dir="$(mktemp -d)"
    echo "==> starting redis-server on 127.0.0.1:$port (stopped on exit)"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --dir "$dir" --logfile "$dir/redis.log"
    STARTED_REDIS="$port"
    for _ in $(seq 50); do redis_answers "$port" && break; sleep 0.1; done
    export PROMPTMM_TEST_REDIS_URL="redis://127.0.0.1:$port/15"
  fi
fi
echo "==> tests use Redis at $PROMPTMM_TEST_REDIS_URL"

missing=""
command -v docker-compose >/dev/null || missing="$missing docker-compose"
command -v nginx >/dev/null || missing="$missing nginx-light"
command -v chromium >/dev/null || missing="$missing chromium"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "==> installing$missing (compose and nginx.conf checks; chromium for the demo page's browser test)"
  (apt-get update -qq && apt-get install -y -qq $missing >/dev/null) \
    || echo "could not install$missing: the tests that need them will skip, saying so"
fi

echo "==> ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "==> import contracts (service and training share only bundle/; service never imports torch)"
"$VENV/bin/lint-imports"
echo "==> mypy (service, bundle)"
"$VENV/bin/mypy" service bundle
echo "==> pytest"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
