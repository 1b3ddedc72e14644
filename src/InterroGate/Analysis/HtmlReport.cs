// One self-contained HTML page for a comparison or sweep: its table, its figures, every run's configuration and
// validation curves, and the sharing pattern of every InterroGate model.
using System.Net;
using System.Text;
using System.Text.Json;

namespace InterroGate.Analysis;

public static partial class HtmlReport
{
    public const string FileName = "report.html";

    /// <summary>
    /// Writes <paramref name="output"/> (default: report.html in <paramref name="directory"/>) for the comparison in
    /// <paramref name="directory"/> (its table.json, from compare, sweep or merge). Images are embedded as data URIs
    /// and the style is inline, so the page is one file that opens anywhere. Returns its path. A run the table names
    /// that the folder no longer holds is listed in the page and passed to <paramref name="warning"/>.
    /// </summary>
    public static string Write(string directory, string? output = null, Action<string>? progress = null, Action<string>? warning = null)
    {
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException(File.Exists(directory) ? $"{directory} is a file; give the folder of a comparison or sweep." : $"{directory} does not exist.");
        string tablePath = Path.Combine(directory, "table.json");
        if (!File.Exists(tablePath))
            throw new FileNotFoundException($"{directory} holds no table.json: give the folder of a comparison or sweep (compare, sweep or merge write it).", tablePath);
        ComparisonTable table;
        try
        {
            table = ComparisonTable.FromJson(File.ReadAllText(tablePath));
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or FormatException)
        {
            throw new Data.DataFormatException(tablePath, $"is not a comparison table ({e.Message})");
        }
        string name = Path.GetFileName(Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar));
        var html = new StringBuilder();
        html.Append($$"""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>InterroGate report: {{E(name)}}</title>
            <style>
            body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
            table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
            th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
            th:first-child, td:first-child { text-align: left; }
            thead { background: #f0f0f0; }
            img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
            pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
            details { margin: 0.6em 0; } summary { cursor: pointer; font-weight: 600; }
            .note { color: #555; font-size: 0.9em; }
            </style></head><body>
            <h1>{{E(name)}}</h1>
            <p class="note">Written by <code>interrogate report</code> from {{E(Path.GetFullPath(directory))}}.</p>

            """);

        html.Append("<h2>Results</h2>\n").Append(MarkdownTable(table.ToMarkdown(details: true)));
        string costPath = Path.Combine(directory, Training.ComparisonRunner.CostFileName);
        html.Append("<h2>Training cost</h2>\n").Append(MarkdownTable(File.Exists(costPath) ? File.ReadAllText(costPath) : table.ToCostMarkdown("the runs' device")));

