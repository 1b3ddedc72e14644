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
public sealed class GatedResNet : nn.Module<Tensor, Tensor[]>
{
    private readonly ModuleDict<ResNet> task_branches;
    private readonly ResNet shared;
    private readonly ModuleList<GateLayer> gates;
    private readonly ResNet[] _taskBranches;
    private readonly EncoderUnit[] _units;
    private readonly GateLayer[] _gateLayers;

    public GatedResNet(IReadOnlyList<string> taskNames, ResNetSpec spec, long inChannels, (int Height, int Width) inputSize,
        GatingMode mode, double alphaInit) : base(nameof(GatedResNet))
    {
        if (taskNames.Count == 0) throw new ArgumentException("InterroGate needs at least one task.");
        Mode = mode;
        task_branches = nn.ModuleDict(taskNames.Select(n => (n, new ResNet(spec, inChannels))).ToArray());
        shared = new ResNet(spec, inChannels);
        _taskBranches = taskNames.Select(n => task_branches[n]).ToArray();

        _units = DescribeUnits(shared, mode, inputSize);
        var gated = _units.Where(u => u.GateIndex >= 0).ToArray();
        gates = new ModuleList<GateLayer>(gated.Select((u, i) =>
            new GateLayer(taskNames.Count, u.OutChannels, alphaInit, hasMix: i < gated.Length - 1)).ToArray());
        _gateLayers = gates.ToArray();
        RegisterComponents();
    }

    public GatingMode Mode { get; }
    public int Tasks => _taskBranches.Length;
    public long OutChannels => shared.OutChannels;
    public IReadOnlyList<GateLayer> GateLayers => _gateLayers;
    public IReadOnlyList<EncoderUnit> Units => _units;
    public GateNoise Noise { get; set; } = GateNoise.Off;

    /// <summary>The task branch <paramref name="t"/> (a plain ResNet).</summary>
    public ResNet TaskBranch(int t) => _taskBranches[t];
    /// <summary>The shared branch (a plain ResNet).</summary>
    public ResNet SharedBranch => shared;

    /// <summary>MACs of each gated layer in one branch, for FLOPs-weighted sparsity.</summary>
    public IReadOnlyList<double> GatedLayerMacs() =>
        _units.Where(u => u.GateIndex >= 0).Select(u => (double)u.MacsPerFilter * u.OutChannels).ToArray();

    public override Tensor[] forward(Tensor x)
    {
        int T = Tasks, gate = 0;

        // Stem: every branch runs its own copy; the gate picks each task's channels.
        var stemOut = _taskBranches.Select(b => b.StemUnit(x)).ToArray();
        var (feats, mix) = ApplyGate(gate++, stemOut, shared.StemUnit(x));
        feats = feats.Select(shared.Pool).ToArray(); // every branch has the same stem pooling
        mix = mix is null ? null : shared.Pool(mix);

        for (int j = 0; j < shared.Blocks.Count; j++)
        {
            var sharedBlock = shared.Blocks[j];
            Tensor[] blockIn = feats, h = feats;
            Tensor blockInShared = mix!, hShared = mix!;
            for (int k = 0; k < sharedBlock.Units; k++)
            {
                var outTasks = new Tensor[T];
                for (int t = 0; t < T; t++) outTasks[t] = _taskBranches[t].Blocks[j].Unit(k, h[t], blockIn[t]);
                var outShared = sharedBlock.Unit(k, hShared, blockInShared);
                if (IsGated(Mode, k, sharedBlock.Units))
                {
                    var (g, m) = ApplyGate(gate++, outTasks, outShared);
                    h = g;
                    hShared = m!;
                }
                else
                {
                    h = outTasks;
                    hShared = outShared;
                }
            }
            feats = h;
            mix = hShared;
        }
        return feats;
    }

    private (Tensor[] Gated, Tensor? Mixed) ApplyGate(int index, Tensor[] taskOut, Tensor sharedOut)
    {
        var layer = _gateLayers[index];
        return layer.Apply(taskOut, sharedOut, layer.Gates(Noise));
    }

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
