// InterroGate's gated encoder (arXiv 2402.16848, Sec. 3, Algorithm 1): T task copies and one shared copy of every
// unit of a backbone's plan, joined by per-channel gates and β mixing. One class for every backbone family: the
// backbone describes itself as a plan (Backbones/EncoderPlan.cs), this executes it.
using InterroGate.Backbones;
using InterroGate.Layers;
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>Where gates sit in an encoder.</summary>
public enum GatingMode
{
    /// <summary>After every conv+BN(+ReLU) unit, the stem included (default).</summary>
    Conv,
    /// <summary>Only at units that end a block (the stem, residual-block outputs, HRNet transitions and exchanges).</summary>
    Block,
}

/// <summary>
/// One unit of a gated encoder in forward order, with what the cost of a pruned network needs: its gate layer
/// (<see cref="GateIndex"/>, −1 for an ungated unit), its output channels, the convolutions and linear layers whose
/// outputs it sums (<see cref="Convs"/>: main layer, shortcut projection, fuse paths; BN folded into each), the units it
/// reads (<see cref="Reads"/>; the image is not listed) and the units that read it (<see cref="ReadBy"/>), its output
/// size before any pooling, and whether its features reach some layer's copy (<see cref="FeedsLayer"/>: directly or
/// through operations; false for what only the heads read). An operation node (<see cref="IsOp"/>) has no layer: it costs
/// <see cref="OpMacs"/> and <see cref="OpParameters"/> in each branch that runs it. A layer followed by a channel-by-channel
/// operation (<see cref="PlanUnit.Then"/>) carries that operation's cost per kept filter (<see cref="ThenMacsPerFilter"/>,
/// <see cref="ThenParametersPerFilter"/>).
/// </summary>
public sealed record EncoderUnit(string Name, int GateIndex, long OutChannels, IReadOnlyList<UnitConv> Convs, IReadOnlyList<int> Reads,
    IReadOnlyList<int> ReadBy, long OutHeight, long OutWidth, bool FeedsLayer = true, bool IsOp = false, long OpMacs = 0, long OpParameters = 0,
    long ThenMacsPerFilter = 0, long ThenParametersPerFilter = 0)
{
    public bool Gated => GateIndex >= 0;

    /// <summary>Whether the unit's gate layer forms the mix of Eq. 3: gated, and its features reach some later layer's shared copy.</summary>
    public bool HasMix => Gated && FeedsLayer;

    /// <summary>MACs of the unit in one branch (all its filters, in every convolution it sums; an operation's own).</summary>
    public long Macs => IsOp ? OpMacs : OutChannels * (Convs.Sum(c => c.MacsPerFilter) + ThenMacsPerFilter);
}

/// <summary>
/// InterroGate's gated encoder. Each branch (task_branches.{task}, shared) is a plain backbone (<see cref="ResNet"/>,
/// <see cref="HRNet"/>, ...) with its own BN and shortcut paths, so STL and MTL encoders load into it by name. The units
/// of the backbone's <see cref="EncoderPlan"/> run in order in all T+1 branches; a unit reads, in task branch t, the
/// gated features of task t of the units it reads, and in the shared branch their mix (Eq. 3); an ungated unit (block
/// gating) hands each branch its own output. Forward returns, per task, the gated features of the plan's outputs (several:
/// resized to the first and concatenated).
/// </summary>
public sealed class GatedEncoder : nn.Module<Tensor, Tensor[]>, Analysis.IMacsCounted
{
    private readonly ModuleMap<nn.Module<Tensor, Tensor>> task_branches;
    private readonly nn.Module<Tensor, Tensor> shared;
    private readonly ModuleList<GateLayer> gates;
    private readonly nn.Module<Tensor, Tensor>[] _allBranches; // the task branches, then the shared one
    private readonly EncoderPlan _plan;
    private readonly EncoderUnit[] _units;
    private readonly GateLayer[] _gateLayers;
    private BranchFusion _fusion = BranchFusion.Off;
    private bool[]? _fused;
    private readonly bool[] _fusable; // per unit: whether its copies can run fused

