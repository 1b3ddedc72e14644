using InterroGate.Data;

namespace InterroGate.Tests.Data;

public sealed class FileFormatTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-formats-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    private string P(string name) => Path.Combine(_dir, name);

    [Theory]
    [InlineData("a.idx")]
    [InlineData("a.idx.gz")]
    public void Idx_round_trips_raw_and_gzip(string name)
    {
        var data = Enumerable.Range(0, 2 * 3 * 4).Select(i => (byte)i).ToArray();
        IdxReader.Write(P(name), [2, 3, 4], data);
        var a = IdxReader.Read(P(name));
        Assert.Equal(new[] { 2, 3, 4 }, a.Dimensions);
        Assert.Equal(data, a.Data);
    }

    [Fact]
    public void Idx_faults_name_the_file_and_the_problem()
    {
        IdxReader.Write(P("ok"), [4, 2], new byte[8]);
        var bytes = File.ReadAllBytes(P("ok"));

        File.WriteAllBytes(P("magic"), [1, 2, .. bytes[2..]]);
        var e = Assert.Throws<DataFormatException>(() => IdxReader.Read(P("magic")));
        Assert.Contains(P("magic"), e.Message);
        Assert.Contains("bad magic", e.Message);

        File.WriteAllBytes(P("short"), bytes[..^3]);
        e = Assert.Throws<DataFormatException>(() => IdxReader.Read(P("short")));
        Assert.Contains("need 8 data bytes, the file has 5", e.Message);

        var wrongType = (byte[])bytes.Clone();
        wrongType[2] = 0x0D;
        File.WriteAllBytes(P("float"), wrongType);
        Assert.Contains("data type 0x0d", Assert.Throws<DataFormatException>(() => IdxReader.Read(P("float"))).Message);

        File.WriteAllBytes(P("bad.gz"), [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff]); // invalid deflate block
        Assert.Contains("gzip", Assert.Throws<DataFormatException>(() => IdxReader.Read(P("bad.gz"))).Message);
    }

    [Fact]
    public void Npy_round_trips_each_written_dtype()
    {
        Npy.Write(P("f.npy"), [2, 3], new float[] { 1, 2, 3, 4, 5, 6.5f });
        Npy.Write(P("l.npy"), [3], new long[] { -1, 0, 9 });
        Npy.Write(P("b.npy"), [2, 2], new byte[] { 0, 255, 7, 8 });
        var f = Npy.Read(P("f.npy"));
        Assert.Equal(new long[] { 2, 3 }, f.Shape);
        Assert.Equal(6.5f, f.ToTensor()[1, 2].item<float>());
        Assert.Equal(new long[] { -1, 0, 9 }, Npy.Read(P("l.npy")).ToTensor().data<long>().ToArray());
        Assert.Equal(255, Npy.Read(P("b.npy")).ToTensor()[0, 1].item<byte>());
        Npy.Write(P("i4.npy"), [2], "<i4", BitConverter.GetBytes(7).Concat(BitConverter.GetBytes(-3)).ToArray());
        Assert.Equal(new[] { 7, -3 }, Npy.Read(P("i4.npy")).ToTensor().data<int>().ToArray());
    }

    [Fact]
    public void Npy_reads_version_2_headers()
    {
        Npy.Write(P("v1.npy"), [2], new float[] { 1, 2 });
        var v1 = File.ReadAllBytes(P("v1.npy"));
        int headerLength = v1[8] | (v1[9] << 8);
        var v2 = new List<byte>(v1[..6]) { 2, 0 };
        v2.AddRange(BitConverter.GetBytes(headerLength));
        v2.AddRange(v1[10..]);
        File.WriteAllBytes(P("v2.npy"), v2.ToArray());
        Assert.Equal(new float[] { 1, 2 }, Npy.Read(P("v2.npy")).ToTensor().data<float>().ToArray());
    }

    [Fact]
    public void Npy_faults_name_the_file_and_the_problem()
    {
        File.WriteAllBytes(P("x.npy"), "hello world, not numpy"u8.ToArray());
        Assert.Contains("bad magic", Assert.Throws<DataFormatException>(() => Npy.Read(P("x.npy"))).Message);

        Npy.Write(P("t.npy"), [4], new float[] { 1, 2, 3, 4 });
        File.WriteAllBytes(P("t.npy"), File.ReadAllBytes(P("t.npy"))[..^4]);
        var e = Assert.Throws<DataFormatException>(() => Npy.Read(P("t.npy")));
        Assert.Contains(P("t.npy"), e.Message);
        Assert.Contains("needs 16 data bytes, the file has 12", e.Message);

        Npy.Write(P("c.npy"), [2], "<c8", new byte[16]);
        Assert.Contains("unsupported dtype '<c8'", Assert.Throws<DataFormatException>(() => Npy.Read(P("c.npy"))).Message);

    }

    /// <summary>A .npy file of <paramref name="shape"/> whose header says Fortran order, holding <paramref name="stored"/> as they are.</summary>
    private void FortranNpy(string path, long[] shape, float[] stored)
    {
        Npy.Write(path, shape, stored);
        var s = System.Text.Encoding.Latin1.GetString(File.ReadAllBytes(path)).Replace("'fortran_order': False", "'fortran_order': True ");
        File.WriteAllBytes(path, System.Text.Encoding.Latin1.GetBytes(s));
    }

    [Fact]
    public void A_Fortran_order_array_reads_in_C_order_as_np_load_gives_it()
    {
        // [[1, 2, 3], [4, 5, 6]] saved transposed-contiguous: the file holds the first index fastest, 1 4 2 5 3 6.
        FortranNpy(P("f.npy"), [2, 3], [1, 4, 2, 5, 3, 6]);
        var a = Npy.Read(P("f.npy"));
        Assert.Equal(new long[] { 2, 3 }, a.Shape);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, a.ToTensor().data<float>().ToArray());
        // Three axes: element (i, j, k) of a 2×3×2 array is stored at i + 2j + 6k.
        var c = Enumerable.Range(0, 12).Select(v => (float)v).ToArray(); // C order: (i, j, k) at 6i + 2j + k
        var f = new float[12];
        for (int i = 0; i < 2; i++) for (int j = 0; j < 3; j++) for (int k = 0; k < 2; k++) f[i + 2 * j + 6 * k] = c[6 * i + 2 * j + k];
        FortranNpy(P("f3.npy"), [2, 3, 2], f);
        Assert.Equal(c, Npy.Read(P("f3.npy")).ToTensor().data<float>().ToArray());

        // Images are read row by row from the file, which a Fortran-order file does not allow: refused with the fix.
        FortranNpy(P("images.npy"), [2, 1, 2, 2], new float[8]);
        var e = Assert.Throws<DataFormatException>(() => new FileImageDataset("f", new InterroGate.Tasks.TaskSet([new("y", InterroGate.Tasks.TaskKind.Binary, 1)]),
            P("images.npy"), new Dictionary<string, TorchSharp.torch.Tensor>()));
        Assert.Contains("np.ascontiguousarray", e.Message);
    }

    [Fact]
    public void A_truncated_png_is_an_error_not_a_partly_black_image()
    {
        var pixels = Enumerable.Range(0, 64 * 64 * 3).Select(i => (byte)(i * 7919 % 251)).ToArray(); // noise: compresses little
        InterroGate.Data.Formats.ImageFiles.WritePng(P("whole.png"), new(pixels, 64, 64, 3));
        var bytes = File.ReadAllBytes(P("whole.png"));
        Assert.Equal(pixels, InterroGate.Data.Formats.ImageFiles.Read(P("whole.png")).Pixels);
        File.WriteAllBytes(P("cut.png"), bytes[..(bytes.Length * 2 / 3)]);
        var e = Assert.Throws<DataFormatException>(() => InterroGate.Data.Formats.ImageFiles.Read(P("cut.png")));
        Assert.Contains(P("cut.png"), e.Message);
    }

    [Fact]
    public void A_png_header_declaring_a_huge_image_is_refused_before_decoding()
    {
        // A valid 1×1 PNG whose IHDR then claims 20000×20000 pixels (CRC fixed, so only the size is wrong).
        InterroGate.Data.Formats.ImageFiles.WritePng(P("small.png"), new([0], 1, 1, 1));
        var bytes = File.ReadAllBytes(P("small.png"));
        int ihdr = 8; // signature; then length (4), "IHDR" (4), width (4), height (4), ...
        foreach (int at in new[] { ihdr + 8, ihdr + 12 })
        {
            bytes[at] = 0; bytes[at + 1] = 0; bytes[at + 2] = 0x4E; bytes[at + 3] = 0x20; // 20000
        }
        uint crc = Crc32(bytes.AsSpan(ihdr + 4, 4 + 13));
        bytes[ihdr + 21] = (byte)(crc >> 24); bytes[ihdr + 22] = (byte)(crc >> 16); bytes[ihdr + 23] = (byte)(crc >> 8); bytes[ihdr + 24] = (byte)crc;
        File.WriteAllBytes(P("huge.png"), bytes);
        var e = Assert.Throws<DataFormatException>(() => InterroGate.Data.Formats.ImageFiles.Read(P("huge.png")));
        Assert.Contains("20000×20000", e.Message);
        Assert.Contains("INTERROGATE_MAX_IMAGE_PIXELS", e.Message);
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }
}
