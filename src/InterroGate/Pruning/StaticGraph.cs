// The static multi-task network InterroGate leaves after pruning (arXiv 2402.16848, Sec. 3.3): a plain
// feed-forward graph of convolutions, channel gathers and fixed mixes that predicts every task in one pass.
using System.Text.Json;
using System.Text.Json.Serialization;
using InterroGate.Data;
using InterroGate.Tasks;
using InterroGate.Export;
using static TorchSharp.torch;

namespace InterroGate.Pruning;

/// <summary>The operators a static network is built from.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<StaticOp>))]
public enum StaticOp
{
    /// <summary>The input image [B, C, H, W].</summary>
    Input,
    /// <summary>2-D convolution with bias (BN folded in): <c>{name}.weight</c>, <c>{name}.bias</c>.</summary>
    Conv,
    /// <summary>Element-wise sum of two values.</summary>
    Add,
    Relu,
    MaxPool,
    /// <summary>Concatenates its inputs along channels, then picks channels by <c>{name}.index</c> (int64).</summary>
    Gather,
    /// <summary>Σ_t w_t ⊙ x_t with per-channel weights <c>{name}.weight</c> [T, C] (the fixed β mix).</summary>
    Mix,
    /// <summary>Mean over H and W: [B, C, H, W] to [B, C].</summary>
    GlobalAvgPool,
    /// <summary>Fully connected layer: <c>{name}.weight</c> [out, in], <c>{name}.bias</c>.</summary>
    Linear,
    /// <summary>Concatenates its inputs along channels (the branches of ASPP).</summary>
    Concat,
    /// <summary>Mean over H and W kept as a 1×1 map: [B, C, H, W] to [B, C, 1, 1] (ASPP's image-level branch).</summary>
    ImagePool,
    /// <summary>Bilinear resize of the first input to the height and width of the second (PyTorch's align_corners = false).</summary>
    Resize,
    /// <summary>GELU (the exact, erf form).</summary>
    Gelu,
    /// <summary>Bilinear upsampling by the integer factor <see cref="StaticNode.Stride"/> (align_corners = false).</summary>
    Upsample,
    /// <summary>Layer norm over the channels (dim 1) at every position: <c>{name}.weight</c>, <c>{name}.bias</c>, <see cref="StaticNode.Epsilon"/>.</summary>
    LayerNorm,
    /// <summary>
    /// Multi-head self-attention on tokens held as [B, 3D, 1, N] (q, k, v, then <see cref="StaticNode.Groups"/> heads along
    /// channels, as a fused projection gives them) to [B, D, 1, N].
    /// </summary>
    Attention,
    /// <summary>
    /// A patch grid [B, D, h, w] to tokens [B, D, 1, N]: the patches in row order, after <c>{name}.cls</c> [D] when
    /// <see cref="StaticNode.Kernel"/> is 1, plus <c>{name}.pos</c> [D, N].
    /// </summary>
    Tokens,
    /// <summary>
    /// Tokens [B, D, 1, N] to the patch grid [B, D, H/p, W/p] of the image (the second input), the first
    /// <see cref="StaticNode.Kernel"/> tokens left out; p = <see cref="StaticNode.Stride"/>.
    /// </summary>
    TokenMap,
    /// <summary>The first token of [B, D, 1, N] (the class token) as [B, D, 1, 1].</summary>
    ClassToken,
    /// <summary>Bilinear upsampling by the integer factor <see cref="StaticNode.Stride"/> with align_corners = true (DPT's decoder).</summary>
    UpsampleAligned,
}

/// <summary>
/// One node; its output is the value with the node's index. <see cref="Channels"/>: channels (or features) of
/// the output. Convolution and pooling geometry applies to both spatial axes.
/// </summary>
public sealed record StaticNode(
    string Name, StaticOp Op, int[] Inputs, long Channels,
    int Kernel = 0, int Stride = 1, int Padding = 0, int Dilation = 1, int Groups = 1, double Epsilon = 0);

/// <summary>
/// A static network: nodes in execution order, their tensors by name, one output node per task, and the
/// input it expects. Pure data: run it with <see cref="StaticNetwork"/>, store it with
/// <see cref="StaticModelFile"/>, export it with <see cref="OnnxExporter"/>. It owns its tensors: whoever makes or
/// loads a graph disposes it (a <see cref="StaticNetwork"/> holds copies of its own).
/// </summary>
public sealed class StaticGraph : IDisposable
{
    public StaticGraph(IReadOnlyList<StaticNode> nodes, IReadOnlyDictionary<string, Tensor> tensors,
        IReadOnlyDictionary<string, int> outputs, TaskSet tasks, ImageInput input)
    {
        Nodes = nodes;
        Tensors = tensors;
        Outputs = outputs;
        Tasks = tasks;
        Input = input;
        Validate();
    }

    public IReadOnlyList<StaticNode> Nodes { get; }
    public IReadOnlyDictionary<string, Tensor> Tensors { get; }

