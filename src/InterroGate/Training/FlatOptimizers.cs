// Adam and SGD that update each parameter group as one flat buffer (a few kernels per group, not per parameter), as
// PyTorch's multi-tensor ("foreach") optimisers do, or parameter by parameter as TorchSharp's do; same arithmetic, state
// and checkpoint format as TorchSharp's, and no scalar that a garbage collection could free during a call.
using InterroGate.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Training;

/// <summary>
/// The float32, contiguous parameters of one optimiser group that live on one device, laid out back to back in one
/// buffer, and their gradients in a second buffer with the same layout: every member and its gradient are views of
/// their slice. An element-wise optimiser then updates all members with one kernel per operation.
/// <para>
/// Autograd accumulates into a gradient that exists in place, so gradients stay in the buffer from one step to the
/// next. A member whose gradient was replaced (a balancer that assigns one, a first backward pass) is noticed at the
/// next step (<see cref="GradientsInPlace"/>) and brought back; while some member has no gradient at all the
/// optimiser steps member by member, skipping it, as TorchSharp's and PyTorch's optimisers do.
/// </para>
/// </summary>
internal sealed class FlatBucket
{
    private readonly long[] _offsets;
    private readonly IntPtr _gradBase;

    public Parameter[] Members { get; }
    /// <summary>All members' values, back to back.</summary>
    public Tensor Values { get; }
    /// <summary>All members' gradients, in the layout of <see cref="Values"/>.</summary>
    public Tensor Gradients { get; }

    private FlatBucket(Parameter[] members)
    {
        Members = members;
        _offsets = new long[members.Length];
        long total = 0;
        for (int i = 0; i < members.Length; i++) { _offsets[i] = total; total += members[i].numel(); }
        var device = members[0].device;
        Values = empty(total, dtype: ScalarType.Float32, device: device).DetachFromDisposeScope();
        Gradients = zeros(total, dtype: ScalarType.Float32, device: device).DetachFromDisposeScope();
        using (no_grad())
        {
            for (int i = 0; i < members.Length; i++)
            {
                using var slice = Slice(Values, i);
                slice.copy_(members[i]);
                members[i].set_(slice);
            }
        }
        _gradBase = BaseOf(Gradients);
        GradientsInPlace();
    }

    /// <summary>
    /// Splits <paramref name="parameters"/> into buckets (float32, contiguous, one per device, at least two members
    /// each); <paramref name="rest"/> gets the others, which are stepped one by one.
    /// </summary>
    public static FlatBucket[] Build(IEnumerable<Parameter> parameters, out Parameter[] rest)
    {
        var seen = new HashSet<IntPtr>();
        var all = parameters.Where(p => seen.Add(p.Handle)).ToArray();
        var eligible = all.Where(p => p.dtype == ScalarType.Float32 && p.is_contiguous() && p.numel() > 0).ToArray();
        var buckets = eligible.GroupBy(p => p.device.ToString()).Where(g => g.Count() >= 2).Select(g => new FlatBucket(g.ToArray())).ToArray();
        var inBuckets = buckets.SelectMany(b => b.Members).Select(p => p.Handle).ToHashSet();
        rest = all.Where(p => !inBuckets.Contains(p.Handle)).ToArray();
        return buckets;
    }

    /// <summary>Member <paramref name="i"/>'s part of a buffer laid out as <see cref="Values"/>, in the member's shape.</summary>
    public Tensor Slice(Tensor buffer, int i)
    {
        using var flat = buffer.narrow(0, _offsets[i], Members[i].numel());
        return flat.view(Members[i].shape);
    }

    /// <summary>
    /// Whether every member's gradient is its view of <see cref="Gradients"/>. A member whose gradient lives elsewhere
    /// is brought in (its values copied to the slice, the slice made its gradient); false only while some member has
    /// no gradient.
    /// </summary>
    public bool GradientsInPlace()
    {
        bool all = true;
        for (int i = 0; i < Members.Length; i++)
        {
            using var grad = Members[i].grad;
            if (grad is not null && BaseOf(grad) == _gradBase && grad.storage_offset() == _offsets[i] && grad.is_contiguous()) continue;
            if (grad is null) { all = false; continue; }
            using (no_grad())
            {
                using var slice = Slice(Gradients, i);
                slice.copy_(grad);
                Members[i].grad = slice; // the member holds the view; this handle to it is ours to free
            }
        }
        return all;
    }

    /// <summary>Where <paramref name="t"/>'s storage starts (TorchSharp's storage holds a tensor of its own, freed here).</summary>
    private static IntPtr BaseOf(Tensor t)
    {
        using var scope = NewDisposeScope();
        return t.storage<float>().data_ptr();
    }

