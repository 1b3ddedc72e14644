#!/usr/bin/env bash
# The CelebA preset's protocol (STL, MTL, InterroGate) on a generated CelebA-format folder: the official file layout
# with synthetic faces whose Male, Young and Wearing_Necktie attributes are drawn into the image (CelebASample).
# The real data set is read the same way: `interrogate compare celeba-w025 --set data.root=/data/celeba`.
# Usage: bench/celeba/fixture-run.sh [images, default 3000]
# Output: bench/results/celeba-fixture/ (table, log, metrics of every run).
set -euo pipefail
cd "$(dirname "$0")/../.."
images=${1:-3000}
work=${TMPDIR:-/tmp}/interrogate-celeba-fixture
rm -rf "$work" && mkdir -p "$work"
dotnet build src/InterroGate.Cli -c Release -v q -nologo
dotnet run -c Release --project bench/InterroGate.Bench -v q -- celeba-sample "$work/celeba" "$images"
bin=$work/bin
cp -r src/InterroGate.Cli/bin/Release/net10.0 "$bin"
train=$((images * 8 / 10)) val=$((images / 10)) test=$((images - images * 9 / 10))
out=bench/results/celeba-fixture
mkdir -p "$out"
# The preset's recipe at the fixture's size: 6 epochs (StepLR every 2), InterroGate 3 epochs with the gates learning in
# the first; the splits are the fixture's whole official partition.
dotnet "$bin/interrogate.dll" compare celeba-w025 -o "$work/runs" \
  --set data.root="$work/celeba" --set data.cache="$work/cache" \
  --set data.trainSize=$train --set data.validationSize=$val --set data.testSize=$test \
  --set training.epochs=6 --set training.schedule.stepSize=2 \
  --set interroGateTraining.epochs=3 --set interroGateTraining.freezeGatesLastEpochs=2 \
  | tee "$out/compare.log"
cp "$work/runs/table.md" "$work/runs/table.json" "$out/"
