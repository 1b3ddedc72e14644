using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace InterroGate.Runtime;

/// <summary>Where the libtorch in use came from.</summary>
public enum LibTorchSource
{
    /// <summary>The CPU libtorch shipped with the program (the default build).</summary>
    Bundled,
    /// <summary>The folder named by <see cref="LibTorchLocator.EnvironmentVariable"/>.</summary>
    EnvironmentVariable,
    /// <summary>A folder on LD_LIBRARY_PATH.</summary>
    LibraryPath,
    /// <summary>The torch/lib folder of the PyTorch that python3 imports.</summary>
    PyTorch,
}

/// <summary>A libtorch found on disk: its folder of shared libraries, its version when known, and whether it has CUDA.</summary>
public sealed record LibTorchLocation(LibTorchSource Source, string Folder, string? Version, bool HasCuda, string? Warning)
{
    public string Describe()
    {
        string from = Source switch
        {
            LibTorchSource.Bundled => "bundled CPU libtorch",
            LibTorchSource.EnvironmentVariable => $"libtorch from {LibTorchLocator.EnvironmentVariable}",
            LibTorchSource.LibraryPath => "libtorch on LD_LIBRARY_PATH",
            _ => "libtorch of the installed PyTorch",
        };
        return $"{from} {Version ?? "(version unknown)"}{(HasCuda ? " with CUDA" : ", CPU only")} in {Folder}" +
               (Warning is null ? "" : $"; {Warning}");
    }
}

/// <summary>
/// Finds the libtorch to run on. The bundled CPU libtorch is the default; a build without it
/// (-p:InterroGateBundledLibTorch=false) uses, in this order, the folder named by INTERROGATE_LIBTORCH,
/// a folder on LD_LIBRARY_PATH holding libtorch, or the one inside the PyTorch that python3 imports.
/// INTERROGATE_LIBTORCH wins over the bundled one too. The version is read from the files beside the
/// libraries (libtorch's build-version, PyTorch's version.py) and checked before anything is loaded.
/// </summary>
public static class LibTorchLocator
{
    public const string EnvironmentVariable = "INTERROGATE_LIBTORCH";

    /// <summary>The libtorch minor versions (of 2.x) TorchSharp 0.107 runs on: 2.10 it is built against, 2.11 checked to work.</summary>
    public const int OldestMinor = 10, NewestCheckedMinor = 11;

    private static readonly string[] CpuLibraries = ["libc10.so", "libtorch_cpu.so", "libtorch.so"];
    private static readonly string[] CudaLibraries = ["libc10_cuda.so", "libtorch_cuda.so"];

