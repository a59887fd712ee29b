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
#   5. ablation: the full ablation table of configs/tiktok-knn.toml over 3 seeds, 3 at once;
#   6. tiktok-seeds: the whole tiktok-knn pipeline with seeds 0, 1, 2 (the goal: <= 10 s each
#      on an H200, test Recall@20 as on the CPU), GPU utilisation sampled by nvidia-smi;
#   7. scale-data: the synthetic 1M users x 200k items x ~20M pairs set (`training data synth`,
#      density 1e-4) into $SCALE_DATA (default data/scale; kept if it is already there);
#   8. scale: configs/scale.toml on it, teacher -> student -> export (the goal: <= 10 min,
#      GPU >= 50 % busy), GPU utilisation sampled every 0.5 s into gpu-scale.csv and summed
#      up in gpu-scale.md; its run folder goes under $OUT/runs, so the per-epoch
#      metrics.json (seconds, train_seconds, validation) comes back even when SCALE_LIMIT
#      (default 400 s, so that scale-data + scale fit one 10-minute device call) cuts it.
#   9. tune: on each of TUNE_DATASETS (configs/<name>.toml, default tiktok-knn and ml100k-mm),
#      PromptMM and "LightGCN alone" tuned with the same budget (`training tune`, TUNE_TRIALS
#      trials in TUNE_JOBS processes each, all studies at once on the one card, TUNE_LIMIT
#      seconds; a study cut by the limit keeps its finished trials and still writes its
#      tuned.toml); the study folders go under $out/tune;
#  10. confirm-tuned: each tuned config over seeds 1..5 (tuning used seed 0), its own variant
#      only (`training ablate --variants`), 5 at once, into $out/tune/confirm-*.md.
# cuda-tests runs only the tests marked `cuda` (seconds, against minutes for `tests`).
# The 2026-12-04 run (bench/results/device-run-2026-12-04-h200.md) was two calls on one warm
# machine: STEPS="card torch cuda-tests tiktok-seeds tune confirm-tuned", then
# STEPS="scale-data scale", each with PACK=1.
# STEPS="card torch tests ..." runs a subset (default: all; one device call holds at most
# 10 minutes, so run e.g. STEPS="card scale-data scale" and STEPS="card tiktok-seeds" as two
# calls). DEVICE=cpu and the *_LIMIT variables exist to try the script's plumbing on a CPU
# machine (SCALE_USERS/SCALE_ITEMS/SCALE_DENSITY shrink the scale set for that, SCALE_BATCH
# the batches of configs/scale.toml).
# Needs only what the GPU machine's python has (torch, numpy, scipy, tqdm, matplotlib, pytest).
set -u -o pipefail
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE TQDM_MININTERVAL=10
data=${DATA:-../shared/datasets}
out=${OUT:-bench/results/device}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
mkdir -p "$out"
log="$out/device-run.log"
export PROMPTMM_SHARED_DATASETS="$data"

scale_data=${SCALE_DATA:-data/scale}
scale_set=()
if [[ -n ${SCALE_BATCH:-} ]]; then
    scale_set=(--set "stage1.batch_size=$SCALE_BATCH" --set "stage2.batch_size=$SCALE_BATCH")
fi

# gpu_sampled NAME STEP-ARGS...: run `step` with nvidia-smi sampling the card every 0.5 s into
# $out/gpu-NAME.csv, then append a summary (all samples, and the busy window from the first
# to the last sample above 5 %) to $out/gpu-NAME.md.
gpu_sampled() {
    local name=$1 csv="$out/gpu-$1.csv" sampler
    shift
    if [[ -n ${STEPS:-} && " $STEPS " != *" $1 "* ]]; then
        return 0
    fi
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
        -lms 500 >"$csv" 2>/dev/null &
    sampler=$!
    step "$@"
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    awk -F', *' -v step="$1" '
        { util[NR] = $2; mem[NR] = $3; if ($2 > 5) { if (!first) first = NR; last = NR } }
        END {
            if (NR == 0) { print "- " step ": no nvidia-smi samples"; exit }
            for (i = 1; i <= NR; i++) { all += util[i]; if (mem[i] > peak) peak = mem[i] }
            for (i = first; first && i <= last; i++) { busy += util[i]; if (util[i] >= 50) hi++ }
            n = first ? last - first + 1 : 0
            printf "- %s: %d samples (0.5 s), mean utilisation %.1f %%; busy window %d samples: ", \
                step, NR, all / NR, n
            printf "mean %.1f %%, >= 50 %% in %.0f %% of them; peak memory used %d MiB\n", \
                n ? busy / n : 0, n ? 100 * hi / n : 0, peak
        }' "$csv" | tee -a "$out/gpu-$name.md" "$log"
}

step() {
    local name=$1 limit=$2 started=$SECONDS rc
    shift 2
    if [[ -n ${STEPS:-} && " $STEPS " != *" $name "* ]]; then
        return 0
    fi
    echo "=== $name (limit ${limit}s): $*" | tee -a "$log"
    if declare -F "$1" >/dev/null; then
        "$@" 2>&1 | tee -a "$log"  # a function of this script: its commands bound themselves
    else
        timeout "$limit" "$@" 2>&1 | tee -a "$log"
    fi
    rc=${PIPESTATUS[0]}
    echo "=== $name: rc $rc, $((SECONDS - started)) s" | tee -a "$log" "$out/steps.txt"
}

