// The paper's protocol (arXiv 2402.16848, Sec. 4): STL per task, MTL, then InterroGate at each λ_s started from
// them, all evaluated on the test split and set side by side with Δ_MTL, mean rank and cost.
using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Training;

/// <summary>One trained model of a comparison, with its test metrics and cost.</summary>
public sealed record ComparisonEntry(
    string Label, string Architecture, string Directory, IReadOnlyDictionary<string, double> Test,
    long Macs, long Parameters, double MsPerStep, double? TaskSpecific, int Epochs)
{
    /// <summary>Training cost read from the run's metrics.jsonl (NaN where a run predates the timing).</summary>
    public TrainingCost Cost { get; init; } = TrainingCost.Unknown;

    /// <summary>Per task, every metric of its kind on the test split (primary and secondary).</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, double>> TestDetails { get; init; } =
        new Dictionary<string, IReadOnlyDictionary<string, double>>();

    /// <summary>An InterroGate run's compute budget (MACs, or parameters for a parameter budget); null without one.</summary>
    public double? Target { get; init; }
    /// <summary>(achieved − target) / target of a run with a budget.</summary>
    public double? TargetGap { get; init; }
    /// <summary>Whether <see cref="Target"/> counts parameters (a parameter budget) rather than MACs.</summary>
    public bool TargetIsParameters { get; init; }
}

/// <summary>Everything a comparison produced: the entries, the table and where it was written.</summary>
public sealed record ComparisonResult(IReadOnlyList<ComparisonEntry> Entries, ComparisonTable Table, string MarkdownPath, string JsonPath)
{
    /// <summary>The figures written beside the table (their PNG paths; each has its SVG); empty where none could be drawn.</summary>
    public IReadOnlyList<string> Figures { get; init; } = [];
}

public sealed class ComparisonRunner(CompareConfig config, string directory, IProgress<TrainingEvent>? progress = null)
{
    /// <summary>
    /// With a shard: train only the sweep's InterroGate runs this shard takes (numbered seed by seed, see
    /// <see cref="SweepPoints"/>), against STL and MTL runs that must be finished already (<see cref="BaselinesOnly"/>),
    /// and write the shard's result file (<see cref="SweepShards"/>) instead of the table.
    /// </summary>
    public Shard? Shard { get; init; }

    /// <summary>Train (or reuse) the STL and MTL runs of every seed and nothing else: the first step of a sharded sweep.</summary>
    public bool BaselinesOnly { get; init; }

    /// <summary>The training cost table written next to table.md (<see cref="ComparisonTable.ToCostMarkdown"/>).</summary>
    public const string CostFileName = "cost.md";

    /// <summary>Runs one shard (<see cref="Shard"/>) or the baselines (<see cref="BaselinesOnly"/>); returns the shard file written (null for the baselines).</summary>
    public string? RunPart(CancellationToken cancel = default)
    {
        config.ValidateSeeds();
        if (File.Exists(directory)) throw new RunFolderException(directory, "is a file, not a folder; give a folder for the comparison (-o)");
        if (Shard is null && !BaselinesOnly) throw new InvalidOperationException("RunPart needs a shard or BaselinesOnly.");
        var seeds = config.Seeds?.Select(s => (int?)s).ToArray() ?? [null];
        var parts = new List<ShardSeed>();
        Tasks.TaskSet? tasks = null;
        IReadOnlyDictionary<string, int>? skipped = null;
        for (int k = 0; k < seeds.Length; k++)
        {
            var seeded = seeds[k] is { } s ? config.WithSeed(s) : config;
            string dir = seeds[k] is { } s2 ? Path.Combine(directory, $"seed-{s2}") : directory;
            if (seeds[k] is { } s3) progress?.Report(new RunMessage(config.Name, $"seed {s3} ({k + 1} of {seeds.Length})"));
            int offset = k;
            var runner = new ComparisonRunner(seeded, dir, progress);
            var part = runner.Collect(cancel, BaselinesOnly ? (_, _) => false : (point, count) => Shard!.Takes(offset * count + point), requireBaselines: !BaselinesOnly);
            tasks = part.Tasks;
            parts.Add(new ShardSeed(seeds[k], part.Baselines, part.Points));
            skipped = part.Skipped;
        }
        if (BaselinesOnly) return null;
        var result = new ShardResult(SweepShards.Identity(config), Shard!.Index, Shard.Count, tasks!.ToArray(), parts)
            { SkippedIds = skipped is { Count: > 0 } ? skipped : null };
        return SweepShards.Write(directory, result, Shard);
    }

