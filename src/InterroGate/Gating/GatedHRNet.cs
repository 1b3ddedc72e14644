// InterroGate's gated HRNetV2 encoder (arXiv 2402.16848, Sec. 3, the HRNet-18 experiments): T task copies and one
// shared copy of every convolution of every branch and fusion layer, joined by per-channel gates and β mixing.
using InterroGate.Backbones;
using InterroGate.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>
/// InterroGate's gated HRNet encoder. Each branch (task_branches.{task}, shared) is a plain <see cref="HRNet"/> with
/// its own BN, shortcuts and fuse layers, so STL and MTL encoders load into it by name. A gate follows every
/// conv+BN(+ReLU) unit (docs/method.md, "The gated layer"): the two stem convolutions; each unit of the layer1 Bottlenecks and of every
/// branch's BasicBlocks (the last one after the residual add and ReLU); each transition convolution (every stride-2
/// step of a new branch included); each intermediate 3×3/2 step of a multi-step downsampling fuse path; and each
/// fuse output after its sum and ReLU (the paths' last conv+BN are summed into it like a residual block's shortcut).
/// A unit reads the gated task features of the units it reads from (the shared branch: their mix). Forward returns,
/// per task, that task's gated final branch outputs upsampled to the first and concatenated (as <see cref="HRNet"/>).
/// </summary>
public sealed class GatedHRNet : nn.Module<Tensor, Tensor[]>, IGatedEncoder
{
    /// <summary>The input of a unit that reads the image.</summary>
    internal const int Image = -1;

    private readonly ModuleMap<HRNet> task_branches;
    private readonly HRNet shared;
    private readonly ModuleList<GateLayer> gates;
    private readonly HRNet[] _taskBranches;
    private readonly HRNet[] _allBranches; // the task branches, then the shared one
    private readonly GateLayer[] _gateLayers;
    private readonly Step[] _steps;
    private readonly int[] _final;
    private readonly GatedUnit[] _units;

    public GatedHRNet(IReadOnlyList<string> taskNames, HRNetSpec spec, long inChannels, (int Height, int Width) inputSize, double alphaInit, double hysteresis = 0)
        : base(nameof(GatedHRNet))
    {
        if (taskNames.Count == 0) throw new ArgumentException("InterroGate needs at least one task.");
        task_branches = ModuleMap.Of(taskNames.Select(n => (n, new HRNet(spec, inChannels))).ToArray());
        shared = new HRNet(spec, inChannels);
        _taskBranches = taskNames.Select(n => task_branches[n]).ToArray();
        _allBranches = [.. _taskBranches, shared];

        (_steps, _final) = Plan(shared);
        _units = Describe(shared, _steps, _final, inputSize);
        gates = new ModuleList<GateLayer>(_units.Select(u => new GateLayer(taskNames.Count, u.OutChannels, alphaInit, u.HasMix, hysteresis)).ToArray());
        _gateLayers = gates.ToArray();
        RegisterComponents();
    }

    public int Tasks => _taskBranches.Length;
    public long InChannels => shared.InChannels;
    public long OutChannels => shared.OutChannels;
    public IReadOnlyList<GateLayer> GateLayers => _gateLayers;
    public GateNoise Noise { get; set; } = GateNoise.Off;

    /// <summary>The gated units in forward order (unit i has gate layer i), with what the pruned cost needs.</summary>
    public IReadOnlyList<GatedUnit> Units => _units;

    /// <summary>The units whose gated features are the final branch outputs, highest resolution first (gates without mix).</summary>
    public IReadOnlyList<int> FinalUnits => _final;

    /// <summary>The task branch <paramref name="t"/> (a plain HRNet).</summary>
    public HRNet TaskBranch(int t) => _taskBranches[t];

    /// <summary>The shared branch (a plain HRNet).</summary>
    public HRNet SharedBranch => shared;

    /// <summary>How each unit computes its output in one branch, in forward order.</summary>
    internal IReadOnlyList<Step> Steps => _steps;

    public IEnumerable<Parameter> SharedParameters() => shared.parameters();

    public IReadOnlyList<double> GatedLayerMacs() => _units.Select(u => (double)u.Macs).ToArray();

    public PrunedCost PredictPrunedCost(SharingPattern pattern) => PrunedCost.FromUnits(_units, pattern);

    public override Tensor[] forward(Tensor x)
    {
        int T = Tasks;
        var streams = new Tensor[_steps.Length][]; // per unit: the gated task features, then the mix (none after the last gates)
        for (int u = 0; u < _steps.Length; u++)
        {
            var outputs = _allBranches.Select((net, b) => Compute(_steps[u], net, id => id == Image ? x : streams[id][b])).ToArray();
            var layer = _gateLayers[u];
            var (gated, mixed) = layer.Apply(outputs[..T], outputs[T], layer.Gates(Noise));
            streams[u] = mixed is null ? gated : [.. gated, mixed];
        }
        return Enumerable.Range(0, T).Select(t => shared.Concatenate(_final.Select(u => streams[u][t]).ToArray())).ToArray(); // [B, ΣC_b, H/4, W/4]
    }

