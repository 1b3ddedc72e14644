using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Objectives;
using InterroGate.Tests.Data;
using InterroGate.Training;
using static TorchSharp.torch;

namespace InterroGate.Tests.Configuration;

/// <summary>The paper's dense presets run on data in the on-disk formats once data.root points at it.</summary>
public sealed class DensePresetTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-dense-preset-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("nyudv2-resnet50")]
    [InlineData("nyudv2-hrnet18")]
    public void The_NYUD_presets_read_the_NYUD_MT_layout_and_predict_every_task_at_label_resolution(string name)
    {
        string root = NyudV2Tests.MultiTaskFolder(_dir, ["a", "b"], ["c"]);
        var preset = Presets.LoadComparison(name, [$"data.root={root}"]);
        var run = PreparedRun.Create(preset.Run(new InterroGate.Architectures.HardSharingConfig()));
        using var model = run.Model; // ResNet-50 with three 256-channel ASPP heads: 72 M parameters, freed at once
        Assert.Equal(["semseg", "depth", "normals"], run.Tasks.Names);
        Assert.Equal(2, run.Data.Train.Count);
        var batch = run.Data.Validation.GetBatch([0]);
        run.Model.eval();
        using var _ = no_grad();
        var outputs = run.Model.call(batch[IMultiTaskDataset.ImageKey]);
        Assert.Equal(new long[] { 1, 40, 4, 6 }, outputs["semseg"].shape);
        Assert.Equal(new long[] { 1, 1, 4, 6 }, outputs["depth"].shape);
        Assert.Equal(new long[] { 1, 3, 4, 6 }, outputs["normals"].shape);
        var losses = new MultiTaskObjective(run.Tasks).Losses(outputs, batch);
        Assert.All(losses, l => Assert.True(float.IsFinite(l.item<float>())));
    }

    [Fact]
    public void A_paper_preset_without_data_root_names_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => PreparedRun.Create(Presets.LoadComparison("pascal-context-resnet18", []).Run(new InterroGate.Architectures.HardSharingConfig())));
        Assert.Equal("data.root", e.Key);
    }

    [Fact]
    public void Data_skipMissing_leaves_out_listed_ids_without_files_and_counts_them()
    {
        string root = NyudV2Tests.MultiTaskFolder(_dir, ["a", "b"], ["c"]);
        File.AppendAllLines(Path.Combine(root, "gt_sets", "train.txt"), ["ghost"]);
        var data = new DataConfig { Dataset = "nyudv2", Root = root };
        var e = Assert.Throws<DataFormatException>(() => DataCatalog.Open(data));
        Assert.Contains("ghost", e.Message);
        var splits = DataCatalog.Open(data with { SkipMissing = true });
        // Keys only some data sets read are refused elsewhere, not ignored.
        var multifashion = new DataConfig { Dataset = "multifashion" };
        Assert.Equal("data.skipMissing", Assert.Throws<ConfigException>(() => (multifashion with { SkipMissing = true }).Validate("data")).Key);
        Assert.Equal("data.imageSize", Assert.Throws<ConfigException>(() => (multifashion with { ImageSize = 64 }).Validate("data")).Key);
        Assert.Equal("data.cache", Assert.Throws<ConfigException>(() => (multifashion with { Cache = "/tmp/x" }).Validate("data")).Key);
        (data with { SkipMissing = true }).Validate("data"); // where it is read, accepted
        Assert.Equal(2, splits.Train.Count);
        Assert.Equal(new Dictionary<string, int> { ["train"] = 1 }, DataCatalog.Skipped(splits));
        Assert.Empty(DataCatalog.Skipped(DataCatalog.Open(data with { Root = NyudV2Tests.MultiTaskFolder(Path.Combine(_dir, "clean"), ["a"], ["c"]) })));
    }

    [Fact]
    public void Depth_pixels_that_were_not_finite_are_reported_per_split_once_read()
    {
        string root = NyudV2Tests.MultiTaskFolder(_dir, ["a", "b"], ["c"]);
        var values = Enumerable.Repeat(1.5f, 4 * 6).ToArray();
        values[3] = float.NaN;
        values[9] = float.NegativeInfinity;
        Npy.Write(Path.Combine(root, "depth", "b.npy"), [4, 6], values);
        values[3] = 2f;
        Npy.Write(Path.Combine(root, "depth", "c.npy"), [4, 6], values);
        using var splits = DataCatalog.Open(new DataConfig { Dataset = "nyudv2", Root = root });
        Assert.Empty(DataCatalog.NonFiniteDepth(splits)); // nothing read yet
        splits.Train.GetBatch([0, 1]);
        Assert.Equal(new Dictionary<string, long> { ["nyudv2/train"] = 2 }, DataCatalog.NonFiniteDepth(splits));
        splits.Test.GetBatch([0]);
        Assert.Equal(new Dictionary<string, long> { ["nyudv2/train"] = 2, ["nyudv2/val"] = 1 }, DataCatalog.NonFiniteDepth(splits));
        Assert.Equal("2 depth pixels of nyudv2/train were NaN or infinite in their files and were read as unknown (0): no loss or metric counts them",
            DataCatalog.NonFiniteDepthMessage("nyudv2/train", 2));
    }
}
