// Our side of bench/gpu/suite.py, beside StepOnDevice: the pruned network (numerics against the PyTorch reference,
// inference latency), backbones loaded from files PyTorch wrote, and one timed MultiFashion epoch.
//   InterroGate.Bench pruned --backbone B [--width W] --tasks T --size S --channels C --batch N --repeats R --device D --out DIR
//   InterroGate.Bench features --backbone NAME --weights FILE --input FILE --out FILE --device D
//   InterroGate.Bench epoch --arch mtl|interrogate --train-size N --batch B --device D [--data-on auto|device|host]
//                           [--precision fp32|bf16] [--channels-last true|false] --out DIR
//   InterroGate.Bench compare PRESET --out DIR [--set key=value]... [--seeds 0,1,2]   (bench/gpu/quality.sh)
// Each prints one JSON line last.
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Runtime;
using InterroGate.Tasks;
using InterroGate.Training;
using TorchSharp;
using static TorchSharp.torch;

internal static class GpuSuite
{
    /// <summary>
    /// An InterroGate model with random gates (about half the channels task-specific), random β and batch-norm
    /// statistics away from 0 and 1, in eval mode: its weights and a batch written for the reference, its pruned static
    /// network written as our static-model file and as ONNX; outputs of the gated model and of the pruned network (TF32
    /// off); then the latency of both at batch 1 and at --batch (TF32 on).
    /// </summary>
    public static void Pruned(string[] args)
    {
        var o = Options(args, ["backbone", "tasks", "size", "channels", "batch", "repeats", "device", "out"], "width");
        string outDir = o["out"];
        Directory.CreateDirectory(outDir);
        double width = Double(o.GetValueOrDefault("width", "1"));
        int tasks = Int(o["tasks"]), size = Int(o["size"]), channels = Int(o["channels"]), batch = Int(o["batch"]), repeats = Int(o["repeats"]);
        var device = Devices.Resolve(o["device"], tf32: false);
        var taskSet = new TaskSet(Enumerable.Range(1, tasks).Select(t => new TaskSpec($"task{t}", TaskKind.Classification, 10)).ToArray());
        manual_seed(0);
        var ig = new InterroGateModel(taskSet, BackboneCatalog.Spec(o["backbone"], width), channels, (size, size), new InterroGateConfig { LambdaS = 1 });
        using (no_grad())
        {
            foreach (var g in ig.Encoder.GateLayers)
            {
                g.Alpha.copy_(randn_like(g.Alpha));
                g.Beta?.copy_(randn_like(g.Beta));
            }
            foreach (var (_, m) in ig.named_modules())
                if (m is TorchSharp.Modules.BatchNorm2d bn)
                {
                    bn.running_mean!.uniform_(-0.3, 0.3);
                    bn.running_var!.uniform_(0.5, 2.0);
                    bn.weight!.uniform_(0.5, 1.5);
                    bn.bias!.uniform_(-0.2, 0.2);
                }
        }
        ig.eval();
        SafeTensors.SaveModule(Path.Combine(outDir, "weights.safetensors"), ig);
        var x = randn(batch, channels, size, size);
        SafeTensors.Save(Path.Combine(outDir, "batch.safetensors"), new Dictionary<string, Tensor> { ["input"] = x });

        var clock = Stopwatch.StartNew();
        var pruned = Pruner.Prune(ig, new ImageInput(channels, size, size));
        double pruneSeconds = clock.Elapsed.TotalSeconds;
        StaticModelFile.Save(Path.Combine(outDir, "static.safetensors"), pruned.Graph);
        OnnxExporter.Export(pruned.Graph, Path.Combine(outDir, "static.onnx"));
        var net = new StaticNetwork(pruned.Graph);
        ig.to(device);
        net.to(device);
        var xd = x.to(device);
        double difference;
        using (no_grad())
        {
            var gated = ig.call(xd).ToDictionary(kv => kv.Key, kv => kv.Value.cpu());
            var fromPruned = net.call(xd).ToDictionary(kv => kv.Key, kv => kv.Value.cpu());
            SafeTensors.Save(Path.Combine(outDir, "outputs-gated.safetensors"), gated);
            SafeTensors.Save(Path.Combine(outDir, "outputs-pruned.safetensors"), fromPruned);
            difference = taskSet.Names.Max(t => (fromPruned[t] - gated[t]).abs().max().item<float>() / Math.Max(gated[t].abs().max().item<float>(), 1e-12));
        }

        if (device.type == DeviceType.CUDA)
        {
            backends.cuda.matmul.allow_tf32 = true;
            backends.cudnn.allow_tf32 = true;
        }
        var latency = new Dictionary<string, double>();
        foreach (int b in new[] { 1, batch }.Distinct())
        {
            var input = randn(b, channels, size, size).to(device);
            latency[$"pruned_b{b}_ms"] = Median(() => net.call(input), device, repeats);
            latency[$"gated_b{b}_ms"] = Median(() => ig.call(input), device, repeats);
        }
        var r = pruned.Report;
        Print(outDir, "ours-pruned.json", new Dictionary<string, object>
        {
            ["side"] = "ours", ["backbone"] = o["backbone"], ["width"] = width, ["tasks"] = tasks, ["size"] = size, ["batch"] = batch,
            ["device"] = device.ToString(), ["task_specific"] = ig.TaskSpecificFraction().Overall,
            ["macs_gated"] = r.MacsBefore, ["macs_pruned"] = r.MacsAfter, ["prune_s"] = pruneSeconds,
            ["pruned_vs_gated_relative_difference"] = difference, ["latency_ms"] = latency, ["repeats"] = repeats,
        });
    }

