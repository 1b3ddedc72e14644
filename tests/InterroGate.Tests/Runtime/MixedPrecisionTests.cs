using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Data;
using InterroGate.Objectives;
using InterroGate.Runtime;
using InterroGate.Training;
using static TorchSharp.torch;

namespace InterroGate.Tests.Runtime;

/// <summary>training.precision=bf16 (libtorch's autocast), training.channelsLast and training.dataOn.</summary>
[Collection("Torch")]
public sealed class MixedPrecisionTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"ig-bf16-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void A_scope_runs_convolutions_in_bfloat16_and_leaves_float32_behind_it()
    {
        using var scope = NewDisposeScope();
        var x = randn(2, 3, 8, 8);
        var w = randn(4, 3, 3, 3);
        Assert.Null(Autocast.Unavailable()); // the bundled libtorch 2.10 has the functions it calls
        Assert.False(Autocast.IsActive(CPU));
        using (Autocast.Enter(Precision.Fp32, CPU))
        {
            Assert.False(Autocast.IsActive(CPU));
            Assert.Equal(ScalarType.Float32, nn.functional.conv2d(x, w).dtype);
        }
        Tensor inside;
        using (Autocast.Enter(Precision.Bf16, CPU))
        {
            Assert.True(Autocast.IsActive(CPU));
            inside = nn.functional.conv2d(x, w);
            Assert.Equal(ScalarType.BFloat16, inside.dtype);
            using (Autocast.Enter(Precision.Bf16, CPU)) Assert.True(Autocast.IsActive(CPU));
            Assert.True(Autocast.IsActive(CPU)); // a nested scope restores the outer one's state
            Assert.Equal(ScalarType.BFloat16, nn.functional.conv2d(x, w).dtype);
        }
        Assert.False(Autocast.IsActive(CPU));
        var after = nn.functional.conv2d(x, w);
        Assert.Equal(ScalarType.Float32, after.dtype);
        // bfloat16 keeps about 3 significant digits: the same convolution, not another one.
        double err = (inside.to(float32) - after).abs().max().item<float>() / after.abs().max().item<float>();
        Assert.InRange(err, 1e-5, 2e-2);
    }

    [Fact]
    public void A_bf16_step_gives_float32_outputs_and_float32_gradients_close_to_the_fp32_ones()
    {
        using var scope = NewDisposeScope();
        var config = TrainerTestsConfig("interrogate");
        var run = PreparedRun.Create(config);
        var model = run.Model;
        var batch = run.Data.Train.GetBatch(Enumerable.Range(0, 16).Select(i => (long)i).ToArray());
        var objective = new MultiTaskObjective(run.Tasks);
        Dictionary<string, Tensor> Grads(Precision precision, out Dictionary<string, Tensor> outputs)
        {
            model.zero_grad();
            outputs = model.Forward(batch[IMultiTaskDataset.ImageKey], precision);
            var total = objective.Losses(outputs, batch).Aggregate((a, b) => a + b);
            total.backward();
            return model.named_parameters().Where(p => p.parameter.grad is not null).ToDictionary(p => p.name, p => p.parameter.grad!.clone());
        }
        model.eval(); // the same BN statistics for both passes
        var fp32 = Grads(Precision.Fp32, out var out32);
        var bf16 = Grads(Precision.Bf16, out var out16);
        Assert.False(Autocast.IsActive(CPU));
        foreach (var (task, o) in out16)
        {
            Assert.Equal(ScalarType.Float32, o.dtype);
            double rel = (o - out32[task]).norm().item<float>() / out32[task].norm().item<float>();
            Assert.InRange(rel, 1e-5, 0.05); // rounded (not bit-identical to fp32), yet the same function
        }
        Assert.Equal(fp32.Keys.Order(), bf16.Keys.Order());
        var cosines = new List<double>();
        foreach (var (name, g) in bf16)
        {
            Assert.Equal(ScalarType.Float32, g.dtype);
            var r = fp32[name];
            if (r.norm().item<float>() < 1e-6) continue;
            cosines.Add((g * r).sum().item<float>() / (g.norm().item<float>() * r.norm().item<float>()));
        }
        // bfloat16 rounding: every gradient points the same way as in float32, the small ones (a branch's batch-norm
        // scales) less exactly than the large ones.
        var all = (cat(bf16.Keys.Order().Select(k => bf16[k].flatten()).ToArray()), cat(bf16.Keys.Order().Select(k => fp32[k].flatten()).ToArray()));
        double overall = (all.Item1 * all.Item2).sum().item<float>() / (all.Item1.norm().item<float>() * all.Item2.norm().item<float>());
        Assert.True(overall > 0.99, $"cosine {overall:F4} between all bf16 and fp32 gradients");
        Assert.True(cosines.Order().ElementAt(cosines.Count / 2) > 0.98, $"median cosine {cosines.Order().ElementAt(cosines.Count / 2):F3}");
        Assert.True(cosines.Min() > 0.5, $"smallest cosine {cosines.Min():F3}");
        Assert.True(overall < 1 - 1e-7, "the bf16 gradients equal the fp32 ones: autocast did not apply");
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
    }

    [Fact]
    public void Bf16_channels_last_training_learns_and_records_its_options()
    {
        var plain = TrainerTestsConfig("interrogate");
        // fusion: auto times each unit plain and fused before the first step: that timing runs as training does too.
        var config = plain with
        {
            Architecture = (InterroGateConfig)plain.Architecture with { Fusion = InterroGate.Gating.BranchFusion.Auto },
            Training = plain.Training with { Precision = Precision.Bf16, ChannelsLast = true, DataOn = DataResidence.Device },
        };
        var run = PreparedRun.Create(config);
        var before = Evaluator.Evaluate(run.Model, run.Data.Validation, 64, precision: Precision.Bf16, channelsLast: true);
        // What the trainer computes in training mode (its steps, and the fusion timing and gate-regime probe before
        // them, not the evaluations): every convolution module's output in bfloat16. (The synthetic images have one channel, so their layout
        // cannot show here; the next test checks it.)
        var seen = new List<ScalarType>();
        var hooks = run.Model.modules().OfType<TorchSharp.Modules.Conv2d>().Select(conv => conv.register_forward_hook((m, input, output) =>
        {
            if (m.training) lock (seen) seen.Add(output.dtype);
            return output;
        })).ToArray();
        new Trainer(run.Config, run.Model, run.Data, _dir).Run();
        foreach (var h in hooks) h.remove();
        Assert.NotEmpty(seen);
        Assert.All(seen, t => Assert.Equal(ScalarType.BFloat16, t));
        var after = Evaluator.Evaluate(run.Model, run.Data.Validation, 64, precision: Precision.Bf16, channelsLast: true);
        foreach (var t in run.Tasks)
            Assert.True(after.Losses[t.Name] < 0.8 * before.Losses[t.Name], $"{t.Name}: loss {before.Losses[t.Name]} -> {after.Losses[t.Name]}");
        var saved = ConfigJson.Deserialize<RunConfig>(File.ReadAllText(Path.Combine(_dir, "config.json")));
        Assert.Equal(Precision.Bf16, saved.Training.Precision);
        Assert.True(saved.Training.ChannelsLast);
        Assert.Contains("\"precision\": \"bf16\"", File.ReadAllText(Path.Combine(_dir, "config.json")));
    }

    [Theory]
    [InlineData("interrogate")]
    [InlineData("mtl")]
    public void Channels_last_images_stay_channels_last_through_every_convolution(string architecture)
    {
        using var scope = NewDisposeScope();
        var config = InterroGate.Tests.Training.TrainerTests.Config(InterroGate.Tests.Training.TrainerTests.Architecture(architecture), epochs: 1);
        using var model = Factory.CreateModel(config, InterroGate.Data.Synthetic.TaskSet, (3, 16, 16));
        model.train();
        var inputs = new List<(string Name, bool ChannelsLast)>();
        var hooks = model.named_modules().Where(m => m.module is TorchSharp.Modules.Conv2d).Select(m => ((TorchSharp.Modules.Conv2d)m.module)
            .register_forward_hook((_, input, output) => { inputs.Add((m.name, input.stride()[1] == 1)); return output; })).ToArray();
        model.Forward(DataLoader.ChannelsLast(randn(4, 3, 16, 16)), Precision.Bf16);
        Assert.True(inputs.Count > 10, $"{inputs.Count} convolutions ran");
        Assert.All(inputs, i => Assert.True(i.ChannelsLast, $"{i.Name} reads an input in NCHW order"));
        inputs.Clear();
        model.Forward(randn(4, 3, 16, 16), Precision.Bf16); // NCHW images stay NCHW: the check tells the layouts apart
        foreach (var h in hooks) h.remove();
        Assert.NotEmpty(inputs);
        Assert.All(inputs, i => Assert.False(i.ChannelsLast, $"{i.Name} reads an input in NHWC order"));
    }

    [Theory]
    [InlineData(false, "open")] // the gate layers' float32 CPU kernel works plane by plane: channels-last features bypass it
    [InlineData(true, "open")] // branch fusion: the T+1 copies as one grouped convolution (called as a function)
    [InlineData(false, "fixed")] // fixed gates: copies read at some channels compute only those filters (also a function)
    [InlineData(false, "learning")] // gates learning: the read filters under autograd, the unread ones without, reassembled
    public void Channels_last_features_stay_channels_last_in_float32_through_plain_fused_and_kept_filter_units(bool fused, string gates)
    {
        bool partial = gates != "open", fixedGates = gates == "fixed";
        using var scope = NewDisposeScope();
        var ig = (InterroGateConfig)InterroGate.Tests.Training.TrainerTests.Architecture("interrogate") with
        {
            Fusion = fused ? InterroGate.Gating.BranchFusion.On : InterroGate.Gating.BranchFusion.Off, KeptFiltersOnly = true,
        };
        var config = InterroGate.Tests.Training.TrainerTests.Config(ig, epochs: 1);
        using var model = (InterroGateModel)Factory.CreateModel(config, InterroGate.Data.Synthetic.TaskSet, (3, 16, 16));
        if (partial)
        {
            // Every task reads its own copy at even channels and the shared copy at odd ones: every copy is read in part.
            foreach (var g in model.Encoder.GateLayers)
                g.Force(Enumerable.Range(0, g.Tasks).Select(_ => Enumerable.Range(0, (int)g.Channels).Select(c => c % 2 == 0).ToArray()).ToArray());
            model.SetGatesFixed(fixedGates);
        }
        model.train();
        var layouts = new List<(string Name, bool ChannelsLast)>();
        var hooks = model.named_modules().Where(m => m.module is TorchSharp.Modules.BatchNorm2d or TorchSharp.Modules.Conv2d).Select(m => ((nn.Module<Tensor, Tensor>)m.module)
            .register_forward_hook((_, input, output) => { layouts.Add((m.name, input.stride()[1] == 1)); return output; })).ToArray();
        var x = randn(4, 3, 16, 16);
        var features = model.Encoder.call(DataLoader.ChannelsLast(x));
        foreach (var h in hooks) h.remove();
        // While the gates learn (on the CPU by default) the unread filters of every copy ran without autograd.
        if (gates == "learning") Assert.True(model.Encoder.UntrackedFilters > 0);
        Assert.All(layouts, i => Assert.True(i.ChannelsLast, $"{i.Name} reads an input in NCHW order"));
        Assert.All(features, f => Assert.Equal(1L, f.stride(1))); // what the last units return, and the heads read
        var plain = model.Encoder.call(x); // the same images in NCHW order: the same features, in that order
        for (int t = 0; t < plain.Length; t++)
        {
            Assert.NotEqual(1L, plain[t].stride(1));
            Assert.True(allclose(features[t], plain[t], rtol: 1e-4, atol: 1e-5), $"branch {t}: the features differ between the layouts");
        }
    }

    [Fact]
    public void Channel_gathers_keep_the_memory_order_one_channel_maps_included()
    {
        using var scope = NewDisposeScope();
        var nchw = arange(2 * 1 * 3 * 4, dtype: float32).view(2, 1, 3, 4);
        // One channel: the same memory either way; a convolution writing NHWC gives it channel stride 1, as here.
        var nhwc = nchw.as_strided([2, 1, 3, 4], [12, 1, 4, 1]);
        Assert.False(InterroGate.Tensors.Channels.AreLast(nchw));
        Assert.True(InterroGate.Tensors.Channels.AreLast(nhwc)); // one channel: stride 1 only in NHWC
        Assert.True(InterroGate.Tensors.Channels.AreLast(DataLoader.ChannelsLast(randn(2, 5, 3, 4))));
        Assert.False(InterroGate.Tensors.Channels.AreLast(randn(2, 5, 3, 4)));
        var index = tensor(new long[] { 1, 0 });
        var gathered = InterroGate.Tensors.Channels.Gather([nhwc, nhwc * 2], index); // two one-channel parts
        Assert.True(InterroGate.Tensors.Channels.AreLast(gathered));
        Assert.True(gathered.eq(cat([nchw * 2, nchw], 1)).all().item<bool>());
        var plain = InterroGate.Tensors.Channels.Gather([nchw, nchw * 2], index);
        Assert.False(InterroGate.Tensors.Channels.AreLast(plain));
        Assert.True(plain.eq(gathered).all().item<bool>());
    }

    [Fact]
    public void Channels_last_batches_hold_the_same_values_in_NHWC_order()
    {
        var source = Synthetic();
        var all = source.GetBatch(Enumerable.Range(0, source.Count).Select(i => (long)i).ToArray());
        var rgb = all[IMultiTaskDataset.ImageKey].repeat(1, 3, 1, 1) * tensor(new[] { 1f, 2f, 3f }).view(1, 3, 1, 1);
        var data = new InMemoryDataset("synthetic/rgb", source.Tasks, rgb, source.Tasks.ToDictionary(t => t.Name, t => all[t.Name]));
        var plain = new DataLoader(data, 8, shuffle: true, seed: 3, dropLast: true).Epoch(0).First();
        var nhwc = new DataLoader(data, 8, shuffle: true, seed: 3, dropLast: true, channelsLast: true).Epoch(0).First();
        var (a, b) = (plain[IMultiTaskDataset.ImageKey], nhwc[IMultiTaskDataset.ImageKey]);
        Assert.Equal(a.shape, b.shape);
        Assert.True(a.is_contiguous());
        Assert.False(b.is_contiguous());
        Assert.Equal(1L, b.stride(1)); // channels adjacent in memory
        Assert.Equal(b.shape[1], b.stride(3));
        Assert.True(a.eq(b).all().item<bool>());
        foreach (var t in data.Tasks) Assert.True(plain[t.Name].eq(nhwc[t.Name]).all().item<bool>());
    }

    [Fact]
    public void Splits_stay_in_host_memory_on_the_CPU_and_when_asked_and_the_message_says_why()
    {
        var splits = new DatasetSplits(Synthetic(), Synthetic(), Synthetic());
        foreach (var residence in Enum.GetValues<DataResidence>())
        {
            var (placed, copies, message) = DeviceResidence.Place(splits, residence, CPU);
            Assert.Same(splits, placed);
            Assert.Empty(copies);
            Assert.Null(message);
        }
        var small = (InMemoryDataset)splits.Train;
        Assert.Equal(small.Count * (16 * 16 * 4 + 8 + 8 + 2 * 4), small.Bytes); // float32 images, two int64 and one float32 [2] targets
        var copy = small.To(CPU);
        var batch = copy.GetBatch([5L, 1L]);
        Assert.True(batch[IMultiTaskDataset.ImageKey].eq(small.GetBatch([5L, 1L])[IMultiTaskDataset.ImageKey]).all().item<bool>());
        copy.Dispose();
        Assert.Equal(2, small.GetBatch([0L, 1L])[IMultiTaskDataset.ImageKey].shape[0]); // the original outlives its copy
    }

    [Fact]
    public void On_a_GPU_in_memory_splits_move_unless_asked_not_to_or_too_large_for_auto()
    {
        const long Small = 100L << 20, Large = DeviceResidence.AutoLimitBytes + 1;
        Assert.Equal((true, "training and validation splits (100 MiB) held on cuda:0"), DeviceResidence.Decide(DataResidence.Auto, true, true, Small, "mf", "cuda:0"));
        Assert.True(DeviceResidence.Decide(DataResidence.Device, true, true, Large, "mf", "cuda:0").Place);
        var tooLarge = DeviceResidence.Decide(DataResidence.Auto, true, true, Large, "mf", "cuda:0");
        Assert.False(tooLarge.Place);
        Assert.Contains("2048 MiB", tooLarge.Message);
        Assert.Contains("training.dataOn=device", tooLarge.Message);
        Assert.Equal((false, null), DeviceResidence.Decide(DataResidence.Host, true, true, Small, "mf", "cuda:0"));
        Assert.Equal((false, null), DeviceResidence.Decide(DataResidence.Device, false, true, Small, "mf", "cpu"));
        Assert.Equal((false, null), DeviceResidence.Decide(DataResidence.Auto, true, false, 0, "nyudv2/train", "cuda:0"));
        var files = DeviceResidence.Decide(DataResidence.Device, true, false, 0, "nyudv2/train", "cuda:0");
        Assert.False(files.Place);
        Assert.Contains("nyudv2/train is read from files", files.Message);
    }

    [Fact]
    public void The_new_keys_read_from_a_config_file_and_bad_values_name_the_key()
    {
        var cfg = ConfigJson.Deserialize<RunConfig>("""{"training": {"precision": "bf16", "channelsLast": true, "dataOn": "host"}}""");
        Assert.Equal(Precision.Bf16, cfg.Training.Precision);
        Assert.True(cfg.Training.ChannelsLast);
        Assert.Equal(DataResidence.Host, cfg.Training.DataOn);
        Assert.Equal(Precision.Fp32, ConfigJson.Deserialize<RunConfig>("{}").Training.Precision);
        Assert.Equal(DataResidence.Auto, ConfigJson.Deserialize<RunConfig>("{}").Training.DataOn);
        var e = Assert.Throws<ConfigException>(() => ConfigJson.Deserialize<RunConfig>("""{"training": {"precision": "fp16"}}"""));
        Assert.Equal("training.precision", e.Key);
        Assert.Contains("fp16", e.Message);
    }

    private static RunConfig TrainerTestsConfig(string arch) => InterroGate.Tests.Training.TrainerTests.Config(InterroGate.Tests.Training.TrainerTests.Architecture(arch), epochs: 2);

    private static InMemoryDataset Synthetic() => InterroGate.Data.Synthetic.Make("synthetic/test", 64, seed: 1);
}
