// Pruning a trained InterroGate model to a static network (arXiv 2402.16848, Sec. 3.3; our rules in docs/method.md, "Pruning").
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Gating;
using InterroGate.Heads;
using InterroGate.Layers;
using TorchSharp.Modules;
using InterroGate.Export;
using static TorchSharp.torch;

namespace InterroGate.Pruning;

/// <summary>What the pruner kept of one gated (or ungated) layer: filters per branch out of <see cref="Channels"/>.</summary>
public sealed record PrunedLayer(string Layer, long Channels, IReadOnlyDictionary<string, long> KeptPerBranch);

/// <summary>Per layer and branch, the filters kept; the cost before (gated network) and after.</summary>
public sealed record PruneReport(IReadOnlyList<PrunedLayer> Layers, long MacsBefore, long ParametersBefore, long MacsAfter, long ParametersAfter)
{
    public string ToMarkdown(IReadOnlyList<string> branches)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"| layer | channels | {string.Join(" | ", branches)} |");
        sb.AppendLine($"|---|---|{string.Concat(branches.Select(_ => "---|"))}");
        foreach (var l in Layers)
            sb.AppendLine($"| {l.Layer} | {l.Channels} | {string.Join(" | ", branches.Select(b => l.KeptPerBranch.TryGetValue(b, out var k) ? k.ToString() : "0"))} |");
        sb.AppendLine();
        sb.AppendLine($"MACs: {MacsBefore:N0} gated → {MacsAfter:N0} pruned ({100.0 * MacsAfter / MacsBefore:F1}%); " +
                      $"parameters: {ParametersBefore:N0} → {ParametersAfter:N0} ({100.0 * ParametersAfter / ParametersBefore:F1}%).");
        sb.AppendLine($"({Analysis.CostCounter.Convention})");
        return sb.ToString();
    }
}

/// <summary>A pruned network and what pruning did.</summary>
public sealed record PruneResult(StaticGraph Graph, PruneReport Report);

