// The effect of re-estimating batch-norm statistics (training.bnBatches, docs/method.md "Batch-norm statistics") on
// finished runs: each run's final checkpoint evaluated on the test split as stored and after re-estimating its
// statistics from N training batches. Every run is evaluated twice with the same weights; nothing is trained.
using System.Globalization;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Training;

internal static class BnStatistics
{
    /// <summary>
    /// <paramref name="runs"/>: run folders (each with last.ckpt) or folders holding such folders (searched two levels
    /// down, e.g. a comparison's seed-N folders). Prints one Markdown row per run and task.
    /// </summary>
    public static void Run(int batches, IReadOnlyList<string> runs)
    {
        var checkpoints = runs.SelectMany(Find).Distinct().ToArray();
        if (checkpoints.Length == 0) throw new ArgumentException($"no run folder with a last.ckpt under {string.Join(", ", runs)}");
        Console.WriteLine($"Test split, each run's final checkpoint: running statistics as stored, then re-estimated from the first {batches} training batches of the last epoch (as training.bnBatches would have left them: it changes no weight).");
        Console.WriteLine();
        Console.WriteLine("| run | task | metric | as stored | re-estimated | change (better +) |");
        Console.WriteLine("|---|---|---|---|---|---|");
        var cache = new Dictionary<string, DatasetSplits>();
        foreach (var path in checkpoints)
        {
            var meta = Checkpoint.ReadMeta(path);
            var runConfig = ConfigJson.Deserialize<RunConfig>(meta.Config, source: path);
            if (meta.Epoch < runConfig.Training.Epochs || meta.Step != 0)
            {
                Console.Error.WriteLine($"{path}: unfinished (epoch {meta.Epoch} of {runConfig.Training.Epochs}); left out");
                continue;
            }
            string key = ConfigJson.Serialize(runConfig.Data);
            if (!cache.TryGetValue(key, out var data)) cache[key] = data = DataCatalog.Open(runConfig.Data);
            var (config, model, _) = PreparedRun.Load(path, data.Train.ImageShape, data.Train.Tasks);
            var stored = Evaluator.Evaluate(model, data.Test, config.Training.EvalBatchSize, precision: config.Training.Precision, channelsLast: config.Training.ChannelsLast);
            BatchNormStatistics.ReestimateAsTrained(model, config, data.Train, meta.Epoch, batches);
            var reestimated = Evaluator.Evaluate(model, data.Test, config.Training.EvalBatchSize, precision: config.Training.Precision, channelsLast: config.Training.ChannelsLast);
            string name = Path.GetRelativePath(Directory.GetCurrentDirectory(), Path.GetDirectoryName(path)!);
            foreach (var task in model.Tasks)
            {
                double a = stored.Metrics[task.Name], b = reestimated.Metrics[task.Name];
                double change = (task.HigherIsBetter ? b - a : a - b) / Math.Abs(a) * 100;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {task.Name} | {task.MetricName} | {a:F4} | {b:F4} | {Math.Round(change, 1):+0.0;-0.0;0.0} % |"));
            }
            model.Dispose();
        }
    }

    private static IEnumerable<string> Find(string folder)
    {
        if (File.Exists(Path.Combine(folder, "last.ckpt"))) return [Path.Combine(folder, "last.ckpt")];
        if (!Directory.Exists(folder)) throw new ArgumentException($"{folder} is not a folder");
        return Directory.GetDirectories(folder).OrderBy(d => d, StringComparer.Ordinal).SelectMany(d =>
            File.Exists(Path.Combine(d, "last.ckpt")) ? [Path.Combine(d, "last.ckpt")]
                : Directory.GetDirectories(d).OrderBy(e => e, StringComparer.Ordinal).Where(e => File.Exists(Path.Combine(e, "last.ckpt"))).Select(e => Path.Combine(e, "last.ckpt")));
    }
}
