using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Training;

/// <summary>What a checkpoint says about itself (readable without loading any weights).</summary>
public sealed record CheckpointMeta
{
    public int Format { get; init; } = Checkpoint.FormatVersion;
    public required string Architecture { get; init; }
    public required string Backbone { get; init; }
    public required IReadOnlyList<string> Tasks { get; init; }
    /// <summary>The resolved run configuration (JSON).</summary>
    public required string Config { get; init; }
    /// <summary>Epochs completed; with <see cref="Step"/> &gt; 0, training stopped inside epoch <see cref="Epoch"/>.</summary>
    public int Epoch { get; init; }
    public int Step { get; init; }
    public double BestScore { get; init; } = double.NegativeInfinity;
    public int BestEpoch { get; init; } = -1;
    /// <summary>best, last or interrupted.</summary>
    public string Kind { get; init; } = "last";
    /// <summary>libtorch's CPU generator state (base64).</summary>
    public string? RngState { get; init; }
    public IReadOnlyDictionary<string, double> ValidationMetrics { get; init; } = new Dictionary<string, double>();
    /// <summary>The input the model was trained on (size and pixel normalisation); null in older checkpoints.</summary>
    public Data.ImageInput? Input { get; init; }
    /// <summary>The tasks the model predicts (kind and width); null in older checkpoints.</summary>
    public IReadOnlyList<Tasks.TaskSpec>? TaskSpecs { get; init; }
    /// <summary>The loss-balancing method's own state (loss history, learned weights), by name; empty for stateless ones.</summary>
    public IReadOnlyDictionary<string, double[]> BalancerState { get; init; } = new Dictionary<string, double[]>();
    public DateTime SavedUtc { get; init; } = DateTime.UtcNow;
}

/// <summary>
/// One-file checkpoints: magic, JSON metadata, model weights, then named optimiser states; each block is followed by
/// its SHA-256, so a damaged file is refused, never loaded. Written to a temporary file and renamed over the target, so
/// a crash mid-write leaves the last good one; <see cref="Save"/> keeps the one it replaces as
/// <see cref="PreviousPath"/>, to resume from when the newest is damaged.
/// </summary>
public static class Checkpoint
{
    public const int FormatVersion = 1;
    private static readonly byte[] Magic = "IGCKPT02"u8.ToArray();
    private static readonly byte[] MagicWithoutChecksums = "IGCKPT01"u8.ToArray(); // still read

