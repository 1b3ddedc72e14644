#!/usr/bin/env bash
# Kill harness: trains a small InterroGate run to the end once, then trains the same run again while SIGKILLing it at
# random moments (a random part of an epoch after 0 or 1 more completed epochs: between and during steps, checkpoint
# writes and metrics rewrites, start-up), resuming after every kill, and
# checks: every kill leaves a resumable folder (0 unreadable checkpoints), no metrics line of a completed epoch is
# lost, and the final weights are bit-identical to the uninterrupted run's.
# Usage: [PAUSE_MS=300] bench/kill/kill-harness.sh [kills=50] [seed=1]   (INTERROGATE_CLI: a built interrogate.dll; default: builds Release)
set -uo pipefail
cd "$(dirname "$0")/../.."
kills=${1:-50}
RANDOM=${2:-1}
if [[ -z "${INTERROGATE_CLI:-}" ]]; then
  dotnet build src/InterroGate.Cli -c Release -v q -nologo >/dev/null || exit 1
  INTERROGATE_CLI=src/InterroGate.Cli/bin/Release/net10.0/interrogate.dll
fi
# Every checkpoint write and metrics rewrite pauses this long before its rename, so that kills land inside them too.
pause_ms=${PAUSE_MS:-300}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
args=(train multifashion-quick/interrogate --set 'data.dataset="synthetic"' --set data.trainSize=512 --set data.validationSize=64
      --set data.testSize=64 --set training.batchSize=32 --set training.epochs=5 --set training.freezeGatesLastEpochs=1
      --set training.deterministic=true --set training.threads=2 --set architecture.lambdaS=2)

start=$(date +%s.%N)
dotnet "$INTERROGATE_CLI" "${args[@]}" -o "$work/ref" >"$work/ref.log" 2>&1 || { cat "$work/ref.log"; exit 1; }
ref_seconds=$(echo "$(date +%s.%N) - $start" | bc)
epoch_seconds=$(echo "scale=3; $ref_seconds / 5" | bc) # start-up included: a generous epoch

# Epochs whose metrics line must exist: those the newest whole checkpoint has completed.
check_metrics() { python3 "$(dirname "$0")/missing_metrics.py" "$1"; }

metric_lines() { local n=0; [[ -f "$work/run/metrics.jsonl" ]] && n=$(grep -c . "$work/run/metrics.jsonl"); echo "${n:-0}"; }

