using InterroGate.Data;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Tests.Data;

[Collection("Torch")]
public sealed class JointTransformTests
{
    private static readonly TaskSet Tasks = new([
        new TaskSpec("seg", TaskKind.Segmentation, 11),
        new TaskSpec("depth", TaskKind.Depth, 1),
        new TaskSpec("normals", TaskKind.Normals, 3),
        new TaskSpec("sal", TaskKind.Saliency, 1),
        new TaskSpec("edge", TaskKind.Edges, 1),
        new TaskSpec("kind", TaskKind.Classification, 3),
    ]);

    /// <summary>An h×w sample whose maps hold their pixel's row-major position p: image p, seg p % 11, depth p + 1, normals (p, 10p, 100p), sal and edge p % 2.</summary>
    private static DenseSample Numbered(int h, int w)
    {
        int n = h * w;
        var p = Enumerable.Range(0, n).ToArray();
        return new DenseSample(tensor(p.Select(v => (byte)v).ToArray(), [1, h, w]), new Dictionary<string, Tensor>
        {
            ["seg"] = tensor(p.Select(v => (long)(v % 11)).ToArray(), [h, w]),
            ["depth"] = tensor(p.Select(v => v + 1f).ToArray(), [1, h, w]),
            ["normals"] = tensor(p.Select(v => (float)v).Concat(p.Select(v => 10f * v)).Concat(p.Select(v => 100f * v)).ToArray(), [3, h, w]),
            ["sal"] = tensor(p.Select(v => v % 2f).ToArray(), [1, h, w]),
            ["edge"] = tensor(p.Select(v => v % 2f).ToArray(), [1, h, w]),
            ["kind"] = tensor(2L),
        });
    }

    private static long[] Longs(Tensor t) => t.to(int64).data<long>().ToArray();
    private static float[] Floats(Tensor t) => t.to(float32).data<float>().ToArray();

    [Fact]
    public void A_flip_mirrors_every_map_and_negates_the_normals_x_component()
    {
        var s = Numbered(2, 3);
        var kind = s.Targets["kind"];
        var f = new HorizontalFlip(p: 1).Apply(s, Tasks, new Random(0));
        // 0 1 2 / 3 4 5 mirrored is 2 1 0 / 5 4 3.
        Assert.Equal(new long[] { 2, 1, 0, 5, 4, 3 }, Longs(f.Image));
        Assert.Equal(ScalarType.Byte, f.Image.dtype);
        Assert.Equal(new long[] { 2, 1, 0, 5, 4, 3 }, Longs(f.Targets["seg"]));
        Assert.Equal(new float[] { 3, 2, 1, 6, 5, 4 }, Floats(f.Targets["depth"]));
        Assert.Equal(new float[] { 0, 1, 0, 1, 0, 1 }, Floats(f.Targets["edge"]));
        Assert.Equal(new float[] { -2, -1, -0, -5, -4, -3, 20, 10, 0, 50, 40, 30, 200, 100, 0, 500, 400, 300 }, Floats(f.Targets["normals"]));
        Assert.Same(kind, f.Targets["kind"]);   // image-level targets pass through
        Assert.True(s.Image.IsInvalid);         // the replaced input was disposed

        var g = Numbered(2, 3);
        Assert.Same(g, new HorizontalFlip(p: 0).Apply(g, Tasks, new Random(0)));
    }

