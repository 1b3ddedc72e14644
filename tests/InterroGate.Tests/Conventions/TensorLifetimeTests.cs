using System.Text.Json.Nodes;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Gating;
using InterroGate.Heads;
using InterroGate.Pruning;
using InterroGate.Tests.Pruning;
using InterroGate.Tests.Training;
using InterroGate.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace InterroGate.Tests.Conventions;

/// <summary>
/// No tensor the library makes is left to its finalizer: each is disposed, by a dispose scope or by its owner. A tensor
/// left to its finalizer can be freed by a collection that another thread starts while a native call still reads it
/// (the call held the last reference); libtorch then reads freed memory (a crash or wrong numbers). Counted with
/// <see cref="FinalizedTensors"/>, which sees the data loader's thread too.
/// </summary>
[Collection("Torch")]
public sealed class TensorLifetimeTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"ig-lifetime-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void The_probe_counts_tensors_left_to_their_finalizers()
    {
        using var t = ones(4);
        long dropped = FinalizedTensors.During(() => { Drop(t); Drop(t); Drop(t); });
        Assert.Equal(3, dropped);
        long disposed = FinalizedTensors.During(() => { using var a = t.mul(t); using var scope = NewDisposeScope(); Drop(t); });
        Assert.Equal(0, disposed);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void Drop(Tensor t) => _ = t.mul(t);

    /// <summary>Tensors finalized over a run's whole life: data and model made, trained, freed by their owner.</summary>
    private long TrainedAndFreed(RunConfig config) => FinalizedTensors.During(() =>
    {
        var run = PreparedRun.Create(config);
        using (run.Data)
        using (run.Model)
            new Trainer(run.Config, run.Model, run.Data, _dir).Run();
    });

    [Theory]
    [InlineData("stl")]
    [InlineData("mtl")]
    [InlineData("interrogate")]
    [InlineData("mtan")]
    [InlineData("cross-stitch")]
    public void A_training_run_leaves_no_tensor_to_a_finalizer(string architecture)
    {
        long finalized = TrainedAndFreed(TrainerTests.Config(TrainerTests.Architecture(architecture), epochs: 2, train: 64));
        output.WriteLine($"{architecture}: {finalized} tensors finalized");
        Assert.Equal(0, finalized);
    }

    [Theory]
    [InlineData("interrogate", "architecture.target={\"fraction\":0.5}; training.bnBatches=2; training.freezeGatesLastEpochs=1")]
    [InlineData("interrogate", "architecture.gateOptimizer=adam; architecture.gateHysteresis=0.01; architecture.sparsity=channels")]
    [InlineData("interrogate", "training.flatOptimizer=false")]
    [InlineData("mtl", "balancer={\"type\":\"auto-lambda\"}")]
    [InlineData("mtl", "balancer={\"type\":\"pcgrad\"}")]
    [InlineData("mtl", "balancer={\"type\":\"nash-mtl\"}")]
    [InlineData("mtl", "balancer={\"type\":\"cagrad\"}")]
    [InlineData("mtl", "balancer={\"type\":\"gradnorm\"}")]
    [InlineData("mtl", "balancer={\"type\":\"imtl-g\"}")]
    [InlineData("mtl", "balancer={\"type\":\"mgda-ub\"}")]
    [InlineData("mtl", "balancer={\"type\":\"mgda\"}")]
    [InlineData("mtl", "balancer={\"type\":\"fixed\",\"weights\":[1,0.5,2]}")]
    [InlineData("mtl", "balancer={\"type\":\"aligned-mtl\"}")]
    [InlineData("mtl", "balancer={\"type\":\"famo\"}")]
    [InlineData("mtl", "balancer={\"type\":\"uncertainty\"}")]
    [InlineData("mtl", "balancer={\"type\":\"dwa\"}")]
    [InlineData("mtl", "balancer={\"type\":\"rlw\"}")]
    public void Training_options_leave_no_tensor_to_a_finalizer(string architecture, string overrides)
    {
        var root = JsonNode.Parse(ConfigJson.Serialize(TrainerTests.Config(TrainerTests.Architecture(architecture), epochs: 2, train: 64)))!;
        foreach (var o in overrides.Split(';')) ConfigJson.ApplyOverride(root, o);
        long finalized = TrainedAndFreed(ConfigJson.Deserialize<RunConfig>(root.ToJsonString()));
        output.WriteLine($"{architecture} {overrides}: {finalized} tensors finalized");
        Assert.Equal(0, finalized);
    }

    [Fact]
    public void A_comparison_leaves_no_tensor_to_a_finalizer()
    {
        // Training, testing, pricing and pruning every model of a comparison; the models it makes are its own to free.
        var config = new CompareConfig
        {
            Name = "t",
            Data = new DataConfig { Dataset = "synthetic", TrainSize = 64, ValidationSize = 32, TestSize = 32 },
            Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
            Training = new TrainingConfig { Epochs = 1, BatchSize = 32, EvalBatchSize = 64 },
            LambdaS = [1],
            Architectures = [new InterroGate.Architectures.MtanConfig()],
        };
        long finalized = FinalizedTensors.During(() => new ComparisonRunner(config, _dir).Run());
        output.WriteLine($"comparison: {finalized} tensors finalized");
        Assert.Equal(0, finalized);
    }

    [Theory]
    [InlineData("interrogate", "resnet20", "aspp")]
    [InlineData("mtl", "hrnet18-small", "hrnet")]
    [InlineData("interrogate", "vit_cpu_patch4_32", "dpt")]
    public void Dense_tasks_leave_no_tensor_to_a_finalizer(string architecture, string backbone, string head)
    {
        // FashionScenes: the loader's joint augmentation on its own thread, dense heads, losses and metrics.
        var config = TrainerTests.Config(TrainerTests.Architecture(architecture), epochs: 1) with
        {
            Data = new DataConfig { Dataset = "fashion-scenes", TrainSize = 32, ValidationSize = 16, TestSize = 16 },
            Tasks = architecture == "interrogate" ? FashionScenes.NyudTasks : null,
            Backbone = new BackboneConfig { Name = backbone, Width = backbone == "resnet20" ? 0.25 : 1 },
            Head = new HeadConfig { Dense = head, Channels = 16 },
        };
        config = config with { Training = config.Training with { BatchSize = 16, EvalBatchSize = 16 } };
        long finalized = TrainedAndFreed(config);
        output.WriteLine($"{architecture} {backbone} {head}: {finalized} tensors finalized");
        Assert.Equal(0, finalized);
    }

    [Theory]
    [InlineData("resnet20", GatingMode.Conv)]
    [InlineData("vit_cpu_patch4_32", GatingMode.Block)]
    public void Pruning_and_deployment_leave_no_tensor_to_a_finalizer(string backbone, GatingMode mode)
    {
        // Prune, run the static network, store and reload it, export it to ONNX, predict from a file, price it.
        var model = PrunerTests.Model(backbone, mode, PrunerTests.Pattern.Random, 16); // the test's own temporaries stay outside the count
        long finalized = FinalizedTensors.During(() =>
        {
            using var owned = model;
            var input = new ImageInput(3, 16, 16);
            using var graph = Pruner.Prune(model, input).Graph;
            using (var net = new StaticNetwork(graph))
            using (var x = randn(2, 3, 16, 16))
            using (no_grad())
                foreach (var y in net.call(x).Values) y.Dispose();
            string file = Path.Combine(_dir, "m.safetensors");
            Directory.CreateDirectory(_dir);
            StaticModelFile.Save(file, graph);
            OnnxExporter.Export(graph, Path.Combine(_dir, "m.onnx"));
            InterroGate.Analysis.DeployedCost.Of(file, null, 3, backbone, 2);
            Npy.Write(Path.Combine(_dir, "x.npy"), [3, 16, 16], new byte[3 * 16 * 16]);
            using var predictor = Predictor.Load(file);
            var prediction = predictor.PredictFiles([Path.Combine(_dir, "x.npy")])[0];
            Assert.True(prediction.Error is null, prediction.Error);
        });
        output.WriteLine($"{backbone} {mode}: {finalized} tensors finalized");
        Assert.Equal(0, finalized);
    }
}
