#!/usr/bin/env python3
"""Every GPU check and timing in one run, ours against PyTorch on the same GPU, from the published build alone
(bench/gpu/run.sh starts it; no .NET and no network there). Sections, in this order, each one's time checked against
--budget before it starts (a section that would not fit is reported as not run):

  numerics+steps  MTL and InterroGate (ResNet-18, 3 tasks, 224x224, batch 32; ResNet-20 x1/4, MultiFashion-sized,
                  batch 256): outputs of the first forward pass against the PyTorch reference (TF32 off, 1e-4
                  relative) and every parameter's gradient of the step's loss, gates included (1e-3, or ours no
                  farther from the float64 gradient than twice PyTorch's float32 one), then the
                  training step's median time and peak GPU memory of each side (TF32 on)
                  (bench/reference/gpu_bench.py)
  pruned          an InterroGate model with random gates, pruned: our static network against the PyTorch reference's
                  gated model (eval mode) and against PyTorch eager running the same static graph
                  (bench/reference/static_torch.py), TF32 off; inference latency at batch 1 and 32 of ours, PyTorch
                  eager and ONNX Runtime running our ONNX export (CUDA provider where it has one), TF32 on
  interop         torchvision ResNet-18 and ResNet-50 and timm's vit_small_patch16_224, randomly initialised (batch
                  norm statistics too), saved by PyTorch as .pth and as safetensors: loaded into our backbones by name,
                  their eval-mode features against PyTorch's (TF32 off, 1e-4)
  epoch           one MultiFashion epoch of multifashion-w025's MTL and InterroGate runs on our trainer: the GPU's
                  busy fraction (nvidia-smi utilization.gpu, sampled every 100 ms) between the first and the last
                  progress report; and the same of PyTorch eager training the same model on as many images of the
                  same shape (bench/reference/gpu_bench.py --epoch-reference)
  memory          2,000 InterroGate training steps (ResNet-20 x1/4, batch 256): GPU memory in use over the steps
  speed-options   the InterroGate training step (ResNet-18 case) with bf16 mixed precision, channels-last, and both,
                  ours (training.precision / training.channelsLast) against PyTorch (torch.autocast, channels_last),
                  and ours with branch fusion (the T+1 copies of a unit in one grouped call; no PyTorch counterpart),
                  next to the fp32 step numerics+steps timed; the step with the gates fixed at two learned patterns
                  (ResNet-20 x1/4), read copies whole and kept filters only; and the InterroGate epoch with the data in host memory
                  (training.dataOn=host) next to the epoch section's run (data on the GPU, the default there)

Writes table.md and results.json to --out. --device cpu (with --quick: small cases) runs the same sections without a
GPU, to try the script: times then mean nothing, the GPU's busy fraction is not measured and memory is the process's
resident memory.

  python3 bench/gpu/suite.py --ours publish/gpu/InterroGate.Bench --fashion-mnist DIR --out runs/gpu [--budget 450] [--report DIR]

Every command is killed once the budget (plus a minute's grace) is spent; table.md and results.json are rewritten after
every section, in --out and in --report, so that a job stopped by its time limit keeps what it measured.
"""
import datetime
import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "..", "reference")
sys.path.insert(0, REFERENCE)

import gpu_bench  # noqa: E402

TOLERANCE = 1e-4
# Gradients pass through a whole backward pass (and the batch statistics of every batch norm): a looser bound.
GRADIENT_TOLERANCE = 1e-3

# label, backbone, width, tasks, size, channels, batch (gpu_bench's layout)
CASES = gpu_bench.CASES
QUICK_CASES = [
    ("ResNet-18, 3 tasks, 64x64, batch 4", "resnet18", 1.0, 3, 64, 3, 4),
    ("ResNet-20 x1/4, MultiFashion 1x36x36, batch 32", "resnet20", 0.25, 2, 36, 1, 32),
]


