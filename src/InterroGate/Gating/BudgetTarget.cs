// Training to a compute budget: the pruned cost of the current hard gates steers the sparsity loss's weight
// (a dual, Lagrangian update), and the gates are landed on the target when they are fixed (docs/method.md, "Budget targets").
using System.Text.Json.Serialization;
using InterroGate.Configuration;
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Gating;

/// <summary>
/// A compute budget for an InterroGate model, given in one of four ways: <see cref="Macs"/> or <see cref="Parameters"/>
/// of the whole deployed network (the pruned encoder and the heads, as the comparison tables count them),
/// <see cref="Fraction"/> of the way from MTL's MACs (0) to STL's (1), or <see cref="PerTask"/>: for each task, the
/// fraction of one encoder's MACs its own copy keeps. <see cref="Rate"/>: step of the dual update of λ_s (in log space,
/// per gate step and unit of gap; default from the number of gate steps). <see cref="Ramp"/>: the share of the gate-learning
/// steps over which the steered budget descends from STL's cost to the target. <see cref="Tolerance"/>: how close the
/// landed cost must be (relative to the target; per task, in fractions of an encoder).
/// </summary>
public sealed record BudgetTarget
{
    public double? Macs { get; init; }
    public double? Parameters { get; init; }
    public double? Fraction { get; init; }
    public IReadOnlyList<double>? PerTask { get; init; }
    /// <summary>Null: 20 / (gate-learning steps), so that λ can change by up to e^(20·gap) over the gate-learning steps.</summary>
    public double? Rate { get; init; }
    /// <summary>
    /// Share of the gate-learning steps over which the budget the dual update steers toward moves linearly from STL's
    /// cost (every gate on, where training starts) to the target; the rest steer toward the target itself. A budget
    /// that descends gradually lets λ follow it instead of growing until whole layers cross at once (docs/method.md,
    /// "Budget targets"). 0 (default): the target from the first step.
    /// </summary>
    public double Ramp { get; init; }
    public double Tolerance { get; init; } = 0.02;

    /// <summary>Which of the four ways the budget is given in.</summary>
    [JsonIgnore]
    public BudgetKind Kind => Macs is not null ? BudgetKind.Macs : Parameters is not null ? BudgetKind.Parameters
        : Fraction is not null ? BudgetKind.Fraction : BudgetKind.PerTask;

    /// <summary>A target at <paramref name="fraction"/> of the way from MTL's MACs to STL's.</summary>
    public static BudgetTarget AtFraction(double fraction) => new() { Fraction = fraction };

    /// <summary>Short form for run names and labels: f0.5, 4.2MMACs, 1.1Mparams, tasks0.3_0.6.</summary>
    [JsonIgnore]
    public string Label => Kind switch
    {
        BudgetKind.Macs => $"{Macs!.Value / 1e6:0.###}MMACs",
        BudgetKind.Parameters => $"{Parameters!.Value / 1e6:0.###}Mparams",
        BudgetKind.Fraction => $"f{Fraction!.Value:0.###}",
        _ => PerTask is null ? "none" // no budget given: Validate says so
            : $"tasks{string.Join('_', PerTask.Select(f => f.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)))}",
    };

    public void Validate(string path, int tasks)
    {
        int given = (Macs is null ? 0 : 1) + (Parameters is null ? 0 : 1) + (Fraction is null ? 0 : 1) + (PerTask is null ? 0 : 1);
        if (given != 1)
            throw new ConfigException(path, $"gives {given} budgets; give exactly one of macs, parameters, fraction (0 = MTL's MACs, 1 = STL's) or perTask");
        if (Macs is double m) ConfigException.Require(double.IsFinite(m) && m > 0, $"{path}.macs", m, "> 0 (MACs of the pruned network, between MTL's and STL's)");
        if (Parameters is double p) ConfigException.Require(double.IsFinite(p) && p > 0, $"{path}.parameters", p, "> 0 (parameters of the pruned network, between MTL's and STL's)");
        if (Fraction is double f) ConfigException.Require(f is >= 0 and <= 1, $"{path}.fraction", f, "[0, 1] (0 = MTL's MACs, 1 = STL's)");
        if (PerTask is { } per)
        {
            ConfigException.Require(per.Count > 0 && (tasks <= 0 || per.Count == tasks), $"{path}.perTask", $"{per.Count} values", $"one per task ({tasks})");
            for (int i = 0; i < per.Count; i++)
                ConfigException.Require(per[i] is >= 0 and <= 1, $"{path}.perTask[{i}]", per[i], "[0, 1] (the fraction of one encoder's MACs the task's own copy keeps)");
        }
        if (Rate is double r) ConfigException.Require(r > 0 && double.IsFinite(r), $"{path}.rate", r, "> 0 (or leave it out: 20 / gate-learning steps)");
        ConfigException.Require(Ramp is >= 0 and <= 1, $"{path}.ramp", Ramp, "[0, 1] (share of the gate-learning steps over which the budget descends from STL's cost to the target)");
        ConfigException.Require(Tolerance is > 0 and <= 0.5, $"{path}.tolerance", Tolerance, "(0, 0.5]");
    }
}

