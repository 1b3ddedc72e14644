namespace InterroGate.Analysis;

/// <summary>Δ_MTL: the mean relative gain over a baseline, in %.</summary>
public static class DeltaMtl
{
    /// <summary>
    /// Δ_MTL = (1/T) Σ_i (−1)^{l_i} (M_m,i − M_b,i) / M_b,i × 100, l_i = 1 where lower is better.
    /// </summary>
    public static double Compute(IReadOnlyList<double> model, IReadOnlyList<double> baseline, IReadOnlyList<bool> higherIsBetter, IReadOnlyList<string>? names = null)
    {
        if (model.Count != baseline.Count || model.Count != higherIsBetter.Count || model.Count == 0)
            throw new ArgumentException($"Δ_MTL needs one model metric, baseline metric and direction per task ({model.Count}, {baseline.Count}, {higherIsBetter.Count}).");
        double sum = 0;
        for (int i = 0; i < model.Count; i++)
        {
            if (baseline[i] == 0) throw new ArgumentException($"The baseline metric of task {names?[i] ?? i.ToString()} is 0: Δ_MTL is undefined.");
            double relative = (model[i] - baseline[i]) / baseline[i];
            sum += higherIsBetter[i] ? relative : -relative;
        }
        return 100 * sum / model.Count;
    }
}
