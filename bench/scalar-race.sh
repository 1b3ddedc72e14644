#!/usr/bin/env bash
# TorchSharp's implicit scalars against a garbage collection on another thread (bench/InterroGate.Bench/ScalarRace.cs):
# TorchSharp's own calls (add_, BatchNorm2d.forward), then the library's trainer (synthetic data, and FashionScenes
# with its data loader) with a thread that allocates without pause, for the working tree and, given a REVISION, for
# that revision's library too (the same probe built against it).
# Usage: bench/scalar-race.sh [SECONDS_PER_RUN] [REVISION]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
rev=${2:-}
dotnet build bench/InterroGate.Bench -c Release -v q -nologo >/dev/null
bench=bench/InterroGate.Bench/bin/Release/net10.0/InterroGate.Bench
echo "== TorchSharp alone (20 s each)"
$bench scalar-race 20 add
$bench scalar-race 20 bn
echo "== the library's trainer, working tree"
$bench scalar-race "$seconds" train synthetic
$bench scalar-race "$seconds" train fashion-scenes
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
  (cd "$work/base" && dotnet build bench/InterroGate.Bench -c Release -v q -nologo >/dev/null)
  echo "== the library's trainer, $rev"
  "$work/base/$bench" scalar-race "$seconds" train synthetic
  "$work/base/$bench" scalar-race "$seconds" train fashion-scenes
fi
