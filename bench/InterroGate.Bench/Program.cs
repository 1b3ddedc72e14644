// Training-step speed on CPU: one plain network (STL, one task), MTL and InterroGate on MultiFashion
// batches, and InterroGate's step against its T+1 branches trained as plain networks.
// Usage: dotnet run -c Release --project bench/InterroGate.Bench -- [widths...] (default 0.25 0.5 1)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- deploy [backbone] [size] [fractions...]
//        (inference speed of STL, MTL, gated and pruned InterroGate; see DeploySpeed.cs)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- convs
//        (time of one 3×3 convolution against its number of output channels; see DeploySpeed.ConvScaling)
using System.Diagnostics;
using System.Globalization;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Objectives;
using InterroGate.Tasks;
using static TorchSharp.torch;

if (args.Length > 0 && args[0] == "convs")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    DeploySpeed.ConvScaling();
    return;
}
if (args.Length > 0 && args[0] == "deploy")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    DeploySpeed.Run(args.Length > 1 ? args[1] : "resnet18", args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 224,
        args.Length > 3 ? args.Skip(3).Select(a => double.Parse(a, CultureInfo.InvariantCulture)).ToArray() : [0.1, 0.3, 0.5], repeats: 7);
    return;
}

const int Batch = 128, Warmup = 3, Steps = 15;
var widths = args.Length > 0 ? args.Select(a => double.Parse(a, CultureInfo.InvariantCulture)).ToArray() : [0.25, 0.5, 1.0];
InterroGate.Runtime.NativeRuntime.EnsureLoaded();
manual_seed(0);
var data = MultiFashion.Load(FashionMnist.DefaultRoot, new MultiFashionOptions(TrainSize: Batch * 4, ValidationSize: 100, TestSize: 100));
var batches = Enumerable.Range(0, 4).Select(b => data.Train.GetBatch(Enumerable.Range(b * Batch, Batch).Select(i => (long)i).ToArray())).ToArray();
var tasks = data.Train.Tasks;

Console.WriteLine($"threads {get_num_threads()}, batch {Batch}, median of {Steps} training steps (forward, backward, Adam step) after {Warmup} warm-up steps");
Console.WriteLine("| width | plain network ms | STL (2 networks) img/s | MTL img/s | InterroGate img/s | InterroGate ms | (T+1) × plain ms | ratio |");
Console.WriteLine("|---|---|---|---|---|---|---|---|");
foreach (var width in widths)
{
    var spec = ResNetSpec.ResNet20(width);
    var plain = new SingleTask(new TaskSet([tasks[0]]), spec, 1);
    var mtl = new HardSharing(tasks, spec, 1);
    var ig = new InterroGateModel(tasks, spec, 1, (36, 36), new InterroGateConfig { LambdaS = 1 });
    using (no_grad())
        foreach (var g in ig.Encoder.GateLayers) g.Alpha.copy_(randn_like(g.Alpha)); // a mixed sharing pattern: about half the channels shared

    double tPlain = StepMs(plain), tMtl = StepMs(mtl), tIg = StepMs(ig);
    double branches = (tasks.Count + 1) * tPlain;
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {width} | {tPlain:F1} | {Batch / (2 * tPlain) * 1000:F0} | {Batch / tMtl * 1000:F0} | {Batch / tIg * 1000:F0} | {tIg:F1} | {branches:F1} | {tIg / branches:F2} |"));
}

double StepMs(MultiTaskModel model)
{
    var weights = optim.Adam(model.WeightParameters(), 1e-3);
    var gates = model.GateParameters().ToArray();
    var gateOpt = gates.Length > 0 ? optim.SGD(gates, 0.1) : null;
    var objective = new MultiTaskObjective(model.Tasks);
    model.train();
    var times = new List<double>();
    for (int i = 0; i < Warmup + Steps; i++)
    {
        var batch = batches[i % batches.Length];
        var sw = Stopwatch.StartNew();
        using (var scope = NewDisposeScope())
        {
            var outputs = model.call(batch[IMultiTaskDataset.ImageKey]);
            var loss = objective.Losses(outputs, batch).Aggregate((a, b) => a + b);
            if (model.Regularizer() is { } reg) loss = loss + reg;
            weights.zero_grad();
            gateOpt?.zero_grad();
            loss.backward();
            weights.step();
            gateOpt?.step();
            _ = loss.item<float>();
        }
        if (i >= Warmup) times.Add(sw.Elapsed.TotalMilliseconds);
    }
    times.Sort();
    return times[times.Count / 2];
}
