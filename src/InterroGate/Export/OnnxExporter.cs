// ONNX export of a static network, written directly in the protobuf wire format for the operators a pruned
// network uses (Conv, Add, Relu, MaxPool, Concat, Gather, Mul, Sum, GlobalAveragePool, Flatten, Gemm; for a ViT also
// LayerNormalization, Erf, MatMul, Softmax, Reshape, Transpose, Slice, Expand).
// Message and field numbers follow onnx/onnx.proto (IR version 8, default opset 17).
using System.Text;
using InterroGate.Pruning;
using static TorchSharp.torch;

namespace InterroGate.Export;

public static class OnnxExporter
{
    public const int IrVersion = 8;
    public const int Opset = 17;
    public const string InputName = "image";

    /// <summary>Writes <paramref name="graph"/> as an ONNX model: input "image" [batch, C, H, W], one output per task, named after it.</summary>
    public static void Export(StaticGraph graph, string path)
    {
        ArgumentNullException.ThrowIfNull(graph);
        var bytes = ToBytes(graph);
        OutputFile.WriteAtomically(path, f => f.Write(bytes));
    }

    public static byte[] ToBytes(StaticGraph graph)
    {
        using var scope = NewDisposeScope(); // the host copies of the initialisers, held until their bytes are read
        var nodes = new List<byte[]>();
        var initializers = new List<byte[]>();
        var names = new string[graph.Nodes.Count];
        var rank = new int[graph.Nodes.Count];
        for (int n = 0; n < graph.Nodes.Count; n++)
        {
            var node = graph.Nodes[n];
            string output = names[n] = n == 0 ? InputName : node.Name;
            string In(int i) => names[node.Inputs[i]];
            rank[n] = node.Op switch { StaticOp.Input or StaticOp.ImagePool or StaticOp.Resize => 4, StaticOp.GlobalAvgPool or StaticOp.Linear => 2, _ => rank[node.Inputs[0]] };
            string Init(string suffix, Tensor t, long[]? shape = null)
            {
                string name = $"{node.Name}.{suffix}";
                initializers.Add(TensorProto(name, t, shape));
                return name;
            }
            switch (node.Op)
            {
                case StaticOp.Input:
                    break;
                case StaticOp.Conv:
                    nodes.Add(Node("Conv", node.Name, [In(0), Init("weight", graph.Tensor(node, "weight")), Init("bias", graph.Tensor(node, "bias"))], [output],
                        Ints("kernel_shape", node.Kernel, node.Kernel), Ints("strides", node.Stride, node.Stride),
                        Ints("pads", node.Padding, node.Padding, node.Padding, node.Padding), Ints("dilations", node.Dilation, node.Dilation), Int("group", node.Groups)));
                    break;
                case StaticOp.Linear:
                    nodes.Add(Node("Gemm", node.Name, [In(0), Init("weight", graph.Tensor(node, "weight")), Init("bias", graph.Tensor(node, "bias"))], [output], Int("transB", 1)));
                    break;
                case StaticOp.Add:
                    nodes.Add(Node("Add", node.Name, [In(0), In(1)], [output]));
                    break;
                case StaticOp.Relu:
                    nodes.Add(Node("Relu", node.Name, [In(0)], [output]));
                    break;
                case StaticOp.MaxPool:
                    nodes.Add(Node("MaxPool", node.Name, [In(0)], [output], Ints("kernel_shape", node.Kernel, node.Kernel),
                        Ints("strides", node.Stride, node.Stride), Ints("pads", node.Padding, node.Padding, node.Padding, node.Padding)));
                    break;
                case StaticOp.GlobalAvgPool:
                    nodes.Add(Node("GlobalAveragePool", node.Name, [In(0)], [output + ".pooled"]));
                    nodes.Add(Node("Flatten", node.Name + ".flatten", [output + ".pooled"], [output], Int("axis", 1)));
                    break;
                case StaticOp.ImagePool:
                    nodes.Add(Node("GlobalAveragePool", node.Name, [In(0)], [output]));
                    break;
                case StaticOp.Concat:
                    nodes.Add(Node("Concat", node.Name, node.Inputs.Select(i => names[i]).ToArray(), [output], Int("axis", 1)));
                    break;
                case StaticOp.Resize:
                {
                    // sizes = [B, C] of the value, [H, W] of the reference, read at run time.
                    string shape = output + ".shape", like = output + ".like", hw = output + ".hw", size = output + ".size";
                    nodes.Add(Node("Shape", shape, [In(0)], [shape], Int("end", 2)));
                    nodes.Add(Node("Shape", like, [In(1)], [hw], Int("start", 2)));
                    nodes.Add(Node("Concat", size, [shape, hw], [size], Int("axis", 0)));
                    nodes.Add(Node("Resize", node.Name, [In(0), "", "", size], [output],
                        Str("mode", "linear"), Str("coordinate_transformation_mode", "pytorch_half_pixel")));
                    break;
                }
                case StaticOp.Gather:
                {
                    string data = In(0);
                    if (node.Inputs.Length > 1)
                    {
                        data = output + ".concat";
                        nodes.Add(Node("Concat", data, node.Inputs.Select(i => names[i]).ToArray(), [data], Int("axis", 1)));
                    }
                    nodes.Add(Node("Gather", node.Name, [data, Init("index", graph.Tensor(node, "index"))], [output], Int("axis", 1)));
                    break;
                }
                case StaticOp.Mix:
                {
                    var w = graph.Tensor(node, "weight");
                    long[] shape = rank[n] == 4 ? [1, node.Channels, 1, 1] : [1, node.Channels];
                    var terms = new string[node.Inputs.Length];
                    for (int t = 0; t < terms.Length; t++)
                    {
                        terms[t] = $"{output}.term{t}";
                        nodes.Add(Node("Mul", terms[t], [In(t), Init($"weight{t}", w[t], shape)], [terms[t]]));
                    }
                    nodes.Add(Node("Sum", node.Name, terms, [output]));
                    break;
                }
                case StaticOp.Upsample:
                case StaticOp.UpsampleAligned:
                    nodes.Add(Node("Resize", node.Name, [In(0), "", Init("scales", tensor(new[] { 1f, 1f, node.Stride, node.Stride }))], [output],
                        Str("mode", "linear"), Str("coordinate_transformation_mode", node.Op == StaticOp.UpsampleAligned ? "align_corners" : "pytorch_half_pixel")));
                    break;
                case StaticOp.Gelu:
                {
                    // Opset 17 has no Gelu: x · (1 + erf(x / √2)) / 2.
                    string scaled = output + ".scaled", erf = output + ".erf", one = output + ".plus1", prod = output + ".prod";
                    nodes.Add(Node("Div", scaled, [In(0), Init("sqrt2", tensor(new[] { MathF.Sqrt(2) }), [])], [scaled]));
                    nodes.Add(Node("Erf", erf, [scaled], [erf]));
                    nodes.Add(Node("Add", one, [erf, Init("one", tensor(new[] { 1f }), [])], [one]));
                    nodes.Add(Node("Mul", prod, [In(0), one], [prod]));
                    nodes.Add(Node("Mul", node.Name, [prod, Init("half", tensor(new[] { 0.5f }), [])], [output]));
                    break;
                }
                case StaticOp.LayerNorm:
                {
                    // Channels last for LayerNormalization over the last axis, then back.
                    string last = output + ".last", normed = output + ".normed";
                    nodes.Add(Node("Transpose", last, [In(0)], [last], Ints("perm", 0, 2, 3, 1)));
                    nodes.Add(Node("LayerNormalization", normed, [last, Init("weight", graph.Tensor(node, "weight")), Init("bias", graph.Tensor(node, "bias"))], [normed],
                        Int("axis", -1), Float("epsilon", (float)node.Epsilon)));
                    nodes.Add(Node("Transpose", node.Name, [normed], [output], Ints("perm", 0, 3, 1, 2)));
                    break;
                }
                case StaticOp.Attention:
                {
                    // [B, 3D, 1, N] → [B, 3, heads, hd, N]; per head softmax(qᵀk/√hd) and v·Aᵀ (channels first); back to [B, D, 1, N].
                    long heads = node.Groups, hd = node.Channels / heads;
                    string split = output + ".split", q = output + ".q", k = output + ".k", v = output + ".v", qt = output + ".qt";
                    string scores = output + ".scores", scaled = output + ".scaled", attention = output + ".attention", at = output + ".at", values = output + ".values";
                    nodes.Add(Node("Reshape", split, [In(0), Init("split_shape", tensor(new long[] { 0, 3, heads, hd, -1 }))], [split]));
                    var index = new[] { q, k, v };
                    for (int i = 0; i < 3; i++)
                        nodes.Add(Node("Gather", index[i], [split, Init($"index{i}", tensor((long)i), [])], [index[i]], Int("axis", 1)));
                    nodes.Add(Node("Transpose", qt, [q], [qt], Ints("perm", 0, 1, 3, 2)));
                    nodes.Add(Node("MatMul", scores, [qt, k], [scores]));
                    nodes.Add(Node("Mul", scaled, [scores, Init("scale", tensor(new[] { (float)(1 / Math.Sqrt(hd)) }), [])], [scaled]));
                    nodes.Add(Node("Softmax", attention, [scaled], [attention], Int("axis", -1)));
                    nodes.Add(Node("Transpose", at, [attention], [at], Ints("perm", 0, 1, 3, 2)));
                    nodes.Add(Node("MatMul", values, [v, at], [values]));
                    nodes.Add(Node("Reshape", node.Name, [values, Init("out_shape", tensor(new long[] { 0, node.Channels, 1, -1 }))], [output]));
                    break;
                }
                case StaticOp.Tokens:
                {
                    string flat = output + ".flat", tokens = flat;
                    nodes.Add(Node("Reshape", flat, [In(0), Init("flat_shape", tensor(new long[] { 0, node.Channels, 1, -1 }))], [flat]));
                    if (node.Kernel == 1)
                    {
                        // The class token expanded to the batch: shape [B, D, 1, 1] from the input's batch size.
                        string shape = output + ".shape", batch = output + ".batch", size = output + ".size", cls = output + ".cls_batch";
                        tokens = output + ".with_cls";
                        nodes.Add(Node("Shape", shape, [In(0)], [shape]));
                        nodes.Add(Node("Slice", batch, [shape, Init("b0", tensor(new long[] { 0 })), Init("b1", tensor(new long[] { 1 }))], [batch]));
                        nodes.Add(Node("Concat", size, [batch, Init("cls_dims", tensor(new long[] { node.Channels, 1, 1 }))], [size], Int("axis", 0)));
                        nodes.Add(Node("Expand", cls, [Init("cls", graph.Tensor(node, "cls"), [1, node.Channels, 1, 1]), size], [cls]));
                        nodes.Add(Node("Concat", tokens, [cls, flat], [tokens], Int("axis", 3)));
                    }
                    var pos = graph.Tensor(node, "pos");
                    nodes.Add(Node("Add", node.Name, [tokens, Init("pos", pos, [1, node.Channels, 1, pos.shape[1]])], [output]));
                    break;
                }
                case StaticOp.ClassToken:
                    nodes.Add(Node("Slice", node.Name, [In(0), Init("starts", tensor(new long[] { 0 })), Init("ends", tensor(new long[] { 1 })),
                        Init("axes", tensor(new long[] { 3 }))], [output]));
                    break;
                case StaticOp.TokenMap:
                {
                    string patches = output + ".patches";
                    long h = graph.Input.Height / node.Stride, w = graph.Input.Width / node.Stride;
                    nodes.Add(Node("Slice", patches, [In(0), Init("starts", tensor(new long[] { node.Kernel })), Init("ends", tensor(new long[] { long.MaxValue })),
                        Init("axes", tensor(new long[] { 3 }))], [patches]));
                    nodes.Add(Node("Reshape", node.Name, [patches, Init("grid", tensor(new long[] { 0, node.Channels, h, w }))], [output]));
                    break;
                }
                default:
                    throw new NotSupportedException($"ONNX export: no mapping for {node.Op}.");
            }
        }
        var outputs = new List<byte[]>();
        foreach (var task in graph.Tasks)
        {
            int o = graph.Outputs[task.Name];
            nodes.Add(Node("Identity", $"output.{task.Name}", [names[o]], [task.Name]));
            outputs.Add(ValueInfo(task.Name, rank[o] == 4
                ? [null, graph.Nodes[o].Channels, graph.Input.Height, graph.Input.Width] // dense outputs are at the input's resolution
                : [null, graph.Nodes[o].Channels]));
        }

        var g = new ProtoWriter();
        foreach (var node in nodes) g.Bytes(1, node);
        g.String(2, "interrogate_static_network");
        foreach (var init in initializers) g.Bytes(5, init);
        g.Bytes(11, ValueInfo(InputName, [null, graph.Input.Channels, graph.Input.Height, graph.Input.Width]));
        foreach (var o in outputs) g.Bytes(12, o);

        var model = new ProtoWriter();
        model.Int64(1, IrVersion);
        model.String(2, "InterroGate");
        model.String(3, typeof(OnnxExporter).Assembly.GetName().Version?.ToString() ?? "0");
        model.Bytes(7, g.ToArray());
        var opset = new ProtoWriter();
        opset.String(1, "");
        opset.Int64(2, Opset);
        model.Bytes(8, opset.ToArray());
        var meta = new ProtoWriter(); // metadata_props: the input normalisation, for tools that feed raw pixels
        meta.String(1, "input_normalisation");
        meta.String(2, $"x = (pixel / 255 - {graph.Input.Mean:R}) / {graph.Input.Std:R}");
        model.Bytes(14, meta.ToArray());
        return model.ToArray();
    }

