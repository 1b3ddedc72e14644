// HRNetV2 encoder (Wang et al., "Deep High-Resolution Representation Learning for Visual Recognition", arXiv 1908.07919),
// laid out as the official HRNet-Semantic-Segmentation `seg_hrnet.py` so its checkpoints load by name.
using InterroGate.Layers;
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Backbones;

/// <summary>
/// The shape of an HRNetV2 encoder. <see cref="Width"/> is the channels of the highest-resolution branch
/// (branch b has Width·2^b); <see cref="StageModules"/> the high-resolution modules of stages 2, 3 and 4
/// (which have 2, 3 and 4 branches); every branch of every module stacks <see cref="BlocksPerBranch"/> BasicBlocks.
/// Stage 1 (<c>layer1</c>) is <see cref="Stage1Blocks"/> Bottlenecks of 64 planes (256 channels).
/// <see cref="AlignCorners"/>: the bilinear upsampling's corner convention; the official master branch and the
/// multi-task codebases call <c>F.interpolate(..., mode='bilinear')</c> without it, i.e. false.
/// </summary>
public sealed record HRNetSpec(
    string Name,
    long Width,
    int Stage1Blocks,
    IReadOnlyList<int> StageModules,
    int BlocksPerBranch,
    bool AlignCorners = false) : IEncoderSpec
{
    /// <summary>Channels of the stem and of layer1's bottleneck planes (fixed in every HRNet).</summary>
    public const long StemChannels = 64;

    /// <summary>Number of branches after the last stage (stages 2..4 add one each).</summary>
    public int Branches => StageModules.Count + 1;

    /// <summary>Channels of each branch after the last stage: Width, 2·Width, 4·Width, 8·Width.</summary>
    public IReadOnlyList<long> BranchChannels => Enumerable.Range(0, Branches).Select(b => Width << b).ToArray();

    /// <summary>Channels of the encoder's output: all branches concatenated (270 for W18).</summary>
    public long OutChannels => BranchChannels.Sum();

    /// <summary>Input pixels per output pixel along each axis: the two stride-2 stem convolutions.</summary>
    public int OutputStride => 4;

    /// <summary>A plain <see cref="HRNet"/> of this shape.</summary>
    public nn.Module<Tensor, Tensor> CreateEncoder(long inChannels) => new HRNet(this, inChannels);

    /// <summary>HRNetV2-W<paramref name="width"/> (official <c>seg_hrnet_w18/w32/w48</c>): 4 Bottlenecks; 1, 4, 3 modules of 4 BasicBlocks per branch.</summary>
    public static HRNetSpec V2(long width = 18)
    {
        if (width <= 0) throw new ArgumentOutOfRangeException(nameof(width), width, "The HRNet width must be > 0 (18, 32 or 48 in the official models).");
        return new($"hrnet{width}", width, Stage1Blocks: 4, StageModules: [1, 4, 3], BlocksPerBranch: 4);
    }

    /// <summary>
    /// HRNetV2-W18-Small-v2 (official <c>seg_hrnet_w18_small_v2</c>): 2 Bottlenecks; 1, 3, 2 modules of 2 BasicBlocks.
    /// The "hrnet_w18" of the multi-task codebase of Vandenhende et al. is this network.
    /// </summary>
    public static HRNetSpec W18SmallV2() =>
        new("hrnet18_small_v2", 18, Stage1Blocks: 2, StageModules: [1, 3, 2], BlocksPerBranch: 2);
}

/// <summary>
/// A list of child modules with holes, registered under their indices (<c>1</c>, <c>3</c>, ...): PyTorch's
/// <c>nn.ModuleList</c> holding <c>None</c>, as HRNet's transitions and fuse layers do, so the keys of the
/// present entries match the official ones.
/// </summary>
public sealed class ModuleSlots<T> : nn.Module where T : nn.Module
{
    private readonly T?[] _slots;

    public ModuleSlots(IReadOnlyList<T?> slots) : base(nameof(ModuleSlots<T>))
    {
        _slots = slots.ToArray();
        for (int i = 0; i < _slots.Length; i++)
            if (_slots[i] is { } m) register_module(i.ToString(System.Globalization.CultureInfo.InvariantCulture), m);
    }

