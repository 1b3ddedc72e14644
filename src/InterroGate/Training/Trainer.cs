using System.Diagnostics;
using System.Text.Json;
using InterroGate.Architectures;
using InterroGate.Balancing;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Objectives;
using InterroGate.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Training;

/// <summary>Where a run's files go and what it ended with.</summary>
public sealed record TrainingResult(
    string Directory, string BestCheckpoint, string LastCheckpoint, int EpochsCompleted, int BestEpoch,
    IReadOnlyDictionary<string, double> BestValidation, bool Interrupted, double TrainSeconds, double ImagesPerSecond);

/// <summary>
/// The one training loop for every architecture and balancer: Adam on the weights, SGD on the gate
/// parameters where the model has them, validation every epoch, best and last checkpoints,
/// resume, cancellation that saves a resumable checkpoint, and a stop on a non-finite loss.
/// It knows no method by name.
/// </summary>
public sealed class Trainer
{
    private readonly RunConfig _config;
    private readonly MultiTaskModel _model;
    private DatasetSplits _data; // on the training device while a run holds in-memory splits there (DeviceResidence)
    private IBalancer _balancer;
    private bool _balancerSpent; // a run ended with it: the next run starts from a new one
    private readonly string _dir;
    private readonly IProgress<TrainingEvent>? _progress;

    /// <summary>
    /// A trainer for one run. <paramref name="config"/> is checked, and it, <paramref name="model"/> and
    /// <paramref name="data"/> must describe the same run (the checkpoints record the configuration and are loaded
    /// again by it): the configuration's architecture and tasks are the model's, and every split holds each of the
    /// model's tasks with its kind and output count. <see cref="PreparedRun.Create"/> makes the three together.
    /// </summary>
    public Trainer(RunConfig config, MultiTaskModel model, DatasetSplits data, string directory, IProgress<TrainingEvent>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(directory);
        config.Validate(model.Tasks.Count);
        RequireOneRun(config, model, data);
        _config = config;
        _model = model;
        _data = data;
        _balancer = config.Balancer.Create(model.Tasks.Count);
        _dir = directory;
        _progress = progress;
    }

    private static void RequireOneRun(RunConfig config, MultiTaskModel model, DatasetSplits data)
    {
        if (config.Architecture.Type != model.Architecture)
            throw new ArgumentException($"The configuration's architecture is {config.Architecture.Type} and the model is {model.Architecture}: " +
                                        "a run's checkpoints record its configuration and could not be loaded again; build the model from the configuration (PreparedRun.Create).", nameof(model));
        // Tasks left out of the configuration are the data set's, all of them.
        var configured = config.Tasks ?? data.Train.Tasks.Names.ToArray();
        if (!configured.ToHashSet().SetEquals(model.Tasks.Names))
            throw new ArgumentException($"The configuration's tasks are {string.Join(", ", configured)}{(config.Tasks is null ? " (tasks left out: every task of the data set)" : "")} " +
                                        $"and the model's {string.Join(", ", model.Tasks.Names)}: they must be the same.", nameof(model));
        foreach (var (split, name) in new[] { (data.Train, "training"), (data.Validation, "validation") })
            if (Evaluator.CannotFeed(model, split) is { } why)
                throw new ArgumentException($"The {name} split ({split.Name}) cannot train this model: {why}.", nameof(data));
    }

    /// <summary>The loss-balancing method this trainer combines the task losses with (built from the configuration; each
    /// run starts from a new one and frees the tensors it holds when it ends).</summary>
    internal IBalancer Balancer => _balancer;

    /// <summary>A fresh run into a folder that already holds one clears it instead of refusing.</summary>
    public bool Overwrite { get; init; }

    /// <summary>
    /// Called when a run starts from its first step (not when it resumes), holding the folder's lock, after the files of
    /// a run it replaces are removed: what records how the run started belongs with it from here on.
    /// </summary>
    internal Action? StartingAnew { get; init; }

    /// <summary>Resume even where the configuration differs from the checkpoint's (the differing keys are reported).</summary>
    public bool AcceptConfigChanges { get; init; }

    /// <summary>
    /// Further keys that may differ on resume: a comparison's STL run names the MTL checkpoint it starts from by the
    /// path its folder was given as (startFrom.mtl), which may be spelt otherwise when the comparison resumes; what
    /// that checkpoint held is checked by its checksum instead.
    /// </summary>
    internal IReadOnlySet<string> ResumeMayAlsoChange { get; init; } = new HashSet<string>();
    /// <summary>
    /// Steps between two reads of the training losses by the host. Null (the default): every step on the CPU, where a
    /// read costs nothing; on a GPU at each progress report (at most every 10 steps) and at the epoch's end, the sums
    /// kept on the GPU in between, so that the host does not wait for the GPU's queue of launches to drain at every
    /// step. A balancer that reads every step's losses (FAMO) reads them every step. A non-finite loss is then found
    /// at the next read and reported with the steps since the last one.
    /// </summary>
    public int? ReadLossesEvery { get; init; }

