using System.Diagnostics;
using System.Text.RegularExpressions;
using InterroGate.Analysis;
using InterroGate.Configuration;
using InterroGate.Data.Formats;
using InterroGate.Training;

namespace InterroGate.Tests.Analysis;

[Collection("Torch")]
public sealed class HtmlReportTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-report-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Compare()
    {
        string dir = Path.Combine(_dir, "cmp");
        new ComparisonRunner(new CompareConfig
        {
            Name = "report",
            Data = new DataConfig { Dataset = "synthetic", TrainSize = 96, ValidationSize = 32, TestSize = 64 },
            Tasks = ["quadrant", "bar"],
            Backbone = new BackboneConfig { Name = "resnet20", Width = 0.25 },
            Training = new TrainingConfig { Epochs = 2, BatchSize = 32, EvalBatchSize = 64 },
            LambdaS = [4],
        }, dir).Run();
        return dir;
    }

    [Fact]
    public void The_report_is_one_self_contained_page_a_browser_lays_out_with_every_image()
    {
        string dir = Compare();
        // Every run timed its steps (after warm-up) and its epochs; the cost table sits beside the results table.
        foreach (var run in new[] { "mtl", "stl-quadrant", "interrogate-ls4" })
        {
            var cost = TrainingCost.Read(Path.Combine(dir, run, Trainer.MetricsFileName));
            Assert.True(cost.ForwardMs > 0 && cost.BackwardMs > 0 && cost.TrainSeconds > 0, $"{run}: {cost}");
        }
        Assert.Matches(@"\| InterroGate \(λs=4\) \| \d+\.\d \| \d+\.\d \| \d+\.\d \| \d+\.\d\d \| 2 \|", File.ReadAllText(Path.Combine(dir, ComparisonRunner.CostFileName)));
        Assert.True(File.Exists(Path.Combine(dir, "gates", "interrogate-ls4.png")), "the InterroGate model's sharing pattern beside the table");
        Assert.True(File.Exists(Path.Combine(dir, "tradeoff.svg")) && File.Exists(Path.Combine(dir, "curves-bar.png")));
        // The table names each row's run folders.
        var table = ComparisonTable.FromJson(File.ReadAllText(Path.Combine(dir, "table.json")));
        Assert.Equal(["stl-quadrant", "stl-bar"], table.Baseline!.Runs);
        Assert.Equal([["stl-quadrant", "stl-bar"], ["mtl"], ["interrogate-ls4"]], table.Rows.Select(r => r.Runs));
        var warnings = new List<string>();
        string path = HtmlReport.Write(dir, warning: warnings.Add);
        Assert.Empty(warnings);
        string html = File.ReadAllText(path);
        Assert.DoesNotContain("not in this folder", html);
        Assert.DoesNotContain("not in the table", html);
        Assert.DoesNotMatch(new Regex("(src|href)=\"(?!data:)"), html); // nothing outside the file
        Assert.Contains("InterroGate (λs=4)", html);
        Assert.Contains("Sharing pattern", html); // the InterroGate run's Figure 4 and gate table
        Assert.Contains("Training cost", html);
        Assert.Contains("&quot;lambdaS&quot;: 4", html); // its configuration (HTML-escaped)

        // Chromium, headless: the page reports what it laid out (images decoded, table rows, height) into the DOM.
        string dom = Chromium("--virtual-time-budget=5000", "--dump-dom", new Uri(path).AbsoluteUri);
        var rendered = Regex.Match(dom, "data-rendered=\"images (\\d+)/(\\d+); rows (\\d+); height (\\d+)\"");
        Assert.True(rendered.Success, "the page's load script did not run in the browser");
        int decoded = int.Parse(rendered.Groups[1].Value), images = int.Parse(rendered.Groups[2].Value);
        Assert.Equal(Regex.Matches(html, "<img\\b").Count, images);    // every image of the page was seen by the browser
        // The trade-off and curve figures, every run's validation curves and the InterroGate run's sharing pattern.
        var alts = Regex.Matches(html, "<img alt=\"([^\"]*)\"").Select(m => m.Groups[1].Value).ToArray();
        Assert.Equal(images, alts.Length);
        Assert.Equal("tradeoff.png", alts[0]);
        Assert.Contains(alts, a => a.StartsWith("curves", StringComparison.Ordinal));
        foreach (var run in new[] { "mtl", "stl-quadrant", "stl-bar", "interrogate-ls4" })
            Assert.Contains($"{run}: validation curve", alts);
        Assert.Equal(["interrogate-ls4: sharing pattern"], alts.Where(a => a.EndsWith("sharing pattern", StringComparison.Ordinal)));
        Assert.Equal(images, decoded);
        Assert.True(int.Parse(rendered.Groups[3].Value) >= 4, "table rows laid out");
        // Figures another comparison left in the folder are not shown: the page draws the table's own.
        File.Copy(Path.Combine(dir, "tradeoff.png"), Path.Combine(dir, "tradeoff-tau-old.png"));
        File.Copy(Path.Combine(dir, "curves-bar.png"), Path.Combine(dir, "curves-old.png"));
        string again = File.ReadAllText(HtmlReport.Write(dir));
        Assert.DoesNotContain("tradeoff-tau-old", again);
        Assert.DoesNotContain("curves-old", again);
        Assert.Contains("alt=\"curves-bar.png\"", again);

        // And what it painted: the results table's header shading at the top, the trade-off plot's STL marker
        // colour (Category10 blue) in the figures below it.
        string shot = Path.Combine(_dir, "shot.png");
        Chromium("--hide-scrollbars", "--window-size=1280,1600", "--virtual-time-budget=5000", $"--screenshot={shot}", new Uri(path).AbsoluteUri);
        var image = ImageFiles.Read(shot);
        int Count(Func<byte, byte, byte, bool> match, int y0, int y1)
        {
            int n = 0;
            for (int y = y0; y < Math.Min(y1, image.Height); y++)
                for (int x = 0; x < image.Width; x++)
                {
                    int o = (y * image.Width + x) * image.Channels;
                    if (match(image.Pixels[o], image.Pixels[o + 1], image.Pixels[o + 2])) n++;
                }
            return n;
        }
        static bool Near(byte v, int target) => Math.Abs(v - target) <= 12;
        Assert.True(Count((r, g, b) => r == 240 && g == 240 && b == 240, 0, 400) > 2000, "no table header painted near the top");
        Assert.True(Count((r, g, b) => Near(r, 31) && Near(g, 119) && Near(b, 180), 300, image.Height) > 30, "no STL marker painted in the figures");

        // A run whose config.json no longer reads (alone in a copy of the folder, so that one run is drawn): its section
        // says so instead of leaving its sharing pattern out unsaid.
        string copy = Path.Combine(_dir, "damaged");
        Directory.CreateDirectory(Path.Combine(copy, "interrogate-ls4"));
        File.Copy(Path.Combine(dir, "table.json"), Path.Combine(copy, "table.json"));
        foreach (var file in Directory.GetFiles(Path.Combine(dir, "interrogate-ls4")))
            File.Copy(file, Path.Combine(copy, "interrogate-ls4", Path.GetFileName(file)));
        string intact = File.ReadAllText(HtmlReport.Write(copy, warning: warnings.Add));
        Assert.Contains("interrogate-ls4: sharing pattern", intact);
        // The runs the copy lacks are named, in the page and as warnings; the one it holds is not.
        Assert.Equal(3, warnings.Count);
        foreach (var (run, label) in new[] { ("stl-quadrant", "STL"), ("stl-bar", "STL"), ("mtl", "MTL") })
        {
            Assert.Contains(warnings, w => w.StartsWith(Path.Combine(copy, run) + " holds no run (" + label + " in table.json)", StringComparison.Ordinal));
            Assert.Contains($"<li><code>{run}</code> ({label})</li>", intact);
        }
        Assert.Contains("3 run folders of the table are not in this folder", intact);
        Assert.DoesNotContain("<code>interrogate-ls4</code>", intact);
        // A run left in the folder by another comparison: listed after the table's and marked.
        Directory.CreateDirectory(Path.Combine(copy, "interrogate-ls99"));
        File.Copy(Path.Combine(dir, "interrogate-ls4", "config.json"), Path.Combine(copy, "interrogate-ls99", "config.json"));
        string stray = File.ReadAllText(HtmlReport.Write(copy));
        Assert.Contains("<h2>Runs (2, 1 of them not in the table)</h2>", stray);
        Assert.Contains("<summary>interrogate-ls4</summary>", stray);
        Assert.True(stray.IndexOf("<summary>interrogate-ls4</summary>", StringComparison.Ordinal) <
                    stray.IndexOf("<summary>interrogate-ls99 (not in the table)</summary>", StringComparison.Ordinal));
        Directory.Delete(Path.Combine(copy, "interrogate-ls99"), recursive: true);
        File.WriteAllText(Path.Combine(copy, "interrogate-ls4", "config.json"), "{ \"architecture\": ");
        string damaged = File.ReadAllText(HtmlReport.Write(copy));
        Assert.Single(Regex.Matches(damaged, "config.json does not read as JSON"));
        Assert.DoesNotContain("interrogate-ls4: sharing pattern", damaged);
    }

    [Fact]
    public void A_folder_without_a_table_is_named()
    {
        var e = Assert.Throws<FileNotFoundException>(() => HtmlReport.Write(_dir));
        Assert.Contains("table.json", e.Message);
        File.WriteAllText(Path.Combine(_dir, "table.json"), "{ not json");
        Assert.Contains("table.json", Assert.Throws<InterroGate.Data.DataFormatException>(() => HtmlReport.Write(_dir)).Message);
        // JSON that is not a comparison table: no tasks, or a row without a task's metric.
        File.WriteAllText(Path.Combine(_dir, "table.json"), "{}");
        Assert.Contains("is not a comparison table", Assert.Throws<InterroGate.Data.DataFormatException>(() => HtmlReport.Write(_dir)).Message);
        File.WriteAllText(Path.Combine(_dir, "table.json"), """
            {"tasks": [{"name": "a", "kind": "classification", "outputs": 2}], "rows": [{"label": "STL", "method": "stl", "metrics": {}, "macs": 1, "parameters": 1}]}
            """);
        Assert.Contains("is not a comparison table", Assert.Throws<InterroGate.Data.DataFormatException>(() => HtmlReport.Write(_dir)).Message);
    }

    private static string Chromium(params string[] args)
    {
        string exe = File.Exists("/usr/bin/chromium") ? "/usr/bin/chromium" : "chromium-browser";
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage" }.Concat(args)) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("Chromium did not start (scripts/ensure-chromium.sh installs it).");
        var stderr = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(60_000)) { p.Kill(true); throw new TimeoutException("Chromium took over a minute"); }
        Assert.True(p.ExitCode == 0, $"chromium exited with {p.ExitCode}: {stderr.Result}");
        return output;
    }
}