    /// <summary>The output of <paramref name="step"/> in branch <paramref name="net"/>, before its gates; <paramref name="input"/> gives that branch's input from a unit.</summary>
    private Tensor Compute(Step step, HRNet net, Func<int, Tensor> input)
    {
        switch (step)
        {
            case ConvStep c:
            {
                var (conv, norm) = c.Layer(net);
                return nn.functional.relu(norm.call(conv.call(input(c.Input))));
            }
            case ResidualStep r:
                return r.Block(net).Unit(r.K, input(r.Input), input(r.BlockInput));
            case FuseStep f:
            {
                // As HighResolutionModule.Fuse, with the intermediate steps of the downsampling paths already gated.
                var module = f.Module(net);
                var target = input(f.Inputs[f.To]);
                Tensor? y = null;
                for (int j = 0; j < f.Inputs.Length; j++)
                {
                    var term = j == f.To ? target
                        : j > f.To ? HighResolutionModule.ResizeTo(FusePath(module, f.To, j).call(input(f.Inputs[j])), target, shared.Spec.AlignCorners)
                        : FusePath(module, f.To, j).call(input(f.Inputs[j]));
                    y = y is null ? term : y + term;
                }
                return nn.functional.relu(y!);
            }
            default:
                throw new InvalidOperationException($"Unknown HRNet unit {step.GetType().Name}.");
        }
    }

    /// <summary>
    /// The last conv + BN of the fuse path from branch <paramref name="from"/> into output <paramref name="to"/>: the
    /// 1×1 of an upsampling path, the last 3×3/2 step (no ReLU) of a downsampling one.
    /// </summary>
    internal static Sequential FusePath(HighResolutionModule module, int to, int from)
    {
        var path = module.FuseLayer(to, from) ?? throw new ArgumentException($"Output {to} reads branch {from} as is.");
        return from > to ? path : (Sequential)path[to - from - 1];
    }

    /// <summary>The conv and BN of a conv + BN (+ ReLU) Sequential.</summary>
    internal static (Conv2d Conv, BatchNorm2d Norm) ConvNorm(Sequential s) => ((Conv2d)s[0], (BatchNorm2d)s[1]);

    /// <summary>
    /// The units of <paramref name="net"/> in forward order, each with the units it reads, and the units whose
    /// outputs are the final branches. Stage s's fuse outputs come after its branches; the intermediate steps of
    /// output i's downsampling paths come just before output i.
    /// </summary>
    private static (Step[] Steps, int[] Final) Plan(HRNet net)
    {
        var steps = new List<Step>();
        int Add(Step s)
        {
            steps.Add(s);
            return steps.Count - 1;
        }

        int h = Add(new ConvStep("conv1", Image, n => (n.Conv1, n.Bn1)));
        h = Add(new ConvStep("conv2", h, n => (n.Conv2, n.Bn2)));
        for (int k = 0; k < net.Layer1.Count; k++)
        {
            int block = k, blockIn = h;
            for (int u = 0; u < net.Layer1[k].Units; u++)
                h = Add(new ResidualStep($"layer1.{k}.conv{u + 1}", h, blockIn, n => n.Layer1[block], u));
        }

        var xs = new List<int> { h };
        for (int s = 0; s < net.Stages.Count; s++)
        {
            int stage = s;
            var transition = net.Transitions[s];
            var next = new List<int>();
            for (int b = 0; b < transition.Count; b++)
            {
                int slot = b;
                if (transition[b] is not { } t) next.Add(xs[b]); // the branch passes as is
                else if (b < xs.Count)
                    next.Add(Add(new ConvStep($"transition{s + 1}.{b}", xs[b], n => ConvNorm(n.Transitions[stage][slot]!))));
                else
                {
                    // A new branch: 3×3/2 steps from the lowest-resolution branch, each gated.
                    int source = xs[^1];
                    for (int k = 0; k < t.Count; k++)
                    {
                        int index = k;
                        source = Add(new ConvStep($"transition{s + 1}.{b}.{k}", source, n => ConvNorm((Sequential)n.Transitions[stage][slot]![index])));
                    }
                    next.Add(source);
                }
            }
            xs = next;

            for (int m = 0; m < net.Stages[s].Count; m++)
            {
                int module = m;
                string prefix = $"stage{s + 2}.{m}";
                var hrm = net.Stages[s][m];
                for (int b = 0; b < xs.Count; b++)
                {
                    int branch = b;
                    for (int k = 0; k < hrm.Branches[b].Count; k++)
                    {
                        int block = k, blockIn = xs[b];
                        int units = ((ResidualBlock)hrm.Branches[b][k]).Units;
                        for (int u = 0; u < units; u++)
                            xs[b] = Add(new ResidualStep($"{prefix}.branches.{b}.{k}.conv{u + 1}", xs[b], blockIn,
                                n => (ResidualBlock)n.Stages[stage][module].Branches[branch][block], u));
                    }
                }
                if (xs.Count == 1) continue; // a single branch has no exchange

                var outs = new int[xs.Count];
                for (int i = 0; i < xs.Count; i++)
                {
                    int to = i;
                    var inputs = xs.ToArray();
                    for (int j = 0; j < i - 1; j++) // paths of two or more 3×3/2 steps: all but the last are gated units
                    {
                        int from = j;
                        for (int k = 0; k < i - j - 1; k++)
                        {
                            int index = k;
                            inputs[j] = Add(new ConvStep($"{prefix}.fuse_layers.{i}.{j}.{k}", inputs[j],
                                n => ConvNorm((Sequential)n.Stages[stage][module].FuseLayer(to, from)![index])));
                        }
                    }
                    outs[i] = Add(new FuseStep($"{prefix}.fuse_layers.{i}", inputs, i, n => n.Stages[stage][module]));
                }
                xs = outs.ToList();
            }
        }
        return (steps.ToArray(), xs.ToArray());
    }