class Sampler:
    """Samples, every 100 ms while running, GPU utilisation and memory in use (nvidia-smi, each sample with the time
    nvidia-smi took it, line-buffered through stdbuf where there is one), or on the CPU the resident memory of one
    process; each sample as (wall-clock Unix time, utilisation %, MiB)."""

    def __init__(self, gpu, pid=None):
        self.gpu, self.pid, self.samples = gpu, pid, []
        self._stop = threading.Event()
        self._proc = None
        self._thread = None

    def start(self):
        if self.gpu:
            cmd = ["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-i", "0", "-lms", "100"]
            if shutil.which("stdbuf"):
                cmd = ["stdbuf", "-oL", *cmd]
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            self._thread = threading.Thread(target=self._read_gpu, daemon=True)
        else:
            self._thread = threading.Thread(target=self._read_rss, daemon=True)
        self._thread.start()
        return self

    def _read_gpu(self):
        for line in self._proc.stdout:
            try:
                stamp, util, mem = (v.strip() for v in line.split(","))
                # nvidia-smi's local time, e.g. 2026/12/06 02:35:41.123
                at = datetime.datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp()
                self.samples.append((at, float(util), float(mem)))
            except ValueError:
                continue

    def _read_rss(self):
        while not self._stop.is_set():
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
                self.samples.append((time.time(), float("nan"), rss))
            except (OSError, StopIteration, TypeError):
                pass
            time.sleep(0.1)

    def stop(self):
        self._stop.set()
        if self._proc:
            self._proc.terminate()
            self._proc.wait()
        self._thread.join(timeout=2)
        return self.samples

    def window(self, start, end):
        return [s for s in self.samples if start <= s[0] <= end]


