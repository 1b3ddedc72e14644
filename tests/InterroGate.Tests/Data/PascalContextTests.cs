using InterroGate.Data;
using InterroGate.Data.Formats;
using InterroGate.Tasks;
using SkiaSharp;
using static TorchSharp.torch;

namespace InterroGate.Tests.Data;

[Collection("Torch")]
public sealed class PascalContextTests : IDisposable
{
    private const int H = 12, W = 16;
    private readonly string _root = Directory.CreateTempSubdirectory("ig-pascal-").FullName;
    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>Crops every map of a sample to its centre: a stand-in for the real evaluation transform.</summary>
    private sealed class CenterCrop(int height, int width) : IJointTransform
    {
        public DenseSample Apply(DenseSample sample, TaskSet tasks, Random random)
        {
            Tensor Crop(Tensor t)
            {
                long h = t.shape[^2], w = t.shape[^1];
                return t.narrow(-2, (h - height) / 2, height).narrow(-1, (w - width) / 2, width);
            }
            return new DenseSample(Crop(sample.Image), sample.Targets.ToDictionary(kv => kv.Key, kv => Crop(kv.Value)));
        }
    }

    private string F(params string[] parts) => Path.Combine([_root, .. parts]);

    private void Jpeg(string id, int h, int w, byte r, byte g, byte b)
    {
        Directory.CreateDirectory(F("JPEGImages"));
        using var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        bitmap.Erase(new SKColor(r, g, b));
        using var data = bitmap.Encode(SKEncodedImageFormat.Jpeg, 95);
        File.WriteAllBytes(F("JPEGImages", id + ".jpg"), data.ToArray());
    }

    private void Png(string folder, string id, int h, int w, int channels, Func<int, int, int, byte> value)
    {
        Directory.CreateDirectory(F(folder));
        var pixels = new byte[h * w * channels];
        for (int r = 0; r < h; r++)
            for (int c = 0; c < w; c++)
                for (int k = 0; k < channels; k++) pixels[(r * w + c) * channels + k] = value(r, c, k);
        ImageFiles.WritePng(F(folder, id + ".png"), new DecodedImage(pixels, h, w, channels));
    }

    private static MatArray Mask(int h, int w, Func<int, int, bool> inside)
    {
        var bits = new bool[h * w];
        for (int r = 0; r < h; r++)
            for (int c = 0; c < w; c++) bits[r * w + c] = inside(r, c);
        return MatArray.Logical(bits, h, w);
    }

    private static MatStruct Objects(params (string Class, int ClassInd, MatValue Parts)[] objects) =>
        MatStruct.Row(["class", "class_ind", "mask", "parts"], objects.Select(o => (IReadOnlyDictionary<string, MatValue>)new Dictionary<string, MatValue>
        {
            ["class"] = MatChar.FromString(o.Class), ["class_ind"] = MatArray.Scalar(o.ClassInd), ["mask"] = Mask(1, 1, (_, _) => true), ["parts"] = o.Parts,
        }).ToArray());

    private static MatStruct Parts(params (string Name, MatArray Mask)[] parts) =>
        MatStruct.Row(["part_name", "mask"], parts.Select(p => (IReadOnlyDictionary<string, MatValue>)new Dictionary<string, MatValue>
        {
            ["part_name"] = MatChar.FromString(p.Name), ["mask"] = p.Mask,
        }).ToArray());

    private static readonly MatArray Empty = new(MatClass.Double, [0, 0], Array.Empty<double>());

    private void HumanParts(string id, MatValue objects)
    {
        Directory.CreateDirectory(F("human_parts"));
        MatFile.Write(F("human_parts", id + ".mat"), new Dictionary<string, MatValue>
        {
            ["anno"] = MatStruct.Single(("imname", MatChar.FromString(id)), ("objects", objects)),
        });
    }

