// Training-step speed on CPU: one plain network (STL, one task), MTL and InterroGate on MultiFashion
// batches, and InterroGate's step against its T+1 branches trained as plain networks.
// Usage: dotnet run -c Release --project bench/InterroGate.Bench -- [widths...] (default 0.25 0.5 1)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- deploy [backbone] [size] [fractions...] [--gates CHECKPOINT...]
//        (inference speed of STL, MTL, gated and pruned InterroGate; see DeploySpeed.cs)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- balancers [methods...]
//        (training step time of MTL under each loss-balancing method; see BalancerCost.cs)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- gradient-reference OUT.json
//        (gradient matrices and the gradient methods' results, for bench/reference/gradient_methods.py)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- gates [width]
//        (forward + backward of one gated layer's gate and mix against its branches' units; see GateCost.cs)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- fixed-gates [--width W] METRICS.jsonl...
//        (the training step with fixed gates, every copy against the unread ones left out; see FixedGates.cs)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- gate-kernel [widths...]
//        (the gate and mix alone: fused CPU kernel against tensor operations; see GateCost.Kernel)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- fusion [widths...]
//        (InterroGate's training step with branch fusion off, on, and chosen per unit)
//    or: InterroGate.Bench step --model interrogate|mtl --backbone B ... --device cuda --out DIR
//        (one model's training step on a device, for bench/reference/gpu_bench.py; see StepOnDevice.cs)
//    or: InterroGate.Bench pruned|features|epoch|compare ...
//        (the pruned network, backbones from PyTorch files, a MultiFashion epoch, a comparison: for bench/gpu/; see GpuSuite.cs)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- onnx [repeats]
//        (the pruned network in our runtime against ONNX Runtime running its export; see OnnxSpeed.cs)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- dense-step [outputStrides...]
//        (dense training step of STL, MTL and InterroGate on FashionScenes batches; see DenseStep.cs)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- dense-cost
//        (encoder and head MACs of the paper's dense settings beside those the paper's tables imply; see DenseCost.cs)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- pretrained-load DIR
//        (loading a torchvision-layout ResNet-50 state dict from .pth and safetensors; see PretrainedLoad.cs)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- celeba-sample DIR [images]
//        (a CelebA-format folder of synthetic faces, for bench/celeba/fixture-run.sh; see CelebASample)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- convs
//        (time of one 3×3 convolution against its number of output channels; see DeploySpeed.ConvScaling)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- bn-statistics BATCHES RUN_FOLDER...
//        (finished runs on test with batch-norm statistics as stored and re-estimated; see BnStatistics.cs)
//    or: dotnet run -c Release --project bench/InterroGate.Bench -- scalar-race SECONDS add|bn|train|train-calm [DATASET]
//        (TorchSharp's implicit scalars against a garbage collection on another thread; see ScalarRace.cs)
using System.Diagnostics;
using System.Globalization;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Gating;
using InterroGate.Runtime;
using InterroGate.Objectives;
using InterroGate.Tasks;
using static TorchSharp.torch;

