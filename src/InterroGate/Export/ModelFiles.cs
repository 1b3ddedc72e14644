using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Tasks;
using InterroGate.Training;

using InterroGate.Pruning;
namespace InterroGate.Export;

/// <summary>Opens what the commands accept as a model: a training checkpoint or a static model file.</summary>
public static class ModelFiles
{
    /// <summary>
    /// The model a checkpoint holds and the input it was trained on. Checkpoints record their tasks and input;
    /// for older ones the run's data set is opened to find them.
    /// </summary>
    public static (MultiTaskModel Model, ImageInput Input, CheckpointMeta Meta) LoadCheckpoint(string path)
    {
        Runtime.NativeRuntime.EnsureLoaded();
        var meta = Checkpoint.ReadMeta(path);
        ImageInput input;
        TaskSet tasks;
        if (meta.Input is { } recorded && meta.TaskSpecs is { Count: > 0 } specs)
        {
            try { (input, tasks) = (recorded, new TaskSet(specs)); }
            catch (ArgumentException e) { throw new CheckpointException(path, $"its task list is not valid: {e.Message}"); }
        }
        else
        {
            var config = ConfigJson.Deserialize<RunConfig>(meta.Config, source: path);
            var data = DataCatalog.Open(config.Data);
            (input, tasks) = (data.Train.Input, data.Train.Tasks);
        }
        MultiTaskModel model;
        try { (_, model, _) = PreparedRun.Load(path, (input.Channels, input.Height, input.Width), tasks); }
        catch (ArgumentException e) { throw new CheckpointException(path, $"describes a model that cannot be built: {e.Message}"); }
        model.eval();
        return (model, input, meta);
    }

    /// <summary>Whether <paramref name="path"/> is a static model file: a safetensors file, by its content (<see cref="StaticModelFile.IsStaticModel"/>).</summary>
    public static bool IsStatic(string path) => StaticModelFile.IsStaticModel(path);

    /// <summary>A static network from a static model file, or from any checkpoint (InterroGate pruned, STL/MTL converted); the caller disposes it.</summary>
    public static StaticGraph LoadStatic(string path)
    {
        if (IsStatic(path)) return StaticModelFile.Load(path);
        var (model, input, _) = LoadCheckpoint(path);
        using (model) return StaticConversion.ToStatic(model, input).Graph;
    }
}

/// <summary>
/// A trained model's weights as PyTorch names them: the model's state dict (every parameter and buffer, BN running
/// statistics and InterroGate's α and β included) in a safetensors file, with the run's configuration, tasks and input
/// in its metadata, so that a PyTorch model with the same module names loads it with <c>load_state_dict(strict=True)</c>
/// (bench/reference/interrogate_torch.py's <c>load_export</c> builds the model from the metadata). The pruned network's
/// portable form stays ONNX.
/// </summary>
public static class StateDictExport
{
    public const string Format = "interrogate-state-dict";

    public static void Save(string path, MultiTaskModel model, CheckpointMeta meta, ImageInput input)
    {
        var state = model.state_dict();
        var metadata = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["architecture"] = meta.Architecture,
            ["backbone"] = meta.Backbone,
            ["tasks"] = System.Text.Json.JsonSerializer.Serialize(model.Tasks.Select(t => new { name = t.Name, kind = t.Kind.ToString().ToLowerInvariant(), outputs = t.Outputs })),
            ["input"] = System.Text.Json.JsonSerializer.Serialize(new { channels = input.Channels, height = input.Height, width = input.Width, mean = input.Mean, std = input.Std }),
            ["config"] = meta.Config,
        };
        // A budget's controller state (budget.*: the adapted λ and running gradients) is training state, not the model's.
        SafeTensors.Save(path, state.Where(kv => !kv.Key.StartsWith("budget.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => kv.Value), metadata);
    }
}
