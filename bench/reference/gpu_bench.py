#!/usr/bin/env python3
"""Our build against PyTorch eager on one GPU, side by side: training step time, peak GPU memory, numerics.

Needs only the self-contained build from scripts/publish-cuda.sh (it holds bench/InterroGate.Bench) and a
machine with CUDA PyTorch; no .NET, no network. Our side runs on that PyTorch's libtorch (found through python3).

  python3 bench/reference/gpu_bench.py --ours publish/cuda/bench/InterroGate.Bench [--steps 30] [--out runs/gpu-bench]

For each case (ResNet-18, 3 tasks, 224x224, batch 32; ResNet-20 x1/4, 2 tasks, 1x36x36, batch 256 as MultiFashion)
and each model (MTL, InterroGate with about half the channels task-specific):
1. numerics: our build writes its initial weights, a batch and the outputs of its first forward pass (training
   mode, TF32 off); the reference model here loads the same weights and batch and must give the same outputs to
   1e-4 relative (max |difference| over max |value|, per task);
2. speed: each side, in its own process, runs warm-up and then the timed training steps (forward, backward, Adam
   for the weights, SGD lr 0.1 for the gates; TF32 on) on the same weights and batch; the median step time is
   reported, and peak GPU memory is the largest memory.used that nvidia-smi reports while the process runs, less
   what was used before it started (the same measure for both sides, CUDA context included).
Prints the Markdown table and writes it, with every side's JSON, to --out.
"""
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

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [
    # label, backbone, width, tasks, size, channels, batch
    ("ResNet-18, 3 tasks, 224x224, batch 32", "resnet18", 1.0, 3, 224, 3, 32),
    ("ResNet-20 x1/4, MultiFashion 1x36x36, batch 256", "resnet20", 0.25, 2, 36, 1, 256),
]
MODELS = ["mtl", "interrogate"]


def gpu_memory_used_mib():
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True, check=True, timeout=5).stdout
    return float(out.strip().splitlines()[0])


