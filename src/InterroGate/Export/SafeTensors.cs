// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}, then the
// raw little-endian tensor bytes. Our own reader and writer.
using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using InterroGate.Pruning;
using static TorchSharp.torch;

namespace InterroGate.Export;

/// <summary>A safetensors file that cannot be read; the message names the file, and the tensor where one is at fault.</summary>
public sealed class SafeTensorsException(string path, string? tensorName, string problem)
    : Exception(tensorName is null ? $"{path}: {problem}" : $"{path}: tensor '{tensorName}': {problem}")
{
    public string Path { get; } = path;
    public string? TensorName { get; } = tensorName;
}

/// <summary>Names that did not match when loading weights into a model.</summary>
public sealed record LoadReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected, IReadOnlyList<string> Mismatched)
{
    public bool IsExact => Missing.Count == 0 && Unexpected.Count == 0 && Mismatched.Count == 0;

    public override string ToString() =>
        $"{Loaded.Count} loaded; missing: {List(Missing)}; unexpected: {List(Unexpected)}; mis-shaped: {List(Mismatched)}";

    private static string List(IReadOnlyList<string> names) => names.Count == 0 ? "none" : string.Join(", ", names);
}

public static class SafeTensors
{
    /// <summary>Refuse headers larger than this (the format's own reference limit is 100 MB).</summary>
    public const long MaxHeaderBytes = 100L << 20;

    private static readonly Dictionary<string, (ScalarType Type, int Size)> DTypes = new()
    {
        ["F64"] = (ScalarType.Float64, 8), ["F32"] = (ScalarType.Float32, 4), ["F16"] = (ScalarType.Float16, 2),
        ["BF16"] = (ScalarType.BFloat16, 2), ["I64"] = (ScalarType.Int64, 8), ["I32"] = (ScalarType.Int32, 4),
        ["I16"] = (ScalarType.Int16, 2), ["I8"] = (ScalarType.Int8, 1), ["U8"] = (ScalarType.Byte, 1), ["BOOL"] = (ScalarType.Bool, 1),
    };

    private static string DTypeName(ScalarType type) =>
        DTypes.FirstOrDefault(kv => kv.Value.Type == type).Key ?? throw new NotSupportedException($"safetensors cannot store {type} tensors.");

