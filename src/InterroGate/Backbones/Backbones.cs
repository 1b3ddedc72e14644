namespace InterroGate.Backbones;

/// <summary>The backbones by name: what `interrogate list` prints and configurations name.</summary>
public static class BackboneCatalog
{
    public static readonly IReadOnlyDictionary<string, string> Descriptions = new Dictionary<string, string>
    {
        ["resnet20"] = "CIFAR ResNet-20: 3×3 stem, 3 stages × 3 BasicBlocks, widths 16/32/64 × width; no stem pooling",
        ["resnet18"] = "torchvision ResNet-18: 7×7/2 stem + max pool, 4 stages × 2 BasicBlocks (optional dilation)",
        ["resnet34"] = "torchvision ResNet-34: 4 stages of 3/4/6/3 BasicBlocks (optional dilation)",
        ["resnet50"] = "torchvision ResNet-50: 4 stages of 3/4/6/3 Bottlenecks (optional dilation)",
        ["hrnet18"] = "HRNetV2-W18 (the paper's HRNet-18): 4 parallel branches of 18/36/72/144 channels, 270 channels out at stride 4",
        ["hrnet18-small"] = "HRNetV2-W18-Small-v2 (the multi-task codebases' \"hrnet_w18\"): HRNet-18 with half the modules and blocks",
        ["hrnet32"] = "HRNetV2-W32: branches of 32/64/128/256 channels, 480 channels out at stride 4",
        ["hrnet48"] = "HRNetV2-W48: branches of 48/96/192/384 channels, 720 channels out at stride 4",
    };

    /// <summary>The backbones that are ResNets (what MTAN and cross-stitch are built on).</summary>
    public static IReadOnlyList<string> ResNets { get; } = ["resnet20", "resnet18", "resnet34", "resnet50"];

    /// <summary>
    /// The spec for <paramref name="name"/> at a width multiplier (ResNet-20 only) and output stride (8, 16 or 32
    /// for the torchvision ResNets, which dilate their last stages for 8 and 16; 32 for ResNet-20). HRNets have
    /// no width multiplier and keep their own stride 4 (no dilation): they take <paramref name="outputStride"/> 4,
    /// or the default 32, which for them means "the backbone's own". Throws <see cref="ArgumentException"/>
    /// (its ParamName the option at fault) as <see cref="Invalid"/> describes.
    /// </summary>
    public static IEncoderSpec Spec(string name, double width = 1.0, int outputStride = 32)
    {
        if (Invalid(name, width, outputStride) is { } bad)
            throw new ArgumentException($"Backbone {name}: {bad.Key} {bad.Value} is out of range; valid: {bad.Valid}.", bad.Key);
        return name switch
        {
            "resnet20" => ResNetSpec.ResNet20(width),
            "resnet18" => ResNetSpec.ResNet18(ResNetSpec.DilationForOutputStride(outputStride)),
            "resnet34" => ResNetSpec.ResNet34(ResNetSpec.DilationForOutputStride(outputStride)),
            "resnet50" => ResNetSpec.ResNet50(ResNetSpec.DilationForOutputStride(outputStride)),
            "hrnet18" => HRNetSpec.V2(18),
            "hrnet18-small" => HRNetSpec.W18SmallV2() with { Name = "hrnet18-small" },
            "hrnet32" => HRNetSpec.V2(32),
            "hrnet48" => HRNetSpec.V2(48),
            _ => throw new InvalidOperationException($"Backbone {name} is listed but not built."),
        };
    }

    /// <summary>The ResNet spec for <paramref name="name"/> (see <see cref="Spec"/>); an error for a backbone that is not a ResNet.</summary>
    public static ResNetSpec ResNet(string name, double width = 1.0, int outputStride = 32) =>
        Spec(name, width, outputStride) as ResNetSpec
        ?? throw new ArgumentException($"{name} is not a ResNet; valid: {string.Join(", ", ResNets)}.", nameof(name));

    /// <summary>
    /// The first option out of range for backbone <paramref name="name"/>: its key (<c>name</c>, <c>width</c> or
    /// <c>outputStride</c>), the value given and the valid values; null when every option is valid.
    /// </summary>
    public static (string Key, object Value, string Valid)? Invalid(string name, double width = 1.0, int outputStride = 32)
    {
        if (!Descriptions.ContainsKey(name)) return ("name", name, string.Join(", ", Descriptions.Keys));
        if (!(width > 0 && double.IsFinite(width))) return ("width", width, "> 0 (ResNet-20: 1, 0.5, 0.25, ...)");
        if (name != "resnet20" && width != 1.0) return ("width", width, $"1 ({name} takes no width multiplier)");
        if (name.StartsWith("hrnet", StringComparison.Ordinal))
            return outputStride is 4 or 32 ? null : ("outputStride", outputStride, $"4 ({name} keeps its own stride 4; the default 32 means the same)");
        if (name == "resnet20") return outputStride == 32 ? null : ("outputStride", outputStride, "32 (resnet20 has no dilated variant)");
        return outputStride is 8 or 16 or 32 ? null : ("outputStride", outputStride, "8, 16 or 32");
    }
}