def run_measured(cmd, env=None, gpu=True, timeout=None):
    """Runs cmd (killed after timeout seconds); returns (stdout, peak GPU memory used above the level before it
    started, MiB; NaN without gpu). A failure raises RuntimeError with the end of the command's output."""
    if not gpu:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{(proc.stdout + proc.stderr)[-3000:]}")
        return proc.stdout, float("nan")
    base = gpu_memory_used_mib()
    peak = [base]
    done = threading.Event()

    def poll():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], gpu_memory_used_mib())
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError):
                pass
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    finally:
        done.set()
        poller.join()
    if proc.returncode != 0:
        raise RuntimeError(f"failed ({proc.returncode}): {' '.join(cmd)}\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout, peak[0] - base


def ours_cmd(ours, case, model, out, steps, tf32, fusion="off", device="cuda", precision="fp32", channels_last=False,
             backward_read_only=False):
    """ours: the command that starts InterroGate.Bench, as a list (the published executable, or dotnet and its dll).
    backward_read_only: InterroGate's gate-learning backward pass through the read filters only; false (the library's
    default on a GPU, and the work the PyTorch reference does) also where the suite runs on the CPU."""
    _, backbone, width, tasks, size, channels, batch = case
    return [*ours, "step", "--model", model, "--backbone", backbone, "--width", str(width), "--tasks", str(tasks),
            "--size", str(size), "--channels", str(channels), "--batch", str(batch), "--steps", str(steps),
            "--device", device, "--tf32", "true" if tf32 else "false", "--fusion", fusion, "--out", out,
            "--precision", precision, "--channels-last", "true" if channels_last else "false",
            "--backward-read-only", "true" if backward_read_only else "false"]


def step_gradients(model, x, labels, tasks):
    """Every parameter's gradient of the step's loss (each task's cross-entropy + the sparsity loss) on x, left in
    .grad and returned as copies."""
    import torch.nn.functional as F
    model.zero_grad(set_to_none=True)
    out = model(x)
    total = sum(F.cross_entropy(out[t], labels[t]) for t in tasks)
    reg = model.regularizer()
    if reg is not None:
        total = total + reg
    total.backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def exact_errors(model, x, labels, tasks, ours_grads, ours_grads64=None, draws=2, eps=1e-6):
    """How far each side's float32 gradient is from the same gradient in float64 (a copy of the model, same gates
    and batch): where a parameter's gradient is a small sum of large terms, two correct float32 results can differ
    by far more than their rounding, and the fair test is then that ours is no farther from the exact value than
    PyTorch's own. Per parameter, max |g - exact| / max |exact|.

    Two more measures tell a different formula from rounding:
    - formula: our gradient computed in float64 (ours_grads64, our side's --grads-float64) against PyTorch's float64
      gradient; a correct implementation agrees to about 1e-12;
    - sensitivity: how much the float64 gradient itself moves when the input moves by about the relative rounding a
      float32 activation carries after a few layers (each pixel scaled by 1 + eps * N(0, 1), `draws` draws; the
      largest move over the parameters). ReLUs and straight-through gates make the gradient a piecewise function: an
      activation within rounding of a kink takes either side, and two float32 implementations whose convolutions
      round differently land on different sides of different kinks. Where the sensitivity is as large as the
      difference, the gradient is not defined more closely than that at float32 precision."""
    import copy
    import torch
    exact = copy.deepcopy(model).double()
    x64 = x.double()
    reference = step_gradients(exact, x64, labels, tasks)
    moved = []
    for draw in range(draws):
        g = torch.Generator().manual_seed(1000 + draw)
        noise = torch.randn(x64.shape, generator=g, dtype=torch.float64).to(x64.device)
        moved.append(step_gradients(exact, x64 * (1 + eps * noise), labels, tasks))
    ours_err, torch_err, sens, formula = {}, {}, {}, {}
    theirs = dict(model.named_parameters())
    for name, e in reference.items():
        if name not in ours_grads or theirs[name].grad is None:
            continue
        e = e.cpu()
        scale = e.abs().max().clamp_min(1e-300)
        ours_err[name] = float((ours_grads[name].double() - e).abs().max() / scale)
        torch_err[name] = float((theirs[name].grad.cpu().double() - e).abs().max() / scale)
        sens[name] = max(float((m[name].cpu() - e).abs().max() / scale) for m in moved) if moved else 0.0
        if ours_grads64 is not None and name in ours_grads64:
            formula[name] = float((ours_grads64[name].double() - e).abs().max() / scale)
    if not ours_err:
        return None
    worst = max(ours_err, key=lambda n: ours_err[n] / max(torch_err[n], 1e-12))
    return {"ours_max": max(ours_err.values()), "pytorch_max": max(torch_err.values()),
            "worst_ratio": ours_err[worst] / max(torch_err[worst], 1e-12), "worst_ratio_parameter": worst,
            "worst_ratio_errors": [ours_err[worst], torch_err[worst]],
            "sensitivity_max": max(sens.values()), "sensitivity_parameter": max(sens, key=sens.get), "sensitivity_eps": eps,
            "formula_max": max(formula.values()) if formula else None}


def gradients_agree(gradient, tolerance):
    """Gradients pass where they agree with PyTorch's within tolerance; or where ours is no farther from the float64
    gradient than twice PyTorch's float32 gradient is (plus 1e-6); or, with our float64 gradient at hand, where that
    one equals PyTorch's (the same formula, within 1e-9) and ours' float32 distance from float64 is within twice the
    float64 gradient's own sensitivity (see exact_errors)."""
    exact = gradient.get("exact")
    if gradient["max_relative_difference"] <= tolerance:
        return True
    if exact is None:
        return False
    if exact["ours_max"] <= 2 * exact["pytorch_max"] + 1e-6:
        return True
    return (exact.get("formula_max") is not None and exact["formula_max"] <= 1e-9
            and exact["ours_max"] <= 2 * exact.get("sensitivity_max", 0.0) + 1e-6)


def reference_side(a):
    """The PyTorch side, run in its own process: numerics check or timed steps on our weights and batch."""
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, HERE)
    from interrogate_torch import HardSharing, InterroGateModel, load_safetensors

    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cudnn.benchmark = False
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    tasks = {f"task{t + 1}": 10 for t in range(a.tasks)}
    model = (InterroGateModel(tasks, a.backbone, a.channels, a.width) if a.model == "interrogate"
             else HardSharing(tasks, a.backbone, a.channels, a.width))
    model.load_state_dict(load_safetensors(os.path.join(a.dir, "weights.safetensors")), strict=True)
    batch = load_safetensors(os.path.join(a.dir, "batch.safetensors"))
    model.to(dev).train()
    x = batch["input"].to(dev)
    labels = {t: batch[t].to(dev) for t in tasks}

    result = {"side": "pytorch", "model": a.model, "torch": torch.__version__, "tf32": a.tf32,
              "precision": a.precision, "channels_last": a.channels_last}
    if a.check:
        with torch.no_grad():
            out = model(x)
        ours = load_safetensors(os.path.join(a.dir, "outputs.safetensors"))
        result["relative_difference"] = {
            t: float((out[t].cpu() - ours[t]).abs().max() / ours[t].abs().max().clamp_min(1e-12)) for t in tasks}
        grads_file = os.path.join(a.dir, "grads.safetensors")
        if os.path.exists(grads_file):
            # Every parameter's gradient of tasks + sparsity loss on the batch (train mode), against ours.
            step_gradients(model, x, labels, tasks)
            ours_grads = load_safetensors(grads_file)
            grads64_file = os.path.join(a.dir, "grads64.safetensors")
            ours_grads64 = load_safetensors(grads64_file) if os.path.exists(grads64_file) else None
            diffs = {}
            for name, p in model.named_parameters():
                if p.grad is None and name not in ours_grads:
                    continue
                if p.grad is None or name not in ours_grads:
                    diffs[name] = float("inf")  # one side has a gradient the other lacks
                    continue
                g, o = p.grad.cpu(), ours_grads[name]
                diffs[name] = float((g - o).abs().max() / o.abs().max().clamp_min(1e-12))
            worst = max(diffs, key=diffs.get)
            gates = [v for n, v in diffs.items() if n.endswith(".alpha") or n.endswith(".beta")]
            result["gradient"] = {"parameters": len(diffs), "max_relative_difference": diffs[worst], "worst": worst,
                                  "gates_max_relative_difference": max(gates) if gates else None,
                                  "exact": exact_errors(model, x, labels, tasks, ours_grads, ours_grads64)}
        print(json.dumps(result))
        return
    with torch.no_grad():
        model(x)  # our side's first forward pass (its outputs file) moved BN statistics once before the steps too
    gate_params = model.gate_parameters()
    gate_ids = {id(p) for p in gate_params}
    # foreach None: PyTorch's default (one multi-tensor kernel per operation on CUDA); False: one per parameter, as ours
    adam = torch.optim.Adam([p for p in model.parameters() if id(p) not in gate_ids], lr=1e-3, foreach=a.foreach)
    sgd = torch.optim.SGD(gate_params, lr=0.1, foreach=a.foreach) if gate_params else None
    if a.channels_last:  # PyTorch's channels-last: the weights converted as well as the input
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(5 + a.steps):
        sync()
        start = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            out = model(x)
        update(model, [F.cross_entropy(out[t].float(), labels[t]) for t in tasks], adam, sgd)
        sync()
        if i >= 5:
            times.append((time.perf_counter() - start) * 1000)
    result.update(step_ms_median=statistics.median(times), step_ms=times,
                  torch_peak_allocated_mib=torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None)
    print(json.dumps(result))


