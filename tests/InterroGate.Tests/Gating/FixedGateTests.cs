using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Gating;
using InterroGate.Tasks;
using InterroGate.Tests.Pruning;
using InterroGate.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Tests.Gating;

/// <summary>
/// With the gates fixed the encoder leaves the copies no task reads uncomputed: the same outputs, weight gradients and
/// weights after training steps as the full computation, and fewer MACs.
/// </summary>
[Collection("Torch")]
public sealed class FixedGateTests
{
    internal static readonly TaskSet Tasks = BranchFusionTests.Tasks; // two classification tasks and a regression

    private static readonly ViTSpec Vit = new("vit-test", 4, 16, 2, 2, TrainedSize: 16);

    internal static IEncoderSpec Spec(string backbone) => backbone switch
    {
        "resnet20" => ResNetSpec.ResNet20(0.25),
        "hrnet-tiny" => GatedHRNetTests.Tiny,
        "vit" => Vit,
        _ => BackboneCatalog.Spec(backbone),
    };

    /// <summary>
    /// A model whose gates leave copies unread: layer 0 all task-specific (its shared copy unread), layer 1 all shared
    /// (its task copies unread), every other layer and task drawn from all own, all shared and random channels.
    /// </summary>
    internal static InterroGateModel Model(string backbone, GatingMode gating, int size, int seed = 3)
    {
        manual_seed(seed);
        var model = new InterroGateModel(Tasks, Spec(backbone), 3, (size, size), new InterroGateConfig { Gating = gating });
        PrunerTests.RandomiseNorms(model);
        var rng = new Random(seed);
        using var _ = no_grad();
        var layers = model.Encoder.GateLayers;
        for (int l = 0; l < layers.Count; l++)
        {
            var g = layers[l];
            g.Beta?.copy_(randn_like(g.Beta) * 2);
            for (int t = 0; t < g.Tasks; t++)
            {
                int mode = l == 0 ? 1 : l == 1 ? 0 : rng.Next(3);
                var row = mode switch
                {
                    0 => full(g.Channels, -1f),
                    1 => full(g.Channels, 1f),
                    _ => randn(g.Channels).sign().add_(0.5f).sign(),
                };
                g.Alpha[t].copy_(row);
            }
        }
        return model;
    }

    public static TheoryData<string, GatingMode, int> Backbones => new()
    {
        { "resnet20", GatingMode.Conv, 16 },
        { "resnet20", GatingMode.Block, 16 }, // ungated units inside blocks: what only unread copies read
        { "hrnet-tiny", GatingMode.Conv, 32 }, // fuse paths and resized terms
        { "vit", GatingMode.Conv, 16 },        // operations (tokens, attention)
    };

    internal static double MaxDifference(Tensor a, Tensor b) => (a - b).abs().max().to(float64).item<double>();

    private static void AssertSameOutputs(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b, double tolerance)
    {
        foreach (var t in Tasks.Names) Assert.True(MaxDifference(a[t], b[t]) <= tolerance, $"{t}: {MaxDifference(a[t], b[t]):E2}");
    }

    /// <summary>Both models in evaluation mode give the same outputs on a random batch of 2 images of <paramref name="size"/>.</summary>
    private static void AssertSameEvaluation(InterroGateModel first, InterroGateModel second, int size, double tolerance, ScalarType dtype = ScalarType.Float32)
    {
        first.eval();
        second.eval();
        using var _ = no_grad();
        var x = randn(2, 3, size, size, dtype: dtype);
        AssertSameOutputs(first.call(x), second.call(x), tolerance);
    }