done_kills=0 unreadable=0 lost=0 restarts=0 in_write=0 between=0 completed=0
while (( done_kills < kills )); do
  # Resume where there is a checkpoint; a run killed before its first one left only its start: train it anew over that.
  resume=(--overwrite)
  [[ -f "$work/run/last.ckpt" || -f "$work/run/last.prev.ckpt" || -f "$work/run/last.ckpt.tmp" ]] && resume=(--resume "$work/run/last.ckpt")
  pending=no; [[ -f "$work/run/last.ckpt.tmp" && ! -f "$work/run/last.ckpt" ]] && pending=yes # a cut save this run is to complete
  INTERROGATE_FAULT_WRITE_PAUSE_MS=$pause_ms dotnet "$INTERROGATE_CLI" "${args[@]}" -o "$work/run" "${resume[@]}" >"$work/run.log" 2>&1 &
  pid=$!
  # A random moment within the run's length (start-up included), in milliseconds.
  # Kill moments follow the run's own progress, so that runs advance from kill to kill however loaded the machine
  # is: wait for 0 or 1 more completed epochs (a metrics line), then a random part of an epoch's time (or start-up).
  wait_lines=$(( $(metric_lines) + RANDOM % 2 ))
  while kill -0 "$pid" 2>/dev/null && (( $(metric_lines) < wait_lines )); do
    sleep 0.05
  done
  frac=$((RANDOM % 1000)) # (bc's % works at the set scale: take the remainder here)
  delay=$(echo "scale=3; $frac * ($epoch_seconds + 3 * $pause_ms / 1000) / 1000" | bc)
  sleep "$delay"
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"; wait "$pid" 2>/dev/null
    done_kills=$((done_kills + 1))
    # A temporary file left behind: the kill landed inside a checkpoint write or a metrics rewrite.
    inside=""
    # Between a checkpoint's two renames (no last.ckpt, its whole new file still .tmp) the file is left for the resume to
    # complete; any other temporary file is a write cut short, which the next write replaces.
    if [[ -f "$work/run/last.ckpt.tmp" && ! -f "$work/run/last.ckpt" ]]; then
      [[ $pending == yes ]] || between=$((between + 1)) # (killed again before it completed the earlier one: counted once)
      inside=" between a save's renames (last.ckpt.tmp kept)"
    elif compgen -G "$work/run/*.tmp" >/dev/null; then in_write=$((in_write + 1)); inside=" inside a write ($(cd "$work/run" && ls *.tmp | tr '\n' ' '))"; rm -f "$work"/run/*.tmp; fi
    echo "kill $done_kills ${delay}s after epoch $wait_lines$inside; checkpoints: $(cd "$work/run" 2>/dev/null && ls *.ckpt 2>/dev/null | tr '\n' ' ')"
  else
    wait "$pid"; code=$?
    restarts=$((restarts + 1))
    if [[ $code -ne 0 ]]; then
      failures=$((${failures:-0} + 1)); (( failures > 5 )) && { echo "5 runs failed at once; stopping"; exit 1; }
      if grep -q "checkpoint" "$work/run.log"; then unreadable=$((unreadable + 1)); fi
      echo "run exited with $code:"; tail -3 "$work/run.log"
    fi
    if grep -q "best epoch" "$work/run.log"; then rm -rf "$work/run"; fi # finished: start the run over for more kills
  fi
  grep -q "completed the save a stop had cut short" "$work/run.log" 2>/dev/null && completed=$((completed + 1))
  lost=$((lost + $(check_metrics "$work/run")))
done

# Finish the interrupted run and compare it with the uninterrupted one.
rm -rf "$work/run.final"
while true; do
  resume=(--overwrite)
  [[ -f "$work/run/last.ckpt" || -f "$work/run/last.prev.ckpt" || -f "$work/run/last.ckpt.tmp" ]] && resume=(--resume "$work/run/last.ckpt")
  dotnet "$INTERROGATE_CLI" "${args[@]}" -o "$work/run" "${resume[@]}" >"$work/run.log" 2>&1 && break
  if grep -q "already ran to" "$work/run.log"; then break; fi
  echo "final resume failed:"; tail -3 "$work/run.log"; unreadable=$((unreadable + 1)); break
done
dotnet "$INTERROGATE_CLI" export "$work/ref/last.ckpt" --format safetensors -o "$work/ref.safetensors" >/dev/null
dotnet "$INTERROGATE_CLI" export "$work/run/last.ckpt" --format safetensors -o "$work/run.safetensors" >/dev/null
if cmp -s "$work/ref.safetensors" "$work/run.safetensors"; then identical=yes; else identical=no; fi
ref_lines=$(wc -l < "$work/ref/metrics.jsonl"); run_lines=$(wc -l < "$work/run/metrics.jsonl")

grep -q "completed the save a stop had cut short" "$work/run.log" 2>/dev/null && completed=$((completed + 1))
echo "kills: $done_kills (of them inside a checkpoint write or metrics rewrite: $in_write; between a save's two renames: $between; runs that ended before their kill: $restarts)"
echo "saves cut short between their renames that the resume completed: $completed of $between"
echo "unreadable checkpoints (a resume that failed): $unreadable"
echo "metric lines of completed epochs missing after a kill: $lost"
echo "metrics lines: uninterrupted $ref_lines, killed and resumed $run_lines"
echo "final weights bit-identical to the uninterrupted run: $identical"
[[ $unreadable -eq 0 && $lost -eq 0 && $identical == yes && $ref_lines -eq $run_lines && $completed -eq $between ]]
