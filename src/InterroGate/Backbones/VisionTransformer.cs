// Vision Transformer encoder (Dosovitskiy et al., "An Image is Worth 16x16 Words", arXiv 2010.11929), laid out as timm's
// `VisionTransformer` so timm's ImageNet weights load by name; the encoder InterroGate's ViT experiments start from
// (arXiv 2402.16848, appendix B).
using InterroGate.Tensors;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Backbones;

/// <summary>
/// The shape of a ViT: patch size, token width (<see cref="EmbedDim"/>), blocks, attention heads, MLP ratio, whether a
/// class token is prepended, and the input size its position embeddings were trained at (other sizes interpolate them).
/// </summary>
/// With <see cref="OutputBlocks"/> the heads read the token maps of those blocks' outputs (before the final norm),
/// concatenated along channels (what a DPT head reads), instead of the final norm's; with a class token each block's
/// map carries it beside every patch ([patch | class], 2D channels), which DPT's "project" readout reads; with <see cref="ClassTokenReadout"/>
/// they read the class token after the final norm, as a 1×1 map (an image-level head then classifies it).
public sealed record ViTSpec(string Name, int PatchSize, long EmbedDim, int Depth, int Heads, double MlpRatio = 4, bool ClassToken = true,
    int TrainedSize = 224, IReadOnlyList<int>? OutputBlocks = null, bool ClassTokenReadout = false) : IEncoderSpec
{
    /// <summary>Channels of the feature map the heads read: <see cref="MapChannels"/> times the output blocks.</summary>
    public long OutChannels => MapChannels * (OutputBlocks?.Count ?? 1);

    /// <summary>Channels of one map the heads read: the token width, twice it for an output block's map with the class token beside every patch.</summary>
    public long MapChannels => OutputBlocks is not null && ClassToken ? 2 * EmbedDim : EmbedDim;

    /// <summary>DPT's four blocks for a ViT of <see cref="Depth"/> blocks: evenly spaced, the last one last (2, 5, 8, 11 for 12).</summary>
    public int[] DptBlocks() => Enumerable.Range(1, 4).Select(i => i * Depth / 4 - 1).ToArray();

    /// <summary>Input pixels per token along each axis: the patch size.</summary>
    public int OutputStride => PatchSize;

    public nn.Module<Tensor, Tensor> CreateEncoder(long inChannels) => new VisionTransformer(this, inChannels);

    /// <summary>timm's <c>vit_tiny_patch16_224</c>: width 192, 12 blocks, 3 heads.</summary>
    public static ViTSpec Tiny16() => new("vit_tiny_patch16_224", 16, 192, 12, 3);

    /// <summary>timm's <c>vit_small_patch16_224</c>: width 384, 12 blocks, 6 heads.</summary>
    public static ViTSpec Small16() => new("vit_small_patch16_224", 16, 384, 12, 6);

    /// <summary>timm's <c>vit_base_patch16_224</c>: width 768, 12 blocks, 12 heads (86.6 M parameters with its classifier).</summary>
    public static ViTSpec Base16() => new("vit_base_patch16_224", 16, 768, 12, 12);

    /// <summary>A CPU-sized ViT for 32×32 images: patches of 4 (an 8×8 grid), width 64, 4 blocks, 4 heads.</summary>
    public static ViTSpec Cpu4() => new("vit_cpu_patch4_32", 4, 64, 4, 4, TrainedSize: 32);
}

/// <summary>The patch embedding: a conv with kernel and stride of the patch size (timm: <c>patch_embed.proj</c>).</summary>
public sealed class PatchEmbed : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d proj;

    public PatchEmbed(long inChannels, long embedDim, int patch) : base(nameof(PatchEmbed))
    {
        proj = nn.Conv2d(inChannels, embedDim, patch, stride: patch);
        RegisterComponents();
    }

    public Conv2d Proj => proj;

    /// <summary>[B, C, H, W] to the token grid [B, D, H/p, W/p]; the height and width must be multiples of the patch size.</summary>
    public override Tensor forward(Tensor x)
    {
        long p = proj.kernel_size[0];
        if (x.dim() != 4 || x.shape[2] % p != 0 || x.shape[3] % p != 0)
            throw new ArgumentException($"A ViT with patches of {p} reads images whose height and width are multiples of {p}; got [{string.Join(", ", x.shape)}].");
        return proj.call(x);
    }
}

