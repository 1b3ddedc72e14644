// InterroGate's training step once the gates are fixed (the last epochs of training): every copy computed, against
// the copies no task reads left out (GatedEncoder.GatesFixed) and against only the filters some task reads computed
// (GatedEncoder.KeptFiltersOnly, the default), next to MTL's step and the gate-learning step (its backward pass through
// every filter, and through the read filters only: GatedEncoder.BackwardReadFiltersOnly, the default), for sharing
// patterns that training produced (the per-layer fractions in a run's metrics.jsonl).
// Usage: dotnet run -c Release --project bench/InterroGate.Bench -- fixed-gates [--width W] METRICS.jsonl...
//    or: ... fixed-gates --backbone resnet18 --size 112 --batch 16 --random 0.3,0.5 (scattered random patterns: each
//        layer and task keeps that fraction of its channels, drawn at random; random images of that size)
using System.Globalization;
using System.Text.Json.Nodes;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Gating;
using static TorchSharp.torch;

internal static class FixedGates
{
    private const int Warmup = 3, Steps = 20;

    /// <summary>Per gated layer and task, the task-specific fraction of the last epoch in <paramref name="metricsPath"/>.</summary>
    internal static double[][] Fractions(string metricsPath)
    {
        var last = File.ReadLines(metricsPath).Last(l => l.TrimStart().StartsWith('{'));
        var gates = JsonNode.Parse(last)!["gates"]?.AsArray()
            ?? throw new InvalidDataException($"{metricsPath}: its last line has no per-layer gates (not an InterroGate run's metrics)");
        return gates.Select(l => l!["tasks"]!.AsArray().Select(t => t!["specific"]!.GetValue<double>()).ToArray()).ToArray();
    }

    /// <summary>Sets the gates so that layer ℓ, task t keeps its first round(f·C) channels task-specific.</summary>
    internal static void SetPattern(InterroGateModel model, double[][] fractions)
    {
        var layers = model.Encoder.GateLayers;
        if (fractions.Length != layers.Count)
            throw new ArgumentException($"The pattern has {fractions.Length} gated layers, the model {layers.Count}: a run of another backbone or width");
        using var _ = no_grad();
        for (int l = 0; l < layers.Count; l++)
            for (int t = 0; t < layers[l].Tasks; t++)
            {
                long own = (long)Math.Round(fractions[l][t] * layers[l].Channels);
                layers[l].Alpha[t].copy_(arange(layers[l].Channels).lt(own).to(float32) * 2 - 1);
            }
    }

    /// <summary>Sets the gates so that layer ℓ, task t keeps a random <paramref name="fraction"/> of its channels (scattered).</summary>
    private static void SetRandomPattern(InterroGateModel model, double fraction, int seed)
    {
        var rng = new Random(seed);
        using var _ = no_grad();
        foreach (var layer in model.Encoder.GateLayers)
            for (int t = 0; t < layer.Tasks; t++)
            {
                long own = (long)Math.Round(fraction * layer.Channels);
                var on = new float[layer.Channels];
                foreach (var c in Enumerable.Range(0, (int)layer.Channels).OrderBy(_ => rng.Next()).Take((int)own)) on[c] = 1;
                layer.Alpha[t].copy_(tensor(on) * 2 - 1);
            }
    }

