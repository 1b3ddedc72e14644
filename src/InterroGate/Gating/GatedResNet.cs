// InterroGate's gated ResNet encoder (arXiv 2402.16848, Sec. 3, Algorithm 1): T task copies
// and one shared copy of every layer, joined by per-channel gates and β mixing.
using InterroGate.Backbones;
using InterroGate.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>Where gates sit in a ResNet.</summary>
public enum GatingMode
{
    /// <summary>After every conv+BN(+ReLU) unit, the stem included (default).</summary>
    Conv,
    /// <summary>Only at the stem and at residual-block outputs.</summary>
    Block,
}

/// <summary>
/// One conv+BN(+ReLU) unit of the encoder in forward order, with what the cost of a pruned network needs.
/// <see cref="Block"/> is −1 for the stem. <see cref="GateIndex"/> is −1 for an ungated unit.
/// </summary>
public sealed record EncoderUnit(
    int Block, int Unit, int GateIndex, bool LastOfBlock,
    long InChannels, long OutChannels, long Groups, long KernelArea, long OutHeight, long OutWidth,
    long DownsampleInChannels)
{
    /// <summary>MACs of one output filter of the unit's convolution.</summary>
    public long MacsPerFilter => InChannels / Groups * KernelArea * OutHeight * OutWidth;
    /// <summary>MACs of one output filter of the block's shortcut projection (0 for an identity shortcut).</summary>
    public long DownsampleMacsPerFilter => DownsampleInChannels * OutHeight * OutWidth;
}

/// <summary>
/// InterroGate's gated ResNet encoder. Each branch (task_branches.{task}, shared) is a plain
/// <see cref="ResNet"/> with its own BN and shortcut paths, so STL and MTL encoders load into it by name.
/// Forward returns the gated features of the last layer, one per task (what the heads read).
/// </summary>
public sealed class GatedResNet : nn.Module<Tensor, Tensor[]>, IGatedEncoder
{
    private readonly ModuleMap<ResNet> task_branches;
    private readonly ResNet shared;
    private readonly ModuleList<GateLayer> gates;
    private readonly ResNet[] _taskBranches;
    private readonly EncoderUnit[] _units;
    private readonly GateLayer[] _gateLayers;
    private readonly ResNet[] _allBranches; // the task branches, then the shared one
    private BranchFusion _fusion = BranchFusion.Off;
    private bool[]? _fused;

    public GatedResNet(IReadOnlyList<string> taskNames, ResNetSpec spec, long inChannels, (int Height, int Width) inputSize,
        GatingMode mode, double alphaInit, double hysteresis = 0) : base(nameof(GatedResNet))
    {
        if (taskNames.Count == 0) throw new ArgumentException("InterroGate needs at least one task.");
        Mode = mode;
        task_branches = ModuleMap.Of(taskNames.Select(n => (n, new ResNet(spec, inChannels))).ToArray());
        shared = new ResNet(spec, inChannels);
        _taskBranches = taskNames.Select(n => task_branches[n]).ToArray();
        _allBranches = [.. _taskBranches, shared];

        _units = DescribeUnits(shared, mode, inputSize);
        var gated = _units.Where(u => u.GateIndex >= 0).ToArray();
        gates = new ModuleList<GateLayer>(gated.Select((u, i) =>
            new GateLayer(taskNames.Count, u.OutChannels, alphaInit, hasMix: i < gated.Length - 1, hysteresis)).ToArray());
        _gateLayers = gates.ToArray();
        _fused = new bool[_units.Length];
        RegisterComponents();
    }

    public GatingMode Mode { get; }
    public int Tasks => _taskBranches.Length;
    public long OutChannels => shared.OutChannels;
    public long InChannels => shared.InChannels;
    public IReadOnlyList<GateLayer> GateLayers => _gateLayers;
    public IReadOnlyList<EncoderUnit> Units => _units;
    public GateNoise Noise { get; set; } = GateNoise.Off;

    /// <summary>The task branch <paramref name="t"/> (a plain ResNet).</summary>
    public ResNet TaskBranch(int t) => _taskBranches[t];
    /// <summary>The shared branch (a plain ResNet).</summary>
    public ResNet SharedBranch => shared;

    public IEnumerable<Parameter> SharedParameters() => shared.parameters();

    public PrunedCost PredictPrunedCost(SharingPattern pattern) => PrunedCost.FromGates(_units, pattern);

