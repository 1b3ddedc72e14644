#!/usr/bin/env bash
# Bad inputs a user can give, run through the command line: each must end in one line on stderr (the key, file or
# task and what is wrong) with exit code 2, never a stack trace. Prints a Markdown table of case, exit code and
# message, and fails if any case crashed or printed a trace, or (where a case names the text its own check prints) was
# answered by another check first.
# Usage: bench/errors/error-cases.sh [table.md]   (INTERROGATE_CLI: a built interrogate.dll; default: builds Release)
set -uo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${INTERROGATE_CLI:-}" ]]; then
  dotnet build src/InterroGate.Cli -c Release -v q -nologo >/dev/null || exit 1
  INTERROGATE_CLI=src/InterroGate.Cli/bin/Release/net10.0/interrogate.dll
fi
out=${1:-/dev/stdout}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ig() { dotnet "$INTERROGATE_CLI" "$@"; }

# Files the cases read.
printf 'not a checkpoint at all' > "$work/garbage.ckpt"
printf '{"name": "x", "training": {"epochs": 0}}' > "$work/epochs0.json"
printf '{"name": "x", "trainng": {}}' > "$work/typo.json"
printf '{"name": "x", "training": {"lr": 1e999}}' > "$work/inf.json"
printf '{"name": ' > "$work/cut.json"
mkdir -p "$work/user/train" "$work/user/test"
printf '{"tasks": [null]}' > "$work/user/tasks.json"
mkdir -p "$work/user2/train" "$work/user2/test"
printf '{"tasks": [{"name": "a", "kind": "binary"}, {"name": "a", "kind": "binary"}]}' > "$work/user2/tasks.json"
mkdir -p "$work/user3/train" "$work/user3/test"
printf '{"tasks": [{"name": "../x", "kind": "binary"}]}' > "$work/user3/tasks.json"
printf '\x89PNG\r\n\x1a\n' > "$work/cut.png"
printf 'hello' > "$work/text.png"
printf 'x' > "$work/a-file"
printf '{"name": "x", "name": "y"}' > "$work/duplicate.json"
mkdir -p "$work/merge/shards" "$work/empty-folder"
# A folder data set whose images were saved in NumPy's [N, H, W, C] order.
mkdir -p "$work/user4"
printf '{"tasks": [{"name": "a", "kind": "binary"}]}' > "$work/user4/tasks.json"
python3 - "$work/user4" <<'PY'
import os, struct, sys
def npy(path, descr, shape, itemsize):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, "".join(f"{d}, " for d in shape))
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    n = 1
    for d in shape: n *= d
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + bytes(n * itemsize))
for split in ("train", "test"):
    os.makedirs(os.path.join(sys.argv[1], split), exist_ok=True)
    npy(os.path.join(sys.argv[1], split, "images.npy"), "|u1", (4, 8, 8, 3), 1)
    npy(os.path.join(sys.argv[1], split, "a.npy"), "<f4", (4,), 4)
PY
printf '{"name": "x", "architecture": {"type": "mtl"}}' > "$work/runcfg.json"
printf '{}' > "$work/merge/shards/shard-0-of-1.json"
# A small trained run (synthetic data, seconds), and a copy of its checkpoint damaged near the end (its optimiser states).
ig train multifashion-quick/mtl --set data.dataset=\"synthetic\" --set data.trainSize=64 --set data.validationSize=32 \
  --set data.testSize=32 --set training.epochs=1 --set training.batchSize=32 -o "$work/mtl" >/dev/null 2>&1 || { echo "could not train the small run"; exit 1; }
cp "$work/mtl/last.ckpt" "$work/damaged.ckpt"
printf '\xff\xff\xff\xff' | dd of="$work/damaged.ckpt" bs=1 seek=$(( $(stat -c %s "$work/damaged.ckpt") - 100 )) conv=notrunc 2>/dev/null