public enum BudgetKind { Macs, Parameters, Fraction, PerTask }

/// <summary>
/// The state of a budget during training. Every gate step it reads the pruned cost of the current hard gates and
/// updates λ_s multiplicatively by the gap to the steered budget, λ ← λ·exp(rate·gap), gap in fractions of the way
/// from MTL to STL (per task: of one encoder); the steered budget descends from STL's cost to the target over the
/// first <see cref="BudgetTarget.Ramp"/> of the gate steps. The sparsity loss is applied with weight λ only while
/// the steered budget is exceeded, so under it only the task gradients move the gates. It also keeps a running mean of every gate's task gradient,
/// by which <see cref="Land"/> picks the gates that matter least when the gates are fixed off target.
/// λ and the running means are buffers (budget.*), so a checkpoint resumes them.
/// </summary>
public sealed class BudgetController : TorchSharp.torch.nn.Module
{
    private readonly Tensor lambda;         // [T] (one value used for every task unless per-task)
    private readonly Tensor? gate_steps;    // scalar: dual updates made so far; only with a ramp (checkpoints without one stay as they were)
    private readonly int _layers;           // buffers task_grad_{l}, per gated layer [T, C]: running mean of ∂L_tasks/∂α
    private readonly Func<IReadOnlyList<bool[][]>, PrunedCost> _cost;
    private readonly int _tasks;
    private readonly long[] _channels;
    private readonly Func<(long Macs, long Parameters)> _headCost;
    private (long Macs, long Parameters)? _heads;
    private string? _description;
    private PrunedCost? _mtl, _stl;

    /// <param name="cost">The pruned encoder's cost for given hard gates.</param>
    /// <param name="headCost">MACs and parameters of the heads (constant; evaluated once, when first needed).</param>
    public BudgetController(BudgetTarget target, double lambdaS, int tasks, IReadOnlyList<long> channels, Func<IReadOnlyList<bool[][]>, PrunedCost> cost,
        Func<(long Macs, long Parameters)> headCost)
        : base("budget")
    {
        Target = target;
        _tasks = tasks;
        _cost = cost;
        _channels = channels.ToArray();
        _headCost = headCost;
        TaskNames = Enumerable.Range(0, tasks).Select(t => $"task {t}").ToArray();
        if (target.PerTask is { } per && per.Count != tasks)
            throw new ConfigException("architecture.target.perTask", $"has {per.Count} values; give one per task ({tasks})");
        using (var start = Scalars.Of(Math.Max(lambdaS, 1e-6))) lambda = full(tasks, start, dtype: float64).DetachFromDisposeScope();
        gate_steps = target.Ramp > 0 ? zeros(1, dtype: float64).DetachFromDisposeScope() : null;
        _layers = channels.Count;
        register_buffer("lambda", lambda);
        if (gate_steps is not null) register_buffer("gate_steps", gate_steps);
        for (int l = 0; l < _layers; l++) register_buffer($"task_grad_{l}", zeros(tasks, channels[l], dtype: float32).DetachFromDisposeScope());
    }

    public BudgetTarget Target { get; }

    /// <summary>Step of the dual update in use (<see cref="BudgetTarget.Rate"/>, or 20 / gate steps once those are known).</summary>
    public double Rate { get; private set; } = 0.05;

    /// <summary>Sets the default step of the dual update from the number of gate-learning steps of the run.</summary>
    public void SetGateSteps(int gateSteps)
    {
        Rate = Target.Rate ?? 20.0 / Math.Max(gateSteps, 1);
        RampSteps = Target.Ramp * gateSteps;
    }

    /// <summary>Gate steps over which the steered budget descends to the target (<see cref="BudgetTarget.Ramp"/> × gate steps).</summary>
    public double RampSteps { get; private set; }

