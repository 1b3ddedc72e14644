#!/usr/bin/env bash
# The test suite: installs Fashion-MNIST if missing (some tests read it), builds (Release, the build the CLI and
# benchmarks run) and runs every test,
# runs the sweep-on-Slurm check (bench/slurm/sweep-array.sh: a single-node cluster, a job array, merge; needs root;
# INTERROGATE_SLURM_CHECK=0 leaves it out) as one more test, and ends with a line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")"
scripts/ensure-fashion-mnist.sh || exit 1
scripts/ensure-chromium.sh || exit 1
dotnet build InterroGate.slnx -c Release -v q -nologo || exit 1
mkdir -p TestResults
dotnet test tests/InterroGate.Tests -c Release --no-build --logger "trx;LogFileName=results.trx" --results-directory TestResults 2>&1 | tee TestResults/output.txt
status=${PIPESTATUS[0]}
summary=$(grep -E "(Passed|Failed)!\s+-" TestResults/output.txt | tail -1)
passed=$(echo "$summary" | sed -nE 's/.*Passed:\s+([0-9]+).*/\1/p')
failed=$(echo "$summary" | sed -nE 's/.*Failed:\s+([0-9]+).*/\1/p')
passed=${passed:-0} failed=${failed:-0}
# A test run that failed without its summary line (the test host aborted, the build of a test project broke) is one failure.
if [ -z "$summary" ] && [ "$status" != 0 ]; then failed=$((failed + 1)); echo "The test run ended (exit $status) without a summary (TestResults/output.txt)"; fi
if [ "${INTERROGATE_SLURM_CHECK:-1}" != 0 ]; then
  if OUT=TestResults/slurm bench/slurm/sweep-array.sh 3 > TestResults/slurm.log 2>&1; then
    passed=$((passed + 1)); echo "Slurm job-array sweep: merged table equals the one-process sweep (TestResults/slurm/)"
  else
    failed=$((failed + 1)); status=1; echo "Slurm job-array sweep FAILED (TestResults/slurm.log):"; tail -n 20 TestResults/slurm.log
  fi
fi
echo "$passed passed, $failed failed"
exit $status