    /// <summary>
    /// Runs the protocol, once or (with <see cref="CompareConfig.Seeds"/>) once per seed in seed-{s}, and writes the
    /// table (over seeds: mean ± std, every seed's numbers kept in the JSON).
    /// </summary>
    public ComparisonResult Run(CancellationToken cancel = default)
    {
        config.ValidateSeeds();
        if (File.Exists(directory)) throw new RunFolderException(directory, "is a file, not a folder; give a folder for the comparison (-o)");
        if (config.Seeds is not { } seeds) return new ComparisonRunner(config, directory, progress).RunOnce(cancel);
        var results = new List<ComparisonResult>();
        foreach (int seed in seeds)
        {
            progress?.Report(new RunMessage(config.Name, $"seed {seed} ({results.Count + 1} of {seeds.Count})"));
            results.Add(new ComparisonRunner(config.WithSeed(seed), Path.Combine(directory, $"seed-{seed}"), progress).RunOnce(cancel));
        }
        var table = ComparisonTable.OverSeeds(results.Select(r => r.Table).ToArray());
        return Write(table, results.SelectMany(r => r.Entries).ToList());
    }

    private ComparisonResult Write(ComparisonTable table, IReadOnlyList<ComparisonEntry> entries)
    {
        table = WithRuns(table, entries, directory);
        Directory.CreateDirectory(directory);
        string md = Path.Combine(directory, "table.md"), json = Path.Combine(directory, "table.json");
        RunFiles.WriteAtomically(md, table.ToMarkdown());
        RunFiles.WriteAtomically(json, table.ToJson());
        RunFiles.WriteAtomically(Path.Combine(directory, CostFileName), table.ToCostMarkdown(config.Training.Device));
        IReadOnlyList<string> figures = [];
        try
        {
            figures = ComparisonFigures.Write(table, entries, directory);
        }
        catch (Exception e) when (MissingPlotLibrary(e) is { } missing)
        {
            // A build without the plotting library's native files (a trimmed GPU folder) keeps the tables it trained for.
            progress?.Report(new RunMessage(config.Name, $"figures not written: the plotting library cannot load ({missing}); the tables are written"));
        }
        return new ComparisonResult(entries, table, md, json) { Figures = figures };
    }

    /// <summary>The first line of the message of a missing native library behind <paramref name="e"/>, or null.</summary>
    internal static string? MissingPlotLibrary(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
            if (e is DllNotFoundException) return e.Message.Split('\n')[0].TrimEnd(' ', ':', '.');
        return null;
    }

    private ComparisonResult RunOnce(CancellationToken cancel)
    {
        var part = Collect(cancel, (_, _) => true, requireBaselines: false);
        var entries = part.Baselines.Concat(part.Points.Select(p => p.Entry)).ToList();
        return Write(BuildTable(part.Tasks, part.Baselines.Where(e => e.Architecture == "stl").ToList(), entries.Where(e => e.Architecture != "stl").ToList(), part.Skipped), entries);
    }

