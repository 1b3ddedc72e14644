using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Analysis;

/// <summary>A module that computes products the counter does not see as layers (attention's Q·Kᵀ and A·V): it reports their MACs.</summary>
public interface IMacsCounted
{
    /// <summary>MACs of the module's own products for one call that returned <paramref name="output"/> (its linear layers are counted apart).</summary>
    long Macs(Tensor output);
}

/// <summary>One convolution, linear layer, attention or layer norm that ran, with its cost at batch 1.</summary>
public sealed record LayerCost(string Name, string Kind, long Macs, long Parameters, long[] OutputShape);

/// <summary>Parameters and MACs of a model at one input size; <see cref="Flops"/> = 2 × MACs.</summary>
public sealed record CostReport(long Params, long Macs, IReadOnlyList<LayerCost> Layers)
{
    public long Flops => 2 * Macs;
    public string Convention => CostCounter.Convention;
}

/// <summary>
/// The one counter of parameters and MACs. MACs: multiply-accumulates of the convolutions and linear
/// layers that a forward pass at batch 1 runs, and of the products a module reports itself
/// (<see cref="IMacsCounted"/>: attention's Q·Kᵀ and A·V); a layer norm counts 5 per element (as fvcore, whose
/// counts the published ViT figures are; a layer norm cannot be folded away, unlike a BN after a convolution). BN,
/// activations, pooling, additions and gating are not counted; 1 MAC = 2 FLOPs. Parameters: every parameter of the model.
/// </summary>
public static class CostCounter
{
    public const string Convention =
        "MACs: multiply-accumulates of convolutions, linear layers and attention products at batch 1, layer norms 5 per element (1 MAC = 2 FLOPs); parameters: all parameters";

    /// <summary>Runs <paramref name="run"/> once on zeros of <paramref name="inputShape"/> (batch 1) and counts.</summary>
    public static CostReport Count(nn.Module model, Func<Tensor, object> run, long[] inputShape)
    {
        var layers = new List<LayerCost>();
        var removers = new List<Action>();
        var seen = new HashSet<nn.Module>(ReferenceEqualityComparer.Instance);
        foreach (var (name, module) in model.named_modules().Prepend(("", model))) // the model itself may count products of its own
        {
            if (!seen.Add(module)) continue; // a module registered under two names runs (and counts) once per call
            switch (module)
            {
                case Conv2d conv:
                    var hc = conv.register_forward_hook((m, input, output) =>
                    {
                        long macs = output.numel() * (conv.in_channels / conv.groups) * conv.kernel_size.Aggregate(1L, (a, b) => a * b);
                        layers.Add(new LayerCost(name, "conv", macs, conv.parameters().Sum(p => p.numel()), output.shape));
                        return output;
                    });
                    removers.Add(hc.remove);
                    break;
                case Linear linear:
                    var hl = linear.register_forward_hook((m, input, output) =>
                    {
                        long macs = output.numel() * linear.in_features;
                        layers.Add(new LayerCost(name, "linear", macs, linear.parameters().Sum(p => p.numel()), output.shape));
                        return output;
                    });
                    removers.Add(hl.remove);
                    break;
                case LayerNorm ln:
                    var hn = ln.register_forward_hook((m, input, output) =>
                    {
                        layers.Add(new LayerCost(name, "layernorm", output.numel() * (ln.weight is null ? 4 : 5), ln.parameters().Sum(p => p.numel()), output.shape));
                        return output;
                    });
                    removers.Add(hn.remove);
                    break;
            }
            if (module is IMacsCounted counted && module is nn.Module<Tensor, Tensor> op)
            {
                var ha = op.register_forward_hook((m, input, output) =>
                {
                    layers.Add(new LayerCost(name, "attention", counted.Macs(output), 0, output.shape));
                    return output;
                });
                removers.Add(ha.remove);
            }
            else if (module is IMacsCounted own && module is nn.Module<Tensor, Tensor[]> multi)
            {
                // A module that also runs convolutions of its own on part of their filters (a gated encoder with fixed gates).
                var hm = multi.register_forward_hook((m, input, output) =>
                {
                    if (own.Macs(output[0]) is var macs and > 0) layers.Add(new LayerCost(name, "conv (kept filters)", macs, 0, output[0].shape));
                    return output;
                });
                removers.Add(hm.remove);
            }
        }
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            run(zeros(inputShape));
        }
        finally
        {
            foreach (var remove in removers) remove();
            model.train(wasTraining);
        }
        return new CostReport(model.parameters().Sum(p => p.numel()), layers.Sum(l => l.Macs), layers);
    }
}