    /// <summary>MACs of each gated layer in one branch, for FLOPs-weighted sparsity.</summary>
    public IReadOnlyList<double> GatedLayerMacs() =>
        _units.Where(u => u.GateIndex >= 0).Select(u => (double)u.MacsPerFilter * u.OutChannels).ToArray();

    /// <summary>How the T+1 copies of each unit are computed; see <see cref="BranchFusion"/>.</summary>
    public BranchFusion Fusion
    {
        get => _fusion;
        set
        {
            _fusion = value;
            _fused = value == BranchFusion.Auto ? null : Enumerable.Repeat(value == BranchFusion.On, _units.Length).ToArray();
        }
    }

    /// <summary>Per unit (in <see cref="Units"/> order), whether it runs fused; null until Auto has measured.</summary>
    public IReadOnlyList<bool>? FusedUnits => _fused;

    /// <remarks>No timing happens here: with <see cref="BranchFusion.Auto"/> every unit runs unfused until
    /// <see cref="UseFusion"/> has been given a choice (measured once before the first step; see the InterroGate model).</remarks>
    public override Tensor[] forward(Tensor x)
    {
        var fused = _fused ?? new bool[_units.Length];
        return Run(x, Noise, (u, _, _, _, _) => fused[u]);
    }

    /// <summary>
    /// The encoder's forward pass; <paramref name="fuse"/>(unit, block, unit in block, input, block input) says
    /// whether each unit runs fused (block −1 is the stem).
    /// </summary>
    internal Tensor[] Run(Tensor x, GateNoise noise, Func<int, int, int, Branches, Branches, bool> fuse)
    {
        int T = Tasks, gate = 0, unit = 0;
        var input = Branches.Of(Enumerable.Repeat(x, T + 1).ToArray());
        // Gated units hand their outputs to the gate layer before the ReLU, which applies it (fused in its CPU kernel).
        var stem = ComputeUnit(-1, 0, input, input, fuse(unit++, -1, 0, input, input), activate: false);
        var h = ApplyGate(gate++, stem, noise).Next ?? throw new InvalidOperationException("The stem gate cannot be the last.");
        h = h.Map(shared.Pool); // every branch has the same stem pooling

        for (int j = 0; j < shared.Blocks.Count; j++)
        {
            var blockIn = h;
            int units = shared.Blocks[j].Units;
            for (int k = 0; k < units; k++)
            {
                bool gated = IsGated(Mode, k, units);
                var output = ComputeUnit(j, k, h, blockIn, fuse(unit++, j, k, h, blockIn), activate: !gated);
                if (!gated)
                {
                    h = output;
                    continue;
                }
                var (next, features) = ApplyGate(gate++, output, noise);
                if (next is null) return features;
                h = next;
            }
        }
        throw new InvalidOperationException("The last unit of the encoder must be gated.");
    }

    /// <summary>
    /// Gates of layer <paramref name="index"/> applied to a unit's outputs before their ReLU: the gated task features, and with the
    /// mix (the shared branch's next input) the next unit's T+1 inputs (null on the last gated layer).
    /// </summary>
    private (Branches? Next, Tensor[] Gated) ApplyGate(int index, Branches output, GateNoise noise)
    {
        var layer = _gateLayers[index];
        var parts = output.Parts;
        var (gated, mixed) = layer.Apply(parts[..Tasks], parts[Tasks], layer.Gates(noise), preActivation: true);
        return (mixed is null ? null : Branches.Of([.. gated, mixed]), gated);
    }