    public GatedEncoder(IReadOnlyList<string> taskNames, IEncoderSpec spec, long inChannels, (int Height, int Width) inputSize,
        GatingMode mode, double alphaInit, double hysteresis = 0) : base(nameof(GatedEncoder))
    {
        if (taskNames.Count == 0) throw new ArgumentException("InterroGate needs at least one task.");
        Mode = mode;
        Spec = spec;
        task_branches = ModuleMap.Of(taskNames.Select(n => (n, Planned(spec, inChannels))).ToArray());
        shared = Planned(spec, inChannels);
        _allBranches = [.. taskNames.Select(n => task_branches[n]), shared];
        _plan = ((IPlannedEncoder)shared).Plan();
        InChannels = inChannels;
        OutChannels = ((IPlannedEncoder)shared).OutChannels;

        _units = Describe(_plan, shared, mode, inChannels, inputSize);
        _fusable = Fusable();
        var outputs = _plan.Outputs.Where(o => !_units[o].Gated && !_units[o].IsOp).Select(o => _units[o].Name).ToArray();
        if (outputs.Length > 0)
            throw new ArgumentException($"The heads read gated features, but unit(s) {string.Join(", ", outputs)} are not gated under gating: {mode.ToString().ToLowerInvariant()}.");
        gates = new ModuleList<GateLayer>(_units.Select((u, i) => (Unit: u, Parts: _plan.Units[i].GateParts)).Where(p => p.Unit.Gated)
            .Select(p => new GateLayer(taskNames.Count, p.Unit.OutChannels, alphaInit, p.Unit.HasMix, hysteresis, p.Parts)).ToArray());
        _gateLayers = gates.ToArray();
        _fused = new bool[_units.Length];
        RegisterComponents();
    }

    public GatingMode Mode { get; }
    /// <summary>The backbone every branch has.</summary>
    public IEncoderSpec Spec { get; }
    public int Tasks => _allBranches.Length - 1;
    public long InChannels { get; }
    /// <summary>Channels of the gated features each head reads.</summary>
    public long OutChannels { get; }
    /// <summary>The gated layers in forward order (gate layer i follows the i-th gated unit).</summary>
    public IReadOnlyList<GateLayer> GateLayers => _gateLayers;
    /// <summary>The units in forward order (<see cref="EncoderPlan.Units"/>), with what the pruned cost needs.</summary>
    public IReadOnlyList<EncoderUnit> Units => _units;
    /// <summary>The backbone's plan this encoder runs.</summary>
    public EncoderPlan Plan => _plan;
    /// <summary>Gumbel-sigmoid noise on the gates in the training steps that learn them (off while <see cref="GatesFixed"/>).</summary>
    public GateNoise Noise { get; set; } = GateNoise.Off;

    /// <summary>The task branch <paramref name="t"/> (a plain backbone).</summary>
    public nn.Module<Tensor, Tensor> TaskBranch(int t) => _allBranches[t];
    /// <summary>The shared branch (a plain backbone).</summary>
    public nn.Module<Tensor, Tensor> SharedBranch => shared;
    /// <summary>Branch <paramref name="b"/>: tasks 0..T−1, then the shared one (index T).</summary>
    public nn.Module<Tensor, Tensor> Branch(int b) => _allBranches[b];

    /// <summary>The shared branch's parameters (what every task's loss reaches).</summary>
    public IEnumerable<Parameter> SharedParameters() => shared.parameters();

    /// <summary>Cost of the encoder once pruned to <paramref name="pattern"/> (what each gated layer keeps).</summary>
    public PrunedCost PredictPrunedCost(SharingPattern pattern) => PrunedCost.Of(_units, pattern);

    /// <summary>
    /// MACs of each gated unit in one branch (every convolution it sums), for FLOPs-weighted sparsity. With block gating
    /// a block's inner units are not counted: they are kept or removed with a branch's whole block, not filter by filter.
    /// </summary>
    public IReadOnlyList<double> GatedLayerMacs() => _units.Where(u => u.Gated).Select(u => (double)u.Macs).ToArray();

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

    /// <summary>How a fused unit computes its copies' convolutions and batch norms (set when the model is built); fusion needs one.</summary>
    public IFusedBranches? FusedImplementation { get; set; }

    /// <summary>Per unit (in <see cref="Units"/> order), whether it runs fused; null until Auto has measured.</summary>
    public IReadOnlyList<bool>? FusedUnits => _fused;

    /// <summary>Which units run fused, one flag per unit in <see cref="Units"/> order (a measured choice under <see cref="BranchFusion.Auto"/>).</summary>
    public void UseFusion(IReadOnlyList<bool> perUnit)
    {
        if (perUnit.Count != _units.Length) throw new ArgumentException($"Need one flag per unit ({_units.Length}), got {perUnit.Count}.");
        _fused = perUnit.ToArray();
    }

