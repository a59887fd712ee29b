#!/usr/bin/env bash
# The main job: set up, train a small model if none is exported yet, serve it with the embedded
# store (no external services), show working curl calls against it and the demo page's URL.
#   bash scripts/demo.sh            # keeps serving until Ctrl-C
#   bash scripts/demo.sh --check    # runs the examples and exits (used to verify this script)
# Data: ../shared/datasets/tiktok when present, else a seeded synthetic multi-modal dataset.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup-env.sh"
cd "$REPO"
setup_env "service,training"
export OMP_WAIT_POLICY=PASSIVE

CHECK_ONLY=""
[ "${1:-}" = "--check" ] && CHECK_ONLY=1
PORT="${DEMO_PORT:-8000}"
SHARED_TIKTOK="${PROMPTMM_SHARED_DATASETS:-$REPO/../shared/datasets}/tiktok"

if [ -z "${DEMO_DATA:-}" ] && [ -f "$SHARED_TIKTOK/trnMat.pkl" ]; then
  DATA="$SHARED_TIKTOK"; CONFIG="configs/tiktok.toml"; NAME="tiktok"
else
  DATA="${DEMO_DATA:-$REPO/data/synthetic}"; CONFIG="configs/synthetic.toml"
  NAME="$(basename "$DATA")"
  if [ ! -e "$DATA" ]; then
    echo "==> writing a seeded synthetic multi-modal dataset to $DATA"
    "$PY" -m training data synth "$DATA" --seed 0
  fi
fi

MODELS="$REPO/models"
if [ ! -f "$MODELS/$NAME/LATEST" ]; then
  echo "==> no exported model in models/$NAME yet: training $CONFIG on $DATA"
  "$PY" -m training run "$CONFIG" --set "data.path=$DATA" --set "run.models_dir=$MODELS"
fi

mkdir -p "$REPO/data"
export PROMPTMM_BUNDLE_PATH="$MODELS/$NAME"
export PROMPTMM_STORE_PATH="${PROMPTMM_STORE_PATH:-$REPO/data/demo.sqlite3}"
export PROMPTMM_API_KEY="${PROMPTMM_API_KEY:-demo-$("$PY" -c 'import secrets; print(secrets.token_hex(8))')}"
export PROMPTMM_DEMO=true PROMPTMM_LOG_FORMAT="${PROMPTMM_LOG_FORMAT:-text}"

echo "==> serving models/$NAME on http://127.0.0.1:$PORT (embedded SQLite store $PROMPTMM_STORE_PATH)"
"$PY" -m uvicorn service.main:create_app --factory --http service.http:BoundedHttpProtocol --host 127.0.0.1 --port "$PORT" \
  --log-level warning &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { echo "the service exited; see the log above" >&2; exit 1; }
  sleep 0.5
done

USER_ID=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['users'][0])" \
  "$PROMPTMM_BUNDLE_PATH/$(cat "$PROMPTMM_BUNDLE_PATH/LATEST")/ids.json")
ITEM_ID=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['items'][1])" \
  "$PROMPTMM_BUNDLE_PATH/$(cat "$PROMPTMM_BUNDLE_PATH/LATEST")/ids.json")
BASE="http://127.0.0.1:$PORT"
RECOMMEND="curl -sS -X POST $BASE/recommend -H 'Content-Type: application/json' -d '{\"user_id\": \"$USER_ID\", \"k\": 5}'"
INTERACT="curl -sS -X POST $BASE/interactions -H 'Content-Type: application/json' -H 'X-API-Key: $PROMPTMM_API_KEY' -d '{\"user_id\": \"$USER_ID\", \"item_ids\": [\"$ITEM_ID\"]}'"
run() { echo "\$ $1"; eval "$1"; echo; echo; }
echo "==> try it: recommend, post an interaction, recommend again (the item is now excluded)"
run "$RECOMMEND"
run "$INTERACT"
run "$RECOMMEND"
curl -fsS "$BASE/demo" -o /dev/null || { echo "the demo page does not answer" >&2; exit 1; }
echo "OpenAPI docs: http://127.0.0.1:$PORT/docs   metrics: http://127.0.0.1:$PORT/metrics"
echo "==> demo page: http://127.0.0.1:$PORT/demo   (API key for likes: $PROMPTMM_API_KEY)"

[ -n "$CHECK_ONLY" ] && exit 0
echo "==> serving until Ctrl-C"
wait "$SERVER"
