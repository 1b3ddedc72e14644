using System.Text;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace InterroGate.Data;

/// <summary>A NumPy array read from a .npy file: shape, dtype (as NumPy spells it) and raw little-endian bytes.</summary>
public sealed record NpyArray(long[] Shape, string DType, byte[] Data)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>A tensor of the array's own type and shape (bool becomes uint8).</summary>
    public Tensor ToTensor()
    {
        var t = DType switch
        {
            "u1" or "b1" => tensor(Data, dtype: ScalarType.Byte),
            "i1" => tensor(Data.Select(b => (sbyte)b).Select(v => (long)v).ToArray()),
            "i4" => tensor(Cast<int>()),
            "i8" => tensor(Cast<long>()),
            "f4" => tensor(Cast<float>()),
            "f8" => tensor(Cast<double>()),
            _ => throw new InvalidOperationException(DType),
        };
        return t.view(Shape);
    }

    public bool IsInteger => DType is "u1" or "i1" or "i4" or "i8" or "b1";

    private T[] Cast<T>() where T : unmanaged => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(Data).ToArray();
}

/// <summary>
/// What a .npy header says: shape, dtype (as NumPy spells it, without byte order), where the data bytes are, and whether
/// they are in Fortran order (first index fastest, as NumPy saves a transposed array).
/// </summary>
public sealed record NpyHeader(long[] Shape, string DType, long DataOffset, long DataBytes, bool FortranOrder = false);

