#!/usr/bin/env bash
# The main job on a fresh machine: install Fashion-MNIST if missing, build, and run the paper's protocol
# (STL per task, MTL, InterroGate at four λs) on MultiFashion with the CPU-sized preset; prints the table.
# Any other arguments go to `interrogate compare` (e.g. --set lambdaS=[5,20,80]).
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-fashion-mnist.sh
dotnet build src/InterroGate.Cli -c Release -v q -nologo
dotnet src/InterroGate.Cli/bin/Release/net10.0/interrogate.dll compare multifashion-quick -o runs/multifashion-quick "$@"