    /// <summary>The module at <paramref name="index"/>, or null where the slot is empty.</summary>
    public T? this[int index] => _slots[index];

    public int Count => _slots.Length;
}

/// <summary>
/// One high-resolution module: per branch a chain of BasicBlocks (<c>branches.{b}.{k}</c>), then the exchange
/// (<c>fuse_layers.{i}.{j}</c>): output i sums every branch j brought to branch i's resolution and width —
/// itself as is, a lower-resolution one by 1×1 conv + BN and bilinear upsampling to branch i's size, a
/// higher-resolution one by i−j 3×3/2 conv + BN steps (ReLU after all but the last) — and applies a ReLU.
/// </summary>
public sealed class HighResolutionModule : nn.Module<Tensor[], Tensor[]>
{
    private readonly ModuleList<Sequential> branches;
    private readonly ModuleList<ModuleSlots<Sequential>>? fuse_layers;
    private readonly Sequential[] _branches;
    private readonly bool _alignCorners;

    public HighResolutionModule(IReadOnlyList<long> branchChannels, int blocksPerBranch, bool alignCorners) : base(nameof(HighResolutionModule))
    {
        if (branchChannels.Count == 0) throw new ArgumentException("A high-resolution module needs at least one branch.");
        if (blocksPerBranch < 1) throw new ArgumentOutOfRangeException(nameof(blocksPerBranch), blocksPerBranch, "Each branch needs at least one block.");
        BranchChannels = branchChannels.ToArray();
        _alignCorners = alignCorners;
        _branches = BranchChannels
            .Select(c => new Chain(Enumerable.Range(0, blocksPerBranch).Select(_ => (nn.Module<Tensor, Tensor>)new BasicBlock(c, c)).ToArray()))
            .ToArray();
        branches = new ModuleList<Sequential>(_branches);
        // A single branch has nothing to exchange with (the official code keeps no fuse layers then).
        fuse_layers = BranchChannels.Count > 1
            ? new ModuleList<ModuleSlots<Sequential>>(Enumerable.Range(0, BranchChannels.Count)
                .Select(i => new ModuleSlots<Sequential>(Enumerable.Range(0, BranchChannels.Count).Select(j => MakeFuse(j, i)).ToArray()))
                .ToArray())
            : null;
        RegisterComponents();
    }

    /// <summary>Channels of each branch (input and output: the module keeps them).</summary>
    public IReadOnlyList<long> BranchChannels { get; }

    /// <summary>The BasicBlock chain of each branch.</summary>
    public IReadOnlyList<Sequential> Branches => _branches;

    /// <summary>The path from branch <paramref name="from"/> into output <paramref name="to"/>; null where from == to (identity).</summary>
    public Sequential? FuseLayer(int to, int from) => fuse_layers is null ? null : fuse_layers[to][from];

    private Sequential? MakeFuse(int from, int to)
    {
        long cin = BranchChannels[from], cout = BranchChannels[to];
        if (from == to) return null;
        if (from > to) return new Chain(Convolutions.Conv1x1(cin, cout), nn.BatchNorm2d(cout));
        // Higher resolution into lower: one 3×3/2 per halving; channels change only at the last step, which has no ReLU.
        var steps = new List<nn.Module<Tensor, Tensor>>();
        for (int k = 0; k < to - from; k++)
        {
            bool last = k == to - from - 1;
            long stepOut = last ? cout : cin;
            steps.Add(last
                ? new Chain(Convolutions.Conv3x3(cin, stepOut, stride: 2), nn.BatchNorm2d(stepOut))
                : new Chain(Convolutions.Conv3x3(cin, stepOut, stride: 2), nn.BatchNorm2d(stepOut), nn.ReLU()));
        }
        return new Chain(steps.ToArray());
    }

    /// <summary>
    /// The last conv + BN of the fuse path from branch <paramref name="from"/> into output <paramref name="to"/>: the
    /// 1×1 of an upsampling path, the last 3×3/2 step (no ReLU) of a downsampling one.
    /// </summary>
    public Sequential FusePath(int to, int from)
    {
        var path = FuseLayer(to, from) ?? throw new ArgumentException($"Output {to} reads branch {from} as is.");
        return from > to ? path : (Sequential)path[to - from - 1];
    }

