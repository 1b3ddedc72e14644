using InterroGate.Gating;

namespace InterroGate.Tests.Gating;

public sealed class SharingPatternTests
{
    [Fact]
    public void Keeps_task_filters_whose_gate_is_on_shared_filters_some_task_reads_and_mixes_where_a_task_reads_its_own()
    {
        // Two tasks, four channels: both own (0), only task 0 own (1), only task 1 own (2), both shared (3).
        var pattern = SharingPattern.FromGates([[[true, true, false, false], [true, false, true, false]]]);
        var layer = pattern[0];
        Assert.Equal([0L, 1L], layer.Kept[0]);
        Assert.Equal([0L, 2L], layer.Kept[1]);
        Assert.Equal([1L, 2L, 3L], layer.Kept[layer.SharedBranch]);
        Assert.Equal([0L, 1L, 2L], layer.Mixed);
        Assert.True(layer.IsSplit(0));
        Assert.Equal(0.5, pattern.TaskSpecificFraction(1));

        var whole = SharingPattern.FromGates([[[true, true], [true, true]], [[false, false], [false, false]]]);
        Assert.Empty(whole[0].Kept[2]);   // every task reads its own copy: no shared filter
        Assert.Empty(whole[1].Mixed);     // every task reads the shared copy: no mix
        Assert.False(whole[0].IsSplit(0));
        Assert.Equal(0.5, whole.TaskSpecificFraction(0));
    }

    [Fact]
    public void Gates_of_different_shapes_are_refused()
    {
        Assert.Throws<ArgumentException>(() => SharingPattern.FromGates([]));
        Assert.Throws<ArgumentException>(() => SharingPattern.FromGates([[[true], [true, false]]]));
        Assert.Throws<ArgumentException>(() => SharingPattern.FromGates([[[true], [false]], [[true]]]));
    }
}
