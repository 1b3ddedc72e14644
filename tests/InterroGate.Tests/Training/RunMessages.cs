using InterroGate.Training;

namespace InterroGate.Tests.Training;

/// <summary>The run messages a trainer or a comparison reports, in order: the text alone, and after its run's name.</summary>
internal sealed class RunMessages : IProgress<TrainingEvent>
{
    public List<string> Lines { get; } = [];
    public List<string> WithRun { get; } = [];

    public void Report(TrainingEvent value)
    {
        if (value is not RunMessage m) return;
        Lines.Add(m.Text);
        WithRun.Add($"{m.Run}: {m.Text}");
    }
}