    /// <summary>How far the steered budget has descended from STL's cost to the target after the dual updates so far (0 to 1).</summary>
    public double Progress
    {
        get
        {
            if (RampSteps <= 0 || gate_steps is null) return 1;
            using var host = gate_steps.cpu();
            return Math.Min(1, host.item<double>() / RampSteps);
        }
    }

    /// <summary>Task names, for messages (task 0, 1, ... unless set).</summary>
    public IReadOnlyList<string> TaskNames { get; init; } = [];

    /// <summary>The current λ_s per task.</summary>
    public double[] Lambda
    {
        get
        {
            using var host = lambda.cpu();
            return host.data<double>().ToArray();
        }
    }

    /// <summary>
    /// One line that states the target. The first call fixes the constant parts (the heads' cost, MTL's and STL's
    /// pruned costs) and checks the target lies between MTL and STL: <see cref="ConfigException"/> naming the key otherwise.
    /// </summary>
    public string Describe() => _description ??= Resolve();

    private void EnsureConstants()
    {
        if (_heads is not null) return;
        _heads = _headCost();
        _mtl = _cost(Uniform(_channels, false));
        _stl = _cost(Uniform(_channels, true));
    }

    private string Resolve()
    {
        EnsureConstants();
        var (mtl, stl) = (WholeMacs(Mtl), WholeMacs(Stl));
        switch (Target.Kind)
        {
            case BudgetKind.Macs:
                ConfigException.Require(Target.Macs >= mtl && Target.Macs <= stl, "architecture.target.macs", $"{Target.Macs:N0}",
                    $"[{mtl:N0}, {stl:N0}] (MTL's and STL's MACs for this backbone, heads and input)");
                break;
            case BudgetKind.Parameters:
                var (mtlP, stlP) = (WholeParameters(Mtl), WholeParameters(Stl));
                ConfigException.Require(Target.Parameters >= mtlP && Target.Parameters <= stlP, "architecture.target.parameters", $"{Target.Parameters:N0}",
                    $"[{mtlP:N0}, {stlP:N0}] (MTL's and STL's parameters for this backbone and heads)");
                break;
        }
        return Target.Kind switch
        {
            BudgetKind.PerTask => $"budget: each task's own copy keeps {string.Join(" / ", Target.PerTask!.Select(f => $"{f:P0}"))} of an encoder's MACs " +
                                  $"({string.Join(" / ", Target.PerTask!.Select(f => $"{f * Mtl.SharedMacs / 1e6:F2}"))} M MACs)",
            BudgetKind.Parameters => $"budget: {Target.Parameters / 1e6:F3} M parameters (MTL {WholeParameters(Mtl) / 1e6:F3} M, STL {WholeParameters(Stl) / 1e6:F3} M)",
            _ => $"budget: {TargetMacs() / 1e6:F3} M MACs, {(TargetMacs() - mtl) / (double)(stl - mtl):P0} of the way from MTL ({mtl / 1e6:F3} M) to STL ({stl / 1e6:F3} M)",
        };
    }

    /// <summary>The target as MACs of the whole network (MAC and fraction budgets), or parameters (parameter budgets).</summary>
    public double TargetCost()
    {
        Describe();
        return Target.Kind == BudgetKind.Parameters ? Target.Parameters!.Value : TargetMacs();
    }

    /// <summary>The whole network's cost in the target's unit for <paramref name="gates"/>.</summary>
    public double Cost(IReadOnlyList<bool[][]> gates)
    {
        var c = _cost(gates);
        return Target.Kind == BudgetKind.Parameters ? WholeParameters(c) : WholeMacs(c);
    }

    /// <summary>Weight of each task's sparsity term this step: λ_t while its budget is exceeded, 0 under it.</summary>
    public double[] Weights(IReadOnlyList<bool[][]> gates)
    {
        var gaps = Gaps(gates);
        var lam = Lambda;
        return gaps.Select((g, t) => g > 0 ? lam[t] : 0).ToArray();
    }

    /// <summary>
    /// After a gate step: λ_t ← λ_t·exp(rate·gap_t), within [1e-6, 1e6]; returns the weights for the next step
    /// (as <see cref="Weights"/>, from the same gates).
    /// </summary>
    public double[] Update(IReadOnlyList<bool[][]> gates)
    {
        if (gate_steps is not null) using (no_grad()) gate_steps.add_(Scalars.One, Scalars.One);
        var gaps = Gaps(gates);
        using var _ = no_grad();
        var next = Lambda.Select((l, t) => Math.Clamp(l * Math.Exp(Rate * gaps[t]), 1e-6, 1e6)).ToArray();
        using var values = tensor(next, dtype: float64);
        lambda.copy_(values);
        return gaps.Select((g, t) => g > 0 ? next[t] : 0).ToArray();
    }