    /// <summary>
    /// One backbone (torchvision's or timm's names) loaded from a PyTorch-written file through the pretrained-weights
    /// path every architecture uses; its eval-mode output on the given input written as features.safetensors.
    /// </summary>
    public static void Features(string[] args)
    {
        var o = Options(args, ["backbone", "weights", "input", "out", "device"]);
        var device = Devices.Resolve(o["device"], tf32: false);
        manual_seed(0);
        using var holder = new Holder(BackboneCatalog.Spec(o["backbone"]).CreateEncoder(3));
        var report = PretrainedWeights.Apply(holder, o["weights"]);
        holder.to(device).eval();
        var input = SafeTensors.Load(o["input"]).Tensors["input"];
        Tensor features;
        using (no_grad()) features = holder.call(input.to(device)).cpu();
        SafeTensors.Save(o["out"], new Dictionary<string, Tensor> { ["features"] = features });
        Print(null, null, new Dictionary<string, object>
        {
            ["side"] = "ours", ["backbone"] = o["backbone"], ["weights"] = Path.GetFileName(o["weights"]), ["loaded"] = report.Loaded,
            ["targets"] = report.Targets, ["missing"] = report.Missing, ["unexpected"] = report.Unexpected, ["mismatched"] = report.Mismatched,
            ["stripped_prefix"] = report.StrippedPrefix, ["load_s"] = report.Seconds, ["shape"] = features.shape,
        });
    }

