// The figures written next to every comparison table: the accuracy-cost trade-off (the paper's Figures 5 and 6) and
// each task's validation curve per run.
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace InterroGate.Analysis;

/// <summary>One run's validation metric per epoch for each task (from its metrics.jsonl).</summary>
public sealed record TrainingCurve(string Label, IReadOnlyDictionary<string, IReadOnlyList<(int Epoch, double Value)>> Tasks);

public static partial class ComparisonPlots
{
    /// <summary>
    /// Δ_MTL (%) against MACs (M) for every row, as <paramref name="basePath"/>.png and .svg: STL and MTL marked, the
    /// straight line between them dashed, the Pareto front (no other row both cheaper and better) drawn as a step line,
    /// rows with seeds with ± one std as error bars, and InterroGate rows coloured by τ of <paramref name="tauTask"/>
    /// (read from their labels, "tau=…") when the sweep has a τ grid. Returns both paths.
    /// </summary>
    public static (string Png, string Svg) TradeOff(ComparisonTable table, string basePath, string? tauTask = null, string? title = null)
    {
        var plot = new ScottPlot.Plot();
        var rows = table.Rows.Select(r => (Row: r, X: r.Macs / 1e6, Y: table.DeltaMtl(r), Std: table.DeltaMtlStd(r))).ToArray();
        int tauIndex = tauTask is null ? -1 : table.Tasks.IndexOf(tauTask);
        if (tauTask is not null && tauIndex < 0)
            throw new ArgumentException($"No task '{tauTask}' to colour by; the tasks are {string.Join(", ", table.Tasks.Names)}.");

        // MTL–STL line first, so points draw over it.
        // Dashed and dotted lines are drawn with a path effect, which Skia's SVG writer does not support (it prints
        // "Unsupported path effect" on stderr): the SVG gets them solid, in the same colours.
        var solidForSvg = new List<Action>();
        var stl = rows.FirstOrDefault(r => r.Row.Method == "stl");
        var mtl = rows.FirstOrDefault(r => r.Row.Label == "MTL");
        if (stl.Row is not null && mtl.Row is not null)
        {
            var line = plot.Add.Line(mtl.X, mtl.Y, stl.X, stl.Y);
            line.LinePattern = ScottPlot.LinePattern.Dashed;
            solidForSvg.Add(() => line.LinePattern = ScottPlot.LinePattern.Solid);
            line.Color = ScottPlot.Colors.Gray;
            line.LegendText = "MTL–STL line";
        }

        var front = ParetoFront(rows.Select(r => (r.X, r.Y)).ToArray()).Select(i => (rows[i].X, rows[i].Y)).ToList();
        if (front.Count > 1)
        {
            var xs = new List<double>();
            var ys = new List<double>();
            for (int i = 0; i < front.Count; i++)
            {
                if (i > 0) { xs.Add(front[i].X); ys.Add(front[i - 1].Y); }
                xs.Add(front[i].X);
                ys.Add(front[i].Y);
            }
            var steps = plot.Add.ScatterLine(xs.ToArray(), ys.ToArray());
            steps.Color = ScottPlot.Colors.Black.WithAlpha(0.35);
            steps.LineWidth = 2;
            steps.LegendText = "Pareto front";
        }

        // Runs trained to a MAC budget: their targets as dotted vertical lines, so a point's distance to its target shows.
        var targets = rows.Select(r => r.Row.Extra.TryGetValue(ComparisonTable.TargetMacsKey, out var t) ? t : double.NaN).Where(double.IsFinite).Distinct().ToArray();
        for (int i = 0; i < targets.Length; i++)
        {
            var v = plot.Add.VerticalLine(targets[i]);
            v.LinePattern = ScottPlot.LinePattern.Dotted;
            solidForSvg.Add(() => v.LinePattern = ScottPlot.LinePattern.Solid);
            v.Color = ScottPlot.Colors.SteelBlue.WithAlpha(0.6);
            v.LineWidth = 1.5f;
            if (i == 0) v.LegendText = "budget targets";
        }

        var palette = new ScottPlot.Palettes.Category10();
        var gated = rows.Where(r => r.Row.Method == "interrogate").ToArray();
        var groups = gated.GroupBy(r => tauIndex >= 0 ? Tau(r.Row.Label, tauIndex) : null).OrderBy(g => g.Key ?? double.NaN).ToArray();
        for (int g = 0; g < groups.Length; g++)
        {
            var pts = groups[g].ToArray();
            var color = palette.GetColor(g + 2);
            var s = plot.Add.ScatterPoints(pts.Select(p => p.X).ToArray(), pts.Select(p => p.Y).ToArray());
            s.Color = color;
            s.MarkerSize = 9;
            s.LegendText = groups[g].Key is { } tau ? $"InterroGate, τ({tauTask}) = {tau.ToString(CultureInfo.InvariantCulture)}" : "InterroGate";
            ErrorBars(plot, pts.Select(p => (p.X, p.Y, p.Std)), color);
        }
        foreach (var (r, name, color, shape) in new[]
        {
            (stl, "STL", palette.GetColor(0), ScottPlot.MarkerShape.FilledSquare),
            (mtl, "MTL", palette.GetColor(1), ScottPlot.MarkerShape.FilledTriangleUp),
        })
        {
            if (r.Row is null) continue;
            var m = plot.Add.Marker(r.X, r.Y, shape, 12, color);
            m.LegendText = name;
            ErrorBars(plot, [(r.X, r.Y, r.Std)], color);
        }
        var others = rows.Where(r => r.Row.Method is not ("interrogate" or "stl") && r.Row.Label != "MTL").ToArray();
        foreach (var r in others)
        {
            var m = plot.Add.Marker(r.X, r.Y, ScottPlot.MarkerShape.OpenCircle, 9, ScottPlot.Colors.DimGray);
            var text = plot.Add.Text(r.Row.Label, r.X, r.Y);
            text.LabelFontSize = 10;
            text.LabelFontColor = ScottPlot.Colors.DimGray;
            text.OffsetX = 6;
        }

        plot.Axes.Bottom.Label.Text = "MACs (M) of the deployed network (1 MAC = 2 FLOPs)";
        plot.Axes.Left.Label.Text = "Δ_MTL (%) against STL";
        plot.Title(title ?? "Accuracy against cost");
        plot.ShowLegend(ScottPlot.Edge.Right); // outside the axes: never over a point
        return Save(plot, basePath, 1100, 600, solidForSvg);
    }