def update(model, losses, adam, sgd):
    """One optimisation step on the task losses plus the model's regulariser (none for MTL): zero_grad, backward, Adam
    on the weights and SGD on the gates, as our step. Returns the regulariser."""
    reg = model.regularizer()
    total = sum(losses) if reg is None else sum(losses) + reg
    adam.zero_grad(set_to_none=True)
    if sgd:
        sgd.zero_grad(set_to_none=True)
    total.backward()
    adam.step()
    if sgd:
        sgd.step()
    return reg


def epoch_reference(a):
    """PyTorch eager training the MultiFashion model for one epoch, as our trainer's epoch does (bench/gpu/suite.py,
    section epoch): ResNet-20 x1/4, 2 tasks of 10 classes, 1x36x36 images held on the device (random, the same
    shapes: the GPU's work does not depend on the values), a fresh random order, batch --batch with the last
    partial batch dropped, Adam for the weights, SGD lr 0.1 for the gates, the losses summed on the device and read
    every 10 steps (as a training loop reports progress). Prints one JSON line with the wall-clock window between
    the first and the last read, in which the caller reads the GPU's busy fraction."""
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, HERE)
    from interrogate_torch import HardSharing, InterroGateModel

    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    dev = torch.device(a.device)
    torch.manual_seed(0)
    tasks = {"top_left": 10, "bottom_right": 10}
    model = (InterroGateModel(tasks, "resnet20", 1, 0.25, lambda_s=1.0) if a.model == "interrogate"
             else HardSharing(tasks, "resnet20", 1, 0.25)).to(dev).train()
    images = torch.randn(a.train_size, 1, 36, 36, device=dev)
    labels = {t: torch.randint(0, 10, (a.train_size,), device=dev) for t in tasks}
    gate_params = model.gate_parameters()
    gate_ids = {id(p) for p in gate_params}
    adam = torch.optim.Adam([p for p in model.parameters() if id(p) not in gate_ids], lr=1e-3)
    sgd = torch.optim.SGD(gate_params, lr=0.1) if gate_params else None
    order = torch.randperm(a.train_size, device=dev)
    steps = a.train_size // a.batch
    pending = torch.zeros(len(tasks) + 1, dtype=torch.float64, device=dev)
    first = last = None
    start = time.perf_counter()
    for step in range(steps):
        idx = order[step * a.batch:(step + 1) * a.batch]
        x = images.index_select(0, idx)
        out = model(x)
        losses = [F.cross_entropy(out[t], labels[t].index_select(0, idx)) for t in tasks]
        reg = update(model, losses, adam, sgd)
        with torch.no_grad():
            pending += torch.stack([*(l.detach() for l in losses), reg.detach() if reg is not None else torch.zeros((), device=dev)]).double()
        if (step + 1) % 10 == 0 or step == steps - 1:
            pending.cpu()  # the read waits for the GPU, as our trainer's at a progress report
            now = time.time()
            first = now if first is None else first
            last = now
    seconds = time.perf_counter() - start
    print(json.dumps({"side": "pytorch", "arch": a.model, "torch": torch.__version__, "train_size": a.train_size,
                      "batch": a.batch, "steps": steps, "device": a.device, "window_start_unix": first,
                      "window_end_unix": last, "images_per_s": steps * a.batch / seconds, "data_on": "device"}))


