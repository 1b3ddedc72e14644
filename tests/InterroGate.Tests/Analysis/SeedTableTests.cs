using InterroGate.Analysis;
using InterroGate.Configuration;
using InterroGate.Tasks;

namespace InterroGate.Tests.Analysis;

/// <summary>Comparison tables over seeds: mean ± sample std per row, Δ_MTL per seed against that seed's STL.</summary>
public sealed class SeedTableTests
{
    private static readonly TaskSet Tasks = new([new TaskSpec("a", TaskKind.Classification, 2), new TaskSpec("b", TaskKind.Classification, 2)]);

    private static ComparisonTable Seed(double stlA, double stlB, double mtlA, double mtlB, long mtlMacs)
    {
        var t = new ComparisonTable(Tasks);
        t.AddRow(new ComparisonRow("STL", "stl", new Dictionary<string, double> { ["a"] = stlA, ["b"] = stlB }, 200, 20, new Dictionary<string, double>()), isBaseline: true);
        t.AddRow(new ComparisonRow("MTL", "mtl", new Dictionary<string, double> { ["a"] = mtlA, ["b"] = mtlB }, mtlMacs, 10,
            new Dictionary<string, double> { ["task-specific %"] = mtlMacs / 10.0 }));
        return t;
    }

    [Fact]
    public void Rows_are_means_and_delta_is_averaged_over_per_seed_deltas()
    {
        // Seed 1: STL 0.8/0.5, MTL 0.88/0.45 -> Δ = (+10% - 10%)/2 = 0.  Seed 2: STL 0.5/0.5, MTL 0.6/0.5 -> Δ = +10%.
        var table = ComparisonTable.OverSeeds([Seed(0.8, 0.5, 0.88, 0.45, 100), Seed(0.5, 0.5, 0.6, 0.5, 120)]);
        var mtl = table.Rows[1];
        Assert.Equal(0.74, mtl.Metrics["a"], 10);
        Assert.Equal(110, mtl.Macs);
        Assert.Equal(5.0, table.DeltaMtl(mtl), 6); // not Δ of the means, which is (0.74/0.65 - 1 + 0.475/0.5 - 1)/2 = +4.4%
        Assert.Equal(Math.Sqrt(50), table.DeltaMtlStd(mtl), 6);
        Assert.Equal(0.28 / Math.Sqrt(2), mtl.Std(r => r.Metrics["a"]), 6); // values 0.88 and 0.6: sample std
        var md = table.ToMarkdown();
        Assert.Contains("| MTL | 74.00 ± 19.80 | 47.50 ± 3.54 | +5.00 ± 7.07 | 0.00 ± 0.00 |", md);
        Assert.Contains("over 2 seeds", md);

        // The JSON keeps every seed's numbers and reads back to the same table.
        var back = ComparisonTable.FromJson(table.ToJson());
        Assert.Equal(2, back.Rows[1].Seeds!.Count);
        Assert.Equal(0.6, back.Rows[1].Seeds![1].Metrics["a"], 10);
        Assert.Equal(5.0, back.DeltaMtl(back.Rows[1]), 6);
    }

    [Fact]
    public void A_baseline_metric_of_0_leaves_delta_undefined_and_the_table_is_still_written()
    {
        // A run that learnt nothing (mIoU 0 after a smoke run): no relative change from 0, yet the table, its JSON and
        // the mean over seeds are written, with Δ_MTL empty and said why.
        var single = Seed(0.8, 0, 0.88, 0.45, 100);
        Assert.True(double.IsNaN(single.DeltaMtl(single.Rows[1])));
        var md = single.ToMarkdown();
        Assert.Contains("| MTL | 88.00 | 45.00 |  | 0.00 |", md);
        Assert.Contains("Δ_MTL is undefined: STL's b is 0, and a change relative to 0 has no value.", md);
        Assert.Equal(System.Text.Json.JsonValueKind.Null,
            System.Text.Json.JsonDocument.Parse(single.ToJson()).RootElement.GetProperty("rows")[1].GetProperty("deltaMtl").ValueKind);

        var seeds = ComparisonTable.OverSeeds([Seed(0.8, 0.5, 0.88, 0.45, 100), single]);
        Assert.True(double.IsNaN(seeds.DeltaMtl(seeds.Rows[1])));
        Assert.Contains("Δ_MTL is undefined: STL's b is 0 in some seed", seeds.ToMarkdown());
        Assert.False(double.IsNaN(Seed(0.8, 0.5, 0.88, 0.45, 100).DeltaMtl(Seed(0.8, 0.5, 0.88, 0.45, 100).Rows[1])));

        // A baseline metric that is not a number (a depth STL scored on no valid pixel) leaves Δ_MTL empty, said why.
        var nan = Seed(0.8, double.NaN, 0.88, 0.45, 100);
        Assert.True(double.IsNaN(nan.DeltaMtl(nan.Rows[1])));
        Assert.Contains("Δ_MTL is undefined: STL's b is not a number", nan.ToMarkdown());
    }