    /// <summary>
    /// Whether the gates are fixed (the last epochs of training, a trained model put to use). While they are, the copies
    /// of a unit that no task reads under the hard gates are not computed, in training and evaluation: a task copy whose
    /// gates are all 0, a shared copy where every task's gates are all 1, and what only such copies read (<see
    /// cref="UnreadCopies"/>). The outputs, and the gradients of every weight, are those of the full computation: an
    /// unread copy enters Eq. 2 with gate 0, so it adds nothing forward and gets a zero gradient. α, which no optimiser
    /// updates then, gets no gradient through a copy that was not computed. Setting it to true reads the hard gates
    /// (one copy to the host) and keeps what they leave unread until it is set again: set it again after changing
    /// fixed gates. While they are fixed, gate noise (<see cref="Noise"/>) is off: training then uses the hard gates.
    /// With <see cref="KeptFiltersOnly"/>, a copy that tasks read at some of its channels computes only those filters.
    /// </summary>
    public bool GatesFixed
    {
        get => _fixedUnread is not null;
        set
        {
            ReleaseFixedKept();
            if (!value) { _fixedUnread = null; return; }
            var gates = HardGates();
            _fixedUnread = UnreadCopies(gates);
            if (!KeptFiltersOnly) return;
            var pattern = SharingPattern.FromGates(gates);
            _fixedKept = _units.Select((unit, u) => unit.Gated && KeptFilters.Applies(_plan.Units[u], shared) ? KeptFilters.For(pattern[unit.GateIndex]) : null).ToArray();
        }
    }

    /// <summary>
    /// While the gates are fixed, whether a copy that tasks read at some of its channels computes only the filters of
    /// those channels (true, the default), as the pruned network does: task t's copy the channels whose gate is 1, the
    /// shared copy those where some task's gate is 0. The outputs are those of the full computation, each weight gets the
    /// full computation's gradient (0 for a filter not computed), and a batch norm updates the running statistics of the
    /// channels it computes. It applies to units made of convolutions (no groups), their batch norms and identity terms:
    /// the ResNet and HRNet plans; other units (a ViT's) compute their read copies whole. Takes effect when
    /// <see cref="GatesFixed"/> is next set.
    /// </summary>
    public bool KeptFiltersOnly { get; set; } = true;

    /// <summary>
    /// In a gate-learning step (training, gates not fixed, no gate noise), whether the backward pass runs only through the
    /// filters some task reads under this step's hard gates: true, false, or null (the default) for true where the input is
    /// on the CPU and false on a GPU, where the host read of the gates before each step would stall the queue of kernels
    /// (bench/gpu times both). The other filters enter Eq. 2 with gate 0:
    /// their weights and inputs get a zero gradient from the task losses, and only α's gradient needs their values
    /// (φ_t − ψ at every channel), so they are computed without autograd. The outputs and every gradient are those of the
    /// full computation; the step reads the hard gates to the host once. It applies to the units <see cref="KeptFiltersOnly"/>
    /// applies to and that run unfused (<see cref="Fusion"/>); other units compute every copy with autograd.
    /// </summary>
    public bool? BackwardReadFiltersOnly { get; set; }

    private bool[]? _splits; // per unit: whether its copies can split into read and unread filters
    private bool[][][]? _splitGates; // the hard gates _split was built for
    private ReadFilters?[]? _split;

    /// <summary>How many filters (summed over units and copies) the last forward pass computed without autograd (<see cref="BackwardReadFiltersOnly"/>).</summary>
    internal long UntrackedFilters { get; private set; }

    private bool[][]? _fixedUnread;
    private KeptFilters?[]? _fixedKept;

    private void ReleaseFixedKept()
    {
        foreach (var k in _fixedKept ?? []) k?.Release();
        _fixedKept = null;
    }
    private long _keptMacs; // MACs per image of the convolutions the last forward pass ran on kept filters (the counter's hooks do not see them)

    /// <summary>For the cost counter: MACs per image of the convolutions the last call computed on kept filters only.</summary>
    public long Macs(Tensor output) => _keptMacs;

    /// <remarks>No timing happens here: with <see cref="BranchFusion.Auto"/> every unit runs unfused until
    /// <see cref="UseFusion"/> has been given a choice (measured once before the first step; see the InterroGate model).</remarks>
    public override Tensor[] forward(Tensor x)
    {
        var fused = _fused ?? new bool[_units.Length];
        // Gate noise applies while the gates learn; fixed gates are the hard ones, so the last epochs train the weights on
        // the pattern the pruned network keeps.
        bool noisy = training && Noise.Temperature > 0 && _fixedUnread is null;
        _splits ??= _units.Select((unit, u) => unit.Gated && KeptFilters.Applies(_plan.Units[u], shared)).ToArray();
        bool learning = training && !noisy && _fixedUnread is null && (BackwardReadFiltersOnly ?? x.device_type == TorchSharp.DeviceType.CPU)
            && is_grad_enabled() && _splits.Any(a => a); // a ViT's units do not split: no host read for nothing
        return Run(x, noisy ? Noise : GateNoise.Off, (u, _, _) => fused[u], _fixedUnread, _fixedKept, learning ? ReadSplit() : null);
    }

