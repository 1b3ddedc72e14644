using System.Text.Json;
using InterroGate.Tasks;
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>
/// A user's own data set without writing C#: a folder with tasks.json and train/, val/ (optional) and
/// test/ folders, each holding images.npy ([N, H, W] or [N, C, H, W]; uint8 scaled by 1/255, or float32
/// as is) and one &lt;task&gt;.npy per task (integer classes [N] for classification; float [N] or [N, K]
/// otherwise). Without val/, a seeded 10% of train is held out for validation. The images are not loaded: a batch
/// reads only its own rows from the file.
/// </summary>
public static class UserFolderDataset
{
    private sealed record TaskEntry(string Name, string Kind, int? Classes, int? Outputs);
    private sealed record TasksFile(List<TaskEntry> Tasks);

    public static DatasetSplits Load(string folder, int seed = 0)
    {
        string tasksPath = Path.Combine(folder, "tasks.json");
        if (!File.Exists(tasksPath)) throw new DatasetNotFoundException($"No tasks.json in {folder}: a user data set needs tasks.json and train/ and test/ folders of .npy files.");
        var tasks = ReadTasks(tasksPath);
        var opened = new List<IDisposable>(); // a split that fails closes the files the others opened
        try
        {
            var train = Opened(Split(folder, "train", tasks));
            var test = SameImages(Opened(Split(folder, "test", tasks)), train, folder, "test");
            if (Directory.Exists(Path.Combine(folder, "val")))
                return new DatasetSplits(train, SameImages(Opened(Split(folder, "val", tasks)), train, folder, "val"), test);
            return HeldOut(folder, train, test, seed);
        }
        catch
        {
            foreach (var d in opened) d.Dispose();
            throw;
        }
        FileImageDataset Opened(FileImageDataset d) { opened.Add(d); return d; }
    }

    private static DatasetSplits HeldOut(string folder, FileImageDataset train, FileImageDataset test, int seed)
    {
        // A seeded 10% of train held out for validation: views of the same file, nothing copied.
        int n = train.Count, held = Math.Max(1, n / 10);
        var order = Enumerable.Range(0, n).Select(i => (long)i).ToArray();
        new Random(seed).Shuffle(order);
        return new DatasetSplits(train.Subset($"{folder}/train", order[held..]), train.Subset($"{folder}/val (held out of train)", order[..held]), test);
    }

    /// <summary>A split whose images have another shape than the training images' cannot go through the trained model.</summary>
    private static FileImageDataset SameImages(FileImageDataset split, FileImageDataset train, string folder, string name)
    {
        if (split.ImageShape != train.ImageShape)
            throw new DataFormatException(Path.Combine(folder, name, "images.npy"),
                $"images of {split.ImageShape.Channels}×{split.ImageShape.Height}×{split.ImageShape.Width} (channels × height × width); train/images.npy holds {train.ImageShape.Channels}×{train.ImageShape.Height}×{train.ImageShape.Width}, and every split must match it");
        return split;
    }

