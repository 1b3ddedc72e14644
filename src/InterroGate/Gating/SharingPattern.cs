// The sharing pattern of a gated encoder once its gates are constant: the one place where the pruning rules on
// filters are written (docs/method.md, "Pruning").
namespace InterroGate.Gating;

/// <summary>
/// Per gated layer, what the static network keeps once the gates are constant: a task filter iff its gate is 1, a
/// shared filter iff some task's gate is 0, and the mix formed on the channels some task reads from its own copy
/// (on the others every task reads the shared copy and the mix is the shared output itself). Built once from the
/// hard gates; the pruner, the pruned-cost counter, budgets and the model's task-specific fractions read it.
/// </summary>
public sealed class SharingPattern
{
    private SharingPattern(int tasks, IReadOnlyList<LayerSharing> layers) => (Tasks, Layers) = (tasks, layers);

    public int Tasks { get; }
    public IReadOnlyList<LayerSharing> Layers { get; }
    public LayerSharing this[int layer] => Layers[layer];

    /// <summary>The pattern of hard gates [layer][task][channel].</summary>
    public static SharingPattern FromGates(IReadOnlyList<bool[][]> gates)
    {
        if (gates.Count == 0) throw new ArgumentException("No gated layers.");
        int tasks = gates[0].Length;
        if (tasks == 0 || gates.Any(l => l.Length != tasks || l.Any(t => t.Length != l[0].Length)))
            throw new ArgumentException("Every gated layer needs one gate per task and channel, the same tasks in every layer.");
        return new SharingPattern(tasks, gates.Select(l => new LayerSharing(l)).ToArray());
    }

    /// <summary>
    /// Per unit of an encoder and per branch (tasks, then the shared one), the filters kept: a gated unit's are its layer's
    /// (<see cref="LayerSharing.Kept"/>); an ungated unit (block gating) and an operation feed only their own branch, so
    /// they are kept whole in a branch iff some unit reading them keeps something there. An operation nobody reads is
    /// what the heads read (the encoder checks that it is an output): kept in every task branch.
    /// </summary>
    public long[][][] KeptPerUnit(IReadOnlyList<EncoderUnit> units)
    {
        var kept = new long[units.Count][][];
        for (int u = units.Count - 1; u >= 0; u--) // readers come later, so they are settled first
        {
            var unit = units[u];
            if (unit.Gated) { kept[u] = Layers[unit.GateIndex].Kept; continue; }
            var all = Enumerable.Range(0, (int)unit.OutChannels).Select(c => (long)c).ToArray();
            bool headsRead = unit.IsOp && unit.ReadBy.Count == 0;
            kept[u] = Enumerable.Range(0, Tasks + 1).Select(b => headsRead && b < Tasks || unit.ReadBy.Any(v => kept[v][b].Length > 0) ? all : []).ToArray();
        }
        return kept;
    }

    /// <summary>Fraction of all gates that pick task <paramref name="task"/>'s own copy.</summary>
    public double TaskSpecificFraction(int task) =>
        (double)Layers.Sum(l => l.Kept[task].Length) / Layers.Sum(l => l.Channels);
}

/// <summary>One gated layer's part of a <see cref="SharingPattern"/>.</summary>
public sealed class LayerSharing
{
    internal LayerSharing(bool[][] gates)
    {
        Gates = gates.Select(g => g.ToArray()).ToArray();
        int tasks = gates.Length;
        Channels = gates[0].Length;
        var all = Enumerable.Range(0, (int)Channels).Select(c => (long)c).ToArray();
        Kept = new long[tasks + 1][];
        for (int t = 0; t < tasks; t++) Kept[t] = all.Where(c => Gates[t][c]).ToArray();
        Kept[tasks] = all.Where(c => Gates.Any(g => !g[c])).ToArray();
        Mixed = all.Where(c => Gates.Any(g => g[c])).ToArray();
    }

    /// <summary>The hard gates [task][channel]: true where the task reads its own copy.</summary>
    public bool[][] Gates { get; }
    public long Channels { get; }
    /// <summary>Filters kept per branch, in channel order: tasks 0..T−1, then the shared branch (index T).</summary>
    public long[][] Kept { get; }
    /// <summary>Channels some task reads from its own copy: where the mix of the task streams must be formed.</summary>
    public long[] Mixed { get; }
    public int SharedBranch => Gates.Length;

    /// <summary>Whether task <paramref name="task"/>'s gates split this layer: some channels its own, some shared.</summary>
    public bool IsSplit(int task) => Kept[task].Length > 0 && Kept[task].Length < Channels;
}
