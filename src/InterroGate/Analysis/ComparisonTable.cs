using System.Globalization;
using System.Text;
using System.Text.Json;
using InterroGate.Tasks;

namespace InterroGate.Analysis;

/// <summary>
/// One row of a comparison: a model's per-task primary metric, its cost and extra columns. A row over several seeds
/// holds the means and keeps each seed's row in <see cref="Seeds"/> (in the same seed order for every row).
/// </summary>
public sealed record ComparisonRow(
    string Label, string Method, IReadOnlyDictionary<string, double> Metrics, long Macs, long Parameters,
    IReadOnlyDictionary<string, double> Extra)
{
    /// <summary>This row in each seed's comparison; null for a single run.</summary>
    public IReadOnlyList<ComparisonRow>? Seeds { get; init; }

    /// <summary>
    /// The run folders behind this row (every seed's), relative to the comparison's folder: "mtl", "seed-1/stl-depth".
    /// Empty for a table written before they were recorded.
    /// </summary>
    public IReadOnlyList<string> Runs { get; init; } = [];

    /// <summary>Per task, its primary and secondary metrics by name (over seeds: their means); empty where not measured.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, double>> Details { get; init; } =
        new Dictionary<string, IReadOnlyDictionary<string, double>>();

    /// <summary>Sample standard deviation (n − 1) over <see cref="Seeds"/> of <paramref name="value"/>; NaN with fewer than 2 seeds.</summary>
    public double Std(Func<ComparisonRow, double> value) => SeedStatistics.Std(Seeds?.Select(value).ToArray() ?? []);

    /// <summary>
    /// The mean row of one model over seeds: metrics, MACs, parameters and extra columns averaged (an extra column
    /// only where every seed has it).
    /// </summary>
    public static ComparisonRow Mean(IReadOnlyList<ComparisonRow> seeds)
    {
        if (seeds.Count == 0) throw new ArgumentException("No seeds to average.");
        var first = seeds[0];
        if (seeds.Any(r => r.Label != first.Label || r.Method != first.Method))
            throw new ArgumentException($"Rows of different models cannot be averaged: {string.Join(", ", seeds.Select(r => r.Label).Distinct())}.");
        var metrics = first.Metrics.Keys.ToDictionary(k => k, k => seeds.Average(r => r.Metrics[k]));
        var extra = first.Extra.Keys.Where(k => seeds.All(r => r.Extra.ContainsKey(k))).ToDictionary(k => k, k => seeds.Average(r => r.Extra[k]));
        var details = first.Details.Keys.Where(t => seeds.All(r => r.Details.ContainsKey(t))).ToDictionary(t => t,
            t => (IReadOnlyDictionary<string, double>)first.Details[t].Keys.Where(k => seeds.All(r => r.Details[t].ContainsKey(k)))
                .ToDictionary(k => k, k => seeds.Average(r => r.Details[t][k])));
        return new ComparisonRow(first.Label, first.Method, metrics, (long)Math.Round(seeds.Average(r => (double)r.Macs)),
            (long)Math.Round(seeds.Average(r => (double)r.Parameters)), extra) { Seeds = seeds.ToArray(), Details = details };
    }
}

