using System.CommandLine;
using InterroGate.Analysis;

namespace InterroGate.Cli.Commands;

/// <summary>`interrogate report DIR`: one self-contained HTML page for a comparison or sweep.</summary>
internal static class ReportCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("dir") { Description = "The folder of a comparison or sweep (its table.json, from compare, sweep or merge)" };
        var output = new Option<string?>("--out", "-o") { Description = "The HTML file to write (default: DIR/report.html)" };
        var cmd = new Command("report", "Write one self-contained HTML page: the table, the figures, every run's configuration and curves, each InterroGate model's sharing pattern.") { dir, output };
        cmd.SetAction(p => CommonOptions.Guard(_ =>
        {
            Runtime.NativeRuntime.EnsureLoaded(); // the sharing patterns are read from checkpoints
            if (p.GetValue(output) is { } file) CommonOptions.OutputFile(file);
            string path = HtmlReport.Write(p.GetValue(dir)!, p.GetValue(output), run => Console.Error.WriteLine($"report: reading {run}"),
                missing => Console.Error.WriteLine($"warning: {missing}"));
            Console.WriteLine($"wrote {path} ({new FileInfo(path).Length / 1024:N0} KB)");
            return 0;
        }));
        return cmd;
    }
}
