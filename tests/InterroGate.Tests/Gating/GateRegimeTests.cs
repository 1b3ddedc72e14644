using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Gating;
using InterroGate.Tasks;
using InterroGate.Training;
using static TorchSharp.torch;

namespace InterroGate.Tests.Gating;

/// <summary>
/// The gates learn which channels each task should share (docs/method.md, "The gate regime"): in a network whose
/// branches are one network copied T+1 times, each task's copy of the last layer differs from the shared copy on a few
/// channels only, and each task's labels come from its own copy (its head leans on those channels). Only those
/// channels carry what the task needs: the gates must keep exactly them task-specific and share the rest, so the
/// layer splits channel by channel and the tasks keep different channels. With α₀ and λs far from the regime the
/// same data gives no split (nothing moves, or the push flips the whole layer).
/// </summary>
[Collection("Torch")]
public sealed class GateRegimeTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"ig-regime-{Guid.NewGuid():N}");
    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private static readonly TaskSet Tasks = new([new TaskSpec("a", TaskKind.Classification, 4), new TaskSpec("b", TaskKind.Classification, 4)]);
    // The channels of the last gated layer (16) in which each task's copy differs from the shared copy.
    private static readonly int[][] Own = [[0, 1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11]];

    private sealed class Recorder : IProgress<TrainingEvent>
    {
        public readonly List<string> Messages = new();
        public void Report(TrainingEvent value) { if (value is RunMessage m) Messages.Add(m.Text); }
    }

    private (bool[][] LastLayer, List<string> Messages, IReadOnlyList<GateLayerStats> Stats) Train(double alphaInit, double lambdaS,
        GateOptimizer optimizer = GateOptimizer.Sgd, double gateLr = 0.1)
    {
        manual_seed(11);
        var options = new InterroGateConfig { AlphaInit = alphaInit, LambdaS = lambdaS, GateLr = gateLr, GateOptimizer = optimizer };
        var model = new InterroGateModel(Tasks, ResNetSpec.ResNet20(0.25), 1, (16, 16), options);
        var parameters = model.named_parameters().Select(p => (p.name, Value: (Tensor)p.parameter))
            .Concat(model.named_buffers().Select(b => (b.name, Value: b.buffer))).ToDictionary(p => p.name, p => p.Value);
        using (no_grad())
        {
            // Every task branch a copy of the shared branch: before the last layer, task and shared features are equal.
            foreach (var (name, value) in parameters.Where(p => p.Key.StartsWith("encoder.shared.", StringComparison.Ordinal)).ToArray())
                foreach (var t in Tasks.Names)
                    parameters[name.Replace("encoder.shared.", $"encoder.task_branches.{t}.")].copy_(value);
            for (int t = 0; t < Tasks.Count; t++)
            {
                string task = Tasks[t].Name;
                var filters = parameters.Where(p => p.Key.StartsWith($"encoder.task_branches.{task}.", StringComparison.Ordinal) && p.Key.EndsWith("conv2.weight", StringComparison.Ordinal)).Last().Value;
                var head = parameters[$"heads.{task}.fc.weight"]; // [4, 16]
                head.mul_(0.1);
                foreach (int c in Own[t])
                {
                    filters[c] = randn_like(filters[c]); // the task's own copy of channel c computes another feature than the shared copy
                    head[.., c] = randn(4) * 2; // and the task's head reads it
                }
            }
        }

        // Labels: each task's prediction from its own branch (all gates 1 at α₀ > 0), so only its own channels matter.
        var images = randn(384, 1, 16, 16);
        var targets = new Dictionary<string, Tensor>();
        model.train();
        using (no_grad())
        {
            // Centre each head's logits over the data set first, so that the labels vary with the image, not with a class bias.
            foreach (var (name, logits) in model.call(images)) parameters[$"heads.{name}.fc.bias"].sub_(logits.mean([0]));
            foreach (var (name, logits) in model.call(images)) targets[name] = logits.argmax(1);
        }
        var set = new InMemoryDataset("own-channels", Tasks, images, targets);
        var config = new RunConfig
        {
            Name = "regime",
            Data = new DataConfig { Dataset = "synthetic" },
            Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
            Architecture = options,
            // The weights barely move (lr 1e-7): what changes is the gates.
            Training = new TrainingConfig { Epochs = 4, BatchSize = 32, EvalBatchSize = 128, Lr = 1e-7, WeightDecay = 0 },
        };
        var recorder = new Recorder();
        string dir = Path.Combine(_dir, $"a{alphaInit}-l{lambdaS}-{optimizer}"); // one run per folder
        new Trainer(config, model, new DatasetSplits(set, set.Take(128), set.Take(128)), dir, recorder).Run();
        var stats = GateReport.ReadGateLines(Path.Combine(dir, "metrics.jsonl")).Last().Layers;
        return (model.HardGates()[^1], recorder.Messages, stats);
    }

    [Fact]
    public void In_the_regime_the_last_layer_splits_channel_by_channel_and_the_tasks_keep_different_channels()
    {
        var (gates, messages, stats) = Train(alphaInit: 0.01, lambdaS: 10);
        AssertOwnChannelsKept(gates);
        // The monitor saw why: on the last layer the task gradient varies across channels far more than the push.
        var last = stats[^1];
        Assert.All(last.Tasks, t => Assert.True(t.PushOverSpread < 1, $"{t.Task}: push/spread {t.PushOverSpread}"));
        Assert.DoesNotContain(messages, m => m.Contains("no gate can move", StringComparison.Ordinal));
    }

    [Fact]
    public void With_Adam_on_the_gates_the_layer_splits_the_same_way()
    {
        // Adam moves each gate by about gateLr per step in the direction of its mean gradient: 48 steps of 2e-3 carry
        // α₀ = 0.01 across zero where the push outweighs the task gradient, and not where the task needs the channel.
        var (gates, messages, _) = Train(alphaInit: 0.01, lambdaS: 10, GateOptimizer.Adam, gateLr: 2e-3);
        AssertOwnChannelsKept(gates);
        Assert.DoesNotContain(messages, m => m.Contains("no gate can move", StringComparison.Ordinal));

        // Adam at 1e-3 cannot carry α₀ = 0.5 to zero in 48 steps: nothing moves, and the run says so first.
        var (frozen, frozenMessages, _) = Train(alphaInit: 0.5, lambdaS: 10, GateOptimizer.Adam, gateLr: 1e-3);
        Assert.All(frozen, g => Assert.All(g, Assert.True));
        Assert.Contains(frozenMessages, m => m.StartsWith("gate regime: no gate can move", StringComparison.Ordinal) && m.Contains("Adam", StringComparison.Ordinal));
    }

    private static void AssertOwnChannelsKept(bool[][] gates)
    {
        for (int t = 0; t < Tasks.Count; t++)
        {
            var kept = Enumerable.Range(0, 16).Where(c => gates[t][c]).ToArray();
            // Its own channels kept, the rest shared (one gate still near zero at the end may be on either side).
            int wrong = kept.Except(Own[t]).Count() + Own[t].Except(kept).Count();
            Assert.True(wrong <= 1, $"task {Tasks[t].Name} keeps [{string.Join(", ", kept)}], expected [{string.Join(", ", Own[t])}]");
            Assert.InRange(kept.Length, 1, 15); // split inside the layer
        }
        Assert.False(gates[0].SequenceEqual(gates[1])); // the tasks keep different channels
    }

    [Fact]
    public void Far_from_the_regime_the_same_data_gives_no_split_and_a_warning()
    {
        // The old defaults (α₀ = 0.5) at the same λs: no gate travels to zero in 48 steps, so the layer stays whole.
        var (frozen, frozenMessages, _) = Train(alphaInit: 0.5, lambdaS: 10);
        Assert.All(frozen, g => Assert.All(g, Assert.True));
        Assert.Contains(frozenMessages, m => m.StartsWith("gate regime:", StringComparison.Ordinal));

        // A push hundreds of times the task gradient: every gate of the layer flips, for both tasks alike.
        var (lockstep, lockstepMessages, _) = Train(alphaInit: 0.5, lambdaS: 20000);
        Assert.All(lockstep, g => Assert.All(g, Assert.False));
        Assert.Contains(lockstepMessages, m => m.Contains("lockstep", StringComparison.Ordinal));
    }
}
