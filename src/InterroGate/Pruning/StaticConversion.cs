using InterroGate.Architectures;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Tensors;

namespace InterroGate.Pruning;

/// <summary>
/// Any trained multi-task model as a static network. InterroGate is pruned by its gates. STL and MTL are the
/// two ends of InterroGate's range (all gates 1: every task its own network; all gates 0: one shared encoder),
/// so they are written into an InterroGate model with those gates and pruned the same way: one exporter for all.
/// </summary>
public static class StaticConversion
{
    /// <summary>Whether <paramref name="model"/> has a static form: InterroGate, and STL or MTL on a backbone with a plan.</summary>
    public static bool Supports(MultiTaskModel model) => model switch
    {
        InterroGateModel => true,
        SingleTask or HardSharing => model.modules().OfType<Backbones.IEncoder>().All(e => e is Backbones.IPlannedEncoder),
        _ => false,
    };

    public static PruneResult ToStatic(MultiTaskModel model, ImageInput input)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(input);
        input.Validate(nameof(input));
        if (!Supports(model) && model is SingleTask or HardSharing)
            throw new Configuration.ConfigException("backbone.name",
                $"{model.Architecture} on this backbone has no static form (its encoder does not describe itself as a plan)");
        switch (model)
        {
            case InterroGateModel ig:
                return Pruner.Prune(ig, input);
            case SingleTask or HardSharing:
            {
                var spec = model is SingleTask s ? s.Spec : ((HardSharing)model).Spec;
                using var ig = new InterroGateModel(model.Tasks, spec, input.Channels, (input.Height, input.Width), new InterroGateConfig(), model.HeadOptions);
                bool stl = model is SingleTask;
                WeightTransfer.InitialiseInterroGate(ig, stl ? model.Tasks.ToDictionary(t => t.Name, _ => model) : new Dictionary<string, MultiTaskModel>(), stl ? null : model);
                if (!stl)
                {
                    WeightTransfer.Copy(ig, "heads.", model.state_dict(), "heads.");
                    // Every task stream runs the encoder's operations with its branch's parameters (a ViT's final norm before
                    // the heads): each branch holds the MTL encoder, so closed gates compute exactly the MTL network.
                    foreach (var t in model.Tasks) WeightTransfer.Copy(ig, $"encoder.task_branches.{t.Name}.", model.state_dict(), "encoder.");
                }
                using (TorchSharp.torch.no_grad())
                    foreach (var g in ig.Encoder.GateLayers) g.Alpha.fill_(stl ? Scalars.One : Scalars.MinusOne);
                return Pruner.Prune(ig, input);
            }
            default:
                // MTAN's attention and cross-stitch's units mix the tasks at every stage: no pruned static network.
                throw new Configuration.ConfigException("architecture.type",
                    $"{model.Architecture} models have no static form; export, predict and the static cost take stl, mtl and interrogate models (evaluate reads any checkpoint)");
        }
    }
}