    /// <summary>Bilinear resize of <paramref name="x"/> to <paramref name="like"/>'s H×W.</summary>
    internal static Tensor ResizeTo(Tensor x, Tensor like, bool alignCorners) =>
        x.shape[2] == like.shape[2] && x.shape[3] == like.shape[3]
            ? x
            : nn.functional.interpolate(x, [like.shape[2], like.shape[3]], mode: InterpolationMode.Bilinear, align_corners: alignCorners);

    /// <summary>Output <paramref name="to"/> of the exchange, from the branch outputs <paramref name="xs"/>.</summary>
    public Tensor Fuse(int to, Tensor[] xs)
    {
        Tensor? y = null;
        for (int j = 0; j < xs.Length; j++)
        {
            var term = j == to ? xs[j]
                : j > to ? ResizeTo(FuseLayer(to, j)!.call(xs[j]), xs[to], _alignCorners) // upsample to the target branch's own size, so odd sizes work
                : FuseLayer(to, j)!.call(xs[j]);
            y = y is null ? term : y.Plus(term);
        }
        return nn.functional.relu(y!);
    }

    public override Tensor[] forward(Tensor[] x)
    {
        if (x.Length != _branches.Length)
            throw new ArgumentException($"This module has {_branches.Length} branches but got {x.Length} inputs.");
        var xs = x.Select((t, b) => _branches[b].call(t)).ToArray();
        if (fuse_layers is null) return xs;
        return Enumerable.Range(0, xs.Length).Select(i => Fuse(i, xs)).ToArray();
    }
}

/// <summary>
/// The HRNetV2 encoder with the official parameter names (conv1, bn1, conv2, bn2, layer1.{k}, transition{s}.{b},
/// stage{s}.{m}.branches.{b}.{k}, stage{s}.{m}.fuse_layers.{i}.{j}, ...), so official checkpoints (the ImageNet
/// <c>hrnetv2_w18_imagenet_pretrained</c> trunk or a <c>seg_hrnet</c> model, converted to safetensors) load by name.
/// Forward returns the four branches, the lower three bilinearly upsampled to the first (stride 4) and concatenated:
/// [B, 15·Width, H/4, W/4], what every HRNet head reads. Weights start Kaiming-normal (fan-out) as in the official
/// ImageNet training (<c>cls_hrnet.py</c>).
/// </summary>
public sealed class HRNet : nn.Module<Tensor, Tensor>, IPlannedEncoder
{
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Conv2d conv2;
    private readonly BatchNorm2d bn2;
    private readonly Sequential layer1;
    private readonly ModuleSlots<Sequential> transition1;
    private readonly ModuleList<HighResolutionModule> stage2;
    private readonly ModuleSlots<Sequential>? transition2;
    private readonly ModuleList<HighResolutionModule>? stage3;
    private readonly ModuleSlots<Sequential>? transition3;
    private readonly ModuleList<HighResolutionModule>? stage4;
    private readonly Bottleneck[] _layer1;
    private readonly ModuleSlots<Sequential>[] _transitions;
    private readonly HighResolutionModule[][] _stages;

