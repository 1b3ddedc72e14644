#!/usr/bin/env bash
# Checks that the working tree trains to the same numbers as an earlier revision: short InterroGate runs of every
# encoder family and gating form (ResNet-20 conv and block gating, branch fusion off and on; ResNet-18 + ASPP dense;
# HRNet-18-small), each trained by both builds from the same seed, their metrics.jsonl compared value by value
# (timings excepted) and their pruned networks' MACs and parameters compared. Prints one line per run and exits 1 on
# any difference. For a change meant to leave the numbers alone (a refactoring).
# Usage: bench/same-numbers.sh REVISION     (e.g. bench/same-numbers.sh HEAD~3)
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bench/same-numbers.sh REVISION}
work=$(mktemp -d "${TMPDIR:-/tmp}/same-numbers.XXXXXX")
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/base" "$rev" >/dev/null
(cd "$work/base" && dotnet build src/InterroGate.Cli -c Release -v q -nologo >/dev/null)
dotnet build src/InterroGate.Cli -c Release -v q -nologo >/dev/null
cp -r src/InterroGate.Cli/bin/Release/net10.0 "$work/new-build" # the tree may be rebuilt while this runs
declare -A cli=([base]="$work/base/src/InterroGate.Cli/bin/Release/net10.0/interrogate.dll" [new]="$work/new-build/interrogate.dll")

# Gates start near 0 and the sparsity push is strong, so gates flip within these few steps (the pruned networks are neither STL nor MTL).
short="--set training.epochs=3 --set training.maxStepsPerEpoch=12 --set training.freezeGatesLastEpochs=1 --set architecture.alphaInit=0.0005 --set architecture.lambdaS=16"
mf="--set data.trainSize=2000 --set data.validationSize=500 --set data.testSize=500 --set architecture.lambdaS=1" # a third of the gates stay task-specific
declare -A runs=(
  [resnet20-conv]="multifashion-quick/interrogate $short $mf"
  [resnet20-block]="multifashion-quick/interrogate $short $mf --set architecture.gating=block"
  [resnet20-fused]="multifashion-quick/interrogate $short $mf --set architecture.fusion=on"
  [resnet18-aspp]="fashion-scenes-nyud/interrogate $short --set training.maxStepsPerEpoch=4 --set data.trainSize=64 --set data.validationSize=32 --set data.testSize=32"
  [hrnet18-small]="fashion-scenes-nyud/interrogate $short --set training.maxStepsPerEpoch=4 --set data.trainSize=64 --set data.validationSize=32 --set data.testSize=32 --set backbone.name=hrnet18-small --set backbone.outputStride=4 --set head.dense=hrnet"
)
status=0
for name in $(printf '%s\n' "${!runs[@]}" | sort); do
  for side in base new; do
    # shellcheck disable=SC2086
    dotnet "${cli[$side]}" train ${runs[$name]} -o "$work/runs-$side/$name" >"$work/$side-$name.log" 2>&1 \
      || { echo "$name: the $side build failed (log: $work/$side-$name.log)"; cat "$work/$side-$name.log"; exit 1; }
    dotnet "${cli[$side]}" prune "$work/runs-$side/$name/last.ckpt" -o "$work/runs-$side/$name.safetensors" --json >"$work/$side-$name.prune" 2>&1 \
      || { echo "$name: the $side build failed to prune"; cat "$work/$side-$name.prune"; exit 1; }
  done
  if python3 - "$work/runs-base/$name/metrics.jsonl" "$work/runs-new/$name/metrics.jsonl" "$work/base-$name.prune" "$work/new-$name.prune" <<'EOF'
import json, sys
def timing(key): return key.endswith(("_s", "_ms")) or any(t in key for t in ("time", "seconds", "per_s", "elapsed"))
def rows(path):
    out = []
    for line in open(path):
        r = json.loads(line)
        out.append({k: v for k, v in r.items() if not timing(k)})
    return out
a, b = rows(sys.argv[1]), rows(sys.argv[2])
def camel(o):  # builds before prune --json wrote camelCase keys wrote PascalCase: compare them alike
    if isinstance(o, dict): return {k[:1].lower() + k[1:]: camel(v) for k, v in o.items()}
    return [camel(x) for x in o] if isinstance(o, list) else o
def report(path):
    text = open(path).read()
    r = camel(json.loads(text[text.index("{"):]))
    return {k: v for k, v in r.items() if k not in ("checkpoint", "output")}  # the paths differ
pa, pb = report(sys.argv[3]), report(sys.argv[4])
diff = [f"row {i} key {k}: {x.get(k)} vs {y.get(k)}" for i, (x, y) in enumerate(zip(a, b)) for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
if len(a) != len(b): diff.append(f"{len(a)} rows vs {len(b)}")
if pa != pb:
    ra, rb = pa.get("report", {}), pb.get("report", {})
    keys = [k for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)]
    diff.append("pruned: the prune reports differ in " + ", ".join(
        f"{k} ({ra.get(k)} vs {rb.get(k)})" if not isinstance(ra.get(k), (list, dict)) else k for k in keys))
values = sum(len(r) for r in a)
cost = {k: v for k, v in pa.get("report", {}).items() if not isinstance(v, (list, dict))}
shared = [r.get("task_specific") for r in a]
print(("same" if not diff else "DIFFERENT") + f": {len(a)} metric rows, {values} values; task-specific fraction per epoch {shared}; pruned {cost}")
for d in diff[:10]: print("   ", d)
sys.exit(1 if diff else 0)
EOF
  then echo "  ^ $name"; else echo "  ^ $name"; status=1; fi
done
exit $status
