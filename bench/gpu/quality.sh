#!/usr/bin/env bash
# The GPU's quality runs (the second GPU script, at most about 9 minutes): comparisons trained longer than a CPU
# allows, on our trainer, from the folder scripts/publish-gpu-suite.sh wrote (InterroGate.Bench's `compare`; no
# figures there, the tables and every run's metrics come back):
#   1. fashion-scenes-nyud   (STL, MTL, InterroGate at its three λs; EPOCHS_DENSE epochs, the last 2 with fixed gates)
#   2. fashion-scenes-pascal (the same, five tasks)
#   3. multifashion-w1       (ResNet-20 at full width on all of MultiFashion; EPOCHS_MF epochs)
# Each gets at most its share of BUDGET seconds (default 450: 180 / 135 / 135); one that runs out is stopped and
# reported with the epochs its runs finished (each run's metrics.jsonl holds its validation curve; a curve that
# still rises at its end did not converge).
#   bench/gpu/quality.sh [published folder, default publish/gpu]
# It takes about as long as bench/gpu/run.sh: run the two as separate jobs.
# Results: runs/gpu-quality/quality.md and quality-runs.tar.gz (tables, configs, metrics); copied to $OUT when set.
# To try it on a CPU (EXTRA is added to every comparison; the training split must hold a batch, 128 for multifashion-w1):
#   DEVICE=cpu BENCH="dotnet bench/InterroGate.Bench/bin/Release/net10.0/InterroGate.Bench.dll" BUDGET=900 EPOCHS_DENSE=3 \
#   EPOCHS_MF=3 EXTRA="--set data.trainSize=256 --set data.validationSize=32 --set data.testSize=32" bench/gpu/quality.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
pub=${1:-publish/gpu}
py=${PYTHON:-python3}
bench=${BENCH:-$pub/InterroGate.Bench}
bench_cmd=("$bench")
if [ -n "${BENCH:-}" ]; then read -ra bench_cmd <<< "$BENCH"; fi # BENCH may be a command with arguments ("dotnet .../InterroGate.Bench.dll"), as for run.sh
budget=${BUDGET:-450}
dense=${EPOCHS_DENSE:-12} mf=${EPOCHS_MF:-8}
runs=runs/gpu-quality
mkdir -p "$runs"
if [ -z "${BENCH:-}" ]; then
  torchlib=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH="$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# The published folder's copy of Fashion-MNIST; elsewhere the library's own search (the Debian package's folder).
if [ -z "${INTERROGATE_FASHION_MNIST:-}" ] && [ -d "$pub/fashion-mnist" ]; then export INTERROGATE_FASHION_MNIST=$pub/fashion-mnist; fi
device=${DEVICE:-cuda}
report=$runs/quality.md
echo "# Quality runs on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo "$device"), budget $budget s" > "$report"

run() { # name seconds preset options...
  local name=$1 seconds=$2; shift 2
  local start=$SECONDS
  echo "## $name (at most $seconds s)" | tee -a "$report"
  # shellcheck disable=SC2086 # EXTRA is a list of options
  timeout --signal=INT --kill-after=20 "$seconds" "${bench_cmd[@]}" compare "$@" -o "$runs/$name" --device "$device" ${EXTRA:-} \
    > "$runs/$name.log" 2>&1
  local status=$?
  if [ -f "$runs/$name/table.md" ] && [ $status -eq 0 ]; then
    cat "$runs/$name/table.md" >> "$report"
  else
    echo "stopped after $((SECONDS - start)) s (exit $status); epochs finished per run:" >> "$report"
    for m in "$runs/$name"/*/metrics.jsonl; do
      [ -f "$m" ] && echo "- $(basename "$(dirname "$m")"): $(wc -l < "$m") epochs; last: $(tail -n 1 "$m" | cut -c1-200)" >> "$report"
    done
    tail -n 5 "$runs/$name.log" >> "$report"
  fi
  echo "($((SECONDS - start)) s)" >> "$report"
}

share() { echo $(( budget * $1 / 50 )); }
run nyud "$(share 20)" fashion-scenes-nyud \
  --set "training.epochs=$dense" --set "interroGateTraining.epochs=$dense" --set interroGateTraining.freezeGatesLastEpochs=2
run pascal "$(share 15)" fashion-scenes-pascal \
  --set "training.epochs=$dense" --set "interroGateTraining.epochs=$dense" --set interroGateTraining.freezeGatesLastEpochs=2
run multifashion-w1 "$(share 15)" multifashion-w1 \
  --set "training.epochs=$mf" --set "interroGateTraining.epochs=$mf" --set interroGateTraining.freezeGatesLastEpochs=2

(cd "$runs" && find . \( -name table.md -o -name table.json -o -name metrics.jsonl -o -name config.json -o -name '*.log' \) -print0 \
  | tar -czf quality-runs.tar.gz --null -T -)
cat "$report"
if [ -n "${OUT:-}" ]; then cp "$report" "$runs/quality-runs.tar.gz" "$OUT/"; fi
