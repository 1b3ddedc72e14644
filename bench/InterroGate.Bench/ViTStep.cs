// The training step of InterroGate on a ViT against the T+1 plain ViTs it is made of (what gating and mixing cost),
// and against MTL (one ViT), on CPU at MultiFashion's input.
// Usage: dotnet run -c Release --project bench/InterroGate.Bench -- vit-step [batch] [steps] [tasks]
using System.Diagnostics;
using System.Globalization;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Heads;
using InterroGate.Tasks;
using static TorchSharp.torch;

internal static class ViTStep
{
    public static void Run(string[] args)
    {
        int batch = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 128;
        int steps = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 10;
        int tasks = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 2;
        const int Size = 36, Channels = 1; // MultiFashion's images
        var spec = ViTSpec.Cpu4();
        var taskSet = new TaskSet(Enumerable.Range(1, tasks).Select(t => new TaskSpec($"task{t}", TaskKind.Classification, 10)).ToArray());
        manual_seed(0);
        using var ig = new InterroGateModel(taskSet, spec, Channels, (Size, Size), new InterroGateConfig { LambdaS = 1, AlphaInit = 0.01 });
        using (no_grad())
            foreach (var g in ig.Encoder.GateLayers) g.Alpha.copy_(randn_like(g.Alpha)); // a mixed pattern: both sources read
        using var mtl = new HardSharing(taskSet, spec, Channels);
        // The same work without gates: T+1 plain ViTs on the image, a head on each task's.
        var branches = Enumerable.Range(0, tasks + 1).Select(_ => (nn.Module<Tensor, Tensor>)new VisionTransformer(spec, Channels)).ToArray();
        var heads = Enumerable.Range(0, tasks).Select(_ => new ClassificationHead(spec.OutChannels, 10)).ToArray();
        foreach (var m in branches) m.train();
        var x = randn(batch, Channels, Size, Size);
        var y = randint(0, 10, [batch], dtype: int64);

        double IgStep()
        {
            var outputs = ig.call(x);
            var loss = outputs.Values.Select(o => nn.functional.cross_entropy(o, y)).Aggregate((a, b) => a + b) + ig.Regularizer()!;
            loss.backward();
            return 0;
        }
        double MtlStep()
        {
            var outputs = mtl.call(x);
            outputs.Values.Select(o => nn.functional.cross_entropy(o, y)).Aggregate((a, b) => a + b).backward();
            return 0;
        }
        double BranchStep()
        {
            var features = branches.Select(b => b.call(x)).ToArray();
            var loss = heads.Select((h, t) => nn.functional.cross_entropy(h.call(features[t]), y)).Aggregate((a, b) => a + b) + features[tasks].mean();
            loss.backward();
            return 0;
        }
        ig.train();
        mtl.train();
        var modules = new nn.Module[] { ig, mtl }.Concat(branches).Concat(heads).ToArray();
        var cases = new (string Name, Func<double> Step)[] { ("InterroGate", IgStep), ($"{tasks + 1} plain ViTs", BranchStep), ("MTL", MtlStep) };
        var times = cases.ToDictionary(c => c.Name, _ => new List<double>());
        for (int r = -2; r < steps; r++) // two warm-up rounds, then the cases alternate
            foreach (var (name, step) in cases)
            {
                foreach (var m in modules) m.zero_grad();
                using var scope = NewDisposeScope();
                var watch = Stopwatch.StartNew();
                step();
                if (r >= 0) times[name].Add(watch.Elapsed.TotalMilliseconds);
            }
        double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
        double plain = Median(times[cases[1].Name]);
        Console.WriteLine($"ViT {spec.Name} on {Channels}×{Size}×{Size}, batch {batch}, T = {tasks}, {get_num_threads()} threads; forward + backward, median of {steps} (ms)");
        Console.WriteLine($"| model | ms per step | / {tasks + 1} plain ViTs |");
        Console.WriteLine("|---|---|---|");
        foreach (var (name, _) in cases)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {Median(times[name]):F0} | {Median(times[name]) / plain:F2} |"));
    }
}
