using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>
/// A small learnable data set for tests and smoke runs: 1×16×16 images of noise plus a bright square in
/// one of four quadrants and a horizontal bar at one of three heights. Tasks: quadrant (4 classes),
/// bar (3 classes), and position (regression: the square's centre, in [0, 1]).
/// </summary>
public static class Synthetic
{
    public const int Size = 16;

    public static readonly TaskSet TaskSet = new([
        new TaskSpec("quadrant", TaskKind.Classification, 4),
        new TaskSpec("bar", TaskKind.Classification, 3),
        new TaskSpec("position", TaskKind.Regression, 2),
    ]);

    public static DatasetSplits Create(int train, int validation, int test, int seed) =>
        new(Make("synthetic/train", train, seed * 3 + 1), Make("synthetic/val", validation, seed * 3 + 2), Make("synthetic/test", test, seed * 3 + 3));

    public static InMemoryDataset Make(string name, int count, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var rng = new Random(seed);
        var images = new float[count * Size * Size];
        var quadrant = new long[count];
        var bar = new long[count];
        var position = new float[count * 2];
        for (int i = 0; i < count; i++)
        {
            var img = images.AsSpan(i * Size * Size, Size * Size);
            for (int p = 0; p < img.Length; p++) img[p] = (float)(rng.NextDouble() * 0.3);
            int q = rng.Next(4), b = rng.Next(3);
            int x0 = (q % 2) * 8 + rng.Next(0, 4), y0 = (q / 2) * 8 + rng.Next(0, 4);
            for (int y = y0; y < y0 + 4; y++) for (int x = x0; x < x0 + 4; x++) img[y * Size + x] += 1f;
            int row = 2 + 5 * b;
            for (int x = 0; x < Size; x++) img[row * Size + x] += 0.6f;
            quadrant[i] = q;
            bar[i] = b;
            position[2 * i] = (x0 + 2) / (float)Size;
            position[2 * i + 1] = (y0 + 2) / (float)Size;
        }
        using var scope = NewDisposeScope(); // the data set keeps handles of its own
        return new InMemoryDataset(name, TaskSet, tensor(images).view(count, 1, Size, Size),
            new Dictionary<string, Tensor> { ["quadrant"] = tensor(quadrant), ["bar"] = tensor(bar), ["position"] = tensor(position).view(count, 2) });
    }
}