    /// <summary>Where <see cref="Save"/> keeps the checkpoint it replaces.</summary>
    public static string PreviousPath(string path) => Path.ChangeExtension(path, null) + ".prev.ckpt";
    private static readonly JsonSerializerOptions MetaJson = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public static void Save(string path, CheckpointMeta meta, nn.Module model, IReadOnlyList<(string Name, TorchSharp.Modules.OptimizerHelper Optimizer)> optimizers)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        string tmp = InterruptedSavePath(path);
        using (var stream = File.Create(tmp))
        using (var w = new BinaryWriter(stream))
        {
            w.Write(Magic);
            WriteBlock(w, Encoding.UTF8.GetBytes(JsonSerializer.Serialize(meta, MetaJson)));
            WriteBlock(w, Serialize(bw => model.save(bw)));
            w.Write(optimizers.Count);
            foreach (var (name, opt) in optimizers)
            {
                w.Write(name);
                WriteBlock(w, Serialize(bw => opt.save_state_dict(bw)));
            }
            w.Flush();
            stream.Flush(flushToDisk: true);
        }
        RunFiles.PauseInWrite();
        if (File.Exists(path))
        {
            File.Move(path, PreviousPath(path), overwrite: true);
            RunFiles.PauseInWrite(); // between the renames too: a kill there leaves no file under path
        }
        File.Move(tmp, path, overwrite: true);
    }

    public static CheckpointMeta ReadMeta(string path)
    {
        using var r = Open(path);
        return ReadMetaBlock(r, path);
    }

    /// <summary>Loads the weights into <paramref name="model"/> (strict) and, when given, the optimiser states by name.</summary>
    public static CheckpointMeta Load(string path, nn.Module model, IReadOnlyList<(string Name, TorchSharp.Modules.OptimizerHelper Optimizer)>? optimizers = null)
    {
        using var r = Open(path);
        var meta = ReadMetaBlock(r, path);
        var weights = ReadBlock(r, path);
        try
        {
            using var wr = new BinaryReader(new MemoryStream(weights));
            LoadInPlace(model, wr);
            (model as Architectures.MultiTaskModel)?.SetGatesFixed(false); // what fixed gates left unread was read from the gates before
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or EndOfStreamException or FormatException or IOException)
        {
            string modelKind = (model as Architectures.MultiTaskModel)?.Architecture ?? model.GetType().Name;
            throw new CheckpointException(path, modelKind == meta.Architecture
                ? $"its weights do not fit this {modelKind} model: {e.Message}"
                : $"holds a model of architecture {meta.Architecture} and the model to load into is {modelKind}: {e.Message}");
        }
        // The optimiser states are read, and their checksums checked, whether or not they are loaded: a damaged
        // checkpoint is refused whatever part of it is damaged.
        var states = new Dictionary<string, byte[]>();
        try
        {
            int count = r.ReadInt32();
            if (count < 0 || count > 64) throw new CheckpointException(path, $"damaged: {count} optimiser states.");
            for (int i = 0; i < count; i++) states[r.ReadString()] = ReadBlock(r, path);
        }
        catch (Exception e) when (e is EndOfStreamException or FormatException or IOException)
        {
            throw new CheckpointException(path, $"damaged optimiser states ({e.Message}).");
        }
        if (optimizers is null) return meta;
        foreach (var (name, opt) in optimizers)
        {
            if (!states.TryGetValue(name, out var bytes))
                throw new CheckpointException(path, $"it has no state for the optimiser '{name}' (has: {string.Join(", ", states.Keys)}).");
            using var or = new BinaryReader(new MemoryStream(bytes));
            opt.load_state_dict(or);
        }
        return meta;
    }

    /// <summary>
    /// The weights (the stream <c>Module.save</c> writes) into the model's own parameters and buffers, in place and
    /// strictly (names, count, dtypes, shapes). <c>Module.load</c> does the same on the CPU, but on a GPU it moves the
    /// model to the CPU and back, which replaces every parameter: the optimisers built for the model would then hold
    /// released tensors (resuming a run on a GPU).
    /// </summary>
    internal static void LoadInPlace(nn.Module model, BinaryReader r)
    {
        var state = model.state_dict();
        long count = ReadLength(r);
        if (count != state.Count) throw new ArgumentException($"{count} tensors stored, the model has {state.Count}.");
        for (long i = 0; i < count; i++)
        {
            string key = r.ReadString();
            if (!state.TryGetValue(key, out var target)) throw new ArgumentException($"the model has no parameter or buffer named '{key}'.");
            try
            {
                target.Load(r); // dtype and shape checked; on a GPU through a CPU copy
            }
            catch (ArgumentException e)
            {
                // TorchSharp's message names neither the tensor nor the model's shape.
                throw new ArgumentException($"'{key}' ({target.dtype} [{string.Join(", ", target.shape)}] in the model) does not match the stored tensor: {e.Message}", e);
            }
        }
    }

    /// <summary>An unsigned LEB128 length, as <c>Module.save</c> writes counts.</summary>
    private static long ReadLength(BinaryReader r)
    {
        long value = 0;
        for (int shift = 0; ; shift += 7)
        {
            if (shift > 56) throw new FormatException("a damaged length field.");
            byte b = r.ReadByte();
            value |= (long)(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return value;
        }
    }

    public static string EncodeRng()
    {
        using var state = get_rng_state();
        return Convert.ToBase64String(state.data<byte>().ToArray());
    }

    public static void RestoreRng(string? base64)
    {
        if (base64 is null) return;
        var bytes = Convert.FromBase64String(base64);
        using var state = tensor(bytes, dtype: ScalarType.Byte);
        set_rng_state(state);
    }

    /// <summary>
    /// Whether <paramref name="path"/> reads whole: every block present and matching its checksum (null), or what is
    /// wrong with it.
    /// </summary>
    public static string? Verify(string path)
    {
        try
        {
            using var r = Open(path);
            ReadMetaBlock(r, path);
            ReadBlock(r, path);
            int count = r.ReadInt32();
            if (count < 0 || count > 64) return $"damaged: {count} optimiser states";
            for (int i = 0; i < count; i++) { r.ReadString(); ReadBlock(r, path); }
            return null;
        }
        catch (CheckpointException e) { return e.Message; }
        catch (Exception e) when (e is EndOfStreamException or FormatException or IOException) { return $"checkpoint {path}: damaged ({e.Message})"; }
    }

    /// <summary>
    /// <paramref name="path"/> if it reads whole; else, where it is missing, the new file of a save that a stop cut short
    /// between its two renames (<see cref="InterruptedSavePath"/>) if that one reads whole; else the checkpoint it
    /// replaced (<see cref="PreviousPath"/>) if that one does; null when none does. <paramref name="problem"/> says what
    /// was wrong with <paramref name="path"/>.
    /// </summary>
    public static string? NewestGood(string path, out string? problem)
    {
        problem = Verify(path);
        if (problem is null) return path;
        string pending = InterruptedSavePath(path);
        if (!File.Exists(path) && File.Exists(pending) && Verify(pending) is null) return pending;
        string previous = PreviousPath(path);
        return File.Exists(previous) && Verify(previous) is null ? previous : null;
    }

    /// <summary>The file <see cref="Save"/> writes before renaming it to <paramref name="path"/>.</summary>
    public static string InterruptedSavePath(string path) => path + ".tmp";

    /// <summary>
    /// Finishes a save that a stop cut short between its two renames (the old file already moved to
    /// <see cref="PreviousPath"/>, the new one not yet in place): where <paramref name="path"/> is missing and its
    /// <see cref="InterruptedSavePath"/> reads whole, that file becomes <paramref name="path"/>. Whether it did.
    /// Call it only holding the run folder's lock.
    /// </summary>
    public static bool CompleteInterruptedSave(string path)
    {
        string pending = InterruptedSavePath(path);
        if (File.Exists(path) || !File.Exists(pending) || Verify(pending) is not null) return false;
        File.Move(pending, path, overwrite: false);
        return true;
    }

    /// <summary>A checkpoint's reader, knowing whether its blocks carry checksums (format 02) or not (01).</summary>
    private sealed class CheckpointReader(Stream stream) : BinaryReader(stream)
    {
        public bool Checksums { get; set; }
    }

    /// <summary>Whether <paramref name="path"/> is a file that starts as a checkpoint does (whole or not).</summary>
    public static bool IsCheckpoint(string path)
    {
        if (!File.Exists(path)) return false;
        using var f = File.OpenRead(path);
        var head = new byte[Magic.Length];
        return f.Read(head) == head.Length && (head.AsSpan().SequenceEqual(Magic) || head.AsSpan().SequenceEqual(MagicWithoutChecksums));
    }

    private static BinaryReader Open(string path)
    {
        if (!File.Exists(path)) throw new CheckpointException(path, Directory.Exists(path) ? "is a folder; give a checkpoint file (a run folder holds last.ckpt and best.ckpt)." : "no such file.");
        var r = new CheckpointReader(File.OpenRead(path));
        var magic = r.ReadBytes(Magic.Length);
        r.Checksums = magic.AsSpan().SequenceEqual(Magic);
        if (!r.Checksums && !magic.AsSpan().SequenceEqual(MagicWithoutChecksums))
        {
            r.Dispose();
            throw new CheckpointException(path, Export.StaticModelFile.IsStaticModel(path) || LooksLikeSafeTensors(magic)
                ? "is a safetensors file, not a training checkpoint (a static model is loaded with Predictor.Load, `interrogate predict`)."
                : path.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)
                    ? "is an ONNX model, which ONNX Runtime runs; interrogate reads training checkpoints and static models (.safetensors, from `prune` or `export --format safetensors`)."
                    : "not an InterroGate checkpoint (bad magic).");
        }
        return r;
    }

    /// <summary>Whether the first bytes read as a safetensors header length followed by its JSON ("{").</summary>
    private static bool LooksLikeSafeTensors(byte[] head) => head.Length == 8 && BitConverter.ToUInt64(head) is > 1 and < 100_000_000;

    private static CheckpointMeta ReadMetaBlock(BinaryReader r, string path)
    {
        CheckpointMeta meta;
        try
        {
            meta = JsonSerializer.Deserialize<CheckpointMeta>(ReadBlock(r, path), MetaJson) ?? throw new CheckpointException(path, "empty metadata.");
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException or ArgumentException or FormatException)
        {
            throw new CheckpointException(path, $"damaged metadata ({e.Message.Split('\n')[0]}).");
        }
        if (meta.Format != FormatVersion) throw new CheckpointException(path, $"format {meta.Format}; this build reads format {FormatVersion}.");
        return meta;
    }

    private static byte[] Serialize(Action<BinaryWriter> write)
    {
        using var ms = new MemoryStream();
        using (var bw = new BinaryWriter(ms, Encoding.UTF8, leaveOpen: true)) write(bw);
        return ms.ToArray();
    }

    private static void WriteBlock(BinaryWriter w, byte[] bytes)
    {
        w.Write((long)bytes.Length);
        w.Write(bytes);
        w.Write(System.Security.Cryptography.SHA256.HashData(bytes));
    }

    private static byte[] ReadBlock(BinaryReader r, string path)
    {
        try
        {
            long length = r.ReadInt64();
            long left = r.BaseStream.Length - r.BaseStream.Position;
            if (length < 0 || length > left) throw new CheckpointException(path, $"truncated: a block of {length} bytes with {left} left.");
            if (length > int.MaxValue) throw new CheckpointException(path, $"a block of {length} bytes, more than this reader takes.");
            var bytes = r.ReadBytes((int)length);
            if (r is not CheckpointReader { Checksums: true }) return bytes;
            var sum = r.ReadBytes(32);
            if (sum.Length < 32) throw new CheckpointException(path, "truncated: a block without its checksum.");
            if (!System.Security.Cryptography.SHA256.HashData(bytes).AsSpan().SequenceEqual(sum))
                throw new CheckpointException(path, "damaged: a block does not match its checksum (the file was changed or corrupted).");
            return bytes;
        }
        catch (EndOfStreamException)
        {
            throw new CheckpointException(path, "truncated.");
        }
    }
}

/// <summary>A checkpoint that cannot be read or does not fit; the message names the file.</summary>
public sealed class CheckpointException(string path, string problem) : Exception($"checkpoint {path}: {problem}")
{
    public string Path { get; } = path;
}
