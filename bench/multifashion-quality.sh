#!/usr/bin/env bash
# MultiFashion quality benchmark: STL, MTL and InterroGate at the preset's λs on the full data
# (50,000 train / 10,000 validation / 10,000 test pairs), ResNet-20 at width 1/4.
# Usage: [NAME=folder-name] bench/multifashion-quality.sh [preset] [extra interrogate options, e.g. --seeds 0,1,2]
# Runs go to runs/bench-NAME (finished runs are reused, interrupted ones resumed); the table, the log and every
# run's metrics.jsonl are copied to bench/results/NAME. The build is copied to a folder of its own first, so the
# source tree can be rebuilt while the benchmark runs (hours on a 2-core CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-multifashion-w025}
shift || true
dotnet build src/InterroGate.Cli -c Release -v q -nologo
bin=$(mktemp -d "${TMPDIR:-/tmp}/interrogate-bench.XXXXXX")
trap 'rm -rf "$bin"' EXIT
cp -r src/InterroGate.Cli/bin/Release/net10.0/. "$bin/"
name=${NAME:-$preset}
runs=runs/bench-$name
out=bench/results/$name
mkdir -p "$out"
dotnet "$bin/interrogate.dll" compare "$preset" -o "$runs" "$@" | tee -a "$out/compare.log"
cp "$runs/table.md" "$runs/table.json" "$out/"
# Every run's metrics (seed-N/run/metrics.jsonl with --seeds, run/metrics.jsonl without), named by their path.
(cd "$runs" && find . -name metrics.jsonl) | while read -r m; do
  m=${m#./}
  cp "$runs/$m" "$out/$(dirname "$m" | tr / _).metrics.jsonl"
done