    /// <summary>Per unit, what its copies read under the current hard gates (<see cref="BackwardReadFiltersOnly"/>); kept while the gates stay.</summary>
    private ReadFilters?[] ReadSplit()
    {
        var gates = HardGates();
        if (_split is not null && _splitGates!.Zip(gates).All(p => p.First.Zip(p.Second).All(q => q.First.AsSpan().SequenceEqual(q.Second))))
            return _split;
        var pattern = SharingPattern.FromGates(gates);
        _split = _units.Select((unit, u) => _splits![u] ? ReadFilters.For(pattern[unit.GateIndex]) : null).ToArray();
        _splitGates = gates.ToArray();
        return _split;
    }

    /// <summary>Hard gates per gated layer, task and channel (1[α &gt; 0], or the hysteresis state), in one copy to the host.</summary>
    public IReadOnlyList<bool[][]> HardGates()
    {
        using var _ = no_grad();
        var parts = _gateLayers.Select(g =>
        {
            using var hard = g.Hard();
            using var on = hard.gt(Scalars.Half);
            return on.flatten();
        }).ToArray();
        bool[] flat;
        using (var all = cat(parts))
        using (var host = all.cpu())
            flat = host.data<bool>().ToArray();
        foreach (var p in parts) p.Dispose();
        var result = new List<bool[][]>(_gateLayers.Length);
        int offset = 0;
        foreach (var g in _gateLayers)
        {
            int c = (int)g.Channels;
            result.Add(Enumerable.Range(0, g.Tasks).Select(t => flat.AsSpan(offset + t * c, c).ToArray()).ToArray());
            offset += g.Tasks * c;
        }
        return result;
    }

    /// <summary>
    /// Per unit and branch (tasks, then the shared one), whether no task reads that copy's output under the hard gates
    /// <paramref name="gates"/>[layer][task][channel]. At a gated unit, task t's copy is read only through its gates that
    /// are 1 and the shared copy only through gates that are 0 (Eq. 2; the mix of Eq. 3 is made of the gated features);
    /// a copy of an ungated unit or operation is read where a read copy of a later unit in its branch reads it, where it
    /// is an encoder output (the task branches), or where a term is resized like it (branch 0, for its size).
    /// </summary>
    public bool[][] UnreadCopies(IReadOnlyList<bool[][]> gates)
    {
        if (gates.Count != _gateLayers.Length) throw new ArgumentException($"Need gates for {_gateLayers.Length} gated layers, got {gates.Count}.");
        int T = Tasks, n = _units.Length;
        var read = Enumerable.Range(0, n).Select(_ => new bool[T + 1]).ToArray();
        foreach (var o in _plan.Outputs) for (int t = 0; t < T; t++) read[o][t] = true;
        for (int u = n - 1; u >= 0; u--)
        {
            if (_units[u].Gated)
            {
                var g = gates[_units[u].GateIndex];
                if (g.Length != T || g.Any(task => task.Length != _units[u].OutChannels))
                    throw new ArgumentException($"Gates of {_units[u].Name}: need [{T}][{_units[u].OutChannels}].");
                for (int t = 0; t < T; t++) read[u][t] = g[t].Any(on => on);
                read[u][T] = g.Any(task => task.Any(on => !on));
            }
            if (_units[u].IsOp && !_units[u].FeedsLayer) read[u][T] = false; // the shared stream does not run it
            foreach (var term in _plan.Units[u].Terms)
            {
                if (term.Input != EncoderPlan.Image && !_units[term.Input].Gated) // a gated unit's stream is made whatever its copies
                    for (int b = 0; b <= T; b++) read[term.Input][b] |= read[u][b];
                if (term.Resized && term.ResizeLike != EncoderPlan.Image && !_units[term.ResizeLike].Gated && read[u].Any(r => r))
                    read[term.ResizeLike][0] = true;
            }
        }
        return read.Select(r => r.Select(x => !x).ToArray()).ToArray();
    }

