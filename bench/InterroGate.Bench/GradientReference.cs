// Writes gradient matrices and what each gradient method of the library makes of them, for the independent
// Python reference (bench/reference/gradient_methods.py) to recompute and compare.
// Usage: dotnet run -c Release --project bench/InterroGate.Bench -- gradient-reference OUT.json
using System.Text.Json;
using InterroGate.Balancing;
using static TorchSharp.torch;

internal static class GradientReference
{
    public static void Run(string path)
    {
        manual_seed(42);
        var cases = new List<object>();
        foreach (var (tasks, size, conflict) in new[] { (2, 8, false), (2, 8, true), (3, 16, false), (3, 16, true), (4, 32, true), (5, 64, false) })
        {
            var g = randn(tasks, size, dtype: float64) * (rand(tasks, 1, dtype: float64) * 4 + 0.25); // unequal lengths
            if (conflict) g[1].copy_(-0.8 * g[0] + 0.3 * g[1]); // a task pulling against another
            int T = tasks;
            int[] Others(int i) => Enumerable.Range(0, T).Where(j => j != i).ToArray();
            cases.Add(new
            {
                g = Rows(g),
                pcgrad = Vector(PCGrad.Project(g, Others)),
                cagrad = new Dictionary<string, double[]>
                {
                    ["0.0"] = Vector(CAGrad.Direction(g, 0).D), ["0.4"] = Vector(CAGrad.Direction(g, 0.4).D), ["1.0"] = Vector(CAGrad.Direction(g, 1.0).D),
                },
                mgda = Mgda.Weights(g, normalize: false),
                mgda_l2 = Mgda.Weights(g, normalize: true),
                imtl_g = ImtlG.Weights(g),
                nash_mtl = NashMtl.Weights(g),
                aligned_mtl = AlignedMtl.Weights(g),
            });
        }
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            note = "pcgrad: each task projected off the others in increasing task order; cagrad: d on the scale of the mean gradient; the rest: weights of the rows of g",
            cases,
        }, new JsonSerializerOptions { WriteIndented = false }));
        Console.WriteLine($"{cases.Count} cases written to {path}");
    }

    private static double[][] Rows(Tensor g) => Enumerable.Range(0, (int)g.shape[0]).Select(i => Vector(g[i])).ToArray();
    private static double[] Vector(Tensor v) => v.to(float64).cpu().data<double>().ToArray();
}
