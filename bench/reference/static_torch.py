"""The pruned static network in PyTorch eager: reads the file `interrogate prune` (or `export --format safetensors`)
writes, a safetensors file whose metadata holds the graph ("structure": nodes in execution order, the task outputs,
the input), and runs its nodes one by one with torch operations. Written from the operators' definitions
(src/InterroGate/Pruning/StaticGraph.cs, StaticOp; docs/architecture.md, "From gates to a static network"), not from
the C# runtime and its fused gathers: the PyTorch side of the GPU suite's numerics and latency checks of the pruned
network.

  from static_torch import StaticNet
  net = StaticNet.load("model.safetensors").to("cuda")
  outputs = net(x)   # {task: tensor}

Operators: Input, Conv, Add, Relu, MaxPool, Gather, Mix, GlobalAvgPool, Linear, Concat, ImagePool, Resize, Gelu,
Upsample, LayerNorm (what the ResNet, HRNet and ASPP networks use); the ViT's token operators raise NotImplementedError.
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

from interrogate_torch import load_safetensors, safetensors_metadata

FORMAT = "interrogate-static-network/1"


class StaticNet(nn.Module):
    def __init__(self, structure, tensors):
        super().__init__()
        self.nodes = structure["nodes"]
        self.outputs = structure["outputs"]
        self.input = structure["input"]
        self.tensors = nn.ParameterDict()
        self.names = {}
        for i, (name, t) in enumerate(sorted(tensors.items())):
            key = f"t{i}"
            self.names[name] = key
            self.tensors[key] = nn.Parameter(t.float() if t.is_floating_point() else t, requires_grad=False)
        for node in self.nodes:
            op = node.get("op", "Input")
            if op in ("Attention", "Tokens", "TokenMap", "ClassToken"):
                raise NotImplementedError(f"node {node['name']}: operator {op} is not written in this reference")

    @staticmethod
    def load(path):
        meta = safetensors_metadata(path)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a static network file (metadata format {meta.get('format')!r})")
        return StaticNet(json.loads(meta["structure"]), load_safetensors(path)).eval()

    def t(self, node, suffix):
        return self.tensors[self.names[f"{node['name']}.{suffix}"]]

    @torch.no_grad()
    def forward(self, x):
        values = []
        for node in self.nodes:
            op = node.get("op", "Input")
            ins = [values[i] for i in node["inputs"]]
            if op == "Input":
                v = x
            elif op == "Conv":
                v = F.conv2d(ins[0], self.t(node, "weight"), self.t(node, "bias"), stride=node.get("stride", 1),
                             padding=node.get("padding", 0), dilation=node.get("dilation", 1), groups=node.get("groups", 1))
            elif op == "Add":
                v = ins[0] + ins[1]
            elif op == "Relu":
                v = F.relu(ins[0])
            elif op == "MaxPool":
                v = F.max_pool2d(ins[0], node["kernel"], node.get("stride", 1), node.get("padding", 0))
            elif op == "Gather":
                src = ins[0] if len(ins) == 1 else torch.cat(ins, 1)
                v = src.index_select(1, self.t(node, "index"))
            elif op == "Mix":
                w = self.t(node, "weight")  # [T, C]
                v = sum(w[k].view(1, -1, 1, 1) * ins[k] for k in range(len(ins)))
            elif op == "GlobalAvgPool":
                v = ins[0].mean((2, 3))
            elif op == "Linear":
                v = F.linear(ins[0], self.t(node, "weight"), self.t(node, "bias"))
            elif op == "Concat":
                v = torch.cat(ins, 1)
            elif op == "ImagePool":
                v = ins[0].mean((2, 3), keepdim=True)
            elif op == "Resize":
                v = F.interpolate(ins[0], size=ins[1].shape[2:], mode="bilinear", align_corners=False)
            elif op == "Gelu":
                v = F.gelu(ins[0])
            elif op == "Upsample":
                v = F.interpolate(ins[0], scale_factor=node["stride"], mode="bilinear", align_corners=False)
            elif op == "LayerNorm":
                v = F.layer_norm(ins[0].movedim(1, -1), (node["channels"],), self.t(node, "weight"), self.t(node, "bias"),
                                 node["epsilon"]).movedim(-1, 1)
            else:
                raise NotImplementedError(f"node {node['name']}: operator {op}")
            values.append(v)
        return {task: values[i] for task, i in self.outputs.items()}
