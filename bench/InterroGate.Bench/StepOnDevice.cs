// Our side of bench/reference/gpu_bench.py: one model's training step on a device, with the weights, the batch
// and the outputs written out so that the PyTorch reference can load the same weights, check that it computes
// the same outputs and time the same work.
// Usage: InterroGate.Bench step --model interrogate|mtl --backbone resnet18|resnet20 [--width W] --tasks T
//        --size S --channels C --batch B --steps N --device cuda|cpu [--tf32 true|false] [--fusion off|on|auto] [--grads true]
//        [--precision fp32|bf16] [--channels-last true|false] [--optimizer flat|per-parameter] [--fixed-gates METRICS.jsonl] [--kept-filters true|false]
//        [--backward-read-only auto|true|false] --out DIR
// The outputs and gradients written for the numerics check are float32 in any case; --precision and --channels-last
// apply to the timed steps. --optimizer: the trainer's flat optimisers (default) or the same stepping parameter by
// parameter (`training.flatOptimizer: false`, TorchSharp's order of work).
// --fixed-gates (InterroGate): the gates of a run's last epoch (its per-layer fractions), fixed for the timed steps as in
// the trainer's last epochs: no gate optimiser, and the copies no task reads left out (GatedEncoder.GatesFixed); with
// --kept-filters true (default) a copy read at only some channels computes only those filters, false computes it whole.
// --backward-read-only (InterroGate, gates learning): true runs the backward pass through the filters some task reads
// only (GatedEncoder.BackwardReadFiltersOnly), false through every filter, as the PyTorch reference does; auto (default)
// is the library's default: true on the CPU, false on a GPU.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Gating;
using InterroGate.Objectives;
using InterroGate.Runtime;
using InterroGate.Tasks;
using TorchSharp;
using static TorchSharp.torch;