    public HRNet(HRNetSpec spec, long inChannels = 3) : base(spec.Name)
    {
        if (inChannels <= 0) throw new ArgumentOutOfRangeException(nameof(inChannels), inChannels, "Input channels must be > 0.");
        if (spec.Width <= 0) throw new ArgumentException($"The HRNet width must be > 0, got {spec.Width}.");
        if (spec.StageModules.Count is < 1 or > 3)
            throw new ArgumentException($"An HRNet has 1 to 3 multi-resolution stages (stages 2 to 4), got {spec.StageModules.Count}.");
        if (spec.StageModules.Any(m => m < 1) || spec.Stage1Blocks < 1 || spec.BlocksPerBranch < 1)
            throw new ArgumentException("Every HRNet stage needs at least one module and every branch at least one block.");
        Spec = spec;
        InChannels = inChannels;
        const long stem = HRNetSpec.StemChannels;

        conv1 = Convolutions.Conv3x3(inChannels, stem, stride: 2);
        bn1 = nn.BatchNorm2d(stem);
        conv2 = Convolutions.Conv3x3(stem, stem, stride: 2);
        bn2 = nn.BatchNorm2d(stem);
        _layer1 = Enumerable.Range(0, spec.Stage1Blocks)
            .Select(k => new Bottleneck(k == 0 ? stem : stem * Bottleneck.Expansion, stem))
            .ToArray();
        layer1 = new Chain(_layer1.Select(b => (nn.Module<Tensor, Tensor>)b).ToArray());

        IReadOnlyList<long> previous = [stem * Bottleneck.Expansion];
        var transitions = new List<ModuleSlots<Sequential>>();
        var stages = new List<HighResolutionModule[]>();
        for (int s = 0; s < spec.StageModules.Count; s++)
        {
            IReadOnlyList<long> current = Enumerable.Range(0, s + 2).Select(b => spec.Width << b).ToArray();
            transitions.Add(MakeTransition(previous, current));
            stages.Add(Enumerable.Range(0, spec.StageModules[s])
                .Select(_ => new HighResolutionModule(current, spec.BlocksPerBranch, spec.AlignCorners)).ToArray());
            previous = current;
        }
        _transitions = transitions.ToArray();
        _stages = stages.ToArray();
        transition1 = _transitions[0];
        stage2 = new ModuleList<HighResolutionModule>(_stages[0]);
        transition2 = _transitions.Length > 1 ? _transitions[1] : null;
        stage3 = _stages.Length > 1 ? new ModuleList<HighResolutionModule>(_stages[1]) : null;
        transition3 = _transitions.Length > 2 ? _transitions[2] : null;
        stage4 = _stages.Length > 2 ? new ModuleList<HighResolutionModule>(_stages[2]) : null;
        RegisterComponents();
        Convolutions.InitialiseResNetWeights(this);
        // The official HRNet's batch-norm momentum (BN_MOMENTUM = 0.01), also kept by the multi-task reference code's
        // HRNet backbone: running statistics averaged over the last ~100 batches rather than ~10.
        foreach (var norm in modules().OfType<BatchNorm2d>()) norm.momentum = BatchNormMomentum;
    }

    /// <summary>The backbone's batch-norm momentum: 0.01, the official HRNet's.</summary>
    public const double BatchNormMomentum = 0.01;

    public HRNetSpec Spec { get; }
    public long InChannels { get; }

    /// <summary>Channels of the concatenated output (270 for W18).</summary>
    public long OutChannels => Spec.OutChannels;

    /// <summary>Input pixels per output pixel along each axis: the two stride-2 stem convolutions.</summary>
    public int OutputStride => Spec.OutputStride;

    /// <summary>Channels of each final branch (18, 36, 72, 144 for W18); branch b has stride 4·2^b.</summary>
    public IReadOnlyList<long> BranchChannels => Spec.BranchChannels;

    public Conv2d Conv1 => conv1;
    public BatchNorm2d Bn1 => bn1;
    public Conv2d Conv2 => conv2;
    public BatchNorm2d Bn2 => bn2;

    /// <summary>Stage 1: the Bottlenecks of <c>layer1</c>, in order.</summary>
    public IReadOnlyList<Bottleneck> Layer1 => _layer1;

    /// <summary>transition1..3: entry b maps the previous stage's outputs to branch b (null: passed as is).</summary>
    public IReadOnlyList<ModuleSlots<Sequential>> Transitions => _transitions;

    /// <summary>stage2..4: the high-resolution modules of each stage, in order.</summary>
    public IReadOnlyList<IReadOnlyList<HighResolutionModule>> Stages => _stages;

