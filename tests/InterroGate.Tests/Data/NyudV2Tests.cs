using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Data.Formats;
using InterroGate.Tasks;
using SkiaSharp;
using static TorchSharp.torch;

namespace InterroGate.Tests.Data;

[Collection("Torch")]
public sealed class NyudV2Tests : IDisposable
{
    internal const int H = 4, W = 6;
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-nyud-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static float Normalised(int pixel) => (float)((pixel / 255.0 - NyudV2.Mean) / NyudV2.Std);

    // ---- fixtures ------------------------------------------------------------------------------------------

    /// <summary>
    /// A NYUD_MT folder. Sample k: image byte (y·W + x)·3 + c + 20k; segmentation PNG value 2p mod 41 at pixel p
    /// (so 0 = unlabelled, 2 → class 1, 40 → class 39); depth k + p/10; normals zero at pixel 0, (0, 0, 2) at even and
    /// (3, 4, 0) at odd pixels; edge 1 where p mod 3 = 0.
    /// </summary>
    private string MultiTask(string[] train, string[] val) => MultiTaskFolder(_dir, train, val);

    /// <summary>The NYUD_MT fixture (4×6 images) under <paramref name="dir"/>; what other tests read through the registry.</summary>
    internal static string MultiTaskFolder(string dir, string[] train, string[] val)
    {
        string root = Path.Combine(dir, "nyud_mt");
        foreach (var d in new[] { "images", "segmentation", "depth", "normals", "edge", "gt_sets" }) Directory.CreateDirectory(Path.Combine(root, d));
        int k = 0;
        foreach (var id in train.Concat(val)) WriteMultiTaskSample(root, id, k++);
        File.WriteAllLines(Path.Combine(root, "gt_sets", "train.txt"), train);
        File.WriteAllLines(Path.Combine(root, "gt_sets", "val.txt"), [.. val, ""]); // a trailing blank line is no id
        return root;
    }

    private static void WriteMultiTaskSample(string root, string id, int k)
    {
        var rgb = new byte[H * W * 3];
        for (int i = 0; i < rgb.Length; i++) rgb[i] = (byte)(i + 20 * k);
        // PNG content under the .jpg name: the decoder goes by content, and lossless pixels can be checked exactly.
        ImageFiles.WritePng(Path.Combine(root, "images", id + ".jpg"), new DecodedImage(rgb, H, W, 3));
        ImageFiles.WritePng(Path.Combine(root, "segmentation", id + ".png"),
            new DecodedImage(Enumerable.Range(0, H * W).Select(p => (byte)(2 * p % 41)).ToArray(), H, W, 1));
        Npy.Write(Path.Combine(root, "depth", id + ".npy"), [H, W], Enumerable.Range(0, H * W).Select(p => k + p / 10f).ToArray());
        var normals = Enumerable.Range(0, H * W).SelectMany(p => p == 0 ? new float[] { 0, 0, 0 } : p % 2 == 0 ? [0, 0, 2] : new float[] { 3, 4, 0 }).ToArray();
        Npy.Write(Path.Combine(root, "normals", id + ".npy"), [H, W, 3], normals);
        Npy.Write(Path.Combine(root, "edge", id + ".npy"), [H, W], Enumerable.Range(0, H * W).Select(p => p % 3 == 0 ? 1f : 0f).ToArray());
    }

    /// <summary>
    /// An MTAN NumPy folder. Sample k: image float (p·3 + c + k) / 255 at pixel p; label −1 at pixel 0, p mod 13
    /// elsewhere; depth [H, W, 1] = k + p; normal (0, 0, 1), zero at pixel 0.
    /// </summary>
    private string Preprocessed(int train, int val)
    {
        string root = Path.Combine(_dir, "nyuv2");
        foreach (var (split, n) in new[] { ("train", train), ("val", val) })
        {
            foreach (var d in new[] { "image", "label", "depth", "normal" }) Directory.CreateDirectory(Path.Combine(root, split, d));
            for (int k = 0; k < n; k++)
            {
                string F(string d) => Path.Combine(root, split, d, $"{k}.npy");
                Npy.Write(F("image"), [H, W, 3], Enumerable.Range(0, H * W * 3).Select(i => (i + k) % 256 / 255f).ToArray());
                Npy.Write(F("label"), [H, W], Enumerable.Range(0, H * W).Select(p => p == 0 ? -1f : p % 13).ToArray());
                Npy.Write(F("depth"), [H, W, 1], Enumerable.Range(0, H * W).Select(p => (float)(k + p)).ToArray());
                Npy.Write(F("normal"), [H, W, 3], Enumerable.Range(0, H * W).SelectMany(p => p == 0 ? new float[] { 0, 0, 0 } : [0, 0, 1]).ToArray());
            }
        }
        return root;
    }

