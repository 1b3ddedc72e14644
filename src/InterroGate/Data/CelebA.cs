// CelebA (Liu et al., ICCV 2015) in its official layout, the face-attribute benchmark of InterroGate's Table 9:
// any of the 40 attributes as binary tasks, images centre-cropped and resized once into a cached .npy file.
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using InterroGate.Data.Formats;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>A binary task read from one CelebA attribute (1 where the attribute is present, 0 where it is absent).</summary>
public sealed record CelebATask(string Name, string Attribute);

/// <summary>Where CelebA lies, which attributes become tasks, and the image size.</summary>
public sealed record CelebAOptions(string Root)
{
    /// <summary>Tasks in order; by default the paper's three (<see cref="CelebA.PaperTasks"/>).</summary>
    public IReadOnlyList<CelebATask> Tasks { get; init; } = CelebA.PaperTasks;

    /// <summary>Side of the square images the model reads (the paper: 32).</summary>
    public int ImageSize { get; init; } = 32;

    /// <summary>Images drawn (seeded) from the official train split; null: all of it (162,770 in the release).</summary>
    public int? TrainSize { get; init; }

    /// <summary>Images drawn from the official validation split; null: all of it (19,867).</summary>
    public int? ValidationSize { get; init; }

    /// <summary>Images drawn from the official test split; null: all of it (19,962).</summary>
    public int? TestSize { get; init; }

    /// <summary>Draws the subsets when a size is smaller than its split.</summary>
    public int Seed { get; init; }

    /// <summary>Folder for the decoded-image cache; null: <see cref="CelebA.DefaultCacheRoot"/>.</summary>
    public string? CacheRoot { get; init; }

    /// <summary>Told (images done, images in all) while the cache is built.</summary>
    public Action<int, int>? Progress { get; init; }
}

/// <summary>The two annotation files of a CelebA folder, parsed and checked against each other.</summary>
/// <param name="Files">Image file names in the order of list_attr_celeba.txt.</param>
/// <param name="AttributeNames">The attribute names of the file's second line, in column order.</param>
/// <param name="Values">Per image, per attribute: +1 or −1.</param>
/// <param name="Partition">Per image: 0 train, 1 validation, 2 test.</param>
public sealed record CelebAAnnotations(string[] Files, string[] AttributeNames, sbyte[][] Values, byte[] Partition)
{
    /// <summary>The attribute file they were read from (list_attr_celeba.txt, or .csv in the Kaggle copy).</summary>
    public string AttributesPath { get; init; } = "";
    /// <summary>The partition file they were read from.</summary>
    public string PartitionPath { get; init; } = "";
    /// <summary>The folder of the images (img_align_celeba/, or img_align_celeba/img_align_celeba/ in the Kaggle copy).</summary>
    public string ImagesDirectory { get; init; } = "";

    /// <summary>Column of <paramref name="attribute"/>; an unknown name is an error listing the valid ones.</summary>
    public int Column(string attribute, string file)
    {
        int i = Array.IndexOf(AttributeNames, attribute);
        return i >= 0 ? i : throw new DataFormatException(file,
            $"has no attribute '{attribute}'; its attributes are {string.Join(", ", AttributeNames)}");
    }
}

/// <summary>
/// Loads CelebA from the official release folder: <c>img_align_celeba/*.jpg</c> (the aligned and cropped 178×218 faces),
/// <c>list_attr_celeba.txt</c> (image count, the 40 attribute names, then one line per image with 1 / −1 per attribute)
/// and <c>list_eval_partition.txt</c> (one line per image: 0 train, 1 validation, 2 test). Each image is cropped to
/// its central square and resized to <see cref="CelebAOptions.ImageSize"/> by area averaging, once: the decoded images
/// are kept in a cache (<see cref="CelebACache"/>) that later runs read row by row, so no epoch decodes a JPEG. The splits
/// are the official partition's.
/// </summary>
public static class CelebA
{
    public const string ImagesFolder = "img_align_celeba";
    public const string AttributesFile = "list_attr_celeba.txt";
    public const string PartitionFile = "list_eval_partition.txt";

