using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Training;
using static TorchSharp.torch;

namespace InterroGate.Tests.Export;

[Collection("Torch")]
public sealed class StateDictExportTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-statedict-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_checkpoint_exports_its_state_dict_under_pytorch_names_with_the_run_as_metadata()
    {
        var config = new RunConfig
        {
            Name = "sd",
            Data = new DataConfig { Dataset = "synthetic", TrainSize = 64, ValidationSize = 32, TestSize = 32 },
            Tasks = ["quadrant", "bar"],
            Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
            Architecture = new InterroGateConfig { LambdaS = 1 },
            Training = new TrainingConfig { Epochs = 1, BatchSize = 32 },
        };
        var run = PreparedRun.Create(config);
        new Trainer(run.Config, run.Model, run.Data, _dir).Run();
        string ckpt = Path.Combine(_dir, Trainer.LastFileName), file = Path.Combine(_dir, "m.state.safetensors");
        var (trained, input, meta) = ModelFiles.LoadCheckpoint(ckpt);
        StateDictExport.Save(file, trained, meta, input);

        var (tensors, metadata) = SafeTensors.Load(file);
        var state = trained.state_dict();
        Assert.Equal(state.Keys.Order(), tensors.Keys.Order());
        foreach (var (name, t) in state) Assert.True(t.equal(tensors[name]).all().item<bool>(), name);
        // The names PyTorch code uses (bench/reference/interrogate_torch.py): torchvision's inside each branch, fc heads, gates.
        foreach (var name in new[] { "encoder.task_branches.quadrant.conv1.weight", "encoder.shared.layer3.2.bn2.running_var", "encoder.gates.0.alpha", "encoder.gates.0.beta", "heads.bar.fc.weight" })
            Assert.Contains(name, tensors.Keys);
        Assert.Equal(StateDictExport.Format, metadata["format"]);
        Assert.Equal("interrogate", metadata["architecture"]);
        Assert.Contains("\"name\":\"quadrant\"", metadata["tasks"]);
        Assert.Equal(1.0, ((InterroGateConfig)ConfigJson.Deserialize<RunConfig>(metadata["config"]).Architecture).LambdaS);

        // A fresh model of the same configuration loads it strictly and computes the same.
        using var fresh = Factory.CreateModel(config, trained.Tasks, (input.Channels, input.Height, input.Width));
        SafeTensors.LoadInto(fresh, file, strict: true);
        fresh.eval();
        var x = randn(2, input.Channels, input.Height, input.Width);
        using (no_grad())
        {
            var a = trained.call(x);
            var b = fresh.call(x);
            foreach (var task in trained.Tasks) Assert.True(a[task.Name].allclose(b[task.Name]), task.Name);
        }

        // The command: a checkpoint exports; a static model, or the exported weights themselves, are refused with the reason.
        Assert.Equal(0, InterroGate.Cli.Program.Main(["export", ckpt, "--format", "state-dict", "-o", Path.Combine(_dir, "cli.safetensors")]));
        Assert.True(File.Exists(Path.Combine(_dir, "cli.safetensors")));
        string pruned = Path.Combine(_dir, "m.static.safetensors");
        Assert.Equal(0, InterroGate.Cli.Program.Main(["prune", ckpt, "-o", pruned]));
        foreach (var notCheckpoint in new[] { pruned, file })
        {
            var (code, error) = InterroGate.Tests.Cli.CliTests.Run("export", notCheckpoint, "--format", "state-dict");
            Assert.Equal(2, code);
            Assert.Contains(notCheckpoint, error);
            Assert.Contains("not a training checkpoint", error);
            Assert.Contains("give its .ckpt", error);
        }
    }
}
