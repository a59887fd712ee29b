#!/usr/bin/env bash
# The GPU machine's whole check in one command (the device README: prepare one script, run it
# once, keep its log). From the repository root there, with the datasets carried in a folder:
#
#   DATA=.devdata bash bench/device_run.sh          # logs and tables under $OUT
#
# Steps, each bounded by its own timeout so one failure still leaves the others' results:
#   1. the card (nvidia-smi) and torch's view of it;
#   2. the training and bundle tests with torch on CUDA (the `cuda` marked parity test runs here,
#      and every `run.device = "auto"` test trains on the GPU);
#   3. the whole pipeline (teacher -> student -> export) on Tiktok with configs/tiktok.toml and
#      with configs/tiktok-knn.toml, each through bench.pipeline_timing --device cuda, which
#      prints the per-stage table (epochs, seconds, test Recall@20 / NDCG@20, card name);
#   4. confirm: the distilled student beside LightGCN alone (and the teacher) on CUDA with
#      configs/tiktok-knn.toml over SEEDS seeds from FIRST_SEED, 8 seeds at once
#      (bench.teacher_select with one candidate; each run is appended to a JSONL as it ends);
#   5. ablation: the full ablation table of configs/tiktok-knn.toml over 3 seeds, 3 at once.
# STEPS="card torch tests ..." runs a subset (default: all). DEVICE=cpu and the *_LIMIT
# variables exist to try the script's plumbing on a CPU machine.
# Needs only what the GPU machine's python has (torch, numpy, scipy, tqdm, matplotlib, pytest).
set -u -o pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE TQDM_MININTERVAL=10
data=${DATA:-../shared/datasets}
out=${OUT:-bench/results/device}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
mkdir -p "$out"
log="$out/device-run.log"
export PROMPTMM_SHARED_DATASETS="$data"

step() {
    local name=$1 limit=$2 started=$SECONDS rc
    shift 2
    if [[ -n ${STEPS:-} && " $STEPS " != *" $name "* ]]; then
        return 0
    fi
    echo "=== $name (limit ${limit}s): $*" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    echo "=== $name: rc $rc, $((SECONDS - started)) s" | tee -a "$log" "$out/steps.txt"
}

date -u +"%Y-%m-%dT%H:%M:%SZ" | tee -a "$log"
step card 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step torch 60 "$python" -c "import torch; print(torch.__version__, torch.version.cuda, \
torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).multi_processor_count, 'SMs')"
step tests "${TESTS_LIMIT:-180}" "$python" -m pytest -q -p no:cacheprovider -o addopts= \
    tests/training tests/bundle
for config in tiktok tiktok-knn; do
    step "pipeline-$config" "${PIPELINE_LIMIT:-150}" "$python" -m bench.pipeline_timing \
        "configs/$config.toml" --device "$device" --set "data.path=\"$data/tiktok\"" \
        --out "$out/pipeline-$device-$config.md"
done
step confirm "${CONFIRM_LIMIT:-240}" "$python" -m bench.teacher_select configs/tiktok-knn.toml \
    --names "config as is" --first-seed "${FIRST_SEED:-0}" --seeds "${SEEDS:-8}" --workers 8 \
    --device "$device" --set "data.path=\"$data/tiktok\"" --set run.threads=2 \
    --set run.progress=false --jsonl "$out/confirm-$device-tiktok-knn.jsonl" \
    --out "$out/confirm-$device-tiktok-knn.md"
step ablation "${ABLATION_LIMIT:-300}" "$python" -m training ablate configs/tiktok-knn.toml \
    --seeds 3 --jobs 3 --device "$device" --set "data.path=\"$data/tiktok\"" \
    --set run.threads=4 --set run.progress=false --out "$out/ablation-$device-tiktok-knn.md"
cat "$out/steps.txt"
