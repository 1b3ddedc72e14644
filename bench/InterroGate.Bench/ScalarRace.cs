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
// Usage: InterroGate.Bench scalar-race SECONDS add|bn|train|train-calm [synthetic|multifashion|fashion-scenes]
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
                    Training = new TrainingConfig { Epochs = 1000, BatchSize = 32, EvalBatchSize = 64, Lr = 3e-3 },
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
        else
        {
            var t = tensor(0L);
            var bn = nn.BatchNorm2d(4);
            bn.train();
            var x = randn(2, 4, 2, 2);
            while (watch.Elapsed.TotalSeconds < seconds)
            {
                try
                {
                    if (mode == "bn") { using var y = bn.forward(x); }
                    else if (mode == "add") t.add_(1);
                    else throw new ArgumentException($"mode add, bn or train, not {mode}");
                }
                catch (ExternalException e) { Failed(e); }
                calls++;
            }
        }
        stop.Cancel();
        Console.WriteLine($"{mode}: {calls} {(mode == "train" ? "training steps" : "calls")} in {watch.Elapsed.TotalSeconds:F1} s, " +
                          $"{errors} failures, {GC.CollectionCount(0) - gcBefore} garbage collections" + (hammer ? "" :
                          $", {(GC.GetTotalAllocatedBytes(true) - allBefore) / 1e6:F0} MB allocated, {(GC.GetAllocatedBytesForCurrentThread() - mainBefore) / 1e6:F0} MB of it by the training thread"));
    }

    private sealed class StepCounter : IProgress<TrainingEvent>
    {
        public long Steps;
        public void Report(TrainingEvent value) { if (value is StepProgress p) Steps = (long)p.Epoch * p.Steps + p.Step; }
    }
}