    /// <summary>
    /// The running means of the task gradients, per gated layer, read from the module's buffers by name: moving or
    /// converting the model (<c>Module.to</c>) registers new tensors in place of the buffers it started with.
    /// </summary>
    private Tensor[] TaskGradients()
    {
        var buffers = named_buffers(recurse: false).ToDictionary(b => b.name, b => b.buffer);
        return Enumerable.Range(0, _layers).Select(l => buffers[$"task_grad_{l}"]).ToArray();
    }

    /// <summary>Adds one step's task gradients on α (per layer, [T, C]) to their running means (decay 0.98).</summary>
    public void Observe(IReadOnlyList<Tensor> taskGradients)
    {
        using var _ = no_grad();
        var means = TaskGradients();
        for (int l = 0; l < _layers; l++) means[l].TimesInPlace(0.98).PlusScaledInPlace(taskGradients[l].to(means[l].dtype).to(means[l].device), 0.02);
    }

    /// <summary>Up to this many candidate gates, landing tries the flips one at a time (else it bisects first).</summary>
    public const int ExactLandingCandidates = 4096;

    /// <summary>
    /// When the gates are fixed: if the pruned cost is off target by more than the tolerance, flips the gates that
    /// matter least to the tasks (by the running mean of their task gradient: the gates whose task gradient pulls
    /// least toward the task's own copy are switched to the shared one first, and the reverse under the budget),
    /// in that order, until the cost is within it. Returns the hard gates to use and one line saying how the target
    /// was met.
    /// </summary>
    public (bool[][][] Gates, string Message) Land(IReadOnlyList<bool[][]> gates)
    {
        var g = gates.Select(l => l.Select(t => t.ToArray()).ToArray()).ToArray();
        var grads = TaskGradients().Select(t => { using var host = t.to(float32).cpu(); return host.data<float>().ToArray(); }).ToArray();
        int flips = 0;
        var groups = Target.Kind == BudgetKind.PerTask ? Enumerable.Range(0, _tasks).Select(t => new[] { t }).ToArray() : [Enumerable.Range(0, _tasks).ToArray()];
        foreach (var taskGroup in groups)
        {
            double Off(bool[][][] x) => Target.Kind == BudgetKind.PerTask ? TaskFraction(_cost(x), taskGroup[0]) - Target.PerTask![taskGroup[0]] : Relative(Cost(x));
            double tol = Target.Tolerance;
            double off = Off(g);
            if (Math.Abs(off) <= tol) continue;
            bool over = off > 0;
            // Candidates: gates that would move the cost toward the target, in the order they matter least.
            // A negative task gradient on α pulls the gate toward the task's own copy (the loss falls as α rises).
            var candidates = new List<(int L, int T, int C, float Pull)>();
            for (int l = 0; l < g.Length; l++)
                foreach (var t in taskGroup)
                    for (int c = 0; c < g[l][t].Length; c++)
                        if (g[l][t][c] == over) candidates.Add((l, t, c, -grads[l][t * g[l][t].Length + c]));
            var order = over ? candidates.OrderBy(x => x.Pull).ToArray() : candidates.OrderByDescending(x => x.Pull).ToArray();
            bool[][][] Flipped(int k)
            {
                var x = g.Select(l => l.Select(t => t.ToArray()).ToArray()).ToArray();
                for (int i = 0; i < k; i++) x[order[i].L][order[i].T][order[i].C] = !over;
                return x;
            }
            // The cost moves with the number of flips almost monotonically: a flip can also bring back a copy or a mix
            // that nothing read before (a layer's first shared channel brings back that copy's filters), so it can rise
            // by a little where it mostly falls. Up to ExactLandingCandidates candidates the flips go one at a time, so
            // the fewest in this order are found; beyond, bisection finds where the cost crosses into the tolerance and
            // the flips go on one at a time from there until it is within it.
            bool Within(double o) => over ? o <= tol : o >= -tol;
            int lo = 0, hi = order.Length;
            if (order.Length > ExactLandingCandidates)
                while (lo < hi)
                {
                    int mid = (lo + hi) / 2;
                    if (Within(Off(Flipped(mid)))) hi = mid; else lo = mid + 1;
                }
            var flipped = Flipped(lo);
            while (lo < order.Length && !Within(Off(flipped)))
            {
                flipped[order[lo].L][order[lo].T][order[lo].C] = !over;
                lo++;
            }
            g = flipped;
            flips += lo;
        }
        double cost = Cost(g);
        var shares = TaskShares(g);
        string own = $"; own copies: {string.Join(", ", Enumerable.Range(0, _tasks).Select(t => $"{TaskNames[t]} {shares[t]:P0}"))} of an encoder";
        string landed = Target.Kind == BudgetKind.PerTask
            ? $"own copies {string.Join(", ", Enumerable.Range(0, _tasks).Select(t => $"{TaskNames[t]} {shares[t]:P1}"))} of an encoder (targets {string.Join(" / ", Target.PerTask!.Select(f => $"{f:P1}"))})"
            : $"{Describe(cost)} against the target {Describe(TargetCost())} ({Relative(cost):+0.0%;-0.0%;+0.0%}){own}";
        return (g, flips == 0
            ? $"budget met by the dual update: {landed}"
            : $"budget met by flipping {flips} gate{(flips == 1 ? "" : "s")} that mattered least to the tasks: {landed}");
    }

