// The learned sharing pattern of an InterroGate model, layer by layer (arXiv 2402.16848, Figure 4), with the gate
// gradient statistics that say whether the gates chose channel by channel (docs/method.md, "The gate regime").
using System.Globalization;
using System.Text;
using System.Text.Json;
using InterroGate.Architectures;
using InterroGate.Gating;

namespace InterroGate.Analysis;

/// <summary>
/// Per gated layer and task: the gates' state in a checkpoint, and (where the run's metrics.jsonl has them) the
/// gradient statistics of the last epoch in which the gates learned.
/// </summary>
/// <see cref="LayerNames"/>: the gated units' names in the encoder's plan (e.g. <c>layer1.0.conv2</c>, <c>blocks.3.attn.qkv</c>).
public sealed record GateReport(string Checkpoint, IReadOnlyList<string> Tasks, IReadOnlyList<GateLayerStats> Layers, int? GradientEpoch,
    IReadOnlyList<string>? LayerNames = null)
{
    /// <summary>Layers in which some task's fraction of task-specific channels is strictly between 0 and 1.</summary>
    public int SplitLayers => Layers.Count(l => l.Split);

    /// <summary>Fraction of task-specific channels per task over all gated layers (channel-weighted).</summary>
    public double[] TaskSpecific => Tasks.Select((_, t) =>
        Layers.Sum(l => l.Tasks[t].Specific * l.Channels) / Math.Max(1, Layers.Sum(l => l.Channels))).ToArray();

    /// <summary>
    /// The report of <paramref name="runOrCheckpoint"/>: a run folder (its last.ckpt and metrics.jsonl) or a
    /// checkpoint file (with the metrics.jsonl beside it, where there is one).
    /// </summary>
    public static GateReport Load(string runOrCheckpoint)
    {
        string checkpoint = Directory.Exists(runOrCheckpoint) ? Path.Combine(runOrCheckpoint, Training.Trainer.LastFileName) : runOrCheckpoint;
        if (!File.Exists(checkpoint))
            throw new FileNotFoundException(Directory.Exists(runOrCheckpoint)
                ? $"{runOrCheckpoint} holds no {Training.Trainer.LastFileName}: give a run folder written by train or compare, or a checkpoint file."
                : $"{runOrCheckpoint} does not exist.", checkpoint);
        var (model, _, meta) = Export.ModelFiles.LoadCheckpoint(checkpoint);
        using var loaded = model; // the report keeps numbers only
        using var scope = TorchSharp.torch.NewDisposeScope(); // what reading the gates back makes
        if (model is not InterroGateModel ig)
            throw new Training.CheckpointException(checkpoint, $"holds {Architectures.ArchitectureNames.AModel(meta.Architecture)}; only InterroGate models have gates.");
        var state = ig.TakeGateStatistics();
        string metrics = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(checkpoint))!, "metrics.jsonl");
        // One pass over metrics.jsonl: the last epoch whose statistics come from gate-learning steps, and flips summed over all.
        int? epoch = null;
        IReadOnlyList<GateLayerStats>? gradients = null;
        var flips = new Dictionary<(int, int), long>();
        if (File.Exists(metrics))
            foreach (var (e, lines) in ReadGateLines(metrics))
            {
                if (lines.Any(l => l.Tasks.Any(t => double.IsFinite(t.Push)))) (epoch, gradients) = (e, lines);
                foreach (var l in lines)
                    for (int k = 0; k < l.Tasks.Count; k++) flips[(l.Layer, k)] = flips.GetValueOrDefault((l.Layer, k)) + l.Tasks[k].Flips;
            }
        var layers = state.Select((l, i) => gradients is null || i >= gradients.Count || gradients[i].Tasks.Count != l.Tasks.Count ? l
            : l with
            {
                Tasks = l.Tasks.Select((t, k) => t with
                {
                    TaskGrad = gradients[i].Tasks[k].TaskGrad, TaskGradSpread = gradients[i].Tasks[k].TaskGradSpread,
                    Push = gradients[i].Tasks[k].Push, Flips = flips.GetValueOrDefault((i, k)),
                    SteadyGrad = gradients[i].Tasks[k].SteadyGrad, SteadySpread = gradients[i].Tasks[k].SteadySpread,
                }).ToArray(),
            }).ToArray();
        return new GateReport(checkpoint, ig.Tasks.Names.ToArray(), layers, epoch, ig.Encoder.Units.Where(u => u.Gated).Select(u => u.Name).ToArray());
    }

    /// <summary>Each epoch's gate statistics in a metrics.jsonl (lines without them, or cut short by a kill, are skipped).</summary>
    public static IEnumerable<(int Epoch, IReadOnlyList<GateLayerStats> Layers)> ReadGateLines(string metrics)
    {
        foreach (var line in File.ReadLines(metrics))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonDocument doc;
            try { doc = JsonDocument.Parse(line); }
            catch (JsonException) { continue; }
            using (doc)
            {
                if (!doc.RootElement.TryGetProperty("gates", out var gates) || !doc.RootElement.TryGetProperty("epoch", out var epoch)) continue;
                var layers = gates.Deserialize<List<GateLayerStats>>(Training.Trainer.MetricsJson);
                if (layers is not null) yield return (epoch.GetInt32(), layers);
            }
        }
    }

    /// <summary>The table `interrogate gates` prints: one row per gated layer, the tasks side by side.</summary>
    public string ToMarkdown()
    {
        var sb = new StringBuilder();
        var header = new List<string> { "layer", "C" };
        foreach (var t in Tasks.Select(ComparisonTable.MarkdownCell)) header.AddRange([$"{t} specific", $"{t} α mean ± sd", $"{t} largest β weight", $"{t} |task grad|", $"{t} task grad sd", $"{t} push", $"{t} push/sd",
            $"{t} steady sd", $"{t} push/steady sd", $"{t} flips"]);
        sb.AppendLine("| " + string.Join(" | ", header) + " |");
        sb.AppendLine("|" + string.Concat(Enumerable.Repeat("---|", header.Count)));
        foreach (var l in Layers)
        {
            string layer = l.Layer.ToString(CultureInfo.InvariantCulture);
            if (LayerNames is { } names && l.Layer < names.Count) layer += $" {names[l.Layer]}";
            var cells = new List<string> { layer, l.Channels.ToString(CultureInfo.InvariantCulture) };
            foreach (var t in l.Tasks)
                cells.AddRange([F(100 * t.Specific, "F0") + "%", $"{F(t.AlphaMean, "+0.000;-0.000;+0.000")} ± {F(t.AlphaStd, "0.000")}", F(t.MixWeightMax, "0.00"),
                    F(t.TaskGrad, "0.0e+0"), F(t.TaskGradSpread, "0.0e+0"), F(t.Push, "0.0e+0"), F(t.PushOverSpread, "0.0"),
                    F(t.SteadySpread, "0.0e+0"), F(t.PushOverSteadySpread, "0.0"), t.Flips.ToString(CultureInfo.InvariantCulture)]);
            sb.AppendLine("| " + string.Join(" | ", cells) + " |");
        }
        sb.AppendLine();
        var specific = TaskSpecific;
        sb.AppendLine($"Task-specific channels: {string.Join(", ", Tasks.Select((t, i) => $"{t} {100 * specific[i]:F1}%"))}; " +
                      $"{SplitLayers} of {Layers.Count} gated layers split channel by channel.");
        sb.AppendLine(GradientEpoch is int e
            ? $"Gradients: running means over the gate-learning steps of epoch {e} (metrics.jsonl); push = λs·∂L_s/∂α, the same for every channel of a layer; " +
              "task grad sd: spread of one step's task gradient over the channels (noise included); steady sd: spread over the channels of each channel's " +
              "task gradient averaged over the epoch (what persists); push/sd ≫ 1 means the layer's gates moved in lockstep, push/steady sd ≫ 1 that the " +
              "push outweighed every consistent difference between its channels. Flips: sign changes of α over the whole run."
            : "No gradient statistics (no metrics.jsonl with gate statistics beside the checkpoint).");
        return sb.ToString();
    }

    private static string F(double v, string format) => double.IsFinite(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "";
}
