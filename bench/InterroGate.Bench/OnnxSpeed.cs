// Inference of the pruned static network in our build against ONNX Runtime running the ONNX export of
// the same graph, on CPU, at batch 1 and 32: the same weights, the same thread count, timed in turn.
using System.Diagnostics;
using System.Globalization;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Tasks;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

internal static class OnnxSpeed
{
    public static void Run(int repeats)
    {
        int threads = get_num_threads();
        Console.WriteLine($"{threads} threads for both runtimes; median of {repeats} forward passes after 3 warm-up passes, ours and ONNX Runtime in turn");
        Console.WriteLine($"ONNX Runtime: graph optimisation ORT_ENABLE_ALL, sequential execution, {threads} intra-op threads that do not spin between runs, inputs and outputs bound to preallocated buffers");
        Console.WriteLine("| network | input | MACs (G) | batch | ours ms | ONNX Runtime ms | ours / ORT | max abs difference |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        var tasks = new TaskSet([new TaskSpec("task1", TaskKind.Classification, 10), new TaskSpec("task2", TaskKind.Classification, 10)]);
        foreach (var (backbone, width, size, channels) in new[] { ("resnet18", 1.0, 224, 3), ("resnet20", 0.25, 36, 1) })
        {
            var spec = BackboneCatalog.Spec(backbone, width);
            foreach (var (pattern, fraction) in new[] { ("random 30 %", 0.3), ("last half of the layers", -1.0) })
            {
                manual_seed(1);
                var ig = new InterroGateModel(tasks, spec, channels, (size, size), new InterroGateConfig());
                DeploySpeed.SetGates(ig, (g, l, count) => fraction >= 0 ? rand_like(g.Alpha).lt(fraction) : full_like(g.Alpha, 2 * l >= count).to(@bool));
                ig.eval();
                var pruned = Pruner.Prune(ig, new ImageInput(channels, size, size));
                var ours = new StaticNetwork(pruned.Graph);
                ours.eval();
                using var options = new SessionOptions
                {
                    GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
                    ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
                    IntraOpNumThreads = threads,
                    InterOpNumThreads = 1,
                };
                // ORT's pool otherwise spins after each run, taking the cores from the libtorch pass timed next.
                options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
                using var session = new InferenceSession(OnnxExporter.ToBytes(pruned.Graph), options);
                foreach (var batch in new[] { 1, 32 })
                {
                    var (oursMs, ortMs, diff) = Time(ours, session, batch, channels, size, repeats);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {backbone}{(width == 1 ? "" : $" ×{width}")}, pruned: {pattern} | {channels}×{size}×{size} | {pruned.Report.MacsAfter / 1e9:F3} | {batch} | {oursMs:F2} | {ortMs:F2} | {oursMs / ortMs:F2} | {diff:E1} |"));
                }
            }
        }
    }

    private static (double Ours, double Ort, double MaxDiff) Time(StaticNetwork ours, InferenceSession session, int batch, int channels, int size, int repeats)
    {
        var x = randn(batch, channels, size, size);
        float[] input = x.data<float>().ToArray();
        string[] outputNames = session.OutputMetadata.Keys.ToArray();
        using var inputValue = OrtValue.CreateTensorValueFromMemory(input, [batch, channels, size, size]);
        var outputBuffers = outputNames.Select(n => new float[batch * session.OutputMetadata[n].Dimensions[^1]]).ToArray();
        var outputValues = outputBuffers.Select((b, i) => OrtValue.CreateTensorValueFromMemory(b, [batch, session.OutputMetadata[outputNames[i]].Dimensions[^1]])).ToArray();
        using var runOptions = new RunOptions();

        double maxDiff = 0;
        var oursTimes = new List<double>();
        var ortTimes = new List<double>();
        for (int i = 0; i < repeats + 3; i++)
        {
            Dictionary<string, float[]> ourOutputs;
            var sw = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                var y = ours.call(x);
                double t = sw.Elapsed.TotalMilliseconds;
                if (i >= 3) oursTimes.Add(t);
                ourOutputs = y.ToDictionary(kv => kv.Key, kv => kv.Value.data<float>().ToArray());
            }
            sw.Restart();
            session.Run(runOptions, [OnnxExporter.InputName], [inputValue], outputNames, outputValues);
            if (i >= 3) ortTimes.Add(sw.Elapsed.TotalMilliseconds);
            for (int o = 0; o < outputNames.Length; o++)
                maxDiff = Math.Max(maxDiff, ourOutputs[outputNames[o]].Zip(outputBuffers[o], (a, b) => Math.Abs(a - b)).Max());
        }
        foreach (var v in outputValues) v.Dispose();
        return (Median(oursTimes), Median(ortTimes), maxDiff);
    }

    private static double Median(List<double> v) => v.OrderBy(t => t).ElementAt(v.Count / 2);
}