    /// <summary>Configuration keys that may change on resume without changing what the run computes.</summary>
    private static readonly IReadOnlySet<string> ResumeMayChange = new HashSet<string> { "training.device", "training.threads", "training.tf32", "training.precision", "training.channelsLast", "training.dataOn" };

    public string BestPath => Path.Combine(_dir, "best.ckpt");
    public const string LastFileName = "last.ckpt";
    public string LastPath => Path.Combine(_dir, LastFileName);
    public const string MetricsFileName = "metrics.jsonl";
    public string MetricsPath => Path.Combine(_dir, MetricsFileName);

    /// <summary>Trains to the configured number of epochs, or from <paramref name="resumeFrom"/> onwards.</summary>
    public TrainingResult Run(string? resumeFrom = null, CancellationToken cancel = default)
    {
        var cfg = _config.Training;
        var original = _data;
        var device = Runtime.Devices.Resolve(cfg.Device, cfg.Tf32 && !cfg.Deterministic);
        var (placed, copies, message) = DeviceResidence.Place(_data, cfg.DataOn, device);
        if (message is not null) Report(new RunMessage(_config.Name, message));
        _data = placed;
        if (_balancerSpent) _balancer = _config.Balancer.Create(_model.Tasks.Count);
        try
        {
            return RunOnPlacedData(resumeFrom, device, cancel);
        }
        finally
        {
            // Everything the run made is freed here or by its owner (optimisers, balancer, the model's training state),
            // none of it left to finalizers: the collector does not see GPU memory, and a tensor left to its finalizer can
            // be freed under a native call that still reads it (docs/architecture.md, "Tensor lifetimes").
            _model.EndTraining();
            (_balancer as IDisposable)?.Dispose();
            _balancerSpent = true;
            _data = original;
            foreach (var copy in copies) copy.Dispose();
        }
    }

