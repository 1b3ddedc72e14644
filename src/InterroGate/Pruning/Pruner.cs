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

/// <summary>
/// A model trained to a compute budget, pruned: the budget's kind ("macs" or "parameters"), its target, what the pruned
/// network measures, and the relative gap.
/// </summary>
public sealed record BudgetOutcome(string Kind, double Target, double Achieved)
{
    public double Gap => (Achieved - Target) / Target;
}

/// <summary>Per layer and branch, the filters kept; the cost before (gated network) and after; with a budget, how it was met.</summary>
public sealed record PruneReport(IReadOnlyList<PrunedLayer> Layers, long MacsBefore, long ParametersBefore, long MacsAfter, long ParametersAfter,
    [property: System.Text.Json.Serialization.JsonIgnore] BudgetOutcome? Budget = null)
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
        if (Budget is { } b)
            sb.AppendLine($"budget: target {b.Target / 1e6:F3} M {(b.Kind == "parameters" ? "parameters" : "MACs")}, pruned network {b.Achieved / 1e6:F3} M (gap {b.Gap:+0.0%;-0.0%;+0.0%})");
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
/// dependency pass from the heads drops every node nobody reads. Any encoder that runs a plan
/// prunes here (<see cref="EncoderPruning"/>); heads implement <see cref="IStaticHead"/>.
/// </summary>
public static class Pruner
{
    public static PruneResult Prune(InterroGateModel model, ImageInput input)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(input);
        input.Validate(nameof(input));
        if (input.Channels != model.Encoder.InChannels)
            throw new ArgumentException($"The model reads {model.Encoder.InChannels}-channel images, the input spec says {input.Channels}.");
        bool wasTraining = model.training;
        model.eval();
        using var scope = NewDisposeScope(); // the graph's tensors leave it (GraphBuilder detaches them); the rest is freed here
        try
        {
            var pattern = model.Sharing();
            var g = new GraphBuilder(input.Channels);
            var layers = new List<PrunedLayer>();
            var features = EmitEncoder(model, g, pattern, layers, input);
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

            // The counter sees convolution modules: fused units (one grouped call for the T+1 copies) run apart for the count,
            // and every copy runs (the gated network's cost), also those fixed gates leave unread.
            var fused = model.Encoder.FusedUnits?.ToArray();
            var fusion = model.Encoder.Fusion;
            bool gatesFixed = model.Encoder.GatesFixed;
            model.Encoder.Fusion = BranchFusion.Off;
            model.Encoder.GatesFixed = false;
            Analysis.CostReport before;
            // The counter's zeros are float32 on the CPU; a model in another dtype or on the GPU reads them as its own.
            var first = model.parameters().First();
            var (device, dtype) = (first.device, first.dtype);
            try { before = Analysis.CostCounter.Count(model, x => model.call(x.to(dtype, device)), [1, input.Channels, input.Height, input.Width]); }
            finally
            {
                model.Encoder.Fusion = fusion;
                if (fused is not null) model.Encoder.UseFusion(fused);
                model.Encoder.GatesFixed = gatesFixed;
            }
            using var net = new StaticNetwork(graph);
            var after = Analysis.CostCounter.Count(net, x => net.call(x), [1, input.Channels, input.Height, input.Width]);
            // A model trained to a budget: the target beside what the pruned network measures.
            var budget = model.Budget is { } b
                ? new BudgetOutcome(b.Target.Kind.ToString().ToLowerInvariant(), b.TargetCost(),
                    b.Target.Kind == BudgetKind.Parameters ? after.Params : after.Macs)
                : null;
            return new PruneResult(graph, new PruneReport(layers, before.Macs, before.Params, after.Macs, after.Params, budget));
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    private static int[] EmitEncoder(InterroGateModel model, GraphBuilder g, SharingPattern pattern, List<PrunedLayer> layers, ImageInput input) =>
        EncoderPruning.Emit(model.Encoder, model.Tasks.Names.ToArray(), g, pattern, layers, input);
}

/// <summary>A head that can write itself into a static network; returns the node of its prediction.</summary>
public interface IStaticHead
{
    int Emit(GraphBuilder graph, int input, string name);
}

/// <summary>
/// The pruning rules applied to a <see cref="GatedEncoder"/>, unit by unit in its plan's order: per branch, the kept
/// filters of a unit read that branch's full input (task t: its gated features; shared: the mix; an ungated unit's
/// reader: that branch's output), BN folded, in every term the unit sums (an identity term gathered to the kept
/// channels, a resized term resized after its convolution), then the ReLU, the gates and mix of
/// <see cref="GateAndMix"/> and any pooling. The plan's outputs give each task's features (several: resized to the
/// first and concatenated).
/// </summary>
internal static class EncoderPruning
{
    public static int[] Emit(GatedEncoder encoder, string[] tasks, GraphBuilder g, SharingPattern pattern, List<PrunedLayer> layers, ImageInput image)
    {
        int T = tasks.Length;
        string Prefix(int b) => b < T ? $"tasks.{tasks[b]}" : "shared";
        var plan = encoder.Plan;
        var units = encoder.Units;
        int n = units.Count;

        var keep = pattern.KeptPerUnit(units); // what each branch keeps of each unit

        var streams = new int[n][]; // per unit: each task's gated features then the mix (−1 where absent), or each branch's output (ungated, operations)
        int Input(int unit, int b) => unit == EncoderPlan.Image ? GraphBuilder.InputNode : streams[unit][b];
        for (int u = 0; u < n; u++)
        {
            var unit = plan.Units[u];
            var outs = new int[T + 1];
            if (unit.Op is { } op)
            {
                // Each branch that keeps the operation runs it on its own stream.
                for (int b = 0; b <= T; b++)
                {
                    var inputs = unit.Terms.Select(t => Input(t.Input, b)).ToArray();
                    outs[b] = keep[u][b].Length == 0 || inputs.Any(i => i < 0) ? -1
                        : EmitOp(g, $"{Prefix(b)}.{unit.Name}", op, encoder.Branch(b), inputs, units[u].OutChannels, image);
                }
                streams[u] = outs;
                continue;
            }
            for (int b = 0; b <= T; b++)
            {
                var kept = keep[u][b];
                if (kept.Length == 0 || unit.Terms.Any(t => Input(t.Input, b) < 0)) { outs[b] = -1; continue; }
                string name = $"{Prefix(b)}.{unit.Name}";
                int sum = -1;
                for (int i = 0; i < unit.Terms.Count; i++)
                {
                    var term = unit.Terms[i];
                    int input = Input(term.Input, b), value;
                    if (term.Layer is { } layer)
                    {
                        var (conv, norm) = layer(encoder.Branch(b));
                        value = g.FoldedConv(name + term.Suffix, input, conv, norm, kept);
                    }
                    else if (term.Linear is { } linear) value = g.TokenLinear(name + term.Suffix, input, linear(encoder.Branch(b)), kept);
                    else value = g.Gather(name + term.Suffix, [input], kept);
                    if (term.Resized) value = g.Op($"{name}{term.Suffix}.upsample", StaticOp.Resize, kept.Length, value, Input(term.ResizeLike, b));
                    sum = sum < 0 ? value : g.Op($"{name}.add{i}", StaticOp.Add, kept.Length, sum, value);
                }
                outs[b] = unit.Activation switch
                {
                    UnitActivation.Relu => g.Op($"{name}.relu", StaticOp.Relu, kept.Length, sum),
                    UnitActivation.Gelu => g.Op($"{name}.gelu", StaticOp.Gelu, kept.Length, sum),
                    _ => sum,
                };
                if (unit.Then is { } then) outs[b] = EmitOp(g, $"{name}.{OpName(then)}", then, encoder.Branch(b), [outs[b]], kept.Length, image, kept);
            }
            layers.Add(Report(unit.Name, keep[u], units[u].OutChannels, tasks));

            Func<int, string, int>? pool = unit.PoolAfter is { } p
                ? (v, name) => g.Add(new StaticNode(name, StaticOp.MaxPool, [v], g.Channels(v), p.Kernel, p.Stride, p.Padding))
                : null;
            if (units[u].Gated)
            {
                var (gated, mix) = GateAndMix(g, unit.Name, outs, pattern[units[u].GateIndex], encoder.GateLayers[units[u].GateIndex], tasks, pool);
                streams[u] = [.. gated, mix];
            }
            else streams[u] = pool is null ? outs : outs.Select((v, b) => v < 0 ? -1 : pool(v, $"{Prefix(b)}.{unit.Name}.pool")).ToArray();
        }

        // Several outputs: the others resized to the first, concatenated along channels (as the gated encoder's forward).
        return Enumerable.Range(0, T).Select(t =>
        {
            var final = plan.Outputs.Select(u => streams[u][t]).ToArray();
            if (final.Length == 1) return final[0];
            var parts = final.Select((v, i) => i == 0 ? v : g.Op($"tasks.{tasks[t]}.output{i}.upsample", StaticOp.Resize, g.Channels(v), v, final[0])).ToArray();
            return g.Op($"tasks.{tasks[t]}.concat", StaticOp.Concat, parts.Sum(g.Channels), parts);
        }).ToArray();
    }

