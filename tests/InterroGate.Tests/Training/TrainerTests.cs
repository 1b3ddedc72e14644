using System.Text.Json;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Training;
using static TorchSharp.torch;

namespace InterroGate.Tests.Training;

[Collection("Torch")]
public sealed class TrainerTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"ig-train-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    internal static RunConfig Config(ArchitectureConfig arch, int epochs = 2, int train = 512) => new()
    {
        Name = "test",
        Data = new DataConfig { Dataset = "synthetic", TrainSize = train, ValidationSize = 128, TestSize = 128 },
        Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
        Architecture = arch,
        Training = new TrainingConfig { Epochs = epochs, BatchSize = 32, EvalBatchSize = 64, Lr = 3e-3, Schedule = new(ScheduleKind.Cosine) },
    };

    /// <summary>The architecture a test names: stl, mtl, interrogate, mtan or cross-stitch.</summary>
    internal static ArchitectureConfig Architecture(string name) => name switch
    {
        "stl" => new SingleTaskConfig(), "mtl" => new HardSharingConfig(), "mtan" => new MtanConfig(), "cross-stitch" => new CrossStitchConfig(),
        "interrogate" => new InterroGateConfig { LambdaS = 1 },
        _ => throw new ArgumentException($"unknown architecture {name}"),
    };

    private sealed class Recorder : IProgress<TrainingEvent>
    {
        public readonly List<TrainingEvent> Events = new();
        public void Report(TrainingEvent value) => Events.Add(value);
    }

    [Theory]
    [InlineData("mtl")]
    [InlineData("interrogate")]
    public void Dense_tasks_train_on_FashionScenes_through_the_registry_and_report_their_metrics(string arch)
    {
        // Real Fashion-MNIST items (the Debian package), ResNet-20 ×¼ with narrow ASPP heads: every dense kind learns
        // (MTL: all five tasks on 384 scenes; InterroGate, whose step costs about T + 1 encoders here: the NYUD-like
        // three on 192, where normals learn faster than under MTL's five tasks: 0.80 -> 0.47 in loss).
        string[] tasks = arch == "interrogate" ? ["semseg", "depth", "normals"] : ["semseg", "depth", "normals", "edge", "sal"];
        var config = Config(Architecture(arch), epochs: 3) with
        {
            Data = new DataConfig { Dataset = "fashion-scenes", TrainSize = arch == "interrogate" ? 192 : 384, ValidationSize = 32, TestSize = 32 },
            Head = new InterroGate.Heads.HeadConfig { Channels = 16 },
            Tasks = arch == "interrogate" ? tasks : null,
        };
        var run = PreparedRun.Create(config);
        Assert.Equal(tasks, run.Tasks.Names);
        var before = Evaluator.Evaluate(run.Model, run.Data.Validation, 64);
        new Trainer(run.Config, run.Model, run.Data, _dir).Run();
        var after = Evaluator.Evaluate(run.Model, run.Data.Validation, 64);
        // Every metric of each task's kind reaches metrics.jsonl, not only the primary one.
        using (var line = System.Text.Json.JsonDocument.Parse(File.ReadLines(Path.Combine(_dir, "metrics.jsonl")).Last()))
        {
            var normals = line.RootElement.GetProperty("val_details").GetProperty("normals");
            Assert.True(normals.TryGetProperty("median", out _) && normals.TryGetProperty("within_11.25", out _), normals.ToString());
            Assert.True(line.RootElement.GetProperty("val_details").GetProperty("depth").TryGetProperty("abs_rel", out _));
        }
        foreach (var t in run.Tasks)
            Assert.True(after.Losses[t.Name] < before.Losses[t.Name], $"{t.Name}: {before.Losses[t.Name]} -> {after.Losses[t.Name]}");
        Assert.True(after.Metrics["semseg"] > before.Metrics["semseg"], $"mIoU {before.Metrics["semseg"]} -> {after.Metrics["semseg"]}");
        Assert.True(after.Metrics["depth"] < before.Metrics["depth"], $"rmse {before.Metrics["depth"]} -> {after.Metrics["depth"]}");
        foreach (var key in new[] { "median", "within_11.25" }) Assert.Contains(key, after.Details["normals"].Keys);
        if (arch == "interrogate") return;
        Assert.Contains("odsF", after.Details["edge"].Keys);
        Assert.Contains("mIoU", after.Details["sal"].Keys);
    }

    [Theory]
    [InlineData("stl")]
    [InlineData("mtl")]
    [InlineData("interrogate")]
    [InlineData("mtan")]
    [InlineData("cross-stitch")]
    public void Training_lowers_the_loss_and_writes_metrics_and_checkpoints(string arch)
    {
        var run = PreparedRun.Create(Config(Architecture(arch), epochs: 3, train: 768));
        var before = Evaluator.Evaluate(run.Model, run.Data.Validation, 64);
        var recorder = new Recorder();
        var result = new Trainer(run.Config, run.Model, run.Data, _dir, recorder).Run();
        var after = Evaluator.Evaluate(run.Model, run.Data.Validation, 64);

        // MTAN's attention masks start near 0.5 and scale the shared features down: it learns more slowly.
        double factor = arch == "mtan" ? 0.9 : 0.8;
        foreach (var t in run.Tasks)
            Assert.True(after.Losses[t.Name] < factor * before.Losses[t.Name], $"{t.Name}: {before.Losses[t.Name]} -> {after.Losses[t.Name]}");
        Assert.True(File.Exists(result.BestCheckpoint) && File.Exists(result.LastCheckpoint));
        var lines = File.ReadAllLines(Path.Combine(_dir, "metrics.jsonl"));
        Assert.Equal(3, lines.Length);
        var last = JsonDocument.Parse(lines[^1]).RootElement;
        Assert.Equal(3, last.GetProperty("epoch").GetInt32());
        Assert.Equal(arch == "interrogate", last.TryGetProperty("task_specific", out _));
        Assert.Equal(3, recorder.Events.OfType<EpochCompleted>().Count());
        Assert.Contains(recorder.Events.OfType<StepProgress>(), s => s.TaskLosses.Count == run.Tasks.Count);
        Assert.True(File.Exists(Path.Combine(_dir, "config.json")));
    }

    [Fact]
    public void A_checkpoint_round_trips_the_model()
    {
        var run = PreparedRun.Create(Config(new InterroGateConfig(), epochs: 1, train: 128));
        new Trainer(run.Config, run.Model, run.Data, _dir).Run();
        var (_, loaded, meta) = PreparedRun.Load(Path.Combine(_dir, "last.ckpt"), run.Data.Train.ImageShape, run.Data.Train.Tasks);
        Assert.Equal("interrogate", meta.Architecture);
        Assert.Equal(1, meta.Epoch);
        run.Model.eval(); loaded.eval();
        var x = randn(4, 1, 16, 16);
        var a = run.Model.call(x);
        var b = loaded.call(x);
        foreach (var t in run.Tasks) Assert.Equal(0f, (a[t.Name] - b[t.Name]).abs().max().item<float>());

        // Loading writes into the model's own tensors: optimisers built for it (a resumed run's) still hold its parameters.
        var fresh = PreparedRun.Create(Config(new InterroGateConfig(), epochs: 1, train: 128)).Model;
        var before = fresh.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.Handle);
        Checkpoint.Load(Path.Combine(_dir, "last.ckpt"), fresh);
        Assert.All(fresh.state_dict(), kv => Assert.Equal(before[kv.Key], kv.Value.Handle));
        Assert.All(fresh.state_dict(), kv => Assert.True(kv.Value.equal(run.Model.state_dict()[kv.Key]).all().item<bool>(), kv.Key));
    }

    [Fact]
    public void An_InterroGate_run_starts_from_STL_and_MTL_checkpoints()
    {
        var mtl = PreparedRun.Create(Config(new HardSharingConfig(), epochs: 1, train: 64));
        new Trainer(mtl.Config, mtl.Model, mtl.Data, Path.Combine(_dir, "mtl")).Run();
        var stlConfig = Config(new SingleTaskConfig(), epochs: 1, train: 64) with { Tasks = ["bar"] };
        var stl = PreparedRun.Create(stlConfig);
        new Trainer(stlConfig, stl.Model, stl.Data, Path.Combine(_dir, "stl")).Run();

        var igConfig = Config(new InterroGateConfig(), epochs: 1, train: 64) with
        {
            StartFrom = new StartFrom { Stl = new Dictionary<string, string> { ["bar"] = Path.Combine(_dir, "stl", "last.ckpt") }, Mtl = Path.Combine(_dir, "mtl", "last.ckpt") },
        };
        var ig = PreparedRun.Create(igConfig);
        var igState = ig.Model.state_dict();
        Assert.True(igState["encoder.shared.layer3.2.conv2.weight"].equal(mtl.Model.state_dict()["encoder.layer3.2.conv2.weight"]).all().item<bool>());
        Assert.True(igState["encoder.task_branches.bar.conv1.weight"].equal(stl.Model.state_dict()["encoders.bar.conv1.weight"]).all().item<bool>());
        Assert.True(igState["heads.bar.fc.weight"].equal(stl.Model.state_dict()["heads.bar.fc.weight"]).all().item<bool>());

        var e = Assert.Throws<ConfigException>(() => PreparedRun.Create(igConfig with { StartFrom = new StartFrom { Mtl = Path.Combine(_dir, "none.ckpt") } }));
        Assert.Equal("startFrom.mtl", e.Key);
        Assert.Equal("startFrom", Assert.Throws<ConfigException>(() => PreparedRun.Create(Config(new HardSharingConfig()) with { StartFrom = new StartFrom() })).Key);

        // An STL run may start its encoders from the MTL encoder (one common ancestor for all branches).
        var stlFromMtl = PreparedRun.Create(Config(new SingleTaskConfig(), epochs: 1, train: 64) with { StartFrom = new StartFrom { Mtl = Path.Combine(_dir, "mtl", "last.ckpt") } });
        var stlState = stlFromMtl.Model.state_dict();
        foreach (var task in stlFromMtl.Tasks)
            Assert.True(stlState[$"encoders.{task.Name}.layer2.0.downsample.0.weight"].equal(mtl.Model.state_dict()["encoder.layer2.0.downsample.0.weight"]).all().item<bool>());
        Assert.False(stlState[$"encoders.{stlFromMtl.Tasks[0].Name}.conv1.weight"].equal(stl.Model.state_dict()[$"encoders.bar.conv1.weight"]).all().item<bool>());
        Assert.Equal("startFrom.stl", Assert.Throws<ConfigException>(() => PreparedRun.Create(Config(new SingleTaskConfig()) with { StartFrom = igConfig.StartFrom })).Key);
    }

    [Fact]
    public void A_head_learning_rate_trains_the_heads_apart_from_the_encoder()
    {
        // The encoder at a learning rate too small to move a float32 weight, the heads at a normal one.
        var baseConfig = Config(new HardSharingConfig(), epochs: 1, train: 128);
        var config = baseConfig with { Training = baseConfig.Training with { Lr = 1e-30, HeadLr = 1e-2, WeightDecay = 0 } };
        var run = PreparedRun.Create(config);
        var before = run.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        new Trainer(config, run.Model, run.Data, _dir).Run();
        var after = run.Model.state_dict();
        var weights = run.Model.named_parameters().Select(p => p.name).ToArray();
        float Moved(string n) => (after[n] - before[n]).abs().max().item<float>();
        // Adam's step is about the learning rate itself: 1e-30 for the encoder (a zero bias does take it), 1e-2 for the heads.
        Assert.All(weights.Where(n => n.StartsWith("encoder.", StringComparison.Ordinal)), n => Assert.True(Moved(n) < 1e-20f, $"{n} moved by {Moved(n)}"));
        Assert.All(weights.Where(n => n.StartsWith("heads.", StringComparison.Ordinal)), n => Assert.True(Moved(n) > 1e-4f, $"{n} moved by {Moved(n)}"));
        var bad = Assert.Throws<ConfigException>(() => (config with { Training = config.Training with { HeadLr = 0 } }).Validate(2));
        Assert.Contains("training.headLr", bad.Message);
    }

    [Fact]
    public void Gates_stay_fixed_in_the_last_epochs_while_the_weights_train()
    {
        var config = Config(new InterroGateConfig { LambdaS = 50 }, epochs: 3, train: 128) with { Training = Config(new InterroGateConfig()).Training with { Epochs = 3, FreezeGatesLastEpochs = 2 } };
        var run = PreparedRun.Create(config);
        var ig = (InterroGateModel)run.Model;
        var initial = ig.Encoder.GateLayers[0].Alpha.detach().clone();
        var snapshots = new List<(Tensor Alpha, Tensor Weight)>();
        var fixedCopies = new List<bool>();
        var probe = new OnEpoch(() =>
        {
            snapshots.Add((ig.Encoder.GateLayers[0].Alpha.detach().clone(), ((ResNet)ig.Encoder.SharedBranch).StemConv.weight!.detach().clone()));
            fixedCopies.Add(ig.Encoder.GatesFixed);
        });
        new Trainer(config, run.Model, run.Data, _dir, probe).Run();
        Assert.Equal(3, snapshots.Count);
        Assert.Equal([false, true, true], fixedCopies); // the epochs with fixed gates leave the unread copies out
        Assert.False(initial.equal(snapshots[0].Alpha).all().item<bool>());        // epoch 1 learns the gates
        Assert.True(snapshots[0].Alpha.equal(snapshots[2].Alpha).all().item<bool>()); // epochs 2 and 3 keep them
        Assert.False(snapshots[0].Weight.equal(snapshots[2].Weight).all().item<bool>()); // while the weights train
        Assert.Equal("training.freezeGatesLastEpochs", Assert.Throws<ConfigException>(() =>
            PreparedRun.Create(config with { Training = config.Training with { FreezeGatesLastEpochs = 3 } })).Key);
    }

    [Theory]
    [InlineData("cross-stitch", false)]
    [InlineData("interrogate", true)]
    public void Progress_shows_a_task_specific_fraction_only_for_models_that_have_one(string arch, bool has)
    {
        var config = Config(Architecture(arch), epochs: 1, train: 128);
        var run = PreparedRun.Create(config);
        var events = new Recorder();
        new Trainer(config, run.Model, run.Data, _dir, events).Run();
        var steps = events.Events.OfType<StepProgress>().ToArray();
        Assert.NotEmpty(steps);
        Assert.All(steps, s => Assert.Equal(has, s.Headline?.StartsWith("task-specific", StringComparison.Ordinal) == true));
        Assert.All(events.Events.OfType<EpochCompleted>(), e => Assert.Equal(has, e.Headline is not null));
    }

    private sealed class OnEpoch(Action action) : IProgress<TrainingEvent>
    {
        public void Report(TrainingEvent value)
        {
            if (value is EpochCompleted) action();
        }
    }

    [Fact]
    public void Resuming_from_another_architecture_is_refused_by_name()
    {
        var mtl = PreparedRun.Create(Config(new HardSharingConfig(), epochs: 1, train: 64));
        new Trainer(mtl.Config, mtl.Model, mtl.Data, _dir).Run();
        var ig = PreparedRun.Create(Config(new InterroGateConfig(), epochs: 1, train: 64));
        var e = Assert.Throws<CheckpointException>(() => new Trainer(ig.Config, ig.Model, ig.Data, Path.Combine(_dir, "ig")).Run(Path.Combine(_dir, "last.ckpt")));
        Assert.Contains("it holds an MTL model on resnet20", e.Message);
        Assert.Contains("this run trains an InterroGate model on resnet20", e.Message);
    }

    [Fact]
    public void An_epochs_checkpoint_holds_the_balancer_state_that_epoch_left()
    {
        // DWA's weights for epoch 3 come from the losses of epochs 1 and 2: the checkpoint after epoch 2 must hold both,
        // or a run resumed from it (after a kill, or extended) weighs epoch 3 by the epoch before.
        var config = Config(new HardSharingConfig(), epochs: 2, train: 128) with { Balancer = new DwaBalancerConfig() };
        var run = PreparedRun.Create(config);
        var result = new Trainer(config, run.Model, run.Data, _dir).Run();
        var state = Checkpoint.ReadMeta(result.LastCheckpoint).BalancerState;
        Assert.Equal(2 * run.Model.Tasks.Count, state["history"].Length);
        Assert.Contains(state["weights"], w => w != 1.0); // the weights epoch 3 would train with, not the first epochs' ones
    }

    [Fact]
    public void Each_epoch_records_the_balancers_mean_task_weights()
    {
        var probe = PreparedRun.Create(Config(new HardSharingConfig(), epochs: 1, train: 64));
        var names = probe.Model.Tasks.Names.ToArray();
        var weights = names.Select((_, i) => 0.5 * (i + 1)).ToArray();
        var config = Config(new HardSharingConfig(), epochs: 1, train: 64) with { Balancer = new FixedWeightsBalancerConfig { Weights = weights } };
        var run = PreparedRun.Create(config);
        new Trainer(config, run.Model, run.Data, _dir).Run();
        using var line = System.Text.Json.JsonDocument.Parse(File.ReadAllLines(Path.Combine(_dir, "metrics.jsonl"))[0]);
        var recorded = line.RootElement.GetProperty("balancer_weights");
        for (int i = 0; i < names.Length; i++) Assert.Equal(weights[i], recorded.GetProperty(names[i]).GetDouble(), 12);
    }

    [Fact]
    public void Cancelling_writes_a_resumable_checkpoint_and_resuming_finishes_the_run()
    {
        var config = Config(new HardSharingConfig(), epochs: 2, train: 256);
        var run = PreparedRun.Create(config);
        using var cts = new CancellationTokenSource();
        var stopper = new CancelAfter(cts, steps: 3);
        var first = new Trainer(config, run.Model, run.Data, _dir, stopper).Run(cancel: cts.Token);
        Assert.True(first.Interrupted);
        var meta = Checkpoint.ReadMeta(first.LastCheckpoint);
        Assert.Equal("interrupted", meta.Kind);
        Assert.Equal(0, meta.Epoch);
        Assert.True(meta.Step > 0);

        var again = PreparedRun.Create(config);
        var second = new Trainer(config, again.Model, again.Data, _dir).Run(first.LastCheckpoint);
        Assert.False(second.Interrupted);
        Assert.Equal(2, Checkpoint.ReadMeta(second.LastCheckpoint).Epoch);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(_dir, "metrics.jsonl")).Length);

        // A fresh run in a folder that holds one is refused, and nothing of the old run is touched.
        var fresh = PreparedRun.Create(config with { Training = config.Training with { Epochs = 1 } });
        var refused = Assert.Throws<RunFolderException>(() => new Trainer(fresh.Config, fresh.Model, fresh.Data, _dir).Run());
        Assert.Contains("already holds a run", refused.Message);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(_dir, "metrics.jsonl")).Length);

        // Told to overwrite, it starts its metrics anew; resuming after epoch 1 drops what came after it, and a line cut
        // short by a kill is left out.
        new Trainer(fresh.Config, fresh.Model, fresh.Data, _dir) { Overwrite = true }.Run();
        var lines = File.ReadAllLines(Path.Combine(_dir, "metrics.jsonl"));
        Assert.Single(lines);
        File.AppendAllText(Path.Combine(_dir, "metrics.jsonl"), lines[0].Replace("\"epoch\":1", "\"epoch\":2") + "\n" + lines[0][..20]);

        // Resuming with another configuration (two more epochs, another learning rate) is refused naming the keys,
        // unless the changes are accepted.
        var changed = config with { Training = config.Training with { Lr = config.Training.Lr * 2 } };
        var resumed = PreparedRun.Create(changed);
        var differs = Assert.Throws<RunFolderException>(() => new Trainer(changed, resumed.Model, resumed.Data, _dir).Run(Path.Combine(_dir, "last.ckpt")));
        Assert.Contains("training.epochs, training.lr", differs.Message);
        var messages = new Recorder();
        new Trainer(changed, resumed.Model, resumed.Data, _dir, messages) { AcceptConfigChanges = true }.Run(Path.Combine(_dir, "last.ckpt"));
        Assert.Contains(messages.Events.OfType<RunMessage>(), m => m.Text.Contains("incomplete line", StringComparison.Ordinal));
        var epochs = File.ReadAllLines(Path.Combine(_dir, "metrics.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("epoch").GetInt32());
        Assert.Equal([1, 2], epochs);
    }

    [Fact]
    public void A_validation_score_that_is_not_a_number_still_leaves_a_best_checkpoint_that_a_number_replaces()
    {
        // The regression head's outputs are NaN in evaluation (training is untouched) until the end of epoch 2: the
        // validation score is NaN in epochs 1 and 2, a number in epoch 3.
        var run = PreparedRun.Create(Config(new HardSharingConfig(), epochs: 3, train: 64));
        bool poisoned = true;
        var hook = run.Model.register_forward_hook((m, input, output) =>
        {
            if (!m.training && poisoned) output["position"] = full_like(output["position"], double.NaN);
            return output;
        });
        var epochs = new EpochsSeen(e => poisoned = e < 1);
        var result = new Trainer(run.Config, run.Model, run.Data, _dir, epochs).Run();
        hook.remove();
        Assert.Equal(3, epochs.Scores.Count);
        Assert.True(double.IsNaN(epochs.Scores[0]) && double.IsNaN(epochs.Scores[1]) && double.IsFinite(epochs.Scores[2]), string.Join(", ", epochs.Scores));
        Assert.Equal([true, false, true], epochs.Best); // the first epoch kept although no number ranks it, then a number beats it
        Assert.Equal(2, result.BestEpoch);
        Assert.True(File.Exists(result.BestCheckpoint));
        Assert.Equal(3, Checkpoint.ReadMeta(result.BestCheckpoint).Epoch);
        Assert.True(double.IsFinite(result.BestValidation["position"]));
    }

    private sealed class EpochsSeen(Action<int> ended) : IProgress<TrainingEvent>
    {
        public List<double> Scores { get; } = [];
        public List<bool> Best { get; } = [];

        public void Report(TrainingEvent value)
        {
            if (value is not EpochCompleted e) return;
            Scores.Add(e.Score);
            Best.Add(e.IsBest);
            ended(e.Epoch);
        }
    }

    [Fact]
    public void A_run_folder_holds_one_run_at_a_time_and_a_killed_runs_lock_is_cleared()
    {
        Directory.CreateDirectory(_dir);
        string lockPath = Path.Combine(_dir, RunFolderLock.FileName);
        using (RunFolderLock.Acquire(_dir, out bool stale))
        {
            Assert.False(stale);
            var e = Assert.Throws<RunFolderException>(() => RunFolderLock.Acquire(_dir, out _)); // this live process holds it
            Assert.Contains($"in use by process {Environment.ProcessId}", e.Message);
        }
        Assert.False(File.Exists(lockPath));

        File.WriteAllText(lockPath, "2147483600 638000000000"); // a process that does not run
        using (RunFolderLock.Acquire(_dir, out bool stale)) Assert.True(stale);

        // A lock that names no owner yet is being written by a process that has just taken it (two runs started
        // together): held while fresh, a dead process's once older than that.
        File.WriteAllText(lockPath, "");
        Assert.Contains("just taken it", Assert.Throws<RunFolderException>(() => RunFolderLock.Acquire(_dir, out _)).Message);
        File.SetLastWriteTimeUtc(lockPath, DateTime.UtcNow - RunFolderLock.FreshLock - TimeSpan.FromSeconds(1));
        using (RunFolderLock.Acquire(_dir, out bool stale)) Assert.True(stale);
    }

    [Fact]
    public void A_dead_lock_is_cleared_only_while_it_is_the_one_read_so_two_processes_cannot_both_take_the_folder()
    {
        Directory.CreateDirectory(_dir);
        string lockPath = Path.Combine(_dir, RunFolderLock.FileName);
        const string dead = "2147483600 638000000000";
        File.WriteAllText(lockPath, dead);
        Assert.True(RunFolderLock.ClearIfUnchanged(lockPath, dead));
        Assert.False(File.Exists(lockPath));
        Assert.False(RunFolderLock.ClearIfUnchanged(lockPath, dead)); // cleared by the other process first

        // The other process cleared the dead lock and took the folder between this one's read and its clearing: its
        // lock stays, and taking the folder is refused.
        string live = $"{Environment.ProcessId} 123";
        File.WriteAllText(lockPath, live);
        Assert.False(RunFolderLock.ClearIfUnchanged(lockPath, dead));
        Assert.Equal(live, File.ReadAllText(lockPath));
        Assert.Equal([RunFolderLock.FileName], Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void Of_many_takers_that_find_the_same_dead_lock_exactly_one_takes_the_folder()
    {
        Directory.CreateDirectory(_dir);
        string lockPath = Path.Combine(_dir, RunFolderLock.FileName);
        for (int round = 0; round < 40; round++)
        {
            File.WriteAllText(lockPath, "2147483600 638000000000");
            using var start = new Barrier(6);
            var taken = new System.Collections.Concurrent.ConcurrentBag<RunFolderLock>();
            var refused = new System.Collections.Concurrent.ConcurrentBag<RunFolderException>();
            var threads = Enumerable.Range(0, 6).Select(k => new Thread(() =>
            {
                start.SignalAndWait();
                try { taken.Add(RunFolderLock.Acquire(_dir, out _)); }
                catch (RunFolderException e) { refused.Add(e); }
            })).ToArray();
            foreach (var t in threads) t.Start();
            foreach (var t in threads) t.Join();
            Assert.True(taken.Count == 1, $"round {round}: {taken.Count} takers hold the folder");
            Assert.All(refused, e => Assert.Contains("in use", e.Message));
            foreach (var l in taken) l.Dispose();
            Assert.Empty(Directory.GetFiles(_dir));
        }
    }

    [Fact]
    public void Deterministic_runs_give_bit_identical_weights_and_refuse_timing_dependent_choices()
    {
        var config = Config(new InterroGateConfig { LambdaS = 2 }, epochs: 2, train: 256) with
        {
            Training = Config(new HardSharingConfig()).Training with { Epochs = 2, Deterministic = true, MaxStepsPerEpoch = 4 },
        };
        byte[] Weights(string name)
        {
            var run = PreparedRun.Create(config);
            new Trainer(config, run.Model, run.Data, Path.Combine(_dir, name)).Run();
            using var ms = new MemoryStream();
            using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true)) run.Model.save(w);
            return ms.ToArray();
        }
        Assert.Equal(Weights("a"), Weights("b"));

        var auto = config with { Architecture = new InterroGateConfig { Fusion = InterroGate.Gating.BranchFusion.Auto } };
        Assert.Equal("architecture.fusion", Assert.Throws<ConfigException>(() => auto.Validate(2)).Key);
        var cuda = config with { Training = config.Training with { Device = "cuda" } };
        Assert.Equal("training.deterministic", Assert.Throws<ConfigException>(() => cuda.Validate(2)).Key);
    }

    [Theory]
    [InlineData(GateOptimizer.Sgd, false)]
    [InlineData(GateOptimizer.Adam, false)]
    [InlineData(GateOptimizer.Sgd, true)]
    public void Flat_and_per_parameter_optimisers_train_the_same_weights_and_gates(GateOptimizer gates, bool bf16ChannelsLast)
    {
        // Three weight groups' worth of cases at once: a head learning rate (two Adam groups), a balancer's own
        // parameters in the first group, and the gates with their own optimiser.
        var arch = new InterroGateConfig { LambdaS = 2, GateOptimizer = gates, GateLr = gates == GateOptimizer.Adam ? 1e-3 : 0.1 };
        var baseConfig = Config(arch, epochs: 1, train: 256) with { Balancer = new UncertaintyBalancerConfig() };
        var config = baseConfig with { Training = baseConfig.Training with { Deterministic = true, MaxStepsPerEpoch = 6, HeadLr = 1e-2 } };
        // Mixed precision and channels-last images: gradients of other layouts and dtypes pass through the buffers too.
        if (bf16ChannelsLast) config = config with { Training = config.Training with { Precision = InterroGate.Runtime.Precision.Bf16, ChannelsLast = true } };
        MultiTaskModel Trained(bool flat, string name)
        {
            var c = config with { Training = config.Training with { FlatOptimizer = flat } };
            var run = PreparedRun.Create(c);
            new Trainer(c, run.Model, run.Data, Path.Combine(_dir, name)).Run();
            return run.Model;
        }
        var flat = Trained(true, "flat");
        var perParameter = Trained(false, "per-parameter");
        var untrained = PreparedRun.Create(config).Model;
        double Difference(MultiTaskModel a, MultiTaskModel b) =>
            a.named_parameters().Zip(b.named_parameters()).Max(p => (p.First.parameter - p.Second.parameter).abs().max().item<float>());
        Assert.True(Difference(flat, perParameter) <= 1e-5, $"flat and per-parameter optimisers differ by {Difference(flat, perParameter):E2}");
        Assert.True(Difference(flat, untrained) > 1e-3);
        float[] Alphas(MultiTaskModel model) =>
            ((InterroGateModel)model).Encoder.GateLayers.SelectMany(g => g.Alpha.detach().cpu().data<float>().ToArray()).ToArray();
        Assert.Contains(Alphas(flat), a => a != (float)arch.AlphaInit); // the gates moved too
    }

    [Fact]
    public void Adam_on_the_gates_resumes_with_its_state_and_ends_where_an_uninterrupted_run_ends()
    {
        var arch = new InterroGateConfig { LambdaS = 2, GateOptimizer = GateOptimizer.Adam, GateLr = 1e-3 };
        var config = Config(arch, epochs: 1, train: 256) with
        {
            Training = Config(new HardSharingConfig()).Training with { Epochs = 1, Deterministic = true, MaxStepsPerEpoch = 8 },
        };
        float[] Alphas(MultiTaskModel model) =>
            ((InterroGateModel)model).Encoder.GateLayers.SelectMany(g => g.Alpha.detach().cpu().data<float>().ToArray()).ToArray();

        var whole = PreparedRun.Create(config);
        new Trainer(config, whole.Model, whole.Data, Path.Combine(_dir, "whole")).Run();

        var cut = PreparedRun.Create(config);
        using var cts = new CancellationTokenSource();
        var first = new Trainer(config, cut.Model, cut.Data, Path.Combine(_dir, "cut"), new CancelAfter(cts, steps: 3)).Run(cancel: cts.Token);
        Assert.True(first.Interrupted);
        var again = PreparedRun.Create(config);
        new Trainer(config, again.Model, again.Data, Path.Combine(_dir, "cut")).Run(first.LastCheckpoint);

        var expected = Alphas(whole.Model);
        Assert.Contains(expected, a => a != (float)arch.AlphaInit); // the gates moved
        Assert.Equal(expected, Alphas(again.Model));
    }

    [Fact]
    public void Changed_keys_are_listed_by_their_path()
    {
        var changed = RunFiles.ChangedKeys("""{"a": 1, "b": {"c": [1, 2], "d": "x"}, "training": {"device": "cpu"}}""",
            """{"a": 1, "b": {"c": [1, 3], "e": true}, "training": {"device": "cuda"}}""", new HashSet<string> { "training.device" });
        Assert.Equal(["b.c", "b.d", "b.e"], changed);
    }

    private sealed class CancelAfter(CancellationTokenSource cts, int steps) : IProgress<TrainingEvent>
    {
        private int _seen;
        public void Report(TrainingEvent value)
        {
            if (value is StepProgress && ++_seen >= steps) cts.Cancel();
        }
    }

    [Fact]
    public void A_non_finite_loss_stops_naming_the_task_and_keeps_the_last_good_checkpoint()
    {
        var config = Config(new HardSharingConfig(), epochs: 3, train: 128);
        var clean = DataCatalog.Open(config.Data);
        var poisoned = new DatasetSplits(new PoisonAfter(clean.Train, "position", firstPoisonedCall: 5), clean.Validation, clean.Test);
        var run = PreparedRun.Create(config, poisoned);
        var trainer = new Trainer(config, run.Model, poisoned, _dir);
        var e = Assert.Throws<NonFiniteLossException>(() => trainer.Run());
        Assert.Contains("'position'", e.Message);
        Assert.Equal(trainer.LastPath, e.LastGoodCheckpoint);
        Assert.Equal(1, Checkpoint.ReadMeta(trainer.LastPath).Epoch); // epoch 1 completed cleanly
    }

    [Fact]
    public void Losses_read_every_few_steps_give_the_same_run_as_losses_read_every_step()
    {
        // On a GPU the losses stay on the device between progress reports; forced here on the CPU.
        string Train(string dir, int? readEvery)
        {
            var config = Config(new InterroGateConfig { LambdaS = 1 }, epochs: 2, train: 320);
            var run = PreparedRun.Create(config);
            new Trainer(config, run.Model, run.Data, dir) { ReadLossesEvery = readEvery }.Run();
            // Everything but the times.
            return string.Join("\n", File.ReadAllLines(Path.Combine(dir, "metrics.jsonl")).Select(l =>
            {
                var o = System.Text.Json.Nodes.JsonNode.Parse(l)!.AsObject();
                foreach (var key in o.Select(kv => kv.Key).Where(k => k.EndsWith("_s", StringComparison.Ordinal) || k.EndsWith("_ms", StringComparison.Ordinal)).ToArray()) o.Remove(key);
                return o.ToJsonString();
            }));
        }
        string everyStep = Train(Path.Combine(_dir, "every"), null), everyFour = Train(Path.Combine(_dir, "four"), 4);
        Assert.Contains("\"train_loss\"", everyStep);
        Assert.Contains("\"regularizer\"", everyStep);
        Assert.Contains("\"task_specific\"", everyStep);   // the sharing fractions and gate statistics are compared too
        Assert.Contains("\"gates\"", everyStep);
        Assert.DoesNotContain("elapsed_s", everyStep);
        Assert.Equal(everyStep, everyFour);
    }

    [Fact]
    public void A_non_finite_loss_read_after_several_steps_names_the_steps_it_lies_in()
    {
        var config = Config(new HardSharingConfig(), epochs: 3, train: 128);
        var clean = DataCatalog.Open(config.Data);
        var poisoned = new DatasetSplits(new PoisonAfter(clean.Train, "position", firstPoisonedCall: 5), clean.Validation, clean.Test);
        var run = PreparedRun.Create(config, poisoned);
        var trainer = new Trainer(config, run.Model, poisoned, _dir) { ReadLossesEvery = 3 };
        var e = Assert.Throws<NonFiniteLossException>(() => trainer.Run());
        // 4 steps per epoch: the fifth batch (epoch 2, step 1) is poisoned; with reads every 3 steps it is found in steps 1-3.
        Assert.Contains("'position'", e.Message);
        Assert.Contains("epoch 2, in steps 1-3", e.Message);
        Assert.Equal(trainer.LastPath, e.LastGoodCheckpoint);
        Assert.Equal(1, Checkpoint.ReadMeta(trainer.LastPath).Epoch);
    }

    /// <summary>A training split whose batches carry NaN targets for one task from some call on.</summary>
    private sealed class PoisonAfter(IMultiTaskDataset inner, string task, int firstPoisonedCall) : IMultiTaskDataset
    {
        private int _calls;
        public string Name => inner.Name;
        public InterroGate.Tasks.TaskSet Tasks => inner.Tasks;
        public int Count => inner.Count;
        public (int Channels, int Height, int Width) ImageShape => inner.ImageShape;
        public InterroGate.Data.ImageInput Input => inner.Input;

        public Dictionary<string, Tensor> GetBatch(ReadOnlySpan<long> indices)
        {
            var batch = inner.GetBatch(indices);
            if (Interlocked.Increment(ref _calls) >= firstPoisonedCall) batch[task] = full_like(batch[task], double.NaN);
            return batch;
        }
    }

    [Fact]
    public void A_crash_while_writing_a_checkpoint_leaves_the_previous_one_intact()
    {
        var run = PreparedRun.Create(Config(new HardSharingConfig(), epochs: 1, train: 64));
        var trainer = new Trainer(run.Config, run.Model, run.Data, _dir);
        trainer.Run();
        var before = File.ReadAllBytes(trainer.LastPath);
        var meta = Checkpoint.ReadMeta(trainer.LastPath);
        // The save fails for the reason the module gives (the disk full), not for some other one.
        var e = Assert.Throws<IOException>(() => Checkpoint.Save(trainer.LastPath, meta, new FailingModule(), []));
        Assert.Equal("disk full", e.Message);
        Assert.Equal(before, File.ReadAllBytes(trainer.LastPath));
        Assert.Equal(1, Checkpoint.ReadMeta(trainer.LastPath).Epoch);
    }

    private sealed class FailingModule() : nn.Module("failing")
    {
        public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null) =>
            throw new IOException("disk full");
    }
}
