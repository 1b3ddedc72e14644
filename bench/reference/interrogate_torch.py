"""InterroGate and hard-sharing MTL in PyTorch, written from the method description (not from the C# code), with
parameter names that match the library's safetensors export, so that both load identical weights.

The method (arXiv 2402.16848), as this project reads it:
- every encoder layer exists T+1 times: one copy per task and one shared copy, each a plain ResNet with its own
  batch norm and shortcut paths;
- after every conv+BN(+ReLU) unit ("conv" gating; "block" gating: only at residual-block outputs) a gate picks,
  per task and channel, the task's own channel (G = 1[alpha > 0]) or the shared one:
      gated_t = G_t * phi_t + (1 - G_t) * psi
  and the shared copy's next input is the softmax(beta)-weighted mix of the gated task features
      m = sum_t softmax_t(beta)[t] * gated_t
  (the last gated layer has no beta: the heads read the gated task features);
- straight-through gates: forward 1[alpha > 0], backward the sigmoid's derivative;
- the stem is duplicated and gated at its output; its max pooling is applied to every branch;
- loss: sum of the task losses + lambda_s * mean_t max(0, mean_layers mean_channels sigmoid(alpha_t) - tau_t);
- Adam for the weights, a separate SGD (lr 0.1) for alpha and beta.
Only undilated ResNets (ResNet-18/34/50 torchvision style, CIFAR ResNet-20) and classification heads
(global average pooling + one linear layer named fc) are written here: what the GPU benchmark runs.
"""
import json
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F


# --- safetensors -----------------------------------------------------------------------------------------------

