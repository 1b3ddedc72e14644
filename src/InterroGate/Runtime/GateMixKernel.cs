// A fused CPU kernel for the gate-and-mix of one gated layer (Eqs. 2-3 of arXiv 2402.16848): one pass over the
// features forward and one backward, where the same computation as tensor operations makes about four times as many
// passes (a lerp per task, the weighted sum, and the backward of each with its per-channel reductions).
using System.Numerics;
using System.Runtime.CompilerServices;
using InterroGate.Gating;
using InterroGate.Tensors;
using static TorchSharp.torch;

namespace InterroGate.Runtime;

/// <summary>
/// The gate-and-mix of <see cref="Gating.GateLayer.Apply"/> on float32 CPU features [N, C, H, W], computed by a C# loop
/// (vectorised, parallel over N·C planes) with its own backward: for each task t, φ̃_t = ψ + G_t ⊙ (φ_t − ψ) (with
/// the same rounding as <c>lerp</c>), and m = Σ_t w_t ⊙ φ̃_t. Given the features before their ReLU, it applies the ReLU
/// in the same pass (ψ and φ_t above are then max(0, ·) of its inputs), so a gated unit's activation costs no pass of
/// its own. The backward recomputes φ̃_t (and the ReLU) from its inputs instead of storing them. Other devices, dtypes
/// and ranks use the tensor operations.
/// </summary>
public static class GateMixKernel
{
    /// <summary>
    /// Whether the kernel is used where it applies (default: yes; <c>INTERROGATE_GATE_KERNEL=0</c> turns it off).
    /// The tensor-operation form computes the same values, for comparison and benchmarking.
    /// </summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("INTERROGATE_GATE_KERNEL") != "0";

    /// <summary>
    /// Whether the kernel applies a gated unit's ReLU itself, in its own pass (default: yes); off, the ReLU runs as a
    /// tensor operation before the kernel, for comparison and benchmarking.
    /// </summary>
    public static bool FuseActivation { get; set; } = true;

    /// <summary>Threads the kernel runs on; 0 (default): libtorch's intra-op thread count.</summary>
    public static int Threads { get; set; }

    /// <summary>The kernel as a gate layer's <see cref="IGateMixImplementation"/> (it reads <see cref="Enabled"/> and <see cref="FuseActivation"/> at each call).</summary>
    public static IGateMixImplementation Implementation { get; } = new KernelImplementation();

    private sealed class KernelImplementation : IGateMixImplementation
    {
        public bool Applies(Tensor shared, IReadOnlyList<Tensor> tasks) => GateMixKernel.Applies(shared, tasks);
        public bool FusesActivation => FuseActivation;
        public (Tensor[] Gated, Tensor? Mixed) Apply(IReadOnlyList<Tensor> tasks, Tensor shared, Tensor gates, Tensor? weights, bool preActivation) =>
            GateMixKernel.Apply(tasks, shared, gates, weights, preActivation);
    }

    /// <summary>Planes smaller than this go to the tensor operations (per-plane overhead would dominate).</summary>
    private const long MinPlane = 16;

    /// <summary>
    /// Float32 CPU features [N, C, H, W] in NCHW order with planes of at least <see cref="MinPlane"/> pixels. Features in
    /// channels-last order (<c>training.channelsLast</c>) go to the tensor operations, which keep that order for the
    /// next convolution; the kernel, which works plane by plane, would return them in NCHW order.
    /// </summary>
    public static bool Applies(Tensor shared, IReadOnlyList<Tensor> tasks) =>
        Enabled && shared.device_type == TorchSharp.DeviceType.CPU && shared.dtype == ScalarType.Float32 && shared.dim() == 4
        && shared.shape[2] * shared.shape[3] >= MinPlane && !Channels.AreLast(shared)
        && tasks.All(t => t.device_type == TorchSharp.DeviceType.CPU && t.dtype == ScalarType.Float32 && t.shape.SequenceEqual(shared.shape) && !Channels.AreLast(t));