    /// <summary>
    /// A transition from the previous stage's branches to the current ones: an existing branch whose width changes
    /// gets a 3×3 conv + BN + ReLU (the stage-1 output, 256 → Width), one that keeps it passes through (null);
    /// a new branch grows from the lowest-resolution one by 3×3/2 conv + BN + ReLU steps.
    /// </summary>
    private static ModuleSlots<Sequential> MakeTransition(IReadOnlyList<long> previous, IReadOnlyList<long> current)
    {
        var slots = new Sequential?[current.Count];
        for (int b = 0; b < current.Count; b++)
        {
            if (b < previous.Count)
            {
                slots[b] = previous[b] == current[b] ? null
                    : new Chain(Convolutions.Conv3x3(previous[b], current[b]), nn.BatchNorm2d(current[b]), nn.ReLU());
                continue;
            }
            long cin = previous[^1];
            int steps = b + 1 - previous.Count;
            slots[b] = new Chain(Enumerable.Range(0, steps).Select(k =>
            {
                long cout = k == steps - 1 ? current[b] : cin;
                return (nn.Module<Tensor, Tensor>)new Chain(Convolutions.Conv3x3(cin, cout, stride: 2), nn.BatchNorm2d(cout), nn.ReLU());
            }).ToArray());
        }
        return new ModuleSlots<Sequential>(slots);
    }

    /// <summary>Applies a transition: existing branches through their slot (or as is), new ones from the lowest-resolution input.</summary>
    public static Tensor[] Transit(ModuleSlots<Sequential> transition, Tensor[] xs) =>
        Enumerable.Range(0, transition.Count).Select(b =>
        {
            var source = b < xs.Length ? xs[b] : xs[^1];
            return transition[b] is { } t ? t.call(source) : source;
        }).ToArray();

    /// <summary>The stem: conv1 + bn1 + ReLU, conv2 + bn2 + ReLU (stride 4).</summary>
    public Tensor StemForward(Tensor x) =>
        nn.functional.relu(BatchNorms.Forward(bn2, conv2.call(nn.functional.relu(BatchNorms.Forward(bn1, conv1.call(x))))));

    /// <summary>The outputs of the last stage, highest resolution first: [B, Width·2^b, H/(4·2^b), W/(4·2^b)] (rounded up).</summary>
    public Tensor[] Branches(Tensor x)
    {
        Tensor[] xs = [layer1.call(StemForward(x))];
        for (int s = 0; s < _stages.Length; s++)
        {
            xs = Transit(_transitions[s], xs);
            foreach (var module in _stages[s]) xs = module.call(xs);
        }
        return xs;
    }

    /// <summary>The branches, the lower ones upsampled bilinearly to the first, concatenated along channels.</summary>
    public Tensor Concatenate(Tensor[] branches) =>
        cat(branches.Select(b => HighResolutionModule.ResizeTo(b, branches[0], Spec.AlignCorners)).ToArray(), dim: 1); // [B, ΣC_b, H/4, W/4]

    public override Tensor forward(Tensor x) => Concatenate(Branches(x));

