using InterroGate.Runtime;

namespace InterroGate.Tests.Runtime;

public sealed class CpuAllocatorTests
{
    private static Func<string, string?> Env(params (string Key, string Value)[] vars) =>
        key => vars.FirstOrDefault(v => v.Key == key).Value;

    [Fact]
    public void Glibc_is_tuned_unless_the_environment_says_otherwise()
    {
        Assert.True(OperatingSystem.IsLinux()); // the project's CI and benchmarks run on Linux with glibc
        var tuned = CpuAllocator.Decide(Env());
        Assert.StartsWith("glibc ", tuned, StringComparison.Ordinal);
        Assert.Contains("tuned", tuned, StringComparison.Ordinal);
        Assert.Contains("32 MiB", tuned, StringComparison.Ordinal);
    }

    [Fact]
    public void The_opt_out_and_glibc_own_settings_are_respected()
    {
        Assert.Equal("system default (INTERROGATE_SYSTEM_MALLOC=1)", CpuAllocator.Decide(Env(("INTERROGATE_SYSTEM_MALLOC", "1"))));
        Assert.StartsWith("glibc settings from the environment", CpuAllocator.Decide(Env(("MALLOC_MMAP_THRESHOLD_", "65536"))), StringComparison.Ordinal);
        Assert.StartsWith("glibc settings from the environment", CpuAllocator.Decide(Env(("MALLOC_TRIM_THRESHOLD_", "65536"))), StringComparison.Ordinal);
    }
}