def run_json(cmd, timeout, sampler_gpu=None, sample=False):
    """Runs cmd (its last stdout line is JSON), killed after timeout seconds; with sample, a Sampler runs alongside.
    Returns (json, sampler)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = None
    try:
        sampler = Sampler(sampler_gpu, proc.pid).start() if sample else None
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    finally:
        if sampler:
            sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{(out + err)[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), sampler


def relative(a, b):
    """max |a - b| over max |b|."""
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def median_ms(fn, sync, repeats):
    for _ in range(5):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


# --- sections ------------------------------------------------------------------------------------------------------

def left(a):
    """Seconds a command may still take: what is left of the budget and its grace, at least 30."""
    return max(30.0, a.deadline - time.time())


def section_steps(a, cases):
    records = [gpu_bench.compare_case(a.ours, case, model, os.path.join(a.out, "steps"), a.steps, "off", a.device, left(a))
               for case in cases for model in gpu_bench.MODELS]
    a.step_ms = {(r["case"], r["model"]): r["ours"]["step_ms_median"] for r in records}
    ok = all(r["relative_difference"] <= TOLERANCE and gpu_bench.gradients_agree(r["check"]["gradient"], GRADIENT_TOLERANCE)
             for r in records)
    return {"records": records, "pass": ok}, gpu_bench.step_table(records, a.steps, "off", a.device)


def section_pruned(a, cases):
    import torch
    from interrogate_torch import InterroGateModel, load_safetensors
    from static_torch import StaticNet

    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    repeats = 50 if dev.type == "cuda" else 5
    rows, records = [], []
    for label, backbone, width, tasks, size, channels, _ in cases:
        batch = 32 if not a.quick else 4
        d = os.path.abspath(os.path.join(a.out, "pruned", f"{backbone}"))
        ours, _ = run_json([*a.ours, "pruned", "--backbone", backbone, "--width", str(width), "--tasks", str(tasks), "--size", str(size),
                            "--channels", str(channels), "--batch", str(batch), "--repeats", str(repeats), "--device", a.device, "--out", d],
                           left(a))
        names = [f"task{t + 1}" for t in range(tasks)]
        x = load_safetensors(os.path.join(d, "batch.safetensors"))["input"].to(dev)
        ours_pruned = load_safetensors(os.path.join(d, "outputs-pruned.safetensors"))
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        reference = InterroGateModel({t: 10 for t in names}, backbone, channels, width)
        reference.load_state_dict(load_safetensors(os.path.join(d, "weights.safetensors")), strict=True)
        reference.to(dev).eval()
        static = StaticNet.load(os.path.join(d, "static.safetensors")).to(dev)
        with torch.no_grad():
            ref_out = reference(x)
            static_out = static(x)
        vs_reference = max(relative(ours_pruned[t], ref_out[t].cpu()) for t in names)
        vs_static = max(relative(ours_pruned[t], static_out[t].cpu()) for t in names)

        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        latency = {}
        for b in (1, batch):
            xb = torch.randn(b, channels, size, size, device=dev)
            latency[f"pytorch_pruned_b{b}_ms"] = median_ms(lambda: static(xb), sync, repeats)
            with torch.no_grad():
                latency[f"pytorch_gated_b{b}_ms"] = median_ms(lambda: reference(xb), sync, repeats)
        try:
            ort = onnx_latency(os.path.join(d, "static.onnx"), channels, size, (1, batch), repeats, dev.type == "cuda")
        except Exception as e:  # ONNX Runtime's failure leaves the numerics and the other timings
            ort = {"provider": f"failed ({type(e).__name__}: {e})", "latency": {}}
        latency.update(ort["latency"])
        record = {"case": label, "ours": ours, "pruned_vs_reference_gated": vs_reference, "pruned_vs_pytorch_static": vs_static,
                  "latency": latency, "onnxruntime": ort["provider"], "pass": vs_reference <= TOLERANCE and vs_static <= TOLERANCE}
        records.append(record)
        o = ours["latency_ms"]
        for b in (1, batch):
            p, e, r = o[f"pruned_b{b}_ms"], latency[f"pytorch_pruned_b{b}_ms"], latency.get(f"onnxruntime_b{b}_ms", float("nan"))
            rows.append(f"| {label} | {b} | {100 * ours['task_specific']:.0f} | {ours['macs_pruned'] / ours['macs_gated']:.2f} | "
                        f"{o[f'gated_b{b}_ms']:.2f} | {p:.2f} | {e:.2f} | {r:.2f} | {p / e:.2f} | {vs_reference:.1e} | {vs_static:.1e} |")
    provider = records[0]["onnxruntime"] if records else "-"
    table = "\n".join([
        f"Pruned network, eval mode: latency is the median of {repeats} forward passes after 5 warm-up (TF32 on); ONNX Runtime: {provider}",
        "| case | batch | task-specific % | pruned / gated MACs | ours gated ms | ours pruned ms | PyTorch eager pruned ms | ONNX Runtime ms | ours / PyTorch | ours pruned vs PyTorch gated | ours vs PyTorch static |",
        "|---|---|---|---|---|---|---|---|---|---|---|", *rows])
    return {"records": records, "pass": all(r["pass"] for r in records)}, table


def onnx_latency(path, channels, size, batches, repeats, cuda):
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        return {"provider": f"not run ({e})", "latency": {}}
    available = ort.get_available_providers()
    providers = ["CUDAExecutionProvider"] if cuda and "CUDAExecutionProvider" in available else ["CPUExecutionProvider"]
    session = ort.InferenceSession(path, providers=providers)
    if session.get_providers()[0] == "CPUExecutionProvider":
        repeats = min(repeats, 10)  # a CPU build on a GPU machine: fewer passes, the time is the GPU's
    name = session.get_inputs()[0].name
    latency = {}
    for b in batches:
        x = np.random.randn(b, channels, size, size).astype(np.float32)
        latency[f"onnxruntime_b{b}_ms"] = median_ms(lambda: session.run(None, {name: x}), lambda: None, repeats)
    return {"provider": f"{session.get_providers()[0]} (onnxruntime {ort.__version__}; available: {', '.join(available)})", "latency": latency}


def save_tensors(tensors, path):
    """safetensors written by the safetensors library where it is installed, else by the reference's own writer."""
    try:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in tensors.items()}, path)
        return "safetensors " + __import__("safetensors").__version__
    except ImportError:
        from interrogate_torch import save_safetensors
        save_safetensors(tensors, path)
        return "bench/reference writer (safetensors library not installed)"


