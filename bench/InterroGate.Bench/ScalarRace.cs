// TorchSharp's implicit Scalar conversions (`t.add_(1)`, `x.mul(0.5)`) make a Scalar object whose last managed use is
// reading its handle; if a garbage collection started by another thread runs while the native call still reads it,
// the Scalar's finalizer frees it under the call: libtorch then reads freed memory ("Expected false to be true" from
// Scalar::toLong, or another scalar's value). This probe counts such failures while a second thread allocates as
// fast as it can (a garbage collection every few milliseconds), in three settings:
//   add   : `t.add_(1)` on a one-element tensor (TorchSharp's implicit conversion)
//   bn    : TorchSharp's BatchNorm2d.forward in training mode (its `num_batches_tracked.add_(1)`)
//   train : the library's trainer (InterroGate, ResNet-20 ×¼; synthetic data, or FashionScenes NYUD-like tasks with
//           ASPP heads and the data loader's augmentation), restarted after each failure
//   train-calm : the trainer without the allocating thread: how often the garbage collector runs in an ordinary run,
//           and how much of the allocation is the training thread's (the rest is the data loader's)
//   (train and train-calm take a fourth argument, per-parameter: the run's optimisers step parameter by parameter,
//   `training.flatOptimizer: false`)
// The same holds for tensors: a temporary tensor (`a.mul(b)` passed straight on) whose last managed use is reading its
// handle can be finalized, and its memory freed, while the next call still reads it:
//   temp        : `big.mul(big).sum()` outside any dispose scope, the sum checked (a crash ends the process: the script
//                 reports the exit status)
//   temp-scoped : the same inside a dispose scope, which holds the temporary until the scope ends
//   deploy      : the library outside a training step: prune a gated ResNet-20, store the static network, check the
//                 file's bytes against the first one, load it back (checksum and graph checks) and predict
// Usage: InterroGate.Bench scalar-race SECONDS add|bn|train|train-calm|temp|temp-scoped|deploy [synthetic|multifashion|fashion-scenes] [per-parameter]
// (SCALAR_RACE_TRACE=1 prints the first frames of each failure's stack)
using System.Diagnostics;
using System.Globalization;
using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Heads;
using InterroGate.Training;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

