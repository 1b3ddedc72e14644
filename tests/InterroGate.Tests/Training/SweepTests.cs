using System.Text.Json;
using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Training;

namespace InterroGate.Tests.Training;

[Collection("Torch")]
public sealed class SweepTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-sweep-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static IReadOnlyList<JsonElement> Values(string json) => JsonDocument.Parse(json).RootElement.EnumerateArray().Select(e => e.Clone()).ToArray();

    private static CompareConfig Tiny => new()
    {
        Name = "sweep",
        Data = new DataConfig { Dataset = "synthetic", TrainSize = 96, ValidationSize = 32, TestSize = 64 },
        Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
        Training = new TrainingConfig { Epochs = 1, BatchSize = 32, EvalBatchSize = 64 },
        LambdaS = [1, 4],
        Grid = new Dictionary<string, IReadOnlyList<JsonElement>> { ["architecture.gateLr"] = Values("[0.1, 0.3]") },
        Seeds = [0, 1],
    };

    [Fact]
    public void Points_are_lambda_times_the_tau_grid_times_the_grid_with_their_overrides_applied()
    {
        var c = new CompareConfig
        {
            LambdaS = [1, 2],
            TauGrid = [0, 0.5],
            Grid = new Dictionary<string, IReadOnlyList<JsonElement>> { ["architecture.gateLr"] = Values("[0.1, 0.2]") },
        };
        c.Validate(2);
        var points = SweepPoints.Of(c, tasks: 2);
        Assert.Equal(2 * 4 * 2, points.Count);
        Assert.Equal(points.Count, points.Select(p => p.Name).Distinct().Count());
        Assert.Equal("interrogate-ls1-tau0_0-gateLr0.1", points[0].Name);
        Assert.Equal("InterroGate (λs=1, tau=0_0, gateLr=0.1)", points[0].Label);
        var p = points.Single(x => x.Name == "interrogate-ls2-tau0.5_0-gateLr0.2");
        var run = (InterroGateConfig)SweepPoints.Run(c, p).Architecture;
        Assert.Equal((2.0, 0.2), (run.LambdaS, run.GateLr));
        Assert.Equal([0.5, 0], run.Tau);

        // Without a grid the points are the λs list as compare has always named them.
        Assert.Equal(["interrogate-ls1", "interrogate-ls2"], SweepPoints.Of(new CompareConfig { LambdaS = [1, 2] }, 2).Select(x => x.Name));
    }

    [Fact]
    public void Bad_grids_and_shards_are_errors_naming_the_key()
    {
        string Key(CompareConfig c) => Assert.Throws<ConfigException>(() => c.Validate(2)).Key;
        var grid = (string key, string json) => new CompareConfig { Grid = new Dictionary<string, IReadOnlyList<JsonElement>> { [key] = Values(json) } };
        Assert.Equal("grid", Key(new CompareConfig { Grid = new Dictionary<string, IReadOnlyList<JsonElement>>() }));
        Assert.Equal("grid.architecture.gateLr", Key(grid("architecture.gateLr", "[]")));
        Assert.Equal("grid.backbone.width", Key(grid("backbone.width", "[0.5]")));
        Assert.Equal("grid.architecture.lambdaS", Key(grid("architecture.lambdaS", "[1]")));
        Assert.Equal("grid.training.lr", Key(grid("training.lr", "[0.1, 0.1]")));
        var unknown = Assert.Throws<ConfigException>(() => grid("architecture.gateLR", "[0.1]").Validate(2));
        Assert.StartsWith("grid (interrogate-ls0.5-gateLR0.1)", unknown.Key);
        Assert.Contains("architecture.gateLR", unknown.Message);
        Assert.Equal("tauGrid", Key(new CompareConfig { TauGrid = [] }));
        Assert.Equal("tauGrid[1]", Key(new CompareConfig { TauGrid = [0, 1.5] }));
        Assert.Equal("lambdaS", Key(new CompareConfig { TauGrid = [0], LambdaS = [], Architectures = [new MtanConfig()] }));

        Assert.Equal(new Shard(1, 4), Shard.Parse("1/4"));
        Assert.Equal("--shard", Assert.Throws<ConfigException>(() => Shard.Parse("4/4")).Key);
        Assert.Equal("--shard", Assert.Throws<ConfigException>(() => Shard.Parse("a/b")).Key);
        Assert.Equal("--shard", Assert.Throws<ConfigException>(() => Shard.Parse("0/0")).Key);
        var slurm = new Dictionary<string, string> { ["SLURM_ARRAY_TASK_ID"] = "3", ["SLURM_ARRAY_TASK_COUNT"] = "3", ["SLURM_ARRAY_TASK_MIN"] = "1" };
        Assert.Equal(new Shard(2, 3), Shard.FromEnvironment(k => slurm.GetValueOrDefault(k)));
        Assert.Null(Shard.FromEnvironment(_ => null));
        slurm["SLURM_ARRAY_TASK_ID"] = "9";
        Assert.Equal("SLURM_ARRAY_TASK_ID", Assert.Throws<ConfigException>(() => Shard.FromEnvironment(k => slurm.GetValueOrDefault(k))).Key);
    }

    [Fact]
    public void A_per_task_tau_is_checked_against_the_data_sets_tasks_when_the_run_names_none()
    {
        // The sweep's τ grid gives every run one τ per task; the run's task list is the data set's (synthetic: 3).
        var run = new RunConfig
        {
            Data = new DataConfig { Dataset = "synthetic", TrainSize = 32, ValidationSize = 16, TestSize = 16 },
            Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
            Architecture = new InterroGateConfig { Tau = [0, 0.5, 0.25] },
        };
        using (var prepared = PreparedRun.Create(run).Model)
        {
            var model = Assert.IsType<InterroGate.Architectures.InterroGateModel>(prepared);
            Assert.Equal(3, model.Tasks.Count); // the synthetic data set's three tasks, one τ each
            Assert.Equal([0, 0.5, 0.25], model.Options.TauFor(model.Tasks.Count));
        }
        var e = Assert.Throws<ConfigException>(() => PreparedRun.Create(run with { Architecture = new InterroGateConfig { Tau = [0, 0.5] } }));
        Assert.Equal("architecture.tau", e.Key);
        Assert.Contains("one per task (3)", e.Message);
    }

    [Fact]
    public void Shards_merged_give_the_table_of_the_sweep_run_in_one_process()
    {
        var config = Tiny;
        string whole = Path.Combine(_dir, "whole"), sharded = Path.Combine(_dir, "sharded");
        var one = new ComparisonRunner(config, whole).Run().Table;

        // A shard before the baselines: refused, naming the step to run first.
        var early = Assert.Throws<RunFolderException>(() => new ComparisonRunner(config, sharded) { Shard = new Shard(0, 3) }.RunPart());
        Assert.Contains("--baselines", early.Message);

        Assert.Null(new ComparisonRunner(config, sharded) { BaselinesOnly = true }.RunPart());
        Assert.False(Directory.Exists(Path.Combine(sharded, "seed-0", "interrogate-ls1-gateLr0.1")));
        var files = Enumerable.Range(0, 3).Select(i => new ComparisonRunner(config, sharded) { Shard = new Shard(i, 3) }.RunPart()!).ToArray();
        // 2 seeds × 4 points = 8 runs over 3 shards: 3, 3 and 2 runs.
        Assert.Equal([3, 3, 2], files.Select(f => JsonDocument.Parse(File.ReadAllText(f)).RootElement.GetProperty("seeds").EnumerateArray()
            .Sum(s => s.GetProperty("points").GetArrayLength())));

        var merged = SweepShards.Merge(sharded, out var entries);
        Assert.Equal(one.Rows.Select(r => r.Label), merged.Rows.Select(r => r.Label));
        Assert.Equal(2 * (merged.Tasks.Count + 1 + 4), entries.Count); // per seed: one STL per task, MTL, 4 InterroGate runs
        for (int r = 0; r < one.Rows.Count; r++)
        {
            Assert.Equal(one.Rows[r].Metrics, merged.Rows[r].Metrics);
            Assert.Equal(one.Rows[r].Macs, merged.Rows[r].Macs);
            Assert.Equal(one.DeltaMtl(one.Rows[r]), merged.DeltaMtl(merged.Rows[r]));
            Assert.Equal(one.Rows[r].Seeds!.Select(s => s.Metrics), merged.Rows[r].Seeds!.Select(s => s.Metrics));
            Assert.Equal(one.Rows[r].Runs, merged.Rows[r].Runs); // each row names its run folders, seed by seed
        }
        Assert.Equal(["seed-0/mtl", "seed-1/mtl"], merged.Rows.Single(r => r.Label == "MTL").Runs);
        // Each seed's own table, in its seed-S folder, names the runs beside it.
        var seedTable = InterroGate.Analysis.ComparisonTable.FromJson(File.ReadAllText(Path.Combine(whole, "seed-1", "table.json")));
        Assert.Equal(["mtl"], seedTable.Rows.Single(r => r.Label == "MTL").Runs);
        Assert.All(seedTable.Rows.SelectMany(r => r.Runs), run => Assert.True(Directory.Exists(Path.Combine(whole, "seed-1", run)), run));
        Assert.Equal(2 * merged.Tasks.Count, merged.Baseline!.Runs.Count);
        Assert.All(merged.Baseline.Runs, run => Assert.Matches("^seed-[01]/stl-", run));
        Assert.Equal(["seed-0/interrogate-ls4-gateLr0.3", "seed-1/interrogate-ls4-gateLr0.3"],
            merged.Rows.Single(r => r.Label.Contains("λs=4", StringComparison.Ordinal) && r.Label.Contains("0.3", StringComparison.Ordinal)).Runs);

        // A missing shard and a shard of another configuration are refused by name.
        string shards = Path.Combine(sharded, SweepShards.Folder);
        string moved = Path.Combine(_dir, "shard-1-of-3.json");
        File.Move(Path.Combine(shards, "shard-1-of-3.json"), moved);
        Assert.Contains("shard 1 of 3 has no result", Assert.Throws<RunFolderException>(() => SweepShards.Merge(sharded, out _)).Message);
        Assert.Contains("does not exist; give the folder the shards were run with", Assert.Throws<RunFolderException>(() => SweepShards.Merge(Path.Combine(_dir, "nowhere"), out _)).Message);
        var other = JsonDocument.Parse(File.ReadAllText(moved)).RootElement;
        string changed = File.ReadAllText(moved).Replace(JsonSerializer.Serialize(other.GetProperty("config").GetString()),
            JsonSerializer.Serialize(SweepShards.Identity(config with { LambdaS = [1, 8] })));
        File.WriteAllText(Path.Combine(shards, "shard-1-of-3.json"), changed);
        var e = Assert.Throws<RunFolderException>(() => SweepShards.Merge(sharded, out _));
        Assert.Contains("different configurations", e.Message);
        Assert.Contains("lambdaS", e.Message);
        File.Delete(Path.Combine(shards, "shard-1-of-3.json"));
        File.WriteAllText(Path.Combine(shards, "shard-1-of-4.json"), File.ReadAllText(moved).Replace("\"count\": 3", "\"count\": 4"));
        Assert.Contains("results of two different splits", Assert.Throws<RunFolderException>(() => SweepShards.Merge(sharded, out _)).Message);
    }
}
