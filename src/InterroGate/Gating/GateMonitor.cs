// What the gates of an InterroGate model are doing, layer by layer (arXiv 2402.16848, Sec. 3; docs/method.md,
// "The gate regime"): the task gradient on each α against the sparsity loss's uniform push.
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>
/// One gated layer's state for one task. <see cref="Specific"/>: fraction of channels the task reads from its own
/// copy (G = 1). <see cref="AlphaMean"/>, <see cref="AlphaStd"/>: mean and spread of α over the layer's channels.
/// <see cref="MixWeight"/>: the task's mean softmax(β) weight in the shared mix, <see cref="MixWeightMax"/> its
/// largest, both over the channels where the mix is formed and read (some task reads its own copy there, and the next
/// shared layer keeps a filter); NaN where there is none (the last gated layer has no mix at all). Gradient statistics are running means over
/// the gate-learning steps observed (NaN where none were): <see cref="TaskGrad"/> = mean over channels of |∂L_tasks/∂α|,
/// <see cref="TaskGradSpread"/> = its standard deviation over channels in one step, averaged over the steps (the signal
/// that tells channels apart, minibatch noise included), <see cref="Push"/> = λ_s·∂L_s/∂α averaged over channels (the
/// same for every channel but for σ'(α)). <see cref="SteadyGrad"/> and <see cref="SteadySpread"/>: mean and standard
/// deviation over channels of each channel's task gradient averaged over the steps: what the data says about a
/// channel consistently, the noise averaged out (negative: the task pulls the gate toward its own copy).
/// <see cref="Flips"/>: sign changes of α counted over those steps.
/// </summary>
public sealed record GateTaskStats(
    string Task, double Specific, double AlphaMean, double AlphaStd, double MixWeight, double MixWeightMax,
    double TaskGrad, double TaskGradSpread, double Push, long Flips, double SteadyGrad = double.NaN, double SteadySpread = double.NaN)
{
    /// <summary>Push over spread: ≫ 1 means the layer's gates move in lockstep, whatever the data.</summary>
    public double PushOverSpread => TaskGradSpread > 0 ? Push / TaskGradSpread : Push > 0 ? double.PositiveInfinity : double.NaN;

    /// <summary>
    /// Push over the steady spread: ≫ 1 means that over these steps the push outweighs every consistent difference
    /// between the layer's channels, so their gates drift together even where one step's spread is larger than the push.
    /// </summary>
    public double PushOverSteadySpread => SteadySpread > 0 ? Push / SteadySpread : Push > 0 && SteadySpread == 0 ? double.PositiveInfinity : double.NaN;
}

/// <summary>One gated layer: its index in forward order, its channels and each task's <see cref="GateTaskStats"/>.</summary>
public sealed record GateLayerStats(int Layer, long Channels, IReadOnlyList<GateTaskStats> Tasks)
{
    /// <summary>True where the layer is split channel by channel for some task (0 &lt; fraction &lt; 1).</summary>
    public bool Split => Tasks.Any(t => t.Specific > 0 && t.Specific < 1);
}

/// <summary>
/// Accumulates, over gate-learning steps, the task gradient and the sparsity push on every gate (read after the
/// backward pass, before the optimiser steps) and the sign changes of α; <see cref="Report"/> gives the running
/// means with the gates' current state. The running sums stay on the gates' device (float64) and a step adds to them
/// with a fixed number of tensor operations, whatever the number of layers, and no copy to the host: a GPU's queue
/// of launches is not drained at every step. They reach the host when <see cref="Report"/> reads them.
/// </summary>
public sealed class GateMonitor
{
    private readonly string[] _tasks;
    private readonly long[] _channels;
    private readonly long[] _offsets; // start of each layer's [T·C] block in the flattened gates
    private readonly long _total;
    private int _steps;
    // On the device of the gates, created by the first Observe, outside any dispose scope:
    private Tensor? _sums;       // [3, L·T]: per step, mean |x| over the layer's channels, its spread, the mean push
    private Tensor? _channelSum; // [Σ T·C]: each gate's task gradient summed over the steps
    private Tensor? _flips;      // [L·T]
    private Tensor? _previous;   // [Σ T·C] bool: the hard gates of the last step
    private Tensor? _segment;    // [Σ T·C] int64: layer·T + task of each gate
    private Tensor? _count;      // [L·T] float64: channels of each layer, once per task

