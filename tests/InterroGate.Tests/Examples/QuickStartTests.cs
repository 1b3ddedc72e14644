using InterroGate.Examples;

namespace InterroGate.Tests.Examples;

/// <summary>examples/QuickStart, the library's API end to end, runs, and the README shows its code as it compiles.</summary>
[Collection("Torch")]
public sealed class QuickStartTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-quickstart-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_quick_start_trains_prunes_saves_and_predicts_what_the_trained_model_computes()
    {
        var log = new List<string>();
        var result = QuickStart.Run(_dir, "synthetic", trainSize: 512, epochs: 2, log.Add);

        Assert.Equal(2, log.Count(l => l.StartsWith("epoch ", StringComparison.Ordinal)));
        Assert.True(File.Exists(Path.Combine(_dir, "last.ckpt")));
        Assert.True(File.Exists(result.StaticModel));
        Assert.Equal(["bar", "position", "quadrant"], result.TestMetrics.Keys.Order());
        Assert.All(result.TestMetrics.Values, v => Assert.True(double.IsFinite(v) && v >= 0));
        Assert.InRange(result.MacsStatic, 1, result.MacsGated);
        Assert.True(result.LargestOutputDifference <= 1e-4, $"the static network differs from the trained model by {result.LargestOutputDifference:E2}");
        Assert.Equal(["bar", "quadrant"], result.Predictions.Keys.Order()); // the classification tasks
        Assert.All(result.Predictions.Values, p => Assert.Equal(8, p.Length));
        Assert.Contains(log, l => l.StartsWith("MACs per image:", StringComparison.Ordinal));
    }

    /// <summary>Lines without their common indentation, trailing blanks and empty lines at either end.</summary>
    private static string[] Dedented(string text)
    {
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n').Select(l => l.TrimEnd()).ToList();
        while (lines.Count > 0 && lines[0].Length == 0) lines.RemoveAt(0);
        while (lines.Count > 0 && lines[^1].Length == 0) lines.RemoveAt(lines.Count - 1);
        int indent = lines.Where(l => l.Length > 0).Min(l => l.Length - l.TrimStart().Length);
        return lines.Select(l => l.Length == 0 ? l : l[indent..]).ToArray();
    }

    [Fact]
    public void The_README_shows_the_quick_start_code_as_it_compiles()
    {
        string code = Repository.ReadFile("examples", "QuickStart", "QuickStart.cs");
        int from = code.IndexOf("#region quickstart", StringComparison.Ordinal);
        int to = code.IndexOf("#endregion", from, StringComparison.Ordinal);
        Assert.True(from >= 0 && to > from, "QuickStart.cs marks its README part with #region quickstart ... #endregion");
        from = code.IndexOf('\n', from) + 1;
        to = code.LastIndexOf('\n', to);

        string readme = Repository.ReadFile("README.md");
        int section = readme.IndexOf("## Using the library from C#", StringComparison.Ordinal);
        Assert.True(section >= 0, "README has the section \"Using the library from C#\"");
        int start = readme.IndexOf("```csharp", section, StringComparison.Ordinal) + "```csharp".Length;
        int end = readme.IndexOf("```", start, StringComparison.Ordinal);
        Assert.Equal(Dedented(code[from..to]), Dedented(readme[start..end]));
    }
}
