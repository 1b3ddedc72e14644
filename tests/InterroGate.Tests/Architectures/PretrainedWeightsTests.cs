using System.Collections;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Tasks;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace InterroGate.Tests.Architectures;

[Collection("Torch")]
public sealed class PretrainedWeightsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-pretrained-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly TaskSet Tasks = new([new TaskSpec("a", TaskKind.Classification, 3), new TaskSpec("b", TaskKind.Classification, 4)]);

    /// <summary>A torchvision-named ResNet-20 ×¼ state dict (random weights), with a classifier the backbones lack.</summary>
    private static Dictionary<string, Tensor> Source(string prefix, long inChannels = 3)
    {
        using var net = new ResNet(ResNetSpec.ResNet20(0.25), inChannels);
        var state = net.state_dict().ToDictionary(kv => prefix + kv.Key,
            kv => kv.Value.is_floating_point() ? kv.Value.detach().clone().uniform_(-1, 1) : kv.Value.detach().clone().add_(3));
        state[prefix + "fc.weight"] = randn(10, 16);
        state[prefix + "fc.bias"] = randn(10);
        return state;
    }

    private static MultiTaskModel Model(ArchitectureConfig architecture, long inChannels = 3) =>
        Factory.CreateModel(new RunConfig { Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 }, Architecture = architecture }, Tasks, ((int)inChannels, 16, 16));

    [Fact]
    public void A_pth_state_dict_loads_into_every_backbone_of_every_architecture_with_its_prefix_removed()
    {
        var source = Source("module.");
        string pth = Path.Combine(_dir, "weights.pth");
        PyTorchPickler.PickleStateDict(pth, new Hashtable(source));
        foreach (var (architecture, backbones) in new (ArchitectureConfig, string[])[]
        {
            (new SingleTaskConfig(), ["encoders.a", "encoders.b"]),
            (new HardSharingConfig(), ["encoder"]),
            (new InterroGateConfig(), ["encoder.shared", "encoder.task_branches.a", "encoder.task_branches.b"]),
            (new MtanConfig(), ["encoder"]),
            (new CrossStitchConfig(), ["encoders.a", "encoders.b"]),
        })
        {
            using var model = Model(architecture);
            var report = PretrainedWeights.Apply(model, pth);
            Assert.Equal(backbones, report.Backbones);
            Assert.Equal("module.", report.StrippedPrefix);
            Assert.Empty(report.Missing);
            Assert.Empty(report.Mismatched);
            Assert.Equal(["module.fc.bias", "module.fc.weight"], report.Unexpected);
            Assert.Equal(report.Targets, report.Loaded);
            var state = model.state_dict();
            foreach (var b in backbones)
                Assert.True(state[$"{b}.layer2.0.conv1.weight"].equal(source["module.layer2.0.conv1.weight"]).all().item<bool>(), $"{architecture.Type}: {b}");
        }
    }

    [Fact]
    public void Safetensors_nested_checkpoints_wrong_shapes_and_foreign_files_are_handled_and_named()
    {
        // safetensors with a two-part prefix; the model reads 1-channel images, so the stem's weights do not fit.
        string st = Path.Combine(_dir, "w.safetensors");
        Safetensors.SaveStateDict(st, Source("model.backbone."));
        using var gray = Model(new HardSharingConfig(), inChannels: 1);
        var before = gray.state_dict()["encoder.conv1.weight"].clone();
        var report = PretrainedWeights.Apply(gray, st);
        Assert.Equal("model.backbone.", report.StrippedPrefix);
        Assert.Equal(["conv1.weight [4,3,3,3] for [4,1,3,3]"], report.Mismatched);
        Assert.Equal(report.Targets - 1, report.Loaded);
        Assert.True(gray.state_dict()["encoder.conv1.weight"].equal(before).all().item<bool>()); // left as it was
        Assert.Contains("wrong shape (not loaded): conv1.weight", report.ToString());

        // A training checkpoint that nests the state dict; one tensor dropped from it is listed as missing.
        var nested = Source("");
        nested.Remove("layer3.2.bn2.running_var");
        string ckpt = Path.Combine(_dir, "ckpt.pt");
        PyTorchPickler.PickleStateDict(ckpt, new Hashtable { ["state_dict"] = new Hashtable(nested), ["epoch"] = 7L });
        using var mtl = Model(new HardSharingConfig());
        Assert.Equal(["layer3.2.bn2.running_var"], PretrainedWeights.Apply(mtl, ckpt).Missing);

        string foreign = Path.Combine(_dir, "other.safetensors");
        Safetensors.SaveStateDict(foreign, new Dictionary<string, Tensor> { ["transformer.wte.weight"] = zeros(4, 4) });
        var e = Assert.Throws<InterroGate.Data.DataFormatException>(() => PretrainedWeights.Apply(mtl, foreign));
        Assert.Contains("none of its 1 tensors fits", e.Message);
        string junk = Path.Combine(_dir, "junk.pth");
        File.WriteAllText(junk, "not a pickle");
        Assert.Equal(junk, Assert.Throws<InterroGate.Data.DataFormatException>(() => PretrainedWeights.Read(junk)).Path);
        Assert.Contains("extension '.npz'", Assert.Throws<InterroGate.Data.DataFormatException>(() =>
        {
            File.WriteAllText(Path.Combine(_dir, "w.npz"), "");
            return PretrainedWeights.Read(Path.Combine(_dir, "w.npz"));
        }).Message);
    }

    [Fact]
    public void The_prefix_is_the_one_under_which_most_names_are_found()
    {
        string[] names = ["conv1.weight", "layer1.0.conv1.weight"];
        Assert.Equal("", PretrainedWeights.BestPrefix(["conv1.weight", "layer1.0.conv1.weight", "fc.weight"], names));
        Assert.Equal("module.", PretrainedWeights.BestPrefix(["module.conv1.weight", "module.layer1.0.conv1.weight"], names));
        Assert.Equal("a.b.", PretrainedWeights.BestPrefix(["a.b.conv1.weight", "a.b.layer1.0.conv1.weight", "a.conv1.weight"], names));
    }

    [Fact]
    public void Runs_and_comparisons_take_pretrained_weights_and_check_the_file()
    {
        string st = Path.Combine(_dir, "w.safetensors");
        Safetensors.SaveStateDict(st, Source(""));
        var run = new RunConfig
        {
            Data = new DataConfig { Dataset = "synthetic", TrainSize = 32, ValidationSize = 16, TestSize = 16 },
            Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
            Architecture = new MtanConfig(),
            StartFrom = new StartFrom { Pretrained = st },
        };
        var prepared = InterroGate.Training.PreparedRun.Create(run);
        var loaded = prepared.Pretrained!;
        Assert.Empty(loaded.Missing);
        // The synthetic images have one channel: the 3-channel stem is the one tensor that does not fit, all others load.
        Assert.Equal(["conv1.weight [4,3,3,3] for [4,1,3,3]"], loaded.Mismatched);
        Assert.Equal(loaded.Targets - 1, loaded.Loaded);
        Assert.Equal("startFrom.pretrained", Assert.Throws<ConfigException>(() => (run with { StartFrom = new StartFrom { Pretrained = st + ".missing" } }).Validate(2)).Key);
        var compare = new CompareConfig { Pretrained = st };
        Assert.Equal(st, compare.Run(new HardSharingConfig()).StartFrom!.Pretrained);
        Assert.Equal("startFrom.pretrained", Assert.Throws<ConfigException>(() => (compare with { Pretrained = "/nope.pth" }).Validate(2)).Key);
    }

    [Fact]
    public void A_comparison_with_pretrained_weights_starts_InterroGate_s_shared_branch_from_them_and_its_task_branches_from_STL()
    {
        // The baselines move far from the pretrained weights (lr 1e-2); InterroGate barely moves (lr 1e-12), so its
        // checkpoint shows where each branch started.
        string st = Path.Combine(_dir, "w.safetensors");
        var source = Source("", inChannels: 1);
        Safetensors.SaveStateDict(st, source);
        string dir = Path.Combine(_dir, "cmp");
        var training = new TrainingConfig { Epochs = 1, BatchSize = 16, EvalBatchSize = 16, Lr = 1e-2 };
        var config = new CompareConfig
        {
            Name = "pretrained",
            Data = new DataConfig { Dataset = "synthetic", TrainSize = 48, ValidationSize = 16, TestSize = 16 },
            Tasks = ["quadrant", "bar"],
            Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
            Training = training,
            InterroGateTraining = training with { Lr = 1e-12 },
            LambdaS = [1],
            Pretrained = st,
        };
        new InterroGate.Training.ComparisonRunner(config, dir).Run();
        var data = DataCatalog.Open(config.Data);
        Tensor Weight(string run, string key)
        {
            var (_, model, _) = InterroGate.Training.PreparedRun.Load(Path.Combine(dir, run, "last.ckpt"), data.Train.ImageShape, data.Train.Tasks);
            return model.state_dict()[key].detach().clone();
        }
        const string conv = "layer2.0.conv1.weight";
        var pretrained = source[conv];
        var shared = Weight("interrogate-ls1", "encoder.shared." + conv);
        var mtl = Weight("mtl", "encoder." + conv);
        Assert.True((mtl - pretrained).abs().max().item<float>() > 1e-3, "MTL trained away from the pretrained weights");
        Assert.True((shared - pretrained).abs().max().item<float>() < 1e-6, "the shared branch starts from the pretrained weights");
        var ownBar = Weight("interrogate-ls1", "encoder.task_branches.bar." + conv);
        Assert.True((ownBar - Weight("stl-bar", "encoders.bar." + conv)).abs().max().item<float>() < 1e-6, "task branches start from STL");
    }
}
