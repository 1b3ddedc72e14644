using SkiaSharp;

namespace InterroGate.Data.Formats;

/// <summary>A decoded image: 8-bit pixels in height × width × channels order (1 = gray, 3 = RGB).</summary>
public sealed record DecodedImage(byte[] Pixels, int Height, int Width, int Channels);

/// <summary>Decodes PNG, JPEG, BMP, GIF and WebP files with SkiaSharp.</summary>
public static class ImageFiles
{
    /// <summary>
    /// The largest image (width × height) decoded; a larger header is refused before any pixel memory is taken.
    /// 64 Mi pixels by default (2^26, 8192 × 8192); the environment variable INTERROGATE_MAX_IMAGE_PIXELS sets another.
    /// </summary>
    public static long MaxPixels
    {
        get => _maxPixels ??= MaxPixelsFromEnvironment(Environment.GetEnvironmentVariable("INTERROGATE_MAX_IMAGE_PIXELS"));
        set => _maxPixels = value;
    }

    private static long? _maxPixels;

    /// <summary>The limit an INTERROGATE_MAX_IMAGE_PIXELS value sets: unset or empty, the default; anything but a positive
    /// whole number, an error naming the variable (a typo would otherwise leave the default in force unseen).</summary>
    internal static long MaxPixelsFromEnvironment(string? value) =>
        string.IsNullOrWhiteSpace(value) ? 64L * 1024 * 1024
        : long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long n) && n > 0 ? n
        : throw new Configuration.ConfigException("INTERROGATE_MAX_IMAGE_PIXELS", $"'{value}' is not a positive whole number of pixels (unset: 67108864, 8192 × 8192)");

    /// <summary>
    /// The file's pixels, gray (1 channel) when the file is grayscale and RGB (3 channels) otherwise; alpha is
    /// dropped. 8-bit gray PNGs keep their values; a 16-bit one gives its high bytes and a palette PNG its colours, so
    /// label maps are read with <see cref="PngLabels"/>, which keeps both as stored. Throws <see cref="DataFormatException"/> naming
    /// the file when it is missing or cannot be decoded.
    /// </summary>
    public static DecodedImage Read(string path)
    {
        RequireFile(path);
        using var codec = SKCodec.Create(path)
            ?? throw new DataFormatException(path, "cannot be decoded (not a PNG, JPEG, BMP, GIF or WebP image, or damaged).");
        long pixels = (long)codec.Info.Width * codec.Info.Height;
        if (codec.Info.Width <= 0 || codec.Info.Height <= 0 || pixels > MaxPixels)
            throw new DataFormatException(path, $"its header declares {codec.Info.Width}×{codec.Info.Height} pixels, more than the limit of {MaxPixels:N0} " +
                                                "(INTERROGATE_MAX_IMAGE_PIXELS sets another).");
        bool gray = codec.Info.ColorType == SKColorType.Gray8;
        // A gray PNG with alpha decodes as colour (Skia has no gray-with-alpha type): it is gray, its alpha dropped.
        bool grayWithAlpha = !gray && PngColorType(path) == 4;
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, gray ? SKColorType.Gray8 : SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        var result = codec.GetPixels(info, bitmap.GetPixels());
        if (result == SKCodecResult.IncompleteInput)
            throw new DataFormatException(path, "is truncated: the file ends before the image data does.");
        if (result != SKCodecResult.Success)
            throw new DataFormatException(path, $"cannot be decoded ({result}).");
        int h = info.Height, w = info.Width;
        var bytes = bitmap.Bytes;
        if (gray) return new DecodedImage(bytes, h, w, 1);
        if (grayWithAlpha)
        {
            var levels = new byte[h * w];
            for (int i = 0; i < levels.Length; i++) levels[i] = bytes[4 * i];
            return new DecodedImage(levels, h, w, 1);
        }
        var rgb = new byte[h * w * 3];
        for (int i = 0, j = 0; i < rgb.Length; i += 3, j += 4)
        {
            rgb[i] = bytes[j];
            rgb[i + 1] = bytes[j + 1];
            rgb[i + 2] = bytes[j + 2];
        }
        return new DecodedImage(rgb, h, w, 3);
    }

    /// <summary>Throws <see cref="DataFormatException"/> naming <paramref name="path"/> unless it is a file.</summary>
    internal static void RequireFile(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, Directory.Exists(path) ? "is a folder, not an image file." : "no such file.");
    }

    /// <summary>The colour type a PNG file's header declares (0 gray, 2 RGB, 3 palette, 4 gray with alpha, 6 RGBA); −1 for other files.</summary>
    internal static int PngColorType(string path)
    {
        Span<byte> head = stackalloc byte[26];
        using var f = File.OpenRead(path);
        if (f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) < head.Length) return -1;
        ReadOnlySpan<byte> signature = [137, 80, 78, 71, 13, 10, 26, 10];
        return head[..8].SequenceEqual(signature) && head[12..16].SequenceEqual("IHDR"u8) ? head[25] : -1;
    }

    /// <summary>Writes 8-bit gray (1 channel) or RGB (3 channels) pixels as a PNG file (label maps, fixtures, previews).</summary>
    public static void WritePng(string path, DecodedImage image) => Write(path, image, SKEncodedImageFormat.Png, 100);

    /// <summary>Writes 8-bit gray or RGB pixels as a JPEG file of <paramref name="quality"/> (1-100).</summary>
    public static void WriteJpeg(string path, DecodedImage image, int quality = 95) => Write(path, image, SKEncodedImageFormat.Jpeg, quality);

    private static void Write(string path, DecodedImage image, SKEncodedImageFormat format, int quality)
    {
        if (image.Channels is not (1 or 3)) throw new ArgumentException($"Image output takes 1 or 3 channels, not {image.Channels}.");
        if (image.Pixels.Length != image.Height * image.Width * image.Channels)
            throw new ArgumentException($"{image.Pixels.Length} bytes for a {image.Height}×{image.Width}×{image.Channels} image.");
        var info = new SKImageInfo(image.Width, image.Height, image.Channels == 1 ? SKColorType.Gray8 : SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        var bytes = image.Channels == 1 ? image.Pixels : ToRgba(image.Pixels);
        System.Runtime.InteropServices.Marshal.Copy(bytes, 0, bitmap.GetPixels(), bytes.Length);
        using var data = bitmap.Encode(format, quality)
            ?? throw new IOException($"{path}: the {format} encoder refused the image.");
        using var file = File.Create(path);
        data.SaveTo(file);
    }

    private static byte[] ToRgba(byte[] rgb)
    {
        var rgba = new byte[rgb.Length / 3 * 4];
        for (int i = 0, j = 0; i < rgb.Length; i += 3, j += 4)
        {
            rgba[j] = rgb[i];
            rgba[j + 1] = rgb[i + 1];
            rgba[j + 2] = rgb[i + 2];
            rgba[j + 3] = 255;
        }
        return rgba;
    }
}
