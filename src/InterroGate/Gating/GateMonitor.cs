// What the gates of an InterroGate model are doing, layer by layer (arXiv 2402.16848, Sec. 3; docs/method.md,
// "The gate regime"): the task gradient on each α against the sparsity loss's uniform push.
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>
/// One gated layer's state for one task. <see cref="Specific"/>: fraction of channels the task reads from its own
/// copy (G = 1). <see cref="AlphaMean"/>, <see cref="AlphaStd"/>: mean and spread of α over the layer's channels.
/// <see cref="MixWeight"/>: the task's mean softmax(β) weight in the shared mix, <see cref="MixWeightMax"/> its
/// largest over channels (NaN on the last gated layer, which has no mix). Gradient statistics are running means over
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
/// means with the gates' current state. Values leave the step as .NET numbers.
/// </summary>
public sealed class GateMonitor
{
    private readonly string[] _tasks;
    private readonly long[] _channels;
    private readonly double[,] _gradSum, _spreadSum, _pushSum; // [layer, task]
    private readonly double[][] _channelSum; // [layer][task·C]: each gate's task gradient summed over the steps
    private readonly long[,] _flips;
    private bool[][]? _previous; // hard gates per layer, [T·C] flattened
    private int _steps;

    public GateMonitor(IReadOnlyList<string> tasks, IReadOnlyList<long> channels)
    {
        _tasks = tasks.ToArray();
        _channels = channels.ToArray();
        int l = _channels.Length, t = _tasks.Length;
        (_gradSum, _spreadSum, _pushSum, _flips) = (new double[l, t], new double[l, t], new double[l, t], new long[l, t]);
        _channelSum = _channels.Select(c => new double[t * c]).ToArray();
    }

    /// <summary>Gate-learning steps observed since the last <see cref="Reset"/>.</summary>
    public int Steps => _steps;

    /// <summary>
    /// Reads one step's gradients: <paramref name="alphas"/> with their .grad (task gradients plus the push), and
    /// <paramref name="push"/> = λ_s·∂L_s/∂α per layer. Layers whose α has no gradient are skipped. Flips are changes
    /// of <paramref name="gates"/> (the gates the step used, 1 or 0; default 1[α &gt; 0]).
    /// </summary>
    public void Observe(IReadOnlyList<Tensor> alphas, IReadOnlyList<Tensor> push, IReadOnlyList<Tensor>? gates = null)
    {
        using var _ = no_grad();
        int layers = alphas.Count, tasks = _tasks.Length;
        if (alphas.Any(a => a.grad is null)) return;
        // One copy to the host per step: α, its gradient and the push, every layer flattened.
        var parts = new List<Tensor>(3 * layers);
        for (int l = 0; l < layers; l++)
            parts.AddRange([gates is null ? alphas[l].flatten() : gates[l].flatten().sub(0.5), alphas[l].grad!.flatten(), push[l].flatten()]);
        var flat = cat(parts, 0).to(float32).cpu().data<float>().ToArray();

        _previous ??= new bool[layers][];
        int offset = 0;
        for (int l = 0; l < layers; l++)
        {
            int c = (int)_channels[l], n = tasks * c;
            var hard = new bool[n];
            for (int t = 0; t < tasks; t++)
            {
                double sum = 0, signedSum = 0, sumSq = 0, pushSum = 0;
                for (int k = 0; k < c; k++)
                {
                    int i = t * c + k;
                    double alpha = flat[offset + i], grad = flat[offset + n + i], p = flat[offset + 2 * n + i]; // alpha: α, or G − 0.5
                    double x = grad - p; // the tasks' part of the gradient on this gate
                    _channelSum[l][i] += x;
                    sum += Math.Abs(x);
                    signedSum += x;
                    sumSq += x * x;
                    pushSum += p;
                    hard[i] = alpha > 0;
                    if (_previous[l] is { } prev && prev[i] != hard[i]) _flips[l, t]++;
                }
                double mean = signedSum / c;
                double variance = Math.Max(0, sumSq / c - mean * mean);
                _gradSum[l, t] += sum / c;
                _spreadSum[l, t] += Math.Sqrt(variance);
                _pushSum[l, t] += pushSum / c;
            }
            _previous[l] = hard;
            offset += 3 * n;
        }
        _steps++;
    }

    /// <summary>Forgets the running means and flip counts (the last gate state is kept for counting flips).</summary>
    public void Reset()
    {
        Array.Clear(_gradSum);
        Array.Clear(_spreadSum);
        Array.Clear(_pushSum);
        Array.Clear(_flips);
        foreach (var c in _channelSum) Array.Clear(c);
        _steps = 0;
    }

    /// <summary>The running means with the current gate logits and mixing weights.</summary>
    public IReadOnlyList<GateLayerStats> Report(IReadOnlyList<GateLayer> layers)
    {
        using var _ = no_grad();
        var result = new List<GateLayerStats>(layers.Count);
        for (int l = 0; l < layers.Count; l++)
        {
            // Read once per epoch, outside any step's dispose scope: freed here.
            using var alpha = layers[l].Alpha.detach().to(float64).cpu();
            using var on = layers[l].Hard().cpu();
            using var mix = layers[l].Beta?.detach().softmax(0).to(float64).cpu();
            var tasks = new GateTaskStats[_tasks.Length];
            for (int t = 0; t < _tasks.Length; t++)
            {
                var a = alpha[t].data<double>().ToArray();
                double specific = on[t].data<float>().ToArray().Count(v => v > 0.5) / (double)a.Length;
                double mean = a.Average(), std = Math.Sqrt(a.Select(v => (v - mean) * (v - mean)).Average());
                var w = mix?[t].data<double>().ToArray();
                double s = _steps;
                int c = a.Length;
                var steady = Enumerable.Range(0, c).Select(k => _channelSum[l][t * c + k] / s).ToArray();
                double steadyMean = steady.Average();
                tasks[t] = new GateTaskStats(_tasks[t], specific, mean, std,
                    w?.Average() ?? double.NaN, w?.Max() ?? double.NaN,
                    _steps > 0 ? _gradSum[l, t] / s : double.NaN, _steps > 0 ? _spreadSum[l, t] / s : double.NaN,
                    _steps > 0 ? _pushSum[l, t] / s : double.NaN, _flips[l, t],
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