    /// <summary>
    /// One figure per task, <paramref name="basePath"/>-{task}.png and .svg: the validation metric of every run that
    /// trains the task, per epoch. Returns the paths by task.
    /// </summary>
    public static IReadOnlyDictionary<string, (string Png, string Svg)> Curves(IReadOnlyList<TrainingCurve> runs, Tasks.TaskSet tasks, string basePath)
    {
        var result = new Dictionary<string, (string, string)>();
        var palette = new ScottPlot.Palettes.Category20();
        foreach (var task in tasks)
        {
            var plot = new ScottPlot.Plot();
            int k = 0;
            foreach (var run in runs)
            {
                if (!run.Tasks.TryGetValue(task.Name, out var points) || points.Count == 0) continue;
                var line = plot.Add.ScatterLine(points.Select(p => (double)p.Epoch).ToArray(), points.Select(p => p.Value).ToArray());
                line.Color = palette.GetColor(k++);
                line.MarkerSize = 5;
                line.LegendText = run.Label;
            }
            plot.Axes.Bottom.Label.Text = "epoch";
            plot.Axes.Left.Label.Text = $"validation {task.MetricName}";
            plot.Title($"{task.Name}: validation {task.MetricName} per epoch");
            plot.ShowLegend(ScottPlot.Edge.Right);
            result[task.Name] = Save(plot, $"{basePath}-{Safe(task.Name)}", 1150, 540);
        }
        return result;
    }