    /// <summary>
    /// The annotation files and image folder of <paramref name="root"/>: the official release's, or those of the copy
    /// on Kaggle (<c>list_attr_celeba.csv</c> with a header row <c>image_id,5_o_Clock_Shadow,…</c>,
    /// <c>list_eval_partition.csv</c> with <c>image_id,partition</c>, the images one folder deeper in
    /// <c>img_align_celeba/img_align_celeba/</c>), the official text files where both are present.
    /// </summary>
    public static (string Attributes, string Partition, string Images, bool Csv) Layout(string root)
    {
        string text = Path.Combine(root, AttributesFile), csv = Path.ChangeExtension(text, ".csv");
        bool useCsv = !File.Exists(text) && File.Exists(csv);
        string images = Path.Combine(root, ImagesFolder), nested = Path.Combine(images, ImagesFolder);
        if (Directory.Exists(nested) && !Directory.EnumerateFiles(images, "*.jpg").Any()) images = nested;
        return (useCsv ? csv : text, Path.Combine(root, useCsv ? Path.ChangeExtension(PartitionFile, ".csv") : PartitionFile), images, useCsv);
    }

    /// <summary>
    /// The paper's three tasks (Table 9: gender, age, clothes) as attributes. The paper does not name the attributes.
    /// Gender is <c>Male</c> and age is <c>Young</c> (CelebA's only gender and age attributes). For clothes, of the
    /// five <c>Wearing_*</c> attributes and <c>Eyeglasses</c>, only <c>Wearing_Necktie</c> fits the reported accuracies
    /// (STL 93.0, MTL 92.4 at width 1): its absent class is about 93% of the images, where hat and eyeglasses (about
    /// 95%) are above the reported figures and earrings and necklace (about 81% and 88%) would need detectors far
    /// better than 32×32 faces allow. <see cref="CelebAOptions.Tasks"/> chooses others.
    /// </summary>
    public static readonly CelebATask[] PaperTasks =
    [
        new("gender", "Male"),
        new("age", "Young"),
        new("clothes", "Wearing_Necktie"),
    ];

