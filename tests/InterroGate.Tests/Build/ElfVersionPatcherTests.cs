using InterroGate.Build;

namespace InterroGate.Tests.Build;

public sealed class ElfVersionPatcherTests
{
    private const string Version = "GLIBCXX_3.4.32";

    /// <summary>The copy of libLibTorchSharp.so the build placed next to these tests.</summary>
    private static string BuiltLibrary() =>
        Directory.EnumerateFiles(AppContext.BaseDirectory, "libLibTorchSharp.so", SearchOption.AllDirectories).First();

    [Fact]
    public void The_build_output_carries_the_weak_requirement_where_the_host_lacks_the_version()
    {
        var host = ElfVersionPatcher.FindHostLibStdCxx();
        Assert.NotNull(host);
        bool hostHasIt = ElfVersionPatcher.Defines(host!, Version);
        var result = ElfVersionPatcher.Patch(File.ReadAllBytes(BuiltLibrary()), Version, "built copy");
        Assert.Equal(hostHasIt ? ElfVersionPatcher.Result.Patched : ElfVersionPatcher.Result.AlreadyWeak, result);
    }

    /// <summary>libLibTorchSharp.so as the TorchSharp package ships it (in the NuGet package folder).</summary>
    private static string ShippedLibrary()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                      ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        return Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
    }

    [Fact]
    public void Patching_the_shipped_library_flips_one_byte_and_is_idempotent()
    {
        var shipped = File.ReadAllBytes(ShippedLibrary());
        var patched = (byte[])shipped.Clone();
        Assert.Equal(ElfVersionPatcher.Result.Patched, ElfVersionPatcher.Patch(patched, Version, "copy"));
        Assert.Equal(1, shipped.Zip(patched).Count(p => p.First != p.Second));
        Assert.Equal(ElfVersionPatcher.Result.NotRequired, ElfVersionPatcher.Patch((byte[])shipped.Clone(), "GLIBCXX_99.9", "copy"));

        var path = Path.Combine(Path.GetTempPath(), $"elf-{Guid.NewGuid():N}.so");
        try
        {
            File.WriteAllBytes(path, shipped);
            Assert.Equal(ElfVersionPatcher.Result.Patched, ElfVersionPatcher.MarkWeak(path, Version));
            Assert.Equal(patched, File.ReadAllBytes(path));
            Assert.Equal(ElfVersionPatcher.Result.AlreadyWeak, ElfVersionPatcher.MarkWeak(path, Version));
        }
        finally
        {
            File.Delete(path);
        }
        if (!ElfVersionPatcher.Defines(ElfVersionPatcher.FindHostLibStdCxx()!, Version))
            Assert.Equal(patched, File.ReadAllBytes(BuiltLibrary()));
    }

    [Fact]
    public void Host_version_detection_reads_the_library()
    {
        var host = ElfVersionPatcher.FindHostLibStdCxx()!;
        Assert.True(ElfVersionPatcher.Defines(host, "GLIBCXX_3.4.30"));
        Assert.False(ElfVersionPatcher.Defines(host, "GLIBCXX_99.9.99"));
    }

    [Fact]
    public void Non_elf_and_truncated_files_are_rejected_by_name()
    {
        var e = Assert.Throws<InvalidDataException>(() => ElfVersionPatcher.Patch("not an elf file at all, clearly................................."u8.ToArray(), Version, "notes.txt"));
        Assert.Contains("notes.txt", e.Message);
        var truncated = File.ReadAllBytes(BuiltLibrary())[..4096];
        var t = Assert.Throws<InvalidDataException>(() => ElfVersionPatcher.Patch(truncated, Version, "cut.so"));
        Assert.Contains("cut.so", t.Message);
    }
}
