// Shared machinery of the gradient methods: per-task gradients of the shared parameters, one combined update.
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// Base of the gradient-manipulation methods. One backward pass per task over the single forward graph
/// (kept only until the last task's pass) collects each task's gradient of the shared parameters as a
/// row of G [T, P]; every other parameter simply accumulates the sum of the task gradients, as under
/// uniform weighting: a task head gets its own task's gradient, and an InterroGate task branch its own
/// task's and, through the shared mix it feeds, the other tasks' (their sum, unbalanced). The method turns G
/// into one shared update d [P]; the regulariser is back-propagated last, unbalanced.
/// <para>Scale: d is returned on the scale of the uniform sum Σ_t g_t (a method whose natural output is a
/// convex combination is multiplied by T), so learning rates carry over from uniform weighting.</para>
/// </summary>
public abstract class GradientBalancer : IBalancer
{
    public abstract string Name { get; }

    /// <summary>The combined shared update from the per-task gradients <paramref name="g"/> [T, P], and the
    /// task weights it amounts to (for logs; all ones where the method has none).</summary>
    public abstract (Tensor Direction, double[] Weights) Combine(Tensor g);

    public double[] Backward(IReadOnlyList<Tensor> taskLosses, Tensor? regularizer, BalanceContext context)
    {
        int T = taskLosses.Count;
        var shared = context.SharedParameters;
        if (shared.Count == 0 || T == 1)
        {
            // Nothing is shared (or one task): every method reduces to the plain sum.
            Tensor total = taskLosses[0];
            for (int t = 1; t < T; t++) total = total.Plus(taskLosses[t]);
            if (regularizer is not null) total = total.Plus(regularizer);
            total.backward();
            return Enumerable.Repeat(1.0, T).ToArray();
        }

        long count = shared.Sum(p => p.numel());
        var g = zeros(T, count, dtype: shared[0].dtype, device: shared[0].device); // [T, P]
        for (int t = 0; t < T; t++)
        {
            bool last = t == T - 1 && regularizer is null;
            taskLosses[t].backward(retain_graph: !last);
            long offset = 0;
            foreach (var p in shared)
            {
                long n = p.numel();
                if (p.grad is { } pg)
                {
                    g[t].narrow(0, offset, n).copy_(pg.flatten());
                    pg.ZeroInPlace();
                }
                offset += n;
            }
        }

        var (d, weights) = Combine(g);
        using (no_grad())
        {
            long offset = 0;
            foreach (var p in shared)
            {
                long n = p.numel();
                var slice = d.narrow(0, offset, n).view(p.shape);
                if (p.grad is { } pg) pg.copy_(slice);
                else p.grad = slice.clone();
                offset += n;
            }
        }
        regularizer?.backward();
        return weights;
    }

    /// <summary>
    /// The Gram matrix G Gᵀ [T, T] as .NET numbers (the solvers work in task space), its dot products summed in float64:
    /// gradients that nearly cancel leave a Gram matrix whose small eigenvalues float32 sums get wrong, and a solver
    /// such as Nash-MTL's then returns an update that raises a task's loss. Two rows at a time are held in float64.
    /// </summary>
    protected static double[,] Gram(Tensor g)
    {
        int T = (int)g.shape[0];
        var a = new double[T, T];
        for (int i = 0; i < T; i++)
        {
            using var scope = NewDisposeScope(); // row i in float64, and one other row at a time
            var row = g[i].to(float64);
            for (int j = i; j < T; j++)
            {
                using var other = j == i ? row.alias() : g[j].to(float64);
                a[i, j] = a[j, i] = row.dot(other).item<double>();
            }
        }
        return a;
    }

    /// <summary>
    /// Σ_t w_t g_t for weights given as .NET numbers, summed in float64 one row at a time (large weights on gradients
    /// that nearly cancel leave a small sum that float32 would lose), in g's dtype.
    /// </summary>
    protected static Tensor Weighted(Tensor g, double[] w)
    {
        Tensor? sum = null;
        using (var scope = NewDisposeScope())
        {
            for (int t = 0; t < w.Length; t++)
            {
                if (w[t] == 0) continue;
                using var weight = Tensors.Scalars.Of(w[t]);
                var term = g[t].to(float64).mul(weight); // not in place: in float64, .to returns g's own row
                sum = sum is null ? term : sum.add_(term, Tensors.Scalars.One);
            }
            sum = (sum ?? zeros(g.shape[1], dtype: float64, device: g.device)).to(g.dtype).MoveToOuterDisposeScope();
        }
        return sum;
    }
}
