using InterroGate.Analysis;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Tests.Analysis;

/// <summary>The dense metrics on tiny maps, accumulated over batches, against closed forms.</summary>
[Collection("Torch")]
public sealed class DenseMetricTests
{
    /// <summary>Logits [1, K, H, W] whose argmax is <paramref name="classes"/> [H, W].</summary>
    private static Tensor LogitsFor(long[,] classes, int k)
    {
        int h = classes.GetLength(0), w = classes.GetLength(1);
        var logits = zeros(1, k, h, w);
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) logits[0, classes[y, x], y, x] = 5;
        return logits;
    }

    private static Tensor Labels(long[,] labels) => tensor(labels.Cast<long>().ToArray()).view(1, labels.GetLength(0), labels.GetLength(1));

    [Fact]
    public void MIoU_comes_from_the_confusion_matrix_of_the_whole_data_set()
    {
        var m = new MeanIoU(3);
        // Batch 1: labels 0 0 / 1 255, predicted 0 1 / 1 2 (the ignored pixel does not count).
        m.Update(LogitsFor(new long[,] { { 0, 1 }, { 1, 2 } }, 3), Labels(new long[,] { { 0, 0 }, { 1, 255 } }));
        // Batch 2: labels 1 1, predicted 1 0.
        m.Update(LogitsFor(new long[,] { { 1, 0 } }, 3), Labels(new long[,] { { 1, 1 } }));
        // Class 0: tp 1, label pixels 2, predicted 2 -> 1/3. Class 1: tp 2, labels 3, predicted 3 -> 2/4. Class 2 occurs nowhere.
        var iou = m.PerClass();
        Assert.Equal(1 / 3.0, iou[0], 9);
        Assert.Equal(0.5, iou[1], 9);
        Assert.True(double.IsNaN(iou[2]));
        Assert.Equal((1 / 3.0 + 0.5) / 2, m.Compute(), 9);
        Assert.Equal(3 / 5.0, m.Details()["pixel_accuracy"], 9);
    }

    [Fact]
    public void Depth_RMSE_pools_every_valid_pixel_rather_than_averaging_images()
    {
        var m = new DepthErrors();
        m.Update(tensor(new float[] { 3, 1 }).view(1, 1, 1, 2), tensor(new float[] { 1, 0 }).view(1, 1, 1, 2)); // error 2 on one pixel
        m.Update(tensor(new float[] { 2, 2, 2 }).view(1, 1, 1, 3), tensor(new float[] { 2, 2, 4 }).view(1, 1, 1, 3)); // errors 0, 0, 2
        Assert.Equal(Math.Sqrt((4 + 0 + 0 + 4) / 4.0), m.Compute(), 9);
        Assert.Equal((2 / 1.0 + 0 + 0 + 2 / 4.0) / 4, m.Details()["abs_rel"], 9);

        // A prediction at or below 0 counts as 1e-9 m: −0.5 against 1 m is an error of 1 − 1e-9, not 1.5.
        var clamped = new DepthErrors();
        clamped.Update(tensor(new float[] { -0.5f, 2 }).view(1, 1, 1, 2), tensor(new float[] { 1, 2 }).view(1, 1, 1, 2));
        Assert.Equal(Math.Sqrt((1 - 1e-9) * (1 - 1e-9) / 2), clamped.Compute(), 9);
    }

    [Fact]
    public void Normal_angles_give_mean_median_and_the_fractions_within_thresholds()
    {
        // Three known pixels at 0°, 45° and 90° from the target (0, 0, 1); one unknown pixel.
        var output = tensor(new float[] { 0, 1, 1, 5, 0, 0, 0, 5, 1, 1, 0, 5 }).view(1, 3, 1, 4);
        var target = tensor(new float[] { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0 }).view(1, 3, 1, 4);
        var m = new NormalAngleErrors();
        m.Update(output, target);
        Assert.Equal(45, m.Compute(), 3);
        Assert.Equal(45, m.Median(), 1);
        var d = m.Details();
        Assert.Equal(100 / 3.0, d["within_11.25"], 6);
        Assert.Equal(100 / 3.0, d["within_30"], 6);
        Assert.Equal(Math.Sqrt((0 + 45 * 45 + 90 * 90) / 3.0), d["rmse"], 3);
    }

    [Fact]
    public void Saliency_maxF_is_one_for_a_perfect_map_and_the_weighted_F_of_counts_otherwise()
    {
        var target = tensor(new float[] { 1, 1, 0, 0 }).view(1, 1, 1, 4);
        var perfect = new SaliencyScores();
        perfect.Update(tensor(new float[] { 5, 5, -5, -5 }).view(1, 1, 1, 4), target);
        Assert.Equal(1, perfect.Compute(), 9);
        Assert.Equal(1, perfect.Details()["maxF"], 9);

        // Every pixel predicted salient at every threshold: precision 1/2, recall 1; F = 1.3 · 0.5 / (0.3 · 0.5 + 1).
        var all = new SaliencyScores();
        all.Update(full(1, 1, 1, 4, 9f), target);
        Assert.Equal(1.3 * 0.5 / (0.15 + 1), all.Details()["maxF"], 9);
        Assert.Equal(0.5, all.Compute(), 9); // salient IoU 2/4 at every threshold
    }

    [Fact]
    public void Saliency_mIoU_is_the_best_thresholds_mean_over_images_of_each_images_IoU()
    {
        static float Logit(double p) => (float)Math.Log(p / (1 - p));
        // Image A: salient pixels 0 and 1; p = 0.95, 0.28, 0.28, 0.05. At 0.2 and 0.25 pixels 0-2 are predicted (IoU 2/3),
        // from 0.3 on pixel 0 alone (IoU 1/2). Image B: nothing salient, p = 0.27 everywhere: IoU 0 at 0.2 and 0.25, and
        // 1 from 0.3 on (nothing predicted, nothing salient).
        var outputs = tensor(new[] { Logit(0.95), Logit(0.28), Logit(0.28), Logit(0.05), Logit(0.27), Logit(0.27), Logit(0.27), Logit(0.27) }).view(2, 1, 1, 4);
        var target = tensor(new float[] { 1, 1, 0, 0, 0, 0, 0, 0 }).view(2, 1, 1, 4);
        var scores = new SaliencyScores();
        scores.Update(outputs, target);
        // The best threshold's mean: (1/2 + 1) / 2 at 0.3 and above, against (2/3 + 0) / 2 below. The mean of each image's
        // best (5/6) and the IoU of the pooled pixels (1/2 from 0.3 on) would differ.
        Assert.Equal(0.75, scores.Compute(), 9);
        Assert.Equal("mIoU", scores.Name);
        Assert.Equal(scores.Compute(), scores.Details()["mIoU"]);

        // The same images in two updates give the same figure: the mean is over images, whatever the batches.
        var split = new SaliencyScores();
        split.Update(outputs.narrow(0, 0, 1), target.narrow(0, 0, 1));
        split.Update(outputs.narrow(0, 1, 1), target.narrow(0, 1, 1));
        Assert.Equal(0.75, split.Compute(), 9);
    }

    [Fact]
    public void Saliency_and_edge_scores_leave_out_pixels_marked_with_the_ignore_label()
    {
        // A 1×4 map whose last two pixels are padding (255), predicted salient and edge there with certainty: the
        // scores are those of the first two pixels alone, which are predicted right.
        var target = tensor(new float[] { 1, 0, 255, 255 }).view(1, 1, 1, 4);
        var output = tensor(new float[] { 9, -9, 9, 9 }).view(1, 1, 1, 4);
        var saliency = new SaliencyScores();
        saliency.Update(output, target);
        Assert.Equal(1, saliency.Compute(), 9);
        Assert.Equal(1, saliency.Details()["maxF"], 9);
        // An image of padding only has no IoU and does not count.
        saliency.Update(output, full(1, 1, 1, 4, 255f));
        Assert.Equal(1, saliency.Compute(), 9);

        var edges = new EdgeScores(new DenseMetricOptions(EdgeThresholds: 9));
        edges.Update(output, target);
        Assert.Equal(1, edges.OdsF(), 9);
        Assert.Equal((0.95 * Math.Log(1 + Math.Exp(-9)) + 0.05 * Math.Log(1 + Math.Exp(-9))) / 2, edges.Compute(), 6);
    }

    [Fact]
    public void Saliency_counts_for_every_threshold_in_one_pass_equal_one_comparison_per_threshold()
    {
        // Probabilities that fall exactly on thresholds (as float32), just beside them, at 0 and 1, a NaN, and random ones.
        var thresholds = DenseMetricOptions.Default.ThresholdValues();
        manual_seed(3);
        var exact = tensor(thresholds.Select(t => (float)t).ToArray());
        var beside = cat([exact.nextafter(zeros_like(exact)), exact.nextafter(ones_like(exact))]);
        var p = cat([exact, beside, tensor(new float[] { 0, 1, float.NaN }), rand(5000)]);
        var salient = rand(p.shape[0]).gt(0.4);
        var (predicted, truePositives, positives) = SaliencyScores.ThresholdCounts(p, salient, thresholds);
        Assert.Equal(salient.sum().item<long>(), positives);
        for (int i = 0; i < thresholds.Length; i++)
        {
            var above = p.gt(thresholds[i]);
            Assert.Equal(above.sum().item<long>(), predicted[i]);
            Assert.Equal(above.logical_and(salient).sum().item<long>(), truePositives[i]);
            Assert.True(p.ge(thresholds[i]).sum().item<long>() > predicted[i], $"no value on threshold {i}: the ties are not tested");
        }
    }

    [Fact]
    public void Edge_odsF_matches_within_the_distance_and_the_primary_metric_is_the_loss()
    {
        var options = new DenseMetricOptions(EdgeMatchFraction: 1.0 / 9, EdgeThresholds: 9); // 1/9 of the 6×6 diagonal (8.5 px) is under a pixel: the distance is 1
        var target = zeros(1, 1, 6, 6);
        target[0, 0, .., 2] = 1; // a vertical edge in column 2
        var shifted = full(1, 1, 6, 6, -9f);
        shifted[0, 0, .., 3] = 9; // predicted one column to the right: within one pixel
        var m = new EdgeScores(options);
        Assert.Equal(1, m.MatchDistance(6, 6));
        m.Update(shifted, target);
        Assert.Equal(1, m.OdsF(), 9);

        var far = full(1, 1, 6, 6, -9f);
        far[0, 0, .., 5] = 9; // three columns away: nothing matches
        var f = new EdgeScores(options);
        f.Update(far, target);
        Assert.Equal(0, f.OdsF(), 9);
        Assert.Equal(InterroGate.Objectives.TaskLoss.Compute(new TaskSpec("e", TaskKind.Edges, 1), far, target).item<float>(), f.Compute(), 5);
        Assert.False(f.HigherIsBetter);
    }

    [Fact]
    public void Every_dense_kind_has_its_metric_and_details_that_include_the_primary()
    {
        foreach (var kind in new[] { TaskKind.Segmentation, TaskKind.Depth, TaskKind.Normals, TaskKind.Saliency, TaskKind.Edges })
        {
            var task = new TaskSpec("t", kind, kind == TaskKind.Segmentation ? 4 : kind == TaskKind.Normals ? 3 : 1);
            var metric = TaskMetrics.For(task);
            Assert.Equal(task.HigherIsBetter, metric.HigherIsBetter);
            Assert.Equal(task.MetricName, metric.Name);
            // One batch of outputs and targets of the kind's shape: the details carry the primary metric's value and more.
            manual_seed(3);
            var output = randn(2, task.Outputs, 8, 8);
            var target = kind switch
            {
                TaskKind.Segmentation => randint(0, 4, [2, 8, 8]),
                TaskKind.Depth => rand(2, 1, 8, 8) + 0.5,
                TaskKind.Normals => nn.functional.normalize(randn(2, 3, 8, 8), dim: 1),
                _ => (rand(2, 1, 8, 8) > 0.7).to(ScalarType.Float32),
            };
            metric.Update(output, target);
            var details = metric.Details();
            double primary = metric.Compute();
            Assert.True(double.IsFinite(primary), $"{kind}: {primary}");
            Assert.True(details.ContainsKey(metric.Name), $"{kind}: {string.Join(", ", details.Keys)}");
            Assert.Equal(primary, details[metric.Name], 12);
            Assert.True(details.Count >= 2, $"{kind}: only {string.Join(", ", details.Keys)}");
        }
    }

    private static bool[] Map(params string[] rows) => rows.SelectMany(r => r.Select(ch => ch == '#')).ToArray();

    [Fact]
    public void Thinning_leaves_a_thick_line_one_pixel_wide_and_a_thin_one_as_it_is()
    {
        var thick = Map(
            "........",
            "########",
            "########",
            "########",
            "........");
        var thin = EdgeMatching.Thin(thick, 5, 8);
        string shown = string.Join("/", Enumerable.Range(0, 5).Select(y => new string(Enumerable.Range(0, 8).Select(x => thin[y * 8 + x] ? '#' : '.').ToArray())));
        // One pixel wide along the middle row; thinning also shortens a line's ends by a pixel or two.
        for (int x = 2; x < 6; x++) Assert.True(Enumerable.Range(0, 5).Count(y => thin[y * 8 + x]) == 1 && thin[2 * 8 + x], shown);
        Assert.InRange(thin.Count(b => b), 4, 8);

        var line = Map(".....", "#####", ".....");
        Assert.Equal(line, EdgeMatching.Thin(line, 3, 5));
    }

    [Fact]
    public void Matching_is_one_to_one_within_the_distance()
    {
        // Two predicted pixels next to one true pixel: only one of them is matched.
        Assert.Equal(1, EdgeMatching.MatchCount(Map("#.#"), Map(".#."), 1, 3, 1));
        // A line shifted by one pixel matches whole; by two, not at all (distance 1).
        Assert.Equal(5, EdgeMatching.MatchCount(Map(".....", "#####", "....."), Map("#####", ".....", "....."), 3, 5, 1));
        Assert.Equal(0, EdgeMatching.MatchCount(Map("#####", ".....", "....."), Map(".....", ".....", "#####"), 3, 5, 1));
        // Greedy nearest-first would match p0-t1 and leave p1 unmatched; the maximum matching pairs p0-t0 and p1-t1.
        Assert.Equal(2, EdgeMatching.MatchCount(Map("##."), Map(".##"), 1, 3, 1));
        // Diagonal neighbours are within distance √2 only when the radius allows it.
        Assert.Equal(0, EdgeMatching.MatchCount(Map("#.", ".."), Map("..", ".#"), 2, 2, 1));
        Assert.Equal(1, EdgeMatching.MatchCount(Map("#.", ".."), Map("..", ".#"), 2, 2, 2));
        // The radius is a real distance, not rounded up: √2 ≈ 1.414 is beyond 1.4 and within 1.42.
        Assert.Equal(0, EdgeMatching.MatchCount(Map("#.", ".."), Map("..", ".#"), 2, 2, 1.4));
        Assert.Equal(1, EdgeMatching.MatchCount(Map("#.", ".."), Map("..", ".#"), 2, 2, 1.42));
        // The benchmark's 0.75% of the diagonal: 5.43 px at 512×512; at least 1 px on small images.
        var scores = new EdgeScores();
        Assert.Equal(0.0075 * Math.Sqrt(2 * 512.0 * 512), scores.MatchDistance(512, 512), 9);
        Assert.Equal(1, scores.MatchDistance(64, 64), 9);
    }

    [Fact]
    public void Edge_odsF_thins_thick_predictions_instead_of_counting_every_pixel()
    {
        // The true edge is one column; the prediction is three columns wide around it. Counting every predicted pixel
        // gives precision 1/3 (F = 0.5); thinned to one line, every predicted pixel matches (precision 1; the thinned
        // line is a few pixels shorter than the edge, so recall is under 1).
        var options = new DenseMetricOptions(EdgeMatchFraction: 1.0 / 9, EdgeThresholds: 9);
        var target = zeros(1, 1, 8, 8);
        target[0, 0, .., 4] = 1;
        var wide = full(1, 1, 8, 8, -9f);
        wide[0, 0, .., TensorIndex.Slice(3, 6)] = 9;
        var m = new EdgeScores(options);
        m.Update(wide, target);
        Assert.True(m.OdsF() > 0.7, $"odsF {m.OdsF()}");
    }
}