    /// <summary>Frees the bucket's handles to its buffers; the members and their gradients keep the memory they view.</summary>
    public void Release()
    {
        Values.Dispose();
        Gradients.Dispose();
    }

    /// <summary>
    /// The pieces a bucket is updated in: the whole bucket on a GPU (one kernel per operation; the caching allocator
    /// serves the temporaries), pieces of 2^20 elements on a CPU, where temporaries of a large bucket's size would be
    /// mapped and unmapped at every step (page faults that cost more than the kernels saved).
    /// </summary>
    public static IEnumerable<(long From, long Length)> Chunks(Tensor buffer)
    {
        long total = buffer.numel(), size = buffer.device.type == DeviceType.CPU ? CpuChunk : total;
        for (long from = 0; from < total; from += size) yield return (from, Math.Min(size, total - from));
    }

    private const long CpuChunk = 1L << 20;
}

/// <summary>
/// The buckets and the remaining parameters of each group of an optimiser, and zeroing their gradients. A group added
/// after the optimiser was made (add_param_group) gets its buckets at the next <see cref="Refresh"/>. With
/// <paramref name="perParameter"/> no group gets a bucket: every parameter is one of the rest, stepped on its own.
/// </summary>
internal sealed class FlatGroups(IList<TorchSharp.Modules.ParamGroup> groups, bool perParameter)
{
    private readonly List<FlatBucket[]> _buckets = [];
    private readonly List<Parameter[]> _rest = [];

    public IReadOnlyList<FlatBucket[]> Buckets => _buckets;
    public IReadOnlyList<Parameter[]> Rest => _rest;

    /// <summary>Lays out the groups that have no buckets yet.</summary>
    public void Refresh()
    {
        for (int g = _buckets.Count; g < groups.Count; g++)
        {
            if (perParameter)
            {
                var seen = new HashSet<IntPtr>();
                _buckets.Add([]);
                _rest.Add(groups[g].Parameters.Where(p => seen.Add(p.Handle)).ToArray());
                continue;
            }
            _buckets.Add(FlatBucket.Build(groups[g].Parameters, out var rest));
            _rest.Add(rest);
        }
    }

    /// <summary>Frees every bucket's handles to its buffers (<see cref="FlatBucket.Release"/>).</summary>
    public void Release()
    {
        foreach (var bucket in _buckets.SelectMany(b => b)) bucket.Release();
    }

    /// <summary>One kernel per bucket, one per other parameter with a gradient; gradients stay allocated, as TorchSharp's zero_grad leaves them.</summary>
    public void ZeroGradients()
    {
        Refresh();
        foreach (var bucket in _buckets.SelectMany(b => b))
        {
            bucket.GradientsInPlace();
            bucket.Gradients.ZeroInPlace();
        }
        foreach (var p in _rest.SelectMany(r => r))
        {
            p.ZeroGradient();
        }
    }
}

/// <summary>
/// Adam and SGD over <see cref="FlatBucket"/>s, or with <c>perParameter</c> parameter by parameter (TorchSharp's order
/// of work, for comparison; the library's option <c>training.flatOptimizer: false</c>). Either way the arithmetic is
/// TorchSharp's and every scalar is held until the call that reads it returns (<see cref="Scalars"/>), which TorchSharp's
/// own optimisers do not do. The classes are named as TorchSharp's (the type's name heads its saved optimiser state, and
/// a loader checks it), so a checkpoint written with either reads with the other.
/// </summary>
public static class Flat
{
    /// <summary>
    /// torch.optim.Adam (L2 weight decay added to the gradient) over <see cref="FlatBucket"/>s: the moments are views
    /// of two more buffers laid out like the bucket, so one step is about ten kernels per bucket. The per-parameter
    /// state stays TorchSharp's (<see cref="TorchSharp.Modules.Adam.State"/>, step count included), so checkpoints read
    /// and write as before; loading one copies into the buffers in place, and a state replaced as a whole is copied
    /// back in at the next step. amsgrad and maximize are not offered.
    /// </summary>
    public sealed class Adam : TorchSharp.Modules.Adam
    {
        private sealed record Moments(Tensor Avg, Tensor AvgSq, TorchSharp.Modules.Adam.State[] States, Tensor[] AvgViews, Tensor[] AvgSqViews);
        private readonly FlatGroups _groups;
        private readonly List<Moments[]> _moments = [];