_DTYPES = {
    "F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def load_safetensors(path):
    """Tensors of a safetensors file (little-endian; header: u64 length, then JSON), on the CPU."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        if end > start:
            t = torch.frombuffer(bytearray(data[start:end]), dtype=dtype).clone()
        else:
            t = torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out


_NAMES = {v: k for k, v in _DTYPES.items()}


def save_safetensors(tensors, path, metadata=None):
    """Writes tensors as safetensors (little-endian, names in sorted order), for machines without the safetensors library."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        data = t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for c in chunks:
            f.write(c)


def safetensors_metadata(path):
    """The __metadata__ strings of a safetensors file (empty when it has none)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)).get("__metadata__", {})


def load_export(path, device="cpu"):
    """A model written by `interrogate export CHECKPOINT --format state-dict`: built from the file's metadata (the run's
    configuration, tasks and input) and loaded with strict=True. Returns the model in eval mode and the input it expects
    ({"channels", "height", "width", "mean", "std"}: pixels / 255, then (x - mean) / std). Covers what this file
    implements: InterroGate and MTL on the ResNets above with classification heads."""
    meta = safetensors_metadata(path)
    if meta.get("format") != "interrogate-state-dict":
        raise ValueError(f"{path}: not an `interrogate export --format state-dict` file")
    config, tasks, image = json.loads(meta["config"]), json.loads(meta["tasks"]), json.loads(meta["input"])
    if any(t["kind"] != "classification" for t in tasks):
        raise NotImplementedError("this reference builds classification heads only")
    heads = {t["name"]: t["outputs"] for t in tasks}
    arch, backbone = config["architecture"], config["backbone"]
    if arch["type"] == "interrogate":
        model = InterroGateModel(heads, backbone["name"], image["channels"], backbone["width"], arch.get("gating", "conv"), arch["lambdaS"])
    elif arch["type"] == "mtl":
        model = HardSharing(heads, backbone["name"], image["channels"], backbone["width"])
    else:
        raise NotImplementedError(f"architecture {arch['type']}: this reference builds interrogate and mtl")
    model.load_state_dict(load_safetensors(path), strict=True)
    return model.to(device).eval(), image


# --- ResNet ----------------------------------------------------------------------------------------------------

def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class Block(nn.Module):
    """A residual block as a list of conv+BN units; the last unit adds the shortcut before its ReLU."""

    def unit(self, k, h, block_input):
        y = self.norms[k](self.convs[k](h))
        if k == len(self.convs) - 1:
            y = y + (block_input if self.downsample is None else self.downsample(block_input))
        return F.relu(y)

    def forward(self, x):
        h = x
        for k in range(len(self.convs)):
            h = self.unit(k, h, x)
        return h

    @staticmethod
    def make_downsample(cin, cout, stride):
        if stride != 1 or cin != cout:
            return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
        return None


class BasicBlock(Block):
    expansion = 1

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.downsample = self.make_downsample(cin, planes, stride)
        self.out_channels = planes

    @property
    def convs(self):
        return [self.conv1, self.conv2]

    @property
    def norms(self):
        return [self.bn1, self.bn2]


class Bottleneck(Block):
    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1, self.bn1 = conv1x1(cin, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv1x1(planes, planes * 4), nn.BatchNorm2d(planes * 4)
        self.downsample = self.make_downsample(cin, planes * 4, stride)
        self.out_channels = planes * 4

    @property
    def convs(self):
        return [self.conv1, self.conv2, self.conv3]

    @property
    def norms(self):
        return [self.bn1, self.bn2, self.bn3]


SPECS = {
    # name: (block, blocks per stage, stage widths, stem channels, CIFAR stem)
    "resnet18": (BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], 64, False),
    "resnet34": (BasicBlock, [3, 4, 6, 3], [64, 128, 256, 512], 64, False),
    "resnet50": (Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], 64, False),
    "resnet20": (BasicBlock, [3, 3, 3], [16, 32, 64], 16, True),
}


def spec(name, width=1.0):
    block, layers, widths, stem, cifar = SPECS[name]
    if name != "resnet20" and width != 1.0:
        raise ValueError(f"{name} takes no width multiplier")
    w = lambda c: max(1, int(round(c * width)))  # noqa: E731
    return block, layers, [w(c) for c in widths], w(stem), cifar


class ResNet(nn.Module):
    def __init__(self, name, in_channels, width=1.0):
        super().__init__()
        block, layers, widths, stem, cifar = spec(name, width)
        if cifar:
            self.conv1 = conv3x3(in_channels, stem)
            self.maxpool = None
        else:
            self.conv1 = nn.Conv2d(in_channels, stem, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(stem)
        cin = stem
        for s, (n, planes) in enumerate(zip(layers, widths)):
            blocks = []
            for b in range(n):
                blocks.append(block(cin, planes, stride=(2 if s > 0 and b == 0 else 1)))
                cin = planes * block.expansion
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.blocks = [blk for s in range(len(layers)) for blk in getattr(self, f"layer{s + 1}")]
        self.out_channels = cin

    def stem_unit(self, x):
        return F.relu(self.bn1(self.conv1(x)))

    def pool(self, x):
        return x if self.maxpool is None else self.maxpool(x)

    def forward(self, x):
        h = self.pool(self.stem_unit(x))
        for blk in self.blocks:
            h = blk(h)
        return h


class ClassificationHead(nn.Module):
    def __init__(self, cin, classes):
        super().__init__()
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# --- InterroGate -----------------------------------------------------------------------------------------------

class GateLayer(nn.Module):
    def __init__(self, tasks, channels, has_mix, alpha_init=0.5):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((tasks, channels), alpha_init))
        self.beta = nn.Parameter(torch.zeros(tasks, channels)) if has_mix else None

    def gates(self):
        soft = torch.sigmoid(self.alpha)
        hard = (self.alpha > 0).to(soft.dtype)
        return soft + (hard - soft).detach()  # straight-through

    def apply(self, task_features, shared):
        g = self.gates()
        # Eq. 2 as torch.lerp, as the C# side computes it: exact where a gate is 0 or 1. Written out as
        # shared + g * (phi - shared), g = 1 gives phi plus a rounding error; those ulp-level differences move
        # activations across ReLU kinks downstream, and the float32 gradients of the two sides then differ by up to
        # 2e-2 (bench/RESULTS.md, "The gradient check: kinks, not formulas").
        # Under bf16 autocast the features are bfloat16: the gates and the mix weights are cast to their dtype, as the C#
        # side does (lerp takes its weight in its inputs' dtype, and an fp32 mix would turn the shared stream into fp32).
        g = g.to(shared.dtype)
        gated = [torch.lerp(shared, phi, g[t].view(1, -1, 1, 1)) for t, phi in enumerate(task_features)]
        if self.beta is None:
            return gated, None
        w = torch.softmax(self.beta, dim=0).to(shared.dtype)
        mixed = sum(gated[t] * w[t].view(1, -1, 1, 1) for t in range(len(gated)))
        return gated, mixed


class GatedResNet(nn.Module):
    def __init__(self, task_names, name, in_channels, width=1.0, gating="conv"):
        super().__init__()
        self.task_names = list(task_names)
        self.gating = gating
        self.task_branches = nn.ModuleDict({t: ResNet(name, in_channels, width) for t in self.task_names})
        self.shared = ResNet(name, in_channels, width)
        channels = [self.shared.conv1.out_channels]
        for blk in self.shared.blocks:
            units = len(blk.convs)
            for k in range(units):
                if gating == "conv" or k == units - 1:
                    channels.append(blk.norms[k].num_features)
        self.gates = nn.ModuleList(GateLayer(len(self.task_names), c, has_mix=(i < len(channels) - 1))
                                   for i, c in enumerate(channels))
        self.out_channels = self.shared.out_channels

    def forward(self, x):
        branches = [self.task_branches[t] for t in self.task_names]
        T = len(branches)
        gate = iter(self.gates)
        feats, mix = next(gate).apply([b.stem_unit(x) for b in branches], self.shared.stem_unit(x))
        feats = [self.shared.pool(f) for f in feats]
        mix = self.shared.pool(mix)
        for j, shared_block in enumerate(self.shared.blocks):
            block_in, block_in_shared = feats, mix
            h, h_shared = feats, mix
            units = len(shared_block.convs)
            for k in range(units):
                out = [branches[t].blocks[j].unit(k, h[t], block_in[t]) for t in range(T)]
                out_shared = shared_block.unit(k, h_shared, block_in_shared)
                if self.gating == "conv" or k == units - 1:
                    h, h_shared = next(gate).apply(out, out_shared)
                else:
                    h, h_shared = out, out_shared
            feats, mix = h, h_shared
        return feats

    def regularizer(self, tau=0.0):
        """Eq. 4 (hinge): mean over tasks of max(0, mean over layers of the mean gate probability - tau)."""
        per_layer = torch.stack([torch.sigmoid(g.alpha).mean(1) for g in self.gates])  # [L, T]
        return F.relu(per_layer.mean(0) - tau).mean()


class InterroGateModel(nn.Module):
    def __init__(self, tasks, name, in_channels, width=1.0, gating="conv", lambda_s=1.0):
        super().__init__()
        self.tasks = dict(tasks)
        self.encoder = GatedResNet(list(self.tasks), name, in_channels, width, gating)
        self.heads = nn.ModuleDict({t: ClassificationHead(self.encoder.out_channels, k) for t, k in self.tasks.items()})
        self.lambda_s = lambda_s

    def forward(self, x):
        feats = self.encoder(x)
        return {t: self.heads[t](f) for t, f in zip(self.tasks, feats)}

    def regularizer(self):
        return self.lambda_s * self.encoder.regularizer()

    def gate_parameters(self):
        return [p for n, p in self.named_parameters() if n.endswith(".alpha") or n.endswith(".beta")]


class HardSharing(nn.Module):
    def __init__(self, tasks, name, in_channels, width=1.0):
        super().__init__()
        self.tasks = dict(tasks)
        self.encoder = ResNet(name, in_channels, width)
        self.heads = nn.ModuleDict({t: ClassificationHead(self.encoder.out_channels, k) for t, k in self.tasks.items()})

    def forward(self, x):
        f = self.encoder(x)
        return {t: self.heads[t](f) for t in self.tasks}

    def regularizer(self):
        return None

    def gate_parameters(self):
        return []
