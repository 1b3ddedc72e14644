using System.Runtime.InteropServices;

namespace InterroGate.Runtime;

/// <summary>
/// Tunes glibc's malloc for libtorch's CPU tensors. By default glibc serves every block above a
/// dynamic threshold with a fresh mmap and returns freed memory at the top of its heap to the system,
/// so a training step that allocates and frees the same few-megabyte activations every iteration pays
/// for page faults on all of them; on a 2-core machine that was about a third of a ResNet-20 step.
/// Tuning keeps blocks up to 32 MiB on the heap and keeps up to 1 GiB of freed heap for reuse
/// (the trade: the process holds on to memory it has used, as PyTorch's GPU caching allocator does).
/// Not applied where the user set <c>MALLOC_MMAP_THRESHOLD_</c> or <c>MALLOC_TRIM_THRESHOLD_</c>
/// (glibc's own settings win), where <c>INTERROGATE_SYSTEM_MALLOC=1</c>, or where the C library is not glibc.
/// </summary>
public static class CpuAllocator
{
    /// <summary>Largest block kept on the heap (glibc's maximum for this setting on 64-bit systems).</summary>
    public const int MmapThreshold = 32 << 20;
    /// <summary>Freed memory at the top of the heap kept for reuse before any is returned to the system.</summary>
    public const int TrimThreshold = 1 << 30;

    private const int M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3;
    private static string? _state;

    /// <summary>What was done, in words (for the doctor); applies the tuning the first time it is called.</summary>
    public static string Apply()
    {
        if (_state is not null) return _state;
        return _state = Decide(Environment.GetEnvironmentVariable);
    }

    /// <summary>Decides from the environment <paramref name="env"/> and applies the tuning where it is wanted.</summary>
    internal static string Decide(Func<string, string?> env)
    {
        if (!OperatingSystem.IsLinux()) return "system default (not Linux)";
        if (env("INTERROGATE_SYSTEM_MALLOC") == "1") return "system default (INTERROGATE_SYSTEM_MALLOC=1)";
        if (env("MALLOC_MMAP_THRESHOLD_") is not null || env("MALLOC_TRIM_THRESHOLD_") is not null)
            return "glibc settings from the environment (MALLOC_*_THRESHOLD_)";
        string glibc;
        try { glibc = Marshal.PtrToStringAnsi(GnuGetLibcVersion()) ?? "?"; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "system default (the C library is not glibc)";
        }
        // mallopt returns 1 on success; setting the mmap threshold also turns off its dynamic adjustment.
        bool ok = MallOpt(M_MMAP_THRESHOLD, MmapThreshold) == 1 & MallOpt(M_TRIM_THRESHOLD, TrimThreshold) == 1;
        return ok
            ? $"glibc {glibc} tuned: blocks up to {MmapThreshold >> 20} MiB on the heap, up to {TrimThreshold >> 20} MiB of freed memory kept (INTERROGATE_SYSTEM_MALLOC=1 turns this off)"
            : $"glibc {glibc}: mallopt refused the tuning; system default";
    }

    [DllImport("libc.so.6", EntryPoint = "mallopt")]
    private static extern int MallOpt(int parameter, int value);

    [DllImport("libc.so.6", EntryPoint = "gnu_get_libc_version")]
    private static extern IntPtr GnuGetLibcVersion();
}