    /// <summary>
    /// One MultiFashion training epoch of multifashion-w025's MTL or InterroGate run (Fashion-MNIST from
    /// INTERROGATE_FASHION_MNIST), through the trainer every run uses; the wall-clock (Unix) times of the first and the
    /// last training step's progress report bound the window in which the caller reads the GPU's busy fraction.
    /// </summary>
    public static void Epoch(string[] args)
    {
        var o = Options(args, ["arch", "train-size", "batch", "device", "out"], "data-on", "precision", "channels-last");
        string arch = o["arch"] is "mtl" or "interrogate" ? o["arch"] : throw new ArgumentException($"--arch mtl or interrogate, not {o["arch"]}");
        string training = arch == "mtl" ? "training" : "interroGateTraining";
        var overrides = new List<string>
        {
            $"data.trainSize={Int(o["train-size"])}", "data.validationSize=1000", "data.testSize=1000",
            "training.epochs=1", $"training.batchSize={Int(o["batch"])}", $"training.device={o["device"]}",
        };
        if (arch == "interrogate") overrides.Add("training.freezeGatesLastEpochs=0");
        // Where the data is held, and the speed options (training.dataOn, .precision, .channelsLast), as the caller asks.
        foreach (var (option, key) in new[] { ("data-on", "dataOn"), ("precision", "precision"), ("channels-last", "channelsLast") })
            if (o.TryGetValue(option, out var value)) overrides.Add($"training.{key}={value}");
        var run = Presets.LoadRun($"multifashion-w025/{arch}", overrides);
        Devices.Resolve(run.Training.Device, run.Training.Tf32);
        var prepared = PreparedRun.Create(run);
        double first = double.NaN, last = double.NaN;
        int steps = 0;
        double imagesPerSecond = double.NaN;
        // Tensors the host created between the first and the last progress report, per step: how many operations the
        // host issues for one training step (those inside libtorch's backward pass not counted).
        long firstCreated = 0, lastCreated = 0;
        int firstStep = -1, lastStep = -1;
        var progress = new Progress(e =>
        {
            if (e is StepProgress p)
            {
                double now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
                if (double.IsNaN(first)) (first, firstCreated, firstStep) = (now, TensorsCreated(), p.Step);
                (last, lastCreated, lastStep) = (now, TensorsCreated(), p.Step);
                steps = p.Steps;
                imagesPerSecond = p.ImagesPerSecond;
            }
        });
        var clock = Stopwatch.StartNew();
        new Trainer(run, prepared.Model, prepared.Data, o["out"], progress) { Overwrite = true }.Run();
        Print(null, null, new Dictionary<string, object>
        {
            ["side"] = "ours", ["arch"] = arch, ["config"] = $"multifashion-w025/{arch} ({training})", ["train_size"] = prepared.Data.Train.Count,
            ["batch"] = Int(o["batch"]), ["steps"] = steps, ["device"] = run.Training.Device, ["window_start_unix"] = first, ["window_end_unix"] = last,
            ["images_per_s"] = imagesPerSecond, ["run_s"] = clock.Elapsed.TotalSeconds,
            ["tensors_per_step"] = lastStep > firstStep ? (double)(lastCreated - firstCreated) / (lastStep - firstStep) : double.NaN,
            ["data_on"] = run.Training.DataOn.ToString().ToLowerInvariant(), ["precision"] = run.Training.Precision.ToString().ToLowerInvariant(),
            ["channels_last"] = run.Training.ChannelsLast,
        });
    }