    private void LabelMap(string id, int h, int w, Func<int, int, ushort> label)
    {
        Directory.CreateDirectory(F("pascal-context", "trainval"));
        var values = new ushort[h * w];
        for (int r = 0; r < h; r++)
            for (int c = 0; c < w; c++) values[r * w + c] = label(r, c);
        MatFile.Write(F("pascal-context", "trainval", id + ".mat"), new Dictionary<string, MatValue> { ["LabelMap"] = MatArray.FromRowMajor(values, h, w) });
    }

    private const int Wall = 440, Aeroplane = 2; // a class with trusted normals, and one without

    /// <summary>
    /// Train: "2008_a" (a person with parts, a wall/aeroplane label map) and "2008_b" (no person, VOC-palette
    /// semseg); val: "2008_c", 14×18, larger than the input.
    /// </summary>
    private void Fixture()
    {
        Directory.CreateDirectory(F("ImageSets", "Context"));
        File.WriteAllLines(F("ImageSets", "Context", "train.txt"), ["2008_a", "2008_b"]);
        File.WriteAllLines(F("ImageSets", "Context", "val.txt"), ["2008_c"]);

        Jpeg("2008_a", H, W, 200, 100, 50);
        Png("semseg/pascal-context", "2008_a", H, W, 1, (r, c, _) => r == 0 && c == 0 ? (byte)255 : c < 8 ? (byte)0 : (byte)15);
        HumanParts("2008_a", Objects(
            ("dog", 12, Empty),
            ("person", 15, Parts(
                ("head", Mask(H, W, (r, c) => r < 3 && c < 4)),
                ("torso", Mask(H, W, (r, c) => r >= 2 && r < 6 && c < 4)),   // overlaps the head on row 2: painted later, wins
                ("rfoot", Mask(H, W, (r, c) => r >= 10 && c < 2)))),
            ("person", 15, Empty)));
        Png("sal_distill", "2008_a", H, W, 1, (_, c, _) => c switch { 1 => 127, 2 => 128, 3 => 255, _ => 0 });
        Png("normals_distill", "2008_a", H, W, 3, (_, _, k) => k switch { 0 => 255, 1 => 128, _ => 0 });
        LabelMap("2008_a", H, W, (_, c) => c < 8 ? (ushort)Wall : (ushort)Aeroplane);

        Jpeg("2008_b", H, W, 10, 10, 10);
        // VOC palette colours: person (15) is (192, 128, 128), background black.
        Png("semseg/pascal-context", "2008_b", H, W, 3, (r, _, k) => r < 4 ? (k == 0 ? (byte)192 : (byte)128) : (byte)0);
        HumanParts("2008_b", Objects(("dog", 12, Parts(("head", Mask(H, W, (_, _) => true))))));
        Png("sal_distill", "2008_b", H, W, 1, (_, _, _) => 0);
        Png("normals_distill", "2008_b", H, W, 3, (_, _, _) => 128);
        LabelMap("2008_b", H, W, (_, _) => Wall);

        Jpeg("2008_c", H + 2, W + 2, 0, 0, 255);
        Png("semseg/pascal-context", "2008_c", H + 2, W + 2, 1, (r, c, _) => (byte)(r == 1 && c == 1 ? 7 : 3));
        HumanParts("2008_c", Empty);
        Png("sal_distill", "2008_c", H + 2, W + 2, 1, (_, _, _) => 255);
        Png("normals_distill", "2008_c", H + 2, W + 2, 3, (_, _, _) => 0);
        LabelMap("2008_c", H + 2, W + 2, (_, _) => Wall);
    }

    private PascalContextOptions Options => new(_root) { InputHeight = H, InputWidth = W, EvalTransform = new CenterCrop(H, W) };

    private static Dictionary<string, Tensor> All(IMultiTaskDataset d) => d.GetBatch(Enumerable.Range(0, d.Count).Select(i => (long)i).ToArray());

