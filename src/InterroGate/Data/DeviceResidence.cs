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
        var train = data.Train as InMemoryDataset;
        var validation = data.Validation as InMemoryDataset;
        bool shared = ReferenceEquals(train, validation);
        long bytes = train is not null && validation is not null ? train.Bytes + (shared ? 0 : validation.Bytes) : 0;
        var (place, message) = Decide(residence, device.type != TorchSharp.DeviceType.CPU, train is not null && validation is not null, bytes, data.Train.Name, device.ToString());
        if (!place) return (data, Array.Empty<InMemoryDataset>(), message);
        var onDevice = train!.To(device);
        var validationOnDevice = shared ? onDevice : validation!.To(device);
        var copies = shared ? new[] { onDevice } : new[] { onDevice, validationOnDevice };
        return (data with { Train = onDevice, Validation = validationOnDevice }, copies, message);
    }

    /// <summary>
    /// Whether to copy the splits to the device, and the line that says so (null where nothing needs saying), given the
    /// setting, whether training runs on a GPU, whether both splits are in memory and the bytes they take.
    /// </summary>
    public static (bool Place, string? Message) Decide(DataResidence residence, bool onGpu, bool inMemory, long bytes, string name, string device)
    {
        if (residence == DataResidence.Host || !onGpu) return (false, null);
        if (!inMemory)
            return (false, residence == DataResidence.Device
                ? $"training.dataOn=device: {name} is read from files, so its batches are assembled in host memory and copied to {device}"
                : null);
        if (residence == DataResidence.Auto && bytes > AutoLimitBytes)
            return (false, $"the training and validation splits take {Mib(bytes)}, more than the {Mib(AutoLimitBytes)} kept on a GPU by default; they stay in host memory (training.dataOn=device keeps them there anyway)");
        return (true, $"training and validation splits ({Mib(bytes)}) held on {device}");
    }

    private static string Mib(long bytes) => $"{bytes / (1024.0 * 1024.0):F0} MiB";
}
