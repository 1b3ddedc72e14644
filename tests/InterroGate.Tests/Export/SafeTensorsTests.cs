using System.Text;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Heads;
using static TorchSharp.torch;

using InterroGate.Tests.Pruning;

namespace InterroGate.Tests.Export;

[Collection("Torch")]
public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-st-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);
    private string P(string name) => Path.Combine(_dir, name);

    /// <summary>A file built by hand from the format's description, not by our writer.</summary>
    private static byte[] HandMade(string header, byte[] data)
    {
        var json = Encoding.UTF8.GetBytes(header);
        return BitConverter.GetBytes((ulong)json.Length).Concat(json).Concat(data).ToArray();
    }

    [Fact]
    public void Reads_a_file_written_from_the_format_description()
    {
        var data = BitConverter.GetBytes(1.5f).Concat(BitConverter.GetBytes(-2f)).Concat(BitConverter.GetBytes(7L)).ToArray();
        File.WriteAllBytes(P("a.safetensors"), HandMade(
            """{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"n":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}""", data));
        var (tensors, meta) = SafeTensors.Load(P("a.safetensors"));
        Assert.Equal("pt", meta["format"]);
        Assert.Equal([1L, 2L], tensors["w"].shape);
        Assert.Equal([1.5f, -2f], tensors["w"].data<float>().ToArray());
        Assert.Equal(7L, tensors["n"].item<long>());
        Assert.Equal(ScalarType.Int64, tensors["n"].dtype);
    }

    [Fact]
    public void A_state_dict_round_trips_with_names_dtypes_shapes_and_metadata()
    {
        manual_seed(0);
        using var net = new ResNet(ResNetSpec.ResNet18(), 3);
        var state = net.state_dict();
        SafeTensors.Save(P("r18.safetensors"), state, new Dictionary<string, string> { ["source"] = "test" });
        var (back, meta) = SafeTensors.Load(P("r18.safetensors"));
        Assert.Equal("test", meta["source"]);
        Assert.Equal(state.Keys.Order(), back.Keys.Order());
        foreach (var (k, v) in state)
        {
            Assert.Equal(v.dtype, back[k].dtype);
            Assert.True(v.equal(back[k]).all().item<bool>(), k);
        }
        // Data starts 8-byte aligned, as the format asks.
        var bytes = File.ReadAllBytes(P("r18.safetensors"));
        Assert.Equal(0UL, (8 + BitConverter.ToUInt64(bytes, 0)) % 8);
    }

    [Fact]
    public void A_torchvision_state_dict_loads_into_a_backbone_and_into_either_InterroGate_branch()
    {
        manual_seed(1);
        // torchvision's ResNet-18 state: our backbone's names plus its 1000-class classifier `fc`.
        using var source = new ResNet(ResNetSpec.ResNet18(), 3);
        using var fc = new ClassificationHead(512, 1000);
        var state = source.state_dict().Concat(fc.state_dict().Select(kv => KeyValuePair.Create(kv.Key, kv.Value))).ToDictionary();
        Assert.Contains("fc.weight", state.Keys);
        Assert.Contains("layer4.1.bn2.running_var", state.Keys);
        SafeTensors.Save(P("tv.safetensors"), state);

        using var target = new ResNet(ResNetSpec.ResNet18(), 3);
        var report = SafeTensors.LoadInto(target, P("tv.safetensors"), ignore: ["fc."]);
        Assert.True(report.IsExact, report.ToString());
        Assert.True(target.state_dict()["layer3.1.conv2.weight"].equal(state["layer3.1.conv2.weight"]).all().item<bool>());

        var tasks = PrunerTests.Tasks;
        using var ig = new InterroGateModel(tasks, ResNetSpec.ResNet18(), 3, (64, 64), new InterroGateConfig());
        SafeTensors.LoadInto(ig, P("tv.safetensors"), targetPrefix: "encoder.shared.", ignore: ["fc."]);
        SafeTensors.LoadInto(ig, P("tv.safetensors"), targetPrefix: "encoder.task_branches.b.", ignore: ["fc."]);
        var igState = ig.state_dict();
        Assert.True(igState["encoder.shared.layer2.0.downsample.0.weight"].equal(state["layer2.0.downsample.0.weight"]).all().item<bool>());
        Assert.True(igState["encoder.task_branches.b.bn1.running_mean"].equal(state["bn1.running_mean"]).all().item<bool>());
        Assert.False(igState["encoder.task_branches.a.conv1.weight"].equal(state["conv1.weight"]).all().item<bool>());
    }

    [Fact]
    public void Missing_unexpected_and_mis_shaped_tensors_are_listed_by_name()
    {
        using var small = new ResNet(ResNetSpec.ResNet20(0.5), 3);
        var state = small.state_dict().ToDictionary();
        state.Remove("layer1.0.conv1.weight");
        state["extra.weight"] = zeros(3);
        state["conv1.weight"] = zeros(1, 2, 3, 3);
        SafeTensors.Save(P("bad.safetensors"), state);
        using var target = new ResNet(ResNetSpec.ResNet20(0.5), 3);
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensors.LoadInto(target, P("bad.safetensors")));
        Assert.Contains("missing: layer1.0.conv1.weight", e.Message);
        Assert.Contains("unexpected: extra.weight", e.Message);
        Assert.Contains("conv1.weight [1,2,3,3]", e.Message);
        Assert.Contains("bad.safetensors", e.Message);
        var lenient = SafeTensors.LoadInto(target, P("bad.safetensors"), strict: false);
        Assert.Equal(["layer1.0.conv1.weight"], lenient.Missing);
        Assert.Equal(state.Count - 2, lenient.Loaded.Count);
    }

    [Theory]
    [InlineData("length", "beyond the end of the file")]
    [InlineData("huge", "beyond the end of the file")]
    [InlineData("offsets", "data_offsets [0, 64] fall outside")]
    [InlineData("dtype", "unknown dtype 'F13'")]
    [InlineData("shape", "shape [3] of F32 needs 12 bytes, but its offsets hold 8")]
    [InlineData("overlap", "tensor 'v': data starts at byte 4")]
    [InlineData("json", "not valid JSON")]
    [InlineData("short", "8-byte header length")]
    public void A_corrupt_file_gets_an_error_naming_the_file_and_the_tensor(string fault, string expected)
    {
        var eight = new byte[8];
        byte[] bytes = fault switch
        {
            "length" => HandMade("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", eight)[..20],
            "huge" => BitConverter.GetBytes(ulong.MaxValue - 3).Concat(eight).ToArray(),
            "offsets" => HandMade("""{"w":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}""", eight),
            "dtype" => HandMade("""{"w":{"dtype":"F13","shape":[2],"data_offsets":[0,8]}}""", eight),
            "shape" => HandMade("""{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", eight),
            "overlap" => HandMade("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", eight),
            "json" => HandMade("""{"w":{"dtype":"F32",""", eight),
            _ => [1, 2, 3],
        };
        File.WriteAllBytes(P("x.safetensors"), bytes);
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensors.Load(P("x.safetensors")));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith(P("x.safetensors"), e.Message);
        if (fault is "offsets" or "dtype" or "shape") Assert.Contains("tensor 'w'", e.Message);
    }
}