# A folder data set is read whole: the preset's split sizes set back to their defaults, so that the folder's own checks answer.
whole="--set data.trainSize=50000 --set data.validationSize=10000 --set data.testSize=10000"
# Each case: name|command[|text its message must hold, where another check could answer first].
cases=(
  "unknown preset|train nope"
  "unknown key (typo)|train $work/typo.json"
  "epochs 0|train $work/epochs0.json"
  "infinite learning rate|train $work/inf.json"
  "config cut short|train $work/cut.json"
  "--set with a bad value|train multifashion-quick/mtl --set training.lr=-1"
  "--set on an unknown key|train multifashion-quick/mtl --set training.nope=1"
  "unknown architecture|train multifashion-quick/mtl --set 'architecture={\"type\":\"nope\"}'"
  "architecture without its type|train multifashion-quick/mtl --set 'architecture={}'"
  "mgda-ub on InterroGate|train multifashion-quick/interrogate --set 'balancer={\"type\":\"mgda-ub\"}'"
  "unknown command-line option|train multifashion-quick/mtl --epochs 3"
  "tau out of range|train multifashion-quick/interrogate --set architecture.tau=[2]"
  "a name outside an option's names|train multifashion-quick/mtl --set training.precision=\"fp16\"|not \"fp16\""
  "unknown device|train multifashion-quick/mtl --device tpu"
  "cuda where there is none|train multifashion-quick/mtl --device cuda"
  "-o naming a file|train multifashion-quick/mtl -o $work/a-file"
  "compare -o naming a file|compare multifashion-quick -o $work/a-file"
  "seeds repeated|compare multifashion-quick --seeds 0,1,0 -o $work/c1"
  "seeds not numbers|compare multifashion-quick --seeds a,b -o $work/c2"
  "seeds empty list|compare multifashion-quick --set seeds=[] -o $work/c3"
  "batch larger than the data|train multifashion-quick/mtl --set data.dataset=\"synthetic\" --set data.trainSize=16 --set training.batchSize=64 -o $work/r1"
  "data set folder missing|train multifashion-quick/mtl --set data.dataset=\"folder\" --set data.root=\"$work/none\" $whole -o $work/r2|No tasks.json in"
  "tasks.json with a null task|train multifashion-quick/mtl --set data.dataset=\"folder\" --set data.root=\"$work/user\" $whole -o $work/r3|tasks[0] is null"
  "tasks.json naming a task twice|train multifashion-quick/mtl --set data.dataset=\"folder\" --set data.root=\"$work/user2\" $whole -o $work/r4|is listed 2 times"
  "resume from a missing checkpoint|train multifashion-quick/mtl --resume $work/none.ckpt -o $work/r5"
  "prune a file that is no checkpoint|prune $work/garbage.ckpt"
  "evaluate a missing checkpoint|evaluate $work/none.ckpt"
  "gates on a folder without a run|gates $work"
  "export to an unknown format|export $work/garbage.ckpt --format zip"
  "predict with a garbage model|predict $work/garbage.ckpt $work/text.png"
  "cost of an unknown backbone|cost nope"
  "unknown command (a typo)|trian multifashion-quick/mtl"
  "a key given twice in a config|train $work/duplicate.json"
  "empty -o|train multifashion-quick/mtl -o ''"
  "prune -o naming a folder|prune $work/mtl/last.ckpt -o $work/empty-folder"
  "prune onto the checkpoint it reads|prune $work/mtl/last.ckpt -o $work/mtl/last.ckpt"
  "export -o naming a folder|export $work/mtl/last.ckpt --format onnx -o $work/empty-folder"
  "report -o naming a folder|report $work/mtl -o $work/empty-folder"
  "gates -o naming a file|gates $work/mtl -o $work/a-file"
  "evaluate a checkpoint damaged near its end|evaluate $work/damaged.ckpt"
  "an MTL checkpoint as a task's STL start|train multifashion-quick/interrogate --set data.dataset=\"synthetic\" --set data.trainSize=64 --set 'startFrom={\"stl\":{\"bar\":\"$work/mtl/last.ckpt\"},\"mtl\":\"$work/mtl/last.ckpt\"}' -o $work/r6"
  "a budget target without a budget|compare multifashion-quick --set 'targets=[{}]' --set 'lambdaS=[]' -o $work/c4"
  "a type in a comparison's InterroGate options|compare multifashion-quick --set 'interroGate.type=\"mtl\"' -o $work/c5"
  "a shard result without its configuration|merge $work/merge"
  "threads far beyond the cores|train multifashion-quick/mtl --set training.threads=100000 -o $work/r7"
  "cost with 0 input channels|cost resnet18 --channels 0"
  "cost on an input too large to run|cost resnet18 --input 100000x100000"
  "a ViT input that is no multiple of its patch|cost vit_tiny_patch16_224 --input 30x30"
  "tasks.json naming a task with a path|config init --dataset folder --root $work/user3 -o $work/init.json"
  "evaluate --data-root for generated data|evaluate $work/mtl/last.ckpt --data-root $work/empty-folder"
  "images saved as [N, H, W, C]|train multifashion-quick/mtl --set data.dataset=\"folder\" --set data.root=\"$work/user4\" $whole -o $work/r8|look like [N, H, W, C]"
  "prune -o with another format's extension|prune $work/mtl/last.ckpt -o $work/m.onnx|give it the extension .safetensors"
  "export -o into a folder that does not exist|export $work/mtl/last.ckpt --format onnx -o $work/none/m.onnx|does not exist: create the folder"
  "report -o into a folder that does not exist|report $work/mtl -o $work/none/r.html|does not exist: create the folder"
  "config show of a value train refuses|config show multifashion-quick/mtl --set training.epochs=-5|train would refuse this configuration"
  "a run's configuration given to compare|compare $work/runcfg.json -o $work/c6|is a run configuration"
  "merge a folder that does not exist|merge $work/nowhere|does not exist"
)

fail=0
{
  echo "| case | command | exit | message |"
  echo "|---|---|---|---|"
  for c in "${cases[@]}"; do
    name=${c%%|*}; args=${c#*|}; expect=""
    if [[ "$args" == *"|"* ]]; then expect=${args#*|}; args=${args%%|*}; fi
    eval "set -- $args"
    ig "$@" >"$work/stdout" 2>"$work/stderr" </dev/null
    code=$?
    msg=$(grep -v '^\s*$' "$work/stderr" | head -1 | sed "s|$work|…|g; s/|/\\\\|/g")
    if grep -qE '^\s+at |Unhandled exception' "$work/stderr" "$work/stdout" || [[ $code -ne 2 ]]; then fail=$((fail+1)); name="**$name (FAILED)**"
    elif [[ -n "$expect" && "$msg" != *"$expect"* ]]; then fail=$((fail+1)); name="**$name (FAILED: answered by another check)**"; fi
    echo "| $name | \`interrogate ${args//$work/…}\` | $code | $msg |"
  done
} > "$out"
[[ "$out" != /dev/stdout ]] && cat "$out"
echo "${#cases[@]} cases, $fail not answered with one line and exit code 2 (or, where the case names it, by another check than its own)"
exit $((fail > 0))