    /// <summary>Each unit's channels, convolutions, inputs and output size (from the layer geometry at <paramref name="inputSize"/>).</summary>
    private static GatedUnit[] Describe(HRNet net, Step[] steps, int[] final, (int Height, int Width) inputSize)
    {
        var units = new GatedUnit[steps.Length];
        (long H, long W) SizeOf(int u) => u == Image ? (inputSize.Height, inputSize.Width) : (units[u].OutHeight, units[u].OutWidth);
        UnitConv Conv(Conv2d conv, (long H, long W) hw) => new(conv.in_channels, conv.groups, conv.kernel_size[0] * conv.kernel_size[1], hw.H, hw.W);

        for (int u = 0; u < steps.Length; u++)
        {
            long channels;
            (long H, long W) hw;
            var convs = new List<UnitConv>();
            int[] reads;
            switch (steps[u])
            {
                case ConvStep c:
                {
                    var (conv, _) = c.Layer(net);
                    hw = OutputSize(conv, SizeOf(c.Input));
                    convs.Add(Conv(conv, hw));
                    channels = conv.out_channels;
                    reads = [c.Input];
                    break;
                }
                case ResidualStep r:
                {
                    var block = r.Block(net);
                    var conv = block.ConvOf(r.K);
                    hw = OutputSize(conv, SizeOf(r.Input));
                    convs.Add(Conv(conv, hw));
                    bool last = r.K == block.Units - 1;
                    if (last && block.Downsample is { } ds) convs.Add(Conv((Conv2d)ds[0], hw));
                    channels = conv.out_channels;
                    reads = last ? [r.Input, r.BlockInput] : [r.Input];
                    break;
                }
                case FuseStep f:
                {
                    var module = f.Module(net);
                    hw = SizeOf(f.Inputs[f.To]);
                    for (int j = 0; j < f.Inputs.Length; j++)
                    {
                        if (j == f.To) continue;
                        var (conv, _) = ConvNorm(FusePath(module, f.To, j));
                        convs.Add(Conv(conv, OutputSize(conv, SizeOf(f.Inputs[j])))); // an upsampling path's 1×1 runs at the source's size
                    }
                    channels = module.BranchChannels[f.To];
                    reads = f.Inputs;
                    break;
                }
                default:
                    throw new InvalidOperationException($"Unknown HRNet unit {steps[u].GetType().Name}.");
            }
            units[u] = new GatedUnit(steps[u].Name, u, channels, convs, reads.Where(i => i != Image).Distinct().ToArray(), !final.Contains(u), hw.H, hw.W);
        }
        return units;
    }

    private static (long H, long W) OutputSize(Conv2d conv, (long H, long W) hw)
    {
        static long Out(long n, long kernel, long stride, long padding, long dilation) => (n + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;
        return (Out(hw.H, conv.kernel_size[0], conv.stride[0], conv.padding![0], conv.dilation[0]),
                Out(hw.W, conv.kernel_size[1], conv.stride[1], conv.padding![1], conv.dilation[1]));
    }

    /// <summary>How one gated unit computes its output in one branch (a copy of the network).</summary>
    internal abstract record Step(string Name);

    /// <summary>conv + BN + ReLU on the features of unit <see cref="Input"/> (<see cref="Image"/>: the image).</summary>
    internal sealed record ConvStep(string Name, int Input, Func<HRNet, (Conv2d Conv, BatchNorm2d Norm)> Layer) : Step(Name);

    /// <summary>Unit <see cref="K"/> of a residual block; the last one adds the shortcut of <see cref="BlockInput"/> before its ReLU.</summary>
    internal sealed record ResidualStep(string Name, int Input, int BlockInput, Func<HRNet, ResidualBlock> Block, int K) : Step(Name);

    /// <summary>Output <see cref="To"/> of a module's exchange: the sum of every branch j's path from unit <see cref="Inputs"/>[j], then ReLU.</summary>
    internal sealed record FuseStep(string Name, int[] Inputs, int To, Func<HRNet, HighResolutionModule> Module) : Step(Name);
}
