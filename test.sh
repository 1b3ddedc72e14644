#!/usr/bin/env bash
# The test suite: installs Fashion-MNIST if missing (some tests read it), builds and runs every test,
# and ends with a line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")"
scripts/ensure-fashion-mnist.sh || exit 1
dotnet build InterroGate.slnx -v q -nologo || exit 1
mkdir -p TestResults
dotnet test tests/InterroGate.Tests --no-build --logger "trx;LogFileName=results.trx" --results-directory TestResults 2>&1 | tee TestResults/output.txt
status=${PIPESTATUS[0]}
summary=$(grep -E "(Passed|Failed)!\s+-" TestResults/output.txt | tail -1)
passed=$(echo "$summary" | sed -nE 's/.*Passed:\s+([0-9]+).*/\1/p')
failed=$(echo "$summary" | sed -nE 's/.*Failed:\s+([0-9]+).*/\1/p')
echo "${passed:-0} passed, ${failed:-0} failed"
exit $status
