// Training step time and peak memory of MTL (ResNet-20 ×½, MultiFashion, batch 128) under every
// loss-balancing method, against the uniform sum; the gradient methods against T × that.
// Usage: dotnet run -c Release --project bench/InterroGate.Bench -- balancers [methods...]   (time, one process, round-robin)
//        dotnet run -c Release --project bench/InterroGate.Bench -- balancer-memory METHOD   (peak resident memory of one method)
using System.Globalization;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Data;
using static TorchSharp.torch;

internal static class BalancerCost
{
    private const int Batch = 128, Warmup = 3, Steps = 12;
    private const double Width = 0.5;

    public static void Run(bool memory, string[] methods)
    {
        var names = methods.Length > 0 ? methods : Factory.Balancers.Keys.Where(k => k != "fixed").ToArray();
        var data = MultiFashion.Load(FashionMnist.DefaultRoot, new MultiFashionOptions(TrainSize: Batch * 4, ValidationSize: 100, TestSize: 100));
        var batches = Enumerable.Range(0, 4).Select(b => data.Train.GetBatch(Enumerable.Range(b * Batch, Batch).Select(i => (long)i).ToArray())).ToArray();
        var tasks = data.Train.Tasks;
        Stepper Build(string name)
        {
            manual_seed(0);
            var model = new HardSharing(tasks, ResNetSpec.ResNet20(Width), 1);
            var balancer = ConfigJson.Deserialize<BalancerConfig>($"{{ \"type\": \"{name}\" }}").Create(tasks.Count);
            return new Stepper(model, batches, balancer);
        }

        if (memory)
        {
            if (names.Length != 1) throw new ArgumentException("balancer-memory takes one method name.");
            var stepper = Build(names[0]);
            stepper.Step(record: false); // allocate weights, optimiser state and the first step's buffers
            long before = Status("VmRSS");
            for (int i = 0; i < Steps; i++) stepper.Step(record: false);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{names[0]}\tpeak resident MiB {Status("VmHWM") / 1024.0:F0}\tresident before the timed steps MiB {before / 1024.0:F0}"));
            return;
        }

        var all = new[] { "uniform" }.Concat(names.Where(n => n != "uniform")).ToArray();
        var steppers = all.Select(Build).ToArray();
        for (int i = 0; i < Warmup + Steps; i++)
            foreach (var s in steppers) s.Step(record: i >= Warmup);
        double baseline = steppers[0].Median;
        int T = tasks.Count;
        Console.WriteLine($"MTL, ResNet-20 ×{Width}, MultiFashion batch {Batch}, T = {T}, {get_num_threads()} threads; median of {Steps} steps after {Warmup} warm-up, methods stepped in turn");
        Console.WriteLine("| method | step ms | × uniform MTL | × (T × uniform MTL) |");
        Console.WriteLine("|---|---|---|---|");
        for (int i = 0; i < all.Length; i++)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {all[i]} | {steppers[i].Median:F1} | {steppers[i].Median / baseline:F2} | {steppers[i].Median / (T * baseline):F2} |"));
    }

    /// <summary>A /proc/self/status field in KiB.</summary>
    private static long Status(string field)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return long.Parse(line.Split(':', StringSplitOptions.TrimEntries)[1].Split(' ')[0], CultureInfo.InvariantCulture);
    }
}
