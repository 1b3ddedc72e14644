namespace InterroGate.Tests;

/// <summary>The repository the tests run from (they run from tests/InterroGate.Tests/bin/...).</summary>
internal static class Repository
{
    /// <summary>The folder that holds InterroGate.slnx.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>The text of a file of the repository, given by its path parts from the root.</summary>
    public static string ReadFile(params string[] parts) => File.ReadAllText(Path.Combine([Root, .. parts]));

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "InterroGate.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new DirectoryNotFoundException("InterroGate.slnx not found above the test folder.");
    }
}
