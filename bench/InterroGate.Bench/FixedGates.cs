// InterroGate's training step once the gates are fixed (the last epochs of training): every copy computed, against
// the copies no task reads left out (GatedEncoder.GatesFixed), next to MTL's step and the gate-learning step, for
// sharing patterns that training produced (the per-layer fractions in a run's metrics.jsonl).
// Usage: dotnet run -c Release --project bench/InterroGate.Bench -- fixed-gates [--width W] METRICS.jsonl...
using System.Globalization;
using System.Text.Json.Nodes;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Gating;
using static TorchSharp.torch;

internal static class FixedGates
{
    private const int Batch = 128, Warmup = 3, Steps = 20;

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

    public static void Run(string[] args)
    {
        double width = 0.25;
        var files = new List<string>();
        for (int i = 0; i < args.Length; i++)
            if (args[i] == "--width") width = double.Parse(args[++i], CultureInfo.InvariantCulture);
            else files.Add(args[i]);
        if (files.Count == 0) throw new ArgumentException("Give one or more InterroGate runs' metrics.jsonl (their last epoch's sharing patterns).");

        manual_seed(0);
        var data = MultiFashion.Load(FashionMnist.DefaultRoot, new MultiFashionOptions(TrainSize: Batch * 4, ValidationSize: 100, TestSize: 100));
        var batches = Enumerable.Range(0, 4).Select(b => data.Train.GetBatch(Enumerable.Range(b * Batch, Batch).Select(i => (long)i).ToArray())).ToArray();
        var tasks = data.Train.Tasks;
        var spec = ResNetSpec.ResNet20(width);
        Console.WriteLine($"threads {get_num_threads()}, batch {Batch}, ResNet-20 ×{width.ToString(CultureInfo.InvariantCulture)}, MultiFashion; " +
                          $"training step (forward, backward, Adam; SGD on the gates while they learn), median of {Steps} after {Warmup} warm-up steps, the models stepped in turn");
        Console.WriteLine("| pattern | task-specific % | copies left out | encoder MACs computed / all copies | MTL ms | gate learning ms | fixed, every copy ms | fixed, unread left out ms | fixed: left out / every copy | fixed, left out / MTL |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var file in files)
        {
            var fractions = Fractions(file);
            manual_seed(3);
            var mtl = new HardSharing(tasks, spec, 1);
            var models = Enumerable.Range(0, 3).Select(_ =>
            {
                manual_seed(3);
                var m = new InterroGateModel(tasks, spec, 1, (36, 36), new InterroGateConfig { LambdaS = 1 });
                SetPattern(m, fractions);
                return m;
            }).ToArray();
            var encoder = models[2].Encoder;
            var unread = encoder.UnreadCopies(encoder.HardGates());
            long all = encoder.Units.Sum(u => u.Macs * (tasks.Count + 1));
            long computed = encoder.Units.Select((u, i) => u.Macs * unread[i].Count(x => !x)).Sum();
            int leftOut = unread.Sum(u => u.Count(x => x)), copies = unread.Sum(u => u.Length);
            encoder.GatesFixed = true;
            var runners = new[] { new Stepper(mtl, batches), new Stepper(models[0], batches), new Stepper(models[1], batches, stepGates: false), new Stepper(models[2], batches, stepGates: false) };
            for (int i = 0; i < Warmup + Steps; i++)
                foreach (var r in runners) r.Step(record: i >= Warmup);
            var (own, _) = models[2].TaskSpecificFraction();
            string name = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(file))) is { Length: > 0 } dir && Path.GetFileName(file) == "metrics.jsonl"
                ? dir : Path.GetFileNameWithoutExtension(file).Replace(".metrics", "");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {own * 100:F1} | {leftOut} of {copies} | {(double)computed / all:F2} | {runners[0].Median:F1} | {runners[1].Median:F1} | {runners[2].Median:F1} | {runners[3].Median:F1} | {runners[3].Median / runners[2].Median:F2} | {runners[3].Median / runners[0].Median:F2} |"));
            foreach (var m in models) m.Dispose();
            mtl.Dispose();
        }
    }
}
