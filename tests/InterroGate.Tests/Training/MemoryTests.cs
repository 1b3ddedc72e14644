using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Gating;
using InterroGate.Objectives;
using InterroGate.Tasks;
using InterroGate.Training;
using static TorchSharp.torch;

namespace InterroGate.Tests.Training;

/// <summary>A long run must not accumulate tensors: every step frees what it made.</summary>
[Collection("Torch")]
public sealed class MemoryTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"ig-memory-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Counts live tensors at every progress report, on the training thread.</summary>
    private sealed class LiveTensors : IProgress<TrainingEvent>
    {
        public readonly List<(int Step, long Live)> Samples = new();
        public void Report(TrainingEvent value)
        {
            if (value is not StepProgress p) return;
            // Tensors nobody references any more but whose finalizer has not run yet are not a leak: collect them first,
            // until the count settles (a finalizer can release what only the next collection frees, such as the
            // tensors an autograd node of an earlier graph holds).
            long count = -1;
            for (int round = 0; round < 10 && count != Tensor.TotalCount; round++)
            {
                count = Tensor.TotalCount;
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
            Samples.Add((p.Epoch * p.Steps + p.Step + 1, Tensor.TotalCount));
        }
    }

    /// <summary>
    /// Two epochs of <paramref name="stepsPerEpoch"/> steps at batch 4: MTL for 600 steps, InterroGate (about 7
    /// times MTL's step at this batch) for 300, and the balancers that keep per-task graphs (PCGrad) or take a
    /// virtual step on a validation batch (Auto-λ) for fewer. Every run is long enough that a leak of one tensor
    /// per step, or one per progress report, exceeds the tolerance below many times over.
    /// </summary>
    private static readonly TaskSet Tasks = new([new TaskSpec("a", TaskKind.Classification, 10), new TaskSpec("b", TaskKind.Classification, 10)]);

    private static MultiTaskModel Model(string architecture)
    {
        manual_seed(0);
        var spec = BackboneCatalog.Spec("resnet20", 0.25);
        return architecture == "mtl" ? new HardSharing(Tasks, spec, 1) : new InterroGateModel(Tasks, spec, 1, (16, 16), new InterroGateConfig { LambdaS = 1 });
    }

    private static Dictionary<string, Tensor> Batch() => new()
    {
        [IMultiTaskDataset.ImageKey] = randn(4, 1, 16, 16),
        ["a"] = randint(0, 10, [4], dtype: int64),
        ["b"] = randint(0, 10, [4], dtype: int64),
    };

    [Theory]
    [InlineData("mtl")]
    [InlineData("interrogate")]
    public void The_forward_pass_of_a_step_leaves_only_the_losses_held(string architecture)
    {
        // What the step holds after its forward pass: the task losses, the regulariser and the shared representation.
        // Every activation is then autograd's alone, so that the backward pass frees it as it goes (docs/architecture.md, "Memory").
        var model = Model(architecture);
        model.train();
        using var step = NewDisposeScope();
        var batch = Batch();
        int before = step.DisposablesCount;
        var (losses, reg) = Trainer.ForwardLosses(model, batch[IMultiTaskDataset.ImageKey], batch, new MultiTaskObjective(Tasks), InterroGate.Runtime.Precision.Fp32);
        int held = step.DisposablesCount - before;
        int expected = losses.Length + (reg is null ? 0 : 1) + (model.SharedRepresentation is null ? 0 : 1);
        Assert.Equal(expected, held);
        // The backward pass still has all it needs.
        (losses.Aggregate((x, y) => x + y) + (reg ?? tensor(0f))).backward();
        Assert.All(model.parameters().Where(p => p.requires_grad), p => Assert.NotNull(p.grad));
    }

    [Fact]
    public void The_gated_encoder_holds_only_its_outputs_and_the_streams_they_come_from()
    {
        // Inside a forward pass the gated encoder releases each unit's temporaries as the unit ends and a unit's stream
        // after its last reader: of ResNet-20's 19 gated units and their T + 1 branches, only the last unit's stream
        // (and the form made of it) is left, not hundreds of tensors.
        var model = (InterroGateModel)Model("interrogate");
        model.train();
        using var step = NewDisposeScope();
        var x = randn(4, 1, 16, 16);
        int before = step.DisposablesCount;
        var features = model.Encoder.call(x);
        int held = step.DisposablesCount - before;
        Assert.Equal(Tasks.Count, features.Length);
        Assert.InRange(held, Tasks.Count, 3 * (Tasks.Count + 1));
        features.Aggregate((a, b) => a.sum() + b.sum()).backward();
        Assert.All(model.Encoder.GateLayers, g => Assert.NotNull(g.Alpha.grad));
    }

    [Theory]
    [InlineData("mtl", "uniform", 150)]
    [InlineData("interrogate", "uniform", 75)]
    [InlineData("interrogate", "pcgrad", 60)]
    [InlineData("mtl", "auto-lambda", 100)]
    public void Live_tensors_stay_flat_over_a_long_run(string architecture, string balancer, int stepsPerEpoch)
    {
        var arch = TrainerTests.Architecture(architecture);
        BalancerConfig bal = balancer switch
        {
            "pcgrad" => new PCGradBalancerConfig(),
            "auto-lambda" => new AutoLambdaBalancerConfig(),
            _ => new UniformBalancerConfig(),
        };
        var config = TrainerTests.Config(arch, epochs: 2, train: stepsPerEpoch * 4) with
        {
            Balancer = bal,
            Training = new TrainingConfig { Epochs = 2, BatchSize = 4, EvalBatchSize = 64, Lr = 1e-3, MaxStepsPerEpoch = stepsPerEpoch },
        };
        var run = PreparedRun.Create(config);
        var live = new LiveTensors();
        new Trainer(run.Config, run.Model, run.Data, _dir, live).Run();

        int steps = 2 * stepsPerEpoch;
        Assert.Equal(steps, live.Samples[^1].Step);
        var settled = live.Samples.Where(s => s.Step > steps / 5).Select(s => s.Live).ToArray();
        Assert.True(settled.Length >= 15, $"{settled.Length} samples");
        // A leak of one tensor per step would add at least 0.8 × steps (96 or more) over this span; the prefetched
        // batch (1 + 3 tensors) may or may not be waiting when a sample is taken.
        long early = settled.Take(5).Max(), late = settled.TakeLast(5).Max();
        Assert.True(late - early <= 8, $"live tensors grew from {early} to {late} (min {settled.Min()}, max {settled.Max()})");
        Assert.True(settled.Max() - settled.Min() <= 8, $"live tensors range {settled.Min()}..{settled.Max()}: {string.Join(" ", live.Samples.Select(s => $"{s.Step}:{s.Live}"))}");
    }

    [Theory]
    [InlineData("mtl")]
    [InlineData("interrogate")]
    public void A_finished_run_leaves_no_tensor_waiting_for_a_collection(string architecture)
    {
        // Optimiser moments, the balancer's state, the last batches and the model's gate statistics are freed when Run
        // returns, not left to finalizers: on a GPU nothing would trigger those (GPU memory is invisible to the collector).
        var config = TrainerTests.Config(TrainerTests.Architecture(architecture), epochs: 1, train: 64);
        var run = PreparedRun.Create(config);
        for (int i = 0; i < 2; i++)
        {
            GC.Collect(); // what earlier tests left
            GC.WaitForPendingFinalizers();
        }
        new Trainer(run.Config, run.Model, run.Data, _dir).Run();
        long afterRun = Tensor.TotalCount;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long settled = Tensor.TotalCount;
        Assert.Equal(settled, afterRun);
        run.Model.Dispose();
    }
}