def section_interop(a):
    import torch
    import torchvision

    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    nets = [("resnet18", lambda: torchvision.models.resnet18(), 224), ("resnet50", lambda: torchvision.models.resnet50(), 224)]
    try:
        import timm
        nets.append(("vit_small_patch16_224", lambda: timm.create_model("vit_small_patch16_224", pretrained=False), 224))
        timm_note = f"timm {timm.__version__}"
    except ImportError as e:
        timm_note = f"ViT not run ({e})"
    if a.quick:
        nets = [(n, f, 64) for n, f, _ in nets]
    rows, records = [], []
    d = os.path.abspath(os.path.join(a.out, "interop"))
    os.makedirs(d, exist_ok=True)
    for name, make, size in nets:
        torch.manual_seed(0)
        net = make()
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.3, 0.3)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        net.eval().to(dev)
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            if name.startswith("vit"):
                tokens = net.forward_features(x.to(dev))  # [B, prefix + N, D] after the final norm
                g = size // 16
                prefix = getattr(net, "num_prefix_tokens", 1)
                expected = tokens[:, prefix:].transpose(1, 2).reshape(x.shape[0], -1, g, g).cpu()
            else:
                h = x.to(dev)
                for part in (net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4):
                    h = part(h)
                expected = h.cpu()
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        pth, st, inp, feat = (os.path.join(d, f"{name}{ext}") for ext in (".pth", ".safetensors", "-input.safetensors", "-ours.safetensors"))
        torch.save(state, pth)
        writer = save_tensors(state, st)
        save_tensors({"input": x}, inp)
        for path in (pth, st):
            ours, _ = run_json([*a.ours, "features", "--backbone", name, "--weights", path, "--input", inp, "--out", feat, "--device", a.device], left(a))
            from interrogate_torch import load_safetensors
            got = load_safetensors(feat)["features"]
            diff = relative(got, expected) if got.shape == expected.shape else float("inf")
            record = {"backbone": name, "file": os.path.basename(path), "ours": ours, "relative_difference": diff,
                      "pass": diff <= TOLERANCE and not ours["missing"] and not ours["mismatched"]}
            records.append(record)
            rows.append(f"| {name} | {os.path.splitext(path)[1]} | {ours['loaded']} of {ours['targets']} | {len(ours['missing'])} | "
                        f"{', '.join(ours['unexpected']) or 'none'} | {len(ours['mismatched'])} | {ours['load_s']:.2f} | {diff:.1e} |")
    table = "\n".join([
        f"Backbones from files PyTorch wrote (torch {torch.__version__}, torchvision {torchvision.__version__}, {timm_note}; "
        f"safetensors by {writer}); features in eval mode, TF32 off, input 2x3x{nets[0][2]}x{nets[0][2]}",
        "| backbone | file | tensors loaded | missing | unexpected | wrong shape | read + load s | features: max relative difference |",
        "|---|---|---|---|---|---|---|---|", *rows])
    return {"records": records, "pass": all(r["pass"] for r in records)}, table


def section_epoch(a):
    gpu = a.device.startswith("cuda")
    rows, records = [], []
    for arch in ("mtl", "interrogate"):
        record = epoch_run(a, arch)
        records.append(record)
        rows.append(epoch_row(record))
    # PyTorch eager doing the same epoch's work: how busy an eager framework keeps the GPU on this small model.
    reference = []
    for arch in ("mtl", "interrogate"):
        record = epoch_reference_run(a, arch)
        reference.append(record)
        rows.append(epoch_row(record))
    table = "\n".join([
        "One MultiFashion epoch (multifashion-w025's runs, batch 128) on our trainer, and PyTorch eager training the same "
        "model on the same number of images of the same shape (bench/reference/gpu_bench.py --epoch-reference): GPU busy = "
        "mean of nvidia-smi's utilization.gpu over 100 ms samples between the first and the last progress report (every 10 "
        "steps on both sides)",
        EPOCH_HEADER, "|---|---|---|---|---|---|---|", *rows])
    return {"records": records, "pytorch": reference, "pass": all(r["busy"] >= 0.9 for r in records) if gpu else None}, table