    /// <summary>(cost − target) / target in the target's unit.</summary>
    public double Relative(double cost) => (cost - TargetCost()) / TargetCost();

    /// <summary>Per task, the fraction of the pruned encoder's MACs in that task's own copy over one encoder's, and the whole cost's.</summary>
    public IReadOnlyList<double> TaskShares(IReadOnlyList<bool[][]> gates)
    {
        var c = _cost(gates);
        return Enumerable.Range(0, _tasks).Select(t => TaskFraction(c, t)).ToArray();
    }

    private string Describe(double cost) => Target.Kind == BudgetKind.Parameters ? $"{cost / 1e6:F3} M parameters" : $"{cost / 1e6:F3} M MACs";

    /// <summary>Gap of <paramref name="gates"/> to the steered budget (per task), in fractions of the way from MTL to STL (per task: of one encoder).</summary>
    private double[] Gaps(IReadOnlyList<bool[][]> gates)
    {
        Describe();
        var c = _cost(gates);
        double remaining = 1 - Progress; // share of the way from the target back to STL's cost the steered budget still is
        if (Target.Kind == BudgetKind.PerTask)
            return Enumerable.Range(0, _tasks).Select(t => TaskFraction(c, t) - (Target.PerTask![t] + remaining * (1 - Target.PerTask[t]))).ToArray();
        double stl = Target.Kind == BudgetKind.Parameters ? WholeParameters(Stl) : WholeMacs(Stl);
        double span = stl - (Target.Kind == BudgetKind.Parameters ? WholeParameters(Mtl) : WholeMacs(Mtl));
        double cost = Target.Kind == BudgetKind.Parameters ? WholeParameters(c) : WholeMacs(c);
        double steered = TargetCost() + remaining * (stl - TargetCost());
        double gap = span > 0 ? (cost - steered) / span : 0;
        return Enumerable.Repeat(gap, _tasks).ToArray();
    }

    private double TaskFraction(PrunedCost c, int task) => Mtl.SharedMacs > 0 ? (double)c.TaskMacs[task] / Mtl.SharedMacs : 0;

    private double TargetMacs() => Target.Kind switch
    {
        BudgetKind.Macs => Target.Macs!.Value,
        BudgetKind.Fraction => WholeMacs(Mtl) + Target.Fraction!.Value * (WholeMacs(Stl) - WholeMacs(Mtl)),
        // The task copies keep Σ f_t of an encoder; the shared copy keeps a channel where some task reads it, 1 − Π f_t of
        // it if the tasks chose independently (an estimate, exact at MTL and at STL).
        BudgetKind.PerTask => WholeMacs(Mtl) + (Target.PerTask!.Sum() - Target.PerTask!.Aggregate(1.0, (p, f) => p * f)) * Mtl.SharedMacs,
        _ => throw new InvalidOperationException("A parameter budget has no MAC target."),
    };

    private PrunedCost Mtl { get { EnsureConstants(); return _mtl!; } }
    private PrunedCost Stl { get { EnsureConstants(); return _stl!; } }
    private long WholeMacs(PrunedCost c) { EnsureConstants(); return c.Macs + _heads!.Value.Macs; }
    private long WholeParameters(PrunedCost c) { EnsureConstants(); return c.Parameters + _heads!.Value.Parameters; }

    private bool[][][] Uniform(IReadOnlyList<long> channels, bool value) =>
        channels.Select(c => Enumerable.Range(0, _tasks).Select(_ => Enumerable.Repeat(value, (int)c).ToArray()).ToArray()).ToArray();
}