    /// <summary>The tasks of a tasks.json; every fault names the file.</summary>
    public static TaskSet ReadTasks(string path)
    {
        TasksFile? file;
        try
        {
            file = JsonSerializer.Deserialize<TasksFile>(File.ReadAllText(path), new JsonSerializerOptions
            {
                PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
                UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
            });
        }
        catch (JsonException e)
        {
            throw new DataFormatException(path, $"invalid tasks.json at {e.Path}: {e.Message}");
        }
        if (file?.Tasks is not { Count: > 0 }) throw new DataFormatException(path, "no tasks listed (expected {\"tasks\": [{\"name\": ..., \"kind\": ..., ...}]})");
        for (int i = 0; i < file.Tasks.Count; i++)
        {
            var t = file.Tasks[i] ?? throw new DataFormatException(path, $"tasks[{i}] is null; each task is {{\"name\": ..., \"kind\": ...}}");
            if (string.IsNullOrWhiteSpace(t.Name)) throw new DataFormatException(path, $"tasks[{i}] has no name");
            if (TaskSpec.NameProblem(t.Name) is { } problem) throw new DataFormatException(path, $"tasks[{i}] is named \"{t.Name}\": {problem}");
            if (t.Classes is <= 1) throw new DataFormatException(path, $"task '{t.Name}' has {t.Classes} classes; a classification task needs at least 2");
            if (t.Outputs is <= 0) throw new DataFormatException(path, $"task '{t.Name}' has {t.Outputs} outputs; it needs at least 1");
        }
        var twice = file.Tasks.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null) throw new DataFormatException(path, $"task '{twice.Key}' is listed {twice.Count()} times; each task once");
        return new TaskSet(file.Tasks.Select(t => t.Kind switch
        {
            "classification" => new TaskSpec(t.Name, TaskKind.Classification, t.Classes ?? throw new DataFormatException(path, $"task '{t.Name}' needs \"classes\"")),
            "binary" => new TaskSpec(t.Name, TaskKind.Binary, t.Outputs ?? 1),
            "regression" => new TaskSpec(t.Name, TaskKind.Regression, t.Outputs ?? 1),
            _ => throw new DataFormatException(path, $"task '{t.Name}' has kind '{t.Kind}'; valid: classification, binary, regression"),
        }));
    }

    private static FileImageDataset Split(string folder, string split, TaskSet tasks)
    {
        string dir = Path.Combine(folder, split);
        if (!Directory.Exists(dir)) throw new DatasetNotFoundException($"{dir} is missing: the data set needs a {split}/ folder with images.npy and one .npy per task.");
        string imagesPath = Path.Combine(dir, "images.npy");
        long n = Npy.ReadHeader(imagesPath).Shape.FirstOrDefault(-1);

        var targets = new Dictionary<string, Tensor>();
        foreach (var task in tasks)
        {
            string p = Path.Combine(dir, task.Name + ".npy");
            if (!File.Exists(p)) throw new DataFormatException(p, $"missing: task '{task.Name}' needs its targets in {split}/{task.Name}.npy");
            var y = Npy.Read(p);
            if (y.Shape.Length == 0 || y.Shape[0] != n) throw new DataFormatException(p, $"{(y.Shape.Length == 0 ? 0 : y.Shape[0])} targets for {n} images");
            targets[task.Name] = task.Kind == TaskKind.Classification ? Classes(p, y, task) : Values(p, y, task);
        }
        // The images stay in their file, read row by row: a CelebA-sized folder trains without loading it into memory.
        return new FileImageDataset($"{folder}/{split}", tasks, imagesPath, targets);
    }

    private static Tensor Classes(string path, NpyArray y, TaskSpec task)
    {
        if (!y.IsInteger || y.Shape.Length != 1) throw new DataFormatException(path, $"classification targets must be integers of shape [N], not {y.DType} ({string.Join(", ", y.Shape)})");
        var t = y.ToTensor().to(int64);
        long min = t.min().item<long>(), max = t.max().item<long>();
        if (min < 0 || max >= task.Outputs) throw new DataFormatException(path, $"class {(min < 0 ? min : max)} is outside 0..{task.Outputs - 1}");
        return t;
    }

    private static Tensor Values(string path, NpyArray y, TaskSpec task)
    {
        if (y.DType is not ("f4" or "f8")) throw new DataFormatException(path, $"{task.Kind} targets must be float32 or float64, not {y.DType}");
        var t = y.ToTensor().to(float32);
        if (t.dim() == 1) t = t.unsqueeze(1);
        if (t.dim() != 2 || t.shape[1] != task.Outputs) throw new DataFormatException(path, $"targets must be [N] or [N, {task.Outputs}], not ({string.Join(", ", y.Shape)})");
        if (task.Kind == TaskKind.Binary)
        {
            using var scope = NewDisposeScope();
            var bad = t.lt(Scalars.Zero).logical_or(t.gt(Scalars.One)); // 0 and 1, or soft labels between them
            if (bad.any().item<bool>())
            {
                long first = bad.nonzero()[0][0].item<long>();
                throw new DataFormatException(path, $"binary targets lie in [0, 1]; sample {first} has {t[first].data<float>().ToArray().First(v => v is < 0 or > 1)}");
            }
        }
        using (NewDisposeScope())
            if (!t.isfinite().all().item<bool>()) throw new DataFormatException(path, "targets that are not finite (NaN or infinity)");
        return t;
    }
}