internal static class ScalarRace
{
    public static void Run(string[] args)
    {
        double seconds = args.Length > 0 ? double.Parse(args[0], CultureInfo.InvariantCulture) : 20;
        string mode = args.Length > 1 ? args[1] : "add";
        string dataset = args.Length > 2 ? args[2] : "synthetic";
        bool flatOptimizer = !(args.Length > 3 && args[3] == "per-parameter");
        using var stop = new CancellationTokenSource();
        var allocator = new Thread(() =>
        {
            var keep = new List<byte[]>();
            while (!stop.IsCancellationRequested)
            {
                keep.Add(new byte[4096]);
                if (keep.Count > 2000) keep.Clear();
            }
        }) { IsBackground = true };
        int gcBefore = GC.CollectionCount(0);
        bool hammer = mode != "train-calm";
        if (!hammer) mode = "train";
        if (hammer) allocator.Start();
        long mainBefore = GC.GetAllocatedBytesForCurrentThread(), allBefore = GC.GetTotalAllocatedBytes(true);
        var watch = Stopwatch.StartNew();
        long calls = 0, errors = 0;
        void Failed(Exception e)
        {
            errors++;
            if (errors <= 3) Console.WriteLine($"  after {calls} calls: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
            if (Environment.GetEnvironmentVariable("SCALAR_RACE_TRACE") == "1") Console.WriteLine(string.Join("\n", (e.StackTrace ?? "").Split('\n').Take(6)));
        }
        if (mode == "train")
        {
            string dir = Path.Combine(Path.GetTempPath(), $"scalar-race-{Environment.ProcessId}");
            while (watch.Elapsed.TotalSeconds < seconds)
            {
                var config = new RunConfig
                {
                    Name = "race",
                    Data = dataset == "fashion-scenes"
                        ? new DataConfig { Dataset = dataset, TrainSize = 256, ValidationSize = 32, TestSize = 32 }
                        : new DataConfig { Dataset = dataset, TrainSize = 4096, ValidationSize = 64, TestSize = 64 },
                    Tasks = dataset == "fashion-scenes" ? FashionScenes.NyudTasks : null,
                    Head = dataset == "fashion-scenes" ? new HeadConfig { Dense = "aspp", Channels = 16 } : new HeadConfig(),
                    Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
                    Architecture = new InterroGateConfig { LambdaS = 1 },
                    Training = new TrainingConfig { Epochs = 1000, BatchSize = 32, EvalBatchSize = 64, Lr = 3e-3, FlatOptimizer = flatOptimizer },
                };
                var run = PreparedRun.Create(config);
                using var timeUp = new CancellationTokenSource(TimeSpan.FromSeconds(Math.Max(1, seconds - watch.Elapsed.TotalSeconds)));
                var counter = new StepCounter();
                try { new Trainer(config, run.Model, run.Data, dir, counter).Run(cancel: timeUp.Token); }
                catch (OperationCanceledException) when (timeUp.IsCancellationRequested) { } // time up outside a step
                catch (Exception e) when (e is not OutOfMemoryException) { Failed(e); }
                calls += counter.Steps;
                run.Model.Dispose();
                if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            }
        }
        else if (mode == "deploy")
        {
            var tasks = new InterroGate.Tasks.TaskSet([new("a", InterroGate.Tasks.TaskKind.Classification, 10), new("b", InterroGate.Tasks.TaskKind.Classification, 10)]);
            manual_seed(1);
            var model = new InterroGateModel(tasks, InterroGate.Backbones.ResNetSpec.ResNet20(0.5), 3, (16, 16), new InterroGateConfig());
            using (NewDisposeScope())
            using (no_grad())
                foreach (var g in model.Encoder.GateLayers) g.Alpha.copy_(randn_like(g.Alpha)); // a scattered pattern: gathers in the graph
            var input = new ImageInput(3, 16, 16);
            string dir = Path.Combine(Path.GetTempPath(), $"scalar-race-{Environment.ProcessId}");
            Directory.CreateDirectory(dir);
            string file = Path.Combine(dir, "m.safetensors");
            byte[]? first = null;
            while (watch.Elapsed.TotalSeconds < seconds)
            {
                try
                {
                    var graph = InterroGate.Pruning.Pruner.Prune(model, input).Graph;
                    InterroGate.Export.StaticModelFile.Save(file, graph);
                    ((object)graph as IDisposable)?.Dispose(); // a StaticGraph is disposable from this change on; the probe also builds against older revisions
                    var bytes = File.ReadAllBytes(file);
                    first ??= bytes;
                    if (!bytes.AsSpan().SequenceEqual(first)) throw new ExternalException("the stored network differs from the first one stored");
                    using var predictor = InterroGate.Export.Predictor.Load(file);
                    using (NewDisposeScope())
                        foreach (var y in predictor.Forward(ones(1, 3, 16, 16)).Values)
                            if (!y.isfinite().all().item<bool>()) throw new ExternalException("a prediction is not finite");
                }
                catch (Exception e) when (e is ExternalException or InterroGate.Export.SafeTensorsException or InvalidDataException) { Failed(e); }
                calls++;
            }
            model.Dispose();
            Directory.Delete(dir, recursive: true);
        }
        else
        {
            var t = tensor(0L);
            var bn = nn.BatchNorm2d(4);
            bn.train();
            var x = randn(2, 4, 2, 2);
            var big = ones(256, 256);
            while (watch.Elapsed.TotalSeconds < seconds)
            {
                try
                {
                    if (mode == "bn") { using var y = bn.forward(x); }
                    else if (mode == "add") t.add_(1);
                    else if (mode == "temp" || mode == "temp-scoped")
                    {
                        using var scope = mode == "temp-scoped" ? NewDisposeScope() : null;
                        using var s = big.mul(big).sum();
                        if (s.item<float>() != big.numel()) throw new ExternalException($"sum {s.item<float>()}, expected {big.numel()}");
                    }
                    else throw new ArgumentException($"mode add, bn, temp, temp-scoped, deploy, train or train-calm, not {mode}");
                }
                catch (ExternalException e) { Failed(e); }
                calls++;
            }
        }
        stop.Cancel();
        Console.WriteLine($"{mode}: {calls} {(mode == "train" ? "training steps" : mode == "deploy" ? "rounds" : "calls")} in {watch.Elapsed.TotalSeconds:F1} s, " +
                          $"{errors} failures, {GC.CollectionCount(0) - gcBefore} garbage collections" + (hammer ? "" :
                          $", {(GC.GetTotalAllocatedBytes(true) - allBefore) / 1e6:F0} MB allocated, {(GC.GetAllocatedBytesForCurrentThread() - mainBefore) / 1e6:F0} MB of it by the training thread"));
    }

    private sealed class StepCounter : IProgress<TrainingEvent>
    {
        public long Steps;
        public void Report(TrainingEvent value) { if (value is StepProgress p) Steps = (long)p.Epoch * p.Steps + p.Step; }
    }
}