    [Fact]
    public void Thinning_matches_the_Guo_Hall_reference_examples()
    {
        static bool[] Grid(string rows) => rows.Where(ch => ch is '0' or '1').Select(ch => ch == '1').ToArray();
        // The examples of scikit-image's thin(), which the benchmark's edge maps come from.
        var square = Grid("0100000 0011100 0011100 0011100 0011100 0011100 0000000");
        Assert.Equal(Grid("0100000 0010000 0001000 0001000 0001000 0000000 0000000"), PascalContext.Thin(square, 7, 7));
        var blob = Grid("0000000 0111110 0101110 0111110 0111110 0111110 0000000");
        Assert.Equal(Grid("0000000 0010000 0101000 0010000 0000000 0000000 0000000"), PascalContext.Thin(blob, 7, 7));
    }

    [Fact]
    public void Edges_are_label_changes_of_the_4_neighbour_Laplacian_thinned_to_one_pixel()
    {
        // A 2-wide band where the label changes (columns 2 and 3), on a 4×6 map.
        var labels = new double[4 * 6];
        for (int k = 0; k < labels.Length; k++) labels[k] = k % 6 < 3 ? 5 : 9;
        // Both columns have a non-zero Laplacian; thinning keeps column 2 and eats the line's end at the top border.
        var edges = PascalContext.EdgeMap(labels, 4, 6);
        var expected = new bool[4 * 6];
        for (int r = 1; r < 4; r++) expected[r * 6 + 2] = true;
        Assert.Equal(expected, edges);
        // A constant map has no edges; a one-row map marks both sides of its change.
        Assert.DoesNotContain(true, PascalContext.EdgeMap(Enumerable.Repeat(3.0, 12).ToArray(), 3, 4));
        Assert.Equal(new[] { false, true, true }, PascalContext.EdgeMap([1, 1, 2], 1, 3)); // Laplacian 0, 1, −2 (reflected border); a 2-pixel line stays
    }

    [Fact]
    public void Loads_every_task_with_the_benchmark_conventions()
    {
        Fixture();
        var splits = PascalContext.Load(Options);
        var train = (PascalContextDataset)splits.Train;
        Assert.Equal(new[] { "2008_a", "2008_b" }, train.Ids);
        Assert.Equal(PascalContext.AllTasks.Names, train.Tasks.Names);
        var batch = All(train);

        var image = batch[IMultiTaskDataset.ImageKey];
        Assert.Equal(new long[] { 2, 3, H, W }, image.shape);
        Assert.Equal((200 / 255.0 - 0.449) / 0.226, image[0, 0].mean().item<float>(), 1);  // JPEG: close to the colour written
        Assert.Equal((50 / 255.0 - 0.449) / 0.226, image[0, 2].mean().item<float>(), 1);

        var semseg = batch["semseg"];
        Assert.Equal(ScalarType.Int64, semseg.dtype);
        Assert.Equal(new long[] { 2, H, W }, semseg.shape);
        Assert.Equal(255, semseg[0, 0, 0].item<long>());
        Assert.Equal(0, semseg[0, 5, 7].item<long>());
        Assert.Equal(15, semseg[0, 5, 8].item<long>());
        Assert.Equal(15, semseg[1, 3, 9].item<long>());  // palette colour (192, 128, 128) → person
        Assert.Equal(0, semseg[1, 4, 9].item<long>());

        var parts = batch["human_parts"];
        Assert.Equal(new long[] { 2, H, W }, parts.shape);
        Assert.Equal(1, parts[0, 0, 0].item<long>());    // head
        Assert.Equal(2, parts[0, 2, 3].item<long>());    // torso over head
        Assert.Equal(2, parts[0, 5, 0].item<long>());
        Assert.Equal(6, parts[0, 11, 1].item<long>());   // right foot → lower leg
        Assert.Equal(0, parts[0, 11, 2].item<long>());   // background of an image with parts
        Assert.Equal(0, parts[0, 0, 4].item<long>());
        Assert.True(parts[1].eq(255).all().item<bool>()); // no person: ignored everywhere (the dog's parts do not count)

        var sal = batch["sal"];
        Assert.Equal(new long[] { 2, 1, H, W }, sal.shape);
        Assert.Equal(new float[] { 0, 0, 1, 1, 0 }, sal[0, 0, 4, TensorIndex.Slice(0, 5)].data<float>().ToArray());

        var normals = batch["normals"];
        Assert.Equal(new long[] { 2, 3, H, W }, normals.shape);
        double x = 1, y = 2 * 128 / 255.0 - 1, z = -1, n = Math.Sqrt(x * x + y * y + z * z);
        Assert.Equal(new[] { x / n, y / n, z / n }, normals[0, TensorIndex.Colon, 3, 7].data<float>().ToArray().Select(v => (double)v), new Tolerance(1e-6));
        Assert.True(normals[0, TensorIndex.Colon, TensorIndex.Colon, TensorIndex.Slice(8)].eq(0).all().item<bool>()); // aeroplane: not trusted
        Assert.Equal(1, normals[1].pow(2).sum(dim: 0).sqrt()[6, 6].item<float>(), 5);                                      // unit length

        var edge = batch["edge"];
        Assert.Equal(new long[] { 2, 1, H, W }, edge.shape);
        // The wall/aeroplane boundary between columns 7 and 8, thinned to column 7 (rows 1..11, as Guo–Hall thinning does).
        var expected = new float[H * W];
        for (int r = 1; r < H; r++) expected[r * W + 7] = 1;
        Assert.Equal(expected, edge[0, 0].data<float>().ToArray());
        Assert.Equal(0, edge[1].sum().item<float>());
    }