        public Adam(IEnumerable<Parameter> parameters, double lr, double weightDecay = 0, bool perParameter = false)
            : this([new ParamGroup(parameters, lr: lr, weight_decay: weightDecay)], lr, weightDecay, perParameter) { }

        /// <param name="perParameter">Step every parameter on its own, in place, without buffers (about ten kernels per parameter).</param>
        public Adam(IEnumerable<ParamGroup> groups, double lr, double weightDecay = 0, bool perParameter = false) : base(groups, lr: lr, weight_decay: weightDecay)
        {
            _groups = new FlatGroups(_parameter_groups, perParameter);
            Refresh();
        }

        /// <summary>Buckets, and moments in buffers of their layout, for the groups that have none yet.</summary>
        private void Refresh()
        {
            _groups.Refresh();
            for (int g = _moments.Count; g < _groups.Buckets.Count; g++)
                _moments.Add(_groups.Buckets[g].Select(bucket =>
                {
                    var avg = zeros_like(bucket.Values).DetachFromDisposeScope();
                    var avgSq = zeros_like(bucket.Values).DetachFromDisposeScope();
                    var states = bucket.Members.Select(p => (TorchSharp.Modules.Adam.State)_state[p.Handle]).ToArray();
                    var avgViews = states.Select((_, i) => bucket.Slice(avg, i).DetachFromDisposeScope()).ToArray();
                    var avgSqViews = states.Select((_, i) => bucket.Slice(avgSq, i).DetachFromDisposeScope()).ToArray();
                    for (int i = 0; i < states.Length; i++)
                    {
                        // The state's values (zeros when new, a loaded state's otherwise) move into the buffers.
                        avgViews[i].copy_(states[i].exp_avg);
                        avgSqViews[i].copy_(states[i].exp_avg_sq);
                        states[i].exp_avg.Dispose();
                        states[i].exp_avg_sq.Dispose();
                        (states[i].exp_avg, states[i].exp_avg_sq) = (avgViews[i], avgSqViews[i]);
                    }
                    return new Moments(avg, avgSq, states, avgViews, avgSqViews);
                }).ToArray());
        }

        public override Tensor step(Func<Tensor>? closure = null)
        {
            Refresh();
            return _step<ParamGroup>(Step, closure);
        }

        private void Step(ParamGroup group)
        {
            var options = (Options)group.Options;
            if (options.amsgrad == true || options.maximize == true) throw new NotSupportedException("The flat Adam offers neither amsgrad nor maximize.");
            int g = _parameter_groups.IndexOf(group);
            for (int b = 0; b < _groups.Buckets[g].Length; b++)
            {
                var bucket = _groups.Buckets[g][b];
                var m = _moments[g][b];
                MomentsInPlace(m);
                // One update for the whole bucket where every member has its gradient there and all share one step count.
                if (bucket.GradientsInPlace() && m.States.All(s => s.step == m.States[0].step))
                {
                    long step = m.States[0].step + 1;
                    foreach (var s in m.States) s.step = step;
                    foreach (var (from, length) in FlatBucket.Chunks(bucket.Values))
                    {
                        using var scope = NewDisposeScope();
                        Update(bucket.Values.narrow(0, from, length), bucket.Gradients.narrow(0, from, length),
                            m.Avg.narrow(0, from, length), m.AvgSq.narrow(0, from, length), step, options);
                    }
                }
                else
                {
                    for (int i = 0; i < m.States.Length; i++) StepOne(bucket.Members[i], m.States[i], options);
                }
            }
            foreach (var p in _groups.Rest[g]) StepOne(p, (TorchSharp.Modules.Adam.State)_state[p.Handle], options);
        }

        public override void zero_grad() => _groups.ZeroGradients();

        /// <summary>Frees the moments' buffers and the buckets' handles (TorchSharp's Adam frees the per-parameter states).</summary>
        protected override void Dispose(bool disposing)
        {
            base.Dispose(disposing);
            if (!disposing) return;
            foreach (var m in _moments.SelectMany(g => g))
            {
                m.Avg.Dispose();
                m.AvgSq.Dispose();
                foreach (var v in m.AvgViews.Concat(m.AvgSqViews)) v.Dispose();
            }
            _moments.Clear();
            _groups.Release();
        }

        /// <summary>A state whose moments were replaced as a whole (loaded from another optimiser, moved): copied back into the buffers.</summary>
        private static void MomentsInPlace(Moments m)
        {
            using var _ = no_grad();
            for (int i = 0; i < m.States.Length; i++)
            {
                var s = m.States[i];
                if (!ReferenceEquals(s.exp_avg, m.AvgViews[i])) { m.AvgViews[i].copy_(s.exp_avg); s.exp_avg.Dispose(); s.exp_avg = m.AvgViews[i]; }
                if (!ReferenceEquals(s.exp_avg_sq, m.AvgSqViews[i])) { m.AvgSqViews[i].copy_(s.exp_avg_sq); s.exp_avg_sq.Dispose(); s.exp_avg_sq = m.AvgSqViews[i]; }
            }
        }

