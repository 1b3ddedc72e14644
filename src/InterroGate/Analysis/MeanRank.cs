namespace InterroGate.Analysis;

/// <summary>
/// Mean rank: rank every row per metric (1 = best, ties share the smaller rank), then average. A metric that is not a
/// number (NaN: a split without a valid pixel, outputs that were not finite) ranks below every number.
/// </summary>
public static class MeanRank
{
    /// <summary><paramref name="values"/>[row][metric]; returns one mean rank per row.</summary>
    public static double[] Compute(IReadOnlyList<IReadOnlyList<double>> values, IReadOnlyList<bool> higherIsBetter)
    {
        int rows = values.Count, metrics = higherIsBetter.Count;
        if (metrics == 0) throw new ArgumentException("Mean rank needs at least one metric.", nameof(higherIsBetter));
        if (values.Any(r => r.Count != metrics)) throw new ArgumentException($"Every row needs {metrics} metrics.");
        var sums = new double[rows];
        for (int m = 0; m < metrics; m++)
            for (int r = 0; r < rows; r++)
            {
                double v = values[r][m];
                bool higher = higherIsBetter[m];
                int better = values.Count(o => !double.IsNaN(o[m]) && (double.IsNaN(v) || (higher ? o[m] > v : o[m] < v)));
                sums[r] += better + 1;
            }
        return sums.Select(s => s / metrics).ToArray();
    }
}
