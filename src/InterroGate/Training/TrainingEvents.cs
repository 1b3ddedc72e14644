namespace InterroGate.Training;

/// <summary>What a training run reports; the CLI renders these, the library never prints.</summary>
public abstract record TrainingEvent(string Run);

/// <summary>
/// Progress inside an epoch: running mean task losses, the model's <see cref="Architectures.MultiTaskModel.Headline"/>
/// (InterroGate: its sharing state), speed and time left.
/// </summary>
public sealed record StepProgress(
    string Run, int Epoch, int Epochs, int Step, int Steps,
    IReadOnlyDictionary<string, double> TaskLosses, double Regularizer, string? Headline,
    double ImagesPerSecond, TimeSpan Elapsed, TimeSpan Remaining) : TrainingEvent(Run);

/// <summary>An epoch's summary after validation.</summary>
public sealed record EpochCompleted(
    string Run, int Epoch, int Epochs,
    IReadOnlyDictionary<string, double> TrainLosses, IReadOnlyDictionary<string, double> Validation,
    double Score, bool IsBest, IReadOnlyDictionary<string, double> Diagnostics, double ImagesPerSecond, string? Headline = null) : TrainingEvent(Run);

/// <summary>A plain message (checkpoint written, run resumed, ...).</summary>
public sealed record RunMessage(string Run, string Text) : TrainingEvent(Run);

/// <summary>A task's loss (or the regulariser) became NaN or infinite; training stopped.</summary>
public sealed class NonFiniteLossException(string term, int epoch, int step, string? lastGoodCheckpoint, int? lastStep = null)
    : Exception($"The {term} loss became non-finite at epoch {epoch + 1}, " +
                (lastStep is { } last && last > step ? $"in steps {step + 1}-{last + 1} (losses read once over those steps)" : $"step {step + 1}") + "; training stopped. " +
                (lastGoodCheckpoint is null ? "No checkpoint had been written yet." : $"The last good checkpoint is kept: {lastGoodCheckpoint}."))
{
    public string Term { get; } = term;
    public string? LastGoodCheckpoint { get; } = lastGoodCheckpoint;
}
