using System.Globalization;
using System.Text;
using System.Text.Json;
using InterroGate.Tasks;

namespace InterroGate.Analysis;

/// <summary>One row of a comparison: a model's per-task primary metric, its cost and extra columns.</summary>
public sealed record ComparisonRow(
    string Label, string Method, IReadOnlyDictionary<string, double> Metrics, long Macs, long Parameters,
    IReadOnlyDictionary<string, double> Extra);

/// <summary>
/// The paper's comparison table: per-task metric, Δ_MTL against the baseline row (STL), mean rank over
/// the task metrics, MACs and parameters; rendered as Markdown or JSON.
/// </summary>
public sealed class ComparisonTable(TaskSet tasks)
{
    private readonly List<ComparisonRow> _rows = new();
    private int _baseline = -1;

    public TaskSet Tasks { get; } = tasks;
    public IReadOnlyList<ComparisonRow> Rows => _rows;
    public ComparisonRow? Baseline => _baseline < 0 ? null : _rows[_baseline];

    public void AddRow(ComparisonRow row, bool isBaseline = false)
    {
        var missing = Tasks.Names.Where(n => !row.Metrics.ContainsKey(n)).ToArray();
        if (missing.Length > 0) throw new ArgumentException($"Row '{row.Label}' has no metric for {string.Join(", ", missing)}.");
        if (isBaseline) _baseline = _rows.Count;
        _rows.Add(row);
    }

    public double DeltaMtl(ComparisonRow row) =>
        Baseline is null ? double.NaN
        : Analysis.DeltaMtl.Compute(Tasks.Select(t => row.Metrics[t.Name]).ToArray(), Tasks.Select(t => Baseline.Metrics[t.Name]).ToArray(),
            Tasks.Select(t => t.HigherIsBetter).ToArray(), Tasks.Names.ToArray());

    public double[] MeanRanks() =>
        MeanRank.Compute(_rows.Select(r => (IReadOnlyList<double>)Tasks.Select(t => r.Metrics[t.Name]).ToArray()).ToArray(),
            Tasks.Select(t => t.HigherIsBetter).ToArray());

    /// <summary>A task column's metric: "acc %" for image-level accuracies, "mIoU %" / "maxF %" for dense fractions, the name otherwise.</summary>
    private static string MetricHeader(TaskSpec t) =>
        t.MetricIsFraction ? (t.MetricName == "accuracy" ? "acc %" : $"{t.MetricName} %") : t.MetricName;

    public string ToMarkdown()
    {
        var extras = _rows.SelectMany(r => r.Extra.Keys).Distinct().ToArray();
        var ranks = MeanRanks();
        var sb = new StringBuilder();
        var header = new List<string> { "Model" };
        header.AddRange(Tasks.Select(t => $"{t.Name} ({MetricHeader(t)} {(t.HigherIsBetter ? "↑" : "↓")})"));
        header.AddRange(["Δ_MTL %", "MACs (M)", "Params (M)", "MR"]);
        header.AddRange(extras);
        sb.AppendLine("| " + string.Join(" | ", header) + " |");
        sb.AppendLine("|" + string.Concat(Enumerable.Repeat("---|", header.Count)));
        for (int i = 0; i < _rows.Count; i++)
        {
            var r = _rows[i];
            var cells = new List<string> { r.Label };
            cells.AddRange(Tasks.Select(t => t.MetricIsFraction ? F(100 * r.Metrics[t.Name], 2) : F(r.Metrics[t.Name], 4)));
            double delta = DeltaMtl(r);
            cells.Add(double.IsNaN(delta) ? "" : (delta >= 0 ? "+" : "") + F(delta, 2));
            cells.Add(F(r.Macs / 1e6, 2));
            cells.Add(F(r.Parameters / 1e6, 3));
            cells.Add(F(ranks[i], 2));
            cells.AddRange(extras.Select(e => r.Extra.TryGetValue(e, out var v) ? F(v, 1) : ""));
            sb.AppendLine("| " + string.Join(" | ", cells) + " |");
        }
        sb.AppendLine();
        sb.AppendLine($"Δ_MTL against {Baseline?.Label ?? "(no baseline)"}; MR over the task metrics. {CostCounter.Convention}.");
        return sb.ToString();
    }

    private sealed record JsonTask(string Name, TaskKind Kind, int Outputs);
    private sealed record JsonRow(string Label, string Method, Dictionary<string, double> Metrics, long Macs, long Parameters,
        Dictionary<string, double> Extra, bool Baseline, double? DeltaMtl, double MeanRank);
    private sealed record JsonTable(List<JsonTask> Tasks, List<JsonRow> Rows, string Convention);

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public string ToJson()
    {
        var ranks = MeanRanks();
        return JsonSerializer.Serialize(new JsonTable(
            Tasks.Select(t => new JsonTask(t.Name, t.Kind, t.Outputs)).ToList(),
            _rows.Select((r, i) => new JsonRow(r.Label, r.Method, r.Metrics.ToDictionary(), r.Macs, r.Parameters, r.Extra.ToDictionary(),
                i == _baseline, double.IsNaN(DeltaMtl(r)) ? null : DeltaMtl(r), ranks[i])).ToList(),
            CostCounter.Convention), Json);
    }

    public static ComparisonTable FromJson(string json)
    {
        var t = JsonSerializer.Deserialize<JsonTable>(json, Json) ?? throw new JsonException("empty table");
        var table = new ComparisonTable(new TaskSet(t.Tasks.Select(x => new TaskSpec(x.Name, x.Kind, x.Outputs))));
        foreach (var r in t.Rows) table.AddRow(new ComparisonRow(r.Label, r.Method, r.Metrics, r.Macs, r.Parameters, r.Extra), r.Baseline);
        return table;
    }

    private static string F(double v, int digits) => v.ToString("F" + digits, CultureInfo.InvariantCulture);
}
