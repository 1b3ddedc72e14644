using TorchSharp;
using static TorchSharp.torch;

namespace InterroGate.Tensors;

/// <summary>
/// Scalars handed to libtorch that stay alive until libtorch has read them.
/// <para>
/// TorchSharp turns a number passed where a <see cref="Scalar"/> is expected (<c>x * 0.5</c>, <c>x.gt(0)</c>,
/// <c>t.add_(1)</c>, and the alpha of 1 behind <c>a + b</c> of two tensors) into a new Scalar whose last managed use is
/// reading its native handle. A garbage collection started by another thread (the data loader's) while libtorch still
/// reads it can finalise it and free it under the call: the call fails ("Expected false to be true", "Unknown scalar
/// type") or computes with another scalar's value. bench/RESULTS.md ("A race in TorchSharp's implicit scalars")
/// measures it. The library therefore never makes such a scalar: constants come from the static fields here, which
/// are never collected, and values known only at run time from <see cref="Of(double)"/> into a <c>using</c> variable
/// (disposed after the call, so alive through it). <c>ScalarLifetimeTests</c> checks the compiled library for it.
/// </para>
/// </summary>
internal static class Scalars
{
    public static readonly Scalar Zero = 0.ToScalar();
    public static readonly Scalar One = 1.ToScalar();
    public static readonly Scalar MinusOne = (-1).ToScalar();
    public static readonly Scalar Half = 0.5.ToScalar();

    /// <summary>A scalar for a value known at run time; hold it in a <c>using</c> variable over the call that reads it.</summary>
    public static Scalar Of(double value) => value.ToScalar();

    /// <summary>An integer scalar (for integer tensors) known at run time; hold it as <see cref="Of(double)"/>.</summary>
    public static Scalar Of(long value) => value.ToScalar();

    /// <summary>a + b.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary>a += b, in place.</summary>
    public static Tensor PlusInPlace(this Tensor a, Tensor b) => a.add_(b, One);

    /// <summary>a + value·b, in place.</summary>
    public static Tensor PlusScaledInPlace(this Tensor a, Tensor b, double value)
    {
        using var s = Of(value);
        return a.add_(b, s);
    }

    /// <summary>a · value.</summary>
    public static Tensor Times(this Tensor a, double value)
    {
        using var s = Of(value);
        return a.mul(s);
    }

    /// <summary>a · value, in place.</summary>
    public static Tensor TimesInPlace(this Tensor a, double value)
    {
        using var s = Of(value);
        return a.mul_(s);
    }

    /// <summary>a / value.</summary>
    public static Tensor DividedBy(this Tensor a, double value)
    {
        using var s = Of(value);
        return a.div(s);
    }

    /// <summary>a + value.</summary>
    public static Tensor Shifted(this Tensor a, double value)
    {
        using var s = Of(value);
        return a.add(s, One);
    }

    /// <summary>1 − a.</summary>
    public static Tensor OneMinus(this Tensor a)
    {
        using var negated = a.neg();
        return negated.add(One, One);
    }

    /// <summary>a².</summary>
    public static Tensor Squared(this Tensor a) => a.mul(a);

    /// <summary>a clamped to [min, max] (either bound may be left open).</summary>
    public static Tensor Clamped(this Tensor a, double? min, double? max)
    {
        using var lo = min is { } l ? Of(l) : null;
        using var hi = max is { } h ? Of(h) : null;
        return a.clamp(lo, hi);
    }

    /// <summary>a clamped to [min, max] in place.</summary>
    public static Tensor ClampedInPlace(this Tensor a, double? min, double? max)
    {
        using var lo = min is { } l ? Of(l) : null;
        using var hi = max is { } h ? Of(h) : null;
        return a.clamp_(lo, hi);
    }

    /// <summary>Fills <paramref name="a"/> with zeros in place and returns it. TorchSharp's <c>zero_</c> returns a second
    /// handle to the tensor, which a caller outside a dispose scope would leave to its finalizer.</summary>
    public static Tensor ZeroInPlace(this Tensor a) => a.fill_(Zero);

    /// <summary>Zeroes <paramref name="p"/>'s gradient where it has one; the handle that reading <c>.grad</c> makes is freed here.</summary>
    public static void ZeroGradient(this Tensor p)
    {
        using var grad = p.grad;
        grad?.fill_(Zero);
    }
}