    private sealed class Tolerance(double eps) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= eps;
        public int GetHashCode(double v) => 0;
    }

    [Fact]
    public void Validation_is_val_txt_through_the_eval_transform_or_a_seeded_hold_out_of_train()
    {
        Fixture();
        var splits = PascalContext.Load(Options);
        Assert.Same(splits.Validation, splits.Test);
        var test = All(splits.Test);
        Assert.Equal(new long[] { 1, H, W }, test["semseg"].shape);
        Assert.Equal(7, test["semseg"][0, 0, 0].item<long>());        // pixel (1, 1) of 14×18 after the centre crop
        Assert.Equal(3, test["semseg"][0, 0, 1].item<long>());
        Assert.True(test["human_parts"].eq(255).all().item<bool>());  // objects = []: no person
        Assert.True(test["sal"].eq(1).all().item<bool>());

        var held = PascalContext.Load(Options with { ValidationSize = 1, Seed = 3 });
        var again = PascalContext.Load(Options with { ValidationSize = 1, Seed = 3 });
        var trainIds = ((PascalContextDataset)held.Train).Ids;
        var valIds = ((PascalContextDataset)held.Validation).Ids;
        Assert.Single(trainIds);
        Assert.Single(valIds);
        Assert.NotEqual(trainIds[0], valIds[0]);
        Assert.Equal(valIds, ((PascalContextDataset)again.Validation).Ids);
        Assert.Equal(new[] { "2008_c" }, ((PascalContextDataset)held.Test).Ids);
        Assert.Throws<ArgumentException>(() => PascalContext.Load(Options with { ValidationSize = 2 }));
    }

    [Fact]
    public void Task_subsets_need_only_their_files_and_human_parts_alone_keeps_images_with_people()
    {
        Fixture();
        File.Delete(F("sal_distill", "2008_b.png"));
        var semseg = PascalContext.Load(Options with { Tasks = ["semseg"] });
        Assert.Equal(new[] { "semseg" }, semseg.Train.Tasks.Names);
        Assert.Equal(2, semseg.Train.Count);

        var parts = (PascalContextDataset)PascalContext.Load(Options with { Tasks = ["human_parts"] }).Train;
        Assert.Equal(new[] { "2008_a" }, parts.Ids);
        Assert.Equal(1, parts.WithoutHumanParts);

        // The reference loader's object-category list is used when present (here it claims b has a person).
        Directory.CreateDirectory(F("ImageSets", "Parts"));
        File.WriteAllText(F("ImageSets", "Parts", "train.txt"), "{\n\t\"2008_a\": [12, 15, 15],\n\t\"2008_b\": [15]\n}\n");
        Assert.Equal(2, PascalContext.Load(Options with { Tasks = ["human_parts"] }).Train.Count);

        Assert.Contains("No task 'depth'", Assert.Throws<KeyNotFoundException>(() => PascalContext.Load(Options with { Tasks = ["depth"] })).Message);
    }

    [Fact]
    public void Missing_files_are_an_error_naming_the_first_few_or_are_skipped_and_counted()
    {
        Fixture();
        File.AppendAllLines(F("ImageSets", "Context", "train.txt"), ["2008_x", "2008_y"]);
        File.Delete(F("normals_distill", "2008_b.png"));
        var e = Assert.Throws<DataFormatException>(() => PascalContext.Load(Options));
        Assert.Equal(F("ImageSets", "Context", "train.txt"), e.Path);
        Assert.Contains("3 of 4 listed images lack files", e.Message);
        Assert.Contains(F("normals_distill", "2008_b.png"), e.Message);
        Assert.Contains(F("JPEGImages", "2008_x.jpg"), e.Message);
        Assert.Contains("SkipMissing", e.Message);

        var train = (PascalContextDataset)PascalContext.Load(Options with { SkipMissing = true }).Train;
        Assert.Equal(new[] { "2008_a" }, train.Ids);
        Assert.Equal(3, train.Skipped);
    }

    [Fact]
    public void Wrong_sizes_and_unreadable_files_name_the_file()
    {
        Fixture();
        Png("semseg/pascal-context", "2008_b", H - 2, W, 1, (_, _, _) => 0);
        var train = PascalContext.Load(Options).Train;
        var e = Assert.Throws<DataFormatException>(() => train.GetBatch([1]));
        Assert.Equal(F("semseg", "pascal-context", "2008_b.png"), e.Path);
        Assert.Contains($"is {H - 2}×{W}, the image 2008_b.jpg is {H}×{W}", e.Message);

        LabelMap("2008_a", H, W + 1, (_, _) => Wall);
        e = Assert.Throws<DataFormatException>(() => train.GetBatch([0]));
        Assert.Equal(F("pascal-context", "trainval", "2008_a.mat"), e.Path);
        Assert.Contains($"LabelMap is {H}×{W + 1}, the image is {H}×{W}", e.Message);

        File.WriteAllText(F("human_parts", "2008_a.mat"), "not a mat file");
        e = Assert.Throws<DataFormatException>(() => PascalContext.Load(Options with { Tasks = ["human_parts", "sal"] }).Train.GetBatch([0]));
        Assert.Equal(F("human_parts", "2008_a.mat"), e.Path);

        Png("semseg/pascal-context", "2008_b", H, W, 1, (_, _, _) => 40);
        e = Assert.Throws<DataFormatException>(() => PascalContext.Load(Options with { Tasks = ["semseg"] }).Train.GetBatch([1]));
        Assert.Contains("label 40 at pixel (0, 0)", e.Message);

        File.WriteAllText(F("JPEGImages", "2008_a.jpg"), "not a jpeg");
        e = Assert.Throws<DataFormatException>(() => train.GetBatch([0]));
        Assert.Equal(F("JPEGImages", "2008_a.jpg"), e.Path);
    }

    [Fact]
    public void A_missing_root_or_split_list_says_what_layout_is_expected()
    {
        var e = Assert.Throws<DatasetNotFoundException>(() => PascalContext.Load(new PascalContextOptions(F("nowhere"))));
        Assert.Contains(F("nowhere"), e.Message);
        Assert.Contains("JPEGImages/{id}.jpg", e.Message);
        Assert.Contains("ImageSets/Context/train.txt", e.Message);
        e = Assert.Throws<DatasetNotFoundException>(() => PascalContext.Load(new PascalContextOptions(_root)));
        Assert.Contains(F("ImageSets", "Context", "train.txt"), e.Message);
    }
}