    /// <summary>
    /// Trains (or reuses) the baselines and the InterroGate runs that <paramref name="takePoint"/>(point, points) picks,
    /// and evaluates each. With <paramref name="requireBaselines"/> an STL or MTL run that is not finished is an error.
    /// </summary>
    private (Tasks.TaskSet Tasks, List<ComparisonEntry> Baselines, List<ShardEntry> Points, IReadOnlyDictionary<string, int> Skipped) Collect(CancellationToken cancel,
        Func<int, int, bool> takePoint, bool requireBaselines)
    {
        Runtime.NativeRuntime.EnsureLoaded();
        var data = DataCatalog.Open(config.Data);
        foreach (var (split, count) in DataCatalog.Skipped(data))
            progress?.Report(new RunMessage(config.Name, $"{count} ids of the {split} list left out: their files are missing (data.skipMissing); every run is trained and scored on the rest"));
        var owned = new List<IDisposable>(); // the models kept for later runs (STL, MTL), freed with the data when done
        try
        {
            var tasks = Factory.ResolveTasks(data.Train.Tasks, config.Tasks);
            config.Validate(tasks.Count);
            Factory.ApplyThreads(config.Training);
            var image = data.Train.ImageShape;
            var entries = new List<ComparisonEntry>();

            // MTL: one shared encoder. Trained first when the STL encoders start from it.
            var points = SweepPoints.Of(config, tasks.Count);
            (MultiTaskModel Model, ComparisonEntry Entry) TrainMtl() => Kept(TrainAndTest(config.Run(new HardSharingConfig(), "mtl"), data, image, init: null, cancel, requireFinished: requireBaselines));
            (MultiTaskModel Model, ComparisonEntry Entry) Kept((MultiTaskModel Model, ComparisonEntry Entry) done)
            {
                owned.Add(done.Model);
                return done;
            }
            static ComparisonEntry Done((MultiTaskModel Model, ComparisonEntry Entry) done)
            {
                done.Model.Dispose();
                return done.Entry;
            }
            var mtlRun = config.StlStartsFromMtl ? TrainMtl() : default;

            // STL: one network per task, each trained on its own task only.
            var stl = new Dictionary<string, MultiTaskModel>();
            var stlEntries = new List<ComparisonEntry>();
            foreach (var task in tasks)
            {
                var run = config.Run(new SingleTaskConfig(), $"stl-{task.Name}", [task.Name]);
                if (config.StlStartsFromMtl) run = run with { StartFrom = (run.StartFrom ?? new StartFrom()) with { Mtl = Path.Combine(directory, "mtl", Trainer.LastFileName) } };
                var (model, entry) = Kept(TrainAndTest(run, data, image, init: null, cancel, requireFinished: requireBaselines,
                    startedFrom: config.StlStartsFromMtl ? ["mtl"] : []));
                stl[task.Name] = model;
                stlEntries.Add(entry);
            }
            entries.AddRange(stlEntries);

            if (!config.StlStartsFromMtl) mtlRun = TrainMtl();
            var (mtl, mtlEntry) = mtlRun;
            entries.Add(mtlEntry);

            // MTL under each further loss-balancing method.
            foreach (var method in config.Methods)
            {
                var balancer = method.Create(tasks.Count);
                string name = balancer.Name;
                (balancer as IDisposable)?.Dispose();
                var run = config.Run(new HardSharingConfig(), $"mtl-{name}") with { Balancer = method };
                entries.Add(Done(TrainAndTest(run, data, image, init: null, cancel, label: $"MTL + {name}", requireFinished: requireBaselines)));
            }

            // Further architectures (MTAN, Cross-stitch); a cross-stitch network starts from the STL models.
            foreach (var architecture in config.Architectures)
            {
                var run = config.Run(architecture, architecture.Type);
                Action<MultiTaskModel>? init = config.InitialiseFromBaselines && architecture is CrossStitchConfig
                    ? m => WeightTransfer.InitialiseCrossStitch((CrossStitch)m, stl)
                    : null;
                entries.Add(Done(TrainAndTest(run, data, image, init, cancel, requireFinished: requireBaselines,
                    startedFrom: architecture is not CrossStitchConfig ? null : init is null ? [] : StlRuns(tasks))));
            }

            // InterroGate at each λ_s (and each point of the sweep's grid), started from STL (task branches, heads) and,
            // for the shared branch, from the pretrained weights where the comparison has them (the paper's generic
            // ImageNet start), else from MTL's encoder.
            var taken = new List<ShardEntry>();
            var sharedFrom = config.Pretrained is null ? mtl : null;
            foreach (var point in points)
            {
                if (!takePoint(point.Index, points.Count)) continue;
                var run = SweepPoints.Run(config, point);
                Action<MultiTaskModel>? init = config.InitialiseFromBaselines
                    ? m => WeightTransfer.InitialiseInterroGate((InterroGateModel)m, stl, sharedFrom)
                    : null;
                taken.Add(new ShardEntry(point.Index, Done(TrainAndTest(run, data, image, init, cancel, label: point.Label,
                    startedFrom: init is null ? [] : sharedFrom is null ? StlRuns(tasks) : [.. StlRuns(tasks), "mtl"]))));
            }
            foreach (var (split, count) in DataCatalog.NonFiniteDepth(data))
                progress?.Report(new RunMessage(config.Name, DataCatalog.NonFiniteDepthMessage(split, count)));
            return (tasks, entries, taken, DataCatalog.Skipped(data));
        }
        finally
        {
            foreach (var d in owned) d.Dispose();
            data.Dispose();
        }
    }