if (args.Length > 1 && args[0] == "pretrained-load")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    PretrainedLoad.Run(args[1]);
    return;
}
if (args.Length > 0 && args[0] == "scalar-race")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    ScalarRace.Run(args[1..]);
    return;
}
if (args.Length > 1 && args[0] == "celeba-sample")
{
    int images = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 2000;
    CelebASample.Write(args[1], images);
    Console.WriteLine($"{images} images in CelebA's layout written to {args[1]}");
    return;
}
if (args.Length > 0 && args[0] is "balancers" or "balancer-memory")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    BalancerCost.Run(args[0] == "balancer-memory", args.Skip(1).ToArray());
    return;
}
if (args.Length > 1 && args[0] == "gradient-reference")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    GradientReference.Run(args[1]);
    return;
}
if (args.Length > 0 && args[0] == "fixed-gates")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    FixedGates.Run(args[1..]);
    return;
}
if (args.Length > 0 && args[0] == "gates")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    foreach (var w in args.Length > 1 ? args.Skip(1).Select(a => double.Parse(a, CultureInfo.InvariantCulture)) : [1.0])
        GateCost.Run(w);
    return;
}
if (args.Length > 0 && args[0] == "gate-kernel")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    foreach (var w in args.Length > 1 ? args.Skip(1).Select(a => double.Parse(a, CultureInfo.InvariantCulture)) : [1.0])
        GateCost.Kernel(w);
    return;
}
if (args.Length > 0 && args[0] == "optimizer-step")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    OptimizerStep.Run(args[1..]);
    return;
}
if (args.Length > 0 && args[0] == "step")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    StepOnDevice.Run(args[1..]);
    return;
}
if (args.Length > 0 && args[0] is "pruned" or "features" or "epoch" or "compare")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    try
    {
        (args[0] switch { "pruned" => (Action<string[]>)GpuSuite.Pruned, "features" => GpuSuite.Features, "epoch" => GpuSuite.Epoch, _ => GpuSuite.Compare })(args[1..]);
    }
    catch (Exception e) when (InterroGate.Runtime.UserErrors.Is(e))
    {
        // What the command line would say (a configuration key, missing data, a batch too large for the GPU): one
        // line, last in the log, where the scripts' reports read it. Other exceptions keep their trace.
        Console.Error.WriteLine($"error: {e.Message}");
        Environment.ExitCode = 2;
    }
    return;
}
if (args.Length > 0 && args[0] == "vit-step")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    ViTStep.Run(args[1..]);
    return;
}
if (args.Length > 0 && args[0] == "onnx")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    OnnxSpeed.Run(repeats: args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 15);
    return;
}
if (args.Length > 0 && args[0] == "dense-step")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    DenseStep.Run(args[1..]);
    return;
}
if (args.Length > 0 && args[0] == "dense-cost")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    DenseCost.Run();
    return;
}
if (args.Length > 0 && args[0] == "convs")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    DeploySpeed.ConvScaling();
    return;
}
if (args.Length > 2 && args[0] == "bn-statistics")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    BnStatistics.Run(int.Parse(args[1], CultureInfo.InvariantCulture), args[2..]);
    return;
}
if (args.Length > 2 && args[0] == "front-check")
{
    FrontCheck.Run(args[1], args[2]);
    return;
}
if (args.Length > 0 && args[0] == "deploy-layouts")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    DeployLayouts.Run(repeats: args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 7);
    return;
}
if (args.Length > 0 && args[0] == "deploy")
{
    InterroGate.Runtime.NativeRuntime.EnsureLoaded();
    // Further arguments: task-specific fractions of random patterns, and (--gates CKPT...) trained checkpoints whose gates to time.
    int split = Array.IndexOf(args, "--gates");
    var rest = split < 0 ? args.Skip(3).ToArray() : args[3..split];
    var trained = split < 0 ? [] : args[(split + 1)..];
    DeploySpeed.Run(args.Length > 1 ? args[1] : "resnet18", args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 224,
        rest.Length > 0 ? rest.Select(a => double.Parse(a, CultureInfo.InvariantCulture)).ToArray() : [0.1, 0.3, 0.5], repeats: 7, trained);
    return;
}

const int Batch = 128, Warmup = 3, Steps = 30;
bool fusion = args.Length > 0 && args[0] == "fusion";
if (fusion) args = args[1..];
var widths = args.Length > 0 ? args.Select(a => double.Parse(a, CultureInfo.InvariantCulture)).ToArray() : [0.25, 0.5, 1.0];
InterroGate.Runtime.NativeRuntime.EnsureLoaded();
manual_seed(0);
var data = MultiFashion.Load(FashionMnist.DefaultRoot, new MultiFashionOptions(TrainSize: Batch * 4, ValidationSize: 100, TestSize: 100));
var batches = Enumerable.Range(0, 4).Select(b => data.Train.GetBatch(Enumerable.Range(b * Batch, Batch).Select(i => (long)i).ToArray())).ToArray();
var tasks = data.Train.Tasks;

