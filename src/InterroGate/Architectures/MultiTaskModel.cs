using InterroGate.Layers;
using InterroGate.Tasks;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Architectures;

/// <summary>
/// A network that maps an image batch to one output per task. The Trainer knows architectures only
/// through this class: its outputs, its regulariser (zero unless the method has one), its parameter groups
/// (how each parameter is optimised), and which parameters are shared between tasks.
/// </summary>
public abstract class MultiTaskModel : nn.Module<Tensor, Dictionary<string, Tensor>>
{
    protected MultiTaskModel(string name, TaskSet tasks, long inChannels, Heads.HeadConfig? heads = null) : base(name)
    {
        Tasks = tasks;
        InChannels = inChannels;
        HeadOptions = heads ?? new Heads.HeadConfig();
        // Every call of the model, from the trainer, the evaluator, the cost counter or a user's own loop, reads the
        // image shape first: images of another layout get this message, not the first convolution's.
        register_forward_pre_hook((_, images) =>
        {
            CheckImages(images);
            return images;
        });
    }

    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="images"/> is a [B, <see cref="InChannels"/>, H, W] batch.</summary>
    public void CheckImages(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.dim() != 4 || images.shape[1] != InChannels)
            throw new ArgumentException($"The {Architecture} model reads {InChannels}-channel images [B, {InChannels}, H, W], " +
                                        $"not [{string.Join(", ", images.shape)}].", nameof(images));
    }

    public TaskSet Tasks { get; }

    /// <summary>Channels of the images the model reads.</summary>
    public long InChannels { get; }

    /// <summary>How the dense tasks' heads are built (image-level tasks always get a linear head).</summary>
    public Heads.HeadConfig HeadOptions { get; }

    /// <summary>Registry name of the architecture (stl, mtl, interrogate).</summary>
    public abstract string Architecture { get; }

    /// <summary>
    /// The task outputs of <paramref name="images"/> with the forward pass run in <paramref name="precision"/>
    /// (<see cref="Runtime.Autocast"/>), returned in float32 so that losses and metrics reduce in float32.
    /// </summary>
    public Dictionary<string, Tensor> Forward(Tensor images, Runtime.Precision precision)
    {
        if (precision == Runtime.Precision.Fp32) return call(images);
        Dictionary<string, Tensor> outputs;
        using (Runtime.Autocast.Enter(precision, images.device)) outputs = call(images);
        return outputs.ToDictionary(kv => kv.Key, kv => kv.Value.dtype == ScalarType.Float32 ? kv.Value : kv.Value.to(ScalarType.Float32));
    }

    /// <summary>Term added to the weighted task losses (InterroGate: λ_s · L_s); null when there is none.</summary>
    public virtual Tensor? Regularizer() => null;

    /// <summary>
    /// The model's parameters in optimiser groups, each parameter in exactly one (<see cref="ParameterGroup.CheckCovers"/>):
    /// by default one group "weights" holding them all.
    /// </summary>
    public virtual IReadOnlyList<ParameterGroup> ParameterGroups() => [new("weights", parameters().ToArray(), GroupKind.Weights)];

    /// <summary>The parameters of every group of kind <paramref name="kind"/>.</summary>
    public IEnumerable<Parameter> ParametersOf(GroupKind kind) => ParameterGroups().Where(g => g.Kind == kind).SelectMany(g => g.Parameters);

    /// <summary>Groups "weights" (every other parameter) and "gates" (<paramref name="gates"/>, <paramref name="optimizer"/> at <paramref name="lr"/>).</summary>
    protected IReadOnlyList<ParameterGroup> WeightsAndGates(IEnumerable<Parameter> gates, double lr, GateOptimizer optimizer = GateOptimizer.Sgd)
    {
        var g = gates.ToArray();
        var set = new HashSet<Parameter>(g, ReferenceEqualityComparer.Instance);
        return [new("weights", parameters().Where(p => !set.Contains(p)).ToArray(), GroupKind.Weights), new("gates", g, GroupKind.Gates, lr) { GateOptimizer = optimizer }];
    }

    /// <summary>Parameters every task's loss reaches (what gradient-balancing methods act on).</summary>
    public abstract IEnumerable<Parameter> SharedParameters();

    /// <summary>
    /// The shared representation of the last forward pass (what every head reads, [B, C, H, W]) where the
    /// architecture has a single one; null otherwise. MGDA-UB balances the task gradients with respect to it.
    /// </summary>
    public virtual Tensor? SharedRepresentation => null;

    /// <summary>Numbers worth logging each epoch (for example the fraction of task-specific channels).</summary>
    public virtual IReadOnlyDictionary<string, double> Diagnostics() => new Dictionary<string, double>();

    /// <summary>
    /// A few words on the model's state for progress lines (InterroGate: its task-specific fraction and a budget's gap);
    /// null when there is nothing to say. Progress carries it as text, so no renderer reads a diagnostic by name.
    /// </summary>
    public virtual string? Headline() => null;

    /// <summary>
    /// Called after each backward pass whose gradients the separate (gate) optimiser is about to use, so the model can
    /// read them (InterroGate: the task gradient and the sparsity push on every gate).
    /// </summary>
    public virtual void ObserveGradients() { }

    /// <summary>Called after each update of the gate parameters (InterroGate: the hysteresis state of its gates).</summary>
    public virtual void GatesStepped() { }

    /// <summary>
    /// Per gated layer and task, the gates' state and the running means of their gradients since the last call, which
    /// starts new running means; null for architectures without gates.
    /// </summary>
    public virtual IReadOnlyList<Gating.GateLayerStats>? TakeGateStatistics() => null;

    /// <summary>
    /// One line when the gates, as configured, cannot learn channel by channel within <paramref name="gateSteps"/>
    /// steps (judged from the gradients observed so far); null when they can or the model has no gates.
    /// </summary>
    public virtual string? GateRegimeWarning(int gateSteps) => null;

    /// <summary>
    /// Called once before training starts (or resumes), with the number of gate-learning steps: a line worth printing about what the model trains to
    /// (InterroGate: its compute budget), or null. Throws <see cref="Configuration.ConfigException"/> for a setting the
    /// built model shows to be invalid (a budget outside MTL's and STL's cost).
    /// </summary>
    public virtual string? PrepareTraining(int gateSteps) => null;

    /// <summary>
    /// Called once before training (or resuming): a model that picks how to compute by measuring does so here, never
    /// inside <c>forward</c> (InterroGate with <c>fusion: auto</c>), on the images <paramref name="sample"/> returns (a
    /// training batch, drawn only when asked for). Weights, BN statistics and the random state are left as they were.
    /// </summary>
    public virtual void PrepareSpeed(Func<Tensor> sample) { }

    /// <summary>
    /// Called when the gates become fixed for the rest of training (InterroGate with a budget: lands the gates on it);
    /// returns a line saying what was done, or null.
    /// </summary>
    public virtual string? FixGates() => null;

    /// <summary>
    /// Whether the gates stay fixed from here on (true from the epoch they become fixed, false before; called on each
    /// change, after <see cref="FixGates"/>): a model may then skip what the fixed gates leave unread.
    /// </summary>
    public virtual void SetGatesFixed(bool gatesFixed) { }

    /// <summary>
    /// Called when a run ends: frees what training kept on the model besides its weights (InterroGate: the gate
    /// statistics and the fixed gates' index tensors), which belong to no module and so are not freed with the model.
    /// The model stays usable; a later run or evaluation makes them anew.
    /// </summary>
    public virtual void EndTraining() { }

    /// <summary>One head per task reading the features of <paramref name="encoder"/> (its channels, at its output stride).</summary>
    protected ModuleMap<nn.Module<Tensor, Tensor>> MakeHeads(Backbones.IEncoderSpec encoder) =>
        ModuleMap.Of(Tasks.Select(t => (t.Name, Heads.HeadFactory.Create(t, encoder, HeadOptions))).ToArray());

    /// <summary>
    /// Task <paramref name="task"/>'s prediction from the features its head reads; a dense prediction is upsampled
    /// (bilinear) to the resolution of <paramref name="image"/>, which is the labels' resolution.
    /// </summary>
    protected static Tensor Predict(TaskSpec task, nn.Module<Tensor, Tensor> head, Tensor features, Tensor image)
    {
        var output = head.call(features);
        return task.IsDense ? Heads.DenseOutput.ResizeLike(output, image) : output;
    }
}