    private static string[] StlRuns(Tasks.TaskSet tasks) => tasks.Select(t => $"stl-{t.Name}").ToArray();

    private readonly StartOrigin.Checksums _checksums = new();

    /// <summary>
    /// Trains (or resumes, or reuses a finished run of the same config) and evaluates its final checkpoint on test.
    /// <paramref name="startedFrom"/> names the comparison's runs whose final checkpoints the run starts from (empty:
    /// from scratch; null: not recorded); a run started otherwise than that now (a baseline trained again since, or
    /// <c>initialiseFromBaselines</c> switched) is trained anew.
    /// </summary>
    private (MultiTaskModel Model, ComparisonEntry Entry) TrainAndTest(RunConfig run, DatasetSplits data,
        (int Channels, int Height, int Width) image, Action<MultiTaskModel>? init, CancellationToken cancel, string? label = null,
        bool requireFinished = false, IReadOnlyList<string>? startedFrom = null)
    {
        var prepared = PreparedRun.Create(run, data);
        try
        {
            return TrainAndTest(prepared, run, data, image, init, cancel, label, requireFinished, startedFrom);
        }
        catch
        {
            prepared.Model.Dispose(); // the caller gets no model to free
            throw;
        }
    }

    private (MultiTaskModel Model, ComparisonEntry Entry) TrainAndTest(PreparedRun prepared, RunConfig run, DatasetSplits data,
        (int Channels, int Height, int Width) image, Action<MultiTaskModel>? init, CancellationToken cancel, string? label,
        bool requireFinished, IReadOnlyList<string>? startedFrom)
    {
        string dir = Path.Combine(directory, run.Name);
        if (prepared.Pretrained is { } weights) progress?.Report(new RunMessage(run.Name, $"pretrained: {weights}"));
        // A folder holding a run of another configuration is trained anew (said below); the same one is resumed or reused.
        // What the run starts from (checksums of those runs' checkpoints; empty: from scratch), read only when needed.
        Dictionary<string, string>? originValue = null;
        Dictionary<string, string> Origin() => originValue ??= startedFrom!.ToDictionary(r => r, r => _checksums.Of(Path.Combine(directory, r, Trainer.LastFileName)));
        // Recorded as training starts anew, so that a run stopped part-way and resumed later is checked too.
        var mayDiffer = PathKeys(run);
        var trainer = new Trainer(run, prepared.Model, data, dir, progress)
        {
            Overwrite = true, StartingAnew = startedFrom is null ? null : () => StartOrigin.Write(dir, Origin()),
            ResumeMayAlsoChange = mayDiffer, // resumed under another spelling of the comparison's folder
        };
        string? resume = null;
        bool finished = false, otherConfiguration = false;
        // A stop between a save's two renames leaves no last.ckpt: the trainer finishes that save (last.ckpt.tmp) or
        // falls back to the checkpoint it replaced (last.prev.ckpt), as `train --resume` does.
        if (File.Exists(trainer.LastPath) || File.Exists(Checkpoint.InterruptedSavePath(trainer.LastPath)) || File.Exists(Checkpoint.PreviousPath(trainer.LastPath)))
        {
            // The newest whole checkpoint: a damaged last.ckpt falls back to the one it replaced (the Trainer says so).
            var good = Checkpoint.NewestGood(trainer.LastPath, out var problem);
            var meta = good is null ? null : Checkpoint.ReadMeta(good);
            if (meta is null) progress?.Report(new RunMessage(run.Name, $"{problem}; no whole checkpoint to resume from, training anew."));
            else if (SameConfig(meta.Config, run, dir, mayDiffer))
            {
                finished = good == trainer.LastPath && meta.Epoch >= run.Training.Epochs && meta.Step == 0;
                resume = finished ? null : trainer.LastPath;
            }
            else
            {
                progress?.Report(new RunMessage(run.Name, $"{dir} holds a run of another configuration; training anew."));
                otherConfiguration = true;
            }
        }
        string? startedElsewhere = null;
        if ((finished || resume is not null) && startedFrom is not null && StartOrigin.Read(dir) is { } record)
        {
            if (record.Problem is { } unreadable)
                startedElsewhere = $"{Path.Combine(dir, StartOrigin.FileName)} {unreadable}, so what the run started from is unknown";
            else if (record.Origin is { } stored && !StartOrigin.Same(stored, Origin()))
            {
                var origin = Origin();
                var changed = origin.Keys.Where(k => stored.TryGetValue(k, out var h) && h != origin[k]).ToArray();
                startedElsewhere = stored.Count == 0 ? $"{dir} started from scratch and this comparison starts it from {string.Join(", ", origin.Keys)}"
                    : origin.Count == 0 ? $"{dir} started from {string.Join(", ", stored.Keys)} and this comparison starts it from scratch"
                    : $"{dir} started from an earlier {string.Join(", ", changed.Length > 0 ? changed : origin.Keys)} (trained again since)";
            }
            if (startedElsewhere is not null)
            {
                progress?.Report(new RunMessage(run.Name, $"{startedElsewhere}; training anew."));
                (finished, resume) = (false, null);
            }
        }

        if (!finished && requireFinished)
            throw new RunFolderException(dir, (startedElsewhere is not null ? $"the baseline {run.Name} is out of date: {startedElsewhere}"
                                                  : otherConfiguration ? $"the baseline {run.Name} was trained with another configuration"
                                                  : $"the baseline {run.Name} is not trained yet") +
                                              "; a shard of a sweep needs its STL and MTL runs finished: " +
                                              "run `interrogate sweep CONFIG --baselines` with the same -o first (in a job array: a job the array depends on)");
        if (!finished)
        {
            if (resume is null) init?.Invoke(prepared.Model);
            var result = trainer.Run(resume, cancel);
            if (result.Interrupted) throw new OperationCanceledException($"Interrupted during {run.Name}; run the same command again to resume.");
        }
        else
        {
            progress?.Report(new RunMessage(run.Name, $"reusing the finished run in {dir}"));
            // Evaluated where a freshly trained run is, on the training device (and handed on from there as a start).
            prepared.Model.to(Runtime.Devices.Resolve(run.Training.Device, run.Training.Tf32 && !run.Training.Deterministic));
        }
        // From the run's metrics, whether trained now, resumed or reused: one formula, the same figure on every read.
        double msPerStep = MeasuredMsPerStep(trainer.MetricsPath, run.Training.BatchSize);

        // The final checkpoint: InterroGate's gates reach their budget only by the end of training, so
        // an earlier best-on-validation epoch would report a model the sparsity loss had not shaped yet.
        Checkpoint.Load(trainer.LastPath, prepared.Model);
        var test = Evaluator.Evaluate(prepared.Model, data.Test, run.Training.EvalBatchSize, cancel, run.Training.Precision, run.Training.ChannelsLast);
        var (macs, parameters) = DeployedCost.OfModel(prepared.Model, image);
        double? specific = prepared.Model is InterroGateModel ig ? ig.TaskSpecificFraction().Overall : null;
        var budget = (prepared.Model as InterroGateModel)?.Budget;
        label ??= run.Architecture switch
        {
            InterroGateConfig { Target: { } t } => $"InterroGate (target {t.Label})",
            InterroGateConfig c => $"InterroGate (λs={Lambda(c.LambdaS)})",
            SingleTaskConfig => $"STL ({string.Join(", ", prepared.Tasks.Names)})",
            MtanConfig => "MTAN",
            CrossStitchConfig => "Cross-stitch",
            _ => "MTL",
        };
        double? target = budget?.TargetCost();
        double? gap = budget is null ? null : budget.Relative(budget.Target.Kind == Gating.BudgetKind.Parameters ? parameters : macs);
        progress?.Report(new RunMessage(run.Name, $"test: {string.Join(", ", test.Metrics.Select(kv => $"{kv.Key} {kv.Value:F4}"))}; {macs / 1e6:F2} M MACs" +
            (budget is null ? "" : $"; target {target / 1e6:F3} M {(budget.Target.Kind == Gating.BudgetKind.Parameters ? "parameters" : "MACs")}, gap {gap:+0.0%;-0.0%;+0.0%}")));
        return (prepared.Model, new ComparisonEntry(label, run.Architecture.Type, dir, test.Metrics, macs, parameters, msPerStep, specific, run.Training.Epochs)
        {
            TestDetails = test.Details,
            Cost = TrainingCost.Read(trainer.MetricsPath),
            Target = target,
            TargetGap = gap,
            TargetIsParameters = budget?.Target.Kind == Gating.BudgetKind.Parameters,
        });
    }

