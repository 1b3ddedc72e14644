namespace InterroGate.Tasks;

/// <summary>
/// What a task predicts; losses and metrics are chosen by kind, never by task name. The target layout in
/// a batch of B samples is fixed per kind (dense kinds are per pixel, at the image's resolution):
/// </summary>
public enum TaskKind
{
    /// <summary>One of <see cref="TaskSpec.Outputs"/> classes per image: cross-entropy, accuracy. Target int64 [B].</summary>
    Classification,
    /// <summary><see cref="TaskSpec.Outputs"/> independent binary attributes: BCE, mean accuracy. Target float32 [B, K].</summary>
    Binary,
    /// <summary><see cref="TaskSpec.Outputs"/> real values: L1 loss, mean absolute error. Target float32 [B, K].</summary>
    Regression,
    /// <summary>
    /// A class per pixel (semantic segmentation, human parts): cross-entropy, mIoU. Target int64 [B, H, W],
    /// <see cref="TaskSpec.IgnoreLabel"/> where unlabelled.
    /// </summary>
    Segmentation,
    /// <summary>Depth per pixel: L1 on valid pixels, RMSE. Target float32 [B, 1, H, W], 0 where unknown.</summary>
    Depth,
    /// <summary>Unit surface normal per pixel: L1, mean angle error. Target float32 [B, 3, H, W], the zero vector where unknown.</summary>
    Normals,
    /// <summary>Salient-object probability per pixel: BCE, mIoU over thresholds (also maxF). Target float32 [B, 1, H, W] in [0, 1]; 255 (<see cref="TaskSpec.IgnoreLabel"/>) where unknown.</summary>
    Saliency,
    /// <summary>Boundary per pixel: weighted BCE; the paper reports the edge loss. Target float32 [B, 1, H, W] in {0, 1}; 255 (<see cref="TaskSpec.IgnoreLabel"/>) where unknown.</summary>
    Edges,
}

/// <summary>One task: its name (a key in every batch), kind and output width (classes for classification and segmentation).</summary>
public sealed record TaskSpec(string Name, TaskKind Kind, int Outputs)
{
    /// <summary>The label of unlabelled pixels in a segmentation target.</summary>
    public const long IgnoreLabel = 255;

    /// <summary>
    /// Why <paramref name="name"/> cannot name a task, or null where it can. A task's name becomes part of file and
    /// folder names (its targets' .npy, its STL run, its plots), so it is one plain name: not empty, no path separator,
    /// not "." or "..", no control character, no space at either end. Two names are taken: "image" (the images' key in
    /// every batch, the input of an exported network) and "shared" (InterroGate's shared branch in pruning reports).
    /// </summary>
    public static string? NameProblem(string? name) => name switch
    {
        null or "" => "it is empty",
        _ when string.IsNullOrWhiteSpace(name) => "it is only spaces",
        "." or ".." => $"'{name}' names a folder, not a task",
        "image" => "'image' is taken: it is the images' key in every batch and the input of an exported network",
        "shared" => "'shared' is taken: it names InterroGate's shared branch",
        _ when name.IndexOfAny(['/', '\\']) >= 0 => "a task name holds no '/' or '\\' (it becomes part of file and folder names)",
        _ when name.Any(char.IsControl) => "it holds a control character",
        _ when name.Trim() != name => "it starts or ends with a space",
        _ => null,
    };

    /// <summary>Whether the task predicts a map (one output per pixel) rather than one output per image.</summary>
    public bool IsDense => Kind.IsDense();

    /// <summary>Whether the task's primary metric improves upwards (accuracy) or downwards (error).</summary>
    public bool HigherIsBetter => Kind is TaskKind.Classification or TaskKind.Binary or TaskKind.Segmentation or TaskKind.Saliency;