/// <summary>Reads and writes NumPy .npy files (format 1.0, 2.0 and 3.0; little-endian; read in C or Fortran order, written in C order).</summary>
public static class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
    private static readonly Dictionary<string, int> ItemSize = new() { ["u1"] = 1, ["i1"] = 1, ["b1"] = 1, ["i4"] = 4, ["i8"] = 8, ["f4"] = 4, ["f8"] = 8 };

    /// <summary>
    /// The whole array in memory, in C order (up to 2 GB of data; larger files are read by <see cref="ReadHeader"/> and
    /// mapped). A Fortran-order file is reordered, as <c>np.load</c> gives it.
    /// </summary>
    public static NpyArray Read(string path)
    {
        var header = ReadHeader(path);
        long length = header.DataOffset + header.DataBytes;
        if (length > Array.MaxLength) throw new DataFormatException(path, $"{header.DataBytes} data bytes are more than one array holds; read it memory-mapped");
        var bytes = File.ReadAllBytes(path)[(int)header.DataOffset..];
        if (header.FortranOrder && header.Shape.Length > 1) bytes = ToCOrder(bytes, header.Shape, ItemSize[header.DType]);
        return new NpyArray(header.Shape, header.DType, bytes);
    }

    /// <summary>
    /// Fortran-order bytes of an array of <paramref name="shape"/> in C order: they are the C-order bytes of the reversed
    /// shape, so reversing the axes back (each element's <paramref name="item"/> bytes kept together) reorders them.
    /// </summary>
    private static byte[] ToCOrder(byte[] bytes, long[] shape, int item)
    {
        using var scope = NewDisposeScope();
        int n = shape.Length;
        var stored = tensor(bytes, dtype: ScalarType.Byte).view([.. shape.Reverse(), item]);
        var axes = Enumerable.Range(0, n).Reverse().Select(a => (long)a).Append(n).ToArray();
        return stored.permute(axes).contiguous().data<byte>().ToArray();
    }

    /// <summary>
    /// The header of a .npy file (shape, dtype, where the data starts), checked against the file's length before anything
    /// is read or allocated: the data must be exactly the bytes the shape and dtype need.
    /// </summary>
    public static NpyHeader ReadHeader(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, "file not found");
        using var f = File.OpenRead(path);
        long fileLength = f.Length;
        var lead = new byte[12];
        int got = f.ReadAtLeast(lead, lead.Length, throwOnEndOfStream: false);
        if (got < 10 || !lead.AsSpan(0, 6).SequenceEqual(Magic)) throw new DataFormatException(path, "bad magic: not a NumPy .npy file");
        int major = lead[6];
        int headerLength, start;
        switch (major)
        {
            case 1: headerLength = lead[8] | (lead[9] << 8); start = 10; break;
            case 2 or 3:
                if (got < 12) throw new DataFormatException(path, "truncated header");
                headerLength = BitConverter.ToInt32(lead, 8); start = 12; break;
            default: throw new DataFormatException(path, $"unsupported .npy format version {major}.{lead[7]} (1.0, 2.0 and 3.0 are read)");
        }
        if (headerLength < 0 || start + (long)headerLength > fileLength) throw new DataFormatException(path, $"truncated header: {headerLength} bytes announced, {fileLength - start} present");
        if (headerLength > 1 << 20) throw new DataFormatException(path, $"a header of {headerLength} bytes; .npy headers are short");
        var headerBytes = new byte[headerLength];
        f.Position = start;
        f.ReadExactly(headerBytes);
        string header = Encoding.UTF8.GetString(headerBytes);

        var descr = Regex.Match(header, @"'descr'\s*:\s*'([^']*)'");
        var fortran = Regex.Match(header, @"'fortran_order'\s*:\s*(True|False)");
        var shape = Regex.Match(header, @"'shape'\s*:\s*\(([^)]*)\)");
        if (!descr.Success || !fortran.Success || !shape.Success) throw new DataFormatException(path, $"unparsable header: {header.Trim()}");

        string d = descr.Groups[1].Value;
        if (d.Length == 3 && d[0] == '>' && d[1..] is not ("u1" or "i1" or "b1")) throw new DataFormatException(path, $"big-endian dtype '{d}' is not supported");
        string type = d.Length == 3 && d[0] is '<' or '|' or '=' ? d[1..] : d;
        if (!ItemSize.TryGetValue(type, out int item))
            throw new DataFormatException(path, $"unsupported dtype '{d}'; supported: {string.Join(", ", ItemSize.Keys.Select(k => "<" + k))}");

        long[] dims;
        try
        {
            dims = shape.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(long.Parse).ToArray();
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new DataFormatException(path, $"unparsable shape ({shape.Groups[1].Value})");
        }
        if (dims.Any(x => x < 0)) throw new DataFormatException(path, $"negative dimension in shape ({string.Join(", ", dims)})");
        long count = 1;
        foreach (var dim in dims)
            count = dim == 0 ? 0 : count > long.MaxValue / dim / item ? throw new DataFormatException(path, $"shape ({string.Join(", ", dims)}) is too large") : count * dim;
        long dataStart = start + headerLength, expected = count * item, actual = fileLength - dataStart;
        if (actual != expected)
            throw new DataFormatException(path, $"wrong length: shape ({string.Join(", ", dims)}) of {d} needs {expected} data bytes, the file has {actual}");
        return new NpyHeader(dims, type, dataStart, expected, fortran.Groups[1].Value == "True");
    }

    public static void Write(string path, long[] shape, float[] data) => Write(path, shape, "<f4", System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()).ToArray());
    public static void Write(string path, long[] shape, long[] data) => Write(path, shape, "<i8", System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()).ToArray());
    public static void Write(string path, long[] shape, byte[] data) => Write(path, shape, "|u1", data);

    /// <summary>Writes a format-1.0 file with <paramref name="dtype"/> as NumPy spells it.</summary>
    public static void Write(string path, long[] shape, string dtype, byte[] data)
    {
        using var f = File.Create(path);
        WriteHeader(f, shape, dtype);
        f.Write(data);
    }

    /// <summary>
    /// Writes the magic, version and header of a format-1.0 file to <paramref name="stream"/>; the caller writes the
    /// data after it (for arrays too large to hold in memory). Returns the header's length in bytes (the data offset).
    /// </summary>
    public static long WriteHeader(Stream stream, long[] shape, string dtype)
    {
        string dims = shape.Length == 1 ? $"{shape[0]}," : string.Join(", ", shape);
        string header = $"{{'descr': '{dtype}', 'fortran_order': False, 'shape': ({dims}), }}";
        int total = 10 + header.Length + 1;
        header = header.PadRight(header.Length + (64 - total % 64) % 64) + "\n";
        stream.Write(Magic);
        stream.Write([1, 0, (byte)header.Length, (byte)(header.Length >> 8)]);
        stream.Write(Encoding.ASCII.GetBytes(header));
        return 10 + header.Length;
    }
}