    /// <summary>
    /// Unit <paramref name="k"/> of block <paramref name="j"/> (−1: the stem) in all T+1 branches; without
    /// <paramref name="activate"/>, before the unit's ReLU.
    /// </summary>
    internal Branches ComputeUnit(int j, int k, Branches h, Branches blockIn, bool fuse, bool activate = true)
    {
        int n = _allBranches.Length;
        Tensor Activation(Tensor y) => activate ? nn.functional.relu(y) : y;
        if (j < 0)
            return fuse
                ? Branches.OfFused(Activation(FusedBranches.Norm(_allBranches.Select(b => b.StemNorm).ToArray(),
                    FusedBranches.Conv(_allBranches.Select(b => b.StemConv).ToArray(), h[0], sameInput: true))), n)
                : Branches.Of(_allBranches.Select((b, i) => Activation(b.StemPreActivation(h[i]))).ToArray());

        var blocks = _allBranches.Select(b => b.Blocks[j]).ToArray();
        if (!fuse) return Branches.Of(blocks.Select((b, i) => Activation(b.PreActivation(k, h[i], blockIn[i]))).ToArray());

        var y = FusedBranches.Norm(blocks.Select(b => b.NormOf(k)).ToArray(),
            FusedBranches.Conv(blocks.Select(b => b.ConvOf(k)).ToArray(), h.Fused, sameInput: false));
        if (k == blocks[0].Units - 1)
            y = y + (blocks[0].Downsample is null
                ? blockIn.Fused
                : FusedBranches.Norm(blocks.Select(b => (BatchNorm2d)b.Downsample![1]).ToArray(),
                    FusedBranches.Conv(blocks.Select(b => (Conv2d)b.Downsample![0]).ToArray(), blockIn.Fused, sameInput: false)));
        return Branches.OfFused(Activation(y), n);
    }

    /// <summary>Which units run fused, one flag per unit in <see cref="Units"/> order (a measured choice under <see cref="BranchFusion.Auto"/>).</summary>
    public void UseFusion(IReadOnlyList<bool> perUnit)
    {
        if (perUnit.Count != _units.Length) throw new ArgumentException($"Need one flag per unit ({_units.Length}), got {perUnit.Count}.");
        _fused = perUnit.ToArray();
    }

    /// <summary>The weights of unit <paramref name="k"/> of block <paramref name="j"/> (−1: the stem) in every branch.</summary>
    internal IEnumerable<Tensor> UnitParameters(int j, int k) => _allBranches.SelectMany(b =>
    {
        if (j < 0) return b.StemConv.parameters().Concat(b.StemNorm.parameters());
        var block = b.Blocks[j];
        var ps = block.ConvOf(k).parameters().Concat(block.NormOf(k).parameters());
        return k == block.Units - 1 && block.Downsample is { } ds ? ps.Concat(ds.parameters()) : ps;
    }).Select(p => (Tensor)p);

    private static bool IsGated(GatingMode mode, int unit, int units) => mode == GatingMode.Conv || unit == units - 1;

    /// <summary>The units in forward order with their gate index and output sizes (from the layer geometry).</summary>
    private static EncoderUnit[] DescribeUnits(ResNet net, GatingMode mode, (int Height, int Width) size)
    {
        var units = new List<EncoderUnit>();
        int gate = 0;
        var hw = ((long)size.Height, (long)size.Width);
        hw = OutputSize(net.StemConv, hw);
        units.Add(Describe(-1, 0, gate++, false, net.StemConv, hw, 0));
        if (net.StemPool is { } pool) hw = OutputSize(pool.kernel_size[0], pool.stride?[0] ?? pool.kernel_size[0], pool.padding?[0] ?? 0, 1, hw);
        for (int j = 0; j < net.Blocks.Count; j++)
        {
            var block = net.Blocks[j];
            for (int k = 0; k < block.Units; k++)
            {
                hw = OutputSize(block.ConvOf(k), hw);
                bool last = k == block.Units - 1;
                long dsIn = last && block.Downsample is not null ? ((Conv2d)block.Downsample[0]).in_channels : 0;
                units.Add(Describe(j, k, IsGated(mode, k, block.Units) ? gate++ : -1, last, block.ConvOf(k), hw, dsIn));
            }
        }
        return units.ToArray();
    }

    private static (long, long) OutputSize(Conv2d conv, (long H, long W) hw) =>
        (OutputSize(conv.kernel_size[0], conv.stride[0], conv.padding![0], conv.dilation[0], hw).Item1,
         OutputSize(conv.kernel_size[1], conv.stride[1], conv.padding![1], conv.dilation[1], hw).Item2);

    private static (long, long) OutputSize(long kernel, long stride, long padding, long dilation, (long H, long W) hw) =>
        ((hw.H + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1, (hw.W + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1);

    private static EncoderUnit Describe(int block, int unit, int gate, bool last, Conv2d conv, (long H, long W) hw, long dsIn) =>
        new(block, unit, gate, last, conv.in_channels, conv.out_channels, conv.groups,
            conv.kernel_size[0] * conv.kernel_size[1], hw.H, hw.W, dsIn);
}