date -u +"%Y-%m-%dT%H:%M:%SZ" | tee -a "$log"
step card 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step torch 60 "$python" -c "import torch; print(torch.__version__, torch.version.cuda, \
torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).multi_processor_count, 'SMs')"
step cuda-tests "${TESTS_LIMIT:-90}" "$python" -m pytest -q -p no:cacheprovider -o addopts= \
    -m cuda tests/training tests/bundle
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
for seed in 0 1 2; do
    gpu_sampled "tiktok-seed$seed" tiktok-seeds "${PIPELINE_LIMIT:-150}" "$python" \
        -m bench.pipeline_timing configs/tiktok-knn.toml --device "$device" \
        --set "data.path=\"$data/tiktok\"" --set "run.seed=$seed" --set run.progress=false \
        --out "$out/pipeline-$device-tiktok-knn-seed$seed.md"
done
if [[ -f "$scale_data/$(basename "$scale_data").inter" ]]; then
    echo "=== scale-data: $scale_data is already there" | tee -a "$log"
else
    step scale-data "${SCALE_DATA_LIMIT:-180}" "$python" -m training data synth "$scale_data" \
        --users "${SCALE_USERS:-1000000}" --items "${SCALE_ITEMS:-200000}" \
        --density "${SCALE_DENSITY:-0.0001}" --seed 0
fi
gpu_sampled scale scale "${SCALE_LIMIT:-400}" "$python" -m bench.pipeline_timing \
    configs/scale.toml --device "$device" --set "data.path=\"$scale_data\"" \
    --set "run.runs_dir=\"$out/runs\"" ${scale_set[@]+"${scale_set[@]}"} \
    --out "$out/pipeline-$device-scale.md"
# the checkpoints (hundreds of MB at this size) are not results: keep the metrics, drop them
if [[ -d $out/runs ]]; then find "$out/runs" -name '*.pt' -delete; fi

# tune_study CONFIG DATASET [VARIANT]: one study (PromptMM, or VARIANT) under $out/tune.
tune_study() {
    local config=$1 dataset=$2 variant=${3:-} dir name args
    name=$config${variant:+-lightgcn-alone}
    dir="$out/tune/$name"
    args=(-m training tune "configs/$config.toml" --device "$device" --out "$dir"
        --set "data.path=\"$data/$dataset\"" --set run.threads=1 --set run.progress=false)
    if [[ -n $variant ]]; then args+=(--variant "$variant"); fi
    timeout "${TUNE_LIMIT:-150}" "$python" "${args[@]}" --trials "${TUNE_TRIALS:-24}" \
        --jobs "${TUNE_JOBS:-4}" >"$dir.log" 2>&1
    echo "--- $name: rc $?" >>"$dir.log"
    # cut by the limit: the finished trials are in the study; --trials 1 only writes tuned.toml
    [[ -f $dir/tuned.toml ]] || timeout 60 "$python" "${args[@]}" --trials 1 >>"$dir.log" 2>&1
}

tune_all() {
    local name pids=()
    mkdir -p "$out/tune"
    for name in ${TUNE_DATASETS:-tiktok-knn ml100k-mm}; do
        tune_study "$name" "${name%-knn}" &
        pids+=($!)
        tune_study "$name" "${name%-knn}" "LightGCN alone" &
        pids+=($!)
    done
    wait "${pids[@]}"
    tail -n 12 "$out"/tune/*.log
}

confirm_tuned() {
    local dir variant pids=() limit=${CONFIRM_TUNED_LIMIT:-150}
    for dir in "$out"/tune/*/; do
        dir=${dir%/}
        [[ -f $dir/tuned.toml ]] || continue
        variant=PromptMM
        [[ $dir == *-lightgcn-alone ]] && variant="LightGCN alone"
        timeout "$limit" "$python" -m training ablate "$dir/tuned.toml" --variants "$variant" --seeds 5 \
            --jobs 5 --device "$device" --set run.seed=1 --set run.threads=1 \
            --set run.progress=false --out "$out/tune/confirm-$(basename "$dir").md" \
            >"$dir-confirm.log" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}"
    cat "$out"/tune/confirm-*.md
}

step tune "$((${TUNE_LIMIT:-150} + 60))" tune_all
step confirm-tuned "${CONFIRM_TUNED_LIMIT:-150}" confirm_tuned
cat "$out/steps.txt"
# PACK=1: everything but the log and the step list into one archive (the device tool brings
# back at most 8 files)
if [[ -n ${PACK:-} ]]; then
    tar czf "$out/results.tgz" -C "$out" --exclude=results.tgz --exclude=device-run.log \
        --exclude=steps.txt .
    find "$out" -mindepth 1 ! -name results.tgz ! -name device-run.log ! -name steps.txt -delete
fi
