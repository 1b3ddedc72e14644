using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>Where a training run holds its in-memory data sets (<c>training.dataOn</c>).</summary>
public enum DataResidence
{
    /// <summary>On the GPU when training there and the in-memory splits take at most <see cref="DeviceResidence.AutoLimitBytes"/>; else in host memory.</summary>
    Auto,
    /// <summary>On the training device whenever the splits are in memory.</summary>
    Device,
    /// <summary>In host memory; each batch is copied to the device (overlapping the previous step).</summary>
    Host,
}

/// <summary>
/// Copies the in-memory training and validation splits to the training device, so that a batch is gathered there
/// instead of being assembled in host memory and copied every step. Splits read from files stay in host memory.
/// </summary>
public static class DeviceResidence
{
    /// <summary>The most the in-memory training and validation splits may take to be kept on a GPU under <see cref="DataResidence.Auto"/>.</summary>
    public const long AutoLimitBytes = 2L << 30;

    /// <summary>
    /// The splits as a run on <paramref name="device"/> reads them, the device copies it made (the caller disposes them
    /// when the run ends) and a line saying what was placed where (null when nothing moved and nothing needs saying).
    /// </summary>
    public static (DatasetSplits Splits, IReadOnlyList<InMemoryDataset> Copies, string? Message) Place(DatasetSplits data, DataResidence residence, Device device)
    {
        var none = (data, (IReadOnlyList<InMemoryDataset>)Array.Empty<InMemoryDataset>(), (string?)null);
        if (residence == DataResidence.Host || device.type == TorchSharp.DeviceType.CPU) return none;
        if (data.Train is not InMemoryDataset train || data.Validation is not InMemoryDataset validation)
            return residence == DataResidence.Device
                ? none with { Item3 = $"training.dataOn=device: {data.Train.Name} is read from files, so its batches are assembled in host memory and copied to {device}" }
                : none;
        long bytes = train.Bytes + validation.Bytes;
        if (residence == DataResidence.Auto && bytes > AutoLimitBytes)
            return none with { Item3 = $"the training and validation splits take {Mib(bytes)}, more than the {Mib(AutoLimitBytes)} kept on a GPU by default; they stay in host memory (training.dataOn=device keeps them there anyway)" };
        var onDevice = train.To(device);
        var validationOnDevice = ReferenceEquals(validation, train) ? onDevice : validation.To(device);
        var copies = ReferenceEquals(validation, train) ? new[] { onDevice } : new[] { onDevice, validationOnDevice };
        return (data with { Train = onDevice, Validation = validationOnDevice }, copies, $"training and validation splits ({Mib(bytes)}) held on {device}");
    }

    private static string Mib(long bytes) => $"{bytes / (1024.0 * 1024.0):F0} MiB";
}