    private TrainingResult RunOnPlacedData(string? resumeFrom, Device device, CancellationToken cancel)
    {
        var cfg = _config.Training;
        var tasks = _model.Tasks;
        // Refused before the folder is touched: no run it holds is cleared, and no configuration that never ran is recorded.
        if (cfg.BatchSize > _data.Train.Count)
            throw new ConfigException("training.batchSize", $"{cfg.BatchSize} is more than the {_data.Train.Count} samples of the training split; use at most {_data.Train.Count}");
        using var folderLock = RunFolderLock.Acquire(_dir, out bool staleLock);
        if (staleLock) Report(new RunMessage(_config.Name, $"cleared the lock of {_dir} left by a run that no longer runs"));
        if (resumeFrom is null && RunFiles.HoldsRun(_dir))
        {
            if (!Overwrite)
                throw new RunFolderException(_dir, $"already holds a run; resume it (--resume {LastPath}; in C#, Run(resumeFrom: ...)), " +
                                                   "train anew over it (--overwrite; Overwrite = true), or choose another folder (-o)");
            RunFiles.Clear(_dir);
        }
        if (resumeFrom is null) StartingAnew?.Invoke(); // inside the folder's lock, the old run's files gone
        if (resumeFrom is not null)
        {
            // A stop between a save's two renames leaves the new checkpoint under its temporary name and the old one as
            // the previous checkpoint: the save is finished here, inside the folder's lock.
            if (Checkpoint.CompleteInterruptedSave(resumeFrom))
                Report(new RunMessage(_config.Name, $"{resumeFrom}: completed the save a stop had cut short (from {Checkpoint.InterruptedSavePath(resumeFrom)})"));
            if (!File.Exists(resumeFrom) && !File.Exists(Checkpoint.PreviousPath(resumeFrom)))
                throw new CheckpointException(resumeFrom, Directory.Exists(resumeFrom)
                    ? $"is a folder; resume from its {LastFileName}."
                    : $"no such file; a run's folder holds the {LastFileName} to resume from.");
            // A damaged checkpoint is never loaded: resume from the one it replaced, where that one is whole.
            var good = Checkpoint.NewestGood(resumeFrom, out var problem);
            if (good is null) throw new CheckpointException(resumeFrom, $"cannot be resumed: {problem}; no whole previous checkpoint beside it.");
            if (good != resumeFrom)
            {
                Report(new RunMessage(_config.Name, (File.Exists(resumeFrom) ? problem!.TrimEnd('.') : $"{resumeFrom} is missing") +
                                                    $"; resuming from the previous checkpoint {good} instead"));
                resumeFrom = good;
            }
            var stored = Checkpoint.ReadMeta(resumeFrom);
            if (stored.Architecture != _model.Architecture || stored.Backbone != _config.Backbone.Name || !stored.Tasks.SequenceEqual(tasks.Names))
                throw new CheckpointException(resumeFrom,
                    $"it holds {Architectures.ArchitectureNames.AModel(stored.Architecture)} on {stored.Backbone} for tasks [{string.Join(", ", stored.Tasks)}]; " +
                    $"this run trains {Architectures.ArchitectureNames.AModel(_model.Architecture)} on {_config.Backbone.Name} for [{string.Join(", ", tasks.Names)}]. Resume only the same run.");
            var changed = ChangedKeys(stored.Config);
            if (changed.Count > 0)
            {
                string list = string.Join(", ", changed);
                if (!AcceptConfigChanges)
                    throw new RunFolderException(_dir, $"the configuration differs from the checkpoint's in {list}; resume with the same configuration, or accept the changes (--accept-changes)");
                Report(new RunMessage(_config.Name, $"resuming with a changed configuration: {list}"));
            }
        }
        RunFiles.WriteAtomically(Path.Combine(_dir, "config.json"), ConfigJson.Serialize(_config));
        _model.to(device);
        // A balancer's own parameters stay on the CPU; balancers move them to the losses' device where they combine.

        // The model's parameter groups: the weight groups share one Adam (a group each), every gate group has its SGD.
        var groups = ParameterGroup.WithHeadLr(_model.ParameterGroups(), _model, cfg.HeadLr);
        ParameterGroup.CheckCovers(groups, _model);
        var weightGroups = groups.Where(g => g.Kind == GroupKind.Weights).ToArray();
        if (weightGroups.Length == 0) throw new InvalidOperationException($"{_model.Architecture} has no weight parameter group.");
        var weights = weightGroups.SelectMany(g => g.Parameters).ToArray();
        double[] baseLr = weightGroups.Select(g => g.LearningRate ?? cfg.Lr).ToArray();
        // A balancer's own learnable parameters (e.g. Uncertainty's log-variances) train with the first weight group.
        // Flat optimisers (the default) step each group's parameters as one buffer, or parameter by parameter with
        // flatOptimizer false; the same arithmetic and checkpoint format as TorchSharp's optimisers, whose implicit
        // scalars a collection on the data loader's thread could free during a step (Scalars), so they are not used.
        var weightParamGroups = weightGroups.Select((g, i) => new TorchSharp.Modules.Adam.ParamGroup(
            i == 0 ? g.Parameters.Concat(_balancer.Parameters) : g.Parameters, lr: baseLr[i], weight_decay: cfg.WeightDecay)).ToArray();
        bool perParameter = !cfg.FlatOptimizer;
        TorchSharp.Modules.OptimizerHelper weightOpt = new Flat.Adam(weightParamGroups, lr: cfg.Lr, weightDecay: cfg.WeightDecay, perParameter);
        var gateOpts = groups.Where(g => g.Kind == GroupKind.Gates && g.Parameters.Count > 0)
            .Select(g =>
            {
                double lr = g.LearningRate ?? throw new InvalidOperationException($"Gate group '{g.Name}' needs its learning rate.");
                TorchSharp.Modules.OptimizerHelper opt = g.GateOptimizer == GateOptimizer.Adam
                    ? new Flat.Adam(g.Parameters, lr, perParameter: perParameter)
                    : new Flat.SGD(g.Parameters, lr, perParameter: perParameter);
                return (g.Name, Optimizer: opt);
            })
            .ToArray();
        var optimizers = new List<(string, TorchSharp.Modules.OptimizerHelper)> { ("weights", weightOpt) };
        optimizers.AddRange(gateOpts.Select(g => (g.Name, g.Optimizer)));
        using var releaseOptimizers = new Releaser(optimizers.Select(o => o.Item2)); // their state and buffers, when the run ends
        bool hasGates = gateOpts.Length > 0;
        var objective = new MultiTaskObjective(tasks);
        using var metaBatches = MetaBatches(cfg, device).GetEnumerator();
        var sharedParameters = _model.SharedParameters().ToArray();
        // What a balancer may use during one step, built for that step's batch; validation batches it draws are freed with the step.
        BalanceContext ContextFor(Dictionary<string, Tensor> batch, TorchSharp.DisposeScope scope) => new(sharedParameters, () => _model.SharedRepresentation)
        {
            Meta = new MetaAccess(weights, () => weightOpt.ParamGroups.First().LearningRate,
                TrainLosses: () => objective.Losses(_model.Forward(batch[IMultiTaskDataset.ImageKey], cfg.Precision), batch),
                MetaLosses: () =>
                {
                    metaBatches.MoveNext();
                    var held = metaBatches.Current;
                    scope.Attach(held.Values);
                    return objective.Losses(_model.Forward(held[IMultiTaskDataset.ImageKey], cfg.Precision), held);
                }),
        };

        int startEpoch = 0, startStep = 0, bestEpoch = -1;
        double bestScore = double.NegativeInfinity;
        IReadOnlyDictionary<string, double> bestValidation = new Dictionary<string, double>();
        string? lastGood = null;
        if (resumeFrom is not null)
        {
            var meta = Checkpoint.Load(resumeFrom, _model, optimizers);
            Checkpoint.RestoreRng(meta.RngState);
            _balancer.Restore(meta.BalancerState);
            (startEpoch, startStep, bestScore, bestEpoch) = (meta.Epoch, meta.Step, meta.BestScore, meta.BestEpoch);
            bestValidation = meta.ValidationMetrics;
            lastGood = resumeFrom;
            Report(new RunMessage(_config.Name, startEpoch >= cfg.Epochs
                ? $"{resumeFrom} has finished its {cfg.Epochs} epoch{(cfg.Epochs == 1 ? "" : "s")}: nothing left to train (more epochs: --set training.epochs=N with --accept-changes; anew: --overwrite)"
                : $"resumed from {resumeFrom} at epoch {startEpoch + 1}, step {startStep + 1}" +
                  (startStep > 0 ? $" (this epoch's train loss averages its steps from {startStep + 1} on)" : "")));
        }

        TrimMetrics(startEpoch);
        var loader = new DataLoader(_data.Train, cfg.BatchSize, shuffle: true, seed: cfg.Seed, dropLast: true, device, cfg.ChannelsLast);
        int steps = cfg.MaxStepsPerEpoch > 0 ? Math.Min(cfg.MaxStepsPerEpoch, loader.BatchesPerEpoch) : loader.BatchesPerEpoch;

        bool gatesLanded = false;
        bool modelGatesFixed = false;
        if (hasGates) _model.SetGatesFixed(false); // a model trained before keeps no fixed gates into this run
        int gateSteps = hasGates ? (cfg.Epochs - cfg.FreezeGatesLastEpochs) * steps : 0;
        if (_model.PrepareTraining(gateSteps) is { } preparation) Report(new RunMessage(_config.Name, preparation));
        PrepareSpeed(device);
        if (resumeFrom is null && hasGates && ProbeGateRegime(objective, device, gateSteps) is { } warning)
            Report(new RunMessage(_config.Name, warning));

        int reportEvery = Math.Clamp(steps / 20, 1, 10);
        int readEvery = ReadLossesEvery ?? (device.type == DeviceType.CUDA && !_balancer.ReadsStepLosses ? reportEvery : 1);
        if (readEvery < 1) throw new ArgumentOutOfRangeException(nameof(ReadLossesEvery), readEvery, "at least 1");
        var total = Stopwatch.StartNew();
        double trainSeconds = 0;
        long trainImages = 0;
        _model.train();
        for (int epoch = startEpoch; epoch < cfg.Epochs; epoch++)
        {
            // On a GPU, draws there (dropout, gate noise) come from its own generator, which a checkpoint cannot hold:
            // seeded per epoch from the run's seed, so a resumed run draws what an uninterrupted one does from its next epoch.
            if (device.type == DeviceType.CUDA) cuda.manual_seed_all(cfg.Seed * 100_003L + epoch);
            var lossSums = new double[tasks.Count];
            double regSum = 0;
            int done = 0;
            Tensor? pending = null; // [T + 1]: the losses and the regulariser summed over steps not yet read
            int pendingFrom = 0, pendingCount = 0;
            void ReadPending(int lastStep)
            {
                if (pending is null) return;
                double[] sums;
                using (var onHost = pending.cpu()) sums = onHost.data<double>().ToArray();
                pending.Dispose();
                pending = null;
                int from = pendingFrom;
                for (int t = 0; t < tasks.Count; t++)
                {
                    if (!double.IsFinite(sums[t])) throw new NonFiniteLossException($"'{tasks[t].Name}' task", epoch, from, lastGood, lastStep);
                    lossSums[t] += sums[t];
                }
                if (!double.IsFinite(sums[tasks.Count])) throw new NonFiniteLossException("regulariser", epoch, from, lastGood, lastStep);
                regSum += sums[tasks.Count];
                pendingCount = 0;
            }
            var epochClock = Stopwatch.StartNew();
            long epochImages = 0;
            foreach (var batch in loader.Epoch(epoch, skipBatches: epoch == startEpoch ? startStep : 0))
            {
                int step = (epoch == startEpoch ? startStep : 0) + done;
                if (step >= steps) { DisposeAll(batch); break; }
                if (cancel.IsCancellationRequested)
                {
                    DisposeAll(batch);
                    pending?.Dispose(); // the checkpoint keeps no loss sums
                    pending = null;
                    Save(LastPath, "interrupted", epoch, step, bestScore, bestEpoch, bestValidation, optimizers);
                    Report(new RunMessage(_config.Name, $"interrupted: resumable checkpoint written to {LastPath}"));
                    return new TrainingResult(_dir, BestPath, LastPath, epoch, bestEpoch, bestValidation, true, trainSeconds, trainImages / Math.Max(trainSeconds, 1e-9));
                }

                double factor = cfg.Schedule.Factor(epoch, step, steps, cfg.Epochs);
                foreach (var (g, lr) in weightOpt.ParamGroups.Zip(baseLr)) g.LearningRate = lr * factor;

                bool gatesFixed = epoch >= cfg.Epochs - cfg.FreezeGatesLastEpochs;
                if (gatesFixed && hasGates && !gatesLanded)
                {
                    // Once, as the gates become fixed (or on resuming with them fixed: a no-op when already on target).
                    string? landing;
                    using (NewDisposeScope()) landing = _model.FixGates(); // the landing's temporaries (model code opens no scope)
                    if (landing is not null) Report(new RunMessage(_config.Name, landing));
                    gatesLanded = true;
                }
                if (hasGates && gatesFixed != modelGatesFixed) _model.SetGatesFixed(modelGatesFixed = gatesFixed);
                Tensor values;
                int n;
                try
                {
                    (values, n) = Step(batch, objective, ContextFor, weightOpt, gatesFixed ? [] : gateOpts.Select(g => (optim.Optimizer)g.Optimizer).ToArray());
                }
                catch (Exception e) when (Runtime.Devices.ExplainOutOfMemory(e, cfg.BatchSize) is { } why)
                {
                    throw new Runtime.DeviceUnavailableException($"{_config.Name}, epoch {epoch + 1}, step {step + 1}: {why}" +
                        (lastGood is null ? "" : $" Resume from {lastGood} with --resume."));
                }
                if (pending is null) { pending = values; pendingFrom = step; }
                else { pending.PlusInPlace(values); values.Dispose(); }
                pendingCount++;
                done++;
                epochImages += n;

                bool report = _progress is not null && (done % reportEvery == 0 || step == steps - 1);
                if (report || step == steps - 1 || pendingCount >= readEvery) ReadPending(step);
                if (report)
                {
                    double elapsed = epochClock.Elapsed.TotalSeconds;
                    double ips = epochImages / Math.Max(elapsed, 1e-9);
                    double remainingSteps = (steps - step - 1) + (double)(cfg.Epochs - epoch - 1) * steps;
                    Report(new StepProgress(_config.Name, epoch, cfg.Epochs, step, steps,
                        tasks.Select((t, i) => (t.Name, lossSums[i] / done)).ToDictionary(p => p.Name, p => p.Item2),
                        regSum / done, _model.Headline(), ips, total.Elapsed,
                        TimeSpan.FromSeconds(remainingSteps * elapsed / Math.Max(done, 1))));
                }
            }
            ReadPending((epoch == startEpoch ? startStep : 0) + done - 1);
            // The epoch's training time: its steps only, before batch-norm re-estimation and validation (what train_s,
            // images_per_s and the comparison's cost table report).
            double epochTrainSeconds = epochClock.Elapsed.TotalSeconds;
            trainSeconds += epochTrainSeconds;
            trainImages += epochImages;
            startStep = 0;

            EvaluationResult val;
            double score, epochIps;
            bool isBest;
            Dictionary<string, double> trainLosses;
            IReadOnlyDictionary<string, double> diagnostics;
            string? headline;
            // What the epoch's end makes outside the evaluation's batches (statistics read back, checkpoints) is freed
            // before the report, whose receiver may keep tensors of its own.
            using (NewDisposeScope())
            {
                if (cfg.BnBatches > 0) BatchNormStatistics.Reestimate(_model, loader, Math.Min(cfg.BnBatches, steps), epoch, cfg.Precision, cancel);
                val = Evaluator.Evaluate(_model, _data.Validation, cfg.EvalBatchSize, cancel, cfg.Precision, cfg.ChannelsLast);
                score = EvaluationResult.Score(tasks, val.Metrics);
                // The first epoch is best, so best.ckpt exists; a later one replaces it when its metrics improve on the best's
                // (Δ_MTL against them above 0: every task by its relative change, whatever its metric's unit).
                isBest = bestEpoch < 0 || EvaluationResult.Improves(tasks, val.Metrics, bestValidation);
                if (isBest) (bestScore, bestEpoch, bestValidation) = (double.IsNaN(score) ? double.NegativeInfinity : score, epoch, val.Metrics);
                trainLosses = tasks.Select((t, i) => (t.Name, lossSums[i] / Math.Max(done, 1))).ToDictionary(p => p.Name, p => p.Item2);
                diagnostics = _model.Diagnostics();
                epochIps = epochImages / Math.Max(epochTrainSeconds, 1e-9);
                AppendMetrics(epoch, factor: cfg.Schedule.Factor(epoch, 0, steps, cfg.Epochs), trainLosses, regSum / Math.Max(done, 1), val, diagnostics, epochIps,
                    total.Elapsed.TotalSeconds, epochTrainSeconds);

                // The balancer takes in the epoch before the checkpoints store its state: a run resumed from them goes on
                // with the weights and loss history the next epoch would have had (DWA's ratios of the last two epochs).
                _balancer.EpochEnded(trainLosses.Values.ToArray());
                if (isBest) Save(BestPath, "best", epoch + 1, 0, bestScore, bestEpoch, bestValidation, optimizers);
                Save(LastPath, "last", epoch + 1, 0, bestScore, bestEpoch, bestValidation, optimizers);
                lastGood = LastPath;
                headline = _model.Headline();
            }
            Report(new EpochCompleted(_config.Name, epoch, cfg.Epochs, trainLosses, val.Metrics, score, isBest, diagnostics, epochIps, headline));
        }
        string resumedFolder = resumeFrom is null ? "" : Path.GetDirectoryName(Path.GetFullPath(resumeFrom))!;
        if (startEpoch >= cfg.Epochs && resumeFrom is not null && resumedFolder != Path.TrimEndingDirectorySeparator(Path.GetFullPath(_dir)))
        {
            // A finished run resumed into another folder trains nothing and writes no checkpoint here: its checkpoints
            // are the ones it was resumed from (its folder's best.ckpt only where the file resumed is that folder's own).
            string best = Path.Combine(resumedFolder, Path.GetFileName(BestPath));
            string file = Path.GetFileName(resumeFrom);
            bool ownLast = file == LastFileName || file == Path.GetFileName(Checkpoint.PreviousPath(LastFileName));
            return new TrainingResult(_dir, ownLast && File.Exists(best) ? best : resumeFrom, resumeFrom, cfg.Epochs, bestEpoch, bestValidation, false, 0, 0);
        }
        return new TrainingResult(_dir, BestPath, LastPath, cfg.Epochs, bestEpoch, bestValidation, false, trainSeconds, trainImages / Math.Max(trainSeconds, 1e-9));
    }