    /// <summary>Writes <paramref name="tensors"/> (sorted by name) and optional string metadata atomically.</summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
            header["__metadata__"] = new JsonObject(metadata.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value))));
        var ordered = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToArray();
        var blobs = new List<byte[]>();
        long offset = 0;
        foreach (var (name, t) in ordered)
        {
            if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor.");
            var bytes = Bytes(t);
            header[name] = new JsonObject
            {
                ["dtype"] = DTypeName(t.dtype),
                ["shape"] = new JsonArray(t.shape.Select(d => (JsonNode?)JsonValue.Create(d)).ToArray()),
                ["data_offsets"] = new JsonArray(JsonValue.Create(offset), JsonValue.Create(offset + bytes.Length)),
            };
            blobs.Add(bytes);
            offset += bytes.Length;
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        int pad = (8 - json.Length % 8) % 8; // the data starts 8-byte aligned; the format pads the header with spaces
        OutputFile.WriteAtomically(path, f =>
        {
            var len = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)(json.Length + pad));
            f.Write(len);
            f.Write(json);
            for (int i = 0; i < pad; i++) f.WriteByte((byte)' ');
            foreach (var b in blobs) f.Write(b);
        });
    }

    /// <summary>Reads every tensor (CPU) and the metadata, checking the header against the file before allocating.</summary>
    private static readonly System.Text.UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata) Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: {(Directory.Exists(path) ? "is a folder, not a safetensors file" : "no such file")}.", path);
        using var f = File.OpenRead(path);
        long fileLength = f.Length;
        if (fileLength < 8) throw new SafeTensorsException(path, null, $"the file has {fileLength} bytes; a safetensors file starts with an 8-byte header length.");
        Span<byte> len = stackalloc byte[8];
        f.ReadExactly(len);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(len);
        if (headerLength > (ulong)(fileLength - 8))
            throw new SafeTensorsException(path, null, $"the header length ({headerLength} bytes) goes beyond the end of the file ({fileLength} bytes); the file is truncated or not safetensors.");
        if ((long)headerLength > MaxHeaderBytes) throw new SafeTensorsException(path, null, $"the header is {headerLength} bytes, more than the {MaxHeaderBytes} allowed.");
        var headerBytes = new byte[headerLength];
        f.ReadExactly(headerBytes);
        JsonObject header;
        try
        {
            _ = StrictUtf8.GetCharCount(headerBytes); // JSON strings are read lazily: invalid UTF-8 would surface later as another error
            header = JsonNode.Parse(headerBytes) as JsonObject ?? throw new SafeTensorsException(path, null, "the header is not a JSON object.");
            _ = header.Count; // builds the object's entries: a name given twice fails here
        }
        catch (System.Text.DecoderFallbackException)
        {
            throw new SafeTensorsException(path, null, "the header is not valid UTF-8 text.");
        }
        catch (ArgumentException e)
        {
            throw new SafeTensorsException(path, null, $"the header names an entry twice ({e.Message.Split('\n')[0]}).");
        }
        catch (JsonException e)
        {
            throw new SafeTensorsException(path, null, $"the header is not valid JSON ({e.Message}).");
        }
        long dataStart = 8 + (long)headerLength, dataLength = fileLength - dataStart;

        var metadata = new Dictionary<string, string>();
        var entries = new List<(string Name, ScalarType Type, long[] Shape, long Begin, long End)>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__")
            {
                if (node is not JsonObject meta) throw new SafeTensorsException(path, null, "__metadata__ is not an object of strings.");
                foreach (var (k, v) in meta)
                    metadata[k] = v is JsonValue sv && sv.TryGetValue(out string? s) ? s : throw new SafeTensorsException(path, null, $"metadata '{k}' is not a string.");
                continue;
            }
            entries.Add(ParseEntry(path, name, node, dataLength));
        }
        // Offsets must tile the data without overlap (the format's own rule), so no byte is read twice.
        long expected = 0;
        foreach (var e in entries.OrderBy(e => e.Begin))
        {
            if (e.Begin != expected) throw new SafeTensorsException(path, e.Name, $"data starts at byte {e.Begin}, expected {expected} (offsets overlap or leave a gap).");
            expected = e.End;
        }
        if (expected != dataLength) throw new SafeTensorsException(path, null, $"the tensors cover {expected} bytes of data but the file holds {dataLength}.");

        var tensors = new Dictionary<string, Tensor>();
        using var scope = NewDisposeScope(); // frees the flat buffers; each reshaped tensor leaves it for the caller
        foreach (var e in entries)
        {
            var bytes = new byte[e.End - e.Begin];
            f.Position = dataStart + e.Begin;
            f.ReadExactly(bytes);
            var flat = FromBytes(bytes, e.Type);
            tensors[e.Name] = flat.reshape(e.Shape).DetachFromDisposeScope();
        }
        return (tensors, metadata);
    }

    private static (string, ScalarType, long[], long, long) ParseEntry(string path, string name, JsonNode? node, long dataLength)
    {
        if (node is not JsonObject o) throw new SafeTensorsException(path, name, "its header entry is not an object.");
        string dtype = o["dtype"] is JsonValue dv && dv.TryGetValue(out string? d) ? d : throw new SafeTensorsException(path, name, "no dtype.");
        if (!DTypes.TryGetValue(dtype, out var info))
            throw new SafeTensorsException(path, name, $"unknown dtype '{dtype}' (known: {string.Join(", ", DTypes.Keys)}).");
        if (o["shape"] is not JsonArray shapeArray) throw new SafeTensorsException(path, name, "no shape.");
        var shape = new long[shapeArray.Count];
        for (int i = 0; i < shape.Length; i++)
            if (shapeArray[i] is not JsonValue sv || !sv.TryGetValue(out long dim) || dim < 0) throw new SafeTensorsException(path, name, "the shape holds a value that is not a non-negative integer.");
            else shape[i] = dim;
        if (o["data_offsets"] is not JsonArray { Count: 2 } offsets
            || offsets[0] is not JsonValue b || !b.TryGetValue(out long begin) || offsets[1] is not JsonValue en || !en.TryGetValue(out long end))
            throw new SafeTensorsException(path, name, "data_offsets must be two integers.");
        if (begin < 0 || end < begin || end > dataLength)
            throw new SafeTensorsException(path, name, $"data_offsets [{begin}, {end}] fall outside the {dataLength} bytes of data.");
        long count = 1;
        foreach (var dim in shape)
            count = dim == 0 ? 0 : count > long.MaxValue / dim ? throw new SafeTensorsException(path, name, "the shape is too large.") : count * dim;
        if (count > long.MaxValue / info.Size || count * info.Size != end - begin)
            throw new SafeTensorsException(path, name, $"shape [{string.Join(", ", shape)}] of {dtype} needs {(count <= long.MaxValue / info.Size ? count * info.Size : -1)} bytes, but its offsets hold {end - begin}.");
        return (name, info.Type, shape, begin, end);
    }

    internal static byte[] Bytes(Tensor t)
    {
        // The scope holds the copy until its bytes are read (a span of native memory keeps no tensor alive).
        using var scope = NewDisposeScope();
        var c = t.detach().cpu().contiguous();
        var bytes = new byte[c.numel() * c.ElementSize];
        if (bytes.Length > 0) c.bytes.CopyTo(bytes);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors is little-endian; this machine is not.");
        return bytes;
    }

    private static Tensor FromBytes(byte[] bytes, ScalarType type)
    {
        int size = DTypes.Values.First(v => v.Type == type).Size;
        var t = empty(bytes.Length / size, dtype: type);
        if (bytes.Length > 0) t.bytes = bytes;
        return t;
    }

    /// <summary>
    /// Copies tensors whose name is <paramref name="sourcePrefix"/> + suffix into the entries of
    /// <paramref name="model"/>'s state named <paramref name="targetPrefix"/> + suffix (e.g. a torchvision
    /// ResNet-18 into <c>encoder.shared.</c>). Buffers such as BN running statistics are included; tensors
    /// listed in <paramref name="ignore"/> (by source name prefix) are skipped silently. With
    /// <paramref name="strict"/>, anything missing, unexpected or mis-shaped is an error listing the names.
    /// </summary>
    public static LoadReport LoadInto(nn.Module model, string path, string targetPrefix = "", string sourcePrefix = "", bool strict = true, IReadOnlyList<string>? ignore = null)
    {
        var (tensors, _) = Load(path);
        using var scope = NewDisposeScope();
        var state = model.state_dict().Where(kv => kv.Key.StartsWith(targetPrefix, StringComparison.Ordinal)).ToDictionary(kv => kv.Key[targetPrefix.Length..], kv => kv.Value);
        var source = tensors.Where(kv => kv.Key.StartsWith(sourcePrefix, StringComparison.Ordinal) && !(ignore ?? []).Any(i => kv.Key.StartsWith(i, StringComparison.Ordinal)))
            .ToDictionary(kv => kv.Key[sourcePrefix.Length..], kv => kv.Value);
        var loaded = new List<string>();
        var missing = state.Keys.Where(k => !source.ContainsKey(k)).Select(k => targetPrefix + k).ToList();
        var unexpected = source.Keys.Where(k => !state.ContainsKey(k)).Select(k => sourcePrefix + k).ToList();
        var mismatched = new List<string>();
        var pairs = new List<(Tensor To, Tensor From)>();
        foreach (var (k, to) in state)
        {
            if (!source.TryGetValue(k, out var from)) continue;
            if (!from.shape.SequenceEqual(to.shape))
                mismatched.Add($"{sourcePrefix + k} [{string.Join(",", from.shape)}] vs {targetPrefix + k} [{string.Join(",", to.shape)}]");
            else pairs.Add((to, from));
        }
        var report = new LoadReport(pairs.Select(p => p.To.name ?? "").ToList(), missing, unexpected, mismatched);
        if (strict && !report.IsExact)
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw new SafeTensorsException(path, null, $"does not match the model under '{targetPrefix}': {report}.");
        }
        using (no_grad())
            foreach (var (to, from) in pairs) to.copy_(from.to(to.dtype));
        foreach (var (k, _) in state.Where(kv => source.TryGetValue(kv.Key, out var s) && s.shape.SequenceEqual(kv.Value.shape))) loaded.Add(targetPrefix + k);
        foreach (var t in tensors.Values) t.Dispose();
        return report with { Loaded = loaded };
    }

    /// <summary>Writes a module's state (parameters and buffers) under its PyTorch-style names.</summary>
    public static void SaveModule(string path, nn.Module model, IReadOnlyDictionary<string, string>? metadata = null) =>
        Save(path, model.state_dict(), metadata);
}
