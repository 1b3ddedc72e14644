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
/// <see cref="Rates"/> do not apply), <c>dpt</c> (the DPT decoder, a ViT only) or <c>auto</c>, the default: the
/// paper's head for the backbone, aspp for a ResNet, hrnet for an HRNet and dpt for a ViT.
/// </summary>
public sealed record HeadConfig
{
    public static readonly IReadOnlyDictionary<string, string> DenseHeads = new Dictionary<string, string>
    {
        ["auto"] = "the paper's head for the backbone: aspp on a ResNet, hrnet on an HRNet, dpt on a ViT",
        ["aspp"] = "DeepLab-v3 ASPP (1×1, three dilated 3×3, image pooling) + 3×3 conv + 1×1 classifier, one per task",
        ["hrnet"] = "HRNetV2 head: 1×1 conv C→C + BN + ReLU + 1×1 classifier on the encoder's C channels, one per task",
        ["dpt"] = "DPT decoder (a ViT only): four blocks' tokens reassembled at 1/4-1/32, fused top-down with residual conv units, one per task",
    };

    public string Dense { get; init; } = "auto";
    /// <summary>Width of the ASPP head's branches and projection.</summary>
    public int Channels { get; init; } = 256;
    /// <summary>Dilations of ASPP's 3×3 branches; null = 12/24/36 at output stride 8, 6/12/18 at 16, 3/6/9 otherwise.</summary>
    public IReadOnlyList<int>? Rates { get; init; }

    /// <summary>
    /// What an image-level head pools on a ViT: "mean" (default; the mean of the patch tokens) or "class-token" (the
    /// class token after the final norm; only where no task is dense).
    /// </summary>
    public string Pool { get; init; } = "mean";

    /// <summary>Width of the DPT decoder (the paper: 64).</summary>
    public int DptFeatures { get; init; } = 64;
    /// <summary>The four ViT blocks a DPT head reads; null = evenly spaced, the last block last (2, 5, 8, 11 of 12).</summary>
    public IReadOnlyList<int>? DptBlocks { get; init; }

    /// <summary>The dense head built on <paramref name="encoder"/>: <see cref="Dense"/>, with <c>auto</c> resolved (aspp on a ResNet, hrnet on an HRNet, dpt on a ViT).</summary>
    public string DenseFor(IEncoderSpec encoder) => Dense != "auto" ? Dense : encoder switch { HRNetSpec => "hrnet", ViTSpec => "dpt", _ => "aspp" };

    /// <summary>
    /// The encoder the heads need: with a DPT head on some dense task, the ViT that hands over its <see cref="DptBlocks"/>'
    /// token maps; else <paramref name="encoder"/> itself. Throws <see cref="ConfigException"/> where a DPT head cannot be built.
    /// </summary>
    public IEncoderSpec EncoderFor(IEncoderSpec encoder, bool anyDense, string path = "head")
    {
        if (Pool == "class-token")
        {
            if (encoder is not ViTSpec { ClassToken: true } withToken)
                throw new ConfigException($"{path}.pool", $"class-token on {encoder.Name}; only a ViT with a class token has one (use mean)");
            if (anyDense)
                throw new ConfigException($"{path}.pool", "class-token with a dense task; dense heads read the token map (use mean)");
            return withToken with { ClassTokenReadout = true };
        }
        if (!anyDense || DenseFor(encoder) != "dpt") return encoder;
        if (encoder is not ViTSpec vit)
            throw new ConfigException($"{path}.dense", $"dpt on {encoder.Name}; the DPT head reads a ViT's tokens (use aspp or hrnet, or a vit_* backbone)");
        if (!DptHead.SupportsPatch(vit.PatchSize))
            throw new ConfigException($"{path}.dense", $"dpt on {vit.Name}, whose patches are {vit.PatchSize}; the DPT head needs a patch size that is a power of two up to 32");
        var blocks = DptBlocks ?? vit.DptBlocks();
        for (int i = 0; i < blocks.Count; i++)
            ConfigException.Require(blocks[i] >= 0 && blocks[i] < vit.Depth, $"{path}.dptBlocks[{i}]", blocks[i], $"a block of {vit.Name}: 0 to {vit.Depth - 1}");
        return vit with { OutputBlocks = blocks.ToArray() };
    }

    public void Validate(string path)
    {
        ConfigException.Require(DenseHeads.ContainsKey(Dense), $"{path}.dense", Dense, string.Join(", ", DenseHeads.Keys));
        ConfigException.Require(Channels >= 1, $"{path}.channels", Channels, "≥ 1");
        ConfigException.Require(Pool is "mean" or "class-token", $"{path}.pool", Pool, "mean, class-token");
        ConfigException.Require(DptFeatures >= 1, $"{path}.dptFeatures", DptFeatures, "≥ 1");
        if (DptBlocks is not null)
        {
            ConfigException.Require(DptBlocks.Count == 4, $"{path}.dptBlocks", $"[{string.Join(", ", DptBlocks)}]", "four block indices, increasing");
            for (int i = 1; i < 4; i++)
                ConfigException.Require(DptBlocks[i] > DptBlocks[i - 1], $"{path}.dptBlocks[{i}]", DptBlocks[i], $"> {DptBlocks[i - 1]} (increasing)");
        }
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
            "dpt" => encoder is ViTSpec { OutputBlocks.Count: 4 } vit
                ? new DptHead(vit.EmbedDim, task.Outputs, vit.PatchSize, config.DptFeatures, readsClassToken: vit.MapChannels == 2 * vit.EmbedDim)
                : throw new ArgumentException($"A DPT head reads four blocks of a ViT; {encoder.Name} does not hand them over (see HeadConfig.EncoderFor)."),
            var other => throw new ArgumentException($"Unknown dense head '{other}'; valid: {string.Join(", ", HeadConfig.DenseHeads.Keys)}."),
        };
    }
}
