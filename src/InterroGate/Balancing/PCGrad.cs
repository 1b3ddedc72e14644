// PCGrad: project each task gradient off the others it conflicts with (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020).
using InterroGate.Configuration;
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// For each task i, in a random order of the other tasks j: where g_i'·g_j &lt; 0, remove the conflicting
/// component, g_i' ← g_i' − (g_i'·g_j / |g_j|²) g_j. The update is Σ_i g_i'. The order is drawn from
/// libtorch's generator, so the run's seed fixes it.
/// </summary>
public sealed class PCGrad : GradientBalancer
{
    public override string Name => "pcgrad";

    public override (Tensor Direction, double[] Weights) Combine(Tensor g)
    {
        int T = (int)g.shape[0];
        // One random order per task from libtorch's (seeded) generator, the task itself left out.
        int[] RandomOthers(int i) => randperm(T).data<long>().ToArray().Select(x => (int)x).Where(j => j != i).ToArray();
        return (Project(g, RandomOthers), Enumerable.Repeat(1.0, T).ToArray());
    }

    /// <summary>The surgery on G [T, P] with the given order of the other tasks for each task.</summary>
    public static Tensor Project(Tensor g, Func<int, int[]> orderOfOthers)
    {
        int T = (int)g.shape[0];
        var squared = (g * g).sum(dim: 1).to(float64).cpu().data<double>().ToArray(); // |g_j|²
        Tensor total = zeros_like(g[0]);
        for (int i = 0; i < T; i++)
        {
            var gi = g[i].clone();
            foreach (int j in orderOfOthers(i))
            {
                double dot = gi.dot(g[j]).to(float64).item<double>();
                if (dot < 0 && squared[j] > 0) gi.sub_(g[j].Times(dot / squared[j]));
            }
            total = total.Plus(gi);
        }
        return total;
    }
}