    [Theory]
    [MemberData(nameof(Backbones))]
    public void Training_steps_with_fixed_gates_give_the_weights_and_statistics_of_the_full_computation(string backbone, GatingMode gating, int size)
    {
        // In float64: Adam's first steps move a weight by about its learning rate whatever the size of its gradient, so
        // float32 rounding in gradients near 0 would show in the weights although both computations are the same.
        using var skipping = Model(backbone, gating, size);
        using var full = Model(backbone, gating, size);
        full.Encoder.BackwardReadFiltersOnly = false;
        skipping.to(float64);
        full.to(float64);
        var unread = skipping.Encoder.UnreadCopies(skipping.Encoder.HardGates());
        Assert.Contains(unread, u => u[..^1].Any(x => x)); // some task copy and some shared copy go uncomputed
        Assert.Contains(unread, u => u[^1]);
        skipping.Encoder.GatesFixed = true;
        var initialBuffers = skipping.named_buffers().ToDictionary(b => b.name, b => b.buffer.clone());

        var weights = (InterroGateModel m) => m.named_parameters().Where(p => !p.name.StartsWith("encoder.gates.", StringComparison.Ordinal)).ToArray();
        var optimizers = new[] { skipping, full }.Select(m => TorchSharp.torch.optim.Adam(weights(m).Select(p => p.parameter), 1e-2)).ToArray();
        manual_seed(11);
        var batches = Enumerable.Range(0, 3).Select(_ => randn(4, 3, size, size, dtype: float64)).ToArray();
        for (int step = 0; step < batches.Length; step++)
        {
            var losses = new List<double>();
            foreach (var (model, opt) in new[] { skipping, full }.Zip(optimizers))
            {
                model.train();
                opt.zero_grad();
                var outputs = model.call(batches[step]);
                var loss = outputs.Values.Select(o => o.square().mean()).Aggregate((a, b) => a + b);
                loss.backward();
                losses.Add(loss.item<double>());
                opt.step();
            }
            Assert.Equal(losses[1], losses[0], 10);
        }
        foreach (var ((name, p), (_, q)) in weights(skipping).Zip(weights(full)))
            Assert.True(MaxDifference(p, q) <= 1e-9, $"{name}: {MaxDifference(p, q):E2}");
        // Each channel of a BN buffer is the full computation's, or untouched: a filter that was never computed.
        long untouched = 0;
        var fullBuffers = full.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        foreach (var (name, buffer) in skipping.named_buffers())
        {
            using var same = (buffer.to(float64) - fullBuffers[name].to(float64)).abs().le(1e-9);
            using var kept = buffer.to(float64).eq(initialBuffers[name].to(float64));
            Assert.True(same.logical_or(kept).all().item<bool>(), $"{name} is neither the full computation's nor untouched");
            untouched += same.logical_not().sum().item<long>();
        }
        if (skipping.modules().OfType<TorchSharp.Modules.BatchNorm2d>().Any()) Assert.True(untouched > 0, "no BN statistics left untouched");

        // And in evaluation the same outputs.
        AssertSameEvaluation(skipping, full, size, 1e-9, float64);
    }

    [Theory]
    [MemberData(nameof(Backbones))]
    public void The_weight_gradients_equal_those_of_the_full_computation(string backbone, GatingMode gating, int size)
    {
        using var skipping = Model(backbone, gating, size);
        using var full = Model(backbone, gating, size);
        full.Encoder.BackwardReadFiltersOnly = false;
        skipping.Encoder.GatesFixed = true;
        var x = randn(2, 3, size, size);
        foreach (var model in new[] { skipping, full })
        {
            model.train();
            model.call(x).Values.Select(o => o.square().mean()).Aggregate((a, b) => a + b).backward();
        }
        var unreadWeights = 0;
        foreach (var ((name, p), (_, q)) in skipping.named_parameters().Zip(full.named_parameters()))
        {
            if (name.StartsWith("encoder.gates.", StringComparison.Ordinal)) continue; // α gets no gradient through a copy not computed
            if (q.grad is null) { Assert.Null(p.grad); continue; }
            if (p.grad is null)
            {
                // A weight of an unread copy: its gradient in the full computation is exactly 0.
                Assert.Equal(0.0, q.grad.abs().max().to(float64).item<double>());
                unreadWeights++;
                continue;
            }
            Assert.True(MaxDifference(p.grad, q.grad) <= 1e-5 * Math.Max(1, q.grad.abs().max().item<float>()), $"{name}: {MaxDifference(p.grad, q.grad):E2}");
        }
        Assert.True(unreadWeights > 0);
    }

