using System.Reflection;
using System.Reflection.Emit;
using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Heads;
using InterroGate.Tasks;
using InterroGate.Tensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InterroGate.Tests.Conventions;

/// <summary>
/// The library never hands libtorch a scalar that a garbage collection could free during the call (<see cref="Scalars"/>):
/// its compiled code is read for every call that makes one, directly (an implicit conversion to <see cref="Scalar"/>) or
/// inside TorchSharp (a method of TorchSharp's that makes one, such as <c>a + b</c> of two tensors or
/// <c>BatchNorm2d.forward</c>), and every model's batch norms are checked to run through <see cref="Layers.BatchNorms"/>.
/// </summary>
[Collection("Torch")]
public sealed class ScalarLifetimeTests
{
    private const BindingFlags Declared = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);
    private static readonly Lazy<HashSet<MethodBase>> TorchSharpScalarMakers = new(ScalarMakersIn);

    private static IEnumerable<MethodBase> MethodsOf(Assembly assembly) =>
        assembly.GetTypes().SelectMany(t => t.GetMethods(Declared).Cast<MethodBase>().Concat(t.GetConstructors(Declared)));

    /// <summary>The instructions of <paramref name="method"/>'s body: opcode and operand (0 when it has none, the token or
    /// the local's index otherwise; switch tables and 8-byte operands are skipped).</summary>
    private static List<(OpCode Op, int Operand)> InstructionsOf(MethodBase method)
    {
        var result = new List<(OpCode, int)>();
        byte[]? il;
        try { il = method.GetMethodBody()?.GetILAsByteArray(); }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException or BadImageFormatException) { return result; }
        if (il is null) return result;
        for (int i = 0; i < il.Length;)
        {
            short value = il[i++];
            if (value == 0xFE) value = (short)(0xFE00 | il[i++]);
            var op = OpCodesByValue[value];
            int size = op.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
                _ => 4,
            };
            int operand = size switch { 1 => il[i], 2 => BitConverter.ToUInt16(il, i), 4 => BitConverter.ToInt32(il, i), _ => 0 };
            result.Add((op, operand));
            i += size;
        }
        return result;
    }

    private static MethodBase? Resolve(MethodBase method, int token)
    {
        var typeArgs = method.DeclaringType is { IsGenericType: true } d ? d.GetGenericArguments() : null;
        var methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        try { return method.Module.ResolveMethod(token, typeArgs, methodArgs); }
        catch (ArgumentException) { return null; }
    }

    private static bool IsCall(OpCode op) => op == OpCodes.Call || op == OpCodes.Callvirt || op == OpCodes.Newobj || op == OpCodes.Ldftn;

    /// <summary>The methods <paramref name="method"/>'s body calls (call, callvirt, newobj, ldftn), read from its IL.</summary>
    private static IEnumerable<MethodBase> CallsOf(MethodBase method) =>
        InstructionsOf(method).Where(x => IsCall(x.Op)).Select(x => Resolve(method, x.Operand)).OfType<MethodBase>();

    /// <summary>The local an instruction stores to or loads from, or null.</summary>
    private static int? LocalOf((OpCode Op, int Operand) x, bool store)
    {
        var (op, operand) = x;
        if (store)
            return op == OpCodes.Stloc_0 ? 0 : op == OpCodes.Stloc_1 ? 1 : op == OpCodes.Stloc_2 ? 2 : op == OpCodes.Stloc_3 ? 3
                : op == OpCodes.Stloc_S || op == OpCodes.Stloc ? operand : null;
        return op == OpCodes.Ldloc_0 ? 0 : op == OpCodes.Ldloc_1 ? 1 : op == OpCodes.Ldloc_2 ? 2 : op == OpCodes.Ldloc_3 ? 3
            : op == OpCodes.Ldloc_S || op == OpCodes.Ldloc ? operand : null;
    }

    /// <summary>A conversion that makes a new <see cref="Scalar"/> from a number.</summary>
    private static bool MakesScalar(MethodBase m) =>
        m.DeclaringType == typeof(Scalar) && m.Name == "op_Implicit" || m.DeclaringType == typeof(ScalarExtensionMethods);

    /// <summary>TorchSharp's methods that make a scalar themselves, or call one that does (to a fixed point).</summary>
    private static HashSet<MethodBase> ScalarMakersIn()
    {
        var methods = MethodsOf(typeof(torch).Assembly).ToArray();
        var calls = methods.ToDictionary(m => m, m => CallsOf(m).ToArray());
        var makers = methods.Where(m => calls[m].Any(MakesScalar)).ToHashSet();
        for (bool grew = true; grew;)
        {
            grew = false;
            foreach (var m in methods)
                if (!makers.Contains(m) && calls[m].Any(makers.Contains)) grew = makers.Add(m);
        }
        return makers;
    }

    /// <summary>Calls in <paramref name="methods"/> that make a scalar nothing keeps alive, as "Type.Method -> callee".</summary>
    private static string[] Offenders(IEnumerable<MethodBase> methods) =>
        methods.Where(m => m.DeclaringType != typeof(Scalars))
            .SelectMany(m => CallsOf(m).Where(t => MakesScalar(t) || TorchSharpScalarMakers.Value.Contains(t))
                .Select(t => $"{m.DeclaringType?.FullName}.{m.Name} -> {t.DeclaringType?.Name}.{t.Name}"))
            .Distinct().ToArray();

    // What the scan must find (it would pass vacuously on an empty set otherwise).
    private static void ImplicitAlpha(Tensor a, Tensor b) => (a + b).Dispose();
    private static void ImplicitScalar(Tensor a) => a.add_(1);
    private static void KeptAlive(Tensor a, Tensor b) { a.Plus(b).Dispose(); a.add_(Scalars.One, Scalars.One); }

    [Fact]
    public void The_scans_read_every_method_of_the_library_whole()
    {
        // InstructionsOf and Resolve treat a body they cannot read, or a call they cannot resolve, as calling nothing:
        // in the library itself there must be none, or the scans below could pass over an offender.
        var unread = new List<string>();
        foreach (var m in MethodsOf(typeof(Scalars).Assembly))
        {
            try { m.GetMethodBody()?.GetILAsByteArray(); }
            catch (Exception e) when (e is InvalidOperationException or NotSupportedException or BadImageFormatException)
            {
                unread.Add($"{m.DeclaringType}.{m.Name}: {e.Message}");
                continue;
            }
            foreach (var x in InstructionsOf(m).Where(x => IsCall(x.Op)))
                if (Resolve(m, x.Operand) is null) unread.Add($"{m.DeclaringType}.{m.Name}: call token 0x{x.Operand:X8}");
        }
        Assert.Empty(unread);
        Assert.NotEmpty(CallsOf(((Action<Tensor, Tensor>)KeptAlive).Method)); // and the reading itself finds calls
    }

    [Fact]
    public void The_library_makes_no_scalar_that_a_collection_could_free_during_the_call()
    {
        Assert.Contains(Offenders([((Action<Tensor, Tensor>)ImplicitAlpha).Method]), o => o.EndsWith("Tensor.op_Addition", StringComparison.Ordinal));
        Assert.Contains(Offenders([((Action<Tensor>)ImplicitScalar).Method]), o => o.EndsWith("Scalar.op_Implicit", StringComparison.Ordinal));
        Assert.Empty(Offenders([((Action<Tensor, Tensor>)KeptAlive).Method]));
        Assert.Contains(TorchSharpScalarMakers.Value, m => m.DeclaringType == typeof(BatchNorm) && m.Name == "forward");

        Assert.Empty(Offenders(MethodsOf(typeof(Scalars).Assembly)));
    }

    /// <summary>
    /// TorchSharp optimisers that <paramref name="methods"/> make (a <c>newobj</c> of one, or a TorchSharp factory that
    /// returns one, as <c>optim.Adam</c>) whose <c>step</c> makes scalars. The scan above cannot see those: the library calls
    /// <c>step</c> through the base type, whose own method makes none.
    /// </summary>
    private static string[] ScalarMakingOptimizers(IEnumerable<MethodBase> methods)
    {
        static bool Steps(Type? t) => t is not null && t.Assembly == typeof(torch).Assembly && typeof(OptimizerHelper).IsAssignableFrom(t)
            && t.GetMethods(Declared).Any(m => m.Name == "step" && TorchSharpScalarMakers.Value.Contains(m));
        return methods.SelectMany(m => InstructionsOf(m).Where(x => IsCall(x.Op)).Select(x => (x.Op, Target: Resolve(m, x.Operand)))
                .Where(c => c.Op == OpCodes.Newobj && c.Target is ConstructorInfo ctor && Steps(ctor.DeclaringType)
                            || c.Target is MethodInfo f && f.DeclaringType?.Assembly == typeof(torch).Assembly && Steps(f.ReturnType))
                .Select(c => $"{m.DeclaringType?.FullName}.{m.Name} -> {c.Target!.DeclaringType?.Name}.{c.Target.Name}"))
            .Distinct().ToArray();
    }

    // What the optimiser scan must find, and what it must let pass (a subclass whose step is the library's).
    private static OptimizerHelper FactoryAdam(IEnumerable<Parameter> ps) => optim.Adam(ps, 1e-3);
    private static OptimizerHelper ConstructedSgd(IEnumerable<Parameter> ps) => new TorchSharp.Modules.SGD(ps, 0.1);
    private static OptimizerHelper LibraryAdam(IEnumerable<Parameter> ps) => new InterroGate.Training.Flat.Adam(ps, 1e-3, perParameter: true);

    [Fact]
    public void The_library_makes_no_TorchSharp_optimiser_whose_step_makes_scalars()
    {
        Assert.Single(ScalarMakingOptimizers([((Func<IEnumerable<Parameter>, OptimizerHelper>)FactoryAdam).Method]));
        Assert.Single(ScalarMakingOptimizers([((Func<IEnumerable<Parameter>, OptimizerHelper>)ConstructedSgd).Method]));
        Assert.Empty(ScalarMakingOptimizers([((Func<IEnumerable<Parameter>, OptimizerHelper>)LibraryAdam).Method]));
        Assert.Empty(ScalarMakingOptimizers(MethodsOf(typeof(Scalars).Assembly)));
    }

    /// <summary>
    /// Calls to <see cref="Scalars.Of(double)"/> in <paramref name="method"/> whose scalar is not stored in a local of type
    /// <see cref="Scalar"/> that the method disposes (what <c>using var s = Scalars.Of(x)</c> compiles to: the local is
    /// loaded just before <c>IDisposable.Dispose</c>), so that the scalar may be collected during the call that reads it.
    /// </summary>
    private static int UndisposedScalars(MethodBase method)
    {
        var code = InstructionsOf(method);
        var locals = method.GetMethodBody()!.LocalVariables;
        var disposed = code.Select((x, i) => (x, i))
            .Where(p => p.i + 1 < code.Count && LocalOf(p.x, store: false) is not null && IsCall(code[p.i + 1].Op)
                        && Resolve(method, code[p.i + 1].Operand)?.Name == nameof(IDisposable.Dispose))
            .Select(p => LocalOf(p.x, store: false)!.Value).ToHashSet();
        int undisposed = 0;
        for (int i = 0; i < code.Count; i++)
        {
            if (!IsCall(code[i].Op) || Resolve(method, code[i].Operand) is not { } target
                || target.DeclaringType != typeof(Scalars) || target.Name != nameof(Scalars.Of)) continue;
            bool kept = i + 1 < code.Count && LocalOf(code[i + 1], store: true) is int local
                        && locals[local].LocalType == typeof(Scalar) && disposed.Contains(local);
            if (!kept) undisposed++;
        }
        return undisposed;
    }

    // What the disposal check must tell apart.
    private static void HeldInUsing(Tensor a, double v) { using var s = Scalars.Of(v); a.mul_(s); }
    private static void PassedInline(Tensor a, double v) { using var other = Scalars.Of(v); a.mul_(other).mul_(Scalars.Of(v)); }

    [Fact]
    public void Every_scalar_made_at_run_time_is_held_until_the_method_that_makes_it_disposes_it()
    {
        Assert.Equal(0, UndisposedScalars(((Action<Tensor, double>)HeldInUsing).Method));
        Assert.Equal(1, UndisposedScalars(((Action<Tensor, double>)PassedInline).Method)); // another scalar's Dispose does not cover it

        var of = typeof(Scalars).GetMethods().Where(m => m.Name == nameof(Scalars.Of)).ToHashSet<MethodBase>();
        var makers = MethodsOf(typeof(Scalars).Assembly).Where(m => m.DeclaringType != typeof(Scalars) && CallsOf(m).Any(of.Contains)).ToArray();
        Assert.True(makers.Length >= 10, $"{makers.Length} methods make run-time scalars");
        var undisposed = makers.Where(m => UndisposedScalars(m) > 0).Select(m => $"{m.DeclaringType?.FullName}.{m.Name}").ToArray();
        Assert.Empty(undisposed);
    }

    [Theory]
    [InlineData(0.1, true, true, true)]
    [InlineData(null, true, true, true)]   // cumulative average: the factor is 1 / batches seen
    [InlineData(0.1, false, true, true)]   // eval: running statistics
    [InlineData(0.1, true, false, true)]   // no affine parameters
    [InlineData(0.1, true, true, false)]   // no running statistics
    public void BatchNorms_Forward_computes_what_TorchSharps_forward_does(double? momentum, bool training, bool affine, bool track)
    {
        manual_seed(1);
        using var ours = nn.BatchNorm2d(3, momentum: momentum ?? 0.1, affine: affine, track_running_stats: track);
        using var theirs = nn.BatchNorm2d(3, momentum: momentum ?? 0.1, affine: affine, track_running_stats: track);
        ours.momentum = theirs.momentum = momentum;
        if (affine)
            using (no_grad())
                foreach (var m in new[] { ours, theirs }) { m.weight!.copy_(tensor(new float[] { 0.5f, 1, 2 })); m.bias!.copy_(tensor(new float[] { -1f, 0, 1 })); }
        ours.train(training);
        theirs.train(training);
        for (int step = 0; step < 3; step++)
        {
            var x = randn(4, 3, 5, 5) * (step + 1);
            using var a = Layers.BatchNorms.Forward(ours, x);
            using var b = theirs.call(x);
            Assert.True(a.allclose(b, rtol: 0, atol: 0), $"step {step}: outputs differ");
        }
        if (!track) return;
        Assert.True(ours.running_mean!.allclose(theirs.running_mean!, rtol: 0, atol: 0) && ours.running_var!.allclose(theirs.running_var!, rtol: 0, atol: 0));
        Assert.Equal(theirs.num_batches_tracked!.item<long>(), ours.num_batches_tracked!.item<long>());
        Assert.Equal(training ? 3L : 0L, ours.num_batches_tracked!.item<long>());
    }

    public static TheoryData<string, string, string, int, int> Models => new()
    {
        { "stl", "resnet20", "", 1, 16 },
        { "mtl", "resnet20", "", 1, 16 },
        { "interrogate", "resnet20", "", 1, 16 },
        { "interrogate-fused", "resnet20", "", 1, 16 },
        { "mtan", "resnet20", "", 1, 16 },
        { "cross-stitch", "resnet20", "", 1, 16 },
        { "interrogate", "resnet20", "aspp", 3, 32 },
        { "interrogate", "hrnet18-small", "hrnet", 3, 32 }, // the gated plan
        { "mtl", "hrnet18-small", "hrnet", 3, 32 },         // the plain encoder: fuse layers and transitions in Chains
        { "interrogate", "vit_cpu_patch4_32", "dpt", 3, 32 },
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void Every_batch_norm_of_a_training_forward_pass_runs_through_the_library(string architecture, string backbone, string dense, int channels, int size)
    {
        var tasks = dense == ""
            ? new TaskSet([new TaskSpec("a", TaskKind.Classification, 3), new TaskSpec("b", TaskKind.Classification, 4)])
            : new TaskSet([new TaskSpec("semseg", TaskKind.Segmentation, 5), new TaskSpec("depth", TaskKind.Depth, 1)]);
        ArchitectureConfig arch = architecture switch
        {
            "interrogate" => new InterroGateConfig { AlphaInit = 0.01 },
            "interrogate-fused" => new InterroGateConfig { AlphaInit = 0.01, Fusion = InterroGate.Gating.BranchFusion.On },
            _ => Registry<ArchitectureConfig>.Default(architecture),
        };
        var config = new RunConfig
        {
            Backbone = new BackboneConfig { Name = backbone, Width = backbone == "resnet20" ? 0.25 : 1 },
            Head = dense switch { "" => new HeadConfig(), "dpt" => new HeadConfig { Dense = "dpt", DptFeatures = 16 }, _ => new HeadConfig { Dense = dense, Channels = 8 } },
            Architecture = arch,
        };
        manual_seed(0);
        using var model = Factory.CreateModel(config, tasks, (channels, size, size));
        var norms = model.modules().OfType<BatchNorm2d>().ToArray();
        Assert.NotEmpty(norms);
        // TorchSharp modules whose forward makes a scalar of its own (BatchNorm2d's, run by the library instead).
        var unsafeModules = model.modules().Where(m => m is not BatchNorm2d && TorchSharpScalarMakers.Value.Any(f =>
            f.Name == "forward" && f.DeclaringType!.IsAssignableFrom(m.GetType()))).Select(m => m.GetType().Name).Distinct().ToArray();
        Assert.Empty(unsafeModules);

        int hooked = 0;
        var removers = norms.Select(n => n.register_forward_pre_hook(_ => hooked++)).ToArray();
        model.train();
        using (NewDisposeScope())
        {
            var outputs = model.call(randn(2, channels, size, size));
            Assert.Equal(tasks.Count, outputs.Count);
        }
        foreach (var r in removers) r.remove();

        Assert.Equal(0, hooked); // TorchSharp's BatchNorm.forward (which runs the hooks) was never called
        // Each counted its batch, through BatchNorms: once, or once per task for MTAN's attention encoders, which every
        // task's features pass through apart.
        var perTask = model.named_modules().Where(m => model is Mtan && m.name.StartsWith("stage.", StringComparison.Ordinal)).Select(m => m.module).ToHashSet();
        Assert.All(norms, n => Assert.Equal(perTask.Contains(n) ? tasks.Count : 1L, n.num_batches_tracked!.item<long>()));
    }
}