EPOCH_HEADER = "| run | data on | training pairs | steps | window s | images/s | GPU busy % |"


def epoch_run(a, arch, data_on="auto"):
    cmd = [*a.ours, "epoch", "--arch", arch, "--train-size", str(a.train_size), "--batch", "128", "--device", a.device,
           "--data-on", data_on, "--out", os.path.abspath(os.path.join(a.out, "epoch", f"{arch}-{data_on}"))]
    ours, busy, samples = busy_run(a, cmd)
    return {"arch": arch, "data_on": data_on, "ours": ours, "busy": busy, "samples": samples}


def epoch_reference_run(a, arch):
    cmd = [sys.executable, os.path.join(REFERENCE, "gpu_bench.py"), "--epoch-reference", "--model", arch,
           "--train-size", str(a.train_size), "--batch", "128", "--device", a.device]
    side, busy, samples = busy_run(a, cmd)
    return {"arch": f"PyTorch eager, {arch}", "data_on": side["data_on"], "ours": side, "busy": busy, "samples": samples}


def busy_run(a, cmd):
    """Runs an epoch command (its JSON names the window of its steps) while sampling the GPU; returns its JSON, the
    GPU's mean busy fraction over that window (NaN without a GPU) and the number of samples."""
    gpu = a.device.startswith("cuda")
    side, sampler = run_json(cmd, left(a), sampler_gpu=gpu, sample=gpu)
    busy = float("nan")
    if sampler:
        window = sampler.window(side["window_start_unix"], side["window_end_unix"])
        if window:
            busy = statistics.mean(s[1] for s in window) / 100
    return side, busy, len(sampler.samples) if sampler else 0


def epoch_row(r):
    ours = r["ours"]
    return (f"| {r['arch']} | {r['data_on']} | {ours['train_size']} | {ours['steps']} | "
            f"{ours['window_end_unix'] - ours['window_start_unix']:.1f} | {ours['images_per_s']:.0f} | {100 * r['busy']:.0f} |")


# Sharing patterns training produced (the full-data MultiFashion runs of seed 0), for the step with the gates fixed.
FIXED_GATE_RUNS = [("λs = 0.5 (49.7% task-specific)", "bench/results/multifashion-w025-regime/seed-0/interrogate-ls0.5.metrics.jsonl"),
                   ("λs = 2 (14.0% task-specific)", "bench/results/multifashion-w025-regime/seed-0/interrogate-ls2.metrics.jsonl")]


