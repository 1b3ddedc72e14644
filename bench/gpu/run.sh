#!/usr/bin/env bash
# The GPU suite (bench/gpu/suite.py) on a machine with CUDA PyTorch, from the folder scripts/publish-gpu-suite.sh
# wrote (copied there with the source tree; no .NET or network needed there). Our side runs on PyTorch's own libtorch.
#   bench/gpu/run.sh [published folder, default publish/gpu] [suite.py options, e.g. --budget 420 --sections pruned]
# Everything goes to runs/gpu; with OUT set, the table, the JSON (rewritten after every section) and the log go there too.
# PYTHON names the interpreter (default python3); BENCH replaces the published program (e.g. "dotnet
# bench/InterroGate.Bench/bin/Release/net10.0/InterroGate.Bench.dll", to try the suite on a CPU with --device cpu --quick).
set -uo pipefail
cd "$(dirname "$0")/../.."
pub=publish/gpu
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then pub=$1; shift; fi
py=${PYTHON:-python3}
bench=${BENCH:-$pub/InterroGate.Bench}
runs=runs/gpu
mkdir -p "$runs"
if [ -z "${BENCH:-}" ]; then # the published program loads PyTorch's libtorch (a local build brings its own)
  torchlib=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH="$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$py" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU available:", torch.cuda.is_available())'
} | tee "$runs/machine.txt"
report=()
logs=("$runs/suite.log")
if [ -n "${OUT:-}" ]; then # results also straight into OUT, section by section, so that a job stopped by its time limit keeps what it measured
  cp "$runs/machine.txt" "$OUT/"
  report=(--report "$OUT")
  logs+=("$OUT/suite.log")
fi
# The published folder's copy of Fashion-MNIST; elsewhere the library's own search (INTERROGATE_FASHION_MNIST, the Debian package's folder).
fashion=()
if [ -d "$pub/fashion-mnist" ]; then fashion=(--fashion-mnist "$pub/fashion-mnist"); fi
# ${a[@]+"${a[@]}"}: an empty array under set -u, also in bash before 4.4.
PYTHONUNBUFFERED=1 "$py" bench/gpu/suite.py --ours "$bench" ${fashion[@]+"${fashion[@]}"} --out "$runs" ${report[@]+"${report[@]}"} "$@" 2>&1 \
  | tee "${logs[@]}"
exit "${PIPESTATUS[0]}"