    private static byte[] Node(string op, string name, string[] inputs, string[] outputs, params byte[][] attributes)
    {
        var w = new ProtoWriter();
        foreach (var i in inputs) w.String(1, i);
        foreach (var o in outputs) w.String(2, o);
        w.String(3, name);
        w.String(4, op);
        foreach (var a in attributes) w.Bytes(5, a);
        return w.ToArray();
    }

    private const int AttributeFloat = 1, AttributeInt = 2, AttributeString = 3, AttributeInts = 7;

    private static byte[] Float(string name, float value)
    {
        var w = new ProtoWriter();
        w.String(1, name);
        w.Fixed32(2, value);
        w.Int64(20, AttributeFloat);
        return w.ToArray();
    }

    private static byte[] Str(string name, string value)
    {
        var w = new ProtoWriter();
        w.String(1, name);
        w.String(4, value);
        w.Int64(20, AttributeString);
        return w.ToArray();
    }

    private static byte[] Int(string name, long value)
    {
        var w = new ProtoWriter();
        w.String(1, name);
        w.Int64(3, value);
        w.Int64(20, AttributeInt);
        return w.ToArray();
    }

    private static byte[] Ints(string name, params long[] values)
    {
        var w = new ProtoWriter();
        w.String(1, name);
        foreach (var v in values) w.Int64(8, v);
        w.Int64(20, AttributeInts);
        return w.ToArray();
    }