    [Fact]
    public void The_uncomputed_copies_are_the_MACs_the_count_no_longer_sees()
    {
        using var model = Model("resnet20", GatingMode.Conv, 16);
        var encoder = model.Encoder;
        long all = CostCounter.Count(encoder, x => encoder.call(x), [1, 3, 16, 16]).Macs;
        var gates = encoder.HardGates();
        var unread = encoder.UnreadCopies(gates);
        long skipped = encoder.Units.Select((u, i) => u.Macs * unread[i].Count(x => x)).Sum();
        encoder.KeptFiltersOnly = false;
        encoder.GatesFixed = true;
        long counted = CostCounter.Count(encoder, x => encoder.call(x), [1, 3, 16, 16]).Macs;
        Assert.True(skipped > 0);
        Assert.Equal(all - skipped, counted);
        // Computing only the kept filters of the copies that remain, the encoder costs what the pruned one will.
        encoder.KeptFiltersOnly = true;
        encoder.GatesFixed = true;
        long kept = CostCounter.Count(encoder, x => encoder.call(x), [1, 3, 16, 16]).Macs;
        long pruned = encoder.PredictPrunedCost(SharingPattern.FromGates(gates)).Macs;
        Assert.True(kept < counted, $"{kept} vs {counted}");
        Assert.Equal(pruned, kept);
        // The pruner reports the gated network's cost with every copy, whatever the encoder skips.
        var report = InterroGate.Pruning.Pruner.Prune(model, new InterroGate.Data.ImageInput(3, 16, 16)).Report;
        Assert.True(encoder.GatesFixed);
        encoder.GatesFixed = false;
        Assert.Equal(InterroGate.Pruning.Pruner.Prune(model, new InterroGate.Data.ImageInput(3, 16, 16)).Report.MacsBefore, report.MacsBefore);
    }

    [Fact]
    public void Computing_kept_filters_only_is_the_configured_choice_and_gives_the_outputs_of_whole_copies()
    {
        Assert.True(new InterroGateConfig().KeptFiltersOnly);
        using var kept = Model("resnet20", GatingMode.Conv, 16);
        using var whole = Model("resnet20", GatingMode.Conv, 16);
        manual_seed(3);
        using var configured = new InterroGateModel(Tasks, Spec("resnet20"), 3, (16, 16), new InterroGateConfig { KeptFiltersOnly = false });
        Assert.False(configured.Encoder.KeptFiltersOnly);
        whole.Encoder.KeptFiltersOnly = false;
        kept.Encoder.GatesFixed = whole.Encoder.GatesFixed = true;
        long keptMacs = CostCounter.Count(kept.Encoder, h => kept.Encoder.call(h), [1, 3, 16, 16]).Macs;
        long wholeMacs = CostCounter.Count(whole.Encoder, h => whole.Encoder.call(h), [1, 3, 16, 16]).Macs;
        Assert.True(keptMacs < wholeMacs, $"{keptMacs} vs {wholeMacs}");
        AssertSameEvaluation(kept, whole, 16, 1e-5);
    }

    [Fact]
    public void Unread_copies_follow_the_gates_and_through_ungated_units()
    {
        using var model = Model("resnet20", GatingMode.Block, 16);
        var encoder = model.Encoder;
        var gates = encoder.HardGates();
        var unread = encoder.UnreadCopies(gates);
        int T = Tasks.Count;
        for (int u = 0; u < encoder.Units.Count; u++)
        {
            var unit = encoder.Units[u];
            if (unit.Gated)
            {
                var g = gates[unit.GateIndex];
                for (int t = 0; t < T; t++) Assert.Equal(!g[t].Any(on => on), unread[u][t]);
                Assert.Equal(g.All(task => task.All(on => on)), unread[u][T]);
            }
            else
            {
                // An ungated unit inside a block is read in a branch exactly where its reader is.
                var readers = unit.ReadBy;
                for (int b = 0; b <= T; b++) Assert.Equal(readers.All(v => unread[v][b]), unread[u][b]);
            }
        }
        Assert.Throws<ArgumentException>(() => encoder.UnreadCopies(gates.Skip(1).ToArray()));
    }