    /// <summary>Steps of a run (in this process) left out of the step timing: allocator and kernel warm-up.</summary>
    private const int TimingWarmupSteps = 5;
    private const int TimingEveryCudaStep = 10;
    private int _stepsRun;
    private (int Steps, double ForwardMs, double BackwardMs) _timing;
    // The balancer's task weights summed over the epoch's steps (metrics.jsonl: their mean, balancer_weights).
    private double[]? _weightSums;
    private int _weightSteps;

    /// <summary>Milliseconds since <paramref name="start"/>, once the device has finished its queued work.</summary>
    private static double Elapsed(long start, Device device)
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize(device);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    /// <summary>
    /// Batches of the training split in an order of their own, without end (reshuffled each pass), for meta-learning
    /// balancers (<see cref="MetaAccess"/>); drawn only when one asks.
    /// </summary>
    private IEnumerable<Dictionary<string, Tensor>> MetaBatches(TrainingConfig cfg, Device device)
    {
        int size = Math.Min(cfg.BatchSize, Math.Max(1, _data.Train.Count));
        var loader = new DataLoader(_data.Train, size, shuffle: true, seed: cfg.Seed + 7919, dropLast: true, device, cfg.ChannelsLast);
        for (int pass = 0; ; pass++)
            foreach (var batch in loader.Epoch(pass)) yield return batch;
    }

