// Inference speed of the deployed networks on CPU: STL, MTL, the gated InterroGate network and the static
// network pruned from it, at batch 1 (latency) and batch 32 (throughput), and the pruned network's measured
// speed-up over STL against the speed-up its MACs predict.
using System.Diagnostics;
using System.Globalization;
using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Deployment;
using InterroGate.Tasks;
using static TorchSharp.torch;

internal static class DeploySpeed
{
    public static void Run(string backbone, int size, double[] fractions, int repeats)
    {
        var tasks = new TaskSet([new TaskSpec("task1", TaskKind.Classification, 10), new TaskSpec("task2", TaskKind.Classification, 10)]);
        var spec = BackboneCatalog.Spec(backbone);
        var input = new ImageInput(3, size, size);
        manual_seed(0);
        var stl = new SingleTask(tasks, spec, 3);
        var mtl = new HardSharing(tasks, spec, 3);
        var (stlStatic, mtlStatic) = (StaticConversion.ToStatic(stl, input).Graph, StaticConversion.ToStatic(mtl, input).Graph);
        using var stlNet = new StaticNetwork(stlStatic);

        Console.WriteLine($"{backbone}, T = {tasks.Count}, input 3×{size}×{size}, {get_num_threads()} threads; median of {repeats} forward passes (no_grad, eval) after 2 warm-up passes");
        Console.WriteLine("| model | task-specific % | MACs (G) | batch 1 ms | batch 32 img/s | speed-up over STL (batch 1 / batch 32) | predicted by MACs | measured / predicted (batch 1 / batch 32) |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        var (stl1, stl32) = Time(x => stl.call(x), size, repeats);
        long stlMacs = Macs(stl, size);
        Row("STL (2 networks)", "100", stlMacs, stl1, stl32, null);
        var (stlS1, stlS32) = Time(x => stlNet.call(x), size, repeats);
        Row("STL, BN folded (static)", "100", stlMacs, stlS1, stlS32, null);
        var (mtl1, mtl32) = Time(x => mtl.call(x), size, repeats);
        Row("MTL", "0", Macs(mtl, size), mtl1, mtl32, null);

        foreach (var fraction in fractions)
        {
            manual_seed(1);
            var ig = new InterroGateModel(tasks, spec, 3, (size, size), new InterroGateConfig());
            using (no_grad())
                foreach (var g in ig.Encoder.GateLayers) g.Alpha.copy_(rand_like(g.Alpha).lt(fraction).to(float32) * 2 - 1); // G = 1 with probability `fraction`
            ig.eval();
            var pruned = Pruner.Prune(ig, input);
            using var net = new StaticNetwork(pruned.Graph);
            string pct = (100 * ig.TaskSpecificFraction().Overall).ToString("F0", CultureInfo.InvariantCulture);
            var (g1, g32) = Time(x => ig.call(x), size, repeats);
            Row("InterroGate, gated", pct, pruned.Report.MacsBefore, g1, g32, null);
            var (p1, p32) = Time(x => net.call(x), size, repeats);
            Row("InterroGate, pruned", pct, pruned.Report.MacsAfter, p1, p32, (double)stlMacs / pruned.Report.MacsAfter);
        }

        void Row(string name, string pct, long macs, double ms1, double ips32, double? predicted)
        {
            double s1 = stl1 / ms1, s32 = ips32 / stl32;
            string measured = predicted is double p ? $"{s1 / p:F2} / {s32 / p:F2}" : "";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {pct} | {macs / 1e9:F3} | {ms1:F1} | {ips32:F1} | {s1:F2} / {s32:F2} | {(predicted is double q ? q.ToString("F2", CultureInfo.InvariantCulture) : "")} | {measured} |"));
        }
    }

    private static long Macs(MultiTaskModel model, int size) =>
        CostCounter.Count(model, x => model.call(x), [1, 3, size, size]).Macs;

    /// <summary>Median batch-1 latency (ms) and batch-32 throughput (images/s).</summary>
    private static (double Ms1, double Ips32) Time(Func<Tensor, object> forward, int size, int repeats)
    {
        double Median(int batch)
        {
            var x = randn(batch, 3, size, size);
            var times = new List<double>();
            for (int i = 0; i < repeats + 2; i++)
            {
                using var scope = NewDisposeScope();
                using var _ = no_grad();
                var sw = Stopwatch.StartNew();
                forward(x);
                if (i >= 2) times.Add(sw.Elapsed.TotalMilliseconds);
            }
            times.Sort();
            return times[times.Count / 2];
        }
        double ms1 = Median(1);
        double ms32 = Median(32);
        return (ms1, 32 / ms32 * 1000);
    }
}
