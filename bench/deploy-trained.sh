#!/usr/bin/env bash
# Inference speed of pruned ResNet-18 InterroGate networks whose gates were learned, not drawn: trains an
# InterroGate ResNet-18 on MultiFashion (the quick preset's data: 8,000 training pairs, 3 epochs, the last with the
# gates fixed) at each λs given, then times STL, MTL, the gated network and the pruned networks at 224×224 with
# random gate patterns and with each trained model's gates (DeploySpeed.cs; weights are random, only the gates
# come from the trained models: speed depends on the sharing pattern, not on the weights' values).
# Usage: bench/deploy-trained.sh [λs...]   (default 700 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then set -- 700 2000; fi
lambdas=("$@")
dotnet build InterroGate.slnx -c Release -v q -nologo
out=bench/results/deploy
mkdir -p "$out"
ckpts=()
for l in "${lambdas[@]}"; do
  dir=runs/bench-resnet18-multifashion-lambda$l
  [ -f "$dir/last.ckpt" ] || dotnet src/InterroGate.Cli/bin/Release/net10.0/interrogate.dll train multifashion-quick/interrogate \
      --set 'backbone.name="resnet18"' --set backbone.width=1 --set architecture.lambdaS=$l -o "$dir"
  dotnet src/InterroGate.Cli/bin/Release/net10.0/interrogate.dll prune "$dir/last.ckpt" -o "$dir/pruned.safetensors" > "$out/resnet18-multifashion-lambda$l-prune.md"
  ckpts+=("$dir/last.ckpt")
done
dotnet run -c Release --no-build --project bench/InterroGate.Bench -- deploy resnet18 224 0.1 0.3 0.5 --gates "${ckpts[@]}" | tee "$out/resnet18-224-cpu-trained.md"