    /// <summary>
    /// Whether a stored run configuration is <paramref name="run"/>. The stored JSON is read back first, so a run
    /// written before an option existed still matches when the option has its default value. A stored configuration
    /// that no longer reads (a key this version does not know) is refused with the reason rather than trained over:
    /// training anew would overwrite the run's checkpoints.
    /// </summary>
    private static bool SameConfig(string stored, RunConfig run, string dir, IReadOnlySet<string> mayDiffer)
    {
        RunConfig read;
        try
        {
            read = ConfigJson.Deserialize<RunConfig>(stored);
        }
        catch (ConfigException e)
        {
            throw new RunFolderException(dir, $"its checkpoint's configuration does not read ({e.Message}); " +
                                              "move the folder away or give another -o to train this run anew");
        }
        return RunFiles.ChangedKeys(ConfigJson.Serialize(read), ConfigJson.Serialize(run), mayDiffer).Count == 0;
    }

    /// <summary>
    /// The keys of <paramref name="run"/> that name a checkpoint of this comparison by its folder's path: the MTL
    /// checkpoint an STL run starts from (stlStartsFromMtl), spelt as -o was given (relative, absolute, or the folder
    /// since moved). They may differ from a stored run's without changing it; what that checkpoint held is checked by its
    /// checksum (started-from.json) instead.
    /// </summary>
    private IReadOnlySet<string> PathKeys(RunConfig run) =>
        run.StartFrom?.Mtl == Path.Combine(directory, "mtl", Trainer.LastFileName) ? new HashSet<string> { "startFrom.mtl" } : new HashSet<string>();

