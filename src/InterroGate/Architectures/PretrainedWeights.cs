// Starting any architecture's backbones from pretrained weights (the paper starts from ImageNet weights): a
// safetensors file or a PyTorch state dict (.pth / .pt, read with TorchSharp.PyBridge), matched by name.
using System.Collections;
using System.Diagnostics;
using InterroGate.Backbones;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace InterroGate.Architectures;

/// <summary>
/// What loading pretrained weights did: per backbone copy the tensors loaded, and (named once, relative to a backbone)
/// the backbone's tensors the file lacks, the file's tensors no backbone has, and those of the wrong shape (not loaded).
/// </summary>
/// <see cref="Adapted"/>: tensors changed to fit (a ViT's position embeddings resized to its grid).
public sealed record PretrainedReport(
    string File, IReadOnlyList<string> Backbones, int Loaded, int Targets, string StrippedPrefix,
    IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected, IReadOnlyList<string> Mismatched, double Seconds,
    IReadOnlyList<string>? Adapted = null)
{
    public override string ToString()
    {
        static string List(IReadOnlyList<string> names) => names.Count == 0 ? "none" : names.Count <= 8
            ? string.Join(", ", names) : $"{string.Join(", ", names.Take(8))} and {names.Count - 8} more";
        return $"{Path.GetFileName(File)}: {Loaded} of {Targets} tensors loaded into {Backbones.Count} backbone(s) ({string.Join(", ", Backbones)})" +
               (StrippedPrefix.Length > 0 ? $", file prefix '{StrippedPrefix}' removed" : "") +
               $" in {Seconds:F2} s; missing: {List(Missing)}; unexpected: {List(Unexpected)}; wrong shape (not loaded): {List(Mismatched)}" +
               (Adapted is { Count: > 0 } ? $"; adapted: {List(Adapted)}" : "");
    }
}

public static class PretrainedWeights
{
    /// <summary>
    /// The tensors of <paramref name="path"/>: safetensors (<c>.safetensors</c>) or a pickled PyTorch state dict
    /// (<c>.pth</c>, <c>.pt</c>, <c>.bin</c>; a checkpoint that nests it under <c>state_dict</c> or <c>model</c> works too).
    /// Every fault names the file.
    /// </summary>
    public static Dictionary<string, Tensor> Read(string path)
    {
        if (!System.IO.File.Exists(path)) throw new FileNotFoundException($"{path}: no such pretrained weights file.", path);
        string ext = Path.GetExtension(path).ToLowerInvariant();
        try
        {
            if (ext == ".safetensors") return Safetensors.LoadStateDict(path);
            if (ext is ".pth" or ".pt" or ".bin")
            {
                RefuseLegacyFormat(path);
                CheckSizes(path);
                return Flatten(PyTorchUnpickler.UnpickleStateDict(path), path);
            }
        }
        catch (Exception e) when (e is not Data.DataFormatException and not OutOfMemoryException)
        {
            throw new Data.DataFormatException(path, $"cannot be read as {(ext == ".safetensors" ? "safetensors" : "a PyTorch state dict")} ({e.GetType().Name}: {e.Message})");
        }
        throw new Data.DataFormatException(path, $"has extension '{ext}'; pretrained weights are .safetensors or a PyTorch state dict (.pth, .pt, .bin)");
    }

    /// <summary>The plain backbones (ResNet, HRNet, ViT: every <see cref="IEncoder"/>) of <paramref name="model"/> by module path: one per STL task, MTL's, every InterroGate branch, ...</summary>
    public static IReadOnlyList<string> BackbonePaths(nn.Module model) =>
        model.named_modules().Where(m => m.module is IEncoder).Select(m => m.name).ToArray();

