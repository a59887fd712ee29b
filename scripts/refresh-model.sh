#!/usr/bin/env bash
# The online fine-tune loop (the paper's Table 7 procedure) as one job: export the interactions
# the service logged, fine-tune the served student on them from its own egos, and swap the new
# bundle in with POST /admin/reload. Run it on a schedule beside the service (cron, a Kubernetes
# CronJob); on tiktok it takes the online update from 54% to 93% of a full retrain's gain.
#
#   PROMPTMM_API_KEY=... bash scripts/refresh-model.sh configs/tiktok.toml [--set key=value ...]
#
# Environment (the service's own settings, so the job reads the same store and bundle):
#   PROMPTMM_BUNDLE_PATH  the models root the service serves, models/<dataset> (required): the
#                         served version (its LATEST) is fine-tuned, the new one written beside
#   PROMPTMM_STORE_PATH or REDIS_URL (+ PROMPTMM_REDIS_PREFIX)   the service's store
#   PROMPTMM_API_KEY      the service's key for /admin/reload (required)
#   SERVICE_URL           default http://127.0.0.1:8000
#   PYTHON                default .venv/bin/python of this repository
# Extra arguments go to `python -m training student` (e.g. --set data.path=... --device cuda).
# Nothing logged: nothing trained, no reload. A failed step stops the job before the reload.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: $0 CONFIG [--set key=value ...]" >&2
  exit 2
fi
CONFIG="$1"
shift
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
SERVICE_URL="${SERVICE_URL:-http://127.0.0.1:8000}"
: "${PROMPTMM_API_KEY:?set PROMPTMM_API_KEY to the key of the service (POST /admin/reload needs it)}"
: "${PROMPTMM_BUNDLE_PATH:?set PROMPTMM_BUNDLE_PATH to the models root the service serves}"
ROOT="${PROMPTMM_BUNDLE_PATH%/}"
if [ ! -f "$ROOT/LATEST" ]; then
  echo "PROMPTMM_BUNDLE_PATH=$ROOT is not a models root (no LATEST file in it)" >&2
  exit 2
fi
SERVED="$(cat "$ROOT/LATEST")"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
LOG="$WORK/interactions.jsonl"

echo "==> exporting the service's interaction log"
"$PYTHON" -m service.export_log --out "$LOG"
if [ ! -s "$LOG" ]; then
  echo "==> no interactions logged: nothing to fine-tune"
  exit 0
fi

overrides=(
  --set "data.interactions=\"$LOG\""
  --set "run.models_dir=\"$(dirname "$ROOT")\""
  --set kd.pair_weight=0 --set kd.list_weight=0 --set kd.emb_weight=0
  --set stage2.max_epochs=6 --set stage2.eval_every=1 --set stage2.patience=3
)
echo "==> fine-tuning $SERVED on $(wc -l < "$LOG") logged interactions"
"$PYTHON" -m training student "$CONFIG" --warm-start "$ROOT" "${overrides[@]}" "$@"
if [ "$(cat "$ROOT/LATEST")" = "$SERVED" ]; then
  echo "training wrote no new version under $ROOT: the folder must be named after the dataset" >&2
  exit 1
fi

echo "==> swapping the new version in"
curl -fsS -X POST "$SERVICE_URL/admin/reload" -H "X-API-Key: $PROMPTMM_API_KEY" \
  -H 'content-type: application/json' -d '{}'
echo
