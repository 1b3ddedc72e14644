// The optimisers' share of a training step: zero_grad + step of the weights' Adam and the gates' SGD, TorchSharp's
// per-parameter optimisers against the flat ones (training.flatOptimizer), on the benchmark models' parameter lists.
// Usage: InterroGate.Bench optimizer-step [--device cpu|cuda] [--repeats N]
using System.Diagnostics;
using System.Globalization;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Tasks;
using InterroGate.Training;
using TorchSharp;
using static TorchSharp.torch;

internal static class OptimizerStep
{
    public static void Run(string[] args)
    {
        var o = GpuSuite.Options(args, [], "device", "repeats");
        var device = InterroGate.Runtime.Devices.Resolve(o.GetValueOrDefault("device", "cpu"), tf32: true);
        int repeats = int.Parse(o.GetValueOrDefault("repeats", "50"), CultureInfo.InvariantCulture);
        Console.WriteLine($"{device} ({get_num_threads()} threads); zero_grad + step of the weights' Adam (lr 1e-3, weight decay 1e-4) " +
                          $"and the gates' SGD (lr 0.1), gradients random (filled before each timed step and zeroing); median of {repeats} after 10 warm-up (ms)");
        Console.WriteLine("| model | parameter tensors (weights + gates) | elements | per parameter (TorchSharp) | flat | speed-up | largest weight difference at the end |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var (label, backbone, width, tasks, channels, size) in new[]
                 {
                     ("ResNet-20 x1/4, 2 tasks", "resnet20", 0.25, 2, 1, 36),
                     ("ResNet-18, 3 tasks", "resnet18", 1.0, 3, 3, 224),
                 })
        {
            foreach (var model in new[] { "mtl", "interrogate" })
            {
                var (perParameter, weightsA) = Time(label, backbone, width, tasks, channels, size, model, flat: false, device, repeats);
                var (flat, weightsB) = Time(label, backbone, width, tasks, channels, size, model, flat: true, device, repeats);
                double difference = weightsA.Zip(weightsB).Max(p => (p.First - p.Second).abs().max().item<float>());
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {label}, {model} | {weightsA.Length} | {weightsA.Sum(w => w.numel()):N0} | {perParameter:F3} | {flat:F3} | {perParameter / flat:F1}x | {difference:E1} |"));
            }
        }
    }

    private static (double Ms, Tensor[] Weights) Time(string label, string backbone, double width, int tasks, int channels, int size,
        string model, bool flat, Device device, int repeats)
    {
        var taskSet = new TaskSet(Enumerable.Range(1, tasks).Select(t => new TaskSpec($"task{t}", TaskKind.Classification, 10)).ToArray());
        var spec = BackboneCatalog.Spec(backbone, width);
        manual_seed(0);
        MultiTaskModel net = model == "mtl"
            ? new HardSharing(taskSet, spec, channels)
            : new InterroGateModel(taskSet, spec, channels, (size, size), new InterroGateConfig { LambdaS = 1 });
        net.to(device);
        var weights = net.ParametersOf(GroupKind.Weights).ToArray();
        var gates = net.ParametersOf(GroupKind.Gates).ToArray();
        optim.Optimizer adam = flat ? new Flat.Adam(weights, 1e-3, 1e-4) : optim.Adam(weights, 1e-3, weight_decay: 1e-4);
        optim.Optimizer? sgd = gates.Length == 0 ? null : flat ? new Flat.SGD(gates, 0.1) : optim.SGD(gates, 0.1);
        // Gradients as a backward pass leaves them (one tensor per parameter), the same on both sides.
        var generator = new Generator(1);
        var grads = weights.Concat(gates).Select(p => randn(p.shape, generator: generator).to(device)).ToArray();
        void Fill()
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            foreach (var (p, g) in weights.Concat(gates).Zip(grads))
            {
                using var grad = p.grad;
                if (grad is null) p.grad = g.clone(); else grad.add_(g); // as autograd: a new tensor first, then accumulation in place
            }
        }
        var times = new List<double>();
        for (int i = 0; i < 10 + repeats; i++)
        {
            Fill();
            StepOnDevice.Synchronize(device);
            var sw = Stopwatch.StartNew();
            using (NewDisposeScope())
            {
                adam.step();
                sgd?.step();
                adam.zero_grad();
                sgd?.zero_grad();
            }
            StepOnDevice.Synchronize(device);
            if (i >= 10) times.Add(sw.Elapsed.TotalMilliseconds);
        }
        return (times.Order().ElementAt(times.Count / 2), weights.Concat(gates).Select(p => p.detach().cpu()).ToArray());
    }
}
