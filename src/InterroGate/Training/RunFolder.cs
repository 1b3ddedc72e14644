// One run per folder: a lock while a run trains there, no silent overwrite of a finished run, a metrics file that a
// kill cannot leave half-rewritten, and a resume that refuses a changed configuration.
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace InterroGate.Training;

/// <summary>A run folder that cannot be used as asked: in use, already holding a run, or resumed with another configuration.</summary>
public sealed class RunFolderException(string folder, string problem) : Exception($"run folder {folder}: {problem}")
{
    public string Folder { get; } = folder;
}

/// <summary>
/// The lock of a run folder (<c>.lock</c>: the owner's process id and start time). Acquiring fails while another live
/// process holds it; a lock left by a process that no longer runs (a killed run) is cleared, and said so.
/// </summary>
public sealed class RunFolderLock : IDisposable
{
    public const string FileName = ".lock";
    private readonly string _path;

    private RunFolderLock(string path) => _path = path;

    /// <summary>Takes the lock of <paramref name="folder"/>; <paramref name="clearedStale"/> is set when a dead owner's lock was removed.</summary>
    public static RunFolderLock Acquire(string folder, out bool clearedStale)
    {
        if (File.Exists(folder)) throw new RunFolderException(folder, "is a file, not a folder; give a folder for the run (-o)");
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, FileName);
        clearedStale = false;
        const int attempts = 20;
        for (int attempt = 0; attempt < attempts; attempt++)
        {
            try
            {
                using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
                using var writer = new StreamWriter(stream);
                writer.Write($"{Environment.ProcessId} {StartTicks(Environment.ProcessId)}");
                return new RunFolderLock(path);
            }
            catch (IOException) when (attempt < attempts - 1 || File.Exists(path))
            {
                if (!File.Exists(path)) continue; // cleared since by the process that had it or by one clearing it: take it anew
                string? seen = ReadText(path);
                var owner = ParseOwner(seen);
                if (owner is { } o && IsAlive(o.Pid, o.StartTicks))
                    throw new RunFolderException(folder, $"in use by process {o.Pid}; wait for it to finish or stop it (a run folder holds one run at a time)");
                // A lock without its owner yet: another process made it a moment ago and is writing it (two runs started
                // together), not a dead one's.
                var written = new FileInfo(path);
                if (!written.Exists) continue; // gone since: its owner finished; take it anew
                var age = DateTime.UtcNow - written.LastWriteTimeUtc;
                if (owner is null && age >= TimeSpan.Zero && age < FreshLock)
                    throw new RunFolderException(folder, "in use by a process that has just taken it; wait for it to finish or stop it (a run folder holds one run at a time)");
                // Its owner is gone: a killed run's lock. Another process may be clearing it too and may have taken the
                // folder since; only the lock read above is removed.
                if (ClearIfUnchanged(path, seen))
                {
                    clearedStale = true;
                    if (attempt == attempts - 1) attempt--; // cleared on the last attempt: one more to take it
                }
                else Thread.Sleep(10); // another process is clearing it or has taken the folder since: look again
            }
        }
        throw new RunFolderException(folder, $"could not take {path}: other processes kept taking or clearing it (a {Path.GetFileName(path)}.clearing " +
                                             $"left by a process killed while clearing a lock is taken as in use for {FreshLock.TotalSeconds:0} s)");
    }

    /// <summary>How long a lock that names no owner yet counts as being written by a live process.</summary>
    internal static readonly TimeSpan FreshLock = TimeSpan.FromSeconds(10);

    public void Dispose()
    {
        try { File.Delete(_path); } catch (IOException) { }
    }

    private static string? ReadText(string path)
    {
        try { return File.ReadAllText(path); }
        catch (IOException) { return null; }
    }

    private static (int Pid, long StartTicks)? ParseOwner(string? text)
    {
        var parts = text?.Split(' ') ?? [];
        return parts.Length == 2 && int.TryParse(parts[0], out int pid) && long.TryParse(parts[1], out long start) ? (pid, start) : null;
    }

    /// <summary>
    /// Removes the lock at <paramref name="path"/> if it still holds <paramref name="seen"/> (the dead owner read
    /// before); false where it is gone, is another lock, or another process is clearing it. Two processes that found the
    /// same dead lock cannot both clear it and take the folder: the check and the removal happen while holding
    /// <c>.lock.clearing</c>, which only one process can create, and no one else removes a lock meanwhile.
    /// </summary>
    internal static bool ClearIfUnchanged(string path, string? seen)
    {
        string claim = path + ".clearing";
        try
        {
            new FileStream(claim, FileMode.CreateNew, FileAccess.Write).Dispose();
        }
        catch (IOException)
        {
            // Another process is clearing (or has just finished); a claim older than a fresh lock was left by a process
            // killed while clearing.
            var claimed = new FileInfo(claim);
            if (claimed.Exists && DateTime.UtcNow - claimed.LastWriteTimeUtc >= FreshLock) File.Delete(claim);
            return false;
        }
        try
        {
            if (ReadText(path) != seen || seen is null && !File.Exists(path)) return false;
            File.Delete(path);
            return true;
        }
        finally
        {
            File.Delete(claim);
        }
    }

    /// <summary>A process of that id that started at that time still runs (a reused id of a later process does not count).</summary>
    private static bool IsAlive(int pid, long startTicks)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited && StartTicks(pid) == startTicks;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    private static long StartTicks(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return p.StartTime.ToUniversalTime().Ticks / TimeSpan.TicksPerSecond; // seconds: the same however it is read
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return 0;
        }
    }
}