    private static Dictionary<string, Tensor> Batch(IMultiTaskDataset d, params long[] indices) => d.GetBatch(indices);

    /// <summary>Crops the top-left <see cref="Height"/>×<see cref="Width"/> of the image and every target.</summary>
    private sealed class CropTopLeft(int height, int width) : IJointTransform
    {
        public int Height => height;
        public int Width => width;

        public DenseSample Apply(DenseSample sample, TaskSet tasks, Random random) => new(
            Crop(sample.Image),
            sample.Targets.ToDictionary(kv => kv.Key, kv => Crop(kv.Value)));

        private Tensor Crop(Tensor t) => t.narrow(-2, 0, height).narrow(-1, 0, width).contiguous();
    }

    // ---- layout (a): NYUD_MT -------------------------------------------------------------------------------

    [Fact]
    public void MultiTask_layout_shifts_classes_marks_unlabelled_255_and_converts_depth_normals_and_edges()
    {
        string root = MultiTask(["a", "b"], ["c"]);
        Assert.Equal(NyudLayout.MultiTask, NyudV2.Detect(root));
        var splits = NyudV2.Load(new NyudV2Options(root));
        Assert.Equal(["semseg", "depth", "normals", "edge"], splits.Train.Tasks.Names);
        Assert.Equal(40, splits.Train.Tasks.Get("semseg").Outputs);
        Assert.Equal((3, H, W), splits.Train.ImageShape);
        Assert.Equal(2, splits.Train.Count);
        Assert.Equal(1, splits.Test.Count);
        Assert.Same(splits.Validation, splits.Test);

        var b = Batch(splits.Train, 1); // sample k = 1
        Assert.Equal(new long[] { 1, 3, H, W }, b[IMultiTaskDataset.ImageKey].shape);
        // pixel (y=1, x=2), channel 1: byte (1·6 + 2)·3 + 1 + 20 = 45
        Assert.Equal(Normalised(45), b[IMultiTaskDataset.ImageKey][0, 1, 1, 2].item<float>(), 5);

        var seg = b["semseg"];
        Assert.Equal(ScalarType.Int64, seg.dtype);
        Assert.Equal(new long[] { 1, H, W }, seg.shape);
        var flat = seg.flatten().data<long>().ToArray();
        Assert.Equal(TaskSpec.IgnoreLabel, flat[0]);   // PNG 0: unlabelled
        Assert.Equal(1, flat[1]);                      // PNG 2 -> class 1
        Assert.Equal(39, flat[20]);                    // PNG 40 -> class 39
        Assert.Equal(0, flat[21]);                     // PNG 1 -> class 0

        Assert.Equal(new long[] { 1, 1, H, W }, b["depth"].shape);
        Assert.Equal(1 + 7 / 10f, b["depth"][0, 0, 1, 1].item<float>(), 5);

        var n = b["normals"];
        Assert.Equal(new long[] { 1, 3, H, W }, n.shape);
        Assert.Equal(new float[] { 0, 0, 0 }, n[0, .., 0, 0].data<float>().ToArray()); // unknown stays zero
        Assert.Equal(new float[] { 0, 0, 1 }, n[0, .., 0, 2].data<float>().ToArray()); // (0, 0, 2) rescaled
        var odd = n[0, .., 0, 1].data<float>().ToArray();                                // (3, 4, 0) rescaled
        Assert.Equal(0.6f, odd[0], 5);
        Assert.Equal(0.8f, odd[1], 5);

        var edge = b["edge"].flatten().data<float>().ToArray();
        Assert.Equal(Enumerable.Range(0, H * W).Select(p => p % 3 == 0 ? 1f : 0f), edge);
    }

