using static TorchSharp.torch;

namespace InterroGate.Heads;

/// <summary>How a dense head's map reaches the label resolution: bilinear upsampling, as DeepLab and HRNet heads do.</summary>
public static class DenseOutput
{
    /// <summary><paramref name="x"/> [B, C, h, w] resized bilinearly (align_corners = false) to the height and width of <paramref name="like"/>.</summary>
    public static Tensor ResizeLike(Tensor x, Tensor like)
    {
        long h = like.shape[^2], w = like.shape[^1];
        if (x.shape[^2] == h && x.shape[^1] == w) return x;
        return nn.functional.interpolate(x, size: [h, w], mode: InterpolationMode.Bilinear, align_corners: false);
    }
}
