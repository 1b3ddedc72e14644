using InterroGate.Pruning;
namespace InterroGate.Export;

/// <summary>
/// A static network in one safetensors file: its tensors under their node names, its structure (nodes, task
/// outputs, tasks, input size and normalisation) as JSON in the metadata. Other tools read the weights as
/// any safetensors file.
/// </summary>
public static class StaticModelFile
{
    public const string FormatKey = "format";
    public const string Format = "interrogate-static-network/1";
    public const string StructureKey = "structure";

    /// <summary>SHA-256 of the structure and every tensor (name, dtype, shape, bytes, in name order): a damaged file is refused.</summary>
    public const string ChecksumKey = "sha256";

    public static void Save(string path, StaticGraph graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        string structure = graph.StructureJson();
        SafeTensors.Save(path, graph.Tensors, new Dictionary<string, string>
        {
            [FormatKey] = Format, [StructureKey] = structure, [ChecksumKey] = Checksum(structure, graph.Tensors),
        });
    }

    private static string Checksum(string structure, IReadOnlyDictionary<string, TorchSharp.torch.Tensor> tensors)
    {
        using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        sha.AppendData(System.Text.Encoding.UTF8.GetBytes(structure));
        foreach (var (name, t) in tensors.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes($"\n{name}:{t.dtype}:{string.Join(",", t.shape)}\n"));
            sha.AppendData(SafeTensors.Bytes(t));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>
    /// Whether <paramref name="path"/> is a safetensors file (a static model or exported weights): read from its first
    /// bytes (an 8-byte header length, then the header's JSON), whatever its name; by its extension where it does not exist.
    /// </summary>
    public static bool IsStaticModel(string path)
    {
        if (!File.Exists(path)) return path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);
        try
        {
            using var f = File.OpenRead(path);
            var head = new byte[9];
            return f.Read(head) == head.Length && BitConverter.ToUInt64(head) is > 1 and var length && (long)length < f.Length && head[8] == (byte)'{';
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    public static StaticGraph Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Training.Checkpoint.IsCheckpoint(path))
            throw new SafeTensorsException(path, null, "is a training checkpoint, not a static model; make one from it with `interrogate prune` " +
                                                       "(from C#: ModelFiles.LoadStatic, or Pruner.Prune and StaticModelFile.Save).");
        var (tensors, metadata) = SafeTensors.Load(path);
        try
        {
            if (!metadata.TryGetValue(FormatKey, out var format) || format != Format || !metadata.TryGetValue(StructureKey, out var structure))
                throw new SafeTensorsException(path, null, $"holds weights but no static network (its metadata lacks {FormatKey} = {Format}); " +
                    "write one with `interrogate prune` or `interrogate export --format safetensors`.");
            // Files written before checksums existed have none; any other file must match its own.
            if (metadata.TryGetValue(ChecksumKey, out var expected) && Checksum(structure, tensors) != expected)
                throw new SafeTensorsException(path, null, "damaged: its contents do not match the checksum written with it (the file was changed or corrupted).");
            return StaticGraph.FromStructure(structure, tensors);
        }
        catch (Exception e)
        {
            foreach (var t in tensors.Values) t.Dispose(); // no graph owns them
            if (e is InvalidDataException or System.Text.Json.JsonException or ArgumentException) throw new SafeTensorsException(path, null, e.Message);
            throw;
        }
    }
}
