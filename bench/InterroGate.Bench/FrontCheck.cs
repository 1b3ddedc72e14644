// Budget targets against the λs sweep: for each row of a comparison trained to targets, how far each seed landed from
// its target, and its Δ_MTL against the λs sweep's Pareto front at the same MACs (linear between the front's points).
using System.Globalization;
using System.Text.Json;

internal static class FrontCheck
{
    private sealed record Row(string Label, string Method, double Macs, double Delta, double Std, double[] Gaps);

    public static void Run(string lambdaTable, string targetTable)
    {
        // Rows without a Δ_MTL (undefined against their baseline) are on no front.
        var sweep = Read(lambdaTable).Where(r => r.Method == "interrogate" && double.IsFinite(r.Delta) && double.IsFinite(r.Macs)).ToArray();
        var targets = Read(targetTable).Where(r => r.Method == "interrogate" && r.Gaps.Length > 0).ToArray();
        if (sweep.Length == 0) throw new ArgumentException($"{lambdaTable} has no InterroGate rows with a Δ_MTL.");
        if (targets.Length == 0) throw new ArgumentException($"{targetTable} has no InterroGate rows trained to a target.");
        // The front: rows no other row beats on both MACs (lower) and Δ_MTL (higher), by MACs.
        var front = sweep.Where(r => !sweep.Any(o => o != r && o.Macs <= r.Macs && o.Delta >= r.Delta && (o.Macs < r.Macs || o.Delta > r.Delta)))
            .OrderBy(r => r.Macs).ToArray();
        Console.WriteLine($"λs front ({front.Length} of {sweep.Length} rows): " +
                          string.Join("; ", front.Select(r => F($"{r.Label} {r.Macs / 1e6:F2} M, {r.Delta:+0.00;-0.00} ± {r.Std:F2}"))));
        Console.WriteLine();
        Console.WriteLine("| row | MACs (M) | largest gap to target over seeds | Δ_MTL % | front's Δ_MTL % at these MACs | difference | within one std or above |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var t in targets)
        {
            var (delta, std) = At(front, t.Macs);
            double diff = t.Delta - delta;
            bool ok = diff >= -Math.Max(t.Std, std);
            Console.WriteLine(F($"| {t.Label} | {t.Macs / 1e6:F3} | {t.Gaps.MaxBy(Math.Abs):+0.0;-0.0} % | {t.Delta:+0.00;-0.00} ± {t.Std:F2} | {delta:+0.00;-0.00} ± {std:F2} | {diff:+0.00;-0.00} | {(ok ? "yes" : "no")} |"));
        }
    }

    /// <summary>The front's Δ_MTL (and std) at <paramref name="macs"/>: linear between its two neighbours, the end point outside.</summary>
    private static (double Delta, double Std) At(Row[] front, double macs)
    {
        if (macs <= front[0].Macs) return (front[0].Delta, front[0].Std);
        if (macs >= front[^1].Macs) return (front[^1].Delta, front[^1].Std);
        int i = Array.FindLastIndex(front, r => r.Macs <= macs);
        var (a, b) = (front[i], front[i + 1]);
        double w = (macs - a.Macs) / (b.Macs - a.Macs);
        return (a.Delta + w * (b.Delta - a.Delta), a.Std + w * (b.Std - a.Std));
    }

    private static Row[] Read(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("rows").EnumerateArray().Select(r =>
        {
            double Num(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : double.NaN;
            var seeds = r.TryGetProperty("seeds", out var s) && s.ValueKind == JsonValueKind.Array ? s.EnumerateArray().ToArray() : [r];
            var gaps = seeds.Select(x => x.GetProperty("extra").TryGetProperty("gap to target %", out var g) ? g.GetDouble() : double.NaN)
                .Where(double.IsFinite).ToArray();
            double std = Num(r, "deltaMtlStd");
            return new Row(r.GetProperty("label").GetString()!, r.GetProperty("method").GetString()!, Num(r, "macs"), Num(r, "deltaMtl"),
                double.IsFinite(std) ? std : 0, gaps);
        }).ToArray();
    }

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
