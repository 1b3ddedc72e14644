// Inference speed of the deployed networks on CPU: STL, MTL, the gated InterroGate network and the static
// network pruned from it, at batch 1 (latency) and batch 32 (throughput), and the pruned network's measured
// speed-up over STL against the speed-up its MACs predict.
using System.Diagnostics;
using System.Globalization;
using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Gating;
using InterroGate.Tasks;
using static TorchSharp.torch;

internal static class DeploySpeed
{
    /// <param name="trained">InterroGate checkpoints of the same backbone whose learned gates are timed as further patterns.</param>
    public static void Run(string backbone, int size, double[] fractions, int repeats, IReadOnlyList<string>? trained = null)
    {
        var tasks = new TaskSet([new TaskSpec("task1", TaskKind.Classification, 10), new TaskSpec("task2", TaskKind.Classification, 10)]);
        var spec = BackboneCatalog.Spec(backbone);
        var input = new ImageInput(3, size, size);
        manual_seed(0);
        var stl = new SingleTask(tasks, spec, 3);
        var mtl = new HardSharing(tasks, spec, 3);
        var stlNet = new StaticNetwork(StaticConversion.ToStatic(stl, input).Graph);
        long stlMacs = Macs(stl, size);

        // Every network is built first and then timed round-robin (one pass of each in turn), so that
        // drifts of the machine's speed affect all of them alike.
        var models = new List<(string Name, string Pct, long Macs, Func<Tensor, object> Forward, StaticNetwork? Pruned)>
        {
            ("STL (2 networks)", "100", stlMacs, x => stl.call(x), null),
            ("STL, BN folded (static)", "100", stlMacs, x => stlNet.call(x), null),
            ("MTL", "0", Macs(mtl, size), x => mtl.call(x), null),
        };
        var patterns = fractions.Select(f => ($"random {f:P0}", (Func<GateLayer, int, int, Tensor>)((g, _, _) => rand_like(g.Alpha).lt(f)))).ToList();
        patterns.Add(("last half of the layers", (g, layer, layers) => full_like(g.Alpha, 2 * layer >= layers).to(@bool)));
        foreach (var path in trained ?? [])
        {
            var gates = TrainedGates(path);
            patterns.Add(($"trained, {Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(path)))}", (g, layer, layers) =>
            {
                if (gates.Count != layers || gates[layer].Length != g.Tasks || gates[layer][0].Length != g.Channels)
                    throw new ArgumentException($"{path}: its gates ({gates.Count} layers) do not fit {backbone}'s InterroGate model ({layers} layers).");
                return tensor(gates[layer].SelectMany(t => t).ToArray(), dtype: @bool).view(g.Tasks, g.Channels);
            }));
        }
        bool gatedTimed = false;
        foreach (var (pattern, gate) in patterns)
        {
            manual_seed(1);
            var ig = new InterroGateModel(tasks, spec, 3, (size, size), new InterroGateConfig());
            SetGates(ig, gate);
            ig.eval();
            var pruned = Pruner.Prune(ig, input);
            string pct = (100 * ig.TaskSpecificFraction().Overall).ToString("F0", CultureInfo.InvariantCulture);
            if (!gatedTimed) models.Add(("InterroGate, gated (any pattern)", pct, pruned.Report.MacsBefore, x => ig.call(x), null));
            gatedTimed = true;
            var net = new StaticNetwork(pruned.Graph);
            models.Add(($"InterroGate, pruned: {pattern}", pct, pruned.Report.MacsAfter, x => net.call(x), net));
        }

        Console.WriteLine($"{backbone}, T = {tasks.Count}, input 3×{size}×{size}, {get_num_threads()} threads; median of {repeats} forward passes " +
                          "(no_grad, eval) after 2 warm-up passes, the networks timed in turn");
        var ms1 = TimeRoundRobin(models.Select(m => m.Forward).ToArray(), 1, size, repeats);
        var ms32 = TimeRoundRobin(models.Select(m => m.Forward).ToArray(), 32, size, repeats);
        double stl1 = ms1[0], stl32 = 32 / ms32[0] * 1000, stlS1 = ms1[1], stlS32 = 32 / ms32[1] * 1000;
        Console.WriteLine("| model | task-specific % | MACs (G) | batch 1 ms | batch 32 img/s | speed-up over STL (batch 1 / batch 32) | predicted by MACs | measured / predicted (batch 1 / batch 32) | same against static STL |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        for (int m = 0; m < models.Count; m++)
            Row(models[m].Name, models[m].Pct, models[m].Macs, ms1[m], 32 / ms32[m] * 1000, models[m].Pruned is null ? null : (double)stlMacs / models[m].Macs);

        foreach (var batch in new[] { 1, 32 })
        {
            Console.WriteLine();
            Console.WriteLine($"Where the time goes at batch {batch} (ms per forward pass by operator, and number of nodes; per node, the median of 5 passes):");
            var profiles = models.Where(m => m.Pruned is not null).Select(m => (m.Name, Ops: ProfileByOp(m.Pruned!, size, batch)))
                .Prepend((Name: "STL, BN folded (static)", Ops: ProfileByOp(stlNet, size, batch))).ToArray();
            var ops = profiles.SelectMany(p => p.Ops.Keys).Distinct().OrderBy(o => o).Where(o => o != StaticOp.Input).ToArray();
            Console.WriteLine($"| network | {string.Join(" | ", ops)} | total |");
            Console.WriteLine($"|---|{string.Concat(ops.Select(_ => "---|"))}---|");
            foreach (var (name, byOp) in profiles)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {name} | {string.Join(" | ", ops.Select(o => byOp.TryGetValue(o, out var v) ? $"{v.Ms:F1} ({v.Nodes})" : ""))} | {byOp.Values.Sum(v => v.Ms):F1} ({byOp.Values.Sum(v => v.Nodes)}) |"));
        }

        void Row(string name, string pct, long macs, double ms1, double ips32, double? predicted)
        {
            double s1 = stl1 / ms1, s32 = ips32 / stl32;
            string measured = predicted is double p ? string.Create(CultureInfo.InvariantCulture, $"{s1 / p:F2} / {s32 / p:F2}") : "";
            // The same ratio against STL run by the static runtime (BN folded, in-place ReLU and add), which isolates
            // what pruning removes from what the runtime saves.
            string againstStatic = predicted is double r
                ? string.Create(CultureInfo.InvariantCulture, $"{stlS1 / ms1 / r:F2} / {ips32 / stlS32 / r:F2}") : "";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {pct} | {macs / 1e9:F3} | {ms1:F1} | {ips32:F1} | {s1:F2} / {s32:F2} | {(predicted is double q ? q.ToString("F2", CultureInfo.InvariantCulture) : "")} | {measured} | {againstStatic} |"));
        }
    }

    /// <summary>The hard gates of an InterroGate checkpoint, per layer, task and channel.</summary>
    private static IReadOnlyList<bool[][]> TrainedGates(string path)
    {
        var (model, _, _) = ModelFiles.LoadCheckpoint(path);
        using (model)
            return model is InterroGateModel ig ? ig.HardGates() : throw new ArgumentException($"{path} is not an InterroGate checkpoint.");
    }

    /// <summary>Sets every gate: <paramref name="open"/>(layer, index, layers) is true where the task reads its own copy.</summary>
    public static void SetGates(InterroGateModel ig, Func<GateLayer, int, int, Tensor> open)
    {
        var layers = ig.Encoder.GateLayers;
        using (no_grad())
            for (int l = 0; l < layers.Count; l++) layers[l].Alpha.copy_(open(layers[l], l, layers.Count).to(float32) * 2 - 1);
    }

    /// <summary>
    /// Time of a 3×3 convolution at batch 32 on ResNet-18's stage sizes against its number of output
    /// channels: how far time follows MACs for the narrow convolutions a pruned network is made of.
    /// </summary>
    public static void ConvScaling()
    {
        using var _ = no_grad();
        Console.WriteLine($"{get_num_threads()} threads; 3×3 convolution, stride 1, batch 32; median of 5 after 2 warm-up passes");
        Console.WriteLine("| input | output channels | ms | GMAC/s | ms relative to all output channels | MACs relative |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var (cin, hw) in new[] { (64, 56), (128, 28), (256, 14), (512, 7) })
        {
            var x = randn(32, cin, hw, hw);
            var rows = new List<(int Cout, double Ms)>();
            foreach (var cout in new[] { cin / 16, cin / 8, cin / 4, cin / 2, 3 * cin / 4, cin - 1, cin })
            {
                using var conv = nn.Conv2d(cin, cout, 3, padding: 1);
                for (int i = 0; i < 2; i++) conv.call(x).Dispose();
                var times = new List<double>();
                for (int i = 0; i < 5; i++)
                {
                    var sw = Stopwatch.StartNew();
                    conv.call(x).Dispose();
                    times.Add(sw.Elapsed.TotalMilliseconds);
                }
                times.Sort();
                rows.Add((cout, times[2]));
            }
            double full = rows[^1].Ms;
            foreach (var (cout, ms) in rows)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {cin}×{hw}×{hw} | {cout} | {ms:F1} | {32.0 * cout * cin * 9 * hw * hw / ms / 1e6:F1} | {ms / full:F2} | {(double)cout / cin:F2} |"));
        }
    }

    /// <summary>Per-operator time of one forward pass at <paramref name="batch"/> (per node, the median over 5 passes) and node count.</summary>
    private static Dictionary<StaticOp, (double Ms, int Nodes)> ProfileByOp(StaticNetwork net, int size, int batch)
    {
        var x = randn(batch, 3, size, size);
        net.Profile(x);
        var runs = Enumerable.Range(0, 5).Select(_ => net.Profile(x)).ToArray();
        return Enumerable.Range(0, runs[0].Count)
            .Select(i => (runs[0][i].Node.Op, Ms: runs.Select(r => r[i].Ms).OrderBy(v => v).ElementAt(2)))
            .GroupBy(p => p.Op).ToDictionary(g => g.Key, g => (g.Sum(p => p.Ms), g.Count()));
    }

    private static long Macs(MultiTaskModel model, int size) =>
        CostCounter.Count(model, x => model.call(x), [1, 3, size, size]).Macs;

    /// <summary>Median time (ms) of one forward pass of each network at <paramref name="batch"/>, the networks run in turn.</summary>
    private static double[] TimeRoundRobin(Func<Tensor, object>[] forwards, int batch, int size, int repeats)
    {
        var x = randn(batch, 3, size, size);
        var times = forwards.Select(_ => new List<double>()).ToArray();
        for (int i = 0; i < repeats + 2; i++)
            for (int m = 0; m < forwards.Length; m++)
            {
                using var scope = NewDisposeScope();
                using var _ = no_grad();
                var sw = Stopwatch.StartNew();
                forwards[m](x);
                if (i >= 2) times[m].Add(sw.Elapsed.TotalMilliseconds);
            }
        return times.Select(t => t.OrderBy(v => v).ElementAt(t.Count / 2)).ToArray();
    }
}
