namespace InterroGate.Backbones;

/// <summary>How a backbone takes the options of its configuration.</summary>
public enum BackboneOptions
{
    /// <summary>A width multiplier; stride 32 only (the CIFAR ResNet-20).</summary>
    Width,
    /// <summary>Output stride 8, 16 or 32 (the last stages dilated for 8 and 16, DeepLab style); no width multiplier.</summary>
    Dilation,
    /// <summary>Neither: the backbone's own stride (an HRNet's 4, a ViT's patch size; the default 32 means the same).</summary>
    OwnStride,
}

/// <summary>
/// A backbone a configuration names (<c>backbone.name</c>): its one-line description (what <c>interrogate list</c>
/// prints), which options it takes, whether it is a ResNet (what MTAN and cross-stitch are built on), and its spec
/// for a width multiplier and output stride. <see cref="Gated"/>: whether its encoder has a plan, so InterroGate (and
/// the static networks of STL and MTL) can be built on it.
/// </summary>
public sealed record BackboneEntry(string Name, string Description, BackboneOptions Options, bool IsResNet, Func<double, int, IEncoderSpec> Create);

/// <summary>The backbones by name: one <see cref="BackboneEntry"/> each, which the listing, the errors and <see cref="Spec"/> read.</summary>
public static class BackboneCatalog
{
    /// <summary>Every backbone; adding one is its spec (and plan) in <c>Backbones/</c> and one entry here.</summary>
    public static readonly IReadOnlyList<BackboneEntry> Entries =
    [
        new("resnet20", "CIFAR ResNet-20: 3×3 stem, 3 stages × 3 BasicBlocks, widths 16/32/64 × width; no stem pooling",
            BackboneOptions.Width, true, (width, _) => ResNetSpec.ResNet20(width)),
        new("resnet18", "torchvision ResNet-18: 7×7/2 stem + max pool, 4 stages × 2 BasicBlocks (optional dilation)",
            BackboneOptions.Dilation, true, (_, os) => ResNetSpec.ResNet18(ResNetSpec.DilationForOutputStride(os))),
        new("resnet34", "torchvision ResNet-34: 4 stages of 3/4/6/3 BasicBlocks (optional dilation)",
            BackboneOptions.Dilation, true, (_, os) => ResNetSpec.ResNet34(ResNetSpec.DilationForOutputStride(os))),
        new("resnet50", "torchvision ResNet-50: 4 stages of 3/4/6/3 Bottlenecks (optional dilation)",
            BackboneOptions.Dilation, true, (_, os) => ResNetSpec.ResNet50(ResNetSpec.DilationForOutputStride(os))),
        new("hrnet18", "HRNetV2-W18 (the paper's HRNet-18): 4 parallel branches of 18/36/72/144 channels, 270 channels out at stride 4",
            BackboneOptions.OwnStride, false, (_, _) => HRNetSpec.V2(18)),
        new("hrnet18-small", "HRNetV2-W18-Small-v2 (the multi-task codebases' \"hrnet_w18\"): HRNet-18 with half the modules and blocks",
            BackboneOptions.OwnStride, false, (_, _) => HRNetSpec.W18SmallV2() with { Name = "hrnet18-small" }),
        new("hrnet32", "HRNetV2-W32: branches of 32/64/128/256 channels, 480 channels out at stride 4",
            BackboneOptions.OwnStride, false, (_, _) => HRNetSpec.V2(32)),
        new("hrnet48", "HRNetV2-W48: branches of 48/96/192/384 channels, 720 channels out at stride 4",
            BackboneOptions.OwnStride, false, (_, _) => HRNetSpec.V2(48)),
        new("vit_tiny_patch16_224", "ViT-Ti/16 (timm's names and sizes): width 192, 12 blocks, 3 heads, patches of 16, trained at 224×224",
            BackboneOptions.OwnStride, false, (_, _) => ViTSpec.Tiny16()),
        new("vit_small_patch16_224", "ViT-S/16: width 384, 12 blocks, 6 heads, patches of 16, trained at 224×224",
            BackboneOptions.OwnStride, false, (_, _) => ViTSpec.Small16()),
        new("vit_base_patch16_224", "ViT-B/16: width 768, 12 blocks, 12 heads, patches of 16, trained at 224×224 (86.6 M parameters with a 1000-class classifier)",
            BackboneOptions.OwnStride, false, (_, _) => ViTSpec.Base16()),
        new("vit_cpu_patch4_32", "a CPU-sized ViT for 32×32 images: width 64, 4 blocks, 4 heads, patches of 4 (an 8×8 token grid)",
            BackboneOptions.OwnStride, false, (_, _) => ViTSpec.Cpu4()),
    ];

    /// <summary>Names and one-line descriptions, in the order of <see cref="Entries"/>.</summary>
    public static IReadOnlyDictionary<string, string> Descriptions { get; } = Entries.ToDictionary(e => e.Name, e => e.Description);


    /// <summary>The backbones that are ResNets (what MTAN and cross-stitch are built on).</summary>
    public static IReadOnlyList<string> ResNets { get; } = Entries.Where(e => e.IsResNet).Select(e => e.Name).ToArray();

    /// <summary>
    /// The spec for <paramref name="name"/> at a width multiplier (<see cref="BackboneOptions.Width"/> only) and output
    /// stride (8, 16 or 32 for <see cref="BackboneOptions.Dilation"/>; 32 for a width backbone). Backbones with their
    /// own stride take <paramref name="outputStride"/> 4, or the default 32, which for them means "the backbone's own".
    /// Throws <see cref="ArgumentException"/> (its ParamName the option at fault) as <see cref="Invalid"/> describes.
    /// </summary>
    public static IEncoderSpec Spec(string name, double width = 1.0, int outputStride = 32)
    {
        if (Invalid(name, width, outputStride) is { } bad)
            throw new ArgumentException($"Backbone {name}: {bad.Key} {bad.Value} is out of range; valid: {bad.Valid}.", bad.Key);
        return Entries.First(e => e.Name == name).Create(width, outputStride);
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
        if (Entries.FirstOrDefault(e => e.Name == name) is not { } entry) return ("name", name, string.Join(", ", Descriptions.Keys));
        if (!(width > 0 && double.IsFinite(width))) return ("width", width, "> 0 (ResNet-20: 1, 0.5, 0.25, ...)");
        if (entry.Options != BackboneOptions.Width && width != 1.0) return ("width", width, $"1 ({name} takes no width multiplier)");
        return entry.Options switch
        {
            BackboneOptions.OwnStride => entry.Create(1.0, 32).OutputStride is var own && (outputStride == own || outputStride == 32) ? null
                : ("outputStride", outputStride, $"{own} ({name} keeps its own stride {own}; the default 32 means the same)"),
            BackboneOptions.Width => outputStride == 32 ? null : ("outputStride", outputStride, $"32 ({name} has no dilated variant)"),
            _ => outputStride is 8 or 16 or 32 ? null : ("outputStride", outputStride, "8, 16 or 32"),
        };
    }
}
