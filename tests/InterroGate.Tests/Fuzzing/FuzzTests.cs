using System.Diagnostics;
using System.Text;
using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Data.Formats;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace InterroGate.Tests.Fuzzing;

/// <summary>
/// Every parser of a file the program reads, fed damaged copies of a valid file: truncations, bit flips, huge,
/// negative and overflowing sizes written over the bytes, inserted bytes, and for text formats deleted characters,
/// wrong types and deep nesting. Pass: each case either parses or fails with an error a user is told about
/// (<see cref="Runtime.UserErrors"/>); no other exception, no case without an answer within 120 s (a hang), no case allocating over 512 MB of managed memory.
/// CI runs <see cref="CasesPerParser"/> seeded cases per parser; INTERROGATE_FUZZ_CASES=N runs N per parser.
/// </summary>
[Collection("Torch")]
public sealed class FuzzTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-fuzz-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static int CasesPerParser =>
        int.TryParse(Environment.GetEnvironmentVariable("INTERROGATE_FUZZ_CASES"), out int n) && n > 0 ? n : 250;

    /// <summary>Managed allocations of the parsing thread (a length field read as a size must not drive an allocation);
    /// native libtorch memory is not counted.</summary>
    private const long MaxAllocatedBytes = 512L << 20;
    /// <summary>A hang detector, not a speed bound: a correct parse takes milliseconds, a loop without end never answers.</summary>
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(120);

    /// <summary>One parser: a valid file's bytes, the file name it needs, and how the program reads it.</summary>
    private sealed record Target(string Name, string FileName, byte[] Valid, Action<string> Parse, bool Text = false);

    public static IEnumerable<object[]> Parsers => new[] { "idx", "npy", "safetensors", "checkpoint", "static-model", "mat", "config", "tasks.json", "png", "celeba-attributes" }
        .Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(Parsers))]
    public void Damaged_files_end_in_a_user_error_never_a_crash_or_a_hang(string parser)
    {
        var target = Make(parser);
        target.Parse(Write(target.FileName, target.Valid)); // the valid file parses
        int cases = CasesPerParser;
        var failures = new List<string>();
        long peak = 0;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < cases && failures.Count < 5; i++)
        {
            var rng = new Random(parser.Aggregate(17, (h, c) => unchecked(h * 31 + c)) ^ i * 7919); // the same cases in every run (HashCode is seeded per process)
            var (bytes, how) = Mutate(target, rng, i);
            string path = Write($"case-{i}-{target.FileName}", bytes);
            long allocated = 0;
            Exception? error = null;
            var worker = new Thread(() =>
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                try { target.Parse(path); }
                catch (Exception e) { error = e; }
                allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            }, maxStackSize: 16 << 20) { IsBackground = true };
            worker.Start();
            if (!worker.Join(CaseTimeout)) { failures.Add($"case {i} ({how}): no answer within {CaseTimeout.TotalSeconds} s"); break; }
            peak = Math.Max(peak, allocated);
            if (error is { } err && !InterroGate.Runtime.UserErrors.Is(err))
                failures.Add($"case {i} ({how}): {err.GetType().Name}: {err.Message.Split('\n')[0]}");
            if (allocated > MaxAllocatedBytes) failures.Add($"case {i} ({how}): allocated {allocated >> 20} MB");
            File.Delete(path);
        }
        output.WriteLine($"{parser}: {cases} cases in {clock.Elapsed.TotalSeconds:F1} s, largest managed allocation of a case {peak / 1024.0 / 1024:F1} MB");
        Assert.True(failures.Count == 0, $"{parser}: {string.Join("; ", failures)}");
    }

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>The i-th damaged copy: the first cases cut the file at evenly spread lengths (every byte of a small file), the rest mutate at random.</summary>
    private static (byte[] Bytes, string How) Mutate(Target target, Random rng, int i)
    {
        var valid = target.Valid;
        if (i < Math.Min(64, valid.Length))
        {
            int cut = (int)((long)valid.Length * i / Math.Min(64, valid.Length));
            return (valid[..cut], $"truncated to {cut} bytes");
        }
        var bytes = (byte[])valid.Clone();
        int kind = rng.Next(target.Text ? 8 : 5);
        switch (kind)
        {
            case 0:
            {
                int flips = 1 + rng.Next(8);
                for (int k = 0; k < flips; k++) bytes[rng.Next(bytes.Length)] ^= (byte)(1 << rng.Next(8));
                return (bytes, $"{flips} bit flips");
            }
            case 1:
            {
                // A size, shape or offset overwritten: huge, negative, overflowing, zero.
                long[] values = [uint.MaxValue, int.MaxValue, int.MinValue, long.MaxValue, -1, 0, 1L << 40, 0x7FFFFFFF00000000];
                long v = values[rng.Next(values.Length)];
                int width = rng.Next(2) == 0 ? 4 : 8;
                int at = rng.Next(Math.Max(1, bytes.Length - width));
                for (int k = 0; k < width && at + k < bytes.Length; k++) bytes[at + k] = (byte)(v >> (8 * k));
                return (bytes, $"{width}-byte {v} at {at}");
            }
            case 2:
            {
                int at = rng.Next(bytes.Length), count = 1 + rng.Next(64);
                var extra = new byte[count];
                rng.NextBytes(extra);
                return ([.. bytes[..at], .. extra, .. bytes[at..]], $"{count} bytes inserted at {at}");
            }
            case 3:
            {
                int at = rng.Next(bytes.Length), count = 1 + rng.Next(Math.Max(1, bytes.Length - at));
                return ([.. bytes[..at], .. bytes[Math.Min(bytes.Length, at + count)..]], $"{count} bytes removed at {at}");
            }
            case 4:
            {
                var extra = new byte[1 + rng.Next(4096)];
                rng.NextBytes(extra);
                return ([.. bytes, .. extra], $"{extra.Length} bytes appended");
            }
            default:
                return MutateText(Encoding.UTF8.GetString(valid), rng, kind);
        }
    }

    /// <summary>Text formats: a value of the wrong type or out of range, a deleted character, deep nesting.</summary>
    private static (byte[] Bytes, string How) MutateText(string text, Random rng, int kind)
    {
        switch (kind)
        {
            case 5:
            {
                string[] values = ["null", "-1", "1e999", "\"x\"", "[]", "{}", "true", "99999999999999999999", "-0.0", "\"NaN\""];
                var numbers = System.Text.RegularExpressions.Regex.Matches(text, @"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|""[^""]*""");
                if (numbers.Count == 0) break;
                var m = numbers[rng.Next(numbers.Count)];
                string v = values[rng.Next(values.Length)];
                return (Encoding.UTF8.GetBytes(text[..m.Index] + v + text[(m.Index + m.Length)..]), $"value at {m.Index} replaced by {v}");
            }
            case 6:
            {
                int depth = 1 + rng.Next(5000), at = rng.Next(text.Length);
                string nest = rng.Next(2) == 0 ? new string('[', depth) + new string(']', depth) : string.Concat(Enumerable.Repeat("{\"a\":", depth)) + "1" + new string('}', depth);
                return (Encoding.UTF8.GetBytes(text[..at] + nest + text[at..]), $"{depth}-deep nesting at {at}");
            }
        }
        int del = rng.Next(text.Length);
        return (Encoding.UTF8.GetBytes(text.Remove(del, 1)), $"character {del} deleted");
    }

    private Target Make(string parser)
    {
        string seed = Path.Combine(_dir, "seed");
        Directory.CreateDirectory(seed);
        string P(string name) => Path.Combine(seed, name);
        switch (parser)
        {
            case "idx":
                IdxReader.Write(P("a.idx"), [6, 4, 4], Enumerable.Range(0, 96).Select(i => (byte)i).ToArray());
                return new(parser, "a.idx", File.ReadAllBytes(P("a.idx")), p => IdxReader.Read(p));
            case "npy":
                Npy.Write(P("a.npy"), [3, 4, 5], Enumerable.Range(0, 60).Select(i => (float)i).ToArray());
                return new(parser, "a.npy", File.ReadAllBytes(P("a.npy")), p => Npy.Read(p));
            case "safetensors":
                using (no_grad())
                    SafeTensors.Save(P("a.safetensors"), new Dictionary<string, Tensor> { ["w"] = randn(4, 3), ["b"] = arange(5L) }, new Dictionary<string, string> { ["k"] = "v" });
                return new(parser, "a.safetensors", File.ReadAllBytes(P("a.safetensors")), p =>
                {
                    var (tensors, _) = SafeTensors.Load(p);
                    foreach (var t in tensors.Values) t.Dispose();
                });
            case "checkpoint":
            {
                var config = InterroGate.Tests.Training.TrainerTests.Config(new HardSharingConfig(), epochs: 1, train: 64);
                var run = PreparedRun.Create(config);
                string ckpt = new Trainer(config, run.Model, run.Data, Path.Combine(seed, "run")).Run().LastCheckpoint;
                return new(parser, "last.ckpt", File.ReadAllBytes(ckpt), p =>
                {
                    var (model, _, _) = ModelFiles.LoadCheckpoint(p);
                    model.Dispose();
                });
            }
            case "static-model":
            {
                var model = new InterroGateModel(new Tasks.TaskSet([new Tasks.TaskSpec("a", Tasks.TaskKind.Classification, 3)]),
                    InterroGate.Backbones.ResNetSpec.ResNet20(0.25), 1, (8, 8), new InterroGateConfig());
                StaticModelFile.Save(P("m.safetensors"), Pruner.Prune(model, new ImageInput(1, 8, 8)).Graph);
                return new(parser, "m.safetensors", File.ReadAllBytes(P("m.safetensors")), p => StaticModelFile.Load(p));
            }
            case "mat":
                MatFile.Write(P("a.mat"), new Dictionary<string, MatValue>
                {
                    ["LabelMap"] = MatArray.FromRowMajor(Enumerable.Range(0, 12).Select(i => (ushort)i).ToArray(), 3, 4),
                    ["anno"] = MatStruct.Single(("name", MatChar.FromString("cat")), ("parts", MatCell.Row(MatArray.Scalar(2), MatArray.Logical([true, false], 1, 2)))),
                }, compress: false);
                return new(parser, "a.mat", File.ReadAllBytes(P("a.mat")), p => MatFile.Read(p));
            case "config":
                return new(parser, "config.json", Encoding.UTF8.GetBytes(ConfigJson.Serialize(Presets.LoadRun("multifashion-quick/interrogate", []))),
                    p => ConfigJson.Deserialize<RunConfig>(File.ReadAllText(p), source: p).Validate(2), Text: true);
            case "tasks.json":
                return new(parser, "tasks.json", Encoding.UTF8.GetBytes("""
                    {"tasks": [{"name": "digit", "kind": "classification", "classes": 10},
                               {"name": "size", "kind": "regression", "outputs": 2}, {"name": "odd", "kind": "binary"}]}
                    """), p => UserFolderDataset.ReadTasks(p), Text: true);
            case "png":
                InterroGate.Data.Formats.ImageFiles.WritePng(P("a.png"), new DecodedImage(Enumerable.Range(0, 16 * 16 * 3).Select(i => (byte)(i * 31)).ToArray(), 16, 16, 3));
                return new(parser, "a.png", File.ReadAllBytes(P("a.png")), p => InterroGate.Data.Formats.ImageFiles.Read(p));
            case "celeba-attributes":
            {
                // A CelebA folder whose list_attr_celeba.txt is the damaged file (the partition and images stay valid).
                string root = Path.Combine(seed, "celeba");
                InterroGate.Data.CelebASample.Write(root, 5);
                return new(parser, InterroGate.Data.CelebA.AttributesFile, File.ReadAllBytes(Path.Combine(root, InterroGate.Data.CelebA.AttributesFile)), p =>
                {
                    File.Copy(p, Path.Combine(root, InterroGate.Data.CelebA.AttributesFile), overwrite: true);
                    InterroGate.Data.CelebA.ReadAnnotations(root);
                }, Text: true);
            }
            default:
                throw new ArgumentException(parser);
        }
    }
}
