// Throughput of the dense training step on FashionScenes batches (64×64, NYUD-like tasks semseg, depth, normals):
// one plain network (STL, one task), MTL and InterroGate (half the channels shared, the gates drawn at random), on
// ResNet-18 dilated to each output stride with 64-channel ASPP heads, as the fashion-scenes-nyud preset trains.
// Usage: dotnet run -c Release --project bench/InterroGate.Bench -- dense-step [outputStrides...] [--device cuda]
//        (default 16 8 on cpu; on a GPU machine run the published bench with --device cuda)
using System.Globalization;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Heads;
using InterroGate.Tasks;
using TorchSharp;
using static TorchSharp.torch;

internal static class DenseStep
{
    private const int Batch = 32, Warmup = 2, Steps = 8;

    public static void Run(string[] args)
    {
        int d = Array.IndexOf(args, "--device");
        var device = d >= 0 && d + 1 < args.Length ? InterroGate.Runtime.Devices.Resolve(args[d + 1]) : CPU;
        var outputStrides = args.Where((a, i) => d < 0 || (i != d && i != d + 1)).Select(a => int.Parse(a, CultureInfo.InvariantCulture)).ToArray();
        if (outputStrides.Length == 0) outputStrides = [16, 8];
        manual_seed(0);
        var data = FashionScenes.Load(new FashionScenesOptions(FashionMnist.DefaultRoot, TrainSize: Batch * 3, ValidationSize: 8, TestSize: 8));
        var tasks = data.Train.Tasks.Select(FashionScenes.NyudTasks);
        var batches = Enumerable.Range(0, 3).Select(b => data.Train.GetBatch(Enumerable.Range(b * Batch, Batch).Select(i => (long)i).ToArray())
            .ToDictionary(kv => kv.Key, kv => kv.Value.to(device))).ToArray();
        var head = new HeadConfig { Dense = "aspp", Channels = 64 };
        Console.WriteLine($"device {device}, threads {get_num_threads()}, batch {Batch} of 64×64 scenes, tasks {string.Join(", ", tasks.Names)}; " +
                          $"median of {Steps} training steps (forward, backward, Adam (+ SGD for the gates) step) after {Warmup} warm-up steps, the models stepped in turn");
        Console.WriteLine("| backbone | plain network (1 task) ms | MTL ms | InterroGate ms | plain img/s | MTL img/s | InterroGate img/s | InterroGate / ((T+1) × plain) |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (int os in outputStrides)
        {
            var spec = ResNetSpec.ResNet18(ResNetSpec.DilationForOutputStride(os));
            var plain = new SingleTask(new TaskSet([tasks[0]]), spec, 3, head);
            var mtl = new HardSharing(tasks, spec, 3, head);
            manual_seed(3);
            var ig = new InterroGateModel(tasks, spec, 3, (64, 64), new InterroGateConfig { LambdaS = 1 }, head);
            manual_seed(4);
            using (no_grad())
                foreach (var g in ig.Encoder.GateLayers) g.Alpha.copy_(randn_like(g.Alpha));
            foreach (var model in new MultiTaskModel[] { plain, mtl, ig }) model.to(device);
            var runners = new[] { new Stepper(plain, batches), new Stepper(mtl, batches), new Stepper(ig, batches) };
            for (int i = 0; i < Warmup + Steps; i++)
                foreach (var r in runners) r.Step(record: i >= Warmup);
            double p = runners[0].Median, m = runners[1].Median, t = runners[2].Median;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| resnet18 OS{os} + ASPP 64 | {p:F0} | {m:F0} | {t:F0} | {Batch / p * 1000:F1} | {Batch / m * 1000:F1} | {Batch / t * 1000:F1} | {t / ((tasks.Count + 1) * p):F2} |"));
            foreach (var model in new MultiTaskModel[] { plain, mtl, ig }) model.Dispose();
        }
    }
}
