using InterroGate.Training;
using Spectre.Console;

namespace InterroGate.Cli.Rendering;

/// <summary>Renders training events: a live progress bar on a terminal, plain lines when output is redirected.</summary>
internal sealed class ConsoleReporter : IProgress<TrainingEvent>
{
    private readonly ProgressContext? _context;
    private readonly Dictionary<string, ProgressTask> _bars = new();
    private int _lastPrintedQuarter = -1;

    private ConsoleReporter(ProgressContext? context) => _context = context;

    /// <summary>Runs <paramref name="work"/> with a reporter suited to the console.</summary>
    public static T Run<T>(Func<IProgress<TrainingEvent>, T> work)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive) return work(new ConsoleReporter(null));
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx => result = work(new ConsoleReporter(ctx)));
        return result;
    }

    public void Report(TrainingEvent value)
    {
        switch (value)
        {
            case StepProgress s:
                string text = $"{s.Run} epoch {s.Epoch + 1}/{s.Epochs} loss {Format.Metrics(s.TaskLosses)}" +
                              (s.Headline is { } h ? $" {h}" : "") + $" {s.ImagesPerSecond:F0} img/s";
                if (_context is not null)
                {
                    string key = $"{s.Run}/{s.Epoch}";
                    if (!_bars.TryGetValue(key, out var bar)) _bars[key] = bar = _context.AddTask(key, maxValue: s.Steps);
                    bar.Description = Markup.Escape(text);
                    bar.Value = s.Step + 1;
                }
                else
                {
                    int quarter = 4 * (s.Step + 1) / s.Steps;
                    if (quarter != _lastPrintedQuarter && quarter < 4)
                    {
                        _lastPrintedQuarter = quarter;
                        Console.WriteLine($"  {text} [{s.Step + 1}/{s.Steps}, ETA {s.Remaining:hh\\:mm\\:ss}]");
                    }
                }
                break;
            case EpochCompleted e:
                _lastPrintedQuarter = -1;
                string diag = e.Headline is { } headline ? $", {headline}" : "";
                Console.WriteLine($"{e.Run} epoch {e.Epoch + 1}/{e.Epochs}: train loss {Format.Metrics(e.TrainLosses)}; val {Format.Metrics(e.Validation)}{diag}; {e.ImagesPerSecond:F0} img/s{(e.IsBest ? " (best)" : "")}");
                break;
            case RunMessage m:
                Console.WriteLine($"{m.Run}: {m.Text}");
                break;
        }
    }
}

internal static class Format
{
    public static string Metrics(IReadOnlyDictionary<string, double> values) =>
        string.Join(" ", values.Select(kv => $"{kv.Key}={kv.Value:F4}"));
}