    [Fact]
    public void MultiTask_layout_decodes_a_real_jpeg()
    {
        string root = MultiTask(["a"], ["c"]);
        using (var bitmap = new SKBitmap(new SKImageInfo(W, H, SKColorType.Rgba8888, SKAlphaType.Unpremul)))
        {
            bitmap.Erase(new SKColor(200, 100, 50));
            using var data = bitmap.Encode(SKEncodedImageFormat.Jpeg, 100);
            File.WriteAllBytes(Path.Combine(root, "images", "a.jpg"), data.ToArray());
        }
        var image = Batch(NyudV2.Load(new NyudV2Options(root)).Train, 0)[IMultiTaskDataset.ImageKey];
        Assert.Equal(Normalised(200), image[0, 0, 2, 3].item<float>(), 1);
        Assert.Equal(Normalised(50), image[0, 2, 2, 3].item<float>(), 1);
    }

    // ---- layout (b): MTAN NumPy ----------------------------------------------------------------------------

    [Fact]
    public void Preprocessed_layout_turns_float_images_into_bytes_and_minus_one_into_255()
    {
        string root = Preprocessed(train: 3, val: 2);
        Assert.Equal(NyudLayout.Preprocessed, NyudV2.Detect(root));
        var splits = NyudV2.Load(new NyudV2Options(root));
        Assert.Equal(["semseg", "depth", "normals"], splits.Train.Tasks.Names);
        Assert.Equal(13, splits.Train.Tasks.Get("semseg").Outputs);
        Assert.Equal(3, splits.Train.Count);
        Assert.Equal(2, splits.Test.Count);
        Assert.Equal(["0", "1", "2"], ((NyudV2Dataset)splits.Train).Ids);

        var b = Batch(splits.Train, 2, 0);
        // sample 2, pixel (1, 2), channel 0: float (8·3 + 0 + 2) / 255 -> byte 26
        Assert.Equal(Normalised(26), b[IMultiTaskDataset.ImageKey][0, 0, 1, 2].item<float>(), 5);
        var seg = b["semseg"][1].flatten().data<long>().ToArray();
        Assert.Equal(TaskSpec.IgnoreLabel, seg[0]);
        Assert.Equal(Enumerable.Range(1, H * W - 1).Select(p => (long)(p % 13)), seg[1..]);
        Assert.Equal(new long[] { 2, 1, H, W }, b["depth"].shape);   // [H, W, 1] on disk
        Assert.Equal(2 + 5f, b["depth"][0, 0, 0, 5].item<float>());
        Assert.Equal(new long[] { 2, 3, H, W }, b["normals"].shape); // [H, W, 3] on disk
        Assert.Equal(1f, b["normals"][0, 2, 3, 5].item<float>());
        Assert.Equal(0f, b["normals"][0, 2, 0, 0].item<float>());
    }

    [Fact]
    public void Preprocessed_layout_rejects_images_outside_0_to_1_and_labels_outside_the_13_classes()
    {
        string root = Preprocessed(train: 2, val: 1);
        string image = Path.Combine(root, "train", "image", "1.npy");
        Npy.Write(image, [H, W, 3], Enumerable.Range(0, H * W * 3).Select(i => (float)i).ToArray()); // 0..71: a 0..255 convention
        var train = NyudV2.Load(new NyudV2Options(root)).Train;
        var e = Assert.Throws<DataFormatException>(() => Batch(train, 1));
        Assert.Equal(image, e.Path);
        Assert.Contains("[0, 1]", e.Message);

        string label = Path.Combine(root, "val", "label", "0.npy");
        Npy.Write(label, [H, W], Enumerable.Repeat(13f, H * W).ToArray());
        e = Assert.Throws<DataFormatException>(() => Batch(NyudV2.Load(new NyudV2Options(root)).Test, 0));
        Assert.Equal(label, e.Path);
        Assert.Contains("0..12", e.Message);
    }

    [Fact]
    public void Edge_is_no_task_of_the_preprocessed_layout()
    {
        string root = Preprocessed(train: 2, val: 1);
        var e = Assert.Throws<ConfigException>(() => NyudV2.Load(new NyudV2Options(root, Tasks: ["semseg", "edge"])));
        Assert.Equal("tasks", e.Key);
        Assert.Contains("'edge'", e.Message);
        Assert.Contains("semseg, depth, normals", e.Message);
    }

