using static TorchSharp.torch;

namespace InterroGate.Tensors;

/// <summary>
/// Channel selection that keeps a feature map's memory order. <c>index_select</c> along dimension 1 returns NCHW
/// whatever its input's order, so channels-last features (<c>training.channelsLast</c>) gathered that way would reach
/// the next convolution in NCHW order; gathered here they stay channels-last.
/// </summary>
internal static class Channels
{
    /// <summary>
    /// Whether <paramref name="t"/> is a feature map [N, C, H, W] stored channels-last (NHWC): channels adjacent in
    /// memory. One channel counts too (its stride is then 1 only in NHWC); a map of one element is either.
    /// </summary>
    public static bool AreLast(Tensor t) => t.dim() == 4 && t.stride(1) == 1 && t.shape[1] * t.shape[2] * t.shape[3] > 1;

    /// <summary>
    /// Channels <paramref name="index"/> of <paramref name="parts"/> concatenated along dimension 1: NHWC where some part
    /// is channels-last (the gather then runs along the last dimension of the NHWC view), NCHW otherwise.
    /// </summary>
    public static Tensor Gather(IReadOnlyList<Tensor> parts, Tensor index)
    {
        if (!parts.Any(AreLast)) return (parts.Count == 1 ? parts[0] : cat(parts.ToArray(), 1)).index_select(1, index);
        var nhwc = parts.Select(p => p.permute(0, 2, 3, 1)).ToArray();
        return (nhwc.Length == 1 ? nhwc[0] : cat(nhwc, 3)).index_select(3, index).permute(0, 3, 1, 2);
    }
}