    /// <summary>$XDG_CACHE_HOME/interrogate (or ~/.cache/interrogate).</summary>
    public static string DefaultCacheRoot =>
        Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
            ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "interrogate");

    public static DatasetSplits Load(CelebAOptions o)
    {
        if (o.Tasks.Count == 0) throw new ArgumentException("CelebA: name at least one task.");
        var twice = o.Tasks.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null) throw new ArgumentException($"CelebA: task '{twice.Key}' is named twice.");
        var annotations = ReadAnnotations(o.Root);
        string attrPath = annotations.AttributesPath;
        var columns = o.Tasks.Select(t => annotations.Column(t.Attribute, attrPath)).ToArray();
        string images = CelebACache.Ensure(o.Root, annotations, o.ImageSize, o.CacheRoot ?? DefaultCacheRoot, o.Progress).ImagesPath;

        var tasks = new TaskSet(o.Tasks.Select(t => new TaskSpec(t.Name, TaskKind.Binary, 1)));
        var targets = new Dictionary<string, Tensor>();
        using (var scope = NewDisposeScope())
            for (int k = 0; k < o.Tasks.Count; k++)
            {
                var v = annotations.Values.Select(row => row[columns[k]] > 0 ? 1f : 0f).ToArray();
                targets[o.Tasks[k].Name] = tensor(v, dtype: float32).view(-1, 1).MoveToOuterDisposeScope();
            }
        var all = new FileImageDataset($"celeba ({o.Root})", tasks, images, targets);
        foreach (var y in targets.Values) y.Dispose(); // the data set holds its own copies
        string partitionPath = annotations.PartitionPath;
        FileImageDataset Split(int code, string name, int? size)
        {
            var rows = Enumerable.Range(0, annotations.Files.Length).Where(i => annotations.Partition[i] == code).Select(i => (long)i).ToArray();
            if (rows.Length == 0) throw new DataFormatException(partitionPath, $"lists no image of the {name} split (partition {code})");
            if (size is { } n && n < rows.Length)
            {
                var rng = new Random(o.Seed * 3 + code);
                var drawn = rows.ToArray();
                rng.Shuffle(drawn);
                rows = drawn[..n].Order().ToArray();
            }
            else if (size is { } m && m > rows.Length)
                throw new DataFormatException(partitionPath, $"the {name} split has {rows.Length:N0} images; {m:N0} were asked for");
            return all.Subset($"celeba/{name}", rows);
        }
        return new DatasetSplits(Split(0, "train", o.TrainSize), Split(1, "val", o.ValidationSize), Split(2, "test", o.TestSize));
    }

    /// <summary>
    /// Parses and cross-checks list_attr_celeba.txt and list_eval_partition.txt of <paramref name="root"/>. Every fault
    /// names the file and the line: a missing file, a wrong count, a value other than 1 / −1, an image listed twice, an
    /// image in one file but not the other, a partition other than 0 / 1 / 2.
    /// </summary>
    public static CelebAAnnotations ReadAnnotations(string root)
    {
        if (!Directory.Exists(root))
            throw new DatasetNotFoundException($"CelebA folder {root} does not exist: it needs {ImagesFolder}/, {AttributesFile} and {PartitionFile} " +
                                               "(the official release, https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html).");
        var (attrPath, partPath, imagesDir, csv) = Layout(root);
        if (!Directory.Exists(imagesDir))
            throw new DatasetNotFoundException($"{imagesDir} is missing: CelebA's aligned images (img_align_celeba.zip, unpacked).");
        var attrLines = ReadLines(attrPath);
        int declared, first; // the declared image count (the CSV has none: its rows), the first line of values
        string[] names;
        if (csv)
        {
            // Kaggle's copy: a header row "image_id,<the 40 names>", then "<image>,<1 or -1>,…" per image.
            if (attrLines.Length < 1) throw new DataFormatException(attrPath, "needs a header row: image_id and the attribute names");
            var header = CsvTokens(attrLines[0]);
            if (header.Length < 2 || header[0] != "image_id") throw new DataFormatException(attrPath, $"line 1: expected 'image_id,<attribute names>', found '{attrLines[0].Trim()}'");
            names = header[1..];
            declared = attrLines.Skip(1).Count(l => l.Trim().Length > 0);
            first = 1;
        }
        else
        {
            if (attrLines.Length < 2) throw new DataFormatException(attrPath, "needs the image count on line 1 and the attribute names on line 2");
            if (!int.TryParse(attrLines[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out declared) || declared <= 0)
                throw new DataFormatException(attrPath, $"line 1: expected the number of images, found '{attrLines[0].Trim()}'");
            names = Tokens(attrLines[1]);
            first = 2;
        }
        if (declared == 0) throw new DataFormatException(attrPath, "lists no image");
        if (names.Length == 0) throw new DataFormatException(attrPath, "line 2: no attribute names");
        var dupName = names.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1);
        if (dupName is not null) throw new DataFormatException(attrPath, $"line 2: attribute '{dupName.Key}' is named twice");

        var files = new List<string>(declared);
        var values = new List<sbyte[]>(declared);
        var lineOf = new Dictionary<string, int>(declared);
        for (int i = first; i < attrLines.Length; i++)
        {
            var tokens = csv ? CsvTokens(attrLines[i]) : Tokens(attrLines[i]);
            if (tokens.Length == 0) continue; // blank lines (a trailing newline)
            int line = i + 1;
            if (tokens.Length != names.Length + 1)
                throw new DataFormatException(attrPath, $"line {line}: {tokens.Length - 1} values for {names.Length} attributes");
            if (lineOf.TryGetValue(tokens[0], out int firstLine))
                throw new DataFormatException(attrPath, $"line {line}: {tokens[0]} is listed twice (first on line {firstLine})");
            CheckFileName(attrPath, line, tokens[0]);
            var row = new sbyte[names.Length];
            for (int a = 0; a < names.Length; a++)
                row[a] = tokens[a + 1] switch
                {
                    "1" => 1,
                    "-1" => -1,
                    var v => throw new DataFormatException(attrPath, $"line {line}: attribute {names[a]} is '{v}'; the values are 1 and -1"),
                };
            lineOf[tokens[0]] = line;
            files.Add(tokens[0]);
            values.Add(row);
        }
        if (files.Count != declared)
            throw new DataFormatException(attrPath, $"line 1 declares {declared:N0} images, the file lists {files.Count:N0}");

        var partition = new byte[files.Count];
        var seen = new bool[files.Count];
        var partLines = ReadLines(partPath);
        var index = new Dictionary<string, int>(files.Count);
        for (int i = 0; i < files.Count; i++) index[files[i]] = i;
        for (int i = 0; i < partLines.Length; i++)
        {
            var tokens = csv ? CsvTokens(partLines[i]) : Tokens(partLines[i]);
            if (tokens.Length == 0) continue;
            int line = i + 1;
            if (csv && i == 0)
            {
                if (tokens is not ["image_id", "partition"]) throw new DataFormatException(partPath, $"line 1: expected the header 'image_id,partition', found '{partLines[i].Trim()}'");
                continue;
            }
            if (tokens.Length != 2) throw new DataFormatException(partPath, $"line {line}: expected '<image>{(csv ? "," : " ")}<0|1|2>', found '{partLines[i].Trim()}'");
            if (!index.TryGetValue(tokens[0], out int k))
                throw new DataFormatException(partPath, $"line {line}: {tokens[0]} has no line in {Path.GetFileName(attrPath)}");
            if (seen[k]) throw new DataFormatException(partPath, $"line {line}: {tokens[0]} is listed twice");
            partition[k] = tokens[1] switch
            {
                "0" => 0,
                "1" => 1,
                "2" => 2,
                var v => throw new DataFormatException(partPath, $"line {line}: partition '{v}'; valid: 0 (train), 1 (validation), 2 (test)"),
            };
            seen[k] = true;
        }
        int missing = Array.IndexOf(seen, false);
        if (missing >= 0)
            throw new DataFormatException(partPath, $"has no line for {files[missing]} ({Path.GetFileName(attrPath)} line {lineOf[files[missing]]}); " +
                                                    $"{seen.Count(s => !s):N0} images are without a partition");
        return new CelebAAnnotations(files.ToArray(), names, values.ToArray(), partition)
        {
            AttributesPath = attrPath, PartitionPath = partPath, ImagesDirectory = imagesDir,
        };
    }

    /// <summary>
    /// The central square of <paramref name="image"/> resized to <paramref name="size"/>×<paramref name="size"/> by area
    /// averaging (each output pixel the mean of the input area it covers), as RGB bytes [3, size, size].
    /// </summary>
    public static byte[] CropAndResize(DecodedImage image, int size)
    {
        int side = Math.Min(image.Height, image.Width);
        int top = (image.Height - side) / 2, left = (image.Width - side) / 2;
        var rows = AreaWeights(side, size);
        var cols = AreaWeights(side, size);
        int c = image.Channels;
        var horizontal = new float[side * size * 3]; // [y, x', rgb] after resizing along x
        for (int y = 0; y < side; y++)
        {
            int rowStart = ((top + y) * image.Width + left) * c;
            for (int x = 0; x < size; x++)
            {
                float r = 0, g = 0, b = 0;
                foreach (var (j, w) in cols[x])
                {
                    int p = rowStart + j * c;
                    if (c == 1) { float v = image.Pixels[p]; r += w * v; g += w * v; b += w * v; }
                    else { r += w * image.Pixels[p]; g += w * image.Pixels[p + 1]; b += w * image.Pixels[p + 2]; }
                }
                int o = (y * size + x) * 3;
                horizontal[o] = r;
                horizontal[o + 1] = g;
                horizontal[o + 2] = b;
            }
        }
        var output = new byte[3 * size * size];
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
                for (int ch = 0; ch < 3; ch++)
                {
                    float v = 0;
                    foreach (var (i, w) in rows[y]) v += w * horizontal[(i * size + x) * 3 + ch];
                    output[(ch * size + y) * size + x] = (byte)Math.Clamp(MathF.Round(v), 0, 255);
                }
        return output;
    }

    /// <summary>For each of <paramref name="outputs"/> cells, the input pixels it covers and their weights (summing to 1).</summary>
    private static (int Index, float Weight)[][] AreaWeights(int inputs, int outputs)
    {
        double scale = (double)inputs / outputs;
        var result = new (int, float)[outputs][];
        for (int o = 0; o < outputs; o++)
        {
            double start = o * scale, end = (o + 1) * scale;
            if (scale < 1) // enlarging: the nearest input pixel
            {
                result[o] = [(Math.Min(inputs - 1, (int)Math.Floor((o + 0.5) * scale)), 1f)];
                continue;
            }
            var list = new List<(int, float)>();
            for (int i = (int)Math.Floor(start); i < Math.Min(inputs, (int)Math.Ceiling(end)); i++)
            {
                double overlap = Math.Min(end, i + 1) - Math.Max(start, i);
                if (overlap > 1e-9) list.Add((i, (float)(overlap / scale)));
            }
            result[o] = list.ToArray();
        }
        return result;
    }

    private static string[] ReadLines(string path) =>
        File.Exists(path) ? File.ReadAllLines(path) : throw new DataFormatException(path, "missing: CelebA's annotation files are list_attr_celeba.txt and list_eval_partition.txt (from Anno/ and Eval/ of the release; " +
                                                   "the copy on Kaggle has them as list_attr_celeba.csv and list_eval_partition.csv)");

    private static string[] Tokens(string line) => line.Split([' ', '\t', '\r'], StringSplitOptions.RemoveEmptyEntries);

    private static string[] CsvTokens(string line) => line.Trim().Length == 0 ? [] : line.Split(',', StringSplitOptions.TrimEntries);

    private static void CheckFileName(string path, int line, string name)
    {
        if (name.Contains('/') || name.Contains('\\') || name is "." or "..")
            throw new DataFormatException(path, $"line {line}: '{name}' is not a file name in {ImagesFolder}/");
    }
}

