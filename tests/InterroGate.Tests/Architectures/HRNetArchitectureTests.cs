using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Heads;
using InterroGate.Objectives;
using InterroGate.Tasks;
using InterroGate.Training;
using static TorchSharp.torch;

namespace InterroGate.Tests.Architectures;

/// <summary>STL, MTL and InterroGate on an HRNet backbone through the registry: dense predictions at the image's resolution, and training.</summary>
[Collection("Torch")]
public sealed class HRNetArchitectureTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-hrnet-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly TaskSet Tasks = new([
        new TaskSpec("semseg", TaskKind.Segmentation, 5),
        new TaskSpec("depth", TaskKind.Depth, 1),
        new TaskSpec("normals", TaskKind.Normals, 3),
        new TaskSpec("kind", TaskKind.Classification, 4),
    ]);

    private static RunConfig Config(string arch, int seed = 0) => new()
    {
        Name = "hrnet",
        Data = new DataConfig { Dataset = "fashion-scenes", TrainSize = 8, ValidationSize = 4, TestSize = 4 },
        Backbone = new BackboneConfig { Name = "hrnet18-small" },
        Architecture = arch switch { "stl" => new SingleTaskConfig(), "mtl" => new HardSharingConfig(), _ => new InterroGateConfig() },
        Training = new TrainingConfig { Epochs = 1, BatchSize = 4, EvalBatchSize = 4, MaxStepsPerEpoch = 2, Lr = 1e-3, Seed = seed },
    };

    [Theory]
    [InlineData("stl")]
    [InlineData("mtl")]
    [InlineData("interrogate")]
    public void Dense_tasks_are_predicted_at_the_images_resolution_and_every_parameter_gets_a_gradient(string arch)
    {
        int h = 36, w = 44; // not multiples of 32: the stride-4 map is 9×11, the lower branches round up
        var model = Factory.CreateModel(Config(arch), Tasks, (3, h, w));
        var heads = model.named_modules().Where(m => m.name.StartsWith("heads.", StringComparison.Ordinal) && m.name.Count(c => c == '.') == 1)
            .ToDictionary(m => m.name["heads.".Length..], m => m.module);
        Assert.All(new[] { "semseg", "depth", "normals" }, t => Assert.Equal(270, Assert.IsType<HrNetHead>(heads[t]).InChannels));
        Assert.IsType<ClassificationHead>(heads["kind"]);
        ArchitectureContractTests.AssertEveryModuleOnce(model);

        if (model is InterroGateModel ig) // a mixed sharing pattern, so that the shared branch is read too
            using (no_grad())
                foreach (var g in ig.Encoder.GateLayers) g.Alpha.copy_(randn_like(g.Alpha));

        using var scope = NewDisposeScope();
        var outputs = model.call(randn(2, 3, h, w));
        Assert.Equal(new long[] { 2, 5, h, w }, outputs["semseg"].shape);
        Assert.Equal(new long[] { 2, 1, h, w }, outputs["depth"].shape);
        Assert.Equal(new long[] { 2, 3, h, w }, outputs["normals"].shape);
        Assert.Equal(new long[] { 2, 4 }, outputs["kind"].shape);
        Assert.All(outputs.Values, o => Assert.True(isfinite(o).all().item<bool>()));

        var targets = new Dictionary<string, Tensor>
        {
            ["semseg"] = randint(0, 5, [2, h, w]),
            ["depth"] = rand(2, 1, h, w) + 0.5,
            ["normals"] = nn.functional.normalize(randn(2, 3, h, w), p: 2, dim: 1),
            ["kind"] = randint(0, 4, [2]),
        };
        new MultiTaskObjective(Tasks).Losses(outputs, targets).Aggregate((a, b) => a + b).backward();
        var missing = model.named_parameters().Where(p => p.parameter.grad is null || p.parameter.grad.abs().sum().item<float>() == 0).Select(p => p.name).ToArray();
        Assert.Empty(missing);
    }

    /// <summary>A fake Fashion-MNIST of random blobs (60 training, 12 test images), enough for a few small scenes.</summary>
    private string FakeFashionMnist()
    {
        var random = new Random(3);
        foreach (var (prefix, n) in new[] { ("train", 60), ("t10k", 12) })
        {
            var pixels = new byte[n * 784];
            for (int i = 0; i < n; i++)
                for (int y = 6; y < 22; y++)
                    for (int x = 4 + i % 5; x < 20 + i % 5; x++) pixels[i * 784 + y * 28 + x] = (byte)random.Next(60, 256);
            IdxReader.Write(Path.Combine(_dir, $"{prefix}-images-idx3-ubyte"), [n, 28, 28], pixels);
            IdxReader.Write(Path.Combine(_dir, $"{prefix}-labels-idx1-ubyte"), [n], Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray());
        }
        return _dir;
    }

    [Theory]
    [InlineData("stl")]
    [InlineData("mtl")]
    public void Training_steps_on_FashionScenes_run_and_move_every_branch_and_head(string arch)
    {
        var data = FashionScenes.Load(new FashionScenesOptions(FakeFashionMnist(), Height: 32, Width: 32, TrainSize: 8, ValidationSize: 4,
            TestSize: 4, Seed: 1, Tasks: FashionScenes.NyudTasks));
        // A tiny HRNet (4-channel highest-resolution branch, one module of one block per stage) keeps the steps fast.
        manual_seed(5);
        var spec = new HRNetSpec("hrnet-tiny", 4, Stage1Blocks: 1, StageModules: [1, 1, 1], BlocksPerBranch: 1);
        var tasks = data.Train.Tasks;
        MultiTaskModel model = arch == "stl" ? new SingleTask(tasks, spec, 3) : new HardSharing(tasks, spec, 3);
        var run = new PreparedRun(Config(arch), tasks, data, model);
        Assert.Equal(FashionScenes.NyudTasks, run.Tasks.Names);
        Assert.All(run.Tasks, t => Assert.IsType<HrNetHead>(model.named_modules().Single(m => m.name == $"heads.{t.Name}").module));
        var before = run.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

        var result = new Trainer(run.Config, run.Model, run.Data, Path.Combine(_dir, "run")).Run();

        Assert.Equal(1, result.EpochsCompleted);
        Assert.Single(File.ReadAllLines(Path.Combine(_dir, "run", "metrics.jsonl")));
        var after = Evaluator.Evaluate(run.Model, run.Data.Validation, 4);
        Assert.All(run.Tasks, t => Assert.True(double.IsFinite(after.Losses[t.Name]), $"{t.Name}: {after.Losses[t.Name]}"));
        // Every encoder (one per task for STL, the shared one for MTL), each down to its lowest branch, and every head took the steps.
        var changed = run.Model.named_parameters().Where(p => !p.parameter.equal(before[p.name]).all().item<bool>()).Select(p => p.name).ToArray();
        // In each encoder: the stem, the lowest-resolution branch of the last stage, its fuse layers and the transition to it.
        var encoders = arch == "stl" ? run.Tasks.Names.Select(t => $"encoders.{t}.").ToList() : ["encoder."];
        var roots = encoders.SelectMany(e => new[] { "conv1.", "stage4.0.branches.3.", "stage4.0.fuse_layers.", "transition3.3." }.Select(r => e + r)).ToList();
        roots.AddRange(run.Tasks.Names.Select(t => $"heads.{t}.last_layer.3."));
        Assert.All(roots, r => Assert.Contains(changed, n => n.StartsWith(r, StringComparison.Ordinal)));
    }
}