    [Fact]
    public void With_a_hysteresis_the_unread_copies_follow_the_gate_state_not_the_sign_of_alpha()
    {
        manual_seed(3);
        using var model = new InterroGateModel(Tasks, ResNetSpec.ResNet20(0.25), 3, (16, 16), new InterroGateConfig { GateHysteresis = 0.5 });
        using var full = new InterroGateModel(Tasks, ResNetSpec.ResNet20(0.25), 3, (16, 16), new InterroGateConfig { GateHysteresis = 0.5 });
        full.load_state_dict(model.state_dict());
        foreach (var m in new[] { model, full })
        {
            // Task a keeps its own copy of the first layer by its state although α fell below 0 (inside the band): the
            // state decides what is read.
            var first = m.Encoder.GateLayers[0];
            first.Force([Enumerable.Repeat(true, (int)first.Channels).ToArray(), new bool[first.Channels], new bool[first.Channels]]);
            using (no_grad()) first.Alpha[0].fill_(-0.1f);
        }
        var unread = model.Encoder.UnreadCopies(model.Encoder.HardGates());
        int firstUnit = model.Encoder.Units.Select((u, i) => (u, i)).First(p => p.u.GateIndex == 0).i;
        Assert.Equal([false, true, true, false], unread[firstUnit]);
        model.Encoder.GatesFixed = true;
        AssertSameEvaluation(model, full, 16, 1e-5);
    }

    [Fact]
    public void Fixed_gates_turn_gate_noise_off_so_the_last_epochs_train_on_the_hard_gates()
    {
        using var noisy = Model("resnet20", GatingMode.Conv, 16);
        using var hard = Model("resnet20", GatingMode.Conv, 16);
        using var learning = Model("resnet20", GatingMode.Conv, 16);
        noisy.Encoder.Noise = learning.Encoder.Noise = new GateNoise(5);
        var x = randn(2, 3, 16, 16);
        noisy.train();
        hard.train();
        learning.train();
        // While the gates learn, the noise changes the gates (logistic noise on α = ±1 flips many of them).
        manual_seed(5);
        var withNoise = learning.call(x);
        var noiseFree = hard.call(x);
        Assert.Contains(Tasks, t => (withNoise[t.Name] - noiseFree[t.Name]).abs().max().item<float>() > 1e-3);
        // Fixed, the same noisy model computes with the hard gates: the noise-free outputs.
        noisy.Encoder.GatesFixed = true;
        manual_seed(5);
        AssertSameOutputs(noisy.call(x), noiseFree, 1e-5);
    }

    [Fact]
    public void Evaluation_and_loading_a_checkpoint_leave_no_stale_fixed_gates()
    {
        using var model = Model("resnet20", GatingMode.Conv, 16);
        var data = new InterroGate.Data.InMemoryDataset("fixed", Tasks, randn(6, 3, 16, 16),
            new Dictionary<string, Tensor> { ["a"] = randint(3, [6], dtype: int64), ["b"] = randint(4, [6], dtype: int64), ["c"] = randn(6, 2) });
        var before = Evaluator.Evaluate(model, data, 4);
        Assert.False(model.Encoder.GatesFixed); // evaluation fixes them only while it runs
        model.Encoder.GatesFixed = true;
        var after = Evaluator.Evaluate(model, data, 4);
        Assert.True(model.Encoder.GatesFixed);
        foreach (var t in Tasks.Names) Assert.Equal(before.Losses[t], after.Losses[t], 5);

        var path = Path.Combine(Directory.CreateTempSubdirectory("ig-fixed-").FullName, "m.ckpt");
        try
        {
            Checkpoint.Save(path, new CheckpointMeta { Architecture = model.Architecture, Backbone = "resnet20", Tasks = Tasks.Names.ToArray(), Config = "{}" }, model, []);
            Checkpoint.Load(path, model);
            Assert.False(model.Encoder.GatesFixed); // the loaded gates may leave other copies unread
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Fact]
    public void With_the_gates_fixed_there_is_no_sparsity_term()
    {
        using var _ = NewDisposeScope();
        using var model = new InterroGateModel(Tasks, Spec("resnet20"), 3, (16, 16), new InterroGateConfig { LambdaS = 2 });
        Assert.True(model.Regularizer()!.item<float>() > 0);
        model.SetGatesFixed(true);
        Assert.Null(model.Regularizer()); // α does not move: nothing for the term to push, and no graph built for it
        model.SetGatesFixed(false);
        Assert.NotNull(model.Regularizer());
    }
}
