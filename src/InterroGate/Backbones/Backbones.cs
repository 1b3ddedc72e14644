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
    };

    /// <summary>The spec for <paramref name="name"/> at a width multiplier (ResNet-20 only) and output stride.</summary>
    public static ResNetSpec Spec(string name, double width = 1.0, int outputStride = 32) => name switch
    {
        "resnet20" when outputStride == 32 => ResNetSpec.ResNet20(width),
        "resnet20" => throw new ArgumentException("resnet20 has no dilated variant; use outputStride 32."),
        "resnet18" or "resnet34" or "resnet50" when width != 1.0 =>
            throw new ArgumentException($"{name} takes no width multiplier (width must be 1)."),
        "resnet18" => ResNetSpec.ResNet18(ResNetSpec.DilationForOutputStride(outputStride)),
        "resnet34" => ResNetSpec.ResNet34(ResNetSpec.DilationForOutputStride(outputStride)),
        "resnet50" => ResNetSpec.ResNet50(ResNetSpec.DilationForOutputStride(outputStride)),
        _ => throw new ArgumentException($"Unknown backbone '{name}'; valid: {string.Join(", ", Descriptions.Keys)}."),
    };
}
