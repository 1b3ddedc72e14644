using System.Buffers.Binary;
using System.IO.Compression;

namespace InterroGate.Data.Formats;

/// <summary>
/// Label maps stored as PNG, read from the file itself rather than through a colour decoder: a colour decoder turns a
/// palette (indexed) PNG into colours and a 16-bit gray PNG into its high bytes, so class numbers would come out as
/// colours or divided by 256. This reader returns what each pixel stores: the gray level (1 to 16 bits) or the palette
/// index (1 to 8 bits), as PIL's <c>np.array(Image.open(path))</c> does.
/// </summary>
public static class PngLabels
{
    private static ReadOnlySpan<byte> Signature => [137, 80, 78, 71, 13, 10, 26, 10];

    /// <summary>
    /// The stored value of every pixel (row-major) of a gray or palette PNG that is not interlaced; null where the file
    /// is another kind of PNG (RGB, gray with alpha, interlaced) or not a PNG, for the caller to decode as colours.
    /// Throws <see cref="DataFormatException"/> naming the file when it is missing, or a gray or palette PNG that is damaged.
    /// </summary>
    public static int[]? TryRead(string path, out int height, out int width)
    {
        (height, width) = (0, 0);
        ImageFiles.RequireFile(path);
        byte[] file = File.ReadAllBytes(path);
        if (file.Length < 8 || !file.AsSpan(0, 8).SequenceEqual(Signature)) return null;
        int colorType = -1, bitDepth = 0, interlace = 0;
        using var compressed = new MemoryStream();
        int at = 8;
        while (at + 8 <= file.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(file.AsSpan(at));
            string type = System.Text.Encoding.ASCII.GetString(file, at + 4, 4);
            if (length < 0 || at + 12L + length > file.Length) break; // truncated: said below if the image data is short
            var data = file.AsSpan(at + 8, length);
            if (type == "IHDR" && length >= 13)
            {
                width = BinaryPrimitives.ReadInt32BigEndian(data);
                height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                (bitDepth, colorType, interlace) = (data[8], data[9], data[12]);
                if (colorType is not (0 or 3) || interlace != 0) return null;
                if (width <= 0 || height <= 0 || (long)width * height > ImageFiles.MaxPixels)
                    throw new DataFormatException(path, $"its header declares {width}×{height} pixels, more than the limit of {ImageFiles.MaxPixels:N0} " +
                                                        "(INTERROGATE_MAX_IMAGE_PIXELS sets another).");
                if (bitDepth is not (1 or 2 or 4 or 8 or 16) || (colorType == 3 && bitDepth == 16))
                    throw new DataFormatException(path, $"declares {bitDepth} bits per pixel, which a {(colorType == 3 ? "palette" : "gray")} PNG cannot have.");
            }
            else if (type == "IDAT") compressed.Write(data);
            else if (type == "IEND") break;
            at += 12 + length;
        }
        if (colorType < 0) return null;

        int rowBytes = (int)(((long)width * bitDepth + 7) / 8), step = Math.Max(1, bitDepth / 8);
        var raw = new byte[(long)height * (rowBytes + 1)];
        compressed.Position = 0;
        try
        {
            using var inflate = new ZLibStream(compressed, CompressionMode.Decompress);
            int read = 0;
            while (read < raw.Length)
            {
                int n = inflate.Read(raw, read, raw.Length - read);
                if (n == 0) throw new DataFormatException(path, $"is truncated: its image data ends after {read:N0} of {raw.Length:N0} bytes.");
                read += n;
            }
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(path, $"is damaged: its image data cannot be inflated ({e.Message})");
        }

        var values = new int[(long)height * width];
        var previous = new byte[rowBytes];
        var row = new byte[rowBytes];
        for (int y = 0; y < height; y++)
        {
            int filter = raw[y * (rowBytes + 1)];
            Array.Copy(raw, y * (rowBytes + 1) + 1, row, 0, rowBytes);
            Unfilter(path, filter, row, previous, step);
            for (int x = 0; x < width; x++)
                values[(long)y * width + x] = bitDepth switch
                {
                    16 => row[2 * x] << 8 | row[2 * x + 1],
                    8 => row[x],
                    _ => row[x * bitDepth / 8] >> (8 - bitDepth - x * bitDepth % 8) & ((1 << bitDepth) - 1),
                };
            (previous, row) = (row, previous);
        }
        return values;
    }

    /// <summary>Undoes a scanline's filter in place (PNG specification, section 9), <paramref name="step"/> bytes per pixel.</summary>
    private static void Unfilter(string path, int filter, byte[] row, byte[] previous, int step)
    {
        for (int i = 0; i < row.Length; i++)
        {
            int left = i >= step ? row[i - step] : 0, up = previous[i], upLeft = i >= step ? previous[i - step] : 0;
            row[i] = filter switch
            {
                0 => row[i],
                1 => (byte)(row[i] + left),
                2 => (byte)(row[i] + up),
                3 => (byte)(row[i] + (left + up) / 2),
                4 => (byte)(row[i] + Paeth(left, up, upLeft)),
                _ => throw new DataFormatException(path, $"is damaged: a row has filter type {filter} (0 to 4 exist)."),
            };
        }
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
}
