// RLW, Random Loss Weighting: fresh random task weights at every step (Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022).
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Balancing;

/// <summary>
/// λ = T·softmax(z), z ~ N(0, I_T) drawn at every step from libtorch's (seeded) generator; the paper's
/// normal-then-softmax variant, scaled to sum to T (the scale of the uniform sum).
/// </summary>
public sealed class Rlw(int tasks) : IBalancer
{
    public string Name => "rlw";

    public double[] Backward(IReadOnlyList<Tensor> taskLosses, Tensor? regularizer, BalanceContext context)
    {
        if (taskLosses.Count != tasks) throw new ArgumentException($"RLW was built for {tasks} tasks, got {taskLosses.Count} losses.");
        var weights = Sample(tasks);
        return FixedWeights.WeightedBackward(taskLosses, regularizer, weights);
    }

    /// <summary>One draw of the weights (sum T, all positive).</summary>
    public static double[] Sample(int tasks) =>
        randn(tasks, dtype: float64).softmax(0).Times(tasks).data<double>().ToArray();
}