/// <summary>
/// Turns a trained InterroGate model into a static network with its gates made constant. A pure function:
/// the model is read, never changed. Rules (docs/method.md, "Pruning"): a task filter is kept iff its gate is 1, a shared
/// filter iff some task's gate is 0; BN is folded into kept filters; each kept filter reads its full input,
/// assembled channel by channel from whichever branch holds it; β stays continuous (softmax weights); then a
/// dependency pass from the heads drops every node nobody reads. Encoders other than the gated ResNet add a
/// case to <see cref="EmitEncoder"/>; heads implement <see cref="IStaticHead"/>.
/// </summary>
public static class Pruner
{
    public static PruneResult Prune(InterroGateModel model, ImageInput input)
    {
        if (input.Channels != model.Encoder.InChannels)
            throw new ArgumentException($"The model reads {model.Encoder.InChannels}-channel images, the input spec says {input.Channels}.");
        bool wasTraining = model.training;
        model.eval();
        try
        {
            var pattern = model.Sharing();
            var g = new GraphBuilder(input.Channels);
            var layers = new List<PrunedLayer>();
            var features = EmitEncoder(model, g, pattern, layers);
            var outputs = new Dictionary<string, int>();
            for (int t = 0; t < model.Tasks.Count; t++)
            {
                string task = model.Tasks[t].Name;
                if (model.Head(task) is not IStaticHead head)
                    throw new NotSupportedException($"The head of task '{task}' ({model.Head(task).GetType().Name}) cannot be exported to a static network.");
                outputs[task] = head.Emit(g, features[t], $"heads.{task}");
                if (model.Tasks[t].IsDense) // upsampled to the input's (= the labels') resolution, as in training
                    outputs[task] = g.Op($"heads.{task}.upsample", StaticOp.Resize, g.Channels(outputs[task]), outputs[task], GraphBuilder.InputNode);
            }
            var graph = g.Build(outputs, model.Tasks, input);

            var before = Analysis.CostCounter.Count(model, x => model.call(x), [1, input.Channels, input.Height, input.Width]);
            using var net = new StaticNetwork(graph);
            var after = Analysis.CostCounter.Count(net, x => net.call(x), [1, input.Channels, input.Height, input.Width]);
            return new PruneResult(graph, new PruneReport(layers, before.Macs, before.Params, after.Macs, after.Params));
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    private static int[] EmitEncoder(InterroGateModel model, GraphBuilder g, SharingPattern pattern, List<PrunedLayer> layers) =>
        model.Encoder switch
        {
            GatedResNet resnet => ResNetPruning.Emit(resnet, model.Tasks.Names.ToArray(), g, pattern, layers),
            GatedHRNet hrnet => HRNetPruning.Emit(hrnet, model.Tasks.Names.ToArray(), g, pattern, layers),
            var other => throw new NotSupportedException($"No pruner for encoder {other.GetType().Name}."),
        };
}

/// <summary>A head that can write itself into a static network; returns the node of its prediction.</summary>
public interface IStaticHead
{
    int Emit(GraphBuilder graph, int input, string name);
}

/// <summary>The pruning rules applied to <see cref="GatedResNet"/> (conv or block gating, any ResNet).</summary>
internal static class ResNetPruning
{
    public static int[] Emit(GatedResNet encoder, string[] tasks, GraphBuilder g, SharingPattern pattern, List<PrunedLayer> layers)
    {
        int T = tasks.Length;
        var branches = Enumerable.Range(0, T + 1).Select(b => b < T ? encoder.TaskBranch(b) : encoder.SharedBranch).ToArray();
        string Prefix(int b) => b < T ? $"tasks.{tasks[b]}" : "shared";
        var names = BlockNames(encoder.SharedBranch.Spec);
        int gateIndex = 0;

        // Stem: gated at its output.
        var stemKeep = pattern[gateIndex].Kept;
        var stemOut = new int[T + 1];
        for (int b = 0; b <= T; b++)
            stemOut[b] = stemKeep[b].Length == 0 ? -1
                : g.Op($"{Prefix(b)}.conv1.relu", StaticOp.Relu, stemKeep[b].Length,
                    g.FoldedConv($"{Prefix(b)}.conv1", GraphBuilder.InputNode, branches[b].StemConv, branches[b].StemNorm, stemKeep[b]));
        layers.Add(Report("conv1", stemKeep, encoder.SharedBranch.StemConv.out_channels, tasks));
        Func<int, string, int>? stemPool = encoder.SharedBranch.StemPool is { } pool
            ? (v, name) => g.Add(new StaticNode(name, StaticOp.MaxPool, [v], g.Channels(v),
                (int)pool.kernel_size[0], (int)(pool.stride?[0] ?? pool.kernel_size[0]), (int)(pool.padding?[0] ?? 0)))
            : null;
        var (h, mix) = GateAndMix(g, "conv1", stemOut, pattern[gateIndex], encoder.GateLayers[gateIndex++], tasks, stemPool);

        var blocks = encoder.SharedBranch.Blocks;
        for (int j = 0; j < blocks.Count; j++)
        {
            // Branch inputs of this block: task t reads its gated features, the shared branch the mix.
            var blockIn = h.Append(mix).ToArray();
            var current = blockIn.ToArray();
            int units = blocks[j].Units;
            // Under block gating, inner units are kept whole iff their branch keeps anything at the block output.
            long[][]? blockKeep = encoder.Mode == GatingMode.Block ? pattern[gateIndex].Kept : null;
            for (int k = 0; k < units; k++)
            {
                string unit = $"{names[j]}.conv{k + 1}";
                bool gated = encoder.Mode == GatingMode.Conv || k == units - 1;
                long channels = blocks[j].ConvOf(k).out_channels;
                var keep = gated ? pattern[gateIndex].Kept
                    : blockKeep!.Select(kb => kb.Length > 0 ? Range(channels) : Array.Empty<long>()).ToArray();
                var outs = new int[T + 1];
                for (int b = 0; b <= T; b++)
                {
                    if (keep[b].Length == 0 || current[b] < 0) { outs[b] = -1; continue; }
                    var block = branches[b].Blocks[j];
                    int y = g.FoldedConv($"{Prefix(b)}.{unit}", current[b], block.ConvOf(k), block.NormOf(k), keep[b]);
                    if (k == units - 1)
                    {
                        int shortcut = block.Downsample is { } ds
                            ? g.FoldedConv($"{Prefix(b)}.{names[j]}.downsample", blockIn[b], (Conv2d)ds[0], (BatchNorm2d)ds[1], keep[b])
                            : g.Gather($"{Prefix(b)}.{names[j]}.identity", [blockIn[b]], keep[b]);
                        y = g.Op($"{Prefix(b)}.{names[j]}.add", StaticOp.Add, keep[b].Length, y, shortcut);
                    }
                    outs[b] = g.Op($"{Prefix(b)}.{unit}.relu", StaticOp.Relu, keep[b].Length, y);
                }
                layers.Add(Report(unit, keep, channels, tasks));
                if (gated)
                {
                    (h, mix) = GateAndMix(g, unit, outs, pattern[gateIndex], encoder.GateLayers[gateIndex], tasks);
                    gateIndex++;
                    current = h.Append(mix).ToArray();
                }
                else current = outs;
            }
        }
        return h;
    }

    /// <summary>
    /// Eq. 2 with constant gates: task t's features are channel c of its own output where G_t[c] = 1, of the
    /// shared output otherwise. Eq. 3, the mix, with the softmax(β) weights as constants (none on the last
    /// layer): on a channel every task reads from the shared copy the mix is the shared output itself (the
    /// weights sum to 1), so only the channels some task reads from its own copy are mixed, T weights each.
    /// With <paramref name="pool"/> (the stem's max pool, which acts channel by channel and so commutes with
    /// the gather), each kept branch output is pooled once and the task features gathered after the pool;
    /// the mixed channels are pooled after mixing.
    /// </summary>
    internal static (int[] Gated, int Mix) GateAndMix(GraphBuilder g, string unit, int[] outs, LayerSharing sharing, GateLayer layer,
        string[] tasks, Func<int, string, int>? pool = null)
    {
        int T = tasks.Length, S = T;
        var (keep, gates, channels) = (sharing.Kept, sharing.Gates, sharing.Channels);
        string Branch(int b) => b < T ? $"tasks.{tasks[b]}" : "shared";
        var after = pool is null ? outs : outs.Select((v, b) => v < 0 ? -1 : pool(v, $"{Branch(b)}.maxpool")).ToArray();
        var gated = Gather(g, unit, after, keep, gates, tasks, Range(channels));
        if (layer.Beta is null) return (gated, -1);

        var mixed = sharing.Mixed;
        if (mixed.Length == 0) return (gated, after[S]); // every task reads the shared copy everywhere
        bool all = mixed.Length == channels;
        var toMix = all && pool is null ? gated : Gather(g, all ? $"{unit}.unpooled" : $"{unit}.mixed", outs, keep, gates, tasks, mixed);
        int mix;
        using (no_grad())
        {
            var weights = layer.Beta.softmax(0);
            mix = g.Mix($"mix.{unit}", toMix, all ? weights : weights.index_select(1, tensor(mixed, dtype: int64)));
        }
        if (pool is not null) mix = pool(mix, "mix.maxpool");
        if (all) return (gated, mix);
        var positionMixed = Positions(mixed, channels);
        var positionShared = Positions(keep[S], channels);
        var index = Range(channels).Select(c => positionMixed[c] >= 0 ? positionMixed[c] : mixed.Length + positionShared[c]).ToArray();
        return (gated, g.Gather($"mix.{unit}.assembled", [mix, after[S]], index));
    }

    /// <summary>Every task's features on the channels <paramref name="picked"/>, gathered from its own and the shared output.</summary>
    private static int[] Gather(GraphBuilder g, string unit, int[] outs, long[][] keep, bool[][] gates, string[] tasks, long[] picked)
    {
        int T = tasks.Length, S = T;
        long channels = gates[0].Length;
        var positionShared = Positions(keep[S], channels);
        var gated = new int[T];
        for (int t = 0; t < T; t++)
        {
            var positionOwn = Positions(keep[t], channels);
            var sources = new List<int>();
            if (outs[t] >= 0) sources.Add(outs[t]);
            if (outs[S] >= 0) sources.Add(outs[S]);
            long ownCount = outs[t] >= 0 ? keep[t].Length : 0;
            var index = picked.Select(c => gates[t][c] ? positionOwn[c] : ownCount + positionShared[c]).ToArray();
            gated[t] = g.Gather($"tasks.{tasks[t]}.{unit}.gated", sources.ToArray(), index);
        }
        return gated;
    }

    private static long[] Positions(long[] kept, long channels)
    {
        var pos = Enumerable.Repeat(-1L, (int)channels).ToArray();
        for (int i = 0; i < kept.Length; i++) pos[kept[i]] = i;
        return pos;
    }

    private static long[] Range(long n) => Enumerable.Range(0, (int)n).Select(i => (long)i).ToArray();

    internal static PrunedLayer Report(string unit, long[][] keep, long channels, string[] tasks) =>
        new(unit, channels, Enumerable.Range(0, keep.Length).ToDictionary(b => b < tasks.Length ? tasks[b] : "shared", b => (long)keep[b].Length));

    /// <summary>torchvision's block names: layer{stage}.{index}.</summary>
    private static string[] BlockNames(ResNetSpec spec) =>
        spec.Layers.SelectMany((count, s) => Enumerable.Range(0, count).Select(b => $"layer{s + 1}.{b}")).ToArray();
}
