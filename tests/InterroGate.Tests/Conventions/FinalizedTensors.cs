using TorchSharp;

namespace InterroGate.Tests.Conventions;

/// <summary>
/// Counts the tensors that finalizers have freed in this process: what the finalizer thread's dispose statistics hold,
/// read by an object whose finalizer runs on that thread. A tensor left to its finalizer can be freed while a native
/// call still reads it (when a collection runs during the call and the call held the last reference), so the
/// library's own paths must leave none.
/// </summary>
internal static class FinalizedTensors
{
    /// <summary>Runs pending finalizers, then returns how many tensors finalizers have freed so far.</summary>
    public static long Count()
    {
        Settle();
        long count = -1;
        Plant(v => count = v);
        Settle();
        if (count < 0) throw new InvalidOperationException("the probe's finalizer did not run");
        return count;
    }

    /// <summary>How many tensors that <paramref name="action"/> made ended with their finalizer.</summary>
    public static long During(Action action)
    {
        long before = Count();
        action();
        return Count() - before;
    }

    private static void Settle()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void Plant(Action<long> report) => _ = new Probe(report);

    private sealed class Probe(Action<long> report)
    {
        ~Probe()
        {
            var s = DisposeScopeManager.Statistics.TensorStatistics;
            report(s.DisposedOutsideScopeCount + s.DisposedInScopeCount);
        }
    }
}
