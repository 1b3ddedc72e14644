using System.Diagnostics;
using TorchSharp;

namespace InterroGate.Runtime;

/// <summary>What `interrogate doctor` prints: versions, threads, CUDA, and the data sets found.</summary>
public sealed record EnvironmentReport(
    string DotNet, string TorchSharp, string? LibTorch, string? Backend, string? LoadError, int Threads, int InteropThreads, string Allocator,
    bool CudaAvailable, int CudaDevices, IReadOnlyList<string> Gpus, IReadOnlyList<(string Name, string Status)> Datasets)
{
    public static EnvironmentReport Collect(IEnumerable<(string Name, Func<string> Probe)> datasets)
    {
        string? version = null, error = null;
        int threads = 0, interop = 0, devices = 0;
        bool cuda = false;
        try
        {
            version = NativeRuntime.EnsureLoaded();
            threads = torch.get_num_threads();
            interop = torch.get_num_interop_threads();
            cuda = torch.cuda.is_available();
            devices = cuda ? torch.cuda.device_count() : 0;
        }
        catch (NativeLoadException e)
        {
            error = e.Message;
        }
        var found = datasets.Select(d =>
        {
            try { return (d.Name, d.Probe()); }
            catch (Exception e) { return (d.Name, $"not found: {e.Message}"); }
        }).ToArray();
        return new EnvironmentReport(Environment.Version.ToString(), NativeRuntime.TorchSharpVersion, version, NativeRuntime.Location?.Describe(), error,
            threads, interop, CpuAllocator.Apply(), cuda, devices, cuda ? GpuNames() : [], found);
    }

    /// <summary>GPU names from nvidia-smi where present (libtorch does not expose them through TorchSharp).</summary>
    private static IReadOnlyList<string> GpuNames()
    {
        try
        {
            var psi = new ProcessStartInfo("nvidia-smi", "--query-gpu=name,memory.total --format=csv,noheader") { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi);
            if (p is null) return [];
            string output = p.StandardOutput.ReadToEnd();
            p.WaitForExit(5000);
            return output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return ["(a CUDA device; nvidia-smi is not installed to name it)"];
        }
    }
}
