using InterroGate.Layers;
using InterroGate.Tasks;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Architectures;

/// <summary>
/// A network that maps an image batch to one output per task. The Trainer knows architectures only
/// through this class: its outputs, its regulariser (zero unless the method has one), which
/// parameters the gate optimiser owns, and which are shared between tasks.
/// </summary>
public abstract class MultiTaskModel : nn.Module<Tensor, Dictionary<string, Tensor>>
{
    protected MultiTaskModel(string name, TaskSet tasks) : base(name) => Tasks = tasks;

    public TaskSet Tasks { get; }

    /// <summary>Registry name of the architecture (stl, mtl, interrogate).</summary>
    public abstract string Architecture { get; }

    /// <summary>Term added to the weighted task losses (InterroGate: λ_s · L_s); null when there is none.</summary>
    public virtual Tensor? Regularizer() => null;

    /// <summary>Parameters optimised by the separate gate optimiser (α and β); empty for other methods.</summary>
    public virtual IEnumerable<Parameter> GateParameters() => [];

    /// <summary>Parameters every task's loss reaches (what gradient-balancing methods act on).</summary>
    public abstract IEnumerable<Parameter> SharedParameters();

    /// <summary>
    /// The shared representation of the last forward pass (what every head reads, [B, C, H, W]) where the
    /// architecture has a single one; null otherwise. MGDA-UB balances the task gradients with respect to it.
    /// </summary>
    public virtual Tensor? SharedRepresentation => null;

    /// <summary>All parameters but the gate parameters (the weight optimiser's).</summary>
    public IEnumerable<Parameter> WeightParameters()
    {
        var gates = new HashSet<Parameter>(GateParameters(), ReferenceEqualityComparer.Instance);
        return parameters().Where(p => !gates.Contains(p));
    }

    /// <summary>Numbers worth logging each epoch (for example the fraction of task-specific channels).</summary>
    public virtual IReadOnlyDictionary<string, double> Diagnostics() => new Dictionary<string, double>();

    protected static ModuleMap<nn.Module<Tensor, Tensor>> MakeHeads(TaskSet tasks, long inChannels) =>
        ModuleMap.Of(tasks.Select(t => (t.Name, Heads.HeadFactory.Create(t, inChannels))).ToArray());
}
