// The cost the static network will have once the current gates are made constant and every filter
// nobody reads is removed, computed from the gates without building that network.
namespace InterroGate.Gating;

/// <summary>
/// Parameters and MACs of the pruned encoder (convolutions only; 1 MAC = 2 FLOPs). BN is folded into
/// each kept filter (one bias per filter); each kept mix holds T weights per channel that some task reads from its own copy.
/// Counts per branch let reports show what each task keeps of its own.
/// </summary>
public sealed record PrunedCost(long Macs, long Parameters, IReadOnlyList<long> TaskMacs, long SharedMacs, long KeptFilters, long TotalFilters)
{
    /// <summary>Applies <paramref name="pattern"/> (what each gated layer keeps) to <paramref name="units"/>.</summary>
    public static PrunedCost FromGates(IReadOnlyList<EncoderUnit> units, SharingPattern pattern)
    {
        int tasks = pattern.Tasks;
        int n = units.Count, branches = tasks + 1, S = tasks; // branch index S is the shared branch
        var kept = new long[n, branches];

        // Gated units: the filters the pattern keeps per branch.
        for (int u = 0; u < n; u++)
        {
            if (units[u].GateIndex < 0) continue;
            var layer = pattern[units[u].GateIndex];
            for (int b = 0; b < branches; b++) kept[u, b] = layer.Kept[b].Length;
        }
        // Ungated units (inside a block under block gating) feed only their own branch's next unit:
        // kept whole iff that branch keeps anything at the block's output.
        for (int u = n - 1; u >= 0; u--)
        {
            if (units[u].GateIndex >= 0) continue;
            int last = u;
            while (!units[last].LastOfBlock) last++;
            for (int b = 0; b < branches; b++) kept[u, b] = kept[last, b] > 0 ? units[u].OutChannels : 0;
        }

        long macs = 0, parameters = 0, sharedMacs = 0, keptFilters = 0, totalFilters = 0;
        var taskMacs = new long[tasks];
        for (int u = 0; u < n; u++)
        {
            var unit = units[u];
            long filterParams = unit.InChannels / unit.Groups * unit.KernelArea + 1;
            for (int b = 0; b < branches; b++)
            {
                long k = kept[u, b];
                long m = k * (unit.MacsPerFilter + unit.DownsampleMacsPerFilter);
                long p = k * filterParams + (unit.DownsampleInChannels > 0 ? k * (unit.DownsampleInChannels + 1) : 0);
                macs += m;
                parameters += p;
                if (b == S) sharedMacs += m; else taskMacs[b] += m;
                keptFilters += k;
            }
            totalFilters += branches * unit.OutChannels;

            // The mix after a gated unit feeds the shared branch's next unit (and its block's shortcut):
            // it stays iff the shared branch keeps anything in the unit or block that reads it.
            // On a channel every task reads from the shared copy, the mix is the shared output itself (its
            // weights sum to 1): T weights per channel that some task reads from its own copy.
            if (unit.GateIndex >= 0 && u + 1 < n && SharedReads(units, kept, u + 1, S))
                parameters += tasks * pattern[unit.GateIndex].Mixed.Length;
        }
        return new PrunedCost(macs, parameters, taskMacs, sharedMacs, keptFilters, totalFilters);
    }

    /// <summary>
    /// Applies <paramref name="pattern"/> to an encoder described unit by unit as a graph (<see cref="GatedUnit"/>, every
    /// unit gated, as in the gated HRNet). A kept filter of a unit is kept in every convolution the unit sums (its main
    /// path, shortcut or fuse paths), each with its own folded bias. A unit's mix stays iff the shared branch keeps a
    /// filter in some unit that reads it.
    /// </summary>
    public static PrunedCost FromUnits(IReadOnlyList<GatedUnit> units, SharingPattern pattern)
    {
        int tasks = pattern.Tasks;
        int n = units.Count, branches = tasks + 1, S = tasks;
        var kept = new long[n, branches];
        var mixed = new long[n];
        for (int u = 0; u < n; u++)
        {
            var layer = pattern[units[u].GateIndex];
            for (int b = 0; b < branches; b++) kept[u, b] = layer.Kept[b].Length;
            mixed[u] = layer.Mixed.Length;
        }
        var sharedReads = new bool[n];
        for (int v = 0; v < n; v++)
            if (kept[v, S] > 0)
                foreach (var u in units[v].Reads) sharedReads[u] = true;

        long macs = 0, parameters = 0, sharedMacs = 0, keptFilters = 0, totalFilters = 0;
        var taskMacs = new long[tasks];
        for (int u = 0; u < n; u++)
        {
            var unit = units[u];
            long filterMacs = unit.Convs.Sum(c => c.MacsPerFilter), filterParams = unit.Convs.Sum(c => c.ParametersPerFilter);
            for (int b = 0; b < branches; b++)
            {
                long k = kept[u, b];
                macs += k * filterMacs;
                parameters += k * filterParams;
                if (b == S) sharedMacs += k * filterMacs; else taskMacs[b] += k * filterMacs;
                keptFilters += k;
            }
            totalFilters += branches * unit.OutChannels;
            // T mix weights per channel that some task reads from its own copy (elsewhere the mix is the shared output).
            if (unit.HasMix && sharedReads[u]) parameters += tasks * mixed[u];
        }
        return new PrunedCost(macs, parameters, taskMacs, sharedMacs, keptFilters, totalFilters);
    }

    private static bool SharedReads(IReadOnlyList<EncoderUnit> units, long[,] kept, int next, int shared)
    {
        if (kept[next, shared] > 0) return true;
        if (units[next].Unit != 0) return false;
        int last = next;
        while (!units[last].LastOfBlock) last++;
        return kept[last, shared] > 0; // the block's shortcut reads the mix too
    }
}

/// <summary>One convolution (with BN folded: one bias per filter) inside a gated unit, at its output size.</summary>
public sealed record UnitConv(long InChannels, long Groups, long KernelArea, long OutHeight, long OutWidth)
{
    /// <summary>MACs of one output filter.</summary>
    public long MacsPerFilter => InChannels / Groups * KernelArea * OutHeight * OutWidth;
    /// <summary>Weights and the folded bias of one output filter.</summary>
    public long ParametersPerFilter => InChannels / Groups * KernelArea + 1;
}

/// <summary>
/// One gated unit of an encoder whose units form a graph (the gated HRNet), in forward order: its gate layer,
/// its output channels, the convolutions whose outputs it sums before its ReLU (<see cref="Convs"/>: the main
/// convolution and a shortcut projection, or a fuse layer's paths), the units whose gated features it reads
/// (<see cref="Reads"/>; the image is not listed) and whether its gate layer mixes (false on the last ones).
/// </summary>
public sealed record GatedUnit(string Name, int GateIndex, long OutChannels, IReadOnlyList<UnitConv> Convs, IReadOnlyList<int> Reads, bool HasMix,
    long OutHeight, long OutWidth)
{
    /// <summary>MACs of the unit in one branch (all its filters).</summary>
    public long Macs => OutChannels * Convs.Sum(c => c.MacsPerFilter);
}
