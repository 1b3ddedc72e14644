using InterroGate.Tasks;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>
/// A user data set split whose images stay in their .npy file: a batch reads only its own rows, with positioned reads,
/// so a data set larger than memory (CelebA-sized folders) trains in the memory of a few batches; the operating
/// system's page cache keeps what fits. (A memory map would do the same reads, but every page an epoch touches would
/// then count as the process's resident memory.) The targets (small) are held in memory. <see cref="Subset"/> views
/// part of it without copying (the held-out validation split).
/// </summary>
public sealed class FileImageDataset : IMultiTaskDataset, IDisposable
{
    private readonly SafeFileHandle _file;
    private readonly NpyHeader _header;
    private readonly long _rowBytes;
    private readonly Dictionary<string, Tensor> _targets;
    private readonly long[]? _rows; // the file rows this data set is made of; null = all, in order
    private readonly ImageInput _input;
    private readonly bool _owner;

    /// <summary>Opens <paramref name="imagesPath"/> ([N, H, W] or [N, C, H, W], uint8 or float32) with <paramref name="targets"/> per task ([N, ...]).</summary>
    public FileImageDataset(string name, TaskSet tasks, string imagesPath, IReadOnlyDictionary<string, Tensor> targets)
    {
        _header = Npy.ReadHeader(imagesPath);
        var s = _header.Shape;
        // Rows are read from the file as they are needed, which needs them stored one after another (C order).
        if (_header.FortranOrder && s.Length > 1)
            throw new DataFormatException(imagesPath, "is stored in Fortran order (as NumPy saves a transposed array), and images are read row by row " +
                                                      "from the file: write it with np.save(path, np.ascontiguousarray(images))");
        if (s.Length is not (3 or 4)) throw new DataFormatException(imagesPath, $"images must be [N, H, W] or [N, C, H, W], not ({string.Join(", ", s)})");
        if (_header.DType is not ("u1" or "f4")) throw new DataFormatException(imagesPath, $"images must be uint8 or float32, not {_header.DType}");
        if (s[0] > int.MaxValue) throw new DataFormatException(imagesPath, $"{s[0]} images; at most {int.MaxValue}");
        // NumPy's usual image layout, [N, H, W, C], read as [N, C, H, W] would train a model of H channels on images W pixels wide.
        // (An RGB or RGBA last dimension only: [N, C, L, 1] is a fair layout for one-dimensional signals.)
        if (s.Length == 4 && s[3] is 3 or 4 && s[1] > 4 && s[2] > 4)
            throw new DataFormatException(imagesPath, $"images of shape ({string.Join(", ", s)}) look like [N, H, W, C] ({s[1]}×{s[2]} with {s[3]} channel{(s[3] == 1 ? "" : "s")}); " +
                                                      "the folder format is [N, C, H, W]: write them with np.save(path, images.transpose(0, 3, 1, 2))");
        (int c, int h, int w) = s.Length == 3 ? (1, (int)s[1], (int)s[2]) : ((int)s[1], (int)s[2], (int)s[3]);
        foreach (var t in tasks)
        {
            if (!targets.TryGetValue(t.Name, out var y)) throw new ArgumentException($"{name}: no targets for task '{t.Name}'.");
            if (y.shape[0] != s[0]) throw new DataFormatException(imagesPath, $"task '{t.Name}' has {y.shape[0]} targets for {s[0]} images");
        }
        Name = name;
        Tasks = tasks;
        ImageShape = (c, h, w);
        _input = new ImageInput(c, h, w);
        _rowBytes = (long)c * h * w * (_header.DType == "u1" ? 1 : 4);
        _targets = tasks.ToDictionary(t => t.Name, t => targets[t.Name].detach().DetachFromDisposeScope());
        _file = File.OpenHandle(imagesPath, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        _owner = true;
    }

    private FileImageDataset(FileImageDataset parent, string name, long[] rows)
    {
        (_file, _header, _rowBytes, _targets, _input, _owner) = (parent._file, parent._header, parent._rowBytes, parent._targets, parent._input, false);
        (Name, Tasks, ImageShape) = (name, parent.Tasks, parent.ImageShape);
        _rows = rows.Select(r => parent._rows is null ? r : parent._rows[r]).ToArray();
    }

    public string Name { get; }
    public TaskSet Tasks { get; }
    public int Count => _rows?.Length ?? (int)_header.Shape[0];
    public (int Channels, int Height, int Width) ImageShape { get; }
    public ImageInput Input => _input;

    /// <summary>The samples at <paramref name="indices"/> of this data set, as a new data set sharing the file.</summary>
    public FileImageDataset Subset(string name, long[] indices)
    {
        foreach (var i in indices)
            if (i < 0 || i >= Count) throw new ArgumentOutOfRangeException(nameof(indices), i, $"0 to {Count - 1}");
        return new FileImageDataset(this, name, indices);
    }

    public unsafe Dictionary<string, Tensor> GetBatch(ReadOnlySpan<long> indices)
    {
        using var scope = NewDisposeScope();
        var (c, h, w) = ImageShape;
        var rows = new long[indices.Length];
        for (int i = 0; i < rows.Length; i++) rows[i] = _rows is null ? indices[i] : _rows[indices[i]];
        var images = empty([rows.Length, c, h, w], dtype: _header.DType == "u1" ? ScalarType.Byte : ScalarType.Float32);
        nint data = images.dtype == ScalarType.Byte ? images.storage<byte>().data_ptr() : images.storage<float>().data_ptr();
        var target = new Span<byte>((void*)data, checked((int)(rows.Length * _rowBytes)));
        for (int i = 0; i < rows.Length; i++)
        {
            var row = target.Slice((int)(i * _rowBytes), (int)_rowBytes);
            if (RandomAccess.Read(_file, row, _header.DataOffset + rows[i] * _rowBytes) != row.Length)
                throw new DataFormatException(Name, $"the images file ended before row {rows[i]} (changed while training?)");
        }
        var idx = tensor(rows, dtype: int64);
        var batch = new Dictionary<string, Tensor>
        {
            [IMultiTaskDataset.ImageKey] = (images.dtype == ScalarType.Byte ? _input.FromBytes(images) : images).MoveToOuterDisposeScope(),
        };
        foreach (var (name, y) in _targets) batch[name] = y.index_select(0, idx).MoveToOuterDisposeScope();
        return batch;
    }

    public void Dispose()
    {
        if (_owner) _file.Dispose();
    }
}