    /// <summary>A run's validation metric per epoch and task from its metrics.jsonl (damaged lines skipped); empty if there is none.</summary>
    public static TrainingCurve ReadCurve(string label, string metricsPath)
    {
        var tasks = new Dictionary<string, List<(int, double)>>();
        if (File.Exists(metricsPath))
            foreach (var (epoch, line) in Training.RunFiles.ReadMetrics(metricsPath).Lines)
            {
                using var doc = JsonDocument.Parse(line);
                if (!doc.RootElement.TryGetProperty("val_metric", out var metrics)) continue;
                foreach (var p in metrics.EnumerateObject())
                    if (p.Value.ValueKind == JsonValueKind.Number)
                    {
                        if (!tasks.TryGetValue(p.Name, out var list)) tasks[p.Name] = list = [];
                        list.Add((epoch, p.Value.GetDouble()));
                    }
            }
        return new TrainingCurve(label, tasks.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<(int, double)>)kv.Value));
    }

    /// <summary>
    /// Indices of the points on the Pareto front of (cost <c>X</c>, quality <c>Y</c>), cheapest first: those that no
    /// other point beats on both (cheaper or as cheap and better). Non-finite qualities are never on it.
    /// </summary>
    public static IReadOnlyList<int> ParetoFront(IReadOnlyList<(double X, double Y)> points)
    {
        var front = new List<int>();
        foreach (int i in Enumerable.Range(0, points.Count).Where(i => double.IsFinite(points[i].Y) && double.IsFinite(points[i].X))
                     .OrderBy(i => points[i].X).ThenByDescending(i => points[i].Y))
            if (front.Count == 0 || points[i].Y > points[front[^1]].Y) front.Add(i);
        return front;
    }

    private static void ErrorBars(ScottPlot.Plot plot, IEnumerable<(double X, double Y, double Std)> points, ScottPlot.Color color)
    {
        var withStd = points.Where(p => double.IsFinite(p.Std) && p.Std > 0).ToArray();
        if (withStd.Length == 0) return;
        var bars = plot.Add.ErrorBar(withStd.Select(p => p.X).ToArray(), withStd.Select(p => p.Y).ToArray(), withStd.Select(p => p.Std).ToArray());
        bars.Color = color;
    }

    /// <summary>τ of task <paramref name="index"/> from a sweep label's "tau=a_b_c"; null when the label has none.</summary>
    internal static double? Tau(string label, int index)
    {
        var m = TauPattern().Match(label);
        if (!m.Success) return null;
        var parts = m.Groups[1].Value.Split('_');
        return index < parts.Length && double.TryParse(parts[index], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : null;
    }

    [GeneratedRegex(@"tau=([0-9._]+)")]
    private static partial Regex TauPattern();

    private static (string Png, string Svg) Save(ScottPlot.Plot plot, string basePath, int width, int height, IEnumerable<Action>? beforeSvg = null)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(basePath))!);
        string png = basePath + ".png", svg = basePath + ".svg";
        plot.SavePng(png, width, height);
        foreach (var change in beforeSvg ?? []) change();
        plot.SaveSvg(svg, width, height);
        return (png, svg);
    }

    private static string Safe(string s) => new(s.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_').ToArray());
}

/// <summary>Every figure of a comparison, written next to its table.</summary>
public static class ComparisonFigures
{
    /// <summary>
    /// tradeoff.png/svg; with a τ grid (labels with "tau=") also tradeoff-tau-{task}.png/svg per task;
    /// curves-{task}.png/svg from each run's metrics.jsonl; and gates/{run}.png/svg, each InterroGate model's sharing
    /// pattern. Returns the PNG paths.
    /// </summary>
    public static IReadOnlyList<string> Write(ComparisonTable table, IReadOnlyList<Training.ComparisonEntry> entries, string directory)
    {
        var written = new List<string> { ComparisonPlots.TradeOff(table, Path.Combine(directory, "tradeoff")).Png };
        if (table.Rows.Any(r => r.Label.Contains("tau=", StringComparison.Ordinal)))
            foreach (var task in table.Tasks)
                written.Add(ComparisonPlots.TradeOff(table, Path.Combine(directory, $"tradeoff-tau-{task.Name}"), task.Name,
                    $"Accuracy against cost, coloured by τ of {task.Name}").Png);
        var curves = entries.Select(e =>
        {
            string seed = Path.GetFileName(Path.GetDirectoryName(e.Directory) ?? "");
            string label = seed.StartsWith("seed-", StringComparison.Ordinal) ? $"{e.Label} ({seed})" : e.Label;
            return ComparisonPlots.ReadCurve(label, Path.Combine(e.Directory, Training.Trainer.MetricsFileName));
        }).ToArray();
        written.AddRange(ComparisonPlots.Curves(curves, table.Tasks, Path.Combine(directory, "curves")).Values.Select(p => p.Png));
        // Each InterroGate model's sharing pattern (the paper's Figure 4), in gates/ beside the table.
        foreach (var e in entries.Where(e => e.Architecture == "interrogate" && File.Exists(Path.Combine(e.Directory, Training.Trainer.LastFileName))))
        {
            string name = Path.GetRelativePath(directory, e.Directory).Replace(Path.DirectorySeparatorChar, '_');
            var report = GateReport.Load(e.Directory);
            written.Add(GatePatternPlot.Save(report.Layers, report.Tasks, Path.Combine(directory, "gates", name), $"Sharing pattern: {e.Label}", report.LayerNames).Png);
        }
        return written;
    }
}
