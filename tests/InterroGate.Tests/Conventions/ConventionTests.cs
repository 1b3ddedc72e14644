using System.Text.RegularExpressions;

namespace InterroGate.Tests.Conventions;

/// <summary>Scans the library's source for what the project's conventions rule out.</summary>
public sealed class ConventionTests
{
    private static readonly string Root = Repository.Root;

    private static IEnumerable<(string Path, string Text)> Sources(params string[] folders) =>
        folders.SelectMany(f => Directory.EnumerateFiles(Path.Combine(Root, "src", "InterroGate", f), "*.cs", SearchOption.AllDirectories))
               .Select(p => (Path.GetRelativePath(Root, p), File.ReadAllText(p)));

    private static readonly string[] ModelFolders = ["Layers", "Backbones", "Gating", "Architectures", "Heads"];

    [Fact]
    public void Model_code_has_no_dispose_scopes_devices_or_hand_written_dispose()
    {
        // One exception, named here: the gated encoder opens a scope per unit, so that a unit's temporaries (the
        // gate-and-mix of T+1 branches) are released as the unit ends, as PyTorch frees them; held to the step's end,
        // they doubled the peak memory of a training step (docs/architecture.md, "Memory").
        const string Exception = "src/InterroGate/Gating/GatedEncoder.cs";
        Assert.Single(Regex.Matches(Sources("Gating").Single(s => s.Path == Exception).Text, @"NewDisposeScope\(\)"));
        var offenders = Sources(ModelFolders)
            .Where(s => Regex.IsMatch(s.Path == Exception ? s.Text.Replace("NewDisposeScope()", "") : s.Text, @"NewDisposeScope\(\)")
                        || Regex.IsMatch(s.Text, @"\bDevice\s+\w+\s*[,)]")
                        || Regex.IsMatch(s.Text, @"override\s+void\s+Dispose\("))
            .Select(s => s.Path).ToArray();
        Assert.Empty(offenders);
    }

    [Fact]
    public void The_mechanism_does_not_depend_on_the_speed_code()
    {
        // Gating holds Eqs. 2-4 and the gated encoders; the fused kernel and the fusion tuner (Runtime/) plug into it
        // when a model is built, never the reverse, and nothing is timed inside forward.
        var offenders = Sources("Gating")
            .Where(s => Regex.IsMatch(s.Text, @"Runtime\.|using InterroGate\.Runtime|Stopwatch"))
            .Select(s => s.Path).ToArray();
        Assert.Empty(offenders);
    }

    [Fact]
    public void No_code_branches_on_a_task_name()
    {
        var pattern = new Regex(@"(task|Task|\.Name)\s*==\s*""|""\s*==\s*(task|t)\.Name|case\s+""(depth|semseg|normals|gender|age|top_left|bottom_right)""");
        var offenders = Sources("").Where(s => pattern.IsMatch(s.Text)).Select(s => s.Path).ToArray();
        Assert.Empty(offenders);
    }

    [Fact]
    public void Files_use_file_scoped_namespaces_and_concrete_classes_are_sealed_or_subclassed()
    {
        var all = Sources("").ToArray();
        Assert.Empty(all.Where(s => Regex.IsMatch(s.Text, @"^namespace\s+[\w.]+\s*$\s*\{", RegexOptions.Multiline)).Select(s => s.Path));
        var text = string.Join("\n", all.Select(s => s.Text));
        // Any access (nested classes too); "sealed", "static" and "abstract" sit between it and "class".
        var unsealed = Regex.Matches(text, @"\b(?:public|internal|private|protected|file)\s+(?:partial\s+)?class\s+(\w+)")
            .Select(m => m.Groups[1].Value)
            .Where(name => !Regex.IsMatch(text, $@":\s*{name}\b"))
            .ToArray();
        Assert.Empty(unsealed);
    }

    [Fact]
    public void Method_files_start_with_a_summary_naming_the_paper_they_implement()
    {
        foreach (var file in new[] { "Gating/GateLayer.cs", "Gating/SparsityLoss.cs", "Gating/GatedEncoder.cs", "Architectures/InterroGateModel.cs" })
        {
            var first = File.ReadLines(Path.Combine(Root, "src", "InterroGate", file)).First();
            Assert.StartsWith("//", first);
            Assert.Contains("2402.16848", first);
        }
    }
}
