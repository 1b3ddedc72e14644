using InterroGate.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Tests.Training;

/// <summary>
/// The flat optimisers step whole buckets at once; they must give TorchSharp's per-parameter results, keep its
/// checkpoint format, and notice gradients that left their buffer.
/// </summary>
[Collection("Torch")]
public sealed class FlatOptimizerTests
{
    /// <summary>A small network with convolutions, batch norm and a linear layer; <paramref name="unused"/> adds a layer the forward pass never reads.</summary>
    private sealed class Net : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1;
        private readonly BatchNorm2d bn1;
        private readonly Conv2d conv2;
        private readonly Linear fc;
        private readonly Linear? spare;

        public Net(bool unused = false) : base(nameof(Net))
        {
            conv1 = nn.Conv2d(3, 6, 3, padding: 1);
            bn1 = nn.BatchNorm2d(6);
            conv2 = nn.Conv2d(6, 4, 3, padding: 1, bias: false);
            fc = nn.Linear(4, 2);
            if (unused) spare = nn.Linear(4, 4);
            RegisterComponents();
        }

        public Linear? Spare => spare;

        public override Tensor forward(Tensor x)
        {
            var h = conv2.call(nn.functional.relu(bn1.call(conv1.call(x))));
            return fc.call(h.mean([2, 3]));
        }
    }

    private static Net Model(int seed, bool unused = false)
    {
        manual_seed(seed);
        return new Net(unused);
    }

    private static void Backward(Net net, int step)
    {
        using var scope = NewDisposeScope();
        manual_seed(1000 + step);
        var x = randn(4, 3, 8, 8);
        var y = randn(4, 2);
        nn.functional.mse_loss(net.call(x), y).backward();
    }

    private static double MaxDifference(nn.Module a, nn.Module b) =>
        a.parameters().Zip(b.parameters()).Max(p => (p.First - p.Second).abs().max().item<float>());

    private static TorchSharp.Modules.Adam.ParamGroup[] Groups(Net net) =>
    [
        new(net.parameters().Take(4), lr: 1e-2, weight_decay: 1e-3),
        new(net.parameters().Skip(4), lr: 3e-3, weight_decay: 1e-3),
    ];

    private static void Train(Net net, optim.Optimizer opt, int steps, int from = 0)
    {
        for (int s = from; s < from + steps; s++)
        {
            opt.zero_grad();
            Backward(net, s);
            opt.step();
        }
    }

    [Fact]
    public void AdamMatchesTorchSharpsPerParameterAdamWithTwoGroupsAndAChangedLearningRate()
    {
        var reference = Model(3);
        var flat = Model(3);
        var refOpt = new TorchSharp.Modules.Adam(Groups(reference), lr: 1e-2, weight_decay: 1e-3);
        var flatOpt = new Flat.Adam(Groups(flat), lr: 1e-2, weightDecay: 1e-3);
        Train(reference, refOpt, 4);
        Train(flat, flatOpt, 4);
        foreach (var opt in new optim.Optimizer[] { refOpt, flatOpt }) opt.ParamGroups.First().LearningRate = 2e-3;
        Train(reference, refOpt, 4, from: 4);
        Train(flat, flatOpt, 4, from: 4);

        Assert.True(MaxDifference(reference, flat) <= 1e-6, $"flat Adam differs by {MaxDifference(reference, flat):E2}");
        // And the parameters did move: a comparison of two untrained copies would pass too.
        Assert.True(MaxDifference(Model(3), flat) > 1e-3);
    }

    [Fact]
    public void PerParameterStepsMatchTorchSharpsOptimisersWithoutABuffer()
    {
        var reference = Model(3);
        var ours = Model(3);
        var refOpt = new TorchSharp.Modules.Adam(Groups(reference), lr: 1e-2, weight_decay: 1e-3);
        var oursOpt = new Flat.Adam(Groups(ours), lr: 1e-2, weightDecay: 1e-3, perParameter: true);
        Train(reference, refOpt, 4);
        Train(ours, oursOpt, 4);
        foreach (var opt in new optim.Optimizer[] { refOpt, oursOpt }) opt.ParamGroups.First().LearningRate = 2e-3;
        Train(reference, refOpt, 4, from: 4);
        Train(ours, oursOpt, 4, from: 4);
        Assert.Equal(0.0, MaxDifference(reference, ours));
        Assert.True(MaxDifference(Model(3), ours) > 1e-3);
        // Every parameter keeps storage of its own, as TorchSharp's Adam leaves it.
        int count = ours.parameters().Count();
        using var scope = NewDisposeScope(); // storage<T>() makes a tensor that nothing else frees
        Assert.Equal(count, ours.parameters().Select(p => p.storage<float>().data_ptr()).Distinct().Count());

        var refSgd = Model(8);
        var oursSgd = Model(8);
        Train(refSgd, new TorchSharp.Modules.SGD(refSgd.parameters(), 0.1, weight_decay: 1e-3), 5);
        Train(oursSgd, new Flat.SGD(oursSgd.parameters(), 0.1, weightDecay: 1e-3, perParameter: true), 5);
        Assert.Equal(0.0, MaxDifference(refSgd, oursSgd));
        Assert.True(MaxDifference(Model(8), oursSgd) > 1e-3);
        Assert.Equal(count, oursSgd.parameters().Select(p => p.storage<float>().data_ptr()).Distinct().Count());
    }

    [Fact]
    public void GradientsAccumulateInTheBucketAndOneZeroingClearsThemAll()
    {
        var net = Model(4);
        var opt = new Flat.Adam(net.parameters(), lr: 1e-3);
        // The first backward pass makes gradients of its own; the step after it takes them into the bucket.
        Train(net, opt, 1);
        opt.zero_grad();
        Backward(net, 0);
        var first = net.parameters().Select(p => p.grad!.clone()).ToArray();
        Backward(net, 0);
        // Autograd added the second gradient to the first in place: every gradient is twice the first.
        foreach (var (p, g) in net.parameters().Zip(first))
            Assert.True((p.grad! - 2 * g).abs().max().item<float>() < 1e-6);
        Assert.Contains(first, g => g.abs().max().item<float>() > 0);
        // Parameters and gradients are views of one buffer each (TorchSharp's Adam leaves every one in storage of its own).
        Assert.Single(net.parameters().Select(p => p.storage<float>().data_ptr()).Distinct());
        Assert.Single(net.parameters().Select(p => p.grad!.storage<float>().data_ptr()).Distinct());

        opt.zero_grad();
        Assert.All(net.parameters(), p => Assert.Equal(0f, p.grad!.abs().max().item<float>()));
    }

    [Fact]
    public void CheckpointStatesReadAcrossTorchSharpsAdamAndTheFlatOne()
    {
        // Uninterrupted: 6 steps of flat Adam.
        var whole = Model(5);
        Train(whole, new Flat.Adam(whole.parameters(), lr: 1e-2, weightDecay: 1e-4), 6);

        // Three steps with TorchSharp's Adam, its state saved, loaded into a flat Adam over a copy, three more steps.
        var first = Model(5);
        var refOpt = new TorchSharp.Modules.Adam(first.parameters(), lr: 1e-2, weight_decay: 1e-4);
        Train(first, refOpt, 3);
        var resumed = Model(99);
        resumed.load_state_dict(first.state_dict());
        var flatOpt = new Flat.Adam(resumed.parameters(), lr: 1e-2, weightDecay: 1e-4);
        Load(flatOpt, Save(refOpt));
        Train(resumed, flatOpt, 3, from: 3);
        Assert.True(MaxDifference(whole, resumed) <= 1e-6, $"resumed differs by {MaxDifference(whole, resumed):E2}");

        // And the other way: the flat state read by TorchSharp's Adam.
        var back = Model(98);
        back.load_state_dict(first.state_dict());
        var again = Model(5);
        var againOpt = new Flat.Adam(again.parameters(), lr: 1e-2, weightDecay: 1e-4);
        Train(again, againOpt, 3);
        var backOpt = new TorchSharp.Modules.Adam(back.parameters(), lr: 1e-2, weight_decay: 1e-4);
        Load(backOpt, Save(againOpt));
        Train(back, backOpt, 3, from: 3);
        Assert.True(MaxDifference(whole, back) <= 1e-6, $"read back differs by {MaxDifference(whole, back):E2}");
    }

    private static byte[] Save(OptimizerHelper opt)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true)) opt.save_state_dict(w);
        return ms.ToArray();
    }

    private static void Load(OptimizerHelper opt, byte[] bytes)
    {
        using var r = new BinaryReader(new MemoryStream(bytes));
        opt.load_state_dict(r);
    }

    [Fact]
    public void AParameterWithoutAGradientIsLeftAloneAsTorchSharpLeavesIt()
    {
        var reference = Model(6, unused: true);
        var flat = Model(6, unused: true);
        var before = flat.Spare!.weight!.clone();
        Train(reference, new TorchSharp.Modules.Adam(reference.parameters(), lr: 1e-2, weight_decay: 1e-3), 3);
        Train(flat, new Flat.Adam(flat.parameters(), lr: 1e-2, weightDecay: 1e-3), 3);
        Assert.Null(flat.Spare.weight!.grad);
        Assert.Equal(0f, (flat.Spare.weight - before).abs().max().item<float>());
        Assert.True(MaxDifference(reference, flat) <= 1e-6, $"differs by {MaxDifference(reference, flat):E2}");
    }

    [Fact]
    public void AGradientAssignedFromOutsideTheBucketIsTheOneUsed()
    {
        var reference = Model(7);
        var flat = Model(7);
        var refOpt = new TorchSharp.Modules.Adam(reference.parameters(), lr: 1e-2);
        var flatOpt = new Flat.Adam(flat.parameters(), lr: 1e-2);
        foreach (var (net, opt) in new[] { (reference, (optim.Optimizer)refOpt), (flat, flatOpt) })
        {
            opt.zero_grad();
            Backward(net, 0);
            // A balancer that writes new gradient tensors instead of updating them.
            foreach (var p in net.parameters()) p.grad = p.grad! * 3;
            opt.step();
        }
        Assert.True(MaxDifference(reference, flat) <= 1e-6, $"differs by {MaxDifference(reference, flat):E2}");
        Assert.True(MaxDifference(Model(7), flat) > 1e-3);
    }

    [Fact]
    public void AGroupAddedLaterIsLaidOutAndSteppedAsTorchSharpStepsIt()
    {
        var reference = Model(9);
        var flat = Model(9);
        var refOpt = new TorchSharp.Modules.Adam(reference.parameters().Take(3), lr: 1e-2);
        var flatOpt = new Flat.Adam(flat.parameters().Take(3), lr: 1e-2);
        Train(reference, refOpt, 2);
        Train(flat, flatOpt, 2);
        refOpt.add_param_group(new TorchSharp.Modules.Adam.ParamGroup(reference.parameters().Skip(3), lr: 5e-3));
        flatOpt.add_param_group(new TorchSharp.Modules.Adam.ParamGroup(flat.parameters().Skip(3), lr: 5e-3));
        Train(reference, refOpt, 3, from: 2);
        Train(flat, flatOpt, 3, from: 2);
        Assert.True(MaxDifference(reference, flat) <= 1e-6, $"differs by {MaxDifference(reference, flat):E2}");
        // The later group's parameters share one buffer of their own.
        Assert.Single(flat.parameters().Skip(3).Select(p => p.storage<float>().data_ptr()).Distinct());
        Assert.True(MaxDifference(Model(9), flat) > 1e-3);
    }

    [Fact]
    public void SgdMatchesTorchSharpsSgdAndParametersOfAnotherDtypeStepOneByOne()
    {
        var reference = Model(8);
        var flat = Model(8);
        var refOpt = new TorchSharp.Modules.SGD(reference.parameters(), 0.1, weight_decay: 1e-3);
        var flatOpt = new Flat.SGD(flat.parameters(), 0.1, weightDecay: 1e-3);
        Train(reference, refOpt, 5);
        Train(flat, flatOpt, 5);
        Assert.True(MaxDifference(reference, flat) <= 1e-6, $"flat SGD differs by {MaxDifference(reference, flat):E2}");
        Assert.True(MaxDifference(Model(8), flat) > 1e-3);

        // A float64 parameter stays out of the float32 bucket and is stepped on its own.
        var dbl = new TorchSharp.Modules.Parameter(ones(3, dtype: ScalarType.Float64));
        var f32 = new TorchSharp.Modules.Parameter(ones(3));
        var f32b = new TorchSharp.Modules.Parameter(ones(2));
        var opt = new Flat.SGD([dbl, f32, f32b], 0.5);
        opt.zero_grad();
        (dbl.sum() + f32.sum() * 2 + f32b.sum()).backward();
        opt.step();
        Assert.Equal(0.5, dbl[0].item<double>(), 12);
        Assert.Equal(0f, f32[0].item<float>(), 6);
        Assert.Equal(0.5f, f32b[1].item<float>(), 6);
    }
}
