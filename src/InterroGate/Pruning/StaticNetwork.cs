using InterroGate.Export;
using InterroGate.Tasks;
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Pruning;

/// <summary>
/// Runs a <see cref="StaticGraph"/> with TorchSharp: every task's prediction from one forward pass.
/// Convolutions and linear layers are real <see cref="Conv2d"/> / <see cref="Linear"/> modules (so the one
/// <see cref="Analysis.CostCounter"/> counts them); mix weights are parameters, gather indices buffers.
/// Module names are the node names with '.' replaced by '_'.
/// </summary>
public sealed class StaticNetwork : nn.Module<Tensor, Dictionary<string, Tensor>>
{
    private readonly StaticGraph _graph;
    private readonly nn.Module?[] _modules;
    private readonly Tensor?[] _weights; // mix weights [T, C, 1, 1] (or [T, C]), gather indices, position embeddings [D, N]
    private readonly Tensor?[] _classTokens; // class tokens [D] of token nodes
    // The registered names of those tensors: Module.to (a move to the GPU, a dtype change) replaces registered
    // parameters and buffers with new tensors and disposes the old ones, so the arrays are filled again by name.
    private readonly string?[] _weightNames, _classTokenNames;

    public StaticNetwork(StaticGraph graph) : base(nameof(StaticNetwork))
    {
        _graph = graph;
        _modules = new nn.Module?[graph.Nodes.Count];
        _weights = new Tensor?[graph.Nodes.Count];
        _gatherPlans = new GatherPlan?[graph.Nodes.Count];
        _classTokens = new Tensor?[graph.Nodes.Count];
        _weightNames = new string?[graph.Nodes.Count];
        _classTokenNames = new string?[graph.Nodes.Count];
        using var scope = NewDisposeScope(); // TorchSharp's initialisation temporaries; registered parameters leave it with their modules
        using var _ = no_grad();
        for (int n = 0; n < graph.Nodes.Count; n++)
        {
            var node = graph.Nodes[n];
            string key = node.Name.Replace('.', '_');
            switch (node.Op)
            {
                case StaticOp.Conv:
                {
                    var w = graph.Tensor(node, "weight");
                    var conv = nn.Conv2d(w.shape[1] * node.Groups, w.shape[0], kernel_size: w.shape[2], stride: node.Stride,
                        padding: node.Padding, dilation: node.Dilation, groups: node.Groups, bias: true);
                    conv.weight!.copy_(w);
                    conv.bias!.copy_(graph.Tensor(node, "bias"));
                    _modules[n] = conv;
                    register_module(key, conv);
                    break;
                }
                case StaticOp.Linear:
                {
                    var w = graph.Tensor(node, "weight");
                    var linear = nn.Linear(w.shape[1], w.shape[0]);
                    linear.weight!.copy_(w);
                    linear.bias!.copy_(graph.Tensor(node, "bias"));
                    _modules[n] = linear;
                    register_module(key, linear);
                    break;
                }
                case StaticOp.MaxPool:
                    _modules[n] = nn.MaxPool2d(node.Kernel, node.Stride, node.Padding);
                    break;
                case StaticOp.LayerNorm:
                {
                    var ln = nn.LayerNorm(node.Channels, eps: node.Epsilon);
                    ln.weight!.copy_(graph.Tensor(node, "weight"));
                    ln.bias!.copy_(graph.Tensor(node, "bias"));
                    _modules[n] = ln;
                    register_module(key, ln);
                    break;
                }
                case StaticOp.Attention:
                {
                    var core = new Backbones.AttentionCore(node.Groups);
                    _modules[n] = core;
                    register_module(key, core);
                    break;
                }
                case StaticOp.Tokens:
                {
                    // The class token and position embeddings are parameters of the network (counted as such).
                    var pos = new Parameter(Copy(graph.Tensor(node, "pos"), float32), requires_grad: false);
                    register_parameter(key + "_pos", pos);
                    (_weights[n], _weightNames[n]) = (pos, key + "_pos");
                    if (node.Kernel == 1)
                    {
                        var cls = new Parameter(Copy(graph.Tensor(node, "cls"), float32), requires_grad: false);
                        register_parameter(key + "_cls", cls);
                        (_classTokens[n], _classTokenNames[n]) = (cls, key + "_cls");
                    }
                    break;
                }
                case StaticOp.Mix:
                {
                    var p = new Parameter(Copy(graph.Tensor(node, "weight"), float32), requires_grad: false);
                    register_parameter(key, p);
                    (_weights[n], _weightNames[n]) = (p, key);
                    break;
                }
                case StaticOp.Gather:
                {
                    var index = Copy(graph.Tensor(node, "index"), int64);
                    register_buffer(key, index);
                    (_weights[n], _weightNames[n]) = (index, key);
                    break;
                }
            }
        }
        eval();
    }

