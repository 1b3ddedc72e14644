#!/usr/bin/env bash
# Budget targets for any comparison preset: InterroGate trained to 25%, 50% and 75% of the way from MTL's MACs to STL's, in the
# folder of a λs comparison of the same preset (its STL and MTL runs are reused), then each target row against that
# sweep's Pareto front at the same MACs (bench command front-check).
# Usage: [OUT=results-folder] [RAMP=r] bench/sweeps/budget-targets.sh [preset] [folder of the λs comparison] [seeds] [more compare options]
#   RAMP: the targets' ramp option (docs/method.md, "Budget targets"; default 0, none).
#   full data (3 seeds, after `NAME=multifashion-w025-regime bench/multifashion-quality.sh multifashion-w025 --seeds 0,1,2`):
#     bench/sweeps/budget-targets.sh
#   quick (2 seeds, after bench/sweeps/multifashion-pareto.sh):
#     bench/sweeps/budget-targets.sh multifashion-quick runs/bench-multifashion-pareto 0,1
#   dense (after `NAME=fashion-scenes-nyud-regime bench/multifashion-quality.sh fashion-scenes-nyud`):
#     bench/sweeps/budget-targets.sh fashion-scenes-nyud runs/bench-fashion-scenes-nyud-regime 0
# Output: bench/results/<preset>-targets/ (table, trade-off plot with the targets drawn, log, the front check).
set -euo pipefail
cd "$(dirname "$0")/../.."
preset=${1:-multifashion-w025}
runs=${2:-runs/bench-multifashion-w025-regime}
seeds=${3:-0,1,2}
shift $(( $# < 3 ? $# : 3 ))
out=${OUT:-bench/results/$preset-targets}
targets=(--targets 0.25,0.5,0.75)
if [ -n "${RAMP:-}" ]; then
  targets=(--set 'lambdaS=[]' --set "targets=[{\"fraction\":0.25,\"ramp\":$RAMP},{\"fraction\":0.5,\"ramp\":$RAMP},{\"fraction\":0.75,\"ramp\":$RAMP}]")
fi
lambda_table=$runs/table.json
[ -f "$lambda_table" ] || { echo "no λs comparison in $runs (table.json); run it first" >&2; exit 2; }
dotnet build src/InterroGate.Cli -c Release -v q -nologo
dotnet build bench/InterroGate.Bench -c Release -v q -nologo
bin=$(mktemp -d "${TMPDIR:-/tmp}/interrogate-bench.XXXXXX")
cp -r src/InterroGate.Cli/bin/Release/net10.0/. "$bin/"
mkdir -p "$out"
cp "$lambda_table" "$out/lambda-table.json"
# compare rewrites the folder's tables and figures (table.*, cost.md, tradeoff*, curves-*, gates/, seed-N/table.*): they are
# kept aside and put back afterwards, so that the folder still describes the λs comparison.
snapshot=$(mktemp -d "${TMPDIR:-/tmp}/interrogate-lambda.XXXXXX")
trap 'rm -rf "$bin" "$snapshot"' EXIT
runs_abs=$(cd "$runs" && pwd)
written() { (cd "$runs_abs" && find . -maxdepth 2 -type f \( -path './gates/*' -o -name 'table.*' -o -name 'cost.md' \
  -o -name 'tradeoff*' -o -name 'curves-*' \) -print0); }
written | (cd "$runs_abs" && xargs -0 -r cp --parents -t "$snapshot")
dotnet "$bin/interrogate.dll" compare "$preset" -o "$runs" --seeds "$seeds" "${targets[@]}" "$@" 2>&1 \
  | grep -vE '^\s+\S+ epoch [0-9]+/[0-9]+ loss' | tee "$out/compare.log"
cp "$runs/table.md" "$runs/table.json" "$runs/tradeoff.png" "$runs/tradeoff.svg" "$out/"
written | (cd "$runs_abs" && xargs -0 -r rm -f)   # the targets' tables and figures out of the λs folder
(cd "$snapshot" && find . -type f -print0 | xargs -0 -r cp --parents -t "$runs_abs")
dotnet bench/InterroGate.Bench/bin/Release/net10.0/InterroGate.Bench.dll front-check "$out/lambda-table.json" "$out/table.json" | tee "$out/front-check.md"