def fixed_gate_rows(a, case, records):
    """Ours alone (PyTorch's reference has no fixed-gate form): InterroGate's step with the gates fixed at learned patterns,
    the copies no task reads left out, with a copy read at some channels computed whole and with only its kept filters
    computed (the default), beside the gate-learning and MTL steps of numerics+steps."""
    base = getattr(a, "step_ms", {})
    mtl_ms, ig_ms = base.get((case[0], "mtl")), base.get((case[0], "interrogate"))
    rows = []
    for label, metrics in FIXED_GATE_RUNS:
        ms = {}
        for kept in ("false", "true"):
            d = os.path.abspath(os.path.join(a.out, "speed-options", f"fixed-{os.path.basename(metrics).split('.metrics')[0]}-kept-{kept}"))
            cmd = gpu_bench.ours_cmd(a.ours, case, "interrogate", d, a.steps, True, "off", a.device) + [
                "--fixed-gates", os.path.abspath(metrics), "--kept-filters", kept]
            out, mem = gpu_bench.run_measured(cmd, gpu=a.device.startswith("cuda"), timeout=left(a))
            ours = json.loads(out.strip().splitlines()[-1])
            records.append({"case": case[0], "model": "interrogate", "fixed_gates": metrics, "kept_filters_only": kept == "true",
                            "ours": ours, "ours_peak_mib": mem})
            ms[kept] = ours["step_ms_median"]
        whole, kept_only = ms["false"], ms["true"]
        rows.append(f"| {label} | {whole:.1f} | {kept_only:.1f} | {f'{ig_ms:.1f}' if ig_ms else '-'} | "
                    f"{f'{mtl_ms:.1f}' if mtl_ms else '-'} | {f'{kept_only / mtl_ms:.2f}' if mtl_ms else '-'} |")
    return [f"InterroGate training step with the gates fixed ({case[0]}, ours, TF32 on): the pattern of a full-data run, "
            "the copies no task reads left out, as in the trainer's last epochs; read copies whole, or only their kept filters (the default)",
            "| pattern | whole copies ms | kept filters ms | gate-learning step ms | MTL step ms | kept filters / MTL |",
            "|---|---|---|---|---|---|", *rows]


def backward_rows(a, case, records):
    """Ours alone: InterroGate's gate-learning step with the backward pass through the filters some task reads only
    (GatedEncoder.BackwardReadFiltersOnly; the default on the CPU, not on a GPU), beside numerics+steps' step, which runs
    it through every filter as the PyTorch reference does."""
    base = getattr(a, "step_ms", {})
    every, mtl_ms = base.get((case[0], "interrogate")), base.get((case[0], "mtl"))
    d = os.path.abspath(os.path.join(a.out, "speed-options", "backward-read-filters"))
    cmd = gpu_bench.ours_cmd(a.ours, case, "interrogate", d, a.steps, True, "off", a.device, backward_read_only=True)
    out, mem = gpu_bench.run_measured(cmd, gpu=a.device.startswith("cuda"), timeout=left(a))
    ours = json.loads(out.strip().splitlines()[-1])
    records.append({"case": case[0], "model": "interrogate", "backward_read_filters_only": True, "ours": ours, "ours_peak_mib": mem})
    read_ms = ours["step_ms_median"]
    cell = lambda v: f"{v:.1f}" if v else "-"
    ratio = lambda x, y: f"{x / y:.2f}" if x and y else "-"
    return [f"InterroGate gate-learning step ({case[0]}, ours, TF32 on): the backward pass through every filter (the "
            "numerics+steps step; the default on a GPU), or through the filters some task reads only (one host read of the gates per step)",
            "| case | every filter ms | read filters ms | read / every | every filter / MTL | read filters / MTL | read filters peak MiB |",
            "|---|---|---|---|---|---|---|",
            f"| {case[0]} | {cell(every)} | {read_ms:.1f} | {ratio(read_ms, every)} | {ratio(every, mtl_ms)} | {ratio(read_ms, mtl_ms)} | "
            f"{mem or float('nan'):.0f} |"]