    /// <summary>Name of the task's primary metric, as printed in tables.</summary>
    public string MetricName => Kind switch
    {
        TaskKind.Classification => "accuracy",
        TaskKind.Binary => "accuracy",
        TaskKind.Regression => "mae",
        TaskKind.Segmentation => "mIoU",
        TaskKind.Depth => "rmse",
        TaskKind.Normals => "mean angle",
        TaskKind.Saliency => "mIoU",
        TaskKind.Edges => "loss",
        _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
    };

    /// <summary>Whether the primary metric is a fraction printed as a percentage (accuracy, mIoU).</summary>
    public bool MetricIsFraction => HigherIsBetter;
}

/// <summary>Facts about task kinds.</summary>
public static class TaskKinds
{
    /// <summary>Whether <paramref name="kind"/> predicts a map at the image's resolution.</summary>
    public static bool IsDense(this TaskKind kind) => kind >= TaskKind.Segmentation;

    /// <summary>The number of outputs a task of <paramref name="kind"/> must have, where the kind fixes it (null: any).</summary>
    public static int? FixedOutputs(this TaskKind kind) => kind switch
    {
        TaskKind.Depth or TaskKind.Saliency or TaskKind.Edges => 1,
        TaskKind.Normals => 3,
        _ => null,
    };
}

/// <summary>An ordered, name-unique list of tasks.</summary>
public sealed class TaskSet : IReadOnlyList<TaskSpec>
{
    private readonly TaskSpec[] _tasks;

    public TaskSet(IEnumerable<TaskSpec> tasks)
    {
        _tasks = tasks.ToArray();
        if (_tasks.Length == 0) throw new ArgumentException("A task set needs at least one task.");
        var dup = _tasks.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new ArgumentException($"Task name '{dup.Key}' appears twice.");
        foreach (var t in _tasks)
        {
            if (TaskSpec.NameProblem(t.Name) is { } why) throw new ArgumentException($"Task name \"{t.Name}\" cannot be used: {why}.");
            if (t.Outputs <= 0) throw new ArgumentException($"Task '{t.Name}' must have at least one output, not {t.Outputs}.");
            if (t.Kind.FixedOutputs() is { } n && t.Outputs != n)
                throw new ArgumentException($"Task '{t.Name}' ({t.Kind}) has {n} output{(n == 1 ? "" : "s")} per pixel, not {t.Outputs}.");
        }
    }

    public TaskSpec this[int index] => _tasks[index];
    public int Count => _tasks.Length;
    public IEnumerable<string> Names => _tasks.Select(t => t.Name);
    public int IndexOf(string name) => Array.FindIndex(_tasks, t => t.Name == name);
    public TaskSpec Get(string name) =>
        _tasks.FirstOrDefault(t => t.Name == name)
        ?? throw new KeyNotFoundException($"No task '{name}'; tasks are: {string.Join(", ", Names)}.");

    /// <summary>
    /// Why this set cannot give the targets of <paramref name="needed"/> (a task it lacks, or holds with another kind
    /// or output count), or null where it can.
    /// </summary>
    public string? CannotServe(IEnumerable<TaskSpec> needed)
    {
        foreach (var task in needed)
        {
            var mine = _tasks.FirstOrDefault(t => t.Name == task.Name);
            if (mine is null) return $"it has no task '{task.Name}' (its tasks: {string.Join(", ", Names)})";
            if (mine.Kind != task.Kind || mine.Outputs != task.Outputs)
                return $"its task '{task.Name}' is {mine.Kind} with {mine.Outputs} output{(mine.Outputs == 1 ? "" : "s")}, the model's {task.Kind} with {task.Outputs}";
        }
        return null;
    }

    /// <summary>The tasks named, in the order given; unknown names are an error that lists the valid ones.</summary>
    public TaskSet Select(IEnumerable<string> names) => new(names.Select(Get));

    public IEnumerator<TaskSpec> GetEnumerator() => ((IEnumerable<TaskSpec>)_tasks).GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => _tasks.GetEnumerator();
    public override string ToString() => string.Join(", ", _tasks.Select(t => $"{t.Name} ({t.Kind}, {t.Outputs})"));
}
