using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Data;
using InterroGate.Configuration;
using static TorchSharp.torch;
using InterroGate.Tasks;
using InterroGate.Training;

namespace InterroGate.Tests.Training;

public sealed class TrainingCostTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-cost-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Cost_is_the_epoch_mean_of_step_times_and_the_sum_of_training_time()
    {
        string path = Path.Combine(_dir, "metrics.jsonl");
        File.WriteAllLines(path, [
            """{"epoch": 1, "forward_ms": "NaN", "backward_ms": "NaN", "train_s": 10}""", // all steps in warm-up
            """{"epoch": 2, "forward_ms": 4, "backward_ms": 10, "train_s": 12}""",
            """{"epoch": 3, "forward_ms": 6, "backward_ms": 14, "train_s": 14}""",
        ]);
        Assert.Equal(new TrainingCost(5, 12, 36), TrainingCost.Read(path));
        File.WriteAllLines(path, ["""{"epoch": 1, "images_per_s": 100}"""]); // a run from before the timing
        var old = TrainingCost.Read(path);
        Assert.True(double.IsNaN(old.ForwardMs) && double.IsNaN(old.TrainSeconds));
        Assert.Equal(new TrainingCost(3, 5, 7), TrainingCost.Sum([new(1, 2, 3), new(2, 3, 4)]));
    }

    [Fact]
    public void The_cost_table_shows_each_row_and_leaves_the_main_table_unchanged()
    {
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 10)]);
        var table = new ComparisonTable(tasks);
        table.AddRow(new ComparisonRow("STL", "stl", new Dictionary<string, double> { ["a"] = 0.9 }, 100, 10,
            new Dictionary<string, double> { ["epochs"] = 3, [ComparisonTable.ForwardKey] = 2.5, [ComparisonTable.BackwardKey] = 5, [ComparisonTable.TrainMinutesKey] = 1.5 }), isBaseline: true);
        table.AddRow(new ComparisonRow("Old run", "mtl", new Dictionary<string, double> { ["a"] = 0.8 }, 50, 5, new Dictionary<string, double> { ["epochs"] = 3 }));
        string cost = table.ToCostMarkdown("cpu");
        Assert.Contains("| STL | 2.5 | 5.0 | 7.5 | 1.50 | 3 |", cost);
        Assert.Contains("| Old run |  |  |  |  | 3 |", cost);
        Assert.Contains("on cpu", cost);
        Assert.DoesNotContain("forward ms", table.ToMarkdown());
    }

    /// <summary>A split whose first read takes a while (as a large validation set would).</summary>
    private sealed class Slow(IMultiTaskDataset inner, int ms) : InterroGate.Tests.Data.ForwardingDataset(inner)
    {
        private int _reads;

        public override Dictionary<string, Tensor> GetBatch(ReadOnlySpan<long> indices)
        {
            if (Interlocked.Increment(ref _reads) == 1) Thread.Sleep(ms);
            return Inner.GetBatch(indices);
        }
    }

    [Fact]
    public void Training_time_and_speed_leave_out_validation()
    {
        var config = TrainerTests.Config(new HardSharingConfig(), epochs: 1, train: 64);
        config = config with { Training = config.Training with { MaxStepsPerEpoch = 2 } };
        var run = PreparedRun.Create(config);
        // Validation takes at least 4 s; the two training steps of this small network far less.
        var validation = new Slow(run.Data.Validation, ms: 4000);
        string dir = Path.Combine(_dir, "run");
        new Trainer(run.Config, run.Model, new DatasetSplits(run.Data.Train, validation, run.Data.Test), dir).Run();
        var row = System.Text.Json.JsonDocument.Parse(File.ReadAllLines(Path.Combine(dir, "metrics.jsonl"))[0]).RootElement;
        double trainS = row.GetProperty("train_s").GetDouble(), elapsed = row.GetProperty("elapsed_s").GetDouble();
        Assert.True(elapsed >= 4, $"elapsed {elapsed} s");
        Assert.True(trainS < elapsed - 3, $"train_s {trainS} s of an epoch that took {elapsed} s with validation");
        Assert.True(row.GetProperty("images_per_s").GetDouble() > 64 / (elapsed - 3));
    }
}