def compare_case(ours, case, model, out, steps, fusion="off", device="cuda", timeout=None):
    """One case and model: numerics (TF32 off), then both sides' timed steps (TF32 on) on the same weights and batch,
    each process killed after timeout seconds. Returns a record with both sides' JSON, the peak memories and the
    largest relative output difference."""
    label, backbone, width, tasks, size, channels, batch = case
    gpu = device.startswith("cuda")
    d = os.path.abspath(os.path.join(out, f"{backbone}-{model}"))
    ref = [sys.executable, os.path.abspath(__file__), "--reference", "--dir", d, "--model", model, "--device", device,
           "--backbone", backbone, "--width", str(width), "--tasks", str(tasks), "--channels", str(channels)]
    # 1. numerics, TF32 off on both sides
    run_measured(ours_cmd(ours, case, model, d, 1, False, fusion, device) + ["--grads", "true", "--grads-float64", "true"], gpu=gpu, timeout=timeout)
    check = json.loads(run_measured(ref + ["--check", "--tf32", "false"], gpu=gpu, timeout=timeout)[0].strip().splitlines()[-1])
    # 2. speed and memory, TF32 on, same weights and batch (our side rewrites them identically: seed 0)
    ours_out, ours_mem = run_measured(ours_cmd(ours, case, model, d, steps, True, fusion, device), gpu=gpu, timeout=timeout)
    ours_side = json.loads(ours_out.strip().splitlines()[-1])
    ref_out, ref_mem = run_measured(ref + ["--tf32", "true", "--steps", str(steps)], gpu=gpu, timeout=timeout)
    torch_side = json.loads(ref_out.strip().splitlines()[-1])
    # PyTorch again with its optimisers stepping parameter by parameter (foreach off), as ours do: how much of the
    # step is the optimisers' kernel launches
    loop_out, _ = run_measured(ref + ["--tf32", "true", "--steps", str(steps), "--foreach", "false"], gpu=gpu, timeout=timeout)
    torch_side["step_ms_median_per_parameter_optimisers"] = json.loads(loop_out.strip().splitlines()[-1])["step_ms_median"]
    # Ours again with the optimisers stepping parameter by parameter (training.flatOptimizer false): what the flat ones save
    ours_loop, _ = run_measured(ours_cmd(ours, case, model, d, steps, True, fusion, device) + ["--optimizer", "per-parameter"],
                                gpu=gpu, timeout=timeout)
    ours_side["step_ms_median_per_parameter_optimisers"] = json.loads(ours_loop.strip().splitlines()[-1])["step_ms_median"]
    record = {"case": label, "model": model, "ours": ours_side, "pytorch": torch_side, "check": check,
              "ours_peak_mib": ours_mem, "pytorch_peak_mib": ref_mem,
              "relative_difference": max(check["relative_difference"].values()),
              "gradient_relative_difference": check["gradient"]["max_relative_difference"]}
    with open(os.path.join(d, "pytorch.json"), "w") as f:
        json.dump({"check": check, "speed": torch_side, "peak_mib": ref_mem, "ours_peak_mib": ours_mem}, f)
    return record