    /// <summary>
    /// The encoder's forward pass; <paramref name="fuse"/>(unit, the inputs of its terms, what each term is resized like) says
    /// whether each unit runs fused.
    /// </summary>
    internal Tensor[] Run(Tensor x, GateNoise noise, Func<int, Branches[], Tensor?[], bool> fuse, bool[][]? unread = null, KeptFilters?[]? kept = null,
        ReadFilters?[]? split = null)
    {
        _keptMacs = 0;
        UntrackedFilters = 0;
        int T = Tasks;
        var image = Branches.Broadcast(x, T + 1);
        var streams = new Branches[_units.Length]; // per unit: the gated task features then the mix, or (ungated, operations) each branch's output
        Branches Input(int unit) => unit == EncoderPlan.Image ? image : streams[unit];
        // Memory as in PyTorch: what a unit makes and no later unit reads is released when the unit ends, and a
        // unit's stream once its last reader has run (autograd keeps what the backward pass needs). A tensor can be
        // held by two streams (an identity term passes its input on): it is released when no live stream holds it.
        var lastRead = _lastReaders ??= LastReaders();
        var released = new bool[_units.Length];
        for (int u = 0; u < _units.Length; u++)
        {
            var reads = Reads(u);
            using (var scope = NewDisposeScope())
            {
                streams[u] = RunUnit(u, Input, T, noise, fuse, unread?[u], kept?[u], split?[u]);
                // Keep this unit's stream, and any form of a stream it read that was made here (kept by that stream for its later readers).
                foreach (var t in reads.Select(r => streams[r]).Append(image).Append(streams[u]).SelectMany(s => s.Held))
                    if (scope.Contains(t)) scope.MoveToOuter(t);
            }
            foreach (var r in reads.Where(r => lastRead[r] == u))
            {
                released[r] = true;
                var live = Enumerable.Range(0, u + 1).Where(v => !released[v]).SelectMany(v => streams[v].Held).ToHashSet(ReferenceEqualityComparer.Instance);
                foreach (var t in streams[r].Held.Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>())
                    if (!live.Contains(t) && !ReferenceEquals(t, x)) t.Dispose();
            }
        }
        var outs = _plan.Outputs;
        return Enumerable.Range(0, T).Select(t =>
        {
            if (outs.Count == 1) return streams[outs[0]][t];
            var first = streams[outs[0]][t];
            return cat(outs.Select(o => HighResolutionModule.ResizeTo(streams[o][t], first, _plan.AlignCorners)).ToArray(), dim: 1);
        }).ToArray();
    }

    /// <summary>The units whose streams unit <paramref name="u"/> reads (its terms' inputs and what they are resized like; not the image).</summary>
    private int[] Reads(int u) => _plan.Units[u].Terms.SelectMany(t => t.Resized ? new[] { t.Input, t.ResizeLike } : [t.Input])
        .Where(r => r != EncoderPlan.Image).Distinct().ToArray();

    private int[]? _lastReaders;

    /// <summary>Per unit, the last unit that reads its stream (int.MaxValue for an output of the encoder: never released).</summary>
    private int[] LastReaders()
    {
        var last = new int[_units.Length];
        for (int v = 0; v < _units.Length; v++)
            foreach (var r in Reads(v)) last[r] = Math.Max(last[r], v);
        foreach (var o in _plan.Outputs) last[o] = int.MaxValue;
        return last;
    }

    /// <summary>Unit <paramref name="u"/> of <see cref="Run"/>: its stream from those of the units it reads.</summary>
    private Branches RunUnit(int u, Func<int, Branches> Input, int T, GateNoise noise, Func<int, Branches[], Tensor?[], bool> fuse, bool[]? unread,
        KeptFilters? kept, ReadFilters? split)
    {
        var plan = _plan.Units[u];
        var unit = _units[u];
        bool skips = unread is not null && unread.Any(x => x) || kept is not null;
        if (plan.Op is { } op)
        {
            // Every stream runs the operation; the shared one only where it reaches a layer's shared copy.
            var ins = plan.Terms.Select(t => Input(t.Input)).ToArray();
            int count = unit.FeedsLayer ? T + 1 : T;
            Tensor? none = skips ? Unread(ins[0][0]) : null;
            return Branches.Of(Enumerable.Range(0, count)
                .Select(b => unread?[b] == true ? none! : op.Forward(_allBranches[b], ins.Select(i => i[b]).ToArray())).ToArray());
        }
        var inputs = plan.Terms.Select(t => Input(t.Input)).ToArray();
        var resize = plan.Terms.Select(t => t.Resized ? Input(t.ResizeLike)[0] : null).ToArray();
        // A gated unit hands its output to the gate layer before a ReLU, which applies it (fused in its CPU kernel).
        bool relu = plan.Activation == UnitActivation.Relu && plan.Then is null;
        var output = skips
            ? ComputeUnit(u, inputs, resize, fuse: false, activate: !unit.Gated || !relu, unread, kept)
            : _fusable[u] && fuse(u, inputs, resize)
            ? ComputeUnit(u, inputs, resize, fuse: true, activate: !unit.Gated || !relu)
            : ComputeUnit(u, inputs, resize, fuse: false, activate: !unit.Gated || !relu, split: split);
        Branches stream;
        if (unit.Gated)
        {
            var layer = _gateLayers[unit.GateIndex];
            var parts = output.Parts;
            if (kept is not null) parts = kept.Assemble(parts);
            else if (skips)
            {
                // An unread task copy stands in as the shared output (ψ + 0·(ψ − ψ) = ψ, exactly); an unread shared copy as
                // zeros (0 + 1·(φ_t − 0) = φ_t). Either way Eq. 2 gives what the computed copy would have given.
                parts = [.. parts];
                int computed = Enumerable.Range(0, T + 1).First(b => !unread![b]);
                if (unread![T]) parts[T] = zeros_like(parts[computed]);
                for (int t = 0; t < T; t++) if (unread[t]) parts[t] = parts[T];
            }
            var (gated, mixed) = layer.Apply(parts[..T], parts[T], layer.Gates(noise), preActivation: relu);
            stream = Branches.Of(mixed is null ? gated : [.. gated, mixed]);
        }
        else stream = output;
        if (plan.PoolAfter is { } p) stream = stream.Map(h => IsUnread(h) ? h : nn.functional.max_pool2d(h, p.Kernel, p.Stride, p.Padding));
        return stream;
    }

