// How a model's parameters are optimised: groups, each with its name, parameters, learning rate and kind.
using TorchSharp.Modules;

namespace InterroGate.Architectures;

/// <summary>How the Trainer optimises a <see cref="ParameterGroup"/>.</summary>
public enum GroupKind
{
    /// <summary>
    /// Network weights: Adam with the training's weight decay, at the group's learning rate (the training's
    /// <c>lr</c> where it gives none) times the schedule's factor.
    /// </summary>
    Weights,
    /// <summary>
    /// Gates (InterroGate's α and β, cross-stitch units): plain SGD (or Adam without weight decay, see
    /// <see cref="ParameterGroup.GateOptimizer"/>) at the group's constant learning rate, stepped only
    /// while the gates learn (not in the last <c>training.freezeGatesLastEpochs</c> epochs); the model sees their
    /// gradients before each step (<see cref="MultiTaskModel.ObserveGradients"/>).
    /// </summary>
    Gates,
}

/// <summary>How a gate group is optimised.</summary>
public enum GateOptimizer
{
    /// <summary>Plain SGD: a gate moves by the learning rate times its gradient (the paper's).</summary>
    Sgd,
    /// <summary>Adam without weight decay: a gate moves by about the learning rate per step in the direction of its running mean gradient.</summary>
    Adam,
}

/// <summary>
/// A group of parameters with its own optimiser settings. <see cref="Name"/> names the group's optimiser state in
/// checkpoints ("weights", "gates"); <see cref="LearningRate"/> null: the training's learning rate.
/// </summary>
public sealed record ParameterGroup(string Name, IReadOnlyList<Parameter> Parameters, GroupKind Kind, double? LearningRate = null)
{
    /// <summary>The optimiser of a <see cref="GroupKind.Gates"/> group.</summary>
    public GateOptimizer GateOptimizer { get; init; } = GateOptimizer.Sgd;

    /// <summary>
    /// With <paramref name="headLr"/>, each weight group split in two: its parameters outside the heads, and the heads'
    /// (<c>heads.*</c>) as "{name}.heads" at <paramref name="headLr"/>; without, the groups as they are.
    /// </summary>
    public static IReadOnlyList<ParameterGroup> WithHeadLr(IReadOnlyList<ParameterGroup> groups, TorchSharp.torch.nn.Module model, double? headLr)
    {
        if (headLr is null) return groups;
        var heads = new HashSet<Parameter>(model.named_parameters().Where(p => p.name.StartsWith("heads.", StringComparison.Ordinal)).Select(p => p.parameter),
            ReferenceEqualityComparer.Instance);
        return groups.SelectMany(g => g.Kind != GroupKind.Weights
                ? [g]
                : new[]
                {
                    g with { Parameters = g.Parameters.Where(p => !heads.Contains(p)).ToArray() },
                    new ParameterGroup(g.Name + ".heads", g.Parameters.Where(heads.Contains).ToArray(), GroupKind.Weights, headLr),
                })
            .Where(g => g.Parameters.Count > 0 || g.Kind != GroupKind.Weights)
            .ToArray();
    }

    /// <summary>Checks that <paramref name="groups"/> hold every parameter of <paramref name="model"/> exactly once, under distinct names.</summary>
    public static void CheckCovers(IReadOnlyList<ParameterGroup> groups, TorchSharp.torch.nn.Module model)
    {
        if (groups.Select(g => g.Name).Distinct().Count() != groups.Count)
            throw new InvalidOperationException($"Two parameter groups share a name: {string.Join(", ", groups.Select(g => g.Name))}.");
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        foreach (var p in groups.SelectMany(g => g.Parameters))
            if (!seen.Add(p)) throw new InvalidOperationException("A parameter is in two parameter groups.");
        var missing = model.named_parameters().Where(p => !seen.Contains(p.parameter)).Select(p => p.name).ToArray();
        if (missing.Length > 0) throw new InvalidOperationException($"Parameters in no group: {string.Join(", ", missing.Take(5))}{(missing.Length > 5 ? ", ..." : "")}.");
        if (seen.Count != model.parameters().Count()) throw new InvalidOperationException("A parameter group holds a parameter the model does not have.");
    }
}