/// <summary>
/// Scaled dot-product attention over heads, from the output of a fused q, k, v projection [B, N, 3D] (timm's layout:
/// q, k, v, then heads) to the attended values [B, N, D]. No parameters; its MACs, the attention matrix products Q·Kᵀ
/// and A·V, are reported to the cost counter.
/// </summary>
public sealed class AttentionCore : nn.Module<Tensor, Tensor>, Analysis.IMacsCounted
{
    public AttentionCore(int heads) : base(nameof(AttentionCore)) => Heads = heads;

    public int Heads { get; }

    public override Tensor forward(Tensor qkv)
    {
        long b = qkv.shape[0], n = qkv.shape[1], d = qkv.shape[2] / 3, hd = d / Heads;
        var parts = qkv.view(b, n, 3, Heads, hd).permute(2, 0, 3, 1, 4); // [3, B, heads, N, hd]
        var (q, k, v) = (parts[0], parts[1], parts[2]);
        var attention = q.Times(1.0 / Math.Sqrt(hd)).matmul(k.transpose(-2, -1)).softmax(-1);
        return attention.matmul(v).transpose(1, 2).reshape(b, n, d);
    }

    /// <summary>Q·Kᵀ and A·V: N² · D multiply-accumulates each (per image; D split over the heads).</summary>
    public long Macs(Tensor output) => 2 * output.shape[0] * output.shape[1] * output.shape[1] * output.shape[2];
}

/// <summary>
/// Multi-head self-attention with a fused q, k, v projection (timm: <c>attn.qkv</c>, <c>attn.proj</c>) around an
/// <see cref="AttentionCore"/>.
/// </summary>
public sealed class Attention : nn.Module<Tensor, Tensor>
{
    private readonly Linear qkv;
    private readonly AttentionCore core;
    private readonly Linear proj;

    public Attention(long dim, int heads) : base(nameof(Attention))
    {
        if (dim % heads != 0) throw new ArgumentException($"The token width {dim} must be divisible by the {heads} heads.");
        Heads = heads;
        qkv = nn.Linear(dim, 3 * dim);
        core = new AttentionCore(heads);
        proj = nn.Linear(dim, dim);
        RegisterComponents();
    }

    public int Heads { get; }
    public Linear Qkv => qkv;
    public AttentionCore Core => core;
    public Linear Proj => proj;

    public override Tensor forward(Tensor x) => proj.call(core.call(qkv.call(x)));
}

/// <summary>The MLP of a block: fc1, GELU, fc2 (timm: <c>mlp.fc1</c>, <c>mlp.fc2</c>).</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly Linear fc2;

    public Mlp(long dim, long hidden) : base(nameof(Mlp))
    {
        fc1 = nn.Linear(dim, hidden);
        fc2 = nn.Linear(hidden, dim);
        RegisterComponents();
    }

    public Linear Fc1 => fc1;
    public Linear Fc2 => fc2;

    public override Tensor forward(Tensor x) => fc2.call(nn.functional.gelu(fc1.call(x)));
}

/// <summary>A pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(·)) (timm: <c>blocks.{i}</c>).</summary>
public sealed class TransformerBlock : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly Attention attn;
    private readonly LayerNorm norm2;
    private readonly Mlp mlp;

    public TransformerBlock(long dim, int heads, double mlpRatio) : base(nameof(TransformerBlock))
    {
        norm1 = nn.LayerNorm(dim, eps: 1e-6);
        attn = new Attention(dim, heads);
        norm2 = nn.LayerNorm(dim, eps: 1e-6);
        mlp = new Mlp(dim, (long)(dim * mlpRatio));
        RegisterComponents();
    }

    public LayerNorm Norm1 => norm1;
    public Attention Attn => attn;
    public LayerNorm Norm2 => norm2;
    public Mlp Mlp => mlp;

    public override Tensor forward(Tensor x)
    {
        x = x.Plus(attn.call(norm1.call(x)));
        return x.Plus(mlp.call(norm2.call(x)));
    }
}

