#!/usr/bin/env bash
# A user folder data set far larger than memory: N images of 3×64×64 (uint8; 200,000 by default, 2.46 GB) with one
# classification task, written as .npy files, then one epoch of MTL (ResNet-20 ×¼) trained on it; prints the training
# speed and the process's peak resident memory. The images are memory-mapped, so resident memory stays far below
# the file size. Usage: bench/large-folder/large-folder.sh [N=200000] [folder=/tmp/ig-large]
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-200000}
root=${2:-/tmp/ig-large}
if [[ -z "${INTERROGATE_CLI:-}" ]]; then
  dotnet build src/InterroGate.Cli -c Release -v q -nologo >/dev/null
  INTERROGATE_CLI=src/InterroGate.Cli/bin/Release/net10.0/interrogate.dll
fi
python3 - "$root" "$n" <<'PY'
import os, struct, sys
root, n = sys.argv[1], int(sys.argv[2])
def npy(path, shape, descr, chunks):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, ", ".join(map(str, shape)) + ("," if len(shape) == 1 else ""))
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        for c in chunks: f.write(c)
for split, count in (("train", n), ("test", max(1, n // 20))):
    d = os.path.join(root, split); os.makedirs(d, exist_ok=True)
    img = os.path.join(d, "images.npy")
    if not (os.path.exists(img) and os.path.getsize(img) > count * 3 * 64 * 64):
        per = 3 * 64 * 64
        npy(img, (count, 3, 64, 64), "|u1", (os.urandom(per * min(4096, count - i)) for i in range(0, count, 4096)))
    labels = bytes(range(256)) * (count // 256 + 1)
    npy(os.path.join(d, "kind.npy"), (count,), "|u1", [bytes(b % 10 for b in labels[:count])])
with open(os.path.join(root, "tasks.json"), "w") as f:
    f.write('{"tasks": [{"name": "kind", "kind": "classification", "classes": 10}]}')
PY
du -sh "$root"
rm -rf "$root-run"
/usr/bin/time -v dotnet "$INTERROGATE_CLI" train multifashion-quick/mtl -o "$root-run" --set 'data.dataset="folder"' \
  --set "data.root=\"$root\"" --set training.epochs=1 --set training.batchSize=128 --set training.evalBatchSize=128 2>&1 \
  | grep -E "img/s|best epoch|Maximum resident|Elapsed \(wall" | tail -4
