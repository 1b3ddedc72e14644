// Where the pruned network's time goes for scattered gate patterns, and whether another layout of the same
// computation (same MACs) would be faster on CPU. One gated layer of ResNet-18 at each stage size, from task t's
// point of view: its input is assembled channel by channel from its own kept outputs and the shared ones, then
// its next convolution computes its kept filters. Three ways to compute exactly that:
//   gather: assemble the input (what StaticNetwork does: select + copy into place), then one convolution;
//   split: no assembly; the shared filters are ordered so that the channels task t reads form one contiguous slice,
//          and the convolution is split by source: conv(own, W[:, own]) + conv(shared slice, W[:, shared]);
//   channels-last: the gather and the convolution on NHWC tensors (oneDNN's native layout for convolutions).
// And the whole pruned ResNet-18 run in NCHW and in NHWC (input and weights converted), against static STL.
using System.Diagnostics;
using System.Globalization;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Tasks;
using static TorchSharp.torch;

internal static class DeployLayouts
{
    public static void Run(int repeats)
    {
        using var _ = no_grad();
        Console.WriteLine($"{get_num_threads()} threads; median of {repeats} passes after 2 warm-up passes; ms");
        Console.WriteLine();
        Console.WriteLine("One consumer convolution (3×3) of a task at each ResNet-18 stage: p = the task-specific fraction (random, per channel)");
        Console.WriteLine();
        Console.WriteLine("| batch | input | p | own / shared channels read | filters | gather + conv | split by source (conv + conv + add) | channels-last gather + conv | conv alone (input ready) |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        var random = new Random(0);
        foreach (var batch in new[] { 1, 32 })
            foreach (var (c, hw) in new[] { (64, 56), (128, 28), (256, 14), (512, 7) })
                foreach (var p in new[] { 0.1, 0.3, 0.5 })
                {
                    using var scope = NewDisposeScope();
                    var own = Enumerable.Range(0, c).Where(_ => random.NextDouble() < p).ToArray();
                    if (own.Length == 0) own = [0];
                    int nOwn = own.Length, nShared = c - nOwn;
                    // The shared output also holds channels only the other task reads (half of its own, on average).
                    int sharedWidth = nShared + (int)Math.Round(nOwn * (1 - p));
                    int filters = Math.Max(1, (int)Math.Round(p * c));
                    var ownOut = randn(batch, nOwn, hw, hw);
                    var sharedOut = randn(batch, sharedWidth, hw, hw);
                    var weight = randn(filters, c, 3, 3);
                    var bias = randn(filters);
                    // gather: the task's channels in their logical order; the shared ones read from scattered places.
                    var isOwn = new bool[c];
                    foreach (var o in own) isOwn[o] = true;
                    var sharedPositions = Enumerable.Range(0, sharedWidth).OrderBy(_ => random.Next()).Take(nShared).ToArray();
                    var ownPlaces = tensor(own.Select(v => (long)v).ToArray());
                    var sharedPlaces = tensor(Enumerable.Range(0, c).Where(i => !isOwn[i]).Select(i => (long)i).ToArray());
                    var sharedIndex = tensor(sharedPositions.Select(v => (long)v).ToArray());
                    Tensor Gather(Tensor ownValue, Tensor sharedValue)
                    {
                        var x = sharedValue.index_select(1, sharedIndex);
                        var full = empty(batch, c, hw, hw);
                        full.index_copy_(1, sharedPlaces, x);
                        return full.index_copy_(1, ownPlaces, ownValue);
                    }
                    double gather = Median(() => nn.functional.conv2d(Gather(ownOut, sharedOut), weight, bias, padding: [1, 1]), repeats);
                    // split: weights reordered by source; the task's shared channels are the first nShared of the shared output.
                    var wOwn = weight.index_select(1, ownPlaces).contiguous();
                    var wShared = weight.index_select(1, sharedPlaces).contiguous();
                    double split = Median(() => nn.functional.conv2d(ownOut, wOwn, bias, padding: [1, 1])
                        .add_(nn.functional.conv2d(sharedOut.narrow(1, 0, nShared), wShared, padding: [1, 1])), repeats);
                    var ownNhwc = ChannelsLast(ownOut);
                    var sharedNhwc = ChannelsLast(sharedOut);
                    var weightNhwc = ChannelsLast(weight);
                    double nhwc = Median(() => nn.functional.conv2d(ChannelsLast(Gather(ownNhwc, sharedNhwc)), weightNhwc, bias, padding: [1, 1]), repeats);
                    var ready = randn(batch, c, hw, hw);
                    double alone = Median(() => nn.functional.conv2d(ready, weight, bias, padding: [1, 1]), repeats);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {batch} | {c}×{hw}×{hw} | {p:F1} | {nOwn} / {nShared} | {filters} | {gather:F2} | {split:F2} | {nhwc:F2} | {alone:F2} |"));
                }

        Console.WriteLine();
        Console.WriteLine("The whole network (ResNet-18, 224×224, two tasks): NCHW as StaticNetwork runs it, and with input and weights in NHWC");
        Console.WriteLine();
        Console.WriteLine("| network | batch 1, NCHW | batch 1, NHWC | batch 32, NCHW | batch 32, NHWC |");
        Console.WriteLine("|---|---|---|---|---|");
        var tasks = new TaskSet([new TaskSpec("task1", TaskKind.Classification, 10), new TaskSpec("task2", TaskKind.Classification, 10)]);
        var spec = BackboneCatalog.Spec("resnet18");
        var input = new ImageInput(3, 224, 224);
        manual_seed(0);
        var networks = new List<(string Name, StaticNetwork Net)>
        {
            ("STL, BN folded (static)", new StaticNetwork(StaticConversion.ToStatic(new SingleTask(tasks, spec, 3), input).Graph)),
        };
        foreach (var p in new[] { 0.1, 0.3 })
        {
            manual_seed(1);
            var ig = new InterroGateModel(tasks, spec, 3, (224, 224), new InterroGateConfig());
            DeploySpeed.SetGates(ig, (g, _, _) => rand_like(g.Alpha).lt(p));
            ig.eval();
            networks.Add(($"InterroGate, pruned: random {p:P0}", new StaticNetwork(Pruner.Prune(ig, input).Graph)));
        }
        var times = networks.Select(_ => new double[4]).ToArray();
        foreach (var (batch, column) in new[] { (1, 0), (32, 2) })
        {
            var x = randn(batch, 3, 224, 224);
            for (int n = 0; n < networks.Count; n++)
            {
                var net = networks[n].Net;
                times[n][column] = Median(() => net.call(x), repeats);
                var originals = net.parameters().Where(w => w.dim() == 4).Select(w => (Weight: w, Value: w.clone())).ToArray();
                foreach (var (w, _) in originals) w.set_(ChannelsLast(w));
                var xNhwc = ChannelsLast(x);
                times[n][column + 1] = Median(() => net.call(xNhwc), repeats);
                foreach (var (w, value) in originals) w.set_(value);
            }
        }
        for (int n = 0; n < networks.Count; n++)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {networks[n].Name} | {times[n][0]:F1} | {times[n][1]:F1} | {times[n][2]:F1} | {times[n][3]:F1} |"));
    }

    /// <summary>The same values with NHWC strides (PyTorch's channels-last memory format).</summary>
    private static Tensor ChannelsLast(Tensor t) => t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);

    private static double Median(Func<object> pass, int repeats)
    {
        var times = new List<double>();
        for (int i = 0; i < repeats + 2; i++)
        {
            using var scope = NewDisposeScope();
            var sw = Stopwatch.StartNew();
            pass();
            if (i >= 2) times.Add(sw.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }
}
