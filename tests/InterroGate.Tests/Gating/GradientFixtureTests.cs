using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Export;
using InterroGate.Objectives;
using InterroGate.Tasks;
using static TorchSharp.torch;

namespace InterroGate.Tests.Gating;

/// <summary>
/// Gradients that PyTorch's autograd computed for an InterroGate model written independently of this library
/// (bench/reference/interrogate_torch.py; tests/fixtures/pytorch/make_gradient_fixture.py writes the file): the same
/// weights here give every parameter the same gradient of the step's loss, the straight-through gates' α, the β mix
/// and Eq. 4's sparsity term included.
/// </summary>
[Collection("Torch")]
public sealed class GradientFixtureTests
{
    private static string Fixture() => Architectures.PyTorchFixtureTests.Fixture("interrogate-gradients.safetensors");

    private static readonly TaskSet Tasks = new([new TaskSpec("task1", TaskKind.Classification, 10), new TaskSpec("task2", TaskKind.Classification, 10)]);

    /// <summary>Our model on the fixture's weights, after one training-mode backward pass of tasks + (optionally) sparsity loss.</summary>
    private static (InterroGateModel Model, Dictionary<string, Tensor> File) Backward(bool withSparsity)
    {
        string path = Fixture();
        var model = new InterroGateModel(Tasks, BackboneCatalog.Spec("resnet20", 0.125), 1, (36, 36), new InterroGateConfig { LambdaS = 1 });
        var report = SafeTensors.LoadInto(model, path, sourcePrefix: "weights.", strict: true);
        Assert.True(report.IsExact);
        var (file, _) = SafeTensors.Load(path);
        model.train();
        var batch = new Dictionary<string, Tensor> { ["task1"] = file["task1"], ["task2"] = file["task2"] };
        var outputs = model.call(file["input"]);
        var loss = new MultiTaskObjective(Tasks).Losses(outputs, batch).Aggregate((a, b) => a + b);
        if (withSparsity) loss = loss + model.Regularizer()!;
        loss.backward();
        return (model, file);
    }

    private static double RelativeDifference(Tensor ours, Tensor reference) => Architectures.PyTorchFixtureTests.RelativeDifference(ours, reference);

    [Fact]
    public void Every_parameter_gets_the_gradient_PyTorch_computed_for_the_same_model()
    {
        var (model, file) = Backward(withSparsity: true);
        var ours = model.named_parameters().Where(p => p.parameter.grad is not null).ToDictionary(p => p.name, p => p.parameter.grad!);
        var theirs = file.Where(kv => kv.Key.StartsWith("grad.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key["grad.".Length..], kv => kv.Value);
        Assert.Equal(theirs.Keys.Order(), ours.Keys.Order()); // the same parameters receive a gradient
        Assert.Contains(theirs.Keys, k => k.EndsWith(".alpha", StringComparison.Ordinal));
        Assert.Contains(theirs.Keys, k => k.EndsWith(".beta", StringComparison.Ordinal));
        var worst = theirs.Keys.Select(k => (Name: k, Difference: RelativeDifference(ours[k], theirs[k]))).MaxBy(p => p.Difference);
        Assert.True(worst.Difference < 1e-4, $"{worst.Name}: relative difference {worst.Difference:E2}");
    }

    [Fact]
    public void Without_the_sparsity_term_the_gate_gradients_no_longer_match()
    {
        // The fixture's α gradients carry Eq. 4's push: leaving it out shows up, so the comparison above can fail.
        var (model, file) = Backward(withSparsity: false);
        var alphas = model.named_parameters().Where(p => p.name.EndsWith(".alpha", StringComparison.Ordinal)).ToArray();
        Assert.NotEmpty(alphas);
        double worst = alphas.Max(p => RelativeDifference(p.parameter.grad!, file["grad." + p.name]));
        Assert.True(worst > 1e-2, $"largest relative difference of an α gradient without the sparsity term: {worst:E2}");
    }
}
