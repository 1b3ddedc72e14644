using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Tasks;
using InterroGate.Tests.Training;
using InterroGate.Training;
using static TorchSharp.torch;

namespace InterroGate.Tests.Api;

/// <summary>Mistakes a C# user of the library can make: each is refused with a message that says what is wrong.</summary>
[Collection("Torch")]
public sealed class ApiMisuseTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-api-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static PreparedRun Run(ArchitectureConfig arch, IReadOnlyList<string>? tasks = null) =>
        PreparedRun.Create(TrainerTests.Config(arch, epochs: 1, train: 64) with { Tasks = tasks });

    /// <summary>A one-split data set of 1×16×16 float images with the given targets.</summary>
    private static InMemoryDataset Data(TaskSpec task, Tensor targets, int count = 8)
    {
        using var scope = NewDisposeScope();
        return new InMemoryDataset("custom", new TaskSet([task]), randn(count, 1, 16, 16), new Dictionary<string, Tensor> { [task.Name] = targets });
    }

    [Fact]
    public void A_trainer_refuses_a_configuration_model_and_data_that_are_not_one_run()
    {
        var mtl = Run(new HardSharingConfig());
        var ig = Run(new InterroGateConfig { LambdaS = 1 });
        string dir = Path.Combine(_dir, "run");

        // The MTL configuration with an InterroGate model: its checkpoints could not be loaded again by that configuration.
        var e = Assert.Throws<ArgumentException>(() => new Trainer(mtl.Config, ig.Model, ig.Data, dir));
        Assert.Contains("architecture is mtl and the model is interrogate", e.Message);
        // The configuration names one task, the model has all three.
        e = Assert.Throws<ArgumentException>(() => new Trainer(mtl.Config with { Tasks = ["quadrant"] }, mtl.Model, mtl.Data, dir));
        Assert.Contains("tasks are quadrant and the model's quadrant, bar, position", e.Message);
        // Data whose task is not the model's.
        using var other = Data(new TaskSpec("colour", TaskKind.Classification, 4), zeros(8, dtype: int64));
        e = Assert.Throws<ArgumentException>(() => new Trainer(mtl.Config, mtl.Model, new DatasetSplits(other, other, other), dir));
        Assert.Contains("tasks are colour (tasks left out: every task of the data set) and the model's quadrant, bar, position", e.Message);
        e = Assert.Throws<ArgumentException>(() => new Trainer(mtl.Config with { Tasks = ["quadrant", "bar", "position"] }, mtl.Model, new DatasetSplits(other, other, other), dir));
        Assert.Contains("The training split (custom) cannot train this model: it has no task 'quadrant' (its tasks: colour)", e.Message);
        using (var empty = InterroGate.Data.Synthetic.Make("synthetic/empty", 0, 0))
            Assert.Contains("The training split (synthetic/empty) cannot train this model: it holds no samples",
                Assert.Throws<ArgumentException>(() => new Trainer(mtl.Config, mtl.Model, new DatasetSplits(empty, mtl.Data.Validation, mtl.Data.Test), dir)).Message);
        // Images of another channel count, in training and in evaluation.
        using (var scope = NewDisposeScope())
        {
            var y = new Dictionary<string, Tensor> { ["quadrant"] = zeros(8, dtype: int64), ["bar"] = zeros(8, dtype: int64), ["position"] = zeros(8, 2) };
            using var colour = new InMemoryDataset("colour", mtl.Data.Train.Tasks, randn(8, 3, 16, 16), y);
            Assert.Contains("The training split (colour) cannot train this model: it holds 3-channel images and the model reads 1-channel ones",
                Assert.Throws<ArgumentException>(() => new Trainer(mtl.Config, mtl.Model, new DatasetSplits(colour, colour, colour), dir)).Message);
            Assert.Contains("colour cannot evaluate this model: it holds 3-channel images and the model reads 1-channel ones",
                Assert.Throws<ArgumentException>(() => Evaluator.Evaluate(mtl.Model, colour, 4)).Message);
        }
        // A configuration changed after PreparedRun.Create is checked again: 0 epochs, batch 0.
        Assert.Equal("training.epochs", Assert.Throws<ConfigException>(() =>
            new Trainer(mtl.Config with { Training = mtl.Config.Training with { Epochs = 0 } }, mtl.Model, mtl.Data, dir)).Key);
        Assert.Equal("training.batchSize", Assert.Throws<ConfigException>(() =>
            new Trainer(mtl.Config with { Training = mtl.Config.Training with { BatchSize = 0 } }, mtl.Model, mtl.Data, dir)).Key);
        Assert.Throws<ArgumentNullException>(() => new Trainer(mtl.Config, null!, mtl.Data, dir));
        // What the checks leave alone still trains.
        Assert.Equal(1, new Trainer(mtl.Config, mtl.Model, mtl.Data, dir).Run().EpochsCompleted);
    }

    [Fact]
    public void Evaluation_refuses_data_that_lacks_the_models_tasks_or_holds_no_samples()
    {
        var run = Run(new HardSharingConfig(), ["quadrant"]);
        using var other = Data(new TaskSpec("quadrant", TaskKind.Classification, 7), zeros(8, dtype: int64));
        var e = Assert.Throws<ArgumentException>(() => Evaluator.Evaluate(run.Model, other, 4));
        Assert.Contains("custom cannot evaluate this model: its task 'quadrant' is Classification with 7 outputs, the model's Classification with 4", e.Message);
        using var empty = Data(new TaskSpec("quadrant", TaskKind.Classification, 4), zeros(0, dtype: int64), count: 0);
        Assert.Contains("custom cannot evaluate this model: it holds no samples", Assert.Throws<ArgumentException>(() => Evaluator.Evaluate(run.Model, empty, 4)).Message);
        Assert.Equal(run.Data.Test.Count, Evaluator.Evaluate(run.Model, run.Data.Test, 64).Samples); // its own data: evaluated
    }

    [Theory]
    [InlineData(TaskKind.Classification, 4, "long:7", "class 7 is outside 0..3")]
    [InlineData(TaskKind.Classification, 4, "long:-1", "class -1 is outside 0..3")]
    [InlineData(TaskKind.Classification, 4, "float:1", "targets must be int64 class labels of shape [N], not Float32 [8]")]
    [InlineData(TaskKind.Regression, 2, "float5", "targets must be float32 of shape [N, 2], not Float32 [8, 5]")]
    [InlineData(TaskKind.Segmentation, 3, "seg:3", "class 3 is outside 0..2 (and 255, unlabelled)")]
    public void Targets_that_do_not_fit_their_task_are_refused_when_the_data_set_is_made(TaskKind kind, int outputs, string targets, string message)
    {
        var task = new TaskSpec("t", kind, outputs);
        using var scope = NewDisposeScope();
        var y = targets switch
        {
            "float5" => zeros(8, 5),
            _ when targets.StartsWith("seg:", StringComparison.Ordinal) => full([8, 16, 16], long.Parse(targets[4..]), dtype: int64),
            _ when targets.StartsWith("long:", StringComparison.Ordinal) => cat([zeros(7, dtype: int64), full([1], long.Parse(targets[5..]), dtype: int64)]),
            _ => ones(8),
        };
        var e = Assert.Throws<ArgumentException>(() => new InMemoryDataset("d", new TaskSet([task]), randn(8, 1, 16, 16), new Dictionary<string, Tensor> { ["t"] = y }));
        Assert.Contains($"d: task 't' ({kind}, {outputs} outputs): {message}", e.Message);
        // The ignore label of segmentation is not a class: unlabelled pixels are accepted.
        if (kind == TaskKind.Segmentation)
            new InMemoryDataset("d", new TaskSet([task]), randn(8, 1, 16, 16), new Dictionary<string, Tensor> { ["t"] = full([8, 16, 16], TaskSpec.IgnoreLabel, dtype: int64) }).Dispose();
    }

    [Fact]
    public void A_predictor_and_the_pruner_refuse_inputs_they_cannot_run()
    {
        var run = Run(new InterroGateConfig { LambdaS = 1 });
        var model = (InterroGateModel)run.Model;
        Assert.Contains("positive channels, height and width, not 1×0×0",
            Assert.Throws<ArgumentException>(() => Pruner.Prune(model, new ImageInput(1, 0, 0))).Message);
        Assert.Contains("std > 0, not mean 0, std 0", Assert.Throws<ArgumentException>(() => Pruner.Prune(model, new ImageInput(1, 16, 16, 0, 0))).Message);

        var predictor = new Predictor(Pruner.Prune(model, run.Data.Train.Input).Graph);
        using (var scope = NewDisposeScope())
        {
            var bytes = Assert.Throws<ArgumentException>(() => predictor.Forward(zeros([2, 1, 16, 16], ScalarType.Byte)));
            Assert.Contains("Images must be Float32, not Byte; Input.FromBytes", bytes.Message);
            Assert.Contains("must be [B, 1, H, W]", Assert.Throws<ArgumentException>(() => predictor.Forward(zeros(1, 16, 16))).Message);
            Assert.Contains("not [2, 3, 16, 16]", Assert.Throws<ArgumentException>(() => predictor.Forward(zeros(2, 3, 16, 16))).Message);
            Assert.Equal([2L, 4L], predictor.Forward(zeros(2, 1, 16, 16))["quadrant"].shape);
        }
        Assert.Contains("paths[1] is null", Assert.Throws<ArgumentException>(() => predictor.PredictFiles(["a.png", null!])).Message);
        Assert.Contains("paths[0] is empty", Assert.Throws<ArgumentException>(() => predictor.PredictFiles([" "])).Message);
        Assert.Contains("no such file", Assert.Single(predictor.PredictFiles([Path.Combine(_dir, "missing.png")])).Error);
        predictor.Dispose();
        Assert.Throws<ObjectDisposedException>(() => predictor.Forward(zeros(2, 1, 16, 16)));
        Assert.Throws<ObjectDisposedException>(() => predictor.PredictFiles([Path.Combine(_dir, "missing.png")]));
    }

    [Fact]
    public void A_model_called_on_images_it_cannot_read_names_the_shape_it_reads()
    {
        using var scope = NewDisposeScope();
        foreach (var model in new[] { Run(new InterroGateConfig { LambdaS = 1 }).Model, Run(new HardSharingConfig()).Model, Run(new SingleTaskConfig(), ["quadrant"]).Model })
        {
            var channels = Assert.Throws<ArgumentException>(() => model.call(zeros(2, 3, 16, 16)));
            Assert.Contains($"The {model.Architecture} model reads 1-channel images [B, 1, H, W], not [2, 3, 16, 16]", channels.Message);
            Assert.Contains("not [1, 16, 16]", Assert.Throws<ArgumentException>(() => model.call(zeros(1, 16, 16))).Message);
            Assert.Contains("reads 1-channel images [B, 1, H, W], not [1, 3, 16, 16]",
                Assert.Throws<ArgumentException>(() => InterroGate.Analysis.CostCounter.Count(model, x => model.call(x), [1, 3, 16, 16])).Message);
            Assert.Equal([2L, 4L], model.call(zeros(2, 1, 16, 16))["quadrant"].shape);
        }
    }

    [Fact]
    public void A_batch_larger_than_the_training_split_is_refused_before_the_folder_records_the_run()
    {
        var run = Run(new HardSharingConfig());
        var config = run.Config with { Training = run.Config.Training with { BatchSize = 100_000 } };
        string dir = Path.Combine(_dir, "big-batch");
        var e = Assert.Throws<ConfigException>(() => new Trainer(config, run.Model, run.Data, dir).Run());
        Assert.Equal("training.batchSize", e.Key);
        Assert.Contains($"100000 is more than the {run.Data.Train.Count} samples of the training split", e.Message);
        Assert.False(File.Exists(Path.Combine(dir, "config.json")));
        // Over a run the folder holds (--overwrite): refused before that run is cleared.
        var done = new Trainer(run.Config, run.Model, run.Data, dir).Run();
        Assert.Throws<ConfigException>(() => new Trainer(config, run.Model, run.Data, dir) { Overwrite = true }.Run());
        Assert.True(File.Exists(done.LastCheckpoint));
    }

    [Fact]
    public void Resuming_a_finished_run_or_a_missing_checkpoint_says_so()
    {
        var run = Run(new HardSharingConfig());
        string dir = Path.Combine(_dir, "run");
        var trainer = new Trainer(run.Config, run.Model, run.Data, dir);
        trainer.Run();
        var messages = new RunMessages();
        var again = new Trainer(run.Config, run.Model, run.Data, dir, messages).Run(resumeFrom: trainer.LastPath);
        Assert.Contains($"{trainer.LastPath} has finished its 1 epoch: nothing left to train", Assert.Single(messages.Lines));
        Assert.Equal(0, again.ImagesPerSecond);
        Assert.Equal((trainer.BestPath, trainer.LastPath), (again.BestCheckpoint, again.LastCheckpoint));
        // Resumed into another folder, a finished run writes nothing there: its checkpoints are the ones it came from.
        string elsewhere = Path.Combine(_dir, "elsewhere");
        var moved = new Trainer(run.Config, run.Model, run.Data, elsewhere).Run(resumeFrom: trainer.LastPath);
        Assert.Equal((Path.GetFullPath(trainer.BestPath), trainer.LastPath), (moved.BestCheckpoint, moved.LastCheckpoint));
        Assert.False(File.Exists(Path.Combine(elsewhere, Trainer.LastFileName)));
        File.WriteAllText(Path.Combine(elsewhere, Trainer.LastFileName), "another run's"); // a folder holding another run's files
        var over = new Trainer(run.Config, run.Model, run.Data, elsewhere).Run(resumeFrom: trainer.LastPath);
        Assert.Equal(trainer.LastPath, over.LastCheckpoint);
        // A kill between a save's two renames leaves only last.prev.ckpt: resuming last.ckpt falls back to it.
        File.Move(trainer.LastPath, Checkpoint.PreviousPath(trainer.LastPath), overwrite: true);
        var fallback = new RunMessages();
        new Trainer(run.Config, run.Model, run.Data, dir, fallback).Run(resumeFrom: trainer.LastPath);
        Assert.Contains($"{trainer.LastPath} is missing; resuming from the previous checkpoint {Checkpoint.PreviousPath(trainer.LastPath)} instead", fallback.Lines);
        string missing = Path.Combine(_dir, "none", Trainer.LastFileName);
        Assert.Contains($"checkpoint {missing}: no such file; a run's folder holds the last.ckpt to resume from.",
            Assert.Throws<CheckpointException>(() => new Trainer(run.Config, run.Model, run.Data, Path.Combine(_dir, "other")).Run(resumeFrom: missing)).Message);
        Assert.Contains("is a folder; resume from its last.ckpt",
            Assert.Throws<CheckpointException>(() => new Trainer(run.Config, run.Model, run.Data, Path.Combine(_dir, "other")).Run(resumeFrom: dir)).Message);
    }

    [Fact]
    public void Files_are_written_only_where_they_can_be_and_a_checkpoint_and_a_static_model_are_told_apart()
    {
        var run = Run(new InterroGateConfig { LambdaS = 1 });
        new Trainer(run.Config, run.Model, run.Data, _dir).Run();
        using var graph = Pruner.Prune((InterroGateModel)run.Model, run.Data.Train.Input).Graph;

        string missing = Path.Combine(_dir, "no-such-folder", "m.safetensors");
        var e = Assert.Throws<DirectoryNotFoundException>(() => StaticModelFile.Save(missing, graph));
        Assert.Contains($"{Path.Combine(_dir, "no-such-folder")} does not exist", e.Message);
        string folder = Directory.CreateDirectory(Path.Combine(_dir, "a-folder")).FullName;
        Assert.Contains("is a folder", Assert.Throws<IOException>(() => StaticModelFile.Save(folder, graph)).Message);
        Assert.Contains("is a folder", Assert.Throws<IOException>(() => OnnxExporter.Export(graph, folder)).Message);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp")); // nothing left beside the folder

        string model = Path.Combine(_dir, "m.safetensors");
        StaticModelFile.Save(model, graph);
        string checkpoint = Path.Combine(_dir, Trainer.LastFileName);
        Assert.Contains("is a training checkpoint, not a static model", Assert.Throws<SafeTensorsException>(() => Predictor.Load(checkpoint)).Message);
        Assert.Contains("is a safetensors file, not a training checkpoint", Assert.Throws<CheckpointException>(() => Checkpoint.ReadMeta(model)).Message);
        string onnx = Path.Combine(_dir, "m.onnx");
        OnnxExporter.Export(graph, onnx);
        Assert.Contains("is an ONNX model, which ONNX Runtime runs", Assert.Throws<CheckpointException>(() => Checkpoint.ReadMeta(onnx)).Message);
        using var loaded = Predictor.Load(model); // each as what it is
        Assert.Equal(run.Model.Tasks.Names, loaded.Tasks.Names);
    }

    [Fact]
    public void Smaller_entry_points_name_what_is_wrong()
    {
        // A checkpoint loaded into a model of another architecture names both.
        var ig = Run(new InterroGateConfig { LambdaS = 1 });
        new Trainer(ig.Config, ig.Model, ig.Data, _dir).Run();
        var mtl = Run(new HardSharingConfig());
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(Path.Combine(_dir, Trainer.LastFileName), mtl.Model));
        Assert.Contains("holds a model of architecture interrogate and the model to load into is mtl", e.Message);
        // Loaded for images of another channel count: the first tensor that differs is named, with the model's shape.
        e = Assert.Throws<CheckpointException>(() => PreparedRun.Load(Path.Combine(_dir, Trainer.LastFileName), (3, 16, 16), ig.Tasks));
        Assert.Matches(@"its weights do not fit this interrogate model: '[^']+' \(Float32 \[\d+, 3, 3, 3\] in the model\) does not match the stored tensor", e.Message);
        // Data sets opened directly are checked as a configuration is.
        Assert.Equal("data.trainSize", Assert.Throws<ConfigException>(() => DataCatalog.Open(new DataConfig { Dataset = "synthetic", TrainSize = -5 })).Key);
        Assert.Throws<ArgumentOutOfRangeException>(() => InterroGate.Data.Synthetic.Make("x", -1, 0));
        Assert.Contains("at least one metric", Assert.Throws<ArgumentException>(() => InterroGate.Analysis.MeanRank.Compute([[], []], [])).Message);
        Assert.Contains("does not exist", Assert.Throws<DirectoryNotFoundException>(() => InterroGate.Analysis.HtmlReport.Write(Path.Combine(_dir, "nowhere"))).Message);
        Assert.Contains("not 1×0×0", Assert.Throws<ArgumentException>(() => InterroGate.Analysis.DeployedCost.OfModel(mtl.Model, (1, 0, 0))).Message);
        var cost = Assert.Throws<ConfigException>(() => InterroGate.Analysis.DeployedCost.Of("nonsense", null, 3, "resnet18", 3)).Message;
        Assert.Contains("'nonsense' is none of what cost counts: an architecture (", cost);
        Assert.Contains("a backbone (", cost);
        Assert.Contains("resnet18", cost);
    }

    [Theory]
    [InlineData("data")]
    [InlineData("training")]
    [InlineData("architecture")]
    [InlineData("balancer")]
    public void A_configuration_section_set_to_null_is_named(string key)
    {
        var config = TrainerTests.Config(new HardSharingConfig());
        config = key switch
        {
            "data" => config with { Data = null! },
            "training" => config with { Training = null! },
            "architecture" => config with { Architecture = null! },
            _ => config with { Balancer = null! },
        };
        var e = Assert.Throws<ConfigException>(() => config.Validate(3));
        Assert.Equal(key, e.Key);
        Assert.Contains("is null", e.Message);
        // From JSON too.
        Assert.Equal(key, Assert.Throws<ConfigException>(() => ConfigJson.Deserialize<RunConfig>($$"""{ "name": "x", "{{key}}": null }""").Validate(3)).Key);
    }
}