    private const int ElementFloat = 1, ElementInt64 = 7;

    private static byte[] TensorProto(string name, Tensor t, long[]? shape)
    {
        var c = t.detach().cpu().contiguous();
        int type = c.dtype switch
        {
            ScalarType.Float32 => ElementFloat,
            ScalarType.Int64 => ElementInt64,
            _ => throw new NotSupportedException($"ONNX export: tensor '{name}' is {c.dtype}; only float32 and int64 are written."),
        };
        var w = new ProtoWriter();
        foreach (var d in shape ?? c.shape) w.Int64(1, d);
        w.Int64(2, type);
        w.String(8, name);
        var raw = new byte[c.numel() * c.ElementSize];
        if (raw.Length > 0) c.bytes.CopyTo(raw);
        w.Bytes(9, raw);
        return w.ToArray();
    }

    /// <summary>A float tensor value; null dimensions are the symbolic batch size.</summary>
    private static byte[] ValueInfo(string name, long?[] dims)
    {
        var shape = new ProtoWriter();
        foreach (var d in dims)
        {
            var dim = new ProtoWriter();
            if (d is long v) dim.Int64(1, v); else dim.String(2, "batch");
            shape.Bytes(1, dim.ToArray());
        }
        var tensorType = new ProtoWriter();
        tensorType.Int64(1, ElementFloat);
        tensorType.Bytes(2, shape.ToArray());
        var type = new ProtoWriter();
        type.Bytes(1, tensorType.ToArray());
        var w = new ProtoWriter();
        w.String(1, name);
        w.Bytes(2, type.ToArray());
        return w.ToArray();
    }

    /// <summary>The protobuf wire format for the field kinds ONNX needs (varints and length-delimited fields).</summary>
    private sealed class ProtoWriter
    {
        private readonly MemoryStream _s = new();

        public void Int64(int field, long value)
        {
            Varint((ulong)(field << 3));
            Varint((ulong)value);
        }

        public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public void Fixed32(int field, float value)
        {
            Varint((ulong)(field << 3 | 5));
            Span<byte> b = stackalloc byte[4];
            BitConverter.TryWriteBytes(b, value); // little-endian on every platform .NET runs this on
            _s.Write(b);
        }

        public void Bytes(int field, byte[] value)
        {
            Varint((ulong)(field << 3 | 2));
            Varint((ulong)value.Length);
            _s.Write(value);
        }

        private void Varint(ulong v)
        {
            while (v >= 0x80)
            {
                _s.WriteByte((byte)(v | 0x80));
                v >>= 7;
            }
            _s.WriteByte((byte)v);
        }

        public byte[] ToArray() => _s.ToArray();
    }
}
