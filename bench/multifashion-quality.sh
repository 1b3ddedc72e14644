#!/usr/bin/env bash
# MultiFashion quality benchmark: STL, MTL and InterroGate at three λs on the full data
# (50,000 train / 10,000 validation / 10,000 test pairs), ResNet-20 at width 1/4.
# Usage: bench/multifashion-quality.sh [preset] [extra interrogate options...]
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-multifashion-w025}
shift || true
dotnet build src/InterroGate.Cli -c Release -v q -nologo
out=bench/results/$preset
mkdir -p "$out"
dotnet src/InterroGate.Cli/bin/Release/net10.0/interrogate.dll compare "$preset" -o "runs/bench-$preset" "$@" | tee "$out/compare.log"
cp "runs/bench-$preset/table.md" "runs/bench-$preset/table.json" "$out/"
for d in runs/bench-$preset/*/; do cp "$d/metrics.jsonl" "$out/$(basename "$d").metrics.jsonl"; done
