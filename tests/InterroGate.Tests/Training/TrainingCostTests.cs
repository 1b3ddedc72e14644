using InterroGate.Analysis;
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
}