    /// <summary>
    /// The units in forward order (docs/architecture.md, "The plan"): the two stem convolutions; each unit of the layer1
    /// Bottlenecks and of every branch's BasicBlocks (the last one sums the shortcut); each transition convolution (every
    /// stride-2 step of a new branch included); each intermediate 3×3/2 step of a multi-step downsampling fuse path
    /// (just before the output it feeds); and each fuse output, the sum of its identity term and its paths' last
    /// conv + BN (an upsampling path resized to the target branch). The outputs: the final branches, highest resolution first.
    /// </summary>
    public EncoderPlan Plan()
    {
        var units = new List<PlanUnit>();
        int Add(PlanUnit u)
        {
            units.Add(u);
            return units.Count - 1;
        }
        static HRNet Net(nn.Module n) => (HRNet)n;
        PlanUnit Conv(string name, int input, Func<HRNet, Sequential> layer) =>
            new(name, [new PlanTerm(input, n => ConvNorm(layer(Net(n))))]);
        PlanUnit Residual(string name, int input, int blockInput, Func<HRNet, ResidualBlock> block, ResidualBlock shape, int k)
        {
            var terms = new List<PlanTerm> { new(input, n => (block(Net(n)).ConvOf(k), block(Net(n)).NormOf(k))) };
            bool last = k == shape.Units - 1;
            if (last)
                terms.Add(shape.Downsample is null
                    ? new PlanTerm(blockInput, null, ".identity")
                    : new PlanTerm(blockInput, n => ConvNorm(block(Net(n)).Downsample!), ".downsample"));
            return new PlanUnit(name, terms, EndsBlock: last);
        }

        int h = Add(new PlanUnit("conv1", [new PlanTerm(EncoderPlan.Image, n => (Net(n).conv1, Net(n).bn1))]));
        h = Add(new PlanUnit("conv2", [new PlanTerm(h, n => (Net(n).conv2, Net(n).bn2))]));
        for (int k = 0; k < _layer1.Length; k++)
        {
            int block = k, blockIn = h;
            for (int u = 0; u < _layer1[k].Units; u++)
                h = Add(Residual($"layer1.{k}.conv{u + 1}", h, blockIn, n => n._layer1[block], _layer1[k], u));
        }

        var xs = new List<int> { h };
        for (int s = 0; s < _stages.Length; s++)
        {
            int stage = s;
            var transition = _transitions[s];
            var next = new List<int>();
            for (int b = 0; b < transition.Count; b++)
            {
                int slot = b;
                if (transition[b] is not { } t) next.Add(xs[b]); // the branch passes as is
                else if (b < xs.Count)
                    next.Add(Add(Conv($"transition{s + 1}.{b}", xs[b], n => n._transitions[stage][slot]!)));
                else
                {
                    // A new branch: 3×3/2 steps from the lowest-resolution branch, each a unit.
                    int source = xs[^1];
                    for (int k = 0; k < t.Count; k++)
                    {
                        int index = k;
                        source = Add(Conv($"transition{s + 1}.{b}.{k}", source, n => (Sequential)n._transitions[stage][slot]![index]));
                    }
                    next.Add(source);
                }
            }
            xs = next;

            for (int m = 0; m < _stages[s].Length; m++)
            {
                int module = m;
                string prefix = $"stage{s + 2}.{m}";
                var hrm = _stages[s][m];
                for (int b = 0; b < xs.Count; b++)
                {
                    int branch = b;
                    for (int k = 0; k < hrm.Branches[b].Count; k++)
                    {
                        int block = k, blockIn = xs[b];
                        var shape = (ResidualBlock)hrm.Branches[b][k];
                        for (int u = 0; u < shape.Units; u++)
                            xs[b] = Add(Residual($"{prefix}.branches.{b}.{k}.conv{u + 1}", xs[b], blockIn,
                                n => (ResidualBlock)n._stages[stage][module].Branches[branch][block], shape, u));
                    }
                }
                if (xs.Count == 1) continue; // a single branch has no exchange

                var outs = new int[xs.Count];
                for (int i = 0; i < xs.Count; i++)
                {
                    int to = i;
                    var inputs = xs.ToArray();
                    for (int j = 0; j < i - 1; j++) // paths of two or more 3×3/2 steps: all but the last are units
                    {
                        int from = j;
                        for (int k = 0; k < i - j - 1; k++)
                        {
                            int index = k;
                            inputs[j] = Add(Conv($"{prefix}.fuse_layers.{i}.{j}.{k}", inputs[j],
                                n => (Sequential)n._stages[stage][module].FuseLayer(to, from)![index]));
                        }
                    }
                    var terms = new List<PlanTerm>();
                    for (int j = 0; j < inputs.Length; j++)
                    {
                        int from = j;
                        terms.Add(j == i
                            ? new PlanTerm(inputs[j], null, $".{j}.identity")
                            : new PlanTerm(inputs[j], n => ConvNorm(Net(n)._stages[stage][module].FusePath(to, from)), $".{j}", ResizeLike: j > i ? inputs[i] : -2));
                    }
                    outs[i] = Add(new PlanUnit($"{prefix}.fuse_layers.{i}", terms));
                }
                xs = outs.ToList();
            }
        }
        return new EncoderPlan(units, xs.ToArray(), Spec.AlignCorners).Validated();
    }

    /// <summary>The conv and BN of a conv + BN (+ ReLU) Sequential.</summary>
    private static (Conv2d Conv, BatchNorm2d Norm) ConvNorm(Sequential s) => ((Conv2d)s[0], (BatchNorm2d)s[1]);
}
