// MultiFashion (the Multi-MNIST construction of Sabour et al. 2017, as used by Lin et al. 2019 and later
// multi-task work, applied to Fashion-MNIST): two items per 36×36 image, one task per item.
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>Sizes of the three splits and the seed that draws the pairs.</summary>
public sealed record MultiFashionOptions(int TrainSize = 50_000, int ValidationSize = 10_000, int TestSize = 10_000, int Seed = 0)
{
    public const int ValidationPool = 10_000;
}

/// <summary>
/// Item A at the top-left corner and item B shifted 8 pixels right and down on a 36×36 canvas, merged by
/// pixel-wise maximum. Task top_left is A's class, bottom_right is B's. Validation pairs come from 10,000
/// training images held apart, training pairs from the other 50,000, test pairs from the test images.
/// </summary>
public static class MultiFashion
{
    public const int Canvas = 36, Shift = 8, Item = 28;

    public static readonly TaskSet TaskSet = new([
        new TaskSpec("top_left", TaskKind.Classification, 10),
        new TaskSpec("bottom_right", TaskKind.Classification, 10),
    ]);

    public static DatasetSplits Load(string root, MultiFashionOptions options) => Build(FashionMnist.Load(root), options);

    public static DatasetSplits Build(FashionMnist source, MultiFashionOptions options)
    {
        int trainImages = source.TrainImages.Count, testImages = source.TestImages.Count;
        int valPool = Math.Min(MultiFashionOptions.ValidationPool, trainImages / 6);
        int trainPool = trainImages - valPool;
        Require(options.TrainSize, trainPool, "trainSize");
        Require(options.ValidationSize, valPool, "validationSize");
        Require(options.TestSize, testImages, "testSize");

        var shuffled = Enumerable.Range(0, trainImages).ToArray();
        new Random(options.Seed).Shuffle(shuffled);
        var val = shuffled[..valPool];
        var train = shuffled[valPool..];
        var test = Enumerable.Range(0, testImages).ToArray();

        var (trainCanvas, trainA, trainB) = Compose(source.TrainImages.Data, source.TrainLabels, train, options.TrainSize, options.Seed * 3 + 1);
        var (mean, std) = Statistics(trainCanvas);
        return new DatasetSplits(
            Dataset("multifashion/train", trainCanvas, trainA, trainB, mean, std),
            Dataset("multifashion/val", Compose(source.TrainImages.Data, source.TrainLabels, val, options.ValidationSize, options.Seed * 3 + 2), mean, std),
            Dataset("multifashion/test", Compose(source.TestImages.Data, source.TestLabels, test, options.TestSize, options.Seed * 3 + 3), mean, std));
    }

    /// <summary>Sample i pairs pool[i] (A) with a seeded random other image of the same pool (B).</summary>
    public static (byte[] Canvas, long[] A, long[] B) Compose(byte[] images, byte[] labels, int[] pool, int count, int seed)
    {
        var rng = new Random(seed);
        var canvas = new byte[(long)count * Canvas * Canvas];
        var a = new long[count];
        var b = new long[count];
        for (int i = 0; i < count; i++)
        {
            int ia = pool[i];
            int j = rng.Next(pool.Length - 1);
            int ib = pool[j >= i ? j + 1 : j]; // any pool image but A's own
            a[i] = labels[ia];
            b[i] = labels[ib];
            var dst = canvas.AsSpan(i * Canvas * Canvas, Canvas * Canvas);
            for (int y = 0; y < Item; y++)
                images.AsSpan(ia * Item * Item + y * Item, Item).CopyTo(dst.Slice(y * Canvas, Item));
            for (int y = 0; y < Item; y++)
            {
                var src = images.AsSpan(ib * Item * Item + y * Item, Item);
                var row = dst.Slice((y + Shift) * Canvas + Shift, Item);
                for (int x = 0; x < Item; x++) if (src[x] > row[x]) row[x] = src[x];
            }
        }
        return (canvas, a, b);
    }

    private static (double Mean, double Std) Statistics(byte[] canvas)
    {
        double sum = 0, sq = 0;
        foreach (var v in canvas) { sum += v; sq += (double)v * v; }
        double mean = sum / canvas.Length / 255, var = sq / canvas.Length / (255.0 * 255) - mean * mean;
        return (mean, Math.Sqrt(Math.Max(var, 1e-12)));
    }

    private static InMemoryDataset Dataset(string name, (byte[] Canvas, long[] A, long[] B) c, double mean, double std) =>
        Dataset(name, c.Canvas, c.A, c.B, mean, std);

    private static InMemoryDataset Dataset(string name, byte[] canvas, long[] a, long[] b, double mean, double std)
    {
        using var scope = NewDisposeScope(); // the data set keeps handles of its own
        return new(name, TaskSet, tensor(canvas, dtype: ScalarType.Byte).view(a.Length, 1, Canvas, Canvas),
            new Dictionary<string, Tensor> { ["top_left"] = tensor(a), ["bottom_right"] = tensor(b) }, mean, std);
    }

    private static void Require(int size, int pool, string key)
    {
        if (size < 1 || size > pool)
            throw new Configuration.ConfigException($"data.{key}", $"{size} is out of range; valid: 1 to {pool} (the pool this split draws from)");
    }
}