    public static void Run(string[] args)
    {
        double width = 0.25;
        string backbone = "resnet20";
        int size = 36, batch = 128;
        var files = new List<string>();
        var random = new List<double>();
        for (int i = 0; i < args.Length; i++)
            switch (args[i])
            {
                case "--width": width = double.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--backbone": backbone = args[++i]; break;
                case "--size": size = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--batch": batch = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--random": random.AddRange(args[++i].Split(',').Select(f => double.Parse(f, CultureInfo.InvariantCulture))); break;
                default: files.Add(args[i]); break;
            }
        if (files.Count + random.Count == 0)
            throw new ArgumentException("Give one or more InterroGate runs' metrics.jsonl (their last epoch's sharing patterns), or --random F,...");

        manual_seed(0);
        var data = MultiFashion.Load(FashionMnist.DefaultRoot, new MultiFashionOptions(TrainSize: batch * 4, ValidationSize: 100, TestSize: 100));
        var batches = Enumerable.Range(0, 4).Select(b => data.Train.GetBatch(Enumerable.Range(b * batch, batch).Select(i => (long)i).ToArray())).ToArray();
        var tasks = data.Train.Tasks;
        var spec = backbone == "resnet20" ? ResNetSpec.ResNet20(width) : BackboneCatalog.Spec(backbone);
        long channels = 1;
        if (backbone != "resnet20" || size != 36)
        {
            // MultiFashion's labels with random 3-channel images of the size asked for (the step's cost does not depend on the pixels).
            channels = 3;
            foreach (var b in batches) b[IMultiTaskDataset.ImageKey] = randn(batch, 3, size, size);
        }
        string name = backbone == "resnet20" ? $"ResNet-20 ×{width.ToString(CultureInfo.InvariantCulture)}" : backbone;
        Console.WriteLine($"threads {get_num_threads()}, batch {batch}, {name}, {size}×{size}, MultiFashion's tasks; " +
                          $"training step (forward, backward, Adam; SGD on the gates while they learn), median of {Steps} after {Warmup} warm-up steps, the models stepped in turn");
        Console.WriteLine("| pattern | task-specific % | copies left out | encoder MACs: copies read / all | encoder MACs: kept filters / all | MTL ms | gate learning, backward through every filter ms | gate learning, backward through read filters ms | fixed, every copy ms | fixed, unread left out ms | fixed, kept filters ms | gate learning: read / every | gate learning, read / MTL | left out / every copy | kept filters / every copy | kept filters / MTL |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var pattern in files.Cast<object>().Concat(random.Cast<object>()))
        {
            manual_seed(3);
            var mtl = new HardSharing(tasks, spec, channels);
            var models = Enumerable.Range(0, 5).Select(_ =>
            {
                manual_seed(3);
                var m = new InterroGateModel(tasks, spec, channels, (size, size), new InterroGateConfig { LambdaS = 1 });
                if (pattern is string file) SetPattern(m, Fractions(file));
                else SetRandomPattern(m, (double)pattern, 17);
                return m;
            }).ToArray();
            models[0].Encoder.BackwardReadFiltersOnly = false; // models[4]: the default
            var encoder = models[2].Encoder;
            var unread = encoder.UnreadCopies(encoder.HardGates());
            long all = encoder.Units.Sum(u => u.Macs * (tasks.Count + 1));
            long computed = encoder.Units.Select((u, i) => u.Macs * unread[i].Count(x => !x)).Sum();
            int leftOut = unread.Sum(u => u.Count(x => x)), copies = unread.Sum(u => u.Length);
            encoder.KeptFiltersOnly = false;
            encoder.GatesFixed = true;
            models[3].Encoder.GatesFixed = true; // kept filters only (the default)
            var keptEncoder = models[3].Encoder; // what it computes: whole copies where a unit does not narrow, kept filters where it does
            long keptMacs = InterroGate.Analysis.CostCounter.Count(keptEncoder, x => keptEncoder.call(x), [1, channels, size, size]).Macs;
            var runners = new[] { new Stepper(mtl, batches), new Stepper(models[0], batches), new Stepper(models[1], batches, stepGates: false),
                new Stepper(models[2], batches, stepGates: false), new Stepper(models[3], batches, stepGates: false), new Stepper(models[4], batches) };
            for (int i = 0; i < Warmup + Steps; i++)
                foreach (var r in runners) r.Step(record: i >= Warmup);
            var (own, _) = models[2].TaskSpecificFraction();
            string label = pattern is not string file ? $"random {(double)pattern * 100:F0} %"
                : Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(file))) is { Length: > 0 } dir && Path.GetFileName(file) == "metrics.jsonl"
                ? dir : Path.GetFileNameWithoutExtension(file).Replace(".metrics", "");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {label} | {own * 100:F1} | {leftOut} of {copies} | {(double)computed / all:F2} | {(double)keptMacs / all:F2} | {runners[0].Median:F1} | {runners[1].Median:F1} | {runners[5].Median:F1} | {runners[2].Median:F1} | {runners[3].Median:F1} | {runners[4].Median:F1} | {runners[5].Median / runners[1].Median:F2} | {runners[5].Median / runners[0].Median:F2} | {runners[3].Median / runners[2].Median:F2} | {runners[4].Median / runners[2].Median:F2} | {runners[4].Median / runners[0].Median:F2} |"));
            foreach (var m in models) m.Dispose();
            mtl.Dispose();
        }
    }
}
