// The paper's Figure 4 for one model: per gated layer and task, the fraction of task-specific channels, and each
// task's largest weight in the shared mix (softmax of β over tasks, per channel).
using InterroGate.Gating;

namespace InterroGate.Analysis;

public static class GatePatternPlot
{
    /// <summary>
    /// Writes <paramref name="basePath"/>.png and .svg: grouped bars of the task-specific fraction per gated layer
    /// (one colour per task; a fraction of 0 drawn as a line at 0), with each task's largest softmax(β) weight in the
    /// shared mix as markers (over the channels where the mix is formed and read; none where there are none). The
    /// layers are labelled with <paramref name="layerNames"/> where given. Returns both paths.
    /// </summary>
    public static (string Png, string Svg) Save(IReadOnlyList<GateLayerStats> layers, IReadOnlyList<string> tasks, string basePath, string? title = null,
        IReadOnlyList<string>? layerNames = null)
    {
        var plot = new ScottPlot.Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int T = tasks.Count;
        double width = 0.8 / T;
        var bars = new List<ScottPlot.Bar>();
        for (int t = 0; t < T; t++)
        {
            var color = palette.GetColor(t);
            foreach (var l in layers)
                bars.Add(new ScottPlot.Bar { Position = l.Layer + (t - (T - 1) / 2.0) * width, Value = l.Tasks[t].Specific, Size = width * 0.95, FillColor = color, LineColor = color, LineWidth = 1 });
            plot.Legend.ManualItems.Add(new ScottPlot.LegendItem { LabelText = $"{tasks[t]}: task-specific fraction", FillColor = color });
        }
        plot.Add.Bars(bars);
        for (int t = 0; t < T; t++)
        {
            var mixed = layers.Where(l => double.IsFinite(l.Tasks[t].MixWeightMax)).ToArray();
            if (mixed.Length == 0) continue;
            var marks = plot.Add.ScatterPoints(mixed.Select(l => l.Layer + (t - (T - 1) / 2.0) * width).ToArray(), mixed.Select(l => l.Tasks[t].MixWeightMax).ToArray());
            marks.Color = palette.GetColor(t).Darken(0.5);
            marks.MarkerShape = ScottPlot.MarkerShape.FilledDiamond;
            marks.MarkerSize = 8;
            marks.LegendText = $"{tasks[t]}: largest β weight in the shared mix";
        }
        plot.Axes.SetLimits(-0.7, layers.Count - 0.3, 0, 1.15);
        plot.Axes.Bottom.Label.Text = "gated layer (forward order)";
        if (layerNames is not null && layerNames.Count >= layers.Count)
        {
            plot.Axes.Bottom.SetTicks(layers.Select(l => (double)l.Layer).ToArray(), layers.Select(l => $"{l.Layer} {layerNames[l.Layer]}").ToArray());
            plot.Axes.Bottom.TickLabelStyle.Rotation = 90;
            plot.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleLeft;
            plot.Axes.Bottom.MinimumSize = 12 + 7 * layerNames.Take(layers.Count).Select(n => n.Length + 4).DefaultIfEmpty(0).Max();
        }
        plot.Axes.Left.Label.Text = "fraction of channels / mix weight";
        plot.Title(title ?? "Task-specific channels per gated layer");
        plot.ShowLegend(ScottPlot.Edge.Right); // outside the axes: never over a bar
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(basePath))!);
        int w = Math.Max(1100, 40 * layers.Count + 500), h = 480 + (int)(layerNames is null ? 0 : plot.Axes.Bottom.MinimumSize);
        string png = basePath + ".png", svg = basePath + ".svg";
        plot.SavePng(png, w, h);
        plot.SaveSvg(svg, w, h);
        return (png, svg);
    }
}
