using System.Buffers.Binary;
using System.IO.Compression;
using InterroGate.Data;
using InterroGate.Data.Formats;
using static TorchSharp.torch;

namespace InterroGate.Tests.Data;

/// <summary>
/// Label PNGs read as stored: 16-bit gray levels and palette indices exactly, where a colour decoder gives high bytes
/// and colours. The files are written here byte by byte, with every scanline filter of the format.
/// </summary>
[Collection("Torch")]
public sealed class PngLabelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-png-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// A non-interlaced PNG of one sample per pixel: gray (colour type 0) or palette (3, with <paramref name="palette"/>
    /// RGB triples). Row y is filtered with filter type y mod 5, so every filter is undone by the reader.
    /// </summary>
    internal static byte[] Png(int[] values, int height, int width, int bitDepth, byte[]? palette = null, bool alpha = false)
    {
        int samples = alpha ? 2 : 1; // gray with alpha (colour type 4, 8 bits): each pixel its level and 255
        int rowBytes = (width * samples * bitDepth + 7) / 8, step = Math.Max(1, samples * bitDepth / 8);
        var raw = new byte[height * (rowBytes + 1)];
        var previous = new byte[rowBytes];
        for (int y = 0; y < height; y++)
        {
            var row = new byte[rowBytes];
            for (int x = 0; x < width; x++)
            {
                int v = values[y * width + x];
                if (alpha) (row[2 * x], row[2 * x + 1]) = ((byte)v, 255);
                else if (bitDepth == 16) (row[2 * x], row[2 * x + 1]) = ((byte)(v >> 8), (byte)v);
                else if (bitDepth == 8) row[x] = (byte)v;
                else row[x * bitDepth / 8] |= (byte)(v << (8 - bitDepth - x * bitDepth % 8));
            }
            int filter = y % 5;
            raw[y * (rowBytes + 1)] = (byte)filter;
            for (int i = 0; i < rowBytes; i++)
            {
                int left = i >= step ? row[i - step] : 0, up = previous[i], upLeft = i >= step ? previous[i - step] : 0;
                int p = left + up - upLeft, pa = Math.Abs(p - left), pb = Math.Abs(p - up), pc = Math.Abs(p - upLeft);
                int predictor = filter switch
                {
                    0 => 0,
                    1 => left,
                    2 => up,
                    3 => (left + up) / 2,
                    _ => pa <= pb && pa <= pc ? left : pb <= pc ? up : upLeft,
                };
                raw[y * (rowBytes + 1) + 1 + i] = (byte)(row[i] - predictor);
            }
            previous = row;
        }
        using var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true)) z.Write(raw);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        (header[8], header[9]) = ((byte)bitDepth, (byte)(alpha ? 4 : palette is null ? 0 : 3));
        using var file = new MemoryStream();
        file.Write([137, 80, 78, 71, 13, 10, 26, 10]);
        Chunk(file, "IHDR", header);
        if (palette is not null) Chunk(file, "PLTE", palette);
        Chunk(file, "IDAT", compressed.ToArray());
        Chunk(file, "IEND", []);
        return file.ToArray();
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        var head = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(head, data.Length);
        System.Text.Encoding.ASCII.GetBytes(type, head.AsSpan(4));
        s.Write(head);
        s.Write(data);
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32([.. head[4..], .. data]));
        s.Write(crc);
    }

    private static uint Crc32(byte[] bytes)
    {
        uint c = 0xFFFFFFFF;
        foreach (byte b in bytes)
        {
            c ^= b;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
        }
        return ~c;
    }

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Theory]
    [InlineData(16, null)]
    [InlineData(8, null)]
    [InlineData(4, null)]
    [InlineData(2, null)]
    [InlineData(1, null)]
    [InlineData(8, 256)]
    [InlineData(4, 16)]
    [InlineData(1, 2)]
    public void Gray_levels_and_palette_indices_are_read_as_stored(int bitDepth, int? paletteSize)
    {
        int h = 7, w = 13, max = paletteSize is { } n ? n - 1 : (1 << bitDepth) - 1;
        var values = Enumerable.Range(0, h * w).Select(p => p * 7919 % (max + 1)).ToArray();
        // A palette of colours that are not gray, so a colour decoder could not give the indices back.
        byte[]? palette = paletteSize is { } size ? Enumerable.Range(0, size).SelectMany(i => new[] { (byte)(255 - i), (byte)(i * 7), (byte)(i * 13) }).ToArray() : null;
        string path = Write($"{bitDepth}-{paletteSize}.png", Png(values, h, w, bitDepth, palette));
        var read = PngLabels.TryRead(path, out int height, out int width);
        Assert.Equal((h, w), (height, width));
        Assert.Equal(values, read);
    }

    [Fact]
    public void A_gray_PNG_the_image_library_wrote_reads_as_the_library_decodes_it()
    {
        var pixels = Enumerable.Range(0, 20 * 30).Select(p => (byte)(p * 31 % 256)).ToArray();
        string path = Path.Combine(_dir, "skia.png");
        ImageFiles.WritePng(path, new DecodedImage(pixels, 20, 30, 1));
        Assert.Equal(pixels.Select(b => (int)b), PngLabels.TryRead(path, out _, out _));
    }

    [Fact]
    public void Colour_PNGs_and_other_formats_are_left_to_the_colour_decoder()
    {
        string rgb = Path.Combine(_dir, "rgb.png");
        ImageFiles.WritePng(rgb, new DecodedImage(new byte[2 * 2 * 3], 2, 2, 3));
        Assert.Null(PngLabels.TryRead(rgb, out _, out _));
        string jpeg = Path.Combine(_dir, "a.jpg");
        ImageFiles.WriteJpeg(jpeg, new DecodedImage(new byte[8 * 8], 8, 8, 1));
        Assert.Null(PngLabels.TryRead(jpeg, out _, out _));
    }

    [Fact]
    public void A_gray_PNG_with_alpha_decodes_as_gray()
    {
        var values = Enumerable.Range(0, 6 * 5).Select(p => p * 8).ToArray();
        string path = Write("gray-alpha.png", Png(values, 6, 5, 8, alpha: true));
        var image = InterroGate.Data.Formats.ImageFiles.Read(path);
        Assert.Equal((6, 5, 1), (image.Height, image.Width, image.Channels));
        Assert.Equal(values.Select(v => (byte)v), image.Pixels);
        Assert.Null(PngLabels.TryRead(path, out _, out _)); // not a label PNG: read as an image
    }

    [Fact]
    public void A_truncated_label_PNG_names_the_file()
    {
        var bytes = Png(Enumerable.Range(0, 64 * 64).Select(p => p % 251).ToArray(), 64, 64, 8);
        string path = Write("cut.png", bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<DataFormatException>(() => PngLabels.TryRead(path, out _, out _));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void PASCAL_reads_class_numbers_from_a_palette_label_map_of_any_palette()
    {
        // Indices 0..20 and 255 (ignore) under a palette that is not VOC's: the indices are the classes.
        var values = Enumerable.Range(0, 5 * 6).Select(p => p == 29 ? 255 : p % 21).ToArray();
        var palette = Enumerable.Range(0, 256).SelectMany(i => new[] { (byte)i, (byte)i, (byte)i }).ToArray(); // a gray palette
        string path = Write("pascal.png", Png(values, 5, 6, 8, palette));
        var labels = PascalContext.LabelIndices(path, "a.jpg", 5, 6, () => throw new InvalidOperationException("decoded as colours"));
        Assert.Equal(values.Select(v => (byte)v), labels);
        Assert.Contains("is 5×6, the image a.jpg is 6×5", Assert.Throws<DataFormatException>(() => PascalContext.LabelIndices(path, "a.jpg", 6, 5, () => null!)).Message);
    }

    [Fact]
    public void NYUD_reads_class_numbers_from_palette_and_16_bit_label_maps_and_refuses_values_beyond_its_classes()
    {
        string root = NyudV2Tests.MultiTaskFolder(_dir, ["a"], ["b"]);
        var (h, w) = (NyudV2Tests.H, NyudV2Tests.W);
        var values = Enumerable.Range(0, h * w).Select(p => 2 * p % 41).ToArray(); // 0 = unlabelled, v → class v − 1
        var palette = Enumerable.Range(0, 41).SelectMany(i => new[] { (byte)i, (byte)(3 * i), (byte)(200 - i) }).ToArray();
        string seg = Path.Combine(root, "segmentation", "a.png");
        var expected = values.Select(v => v == 0 ? 255L : v - 1).ToArray();
        foreach (var png in new[] { Png(values, h, w, 8, palette), Png(values, h, w, 16) })
        {
            File.WriteAllBytes(seg, png);
            var splits = NyudV2.Load(new NyudV2Options(root));
            var batch = splits.Train.GetBatch([0]);
            Assert.Equal(expected, batch["semseg"].data<long>().ToArray());
        }
        // A 16-bit value beyond the classes is refused; a colour decoder would read its high byte (1000 → 3), a valid class.
        File.WriteAllBytes(seg, Png(values.Select(v => v == 40 ? 1000 : v).ToArray(), h, w, 16));
        var e = Assert.Throws<DataFormatException>(() => NyudV2.Load(new NyudV2Options(root)).Train.GetBatch([0]));
        Assert.Contains("holds the value 1000", e.Message);
    }
}