        string scratch = Directory.CreateTempSubdirectory("ig-report-").FullName;
        try
        {
            // Figures: drawn now from the table (and its runs' metrics), so that they show what the table shows even where
            // the folder keeps figures of an earlier comparison.
            html.Append("<h2>Figures</h2>\n");
            foreach (var (png, title) in Figures(table, directory, scratch)) html.Append(Image(png, title));

            // Runs: every folder with a config.json, seed folders included.
            var runs = Directory.GetFiles(directory, "config.json", SearchOption.AllDirectories)
                .Select(Path.GetDirectoryName).Order(StringComparer.Ordinal).ToArray();
            // A table that names its runs (written since rows record them) tells them from other runs left in the folder,
            // e.g. by an earlier comparison with other seeds or λs: those are shown last and marked.
            var inTable = table.Rows.SelectMany(r => r.Runs).Select(r => r.Replace('\\', '/')).ToHashSet(StringComparer.Ordinal);
            bool InTable(string run) => inTable.Count == 0 || inTable.Contains(Path.GetRelativePath(directory, run).Replace('\\', '/'));
            runs = [.. runs.Where(r => InTable(r!)), .. runs.Where(r => !InTable(r!))];
            int others = runs.Count(r => !InTable(r!));
            html.Append($"<h2>Runs ({runs.Length}{(others > 0 ? $", {others} of them not in the table" : "")})</h2>\n");
            if (others > 0)
                html.Append($"<p>{others} run folder{(others == 1 ? "" : "s")} below {(others == 1 ? "is" : "are")} not in the table (left by another comparison into this folder), marked so.</p>\n");
            var missing = MissingRuns(directory, table);
            if (missing.Count > 0)
            {
                html.Append($"<p><strong>{missing.Count} run folder{(missing.Count == 1 ? "" : "s")} of the table {(missing.Count == 1 ? "is" : "are")} not in this folder</strong> " +
                            "(the table's numbers stand; their curves, configurations and sharing patterns are not shown):</p>\n<ul>\n");
                foreach (var (run, label) in missing)
                {
                    html.Append($"<li><code>{E(run)}</code> ({E(label)})</li>\n");
                    warning?.Invoke($"{Path.Combine(directory, run)} holds no run ({label} in table.json): its curves, configuration and sharing pattern are left out of the page");
                }
                html.Append("</ul>\n");
            }
            foreach (var run in runs)
            {
                string rel = Path.GetRelativePath(directory, run!);
                progress?.Invoke(rel);
                html.Append($"<details><summary>{E(rel)}{(InTable(run!) ? "" : " (not in the table)")}</summary>\n");
                var curve = ComparisonPlots.ReadCurve(rel, Path.Combine(run!, Training.Trainer.MetricsFileName));
                if (curve.Tasks.Count > 0)
                {
                    var tasks = new Tasks.TaskSet(table.Tasks.Where(t => curve.Tasks.ContainsKey(t.Name)));
                    foreach (var (_, (png, _)) in ComparisonPlots.Curves([curve], tasks, Path.Combine(scratch, rel.Replace('/', '_'))))
                        html.Append(Image(png, $"{rel}: validation curve"));
                }
                var (interroGate, unreadable) = ReadKind(Path.Combine(run!, "config.json"));
                if (unreadable is not null)
                    html.Append($"<p><em>config.json does not read as JSON ({E(unreadable)}): no sharing pattern shown.</em></p>\n");
                if (File.Exists(Path.Combine(run!, Training.Trainer.LastFileName)) && interroGate)
                {
                    var gates = GateReport.Load(run!);
                    var (png, _) = GatePatternPlot.Save(gates.Layers, gates.Tasks, Path.Combine(scratch, rel.Replace('/', '_') + "-gates"), $"Sharing pattern: {rel}", gates.LayerNames);
                    html.Append("<h4>Sharing pattern</h4>\n").Append(Image(png, $"{rel}: sharing pattern"));
                    html.Append(MarkdownTable(gates.ToMarkdown()));
                }
                html.Append("<h4>Configuration</h4>\n<pre>").Append(E(File.ReadAllText(Path.Combine(run!, "config.json")))).Append("</pre>\n</details>\n");
            }
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
        // What a browser check reads back: how many images decoded and how many table rows were laid out.
        html.Append("""
            <script>
            window.addEventListener('load', () => {
              const images = [...document.images];
              const decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
              document.body.dataset.rendered = `images ${decoded}/${images.length}; rows ${document.querySelectorAll('tbody tr').length}; height ${document.body.scrollHeight}`;
            });
            </script>
            </body></html>

            """);
        string path = output ?? Path.Combine(directory, FileName);
        Training.RunFiles.WriteAtomically(path, html.ToString());
        return path;
    }

    /// <summary>The run folders the table names (a table written before they were recorded names none) that are not in <paramref name="directory"/>, with their rows' labels.</summary>
    internal static IReadOnlyList<(string Run, string Label)> MissingRuns(string directory, ComparisonTable table) =>
        table.Rows.SelectMany(r => r.Runs.Select(run => (Run: run, r.Label)))
            .Where(x => !File.Exists(Path.Combine(directory, x.Run, "config.json"))).ToArray();