    public GateMonitor(IReadOnlyList<string> tasks, IReadOnlyList<long> channels)
    {
        _tasks = tasks.ToArray();
        _channels = channels.ToArray();
        _offsets = new long[_channels.Length];
        for (int l = 1; l < _channels.Length; l++) _offsets[l] = _offsets[l - 1] + _tasks.Length * _channels[l - 1];
        _total = _channels.Sum() * _tasks.Length;
    }

    /// <summary>Gate-learning steps observed since the last <see cref="Reset"/>.</summary>
    public int Steps => _steps;

    /// <summary>
    /// Reads one step's gradients: <paramref name="alphas"/> with their .grad (task gradients plus the push), and
    /// <paramref name="push"/> = λ_s·∂L_s/∂α per layer. Skipped when some α has no gradient. Flips are changes
    /// of <paramref name="gates"/> (the gates the step used, 1 or 0; default 1[α &gt; 0]).
    /// </summary>
    public void Observe(IReadOnlyList<Tensor> alphas, IReadOnlyList<Tensor> push, IReadOnlyList<Tensor>? gates = null)
    {
        if (alphas.Any(a => a.grad is null)) return;
        if (alphas.Count != _channels.Length) throw new ArgumentException($"Expected {_channels.Length} gated layers, got {alphas.Count}.");
        // Called inside the training step's dispose scope, which frees the temporaries below.
        Prepare(alphas[0]);
        var device = alphas[0].device;
        using var _ = no_grad();
        var grad = cat(alphas.Select(a => a.grad!.flatten()).ToArray(), 0).to(float64);
        var p = cat(push.Select(t => t.flatten()).ToArray(), 0).to(float64);
        var x = grad - p; // the tasks' part of the gradient on each gate
        _channelSum!.PlusInPlace(x);
        // Per layer and task: sums of |x|, x, x² and the push over the layer's channels, in one scatter.
        var perGate = stack([x.abs(), x, x * x, p]);
        var means = zeros([4, _count!.shape[0]], float64, device).index_add_(1, _segment!, perGate, Scalars.One).div_(_count);
        var spread = (means[2] - means[1] * means[1]).clamp_min_(Scalars.Zero).sqrt_();
        _sums!.PlusInPlace(stack([means[0], spread, means[3]]));
        var hard = gates is null
            ? cat(alphas.Select(a => a.detach().flatten()).ToArray(), 0).gt(Scalars.Zero)
            : cat(gates.Select(g => g.flatten()).ToArray(), 0).gt(Scalars.Half);
        if (_previous is not null)
        {
            _flips!.index_add_(0, _segment!, hard.ne(_previous).to(float64), Scalars.One);
            _previous.copy_(hard);
        }
        else
        {
            _previous = hard.DetachFromDisposeScope();
        }
        _steps++;
    }

    /// <summary>Creates the running sums on the device of <paramref name="like"/>, or moves them there (a model moved between steps).</summary>
    private void Prepare(Tensor like)
    {
        var device = like.device;
        // torch.Device compares by reference: compare the type and index.
        if (_sums is not null && _sums.device_type == like.device_type && _sums.device_index == like.device_index) return;
        int layers = _channels.Length, tasks = _tasks.Length;
        if (_sums is null)
        {
            _sums = zeros([3, layers * tasks], float64, device).DetachFromDisposeScope();
            _channelSum = zeros([_total], float64, device).DetachFromDisposeScope();
            _flips = zeros([layers * tasks], float64, device).DetachFromDisposeScope();
            var segment = new long[_total];
            for (int l = 0; l < layers; l++)
                for (int t = 0; t < tasks; t++)
                    for (long c = 0; c < _channels[l]; c++) segment[_offsets[l] + t * _channels[l] + c] = l * tasks + t;
            _segment = tensor(segment).to(device).DetachFromDisposeScope();
            _count = tensor(Enumerable.Range(0, layers * tasks).Select(i => (double)_channels[i / tasks]).ToArray()).to(device).DetachFromDisposeScope();
            return;
        }
        (_sums, _channelSum, _flips, _previous, _segment, _count) =
            (Move(_sums, like), Move(_channelSum, like), Move(_flips, like), Move(_previous, like), Move(_segment, like), Move(_count, like));
    }