    /// <summary>
    /// Gated task features and (with <paramref name="weights"/>) their mix; differentiable in every input. With
    /// <paramref name="relu"/>, <paramref name="tasks"/> and <paramref name="shared"/> are features before their ReLU.
    /// </summary>
    internal static (Tensor[] Gated, Tensor? Mixed) Apply(IReadOnlyList<Tensor> tasks, Tensor shared, Tensor gates, Tensor? weights, bool relu = false)
    {
        int T = tasks.Count;
        bool grad = is_grad_enabled() && (shared.requires_grad || gates.requires_grad || weights?.requires_grad == true || tasks.Any(t => t.requires_grad));
        if (!grad)
        {
            var outputs = Forward(tasks, shared, gates, weights, relu);
            return (outputs[..T], weights is null ? null : outputs[T]);
        }
        var args = new List<object> { T, relu, shared };
        args.AddRange(tasks);
        args.Add(gates);
        if (weights is not null) args.Add(weights);
        var result = GateMixFunction.Apply([.. args]);
        return (result.Take(T).ToArray(), weights is null ? null : result[T]);
    }

    /// <summary>Forward pass: the T gated features, then the mix when <paramref name="weights"/> is given.</summary>
    internal static unsafe Tensor[] Forward(IReadOnlyList<Tensor> tasks, Tensor shared, Tensor gates, Tensor? weights, bool relu)
    {
        int T = tasks.Count;
        using var scope = NewDisposeScope();
        var s = shared.contiguous();
        var x = tasks.Select(t => t.contiguous()).ToArray();
        var (a, w) = (Scalars(gates), weights is null ? null : Scalars(weights));
        var gated = x.Select(t => empty_like(t)).ToArray();
        var mixed = weights is null ? null : empty_like(s);
        long C = s.shape[1], plane = s.shape[2] * s.shape[3], planes = s.shape[0] * C;

        var ps = Ptr(s);
        var px = x.Select(Ptr).ToArray();
        var pg = gated.Select(Ptr).ToArray();
        var pm = mixed is null ? IntPtr.Zero : Ptr(mixed);
        Parallel(planes, Workers(planes), (_, first, last) =>
        {
            for (long p = first; p < last; p++)
            {
                long c = p % C, o = p * plane;
                float* m = pm == IntPtr.Zero ? null : (float*)pm + o;
                for (int t = 0; t < T; t++)
                    GatePlane((float*)ps + o, (float*)px[t] + o, (float*)pg[t] + o, a[t * C + c], m, w is null ? 0 : w[t * C + c], t == 0, relu, plane);
            }
        });
        GC.KeepAlive(s); GC.KeepAlive(x); GC.KeepAlive(gated); GC.KeepAlive(mixed);
        var result = weights is null ? gated : [.. gated, mixed!];
        foreach (var r in result) r.MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>
    /// Backward pass. <paramref name="gradGated"/>: gradients of the T gated features (null where undefined);
    /// <paramref name="gradMixed"/>: of the mix. Returns the gradients of shared, each task, the gates and the weights
    /// (with <paramref name="relu"/>, of the features before the ReLU).
    /// </summary>
    internal static unsafe (Tensor Shared, Tensor[] Tasks, Tensor Gates, Tensor? Weights) Backward(
        IReadOnlyList<Tensor> tasks, Tensor shared, Tensor gates, Tensor? weights, IReadOnlyList<Tensor?> gradGated, Tensor? gradMixed, bool relu)
    {
        int T = tasks.Count;
        using var scope = NewDisposeScope();
        var s = shared.contiguous();
        var x = tasks.Select(t => t.contiguous()).ToArray();
        var gg = gradGated.Select(g => g?.contiguous()).ToArray();
        var gm = weights is null ? null : gradMixed?.contiguous();
        var (a, w) = (Scalars(gates), weights is null ? null : Scalars(weights));
        var gradShared = empty_like(s);
        var gradTasks = x.Select(t => empty_like(t)).ToArray();
        long C = s.shape[1], plane = s.shape[2] * s.shape[3], planes = s.shape[0] * C;
        var sumA = new double[T * C];
        var sumW = new double[T * C];

        var ps = Ptr(s);
        var px = x.Select(Ptr).ToArray();
        var pgg = gg.Select(g => g is null ? IntPtr.Zero : Ptr(g)).ToArray();
        var pgm = gm is null ? IntPtr.Zero : Ptr(gm);
        var pgs = Ptr(gradShared);
        var pgt = gradTasks.Select(Ptr).ToArray();
        // Per-thread sums, added in thread order afterwards: the same sums in the same order on every run.
        int workers = Workers(planes);
        var partA = new double[workers][];
        var partW = new double[workers][];
        Parallel(planes, workers, (worker, first, last) =>
        {
            var localA = partA[worker] = new double[T * C];
            var localW = partW[worker] = new double[T * C];
            for (long p = first; p < last; p++)
            {
                long c = p % C, o = p * plane;
                float* gmix = pgm == IntPtr.Zero ? null : (float*)pgm + o;
                for (int t = 0; t < T; t++)
                {
                    float* gt = pgg[t] == IntPtr.Zero ? null : (float*)pgg[t] + o;
                    var (da, dw) = BackwardPlane((float*)ps + o, (float*)px[t] + o, gt, gmix, (float*)pgt[t] + o, (float*)pgs + o,
                        a[t * C + c], w is null ? 0 : w[t * C + c], t == 0, relu, plane);
                    localA[t * C + c] += da;
                    localW[t * C + c] += dw;
                }
            }
        });
        for (int k = 0; k < workers; k++)
            for (int i = 0; i < sumA.Length; i++) { sumA[i] += partA[k][i]; sumW[i] += partW[k][i]; }
        GC.KeepAlive(s); GC.KeepAlive(x); GC.KeepAlive(gg); GC.KeepAlive(gm); GC.KeepAlive(gradShared); GC.KeepAlive(gradTasks);

        var gradGates = tensor(sumA.Select(v => (float)v).ToArray(), [T, C], dtype: float32);
        var gradWeights = weights is null ? null : tensor(sumW.Select(v => (float)v).ToArray(), [T, C], dtype: float32);
        gradShared.MoveToOuterDisposeScope();
        foreach (var g in gradTasks) g.MoveToOuterDisposeScope();
        gradGates.MoveToOuterDisposeScope();
        gradWeights?.MoveToOuterDisposeScope();
        return (gradShared, gradTasks, gradGates, gradWeights);
    }

    /// <summary>
    /// One plane of task t forward: g = lerp(s, x, α) written to <paramref name="g"/>; with a mix, m = w·g (first task)
    /// or m += w·g. lerp's rounding: s + α(x − s) for α &lt; 0.5, x − (x − s)(1 − α) otherwise. With
    /// <paramref name="relu"/>, s and x are first replaced by max(0, ·) (NaN stays NaN, as in <c>relu</c>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: optimised from its first call, not after tiering up
    private static unsafe void GatePlane(float* s, float* x, float* g, float alpha, float* m, float w, bool first, bool relu, long n)
    {
        bool low = alpha < 0.5f;
        float k = low ? alpha : 1 - alpha;
        var vk = new Vector<float>(k);
        var vw = new Vector<float>(w);
        int width = Vector<float>.Count;
        long i = 0;
        for (; i + width <= n; i += width)
        {
            var vs = Vector.Load(s + i);
            var vx = Vector.Load(x + i);
            if (relu) (vs, vx) = (Relu(vs), Relu(vx));
            var d = vx - vs;
            var vg = Lerp(vs, vx, d, vk, low);
            vg.Store(g + i);
            if (m is not null) (first ? vw * vg : Vector.Load(m + i) + vg * vw).Store(m + i);
        }
        for (; i < n; i++)
        {
            float si = relu ? Relu(s[i]) : s[i], xi = relu ? Relu(x[i]) : x[i];
            float d = xi - si;
            float gi = Lerp(si, xi, d, k, low);
            g[i] = gi;
            if (m is not null) m[i] = first ? w * gi : m[i] + gi * w;
        }
    }

    /// <summary>
    /// One plane of task t backward. G = ∂φ̃_t (+ w ∂m): ∂φ_t = α G, ∂ψ = Σ_t (1 − α_t) G (written for the first task,
    /// accumulated for the others); returns Σ G (φ_t − ψ) (the gate's gradient) and Σ ∂m φ̃_t (the weight's). With
    /// <paramref name="relu"/>, ψ and φ_t are max(0, ·) of s and x, and ∂ψ, ∂φ_t are zero where s, x ≤ 0 (ReLU's backward).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe (double Alpha, double Weight) BackwardPlane(float* s, float* x, float* gg, float* gm, float* gx, float* gs,
        float alpha, float w, bool first, bool relu, long n)
    {
        bool low = alpha < 0.5f;
        float k = low ? alpha : 1 - alpha;
        var vk = new Vector<float>(k);
        var va = new Vector<float>(alpha);
        var v1a = new Vector<float>(1 - alpha);
        var vw = new Vector<float>(w);
        var accA = Vector<float>.Zero;
        var accW = Vector<float>.Zero;
        int width = Vector<float>.Count;
        long i = 0;
        for (; i + width <= n; i += width)
        {
            var vs = Vector.Load(s + i);
            var vx = Vector.Load(x + i);
            var (ms, mx) = relu ? (Vector.GreaterThan(vs, Vector<float>.Zero), Vector.GreaterThan(vx, Vector<float>.Zero)) : default;
            if (relu) (vs, vx) = (Relu(vs), Relu(vx));
            var d = vx - vs;
            var G = gg is null ? Vector<float>.Zero : Vector.Load(gg + i);
            if (gm is not null)
            {
                var vm = Vector.Load(gm + i);
                G += vw * vm;
                accW += vm * Lerp(vs, vx, d, vk, low);
            }
            var dx = G * va;
            var ds = G * v1a;
            if (relu) (dx, ds) = (Vector.ConditionalSelect(mx, dx, Vector<float>.Zero), Vector.ConditionalSelect(ms, ds, Vector<float>.Zero));
            dx.Store(gx + i);
            (first ? ds : Vector.Load(gs + i) + ds).Store(gs + i);
            accA += G * d;
        }
        double sumA = Vector.Sum(accA), sumW = Vector.Sum(accW);
        for (; i < n; i++)
        {
            float si = relu ? Relu(s[i]) : s[i], xi = relu ? Relu(x[i]) : x[i];
            float d = xi - si;
            float G = gg is null ? 0 : gg[i];
            if (gm is not null)
            {
                G += w * gm[i];
                sumW += gm[i] * Lerp(si, xi, d, k, low);
            }
            float dx = G * alpha, ds = G * (1 - alpha);
            if (relu && !(x[i] > 0)) dx = 0;
            if (relu && !(s[i] > 0)) ds = 0;
            gx[i] = dx;
            gs[i] = first ? ds : gs[i] + ds;
            sumA += G * d;
        }
        return (sumA, sumW);
    }