    // ---- options -------------------------------------------------------------------------------------------

    [Fact]
    public void Chosen_tasks_come_in_the_order_given_and_only_they_are_read()
    {
        string root = MultiTask(["a", "b"], ["c"]);
        File.Delete(Path.Combine(root, "normals", "a.npy")); // not needed for these tasks
        var train = NyudV2.Load(new NyudV2Options(root, Tasks: ["depth", "semseg"])).Train;
        Assert.Equal(["depth", "semseg"], train.Tasks.Names);
        Assert.Equal(["depth", IMultiTaskDataset.ImageKey, "semseg"], Batch(train, 0, 1).Keys.Order());
    }

    [Fact]
    public void Validation_is_held_out_of_train_with_the_seed_and_test_is_the_val_split()
    {
        string[] ids = ["a", "b", "c", "d", "e", "f"];
        string root = MultiTask(ids, ["v1", "v2"]);
        NyudV2Dataset[] Split(int seed)
        {
            var s = NyudV2.Load(new NyudV2Options(root, ValidationSize: 2, Seed: seed));
            return [(NyudV2Dataset)s.Train, (NyudV2Dataset)s.Validation, (NyudV2Dataset)s.Test];
        }
        var first = Split(1);
        var (train, val, test) = (first[0], first[1], first[2]);
        Assert.Equal(4, train.Count);
        Assert.Equal(2, val.Count);
        Assert.Contains("held out", val.Name);
        Assert.Equal(ids, train.Ids.Concat(val.Ids).Order());
        Assert.Equal(["v1", "v2"], test.Ids);
        Assert.Equal(val.Ids, Split(1)[1].Ids);
        Assert.Contains(Enumerable.Range(2, 8), seed => !Split(seed)[1].Ids.SequenceEqual(val.Ids));

        var e = Assert.Throws<ArgumentException>(() => NyudV2.Load(new NyudV2Options(root, ValidationSize: 6)));
        Assert.Contains("ValidationSize 6", e.Message);
        Assert.Contains("0 (validate on the val split) to 5", e.Message);
    }

    [Fact]
    public void The_transform_shapes_training_samples_only()
    {
        string root = MultiTask(["a", "b"], ["c"]);
        var crop = new CropTopLeft(2, 3);
        var splits = NyudV2.Load(new NyudV2Options(root, TrainTransform: crop, TrainHeight: crop.Height, TrainWidth: crop.Width, ValidationSize: 1));
        Assert.Equal((3, 2, 3), splits.Train.ImageShape);
        var b = Batch(splits.Train, 0);
        Assert.Equal(new long[] { 1, 3, 2, 3 }, b[IMultiTaskDataset.ImageKey].shape);
        Assert.Equal(new long[] { 1, 2, 3 }, b["semseg"].shape);
        Assert.Equal(new long[] { 1, 3, H, W }, Batch(splits.Validation, 0)[IMultiTaskDataset.ImageKey].shape);
        Assert.Equal(new long[] { 1, 3, H, W }, Batch(splits.Test, 0)[IMultiTaskDataset.ImageKey].shape);

        Assert.Contains("training transform", Assert.Throws<ArgumentException>(() => NyudV2.Load(new NyudV2Options(root, TrainHeight: 2, TrainWidth: 3))).Message);
    }

    // ---- bad input -----------------------------------------------------------------------------------------

    [Fact]
    public void Listed_ids_with_missing_files_are_an_error_naming_the_first_files_and_the_count_or_are_skipped()
    {
        string root = MultiTask(["a", "b", "c", "d", "e"], ["v"]);
        string depthB = Path.Combine(root, "depth", "b.npy");
        File.Delete(depthB);
        File.Delete(Path.Combine(root, "depth", "d.npy"));
        File.Delete(Path.Combine(root, "images", "d.jpg"));

        var e = Assert.Throws<DataFormatException>(() => NyudV2.Load(new NyudV2Options(root)));
        Assert.Equal(Path.Combine(root, "gt_sets", "train.txt"), e.Path);
        Assert.Contains("3 files are missing for 2 of 5 ids", e.Message);
        Assert.Contains(depthB, e.Message);
        Assert.Contains("skipMissing", e.Message);

        var train = (NyudV2Dataset)NyudV2.Load(new NyudV2Options(root, SkipMissing: true)).Train;
        Assert.Equal(["a", "c", "e"], train.Ids);
        Assert.Equal(["b", "d"], train.SkippedIds);
        Assert.Equal(3, Batch(train, 0, 1, 2)["depth"].shape[0]);
    }