    private static Tensor? Move(Tensor? t, Tensor like)
    {
        if (t is null) return null;
        var moved = t.to(like.device).DetachFromDisposeScope();
        t.Dispose();
        return moved;
    }

    /// <summary>Frees the running sums (they belong to no module, so disposing the model does not reach them); the next
    /// observed step starts them anew.</summary>
    public void Release()
    {
        foreach (var t in new[] { _sums, _channelSum, _flips, _previous, _segment, _count }) t?.Dispose();
        (_sums, _channelSum, _flips, _previous, _segment, _count) = (null, null, null, null, null, null);
        _steps = 0;
    }

    /// <summary>Forgets the running means and flip counts (the last gate state is kept for counting flips).</summary>
    public void Reset()
    {
        using var _ = no_grad();
        _sums?.ZeroInPlace();
        _channelSum?.ZeroInPlace();
        _flips?.ZeroInPlace();
        _steps = 0;
    }

    /// <summary>The running means with the current gate logits and mixing weights. Read outside the steps (at an epoch's
    /// end, for a report): the caller's dispose scope frees what the reads make. <paramref name="mixed"/>: per layer, the
    /// channels whose mix the network forms and reads (β matters only there); null: every channel of a layer with a mix.</summary>
    public IReadOnlyList<GateLayerStats> Report(IReadOnlyList<GateLayer> layers, IReadOnlyList<long[]>? mixed = null)
    {
        using var _ = no_grad();
        int tasksCount = _tasks.Length;
        // The running sums, read once (zeros before the first step).
        double[] sums = _sums is null ? new double[3 * layers.Count * tasksCount] : _sums.cpu().data<double>().ToArray();
        double[] flips = _flips is null ? new double[layers.Count * tasksCount] : _flips.cpu().data<double>().ToArray();
        double[] channelSum = _channelSum is null ? new double[_total] : _channelSum.cpu().data<double>().ToArray();
        int cells = layers.Count * tasksCount;
        var result = new List<GateLayerStats>(layers.Count);
        for (int l = 0; l < layers.Count; l++)
        {
            using var alpha = layers[l].Alpha.detach().to(float64).cpu();
            using var on = layers[l].Hard().cpu();
            using var mix = layers[l].Beta?.detach().softmax(0).to(float64).cpu();
            var tasks = new GateTaskStats[tasksCount];
            for (int t = 0; t < tasksCount; t++)
            {
                var a = alpha[t].data<double>().ToArray();
                double specific = on[t].data<float>().ToArray().Count(v => v > 0.5) / (double)a.Length;
                double mean = a.Average(), std = Math.Sqrt(a.Select(v => (v - mean) * (v - mean)).Average());
                var w = mix?[t].data<double>().ToArray();
                if (w is not null && mixed is not null) w = mixed[l].Select(ch => w[ch]).ToArray();
                if (w is { Length: 0 }) w = null;
                double s = _steps;
                int c = a.Length, cell = l * tasksCount + t;
                var steady = Enumerable.Range(0, c).Select(k => channelSum[_offsets[l] + t * c + k] / s).ToArray();
                double steadyMean = steady.Average();
                tasks[t] = new GateTaskStats(_tasks[t], specific, mean, std,
                    w?.Average() ?? double.NaN, w?.Max() ?? double.NaN,
                    _steps > 0 ? sums[cell] / s : double.NaN, _steps > 0 ? sums[cells + cell] / s : double.NaN,
                    _steps > 0 ? sums[2 * cells + cell] / s : double.NaN, (long)flips[cell],
                    _steps > 0 ? steadyMean : double.NaN,
                    _steps > 0 ? Math.Sqrt(steady.Select(v => (v - steadyMean) * (v - steadyMean)).Average()) : double.NaN);
            }
            result.Add(new GateLayerStats(l, layers[l].Channels, tasks));
        }
        return result;
    }