    /// <summary>lerp(s, x, α) with d = x − s and k = α (low: α &lt; 0.5) or 1 − α, rounded as ATen's lerp rounds it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Lerp(Vector<float> s, Vector<float> x, Vector<float> d, Vector<float> k, bool low) => low ? s + k * d : x - d * k;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Lerp(float s, float x, float d, float k, bool low) => low ? s + k * d : x - d * k;

    /// <summary>max(0, v), keeping NaN (as <c>relu</c> does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Relu(Vector<float> v) => Vector.ConditionalSelect(Vector.LessThan(v, Vector<float>.Zero), Vector<float>.Zero, v);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Relu(float v) => v < 0 ? 0 : v;

    private static float[] Scalars(Tensor t) => t.detach().to(float32).cpu().contiguous().data<float>().ToArray();

    /// <summary>Address of the first element of a contiguous float32 CPU tensor.</summary>
    private static IntPtr Ptr(Tensor t) => t.storage<float>().data_ptr() + (nint)(t.storage_offset() * sizeof(float));

    private static int Workers(long count) => (int)Math.Min(Math.Max(1, Threads > 0 ? Threads : get_num_threads()), count);

    /// <summary>Runs <paramref name="body"/>(worker, first, last) over [0, count), one fixed contiguous range per worker.</summary>
    private static void Parallel(long count, int workers, Action<int, long, long> body)
    {
        if (workers == 1) { body(0, 0, count); return; }
        System.Threading.Tasks.Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers },
            k => body(k, count * k / workers, count * (k + 1) / workers));
    }
}