Console.WriteLine($"threads {get_num_threads()}, batch {Batch}; CPU allocator: {InterroGate.Runtime.CpuAllocator.Apply()}");
if (fusion)
{
    // InterroGate's training step with each unit's T+1 copies as separate calls, fused, and chosen per unit by timing.
    Console.WriteLine($"InterroGate training step (forward, backward, Adam + SGD step), median of {Steps} after {Warmup} warm-up steps, the three models stepped in turn");
    Console.WriteLine("| width | fusion off ms | fusion on ms | fusion auto ms | on / off | auto / off | units fused by auto |");
    Console.WriteLine("|---|---|---|---|---|---|---|");
    foreach (var width in widths)
    {
        var spec = ResNetSpec.ResNet20(width);
        var models = new[] { BranchFusion.Off, BranchFusion.On, BranchFusion.Auto }.Select(f =>
        {
            manual_seed(3);
            var m = new InterroGateModel(tasks, spec, 1, (36, 36), new InterroGateConfig { LambdaS = 1, Fusion = f });
            manual_seed(4);
            using (no_grad())
                foreach (var g in m.Encoder.GateLayers) g.Alpha.copy_(randn_like(g.Alpha)); // about half the channels shared
            return m;
        }).ToArray();
        var steppers = models.Select(m => new Stepper(m, batches)).ToArray();
        for (int i = 0; i < Warmup + Steps; i++)
            foreach (var r in steppers) r.Step(record: i >= Warmup);
        var fused = models[2].Encoder.FusedUnits!;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {width} | {steppers[0].Median:F1} | {steppers[1].Median:F1} | {steppers[2].Median:F1} | {steppers[1].Median / steppers[0].Median:F2} | {steppers[2].Median / steppers[0].Median:F2} | {fused.Count(f => f)} of {fused.Count} |"));
    }
    return;
}
Console.WriteLine($"median of {Steps} training steps (forward, backward, Adam step) after {Warmup} warm-up steps, the networks stepped in turn");
Console.WriteLine("InterroGate four ways: the fused gate-and-mix kernel with the gated units' ReLU in it (the default), the kernel with the ReLU " +
                  "as a tensor operation before it, all as tensor operations, and the default with branch fusion auto (each unit fused " +
                  "where the first batch shows it faster)");
Console.WriteLine("| width | plain network ms | STL (2 networks) img/s | MTL img/s | InterroGate img/s (kernel / kernel, ReLU apart / ops / kernel + auto) | InterroGate ms (kernel / kernel, ReLU apart / ops / kernel + auto) | (T+1) × plain ms | ratio (kernel / kernel, ReLU apart / ops / kernel + auto) |");
Console.WriteLine("|---|---|---|---|---|---|---|---|");
foreach (var width in widths)
{
    var spec = ResNetSpec.ResNet20(width);
    var plain = new SingleTask(new TaskSet([tasks[0]]), spec, 1);
    var mtl = new HardSharing(tasks, spec, 1);
    var igs = new[] { BranchFusion.Off, BranchFusion.Off, BranchFusion.Off, BranchFusion.Auto }.Select(f =>
    {
        manual_seed(3);
        var m = new InterroGateModel(tasks, spec, 1, (36, 36), new InterroGateConfig { LambdaS = 1, Fusion = f });
        manual_seed(4);
        using (no_grad())
            foreach (var g in m.Encoder.GateLayers) g.Alpha.copy_(randn_like(g.Alpha)); // a mixed sharing pattern: about half the channels shared
        return m;
    }).ToArray();

    // Round-robin (one step of each network in turn) so that drifts of the machine touch all of them alike.
    var runners = new[] { new Stepper(plain, batches), new Stepper(mtl, batches), new Stepper(igs[0], batches),
        new Stepper(igs[1], batches, fuseActivation: false), new Stepper(igs[2], batches, gateKernel: false), new Stepper(igs[3], batches) };
    for (int i = 0; i < Warmup + Steps; i++)
        foreach (var r in runners) r.Step(record: i >= Warmup);
    double tPlain = runners[0].Median, tMtl = runners[1].Median;
    var tIg = runners[2..].Select(r => r.Median).ToArray();
    double branches = (tasks.Count + 1) * tPlain;
    string Each(Func<double, double> f, string format) => string.Join(" / ", tIg.Select(t => f(t).ToString(format, CultureInfo.InvariantCulture)));
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {width} | {tPlain:F1} | {Batch / (2 * tPlain) * 1000:F0} | {Batch / tMtl * 1000:F0} | {Each(t => Batch / t * 1000, "F0")} | {Each(t => t, "F1")} | {branches:F1} | {Each(t => t / branches, "F2")} |"));
}

