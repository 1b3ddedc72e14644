using System.IO.Compression;

namespace InterroGate.Data;

/// <summary>An IDX array (the MNIST family's format): dimensions and unsigned bytes.</summary>
public sealed record IdxArray(int[] Dimensions, byte[] Data)
{
    public int Count => Dimensions[0];
}

/// <summary>Reads IDX files of unsigned bytes, raw or gzip-compressed (detected by content).</summary>
public static class IdxReader
{
    private const byte UnsignedByte = 0x08;

    public static IdxArray Read(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, "file not found");
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b)
        {
            try
            {
                using var gz = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
                using var ms = new MemoryStream();
                gz.CopyTo(ms);
                bytes = ms.ToArray();
            }
            catch (InvalidDataException e)
            {
                throw new DataFormatException(path, $"corrupt gzip data ({e.Message})");
            }
        }
        return Parse(bytes, path);
    }

    public static IdxArray Parse(byte[] bytes, string path)
    {
        if (bytes.Length < 4) throw new DataFormatException(path, $"truncated header: {bytes.Length} bytes, an IDX header needs at least 4");
        if (bytes[0] != 0 || bytes[1] != 0)
            throw new DataFormatException(path, $"bad magic {bytes[0]:x2} {bytes[1]:x2} {bytes[2]:x2} {bytes[3]:x2}: an IDX file starts with two zero bytes");
        if (bytes[2] != UnsignedByte)
            throw new DataFormatException(path, $"unsupported IDX data type 0x{bytes[2]:x2}; only 0x08 (unsigned byte) is supported");
        int rank = bytes[3];
        if (rank is < 1 or > 4) throw new DataFormatException(path, $"bad magic: {rank} dimensions (expected 1 to 4)");
        int header = 4 + 4 * rank;
        if (bytes.Length < header) throw new DataFormatException(path, $"truncated header: {bytes.Length} bytes, {header} needed for {rank} dimensions");
        var dims = new int[rank];
        long expected = 1;
        for (int i = 0; i < rank; i++)
        {
            dims[i] = (bytes[4 + 4 * i] << 24) | (bytes[5 + 4 * i] << 16) | (bytes[6 + 4 * i] << 8) | bytes[7 + 4 * i];
            if (dims[i] < 0) throw new DataFormatException(path, $"dimension {i} is negative");
            expected *= dims[i];
        }
        long actual = bytes.Length - header;
        if (actual != expected)
            throw new DataFormatException(path, $"wrong length: dimensions [{string.Join("×", dims)}] need {expected} data bytes, the file has {actual}");
        return new IdxArray(dims, bytes[header..]);
    }

    /// <summary>Writes an unsigned-byte IDX file (gzip-compressed when the name ends in .gz).</summary>
    public static void Write(string path, int[] dims, byte[] data)
    {
        using var file = File.Create(path);
        using Stream s = path.EndsWith(".gz", StringComparison.Ordinal) ? new GZipStream(file, CompressionLevel.Fastest) : file;
        s.Write([0, 0, UnsignedByte, (byte)dims.Length]);
        foreach (var d in dims) s.Write([(byte)(d >> 24), (byte)(d >> 16), (byte)(d >> 8), (byte)d]);
        s.Write(data);
    }
}
