using System.Text.Json;
using InterroGate.Architectures;
using InterroGate.Balancing;
using InterroGate.Configuration;
using InterroGate.Training;

namespace InterroGate.Tests.Training;

[Collection("Torch")]
public sealed class ComparisonTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"ig-compare-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>A one-epoch comparison on synthetic data, ResNet-20 ×¼, one λs; validation and test half the training size.</summary>
    private static CompareConfig Small(int train) => new()
    {
        Name = "t",
        Data = new DataConfig { Dataset = "synthetic", TrainSize = train, ValidationSize = train / 2, TestSize = train / 2 },
        Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
        Training = new TrainingConfig { Epochs = 1, BatchSize = 32, EvalBatchSize = 64 },
        LambdaS = [1],
    };

    [Fact]
    public void Compare_trains_every_listed_method_and_writes_one_row_each()
    {
        var config = Small(train: 128) with
        {
            Methods = [new PCGradBalancerConfig(), new DwaBalancerConfig()],
            Architectures = [new MtanConfig(), new CrossStitchConfig()],
        };
        var result = new ComparisonRunner(config, _dir).Run();

        var labels = result.Table.Rows.Select(r => r.Label).ToArray();
        Assert.Equal(["STL", "MTL", "MTL + pcgrad", "MTL + dwa", "MTAN", "Cross-stitch", "InterroGate (λs=1)"], labels);
        Assert.True(Directory.Exists(Path.Combine(_dir, "mtl-pcgrad")) && Directory.Exists(Path.Combine(_dir, "mtl-dwa")));
        var stored = ConfigJson.Deserialize<RunConfig>(File.ReadAllText(Path.Combine(_dir, "mtl-pcgrad", "config.json")));
        Assert.IsType<PCGradBalancerConfig>(stored.Balancer);
        var rows = JsonDocument.Parse(File.ReadAllText(result.JsonPath)).RootElement.GetProperty("rows").EnumerateArray().ToArray();
        Assert.Equal(labels, rows.Select(r => r.GetProperty("label").GetString()));
        Assert.All(rows, r => Assert.True(r.GetProperty("extra").GetProperty("ms/step").GetDouble() > 0));
        Assert.Contains("MTL + dwa", File.ReadAllText(result.MarkdownPath));
    }

    [Fact]
    public void A_run_whose_stored_configuration_no_longer_reads_is_refused_not_trained_over()
    {
        // A finished MTL run written by a version with a key this one does not know.
        string mtl = Path.Combine(_dir, "mtl");
        Directory.CreateDirectory(mtl);
        string last = Path.Combine(mtl, Trainer.LastFileName);
        using (var model = TorchSharp.torch.nn.Linear(2, 2))
            Checkpoint.Save(last, new CheckpointMeta { Architecture = "mtl", Backbone = "resnet20", Tasks = ["a", "b"], Config = """{ "futureKey": 1 }""", Epoch = 1 }, model, []);
        var before = File.ReadAllBytes(last);
        var config = Small(train: 64);
        var e = Assert.Throws<RunFolderException>(() => new ComparisonRunner(config, _dir).Run());
        Assert.Contains("futureKey", e.Message);
        Assert.Contains("another -o", e.Message);
        Assert.Equal(before, File.ReadAllBytes(last)); // the run's checkpoint is untouched
    }

    [Fact]
    public void A_method_listed_twice_or_out_of_range_is_named()
    {
        var arch = new CompareConfig { Architectures = [new HardSharingConfig()] };
        Assert.Contains("architectures[0].type", Assert.Throws<ConfigException>(() => arch.Validate(2)).Message);
        var twice = new CompareConfig { Methods = [new PCGradBalancerConfig(), new PCGradBalancerConfig()] };
        Assert.Contains("methods", Assert.Throws<ConfigException>(() => twice.Validate(2)).Message);
        var bad = new CompareConfig { Methods = [new CAGradBalancerConfig { C = -1 }] };
        Assert.Contains("methods[0].c", Assert.Throws<ConfigException>(() => bad.Validate(2)).Message);
    }

    [Fact]
    public void A_plotting_library_that_cannot_load_is_told_apart_from_other_faults()
    {
        // What a build without libSkiaSharp.so throws when the first figure is drawn: the tables are kept then.
        var missing = new TypeInitializationException("SkiaSharp.SKImageInfo", new DllNotFoundException("Unable to load shared library 'libSkiaSharp' or one of its dependencies. In order to help diagnose: \n/x/libSkiaSharp.so: cannot open"));
        Assert.Equal("Unable to load shared library 'libSkiaSharp' or one of its dependencies. In order to help diagnose", ComparisonRunner.MissingPlotLibrary(missing));
        Assert.Null(ComparisonRunner.MissingPlotLibrary(new TypeInitializationException("X", new InvalidOperationException("bad data"))));
        Assert.Null(ComparisonRunner.MissingPlotLibrary(new IOException("disk full")));
    }
}
