// DWA, Dynamic Weight Average: weight each task by how slowly its loss is falling (Liu et al., "End-to-End Multi-Task Learning with Attention", CVPR 2019).
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// λ_k(e) = T·exp(r_k / τ) / Σ_i exp(r_i / τ) with r_k = L_k(e−1) / L_k(e−2), the ratio of task k's mean
/// training loss over the last two epochs; λ = 1 during the first two epochs. τ is the temperature (2 in
/// the paper). The weights sum to T, the scale of the uniform sum.
/// </summary>
public sealed class Dwa : IBalancer
{
    private readonly List<double[]> _history = [];
    private double[] _weights;

    public Dwa(int tasks, double temperature)
    {
        if (tasks < 1) throw new ArgumentOutOfRangeException(nameof(tasks), tasks, "DWA needs at least one task.");
        if (!(temperature > 0) || !double.IsFinite(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "DWA's temperature must be > 0.");
        Temperature = temperature;
        _weights = Enumerable.Repeat(1.0, tasks).ToArray();
    }

    public string Name => "dwa";
    public double Temperature { get; }
    public IReadOnlyList<double> CurrentWeights => _weights;

    public double[] Backward(IReadOnlyList<Tensor> taskLosses, Tensor? regularizer, BalanceContext context) =>
        FixedWeights.WeightedBackward(taskLosses, regularizer, _weights);

    public IReadOnlyDictionary<string, double[]> State() => new Dictionary<string, double[]>
    {
        ["weights"] = _weights.ToArray(),
        ["history"] = _history.SelectMany(h => h).ToArray(),
    };

    public void Restore(IReadOnlyDictionary<string, double[]> state)
    {
        if (state.TryGetValue("weights", out var w) && w.Length == _weights.Length) _weights = w.ToArray();
        if (state.TryGetValue("history", out var h) && h.Length % _weights.Length == 0)
        {
            _history.Clear();
            _history.AddRange(h.Chunk(_weights.Length));
        }
    }

    public void EpochEnded(IReadOnlyList<double> meanTaskLosses)
    {
        if (meanTaskLosses.Count != _weights.Length)
            throw new ArgumentException($"DWA was built for {_weights.Length} tasks, got {meanTaskLosses.Count} losses.");
        _history.Add(meanTaskLosses.ToArray());
        if (_history.Count < 2) return;
        var (previous, last) = (_history[^2], _history[^1]);
        var ratio = last.Select((l, k) => previous[k] > 0 ? l / previous[k] : 1.0).ToArray();
        double max = ratio.Max(); // subtracted inside exp for stability; cancels in the normalisation
        var e = ratio.Select(r => Math.Exp((r - max) / Temperature)).ToArray();
        double sum = e.Sum();
        _weights = e.Select(x => _weights.Length * x / sum).ToArray();
    }
}
