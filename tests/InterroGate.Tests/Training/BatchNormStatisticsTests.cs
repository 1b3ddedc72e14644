using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;
using DataLoader = InterroGate.Data.DataLoader;

namespace InterroGate.Tests.Training;

/// <summary>Re-estimating batch-norm statistics (<see cref="BatchNormStatistics"/>, training.bnBatches).</summary>
[Collection("Torch")]
public sealed class BatchNormStatisticsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"ig-bn-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Theory]
    [InlineData("mtl")]
    [InlineData("interrogate")]
    public void The_statistics_become_the_plain_average_over_the_batches_and_nothing_else_changes(string arch)
    {
        using var scope = NewDisposeScope();
        var run = PreparedRun.Create(TrainerTests.Config(TrainerTests.Architecture(arch)));
        var model = run.Model;
        var norms = BatchNormStatistics.Layers(model);
        Assert.NotEmpty(norms);
        var parameters = model.parameters().Select(p => p.detach().clone()).ToArray();
        var first = new DataLoader(run.Data.Train, 32, shuffle: false, seed: 0, dropLast: true);
        var second = new DataLoader(new Offset(run.Data.Train, 32), 32, shuffle: false, seed: 0, dropLast: true);

        Assert.Equal(1, BatchNormStatistics.Reestimate(model, first, 1));
        var s0 = Snapshot(norms);
        Assert.Equal(1, BatchNormStatistics.Reestimate(model, second, 1));
        var s1 = Snapshot(norms);
        model.train();
        Assert.Equal(2, BatchNormStatistics.Reestimate(model, first, 2));
        var both = Snapshot(norms);

        Assert.True(model.training); // the mode it was in
        for (int i = 0; i < norms.Length; i++)
        {
            // The two batches differ, so an exponential average (or one batch alone) would not give their mean.
            Assert.True(s0[i].Mean.sub(s1[i].Mean).abs().max().item<float>() > 1e-4, $"layer {i}: the two batches give the same statistics");
            var mean = s0[i].Mean.add(s1[i].Mean).div(2);
            var variance = s0[i].Var.add(s1[i].Var).div(2);
            Assert.True(both[i].Mean.allclose(mean, rtol: 1e-4, atol: 1e-5), $"layer {i}: running mean is not the average of the batches'");
            Assert.True(both[i].Var.allclose(variance, rtol: 1e-4, atol: 1e-5), $"layer {i}: running variance is not the average of the batches'");
            Assert.Equal(2L, norms[i].num_batches_tracked!.item<long>());
            Assert.Equal(0.1, norms[i].momentum); // the layers' own momentum is back
        }
        foreach (var ((name, after), before) in model.named_parameters().Zip(parameters))
            Assert.True(before.allclose(after, rtol: 0, atol: 0), $"{name} changed by {before.sub(after).abs().max().item<float>()}");

        // A training step after it runs as before (the counters keep their type and device).
        model.train();
        var batch = run.Data.Train.GetBatch(Enumerable.Range(0, 8).Select(i => (long)i).ToArray());
        var loss = model.Forward(batch[IMultiTaskDataset.ImageKey], InterroGate.Runtime.Precision.Fp32).Values.Select(o => o.square().mean()).Aggregate((a, b) => a + b);
        loss.backward();
        Assert.Equal(3L, norms[0].num_batches_tracked!.item<long>());
    }

    [Fact]
    public void Training_with_bnBatches_leaves_the_statistics_of_its_last_epoch_in_the_model_and_the_checkpoint()
    {
        using var scope = NewDisposeScope();
        var config = TrainerTests.Config(TrainerTests.Architecture("interrogate"), epochs: 2, train: 256);
        config = config with { Training = config.Training with { BnBatches = 3 } };
        var run = PreparedRun.Create(config);
        var trainer = new Trainer(run.Config, run.Model, run.Data, _dir);
        trainer.Run();
        var norms = BatchNormStatistics.Layers(run.Model);
        var trained = Snapshot(norms);
        Assert.All(norms, n => Assert.Equal(3L, n.num_batches_tracked!.item<long>()));

        // The first three batches of the last epoch (the training loader's order), with the final weights: what
        // evaluate --bn-batches computes for a checkpoint trained without the option.
        Assert.Equal(3, BatchNormStatistics.ReestimateAsTrained(run.Model, config, run.Data.Train, epochsDone: 2, batches: 3));
        var again = Snapshot(norms);
        for (int i = 0; i < norms.Length; i++)
        {
            Assert.True(trained[i].Mean.allclose(again[i].Mean, rtol: 0, atol: 0), $"layer {i}: running mean is not the last epoch's re-estimate");
            Assert.True(trained[i].Var.allclose(again[i].Var, rtol: 0, atol: 0), $"layer {i}: running variance is not the last epoch's re-estimate");
        }

        // It changes no weight or gate: the same run without it ends with the same parameters, other statistics.
        var plain = PreparedRun.Create(config with { Training = config.Training with { BnBatches = 0 } });
        new Trainer(plain.Config, plain.Model, plain.Data, Path.Combine(_dir, "plain")).Run();
        foreach (var ((name, a), b) in run.Model.named_parameters().Zip(plain.Model.parameters()))
            Assert.True(a.allclose(b, rtol: 0, atol: 0), $"{name} differs from the run without re-estimation");
        var plainNorms = BatchNormStatistics.Layers(plain.Model);
        Assert.Contains(Enumerable.Range(0, norms.Length), i => !plainNorms[i].running_mean!.allclose(trained[i].Mean, rtol: 1e-3, atol: 1e-4));

        // The checkpoint holds them: a model loaded from it has the same statistics.
        var loaded = PreparedRun.Load(trainer.LastPath, run.Data.Train.ImageShape, run.Data.Train.Tasks).Model;
        var stored = Snapshot(BatchNormStatistics.Layers(loaded));
        for (int i = 0; i < norms.Length; i++) Assert.True(stored[i].Mean.allclose(trained[i].Mean, rtol: 0, atol: 0), $"layer {i}: the checkpoint's running mean differs");
    }

    [Fact]
    public void A_negative_number_of_batches_is_refused_naming_the_key()
    {
        var config = TrainerTests.Config(TrainerTests.Architecture("mtl"));
        var e = Assert.Throws<ConfigException>(() => (config with { Training = config.Training with { BnBatches = -1 } }).Validate(2));
        Assert.Contains("training.bnBatches", e.Message);
        using var scope = NewDisposeScope();
        var run = PreparedRun.Create(config);
        var loader = new DataLoader(run.Data.Train, 32, shuffle: false, seed: 0, dropLast: true);
        Assert.Throws<ArgumentOutOfRangeException>(() => BatchNormStatistics.Reestimate(run.Model, loader, -1));
        Assert.Equal(0, BatchNormStatistics.Reestimate(run.Model, loader, 0));
    }

    private static (Tensor Mean, Tensor Var)[] Snapshot(IEnumerable<NormBase> norms) =>
        norms.Select(n => (n.running_mean!.clone(), n.running_var!.clone())).ToArray();

    /// <summary>The samples of <paramref name="inner"/> from <paramref name="start"/> on.</summary>
    private sealed class Offset(IMultiTaskDataset inner, int start) : IMultiTaskDataset
    {
        public string Name => inner.Name;
        public InterroGate.Tasks.TaskSet Tasks => inner.Tasks;
        public int Count => inner.Count - start;
        public (int Channels, int Height, int Width) ImageShape => inner.ImageShape;
        public ImageInput Input => inner.Input;
        public Dictionary<string, Tensor> GetBatch(ReadOnlySpan<long> indices) => inner.GetBatch(indices.ToArray().Select(i => i + start).ToArray());
    }
}
