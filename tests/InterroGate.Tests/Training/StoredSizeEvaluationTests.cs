using InterroGate.Architectures;
using InterroGate.Data;
using InterroGate.Tasks;
using InterroGate.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Tests.Training;

/// <summary>
/// A data set resized to the input for evaluation (images of different sizes, as PASCAL-Context's) is scored at each
/// image's stored size: a label map stretched to the input would count some of its rows twice.
/// </summary>
[Collection("Torch")]
public sealed class StoredSizeEvaluationTests
{
    private static readonly TaskSet SegOnly = new([new TaskSpec("seg", TaskKind.Segmentation, 2)]);

    /// <summary>Two samples: 3×4 with row 0 class 0 and rows 1-2 class 1, and 5×2 all class 1.</summary>
    private sealed class TwoSizes(IJointTransform? transform) : DenseDataset("two sizes", SegOnly, new ImageInput(3, 4, 4), transform, seed: 0)
    {
        public override int Count => 2;
        public int Loads;

        protected override DenseSample Load(int index)
        {
            Interlocked.Increment(ref Loads);
            var (h, w) = index == 0 ? (3, 4) : (5, 2);
            var labels = ones(h, w, dtype: ScalarType.Int64);
            if (index == 0) labels[0] = zeros(w, dtype: ScalarType.Int64);
            return new DenseSample(zeros(3, h, w, dtype: ScalarType.Byte), new Dictionary<string, Tensor> { ["seg"] = labels });
        }
    }

    /// <summary>Predicts class 1 at every pixel of the input.</summary>
    private sealed class ClassOne : MultiTaskModel
    {
        private readonly Parameter _unused = new(zeros(1));

        public ClassOne() : base("class-one", SegOnly, 3)
        {
            RegisterComponents();
        }

        public override string Architecture => "class-one";
        public override IEnumerable<Parameter> SharedParameters() => [_unused];

        public override Dictionary<string, Tensor> forward(Tensor x)
        {
            long b = x.shape[0], h = x.shape[2], w = x.shape[3];
            return new() { ["seg"] = cat([zeros(b, 1, h, w), ones(b, 1, h, w)], 1) };
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void A_resized_data_set_is_scored_at_each_samples_stored_size(int batchSize)
    {
        using var model = new ClassOne();
        var data = new TwoSizes(new Resize(4, 4));
        Assert.True(data.ScoresAtStoredSize);
        var result = Evaluator.Evaluate(model, data, batchSize);
        // Stored sizes: class 0 has 4 pixels, none predicted (IoU 0); class 1 is predicted on 18 of the 22 pixels
        // predicted or labelled 1 (IoU 18/22). Stretched to 4×4, sample 0's class-0 row would count twice: 0.375.
        Assert.Equal((0 + 18.0 / 22) / 2, result.Metrics["seg"], 9);
        Assert.Equal(2, result.Samples);
        Assert.Equal(2, data.Loads); // each sample read once: its stored targets come with its batch
        Assert.False(data.IncludeStoredTargets); // and batches read afterwards are plain again
        Assert.DoesNotContain(data.GetBatch([0]).Keys, k => k.Contains("@stored"));
    }

    [Fact]
    public void A_data_set_at_its_input_size_is_scored_as_batched()
    {
        // A crop or pad cannot be undone by resizing: the maps are scored as the network sees them.
        using var model = new ClassOne();
        var data = new TwoSizes(new CenterCropOrPad(4, 4));
        Assert.False(data.ScoresAtStoredSize);
        var result = Evaluator.Evaluate(model, data, 2);
        // Sample 0 padded by a row of ignore (255), sample 1 cropped to 4 rows and padded to 4 columns: class 0 has 4
        // pixels, none predicted; class 1 is labelled on 16 of the 20 pixels that are not ignore, all predicted 1.
        Assert.Equal((0 + 16.0 / 20) / 2, result.Metrics["seg"], 9);
    }
}
