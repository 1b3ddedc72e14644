using static TorchSharp.torch;

namespace InterroGate.Architectures;

/// <summary>
/// Copies weights between models by parameter name: how InterroGate starts from trained STL and MTL
/// models: task branch and head t from STL_t, the shared branch from the MTL encoder.
/// </summary>
public static class WeightTransfer
{
    /// <summary>
    /// For every entry of <paramref name="target"/>'s state under <paramref name="targetPrefix"/>, copies the
    /// entry of <paramref name="source"/> with the same suffix under <paramref name="sourcePrefix"/>.
    /// Missing or mis-shaped entries are listed by name in one error. Returns the number copied.
    /// </summary>
    public static int Copy(nn.Module target, string targetPrefix, IReadOnlyDictionary<string, Tensor> source, string sourcePrefix)
    {
        var problems = new List<string>();
        var pairs = new List<(Tensor To, Tensor From)>();
        foreach (var (name, to) in target.state_dict())
        {
            if (!name.StartsWith(targetPrefix, StringComparison.Ordinal)) continue;
            string key = sourcePrefix + name[targetPrefix.Length..];
            if (!source.TryGetValue(key, out var from)) problems.Add($"missing {key}");
            else if (!from.shape.SequenceEqual(to.shape)) problems.Add($"{key} has shape [{string.Join(",", from.shape)}], {name} needs [{string.Join(",", to.shape)}]");
            else pairs.Add((to, from));
        }
        if (problems.Count > 0)
            throw new ArgumentException($"Cannot copy '{sourcePrefix}*' into '{targetPrefix}*': {string.Join("; ", problems)}.");
        if (pairs.Count == 0) throw new ArgumentException($"The target has no entries under '{targetPrefix}'.");
        using var _ = no_grad();
        foreach (var (to, from) in pairs) to.copy_(from);
        return pairs.Count;
    }

    /// <summary>Starts <paramref name="model"/> from trained single-task models (by task) and/or an MTL model.</summary>
    public static void InitialiseInterroGate(InterroGateModel model, IReadOnlyDictionary<string, MultiTaskModel> stlByTask, MultiTaskModel? mtl)
    {
        foreach (var (task, stl) in stlByTask)
        {
            if (stl is not SingleTask) throw new ArgumentException($"The start for task '{task}' must be an STL model, not {stl.Architecture}.");
            var state = stl.state_dict();
            Copy(model, $"encoder.task_branches.{task}.", state, $"encoders.{task}.");
            Copy(model, $"heads.{task}.", state, $"heads.{task}.");
        }
        if (mtl is not null)
        {
            if (mtl is not HardSharing) throw new ArgumentException($"The shared branch starts from an MTL model, not {mtl.Architecture}.");
            Copy(model, "encoder.shared.", mtl.state_dict(), "encoder.");
        }
    }

    /// <summary>Starts each task's network and head of a cross-stitch model from that task's trained STL model (the paper's start).</summary>
    public static void InitialiseCrossStitch(CrossStitch model, IReadOnlyDictionary<string, MultiTaskModel> stlByTask)
    {
        foreach (var (task, stl) in stlByTask)
        {
            if (stl is not SingleTask) throw new ArgumentException($"The start for task '{task}' must be an STL model, not {stl.Architecture}.");
            var state = stl.state_dict();
            Copy(model, $"encoders.{task}.", state, $"encoders.{task}.");
            Copy(model, $"heads.{task}.", state, $"heads.{task}.");
        }
    }

    /// <summary>Starts every task's encoder of an STL model from a trained MTL encoder (heads stay fresh).</summary>
    public static void InitialiseSingleTask(SingleTask model, MultiTaskModel mtl)
    {
        if (mtl is not HardSharing) throw new ArgumentException($"STL encoders start from an MTL model, not {mtl.Architecture}.");
        var state = mtl.state_dict();
        foreach (var task in model.Tasks) Copy(model, $"encoders.{task.Name}.", state, "encoder.");
    }
}