    [Fact]
    public void A_label_or_depth_map_of_another_size_than_its_image_names_the_file_and_both_sizes()
    {
        string root = MultiTask(["a", "b", "c", "d"], ["v"]);
        string seg = Path.Combine(root, "segmentation", "b.png");
        ImageFiles.WritePng(seg, new DecodedImage(new byte[3 * W], 3, W, 1));
        string depth = Path.Combine(root, "depth", "c.npy");
        Npy.Write(depth, [H, W - 1], new float[H * (W - 1)]);
        string image = Path.Combine(root, "images", "d.jpg");
        ImageFiles.WritePng(image, new DecodedImage(new byte[(H + 1) * W * 3], H + 1, W, 3));
        var train = NyudV2.Load(new NyudV2Options(root)).Train;

        var e = Assert.Throws<DataFormatException>(() => Batch(train, 0, 1));
        Assert.Equal(seg, e.Path);
        Assert.Contains($"3×{W}", e.Message);
        Assert.Contains($"{H}×{W}", e.Message);

        e = Assert.Throws<DataFormatException>(() => Batch(train, 2));
        Assert.Equal(depth, e.Path);
        Assert.Contains($"{H}×{W - 1}", e.Message);
        Assert.Contains($"{H}×{W}", e.Message);

        e = Assert.Throws<DataFormatException>(() => Batch(train, 3));
        Assert.Equal(image, e.Path);
        Assert.Contains($"{H + 1}×{W}", e.Message);
    }

    [Fact]
    public void NaN_and_infinite_depth_becomes_unknown_and_is_counted_once_per_sample()
    {
        string root = MultiTask(["a", "b"], ["v"]);
        var values = Enumerable.Repeat(2f, H * W).ToArray();
        values[0] = values[5] = float.NaN;
        values[7] = float.PositiveInfinity;
        Npy.Write(Path.Combine(root, "depth", "b.npy"), [H, W], values);
        var train = (NyudV2Dataset)NyudV2.Load(new NyudV2Options(root)).Train;
        Assert.Equal(0, train.NanDepthPixels);

        var depth = Batch(train, 1)["depth"].flatten().data<float>().ToArray();
        Assert.Equal(0f, depth[0]);
        Assert.Equal(0f, depth[5]);
        Assert.Equal(0f, depth[7]);
        Assert.Equal(2f, depth[6]);
        Assert.Equal(3, train.NanDepthPixels);
        Batch(train, 0, 1);
        Assert.Equal(3, train.NanDepthPixels);
    }

    [Fact]
    public void An_unreadable_image_names_the_file()
    {
        string root = MultiTask(["a", "b"], ["v"]);
        string image = Path.Combine(root, "images", "b.jpg");
        File.WriteAllBytes(image, "not an image at all"u8.ToArray());
        var train = NyudV2.Load(new NyudV2Options(root)).Train;
        var e = Assert.Throws<DataFormatException>(() => Batch(train, 1));
        Assert.Equal(image, e.Path);
        Assert.Contains("cannot be decoded", e.Message);
    }

    [Fact]
    public void A_missing_root_says_which_layouts_are_expected()
    {
        string missing = Path.Combine(_dir, "nowhere");
        var e = Assert.Throws<DatasetNotFoundException>(() => NyudV2.Load(new NyudV2Options(missing)));
        Assert.Contains(missing, e.Message);
        Assert.Contains("gt_sets/train.txt", e.Message);
        Assert.Contains("image/, label/, depth/ and normal/", e.Message);

        string empty = Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName;
        Assert.Contains("neither gt_sets/ nor train/image/", Assert.Throws<DatasetNotFoundException>(() => NyudV2.Load(new NyudV2Options(empty))).Message);

        string numpy = Preprocessed(train: 1, val: 1);
        Assert.Contains("gt_sets/train.txt is missing",
            Assert.Throws<DatasetNotFoundException>(() => NyudV2.Load(new NyudV2Options(numpy, Layout: NyudLayout.MultiTask))).Message);
    }
}
