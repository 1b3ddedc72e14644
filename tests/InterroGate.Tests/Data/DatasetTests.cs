using InterroGate.Configuration;
using InterroGate.Data;
using static TorchSharp.torch;

namespace InterroGate.Tests.Data;

[Collection("Torch")]
public sealed class DatasetTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-data-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A fake Fashion-MNIST: image i is filled with the value i + 1 (test image j with 200 + j); label i % 10.</summary>
    private string FakeFashionMnist(int train = 60, int test = 12)
    {
        void Write(string prefix, int n, int offset)
        {
            var images = new byte[n * 28 * 28];
            for (int i = 0; i < n; i++) Array.Fill(images, (byte)(offset + i), i * 784, 784);
            IdxReader.Write(Path.Combine(_dir, $"{prefix}-images-idx3-ubyte.gz"), [n, 28, 28], images);
            IdxReader.Write(Path.Combine(_dir, $"{prefix}-labels-idx1-ubyte"), [n], Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray());
        }
        Write("train", train, 1);
        Write("t10k", test, 200);
        return _dir;
    }

    [Fact]
    public void MultiFashion_places_A_top_left_and_B_shifted_by_8_merged_by_maximum()
    {
        var f = FashionMnist.Load(FakeFashionMnist());
        var pool = Enumerable.Range(0, 60).ToArray();
        var (canvas, a, b) = MultiFashion.Compose(f.TrainImages.Data, f.TrainLabels, pool, 20, seed: 5);
        for (int i = 0; i < 20; i++)
        {
            var img = canvas.AsSpan(i * 36 * 36, 36 * 36);
            byte va = img[0], vb = img[35 * 36 + 35];
            Assert.Equal(va - 1, pool[i]);                          // A is image pool[i] (value i + 1)
            Assert.NotEqual(va, vb);                                // B is another image
            Assert.Equal((long)((va - 1) % 10), a[i]);
            Assert.Equal((long)((vb - 1) % 10), b[i]);
            Assert.Equal(0, img[35]);                               // top-right corner: neither item
            Assert.Equal(0, img[35 * 36]);                          // bottom-left corner: neither item
            Assert.Equal(Math.Max(va, vb), img[10 * 36 + 10]);      // overlap: pixel-wise maximum
            Assert.Equal(va, img[3 * 36 + 27]);                     // only A
            Assert.Equal(vb, img[30 * 36 + 30]);                    // only B
        }
    }

    [Fact]
    public void MultiFashion_splits_are_deterministic_and_validation_is_held_apart()
    {
        var root = FakeFashionMnist();
        var options = new MultiFashionOptions(TrainSize: 40, ValidationSize: 10, TestSize: 12, Seed: 3);
        var s1 = MultiFashion.Load(root, options);
        var s2 = MultiFashion.Load(root, options);
        var s3 = MultiFashion.Load(root, options with { Seed = 4 });
        long[] all(IMultiTaskDataset d) => Enumerable.Range(0, d.Count).Select(i => (long)i).ToArray();
        Tensor image(IMultiTaskDataset d) => d.GetBatch(all(d))[IMultiTaskDataset.ImageKey];
        Assert.True(image(s1.Train).equal(image(s2.Train)).all().item<bool>());
        Assert.False(image(s1.Train).shape.SequenceEqual(image(s3.Train).shape) && image(s1.Train).equal(image(s3.Train)).all().item<bool>());

        // The library's own splits, read back: image i of the fake set is filled with i + 1 (test image j with
        // 200 + j), so a canvas's corners name its two items. 60 training images: 10 for validation, 50 for training.
        int[] items(IMultiTaskDataset d)
        {
            using var raw = (image(d) * d.Input.Std + d.Input.Mean).mul(255).round().to(ScalarType.Int32);
            var a = raw[.., 0, 0, 0].data<int>().ToArray();
            var b = raw[.., 0, 35, 35].data<int>().ToArray();
            return a.Concat(b).ToArray();
        }
        var val = items(s1.Validation).Select(v => v - 1).ToHashSet();
        var train = items(s1.Train).Select(v => v - 1).ToHashSet();
        var test = items(s1.Test).Select(v => v - 200).ToHashSet();
        Assert.Empty(val.Intersect(train));
        Assert.Equal(10, val.Count);                        // the 10 A items are distinct; every B comes from the same pool
        Assert.InRange(train.Count, 40, 50);
        Assert.All(val.Concat(train), id => Assert.InRange(id, 0, 59));
        Assert.All(test, id => Assert.InRange(id, 0, 11)); // test canvases read the test images only
        Assert.Equal(12, s1.Test.Count);
        Assert.Equal(new[] { "top_left", "bottom_right" }, s1.Train.Tasks.Names);
    }

    [Fact]
    public void Sizes_beyond_the_pool_name_the_key_and_the_range()
    {
        var e = Assert.Throws<ConfigException>(() => MultiFashion.Load(FakeFashionMnist(), new MultiFashionOptions(TrainSize: 1000, ValidationSize: 5, TestSize: 5)));
        Assert.Equal("data.trainSize", e.Key);
        Assert.Contains("1 to 50", e.Message);
    }

    [Fact]
    public void A_missing_data_set_names_the_path_and_the_files_a_named_folder_must_hold()
    {
        // A folder the user named (data.root, --data-root): the files it lacks, not an install command that fills another folder.
        var e = Assert.Throws<DatasetNotFoundException>(() => FashionMnist.Load(Path.Combine(_dir, "nowhere")));
        Assert.Contains(Path.Combine(_dir, "nowhere", "train-images-idx3-ubyte"), e.Message);
        Assert.Contains("the folder must hold the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte", e.Message);
        Assert.DoesNotContain("apt-get", e.Message);
    }

    [Fact]
    public void The_real_Fashion_MNIST_is_installed_and_builds_MultiFashion()
    {
        var f = FashionMnist.Load(FashionMnist.PackageRoot);
        Assert.Equal(60000, f.TrainImages.Count);
        Assert.Equal(10000, f.TestImages.Count);
        var s = MultiFashion.Build(f, new MultiFashionOptions(TrainSize: 500, ValidationSize: 100, TestSize: 100));
        var batch = s.Train.GetBatch([0, 1, 2]);
        Assert.Equal(new long[] { 3, 1, 36, 36 }, batch[IMultiTaskDataset.ImageKey].shape);
        // The real labels: all ten classes in each task, and the two items of a canvas are different draws.
        var everything = s.Train.GetBatch(Enumerable.Range(0, 500).Select(i => (long)i).ToArray());
        var a = everything["top_left"].data<long>().ToArray();
        var b = everything["bottom_right"].data<long>().ToArray();
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), a.Distinct().Order());
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), b.Distinct().Order());
        Assert.InRange(a.Zip(b).Count(p => p.First == p.Second), 10, 150);  // about a tenth agree by chance
    }

    [Fact]
    public void The_loader_visits_every_sample_once_per_epoch_in_a_seeded_order_and_resumes_exactly()
    {
        var data = Synthetic.Make("s", 50, 1);
        var loader = new DataLoader(data, 8, shuffle: true, seed: 9, dropLast: false);
        Assert.Equal(7, loader.BatchesPerEpoch);
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (long)i), loader.Order(0).Order());
        Assert.Equal(loader.Order(2), new DataLoader(data, 8, true, 9, false).Order(2));
        Assert.NotEqual(loader.Order(0), loader.Order(1));
        var full = loader.Epoch(1).Select(b => b["bar"].data<long>().ToArray()).ToList();
        var resumed = loader.Epoch(1, skipBatches: 3).Select(b => b["bar"].data<long>().ToArray()).ToList();
        Assert.Equal(50, full.Sum(b => b.Length));
        Assert.Equal(full.Skip(3), resumed);
        Assert.Equal(6, new DataLoader(data, 8, true, 9, dropLast: true).Epoch(0).Count());
    }

    [Fact]
    public void A_batch_that_does_not_read_fails_with_its_own_error_and_one_prefetched_behind_a_failure_is_left_quietly()
    {
        var data = new FailingFrom(Synthetic.Make("s", 40, 1), firstFailingCall: 3);
        var loader = new DataLoader(data, 8, shuffle: false, seed: 0, dropLast: false);
        // The third batch's error, as the data set threw it (not wrapped in an AggregateException), after two batches.
        int read = 0;
        var e = Assert.Throws<DataFormatException>(() => { foreach (var _ in loader.Epoch(0)) read++; });
        Assert.Equal(2, read);
        Assert.Contains("batch 3 does not read", e.Message);
        // A caller that fails on the second batch, while the third (prefetched) fails too: the caller's error stands.
        var mine = Assert.Throws<InvalidOperationException>(() =>
        {
            foreach (var _ in new DataLoader(new FailingFrom(Synthetic.Make("s", 40, 1), firstFailingCall: 3), 8, false, 0, false).Epoch(0).Skip(1))
                throw new InvalidOperationException("the caller's own");
        });
        Assert.Equal("the caller's own", mine.Message);
    }

    private sealed class FailingFrom(IMultiTaskDataset inner, int firstFailingCall) : ForwardingDataset(inner)
    {
        private int _calls;

        public override Dictionary<string, Tensor> GetBatch(ReadOnlySpan<long> indices)
        {
            int call = Interlocked.Increment(ref _calls);
            if (call >= firstFailingCall) throw new DataFormatException("s", $"batch {call} does not read");
            return Inner.GetBatch(indices);
        }
    }

    [Fact]
    public void The_shuffled_order_is_the_same_in_every_process()
    {
        // Pinned: an order drawn from a per-process random seed (such as HashCode.Combine's) would differ here in
        // almost every run, and a run resumed in a new process would continue its epoch in another order.
        var loader = new DataLoader(Synthetic.Make("s", 12, 1), 4, shuffle: true, seed: 9, dropLast: false);
        Assert.Equal("5,2,0,8,11,9,7,4,10,3,1,6", string.Join(",", loader.Order(0)));
        Assert.Equal("4,3,2,7,8,1,6,10,5,11,0,9", string.Join(",", loader.Order(1)));
    }

    private string UserFolder(bool withVal = true)
    {
        string root = Path.Combine(_dir, withVal ? "user" : "user-no-val");
        File.WriteAllText(Path.Combine(Directory.CreateDirectory(root).FullName, "tasks.json"),
            """{"tasks":[{"name":"kind","kind":"classification","classes":3},{"name":"size","kind":"regression","outputs":2}]}""");
        foreach (var split in withVal ? new[] { "train", "val", "test" } : ["train", "test"])
        {
            string d = Directory.CreateDirectory(Path.Combine(root, split)).FullName;
            Npy.Write(Path.Combine(d, "images.npy"), [20, 8, 8], new byte[20 * 64]);
            Npy.Write(Path.Combine(d, "kind.npy"), [20], Enumerable.Range(0, 20).Select(i => (long)(i % 3)).ToArray());
            Npy.Write(Path.Combine(d, "size.npy"), [20, 2], new float[40]);
        }
        return root;
    }

    [Fact]
    public void A_user_folder_loads_with_its_tasks_and_holds_out_validation_when_absent()
    {
        var s = UserFolderDataset.Load(UserFolder());
        Assert.Equal(["kind", "size"], s.Train.Tasks.Names);
        Assert.Equal((1, 8, 8), s.Train.ImageShape);
        Assert.Equal(20, s.Validation.Count);
        var noVal = UserFolderDataset.Load(UserFolder(withVal: false), seed: 1);
        Assert.Equal(2, noVal.Validation.Count);
        Assert.Equal(18, noVal.Train.Count);
    }

    [Fact]
    public void User_folder_faults_name_the_file()
    {
        string root = UserFolder();
        Npy.Write(Path.Combine(root, "train", "kind.npy"), [20], Enumerable.Range(0, 20).Select(i => (long)(i % 4)).ToArray());
        var e = Assert.Throws<DataFormatException>(() => UserFolderDataset.Load(root));
        Assert.Contains(Path.Combine(root, "train", "kind.npy"), e.Message);
        Assert.Contains("outside 0..2", e.Message);

        Npy.Write(Path.Combine(root, "train", "kind.npy"), [19], new long[19]);
        Assert.Contains("19 targets for 20 images", Assert.Throws<DataFormatException>(() => UserFolderDataset.Load(root)).Message);

        Npy.Write(Path.Combine(root, "train", "kind.npy"), [20], new float[20]);
        Assert.Contains("must be integers", Assert.Throws<DataFormatException>(() => UserFolderDataset.Load(root)).Message);

        File.Delete(Path.Combine(root, "train", "kind.npy"));
        Assert.Contains("missing", Assert.Throws<DataFormatException>(() => UserFolderDataset.Load(root)).Message);
        Npy.Write(Path.Combine(root, "train", "kind.npy"), [20], Enumerable.Range(0, 20).Select(i => (long)(i % 3)).ToArray());
        UserFolderDataset.Load(root).Dispose(); // whole again

        // Regression targets that are not finite; a test split whose images differ from the training images'.
        Npy.Write(Path.Combine(root, "val", "size.npy"), [20, 2], Enumerable.Range(0, 40).Select(i => i == 7 ? float.NaN : 0f).ToArray());
        e = Assert.Throws<DataFormatException>(() => UserFolderDataset.Load(root));
        Assert.Contains(Path.Combine(root, "val", "size.npy"), e.Message);
        Assert.Contains("not finite", e.Message);
        Npy.Write(Path.Combine(root, "val", "size.npy"), [20, 2], new float[40]);
        Npy.Write(Path.Combine(root, "test", "images.npy"), [20, 3, 8, 8], new byte[20 * 3 * 64]);
        e = Assert.Throws<DataFormatException>(() => UserFolderDataset.Load(root));
        Assert.Contains(Path.Combine(root, "test", "images.npy"), e.Message);
        Assert.Contains("images of 3×8×8", e.Message);
        Assert.Contains("train/images.npy holds 1×8×8", e.Message);

        // Images saved in NumPy's [N, H, W, C] order: named as such, with the line that writes them in the folder's order.
        Npy.Write(Path.Combine(root, "test", "images.npy"), [20, 1, 8, 8], new byte[20 * 64]);
        Npy.Write(Path.Combine(root, "train", "images.npy"), [20, 8, 8, 3], new byte[20 * 3 * 64]);
        e = Assert.Throws<DataFormatException>(() => UserFolderDataset.Load(root));
        Assert.Contains(Path.Combine(root, "train", "images.npy"), e.Message);
        Assert.Contains("images of shape (20, 8, 8, 3) look like [N, H, W, C] (8×8 with 3 channels)", e.Message);
        Assert.Contains("images.transpose(0, 3, 1, 2)", e.Message);
        Npy.Write(Path.Combine(root, "train", "images.npy"), [20, 3, 8, 4], new byte[20 * 3 * 32]); // 3 channels, 4 wide: [N, C, H, W]
        Assert.DoesNotContain("look like", Assert.Throws<DataFormatException>(() => UserFolderDataset.Load(root)).Message);
        Npy.Write(Path.Combine(root, "train", "images.npy"), [20, 8, 8], new byte[20 * 64]);

        File.WriteAllText(Path.Combine(root, "tasks.json"), """{"tasks":[{"name":"kind","kind":"classification","classes":3,"colour":1}]}""");
        Assert.Contains("tasks.json", Assert.Throws<DataFormatException>(() => UserFolderDataset.Load(root)).Message);
        Assert.Throws<DatasetNotFoundException>(() => UserFolderDataset.Load(Path.Combine(_dir, "empty")));
    }

    [Theory]
    [InlineData("../x", "no '/' or '\\'")]
    [InlineData("a\\b", "no '/' or '\\'")]
    [InlineData("..", "names a folder")]
    [InlineData(" depth", "starts or ends with a space")]
    [InlineData("depth\t", "control character")]
    [InlineData("image", "'image' is taken")]
    [InlineData("shared", "'shared' is taken")]
    public void A_task_name_that_cannot_be_a_file_name_is_refused_naming_the_task(string name, string why)
    {
        string path = Path.Combine(Directory.CreateDirectory(Path.Combine(_dir, "names")).FullName, "tasks.json");
        File.WriteAllText(path, $$"""{"tasks":[{"name":"ok","kind":"binary"},{"name":{{System.Text.Json.JsonSerializer.Serialize(name)}},"kind":"binary"}]}""");
        var e = Assert.Throws<DataFormatException>(() => UserFolderDataset.ReadTasks(path));
        Assert.Contains(path, e.Message);
        Assert.Contains($"tasks[1] is named \"{name}\"", e.Message);
        Assert.Contains(why, e.Message);
        // The same names as CelebA tasks (data.attributes) are refused under that key.
        var config = new DataConfig { Dataset = "celeba", Root = _dir, Attributes = new Dictionary<string, string> { [name] = "Smiling" } };
        Assert.Equal("data.attributes", Assert.Throws<ConfigException>(() => config.Validate("data")).Key);
        // A task set made through the API refuses it too.
        Assert.Contains(why, Assert.Throws<ArgumentException>(() => new InterroGate.Tasks.TaskSet([new(name, InterroGate.Tasks.TaskKind.Binary, 1)])).Message);
        Assert.Null(InterroGate.Tasks.TaskSpec.NameProblem("depth-2 (NYU)")); // anything else is a name
    }

    [Fact]
    public void Binary_targets_outside_0_to_1_name_the_file_and_the_sample()
    {
        string root = Path.Combine(_dir, "binary");
        File.WriteAllText(Path.Combine(Directory.CreateDirectory(root).FullName, "tasks.json"), """{"tasks":[{"name":"smile","kind":"binary"}]}""");
        foreach (var split in new[] { "train", "test" })
        {
            string d = Directory.CreateDirectory(Path.Combine(root, split)).FullName;
            Npy.Write(Path.Combine(d, "images.npy"), [10, 8, 8], new byte[10 * 64]);
            Npy.Write(Path.Combine(d, "smile.npy"), [10], Enumerable.Range(0, 10).Select(i => i % 2 == 0 ? 1f : 0.25f).ToArray()); // soft labels are fine
        }
        UserFolderDataset.Load(root).Dispose();
        Npy.Write(Path.Combine(root, "train", "smile.npy"), [10], Enumerable.Range(0, 10).Select(i => i == 4 ? 7f : 0f).ToArray());
        var e = Assert.Throws<DataFormatException>(() => UserFolderDataset.Load(root));
        Assert.Contains(Path.Combine(root, "train", "smile.npy"), e.Message);
        Assert.Contains("sample 4 has 7", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_user_folder_reads_its_images_from_the_file_row_by_row(bool asFloat)
    {
        string root = Path.Combine(_dir, asFloat ? "mapped-f4" : "mapped-u1");
        File.WriteAllText(Path.Combine(Directory.CreateDirectory(root).FullName, "tasks.json"), """{"tasks":[{"name":"kind","kind":"classification","classes":3}]}""");
        const int n = 30, c = 3, h = 4, w = 5;
        var pixels = Enumerable.Range(0, n * c * h * w).Select(i => (byte)(i * 7 % 256)).ToArray();
        foreach (var split in new[] { "train", "test" })
        {
            string d = Directory.CreateDirectory(Path.Combine(root, split)).FullName;
            if (asFloat) Npy.Write(Path.Combine(d, "images.npy"), [n, c, h, w], pixels.Select(b => b / 10f).ToArray());
            else Npy.Write(Path.Combine(d, "images.npy"), [n, c, h, w], pixels);
            Npy.Write(Path.Combine(d, "kind.npy"), [n], Enumerable.Range(0, n).Select(i => (long)(i % 3)).ToArray());
        }
        var splits = UserFolderDataset.Load(root, seed: 2);
        Assert.Equal(27, splits.Train.Count);
        Assert.Equal(3, splits.Validation.Count);
        var all = splits.Test.GetBatch(Enumerable.Range(0, n).Select(i => (long)i).ToArray());
        var expected = tensor(pixels.Select(b => asFloat ? b / 10f : b / 255f).ToArray()).view(n, c, h, w);
        Assert.True(all["image"].allclose(expected, rtol: 0, atol: 1e-6));

        // The held-out split and the rest are views of the same rows: together every row once, each with its own target.
        var val = splits.Validation.GetBatch([0, 1, 2]);
        var train = splits.Train.GetBatch(Enumerable.Range(0, 27).Select(i => (long)i).ToArray());
        var rows = new HashSet<long>();
        foreach (var batch in new[] { val, train })
            for (int i = 0; i < batch["kind"].shape[0]; i++)
            {
                var image = batch["image"][i];
                int row = Enumerable.Range(0, n).Single(r => expected[r].allclose(image, rtol: 0, atol: 1e-6));
                Assert.True(rows.Add(row));
                Assert.Equal(row % 3, batch["kind"][i].item<long>());
            }
        Assert.Equal(n, rows.Count);
    }
}