    /// <summary>
    /// Loads <paramref name="path"/> into every backbone of <paramref name="model"/> by name (torchvision's names for
    /// the ResNets, the official ones for the HRNets, timm's for the ViTs). A prefix the file puts before every name (<c>module.</c>,
    /// <c>backbone.</c>, ...) is found and removed. Tensors of the wrong shape are left out and listed, as are the
    /// backbone's tensors the file lacks and the file's tensors no backbone has; a file none of whose tensors fits is an error.
    /// </summary>
    public static PretrainedReport Apply(nn.Module model, string path)
    {
        var clock = Stopwatch.StartNew();
        var backbones = BackbonePaths(model);
        if (backbones.Count == 0) throw new ArgumentException("The model has no backbone (ResNet, HRNet or ViT) to load pretrained weights into.");
        var source = Read(path);
        try
        {
            // The backbone's own names (one copy; every copy has the same).
            var state = model.state_dict();
            string first = backbones[0] + ".";
            var names = state.Keys.Where(k => k.StartsWith(first, StringComparison.Ordinal)).Select(k => k[first.Length..]).ToArray();
            string prefix = BestPrefix(source.Keys, names);
            var adapted = model.named_modules().First(m => m.name == backbones[0]).module is VisionTransformer vit
                ? FitViT(source, prefix, vit, path) : [];
            var missing = new List<string>();
            var mismatched = new List<string>();
            var used = new HashSet<string>();
            int loaded = 0;
            using (no_grad())
                foreach (var backbone in backbones)
                    foreach (var name in names)
                    {
                        var to = state[$"{backbone}.{name}"];
                        if (!source.TryGetValue(prefix + name, out var from))
                        {
                            if (backbone == backbones[0]) missing.Add(name);
                            continue;
                        }
                        used.Add(prefix + name);
                        if (!from.shape.SequenceEqual(to.shape))
                        {
                            if (backbone == backbones[0]) mismatched.Add($"{name} [{string.Join(",", from.shape)}] for [{string.Join(",", to.shape)}]");
                            continue;
                        }
                        to.copy_(from.to(to.dtype));
                        loaded++;
                    }
            if (loaded == 0)
                throw new Data.DataFormatException(path, $"none of its {source.Count} tensors fits the backbone ({string.Join(", ", source.Keys.Take(4))}, ... " +
                                                         $"against {string.Join(", ", names.Take(4))}, ...); is it weights of another network?");
            var unexpected = source.Keys.Where(k => !used.Contains(k)).Order(StringComparer.Ordinal).ToArray();
            return new PretrainedReport(path, backbones, loaded, names.Length * backbones.Count, prefix, missing, unexpected, mismatched, clock.Elapsed.TotalSeconds,
                adapted);
        }
        finally
        {
            foreach (var t in source.Values) t.Dispose();
        }
    }

    /// <summary>
    /// A ViT's weights against the ViT they go into: another patch size or token width is an error naming both;
    /// position embeddings of another grid (weights trained at another input size) are resized bicubically to the
    /// backbone's trained grid, as timm does.
    /// </summary>
    private static List<string> FitViT(Dictionary<string, Tensor> source, string prefix, VisionTransformer vit, string path)
    {
        var spec = vit.Spec;
        var adapted = new List<string>();
        if (source.TryGetValue(prefix + "patch_embed.proj.weight", out var proj) && proj.dim() == 4
            && (proj.shape[0] != spec.EmbedDim || proj.shape[2] != spec.PatchSize || proj.shape[3] != spec.PatchSize))
            throw new Data.DataFormatException(path, $"holds a ViT with patches of {proj.shape[2]} and width {proj.shape[0]}; {spec.Name} has patches of " +
                                                     $"{spec.PatchSize} and width {spec.EmbedDim}: weights of another ViT size or patch do not fit (choose the backbone they were trained as)");
        if (source.TryGetValue(prefix + "blocks.0.attn.qkv.weight", out var qkv) && qkv.shape[^1] != spec.EmbedDim)
            throw new Data.DataFormatException(path, $"holds a ViT of width {qkv.shape[^1]}; {spec.Name} has width {spec.EmbedDim}");
        string key = prefix + "pos_embed";
        int extra = spec.ClassToken ? 1 : 0;
        long grid = spec.TrainedSize / spec.PatchSize;
        if (source.TryGetValue(key, out var pos) && pos.dim() == 3 && pos.shape[2] == spec.EmbedDim && pos.shape[1] != extra + grid * grid)
        {
            long tokens = pos.shape[1] - extra, side = (long)Math.Round(Math.Sqrt(tokens));
            if (tokens <= 0 || side * side != tokens)
                throw new Data.DataFormatException(path, $"tensor 'pos_embed' holds {pos.shape[1]} positions, not {extra} class token(s) and a square grid of patches");
            using (no_grad())
                source[key] = VisionTransformer.ResizePositions(pos.to(float32), extra, side, side, grid, grid).detach();
            pos.Dispose();
            adapted.Add($"pos_embed from a {side}×{side} grid to {grid}×{grid}");
        }
        return adapted;
    }