    /// <summary>
    /// One optimisation step in its own dispose scope, with the balancer's context built for its batch; the gate
    /// optimisers step only where given (none while the gates are fixed). Returns the task losses and the regulariser
    /// as one float64 tensor [T + 1] on the step's device, detached and outside the step's scope, and the batch size.
    /// </summary>
    private (Tensor Values, int Images) Step(Dictionary<string, Tensor> batch, MultiTaskObjective objective,
        Func<Dictionary<string, Tensor>, TorchSharp.DisposeScope, BalanceContext> contextFor, optim.Optimizer weightOpt, IReadOnlyList<optim.Optimizer> gateOpts)
    {
        using var scope = NewDisposeScope();
        scope.Attach(batch.Values);
        var context = contextFor(batch, scope);
        var images = batch[IMultiTaskDataset.ImageKey];
        // On CUDA, timing the forward pass apart needs a device synchronisation mid-step: done on every
        // TimingEveryCudaStep-th step only, so the other steps keep their queued launches (on CPU every step is timed).
        int sinceWarmup = _stepsRun++ - TimingWarmupSteps;
        bool timed = sinceWarmup >= 0 && (images.device.type != DeviceType.CUDA || sinceWarmup % TimingEveryCudaStep == 0);
        long start = Stopwatch.GetTimestamp();
        var (losses, reg) = ForwardLosses(_model, images, batch, objective, _config.Training.Precision);
        double forwardMs = timed ? Elapsed(start, images.device) : 0;
        long backwardStart = Stopwatch.GetTimestamp();
        weightOpt.zero_grad();
        foreach (var g in gateOpts) g.zero_grad();
        if (gateOpts.Count == 0) foreach (var p in _model.ParametersOf(GroupKind.Gates)) p.ZeroGradient(); // fixed gates: no stale gradients pile up
        var weights = _balancer.Backward(losses, reg, context);
        _weightSums ??= new double[weights.Length];
        if (weights.Length == _weightSums.Length)
        {
            for (int t = 0; t < weights.Length; t++) _weightSums[t] += weights[t];
            _weightSteps++;
        }
        if (gateOpts.Count > 0) _model.ObserveGradients();
        weightOpt.step();
        if (gateOpts.Count > 0)
        {
            foreach (var g in gateOpts) g.step();
            _model.GatesStepped();
        }
        Tensor values;
        using (no_grad())
            values = cat(losses.Select(l => l.detach().reshape(1).to(float64)).Append(reg is null ? zeros(1, float64, images.device) : reg.detach().reshape(1).to(float64)).ToArray());
        if (_balancer.ReadsStepLosses)
            _balancer.AfterStep(values.cpu().data<double>().Take(losses.Length).ToArray(), () =>
            {
                using var _ = no_grad();
                return objective.Losses(_model.Forward(images, _config.Training.Precision), batch).Select(l => (double)l.item<float>()).ToArray();
            });
        if (timed) _timing = (_timing.Steps + 1, _timing.ForwardMs + forwardMs, _timing.BackwardMs + Elapsed(backwardStart, images.device));
        return (values.DetachFromDisposeScope(), (int)images.shape[0]); // owned by the caller, which disposes it
    }