/// <summary>What a run folder holds and how its files are rewritten safely.</summary>
public static class RunFiles
{
    /// <summary>True where <paramref name="folder"/> already holds a run (checkpoints or metrics).</summary>
    public static bool HoldsRun(string folder) =>
        File.Exists(Path.Combine(folder, Trainer.LastFileName)) || File.Exists(Path.Combine(folder, "best.ckpt")) ||
        File.Exists(Path.Combine(folder, "metrics.jsonl"));

    /// <summary>Removes a run's files from <paramref name="folder"/> (checkpoints, metrics, config), nothing else.</summary>
    public static void Clear(string folder)
    {
        foreach (var name in new[] { Trainer.LastFileName, "best.ckpt", Path.GetFileName(Checkpoint.PreviousPath(Trainer.LastFileName)),
                     Path.GetFileName(Checkpoint.PreviousPath("best.ckpt")), "metrics.jsonl", "config.json" })
        {
            string path = Path.Combine(folder, name);
            if (File.Exists(path)) File.Delete(path);
        }
    }

    /// <summary>Writes <paramref name="text"/> to <paramref name="path"/> through a temporary file and a rename: a kill leaves the old or the new file, never a part.</summary>
    public static void WriteAtomically(string path, string text)
    {
        string temp = path + ".tmp";
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            var bytes = new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(text);
            stream.Write(bytes);
            stream.Flush(flushToDisk: true); // on the disk before the rename makes it the file: a power loss leaves the old or the new one
        }
        PauseInWrite();
        File.Move(temp, path, overwrite: true);
    }

    private static readonly int WritePauseMs =
        int.TryParse(Environment.GetEnvironmentVariable("INTERROGATE_FAULT_WRITE_PAUSE_MS"), out int ms) && ms > 0 ? ms : 0;

    /// <summary>
    /// Fault injection for the kill harness (bench/kill): INTERROGATE_FAULT_WRITE_PAUSE_MS holds every checkpoint write
    /// and metrics rewrite that long between its temporary file and the rename (a checkpoint's also between its two
    /// renames), so random kills land inside writes.
    /// </summary>
    internal static void PauseInWrite()
    {
        if (WritePauseMs > 0) Thread.Sleep(WritePauseMs);
    }

    /// <summary>
    /// The complete lines of a metrics.jsonl (each a JSON object with an epoch), and how many lines were skipped because
    /// they are cut short or not JSON (a kill during an append leaves such a last line).
    /// </summary>
    public static (IReadOnlyList<(int Epoch, string Line)> Lines, int Skipped) ReadMetrics(string path)
    {
        var lines = new List<(int, string)>();
        int skipped = 0;
        foreach (var line in File.ReadAllLines(path))
        {
            if (line.Length == 0) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("epoch", out var e) && e.TryGetInt32(out int epoch))
                    lines.Add((epoch, line));
                else skipped++;
            }
            catch (JsonException) { skipped++; }
        }
        return (lines, skipped);
    }

    /// <summary>
    /// The keys (dotted paths) whose values differ between two serialized configurations, ignoring
    /// <paramref name="ignored"/> (settings that may change on resume without changing the run, such as the device).
    /// </summary>
    public static IReadOnlyList<string> ChangedKeys(string storedJson, string currentJson, IReadOnlySet<string> ignored)
    {
        var a = new Dictionary<string, string>();
        var b = new Dictionary<string, string>();
        Flatten(JsonNode.Parse(storedJson), "", a);
        Flatten(JsonNode.Parse(currentJson), "", b);
        return a.Keys.Union(b.Keys).Where(k => !ignored.Contains(k) && a.GetValueOrDefault(k) != b.GetValueOrDefault(k)).OrderBy(k => k, StringComparer.Ordinal).ToArray();
    }

    private static void Flatten(JsonNode? node, string prefix, Dictionary<string, string> into)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (k, v) in o) Flatten(v, prefix.Length == 0 ? k : $"{prefix}.{k}", into);
                break;
            default:
                into[prefix] = node?.ToJsonString() ?? "null";
                break;
        }
    }
}