    /// <summary>What an unread copy of an ungated unit holds: an empty tensor nobody reads.</summary>
    private static Tensor Unread(Tensor like) => empty(0, like.dtype, like.device);

    private static bool IsUnread(Tensor t) => t.dim() == 1 && t.shape[0] == 0;

    /// <summary>
    /// Unit <paramref name="u"/> in all T+1 branches: the sum of its terms (each term's input in <paramref name="inputs"/>,
    /// resized like <paramref name="resizeLike"/> where the term says so); with <paramref name="activate"/>, then its ReLU.
    /// </summary>
    internal Branches ComputeUnit(int u, Branches[] inputs, Tensor?[] resizeLike, bool fuse, bool activate = true, bool[]? unread = null,
        KeptFilters? kept = null, ReadFilters? split = null)
    {
        var terms = _plan.Units[u].Terms;
        int n = _allBranches.Length;
        var activation = _plan.Units[u].Activation;
        var then = _plan.Units[u].Then;
        Tensor Activation(Tensor y) => !activate ? y : activation switch
        {
            UnitActivation.Relu => nn.functional.relu(y),
            UnitActivation.Gelu => nn.functional.gelu(y),
            _ => y,
        };
        Tensor Resize(int i, Tensor v) => resizeLike[i] is { } like ? HighResolutionModule.ResizeTo(v, like, _plan.AlignCorners) : v;

        if (!fuse)
        {
            // Branch b's copy on filters index (null: all of them); countsBatch as in KeptFilters.Apply.
            Tensor Copy(int b, Tensor? index, bool countsBatch = true)
            {
                Tensor? y = null;
                for (int i = 0; i < terms.Count; i++)
                {
                    var h = inputs[i][b];
                    var v = index is null
                        ? terms[i].Layer is { } layer ? Apply(layer(_allBranches[b]), h)
                            : terms[i].Linear is { } linear ? linear(_allBranches[b]).call(h)
                            : h
                        : terms[i].Layer is { } kl ? ApplyKept(kl(_allBranches[b]), h, index, countsBatch)
                            : Channels.Gather([h], index);
                    v = Resize(i, v);
                    y = y is null ? v : y.Plus(v);
                }
                return then is null ? Activation(y!) : then.Forward(_allBranches[b], [Activation(y!)]);
            }
            Tensor? none = null;
            return Branches.Of(Enumerable.Range(0, n).Select(b =>
            {
                if (unread?[b] == true) return none ??= Unread(inputs[0][0]);
                if (split is null) return Copy(b, kept?.Index(b, inputs[0][b])); // kept: the filters this copy computes; null: all
                switch (split.Of(b))
                {
                    case Readers.All: return Copy(b, null);
                    case Readers.None:
                        Tensor whole;
                        using (no_grad()) whole = Copy(b, null);
                        UntrackedFilters += whole.shape[1];
                        return WithZeroGradients(whole, u, b);
                    default:
                        var read = Copy(b, split.Read(b, inputs[0][b]));
                        Tensor rest;
                        using (no_grad()) rest = Copy(b, split.Unread(b, inputs[0][b]), countsBatch: false);
                        UntrackedFilters += rest.shape[1];
                        return split.Assemble(b, read, rest);
                }
            }).ToArray());
        }

        var kernels = FusedImplementation ?? throw new InvalidOperationException("Branch fusion needs an implementation (FusedImplementation, set by the InterroGate model).");
        Tensor? sum = null;
        for (int i = 0; i < terms.Count; i++)
        {
            Tensor v;
            if (terms[i].Layer is { } layer)
            {
                var layers = _allBranches.Select(layer).ToArray();
                var conv = inputs[i].Single is { } one
                    ? kernels.Conv(layers.Select(l => l.Conv).ToArray(), one, sameInput: true)
                    : kernels.Conv(layers.Select(l => l.Conv).ToArray(), inputs[i].Fused, sameInput: false);
                v = kernels.Norm(layers.Select(l => l.Norm!).ToArray(), conv);
            }
            else v = inputs[i].Fused;
            v = Resize(i, v);
            sum = sum is null ? v : sum.Plus(v);
        }
        return Branches.OfFused(Activation(sum!), n);
    }

