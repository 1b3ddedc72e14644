// Per-unit choice between fused and separate branches for InterroGate's encoder, by timing both.
using InterroGate.Gating;
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Runtime;

/// <summary>Times each unit of a <see cref="GatedEncoder"/> with its T+1 copies fused and separate.</summary>
public static class FusionTuner
{
    /// <summary>
    /// Times every unit fused and unfused (forward and backward, median of <paramref name="repeats"/> after one
    /// warm-up) on the activations that batch <paramref name="x"/> produces, on its device, and returns per unit
    /// whether to fuse (only where that saves at least 5%). Weights, gradients, batch-norm statistics and the
    /// random state are left as they were.
    /// </summary>
    public static bool[] Measure(GatedEncoder encoder, Tensor x, int repeats = 3)
    {
        if (repeats < 1) throw new ArgumentOutOfRangeException(nameof(repeats), repeats, "at least 1");
        var norms = encoder.modules().OfType<BatchNorm2d>().ToArray();
        var saved = norms.Select(b => (Mean: b.running_mean!.clone(), Var: b.running_var!.clone(), Count: b.num_batches_tracked?.clone())).ToArray();
        var choice = new bool[encoder.Units.Count];
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            encoder.Run(x, GateNoise.Off, (u, inputs, resizeLike) =>
            {
                double plain = Time(false), fused = Time(true);
                choice[u] = fused < 0.95 * plain;
                return choice[u];

                double Time(bool fuse)
                {
                    var times = new List<double>();
                    for (int r = 0; r <= repeats; r++)
                    {
                        using var inner = NewDisposeScope();
                        using var grad = enable_grad();
                        // Fresh leaves for the inputs (the image needs no gradient); one input read by two terms stays one leaf.
                        var leaves = new Dictionary<Branches, Branches>(ReferenceEqualityComparer.Instance);
                        var ins = inputs.Select(i => i.Single is not null ? i
                            : leaves.TryGetValue(i, out var l) ? l
                            : leaves[i] = Branches.Of(i.Parts.Select(p => p.detach().requires_grad_(true)).ToArray())).ToArray();
                        var watch = System.Diagnostics.Stopwatch.StartNew();
                        var y = encoder.ComputeUnit(u, ins, resizeLike, fuse);
                        var loss = y.Parts.Select(p => p.sum()).Aggregate((a, b) => a.Plus(b));
                        var wrt = encoder.UnitParameters(u).Concat(leaves.Values.SelectMany(b => b.Parts)).ToArray();
                        autograd.grad([loss], wrt);
                        if (x.device.type == TorchSharp.DeviceType.CUDA) cuda.synchronize(x.device);
                        if (r > 0) times.Add(watch.Elapsed.TotalMilliseconds);
                    }
                    return times.Order().ElementAt(times.Count / 2);
                }
            });
        }
        finally
        {
            using (no_grad())
                for (int i = 0; i < norms.Length; i++)
                {
                    norms[i].running_mean!.copy_(saved[i].Mean);
                    norms[i].running_var!.copy_(saved[i].Var);
                    if (saved[i].Count is { } c) norms[i].num_batches_tracked!.copy_(c);
                }
            foreach (var s in saved) { s.Mean.Dispose(); s.Var.Dispose(); s.Count?.Dispose(); }
        }
        return choice;
    }
}