    /// <summary>A copy of <paramref name="t"/> in <paramref name="type"/> that belongs to the network, whatever dispose scope is open.</summary>
    private static Tensor Copy(Tensor t, ScalarType type)
    {
        using var scope = NewDisposeScope();
        return t.to(type).clone().DetachFromDisposeScope();
    }

    public StaticGraph Graph => _graph;
    public TaskSet Tasks => _graph.Tasks;

    public override Dictionary<string, Tensor> forward(Tensor x) => Run(x, null);

    /// <summary>
    /// Runs the network once and returns the wall time of every node (ms, in graph order): where inference
    /// time goes. Times include the synchronisation a CPU kernel implies; on CUDA they are launch times only.
    /// </summary>
    public IReadOnlyList<(StaticNode Node, double Ms)> Profile(Tensor x)
    {
        var times = new List<(StaticNode, double)>();
        using var _ = no_grad();
        foreach (var t in Run(x, (n, ms) => times.Add((_graph.Nodes[n], ms))).Values) t.Dispose();
        return times;
    }

    /// <summary>Fills the tensor arrays again from the registered parameters and buffers where Module.to replaced them.</summary>
    private void Refresh()
    {
        bool Stale(Tensor? t) => t is not null && t.IsInvalid;
        if (!_weights.Any(Stale) && !_classTokens.Any(Stale)) return;
        var registered = named_parameters(recurse: false).Select(p => (p.name, (Tensor)p.parameter))
            .Concat(named_buffers(recurse: false)).ToDictionary(p => p.Item1, p => p.Item2);
        for (int n = 0; n < _weights.Length; n++)
        {
            if (_weightNames[n] is { } w) _weights[n] = registered[w];
            if (_classTokenNames[n] is { } c) _classTokens[n] = registered[c];
        }
    }

