#!/usr/bin/env bash
# Publishes a self-contained `interrogate` for a Linux x64 machine with CUDA PyTorch (no .NET needed there):
# built without the bundled CPU libtorch, it runs on the libtorch of that machine's PyTorch.
# Usage: scripts/publish-cuda.sh [output folder, default publish/cuda]
# There: ./interrogate doctor   (finds PyTorch through python3, or set INTERROGATE_LIBTORCH=<torch/lib folder>)
#        python3 bench/reference/gpu_bench.py --ours <out>/bench/InterroGate.Bench   (ours against PyTorch eager)
# The whole GPU suite (bench/gpu/run.sh) has its own, smaller folder: scripts/publish-gpu-suite.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-publish/cuda}
dotnet publish src/InterroGate.Cli -c Release -r linux-x64 --self-contained \
  -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true -p:InterroGateBundledLibTorch=false \
  -o "$out" -v q -nologo
# The benchmark program too, for bench/reference/gpu_bench.py (ours against PyTorch on the same GPU).
dotnet publish bench/InterroGate.Bench -c Release -r linux-x64 --self-contained \
  -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true -p:InterroGateBundledLibTorch=false \
  -o "$out/bench" -v q -nologo
echo "published to $out ($(du -sh "$out" | cut -f1)); run $out/interrogate doctor on the target machine"
