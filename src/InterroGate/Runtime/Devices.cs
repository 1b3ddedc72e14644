using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Runtime;

/// <summary>The device asked for cannot be used here; the message says why and what to do.</summary>
public sealed class DeviceUnavailableException(string message) : Exception(message);

/// <summary>Device names as users write them (cpu, cuda, cuda:N), checked against what this process can run on.</summary>
public static partial class Devices
{
    public const string Valid = "cpu, cuda or cuda:N";

    [GeneratedRegex(@"^(cpu|cuda)(?::(\d+))?$")]
    private static partial Regex Pattern();

    /// <summary>True when <paramref name="spec"/> is written correctly (whether or not that device exists here).</summary>
    public static bool IsWellFormed(string? spec) =>
        spec is not null && Pattern().Match(spec) is { Success: true } m && (m.Groups[1].Value == "cuda" || !m.Groups[2].Success);

    /// <summary>
    /// The device <paramref name="spec"/> names, after checking that it is usable: CUDA needs a libtorch with CUDA
    /// and a GPU, cuda:N an N below the device count. Turns on TF32 matrix math on CUDA unless <paramref name="tf32"/> is false.
    /// </summary>
    public static Device Resolve(string spec, bool tf32 = true)
    {
        if (!IsWellFormed(spec)) throw new DeviceUnavailableException($"device '{spec}' is not a device name; use {Valid}.");
        NativeRuntime.EnsureLoaded();
        var m = Pattern().Match(spec);
        if (m.Groups[1].Value == "cpu") return CPU;

        if (!cuda.is_available()) throw new DeviceUnavailableException($"device '{spec}': {WhyNoCuda(NativeRuntime.Location)}");
        int count = cuda.device_count();
        int index = m.Groups[2].Success ? int.Parse(m.Groups[2].Value) : 0;
        if (index >= count)
            throw new DeviceUnavailableException($"device '{spec}': this machine has {count} CUDA device(s), numbered 0 to {count - 1}.");
        backends.cuda.matmul.allow_tf32 = tf32;
        backends.cudnn.allow_tf32 = tf32;
        return new Device(DeviceType.CUDA, index);
    }

    /// <summary>Why CUDA is not available, given the libtorch in use.</summary>
    public static string WhyNoCuda(LibTorchLocation? location) => location switch
    {
        null => "CUDA is not available (libtorch is not loaded).",
        { Source: LibTorchSource.Bundled } =>
            "CUDA is not available: this build runs on its bundled CPU libtorch. On a machine with CUDA PyTorch, use a build without " +
            "it (scripts/publish-cuda.sh, or -p:InterroGateBundledLibTorch=false), which finds PyTorch's CUDA libtorch; `interrogate doctor` shows what it finds.",
        { HasCuda: false } => $"CUDA is not available: the libtorch in use is CPU only ({location.Describe()}).",
        _ => $"CUDA is not available: libtorch has CUDA ({location.Describe()}) but found no usable GPU; check the NVIDIA driver with nvidia-smi.",
    };

    /// <summary>Out-of-memory on a GPU, in plain words with what to try; null when <paramref name="e"/> is not one.</summary>
    public static string? ExplainOutOfMemory(Exception e, int batchSize)
    {
        if (!e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase)) return null;
        return $"the GPU ran out of memory at batch size {batchSize}. Try --set training.batchSize={Math.Max(1, batchSize / 2)} " +
               "(the learning rate may need scaling with it), or a narrower backbone. The last checkpoint, if any, is intact.";
    }
}
