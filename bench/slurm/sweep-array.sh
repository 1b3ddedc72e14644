#!/usr/bin/env bash
# A sweep on a real scheduler: installs Debian's Slurm (slurm-wlm) and MUNGE, starts a single-node cluster on this
# machine, submits the sweep's baselines as one job and its InterroGate runs as a job array that depends on it, waits,
# merges the shards, and checks the merged table against the same sweep run in one process.
# Needs root (apt-get, the daemons). Usage: sudo [OUT=folder] bench/slurm/sweep-array.sh [shards, default 3]
# Output: bench/results/slurm/ or $OUT (the sweep's configuration, the job log, both tables and the comparison).
# test.sh runs it as one check of the suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
shards=${1:-3}
work=${TMPDIR:-/tmp}/interrogate-slurm
out=$(mkdir -p "${OUT:-$repo/bench/results/slurm}" && cd "${OUT:-$repo/bench/results/slurm}" && pwd)
[ "$(id -u)" = 0 ] || { echo "sweep-array.sh needs root: it installs Slurm and MUNGE and starts their daemons" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work" "$out"

# ---- Slurm and MUNGE -------------------------------------------------------------------------------------------
if ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=interrogate
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0700 /etc/munge
pkill -x slurmd || true; pkill -x slurmctld || true; pkill -x munged || true
sleep 1
runuser -u munge -- /usr/sbin/munged
slurmctld
slurmd
for _ in $(seq 30); do sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed' && break; sleep 1; done
sinfo -h -o %T | grep -qE 'idle|mixed' || { echo "the Slurm node did not come up:" >&2; tail -20 /var/log/slurm/slurmd.log /var/log/slurm/slurmctld.log >&2; exit 1; }
sinfo

# ---- The sweep -------------------------------------------------------------------------------------------------
dotnet build src/InterroGate.Cli -c Release -v q -nologo
cp -r src/InterroGate.Cli/bin/Release/net10.0 "$work/bin"
cli="dotnet $work/bin/interrogate.dll"
# Synthetic data (two of its tasks), ResNet-20 ×¼, 2 epochs: per seed 2 STL, MTL and 2 λs × 4 τ pairs = 8 InterroGate runs.
cat > "$work/sweep.json" <<JSON
{
  "name": "slurm-sweep",
  "data": { "dataset": "synthetic", "trainSize": 256, "validationSize": 64, "testSize": 128 },
  "tasks": ["quadrant", "bar"],
  "backbone": { "name": "resnet20", "width": 0.25 },
  "training": { "epochs": 2, "batchSize": 32, "evalBatchSize": 128, "threads": 1 },
  "lambdaS": [1, 4],
  "tauGrid": [0, 0.75],
  "seeds": [0, 1]
}
JSON
cp "$work/sweep.json" "$out/sweep.json"
cat > "$work/job.sh" <<JOB
#!/usr/bin/env bash
set -euo pipefail
cd "$work"
export DOTNET_CLI_HOME=$work/home HOME=$work/home
exec $cli sweep "$work/sweep.json" -o "$work/array" "\$@"
JOB
chmod +x "$work/job.sh"
base=$(sbatch --parsable -o "$work/baselines-%j.log" -c 1 "$work/job.sh" --baselines)
array=$(sbatch --parsable --array=0-$((shards - 1)) --dependency=afterok:$base -o "$work/shard-%A_%a.log" -c 1 "$work/job.sh")
echo "submitted: baselines job $base, array job $array (tasks 0-$((shards - 1)))" | tee "$out/jobs.log"
squeue | tee -a "$out/jobs.log"
start=$(date +%s)
while squeue -h -j "$base,$array" 2>/dev/null | grep -q .; do
  sleep 5
  [ $(( $(date +%s) - start )) -lt 1200 ] || { echo "the jobs did not finish within 20 minutes" >&2; squeue >&2; exit 1; }
done
echo "all jobs left the queue after $(( $(date +%s) - start )) s" | tee -a "$out/jobs.log"
sacct -j "$base,$array" --format=JobID,State,ExitCode,Elapsed 2>/dev/null | tee -a "$out/jobs.log" || true
for f in "$work"/baselines-*.log "$work"/shard-*.log; do echo "== $(basename "$f")"; tail -n 3 "$f"; done | tee -a "$out/jobs.log"
ls "$work/array/shards" | tee -a "$out/jobs.log"
$cli merge "$work/array" > "$out/merged.log"
cp "$work/array/table.md" "$out/merged.md"
cp "$work/array/table.json" "$out/merged.json"

# ---- The same sweep in one process, and the check ----------------------------------------------------------------
$cli sweep "$work/sweep.json" -o "$work/single" > "$out/single.log"
cp "$work/single/table.md" "$out/single.md"
cp "$work/single/table.json" "$out/single.json"
python3 - "$out/merged.json" "$out/single.json" <<'PY' | tee "$out/check.log"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
def rows(t):  # what training decides: metrics, cost, Δ_MTL and every seed's metrics; not timing
    return [(r["label"], r["metrics"], r["macs"], r.get("deltaMtl"), [s["metrics"] for s in r.get("seeds") or []]) for r in t["rows"]]
ra, rb = rows(a), rows(b)
same = ra == rb
# STL, MTL and the 2 λs × 4 τ pairs: two empty tables would be equal too.
whole = len(ra) == 10 and all(len(r[4]) == 2 for r in ra)
print(f"rows: merged {len(ra)}, one process {len(rb)} (10 expected, each with 2 seeds: {whole}); "
      f"metrics, MACs, Δ_MTL and per-seed metrics identical: {same}")
sys.exit(0 if same and whole else 1)
PY