    /// <summary>Whether a run's configuration names InterroGate, or why it does not read.</summary>
    /// <summary>
    /// The comparison's figures, drawn into <paramref name="scratch"/> from the table: the trade-off (and one per task
    /// coloured by τ when rows have a τ), and per task the validation curves of the runs the table names (each seed's).
    /// A table from before rows named their runs has no curves here; each run's own are shown with it.
    /// </summary>
    private static IEnumerable<(string Png, string Title)> Figures(ComparisonTable table, string directory, string scratch)
    {
        yield return (ComparisonPlots.TradeOff(table, Path.Combine(scratch, "tradeoff")).Png, "tradeoff.png");
        if (table.Rows.Any(r => r.Label.Contains("tau=", StringComparison.Ordinal)))
            foreach (var (task, i) in table.Tasks.Select((t, i) => (t, i)))
                yield return (ComparisonPlots.TradeOff(table, Path.Combine(scratch, $"tradeoff-tau-{i}"), task.Name,
                    $"Accuracy against cost, coloured by τ of {task.Name}").Png, $"tradeoff-tau-{task.Name}.png");
        var curves = table.Rows.SelectMany(r => r.Runs.Select(run =>
        {
            string seed = run.Replace('\\', '/').Split('/')[0];
            string label = seed.StartsWith("seed-", StringComparison.Ordinal) ? $"{r.Label} ({seed})" : r.Label;
            return ComparisonPlots.ReadCurve(label, Path.Combine(directory, run, Training.Trainer.MetricsFileName));
        })).Where(c => c.Tasks.Count > 0).ToArray();
        if (curves.Length == 0) yield break;
        foreach (var (task, (png, _)) in ComparisonPlots.Curves(curves, table.Tasks, Path.Combine(scratch, "curves")))
            yield return (png, $"curves-{task}.png");
    }

    private static (bool InterroGate, string? Unreadable) ReadKind(string configPath)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(configPath));
            return (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("architecture", out var a)
                    && a.ValueKind == JsonValueKind.Object && a.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
                    && t.GetString() == "interrogate", null);
        }
        catch (JsonException e)
        {
            return (false, e.Message);
        }
    }

    /// <summary>A Markdown pipe table (and the lines after it) as an HTML table (and paragraphs).</summary>
    internal static string MarkdownTable(string markdown)
    {
        var sb = new StringBuilder();
        var lines = markdown.Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
        bool inTable = false, header = true;
        foreach (var line in lines)
        {
            if (line.StartsWith('|'))
            {
                // Cells end at a '|' that is not escaped ("\|" is a '|' inside a cell).
                var cells = PipeSplit().Split(line.Trim().Trim('|')).Select(c => c.Replace("\\|", "|", StringComparison.Ordinal).Trim()).ToArray();
                if (cells.All(c => c.Length > 0 && c.All(ch => ch is '-' or ':'))) continue; // the separator row
                if (!inTable) { sb.Append("<table>\n"); inTable = true; header = true; }
                if (header) sb.Append("<thead><tr>").Append(string.Concat(cells.Select(c => $"<th>{E(c)}</th>"))).Append("</tr></thead>\n<tbody>\n");
                else sb.Append("<tr>").Append(string.Concat(cells.Select(c => $"<td>{E(c)}</td>"))).Append("</tr>\n");
                header = false;
                continue;
            }
            if (inTable) { sb.Append("</tbody></table>\n"); inTable = false; }
            if (line.Trim().Length > 0) sb.Append("<p class=\"note\">").Append(E(line.Trim())).Append("</p>\n");
        }
        if (inTable) sb.Append("</tbody></table>\n");
        return sb.ToString();
    }

    private static string Image(string path, string alt) =>
        $"<img alt=\"{E(alt)}\" src=\"data:image/png;base64,{Convert.ToBase64String(File.ReadAllBytes(path))}\">\n";

    [System.Text.RegularExpressions.GeneratedRegex(@"(?<!\\)\|")]
    private static partial System.Text.RegularExpressions.Regex PipeSplit();

    private static string E(string s) => WebUtility.HtmlEncode(s);
}
