using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Heads;

/// <summary>Chooses a task's head by its kind.</summary>
public static class HeadFactory
{
    public static nn.Module<Tensor, Tensor> Create(TaskSpec task, long inChannels) => task.Kind switch
    {
        TaskKind.Classification or TaskKind.Binary or TaskKind.Regression => new ClassificationHead(inChannels, task.Outputs),
        _ => throw new ArgumentOutOfRangeException(nameof(task), task.Kind, "No head for this task kind."),
    };
}
