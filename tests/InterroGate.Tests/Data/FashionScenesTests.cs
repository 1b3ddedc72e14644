using InterroGate.Data;
using static TorchSharp.torch;

namespace InterroGate.Tests.Data;

[Collection("Torch")]
public sealed class FashionScenesTests : IDisposable
{
    private const int H = 40, W = 48;
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-scenes-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// A fake Fashion-MNIST: every image is a rectangle (rows 4..23, columns 6..21) on black, 100 on its left half
    /// and 250 on its right half; image i has label i % 10.
    /// </summary>
    private string FakeFashionMnist(int train = 60, int test = 12)
    {
        var item = new byte[784];
        for (int y = 4; y < 24; y++)
            for (int x = 6; x < 22; x++) item[y * 28 + x] = x < 14 ? (byte)100 : (byte)250;
        foreach (var (prefix, n) in new[] { ("train", train), ("t10k", test) })
        {
            IdxReader.Write(Path.Combine(_dir, $"{prefix}-images-idx3-ubyte"), [n, 28, 28], Enumerable.Repeat(item, n).SelectMany(b => b).ToArray());
            IdxReader.Write(Path.Combine(_dir, $"{prefix}-labels-idx1-ubyte.gz"), [n], Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray());
        }
        return _dir;
    }

    private DatasetSplits Splits(Func<FashionScenesOptions, FashionScenesOptions>? change = null)
    {
        var options = new FashionScenesOptions(Root: FakeFashionMnist(), Height: H, Width: W, TrainSize: 30, ValidationSize: 20, TestSize: 20, Seed: 4);
        return FashionScenes.Load(change is null ? options : change(options));
    }

    private static IEnumerable<Scene> Scenes(IMultiTaskDataset d) => Enumerable.Range(0, d.Count).Select(((FashionScenes)d).Generate);