/// <summary>Training steps of one model on the benchmark batches, timed one at a time.</summary>
/// <remarks>With <paramref name="stepGates"/> false the gates stay as they are (the trainer's last epochs): no gate optimiser, their gradients zeroed.</remarks>
sealed class Stepper(MultiTaskModel model, Dictionary<string, Tensor>[] batches, InterroGate.Balancing.IBalancer? balancer = null,
    bool gateKernel = true, bool fuseActivation = true, bool stepGates = true)
{
    private readonly InterroGate.Balancing.IBalancer _balancer = balancer ?? InterroGate.Balancing.FixedWeights.Uniform(model.Tasks.Count);
    private InterroGate.Balancing.BalanceContext? _contextValue;
    // As the Trainer provides it: the shared representation, and meta access with the next batch as "validation".
    private InterroGate.Balancing.BalanceContext _context => _contextValue ??= new(model.SharedParameters().ToArray(), () => model.SharedRepresentation)
    {
        Meta = new(model.ParametersOf(GroupKind.Weights).ToArray(), () => 1e-3,
            () => _objective.Losses(model.call(_current![IMultiTaskDataset.ImageKey]), _current),
            () => { var v = batches[_step % batches.Length]; return _objective.Losses(model.call(v[IMultiTaskDataset.ImageKey]), v); }),
    };
    private Dictionary<string, Tensor>? _current;
    private optim.Optimizer? _weightsOpt;
    // The trainer's default optimisers (flat buffers per group).
    private optim.Optimizer Weights => _weightsOpt ??= new InterroGate.Training.Flat.Adam(model.ParametersOf(GroupKind.Weights).Concat(_balancer.Parameters), 1e-3);
    private readonly optim.Optimizer? _gates = stepGates && model.ParametersOf(GroupKind.Gates).ToArray() is { Length: > 0 } g ? new InterroGate.Training.Flat.SGD(g, 0.1) : null;
    private readonly MultiTaskObjective _objective = new(model.Tasks);
    private readonly List<double> _times = [];
    private int _step;

    public double Median => _times.Order().ElementAt(_times.Count / 2);

    public void Step(bool record)
    {
        model.train();
        var batch = _current = batches[_step++ % batches.Length];
        bool kernel = GateMixKernel.Enabled;
        GateMixKernel.Enabled = gateKernel && kernel;
        GateMixKernel.FuseActivation = fuseActivation;
        // The optimiser exists before the first forward pass: it lays the parameters out in its buffer when made (an
        // in-place change autograd would refuse between a forward pass and its backward pass).
        var weightsOpt = Weights;
        var sw = Stopwatch.StartNew();
        using (var scope = NewDisposeScope())
        {
            var outputs = model.call(batch[IMultiTaskDataset.ImageKey]);
            var losses = _objective.Losses(outputs, batch);
            weightsOpt.zero_grad();
            _gates?.zero_grad();
            if (!stepGates) foreach (var p in model.ParametersOf(GroupKind.Gates)) p.grad?.zero_();
            _balancer.Backward(losses, model.Regularizer(), _context);
            weightsOpt.step();
            _gates?.step();
            var values = losses.Select(l => (double)l.item<float>()).ToArray();
            _balancer.AfterStep(values, () =>
            {
                using var _ = no_grad();
                return _objective.Losses(model.call(batch[IMultiTaskDataset.ImageKey]), batch).Select(l => (double)l.item<float>()).ToArray();
            });
        }
        if (record) _times.Add(sw.Elapsed.TotalMilliseconds);
        GateMixKernel.Enabled = kernel;
        GateMixKernel.FuseActivation = true;
    }
}
