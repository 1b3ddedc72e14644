using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using InterroGate.Data;
using InterroGate.Data.Formats;

namespace InterroGate.Tests.Data;

public sealed class MatFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-mat-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    private string P(string name) => Path.Combine(_dir, name);

    private MatFile RoundTrip(string name, MatValue value, bool compress)
    {
        MatFile.Write(P(name), new Dictionary<string, MatValue> { [name] = value }, compress);
        return MatFile.Read(P(name));
    }

    // ---- bytes built by hand from the format description, independently of MatFile.Write ----

    private static byte[] U32(params uint[] values) => values.SelectMany(BitConverter.GetBytes).ToArray();

    /// <summary>A data element: 8-byte tag (type, byte count), the data, zero padding to a multiple of 8.</summary>
    private static byte[] Element(uint type, byte[] data) =>
        [.. U32(type, (uint)data.Length), .. data, .. new byte[(8 - data.Length % 8) % 8]];

    /// <summary>A small data element: type and count in one word, up to 4 data bytes in the next.</summary>
    private static byte[] Small(uint type, byte[] data) => [.. U32(type | ((uint)data.Length << 16)), .. data, .. new byte[4 - data.Length]];

    private static byte[] Header(string text = "MATLAB 5.0 MAT-file, hand made", ushort version = 0x0100, string endian = "IM")
    {
        var h = new byte[128];
        Array.Fill(h, (byte)' ', 0, 116);
        Encoding.ASCII.GetBytes(text).CopyTo(h, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(124), version);
        h[126] = (byte)endian[0];
        h[127] = (byte)endian[1];
        return h;
    }

    /// <summary>An miMATRIX element: flags (class, flag bits), dims, name as a small element, then the content elements.</summary>
    private static byte[] Matrix(uint cls, int[] dims, string name, uint flagBits = 0, params byte[][] content) =>
        Element(14, [
            .. Element(6, U32(cls | flagBits, 0)),
            .. Element(5, dims.SelectMany(BitConverter.GetBytes).ToArray()),
            .. (name.Length <= 4 ? Small(1, Encoding.ASCII.GetBytes(name)) : Element(1, Encoding.ASCII.GetBytes(name))),
            .. content.SelectMany(c => c)]);

    /// <summary>The 2×3 matrix [1 2 3; 4 5 6] as double class, stored column-major: 1 4 2 5 3 6.</summary>
    private static byte[] HandMadeA() =>
        Matrix(6, [2, 3], "A", 0, Element(9, new double[] { 1, 4, 2, 5, 3, 6 }.SelectMany(BitConverter.GetBytes).ToArray()));

    [Fact]
    public void Reads_a_hand_made_uncompressed_double_matrix_with_MATLAB_dims_and_row_major_data()
    {
        File.WriteAllBytes(P("a.mat"), [.. Header(), .. HandMadeA()]);
        var file = MatFile.Read(P("a.mat"));
        var a = file.Get<MatArray>("A");
        Assert.Equal(MatClass.Double, a.Class);
        Assert.Equal(new[] { 2, 3 }, a.Dims);
        Assert.Equal(new double[] { 1, 4, 2, 5, 3, 6 }, (double[])a.Data);
        Assert.Equal(new double[] { 1, 2, 3, 4, 5, 6 }, a.ToRowMajor());
        Assert.Equal(4, a[1, 0]);
        Assert.Equal(3, a[0, 2]);
        Assert.StartsWith("MATLAB 5.0 MAT-file, hand made", file.HeaderText);
    }

    [Fact]
    public void Reads_hand_made_narrow_storage_small_elements_utf8_chars_and_a_compressed_variable()
    {
        // A double-class array stored as miUINT8 (MATLAB's space saving), a char array stored as UTF-8 in a
        // small element, and the matrix A inside an miCOMPRESSED (zlib) element.
        var narrow = Matrix(6, [1, 3], "narrow", 0, Element(2, [7, 200, 0]));
        var text = Matrix(4, [1, 3], "txt", 0, Small(16, "abc"u8.ToArray()));
        var packed = new MemoryStream();
        using (var z = new ZLibStream(packed, CompressionLevel.Fastest, leaveOpen: true)) z.Write(HandMadeA());
        var compressed = (byte[])[.. U32(15, (uint)packed.Length), .. packed.ToArray()];
        var int16 = Matrix(11, [2, 1], "u16", 0, Small(4, U32(0xFFFF0001)));
        File.WriteAllBytes(P("b.mat"), [.. Header(), .. narrow, .. text, .. compressed, .. int16]);

        var file = MatFile.Read(P("b.mat"));
        Assert.Equal(new[] { "narrow", "txt", "A", "u16" }, file.Variables.Keys);
        var n = file.Get<MatArray>("narrow");
        Assert.Equal(MatClass.Double, n.Class);
        Assert.Equal(new double[] { 7, 200, 0 }, (double[])n.Data);
        Assert.Equal("abc", file.Get<MatChar>("txt").Value);
        Assert.Equal(new double[] { 1, 2, 3, 4, 5, 6 }, file.Get<MatArray>("A").ToRowMajor());
        Assert.Equal(new ushort[] { 1, 0xFFFF }, (ushort[])file.Get<MatArray>("u16").Data);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Numeric_arrays_of_every_class_round_trip(bool compress)
    {
        var cases = new (string Name, MatArray Value)[]
        {
            ("d", MatArray.FromRowMajor(new double[] { 1.5, -2, 3, 4, 5, 6e300 }, 2, 3)),
            ("f", MatArray.FromRowMajor(new float[] { 1.25f, -7 }, 2)),
            ("i8", MatArray.FromRowMajor(new sbyte[] { -128, 127, 0 }, 3, 1)),
            ("u8", MatArray.FromRowMajor(new byte[] { 0, 255 }, 1, 2)),
            ("i16", MatArray.FromRowMajor(new short[] { -30000, 2 }, 2)),
            ("u16", MatArray.FromRowMajor(new ushort[] { 65535, 459 }, 2)),
            ("i32", MatArray.FromRowMajor(new int[] { int.MinValue, 5 }, 2)),
            ("u32", MatArray.FromRowMajor(new uint[] { uint.MaxValue, 6 }, 2)),
            ("i64", MatArray.FromRowMajor(new long[] { (1L << 60) + 1, -3 }, 2)),
            ("u64", MatArray.FromRowMajor(new ulong[] { ulong.MaxValue, 9 }, 2)),
        };
        MatFile.Write(P("n.mat"), cases.ToDictionary(c => c.Name, c => (MatValue)c.Value), compress);
        var file = MatFile.Read(P("n.mat"));
        Assert.Equal(cases.Select(c => c.Name), file.Variables.Keys);
        foreach (var (name, expected) in cases)
        {
            var a = file.Get<MatArray>(name);
            Assert.Equal(expected.Class, a.Class);
            Assert.Equal(expected.Dims, a.Dims);
            Assert.Equal(expected.Data, a.Data);
        }
        Assert.Equal(new[] { 2, 3 }, file.Get<MatArray>("d").Dims);
        Assert.Equal(new double[] { 1.5, 4, -2, 5, 3, 6e300 }, (double[])file.Get<MatArray>("d").Data); // column-major on disk
        Assert.Equal(new[] { 1, 2 }, file.Get<MatArray>("f").Dims);                                    // a vector is a 1×N row
        Assert.Equal((1L << 60) + 1, file.Get<MatArray>("i64").ToRowMajor<long>()[0]);                // exact, not via double
    }

    [Fact]
    public void Three_dimensional_arrays_are_column_major_in_the_file_and_row_major_on_request()
    {
        var values = Enumerable.Range(0, 24).Select(i => (double)i).ToArray();
        var a = RoundTrip("cube", MatArray.FromRowMajor(values, 2, 3, 4), compress: false).Get<MatArray>("cube");
        Assert.Equal(new[] { 2, 3, 4 }, a.Dims);
        Assert.Equal(12, ((double[])a.Data)[1]);  // element (1,0,0): column-major index 1, row-major index 12
        Assert.Equal(4, ((double[])a.Data)[2]);   // element (0,1,0): column-major index 2, row-major index 4
        Assert.Equal(values, a.ToRowMajor());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Logicals_strings_cells_and_struct_arrays_round_trip(bool compress)
    {
        var mask = MatArray.Logical([true, false, false, true, true, false], 2, 3);
        var parts = MatStruct.Row(["part_name", "mask"],
            new Dictionary<string, MatValue> { ["part_name"] = MatChar.FromString("head"), ["mask"] = mask },
            new Dictionary<string, MatValue> { ["part_name"] = MatChar.FromString("torso"), ["mask"] = MatArray.Scalar(2) });
        var objects = MatStruct.Row(["class", "class_ind", "parts"],
            new Dictionary<string, MatValue> { ["class"] = MatChar.FromString("person"), ["class_ind"] = MatArray.Scalar(15), ["parts"] = parts },
            new Dictionary<string, MatValue> { ["class"] = MatChar.FromString("dog"), ["class_ind"] = MatArray.Scalar(12), ["parts"] = new MatArray(MatClass.Double, [0, 0], Array.Empty<double>()) });
        var anno = MatStruct.Single(("imname", MatChar.FromString("2008_000001")), ("objects", objects));
        var cell = MatCell.Row(MatChar.FromString("α, β"), MatArray.Scalar(-1), MatCell.Row(), MatChar.FromString(""));

        MatFile.Write(P("s.mat"), new Dictionary<string, MatValue> { ["anno"] = anno, ["c"] = cell, ["m"] = mask }, compress);
        var file = MatFile.Read(P("s.mat"));

        var m = file.Get<MatArray>("m");
        Assert.True(m.IsLogical);
        Assert.Equal(new double[] { 1, 0, 0, 1, 1, 0 }, m.ToRowMajor());

        var c = file.Get<MatCell>("c");
        Assert.Equal(new[] { 1, 4 }, c.Dims);
        Assert.Equal("α, β", ((MatChar)c[0]).Value);
        Assert.Equal(-1, ((MatArray)c[1]).ScalarValue);
        Assert.Empty(((MatCell)c[2]).Elements);
        Assert.Equal("", ((MatChar)c[3]).Value);

        var a = file.Get<MatStruct>("anno");
        Assert.Equal(new[] { "imname", "objects" }, a.FieldNames);
        Assert.Equal("2008_000001", ((MatChar)a[0, "imname"]).Value);
        var objs = (MatStruct)a[0, "objects"];
        Assert.Equal(new[] { 1, 2 }, objs.Dims);
        Assert.Equal("dog", ((MatChar)objs[1, "class"]).Value);
        Assert.Equal(15, ((MatArray)objs[0, "class_ind"]).ScalarValue);
        Assert.Equal(0, objs[1, "parts"].Count);
        var p = (MatStruct)objs[0, "parts"];
        Assert.Equal("torso", ((MatChar)p[1, "part_name"]).Value);
        var readMask = (MatArray)p[0, "mask"];
        Assert.True(readMask.IsLogical);
        Assert.Equal(new[] { 2, 3 }, readMask.Dims);
        Assert.Equal(new double[] { 1, 0, 0, 1, 1, 0 }, readMask.ToRowMajor());
    }

    [Fact]
    public void Multi_row_char_arrays_read_row_by_row()
    {
        // 2×3 chars ["abc"; "def"] stored column-major: a d b e c f.
        File.WriteAllBytes(P("c.mat"), [.. Header(), .. Matrix(4, [2, 3], "rows", 0, Element(4, "adbecf".SelectMany(ch => BitConverter.GetBytes(ch)).ToArray()))]);
        var c = MatFile.Read(P("c.mat")).Get<MatChar>("rows");
        Assert.Equal(new[] { "abc", "def" }, c.Rows);
        Assert.Equal("abcdef", c.Value);
    }

    private DataFormatException Fault(string name, byte[] bytes)
    {
        File.WriteAllBytes(P(name), bytes);
        var e = Assert.Throws<DataFormatException>(() => MatFile.Read(P(name)));
        Assert.Equal(P(name), e.Path);
        Assert.Contains(P(name), e.Message);
        return e;
    }

    [Fact]
    public void Bad_headers_and_truncation_are_errors_naming_the_file()
    {
        var good = (byte[])[.. Header(), .. HandMadeA()];
        Assert.Contains("truncated header", Fault("short.mat", good[..100]).Message);
        Assert.Contains("not a MATLAB Level 5 MAT-file", Fault("text.mat", [.. Encoding.ASCII.GetBytes(new string('x', 128)), .. HandMadeA()]).Message);
        Assert.Contains("big-endian", Fault("be.mat", [.. Header(endian: "MI"), .. HandMadeA()]).Message);
        Assert.Contains("v7.3", Fault("h5.mat", [.. Header(version: 0x0200), .. HandMadeA()]).Message);
        Assert.Contains("version 0x0300", Fault("v3.mat", [.. Header(version: 0x0300), .. HandMadeA()]).Message);

        Assert.Contains("truncated", Fault("cut.mat", good[..^5]).Message);
        Assert.Contains("truncated", Fault("cut-tag.mat", good[..133]).Message);

        // A tag announcing 4 GB: refused against the bytes present, nothing allocated.
        var huge = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(huge.AsSpan(132), 0xFFFF_FFF0);
        Assert.Contains("announces 4294967280 bytes", Fault("huge.mat", huge).Message);

        // Dimensions claiming a 100000×100000 double matrix in a few bytes.
        var dims = Matrix(6, [100000, 100000], "big", 0, Element(9, new byte[16]));
        Assert.Contains("variable 'big'", Fault("dims.mat", [.. Header(), .. dims]).Message);

        // A cell announcing a billion elements in 8 bytes.
        var cells = Matrix(1, [1, 1_000_000_000], "cc", 0, new byte[8]);
        Assert.Contains("cell needs at least", Fault("cells.mat", [.. Header(), .. cells]).Message);
    }

    [Fact]
    public void Corrupt_zlib_and_lying_compressed_sizes_are_errors_naming_the_file()
    {
        var junk = (byte[])[.. Header(), .. U32(15, 6), 0x78, 0x9c, 0xff, 0xff, 0xff, 0xff];
        Assert.Contains("corrupt zlib", Fault("z.mat", junk).Message);

        // Valid zlib whose inner tag announces far more bytes than the stream can hold.
        var inner = (byte[])[.. U32(14, 0x7FFF_0000), .. new byte[8]];
        var packed = new MemoryStream();
        using (var z = new ZLibStream(packed, CompressionLevel.Fastest, leaveOpen: true)) z.Write(inner);
        Assert.Contains("cannot hold", Fault("lie.mat", [.. Header(), .. U32(15, (uint)packed.Length), .. packed.ToArray()]).Message);

        // Valid zlib that ends before the announced matrix does.
        packed = new MemoryStream();
        using (var z = new ZLibStream(packed, CompressionLevel.Fastest, leaveOpen: true)) z.Write(HandMadeA()[..40]);
        Assert.Contains("truncated compressed element", Fault("short-z.mat", [.. Header(), .. U32(15, (uint)packed.Length), .. packed.ToArray()]).Message);
    }

    [Fact]
    public void Sparse_complex_function_handles_and_objects_are_refused_by_variable_name()
    {
        var data = Element(9, new byte[16]);
        Assert.Contains("variable 'sp': is a sparse array", Fault("sp.mat", [.. Header(), .. Matrix(5, [2, 2], "sp", 0, data)]).Message);
        Assert.Contains("variable 'z': is a complex double array", Fault("cx.mat", [.. Header(), .. Matrix(6, [1, 2], "z", 0x0800, data, data)]).Message);
        Assert.Contains("variable 'fh': is a function handle", Fault("fh.mat", [.. Header(), .. Matrix(16, [1, 1], "fh", 0, data)]).Message);
        Assert.Contains("variable 'obj': is a MATLAB object", Fault("ob.mat", [.. Header(), .. Matrix(3, [1, 1], "obj", 0, data)]).Message);

        // Inside a struct the message names the path to the field.
        var nested = Matrix(2, [1, 1], "s", 0, Small(5, BitConverter.GetBytes(32)), Element(1, Encoding.ASCII.GetBytes("f".PadRight(32, '\0'))),
            Matrix(5, [2, 2], "", 0, data));
        Assert.Contains("variable 's.f': is a sparse array", Fault("nested.mat", [.. Header(), .. nested]).Message);
    }

    [Fact]
    public void Get_names_the_file_the_variable_and_what_it_is()
    {
        File.WriteAllBytes(P("a.mat"), [.. Header(), .. HandMadeA()]);
        var file = MatFile.Read(P("a.mat"));
        var e = Assert.Throws<DataFormatException>(() => file.Get<MatArray>("LabelMap"));
        Assert.Contains(P("a.mat"), e.Message);
        Assert.Contains("no variable 'LabelMap' (variables: A)", e.Message);
        Assert.Contains("variable 'A' is a double 2×3, not a MatStruct", Assert.Throws<DataFormatException>(() => file.Get<MatStruct>("A")).Message);
        Assert.Contains("no such file", Assert.Throws<DataFormatException>(() => MatFile.Read(P("none.mat"))).Message);
    }
}