    /// <summary>
    /// An operation of the plan in one branch of the static network (tokens held as [B, D, 1, N]), with that branch's
    /// weights; the position embeddings at the grid of <paramref name="image"/>.
    /// </summary>
    /// <param name="kept">For an operation that follows a layer (channel by channel), the layer's kept filters: its parameters of those channels.</param>
    private static int EmitOp(GraphBuilder g, string name, PlanOp op, nn.Module branch, int[] inputs, long channels, ImageInput image, long[]? kept = null)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        Tensor Rows(Tensor t) => kept is null ? t : t.index_select(0, tensor(kept, dtype: int64, device: t.device));
        switch (op)
        {
            case TokensOp tokens:
            {
                var e = tokens.Embedding(branch);
                var pos = Rows(e.PositionEmbeddings(image.Height / tokens.PatchSize, image.Width / tokens.PatchSize)[0].t()); // [D, N]
                var node = new StaticNode(name, StaticOp.Tokens, inputs, channels, Kernel: e.ClassToken is null ? 0 : 1);
                return e.ClassToken is { } cls ? g.Add(node, ("pos", pos), ("cls", Rows(cls.flatten()))) : g.Add(node, ("pos", pos));
            }
            case NormOp norm:
            {
                var ln = norm.Norm(branch);
                return g.Add(new StaticNode(name, StaticOp.LayerNorm, inputs, channels, Epsilon: ln.eps), ("weight", ln.weight!), ("bias", ln.bias!));
            }
            case AttentionOp attention:
                return g.Add(new StaticNode(name, StaticOp.Attention, inputs, channels, Groups: attention.Core(branch).Heads));
            case SumOp:
                return g.Op(name, StaticOp.Add, channels, inputs);
            case ClassTokenOp:
                return g.Add(new StaticNode(name, StaticOp.ClassToken, inputs, channels));
            case TokenMapOp map:
                return g.Add(new StaticNode(name, StaticOp.TokenMap, inputs, channels, Kernel: map.LeadingTokens, Stride: map.PatchSize));
            case ReadoutMapOp readout:
            {
                // The patches, the class token resized from 1×1 to the grid (every position the same), side by side.
                long d = channels / 2;
                int patches = g.Add(new StaticNode($"{name}.patches", StaticOp.TokenMap, inputs, d, Kernel: 1, Stride: readout.PatchSize));
                int cls = g.Add(new StaticNode($"{name}.cls", StaticOp.ClassToken, [inputs[0]], d));
                int everywhere = g.Add(new StaticNode($"{name}.cls_grid", StaticOp.Resize, [cls, patches], d));
                return g.Add(new StaticNode(name, StaticOp.Concat, [patches, everywhere], channels));
            }
            default:
                throw new NotSupportedException($"The static network has no form of the operation {op.GetType().Name} ({name}).");
        }
    }

    private static string OpName(PlanOp op) => op switch { TokensOp => "tokens", _ => op.GetType().Name.ToLowerInvariant() };

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
            mix = g.Mix($"mix.{unit}", toMix, all ? weights : weights.index_select(1, tensor(mixed, dtype: int64, device: weights.device)));
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
}