    /// <summary>
    /// The forward pass of a training step: the task losses and the regulariser, and nothing else of the forward
    /// pass still held from C#. Every other tensor it made (activations, outputs, the losses' intermediates) is
    /// released as the pass ends; what the backward pass needs stays with autograd, which frees it as the backward
    /// pass goes, as PyTorch does (held until the step's end, activations and their gradients would coexist, for
    /// about twice the peak memory). The model's shared representation stays too, for balancers that read it.
    /// </summary>
    public static (Tensor[] Losses, Tensor? Regularizer) ForwardLosses(MultiTaskModel model, Tensor images,
        IReadOnlyDictionary<string, Tensor> batch, MultiTaskObjective objective, Runtime.Precision precision)
    {
        using var forward = NewDisposeScope();
        var losses = objective.Losses(model.Forward(images, precision), batch);
        var reg = model.Regularizer();
        foreach (var l in losses) l.MoveToOuterDisposeScope();
        reg?.MoveToOuterDisposeScope();
        model.SharedRepresentation?.MoveToOuterDisposeScope();
        return (losses, reg);
    }

    /// <summary>
    /// One training batch (from a loader of its own, so the training order is untouched) for
    /// <see cref="MultiTaskModel.PrepareSpeed"/>, laid out and computed as the training steps are (training.channelsLast,
    /// training.precision), so that what is timed there is what training runs.
    /// </summary>
    private void PrepareSpeed(Device device)
    {
        using var scope = NewDisposeScope();
        using var precision = Runtime.Autocast.Enter(_config.Training.Precision, device);
        _model.PrepareSpeed(() =>
        {
            var loader = new DataLoader(_data.Train, _config.Training.BatchSize, shuffle: true, seed: _config.Training.Seed + 15_485_863, dropLast: true, device,
                _config.Training.ChannelsLast);
            var batch = loader.Epoch(0).First();
            foreach (var (key, value) in batch) if (key != IMultiTaskDataset.ImageKey) value.Dispose();
            return batch[IMultiTaskDataset.ImageKey];
        });
    }

