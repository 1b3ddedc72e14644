using InterroGate.Architectures;
using InterroGate.Configuration;
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
    [Theory]
    [InlineData("mtl", "uniform", 300)]
    [InlineData("interrogate", "uniform", 150)]
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
}
