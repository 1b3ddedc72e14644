#!/usr/bin/env bash
# SIGTERM (a scheduler's or `kill`'s stop) is handled like Ctrl+C: the run stops after its step, writes a resumable
# checkpoint of kind "interrupted" and exits with 130; resuming it finishes the run.
# Usage: bench/kill/sigterm-check.sh   (INTERROGATE_CLI: a built interrogate.dll; default: builds Release)
set -uo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${INTERROGATE_CLI:-}" ]]; then
  dotnet build src/InterroGate.Cli -c Release -v q -nologo >/dev/null || exit 1
  INTERROGATE_CLI=src/InterroGate.Cli/bin/Release/net10.0/interrogate.dll
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
args=(train multifashion-quick/mtl --set 'data.dataset="synthetic"' --set data.trainSize=2048 --set training.epochs=3)
dotnet "$INTERROGATE_CLI" "${args[@]}" -o "$work/run" >"$work/log" 2>&1 &
pid=$!
until [[ -f "$work/run/metrics.jsonl" ]] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
sleep 1
kill -TERM "$pid"; wait "$pid"; code=$?
kind=$(python3 -c "
import struct, json, sys
f = open(sys.argv[1], 'rb'); f.read(8); n = struct.unpack('<q', f.read(8))[0]; m = json.loads(f.read(n))
print(m['Kind'], 'epoch', m['Epoch'], 'step', m['Step'])" "$work/run/last.ckpt")
echo "exit code after SIGTERM: $code; last.ckpt: $kind"
dotnet "$INTERROGATE_CLI" "${args[@]}" -o "$work/run" --resume "$work/run/last.ckpt" >"$work/log2" 2>&1; resumed=$?
echo "resume exit code: $resumed; metrics lines: $(grep -c . "$work/run/metrics.jsonl")"
[[ $code -eq 130 && $kind == interrupted* && $resumed -eq 0 ]]