    /// <summary>
    /// Before the first step: the gradients of a few training batches (forward and backward in training mode, no
    /// optimiser step, BN statistics restored afterwards) tell whether the gates can learn channel by channel within
    /// <paramref name="gateSteps"/> steps (<see cref="MultiTaskModel.GateRegimeWarning"/>).
    /// </summary>
    private string? ProbeGateRegime(MultiTaskObjective objective, Device device, int gateSteps, int batches = 4)
    {
        using var probeScope = NewDisposeScope(); // what the probe makes outside its batches: the saved buffers, gradient handles
        var buffers = _model.buffers().Select(b => (Buffer: b, Saved: b.detach().clone())).ToArray();
        // Batches laid out, and the forward pass computed, as in the training steps (training.channelsLast, training.precision).
        var loader = new DataLoader(_data.Train, _config.Training.BatchSize, shuffle: true, seed: _config.Training.Seed + 104_729, dropLast: true, device,
            _config.Training.ChannelsLast);
        try
        {
            int seen = 0;
            foreach (var batch in loader.Epoch(0))
            {
                using (var scope = NewDisposeScope())
                {
                    scope.Attach(batch.Values);
                    if (seen >= batches) break;
                    foreach (var p in _model.parameters()) p.ZeroGradient();
                    var (losses, reg) = ForwardLosses(_model, batch[IMultiTaskDataset.ImageKey], batch, objective, _config.Training.Precision);
                    var total = losses.Aggregate((a, b) => a.Plus(b));
                    (reg is null ? total : total.Plus(reg)).backward();
                    _model.ObserveGradients();
                }
                seen++;
            }
            return _model.GateRegimeWarning(gateSteps);
        }
        finally
        {
            using var _ = no_grad();
            foreach (var p in _model.parameters()) p.ZeroGradient();
            foreach (var (buffer, saved) in buffers) { buffer.copy_(saved); saved.Dispose(); }
            _model.TakeGateStatistics(); // the probe's gradients are not part of epoch 1's running means
        }
    }

