#!/usr/bin/env bash
# TorchSharp's implicit scalars and temporary tensors against a garbage collection on another thread
# (bench/InterroGate.Bench/ScalarRace.cs): TorchSharp's own calls (add_, BatchNorm2d.forward, a temporary tensor with
# and without a dispose scope), then the library's trainer (synthetic data, and FashionScenes with its data loader) and
# its deployment path (prune, store, load, predict) with a thread that allocates without pause (the trainer also with
# its optimisers stepping parameter by parameter, training.flatOptimizer false), for the working tree
# and, given a REVISION, for that revision's library too (the same probe built against it). A run that crashes is
# reported with its exit status (139: a segmentation fault).
# Usage: bench/scalar-race.sh [SECONDS_PER_RUN] [REVISION]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
rev=${2:-}
build() { dotnet build bench/InterroGate.Bench -c Release -v q -nologo > "${TMPDIR:-/tmp}/scalar-race-build.log" 2>&1 || { cat "${TMPDIR:-/tmp}/scalar-race-build.log"; exit 1; }; }
build
bench=bench/InterroGate.Bench/bin/Release/net10.0/InterroGate.Bench
run() { local start=$SECONDS; "$@" || echo "  exited with status $? after $((SECONDS - start)) s ($*)"; }
echo "== TorchSharp alone (20 s each; the unscoped temporary three times)"
run $bench scalar-race 20 add
run $bench scalar-race 20 bn
for i in 1 2 3; do run $bench scalar-race 20 temp; done
run $bench scalar-race 20 temp-scoped
echo "== the library, working tree"
run $bench scalar-race "$seconds" train synthetic
run $bench scalar-race "$seconds" train fashion-scenes
run $bench scalar-race "$seconds" train synthetic per-parameter
run $bench scalar-race "$seconds" deploy
if [ -n "$rev" ]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/scalar-race.XXXXXX")
  trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  git worktree add --detach "$work/base" "$rev" >/dev/null
  cp bench/InterroGate.Bench/ScalarRace.cs "$work/base/bench/InterroGate.Bench/"
  grep -q 'ScalarRace.Run' "$work/base/bench/InterroGate.Bench/Program.cs" || python3 - "$work/base/bench/InterroGate.Bench/Program.cs" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
hook = 'if (args.Length > 0 && args[0] == "scalar-race")\n{\n    InterroGate.Runtime.NativeRuntime.EnsureLoaded();\n    ScalarRace.Run(args[1..]);\n    return;\n}\n'
i = s.index('if (args.Length > 1 && args[0] == "celeba-sample")')
open(p, 'w').write(s[:i] + hook + s[i:])
PY
  (cd "$work/base" && build)
  echo "== the library, $rev"
  run "$work/base/$bench" scalar-race "$seconds" train synthetic
  run "$work/base/$bench" scalar-race "$seconds" train fashion-scenes
  run "$work/base/$bench" scalar-race "$seconds" train synthetic per-parameter
  run "$work/base/$bench" scalar-race "$seconds" deploy
fi
