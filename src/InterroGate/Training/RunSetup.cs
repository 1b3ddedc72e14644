using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Tasks;

namespace InterroGate.Training;

/// <summary>A run ready to train: validated config, its tasks, data and fresh model.</summary>
public sealed record PreparedRun(RunConfig Config, TaskSet Tasks, DatasetSplits Data, MultiTaskModel Model)
{
    /// <summary>What loading <c>startFrom.pretrained</c> did; null without it.</summary>
    public PretrainedReport? Pretrained { get; init; }

    /// <summary>Validates <paramref name="config"/> against its data set and builds the model.</summary>
    public static PreparedRun Create(RunConfig config, DatasetSplits? data = null)
    {
        Runtime.NativeRuntime.EnsureLoaded();
        config.Validate(config.Tasks?.Count ?? 0); // 0: the task count is not known before the data set is opened
        data ??= DataCatalog.Open(config.Data);
        var tasks = Factory.ResolveTasks(data.Train.Tasks, config.Tasks);
        config.Validate(tasks.Count);
        Factory.ApplyThreads(config.Training);
        var model = Factory.CreateModel(config, tasks, data.Train.ImageShape);
        var pretrained = config.StartFrom?.Pretrained is { } weights ? PretrainedWeights.Apply(model, weights) : null;
        if (config.StartFrom is { } start && model is InterroGateModel ig)
        {
            var unknown = start.Stl.Keys.Where(k => tasks.IndexOf(k) < 0).ToArray();
            if (unknown.Length > 0) throw new ConfigException("startFrom.stl", $"{string.Join(", ", unknown)} not among the run's tasks ({string.Join(", ", tasks.Names)})");
            var stl = start.Stl.ToDictionary(kv => kv.Key, kv => Load(kv.Value, data.Train.ImageShape, data.Train.Tasks).Model);
            var mtl = start.Mtl is null ? null : Load(start.Mtl, data.Train.ImageShape, data.Train.Tasks).Model;
            StartFrom(() => WeightTransfer.InitialiseInterroGate(ig, stl, mtl));
            foreach (var m in stl.Values.Append(mtl)) m?.Dispose(); // their weights were copied
        }
        else if (config.StartFrom is { } csStart && model is CrossStitch cs)
        {
            var stl = csStart.Stl.ToDictionary(kv => kv.Key, kv => Load(kv.Value, data.Train.ImageShape, data.Train.Tasks).Model);
            StartFrom(() => WeightTransfer.InitialiseCrossStitch(cs, stl));
            foreach (var m in stl.Values) m.Dispose();
        }
        else if (config.StartFrom is { Mtl: { } mtlPath } && model is SingleTask stlModel)
        {
            using var mtl = Load(mtlPath, data.Train.ImageShape, data.Train.Tasks).Model;
            StartFrom(() => WeightTransfer.InitialiseSingleTask(stlModel, mtl));
        }
        return new PreparedRun(config, tasks, data, model) { Pretrained = pretrained };
    }

    /// <summary>A start that does not fit the run (a checkpoint of another architecture, backbone or width): the config's error.</summary>
    private static void StartFrom(Action transfer)
    {
        try { transfer(); }
        catch (ArgumentException e) { throw new ConfigException("startFrom", e.Message); }
    }

    /// <summary>Rebuilds the model a checkpoint holds (from its resolved config) and loads its weights.</summary>
    public static (RunConfig Config, MultiTaskModel Model, CheckpointMeta Meta) Load(string checkpoint, (int Channels, int Height, int Width) image, TaskSet available)
    {
        Runtime.NativeRuntime.EnsureLoaded();
        var meta = Checkpoint.ReadMeta(checkpoint);
        var config = ConfigJson.Deserialize<RunConfig>(meta.Config, source: checkpoint);
        var tasks = Factory.ResolveTasks(available, meta.Tasks);
        var model = Factory.CreateModel(config, tasks, image);
        Checkpoint.Load(checkpoint, model);
        return (config, model, meta);
    }
}