        private static void StepOne(Parameter p, TorchSharp.Modules.Adam.State state, Options options)
        {
            using var scope = NewDisposeScope();
            using var grad = p.grad;
            if (grad is null) return;
            state.step++;
            Update(p, grad, state.exp_avg, state.exp_avg_sq, state.step, options);
        }

        /// <summary>torch.optim.Adam's update, in TorchSharp's order of operations.</summary>
        private static void Update(Tensor param, Tensor grad, Tensor avg, Tensor avgSq, long step, Options options)
        {
            double beta1 = options.beta1!.Value, beta2 = options.beta2!.Value, lr = options.LearningRate!.Value;
            double bias1 = 1 - Math.Pow(beta1, step), bias2 = 1 - Math.Pow(beta2, step);
            double wd = options.weight_decay ?? 0;
            using var decay = Scalars.Of(wd);
            using var keep1 = Scalars.Of(beta1);
            using var take1 = Scalars.Of(1 - beta1);
            using var keep2 = Scalars.Of(beta2);
            using var take2 = Scalars.Of(1 - beta2);
            using var correction2 = Scalars.Of(Math.Sqrt(bias2));
            using var eps = Scalars.Of(options.eps!.Value);
            using var stepSize = Scalars.Of(-lr / bias1);
            var g = wd != 0 ? grad.add(param, decay) : grad;
            avg.mul_(keep1).add_(g, take1);
            avgSq.mul_(keep2).addcmul_(g, g, take2);
            var denom = avgSq.sqrt().div(correction2).add_(eps, Scalars.One);
            param.addcdiv_(avg, denom, stepSize);
        }
    }

    /// <summary>
    /// Plain SGD (no momentum; L2 weight decay added to the gradient), as the gates train, over <see cref="FlatBucket"/>s:
    /// one or two kernels per bucket. It keeps no state, and TorchSharp's SGD state format (empty momentum buffers) for
    /// checkpoints.
    /// </summary>
    public sealed class SGD : TorchSharp.Modules.SGD
    {
        private readonly FlatGroups _groups;

        /// <param name="perParameter">Step every parameter on its own, in place, without a buffer.</param>
        public SGD(IEnumerable<Parameter> parameters, double lr, double weightDecay = 0, bool perParameter = false) : base(parameters, lr, weight_decay: weightDecay)
        {
            _groups = new FlatGroups(_parameter_groups, perParameter);
            _groups.Refresh();
        }

        public override Tensor step(Func<Tensor>? closure = null)
        {
            _groups.Refresh();
            return _step<ParamGroup>(Step, closure);
        }

        private void Step(ParamGroup group)
        {
            var options = group.Options;
            if (options.momentum is { } mo && mo != 0 || options.maximize == true) throw new NotSupportedException("The flat SGD offers neither momentum nor maximize.");
            double lr = options.LearningRate!.Value, wd = options.weight_decay ?? 0;
            int g = _parameter_groups.IndexOf(group);
            foreach (var bucket in _groups.Buckets[g])
            {
                if (bucket.GradientsInPlace())
                    foreach (var (from, length) in FlatBucket.Chunks(bucket.Values))
                    {
                        using var scope = NewDisposeScope();
                        Update(bucket.Values.narrow(0, from, length), bucket.Gradients.narrow(0, from, length), lr, wd);
                    }
                else foreach (var p in bucket.Members) StepOne(p, lr, wd);
            }
            foreach (var p in _groups.Rest[g]) StepOne(p, lr, wd);
        }

        public override void zero_grad() => _groups.ZeroGradients();

        protected override void Dispose(bool disposing)
        {
            base.Dispose(disposing);
            if (disposing) _groups.Release();
        }

        private static void StepOne(Parameter p, double lr, double wd)
        {
            using var scope = NewDisposeScope();
            using var grad = p.grad;
            if (grad is not null) Update(p, grad, lr, wd);
        }

        private static void Update(Tensor param, Tensor grad, double lr, double wd)
        {
            using var decay = Scalars.Of(wd);
            using var stepSize = Scalars.Of(-lr);
            param.add_(wd != 0 ? grad.add(param, decay) : grad, stepSize);
        }
    }
}