    private static void Layout(Tensor t, ScalarType dtype, params long[] shape)
    {
        Assert.Equal(dtype, t.dtype);
        Assert.Equal(shape, t.shape);
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.equal(b).all().item<bool>();

    [Fact]
    public void The_same_seed_gives_identical_tensors_and_another_index_another_scene()
    {
        var a = (FashionScenes)Splits().Train;
        var b = (FashionScenes)Splits().Train;
        var sa = a.Sample(3);
        var sb = b.Sample(3);
        Assert.True(Same(sa.Image, sb.Image));
        foreach (var name in FashionScenes.AllTasks.Names) Assert.True(Same(sa.Targets[name], sb.Targets[name]), name);
        Assert.False(Same(sa.Image, a.Sample(4).Image));
        Assert.False(Same(sa.Image, ((FashionScenes)Splits(o => o with { Seed = 5 }).Train).Sample(3).Image));
        Assert.False(Same(sa.Image, ((FashionScenes)Splits().Validation).Sample(3).Image));
    }

    [Fact]
    public void Samples_and_batches_have_the_layout_of_each_task_kind()
    {
        var train = (FashionScenes)Splits().Train;
        var s = train.Sample(0);
        Assert.Equal(ScalarType.Byte, s.Image.dtype);
        Assert.Equal(new long[] { 3, H, W }, s.Image.shape);
        Layout(s.Targets["semseg"], ScalarType.Int64, H, W);
        Layout(s.Targets["depth"], ScalarType.Float32, 1, H, W);
        Layout(s.Targets["normals"], ScalarType.Float32, 3, H, W);
        Layout(s.Targets["edge"], ScalarType.Float32, 1, H, W);
        Layout(s.Targets["sal"], ScalarType.Float32, 1, H, W);

        var batch = train.GetBatch([0, 1, 2]);
        Assert.Equal(new long[] { 3, 3, H, W }, batch[IMultiTaskDataset.ImageKey].shape);
        Assert.Equal(ScalarType.Float32, batch[IMultiTaskDataset.ImageKey].dtype);
        Assert.Equal(new long[] { 3, H, W }, batch["semseg"].shape);
        Assert.Equal(new long[] { 3, 3, H, W }, batch["normals"].shape);
        Assert.Equal((3, H, W), train.ImageShape);

        var nyud = Splits(o => o with { Tasks = FashionScenes.NyudTasks }).Test;
        Assert.Equal(["semseg", "depth", "normals"], nyud.Tasks.Names);
        Assert.Equal(["depth", "image", "normals", "semseg"], nyud.GetBatch([0]).Keys.Order());
        Assert.Equal(["semseg", "normals", "sal", "edge"], Splits(o => o with { Tasks = FashionScenes.PascalTasks }).Train.Tasks.Names);
    }

    [Fact]
    public void The_front_most_item_labels_each_pixel_and_is_nearer_than_everything_behind_it()
    {
        int overlaps = 0;
        foreach (var s in Scenes(Splits().Train))
        {
            Assert.InRange(s.Items.Count, 2, 4);
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                {
                    int i = y * W + x;
                    var covering = Enumerable.Range(0, s.Items.Count).Where(k => s.Items[k].Mask[i]).ToArray();
                    Assert.InRange(s.Semseg[i], 0, 10);
                    if (covering.Length == 0)
                    {
                        Assert.Equal(0, s.Semseg[i]);
                        Assert.Equal(s.Floor[i], s.Depth[i]);
                        continue;
                    }
                    int front = covering.Max();
                    overlaps += covering.Length > 1 ? 1 : 0;
                    Assert.Equal(1 + s.Items[front].Label, s.Semseg[i]);
                    Assert.Equal(front, s.Segment[i]);
                    Assert.True(s.Depth[i] < s.Floor[i]);
                    foreach (int k in covering.Where(k => k != front)) Assert.True(s.Depth[i] < s.Items[k].Depth[i]);
                    var item = s.Items[front];
                    Assert.InRange(s.Depth[i], item.BaseDepth * (1 - FashionScenes.Relief) - 1e-5, item.BaseDepth);
                }
            for (int y = 1; y < H; y++)
                for (int x = 0; x < W; x++) Assert.True(s.Floor[(y - 1) * W + x] > s.Floor[y * W + x]);   // the floor recedes upwards
        }
        Assert.True(overlaps > 0);
    }

    [Fact]
    public void Brighter_item_pixels_are_nearer()
    {
        // The fake item is 100 on its left half and 250 on its right half. Around source column 10 (left) and 18
        // (right) of source row 14, the scaled item keeps those values exactly; the front-most item is never hidden.
        int found = 0;
        foreach (var s in Scenes(Splits().Validation).Concat(Scenes(Splits().Test)))
        {
            var item = s.Items[^1];
            int At(int source) => (int)Math.Round((source + 0.5) * item.Size / 28 - 0.5);
            int y = item.Top + At(14), xDark = item.Left + At(10), xBright = item.Left + At(18);
            if (y < 0 || y >= H || xDark < 0 || xBright >= W) continue;
            found++;
            Assert.Equal(item.BaseDepth * (1 - FashionScenes.Relief * 100 / 255), s.Depth[y * W + xDark], 1e-5);
            Assert.Equal(item.BaseDepth * (1 - FashionScenes.Relief * 250 / 255), s.Depth[y * W + xBright], 1e-5);
        }
        Assert.True(found > 0);
    }

    [Fact]
    public void Normals_are_unit_vectors_and_the_bare_floor_faces_up_and_toward_the_camera()
    {
        foreach (var s in Scenes(Splits().Test).Take(8))
        {
            int n = H * W;
            for (int i = 0; i < n; i++)
            {
                double nx = s.Normals[i], ny = s.Normals[n + i], nz = s.Normals[2 * n + i];
                Assert.Equal(1, Math.Sqrt(nx * nx + ny * ny + nz * nz), 1e-5);
                Assert.True(nz > 0);
                if (s.Segment[i] < 0 && s.Edge[i] == 0)   // floor whose neighbours are floor too
                    Assert.True(ny > 0, "the floor's depth grows upwards, so its normal points up");
            }
        }
    }

    [Fact]
    public void Edges_are_exactly_the_segment_boundaries_and_saliency_is_the_front_most_item()
    {
        foreach (var s in Scenes(Splits().Train))
        {
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                {
                    int i = y * W + x, id = s.Segment[i];
                    bool boundary = (x > 0 && s.Segment[i - 1] != id) || (x < W - 1 && s.Segment[i + 1] != id)
                                    || (y > 0 && s.Segment[i - W] != id) || (y < H - 1 && s.Segment[i + W] != id);
                    Assert.Equal(boundary ? 1 : 0, s.Edge[i]);
                    if (x > 0 && s.Semseg[i - 1] != s.Semseg[i]) Assert.True(s.Edge[i] == 1 && s.Edge[i - 1] == 1);
                }
            var front = s.Items[^1];
            Assert.Equal(front.Mask.Select(m => m ? (byte)1 : (byte)0), s.Saliency);
            Assert.All(s.Items.SkipLast(1), item => Assert.True(item.BaseDepth > front.BaseDepth));
        }
    }

    [Fact]
    public void Train_validation_and_test_scenes_draw_from_disjoint_item_images()
    {
        var splits = Splits();
        var train = (FashionScenes)splits.Train;
        var val = (FashionScenes)splits.Validation;
        var test = (FashionScenes)splits.Test;
        Assert.Equal(10, val.Pool.Count);                       // a sixth of 60 training images
        Assert.Equal(50, train.Pool.Count);
        Assert.Empty(train.Pool.Intersect(val.Pool));
        Assert.Equal(Enumerable.Range(0, 12), test.Pool);
        var trainImages = Scenes(train).SelectMany(s => s.Items).ToArray();
        var valImages = Scenes(val).SelectMany(s => s.Items).ToArray();
        Assert.All(trainImages, i => Assert.Contains(i.Image, train.Pool));
        Assert.All(valImages, i => Assert.Contains(i.Image, val.Pool));
        Assert.All(Scenes(test).SelectMany(s => s.Items), i => Assert.InRange(i.Image, 0, 11));
        Assert.All(trainImages.Concat(valImages), i => Assert.Equal(i.Image % 10, i.Label));
        Assert.Equal(["fashionscenes/train", "fashionscenes/val", "fashionscenes/test"], new[] { train.Name, val.Name, test.Name });
    }

    [Fact]
    public void The_training_transform_applies_to_training_samples_only()
    {
        var splits = Splits(o => o with { TrainTransform = new HorizontalFlip(p: 1) });
        var train = (FashionScenes)splits.Train;
        Assert.True(Same(train.Sample(2).Targets["semseg"].flip(-1), train.GetBatch([2])["semseg"][0]));
        var val = (FashionScenes)splits.Validation;
        Assert.True(Same(val.Sample(2).Targets["semseg"], val.GetBatch([2])["semseg"][0]));

        var augmented = Splits(o => o with { TrainTransform = FashionScenes.Augmentation(H, W) }).Train;
        var first = augmented.GetBatch([0, 1, 2]);
        Assert.Equal(new long[] { 3, 3, H, W }, first[IMultiTaskDataset.ImageKey].shape);
        Assert.InRange(first["semseg"].max().item<long>(), 1, 10);          // scaled up, never padded with the ignore label
        Assert.False(Same(first["depth"], augmented.GetBatch([0, 1, 2])["depth"]));  // each draw of a sample is augmented anew
    }

    [Fact]
    public void An_epoch_s_augmented_batches_do_not_depend_on_what_was_drawn_before()
    {
        // One data set that has served a whole epoch and some draws outside training (as another run, a resumed
        // run's predecessor or a speed measurement would), and a fresh one: epoch 1 gives the same batches.
        var used = Splits(o => o with { TrainTransform = FashionScenes.Augmentation(H, W) }).Train;
        var fresh = Splits(o => o with { TrainTransform = FashionScenes.Augmentation(H, W) }).Train;
        var usedLoader = new DataLoader(used, 8, shuffle: true, seed: 1, dropLast: false);
        foreach (var batch in usedLoader.Epoch(0)) foreach (var t in batch.Values) t.Dispose();
        foreach (var t in used.GetBatch([0, 1, 2, 3]).Values) t.Dispose();
        var a = usedLoader.Epoch(1).First();
        var b = new DataLoader(fresh, 8, shuffle: true, seed: 1, dropLast: false).Epoch(1).First();
        Assert.True(Same(a[IMultiTaskDataset.ImageKey], b[IMultiTaskDataset.ImageKey]));
        Assert.True(Same(a["depth"], b["depth"]));
        // Another epoch draws other augmentations of the same samples.
        var c = new DataLoader(fresh, 8, shuffle: false, seed: 1, dropLast: false);
        Assert.False(Same(c.Epoch(0).First()["depth"], c.Epoch(1).First()["depth"]));
    }

    [Fact]
    public void Bad_options_name_the_option_and_a_missing_folder_says_how_to_install()
    {
        Assert.Throws<DatasetNotFoundException>(() => FashionScenes.Load(new FashionScenesOptions(Root: Path.Combine(_dir, "nowhere"))));
        string Param(FashionScenesOptions o) => Assert.Throws<ArgumentException>(() => FashionScenes.Load(o with { Root = FakeFashionMnist() })).ParamName!;
        Assert.Equal("MinItems", Param(new FashionScenesOptions(MinItems: 5, MaxItems: 3)));
        Assert.Equal("TrainSize", Param(new FashionScenesOptions(TrainSize: 0)));
        Assert.Equal("TestSize", Param(new FashionScenesOptions(TestSize: -1)));
        Assert.Equal("Height", Param(new FashionScenesOptions(Height: 0)));
        Assert.Equal("Tasks", Param(new FashionScenesOptions(Tasks: ["semseg", "nope"])));
        var e = Assert.Throws<ArgumentException>(() => new FashionScenesOptions(MinItems: 5, MaxItems: 3).Validate());
        Assert.Contains("MaxItems (3)", e.Message);
    }

    [Fact]
    public void A_preview_png_has_a_row_per_scene_and_six_panels()
    {
        var train = (FashionScenes)Splits().Train;
        string path = Path.Combine(_dir, "preview.png");
        train.WritePreview(path, [0, 1], zoom: 2);
        var png = InterroGate.Data.Formats.ImageFiles.Read(path);
        Assert.Equal((2 * H * 2 + 2, 6 * W * 2 + 5 * 2, 3), (png.Height, png.Width, png.Channels));
    }

    [Fact]
    public void The_real_Fashion_MNIST_makes_scenes()
    {
        var splits = FashionScenes.Load(new FashionScenesOptions(Root: FashionMnist.PackageRoot, TrainSize: 8, ValidationSize: 4, TestSize: 4));
        var batch = splits.Train.GetBatch([0, 1]);
        Assert.Equal(new long[] { 2, 3, 64, 64 }, batch[IMultiTaskDataset.ImageKey].shape);
        Assert.True(batch["semseg"].max().item<long>() > 0);
        Assert.True(batch["depth"].min().item<float>() > 0);
        Assert.InRange(splits.Train.Input.Mean, 0.05, 0.95);
    }
}