    /// <summary>
    /// A comparison (`interrogate compare` without its figures when the plotting library is absent), for a machine that
    /// has this program and not the CLI: the progress as plain lines (each epoch's validation, the runs' messages),
    /// then the table.
    /// </summary>
    public static void Compare(string[] args)
    {
        if (args.Length == 0 || args[0].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException("compare PRESET --out DIR [--set key=value]... [--seeds 0,1,2]");
        var sets = new List<string>();
        string? outDir = null, seeds = null, device = null;
        for (int i = 1; i < args.Length; i++)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i++])
            {
                case "--set": sets.Add(value); break;
                case "--out" or "-o": outDir = value; break;
                case "--seeds": seeds = value; break;
                case "--device": device = value; break; // every run, InterroGate's included (its presets train it with their own settings)
                default: throw new ArgumentException($"Unknown option {args[i - 1]}; compare PRESET --out DIR [--device D] [--set key=value]... [--seeds 0,1,2]");
            }
        }
        var config = Presets.LoadComparison(args[0], sets);
        if (seeds is not null) config = config with { Seeds = seeds.Split(',').Select(Int).ToArray() };
        if (device is not null) config = config.OnDevice(device);
        Devices.Resolve(config.Training.Device, config.Training.Tf32);
        var clock = Stopwatch.StartNew();
        var progress = new Progress(e =>
        {
            string line = e switch
            {
                EpochCompleted c => string.Create(CultureInfo.InvariantCulture,
                    $"{c.Run} epoch {c.Epoch + 1}/{c.Epochs}: val {string.Join(", ", c.Validation.Select(kv => $"{kv.Key} {kv.Value:G4}"))}{(c.IsBest ? " (best)" : "")}; {c.ImagesPerSecond:F0} img/s{(c.Headline is null ? "" : "; " + c.Headline)}"),
                RunMessage m => $"{m.Run}: {m.Text}",
                _ => "",
            };
            if (line.Length > 0) Console.WriteLine($"[{clock.Elapsed:hh\\:mm\\:ss}] {line}");
        });
        var result = new ComparisonRunner(config, outDir ?? Path.Combine("runs", config.Name), progress).Run();
        Console.WriteLine(File.ReadAllText(result.MarkdownPath));
        Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["side"] = "ours", ["preset"] = args[0], ["table"] = result.MarkdownPath, ["json"] = result.JsonPath, ["seconds"] = clock.Elapsed.TotalSeconds,
        }));
    }

    /// <summary>Reports synchronously on the trainer's thread (System.Progress would post to the thread pool).</summary>
    private sealed class Progress(Action<TrainingEvent> report) : IProgress<TrainingEvent>
    {
        public void Report(TrainingEvent value) => report(value);
    }

    private sealed class Holder : nn.Module<Tensor, Tensor>
    {
        private readonly nn.Module<Tensor, Tensor> backbone;
        public Holder(nn.Module<Tensor, Tensor> encoder) : base("holder")
        {
            backbone = encoder;
            RegisterComponents();
        }
        public override Tensor forward(Tensor x) => backbone.call(x);
    }

    private static double Median(Func<object> forward, Device device, int repeats)
    {
        using var _ = no_grad();
        for (int i = 0; i < 5; i++) using (NewDisposeScope()) forward();
        StepOnDevice.Synchronize(device);
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            var sw = Stopwatch.StartNew();
            using (NewDisposeScope())
            {
                forward();
                StepOnDevice.Synchronize(device);
            }
            times[i] = sw.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return times[repeats / 2];
    }

    private static void Print(string? dir, string? file, Dictionary<string, object> result)
    {
        string json = JsonSerializer.Serialize(result);
        if (dir is not null && file is not null) File.WriteAllText(Path.Combine(dir, file), json);
        Console.WriteLine(json);
    }

    private static int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);
    private static double Double(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    /// <summary>Tensors this thread has created so far (TorchSharp's dispose-scope statistics): a count of the operations the host issued.</summary>
    internal static long TensorsCreated() =>
        DisposeScopeManager.Statistics.TensorStatistics.CreatedInScopeCount + DisposeScopeManager.Statistics.TensorStatistics.CreatedOutsideScopeCount;

    /// <summary>
    /// --name value pairs, the <paramref name="required"/> names checked (StepOnDevice's too); a name that is neither
    /// required nor in <paramref name="optional"/> is refused (a misspelt option would otherwise run with the default).
    /// </summary>
    internal static Dictionary<string, string> Options(string[] args, string[] required, params string[] optional)
    {
        var o = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
                throw new ArgumentException($"Expected --name value pairs, got '{args[i]}'.");
            o[args[i][2..]] = args[++i];
        }
        foreach (var name in required)
            if (!o.ContainsKey(name)) throw new ArgumentException($"--{name} is required.");
        foreach (var name in o.Keys)
            if (!required.Contains(name) && !optional.Contains(name))
                throw new ArgumentException($"--{name} is not an option here; options: {string.Join(", ", required.Concat(optional).Select(n => "--" + n))}.");
        return o;
    }
}
