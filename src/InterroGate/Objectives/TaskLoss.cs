using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Objectives;

/// <summary>The loss of one task, chosen by its kind.</summary>
public static class TaskLoss
{
    /// <summary>CE for classification, BCE-with-logits for binary attributes, L1 for regression.</summary>
    public static Tensor Compute(TaskSpec task, Tensor output, Tensor target) => task.Kind switch
    {
        TaskKind.Classification => nn.functional.cross_entropy(output, target),
        TaskKind.Binary => nn.functional.binary_cross_entropy_with_logits(output, target),
        TaskKind.Regression => nn.functional.l1_loss(output, target),
        _ => throw new ArgumentOutOfRangeException(nameof(task), task.Kind, "No loss for this task kind."),
    };
}

/// <summary>The multi-task objective: outputs and batch in, one loss per task out (in task order).</summary>
public sealed class MultiTaskObjective(TaskSet tasks)
{
    public TaskSet Tasks { get; } = tasks;

    public Tensor[] Losses(IReadOnlyDictionary<string, Tensor> outputs, IReadOnlyDictionary<string, Tensor> batch) =>
        Tasks.Select(t => TaskLoss.Compute(t, outputs[t.Name], batch[t.Name])).ToArray();
}
