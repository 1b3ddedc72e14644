using System.Runtime.InteropServices;
using InterroGate.Configuration;
using InterroGate.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Tests.Runtime;

[Collection("Torch")]
public sealed class DevicesTests
{
    [Theory]
    [InlineData("cpu", true)]
    [InlineData("cuda", true)]
    [InlineData("cuda:0", true)]
    [InlineData("cuda:12", true)]
    [InlineData("cpu:0", false)]
    [InlineData("gpu", false)]
    [InlineData("CUDA", false)]
    [InlineData("cuda:", false)]
    [InlineData("cuda:-1", false)]
    [InlineData("", false)]
    public void Device_names_are_checked_for_form(string spec, bool ok) => Assert.Equal(ok, Devices.IsWellFormed(spec));

    [Fact]
    public void The_cpu_resolves_and_cuda_without_a_gpu_says_why_in_plain_words()
    {
        Assert.Equal(DeviceType.CPU, Devices.Resolve("cpu").type);
        Assert.False(cuda.is_available()); // the test machine runs the bundled CPU libtorch
        var e = Assert.Throws<DeviceUnavailableException>(() => Devices.Resolve("cuda:1"));
        Assert.Contains("bundled CPU libtorch", e.Message);
        Assert.Contains("InterroGateBundledLibTorch=false", e.Message);
        Assert.Contains("not a device name", Assert.Throws<DeviceUnavailableException>(() => Devices.Resolve("tpu")).Message);
    }

    [Fact]
    public void Why_no_cuda_depends_on_the_libtorch_in_use()
    {
        var cpuOnly = new LibTorchLocation(LibTorchSource.PyTorch, "/x/torch/lib", "2.11.0+cpu", HasCuda: false, null);
        Assert.Contains("CPU only", Devices.WhyNoCuda(cpuOnly));
        var withCuda = cpuOnly with { HasCuda = true, Version = "2.11.0+cu128" };
        Assert.Contains("nvidia-smi", Devices.WhyNoCuda(withCuda));
    }

    [Fact]
    public void Out_of_memory_errors_suggest_a_smaller_batch()
    {
        var why = Devices.ExplainOutOfMemory(new ExternalException("CUDA out of memory. Tried to allocate 2.00 GiB"), 256);
        Assert.NotNull(why);
        Assert.Contains("training.batchSize=128", why);
        Assert.Null(Devices.ExplainOutOfMemory(new InvalidOperationException("shape mismatch"), 256));
    }

    [Fact]
    public void A_misspelt_device_in_a_config_names_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => new TrainingConfig { Device = "gpu0" }.Validate("training"));
        Assert.Contains("training.device", e.Message);
        Assert.Contains(Devices.Valid, e.Message);
    }
}