    [Fact]
    public void A_crop_larger_than_the_sample_pads_each_map_with_its_unknown_value()
    {
        var c = new CenterCropOrPad(4, 4).Apply(Numbered(2, 2), Tasks, new Random(0));
        Assert.Equal(new long[] { 1, 4, 4 }, c.Image.shape);
        Assert.Equal(new long[] { 4, 4 }, c.Targets["seg"].shape);
        // The 2×2 sample sits in the middle; everything around it is unknown.
        Assert.Equal(new long[] { 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 255, 255, 255, 255, 255 }, Longs(c.Targets["seg"]));
        Assert.Equal(new float[] { 0, 0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0 }, Floats(c.Targets["depth"]));
        Assert.Equal(new long[] { 0, 0, 0, 0, 0, 0, 1, 0, 0, 2, 3, 0, 0, 0, 0, 0 }, Longs(c.Image));
        var normals = Floats(c.Targets["normals"]);
        Assert.Equal(new float[] { 0, 0, 0 }, new[] { normals[0], normals[16], normals[32] });  // the zero vector
        Assert.Equal(new float[] { 3, 30, 300 }, new[] { normals[10], normals[26], normals[42] });
        // Saliency and edges are unknown there too (the ignore label), not "not salient" or "no edge".
        Assert.Equal(new float[] { 255, 255, 255, 255, 255, 0, 1, 255, 255, 0, 1, 255, 255, 255, 255, 255 }, Floats(c.Targets["sal"]));
        Assert.Equal(new float[] { 255, 255, 255, 255, 255, 0, 1, 255, 255, 0, 1, 255, 255, 255, 255, 255 }, Floats(c.Targets["edge"]));

        for (int seed = 0; seed < 5; seed++)
        {
            var r = new RandomCrop(4, 3).Apply(Numbered(2, 2), Tasks, new Random(seed));
            var seg = Longs(r.Targets["seg"]);
            var depth = Floats(r.Targets["depth"]);
            Assert.Equal(8, seg.Count(v => v == 255));
            Assert.Equal(8, depth.Count(v => v == 0));
            int at = Array.IndexOf(seg, 0L);                          // wherever the sample landed, it is whole and aligned
            Assert.Equal(new long[] { 0, 1, 2, 3 }, new[] { seg[at], seg[at + 1], seg[at + 3], seg[at + 4] });
            Assert.Equal(new float[] { 1, 2, 3, 4 }, new[] { depth[at], depth[at + 1], depth[at + 3], depth[at + 4] });
        }
    }

    [Fact]
    public void A_crop_smaller_than_the_sample_is_one_aligned_window_of_it()
    {
        var offsets = new HashSet<long>();
        for (int seed = 0; seed < 20; seed++)
        {
            var r = new RandomCrop(2, 3).Apply(Numbered(4, 5), Tasks, new Random(seed));
            var image = Longs(r.Image);
            long top = image[0] / 5, left = image[0] % 5;
            offsets.Add(image[0]);
            var expected = new[] { 0, 1, 2, 5, 6, 7 }.Select(d => image[0] + d).ToArray();
            Assert.Equal(expected, image);
            Assert.Equal(expected.Select(p => p % 11), Longs(r.Targets["seg"]));
            Assert.Equal(expected.Select(p => p + 1f), Floats(r.Targets["depth"]));
            Assert.InRange(top, 0, 2);
            Assert.InRange(left, 0, 2);
        }
        Assert.True(offsets.Count > 3);
        Assert.Equal(new long[] { 12 }, Longs(new CenterCropOrPad(1, 1).Apply(Numbered(5, 5), Tasks, new Random(0)).Image));
    }

