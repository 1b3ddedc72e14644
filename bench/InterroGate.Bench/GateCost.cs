// The cost of one gated layer in training: forward + backward of InterroGate's gate and β mix (the
// library's GateLayer, and alternative formulations of the same arithmetic) against the conv+BN+ReLU
// units of the T+1 branches it joins, at the sizes of ResNet-20's three stages on MultiFashion.
// Usage: dotnet run -c Release --project bench/InterroGate.Bench -- gates [width] (default 1)
using System.Diagnostics;
using System.Globalization;
using InterroGate.Gating;
using InterroGate.Runtime;
using static TorchSharp.torch;

internal static class GateCost
{
    private const int Tasks = 2, Runs = 25;
    private const long Batch = 128;

    public static void Run(double width)
    {
        Console.WriteLine($"{get_num_threads()} threads, batch {Batch}, T = {Tasks}, ResNet-20 width {width}; forward + backward, median of {Runs} (ms)");
        Console.WriteLine("| layer output | T+1 conv+BN+ReLU | grouped conv+BN+ReLU | GateLayer (lerp per task, weighted-sum mix) | gate / units | mix from branch outputs | lerp-chain mix | one lerp over stacked branches | einsum mix |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var (c16, hw) in new[] { (16, 36L), (32, 18L), (64, 9L) })
        {
            long C = Math.Max(1, (long)Math.Round(c16 * width));
            long[] sh = [1, C, 1, 1], sh5 = [1, Tasks, C, 1, 1];
            using var scope = NewDisposeScope();
            var conv = nn.Conv2d(C, C, 3, padding: 1, bias: false);
            var bn = nn.BatchNorm2d(C);
            var convG = nn.Conv2d((Tasks + 1) * C, (Tasks + 1) * C, 3, padding: 1, bias: false, groups: Tasks + 1);
            var bnG = nn.BatchNorm2d((Tasks + 1) * C);
            var x = randn(Batch, C, hw, hw).requires_grad_(true);
            var xG = randn(Batch, (Tasks + 1) * C, hw, hw).requires_grad_(true);
            var layer = new GateLayer(Tasks, C, 0, hasMix: true);
            using (no_grad()) layer.Alpha.copy_(randn_like(layer.Alpha));
            var branches = Enumerable.Range(0, Tasks + 1).Select(_ => randn(Batch, C, hw, hw).requires_grad_(true)).ToArray();
            var stacked = randn([Batch, Tasks + 1, C, hw, hw]).requires_grad_(true);
            Tensor psi = branches[0];
            Tensor[] phi = branches[1..];

            double units = Time(() => { Tensor l = zeros(1); for (int i = 0; i <= Tasks; i++) l = l + nn.functional.relu(bn.call(conv.call(x))).sum(); return l; });
            double grouped = Time(() => nn.functional.relu(bnG.call(convG.call(xG))).sum());
            double current = Time(() => { var (g, m) = layer.Apply(phi, psi, layer.Gates(GateNoise.Off)); return Loss(m!, g); });
            double fromInputs = Time(() =>
            {
                var gates = layer.Gates(GateNoise.Off); var w = layer.Beta!.softmax(0);
                var gated = phi.Select((p, t) => psi.lerp(p, gates[t].view(sh))).ToArray();
                Tensor m = psi * (w * (1 - gates)).sum(dim: 0).view(sh);
                var b = w * gates;
                for (int t = 0; t < Tasks; t++) m = m.addcmul(phi[t], b[t].view(sh), 1);
                return Loss(m, gated);
            });
            double chain = Time(() =>
            {
                var gates = layer.Gates(GateNoise.Off); var w = layer.Beta!.softmax(0);
                var gated = phi.Select((p, t) => psi.lerp(p, gates[t].view(sh))).ToArray();
                // Σ_t w_t g_t as nested lerps: m_k = lerp(g_k, m_{k-1}, (w_0 + … + w_{k-1}) / (w_0 + … + w_k)).
                Tensor m = gated[0], acc = w[0];
                for (int t = 1; t < Tasks; t++) { var next = acc + w[t]; m = gated[t].lerp(m, (acc / next).view(sh)); acc = next; }
                return Loss(m, gated);
            });
            double stackedLerp = Time(() =>
            {
                var gates = layer.Gates(GateNoise.Off); var w = layer.Beta!.softmax(0);
                var gated = stacked.narrow(1, 0, 1).lerp(stacked.narrow(1, 1, Tasks), gates.view(sh5));
                return (gated * w.view(sh5)).sum(dim: 1).sum() + gated.sum();
            });
            double einsumMix = Time(() =>
            {
                var gates = layer.Gates(GateNoise.Off); var w = layer.Beta!.softmax(0);
                var gated = stacked.narrow(1, 0, 1).lerp(stacked.narrow(1, 1, Tasks), gates.view(sh5));
                return einsum("btchw,tc->bchw", gated, w).sum() + gated.sum();
            });
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {C}×{hw}×{hw} | {units:F1} | {grouped:F1} | {current:F1} | {current / units:F2} | {fromInputs:F1} | {chain:F1} | {stackedLerp:F1} | {einsumMix:F1} |"));
        }
    }

    /// <summary>
    /// The gate and mix alone with the gradients a network gives it (dense, contiguous, from the next convolutions):
    /// the fused kernel on all threads and on one, against the tensor operations. Forward + backward, median (ms).
    /// </summary>
    public static void Kernel(double width)
    {
        Console.WriteLine($"{get_num_threads()} threads, batch {Batch}, T = {Tasks}, ResNet-20 width {width}; gate and mix forward + backward with dense upstream gradients, median of {Runs} (ms)");
        Console.WriteLine("| layer output | tensor operations | fused kernel | fused kernel, 1 thread | one copy of the layer output (clone) |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (var (c16, hw) in new[] { (16, 36L), (32, 18L), (64, 9L) })
        {
            long C = Math.Max(1, (long)Math.Round(c16 * width));
            using var scope = NewDisposeScope();
            var layer = new GateLayer(Tasks, C, 0, hasMix: true);
            using (no_grad()) layer.Alpha.copy_(randn_like(layer.Alpha));
            var branches = Enumerable.Range(0, Tasks + 1).Select(_ => randn(Batch, C, hw, hw).requires_grad_(true)).ToArray();
            var upstream = Enumerable.Range(0, Tasks + 1).Select(_ => randn(Batch, C, hw, hw)).ToArray();
            double Pass(bool kernel, int threads)
            {
                (GateMixKernel.Enabled, GateMixKernel.Threads) = (kernel, threads);
                try
                {
                    return TimeAction(() =>
                    {
                        var (g, m) = layer.Apply(branches[1..], branches[0], layer.Gates(GateNoise.Off));
                        autograd.backward([.. g, m!], upstream);
                    });
                }
                finally { (GateMixKernel.Enabled, GateMixKernel.Threads) = (true, 0); }
            }
            double ops = Pass(false, 0), fused = Pass(true, 0), single = Pass(true, 1);
            double copy = TimeAction(() => upstream[0].clone());
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {C}×{hw}×{hw} | {ops:F2} | {fused:F2} | {single:F2} | {copy:F2} |"));
        }
    }

    private static double TimeAction(Action run)
    {
        var times = new List<double>();
        for (int i = 0; i < Runs + 3; i++)
        {
            using var scope = NewDisposeScope();
            var sw = Stopwatch.StartNew();
            run();
            if (i >= 3) times.Add(sw.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }

    private static Tensor Loss(Tensor mixed, Tensor[] gated)
    {
        Tensor l = mixed.sum();
        foreach (var g in gated) l = l + g.sum();
        return l;
    }

    private static double Time(Func<Tensor> lossOf) => TimeAction(() => lossOf().backward());
}
