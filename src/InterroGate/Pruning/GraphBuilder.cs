using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Tasks;
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Pruning;

/// <summary>
/// Builds a <see cref="StaticGraph"/> node by node; <see cref="Build"/> runs the dependency pass (from the
/// outputs backwards) that drops every node nobody reads. Tensors are copied to float32 CPU tensors.
/// </summary>
public sealed class GraphBuilder
{
    private readonly List<StaticNode> _nodes = [new StaticNode("input", StaticOp.Input, [], 0)];
    private readonly Dictionary<string, Tensor> _tensors = new();
    private readonly List<string[]> _nodeTensors = [[]];

    public GraphBuilder(long inputChannels) => _nodes[0] = _nodes[0] with { Channels = inputChannels };

    public const int InputNode = 0;

    public long Channels(int node) => _nodes[node].Channels;

    public int Add(StaticNode node, params (string Suffix, Tensor Value)[] tensors)
    {
        foreach (var (suffix, value) in tensors)
        {
            var copy = value.detach().cpu();
            // A model trained or converted to float64 or bf16 gives a float32 network, as every other tensor of it is.
            copy = copy.is_floating_point() && copy.dtype != float32 ? copy.to(float32) : copy.clone();
            _tensors.Add($"{node.Name}.{suffix}", copy.DetachFromDisposeScope());
        }
        _nodes.Add(node);
        _nodeTensors.Add(tensors.Select(t => $"{node.Name}.{t.Suffix}").ToArray());
        return _nodes.Count - 1;
    }

    /// <summary>A convolution with BN folded in (none: the convolution's own bias), keeping the output filters listed in <paramref name="keep"/>.</summary>
    public int FoldedConv(string name, int input, Conv2d conv, BatchNorm2d? bn, long[] keep)
    {
        if (conv.kernel_size[0] != conv.kernel_size[1] || conv.stride[0] != conv.stride[1] || conv.padding![0] != conv.padding[1] || conv.dilation[0] != conv.dilation[1])
            throw new NotSupportedException($"{name}: only square kernels, strides, paddings and dilations are supported.");
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var index = tensor(keep, dtype: int64, device: conv.weight!.device); // the model's device (Add copies the results to the CPU)
        if (bn is null)
        {
            var b0 = conv.bias is { } cb ? cb.index_select(0, index) : zeros(keep.Length);
            return Add(new StaticNode(name, StaticOp.Conv, [input], keep.Length, (int)conv.kernel_size[0], (int)conv.stride[0],
                (int)conv.padding![0], (int)conv.dilation[0], (int)conv.groups), ("weight", conv.weight!.index_select(0, index)), ("bias", b0));
        }
        // Fold in double precision: w' = w · γ/√(var+ε), b' = β − mean · γ/√(var+ε).
        var scale = bn.weight!.to(float64) / bn.running_var!.to(float64).Shifted(bn.eps).sqrt();
        var weight = (conv.weight!.to(float64) * scale.view(-1, 1, 1, 1)).index_select(0, index).to(float32);
        var bias = (bn.bias!.to(float64) - bn.running_mean!.to(float64) * scale).index_select(0, index).to(float32);
        if (conv.bias is { } b) bias = bias.Plus((b.to(float64) * scale).index_select(0, index).to(float32));
        return Add(new StaticNode(name, StaticOp.Conv, [input], keep.Length, (int)conv.kernel_size[0], (int)conv.stride[0],
            (int)conv.padding[0], (int)conv.dilation[0], (int)conv.groups), ("weight", weight), ("bias", bias));
    }

    /// <summary>
    /// A linear layer on tokens held as [B, D, 1, N]: a 1×1 convolution keeping the output features listed in
    /// <paramref name="keep"/>.
    /// </summary>
    public int TokenLinear(string name, int input, Linear linear, long[] keep)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var index = tensor(keep, dtype: int64, device: linear.weight!.device);
        var weight = linear.weight!.index_select(0, index).unsqueeze(-1).unsqueeze(-1);
        var bias = linear.bias is { } b ? b.index_select(0, index) : zeros(keep.Length);
        return Add(new StaticNode(name, StaticOp.Conv, [input], keep.Length, 1), ("weight", weight), ("bias", bias));
    }

    /// <summary>
    /// Channels [0, C) assembled from <paramref name="sources"/> (concatenated along channels) by
    /// <paramref name="index"/>. Returns the source itself when the index picks all of one source in order.
    /// </summary>
    public int Gather(string name, int[] sources, long[] index)
    {
        if (sources.Length == 1 && index.Length == Channels(sources[0]) && index.Select((v, i) => v == i).All(b => b)) return sources[0];
        return Add(new StaticNode(name, StaticOp.Gather, sources, index.Length), ("index", tensor(index, dtype: int64)));
    }

    /// <summary>Σ_t w_t ⊙ x_t; when every x_t is the same value, that value (the weights sum to 1).</summary>
    public int Mix(string name, int[] inputs, Tensor weights)
    {
        if (inputs.Distinct().Count() == 1) return inputs[0];
        return Add(new StaticNode(name, StaticOp.Mix, inputs, weights.shape[1]), ("weight", weights.to(float32)));
    }

    public int Op(string name, StaticOp op, long channels, params int[] inputs) => Add(new StaticNode(name, op, inputs, channels));

    /// <summary>The graph with only the nodes the outputs depend on, renumbered.</summary>
    public StaticGraph Build(IReadOnlyDictionary<string, int> outputs, TaskSet tasks, ImageInput input)
    {
        var live = new HashSet<int> { InputNode };
        var stack = new Stack<int>(outputs.Values);
        while (stack.Count > 0)
        {
            int n = stack.Pop();
            if (!live.Add(n)) continue;
            foreach (var i in _nodes[n].Inputs) stack.Push(i);
        }
        var map = new Dictionary<int, int>();
        var nodes = new List<StaticNode>();
        var tensors = new Dictionary<string, Tensor>();
        for (int n = 0; n < _nodes.Count; n++)
        {
            if (!live.Contains(n)) continue;
            var node = _nodes[n];
            map[n] = nodes.Count;
            nodes.Add(node with { Inputs = node.Inputs.Select(i => map[i]).ToArray() });
            foreach (var key in _nodeTensors[n]) tensors[key] = _tensors[key];
        }
        return new StaticGraph(nodes, tensors, outputs.ToDictionary(kv => kv.Key, kv => map[kv.Value]), tasks, input);
    }
}
