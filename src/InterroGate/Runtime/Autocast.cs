using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Runtime;

/// <summary>The arithmetic of the forward pass (<c>training.precision</c>).</summary>
public enum Precision
{
    /// <summary>float32 throughout (the default).</summary>
    Fp32,
    /// <summary>
    /// Mixed precision: convolutions and matrix products in bfloat16, everything libtorch's autocast keeps in
    /// float32 (reductions, normalisations, losses) in float32, weights and their updates in float32.
    /// </summary>
    Bf16,
}

/// <summary>
/// Mixed precision through libtorch's own autocast, the mechanism behind PyTorch's <c>torch.autocast</c>: while a
/// scope is open on a thread, every operation libtorch dispatches on that thread for the scope's device type runs in
/// the precision autocast chooses for it (convolutions and matrix products in bfloat16, reductions in float32), with
/// float32 weights cast once per scope. TorchSharp 0.107 has no binding for it, so the five functions it needs are called in
/// libtorch_cpu directly. Gradients flow back through the casts, so weights and their gradients stay float32.
/// </summary>
public static class Autocast
{
    // c10::DeviceType and c10::ScalarType are enums of one signed byte; bool is one byte.
    private delegate void SetEnabled(sbyte deviceType, byte enabled);
    private delegate byte IsEnabled(sbyte deviceType);
    private delegate void SetDtype(sbyte deviceType, sbyte scalarType);
    private delegate sbyte GetDtype(sbyte deviceType);
    private delegate void ClearCache();

    private sealed record Functions(SetEnabled SetEnabled, IsEnabled IsEnabled, SetDtype SetDtype, GetDtype GetDtype, ClearCache ClearCache);

    private static readonly Lazy<Functions> Native = new(Bind);

    /// <summary>
    /// Opens an autocast scope for <paramref name="device"/>'s type on the calling thread; a no-op for <see cref="Precision.Fp32"/>.
    /// Dispose it (on the same thread) before the backward pass, as with PyTorch's <c>torch.autocast</c>.
    /// </summary>
    public static Scope Enter(Precision precision, Device device)
    {
        if (precision == Precision.Fp32) return default;
        var f = Native.Value;
        sbyte type = DeviceTypeCode(device);
        bool was = f.IsEnabled(type) != 0;
        sbyte dtype = f.GetDtype(type);
        f.SetDtype(type, (sbyte)ScalarType.BFloat16);
        f.SetEnabled(type, 1);
        return new Scope(type, was, dtype, active: true);
    }

    /// <summary>Why <see cref="Precision.Bf16"/> cannot run with the libtorch in use, or null when it can (for `interrogate doctor`).</summary>
    public static string? Unavailable()
    {
        try
        {
            _ = Native.Value;
            return null;
        }
        catch (NativeLoadException e)
        {
            return e.Message;
        }
    }

    /// <summary>Whether an autocast scope is open on this thread for <paramref name="device"/>'s type.</summary>
    public static bool IsActive(Device device) => Native.Value.IsEnabled(DeviceTypeCode(device)) != 0;

    /// <summary>An open autocast scope; disposing it restores the state it found and frees the cast weights.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly sbyte _type, _dtype;
        private readonly bool _wasEnabled, _active;

        internal Scope(sbyte type, bool wasEnabled, sbyte dtype, bool active) => (_type, _wasEnabled, _dtype, _active) = (type, wasEnabled, dtype, active);

        public void Dispose()
        {
            if (!_active) return;
            var f = Native.Value;
            f.SetEnabled(_type, _wasEnabled ? (byte)1 : (byte)0);
            f.SetDtype(_type, _dtype);
            if (!_wasEnabled) f.ClearCache(); // the outermost scope frees the weights it cast, as torch.autocast does
        }
    }

    private static sbyte DeviceTypeCode(Device device) => device.type switch
    {
        DeviceType.CPU => 0,
        DeviceType.CUDA => 1,
        _ => throw new NotSupportedException($"Mixed precision (training.precision=bf16) runs on CPU or CUDA, not {device.type}."),
    };

    private static Functions Bind()
    {
        NativeRuntime.EnsureLoaded();
        var handle = LibTorchCpu();
        T Get<T>(string symbol) where T : Delegate
        {
            if (!NativeLibrary.TryGetExport(handle, symbol, out var address))
                throw new NativeLoadException($"This libtorch has no {symbol} (at::autocast); mixed precision needs libtorch 2.{LibTorchLocator.OldestMinor} or newer. Use training.precision=fp32.");
            return Marshal.GetDelegateForFunctionPointer<T>(address);
        }
        return new Functions(
            Get<SetEnabled>("_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"),
            Get<IsEnabled>("_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"),
            Get<SetDtype>("_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"),
            Get<GetDtype>("_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"),
            Get<ClearCache>("_ZN2at8autocast11clear_cacheEv"));
    }

    /// <summary>The libtorch_cpu already in the process (loaded by TorchSharp), found by its name or in the folders it came from.</summary>
    private static IntPtr LibTorchCpu()
    {
        const string Name = "libtorch_cpu.so";
        if (NativeLibrary.TryLoad(Name, out var handle)) return handle;
        var folders = (NativeRuntime.Location is { } l ? new[] { l.Folder } : []).Concat(NativeRuntime.NativeFolders());
        foreach (var folder in folders)
            if (NativeLibrary.TryLoad(Path.Combine(folder, Name), out handle)) return handle;
        throw new NativeLoadException($"Mixed precision needs libtorch's {Name}, which was not found in the process or in {string.Join(", ", folders)}. Use training.precision=fp32.");
    }
}
