using System.Text.Json;
using InterroGate.Architectures;
using InterroGate.Balancing;
using InterroGate.Configuration;
using InterroGate.Training;

namespace InterroGate.Tests.Training;

[Collection("Torch")]
public sealed class ComparisonTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"ig-compare-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>A one-epoch comparison on synthetic data, ResNet-20 ×¼, one λs; validation and test half the training size.</summary>
    private static CompareConfig Small(int train) => new()
    {
        Name = "t",
        Data = new DataConfig { Dataset = "synthetic", TrainSize = train, ValidationSize = train / 2, TestSize = train / 2 },
        Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
        Training = new TrainingConfig { Epochs = 1, BatchSize = 32, EvalBatchSize = 64 },
        LambdaS = [1],
    };

    [Fact]
    public void Compare_trains_every_listed_method_and_writes_one_row_each()
    {
        var config = Small(train: 128) with
        {
            Methods = [new PCGradBalancerConfig(), new DwaBalancerConfig()],
            Architectures = [new MtanConfig(), new CrossStitchConfig()],
        };
        var result = new ComparisonRunner(config, _dir).Run();

        var labels = result.Table.Rows.Select(r => r.Label).ToArray();
        Assert.Equal(["STL", "MTL", "MTL + pcgrad", "MTL + dwa", "MTAN", "Cross-stitch", "InterroGate (λs=1)"], labels);
        Assert.True(Directory.Exists(Path.Combine(_dir, "mtl-pcgrad")) && Directory.Exists(Path.Combine(_dir, "mtl-dwa")));
        var stored = ConfigJson.Deserialize<RunConfig>(File.ReadAllText(Path.Combine(_dir, "mtl-pcgrad", "config.json")));
        Assert.IsType<PCGradBalancerConfig>(stored.Balancer);
        var rows = JsonDocument.Parse(File.ReadAllText(result.JsonPath)).RootElement.GetProperty("rows").EnumerateArray().ToArray();
        Assert.Equal(labels, rows.Select(r => r.GetProperty("label").GetString()));
        Assert.All(rows, r => Assert.True(r.GetProperty("extra").GetProperty("ms/step").GetDouble() > 0));
        Assert.Contains("MTL + dwa", File.ReadAllText(result.MarkdownPath));
    }

    [Fact]
    public void A_run_started_from_baselines_trained_again_since_is_trained_anew_and_a_rerun_gives_the_same_table()
    {
        // InterroGate's own training settings apart from the baselines', so that only the baselines change below.
        var config = Small(train: 64) with { StlStartsFromMtl = true, InterroGateTraining = new TrainingConfig { Epochs = 1, BatchSize = 32, EvalBatchSize = 64 } };
        var first = new ComparisonRunner(config, _dir).Run();
        string table = File.ReadAllText(first.MarkdownPath);
        var origin = JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(Path.Combine(_dir, "interrogate-ls1", "started-from.json")))!;
        Assert.Equal(["mtl", "stl-bar", "stl-position", "stl-quadrant"], origin.Keys.Order());

        // The same command again reuses every run, and its table is the first one, the training cost included.
        var again = new RunMessages();
        var second = new ComparisonRunner(config, _dir, again).Run();
        Assert.Equal(5, again.WithRun.Count(l => l.Contains("reusing the finished run")));
        Assert.Equal(table, File.ReadAllText(second.MarkdownPath));

        // The folder spelt otherwise (-o relative once, absolute next), or moved with its runs: the STL runs' stored
        // start names the MTL checkpoint by the old path, and every run is still reused.
        string moved = _dir + "-moved";
        foreach (var file in Directory.GetFiles(_dir, "*", SearchOption.AllDirectories))
        {
            string to = Path.Combine(moved, Path.GetRelativePath(_dir, file));
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.Copy(file, to);
        }
        try
        {
            foreach (string folder in new[] { moved, Path.Combine(_dir, ".") })
            {
                var elsewhere = new RunMessages();
                Assert.Equal(table, File.ReadAllText(new ComparisonRunner(config, folder, elsewhere).Run().MarkdownPath));
                Assert.Equal(5, elsewhere.WithRun.Count(l => l.Contains("reusing the finished run")));
                Assert.DoesNotContain(elsewhere.WithRun, l => l.Contains("training anew"));
            }
        }
        finally
        {
            Directory.Delete(moved, recursive: true);
        }

        // Stopped between the two renames of MTL's last save (its only one: one epoch): the finished checkpoint is left
        // as last.ckpt.tmp and there is no last.ckpt. The save is completed, not trained anew over, and the InterroGate
        // run that started from it is still reused.
        string mtlLast = Path.Combine(_dir, "mtl", Trainer.LastFileName);
        var mtlBytes = File.ReadAllBytes(mtlLast);
        Assert.False(File.Exists(Checkpoint.PreviousPath(mtlLast)));
        File.Move(mtlLast, Checkpoint.InterruptedSavePath(mtlLast));
        var cut = new RunMessages();
        Assert.Equal(table, File.ReadAllText(new ComparisonRunner(config, _dir, cut).Run().MarkdownPath));
        Assert.DoesNotContain(cut.WithRun, l => l.Contains("training anew"));
        Assert.Contains($"mtl: {mtlLast}: completed the save a stop had cut short (from {Checkpoint.InterruptedSavePath(mtlLast)})", cut.WithRun);
        Assert.Equal(mtlBytes, File.ReadAllBytes(mtlLast));
        Assert.False(File.Exists(Checkpoint.InterruptedSavePath(mtlLast)));
        Assert.Equal(4, cut.WithRun.Count(l => l.Contains("reusing the finished run")));

        // A start record that does not read: what the run started from is unknown, so it is trained anew.
        File.WriteAllText(Path.Combine(_dir, "interrogate-ls1", "started-from.json"), "{\"mtl\": ");
        var damaged = new RunMessages();
        new ComparisonRunner(config, _dir, damaged).Run();
        Assert.Contains(damaged.WithRun, l => l.StartsWith("interrogate-ls1:", StringComparison.Ordinal) && l.Contains("started-from.json does not read")
                                              && l.EndsWith("so what the run started from is unknown; training anew.", StringComparison.Ordinal));
        Assert.Equal(origin, JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(Path.Combine(_dir, "interrogate-ls1", "started-from.json"))));

        // The baselines trained again (another learning rate); the InterroGate run's own configuration is the same,
        // but it started from the old baselines: it is trained anew, not reused against the new ones.
        var changed = new RunMessages();
        new ComparisonRunner(config with { Training = config.Training with { Lr = 0.01 } }, _dir, changed).Run();
        Assert.Contains(changed.WithRun, l => l.StartsWith("mtl:", StringComparison.Ordinal) && l.Contains("another configuration; training anew"));
        Assert.Contains(changed.WithRun, l => l == $"interrogate-ls1: {Path.Combine(_dir, "interrogate-ls1")} started from an earlier stl-quadrant, stl-bar, stl-position, mtl (trained again since); training anew.");
        Assert.DoesNotContain(changed.WithRun, l => l.Contains("reusing the finished run"));
        string record = Path.Combine(_dir, "interrogate-ls1", "started-from.json");
        var now = JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(record))!;
        Assert.All(origin, kv => Assert.NotEqual(kv.Value, now[kv.Key]));

        // Baselines trained again while the InterroGate run's folder is held by another run: that run cannot start, and
        // its record still names the checkpoints it did start from, so the next comparison trains it anew.
        var other = config with { Training = config.Training with { Lr = 0.02 } };
        using (RunFolderLock.Acquire(Path.Combine(_dir, "interrogate-ls1"), out _))
            Assert.Contains("in use by process", Assert.Throws<RunFolderException>(() => new ComparisonRunner(other, _dir).Run()).Message);
        Assert.Equal(now, JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(record)));
        var after = new RunMessages();
        new ComparisonRunner(other, _dir, after).Run();
        Assert.Contains(after.WithRun, l => l.StartsWith("interrogate-ls1:", StringComparison.Ordinal) && l.EndsWith("(trained again since); training anew.", StringComparison.Ordinal));

        // The same runs, now not started from the baselines: trained anew from scratch, which is recorded as such.
        var scratch = new RunMessages();
        new ComparisonRunner(other with { InitialiseFromBaselines = false }, _dir, scratch).Run();
        Assert.Contains($"interrogate-ls1: {Path.Combine(_dir, "interrogate-ls1")} started from stl-quadrant, stl-bar, stl-position, mtl and this comparison starts it from scratch; training anew.", scratch.WithRun);
        Assert.Empty(JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(record))!);
    }

    /// <summary>Stops the comparison (as Ctrl+C does) once run <paramref name="run"/> has finished its first epoch.</summary>
    private sealed class StopAfterFirstEpoch(string run, CancellationTokenSource stop) : IProgress<TrainingEvent>
    {
        public void Report(TrainingEvent e)
        {
            if (e is EpochCompleted { Epoch: 0 } done && done.Run == run) stop.Cancel();
        }
    }

    [Fact]
    public void A_comparison_stopped_in_a_run_started_from_MTL_resumes_from_its_folder_moved_elsewhere()
    {
        var config = Small(train: 64) with { StlStartsFromMtl = true, Training = new TrainingConfig { Epochs = 2, BatchSize = 32, EvalBatchSize = 64 } };
        string first = Path.Combine(_dir, "first");
        using (var stop = new CancellationTokenSource())
            Assert.Throws<OperationCanceledException>(() => new ComparisonRunner(config, first, new StopAfterFirstEpoch("stl-bar", stop)).Run(stop.Token));
        Assert.True(File.Exists(Path.Combine(first, "stl-bar", Trainer.LastFileName)));
        // The folder moved (its STL runs name the MTL checkpoint by the old path): the stopped run resumes, not refused.
        string moved = Path.Combine(_dir, "moved");
        Directory.Move(first, moved);
        var messages = new RunMessages();
        new ComparisonRunner(config, moved, messages).Run();
        Assert.Contains(messages.WithRun, l => l.StartsWith("stl-bar: resumed from", StringComparison.Ordinal) && l.Contains("at epoch 2", StringComparison.Ordinal));
        Assert.Contains(messages.WithRun, l => l.StartsWith("mtl: reusing the finished run", StringComparison.Ordinal));
        Assert.DoesNotContain(messages.WithRun, l => l.Contains("training anew", StringComparison.Ordinal));
    }

    [Fact]
    public void Ids_left_out_for_missing_files_are_in_the_table_of_a_comparison_and_of_a_merged_sweep()
    {
        string root = InterroGate.Tests.Data.NyudV2Tests.MultiTaskFolder(Path.Combine(_dir, "data"), ["a", "b"], ["c"]);
        File.AppendAllLines(Path.Combine(root, "gt_sets", "train.txt"), ["ghost"]);
        var config = Small(train: 2) with
        {
            Data = new DataConfig { Dataset = "nyudv2", Root = root, SkipMissing = true },
            Head = new InterroGate.Heads.HeadConfig { Channels = 8 },
            Training = new TrainingConfig { Epochs = 1, BatchSize = 2, EvalBatchSize = 2 },
        };
        var messages = new RunMessages();
        var result = new ComparisonRunner(config, Path.Combine(_dir, "cmp"), messages).Run();
        Assert.Contains(messages.WithRun, l => l.Contains("1 ids of the train list left out"));
        Assert.Equal(new Dictionary<string, int> { ["train"] = 1 }, result.Table.SkippedIds);
        var json = JsonDocument.Parse(File.ReadAllText(result.JsonPath)).RootElement.GetProperty("skippedIds");
        Assert.Equal(1, json.GetProperty("train").GetInt32());
        Assert.Contains("Left out of every run because their files are missing (data.skipMissing): 1 ids of the train list.", File.ReadAllText(result.MarkdownPath));
        Assert.Equal(result.Table.SkippedIds, InterroGate.Analysis.ComparisonTable.FromJson(File.ReadAllText(result.JsonPath)).SkippedIds);

        string sharded = Path.Combine(_dir, "sweep");
        new ComparisonRunner(config, sharded) { BaselinesOnly = true }.RunPart();
        new ComparisonRunner(config, sharded) { Shard = new Shard(0, 1) }.RunPart();
        Assert.Equal(new Dictionary<string, int> { ["train"] = 1 }, SweepShards.Merge(sharded, out _).SkippedIds);

        // Without skipped ids the table says nothing of them.
        Assert.Empty(new ComparisonRunner(config with { Data = config.Data with { Root = InterroGate.Tests.Data.NyudV2Tests.MultiTaskFolder(Path.Combine(_dir, "clean"), ["a", "b"], ["c"]) } },
            Path.Combine(_dir, "clean-cmp")).Run().Table.SkippedIds);
    }

    [Fact]
    public void A_run_whose_stored_configuration_no_longer_reads_is_refused_not_trained_over()
    {
        // A finished MTL run written by a version with a key this one does not know.
        string mtl = Path.Combine(_dir, "mtl");
        Directory.CreateDirectory(mtl);
        string last = Path.Combine(mtl, Trainer.LastFileName);
        using (var model = TorchSharp.torch.nn.Linear(2, 2))
            Checkpoint.Save(last, new CheckpointMeta { Architecture = "mtl", Backbone = "resnet20", Tasks = ["a", "b"], Config = """{ "futureKey": 1 }""", Epoch = 1 }, model, []);
        var before = File.ReadAllBytes(last);
        var config = Small(train: 64);
        var e = Assert.Throws<RunFolderException>(() => new ComparisonRunner(config, _dir).Run());
        Assert.Contains("futureKey", e.Message);
        Assert.Contains("another -o", e.Message);
        Assert.Equal(before, File.ReadAllBytes(last)); // the run's checkpoint is untouched
    }

    [Fact]
    public void A_method_listed_twice_or_out_of_range_is_named()
    {
        var arch = new CompareConfig { Architectures = [new HardSharingConfig()] };
        Assert.Contains("architectures[0].type", Assert.Throws<ConfigException>(() => arch.Validate(2)).Message);
        var twice = new CompareConfig { Methods = [new PCGradBalancerConfig(), new PCGradBalancerConfig()] };
        Assert.Contains("methods", Assert.Throws<ConfigException>(() => twice.Validate(2)).Message);
        var bad = new CompareConfig { Methods = [new CAGradBalancerConfig { C = -1 }] };
        Assert.Contains("methods[0].c", Assert.Throws<ConfigException>(() => bad.Validate(2)).Message);
    }

    [Fact]
    public void A_plotting_library_that_cannot_load_is_told_apart_from_other_faults()
    {
        // What a build without libSkiaSharp.so throws when the first figure is drawn: the tables are kept then.
        var missing = new TypeInitializationException("SkiaSharp.SKImageInfo", new DllNotFoundException("Unable to load shared library 'libSkiaSharp' or one of its dependencies. In order to help diagnose: \n/x/libSkiaSharp.so: cannot open"));
        Assert.Equal("Unable to load shared library 'libSkiaSharp' or one of its dependencies. In order to help diagnose", ComparisonRunner.MissingPlotLibrary(missing));
        Assert.Null(ComparisonRunner.MissingPlotLibrary(new TypeInitializationException("X", new InvalidOperationException("bad data"))));
        Assert.Null(ComparisonRunner.MissingPlotLibrary(new IOException("disk full")));
    }
}