/// <summary>
/// A ViT encoder with timm's parameter names (<c>patch_embed.proj</c>, <c>cls_token</c>, <c>pos_embed</c>,
/// <c>blocks.{i}.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2</c>, <c>norm</c>; the classifier <c>head</c> is not
/// part of the encoder), so timm's weights load by name. Forward returns the patch tokens after the final norm as a
/// map [B, D, H/p, W/p] (the class token, where there is one, attends with them and is then left out), what every
/// head reads: the classification head's global pooling is the mean of the patch tokens. At an input size other than
/// <see cref="ViTSpec.TrainedSize"/> the position embeddings of the patch grid are resized (bicubic) to the new grid.
/// </summary>
public sealed class VisionTransformer : nn.Module<Tensor, Tensor>, IPlannedEncoder, ITokenEmbedding
{
    private readonly PatchEmbed patch_embed;
    private readonly Parameter? cls_token;
    private readonly Parameter pos_embed;
    private readonly ModuleList<TransformerBlock> blocks;
    private readonly LayerNorm norm;

    public VisionTransformer(ViTSpec spec, long inChannels = 3) : base(spec.Name)
    {
        if (inChannels <= 0) throw new ArgumentOutOfRangeException(nameof(inChannels), inChannels, "Input channels must be > 0.");
        if (spec.PatchSize < 1 || spec.Depth < 1 || spec.Heads < 1 || spec.EmbedDim < 1 || !(spec.MlpRatio > 0))
            throw new ArgumentException($"ViT {spec.Name}: patch size, depth, heads, width and MLP ratio must be positive.");
        if (spec.TrainedSize < spec.PatchSize) throw new ArgumentException($"ViT {spec.Name}: the trained input size {spec.TrainedSize} is smaller than a patch.");
        if (spec.ClassTokenReadout && (!spec.ClassToken || spec.OutputBlocks is not null))
            throw new ArgumentException($"ViT {spec.Name}: a class-token readout needs a class token and no output blocks.");
        if (spec.OutputBlocks is { } hooks && (hooks.Count == 0 || hooks.Any(b => b < 0 || b >= spec.Depth) || hooks.Zip(hooks.Skip(1)).Any(p => p.First >= p.Second)))
            throw new ArgumentException($"ViT {spec.Name}: output blocks [{string.Join(", ", hooks)}] must be increasing block indices below its depth {spec.Depth}.");
        Spec = spec;
        InChannels = inChannels;
        int grid = spec.TrainedSize / spec.PatchSize;
        patch_embed = new PatchEmbed(inChannels, spec.EmbedDim, spec.PatchSize);
        // Out of any dispose scope open around the construction (a Parameter made from a tensor in a scope would be the scope's).
        cls_token = spec.ClassToken ? new Parameter(zeros(1, 1, spec.EmbedDim).DetachFromDisposeScope()) : null;
        pos_embed = new Parameter(zeros(1, grid * grid + (spec.ClassToken ? 1 : 0), spec.EmbedDim).DetachFromDisposeScope());
        blocks = new ModuleList<TransformerBlock>(Enumerable.Range(0, spec.Depth).Select(_ => new TransformerBlock(spec.EmbedDim, spec.Heads, spec.MlpRatio)).ToArray());
        norm = nn.LayerNorm(spec.EmbedDim, eps: 1e-6);
        RegisterComponents();
        Initialise();
    }

    public ViTSpec Spec { get; }
    public long InChannels { get; }
    public long OutChannels => Spec.OutChannels;
    public PatchEmbed PatchEmbed => patch_embed;
    public IReadOnlyList<TransformerBlock> Blocks => blocks.ToArray();

