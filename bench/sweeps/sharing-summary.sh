#!/usr/bin/env bash
# The sharing pattern of every InterroGate run of a comparison folder (seed-N/interrogate-* with --seeds, interrogate-*
# without), one line each: task-specific fraction per task and the gated layers split channel by channel (the gates
# target for channel-level selection: at least half of them at the mid budgets, the tasks' fractions different).
# Usage: bench/sweeps/sharing-summary.sh RUNS_FOLDER [interrogate.dll]   (Markdown table on stdout)
set -euo pipefail
runs=${1:?usage: bench/sweeps/sharing-summary.sh RUNS_FOLDER [interrogate.dll]}
cli=${2:-}
if [ -z "$cli" ]; then
  cd "$(dirname "$0")/../.." && dotnet build src/InterroGate.Cli -c Release -v q -nologo >/dev/null && cd - >/dev/null
  cli=$(dirname "$0")/../../src/InterroGate.Cli/bin/Release/net10.0/interrogate.dll
fi
echo "| run | task-specific % per task | layers split |"
echo "|---|---|---|"
# In order of seed folder, then λs (the number after "ls"), then the rest of the name.
find "$runs" -mindepth 1 -maxdepth 2 -type d -name 'interrogate-*' \
  | awk '{ n = $0; sub(/.*interrogate-ls/, "", n); seed = ""; if (match($0, /seed-[0-9]+/)) seed = substr($0, RSTART, RLENGTH);
           printf "%s\t%g\t%s\n", seed, n + 0, $0 }' \
  | sort -t$'\t' -k1,1V -k2,2g -k3,3 | cut -f3 | while read -r run; do
  [ -f "$run/last.ckpt" ] || continue
  line=$(dotnet "$cli" gates "$run" 2>/dev/null | grep -m1 '^Task-specific channels:' || true)
  # "Task-specific channels: a 49.4%, b 50.0%; 7 of 19 gated layers split channel by channel."
  fractions=$(sed -E 's/^Task-specific channels: ([^;]*);.*/\1/' <<< "$line")
  split=$(sed -E 's/.*; ([0-9]+ of [0-9]+) gated layers split.*/\1/' <<< "$line")
  echo "| ${run#"$runs"/} | $fractions | $split |"
done