def speed_case(ours, case, model, out, steps, precision, channels_last, device="cuda", timeout=None, fusion="off"):
    """Both sides' timed steps (TF32 on) with a speed option: bf16 autocast and/or channels-last, on the same weights
    and batch (no numerics check: bfloat16 differs from float32 by design), or ours alone with branch fusion (PyTorch
    has no counterpart; its side is then not run). Returns both sides' JSON and peak memories."""
    label, backbone, width, tasks, size, channels, batch = case
    gpu = device.startswith("cuda")
    d = os.path.abspath(os.path.join(out, f"{backbone}-{model}-{precision}{'-cl' if channels_last else ''}-fusion{fusion}"))
    ours_out, ours_mem = run_measured(ours_cmd(ours, case, model, d, steps, True, fusion, device, precision, channels_last),
                                      gpu=gpu, timeout=timeout)
    ours_side = json.loads(ours_out.strip().splitlines()[-1])
    if fusion != "off":
        return {"case": label, "model": model, "precision": precision, "channels_last": channels_last, "fusion": fusion,
                "ours": ours_side, "pytorch": None, "ours_peak_mib": ours_mem, "pytorch_peak_mib": None}
    ref = [sys.executable, os.path.abspath(__file__), "--reference", "--dir", d, "--model", model, "--device", device,
           "--backbone", backbone, "--width", str(width), "--tasks", str(tasks), "--channels", str(channels),
           "--tf32", "true", "--steps", str(steps), "--precision", precision, "--channels-last", "true" if channels_last else "false"]
    ref_out, ref_mem = run_measured(ref, gpu=gpu, timeout=timeout)
    torch_side = json.loads(ref_out.strip().splitlines()[-1])
    return {"case": label, "model": model, "precision": precision, "channels_last": channels_last, "fusion": fusion, "ours": ours_side,
            "pytorch": torch_side, "ours_peak_mib": ours_mem, "pytorch_peak_mib": ref_mem}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", help="the published InterroGate.Bench executable (or a quoted command, e.g. 'dotnet X.dll')")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--fusion", default="off", choices=["off", "on", "auto"], help="our branch fusion")
    p.add_argument("--out", default="runs/gpu-bench")
    p.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (to try the script without a GPU)")
    # the reference side (internal: the script calls itself)
    p.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--epoch-reference", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train-size", type=int, default=50000, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    p.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--backbone", help=argparse.SUPPRESS)
    p.add_argument("--width", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--tasks", type=int, help=argparse.SUPPRESS)
    p.add_argument("--channels", type=int, help=argparse.SUPPRESS)
    p.add_argument("--tf32", type=lambda s: s == "true", default=True, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help=argparse.SUPPRESS)
    p.add_argument("--channels-last", type=lambda s: s == "true", default=False, help=argparse.SUPPRESS)
    p.add_argument("--foreach", type=lambda s: None if s == "default" else s == "true", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.epoch_reference:
        epoch_reference(a)
        return
    if a.reference:
        reference_side(a)
        return
    ours = shlex.split(a.ours or "")
    if not ours or not (os.access(ours[0], os.X_OK) or shutil.which(ours[0])):
        p.error("--ours must name the published InterroGate.Bench executable (scripts/publish-cuda.sh)")

    os.makedirs(a.out, exist_ok=True)
    records = [compare_case(ours, case, model, a.out, a.steps, a.fusion, a.device) for case in CASES for model in MODELS]
    table = step_table(records, a.steps, a.fusion, a.device)
    print(table)
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(table + "\n")


def device_name(device):
    if not device.startswith("cuda"):
        return "CPU"
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"GPU (nvidia-smi: {e})"


def exact_cell(exact):
    if not exact:
        return "-"
    cell = (f"{exact['ours_max']:.1e} / {exact['pytorch_max']:.1e} ({exact['worst_ratio']:.1f}x at "
            f"{exact['worst_ratio_parameter']}: {exact['worst_ratio_errors'][0]:.1e} / {exact['worst_ratio_errors'][1]:.1e})")
    if "sensitivity_max" in exact:
        formula = f"{exact['formula_max']:.0e}" if exact.get("formula_max") is not None else "-"
        cell += (f"; the float64 gradient moves {exact['sensitivity_max']:.1e} ({exact['sensitivity_parameter']}) with the input "
                 f"× (1 + {exact['sensitivity_eps']:.0e}·N(0, 1)); ours in float64 against PyTorch's float64: {formula}")
    return cell


def step_table(records, steps, fusion, device):
    """The Markdown tables of compare_case records: step time and peak memory side by side, then InterroGate / MTL."""
    rows = []
    for r in records:
        o, t = r["ours"]["step_ms_median"], r["pytorch"]["step_ms_median"]
        g = r["check"]["gradient"]
        rows.append(f"| {r['case']} | {r['model']} | {o:.2f} | {t:.2f} | {o / t:.2f} | {r['ours_peak_mib']:.0f} | "
                    f"{r['pytorch_peak_mib']:.0f} | {r['ours_peak_mib'] / max(r['pytorch_peak_mib'], 1):.2f} | "
                    f"{r['relative_difference']:.1e} | {g['max_relative_difference']:.1e} ({g['parameters']}; worst {g['worst']}) | "
                    f"{exact_cell(g.get('exact'))} | {r['ours'].get('step_ms_median_per_parameter_optimisers', float('nan')):.2f} | "
                    f"{r['pytorch'].get('step_ms_median_per_parameter_optimisers', float('nan')):.2f} |")
    lines = [f"{device_name(device)}; median of {steps} training steps after 5 warm-up; our branch fusion: {fusion}",
             "| case | model | ours ms | PyTorch ms | ours / PyTorch | ours peak MiB | PyTorch peak MiB | ours / PyTorch | outputs: max relative difference | gradients: max relative difference (parameters; worst) | gradients against float64: ours / PyTorch (largest ratio) | ours ms, optimisers per parameter | PyTorch ms, optimisers per parameter |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|", *rows, "",
             "| case | InterroGate / MTL step, ours | InterroGate / MTL step, PyTorch |", "|---|---|---|"]
    by = {(r["case"], r["model"]): r for r in records}
    for case in dict.fromkeys(r["case"] for r in records):
        if (case, "interrogate") in by and (case, "mtl") in by:
            i, m = by[(case, "interrogate")], by[(case, "mtl")]
            lines.append(f"| {case} | {i['ours']['step_ms_median'] / m['ours']['step_ms_median']:.2f} | "
                         f"{i['pytorch']['step_ms_median'] / m['pytorch']['step_ms_median']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
