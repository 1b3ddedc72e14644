using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Gating;
using InterroGate.Tasks;
using InterroGate.Tests.Training;
using InterroGate.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Tests.Gating;

[Collection("Torch")]
public sealed class BudgetTargetTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"ig-budget-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private static readonly TaskSet Tasks = new([new TaskSpec("a", TaskKind.Classification, 10), new TaskSpec("b", TaskKind.Classification, 10)]);

    private static InterroGateModel Model(BudgetTarget target, double lambdaS = 1) =>
        new(Tasks, BackboneCatalog.Spec("resnet20", 0.25), 1, (16, 16),
            new InterroGateConfig { LambdaS = lambdaS, Target = target });

    private static void SetAll(InterroGateModel m, bool on)
    {
        foreach (var g in m.Encoder.GateLayers) g.Force(Enumerable.Range(0, g.Tasks).Select(_ => Enumerable.Repeat(on, (int)g.Channels).ToArray()).ToArray());
    }

    [Fact]
    public void A_fraction_budget_lies_between_the_pruned_costs_of_all_shared_and_all_task_specific_gates()
    {
        using var _ = NewDisposeScope();
        var m = Model(BudgetTarget.AtFraction(0.25));
        Assert.Contains("25 % of the way", m.PrepareTraining(100));
        var b = m.Budget!;
        SetAll(m, false);
        double mtl = b.Cost(m.HardGates());
        SetAll(m, true);
        double stl = b.Cost(m.HardGates());
        Assert.True(stl > mtl);
        Assert.Equal(mtl + 0.25 * (stl - mtl), b.TargetCost(), 6);
        // Whole-network MACs as the comparison table counts them: pruned encoder + heads.
        var (macs, _) = DeployedCost.OfModel(m, (1, 16, 16));
        Assert.Equal(macs, stl, 6);
    }

    [Fact]
    public void A_budget_outside_MTL_and_STL_or_given_twice_is_refused_by_key()
    {
        using var _ = NewDisposeScope();
        var tooLow = Model(new BudgetTarget { Macs = 1000 });
        var e = Assert.Throws<ConfigException>(() => tooLow.PrepareTraining(100));
        Assert.Equal("architecture.target.macs", e.Key);
        Assert.Contains("MTL", e.Message);
        Assert.Equal("architecture.target.parameters", Assert.Throws<ConfigException>(() => Model(new BudgetTarget { Parameters = 1e12 }).PrepareTraining(10)).Key);

        Assert.Equal("architecture.target", Assert.Throws<ConfigException>(() =>
            new InterroGateConfig { Target = new BudgetTarget { Fraction = 0.5, Macs = 1e6 } }.Validate("architecture", 2)).Key);
        Assert.Equal("architecture.target", Assert.Throws<ConfigException>(() =>
            new InterroGateConfig { Target = new BudgetTarget() }.Validate("architecture", 2)).Key);
        Assert.Equal("architecture.target.fraction", Assert.Throws<ConfigException>(() =>
            new InterroGateConfig { Target = BudgetTarget.AtFraction(1.5) }.Validate("architecture", 2)).Key);
        Assert.Equal("architecture.target.perTask", Assert.Throws<ConfigException>(() =>
            new InterroGateConfig { Target = new BudgetTarget { PerTask = [0.5] } }.Validate("architecture", 2)).Key);
        Assert.Equal("architecture.target.perTask[1]", Assert.Throws<ConfigException>(() =>
            new InterroGateConfig { Target = new BudgetTarget { PerTask = [0.5, -0.1] } }.Validate("architecture", 2)).Key);
        Assert.Equal("architecture.tau", Assert.Throws<ConfigException>(() =>
            new InterroGateConfig { Tau = [0.3], Target = BudgetTarget.AtFraction(0.5) }.Validate("architecture", 2)).Key);

        // A target needs gates fixed for at least the last epoch (they are landed on it, then the weights train).
        var run = TrainerTests.Config(new InterroGateConfig { Target = BudgetTarget.AtFraction(0.5) });
        Assert.Equal("training.freezeGatesLastEpochs", Assert.Throws<ConfigException>(() => run.Validate(2)).Key);

        // A comparison takes either a λs list or targets.
        var compare = new CompareConfig { Data = run.Data, Backbone = run.Backbone, Training = run.Training with { FreezeGatesLastEpochs = 1 }, Targets = [BudgetTarget.AtFraction(0.5)] };
        Assert.Equal("targets", Assert.Throws<ConfigException>(() => compare.Validate(2)).Key);
        compare = compare with { LambdaS = [] };
        compare.Validate(2);
        var points = SweepPoints.Of(compare with { Targets = [BudgetTarget.AtFraction(0.25), BudgetTarget.AtFraction(0.75)] }, 2);
        Assert.Equal(["interrogate-targetf0.25", "interrogate-targetf0.75"], points.Select(p => p.Name));
        Assert.Equal(0.75, ((InterroGateConfig)SweepPoints.Run(compare, points[1]).Architecture).Target!.Fraction);
        Assert.Equal("interroGate.target", Assert.Throws<ConfigException>(() =>
            (compare with { InterroGate = new InterroGateConfig { Target = BudgetTarget.AtFraction(0.5) } }).Validate(2)).Key);
    }

    [Fact]
    public void The_dual_update_raises_lambda_over_budget_lowers_it_under_and_the_push_is_off_under_budget()
    {
        using var _ = NewDisposeScope();
        var m = Model(BudgetTarget.AtFraction(0.5) with { Rate = 0.1, Ramp = 0 }, lambdaS: 2);
        m.PrepareTraining(100);
        var b = m.Budget!;
        SetAll(m, true); // STL's cost: over budget by half the way
        var weights = b.Update(m.HardGates());
        Assert.Equal(2 * Math.Exp(0.1 * 0.5), b.Lambda[0], 9);
        Assert.Equal(b.Lambda[0], weights[0], 9);
        // The push on every gate is the λ-weighted Eq. 4 gradient.
        m.GatesStepped();
        var push = m.SparsityPush();
        Assert.True(push.All(p => p.gt(0).all().item<bool>()));

        SetAll(m, false); // MTL's cost: under budget
        double before = b.Lambda[0];
        weights = b.Update(m.HardGates());
        Assert.Equal(before * Math.Exp(-0.1 * 0.5), b.Lambda[0], 9);
        Assert.All(weights, w => Assert.Equal(0, w));
        m.GatesStepped();
        Assert.True(m.SparsityPush().All(p => p.eq(0).all().item<bool>()));
        Assert.Equal(0, m.Regularizer()!.item<float>());
    }

    [Fact]
    public void The_steered_budget_descends_from_STL_s_cost_to_the_target_over_the_ramp()
    {
        using var _ = NewDisposeScope();
        var m = Model(BudgetTarget.AtFraction(0.5) with { Rate = 0.1, Ramp = 0.5 }, lambdaS: 2);
        Assert.Contains("descending from STL's cost over the first 50 gate steps", m.PrepareTraining(100));
        var b = m.Budget!;
        SetAll(m, true); // STL's cost, half the way above the target
        // Step 1 of 50: the steered budget is 2% of the way down from STL's cost, so the gap is 0.02 × 0.5.
        b.Update(m.HardGates());
        Assert.Equal(2 * Math.Exp(0.1 * 0.01), b.Lambda[0], 9);
        Assert.Equal(1 / 50.0, b.Progress, 9);
        for (int k = 2; k <= 60; k++) b.Update(m.HardGates());
        // Steps k = 1..50 had gaps 0.5·k/50, the last ten the full 0.5.
        double sum = Enumerable.Range(1, 50).Sum(k => 0.5 * k / 50) + 10 * 0.5;
        Assert.Equal(2 * Math.Exp(0.1 * sum), b.Lambda[0], 6);
        Assert.Equal(1, b.Progress);
        // The step count travels with the weights (a checkpoint resumes the ramp where it was); without a ramp there is none.
        var copy = Model(BudgetTarget.AtFraction(0.5) with { Rate = 0.1, Ramp = 0.5 }, lambdaS: 2);
        copy.PrepareTraining(100);
        Assert.Equal(0, copy.Budget!.Progress);
        copy.load_state_dict(m.state_dict());
        Assert.Equal(1, copy.Budget.Progress);
        Assert.DoesNotContain(Model(BudgetTarget.AtFraction(0.5)).state_dict().Keys, k => k.EndsWith("gate_steps", StringComparison.Ordinal));

        // Under the steered budget, the push is off even though the target itself is not met yet.
        var early = Model(BudgetTarget.AtFraction(0.5) with { Ramp = 1 }, lambdaS: 2);
        early.PrepareTraining(1000); // step 1: the steered budget is 0.1% of the way down from STL's cost
        var mixed = early.HardGates().Select((l, i) => l.Select(t => t.Select(_ => i > 0).ToArray()).ToArray()).ToList();
        Assert.True(early.Budget!.Relative(early.Budget.Cost(mixed)) > 0.2);
        Assert.All(early.Budget.Update(mixed), w => Assert.Equal(0, w));
        Assert.Equal("architecture.target.ramp", Assert.Throws<ConfigException>(() =>
            new InterroGateConfig { Target = BudgetTarget.AtFraction(0.5) with { Ramp = 1.5 } }.Validate("architecture", 2)).Key);
    }

    [Fact]
    public void Landing_flips_the_gates_whose_task_gradient_pulls_least_until_the_cost_is_within_the_tolerance()
    {
        using var _ = NewDisposeScope();
        var m = Model(BudgetTarget.AtFraction(0.4));
        m.PrepareTraining(100);
        var b = m.Budget!;
        SetAll(m, true);
        // Running task gradients: a random pull on every gate (negative gradient = the task wants its own copy).
        manual_seed(3);
        var pulls = m.Encoder.GateLayers.Select(g => randn(g.Tasks, g.Channels)).ToArray();
        for (int i = 0; i < 300; i++) b.Observe(pulls.Select(p => -p).ToArray());
        string message = m.FixGates()!;
        Assert.Contains("flipping", message);
        var gates = m.HardGates();
        Assert.InRange(b.Relative(b.Cost(gates)), -0.02, 0.02);
        // Every gate switched off pulls less than every gate left on.
        var off = new List<float>();
        var on = new List<float>();
        for (int l = 0; l < gates.Count; l++)
        {
            var p = pulls[l].data<float>().ToArray();
            for (int t = 0; t < 2; t++)
                for (int c = 0; c < gates[l][t].Length; c++)
                    (gates[l][t][c] ? on : off).Add(p[t * gates[l][t].Length + c]);
        }
        Assert.NotEmpty(off);
        Assert.True(off.Max() <= on.Min(), $"a switched-off gate pulls {off.Max()}, a kept one {on.Min()}");
        // On target already: nothing flips.
        Assert.Contains("met by the dual update", m.FixGates());
        Assert.Equal(gates.SelectMany(l => l.SelectMany(t => t)), m.HardGates().SelectMany(l => l.SelectMany(t => t)));
    }

    [Fact]
    public void Landing_finds_the_fewest_flips_where_the_cost_does_not_fall_monotonically()
    {
        // One task, one layer of 8 gates, all own: the cost by number of gates switched to the shared copy rises once
        // (a flip that brings back a copy nothing read before). Target 5 M MACs: 3 flips meet it; 4 and 5 are over it.
        double[] byFlips = [8, 7, 6, 5, 6, 5.5, 2, 1, 0];
        PrunedCost Cost(IReadOnlyList<bool[][]> g)
        {
            int off = g[0][0].Count(on => !on);
            long macs = (long)(byFlips[off] * 1e6);
            return new PrunedCost(macs, macs, [macs], 0, 8 - off, 8);
        }
        using var budget = new BudgetController(new BudgetTarget { Macs = 5e6 }, 1, 1, [8], Cost, () => (0, 0));
        var (gates, message) = budget.Land([[Enumerable.Repeat(true, 8).ToArray()]]);
        Assert.Equal(3, gates[0][0].Count(on => !on));
        Assert.Contains("flipping 3 gates", message);
    }

    [Fact]
    public void Landing_ranks_gates_by_the_task_gradient_on_the_gate_not_on_its_logit()
    {
        // Two gates of one layer, both the task's own: one the task wants strongly (∂L/∂G = −1) whose α has grown to 3,
        // one it wants weakly (−0.2) at α = 0.05. α's gradient is ∂L/∂G·σ'(α): −0.045 and −0.05, which would rank the
        // strongly wanted gate as the one that matters least. The budget keeps ∂L/∂G.
        using var _ = NewDisposeScope();
        var m = Model(BudgetTarget.AtFraction(0.4));
        m.PrepareTraining(100);
        var layer = m.Encoder.GateLayers[1];
        using (no_grad())
        {
            foreach (var g in m.Encoder.GateLayers) g.Alpha.fill_(0.05);
            layer.Alpha[0][0].fill_(3);
        }
        var pull = ones(layer.Tasks, layer.Channels).neg();
        pull[0][1] = tensor(-0.2f);
        var loss = (layer.Alpha.sigmoid() * pull).sum() + m.Regularizer()!;
        loss.backward();
        m.ObserveGradients();
        var mean = m.Budget!.named_buffers().Single(b => b.name == "task_grad_1").buffer.to(float64).cpu();
        double strong = mean[0][0].item<double>(), weak = mean[0][1].item<double>();
        Assert.True(strong < 0 && weak < 0, $"{strong}, {weak}");
        Assert.Equal(5, strong / weak, 3);
    }

    [Fact]
    public void Per_task_budgets_land_each_task_s_own_copy_on_its_share()
    {
        using var _ = NewDisposeScope();
        var m = Model(new BudgetTarget { PerTask = [0.2, 0.7] });
        Assert.Contains("20 % / 70 %", m.PrepareTraining(100));
        SetAll(m, true);
        Assert.Contains("flipping", m.FixGates());
        var shares = m.Budget!.TaskShares(m.HardGates());
        Assert.InRange(shares[0], 0.18, 0.22);
        Assert.InRange(shares[1], 0.68, 0.72);

        // The whole network's target: exact at MTL (every share 0) and STL (every share 1), and between the two
        // bounds of the shared copy's cost in between (kept whole, or only where the task with the smaller share reads it).
        double Target(double[] per)
        {
            var p = Model(new BudgetTarget { PerTask = per });
            p.PrepareTraining(100);
            return p.Budget!.TargetCost();
        }
        var b = m.Budget!;
        SetAll(m, false);
        double mtl = b.Cost(m.HardGates());
        SetAll(m, true);
        double stl = b.Cost(m.HardGates());
        Assert.Equal(mtl, Target([0, 0]), 6);
        Assert.Equal(stl, Target([1, 1]), 6);
        double encoder = (stl - mtl) / (Tasks.Count - 1); // one encoder's MACs (STL: T encoders, MTL: one, same heads)
        double mid = Target([0.2, 0.7]);
        Assert.InRange(mid, mtl + (0.9 - 0.2) * encoder, mtl + 0.9 * encoder);
        Assert.InRange(mid / (mtl + (0.9 - 0.2 * 0.7) * encoder), 1 - 1e-9, 1 + 1e-9); // shared copy: 1 − 0.2 · 0.7
    }

    [Fact]
    public void Landing_works_on_a_gated_HRNet_with_dense_heads_and_agrees_with_the_pruned_network()
    {
        using var _ = NewDisposeScope();
        var tasks = new TaskSet([new TaskSpec("seg", TaskKind.Segmentation, 3), new TaskSpec("depth", TaskKind.Depth, 1)]);
        manual_seed(0);
        var m = new InterroGateModel(tasks, GatedHRNetTests.Tiny, 3, (32, 32), new InterroGateConfig { Target = BudgetTarget.AtFraction(0.3) });
        m.PrepareTraining(10);
        SetAll(m, true);
        manual_seed(1);
        for (int i = 0; i < 50; i++) m.Budget!.Observe(m.Encoder.GateLayers.Select(g => randn(g.Tasks, g.Channels)).ToArray());
        Assert.Contains("flipping", m.FixGates());
        var b = m.Budget!;
        Assert.InRange(b.Relative(b.Cost(m.HardGates())), -0.02, 0.02);
        // The budget's cost is the cost of the network the pruner builds (encoder and dense heads).
        m.eval();
        var pruned = InterroGate.Pruning.Pruner.Prune(m, new InterroGate.Data.ImageInput(3, 32, 32));
        Assert.Equal(pruned.Report.MacsAfter, b.Cost(m.HardGates()), 6);
    }

    [Fact]
    public void The_budget_keeps_its_state_when_the_model_is_converted()
    {
        // Module.to registers new tensors for the buffers (float64 here stands for a move to a GPU, the same code path):
        // the running means of the task gradients and λ must be read from the buffers, not from the tensors first made.
        using var _ = NewDisposeScope();
        manual_seed(0);
        var m = Model(BudgetTarget.AtFraction(0.3), lambdaS: 2);
        m.PrepareTraining(10);
        m.to(float64);
        var b = m.Budget!;
        Assert.Equal(2, b.Lambda[0], 9);
        var grads = m.Encoder.GateLayers.Select(g => full(g.Tasks, g.Channels, 1.0, dtype: float64)).ToArray();
        b.Observe(grads);
        var means = b.named_buffers().Where(p => p.name.StartsWith("task_grad_", StringComparison.Ordinal)).ToArray();
        Assert.Equal(m.Encoder.GateLayers.Count, means.Length);
        Assert.All(means, p =>
        {
            Assert.Equal(ScalarType.Float64, p.buffer.dtype);
            Assert.Equal(0.02, p.buffer.mean().item<double>(), 9); // one step of the running mean (decay 0.98) from 0
        });
        SetAll(m, true);
        Assert.Contains("flipping", m.FixGates()); // landing reads the converted means
    }

    [Fact]
    public void A_run_trained_to_a_budget_ends_on_it_says_how_and_resumes_its_lambda()
    {
        var config = TrainerTests.Config(new InterroGateConfig { LambdaS = 1, Target = BudgetTarget.AtFraction(0.5) }, epochs: 3, train: 256) is var c
            ? c with { Training = c.Training with { FreezeGatesLastEpochs = 1 } } : null!;
        var run = PreparedRun.Create(config);
        var messages = new List<string>();
        var recorder = new Progress(e => { if (e is RunMessage r) messages.Add(r.Text); });
        new Trainer(config, run.Model, run.Data, _dir, recorder).Run();
        var ig = (InterroGateModel)run.Model;
        Assert.Contains(messages, x => x.StartsWith("budget: ", StringComparison.Ordinal));
        Assert.Contains(messages, x => x.StartsWith("budget met by", StringComparison.Ordinal));
        Assert.InRange(ig.Budget!.Relative(ig.Budget.Cost(ig.HardGates())), -0.02, 0.02);
        var (macs, _) = DeployedCost.OfModel(ig, (1, 16, 16));
        Assert.InRange((macs - ig.Budget.TargetCost()) / ig.Budget.TargetCost(), -0.02, 0.02);
        // λ travels in the checkpoint.
        var reloaded = PreparedRun.Create(config);
        Checkpoint.Load(Path.Combine(_dir, "last.ckpt"), reloaded.Model);
        Assert.Equal(ig.Budget.Lambda, ((InterroGateModel)reloaded.Model).Budget!.Lambda);
        Assert.NotEqual(1.0, ig.Budget.Lambda[0]);
        // metrics.jsonl reports target, cost and gap every epoch.
        using var line = System.Text.Json.JsonDocument.Parse(File.ReadLines(Path.Combine(_dir, "metrics.jsonl")).Last());
        var text = line.RootElement.GetRawText();
        Assert.Contains("budget_target", text);
        Assert.Contains("budget_gap", text);
    }

    private sealed class Progress(Action<TrainingEvent> action) : IProgress<TrainingEvent>
    {
        public void Report(TrainingEvent value) => action(value);
    }
}