internal static class StepOnDevice
{
    public static void Run(string[] args)
    {
        var o = GpuSuite.Options(args, ["model", "backbone", "tasks", "size", "channels", "batch", "steps", "out"],
            "width", "tf32", "fusion", "precision", "channels-last", "kept-filters", "backward-read-only", "optimizer", "device", "fixed-gates", "grads", "grads-float64");
        string model = o["model"], backbone = o["backbone"], outDir = o["out"];
        double width = double.Parse(o.GetValueOrDefault("width", "1"), CultureInfo.InvariantCulture);
        int tasks = int.Parse(o["tasks"], CultureInfo.InvariantCulture), size = int.Parse(o["size"], CultureInfo.InvariantCulture);
        int channels = int.Parse(o["channels"], CultureInfo.InvariantCulture), batch = int.Parse(o["batch"], CultureInfo.InvariantCulture);
        int steps = int.Parse(o["steps"], CultureInfo.InvariantCulture);
        bool tf32 = bool.Parse(o.GetValueOrDefault("tf32", "true"));
        var fusion = Enum.Parse<BranchFusion>(o.GetValueOrDefault("fusion", "off"), ignoreCase: true);
        var precision = Enum.Parse<Precision>(o.GetValueOrDefault("precision", "fp32"), ignoreCase: true);
        bool channelsLast = bool.Parse(o.GetValueOrDefault("channels-last", "false"));
        bool keptFilters = bool.Parse(o.GetValueOrDefault("kept-filters", "true"));
        string backwardOption = o.GetValueOrDefault("backward-read-only", "auto");
        bool? backwardReadOnly = backwardOption == "auto" ? null : bool.Parse(backwardOption);
        string optimizer = o.GetValueOrDefault("optimizer", "flat");
        if (optimizer is not ("flat" or "per-parameter")) throw new ArgumentException($"--optimizer flat or per-parameter, not {optimizer}");
        Directory.CreateDirectory(outDir);

        var device = Devices.Resolve(o.GetValueOrDefault("device", "cuda"), tf32);
        var taskSet = new TaskSet(Enumerable.Range(1, tasks).Select(t => new TaskSpec($"task{t}", TaskKind.Classification, 10)).ToArray());
        var spec = BackboneCatalog.Spec(backbone, width);
        manual_seed(0);
        MultiTaskModel net = model switch
        {
            "interrogate" => new InterroGateModel(taskSet, spec, channels, (size, size), new InterroGateConfig { LambdaS = 1, Fusion = fusion, KeptFiltersOnly = keptFilters,
                BackwardReadFiltersOnly = backwardReadOnly }),
            "mtl" => new HardSharing(taskSet, spec, channels),
            _ => throw new ArgumentException($"--model interrogate or mtl, not {model}"),
        };
        if (net is InterroGateModel ig)
            using (no_grad())
                foreach (var g in ig.Encoder.GateLayers) g.Alpha.copy_(randn_like(g.Alpha)); // about half the channels task-specific
        string? fixedGates = o.GetValueOrDefault("fixed-gates");
        if (fixedGates is not null)
        {
            if (net is not InterroGateModel fixedModel) throw new ArgumentException("--fixed-gates needs --model interrogate");
            FixedGates.SetPattern(fixedModel, FixedGates.Fractions(fixedGates));
        }

        // Weights and batch as the reference reads them (on CPU, before any step).
        SafeTensors.SaveModule(Path.Combine(outDir, "weights.safetensors"), net);
        var x = randn(batch, channels, size, size);
        var data = new Dictionary<string, Tensor> { ["input"] = x };
        foreach (var t in taskSet) data[t.Name] = randint(0, 10, [batch], dtype: int64);
        SafeTensors.Save(Path.Combine(outDir, "batch.safetensors"), data);

        net.to(device);
        var onDevice = data.ToDictionary(kv => kv.Key == "input" ? InterroGate.Data.IMultiTaskDataset.ImageKey : kv.Key, kv => kv.Value.to(device));
        var objective = new MultiTaskObjective(taskSet);
        net.train();
        // Outputs of the first forward pass (training mode: batch statistics), before any update.
        using (no_grad())
        {
            var first = net.call(onDevice[InterroGate.Data.IMultiTaskDataset.ImageKey]);
            SafeTensors.Save(Path.Combine(outDir, "outputs.safetensors"), first.ToDictionary(kv => kv.Key, kv => kv.Value.cpu()));
        }
        // The forward pass above moved BN statistics; the timed steps start from them, as the reference does.

        // With --grads: every parameter's gradient of the step's loss (tasks + sparsity) on this batch, before any
        // update, for the reference to compare with its own backward pass (the straight-through gates included).
        if (bool.Parse(o.GetValueOrDefault("grads", "false")))
        {
            using var scope = NewDisposeScope();
            net.zero_grad();
            var outputs = net.call(onDevice[InterroGate.Data.IMultiTaskDataset.ImageKey]);
            var total = objective.Losses(outputs, onDevice).Aggregate((a, b) => a + b);
            if (net.Regularizer() is { } reg) total = total + reg;
            total.backward();
            var grads = net.named_parameters().Where(p => p.parameter.grad is not null)
                .ToDictionary(p => p.name, p => p.parameter.grad!.cpu());
            SafeTensors.Save(Path.Combine(outDir, "grads.safetensors"), grads);
            net.zero_grad();
            // With --grads-float64: the same gradients with the model in float64 (the reference's exact side, computed
            // by ours: what tells a different formula from float32 rounding).
            if (bool.Parse(o.GetValueOrDefault("grads-float64", "false")))
            {
                net.to(float64);
                var outputs64 = net.call(onDevice[InterroGate.Data.IMultiTaskDataset.ImageKey].to(float64));
                var total64 = objective.Losses(outputs64, onDevice).Aggregate((a, b) => a + b);
                if (net.Regularizer() is { } reg64) total64 = total64 + reg64;
                total64.backward();
                SafeTensors.Save(Path.Combine(outDir, "grads64.safetensors"), net.named_parameters().Where(p => p.parameter.grad is not null)
                    .ToDictionary(p => p.name, p => p.parameter.grad!.cpu()));
                net.zero_grad();
                net.to(float32);
            }
        }

        var images = onDevice[InterroGate.Data.IMultiTaskDataset.ImageKey];
        if (channelsLast) images = InterroGate.Data.DataLoader.ChannelsLast(images);
        bool flat = optimizer == "flat";
        var weights = net.ParametersOf(GroupKind.Weights).ToArray();
        optim.Optimizer adam = new InterroGate.Training.Flat.Adam(weights, 1e-3, perParameter: !flat);
        var gateParams = net.ParametersOf(GroupKind.Gates).ToArray();
        optim.Optimizer? sgd = gateParams.Length == 0 || fixedGates is not null ? null : new InterroGate.Training.Flat.SGD(gateParams, 0.1, perParameter: !flat);
        if (fixedGates is not null) ((InterroGateModel)net).Encoder.GatesFixed = true; // after the forward passes above: the timed steps only
        var times = new List<double>();
        // Tensors the host creates in each part of a step (TorchSharp's dispose-scope statistics): how many operations
        // it issues there; the backward pass's own, inside libtorch, are not counted (only those of autograd functions
        // written in C#).
        (long Forward, long Backward, long Optimizers) tensors = default;
        const int Warmup = 5;
        double firstTimed = double.NaN; // wall-clock (Unix) seconds at the start of the first timed step
        for (int i = 0; i < Warmup + steps; i++)
        {
            Synchronize(device);
            if (i == Warmup) firstTimed = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
            var sw = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            {
                long c0 = GpuSuite.TensorsCreated();
                var (losses, reg) = InterroGate.Training.Trainer.ForwardLosses(net, images, onDevice, objective, precision); // as the trainer's step
                var total = losses.Aggregate((a, b) => a + b);
                if (reg is not null) total = total + reg;
                long c1 = GpuSuite.TensorsCreated();
                adam.zero_grad();
                sgd?.zero_grad();
                if (fixedGates is not null) foreach (var p in gateParams) p.grad?.zero_(); // as the trainer does while the gates are fixed
                total.backward();
                long c2 = GpuSuite.TensorsCreated();
                adam.step();
                sgd?.step();
                tensors = (c1 - c0, c2 - c1, GpuSuite.TensorsCreated() - c2);
            }
            Synchronize(device);
            if (i >= Warmup) times.Add(sw.Elapsed.TotalMilliseconds);
        }
        var result = new Dictionary<string, object>
        {
            ["side"] = "ours", ["model"] = model, ["backbone"] = backbone, ["width"] = width, ["tasks"] = tasks, ["size"] = size,
            ["batch"] = batch, ["device"] = device.ToString(), ["tf32"] = tf32, ["fusion"] = fusion.ToString().ToLowerInvariant(),
            ["precision"] = precision.ToString().ToLowerInvariant(), ["channels_last"] = channelsLast, ["optimizer"] = optimizer,
            ["fixed_gates"] = fixedGates ?? "",
            ["step_ms_median"] = times.Order().ElementAt(times.Count / 2), ["step_ms"] = times,
            ["tensors_forward"] = tensors.Forward, ["tensors_backward"] = tensors.Backward, ["tensors_optimizers"] = tensors.Optimizers,
            // The timed steps' wall-clock window, in which a caller reads the GPU's memory (bench/gpu/suite.py).
            ["window_start_unix"] = firstTimed, ["window_end_unix"] = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0,
        };
        string json = JsonSerializer.Serialize(result);
        File.WriteAllText(Path.Combine(outDir, "ours.json"), json);
        Console.WriteLine(json);
    }

    internal static void Synchronize(Device device)
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize(device);
    }
}
