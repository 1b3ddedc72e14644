#!/usr/bin/env bash
# A Pareto sweep on MultiFashion (the multifashion-quick preset: 8,000 training pairs, ResNet-20 ×¼): InterroGate at
# λs ∈ {2, 8} × τ per task ∈ {0, 0.5}² = 8 points, seeds 0 and 1, run as the baselines and SHARDS shards one
# after the other (each is what one job of a Slurm array runs), then merged. Output: bench/results/multifashion-pareto/
# (table, cost, figures, the report). Usage: bench/sweeps/multifashion-pareto.sh [shards, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
shards=${1:-3}
dotnet build src/InterroGate.Cli -c Release -v q -nologo
bin=$(mktemp -d "${TMPDIR:-/tmp}/interrogate-bench.XXXXXX")
trap 'rm -rf "$bin"' EXIT
cp -r src/InterroGate.Cli/bin/Release/net10.0/. "$bin/"
runs=runs/bench-multifashion-pareto
out=bench/results/multifashion-pareto
mkdir -p "$out"
sweep=(sweep multifashion-quick -o "$runs" --seeds 0,1 --set 'lambdaS=[2,8]' --set 'tauGrid=[0,0.5]')
{
  dotnet "$bin/interrogate.dll" "${sweep[@]}" --baselines
  for ((i = 0; i < shards; i++)); do dotnet "$bin/interrogate.dll" "${sweep[@]}" --shard "$i/$shards"; done
  dotnet "$bin/interrogate.dll" merge "$runs"
  dotnet "$bin/interrogate.dll" report "$runs"
} 2>&1 | grep -vE '^\s+\S+ epoch [0-9]+/[0-9]+ loss' | tee "$out/sweep.log"
cp "$runs"/table.md "$runs"/table.json "$runs"/cost.md "$runs"/*.png "$runs"/*.svg "$out/"