    [Fact]
    public void A_pipe_in_a_label_stays_inside_its_cell_in_the_table_and_the_report()
    {
        var t = new ComparisonTable(Tasks);
        t.AddRow(new ComparisonRow("STL", "stl", new Dictionary<string, double> { ["a"] = 0.8, ["b"] = 0.5 }, 200, 20, new Dictionary<string, double>()), isBaseline: true);
        t.AddRow(new ComparisonRow("InterroGate (grid a|b)", "interrogate", new Dictionary<string, double> { ["a"] = 0.7, ["b"] = 0.6 }, 100, 10, new Dictionary<string, double>()));
        var md = t.ToMarkdown();
        Assert.Contains("| InterroGate (grid a\\|b) | 70.00 |", md);
        string html = HtmlReport.MarkdownTable(md);
        int headers = System.Text.RegularExpressions.Regex.Matches(html, "<th>").Count;
        Assert.All(System.Text.RegularExpressions.Regex.Matches(html, "<tr>(.*?)</tr>").Skip(1),
            row => Assert.Equal(headers, System.Text.RegularExpressions.Regex.Matches(row.Value, "<td>").Count));
        Assert.Contains("<td>InterroGate (grid a|b)</td>", html);
    }

    [Fact]
    public void Tables_of_different_rows_are_not_averaged()
    {
        var other = new ComparisonTable(Tasks);
        other.AddRow(Seed(0.8, 0.5, 0.8, 0.5, 1).Rows[0], isBaseline: true);
        Assert.Throws<ArgumentException>(() => ComparisonTable.OverSeeds([Seed(0.8, 0.5, 0.88, 0.45, 100), other]));
    }

    [Theory]
    [InlineData("[]", "seeds")]
    [InlineData("[0, 1, 0]", "seeds")]
    [InlineData("[2, -1]", "seeds[1]")]
    public void Seed_lists_that_are_empty_repeat_or_are_negative_name_the_key(string seeds, string key)
    {
        var config = Presets.LoadComparison("multifashion-quick", [$"seeds={seeds}"]);
        var e = Assert.Throws<ConfigException>(config.ValidateSeeds);
        Assert.Equal(key, e.Key);
    }

    [Fact]
    public void A_seed_gives_every_run_that_seed()
    {
        var config = Presets.LoadComparison("multifashion-quick", ["seeds=[3, 4]"]).WithSeed(4);
        Assert.Null(config.Seeds);
        Assert.Equal(4, config.Training.Seed);
        Assert.Equal(4, config.InterroGateTraining!.Seed);
    }

    [Fact]
    public void Secondary_metrics_reach_the_JSON_and_on_request_the_Markdown()
    {
        var d = new TaskSet([new TaskSpec("depth", TaskKind.Depth, 1)]);
        ComparisonTable Seed(double rmse, double abs_rel)
        {
            var t = new ComparisonTable(d);
            var details = new Dictionary<string, IReadOnlyDictionary<string, double>> { ["depth"] = new Dictionary<string, double> { ["rmse"] = rmse, ["abs_rel"] = abs_rel } };
            t.AddRow(new ComparisonRow("STL", "stl", new Dictionary<string, double> { ["depth"] = rmse }, 1, 1, new Dictionary<string, double>()) { Details = details }, isBaseline: true);
            return t;
        }
        var table = ComparisonTable.OverSeeds([Seed(0.5, 0.2), Seed(0.7, 0.4)]);
        Assert.Equal(0.3, table.Rows[0].Details["depth"]["abs_rel"], 10);
        Assert.DoesNotContain("abs_rel", table.ToMarkdown());
        var md = table.ToMarkdown(details: true);
        Assert.Contains("depth abs_rel", md);
        Assert.Contains("| 0.3000 |", md);
        var back = ComparisonTable.FromJson(table.ToJson());
        Assert.Equal(0.4, back.Rows[0].Seeds![1].Details["depth"]["abs_rel"], 10);
        Assert.Equal(0.3, back.Rows[0].Details["depth"]["abs_rel"], 10);
    }
}