    /// <summary>
    /// Whether gates of this configuration can learn channel by channel (docs/method.md, conditions R1 and R2), from
    /// gradient statistics observed at the start of training: null when they can, else one line with the numbers.
    /// Lockstep: in at least half of the layers the push is more than <paramref name="lockstepRatio"/> times the spread
    /// of the task gradient across channels. Frozen: within <paramref name="gateSteps"/> steps at
    /// <paramref name="gateLr"/>, no gate of any layer can travel the distance from α₀ to 0 even if push and task
    /// gradient pointed the same way at every step (SGD: lr times push plus task gradient per step; Adam: about lr).
    /// </summary>
    public static string? Verdict(IReadOnlyList<GateLayerStats> stats, double lambdaS, double alphaInit, double gateLr, int gateSteps,
        Architectures.GateOptimizer optimizer = Architectures.GateOptimizer.Sgd, double lockstepRatio = 10)
    {
        var cells = stats.SelectMany(l => l.Tasks.Select(t => (Layer: l, Task: t))).Where(c => double.IsFinite(c.Task.TaskGradSpread)).ToArray();
        if (cells.Length == 0) return null;
        double Median(IEnumerable<double> xs) { var s = xs.OrderBy(x => x).ToArray(); return s.Length == 0 ? double.NaN : s[s.Length / 2]; }

        bool adam = optimizer == Architectures.GateOptimizer.Adam;
        // Adam moves a gate by at most about gateLr per step, whatever its gradient's size.
        double travel = adam ? gateSteps * gateLr : cells.Max(c => gateSteps * gateLr * (Math.Abs(c.Task.Push) + c.Task.TaskGrad));
        if (travel < Math.Abs(alphaInit))
            return adam
                ? $"gate regime: no gate can move: over {gateSteps} gate steps Adam at gateLr {gateLr:G3} moves a gate at most about {travel:G3}, " +
                  $"less than |alphaInit| = {Math.Abs(alphaInit):G3}; raise gateLr, lower alphaInit, or train the gates longer."
                : $"gate regime: no gate can move: over {gateSteps} gate steps at gateLr {gateLr:G3} a gate travels at most {travel:G3}, " +
                  $"less than |alphaInit| = {Math.Abs(alphaInit):G3} (largest push {cells.Max(c => c.Task.Push):G3}, largest task gradient {cells.Max(c => c.Task.TaskGrad):G3} per step); " +
                  "raise lambdaS or gateLr, lower alphaInit, or train the gates longer.";

        var ratios = stats.Select(l => l.Tasks.Where(t => !double.IsNaN(t.PushOverSpread)).Select(t => t.PushOverSpread).DefaultIfEmpty(double.NaN).Max()).ToArray();
        int lockstep = ratios.Count(r => r > lockstepRatio);
        if (lambdaS > 0 && lockstep * 2 >= stats.Count)
        {
            double median = Median(ratios.Where(r => !double.IsNaN(r)));
            return $"gate regime: lockstep: in {lockstep} of {stats.Count} gated layers the sparsity push is more than {lockstepRatio:G3}× the spread of the " +
                   $"task gradient across channels (median {median:G3}×), so whole layers will flip together{(adam ? "" : ", narrowest first")}, whatever the data; " +
                   $"a lambdaS near {lambdaS * 2 / median:G2} puts the push within about 2× of the spread.";
        }
        return null;
    }
}