    /// <summary>
    /// The prefix (the first 0 to 3 dot-separated parts of the file's names, e.g. <c>module.</c> or
    /// <c>module.backbone.</c>) under which most of <paramref name="names"/> are found; the shortest on a tie.
    /// </summary>
    internal static string BestPrefix(IEnumerable<string> fileNames, IReadOnlyList<string> names)
    {
        var keys = fileNames.ToHashSet();
        var candidates = new HashSet<string> { "" };
        foreach (var k in keys)
        {
            var parts = k.Split('.');
            for (int n = 1; n <= Math.Min(3, parts.Length - 1); n++) candidates.Add(string.Join('.', parts[..n]) + ".");
        }
        return candidates.Select(p => (Prefix: p, Hits: names.Count(n => keys.Contains(p + n))))
            .OrderByDescending(c => c.Hits).ThenBy(c => c.Prefix.Length).ThenBy(c => c.Prefix, StringComparer.Ordinal).First().Prefix;
    }

    /// <summary>
    /// Before any tensor is read: every tensor the pickle describes must fit in the file (a damaged shape would otherwise
    /// make the reader allocate gigabytes). The tensors are described without reading them (PyBridge's skipTensorRead).
    /// </summary>
    /// <summary>
    /// torch.save writes a zip archive since PyTorch 1.6; a file that starts with a pickle instead is the legacy format,
    /// which the reader does not handle: refused with the Python line that rewrites it.
    /// </summary>
    private static void RefuseLegacyFormat(string path)
    {
        Span<byte> head = stackalloc byte[2];
        using (var stream = File.OpenRead(path))
            if (stream.ReadAtLeast(head, 2, throwOnEndOfStream: false) < 2 || head[0] != 0x80) return; // not a pickle: left to the reader
        throw new Data.DataFormatException(path, "was written by torch.save in PyTorch's legacy format (before 1.6, or _use_new_zipfile_serialization=False), " +
            $"which cannot be read here; rewrite it in Python with torch.save(torch.load(\"{Path.GetFileName(path)}\"), \"{Path.GetFileNameWithoutExtension(path)}-zip{Path.GetExtension(path)}\")");
    }

    private static void CheckSizes(string path)
    {
        long fileBytes = new FileInfo(path).Length;
        using var stream = File.OpenRead(path);
        var table = PyTorchUnpickler.UnpickleStateDict(stream, leaveOpen: true, skipTensorRead: true);
        void Visit(Hashtable t, string prefix)
        {
            foreach (DictionaryEntry e in t)
            {
                string name = prefix + e.Key;
                if (e.Value is Hashtable nested) { Visit(nested, name + "."); continue; }
                if (e.Value is null) continue;
                var type = e.Value.GetType();
                if (type.GetProperty("Shape")?.GetValue(e.Value) is not long[] shape || type.GetProperty("DType")?.GetValue(e.Value) is not ScalarType dtype) continue;
                (type.GetProperty("Data")?.GetValue(e.Value) as Stream)?.Dispose();
                long bytes = ElementSize(dtype);
                foreach (long d in shape)
                {
                    if (d < 0) throw new Data.DataFormatException(path, $"tensor '{name}' has a negative dimension ({string.Join(", ", shape)})");
                    bytes = d == 0 ? 0 : bytes > fileBytes / d ? long.MaxValue : bytes * d;
                }
                if (bytes > fileBytes)
                    throw new Data.DataFormatException(path, $"tensor '{name}' declares shape [{string.Join(", ", shape)}], more data than the file's {fileBytes:N0} bytes hold (a damaged file?)");
            }
        }
        Visit(table, "");
    }

    private static long ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 or ScalarType.ComplexFloat32 => 8,
        ScalarType.ComplexFloat64 => 16,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };

    /// <summary>A state dict (name to tensor), found at the top of an unpickled file or under one of the usual keys.</summary>
    private static Dictionary<string, Tensor> Flatten(Hashtable table, string path)
    {
        foreach (var key in new[] { "state_dict", "model", "model_state_dict", "net" })
            if (table[key] is Hashtable nested && nested.Values.OfType<Tensor>().Any()) return Flatten(nested, path);
        var result = new Dictionary<string, Tensor>();
        foreach (DictionaryEntry e in table)
            if (e.Key is string name && e.Value is Tensor t) result[name] = t;
        if (result.Count == 0) throw new Data.DataFormatException(path, "holds no tensors (expected a state dict: names to tensors)");
        return result;
    }
}