def section_speed_options(a, cases):
    case = cases[0]
    base = getattr(a, "step_ms", {})
    records, rows = [], []
    for precision, channels_last, fusion in (("bf16", False, "off"), ("fp32", True, "off"), ("bf16", True, "off"), ("fp32", False, "on")):
        r = gpu_bench.speed_case(a.ours, case, "interrogate", os.path.join(a.out, "speed-options"), a.steps, precision,
                                 channels_last, a.device, left(a), fusion)
        records.append(r)
        ours_ms = r["ours"]["step_ms_median"]
        torch_ms = r["pytorch"]["step_ms_median"] if r["pytorch"] else None
        fp32 = base.get((case[0], "interrogate"))
        speedup = f"{fp32 / ours_ms:.2f}" if fp32 else "n/a"
        name = precision + (" + channels-last" if channels_last else "") + (" + branch fusion (ours only)" if fusion != "off" else "")
        rows.append(f"| {name} | {ours_ms:.1f} | {f'{torch_ms:.1f}' if torch_ms else '-'} | "
                    f"{f'{ours_ms / torch_ms:.2f}' if torch_ms else '-'} | {speedup} | "
                    f"{r['ours_peak_mib'] or float('nan'):.0f} | {r['pytorch_peak_mib'] or float('nan'):.0f} |")
    fixed = fixed_gate_rows(a, cases[1], records)
    backward = [line for c in cases for line in ([""] if c is not cases[0] else []) + backward_rows(a, c, records)]
    host = epoch_run(a, "interrogate", "host")
    records.append(host)
    table = "\n".join([
        f"InterroGate training step, {case[0]}, {a.steps} timed steps per side, TF32 on; speed-up = the fp32 step of "
        "numerics+steps divided by this one (ours)",
        "| options | ours ms | PyTorch ms | ours / PyTorch | ours' speed-up over fp32 | ours peak MiB | PyTorch peak MiB |",
        "|---|---|---|---|---|---|---|", *rows, "", *fixed, "", *backward, "",
        "The InterroGate epoch with the data in host memory (a batch assembled there and copied every step); the epoch "
        "section's interrogate row is the same run with the data on the GPU", EPOCH_HEADER, "|---|---|---|---|---|---|---|",
        epoch_row(host)])
    return {"records": records, "pass": None}, table


def section_memory(a):
    gpu = a.device.startswith("cuda")
    case = CASES[1] if not a.quick else QUICK_CASES[1]
    steps = 2000 if not a.quick else 100
    # Fewer steps where the step time numerics+steps measured says 2,000 would outrun the budget (said in the table).
    known = getattr(a, "step_ms", {}).get((case[0], "interrogate"))
    if known and steps * known / 1000 > left(a) - 60:
        steps = max(200, int((left(a) - 60) * 1000 / known))
    d = os.path.abspath(os.path.join(a.out, "memory"))
    cmd = gpu_bench.ours_cmd(a.ours, case, "interrogate", d, steps, True, "off", a.device)
    start = time.time()
    ours, sampler = run_json(cmd, left(a), sampler_gpu=gpu, sample=True)
    # Memory over the timed steps only: the window our side reports (start-up, warm-up and exit left out).
    window = sampler.window(ours["window_start_unix"], ours["window_end_unix"])
    if len(window) < 3:
        raise RuntimeError(f"{len(window)} memory samples inside the {ours['window_end_unix'] - ours['window_start_unix']:.1f} s of the steps")
    marks = {}
    for q in (0.1, 0.5, 1.0):
        t = window[0][0] + q * (window[-1][0] - window[0][0])
        marks[q] = next(s[2] for s in window if s[0] >= t - 1e-9)
    growth = marks[1.0] - marks[0.1]
    record = {"steps": steps, "case": case[0], "memory_mib_at_10_50_100_percent": [marks[0.1], marks[0.5], marks[1.0]],
              "growth_mib": growth, "samples": len(window), "measure": "GPU memory.used" if gpu else "process VmRSS",
              "run_s": time.time() - start, "pass": growth <= 16 if gpu else None}
    table = "\n".join([
        f"{steps} InterroGate training steps ({case[0]}): {record['measure']} at 10% / 50% / 100% of the steps "
        f"({len(window)} samples inside the steps' window)",
        "| MiB at 10% | at 50% | at 100% | growth MiB |", "|---|---|---|---|",
        f"| {marks[0.1]:.0f} | {marks[0.5]:.0f} | {marks[1.0]:.0f} | {growth:+.0f} |"])
    return record, table


