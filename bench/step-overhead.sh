#!/usr/bin/env bash
# What the trainer adds to a bare training step, where the step is bound by the number of operations rather than by
# arithmetic: ResNet-20 x1/4 on MultiFashion (1x36x36), batch 2, on the CPU. "bare" is InterroGate.Bench's `step`
# (forward, losses, backward, the optimisers: what the GPU suite times against PyTorch); "trainer" is one epoch of
# multifashion-w025's run on our trainer at the same batch (the step as training runs it: the data loader, the gate
# diagnostics, the gate update, the loss bookkeeping), its images/s over the epoch's steps. Median of REPEATS runs of
# each; a GPU runs such a step at the speed the host issues operations, so what costs here costs there. "tensors per
# trainer step": tensors the host created per step of that epoch (TorchSharp's dispose-scope statistics), a count of
# the operations it issues (those inside libtorch's backward pass not counted); the same in every run.
#   bench/step-overhead.sh [repeats, default 3]     (BENCH=path/to/InterroGate.Bench.dll to time another build)
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-3}
if [ -z "${BENCH:-}" ]; then
  dotnet build bench/InterroGate.Bench -c Release -v q -nologo > /dev/null
  BENCH=bench/InterroGate.Bench/bin/Release/net10.0/InterroGate.Bench.dll
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "| model | bare step ms | trainer step ms | trainer / bare | tensors per trainer step |"
echo "|---|---|---|---|---|"
for model in mtl interrogate; do
  bare=$(for i in $(seq "$repeats"); do
    dotnet "$BENCH" step --model "$model" --backbone resnet20 --width 0.25 --tasks 2 --size 36 --channels 1 --batch 2 \
      --steps 100 --device cpu --out "$out/step-$model" | tail -n 1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["step_ms_median"])'
  done | median)
  : > "$out/tensors"
  trainer=$(for i in $(seq "$repeats"); do
    dotnet "$BENCH" epoch --arch "$model" --train-size 600 --batch 2 --device cpu --out "$out/epoch-$model" 2>/dev/null | tail -n 1 |
      python3 -c 'import json, sys; d = json.load(sys.stdin); print(1000 * d["batch"] / d["images_per_s"]); print(d["tensors_per_step"], file=open(sys.argv[1], "a"))' "$out/tensors"
  done | median)
  tensors=$(median < "$out/tensors")
  python3 -c "print(f'| $model | {$bare:.2f} | {$trainer:.2f} | {$trainer / $bare:.2f} | {$tensors:.0f} |')"
done
