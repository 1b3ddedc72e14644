using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Data.Formats;
using static TorchSharp.torch;

namespace InterroGate.Tests.Data;

[Collection("Torch")]
public sealed class CelebATests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-celeba-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Root => Path.Combine(_dir, "celeba");
    private string Cache => Path.Combine(_dir, "cache");
    private string AttrPath => Path.Combine(Root, CelebA.AttributesFile);
    private string PartPath => Path.Combine(Root, CelebA.PartitionFile);

    private CelebAOptions Options => new(Root) { CacheRoot = Cache, ImageSize = 16 };

    [Fact]
    public void Loads_the_official_layout_with_the_official_splits_and_attributes_as_binary_tasks()
    {
        CelebASample.Write(Root, 20, seed: 3);
        var splits = CelebA.Load(Options with { Tasks = [new("gender", "Male"), new("hat", "Wearing_Hat")] });
        Assert.Equal((16, 2, 2), (splits.Train.Count, splits.Validation.Count, splits.Test.Count));
        Assert.Equal(["gender", "hat"], splits.Train.Tasks.Names);
        Assert.All(splits.Train.Tasks, t => Assert.Equal(Tasks.TaskKind.Binary, t.Kind));
        Assert.Equal((3, 16, 16), splits.Train.ImageShape);

        // Targets: 1 where the file says 1, 0 where it says -1; the test split is the last two lines of the file.
        var lines = File.ReadAllLines(AttrPath);
        int male = Array.IndexOf(CelebASample.AttributeNames, "Male"), hat = Array.IndexOf(CelebASample.AttributeNames, "Wearing_Hat");
        using var batch = new DisposableBatch(splits.Test.GetBatch(new long[] { 0, 1 }));
        for (int i = 0; i < 2; i++)
        {
            var tokens = lines[2 + 18 + i].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(tokens[1 + male] == "1" ? 1f : 0f, batch["gender"][i, 0].item<float>());
            Assert.Equal(tokens[1 + hat] == "1" ? 1f : 0f, batch["hat"][i, 0].item<float>());
        }
        // Pixels: the decoded file, centre-cropped and area-resized, scaled by 1/255.
        var expected = CelebA.CropAndResize(ImageFiles.Read(Path.Combine(Root, CelebA.ImagesFolder, "000019.jpg")), 16);
        var got = batch[IMultiTaskDataset.ImageKey][0].mul(255).round().to(ScalarType.Byte).data<byte>().ToArray();
        Assert.Equal(expected, got);
    }

    [Fact]
    public void The_Kaggle_copy_with_CSV_annotations_and_nested_images_loads_as_the_release_does()
    {
        CelebASample.Write(Root, 20, seed: 5);
        var tasks = new CelebATask[] { new("gender", "Male"), new("hat", "Wearing_Hat") };
        var official = CelebA.Load(Options with { Tasks = tasks });

        // The same data as Kaggle lays it out: CSV files with header rows, the images one folder deeper.
        string kaggle = Path.Combine(_dir, "kaggle");
        string nested = Path.Combine(kaggle, CelebA.ImagesFolder, CelebA.ImagesFolder);
        Directory.CreateDirectory(nested);
        foreach (var f in Directory.GetFiles(Path.Combine(Root, CelebA.ImagesFolder))) File.Copy(f, Path.Combine(nested, Path.GetFileName(f)));
        var attr = File.ReadAllLines(AttrPath);
        File.WriteAllLines(Path.Combine(kaggle, "list_attr_celeba.csv"),
            [string.Join(",", ["image_id", .. attr[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)]),
             .. attr.Skip(2).Select(l => string.Join(",", l.Split(' ', StringSplitOptions.RemoveEmptyEntries)))]);
        File.WriteAllLines(Path.Combine(kaggle, "list_eval_partition.csv"),
            ["image_id,partition", .. File.ReadAllLines(PartPath).Select(l => l.Replace(' ', ','))]);
        var copy = CelebA.Load(new CelebAOptions(kaggle) { CacheRoot = Cache, ImageSize = 16, Tasks = tasks });

        Assert.Equal((official.Train.Count, official.Validation.Count, official.Test.Count), (copy.Train.Count, copy.Validation.Count, copy.Test.Count));
        using var a = new DisposableBatch(official.Train.GetBatch(Enumerable.Range(0, 16).Select(i => (long)i).ToArray()));
        using var b = new DisposableBatch(copy.Train.GetBatch(Enumerable.Range(0, 16).Select(i => (long)i).ToArray()));
        foreach (var key in new[] { IMultiTaskDataset.ImageKey, "gender", "hat" }) Assert.True(a[key].equal(b[key]).all().item<bool>(), key);

        // A CSV without its header row is named.
        File.WriteAllLines(Path.Combine(kaggle, "list_eval_partition.csv"), File.ReadAllLines(PartPath).Select(l => l.Replace(' ', ',')));
        var e = Assert.Throws<DataFormatException>(() => CelebA.ReadAnnotations(kaggle));
        Assert.Contains("expected the header 'image_id,partition'", e.Message);
    }

    [Fact]
    public void The_paper_tasks_are_gender_age_and_clothes_and_sizes_draw_seeded_subsets()
    {
        CelebASample.Write(Root, 30);
        var splits = CelebA.Load(Options with { TrainSize = 10, Seed = 1 });
        Assert.Equal(["gender", "age", "clothes"], splits.Train.Tasks.Names);
        Assert.Equal(10, splits.Train.Count);
        var again = CelebA.Load(Options with { TrainSize = 10, Seed = 1 });
        var other = CelebA.Load(Options with { TrainSize = 10, Seed = 2 });
        var idx = Enumerable.Range(0, 10).Select(i => (long)i).ToArray();
        using var a = new DisposableBatch(splits.Train.GetBatch(idx));
        using var b = new DisposableBatch(again.Train.GetBatch(idx));
        using var c = new DisposableBatch(other.Train.GetBatch(idx));
        Assert.True(a[IMultiTaskDataset.ImageKey].eq(b[IMultiTaskDataset.ImageKey]).all().item<bool>());
        Assert.False(a[IMultiTaskDataset.ImageKey].eq(c[IMultiTaskDataset.ImageKey]).all().item<bool>());
        var e = Assert.Throws<DataFormatException>(() => CelebA.Load(Options with { TrainSize = 25 }));
        Assert.Contains("24 images; 25 were asked for", e.Message);
    }

    [Fact]
    public void The_cache_is_built_once_and_rebuilt_when_the_source_changes()
    {
        CelebASample.Write(Root, 6);
        CelebAAnnotations Read() => CelebA.ReadAnnotations(Root);
        Assert.True(CelebACache.Ensure(Root, Read(), 16, Cache).Built);
        var (path, built) = CelebACache.Ensure(Root, Read(), 16, Cache);
        Assert.False(built);
        Assert.Equal([6L, 3, 16, 16], Npy.ReadHeader(path).Shape);
        Assert.True(CelebACache.Ensure(Root, Read(), 24, Cache).Built); // another size: its own cache

        // An image replaced: rebuilt, and the cache holds the new pixels.
        string image = Path.Combine(Root, CelebA.ImagesFolder, "000002.jpg");
        var white = new DecodedImage(Enumerable.Repeat((byte)255, CelebASample.Width * CelebASample.Height * 3).ToArray(), CelebASample.Height, CelebASample.Width, 3);
        ImageFiles.WriteJpeg(image, white);
        File.SetLastWriteTimeUtc(image, DateTime.UtcNow.AddMinutes(1));
        Assert.True(CelebACache.Ensure(Root, Read(), 16, Cache).Built);
        var row = Npy.Read(path).Data.AsSpan(1 * 3 * 16 * 16, 3 * 16 * 16).ToArray();
        Assert.All(row, v => Assert.InRange(v, (byte)250, (byte)255));

        // The attribute file edited: rebuilt. An interrupted build (no manifest) is never reused.
        File.AppendAllText(AttrPath, "\n");
        Assert.True(CelebACache.Ensure(Root, Read(), 16, Cache).Built);
        File.Delete(Path.Combine(CelebACache.Folder(Root, 16, Cache), "manifest.json"));
        Assert.True(CelebACache.Ensure(Root, Read(), 16, Cache).Built);
        Assert.False(CelebACache.Ensure(Root, Read(), 16, Cache).Built);
    }

    [Fact]
    public void Crop_and_resize_takes_the_central_square_and_averages_areas()
    {
        // 6 rows × 4 columns, gray: the central square is rows 1-4; 4×4 → 2×2 averages 2×2 blocks.
        var pixels = new byte[6 * 4];
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 4; x++) pixels[y * 4 + x] = (byte)(y * 40 + x * 4);
        var output = CelebA.CropAndResize(new DecodedImage(pixels, 6, 4, 1), 2);
        byte Mean(int y0, int x0) => (byte)Math.Round((pixels[y0 * 4 + x0] + pixels[y0 * 4 + x0 + 1] + pixels[(y0 + 1) * 4 + x0] + pixels[(y0 + 1) * 4 + x0 + 1]) / 4.0);
        var plane = new[] { Mean(1, 0), Mean(1, 2), Mean(3, 0), Mean(3, 2) };
        Assert.Equal(plane.Concat(plane).Concat(plane).ToArray(), output); // gray becomes three equal channels

        // 3 → 2: output 0 covers pixel 0 and half of pixel 1.
        var row = new byte[] { 0, 90, 180, 0, 90, 180, 0, 90, 180 };
        var small = CelebA.CropAndResize(new DecodedImage(row, 3, 3, 1), 2);
        Assert.Equal((byte)30, small[0]); // (0 + 0.5·90) / 1.5
        Assert.Equal((byte)150, small[1]); // (0.5·90 + 180) / 1.5
    }

    [Fact]
    public void Faulty_annotation_files_are_named_with_their_line()
    {
        CelebASample.Write(Root, 5);
        var attr = File.ReadAllLines(AttrPath);
        var part = File.ReadAllLines(PartPath);
        DataFormatException Fails(string[] attrLines, string[] partLines)
        {
            File.WriteAllLines(AttrPath, attrLines);
            File.WriteAllLines(PartPath, partLines);
            return Assert.Throws<DataFormatException>(() => CelebA.ReadAnnotations(Root));
        }
        string[] With(string[] lines, int i, string line) { var c = lines.ToArray(); c[i] = line; return c; }

        var e = Fails(With(attr, 0, "five"), part);
        Assert.Equal(AttrPath, e.Path);
        Assert.Contains("line 1", e.Message);
        Assert.Contains("line 4: 39 values for 40 attributes", Fails(With(attr, 3, attr[3][..attr[3].LastIndexOf(' ')]), part).Message);
        Assert.Contains("line 5: attribute 5_o_Clock_Shadow is '2'", Fails(With(attr, 4, "000003.jpg  2" + attr[4][attr[4].IndexOf(' ', 12)..]), part).Message);
        Assert.Contains("line 6: 000001.jpg is listed twice (first on line 3)", Fails(With(attr, 5, attr[2]), part).Message);
        Assert.Contains("declares 6 images, the file lists 5", Fails(With(attr, 0, "6"), part).Message);

        e = Fails(attr, With(part, 2, "000003.jpg 7"));
        Assert.Equal(PartPath, e.Path);
        Assert.Contains("line 3: partition '7'", e.Message);
        Assert.Contains("line 2: 000009.jpg has no line in list_attr_celeba.txt", Fails(attr, With(part, 1, "000009.jpg 0")).Message);
        Assert.Contains("has no line for 000005.jpg", Fails(attr, part[..4]).Message);

        File.WriteAllLines(AttrPath, attr);
        File.WriteAllLines(PartPath, part);
        var unknown = Assert.Throws<DataFormatException>(() => CelebA.Load(Options with { Tasks = [new("smile", "Smilling")] }));
        Assert.Contains("no attribute 'Smilling'", unknown.Message);
        Assert.Contains("Smiling", unknown.Message);

        File.WriteAllBytes(Path.Combine(Root, CelebA.ImagesFolder, "000003.jpg"), [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]); // a cut-short JPEG
        var damaged = Assert.Throws<DataFormatException>(() => CelebA.Load(Options));
        Assert.EndsWith("000003.jpg", damaged.Path);
        File.Delete(Path.Combine(Root, CelebA.ImagesFolder, "000004.jpg"));
        var missing = Assert.Throws<DataFormatException>(() => CelebA.Load(Options));
        Assert.EndsWith("000004.jpg", missing.Path);
        File.Delete(PartPath);
        Assert.Equal(PartPath, Assert.Throws<DataFormatException>(() => CelebA.ReadAnnotations(Root)).Path);
        Assert.Throws<DatasetNotFoundException>(() => CelebA.ReadAnnotations(Path.Combine(_dir, "nowhere")));
    }

    [Fact]
    public void The_registry_opens_celeba_with_the_configured_attributes_and_checks_the_keys()
    {
        CelebASample.Write(Root, 10);
        var config = new DataConfig
        {
            Dataset = "celeba", Root = Root, Cache = Cache, ImageSize = 8, TrainSize = 8, ValidationSize = 1, TestSize = 1,
            Attributes = new Dictionary<string, string> { ["smile"] = "Smiling", ["gender"] = "Male" },
        };
        config.Validate("data");
        var splits = DataCatalog.Open(config);
        Assert.Equal(["smile", "gender"], splits.Test.Tasks.Names);
        Assert.Equal((3, 8, 8), splits.Test.ImageShape);

        Assert.Equal("data.attributes", Assert.Throws<ConfigException>(() => (config with { Dataset = "multifashion", ImageSize = 32, Cache = null }).Validate("data")).Key);
        Assert.Equal("data.attributes", Assert.Throws<ConfigException>(() => (config with { Attributes = new Dictionary<string, string>() }).Validate("data")).Key);
        Assert.Equal("data.imageSize", Assert.Throws<ConfigException>(() => (config with { ImageSize = 4 }).Validate("data")).Key);
        Assert.Equal("data.root", Assert.Throws<ConfigException>(() => (config with { Root = null }).Validate("data")).Key);
    }

    /// <summary>A batch whose tensors are disposed with it.</summary>
    private sealed class DisposableBatch(Dictionary<string, Tensor> batch) : IDisposable
    {
        public Tensor this[string key] => batch[key];
        public void Dispose()
        {
            foreach (var t in batch.Values) t.Dispose();
        }
    }
}