    private static Tensor Apply((Conv2d Conv, BatchNorm2d? Norm) layer, Tensor h) =>
        layer.Norm is { } norm ? BatchNorms.Forward(norm, layer.Conv.call(h)) : layer.Conv.call(h);

    private Tensor ApplyKept((Conv2d Conv, BatchNorm2d? Norm) layer, Tensor h, Tensor index, bool countsBatch = true)
    {
        var (y, macs) = KeptFilters.Apply(layer.Conv, layer.Norm, h, index, countsBatch);
        _keptMacs += macs;
        return y;
    }

    /// <summary>The weights of unit <paramref name="u"/> in every branch.</summary>
    internal IEnumerable<Tensor> UnitParameters(int u) => Enumerable.Range(0, _allBranches.Length).SelectMany(b => UnitParameters(u, b));

    /// <summary>The weights of unit <paramref name="u"/> in branch <paramref name="b"/>.</summary>
    private IEnumerable<Tensor> UnitParameters(int u, int b) => _plan.Units[u].Terms.SelectMany(t =>
        {
            if (t.Linear is { } linear) return linear(_allBranches[b]).parameters();
            if (t.Layer is not { } layer) return [];
            var (conv, norm) = layer(_allBranches[b]);
            return norm is null ? conv.parameters() : conv.parameters().Concat(norm.parameters());
        })
        .Select(p => (Tensor)p);

    /// <summary>
    /// <paramref name="output"/> of a copy computed without autograd, tied by a term that is 0 to the weights that have no
    /// gradient yet of that copy and of the ungated units only it reads in its branch (block gating): backward then gives
    /// them a gradient of 0, as the full computation does (an optimiser counts a step for a weight with a gradient of 0,
    /// and skips one without). Weights whose gradient exists keep it at 0 anyway.
    /// </summary>
    private Tensor WithZeroGradients(Tensor output, int u, int b)
    {
        var units = new List<int>();
        void Visit(int v)
        {
            units.Add(v);
            foreach (var t in _plan.Units[v].Terms)
                if (t.Input != EncoderPlan.Image && !_units[t.Input].Gated && !units.Contains(t.Input) && _units[t.Input].ReadBy.All(r => units.Contains(r)))
                    Visit(t.Input);
        }
        Visit(u);
        Tensor? zero = null;
        foreach (var p in units.SelectMany(v => UnitParameters(v, b)).Where(p => p.requires_grad))
        {
            using var grad = p.grad;
            if (grad is not null) continue;
            var term = p.sum().mul(Scalars.Zero);
            zero = zero is null ? term : zero.Plus(term);
        }
        return zero is null ? output : output.Plus(zero.to(output.dtype));
    }

    /// <summary>Whether a unit's copies can run fused: a layer whose every term is a convolution with its BN, or an identity.</summary>
    private bool[] Fusable() => _plan.Units.Select((unit, u) => !unit.IsOp && unit.Then is null && unit.Terms.All(t => t.Linear is null)
        && unit.Terms.All(t => t.Layer is null || t.Layer(shared).Norm is not null)).ToArray();

    private static nn.Module<Tensor, Tensor> Planned(IEncoderSpec spec, long inChannels)
    {
        var encoder = spec.CreateEncoder(inChannels);
        return encoder is IPlannedEncoder
            ? encoder
            : throw new NotSupportedException($"InterroGate has no gated form of the {spec.Name} backbone: its encoder does not describe itself as a plan.");
    }