/// <summary>Mean and sample standard deviation over seeds, as the paper's tables report them (mean ± std).</summary>
public static class SeedStatistics
{
    public static double Std(IReadOnlyList<double> values)
    {
        if (values.Count < 2) return double.NaN;
        double mean = values.Average();
        return Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
    }
}

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

    /// <summary>
    /// Ids of a split list ("train", "val") that every run of the table left out because their files are missing
    /// (<c>data.skipMissing</c>); empty when none.
    /// </summary>
    public IReadOnlyDictionary<string, int> SkippedIds { get; init; } = new Dictionary<string, int>();
    public ComparisonRow? Baseline => _baseline < 0 ? null : _rows[_baseline];

    /// <summary>This table with each row's <see cref="ComparisonRow.Runs"/> set to <paramref name="runs"/>(row, is baseline).</summary>
    public ComparisonTable WithRuns(Func<ComparisonRow, bool, IReadOnlyList<string>> runs)
    {
        var table = new ComparisonTable(Tasks) { SkippedIds = SkippedIds };
        for (int i = 0; i < _rows.Count; i++) table.AddRow(_rows[i] with { Runs = runs(_rows[i], i == _baseline) }, i == _baseline);
        return table;
    }

    public void AddRow(ComparisonRow row, bool isBaseline = false)
    {
        var missing = Tasks.Names.Where(n => !row.Metrics.ContainsKey(n)).ToArray();
        if (missing.Length > 0) throw new ArgumentException($"Row '{row.Label}' has no metric for {string.Join(", ", missing)}.");
        if (isBaseline) _baseline = _rows.Count;
        _rows.Add(row);
    }

    /// <summary>
    /// Δ_MTL of <paramref name="row"/> against the baseline row; over seeds, the mean of each seed's Δ_MTL against the
    /// baseline of the same seed.
    /// </summary>
    public double DeltaMtl(ComparisonRow row) =>
        Baseline is null ? double.NaN
        : SeedDeltas(row) is { } deltas ? deltas.Average()
        : Delta(row, Baseline);

    /// <summary>Sample standard deviation over seeds of the per-seed Δ_MTL (NaN for a single run).</summary>
    public double DeltaMtlStd(ComparisonRow row) => SeedDeltas(row) is { } deltas ? SeedStatistics.Std(deltas) : double.NaN;

    private double[]? SeedDeltas(ComparisonRow row)
    {
        if (Baseline?.Seeds is not { } b || row.Seeds is not { } r || b.Count != r.Count) return null;
        return r.Select((x, i) => Delta(x, b[i])).ToArray();
    }

    /// <summary>Δ_MTL of one run against one baseline run; NaN where a baseline metric is 0 or not a number (no relative change from it).</summary>
    private double Delta(ComparisonRow row, ComparisonRow baseline) => UndefinedFor(baseline) is not null ? double.NaN :
        Analysis.DeltaMtl.Compute(Tasks.Select(t => row.Metrics[t.Name]).ToArray(), Tasks.Select(t => baseline.Metrics[t.Name]).ToArray(),
            Tasks.Select(t => t.HigherIsBetter).ToArray(), Tasks.Names.ToArray());

    /// <summary>The first task whose metric is 0 or not finite in <paramref name="baseline"/> (or in one of its seeds), which
    /// leaves Δ_MTL undefined; null if none.</summary>
    private string? UndefinedFor(ComparisonRow baseline) =>
        Tasks.Names.FirstOrDefault(t => Undefined(baseline.Metrics[t]) || baseline.Seeds?.Any(x => Undefined(x.Metrics[t])) == true);

    private static bool Undefined(double baselineMetric) => baselineMetric == 0 || !double.IsFinite(baselineMetric);

    /// <summary>
    /// The table of means over seeds: one table per seed, the same rows (labels and order) in each; every row keeps
    /// its per-seed rows. Δ_MTL is computed per seed against that seed's baseline, then averaged.
    /// </summary>
    public static ComparisonTable OverSeeds(IReadOnlyList<ComparisonTable> perSeed)
    {
        if (perSeed.Count == 0) throw new ArgumentException("No per-seed tables.");
        var first = perSeed[0];
        foreach (var t in perSeed)
        {
            if (!t.Tasks.Names.SequenceEqual(first.Tasks.Names) || !t.Rows.Select(r => r.Label).SequenceEqual(first.Rows.Select(r => r.Label))
                || t._baseline != first._baseline)
                throw new ArgumentException("Per-seed tables must have the same tasks and rows in the same order.");
        }
        var table = new ComparisonTable(first.Tasks) { SkippedIds = first.SkippedIds }; // every seed reads the same data
        for (int i = 0; i < first.Rows.Count; i++)
            table.AddRow(ComparisonRow.Mean(perSeed.Select(t => t.Rows[i]).ToArray()), i == first._baseline);
        return table;
    }

    public double[] MeanRanks() =>
        MeanRank.Compute(_rows.Select(r => (IReadOnlyList<double>)Tasks.Select(t => r.Metrics[t.Name]).ToArray()).ToArray(),
            Tasks.Select(t => t.HigherIsBetter).ToArray());

    /// <summary>A task column's metric: "acc %" for image-level accuracies, "mIoU %" for dense fractions, the name otherwise.</summary>
    private static string MetricHeader(TaskSpec t) =>
        t.MetricIsFraction ? (t.MetricName == "accuracy" ? "acc %" : $"{t.MetricName} %") : t.MetricName;

    /// <summary>
    /// The table as Markdown; with <paramref name="details"/>, one more column per task and secondary metric (those
    /// every row has, e.g. depth abs-rel, normals median and within-angle fractions).
    /// </summary>
    public string ToMarkdown(bool details = false)
    {
        var extras = _rows.SelectMany(r => r.Extra.Keys).Distinct().Where(k => !CostKeys.Contains(k)).ToArray();
        var ranks = MeanRanks();
        int seeds = _rows.Select(r => r.Seeds?.Count ?? 1).DefaultIfEmpty(1).Max();
        // A cell: the value, and "± std" over seeds where there are several.
        string Cell(ComparisonRow r, Func<ComparisonRow, double> value, double scale, int digits)
        {
            string mean = F(scale * value(r), digits);
            double std = r.Std(value);
            return double.IsNaN(std) ? mean : $"{mean} ± {F(scale * std, digits)}";
        }
        var sb = new StringBuilder();
        var header = new List<string> { "Model" };
        header.AddRange(Tasks.Select(t => $"{MarkdownCell(t.Name)} ({MetricHeader(t)} {(t.HigherIsBetter ? "↑" : "↓")})"));
        header.AddRange(["Δ_MTL %", "MACs (M)", "Params (M)", "MR"]);
        header.AddRange(extras);
        var secondary = details
            ? Tasks.SelectMany(t => _rows.Count == 0 || _rows.Any(r => !r.Details.ContainsKey(t.Name)) ? []
                : _rows[0].Details[t.Name].Keys.Where(k => k != t.MetricName && _rows.All(r => r.Details[t.Name].ContainsKey(k))).Select(k => (Task: t.Name, Metric: k))).ToArray()
            : [];
        header.AddRange(secondary.Select(s => MarkdownCell($"{s.Task} {s.Metric}")));
        sb.AppendLine("| " + string.Join(" | ", header) + " |");
        sb.AppendLine("|" + string.Concat(Enumerable.Repeat("---|", header.Count)));
        for (int i = 0; i < _rows.Count; i++)
        {
            var r = _rows[i];
            var cells = new List<string> { MarkdownCell(r.Label) };
            cells.AddRange(Tasks.Select(t => t.MetricIsFraction ? Cell(r, x => x.Metrics[t.Name], 100, 2) : Cell(r, x => x.Metrics[t.Name], 1, 4)));
            double delta = DeltaMtl(r), deltaStd = DeltaMtlStd(r);
            cells.Add(double.IsNaN(delta) ? "" : (delta >= 0 ? "+" : "") + F(delta, 2) + (double.IsNaN(deltaStd) ? "" : $" ± {F(deltaStd, 2)}"));
            cells.Add(Cell(r, x => x.Macs, 1e-6, 2));
            cells.Add(F(r.Parameters / 1e6, 3));
            cells.Add(F(ranks[i], 2));
            cells.AddRange(extras.Select(e => r.Extra.ContainsKey(e) ? Cell(r, x => x.Extra.TryGetValue(e, out var v) ? v : double.NaN, 1, 1) : ""));
            cells.AddRange(secondary.Select(s => F(r.Details[s.Task][s.Metric], 4)));
            sb.AppendLine("| " + string.Join(" | ", cells) + " |");
        }
        sb.AppendLine();
        string over = seeds > 1 ? $" Mean ± sample standard deviation over {seeds} seeds (Δ_MTL per seed against that seed's baseline); MR of the means." : "";
        sb.AppendLine($"Δ_MTL against {Baseline?.Label ?? "(no baseline)"}; MR over the task metrics. {DeployedCost.Convention}.{over}");
        if (Baseline is { } b && UndefinedFor(b) is { } zero)
        {
            var values = new[] { b.Metrics[zero] }.Concat(b.Seeds?.Select(x => x.Metrics[zero]) ?? []);
            sb.AppendLine().AppendLine(values.Any(v => !double.IsFinite(v))
                ? $"Δ_MTL is undefined: {b.Label}'s {zero} is not a number{(b.Seeds is null ? "" : " in some seed")} (nothing to score it on), so no change relative to it has a value."
                : $"Δ_MTL is undefined: {b.Label}'s {zero} is 0{(b.Seeds is null ? "" : " in some seed")}, and a change relative to 0 has no value.");
        }
        if (SkippedIds.Count > 0)
            sb.AppendLine().AppendLine($"Left out of every run because their files are missing (data.skipMissing): {string.Join(", ", SkippedIds.Select(kv => $"{kv.Value} ids of the {kv.Key} list"))}.");
        return sb.ToString();
    }

    /// <summary>Text as one cell of a Markdown pipe table: a '|' in it escaped, so that it does not end the cell.</summary>
    public static string MarkdownCell(string text) => text.Replace("|", "\\|", StringComparison.Ordinal);

    /// <summary>Training cost columns (in each row's extra values), shown by <see cref="ToCostMarkdown"/> rather than in the main table.</summary>
    public const string ForwardKey = "forward ms", BackwardKey = "backward ms", TrainMinutesKey = "train min";
    /// <summary>Columns of runs trained to a compute budget: the target (millions of MACs, or of parameters) and the gap to it.</summary>
    public const string TargetMacsKey = "target (M MACs)", TargetParametersKey = "target (M params)", TargetGapKey = "gap to target %";
    public static readonly IReadOnlySet<string> CostKeys = new HashSet<string> { ForwardKey, BackwardKey, TrainMinutesKey };

    /// <summary>
    /// The training cost table (the paper's Table 8): per row, forward and backward (+ update) milliseconds per step
    /// after warm-up, their sum, and the training time without validation, on <paramref name="device"/>.
    /// </summary>
    public string ToCostMarkdown(string device)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| Model | forward ms/step | backward + update ms/step | step ms | training time (min) | epochs |");
        sb.AppendLine("|---|---|---|---|---|---|");
        foreach (var r in _rows)
        {
            string Cell(string key, int digits)
            {
                if (!r.Extra.ContainsKey(key)) return "";
                string mean = F(r.Extra[key], digits);
                double std = r.Std(x => x.Extra.TryGetValue(key, out var v) ? v : double.NaN);
                return double.IsNaN(std) ? mean : $"{mean} ± {F(std, digits)}";
            }
            string step = r.Extra.TryGetValue(ForwardKey, out var f) && r.Extra.TryGetValue(BackwardKey, out var b) ? F(f + b, 1) : "";
            string epochs = r.Extra.TryGetValue("epochs", out var e) ? F(e, 0) : "";
            sb.AppendLine($"| {MarkdownCell(r.Label)} | {Cell(ForwardKey, 1)} | {Cell(BackwardKey, 1)} | {step} | {Cell(TrainMinutesKey, 2)} | {epochs} |");
        }
        sb.AppendLine();
        sb.AppendLine($"Training cost on {device}: mean time of a training step's forward pass (model and losses) and of the rest " +
                      "(backward, gate statistics, optimiser updates), each step after the run's first 5 (on CUDA every 10th), averaged over epochs; " +
                      "training time: the epochs without validation. STL: its networks' sum.");
        return sb.ToString();
    }

    private sealed record JsonTask(string Name, TaskKind Kind, int Outputs);
    private sealed record JsonRow(string Label, string Method, Dictionary<string, double> Metrics, long Macs, long Parameters,
        Dictionary<string, double> Extra, bool Baseline, double? DeltaMtl, double? MeanRank)
    {
        /// <summary>Over seeds: Δ_MTL's sample standard deviation, and each seed's row (with its own Δ_MTL).</summary>
        public double? DeltaMtlStd { get; init; }
        /// <summary>Per task, every metric of its kind by name.</summary>
        public Dictionary<string, Dictionary<string, double>>? Details { get; init; }
        public List<JsonRow>? Seeds { get; init; }
        /// <summary>The run folders behind the row, relative to the table's folder.</summary>
        public List<string>? Runs { get; init; }
    }
    private sealed record JsonTable(List<JsonTask> Tasks, List<JsonRow> Rows, string Convention)
    {
        public Dictionary<string, int>? SkippedIds { get; init; }
    }

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals, // a NaN metric is written, not a crash
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public string ToJson()
    {
        var ranks = MeanRanks();
        return JsonSerializer.Serialize(new JsonTable(
            Tasks.Select(t => new JsonTask(t.Name, t.Kind, t.Outputs)).ToList(),
            _rows.Select((r, i) => new JsonRow(r.Label, r.Method, r.Metrics.ToDictionary(), r.Macs, r.Parameters, r.Extra.ToDictionary(),
                i == _baseline, Finite(DeltaMtl(r)), ranks[i])
            {
                DeltaMtlStd = Finite(DeltaMtlStd(r)),
                Runs = r.Runs.Count == 0 ? null : r.Runs.ToList(),
                Details = r.Details.Count == 0 ? null : r.Details.ToDictionary(d => d.Key, d => d.Value.ToDictionary()),
                Seeds = r.Seeds?.Select((x, k) => new JsonRow(x.Label, x.Method, x.Metrics.ToDictionary(), x.Macs, x.Parameters, x.Extra.ToDictionary(),
                    i == _baseline, Baseline?.Seeds is { } b && k < b.Count ? Finite(Delta(x, b[k])) : null, null)
                {
                    Details = x.Details.Count == 0 ? null : x.Details.ToDictionary(d => d.Key, d => d.Value.ToDictionary()),
                }).ToList(),
            }).ToList(),
            DeployedCost.Convention) { SkippedIds = SkippedIds.Count == 0 ? null : SkippedIds.ToDictionary() }, Json);
    }

    public static ComparisonTable FromJson(string json)
    {
        var t = JsonSerializer.Deserialize<JsonTable>(json, Json) ?? throw new JsonException("empty table");
        var table = new ComparisonTable(new TaskSet(t.Tasks.Select(x => new TaskSpec(x.Name, x.Kind, x.Outputs))))
            { SkippedIds = t.SkippedIds ?? new Dictionary<string, int>() };
        foreach (var r in t.Rows)
            table.AddRow(new ComparisonRow(r.Label, r.Method, r.Metrics, r.Macs, r.Parameters, r.Extra)
            {
                Seeds = r.Seeds?.Select(x => new ComparisonRow(x.Label, x.Method, x.Metrics, x.Macs, x.Parameters, x.Extra) { Details = ReadDetails(x.Details) }).ToArray(),
                Details = ReadDetails(r.Details),
                Runs = r.Runs ?? [],
            }, r.Baseline);
        return table;
    }

    private static IReadOnlyDictionary<string, IReadOnlyDictionary<string, double>> ReadDetails(Dictionary<string, Dictionary<string, double>>? d) =>
        d?.ToDictionary(p => p.Key, p => (IReadOnlyDictionary<string, double>)p.Value) ?? new Dictionary<string, IReadOnlyDictionary<string, double>>();

    private static double? Finite(double v) => double.IsFinite(v) ? v : null;

    private static string F(double v, int digits) => v.ToString("F" + digits, CultureInfo.InvariantCulture);
}