    /// <summary>
    /// timm's initialisation: N(0, 0.02²) for the position embeddings and linear weights (timm truncates at ±2, which a
    /// std of 0.02 never reaches), zero biases, class token ~ N(0, 1e-6²).
    /// </summary>
    private void Initialise()
    {
        using var _ = no_grad();
        nn.init.normal_(pos_embed, std: 0.02);
        if (cls_token is not null) nn.init.normal_(cls_token, std: 1e-6);
        foreach (var linear in modules().OfType<Linear>())
        {
            nn.init.normal_(linear.weight!, std: 0.02);
            if (linear.bias is { } b) nn.init.zeros_(b);
        }
    }

    /// <summary>The class token [1, 1, D]; null for an encoder without one.</summary>
    public Parameter? ClassToken => cls_token;

    /// <summary>The position embeddings of an h×w patch grid (the class token's first, where there is one).</summary>
    public Tensor PositionEmbeddings(long h, long w)
    {
        int grid = Spec.TrainedSize / Spec.PatchSize;
        return h == grid && w == grid ? pos_embed : ResizePositions(pos_embed, cls_token is null ? 0 : 1, grid, grid, h, w);
    }

    /// <summary>
    /// Position embeddings [1, extra + gh·gw, D] of a gh×gw grid (after <paramref name="extra"/> class-token positions,
    /// kept as they are) resized bicubically to an h×w grid.
    /// </summary>
    public static Tensor ResizePositions(Tensor pos, int extra, long gh, long gw, long h, long w)
    {
        var patches = pos[.., extra..].reshape(1, gh, gw, -1).permute(0, 3, 1, 2);
        var resized = nn.functional.interpolate(patches, [h, w], mode: InterpolationMode.Bicubic, align_corners: false)
            .permute(0, 2, 3, 1).reshape(1, h * w, -1);
        return extra == 0 ? resized : cat([pos[.., ..extra], resized], 1);
    }

    /// <summary>Patch grid [B, D, h, w] to tokens [B, N, D]: the patches in row order after the class token (where there is one), position embeddings added.</summary>
    public Tensor Embed(Tensor grid)
    {
        long b = grid.shape[0], h = grid.shape[2], w = grid.shape[3];
        var tokens = grid.flatten(2).transpose(1, 2); // [B, h·w, D]
        if (cls_token is not null) tokens = cat([cls_token.expand(b, -1, -1), tokens], 1);
        return tokens.Plus(PositionEmbeddings(h, w));
    }

    /// <summary>Tokens after the final norm, [B, N, D] (the class token first where there is one).</summary>
    public Tensor Tokens(Tensor x)
    {
        var tokens = Embed(patch_embed.call(x));
        foreach (var block in blocks) tokens = block.call(tokens);
        return norm.call(tokens);
    }

