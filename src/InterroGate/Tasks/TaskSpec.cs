namespace InterroGate.Tasks;

/// <summary>What a task predicts; losses and metrics are chosen by kind, never by task name.</summary>
public enum TaskKind
{
    /// <summary>One of <see cref="TaskSpec.Outputs"/> classes per image: cross-entropy, accuracy.</summary>
    Classification,
    /// <summary><see cref="TaskSpec.Outputs"/> independent binary attributes: BCE, mean accuracy.</summary>
    Binary,
    /// <summary><see cref="TaskSpec.Outputs"/> real values: L1 loss, mean absolute error.</summary>
    Regression,
}

/// <summary>One task: its name (a key in every batch), kind and output width.</summary>
public sealed record TaskSpec(string Name, TaskKind Kind, int Outputs)
{
    /// <summary>Whether the task's primary metric improves upwards (accuracy) or downwards (error).</summary>
    public bool HigherIsBetter => Kind is TaskKind.Classification or TaskKind.Binary;

    /// <summary>Name of the task's primary metric, as printed in tables.</summary>
    public string MetricName => Kind switch
    {
        TaskKind.Classification => "accuracy",
        TaskKind.Binary => "accuracy",
        TaskKind.Regression => "mae",
        _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
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
            if (t.Outputs <= 0) throw new ArgumentException($"Task '{t.Name}' must have at least one output, not {t.Outputs}.");
    }

    public TaskSpec this[int index] => _tasks[index];
    public int Count => _tasks.Length;
    public IEnumerable<string> Names => _tasks.Select(t => t.Name);
    public int IndexOf(string name) => Array.FindIndex(_tasks, t => t.Name == name);
    public TaskSpec Get(string name) =>
        _tasks.FirstOrDefault(t => t.Name == name)
        ?? throw new KeyNotFoundException($"No task '{name}'; tasks are: {string.Join(", ", Names)}.");

    /// <summary>The tasks named, in the order given; unknown names are an error that lists the valid ones.</summary>
    public TaskSet Select(IEnumerable<string> names) => new(names.Select(Get));

    public IEnumerator<TaskSpec> GetEnumerator() => ((IEnumerable<TaskSpec>)_tasks).GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => _tasks.GetEnumerator();
    public override string ToString() => string.Join(", ", _tasks.Select(t => $"{t.Name} ({t.Kind}, {t.Outputs})"));
}
