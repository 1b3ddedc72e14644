using InterroGate.Analysis;
using InterroGate.Tasks;

namespace InterroGate.Tests.Analysis;

public sealed class ComparisonPlotsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-plots-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_pareto_front_keeps_the_points_no_other_beats_on_both_cost_and_quality()
    {
        var points = new (double, double)[] { (6, 0), (3, -20), (5, -1), (4, -5), (4.5, -6), (5.5, -0.5), (7, -0.1), (3, double.NaN) };
        Assert.Equal([1, 3, 2, 5, 0], ComparisonPlots.ParetoFront(points));
        Assert.Empty(ComparisonPlots.ParetoFront([]));
        Assert.Equal([0], ComparisonPlots.ParetoFront([(1, 1), (1, 0.5)])); // same cost: only the better one
    }

    [Fact]
    public void The_trade_off_plot_marks_stl_mtl_the_front_and_colours_sweep_points_by_tau()
    {
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 10), new TaskSpec("b", TaskKind.Classification, 10)]);
        var table = new ComparisonTable(tasks);
        ComparisonRow Row(string label, string method, double a, double b, long macs) =>
            new(label, method, new Dictionary<string, double> { ["a"] = a, ["b"] = b }, macs, 1000, new Dictionary<string, double>());
        table.AddRow(Row("STL", "stl", 0.8, 0.8, 6_000_000), isBaseline: true);
        table.AddRow(Row("MTL", "mtl", 0.7, 0.7, 3_000_000));
        table.AddRow(Row("InterroGate (λs=1, tau=0_0.25)", "interrogate", 0.81, 0.8, 5_000_000));
        table.AddRow(Row("InterroGate (λs=1, tau=0.25_0.25)", "interrogate", 0.78, 0.79, 4_000_000));
        var (png, svg) = ComparisonPlots.TradeOff(table, Path.Combine(_dir, "t"), tauTask: "a");
        Assert.True(new FileInfo(png).Length > 1000);
        string text = File.ReadAllText(svg);
        foreach (var legend in new[] { "Pareto front", "MTL–STL line", "STL", "MTL", "τ(a) = 0", "τ(a) = 0.25" }) Assert.Contains(legend, text);
        Assert.Equal(0.25, ComparisonPlots.Tau("InterroGate (λs=1, tau=0_0.25)", 1));
        Assert.Null(ComparisonPlots.Tau("InterroGate (λs=1)", 0));
        Assert.Throws<ArgumentException>(() => ComparisonPlots.TradeOff(table, Path.Combine(_dir, "u"), tauTask: "c"));
    }

    [Fact]
    public void A_table_whose_delta_is_undefined_everywhere_is_still_drawn()
    {
        // STL's metric 0 for a task (a smoke run's mIoU): every Δ_MTL is NaN; the figure is written, with no point to place.
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 10), new TaskSpec("b", TaskKind.Classification, 10)]);
        var table = new ComparisonTable(tasks);
        ComparisonRow Row(string label, string method, double a, long macs) =>
            new(label, method, new Dictionary<string, double> { ["a"] = a, ["b"] = 0 }, macs, 1000, new Dictionary<string, double>());
        table.AddRow(Row("STL", "stl", 0.8, 6_000_000), isBaseline: true);
        table.AddRow(Row("MTL", "mtl", 0.7, 3_000_000));
        table.AddRow(Row("InterroGate (λs=1)", "interrogate", 0.75, 4_000_000));
        Assert.All(table.Rows, r => Assert.True(double.IsNaN(table.DeltaMtl(r))));
        var (png, svg) = ComparisonPlots.TradeOff(table, Path.Combine(_dir, "undefined"));
        Assert.True(new FileInfo(png).Length > 1000);
        Assert.Contains("<svg", File.ReadAllText(svg));
    }

    [Fact]
    public void Rows_trained_to_a_MAC_budget_get_their_targets_drawn_and_parameter_budgets_do_not()
    {
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 10)]);
        ComparisonRow Row(string label, string method, double a, long macs, Dictionary<string, double> extra) =>
            new(label, method, new Dictionary<string, double> { ["a"] = a }, macs, 1000, extra);
        var table = new ComparisonTable(tasks);
        table.AddRow(Row("STL", "stl", 0.8, 6_000_000, []), isBaseline: true);
        table.AddRow(Row("MTL", "mtl", 0.7, 3_000_000, []));
        table.AddRow(Row("InterroGate (λs=1)", "interrogate", 0.78, 4_000_000, []));
        string without = File.ReadAllText(ComparisonPlots.TradeOff(table, Path.Combine(_dir, "plain")).Svg);
        Assert.DoesNotContain("budget targets", without);
        table.AddRow(Row("InterroGate (target f0.5)", "interrogate", 0.79, 4_400_000,
            new() { [ComparisonTable.TargetMacsKey] = 4.5, [ComparisonTable.TargetGapKey] = -2.2 }));
        Assert.Contains("budget targets", File.ReadAllText(ComparisonPlots.TradeOff(table, Path.Combine(_dir, "macs")).Svg));

        var parameters = new ComparisonTable(tasks);
        parameters.AddRow(Row("STL", "stl", 0.8, 6_000_000, []), isBaseline: true);
        parameters.AddRow(Row("InterroGate (target 0.03Mparams)", "interrogate", 0.79, 4_400_000, new() { [ComparisonTable.TargetParametersKey] = 0.03 }));
        Assert.DoesNotContain("budget targets", File.ReadAllText(ComparisonPlots.TradeOff(parameters, Path.Combine(_dir, "params")).Svg));
    }

    [Fact]
    public void Curves_read_each_runs_validation_metric_per_epoch()
    {
        string metrics = Path.Combine(_dir, "metrics.jsonl");
        File.WriteAllLines(metrics, [
            """{"epoch": 1, "val_metric": {"a": 0.5, "b": 0.4}}""",
            """{"epoch": 2, "val_metric": {"a": 0.6, "b": 0.45}}""",
            "{damaged",
        ]);
        var curve = ComparisonPlots.ReadCurve("run", metrics);
        Assert.Equal([(1, 0.5), (2, 0.6)], curve.Tasks["a"]);
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 10), new TaskSpec("b", TaskKind.Classification, 10)]);
        var files = ComparisonPlots.Curves([curve, ComparisonPlots.ReadCurve("empty", Path.Combine(_dir, "none.jsonl"))], tasks, Path.Combine(_dir, "curves"));
        Assert.Equal(["a", "b"], files.Keys.Order());
        Assert.Contains("validation accuracy", File.ReadAllText(files["b"].Svg));
    }
}
