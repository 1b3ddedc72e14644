// The cost the static network will have once the current gates are made constant and every filter
// nobody reads is removed, computed from the gates without building that network.
namespace InterroGate.Gating;

/// <summary>
/// Parameters and MACs of the pruned encoder (convolutions and linear layers, and the operations between them such as
/// attention and layer norms; 1 MAC = 2 FLOPs). BN is folded into
/// each kept filter (one bias per filter); each kept mix holds T weights per channel that some task reads from its own copy.
/// Counts per branch let reports show what each task keeps of its own.
/// </summary>
public sealed record PrunedCost(long Macs, long Parameters, IReadOnlyList<long> TaskMacs, long SharedMacs, long KeptFilters, long TotalFilters)
{
    /// <summary>
    /// Applies <paramref name="pattern"/> to the units of a gated encoder (docs/method.md, "Pruning"). A gated unit keeps
    /// per branch the filters the pattern keeps; an ungated unit (block gating) feeds only its own branch, so it is kept
    /// whole in a branch iff some unit reading it keeps a filter there. A kept filter of a unit is kept in every
    /// convolution the unit sums (its main convolution, shortcut projection or fuse paths), each with its own folded
    /// bias. A gated unit's mix stays iff the shared branch keeps a filter in some unit that reads it; it holds T weights
    /// per channel some task reads from its own copy (elsewhere the mix is the shared output itself, its weights summing to 1).
    /// </summary>
    public static PrunedCost Of(IReadOnlyList<EncoderUnit> units, SharingPattern pattern)
    {
        int tasks = pattern.Tasks;
        int n = units.Count, branches = tasks + 1, S = tasks; // branch index S is the shared branch
        var kept = pattern.KeptPerUnit(units);
        long macs = 0, parameters = 0, sharedMacs = 0, keptFilters = 0, totalFilters = 0;
        var taskMacs = new long[tasks];
        for (int u = 0; u < n; u++)
        {
            var unit = units[u];
            if (unit.IsOp)
            {
                // An operation costs its own MACs and parameters in each branch that runs it; it has no filters.
                for (int b = 0; b < branches; b++)
                {
                    if (kept[u][b].Length == 0) continue;
                    macs += unit.OpMacs;
                    parameters += unit.OpParameters;
                    if (b == S) sharedMacs += unit.OpMacs; else taskMacs[b] += unit.OpMacs;
                }
                continue;
            }
            long filterMacs = unit.Convs.Sum(c => c.MacsPerFilter) + unit.ThenMacsPerFilter,
                filterParams = unit.Convs.Sum(c => c.ParametersPerFilter) + unit.ThenParametersPerFilter;
            for (int b = 0; b < branches; b++)
            {
                long k = kept[u][b].Length;
                macs += k * filterMacs;
                parameters += k * filterParams;
                if (b == S) sharedMacs += k * filterMacs; else taskMacs[b] += k * filterMacs;
                keptFilters += k;
            }
            totalFilters += branches * unit.OutChannels;
            // The mix weights of channels some task reads from its own copy; one task's mix is its own output, with no weights.
            if (tasks > 1 && unit.HasMix && unit.ReadBy.Any(v => kept[v][S].Length > 0)) parameters += tasks * pattern[unit.GateIndex].Mixed.Length;
        }
        return new PrunedCost(macs, parameters, taskMacs, sharedMacs, keptFilters, totalFilters);
    }
}

/// <summary>
/// One convolution (with BN folded: one bias per filter) or linear layer (on tokens: kernel 1, output height 1 and width
/// the token count) inside a gated unit, at its output size.
/// </summary>
public sealed record UnitConv(long InChannels, long Groups, long KernelArea, long OutHeight, long OutWidth)
{
    /// <summary>MACs of one output filter.</summary>
    public long MacsPerFilter => InChannels / Groups * KernelArea * OutHeight * OutWidth;
    /// <summary>Weights and the folded bias of one output filter.</summary>
    public long ParametersPerFilter => InChannels / Groups * KernelArea + 1;
}