    /// <summary>The same network for another input size, holding its own handles to the same tensors.</summary>
    public StaticGraph WithInput(ImageInput input)
    {
        var aliases = Tensors.ToDictionary(kv => kv.Key, kv => kv.Value.alias().DetachFromDisposeScope());
        try
        {
            return new(Nodes, aliases, Outputs, Tasks, input);
        }
        catch
        {
            foreach (var t in aliases.Values) t.Dispose(); // an input this network cannot read: nothing left behind
            throw;
        }
    }

    /// <summary>Frees its tensors.</summary>
    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
    }
    /// <summary>Task name to the node whose value is that task's prediction.</summary>
    public IReadOnlyDictionary<string, int> Outputs { get; }
    public TaskSet Tasks { get; }
    public ImageInput Input { get; }

    /// <summary>The tensor <c>{node}.{suffix}</c>.</summary>
    public Tensor Tensor(StaticNode node, string suffix) =>
        Tensors.TryGetValue($"{node.Name}.{suffix}", out var t) ? t : throw new InvalidDataException($"Static network: node '{node.Name}' has no tensor '{suffix}'.");

    /// <summary>Nodes each task's prediction depends on (itself included), by task.</summary>
    public IReadOnlyDictionary<string, HashSet<int>> Cones() =>
        Outputs.ToDictionary(kv => kv.Key, kv => Ancestors([kv.Value]));

    /// <summary>Every node whose value reaches one of <paramref name="roots"/>.</summary>
    public HashSet<int> Ancestors(IEnumerable<int> roots)
    {
        var seen = new HashSet<int>();
        var stack = new Stack<int>(roots);
        while (stack.Count > 0)
        {
            int n = stack.Pop();
            if (!seen.Add(n)) continue;
            foreach (var i in Nodes[n].Inputs) stack.Push(i);
        }
        return seen;
    }

    private void Validate()
    {
        using var scope = NewDisposeScope(); // the index checks' minima and maxima
        if (Nodes.Count == 0 || Nodes[0].Op != StaticOp.Input) throw new InvalidDataException("Static network: the first node must be the input.");
        var names = new HashSet<string>();
        for (int n = 0; n < Nodes.Count; n++)
        {
            var node = Nodes[n];
            if (!names.Add(node.Name)) throw new InvalidDataException($"Static network: two nodes are named '{node.Name}'.");
            if (node.Op == StaticOp.Input && n != 0) throw new InvalidDataException($"Static network: node '{node.Name}' is a second input.");
            foreach (var i in node.Inputs)
                if (i < 0 || i >= n) throw new InvalidDataException($"Static network: node '{node.Name}' reads value {i}, which is not computed before it.");
            int arity = node.Op switch { StaticOp.Input => 0, StaticOp.Add or StaticOp.Resize or StaticOp.TokenMap => 2, StaticOp.Gather or StaticOp.Mix or StaticOp.Concat => -1, _ => 1 };
            if (arity >= 0 && node.Inputs.Length != arity || arity < 0 && node.Inputs.Length == 0)
                throw new InvalidDataException($"Static network: node '{node.Name}' ({node.Op}) has {node.Inputs.Length} inputs.");
            foreach (var suffix in node.Op switch
            {
                StaticOp.Conv or StaticOp.Linear or StaticOp.LayerNorm => new[] { "weight", "bias" },
                StaticOp.Tokens => node.Kernel == 1 ? ["pos", "cls"] : ["pos"],
                StaticOp.Mix => ["weight"],
                StaticOp.Gather => ["index"],
                _ => [],
            })
                Tensor(node, suffix);
            CheckShapes(node);
        }
        if (Nodes[0].Channels != Input.Channels)
            throw new InvalidDataException($"Static network: the input node has {Nodes[0].Channels} channels and the input {Input.Channels}.");
        foreach (var task in Tasks)
        {
            if (!Outputs.TryGetValue(task.Name, out int o) || o <= 0 || o >= Nodes.Count)
                throw new InvalidDataException($"Static network: no output node for task '{task.Name}'.");
            if (Nodes[o].Channels != task.Outputs)
                throw new InvalidDataException($"Static network: task '{task.Name}' ({task.Kind}) has {task.Outputs} output{(task.Outputs == 1 ? "" : "s")}, " +
                                               $"and its output node '{Nodes[o].Name}' gives {Nodes[o].Channels}.");
        }
    }

    /// <summary>Every tensor has the shape its node's geometry needs, so a bad file fails here, by name, not inside a kernel.</summary>
    private void CheckShapes(StaticNode node)
    {
        long In(int i) => Nodes[node.Inputs[i]].Channels;
        void Expect(string suffix, params long[] shape)
        {
            var t = Tensor(node, suffix);
            if (!t.shape.SequenceEqual(shape))
                throw new InvalidDataException($"Static network: tensor '{node.Name}.{suffix}' has shape [{string.Join(", ", t.shape)}], node {node.Op} needs [{string.Join(", ", shape)}].");
        }
        switch (node.Op)
        {
            case StaticOp.Conv:
                if (node.Groups < 1 || In(0) % node.Groups != 0) throw new InvalidDataException($"Static network: node '{node.Name}' has {node.Groups} groups for {In(0)} input channels.");
                Expect("weight", node.Channels, In(0) / node.Groups, node.Kernel, node.Kernel);
                Expect("bias", node.Channels);
                break;
            case StaticOp.Linear:
                Expect("weight", node.Channels, In(0));
                Expect("bias", node.Channels);
                break;
            case StaticOp.Mix:
                if (node.Inputs.Any(i => Nodes[i].Channels != node.Channels)) throw new InvalidDataException($"Static network: node '{node.Name}' mixes values of different widths.");
                Expect("weight", node.Inputs.Length, node.Channels);
                break;
            case StaticOp.Gather:
            {
                Expect("index", node.Channels);
                long total = node.Inputs.Sum(i => Nodes[i].Channels);
                var index = Tensor(node, "index");
                if (index.dtype != ScalarType.Int64 || node.Channels > 0 && (index.min().item<long>() < 0 || index.max().item<long>() >= total))
                    throw new InvalidDataException($"Static network: tensor '{node.Name}.index' must hold int64 channel numbers below {total}.");
                break;
            }
            case StaticOp.Add:
                if (In(0) != node.Channels || In(1) != node.Channels) throw new InvalidDataException($"Static network: node '{node.Name}' adds values of different widths.");
                break;
            case StaticOp.Concat:
                if (node.Inputs.Sum(i => Nodes[i].Channels) != node.Channels) throw new InvalidDataException($"Static network: node '{node.Name}' concatenates {node.Inputs.Sum(i => Nodes[i].Channels)} channels into {node.Channels}.");
                break;
            case StaticOp.Upsample:
            case StaticOp.UpsampleAligned:
                if (node.Stride < 1) throw new InvalidDataException($"Static network: node '{node.Name}' needs an upsampling factor ≥ 1.");
                if (In(0) != node.Channels) throw new InvalidDataException($"Static network: node '{node.Name}' changes the width of its input.");
                break;
            case StaticOp.Resize:
            case StaticOp.Gelu:
                if (In(0) != node.Channels) throw new InvalidDataException($"Static network: node '{node.Name}' changes the width of its input.");
                break;
            case StaticOp.LayerNorm:
                if (In(0) != node.Channels || !(node.Epsilon > 0)) throw new InvalidDataException($"Static network: node '{node.Name}' needs its input's width and an epsilon > 0.");
                Expect("weight", node.Channels);
                Expect("bias", node.Channels);
                break;
            case StaticOp.Attention:
                if (In(0) != 3 * node.Channels || node.Groups < 1 || node.Channels % node.Groups != 0)
                    throw new InvalidDataException($"Static network: node '{node.Name}' needs 3 × {node.Channels} input channels and heads dividing {node.Channels}; has {In(0)} and {node.Groups}.");
                break;
            case StaticOp.Tokens:
            {
                if (In(0) != node.Channels || node.Kernel is not (0 or 1)) throw new InvalidDataException($"Static network: node '{node.Name}' needs its input's width and 0 or 1 class token.");
                var pos = Tensor(node, "pos");
                if (pos.dim() != 2 || pos.shape[0] != node.Channels) throw new InvalidDataException($"Static network: tensor '{node.Name}.pos' must be [{node.Channels}, tokens].");
                if (node.Kernel == 1) Expect("cls", node.Channels);
                break;
            }
            case StaticOp.ClassToken:
                if (In(0) != node.Channels) throw new InvalidDataException($"Static network: node '{node.Name}' changes the width of its input.");
                break;
            case StaticOp.TokenMap:
                if (In(0) != node.Channels || node.Stride < 1 || node.Kernel < 0) throw new InvalidDataException($"Static network: node '{node.Name}' needs its input's width, a patch size ≥ 1 and no negative token count.");
                break;
        }
    }

    // ---- Serialisation of the structure (the tensors travel separately, by name) ----

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingDefault,
        Converters = { new JsonStringEnumConverter() },
    };

    private sealed record Structure(IReadOnlyList<StaticNode> Nodes, IReadOnlyDictionary<string, int> Outputs, IReadOnlyList<TaskSpec> Tasks, ImageInput Input);

    /// <summary>The structure (nodes, outputs, tasks, input) as JSON.</summary>
    public string StructureJson() => JsonSerializer.Serialize(new Structure(Nodes, Outputs, Tasks.ToArray(), Input), Json);

    /// <summary>Rebuilds a graph from <see cref="StructureJson"/> and its tensors.</summary>
    public static StaticGraph FromStructure(string json, IReadOnlyDictionary<string, Tensor> tensors)
    {
        var s = JsonSerializer.Deserialize<Structure>(json, Json) ?? throw new InvalidDataException("Static network: empty structure.");
        if (Configuration.JsonNulls.FirstNull(s) is { } key) throw new InvalidDataException($"Static network: '{key}' is null.");
        return new StaticGraph(s.Nodes, tensors, s.Outputs, new TaskSet(s.Tasks), s.Input);
    }
}
