#!/usr/bin/env bash
# A CPU training step of InterroGate (ResNet-20 x1/4, 36x36 one-channel images, batch 256, fp32, median of 20 steps),
# with NCHW and with channels-last images, for this build and, optionally, the bench program of another build (to
# compare before and after a change), alternating builds and layouts in each round.
# Usage: bench/channels-last-cpu.sh [ROUNDS] [OTHER_BUILD_BENCH_DLL]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
other=${2:-}
dotnet build bench/InterroGate.Bench -c Release -v q -nologo >/dev/null
this=bench/InterroGate.Bench/bin/Release/net10.0/InterroGate.Bench.dll
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
for round in $(seq 1 "$rounds"); do
  for build in ${other:+other} this; do
    dll=$this; [[ $build == other ]] && dll=$other
    for cl in false true; do
      line=$(dotnet "$dll" step --model interrogate --backbone resnet20 --width 0.25 --tasks 2 --size 36 --channels 1 --batch 256 \
        --steps 20 --device cpu --channels-last $cl --out "$out/$build-$cl" 2>&1 | grep '"side"')
      med=$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["step_ms_median"], 1))' "$line")
      echo "round $round build $build channels_last $cl median_ms $med"
    done
  done
done