    /// <summary><paramref name="extra"/> with the training cost's columns (<see cref="ComparisonTable.CostKeys"/>) where measured.</summary>
    private static Dictionary<string, double> WithCost(Dictionary<string, double> extra, TrainingCost cost)
    {
        if (double.IsFinite(cost.ForwardMs)) extra[ComparisonTable.ForwardKey] = cost.ForwardMs;
        if (double.IsFinite(cost.BackwardMs)) extra[ComparisonTable.BackwardKey] = cost.BackwardMs;
        if (double.IsFinite(cost.TrainSeconds)) extra[ComparisonTable.TrainMinutesKey] = cost.TrainSeconds / 60;
        return extra;
    }

    private static double MeasuredMsPerStep(string metricsPath, int batchSize)
    {
        if (!File.Exists(metricsPath)) return double.NaN;
        var rates = File.ReadLines(metricsPath)
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("images_per_s").GetDouble()).ToArray();
        return rates.Length == 0 ? double.NaN : batchSize / rates.Average() * 1000;
    }

    internal static ComparisonTable BuildTable(TaskSet tasks, IReadOnlyList<ComparisonEntry> stl, IReadOnlyList<ComparisonEntry> others,
        IReadOnlyDictionary<string, int>? skippedIds = null)
    {
        var table = new ComparisonTable(tasks) { SkippedIds = skippedIds ?? new Dictionary<string, int>() };
        table.AddRow(new ComparisonRow("STL", "stl",
            tasks.ToDictionary(t => t.Name, t => stl.Single(e => e.Test.ContainsKey(t.Name)).Test[t.Name]),
            stl.Sum(e => e.Macs), stl.Sum(e => e.Parameters),
            WithCost(new Dictionary<string, double> { ["ms/step"] = stl.Sum(e => e.MsPerStep), ["epochs"] = stl.Max(e => e.Epochs) },
                TrainingCost.Sum(stl.Select(e => e.Cost))))
        {
            Details = tasks.Where(t => stl.Any(e => e.TestDetails.ContainsKey(t.Name)))
                .ToDictionary(t => t.Name, t => stl.First(e => e.TestDetails.ContainsKey(t.Name)).TestDetails[t.Name]),
        }, isBaseline: true);
        foreach (var e in others)
        {
            var extra = WithCost(new Dictionary<string, double> { ["ms/step"] = e.MsPerStep, ["epochs"] = e.Epochs }, e.Cost);
            if (e.TaskSpecific is double f) extra["task-specific %"] = 100 * f;
            if (e.Target is double target) extra[e.TargetIsParameters ? ComparisonTable.TargetParametersKey : ComparisonTable.TargetMacsKey] = target / 1e6;
            if (e.TargetGap is double gap) extra[ComparisonTable.TargetGapKey] = 100 * gap;
            table.AddRow(new ComparisonRow(e.Label, e.Architecture, e.Test, e.Macs, e.Parameters, extra) { Details = e.TestDetails });
        }
        return table;
    }

    /// <summary>
    /// <paramref name="table"/> with every row naming its run folders (<see cref="ComparisonRow.Runs"/>): the STL row
    /// every STL run, another row the runs of its label, each as the comparison's folder holds it ("NAME" or
    /// "seed-S/NAME"), whatever folder the runs were trained in.
    /// </summary>
    internal static ComparisonTable WithRuns(ComparisonTable table, IReadOnlyList<ComparisonEntry> entries, string? tableFolder = null) =>
        table.WithRuns((row, isBaseline) => entries
            .Where(e => isBaseline ? e.Architecture == "stl" : e.Architecture != "stl" && e.Label == row.Label)
            .Select(e => RunFolder(e.Directory, tableFolder)).Distinct().ToArray());

    /// <summary>
    /// A run's folder as a table names it: "NAME", or "seed-S/NAME" for a run of one seed in a table over seeds; a
    /// seed's own table (written in <paramref name="tableFolder"/>, seed-S) names its runs "NAME".
    /// </summary>
    private static string RunFolder(string directory, string? tableFolder)
    {
        string run = Path.TrimEndingDirectorySeparator(directory);
        string name = Path.GetFileName(run);
        string parentPath = Path.GetDirectoryName(run) ?? "";
        string parent = Path.GetFileName(parentPath);
        bool inTableFolder = tableFolder is not null &&
                             Path.GetFullPath(Path.TrimEndingDirectorySeparator(tableFolder)) == Path.GetFullPath(parentPath.Length == 0 ? "." : parentPath);
        return parent.StartsWith("seed-", StringComparison.Ordinal) && !inTableFolder ? $"{parent}/{name}" : name;
    }

    /// <summary>λ_s as run names and table rows show it: plain decimals (10000, 0.5), never an exponent.</summary>
    internal static string Lambda(double value) => value.ToString("0.######", System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>
/// What training a model cost (the paper's Table 8): mean forward and backward (+ update) milliseconds per step,
/// measured after the warm-up steps on the run's device, and the training time without validation.
/// </summary>
public sealed record TrainingCost(double ForwardMs, double BackwardMs, double TrainSeconds)
{
    public static readonly TrainingCost Unknown = new(double.NaN, double.NaN, double.NaN);

    /// <summary>Epoch means of forward_ms and backward_ms and the sum of train_s in a metrics.jsonl (NaN where absent).</summary>
    public static TrainingCost Read(string metricsPath)
    {
        if (!File.Exists(metricsPath)) return Unknown;
        var fwd = new List<double>();
        var bwd = new List<double>();
        double train = 0;
        bool any = false;
        foreach (var (_, line) in RunFiles.ReadMetrics(metricsPath).Lines)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(line);
            var root = doc.RootElement;
            if (Number(root, "forward_ms") is { } f) fwd.Add(f);
            if (Number(root, "backward_ms") is { } b) bwd.Add(b);
            if (Number(root, "train_s") is { } s) { train += s; any = true; }
        }
        return new TrainingCost(fwd.Count > 0 ? fwd.Average() : double.NaN, bwd.Count > 0 ? bwd.Average() : double.NaN, any ? train : double.NaN);
    }

    /// <summary>Several models trained one after the other (STL: one network per task).</summary>
    public static TrainingCost Sum(IEnumerable<TrainingCost> costs)
    {
        var list = costs.ToArray();
        return new TrainingCost(list.Sum(c => c.ForwardMs), list.Sum(c => c.BackwardMs), list.Sum(c => c.TrainSeconds));
    }

    private static double? Number(System.Text.Json.JsonElement root, string key) =>
        root.TryGetProperty(key, out var v) && v.ValueKind == System.Text.Json.JsonValueKind.Number && double.IsFinite(v.GetDouble()) ? v.GetDouble() : null;
}