/// <summary>The autograd node of <see cref="GateMixKernel"/>: arguments T, relu, shared, the T tasks, gates[, weights].</summary>
internal sealed class GateMixFunction : autograd.MultiTensorFunction<GateMixFunction>
{
    public override string Name => "InterroGateGateMix";

    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        int T = (int)vars[0];
        bool relu = (bool)vars[1];
        var inputs = vars.Skip(2).Cast<Tensor>().ToList();
        var (shared, tasks, gates, weights) = Unpack(inputs, T);
        ctx.save_for_backward(inputs);
        ctx.save_data("tasks", T);
        ctx.save_data("relu", relu);
        var outputs = GateMixKernel.Forward(tasks, shared, gates, weights, relu);
        _forwardOutputs = outputs;
        return [.. outputs];
    }

    [ThreadStatic] private static Tensor[]? _forwardOutputs;

    /// <summary>
    /// The function applied, its outputs left in the caller's dispose scope. TorchSharp's autograd node keeps, per
    /// output, an empty tensor of its shape (to make zeros for an output whose gradient is undefined), created in the
    /// current dispose scope; the node disposes them itself when autograd deletes it, so they are detached from the
    /// scope here: a caller that releases its temporaries before the backward pass (the gated encoder releases each
    /// unit's as the unit ends) must not release those. What forward returned (wrapped by the node into the outputs
    /// returned here) is released here.
    /// </summary>
    public static List<Tensor> Apply(object[] args)
    {
        using var scope = NewDisposeScope();
        _forwardOutputs = null;
        var outputs = apply(args);
        var keep = new HashSet<IDisposable>(outputs.Concat(_forwardOutputs ?? []), ReferenceEqualityComparer.Instance);
        foreach (var t in scope.DisposablesView.Where(d => !keep.Contains(d)).ToArray()) scope.Detach(t);
        _forwardOutputs = null;
        foreach (var o in outputs) o.MoveToOuterDisposeScope();
        return outputs;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grad_outputs)
    {
        int T = (int)ctx.get_data("tasks");
        bool relu = (bool)ctx.get_data("relu");
        var saved = ctx.get_saved_variables();
        var (shared, tasks, gates, weights) = Unpack(saved, T);
        static Tensor? Defined(Tensor g) => g is null || g.IsInvalid ? null : g;
        var gradGated = grad_outputs.Take(T).Select(Defined).ToArray();
        var gradMixed = grad_outputs.Count > T ? Defined(grad_outputs[T]) : null;
        var (gs, gt, gg, gw) = GateMixKernel.Backward(tasks, shared, gates, weights, gradGated, gradMixed, relu);
        foreach (var t in saved) t.Dispose();
        // The managed handles of the incoming gradients are ours, and libtorch copies the returned ones as soon as this
        // returns: release both now (the returned ones at the next call), not when the caller's dispose scope ends, so
        // that each gradient is freed as soon as autograd is done with it, as it is for built-in operations.
        foreach (var g in grad_outputs) g?.Dispose();
        var result = new List<Tensor> { null!, null!, gs }; // no gradient for the task count and the relu flag
        result.AddRange(gt);
        result.Add(gg);
        if (gw is not null) result.Add(gw);
        ReleaseLater(result);
        return result;
    }

    [ThreadStatic] private static List<Tensor>? _returned;

    /// <summary>Disposes the handles returned by the previous call (libtorch holds its own references by now) and keeps these.</summary>
    private static void ReleaseLater(List<Tensor> returned)
    {
        _returned ??= [];
        foreach (var t in _returned) t.Dispose();
        _returned.Clear();
        foreach (var t in returned)
            if (t is not null) _returned.Add(t.DetachFromDisposeScope());
    }

    /// <summary>[shared, task_1 … task_T, gates] or [shared, task_1 … task_T, gates, weights].</summary>
    private static (Tensor Shared, Tensor[] Tasks, Tensor Gates, Tensor? Weights) Unpack(List<Tensor> v, int T) =>
        (v[0], v.Skip(1).Take(T).ToArray(), v[1 + T], v.Count > T + 2 ? v[T + 2] : null);
}