# Each section's usual time (s) on an H100, from the first GPU run (bench/results/gpu-h100-1; numerics+steps took 103 s
# then, and since times PyTorch a second time and ours a second time; pruned did not run there; epoch took 45 s, and
# since adds PyTorch's two epochs, estimated at 30 s from its step times there; speed-options since adds four fixed-gate
# steps of ResNet-20 x1/4, estimated at 15 s each, and two gate-learning steps with the backward pass through every
# filter, one per case, estimated at 20 s each).
SECTIONS = [("numerics+steps", 165), ("pruned", 60), ("interop", 25), ("epoch", 75), ("memory", 130), ("speed-options", 185)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", required=True, help="the published InterroGate.Bench executable (or a quoted command, e.g. 'dotnet X.dll')")
    p.add_argument("--out", default="runs/gpu")
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="small cases, to try the script on a CPU")
    p.add_argument("--steps", type=int, default=30, help="timed training steps per side")
    p.add_argument("--train-size", type=int, default=50000, help="MultiFashion training pairs in the timed epoch (all of them: 50,000)")
    p.add_argument("--fashion-mnist", help="Fashion-MNIST folder for the epoch (default: INTERROGATE_FASHION_MNIST or the package's)")
    p.add_argument("--budget", type=float, default=450, help="seconds; a section whose usual time would not fit is not run")
    p.add_argument("--sections", default=",".join(n for n, _ in SECTIONS))
    p.add_argument("--report", help="a second folder for table.md and results.json, rewritten after every section")
    a = p.parse_args()
    a.ours = shlex.split(a.ours)
    if not (os.access(a.ours[0], os.X_OK) or shutil.which(a.ours[0])):
        p.error(f"--ours: {a.ours[0]} is not an executable")
    if a.fashion_mnist:
        os.environ["INTERROGATE_FASHION_MNIST"] = os.path.abspath(a.fashion_mnist)
    os.makedirs(a.out, exist_ok=True)
    cases = QUICK_CASES if a.quick else CASES
    wanted = a.sections.split(",")
    unknown = [w for w in wanted if w not in dict(SECTIONS)]
    if unknown:
        p.error(f"--sections: unknown {unknown}; known: {', '.join(n for n, _ in SECTIONS)}")
    run = {"numerics+steps": lambda: section_steps(a, cases), "pruned": lambda: section_pruned(a, cases),
           "interop": lambda: section_interop(a), "epoch": lambda: section_epoch(a), "memory": lambda: section_memory(a),
           "speed-options": lambda: section_speed_options(a, cases)}
    begin = time.time()
    a.deadline = begin + a.budget + 60
    results, tables = {"device": gpu_bench.device_name(a.device), "quick": a.quick, "sections": {}}, []
    for name, usual in SECTIONS:
        if name not in wanted:
            continue
        left = a.budget - (time.time() - begin)
        if left < usual:
            results["sections"][name] = {"not_run": f"{left:.0f} s of the budget left, the section usually takes {usual} s"}
            tables.append(f"## {name}\nnot run: {results['sections'][name]['not_run']}")
            print(tables[-1], flush=True)
            continue
        start = time.time()
        try:
            record, table = run[name]()
            record["seconds"] = time.time() - start
            results["sections"][name] = record
            verdict = {True: "pass", False: "FAIL", None: "no verdict on this device"}[record.get("pass")]
            tables.append(f"## {name} ({verdict}; {record['seconds']:.0f} s)\n{table}")
        except Exception as e:  # one section's failure (a command's, a timeout) must not lose the others' results
            results["sections"][name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
            tables.append(f"## {name}: ERROR\n```\n{type(e).__name__}: {e}\n```")
        print(tables[-1], flush=True)
        write(a, results, tables, begin)
    write(a, results, tables, begin)
    print(f"\nwritten: {os.path.join(a.out, 'table.md')}, results.json")


def write(a, results, tables, begin):
    text = f"# GPU suite: {results['device']}, {time.time() - begin:.0f} s\n\n" + "\n\n".join(tables) + "\n"
    for folder in filter(None, (a.out, a.report)):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "results.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)
        with open(os.path.join(folder, "table.md"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
