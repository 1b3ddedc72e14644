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

/// <summary>Mean rank: rank every row per metric (1 = best, ties share the smaller rank), then average.</summary>
public static class MeanRank
{
    /// <summary><paramref name="values"/>[row][metric]; returns one mean rank per row.</summary>
    public static double[] Compute(IReadOnlyList<IReadOnlyList<double>> values, IReadOnlyList<bool> higherIsBetter)
    {
        int rows = values.Count, metrics = higherIsBetter.Count;
        if (values.Any(r => r.Count != metrics)) throw new ArgumentException($"Every row needs {metrics} metrics.");
        var sums = new double[rows];
        for (int m = 0; m < metrics; m++)
            for (int r = 0; r < rows; r++)
            {
                double v = values[r][m];
                int better = values.Count(o => higherIsBetter[m] ? o[m] > v : o[m] < v);
                sums[r] += better + 1;
            }
        return sums.Select(s => s / metrics).ToArray();
    }
}
