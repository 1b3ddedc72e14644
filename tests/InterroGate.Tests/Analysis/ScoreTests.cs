using InterroGate.Analysis;
using InterroGate.Tasks;

namespace InterroGate.Tests.Analysis;

/// <summary>Δ_MTL and mean rank against rows of the paper's tables (arXiv 2402.16848, Tables 9-11).</summary>
public sealed class ScoreTests
{
    private static readonly bool[] Nyud = [true, false, false]; // semseg ↑, depth ↓, normals ↓
    private static readonly double[] NyudStl = [41.70, 0.582, 18.89];

    [Theory]
    [InlineData(41.83, 0.582, 22.84, -6.86)] // MTL (uniform)
    [InlineData(41.86, 0.580, 22.61, -6.29)] // DWA
    [InlineData(43.58, 0.559, 19.32, +2.06)] // InterroGate
    [InlineData(42.35, 0.575, 21.70, -4.07)] // InterroGate
    public void Delta_MTL_matches_the_NYUD_HRNet_table(double seg, double depth, double normals, double published)
    {
        // The table prints metrics rounded (depth to 0.001 of ~0.58): recomputing from them moves Δ_MTL by up to ~0.06.
        Assert.InRange(DeltaMtl.Compute([seg, depth, normals], NyudStl, Nyud) - published, -0.06, 0.06);
    }

    [Fact]
    public void Delta_MTL_matches_the_NYUD_ResNet50_cross_stitch_row()
    {
        Assert.InRange(DeltaMtl.Compute([44.19, 0.577, 19.62], [43.20, 0.599, 19.42], Nyud) - 1.66, -0.03, 0.03);
    }

    [Fact]
    public void Delta_MTL_rejects_a_zero_baseline_by_task_name()
    {
        var e = Assert.Throws<ArgumentException>(() => DeltaMtl.Compute([1, 2], [0, 2], [true, true], ["depth", "seg"]));
        Assert.Contains("depth", e.Message);
    }

    [Fact]
    public void Mean_rank_matches_the_CelebA_width_1_table()
    {
        double[][] rows =
        [
            [97.50, 86.02, 93.00], // STL 3.3
            [97.28, 86.70, 92.35], // MTL 4.7
            [97.60, 87.44, 92.40], // InterroGate 2.7
            [97.77, 87.39, 92.56], // InterroGate 2.3
            [97.95, 87.24, 92.85], // InterroGate 2.0
        ];
        var mr = MeanRank.Compute(rows, [true, true, true]);
        Assert.Equal(new[] { 3.3, 4.7, 2.7, 2.3, 2.0 }, mr.Select(x => Math.Round(x, 1)));
    }

    [Fact]
    public void Mean_rank_matches_the_NYUD_HRNet_table()
    {
        double[][] rows =
        [
            [41.70, 0.582, 18.89], [41.83, 0.582, 22.84], [41.86, 0.580, 22.61], [41.49, 0.575, 22.27],
            [42.71, 0.577, 22.87], [42.10, 0.593, 23.29], [41.75, 0.581, 22.73], [42.31, 0.580, 22.79],
            [41.23, 0.625, 21.07], [43.58, 0.559, 19.32], [42.95, 0.562, 19.73], [42.36, 0.564, 20.04],
            [42.73, 0.575, 21.01], [42.35, 0.575, 21.70],
        ];
        double[] published = [8.0, 11.0, 8.7, 8.3, 8.0, 11.7, 10.3, 8.7, 11.3, 1.3, 2.3, 4.0, 4.0, 5.7];
        var mr = MeanRank.Compute(rows, Nyud);
        for (int i = 0; i < rows.Length; i++) Assert.True(Math.Abs(mr[i] - published[i]) < 0.05, $"row {i}: {mr[i]:F2} vs {published[i]}");
    }

    [Fact]
    public void A_metric_that_is_not_a_number_ranks_last()
    {
        // Higher is better in the first metric, lower in the second; the NaN rows come after every number in each.
        var mr = MeanRank.Compute([[double.NaN, 1.0], [2.0, double.NaN], [3.0, 2.0], [double.NaN, double.NaN]], [true, false]);
        Assert.Equal(new[] { (3.0 + 1.0) / 2, (2.0 + 3.0) / 2, (1.0 + 2.0) / 2, (3.0 + 3.0) / 2 }, mr);
    }

    [Fact]
    public void Ties_share_the_smaller_rank()
    {
        var mr = MeanRank.Compute([[1.0], [2.0], [2.0], [3.0]], [true]);
        Assert.Equal(new[] { 4.0, 2.0, 2.0, 1.0 }, mr);
    }