    [Fact]
    public void Scaling_by_2_repeats_labels_and_normals_exactly_halves_depth_and_resizes_the_image_bilinearly()
    {
        var s = new RandomScale(2, 2).Apply(Numbered(2, 3), Tasks, new Random(0));
        Assert.Equal(new long[] { 1, 4, 6 }, s.Image.shape);
        Assert.Equal(ScalarType.Byte, s.Image.dtype);
        long[] repeated = [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 3, 3, 4, 4, 5, 5];
        Assert.Equal(repeated, Longs(s.Targets["seg"]));
        Assert.Equal(repeated.Select(v => (v + 1f) / 2), Floats(s.Targets["depth"])); // twice as large: as if twice as near
        Assert.Equal(repeated.Select(v => v + 1f), Floats(new RandomScale(2, 2, scalesDepth: false).Apply(Numbered(2, 3), Tasks, new Random(0)).Targets["depth"]));
        Assert.Equal(repeated.Select(v => v % 2f), Floats(s.Targets["edge"]));
        Assert.Equal(repeated.Select(v => 100f * v), Floats(s.Targets["normals"]).Skip(48));

        // A float image is bilinear with half-pixel centres: row 0 samples columns 0, .25, .75, 1.25, 1.75, 2 (clamped).
        var floatImage = Numbered(2, 3) with { Image = tensor(new float[] { 0, 1, 2, 3, 4, 5 }, [1, 2, 3]) };
        var f = Floats(new RandomScale(2, 2).Apply(floatImage, Tasks, new Random(0)).Image);
        float[] expected = [0, 0.25f, 0.75f, 1.25f, 1.75f, 2, 0.75f, 1, 1.5f, 2, 2.5f, 2.75f];
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], f[i], 1e-5);
        Assert.Equal(repeated, Longs(new Resize(4, 6).Apply(Numbered(2, 3), Tasks, new Random(0)).Targets["seg"]));
        Assert.Throws<ArgumentException>(() => new RandomScale(1.5, 1));
    }

    [Fact]
    public void A_zoom_keeps_the_size_crops_the_centre_going_in_and_pads_going_out()
    {
        // ×2 of a 4×4 sample: the centre 4×4 of the 8×8 enlargement (rows and columns 2..5), depth halved.
        var zin = new RandomZoom(2, 2).Apply(Numbered(4, 4), Tasks, new Random(0));
        Assert.Equal(new long[] { 1, 4, 4 }, zin.Image.shape);
        long[] centre = [5, 5, 6, 6, 5, 5, 6, 6, 9, 9, 10, 10, 9, 9, 10, 10];
        Assert.Equal(centre.Select(v => v % 11), Longs(zin.Targets["seg"]));
        Assert.Equal(centre.Select(v => (v + 1f) / 2), Floats(zin.Targets["depth"]));
        // ×½: the 2×2 reduction in the middle, the ring around it unknown.
        var zout = new RandomZoom(0.5, 0.5).Apply(Numbered(4, 4), Tasks, new Random(0));
        var seg = Longs(zout.Targets["seg"]);
        Assert.Equal(12, seg.Count(v => v == 255));
        Assert.Equal(12, Floats(zout.Targets["depth"]).Count(v => v == 0));
        Assert.Equal(12, Floats(zout.Targets["sal"]).Count(v => v == 255));
        // A choice of factors draws only those: 1 leaves the sample as it is.
        var same = Numbered(4, 4);
        Assert.Same(same, new RandomZoom([1.0]).Apply(same, Tasks, new Random(0)));
        Assert.Throws<ArgumentException>(() => new RandomZoom(Array.Empty<double>()));
    }

    [Fact]
    public void PASCAL_training_sees_the_geometry_evaluation_sees_and_pads_only_zooms_out()
    {
        // A 375×500 image: training's flip, zoom and 512×512 resize give evaluation's 512×512 stretch of it. Only a zoom
        // below 1 pads (1 − f² of the pixels): 11.5% on average over f uniform in [0.75, 1.25], where a 512×512 crop
        // of the image scaled by f padded 31%.
        var tasks = new InterroGate.Tasks.TaskSet([new InterroGate.Tasks.TaskSpec("seg", InterroGate.Tasks.TaskKind.Segmentation, 11)]);
        double unknown = 0;
        for (int seed = 0; seed < 40; seed++)
        {
            var sample = new DenseSample(zeros(3, 375, 500, dtype: ScalarType.Byte), new Dictionary<string, Tensor> { ["seg"] = ones(375, 500, dtype: int64) });
            var y = PascalContext.Augmentation.Apply(sample, tasks, new Random(seed));
            Assert.Equal(new long[] { 3, 512, 512 }, y.Image.shape);
            unknown += y.Targets["seg"].eq(255).to(float32).mean().item<float>() / 40;
        }
        Assert.InRange(unknown, 0.08, 0.15);
        // NYUD's zoom is by 1, 1.2 or 1.5: never padded, every image keeps its size.
        var nyud = NyudV2.Augmentation.Apply(Numbered(8, 8), Tasks, new Random(3));
        Assert.Equal(new long[] { 1, 8, 8 }, nyud.Image.shape);
        Assert.DoesNotContain(255L, Longs(nyud.Targets["seg"]));
    }

    [Fact]
    public void A_rotation_by_90_degrees_moves_a_marked_pixel_counter_clockwise_and_turns_the_normals()
    {
        const int n = 5;
        var seg = Enumerable.Repeat(1L, n * n).ToArray();
        seg[0 * n + 3] = 7;                                   // row 0, column 3: near the top-right corner
        var depth = Enumerable.Repeat(2f, n * n).ToArray();
        depth[0 * n + 3] = 5;
        var right = Enumerable.Repeat(1f, n * n).Concat(new float[2 * n * n]).ToArray();   // normals (1, 0, 0) everywhere
        var sample = new DenseSample(tensor(seg.Select(v => (byte)(v * 30)).ToArray(), [1, n, n]), new Dictionary<string, Tensor>
        {
            ["seg"] = tensor(seg, [n, n]),
            ["depth"] = tensor(depth, [1, n, n]),
            ["normals"] = tensor(right, [3, n, n]),
        });
        var tasks = Tasks.Select(["seg", "depth", "normals"]);
        var r = RandomRotation.Rotate(sample, tasks, 90);

        // Counter-clockwise on screen, (row r, column c) goes to (n − 1 − c, r): the top-right corner goes to the top-left.
        var rs = Longs(r.Targets["seg"]);
        Assert.Equal(7, rs[1 * n + 0]);
        Assert.Equal(n * n - 1, rs.Count(v => v == 1));        // nothing came from outside
        var rd = Floats(r.Targets["depth"]);
        Assert.Equal(5, rd[1 * n + 0]);
        Assert.Equal(210, Longs(r.Image)[1 * n + 0]);          // bilinear at pixel centres is exact
        var normals = Floats(r.Targets["normals"]);
        for (int i = 0; i < n * n; i++)
        {
            Assert.Equal(0, normals[i], 1e-6);                 // a surface facing right faces up once turned counter-clockwise
            Assert.Equal(1, normals[n * n + i], 1e-6);
            Assert.Equal(0, normals[2 * n * n + i], 1e-6);
        }

        // On a wide 3×9 map, one pixel right of the centre goes one pixel above it (the grid is not sheared by the aspect).
        var wide = new long[27];
        (wide[1 * 9 + 5], wide[1 * 9 + 3]) = (7, 8);
        var w = RandomRotation.Rotate(new DenseSample(zeros(1, 3, 9, dtype: ScalarType.Byte), new Dictionary<string, Tensor> { ["seg"] = tensor(wide, [3, 9]) }), Tasks.Select(["seg"]), 90);
        var ws = Longs(w.Targets["seg"]);
        Assert.Equal(7, ws[0 * 9 + 4]);
        Assert.Equal(8, ws[2 * 9 + 4]);
        Assert.Equal(255, ws[0]);                               // the wide map's corners came from outside
    }

    [Fact]
    public void A_rotation_by_45_degrees_makes_the_corners_unknown_and_keeps_the_centre()
    {
        var r = RandomRotation.Rotate(Numbered(5, 5), Tasks, 45);
        var seg = Longs(r.Targets["seg"]);
        var depth = Floats(r.Targets["depth"]);
        var normals = Floats(r.Targets["normals"]);
        foreach (int corner in new[] { 0, 4, 20, 24 })
        {
            Assert.Equal(255, seg[corner]);
            Assert.Equal(255, Floats(r.Targets["sal"])[corner]);
            Assert.Equal(255, Floats(r.Targets["edge"])[corner]);
            Assert.Equal(0, depth[corner]);
            Assert.Equal(0, normals[corner] * normals[corner] + normals[25 + corner] * normals[25 + corner] + normals[50 + corner] * normals[50 + corner]);
        }
        Assert.Equal(12 % 11, seg[12]);
        Assert.Equal(13, depth[12]);
        Assert.Equal(100f * 12, normals[50 + 12], 1e-3);       // z does not turn with an in-plane rotation
        // (12, 120) turned by 45°: its length is kept.
        Assert.Equal(Math.Sqrt(12 * 12 + 120 * 120), Math.Sqrt(normals[12] * normals[12] + normals[37] * normals[37]), 1e-3);
    }

    [Fact]
    public void A_composed_augmentation_is_a_function_of_the_random_seed()
    {
        var augment = new Compose(new RandomScale(0.5, 1.5), new RandomRotation(30), new RandomCrop(5, 5), new HorizontalFlip());
        Tensor[] Run(int seed)
        {
            var s = augment.Apply(Numbered(6, 7), Tasks, new Random(seed));
            return [s.Image, .. Tasks.Select(t => s.Targets[t.Name])];
        }
        var a = Run(7);
        var b = Run(7);
        Assert.Equal(a.Length, b.Length);
        for (int i = 0; i < a.Length; i++) Assert.True(a[i].equal(b[i]).all().item<bool>());
        Assert.All(a.Skip(1).Take(5), t => Assert.Equal(5, t.shape[^1]));
        Assert.Contains(Enumerable.Range(8, 5), seed => !Run(seed)[1].equal(a[1]).all().item<bool>());
    }
}
