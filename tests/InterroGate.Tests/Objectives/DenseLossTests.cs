using InterroGate.Objectives;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Tests.Objectives;

/// <summary>The dense losses on tiny maps, against values worked out by hand.</summary>
[Collection("Torch")]
public sealed class DenseLossTests
{
    private static double Loss(TaskKind kind, int outputs, Tensor output, Tensor target) =>
        TaskLoss.Compute(new TaskSpec("t", kind, outputs), output, target).item<float>();

    [Fact]
    public void Segmentation_cross_entropy_skips_the_ignore_label_and_is_zero_without_labels()
    {
        // Two classes, 1×2 map: logits favour class 0 at pixel 0 and class 1 at pixel 1.
        var logits = tensor(new float[] { 2, 0, 0, 3 }).view(1, 2, 1, 2); // [B, K, H, W]: class 0 = (2, 0), class 1 = (0, 3)
        var labels = tensor(new long[] { 0, 255 }).view(1, 1, 2);
        double expected = Math.Log(1 + Math.Exp(-2)); // −log softmax at pixel 0 only
        Assert.Equal(expected, Loss(TaskKind.Segmentation, 2, logits, labels), 5);
        Assert.Equal(0, Loss(TaskKind.Segmentation, 2, logits, full(1, 1, 2, 255L)));
    }

    [Fact]
    public void Depth_L1_averages_over_known_pixels_only()
    {
        var output = tensor(new float[] { 1, 5, 2, 9 }).view(1, 1, 2, 2);
        var target = tensor(new float[] { 2, 0, 4, 0 }).view(1, 1, 2, 2); // 0 = unknown
        Assert.Equal((1 + 2) / 2.0, Loss(TaskKind.Depth, 1, output, target), 6);
        Assert.Equal(0, Loss(TaskKind.Depth, 1, output, zeros(1, 1, 2, 2)));
    }

    [Fact]
    public void Normals_L1_compares_the_unit_normalised_prediction_on_known_pixels()
    {
        // Pixel 0 predicts (0, 0, 5) -> (0, 0, 1) against (0, 0, 1): error 0. Pixel 1 predicts (3, 0, 4) -> (0.6, 0, 0.8)
        // against (1, 0, 0): |−0.4| + 0 + 0.8 = 1.2. Pixel 2 is unknown.
        var output = tensor(new float[] { 0, 3, 7, 0, 0, 7, 5, 4, 7 }).view(1, 3, 1, 3);
        var target = tensor(new float[] { 0, 1, 0, 0, 0, 0, 1, 0, 0 }).view(1, 3, 1, 3);
        Assert.Equal(1.2 / 6, Loss(TaskKind.Normals, 3, output, target), 5);
    }

    [Fact]
    public void Edge_loss_weighs_edge_pixels_by_0_95()
    {
        var logits = tensor(new float[] { 0, 0 }).view(1, 1, 1, 2);
        var target = tensor(new float[] { 1, 0 }).view(1, 1, 1, 2);
        double expected = (0.95 * Math.Log(2) + 0.05 * Math.Log(2)) / 2;
        Assert.Equal(expected, Loss(TaskKind.Edges, 1, logits, target), 6);
        var confident = tensor(new float[] { 4, 4 }).view(1, 1, 1, 2); // wrong on the background pixel only
        Assert.Equal(0.05 * Math.Log(1 + Math.Exp(4)) / 2 + 0.95 * Math.Log(1 + Math.Exp(-4)) / 2, Loss(TaskKind.Edges, 1, confident, target), 5);
    }

    [Fact]
    public void Saliency_and_edge_losses_leave_out_pixels_marked_with_the_ignore_label()
    {
        // Pixel 1 is padding (255): the losses are those of pixels 0 and 2 alone, and 0 on a batch of padding only.
        var logits = tensor(new float[] { 2, -9, -1 }).view(1, 1, 1, 3);
        var target = tensor(new float[] { 1, 255, 0 }).view(1, 1, 1, 3);
        double salient = Math.Log(1 + Math.Exp(-2)), background = Math.Log(1 + Math.Exp(-1));
        Assert.Equal((0.5 * salient + 0.5 * background) / 2, Loss(TaskKind.Saliency, 1, logits, target), 5); // one of each: w = ½
        Assert.Equal((0.95 * salient + 0.05 * background) / 2, Loss(TaskKind.Edges, 1, logits, target), 5);
        Assert.Equal(0, Loss(TaskKind.Saliency, 1, logits, full(1, 1, 1, 3, 255f)));
        Assert.Equal(0, Loss(TaskKind.Edges, 1, logits, full(1, 1, 1, 3, 255f)));
    }

    [Fact]
    public void Saliency_is_balanced_by_the_batch_fraction_of_salient_pixels()
    {
        // One salient pixel of four: w = ¾ of the known pixels are not salient, so the salient one weighs ¾ and each
        // background pixel ¼; at logit 0 every pixel's BCE is ln 2: (¾ + 3·¼)·ln 2 / 4 = 0.375·ln 2.
        Assert.Equal(0.375 * Math.Log(2), Loss(TaskKind.Saliency, 1, zeros(1, 1, 2, 2), tensor(new float[] { 1, 0, 0, 0 }).view(1, 1, 2, 2)), 5);
        // The fraction is over the whole batch's known pixels: a second image all background gives w = 7/8.
        var target = tensor(new float[] { 1, 0, 0, 0, 0, 0, 0, 0, 255, 255 }).view(1, 1, 1, 10);
        Assert.Equal((7.0 / 8 + 7 * (1.0 / 8)) * Math.Log(2) / 8, Loss(TaskKind.Saliency, 1, zeros(1, 1, 1, 10), target), 5);
    }

    [Fact]
    public void A_dense_output_at_another_resolution_than_its_target_is_an_error_naming_the_task()
    {
        var e = Assert.Throws<ArgumentException>(() => TaskLoss.Compute(new TaskSpec("depth", TaskKind.Depth, 1), zeros(1, 1, 4, 4), zeros(1, 1, 8, 8)));
        Assert.Contains("'depth'", e.Message);
    }
}
