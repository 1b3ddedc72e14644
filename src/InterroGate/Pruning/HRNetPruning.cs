// Pruning InterroGate's gated HRNet to a static network (arXiv 2402.16848, Sec. 3.3; our rules in docs/method.md, "Pruning").
using InterroGate.Backbones;
using InterroGate.Gating;
using InterroGate.Export;
using static TorchSharp.torch;

namespace InterroGate.Pruning;

/// <summary>
/// The pruning rules applied to <see cref="GatedHRNet"/>, unit by unit in its forward order: per branch, the kept
/// filters of a unit read that branch's full input (task t: its gated features; shared: the mix), BN folded. A
/// residual unit's shortcut and a fuse output's identity term are gathered to the unit's kept channels, its paths'
/// convolutions keep those filters, and an upsampling path is resized (bilinear) to the target branch's resolution
/// after its 1×1. Then the gates and mix of <see cref="ResNetPruning.GateAndMix"/>; each task's final branches are
/// upsampled to the first and concatenated.
/// </summary>
internal static class HRNetPruning
{
    public static int[] Emit(GatedHRNet encoder, string[] tasks, GraphBuilder g, SharingPattern pattern, List<PrunedLayer> layers)
    {
        int T = tasks.Length;
        var branches = Enumerable.Range(0, T + 1).Select(b => b < T ? encoder.TaskBranch(b) : encoder.SharedBranch).ToArray();
        string Prefix(int b) => b < T ? $"tasks.{tasks[b]}" : "shared";
        var steps = encoder.Steps;
        var streams = new int[steps.Count][]; // per unit: each task's gated features, then the mix (−1 after the last gates)
        int Input(int unit, int b) => unit == GatedHRNet.Image ? GraphBuilder.InputNode : streams[unit][b];

        for (int u = 0; u < steps.Count; u++)
        {
            var step = steps[u];
            long channels = encoder.Units[u].OutChannels;
            var keep = pattern[u].Kept;
            var outs = new int[T + 1];
            for (int b = 0; b <= T; b++)
            {
                if (keep[b].Length == 0) { outs[b] = -1; continue; }
                string name = $"{Prefix(b)}.{step.Name}";
                int y = step switch
                {
                    GatedHRNet.ConvStep c => g.FoldedConv(name, Input(c.Input, b), c.Layer(branches[b]).Conv, c.Layer(branches[b]).Norm, keep[b]),
                    GatedHRNet.ResidualStep r => Residual(g, name, r, branches[b], Input(r.Input, b), Input(r.BlockInput, b), keep[b]),
                    GatedHRNet.FuseStep f => Fuse(g, name, f, branches[b], f.Inputs.Select(i => Input(i, b)).ToArray(), keep[b]),
                    _ => throw new InvalidOperationException($"Unknown HRNet unit {step.GetType().Name}."),
                };
                outs[b] = g.Op($"{name}.relu", StaticOp.Relu, keep[b].Length, y);
            }
            layers.Add(ResNetPruning.Report(step.Name, keep, channels, tasks));
            var (gated, mix) = ResNetPruning.GateAndMix(g, step.Name, outs, pattern[u], encoder.GateLayers[u], tasks);
            streams[u] = [.. gated, mix];
        }

        // As HRNet.Concatenate: the lower branches upsampled to the first, concatenated along channels.
        return Enumerable.Range(0, T).Select(t =>
        {
            var final = encoder.FinalUnits.Select(u => streams[u][t]).ToArray();
            var parts = final.Select((v, b) => b == 0 ? v : g.Op($"tasks.{tasks[t]}.branch{b}.upsample", StaticOp.Resize, g.Channels(v), v, final[0])).ToArray();
            return g.Op($"tasks.{tasks[t]}.concat", StaticOp.Concat, parts.Sum(g.Channels), parts);
        }).ToArray();
    }

    /// <summary>Unit k of a residual block before its ReLU; the last one adds its shortcut, gathered or projected to the kept channels.</summary>
    private static int Residual(GraphBuilder g, string name, GatedHRNet.ResidualStep r, HRNet net, int input, int blockInput, long[] keep)
    {
        var block = r.Block(net);
        int y = g.FoldedConv(name, input, block.ConvOf(r.K), block.NormOf(r.K), keep);
        if (r.K < block.Units - 1) return y;
        int shortcut = block.Downsample is { } ds
            ? g.FoldedConv($"{name}.downsample", blockInput, (TorchSharp.Modules.Conv2d)ds[0], (TorchSharp.Modules.BatchNorm2d)ds[1], keep)
            : g.Gather($"{name}.identity", [blockInput], keep);
        return g.Op($"{name}.add", StaticOp.Add, keep.Length, y, shortcut);
    }

    /// <summary>A fuse output before its ReLU: the sum over branches j of its identity term or its path's last conv + BN (resized when upsampling).</summary>
    private static int Fuse(GraphBuilder g, string name, GatedHRNet.FuseStep f, HRNet net, int[] inputs, long[] keep)
    {
        var module = f.Module(net);
        int target = inputs[f.To], sum = -1;
        for (int j = 0; j < inputs.Length; j++)
        {
            int term;
            if (j == f.To) term = g.Gather($"{name}.{j}.identity", [target], keep);
            else
            {
                var (conv, norm) = GatedHRNet.ConvNorm(GatedHRNet.FusePath(module, f.To, j));
                term = g.FoldedConv($"{name}.{j}", inputs[j], conv, norm, keep);
                if (j > f.To) term = g.Op($"{name}.{j}.upsample", StaticOp.Resize, keep.Length, term, target); // the target branch's resolution
            }
            sum = sum < 0 ? term : g.Op($"{name}.add{j}", StaticOp.Add, keep.Length, sum, term);
        }
        return sum;
    }
}