    /// <summary>
    /// The units with their gate index, layers, reads and output shapes (from the layer geometry at <paramref name="inputSize"/>
    /// for images of <paramref name="inChannels"/> channels).
    /// </summary>
    private static EncoderUnit[] Describe(EncoderPlan plan, nn.Module net, GatingMode mode, long inChannels, (int Height, int Width) inputSize)
    {
        int n = plan.Units.Count, gate = 0;
        var units = new EncoderUnit[n];
        var stream = new FeatureShape[n]; // what readers of a unit see (after its pooling)
        FeatureShape ShapeOf(int u) => u == EncoderPlan.Image ? new(inChannels, inputSize.Height, inputSize.Width) : stream[u];
        var readers = Enumerable.Range(0, n).Select(_ => new List<int>()).ToArray();
        for (int v = 0; v < n; v++)
            foreach (var r in plan.Units[v].Reads) readers[r].Add(v);
        // Whether a unit's features reach a layer (not only the heads): a reader that is a layer, or an operation that does.
        foreach (var u in Enumerable.Range(0, n).Where(u => plan.Units[u].IsOp && readers[u].Count == 0 && !plan.Outputs.Contains(u)))
            throw new ArgumentException($"Operation {plan.Units[u].Name} of the plan is read by nothing and is not an output.");
        var feeds = new bool[n];
        for (int u = n - 1; u >= 0; u--) feeds[u] = readers[u].Any(v => !plan.Units[v].IsOp || feeds[v]);

        for (int u = 0; u < n; u++)
        {
            var unit = plan.Units[u];
            if (unit.Op is { } op)
            {
                var inputs = unit.Terms.Select(t => ShapeOf(t.Input)).ToArray();
                var shape = op.Shape(inputs);
                var (opMacs, opParameters) = op.Cost(inputs);
                units[u] = new EncoderUnit(unit.Name, -1, shape.Channels, [], unit.Reads, readers[u], shape.Height, shape.Width, feeds[u], IsOp: true,
                    OpMacs: opMacs, OpParameters: opParameters);
                stream[u] = shape;
                continue;
            }
            var convs = new List<UnitConv>();
            long channels = -1;
            (long H, long W)? size = null;
            foreach (var term in unit.Terms)
            {
                var input = ShapeOf(term.Input);
                if (term.Linear is { } linear)
                {
                    var l = linear(net); // on tokens: one output feature per token, the input's shape kept
                    convs.Add(new UnitConv(l.in_features, 1, 1, input.Height, input.Width));
                    if (channels < 0) channels = l.out_features;
                    size ??= (input.Height, input.Width);
                }
                else if (term.Layer is { } layer)
                {
                    var (conv, _) = layer(net);
                    var hw = OutputSize(conv, (input.Height, input.Width)); // a resized term's convolution runs at its input's size
                    convs.Add(new UnitConv(conv.in_channels, conv.groups, conv.kernel_size[0] * conv.kernel_size[1], hw.H, hw.W));
                    if (channels < 0) channels = conv.out_channels;
                    if (!term.Resized) size ??= hw;
                }
            }
            // An identity term fixes the size (the HRNet exchange's target branch); else the first layer that is not resized.
            if (unit.Terms.FirstOrDefault(t => t.IsIdentity && !t.Resized) is { } identity) size = (ShapeOf(identity.Input).Height, ShapeOf(identity.Input).Width);
            if (channels < 0 || size is not { } outSize)
                throw new ArgumentException($"Unit {unit.Name} of the plan has no convolution or linear layer that fixes its channels and size.");
            bool gated = mode == GatingMode.Conv || unit.EndsBlock;
            (long Macs, long Parameters) then = (0, 0);
            if (unit.Then is { } after)
            {
                // The channel-by-channel operation that is part of the layer: its output shape, and its cost per filter.
                var layerShape = new FeatureShape(channels, outSize.H, outSize.W);
                var thenShape = after.Shape([layerShape]);
                var cost = after.Cost([layerShape]);
                then = (cost.Macs / channels, cost.Parameters / channels);
                outSize = (thenShape.Height, thenShape.Width);
            }
            units[u] = new EncoderUnit(unit.Name, gated ? gate++ : -1, channels, convs, unit.Reads, readers[u], outSize.H, outSize.W, feeds[u],
                ThenMacsPerFilter: then.Macs, ThenParametersPerFilter: then.Parameters);
            stream[u] = new(channels, unit.PoolAfter is { } p ? Pooled(outSize.H, p) : outSize.H, unit.PoolAfter is { } q ? Pooled(outSize.W, q) : outSize.W);
        }
        return units;
    }

    private static long Pooled(long n, PlanPool p) => (n + 2 * p.Padding - (p.Kernel - 1) - 1) / p.Stride + 1;

    private static (long H, long W) OutputSize(Conv2d conv, (long H, long W) hw)
    {
        static long Out(long n, long kernel, long stride, long padding, long dilation) => (n + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;
        return (Out(hw.H, conv.kernel_size[0], conv.stride[0], conv.padding![0], conv.dilation[0]),
                Out(hw.W, conv.kernel_size[1], conv.stride[1], conv.padding![1], conv.dilation[1]));
    }
}