    /// <summary>
    /// The libtorch this process should use. <paramref name="environment"/>, <paramref name="pythonTorchFolder"/> and
    /// <paramref name="bundledFolders"/> replace the real environment, python3 and program folders (for tests).
    /// </summary>
    public static LibTorchLocation Find(Func<string, string?>? environment = null, Func<string?>? pythonTorchFolder = null,
        IEnumerable<string>? bundledFolders = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        var named = environment(EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(named)) return Inspect(named, LibTorchSource.EnvironmentVariable);

        foreach (var folder in bundledFolders ?? NativeRuntime.NativeFolders())
            if (File.Exists(Path.Combine(folder, "libtorch_cpu.so")))
                return new LibTorchLocation(LibTorchSource.Bundled, folder, $"{NativeRuntime.BuiltAgainstLibTorch}", false, null);

        foreach (var folder in (environment("LD_LIBRARY_PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(folder, "libtorch_cpu.so")))
                return Inspect(folder, LibTorchSource.LibraryPath);

        var torchFolder = (pythonTorchFolder ?? PythonTorchFolder)();
        if (torchFolder is not null) return Inspect(torchFolder, LibTorchSource.PyTorch);

        throw new NativeLoadException(
            "Cannot start libtorch: this build has no bundled libtorch and none was found. " +
            $"Set {EnvironmentVariable} to a libtorch folder (a libtorch download, or an installed PyTorch's folder: " +
            "python3 -c 'import torch,os; print(os.path.dirname(torch.__file__))'), put its lib folder on LD_LIBRARY_PATH, " +
            "install PyTorch for python3, or use the default build, which bundles the CPU libtorch.");
    }

    /// <summary>
    /// Checks a libtorch folder without loading it: <paramref name="folder"/> may be the folder of the shared libraries,
    /// a libtorch download's root (with lib/), or a PyTorch package folder (torch/, with lib/).
    /// </summary>
    public static LibTorchLocation Inspect(string folder, LibTorchSource source)
    {
        string where = source == LibTorchSource.EnvironmentVariable ? $"{EnvironmentVariable}={folder}" : folder;
        if (!Directory.Exists(folder))
            throw new NativeLoadException($"Cannot start libtorch: {where} is not a folder.");
        string lib = File.Exists(Path.Combine(folder, "libtorch_cpu.so")) ? folder : Path.Combine(folder, "lib");
        if (!File.Exists(Path.Combine(lib, "libtorch_cpu.so")))
        {
            var present = Directory.GetFiles(Directory.Exists(lib) ? lib : folder, "*.so*").Select(Path.GetFileName).Take(8).ToArray();
            throw new NativeLoadException(
                $"Cannot start libtorch: {where} holds no libtorch_cpu.so (nor does its lib/ folder). " +
                $"Name the folder of libtorch's shared libraries, e.g. PyTorch's torch/lib. " +
                (present.Length > 0 ? $"Found there: {string.Join(", ", present)}." : "No shared libraries are there."));
        }
        var missing = CpuLibraries.Where(f => !File.Exists(Path.Combine(lib, f))).ToArray();
        if (missing.Length > 0)
            throw new NativeLoadException($"Cannot start libtorch: {lib} lacks {string.Join(", ", missing)}; it is not a complete libtorch.");

        var version = ReadVersion(lib);
        string? warning = null;
        if (version is null)
            warning = $"no build-version or version.py beside it, so its version could not be checked (TorchSharp {NativeRuntime.TorchSharpVersion} needs 2.{OldestMinor})";
        else
        {
            var problem = CheckVersion(version, out warning);
            if (problem is not null) throw new NativeLoadException($"Cannot start libtorch: the one in {lib} is {version}; {problem}");
        }
        bool cuda = CudaLibraries.All(f => File.Exists(Path.Combine(lib, f)));
        return new LibTorchLocation(source, Path.GetFullPath(lib), version, cuda, warning);
    }

    /// <summary>The version recorded beside a libtorch lib folder: ../build-version (libtorch download) or ../version.py (PyTorch).</summary>
    public static string? ReadVersion(string libFolder)
    {
        var parent = Path.GetDirectoryName(Path.GetFullPath(libFolder).TrimEnd(Path.DirectorySeparatorChar));
        if (parent is null) return null;
        var buildVersion = Path.Combine(parent, "build-version");
        if (File.Exists(buildVersion))
        {
            var text = File.ReadAllText(buildVersion).Trim();
            if (text.Length > 0) return text;
        }
        var versionPy = Path.Combine(parent, "version.py");
        if (File.Exists(versionPy))
        {
            var m = Regex.Match(File.ReadAllText(versionPy), @"^__version__\s*=\s*['""]([^'""]+)['""]", RegexOptions.Multiline);
            if (m.Success) return m.Groups[1].Value;
        }
        return null;
    }

    /// <summary>Null when TorchSharp can run on libtorch <paramref name="version"/>, else why not; a version newer than checked gives a warning.</summary>
    public static string? CheckVersion(string version, out string? warning)
    {
        warning = null;
        var m = Regex.Match(version, @"^(\d+)\.(\d+)");
        if (!m.Success) return $"'{version}' is not a version number this program can read";
        int major = int.Parse(m.Groups[1].Value), minor = int.Parse(m.Groups[2].Value);
        string needs = $"TorchSharp {NativeRuntime.TorchSharpVersion} is built against libtorch 2.{OldestMinor} and runs on 2.{OldestMinor} or a newer 2.x";
        if (major != 2) return $"{needs}; libtorch {major}.x has a different native interface.";
        if (minor < OldestMinor) return $"{needs}; an older libtorch lacks functions it calls. Install PyTorch 2.{OldestMinor} or newer, or use the default build with its bundled CPU libtorch.";
        if (minor > NewestCheckedMinor) warning = $"2.{minor} is newer than the versions checked with this build (2.{OldestMinor}, 2.{NewestCheckedMinor}); if it fails to load, use one of those";
        return null;
    }

    /// <summary>
    /// Loads the libraries of an external libtorch by full path, so that TorchSharp's own loading by name finds them
    /// already in the process. Nothing to do for the bundled one.
    /// </summary>
    public static void Preload(LibTorchLocation location)
    {
        if (location.Source == LibTorchSource.Bundled) return;
        var order = new[] { "libc10.so" }.Concat(location.HasCuda ? ["libc10_cuda.so"] : Array.Empty<string>())
            .Append("libtorch_cpu.so").Concat(location.HasCuda ? ["libtorch_cuda.so"] : Array.Empty<string>()).Append("libtorch.so");
        foreach (var name in order)
        {
            var path = Path.Combine(location.Folder, name);
            try
            {
                NativeLibrary.Load(path);
            }
            catch (DllNotFoundException e)
            {
                throw new NativeLoadException(
                    $"Cannot start libtorch: {location.Describe()} was found, but {name} did not load.\nLoader: {e.Message.Split('\n')[0]}\n" +
                    (location.HasCuda && name.Contains("cuda", StringComparison.Ordinal)
                        ? "A CUDA libtorch needs the CUDA libraries it was built with (PyTorch installs them as nvidia-* packages) and an NVIDIA driver."
                        : "The library or one it needs is missing or was built for another system."), e);
            }
        }
    }

    /// <summary>The folder of the torch package python3 would import (found without importing it), or null.</summary>
    public static string? PythonTorchFolder()
    {
        try
        {
            var psi = new ProcessStartInfo("python3")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add("import importlib.util as u; s = u.find_spec('torch'); print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')");
            using var p = Process.Start(psi);
            if (p is null) return null;
            var output = p.StandardOutput.ReadToEnd().Trim();
            if (!p.WaitForExit(15000)) { p.Kill(); return null; }
            return p.ExitCode == 0 && output.Length > 0 && Directory.Exists(output) ? output : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null; // no python3
        }
    }
}