    [Fact]
    public void The_table_computes_delta_and_rank_and_round_trips_through_json()
    {
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 10), new TaskSpec("b", TaskKind.Regression, 1)]);
        var table = new ComparisonTable(tasks);
        table.AddRow(new ComparisonRow("STL", "stl", new Dictionary<string, double> { ["a"] = 0.8, ["b"] = 2.0 }, 200, 20, new Dictionary<string, double>()), isBaseline: true);
        table.AddRow(new ComparisonRow("MTL", "mtl", new Dictionary<string, double> { ["a"] = 0.88, ["b"] = 2.2 }, 100, 10, new Dictionary<string, double> { ["ms/step"] = 5 }));
        Assert.Equal(0.0, table.DeltaMtl(table.Rows[1]), 6); // +10% and −10%
        Assert.Equal(new[] { 1.5, 1.5 }, table.MeanRanks());
        var md = table.ToMarkdown();
        Assert.Contains("| MTL | 88.00 | 2.2000 |", md);
        Assert.Contains("1 MAC = 2 FLOPs", md);
        var back = ComparisonTable.FromJson(table.ToJson());
        Assert.Equal(table.ToMarkdown(), back.ToMarkdown());
        Assert.Throws<ArgumentException>(() => table.AddRow(new ComparisonRow("x", "x", new Dictionary<string, double> { ["a"] = 1 }, 1, 1, new Dictionary<string, double>())));
    }

    [Fact]
    public void The_best_epoch_is_chosen_by_the_relative_change_of_every_task_not_by_a_sum_of_units()
    {
        var tasks = new TaskSet([new TaskSpec("semseg", TaskKind.Segmentation, 5), new TaskSpec("normals", TaskKind.Normals, 3)]);
        var best = new Dictionary<string, double> { ["semseg"] = 0.30, ["normals"] = 20 };
        // mIoU +10%, mean angle 5% worse: better on average. A sum of the raw metrics (0.33 − 21 against 0.30 − 20) says worse.
        var candidate = new Dictionary<string, double> { ["semseg"] = 0.33, ["normals"] = 21 };
        Assert.True(InterroGate.Training.EvaluationResult.Improves(tasks, candidate, best));
        Assert.True(InterroGate.Training.EvaluationResult.Score(tasks, candidate) < InterroGate.Training.EvaluationResult.Score(tasks, best));
        Assert.False(InterroGate.Training.EvaluationResult.Improves(tasks, best, candidate));
        Assert.False(InterroGate.Training.EvaluationResult.Improves(tasks, best, best)); // equal is no improvement
        // A metric that is not a number loses to any number, whatever the other task does.
        Assert.False(InterroGate.Training.EvaluationResult.Improves(tasks, new Dictionary<string, double> { ["semseg"] = double.NaN, ["normals"] = 10 }, best));
        Assert.True(InterroGate.Training.EvaluationResult.Improves(tasks, best, new Dictionary<string, double> { ["semseg"] = double.NaN, ["normals"] = 19 }));
    }

    [Fact]
    public void Dense_columns_name_their_metric_and_only_fractions_are_percentages()
    {
        var tasks = new TaskSet([new TaskSpec("semseg", TaskKind.Segmentation, 11), new TaskSpec("depth", TaskKind.Depth, 1),
            new TaskSpec("normals", TaskKind.Normals, 3), new TaskSpec("sal", TaskKind.Saliency, 1)]);
        var table = new ComparisonTable(tasks);
        table.AddRow(new ComparisonRow("STL", "stl", new Dictionary<string, double> { ["semseg"] = 0.4123, ["depth"] = 0.58, ["normals"] = 18.9, ["sal"] = 0.75 },
            200, 20, new Dictionary<string, double>()), isBaseline: true);
        var md = table.ToMarkdown();
        Assert.Contains("semseg (mIoU % ↑) | depth (rmse ↓) | normals (mean angle ↓) | sal (mIoU % ↑)", md);
        Assert.Contains("| STL | 41.23 | 0.5800 | 18.9000 | 75.00 |", md);
    }

    [Theory]
    [InlineData(10000, "10000")]
    [InlineData(0.5, "0.5")]
    [InlineData(2500, "2500")]
    [InlineData(3, "3")]
    public void Lambda_values_name_runs_without_exponents(double lambda, string shown) =>
        Assert.Equal(shown, InterroGate.Training.ComparisonRunner.Lambda(lambda));
}