    private Dictionary<string, Tensor> Run(Tensor x, Action<int, double>? onNode)
    {
        Refresh();
        var nodes = _graph.Nodes;
        var values = new Tensor[nodes.Count];
        var lastUse = LastUse();
        using (var scope = NewDisposeScope())
        {
            for (int n = 0; n < nodes.Count; n++)
            {
                var node = nodes[n];
                Tensor In(int i) => values[node.Inputs[i]];
                long start = onNode is null ? 0 : System.Diagnostics.Stopwatch.GetTimestamp();
                // A value no later node reads may be overwritten in place (ReLU and the residual add).
                bool Reusable(int i) => node.Inputs[i] != 0 && lastUse[node.Inputs[i]] == n && !IsOutput(node.Inputs[i])
                                        && node.Inputs.Count(v => v == node.Inputs[i]) == 1;
                values[n] = node.Op switch
                {
                    StaticOp.Input => x,
                    StaticOp.Conv => ((Conv2d)_modules[n]!).call(In(0)),
                    StaticOp.Linear => ((Linear)_modules[n]!).call(In(0)),
                    StaticOp.MaxPool => ((MaxPool2d)_modules[n]!).call(In(0)),
                    StaticOp.Add => Reusable(0) ? In(0).PlusInPlace(In(1)) : In(0).Plus(In(1)),
                    StaticOp.Relu => Reusable(0) ? In(0).relu_() : nn.functional.relu(In(0)),
                    StaticOp.GlobalAvgPool => In(0).mean([2, 3]),
                    StaticOp.ImagePool => In(0).mean([2, 3], keepdim: true),
                    StaticOp.Concat => cat(node.Inputs.Select(i => values[i]).ToArray(), 1),
                    StaticOp.Resize => Heads.DenseOutput.ResizeLike(In(0), In(1)),
                    StaticOp.Gather => Gather(n, node, values),
                    StaticOp.Mix => Mix(node, values, _weights[n]!),
                    StaticOp.Gelu => nn.functional.gelu(In(0)),
                    StaticOp.Upsample => Heads.DptHead.Upsample(In(0), node.Stride, alignCorners: false),
                    StaticOp.UpsampleAligned => Heads.DptHead.Upsample(In(0), node.Stride, alignCorners: true),
                    StaticOp.ClassToken => In(0)[.., .., .., ..1],
                    // Tokens are held as [B, D, 1, N]: channels first, like every other value of the graph.
                    StaticOp.LayerNorm => ((LayerNorm)_modules[n]!).call(In(0).permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
                    StaticOp.Attention => ((Backbones.AttentionCore)_modules[n]!).call(In(0).flatten(2).transpose(1, 2)).transpose(1, 2).unsqueeze(2),
                    StaticOp.Tokens => Tokens(In(0), _weights[n]!, _classTokens[n]),
                    StaticOp.TokenMap => In(0)[.., .., .., node.Kernel..].reshape(In(0).shape[0], node.Channels, In(1).shape[2] / node.Stride, In(1).shape[3] / node.Stride),
                    _ => throw new InvalidOperationException($"Unknown operator {node.Op}."),
                };
                if (onNode is not null) onNode(n, System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                // Free what no later node reads (keeps peak memory at that of a plain network).
                foreach (var i in node.Inputs)
                    if (lastUse[i] == n && i != 0 && !IsOutput(i) && !ReferenceEquals(values[i], values[n])) values[i].Dispose();
            }
            var result = _graph.Outputs.ToDictionary(kv => kv.Key, kv => values[kv.Value]);
            foreach (var t in result.Values) t.MoveToOuterDisposeScope();
            return result;
        }
    }

    /// <summary>
    /// The gather in (at most) one copy per source: the channels of the largest source are selected into the
    /// output, then every other source's channels are copied to their places, instead of concatenating all
    /// sources and selecting from the concatenation (two copies of everything).
    /// </summary>
    private Tensor Gather(int n, StaticNode node, Tensor[] values)
    {
        if (node.Inputs.Length == 1) return values[node.Inputs[0]].index_select(1, _weights[n]!);
        var index = _weights[n]!;
        var plan = _gatherPlans[n];
        // Built once, and again only after a move to another device (torch.Device compares by reference: compare the
        // type and index, or every call would build it anew, with a copy of the index to the host).
        if (plan is null || plan.MainIndex.device_type != index.device_type || plan.MainIndex.device_index != index.device_index)
        {
            plan?.Dispose();
            plan = _gatherPlans[n] = GatherPlan.Create(node, _graph, index);
            GatherPlansBuilt++;
        }
        var output = values[node.Inputs[plan.Main]].index_select(1, plan.MainIndex);
        foreach (var (source, outPositions, sourcePositions) in plan.Others)
        {
            var x = values[node.Inputs[source]];
            output.index_copy_(1, outPositions, sourcePositions is null ? x : x.index_select(1, sourcePositions));
        }
        return output;
    }

    private readonly GatherPlan?[] _gatherPlans;

    /// <summary>Gather plans built so far: one per gather node, and again after a move to another device.</summary>
    internal int GatherPlansBuilt { get; private set; }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            for (int n = 0; n < _gatherPlans.Length; n++)
            {
                _gatherPlans[n]?.Dispose();
                _gatherPlans[n] = null;
            }
        base.Dispose(disposing);
    }

    private sealed record GatherPlan(int Main, Tensor MainIndex, (int Source, Tensor OutPositions, Tensor? SourcePositions)[] Others) : IDisposable
    {
        public void Dispose()
        {
            MainIndex.Dispose();
            foreach (var (_, outPositions, sourcePositions) in Others) { outPositions.Dispose(); sourcePositions?.Dispose(); }
        }

        public static GatherPlan Create(StaticNode node, StaticGraph graph, Tensor index)
        {
            var channels = node.Inputs.Select(i => graph.Nodes[i].Channels).ToArray();
            var offsets = new long[channels.Length];
            for (int s = 1; s < channels.Length; s++) offsets[s] = offsets[s - 1] + channels[s - 1];
            int SourceOf(long position) => Array.FindLastIndex(offsets, o => o <= position);
            var idx = index.cpu().data<long>().ToArray();
            var device = index.device;
            int main = Enumerable.Range(0, channels.Length).MaxBy(s => idx.Count(v => SourceOf(v) == s));
            // Channels from other sources first take channel 0 of the main source and are overwritten after.
            var mainIndex = idx.Select(v => SourceOf(v) == main ? v - offsets[main] : 0).ToArray();
            var others = new List<(int, Tensor, Tensor?)>();
            for (int s = 0; s < channels.Length; s++)
            {
                if (s == main) continue;
                var outPositions = Enumerable.Range(0, idx.Length).Where(c => SourceOf(idx[c]) == s).Select(c => (long)c).ToArray();
                if (outPositions.Length == 0) continue;
                var sourcePositions = outPositions.Select(c => idx[c] - offsets[s]).ToArray();
                bool whole = sourcePositions.Length == channels[s] && sourcePositions.Select((v, i) => v == i).All(b => b);
                others.Add((s, tensor(outPositions, dtype: int64, device: device).DetachFromDisposeScope(),
                    whole ? null : tensor(sourcePositions, dtype: int64, device: device).DetachFromDisposeScope()));
            }
            return new GatherPlan(main, tensor(mainIndex, dtype: int64, device: device).DetachFromDisposeScope(), others.ToArray());
        }
    }

    /// <summary>A patch grid [B, D, h, w] to tokens [B, D, 1, N]: the class token first (where there is one), position embeddings added.</summary>
    private static Tensor Tokens(Tensor map, Tensor pos, Tensor? cls)
    {
        long b = map.shape[0], d = map.shape[1];
        var tokens = map.flatten(2).unsqueeze(2);
        if (cls is not null) tokens = cat([cls.view(1, d, 1, 1).expand(b, -1, -1, -1), tokens], 3);
        if (tokens.shape[3] != pos.shape[1])
            throw new ArgumentException($"The static network's position embeddings are for {pos.shape[1]} tokens, the image gives {tokens.shape[3]}: feed images of its input size.");
        return tokens.Plus(pos.view(1, d, 1, -1));
    }

    private static Tensor Mix(StaticNode node, Tensor[] values, Tensor weight)
    {
        var first = values[node.Inputs[0]];
        long[] shape = first.dim() == 4 ? [1, weight.shape[1], 1, 1] : [1, weight.shape[1]];
        var sum = first * weight[0].view(shape);
        for (int t = 1; t < node.Inputs.Length; t++) sum = sum.addcmul_(values[node.Inputs[t]], weight[t].view(shape), Scalars.One);
        return sum;
    }

    private int[]? _lastUse;
    private int[] LastUse()
    {
        if (_lastUse is not null) return _lastUse;
        var last = new int[_graph.Nodes.Count];
        for (int n = 0; n < _graph.Nodes.Count; n++)
            foreach (var i in _graph.Nodes[n].Inputs) last[i] = n;
        return _lastUse = last;
    }

    private bool IsOutput(int value) => _graph.Outputs.Values.Contains(value);
}
