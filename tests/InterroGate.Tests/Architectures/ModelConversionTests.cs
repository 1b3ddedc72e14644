using InterroGate.Architectures;
using InterroGate.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Tests.Architectures;

/// <summary>
/// Every architecture can be converted with <c>Module.to</c>: the code path that moves a model to a GPU is the
/// one that converts it to another dtype, so float64 here stands for CUDA where there is none.
/// </summary>
[Collection("Torch")]
public sealed class ModelConversionTests
{
    [Theory]
    [InlineData("stl")]
    [InlineData("mtl")]
    [InlineData("interrogate")]
    [InlineData("mtan")]
    [InlineData("cross-stitch")]
    public void Every_architecture_converts_to_another_dtype_keeping_its_parameter_names(string arch)
    {
        var run = PreparedRun.Create(Training.TrainerTests.Config(Training.TrainerTests.Architecture(arch), epochs: 1, train: 16));
        var model = run.Model;
        var names = model.state_dict().Keys.ToArray();
        var cost = InterroGate.Analysis.DeployedCost.OfModel(model, (1, 16, 16));

        model.to(float64);
        // The cost is counted on the model where it is (a model just trained on a GPU is still there).
        Assert.Equal(cost, InterroGate.Analysis.DeployedCost.OfModel(model, (1, 16, 16)));

        Assert.Equal(names, model.state_dict().Keys.ToArray());
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.Float64, p.dtype));
        Assert.All(model.named_buffers().Where(b => !b.name.EndsWith("num_batches_tracked", StringComparison.Ordinal)),
            b => Assert.Equal(ScalarType.Float64, b.buffer.dtype));
        model.eval();
        using var _ = no_grad();
        var outputs = model.call(randn(2, 1, 16, 16, dtype: float64));
        Assert.All(outputs.Values, o => Assert.Equal(ScalarType.Float64, o.dtype));
    }
}
