using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Heads;

/// <summary>
/// The task heads. Image-level tasks always get global pooling and a linear layer. Dense tasks get
/// <see cref="Dense"/>: <c>aspp</c> (DeepLab-v3, the paper's ResNet head; <see cref="Channels"/> wide, 3×3
/// branches at <see cref="Rates"/>, default DeepLab's rates for the encoder's output stride), <c>hrnet</c> (the
/// HRNetV2 head, the paper's HRNet head: as wide as the encoder's output; <see cref="Channels"/> and
/// <see cref="Rates"/> do not apply) or <c>auto</c>, the default: the paper's head for the backbone, aspp for a
/// ResNet and hrnet for an HRNet.
/// </summary>
public sealed record HeadConfig
{
    public static readonly IReadOnlyDictionary<string, string> DenseHeads = new Dictionary<string, string>
    {
        ["auto"] = "the paper's head for the backbone: aspp on a ResNet, hrnet on an HRNet",
        ["aspp"] = "DeepLab-v3 ASPP (1×1, three dilated 3×3, image pooling) + 3×3 conv + 1×1 classifier, one per task",
        ["hrnet"] = "HRNetV2 head: 1×1 conv C→C + BN + ReLU + 1×1 classifier on the encoder's C channels, one per task",
    };

    public string Dense { get; init; } = "auto";
    /// <summary>Width of the ASPP head's branches and projection.</summary>
    public int Channels { get; init; } = 256;
    /// <summary>Dilations of ASPP's 3×3 branches; null = 12/24/36 at output stride 8, 6/12/18 at 16, 3/6/9 otherwise.</summary>
    public IReadOnlyList<int>? Rates { get; init; }

    /// <summary>The dense head built on <paramref name="encoder"/>: <see cref="Dense"/>, with <c>auto</c> resolved.</summary>
    public string DenseFor(IEncoderSpec encoder) => Dense != "auto" ? Dense : encoder is HRNetSpec ? "hrnet" : "aspp";

    public void Validate(string path)
    {
        ConfigException.Require(DenseHeads.ContainsKey(Dense), $"{path}.dense", Dense, string.Join(", ", DenseHeads.Keys));
        ConfigException.Require(Channels >= 1, $"{path}.channels", Channels, "≥ 1");
        if (Rates is not null)
        {
            ConfigException.Require(Rates.Count > 0, $"{path}.rates", "[]", "at least one dilation, or leave it out for DeepLab's");
            for (int i = 0; i < Rates.Count; i++) ConfigException.Require(Rates[i] >= 1, $"{path}.rates[{i}]", Rates[i], "≥ 1");
        }
    }
}

/// <summary>Chooses a task's head by its kind.</summary>
public static class HeadFactory
{
    /// <summary>
    /// The head of <paramref name="task"/> reading the features of <paramref name="encoder"/> (its channels, at its
    /// output stride); dense heads predict at the features' resolution (the architecture upsamples).
    /// </summary>
    public static nn.Module<Tensor, Tensor> Create(TaskSpec task, IEncoderSpec encoder, HeadConfig? config = null)
    {
        config ??= new HeadConfig();
        if (!task.IsDense) return new ClassificationHead(encoder.OutChannels, task.Outputs);
        return config.DenseFor(encoder) switch
        {
            "aspp" => new AsppHead(encoder.OutChannels, task.Outputs, config.Rates ?? AsppHead.RatesFor(encoder.OutputStride), config.Channels),
            "hrnet" => new HrNetHead(encoder.OutChannels, task.Outputs),
            var other => throw new ArgumentException($"Unknown dense head '{other}'; valid: {string.Join(", ", HeadConfig.DenseHeads.Keys)}."),
        };
    }
}
