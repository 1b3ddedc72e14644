#!/usr/bin/env bash
# Prepares what the GPU scripts (bench/gpu/run.sh, bench/gpu/quality.sh) need on a machine with CUDA PyTorch and no
# .NET or network, small enough to copy to the GPU machine with the source tree (under 64 MiB together): InterroGate.Bench published
# self-contained without the bundled CPU libtorch (it runs on that machine's PyTorch libtorch) and trimmed (unused
# framework code removed: 16 MB instead of 41; every section of the suite was run with it), without what it never
# loads there (ONNX Runtime's and the plotting libraries' native files, debug symbols; comparisons then skip their
# figures), and Fashion-MNIST (all of it by default; TRAIN_IMAGES / TEST_IMAGES keep only the first N of a split).
# Usage: scripts/publish-gpu-suite.sh [output folder, default publish/gpu]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-publish/gpu}
train=${TRAIN_IMAGES:-60000} test=${TEST_IMAGES:-10000}
rm -rf "$out"
dotnet publish bench/InterroGate.Bench -c Release -r linux-x64 --self-contained \
  -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true -p:InterroGateBundledLibTorch=false \
  -p:PublishTrimmed=true -p:TrimMode=partial -p:JsonSerializerIsReflectionEnabledByDefault=true -p:SuppressTrimAnalysisWarnings=true \
  -o "$out" -v q -nologo
rm -f "$out"/*.pdb "$out"/*onnxruntime* "$out"/libSkiaSharp.so "$out"/libHarfBuzzSharp.so
scripts/ensure-fashion-mnist.sh
src=${INTERROGATE_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
mkdir -p "$out/fashion-mnist"
python3 - "$src" "$out/fashion-mnist" "$train" "$test" <<'PY'
import gzip, os, shutil, struct, sys
src, dst, n_train, n_test = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def read(name):
    for p in (os.path.join(src, name), os.path.join(src, name + ".gz")):
        if os.path.exists(p):
            return (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
    raise SystemExit(f"{name} not found under {src}")
for split, n in (("train", n_train), ("t10k", n_test)):
    for kind, item in (("images-idx3-ubyte", 28 * 28), ("labels-idx1-ubyte", 1)):
        whole = os.path.join(src, f"{split}-{kind}.gz")
        if n == (60000 if split == "train" else 10000) and os.path.exists(whole):
            shutil.copyfile(whole, os.path.join(dst, f"{split}-{kind}.gz"))  # the whole split: the packaged file as it is
            continue
        data = read(f"{split}-{kind}")
        dims = data[3]
        header = bytearray(data[:4 + 4 * dims])
        if n > struct.unpack(">I", header[4:8])[0]:
            raise SystemExit(f"{split}-{kind}: fewer than {n} items")
        header[4:8] = struct.pack(">I", n)
        with gzip.open(os.path.join(dst, f"{split}-{kind}.gz"), "wb", compresslevel=9) as f:
            f.write(bytes(header) + data[len(header):len(header) + n * item])
PY
echo "published to $out ($(du -sh "$out" | cut -f1)); on the GPU machine: bench/gpu/run.sh $out"