/// <summary>
/// The decoded CelebA images of one folder at one size: <c>images.npy</c> (uint8 [N, 3, S, S], in the order of
/// list_attr_celeba.txt) and <c>manifest.json</c> (what it was built from). The manifest holds a fingerprint of the
/// source: both annotation files' SHA-256, and every image's name, length and modification time. A cache whose
/// fingerprint differs from the folder's is rebuilt; the manifest is written last, so an interrupted build is never
/// taken for a finished one.
/// </summary>
public static class CelebACache
{
    /// <summary>Bumped when the decoding (crop, resize) changes, so older caches are rebuilt.</summary>
    public const int Version = 1;

    private sealed record Manifest(int Version, int ImageSize, int Images, string Source, string Fingerprint);

    /// <summary>The cache folder of <paramref name="root"/> at <paramref name="size"/> under <paramref name="cacheRoot"/>.</summary>
    public static string Folder(string root, int size, string cacheRoot)
    {
        string full = Path.GetFullPath(root).TrimEnd(Path.DirectorySeparatorChar);
        string id = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(full)))[..12].ToLowerInvariant();
        return Path.Combine(cacheRoot, $"celeba-{size}px-{id}");
    }

    /// <summary>The images file for <paramref name="root"/> at <paramref name="size"/>, built unless a matching one exists.</summary>
    public static (string ImagesPath, bool Built) Ensure(string root, CelebAAnnotations annotations, int size, string cacheRoot, Action<int, int>? progress = null)
    {
        if (size is < 8 or > 1024) throw new ArgumentOutOfRangeException(nameof(size), size, "CelebA image size: 8 to 1024 pixels.");
        string folder = Folder(root, size, cacheRoot);
        string images = Path.Combine(folder, "images.npy"), manifestPath = Path.Combine(folder, "manifest.json");
        string fingerprint = Fingerprint(root, annotations, size);
        if (File.Exists(manifestPath) && File.Exists(images))
        {
            try
            {
                var m = JsonSerializer.Deserialize<Manifest>(File.ReadAllText(manifestPath));
                var header = Npy.ReadHeader(images);
                if (m is not null && m.Fingerprint == fingerprint && header.DType == "u1" && !header.FortranOrder
                    && header.Shape.SequenceEqual(new long[] { annotations.Files.Length, 3, size, size }))
                    return (images, false);
            }
            catch (Exception e) when (e is JsonException or DataFormatException or IOException)
            {
                // A damaged cache is rebuilt like a stale one.
            }
        }
        Directory.CreateDirectory(folder);
        File.Delete(manifestPath);
        Build(root, annotations, size, images, progress);
        string json = JsonSerializer.Serialize(new Manifest(Version, size, annotations.Files.Length, Path.GetFullPath(root), fingerprint),
            new JsonSerializerOptions { WriteIndented = true });
        File.WriteAllText(manifestPath + ".tmp", json);
        File.Move(manifestPath + ".tmp", manifestPath, overwrite: true);
        return (images, true);
    }

    private static void Build(string root, CelebAAnnotations a, int size, string images, Action<int, int>? progress)
    {
        string dir = a.ImagesDirectory;
        int n = a.Files.Length, rowBytes = 3 * size * size, chunk = 1024;
        string temp = images + ".tmp";
        using (var f = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            Npy.WriteHeader(f, [n, 3, size, size], "|u1");
            var buffer = new byte[chunk * rowBytes];
            for (int start = 0; start < n; start += chunk)
            {
                int count = Math.Min(chunk, n - start);
                try
                {
                    Parallel.For(0, count, i =>
                    {
                        var pixels = CelebA.CropAndResize(ImageFiles.Read(Path.Combine(dir, a.Files[start + i])), size);
                        pixels.CopyTo(buffer, i * rowBytes);
                    });
                }
                catch (AggregateException e) when (e.InnerExceptions.OfType<DataFormatException>().FirstOrDefault() is { } bad)
                {
                    throw bad; // a damaged or missing image, named: not a crash
                }
                f.Write(buffer, 0, count * rowBytes);
                progress?.Invoke(start + count, n);
            }
        }
        File.Move(temp, images, overwrite: true);
    }

    private static string Fingerprint(string root, CelebAAnnotations a, int size)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"celeba-cache v{Version} size {size}\n"));
        foreach (var file in new[] { a.AttributesPath, a.PartitionPath })
        {
            using var s = File.OpenRead(file);
            hash.AppendData(SHA256.HashData(s));
        }
        string dir = a.ImagesDirectory;
        foreach (var name in a.Files)
        {
            var info = new FileInfo(Path.Combine(dir, name));
            if (!info.Exists) throw new DataFormatException(info.FullName, $"missing: {Path.GetFileName(a.AttributesPath)} lists it");
            hash.AppendData(Encoding.UTF8.GetBytes($"{name}\t{info.Length}\t{info.LastWriteTimeUtc.Ticks}\n"));
        }
        return Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }
}
