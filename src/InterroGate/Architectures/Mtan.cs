// MTAN, the Multi-Task Attention Network: a shared encoder with one soft-attention branch per task that selects its features stage by stage (Liu et al., "End-to-End Multi-Task Learning with Attention", CVPR 2019).
using InterroGate.Backbones;
using InterroGate.Layers;
using InterroGate.Tasks;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Architectures;

/// <summary>
/// A shared ResNet (encoder) and, per task, an attention module at every stage j (attention.{task}.{j}):
/// with u_j the shared features that enter stage j's last block and s_j those it gives,
/// a_t^j = σ(BN(conv1×1(ReLU(BN(conv1×1([u_j, f_t^{j−1}])))))) and the attended features a_t^j ⊙ s_j; then
/// f_t^j = ReLU(BN(conv3×3(a_t^j ⊙ s_j))) at stage j+1's width and stride carries them on, one such convolution per
/// stage shared by the tasks (stage.{j}; the authors' "task shared attention encoders", applied to each task's
/// features apart, so its batch norm sees each task's features in turn, as in the authors' code). The first stage has no previous features (its mask reads u_1 alone). Each head reads a_t^L ⊙ s_L.
/// As in the authors' ResNet-MTAN, u_j is the output of the stage's blocks but the last (its first block's on a
/// two-block ResNet-18 stage, its second's on ResNet-20's three).
/// </summary>
public sealed class Mtan : MultiTaskModel
{
    private readonly ResNet encoder;
    private readonly ModuleMap<ModuleList<Sequential>> attention;
    private readonly ModuleList<Sequential> stage;
    private readonly ModuleMap<nn.Module<Tensor, Tensor>> heads;
    private readonly int[] _stageEnds;

    public Mtan(TaskSet tasks, ResNetSpec spec, long inChannels, Heads.HeadConfig? headConfig = null) : base(nameof(Mtan), tasks, inChannels, headConfig)
    {
        Spec = spec;
        encoder = new ResNet(spec, inChannels);
        heads = MakeHeads(spec);
        int stages = spec.Layers.Count;
        _stageEnds = spec.Layers.Select((_, s) => spec.Layers.Take(s + 1).Sum() - 1).ToArray();
        var width = _stageEnds.Select(b => encoder.Blocks[b].OutChannels).ToArray();
        // u_j's width: what enters stage j's last block (a stage of one block: what enters the stage).
        var inWidth = _stageEnds.Select(b => b > 0 ? encoder.Blocks[b - 1].OutChannels : spec.StemChannels).ToArray();
        var stride = Enumerable.Range(0, stages).Select(s => s == 0 || spec.Dilate[s - 1] ? 1L : 2L).ToArray();

        Sequential Attention(long input, long channels) => new Chain(
            nn.Conv2d(input, channels, 1, bias: false), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 1, bias: false), nn.BatchNorm2d(channels), nn.Sigmoid());
        attention = ModuleMap.Of(tasks.Select(t => (t.Name, new ModuleList<Sequential>(
            Enumerable.Range(0, stages).Select(j => Attention(j == 0 ? inWidth[0] : inWidth[j] + width[j], width[j])).ToArray()))).ToArray());
        stage = new ModuleList<Sequential>(Enumerable.Range(0, stages - 1).Select(j => (Sequential)new Chain(
            nn.Conv2d(width[j], width[j + 1], 3, stride: stride[j + 1], padding: 1, bias: false),
            nn.BatchNorm2d(width[j + 1]), nn.ReLU())).ToArray());
        RegisterComponents();
    }

    public ResNetSpec Spec { get; }
    public override string Architecture => "mtan";
    /// <summary>The encoder and the attention encoders f every task's features pass through.</summary>
    public override IEnumerable<Parameter> SharedParameters() => encoder.parameters().Concat(stage.parameters());

    public override Dictionary<string, Tensor> forward(Tensor x)
    {
        // The shared encoder, keeping what enters each stage's last block (u) and what that block gives (s).
        var h = encoder.Pool(encoder.StemUnit(x));
        var u = new Tensor[_stageEnds.Length];
        var s = new Tensor[_stageEnds.Length];
        for (int b = 0, j = 0; b < encoder.Blocks.Count; b++)
        {
            if (b == _stageEnds[j]) u[j] = h;
            h = encoder.Blocks[b].call(h);
            if (b == _stageEnds[j]) s[j++] = h;
        }

        var outputs = new Dictionary<string, Tensor>();
        foreach (var task in Tasks)
        {
            var att = attention[task.Name];
            Tensor? carried = null, attended = null;
            for (int j = 0; j < s.Length; j++)
            {
                var input = carried is null ? u[j] : cat([u[j], carried], 1);
                attended = att[j].call(input) * s[j];
                if (j < s.Length - 1) carried = stage[j].call(attended);
            }
            outputs[task.Name] = Predict(task, heads[task.Name], attended!, x);
        }
        return outputs;
    }
}
