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

    /// <summary>The Gram matrix G Gᵀ [T, T] as .NET numbers (the solvers work in task space).</summary>
    protected static double[,] Gram(Tensor g)
    {
        var gg = g.matmul(g.t()).to(float64).cpu();
        int T = (int)gg.shape[0];
        var a = new double[T, T];
        var flat = gg.data<double>().ToArray();
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) a[i, j] = flat[i * T + j];
        return a;
    }

    /// <summary>Σ_t w_t g_t for weights given as .NET numbers.</summary>
    protected static Tensor Weighted(Tensor g, double[] w) =>
        tensor(w).to(g.dtype).to(g.device).matmul(g);
}