    /// <summary>
    /// The encoder as a plan (what InterroGate gates): the patch embedding giving tokens (class token and position
    /// embeddings added channel by channel, so its gates pick channels of tokens), and per block
    /// norm1 (operation), the fused q, k, v projection (one unit whose gates count as three layers), attention
    /// (operation), the output projection, the residual sum, norm2, fc1 (GELU), fc2 and the second residual sum; then the
    /// final norm and the map the heads read. Under block gating the gates sit after the patch embedding, the output
    /// projections and fc2 (what enters the residual stream).
    /// </summary>
    public EncoderPlan Plan()
    {
        static VisionTransformer V(nn.Module n) => (VisionTransformer)n;
        var units = new List<PlanUnit>
        {
            new("patch_embed", [new PlanTerm(EncoderPlan.Image, n => (V(n).patch_embed.Proj, null))], Activation: UnitActivation.None,
                Then: new TokensOp(Spec.PatchSize, Spec.ClassToken, V)),
        };
        int Add(PlanUnit unit) { units.Add(unit); return units.Count - 1; }
        int x = 0;
        int depth = Spec.OutputBlocks is { } read ? read[^1] + 1 : Spec.Depth; // blocks after the last one read are not run
        for (int i = 0; i < depth; i++)
        {
            int block = i;
            string name = $"blocks.{i}";
            int norm1 = Add(new($"{name}.norm1", [new PlanTerm(x, null)], Op: new NormOp(n => V(n).blocks[block].Norm1)));
            int qkv = Add(new($"{name}.attn.qkv", [new PlanTerm(norm1, null, Linear: n => V(n).blocks[block].Attn.Qkv)], EndsBlock: false,
                Activation: UnitActivation.None, GateParts: 3));
            int core = Add(new($"{name}.attn.core", [new PlanTerm(qkv, null)], Op: new AttentionOp(n => V(n).blocks[block].Attn.Core)));
            int proj = Add(new($"{name}.attn.proj", [new PlanTerm(core, null, Linear: n => V(n).blocks[block].Attn.Proj)], Activation: UnitActivation.None));
            x = Add(new($"{name}.add1", [new PlanTerm(x, null), new PlanTerm(proj, null)], Op: new SumOp()));
            int norm2 = Add(new($"{name}.norm2", [new PlanTerm(x, null)], Op: new NormOp(n => V(n).blocks[block].Norm2)));
            int fc1 = Add(new($"{name}.mlp.fc1", [new PlanTerm(norm2, null, Linear: n => V(n).blocks[block].Mlp.Fc1)], EndsBlock: false,
                Activation: UnitActivation.Gelu));
            int fc2 = Add(new($"{name}.mlp.fc2", [new PlanTerm(fc1, null, Linear: n => V(n).blocks[block].Mlp.Fc2)], Activation: UnitActivation.None));
            x = Add(new($"{name}.add2", [new PlanTerm(x, null), new PlanTerm(fc2, null)], Op: new SumOp()));
        }
        var toMap = new TokenMapOp(Spec.PatchSize, Spec.ClassToken ? 1 : 0);
        if (Spec.OutputBlocks is { } hooks)
        {
            // The maps of the chosen blocks' outputs (each block ends with its second residual sum).
            var ends = units.Select((unit, i) => (unit, i)).Where(p => p.unit.Name.EndsWith(".add2", StringComparison.Ordinal)).Select(p => p.i).ToArray();
            PlanOp blockMap = Spec.ClassToken ? new ReadoutMapOp(Spec.PatchSize) : toMap;
            var maps = hooks.Select(b => Add(new($"map{b}", [new PlanTerm(ends[b], null), new PlanTerm(EncoderPlan.Image, null)], Op: blockMap))).ToArray();
            return new EncoderPlan(units, maps).Validated();
        }
        int final = Add(new("norm", [new PlanTerm(x, null)], Op: new NormOp(n => V(n).norm)));
        int map = Spec.ClassTokenReadout
            ? Add(new("cls", [new PlanTerm(final, null)], Op: new ClassTokenOp()))
            : Add(new("map", [new PlanTerm(final, null), new PlanTerm(EncoderPlan.Image, null)], Op: toMap));
        return new EncoderPlan(units, [map]).Validated();
    }

    public override Tensor forward(Tensor x)
    {
        long h = x.shape[2] / Spec.PatchSize, w = x.shape[3] / Spec.PatchSize;
        if (Spec.OutputBlocks is { } hooks)
        {
            var t = Embed(patch_embed.call(x));
            var maps = new List<Tensor>();
            for (int i = 0; i <= hooks[^1]; i++)
            {
                t = blocks[i].call(t);
                if (hooks.Contains(i)) maps.Add(cls_token is null ? ToMap(t, h, w) : ReadoutMapOp.Map(t, h, w));
            }
            return cat(maps, 1);
        }
        var final = Tokens(x);
        return Spec.ClassTokenReadout ? final[.., 0].unsqueeze(-1).unsqueeze(-1) : ToMap(final, h, w);
    }

    private Tensor ToMap(Tensor tokens, long h, long w) => TokenMapOp.ToMap(tokens, cls_token is null ? 0 : 1, h, w);
}
