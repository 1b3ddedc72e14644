using InterroGate.Runtime;

namespace InterroGate.Tests.Runtime;

/// <summary>Finding and checking an external libtorch, against fake libtorch folders (nothing here is loaded).</summary>
public sealed class LibTorchLocatorTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("libtorch-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>A folder laid out like an installed PyTorch: torch/version.py and torch/lib/*.so (empty files).</summary>
    private string FakePyTorch(string? version, bool cuda = false, params string[] leaveOut)
    {
        var torch = Path.Combine(_root, "site-packages", "torch");
        var lib = Directory.CreateDirectory(Path.Combine(torch, "lib")).FullName;
        var libs = new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" }.Concat(cuda ? ["libc10_cuda.so", "libtorch_cuda.so"] : Array.Empty<string>());
        foreach (var f in libs.Except(leaveOut)) File.WriteAllBytes(Path.Combine(lib, f), []);
        if (version is not null) File.WriteAllText(Path.Combine(torch, "version.py"), $"from typing import Optional\n__version__ = '{version}'\ndebug = False\n");
        return torch;
    }

    private static Func<string, string?> Env(params (string Key, string Value)[] vars) =>
        key => vars.FirstOrDefault(v => v.Key == key).Value;

    [Fact]
    public void The_environment_variable_may_name_the_package_or_its_lib_folder_and_the_version_is_read_beside_it()
    {
        var torch = FakePyTorch("2.11.0+cu128", cuda: true);
        foreach (var named in new[] { torch, Path.Combine(torch, "lib") })
        {
            var found = LibTorchLocator.Find(Env((LibTorchLocator.EnvironmentVariable, named)), () => null, []);
            Assert.Equal(LibTorchSource.EnvironmentVariable, found.Source);
            Assert.Equal(Path.Combine(torch, "lib"), found.Folder);
            Assert.Equal("2.11.0+cu128", found.Version);
            Assert.True(found.HasCuda);
            Assert.Null(found.Warning);
        }
    }

    [Fact]
    public void Without_the_variable_the_bundled_one_comes_first_then_the_library_path_then_python3s_pytorch()
    {
        var torch = FakePyTorch("2.10.1");
        var bundled = Directory.CreateDirectory(Path.Combine(_root, "app", "native")).FullName;
        File.WriteAllBytes(Path.Combine(bundled, "libtorch_cpu.so"), []);
        var lib = Path.Combine(torch, "lib");

        Assert.Equal(LibTorchSource.Bundled, LibTorchLocator.Find(Env(("LD_LIBRARY_PATH", lib)), () => torch, [bundled]).Source);
        var onPath = LibTorchLocator.Find(Env(("LD_LIBRARY_PATH", "/nonexistent:" + lib)), () => throw new InvalidOperationException("python3 must not be asked"), []);
        Assert.Equal((LibTorchSource.LibraryPath, lib), (onPath.Source, onPath.Folder));
        var python = LibTorchLocator.Find(Env(), () => torch, []);
        Assert.Equal((LibTorchSource.PyTorch, "2.10.1", false), (python.Source, python.Version, python.HasCuda));
        var e = Assert.Throws<NativeLoadException>(() => LibTorchLocator.Find(Env(), () => null, []));
        Assert.Contains(LibTorchLocator.EnvironmentVariable, e.Message);
        Assert.Contains("no bundled libtorch", e.Message);
    }

    [Fact]
    public void A_libtorch_download_reads_its_build_version_file()
    {
        var root = Directory.CreateDirectory(Path.Combine(_root, "libtorch")).FullName;
        var lib = Directory.CreateDirectory(Path.Combine(root, "lib")).FullName;
        foreach (var f in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" }) File.WriteAllBytes(Path.Combine(lib, f), []);
        File.WriteAllText(Path.Combine(root, "build-version"), "2.10.0+cpu\n");
        var found = LibTorchLocator.Inspect(root, LibTorchSource.EnvironmentVariable);
        Assert.Equal(("2.10.0+cpu", lib), (found.Version, found.Folder));
    }

    [Fact]
    public void Bad_folders_and_versions_are_refused_in_plain_words_before_anything_is_loaded()
    {
        var missingFolder = Assert.Throws<NativeLoadException>(() => LibTorchLocator.Find(Env((LibTorchLocator.EnvironmentVariable, Path.Combine(_root, "nope"))), () => null, []));
        Assert.Contains("is not a folder", missingFolder.Message);

        var empty = Directory.CreateDirectory(Path.Combine(_root, "empty")).FullName;
        File.WriteAllBytes(Path.Combine(empty, "libfoo.so"), []);
        var noTorch = Assert.Throws<NativeLoadException>(() => LibTorchLocator.Inspect(empty, LibTorchSource.EnvironmentVariable));
        Assert.Contains("no libtorch_cpu.so", noTorch.Message);
        Assert.Contains("libfoo.so", noTorch.Message); // says what it found instead

        var incomplete = FakePyTorch("2.10.0", leaveOut: "libc10.so");
        Assert.Contains("lacks libc10.so", Assert.Throws<NativeLoadException>(() => LibTorchLocator.Inspect(incomplete, LibTorchSource.PyTorch)).Message);
    }

    [Theory]
    [InlineData("2.4.1", "older libtorch")]
    [InlineData("1.13.1+cu117", "different native interface")]
    [InlineData("banana", "not a version number")]
    public void Versions_it_cannot_run_on_are_named(string version, string why)
    {
        var torch = FakePyTorch(version);
        var e = Assert.Throws<NativeLoadException>(() => LibTorchLocator.Find(Env(), () => torch, []));
        Assert.Contains(version, e.Message);
        Assert.Contains(why, e.Message);
    }

    [Fact]
    public void A_newer_or_unknown_version_is_accepted_with_a_warning()
    {
        Assert.Null(LibTorchLocator.CheckVersion("2.12.0", out var newer));
        Assert.Contains("newer than the versions checked", newer);
        Assert.Null(LibTorchLocator.CheckVersion("2.10.0", out var exact));
        Assert.Null(exact);

        var unknown = LibTorchLocator.Inspect(FakePyTorch(version: null), LibTorchSource.PyTorch);
        Assert.Null(unknown.Version);
        Assert.Contains("could not be checked", unknown.Warning);
        Assert.Contains("could not be checked", unknown.Describe());
    }

    [Fact]
    public void The_running_process_uses_the_bundled_libtorch_and_says_so()
    {
        NativeRuntime.EnsureLoaded();
        var location = Assert.IsType<LibTorchLocation>(NativeRuntime.Location);
        Assert.Equal(LibTorchSource.Bundled, location.Source);
        Assert.StartsWith("bundled CPU libtorch 2.10", location.Describe(), StringComparison.Ordinal);
    }
}
