#!/usr/bin/env bash
# Peak resident memory of a process that trains MTL and InterroGate steps on the CPU (ResNet-18, 3 tasks, 224x224,
# batch 32; InterroGateBench's `step`, the training step the GPU suite times): what a step holds on to
# (bench/RESULTS.md, "GPU: first run on an NVIDIA H100"). Needs GNU time (/usr/bin/time).
#   bench/step-memory.sh [steps, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-3}
dotnet build bench/InterroGate.Bench -c Release -v q -nologo > /dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for model in mtl interrogate; do
  /usr/bin/time -f "$model: peak resident memory %M KiB, %e s" \
    dotnet bench/InterroGate.Bench/bin/Release/net10.0/InterroGate.Bench.dll step --model "$model" --backbone resnet18 \
    --width 1 --tasks 3 --size 224 --channels 3 --batch 32 --steps "$steps" --device cpu --tf32 false --out "$out/$model" \
    2>&1 >/dev/null | tail -n 1
done