/// <summary>
/// Which checkpoints a comparison's run started from (<c>started-from.json</c> in its folder: run name → SHA-256 of
/// that run's final checkpoint when this run began; empty for a run started from scratch), so that a run started
/// from baselines since trained again is not reused as if it had started from the new ones.
/// </summary>
internal static class StartOrigin
{
    public const string FileName = "started-from.json";

    /// <summary>SHA-256 of files, each read once while its length and time of last write stay the same.</summary>
    public sealed class Checksums
    {
        private readonly Dictionary<(string Path, long Length, DateTime Written), string> _known = [];

        public string Of(string path)
        {
            var info = new FileInfo(path);
            var key = (info.FullName, info.Length, info.LastWriteTimeUtc);
            if (_known.TryGetValue(key, out var hash)) return hash;
            using var stream = File.OpenRead(path);
            return _known[key] = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
        }
    }

    /// <summary>
    /// The stored origin; null where none was recorded (a run trained before this file existed). A file that does not
    /// read (edited, damaged) gives its <c>Problem</c> instead of an origin.
    /// </summary>
    public static (Dictionary<string, string>? Origin, string? Problem)? Read(string runDir)
    {
        string path = Path.Combine(runDir, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            return System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(path)) is { } origin
                ? (origin, null) : (null, "holds null");
        }
        catch (System.Text.Json.JsonException e)
        {
            return (null, $"does not read ({e.Message.Split('.')[0]})");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (null, $"cannot be read ({e.Message})");
        }
    }

    public static bool Same(IReadOnlyDictionary<string, string> stored, IReadOnlyDictionary<string, string> now) =>
        stored.Count == now.Count && now.All(kv => stored.TryGetValue(kv.Key, out var h) && h == kv.Value);

    public static void Write(string runDir, IReadOnlyDictionary<string, string> origin)
    {
        Directory.CreateDirectory(runDir);
        RunFiles.WriteAtomically(Path.Combine(runDir, FileName),
            System.Text.Json.JsonSerializer.Serialize(origin, new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }
}
