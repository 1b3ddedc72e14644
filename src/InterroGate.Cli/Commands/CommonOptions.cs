using System.CommandLine;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Runtime;
using InterroGate.Training;
using Spectre.Console;

namespace InterroGate.Cli.Commands;

/// <summary>Options several commands share, and the one place errors become messages and exit codes.</summary>
internal static class CommonOptions
{
    public static Option<string[]> Set() => new("--set")
    {
        Description = "Override a configuration value: key.path=value (repeatable), e.g. --set training.epochs=3",
        AllowMultipleArgumentsPerToken = false,
        DefaultValueFactory = _ => [],
    };

    public static Option<string?> Device() => new("--device")
    {
        Description = "Where to train or evaluate: cpu, cuda or cuda:N (default: training.device of the configuration, cpu)",
    };

    /// <summary>The overrides with training.device set from --device, where given.</summary>
    public static string[] WithDevice(string[] overrides, string? device) =>
        device is null ? overrides : [.. overrides, $"training.device={device}"];

    public static Option<string?> Out(string what) => new("--out", "-o") { Description = $"Folder for {what} (default: runs/<name>)" };

    /// <summary>
    /// A file the command is about to write, checked before any work: not empty, not an existing folder, not under an
    /// existing file, and none of <paramref name="inputs"/> (writing a result over what it was made from loses that).
    /// </summary>
    public static string OutputFile(string path, params string[] inputs)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new ConfigException("--out", "is empty; name the file to write");
        if (Path.EndsInDirectorySeparator(path)) throw new ConfigException("--out", $"{path} names a folder; name the file to write in it");
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new ConfigException("--out", $"{path} is a folder; name the file to write in it");
        CheckParents(path, full);
        string folder = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(folder)) throw new ConfigException("--out", $"{folder} does not exist: create the folder before writing {Path.GetFileName(full)} in it");
        foreach (var input in inputs)
            if (string.Equals(full, Path.GetFullPath(input), StringComparison.Ordinal))
                throw new ConfigException("--out", $"{path} is the file being read; writing there would replace it. Choose another file");
        return path;
    }

    /// <summary>
    /// <paramref name="path"/>, refused unless it ends with <paramref name="extension"/>: a file of one format under another
    /// format's name would be read as that other format (predict and cost tell the formats apart by content, other tools
    /// by name).
    /// </summary>
    public static string WithExtension(string path, string extension, string format)
    {
        if (!path.EndsWith(extension, StringComparison.OrdinalIgnoreCase))
            throw new ConfigException("--out", $"{path} would hold {format}; give it the extension {extension}");
        return path;
    }

    /// <summary>A folder the command is about to write into, checked before any work: not empty, not an existing file.</summary>
    public static string OutputFolder(string path)
    {
        if (string.IsNullOrWhiteSpace(path)) throw new ConfigException("--out", "is empty; name the folder to write into");
        string full = Path.GetFullPath(path);
        if (File.Exists(full)) throw new ConfigException("--out", $"{path} is a file; name a folder");
        CheckParents(path, full);
        return path;
    }

    private static void CheckParents(string path, string full)
    {
        for (var dir = Path.GetDirectoryName(full); !string.IsNullOrEmpty(dir); dir = Path.GetDirectoryName(dir))
            if (File.Exists(dir)) throw new ConfigException("--out", $"{path}: {dir} is a file, not a folder");
    }

    /// <summary>Runs <paramref name="body"/>, mapping the library's errors to one clear line and exit code 2.</summary>
    public static int Guard(Func<CancellationToken, int> body)
    {
        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (cts.IsCancellationRequested) return; // a second Ctrl+C ends the process
            e.Cancel = true;
            cts.Cancel();
            AnsiConsole.MarkupLine("[yellow]Stopping after this step; a resumable checkpoint will be written (Ctrl+C again to quit now).[/]");
        };
        Console.CancelKeyPress += onCancel;
        // SIGTERM (a scheduler's or `kill`'s stop) is handled like Ctrl+C: stop after this step, keep a resumable checkpoint.
        using var onTerm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, ctx =>
        {
            if (cts.IsCancellationRequested) return;
            ctx.Cancel = true;
            cts.Cancel();
            Console.Error.WriteLine("SIGTERM: stopping after this step; a resumable checkpoint will be written.");
        });
        try
        {
            return body(cts.Token);
        }
        catch (Exception e) when (UserErrors.Is(e) || e is OperationCanceledException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return e is OperationCanceledException ? 130 : 2;
        }
        catch (Exception e)
        {
            // Not something the user did: one line, and the trace in a crash log (never on the console).
            Console.Error.WriteLine($"internal error: {FirstLine(e.Message)} ({e.GetType().Name}); details in {WriteCrashLog(e)}");
            return 70;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static string FirstLine(string message) => message.Split('\n', 2)[0].Trim();

    /// <summary>Writes the exception with its trace and the command line to a new file under the temporary folder; returns its path.</summary>
    internal static string WriteCrashLog(Exception e)
    {
        string dir = Path.Combine(Path.GetTempPath(), "interrogate-crashes");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, $"crash-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Environment.ProcessId}.log");
        File.WriteAllText(path, $"interrogate {string.Join(' ', Environment.GetCommandLineArgs().Skip(1))}\n{DateTime.UtcNow:O}\n\n{e}\n");
        return path;
    }
}
