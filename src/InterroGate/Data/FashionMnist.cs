namespace InterroGate.Data;

/// <summary>
/// Fashion-MNIST (Xiao et al., 2017) from its four IDX files, raw or .gz. The Debian package
/// dataset-fashion-mnist installs them under <see cref="DefaultRoot"/>; INTERROGATE_FASHION_MNIST overrides it.
/// </summary>
public sealed record FashionMnist(IdxArray TrainImages, byte[] TrainLabels, IdxArray TestImages, byte[] TestLabels)
{
    public const string PackageRoot = "/usr/share/datasets/fashion-mnist";

    public static readonly IReadOnlyList<string> ClassNames =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    public static string DefaultRoot => Environment.GetEnvironmentVariable("INTERROGATE_FASHION_MNIST") is { Length: > 0 } r ? r : PackageRoot;

    public static FashionMnist Load(string root)
    {
        var trainImages = IdxReader.Read(Find(root, "train-images-idx3-ubyte"));
        var trainLabels = IdxReader.Read(Find(root, "train-labels-idx1-ubyte"));
        var testImages = IdxReader.Read(Find(root, "t10k-images-idx3-ubyte"));
        var testLabels = IdxReader.Read(Find(root, "t10k-labels-idx1-ubyte"));
        Check(root, "train", trainImages, trainLabels);
        Check(root, "t10k", testImages, testLabels);
        return new FashionMnist(trainImages, trainLabels.Data, testImages, testLabels.Data);
    }

    /// <summary>A one-line status for the doctor: where the files are and how many images, or why not.</summary>
    public static string Describe(string root)
    {
        var f = Load(root);
        return $"{root}: {f.TrainImages.Count} training and {f.TestImages.Count} test images";
    }

    private static string Find(string root, string name)
    {
        foreach (var candidate in new[] { name, name + ".gz" })
        {
            var p = Path.Combine(root, candidate);
            if (File.Exists(p)) return p;
        }
        // A folder the user named holds the wrong files: installing the package would not change that folder.
        if (Path.TrimEndingDirectorySeparator(Path.GetFullPath(root)) != Path.TrimEndingDirectorySeparator(Path.GetFullPath(PackageRoot)))
            throw new DatasetNotFoundException($"Fashion-MNIST not found: {Path.Combine(root, name)}(.gz) does not exist; the folder must hold the four IDX files " +
                                               $"(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally .gz; the package dataset-fashion-mnist installs them in {PackageRoot}).");
        string install = Environment.UserName == "root" ? "apt-get install -y dataset-fashion-mnist" : "sudo apt-get install -y dataset-fashion-mnist";
        throw new DatasetNotFoundException(
            $"Fashion-MNIST not found: {Path.Combine(root, name)}(.gz) does not exist. Install it with `{install}` " +
            $"(files go to {PackageRoot}), or set INTERROGATE_FASHION_MNIST or data.root to a folder holding the four IDX files.");
    }

    private static void Check(string root, string split, IdxArray images, IdxArray labels)
    {
        string where = Path.Combine(root, split);
        if (images.Dimensions.Length != 3 || images.Dimensions[1] != 28 || images.Dimensions[2] != 28)
            throw new DataFormatException(where + "-images", $"images must be N×28×28, not {string.Join("×", images.Dimensions)}");
        if (labels.Dimensions.Length != 1 || labels.Count != images.Count)
            throw new DataFormatException(where + "-labels", $"{labels.Count} labels for {images.Count} images");
        int bad = Array.FindIndex(labels.Data, l => l > 9);
        if (bad >= 0) throw new DataFormatException(where + "-labels", $"label {labels.Data[bad]} at index {bad} is outside 0..9");
    }
}