    private void Save(string path, string kind, int epoch, int step, double bestScore, int bestEpoch,
        IReadOnlyDictionary<string, double> validation, IReadOnlyList<(string, TorchSharp.Modules.OptimizerHelper)> optimizers)
    {
        var meta = new CheckpointMeta
        {
            Architecture = _model.Architecture,
            Backbone = _config.Backbone.Name,
            Tasks = _model.Tasks.Names.ToArray(),
            Config = ConfigJson.Serialize(_config),
            Epoch = epoch,
            Step = step,
            BestScore = bestScore,
            BestEpoch = bestEpoch,
            Kind = kind,
            RngState = Checkpoint.EncodeRng(),
            ValidationMetrics = validation,
            Input = _data.Train.Input,
            TaskSpecs = _model.Tasks.ToArray(),
            BalancerState = _balancer.State(),
        };
        Checkpoint.Save(path, meta, _model, optimizers);
    }

    /// <summary>The keys in which this run's configuration differs from a checkpoint's stored one (read back first, so
    /// options added since it was written compare at their defaults).</summary>
    private IReadOnlyList<string> ChangedKeys(string stored)
    {
        string normalised;
        try { normalised = ConfigJson.Serialize(ConfigJson.Deserialize<RunConfig>(stored)); }
        catch (ConfigException) { normalised = stored; }
        return RunFiles.ChangedKeys(normalised, ConfigJson.Serialize(_config), ResumeMayAlsoChange.Count == 0 ? ResumeMayChange : ResumeMayChange.Union(ResumeMayAlsoChange).ToHashSet());
    }

    /// <summary>
    /// metrics.jsonl holds one line per completed epoch of this run: a fresh run starts it anew, a resumed run
    /// keeps the epochs before its resume point (and drops any written after it). Lines cut short by a kill are left
    /// out, said so; the file is replaced in one rename, so a kill here loses nothing.
    /// </summary>
    private void TrimMetrics(int completedEpochs)
    {
        if (!File.Exists(MetricsPath)) return;
        var (lines, skipped) = RunFiles.ReadMetrics(MetricsPath);
        if (skipped > 0) Report(new RunMessage(_config.Name, $"{MetricsPath}: left out {skipped} incomplete line(s) (a run stopped while writing)"));
        var keep = lines.Where(l => l.Epoch <= completedEpochs).Select(l => l.Line + "\n");
        RunFiles.WriteAtomically(MetricsPath, string.Concat(keep));
    }

    private void AppendMetrics(int epoch, double factor, IReadOnlyDictionary<string, double> trainLosses, double reg,
        EvaluationResult val, IReadOnlyDictionary<string, double> diagnostics, double imagesPerSecond, double elapsed, double trainSeconds)
    {
        // Training cost (the paper's Table 8): mean forward and backward (+ update) time of this epoch's steps after
        // the run's warm-up steps, and the epoch's training time without validation.
        double forwardMs = _timing.Steps > 0 ? _timing.ForwardMs / _timing.Steps : double.NaN;
        double backwardMs = _timing.Steps > 0 ? _timing.BackwardMs / _timing.Steps : double.NaN;
        _timing = default;
        var row = new Dictionary<string, object>
        {
            ["epoch"] = epoch + 1,
            ["lr"] = _config.Training.Lr * factor,
            ["train_loss"] = trainLosses,
            ["regularizer"] = reg,
            ["val_metric"] = val.Metrics,
            ["val_details"] = val.Details, // the secondary metrics of each task's kind
            ["val_loss"] = val.Losses,
            ["images_per_s"] = imagesPerSecond,
            ["elapsed_s"] = elapsed,
            ["forward_ms"] = forwardMs,
            ["backward_ms"] = backwardMs,
            ["train_s"] = trainSeconds,
        };
        // The loss-balancing method's task weights, averaged over the epoch's steps: whether a method moved away from
        // uniform weighting shows here.
        if (_weightSums is { } sums && _weightSteps > 0)
            row["balancer_weights"] = _model.Tasks.Select((t, i) => (t.Name, sums[i] / _weightSteps)).ToDictionary(p => p.Name, p => p.Item2);
        (_weightSums, _weightSteps) = (null, 0);
        foreach (var (k, v) in diagnostics) row[k] = v;
        if (_model.TakeGateStatistics() is { } gates) row["gates"] = gates;
        File.AppendAllText(MetricsPath, JsonSerializer.Serialize(row, MetricsJson) + "\n");
    }

    /// <summary>How metrics.jsonl is written: NaN (a statistic with nothing to average) as the string "NaN".</summary>
    public static readonly JsonSerializerOptions MetricsJson = new()
    {
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
    };

    /// <summary>Disposes what it was given when it is disposed.</summary>
    private sealed class Releaser(IEnumerable<IDisposable> owned) : IDisposable
    {
        private readonly IDisposable[] _owned = owned.ToArray();
        public void Dispose()
        {
            foreach (var d in _owned) d.Dispose();
        }
    }

    private static void DisposeAll(Dictionary<string, Tensor> batch)
    {
        foreach (var t in batch.Values) t.Dispose();
    }

    private void Report(TrainingEvent e) => _progress?.Report(e);

}
