using System.Reflection;
using System.Runtime.InteropServices;
using TorchSharp;

namespace InterroGate.Runtime;

/// <summary>libtorch could not be loaded; the message says why in plain words and what to do.</summary>
public sealed class NativeLoadException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Loads TorchSharp's native libraries once and turns any failure into an explanation: which library,
/// what the loader said, and the likely fix (the GLIBCXX_3.4.32 requirement of libLibTorchSharp.so,
/// a missing libtorch, a libtorch of another version).
/// </summary>
public static class NativeRuntime
{
    private static readonly Lock Gate = new();
    private static string? _version;

    /// <summary>The libtorch version TorchSharp is built against (the bundled one).</summary>
    public static string BuiltAgainstLibTorch => string.Join('.', torch.__version__.Split('.').Take(3));

    /// <summary>The libtorch in use, once <see cref="EnsureLoaded"/> has found it.</summary>
    public static LibTorchLocation? Location { get; private set; }

    /// <summary>The libtorch version, finding (<see cref="LibTorchLocator"/>) and loading it first; throws <see cref="NativeLoadException"/> on failure.</summary>
    public static string EnsureLoaded()
    {
        lock (Gate)
        {
            if (_version is not null) return _version;
            CpuAllocator.Apply(); // before libtorch allocates anything
            var location = LibTorchLocator.Find();
            LibTorchLocator.Preload(location);
            try
            {
                using var probe = torch.ones(1);
                Location = location;
                _version = location.Version ?? BuiltAgainstLibTorch;
                return _version;
            }
            catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or NotSupportedException or EntryPointNotFoundException or BadImageFormatException)
            {
                throw new NativeLoadException(Explain(e, location), e);
            }
        }
    }

    /// <summary>The folders the native libraries are looked for in, for messages and the doctor.</summary>
    public static IReadOnlyList<string> NativeFolders()
    {
        string baseDir = AppContext.BaseDirectory;
        return new[] { Path.Combine(baseDir, "runtimes", "linux-x64", "native"), baseDir }.Where(Directory.Exists).ToArray();
    }

    private static string Explain(Exception e, LibTorchLocation location)
    {
        var details = string.Join(" | ", Chain(e).Select(x => x.Message.Split('\n')[0]));
        var lib = NativeFolders().Select(f => Path.Combine(f, "libLibTorchSharp.so")).FirstOrDefault(File.Exists);
        string? loaderSays = null;
        if (lib is not null && !NativeLibrary.TryLoad(lib, out _))
        {
            try { NativeLibrary.Load(lib); }
            catch (DllNotFoundException d) { loaderSays = d.Message; }
        }
        var all = (loaderSays ?? "") + " " + details;

        string cause;
        if (all.Contains("GLIBCXX_3.4.32", StringComparison.Ordinal))
            cause = "libLibTorchSharp.so asks for GLIBCXX_3.4.32, which this system's libstdc++ lacks. The build marks that " +
                    "requirement weak in the copies it outputs; these binaries were not patched. Rebuild or republish them on " +
                    "this machine (dotnet build / dotnet publish), or install a libstdc++ from GCC 13 or newer.";
        else if (lib is null)
            cause = $"libLibTorchSharp.so was not found next to the program (looked in: {string.Join(", ", NativeFolders().DefaultIfEmpty(AppContext.BaseDirectory))}). " +
                    "It ships with TorchSharp in every build; rebuild or republish the program.";
        else if (all.Contains("libtorch", StringComparison.OrdinalIgnoreCase) || all.Contains("libc10", StringComparison.Ordinal))
            cause = $"libtorch itself could not be loaded ({location.Describe()}): a library it needs is missing, or it is of another " +
                    $"version than TorchSharp {TorchSharpVersion} runs on (libtorch 2.{LibTorchLocator.OldestMinor} or newer).";
        else
            cause = "the native TorchSharp libraries could not be loaded.";
        return $"Cannot start libtorch: {cause}\nLoader: {(loaderSays ?? "(no further detail)")}\nDetails: {details}";
    }

    private static IEnumerable<Exception> Chain(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException) yield return x;
    }

    /// <summary>TorchSharp's assembly version.</summary>
    public static string TorchSharpVersion =>
        typeof(torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(torch).Assembly.GetName().Version?.ToString() ?? "unknown";
}
