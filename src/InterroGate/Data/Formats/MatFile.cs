// MATLAB Level 5 MAT-file reader and writer (MathWorks, "MAT-File Format", the version 5/7 layout:
// 128-byte header, then tagged data elements, optionally zlib-compressed).
using System.Buffers.Binary;
using System.IO.Compression;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Text;

namespace InterroGate.Data.Formats;

/// <summary>The MATLAB class of an array (the mxCLASS numbers of the MAT-file format).</summary>
public enum MatClass
{
    Cell = 1, Struct = 2, Object = 3, Char = 4, Sparse = 5, Double = 6, Single = 7, Int8 = 8, UInt8 = 9,
    Int16 = 10, UInt16 = 11, Int32 = 12, UInt32 = 13, Int64 = 14, UInt64 = 15, Function = 16, Opaque = 17,
}

/// <summary>
/// One MATLAB value. <see cref="Dims"/> are MATLAB's dimensions (at least two; rows first) and every
/// element list is in MATLAB's column-major order, as stored.
/// </summary>
public abstract record MatValue(int[] Dims)
{
    /// <summary>The number of elements: the product of <see cref="Dims"/>.</summary>
    public int Count => Dims.Aggregate(1, (a, b) => a * b);

    /// <summary>What the value is, for messages ("double 3×4", "struct 1×2", ...).</summary>
    public string Describe() => $"{KindName} {string.Join('×', Dims)}";

    private protected abstract string KindName { get; }

    /// <summary>MATLAB dimensions of a row-major shape; a vector becomes a 1×N row, as MATLAB stores it.</summary>
    protected static int[] MatlabDims(int[] shape) => shape.Length switch
    {
        0 => [1, 1],
        1 => [1, shape[0]],
        _ => shape,
    };
}

/// <summary>
/// A numeric or logical array. <see cref="Data"/> holds the elements column-major in the class's own type
/// (double[] for <see cref="MatClass.Double"/>, float[], sbyte[], byte[], short[], ushort[], int[], uint[],
/// long[], ulong[]); logical arrays are class UInt8 with <see cref="IsLogical"/> set, one 0/1 byte each.
/// </summary>
public sealed record MatArray : MatValue
{
    public MatArray(MatClass @class, int[] dims, Array data, bool isLogical = false) : base(dims)
    {
        if (ElementType(@class) is not { } type) throw new ArgumentException($"{@class} is not a numeric class.");
        if (data.GetType().GetElementType() != type) throw new ArgumentException($"{@class} data must be {type.Name}[], not {data.GetType().Name}.");
        if (dims.Length < 2 || dims.Any(d => d < 0)) throw new ArgumentException($"MATLAB dimensions are at least two non-negative numbers, not ({string.Join(", ", dims)}).");
        if (data.Length != Count) throw new ArgumentException($"{data.Length} elements for dimensions {string.Join('×', dims)}.");
        if (isLogical && @class != MatClass.UInt8) throw new ArgumentException("Logical arrays are class UInt8.");
        Class = @class;
        Data = data;
        IsLogical = isLogical;
    }

    public MatClass Class { get; }
    public Array Data { get; }
    public bool IsLogical { get; }

    private protected override string KindName => IsLogical ? "logical" : Class.ToString().ToLowerInvariant();

    /// <summary>An array of <paramref name="rowMajor"/> elements (C order) with row-major <paramref name="shape"/>; its class follows T.</summary>
    public static MatArray FromRowMajor<T>(T[] rowMajor, params int[] shape) where T : unmanaged
    {
        var cls = ClassOf(typeof(T)) ?? throw new ArgumentException($"{typeof(T).Name} is not a MATLAB numeric type.");
        var dims = MatlabDims(shape);
        return new MatArray(cls, dims, Reorder(rowMajor, dims, toRowMajor: false));
    }

    /// <summary>A logical array of row-major <paramref name="rowMajor"/> with row-major <paramref name="shape"/>.</summary>
    public static MatArray Logical(bool[] rowMajor, params int[] shape)
    {
        var dims = MatlabDims(shape);
        var bytes = rowMajor.Select(b => b ? (byte)1 : (byte)0).ToArray();
        return new MatArray(MatClass.UInt8, dims, Reorder(bytes, dims, toRowMajor: false), isLogical: true);
    }

    /// <summary>A 1×1 double.</summary>
    public static MatArray Scalar(double value) => new(MatClass.Double, [1, 1], new[] { value });

    /// <summary>The elements as doubles in row-major (C) order of <see cref="MatValue.Dims"/>: element (i, j) of an R×C matrix is at i·C + j.</summary>
    public double[] ToRowMajor() => ToRowMajor<double>();

    /// <summary>The elements converted to <typeparamref name="T"/> (truncating, as a C cast would), in row-major order.</summary>
    public T[] ToRowMajor<T>() where T : unmanaged, INumberBase<T> => Reorder(ColumnMajor<T>(), Dims, toRowMajor: true);

    /// <summary>The elements converted to <typeparamref name="T"/>, in MATLAB's column-major order.</summary>
    public T[] ColumnMajor<T>() where T : unmanaged, INumberBase<T> => Data switch
    {
        T[] same => (T[])same.Clone(),
        double[] a => Array.ConvertAll(a, x => T.CreateTruncating(x)),
        float[] a => Array.ConvertAll(a, x => T.CreateTruncating(x)),
        sbyte[] a => Array.ConvertAll(a, x => T.CreateTruncating(x)),
        byte[] a => Array.ConvertAll(a, x => T.CreateTruncating(x)),
        short[] a => Array.ConvertAll(a, x => T.CreateTruncating(x)),
        ushort[] a => Array.ConvertAll(a, x => T.CreateTruncating(x)),
        int[] a => Array.ConvertAll(a, x => T.CreateTruncating(x)),
        uint[] a => Array.ConvertAll(a, x => T.CreateTruncating(x)),
        long[] a => Array.ConvertAll(a, x => T.CreateTruncating(x)),
        ulong[] a => Array.ConvertAll(a, x => T.CreateTruncating(x)),
        _ => throw new InvalidOperationException(Data.GetType().Name),
    };

    /// <summary>Element (row, column) of a matrix, as a double.</summary>
    public double this[int row, int column] => Convert.ToDouble(Data.GetValue(row + Dims[0] * column));

    /// <summary>The single element of a 1×1 array.</summary>
    public double ScalarValue => Count == 1 ? Convert.ToDouble(Data.GetValue(0)) : throw new InvalidOperationException($"Not a scalar: {Describe()}.");

    internal static Type? ElementType(MatClass c) => c switch
    {
        MatClass.Double => typeof(double), MatClass.Single => typeof(float),
        MatClass.Int8 => typeof(sbyte), MatClass.UInt8 => typeof(byte),
        MatClass.Int16 => typeof(short), MatClass.UInt16 => typeof(ushort),
        MatClass.Int32 => typeof(int), MatClass.UInt32 => typeof(uint),
        MatClass.Int64 => typeof(long), MatClass.UInt64 => typeof(ulong),
        _ => null,
    };

    private static MatClass? ClassOf(Type t) =>
        Enum.GetValues<MatClass>().Cast<MatClass?>().FirstOrDefault(c => ElementType(c!.Value) == t);

    /// <summary>Column-major ↔ row-major order of an N-D array with MATLAB dimensions <paramref name="dims"/>.</summary>
    internal static T[] Reorder<T>(T[] source, int[] dims, bool toRowMajor)
    {
        var result = new T[source.Length];
        if (source.Length == 0) return result;
        int n = dims.Length;
        // Column-major stride of each axis; the row-major walk below visits the last axis fastest.
        var stride = new int[n];
        for (int k = 0, s = 1; k < n; s *= dims[k], k++) stride[k] = s;
        var index = new int[n];
        int col = 0;
        for (int row = 0; row < source.Length; row++)
        {
            if (toRowMajor) result[row] = source[col];
            else result[col] = source[row];
            for (int k = n - 1; k >= 0; k--)
            {
                if (++index[k] < dims[k]) { col += stride[k]; break; }
                col -= (dims[k] - 1) * stride[k];
                index[k] = 0;
            }
        }
        return result;
    }
}

/// <summary>A char array. <see cref="Data"/> is column-major; <see cref="Value"/> reads a 1×N row as a string.</summary>
public sealed record MatChar(int[] Dims, char[] Data) : MatValue(Dims)
{
    private protected override string KindName => "char";

    /// <summary>A 1×N char row holding <paramref name="text"/>.</summary>
    public static MatChar FromString(string text) => new([1, text.Length], text.ToCharArray());

    /// <summary>The characters in row-major order (for a single row: the string itself).</summary>
    public string Value => new(MatArray.Reorder(Data, Dims, toRowMajor: true));

    /// <summary>Each row of a 2-D char matrix as a string.</summary>
    public string[] Rows
    {
        get
        {
            if (Dims.Length != 2) return [Value];
            int r = Dims[0], c = Dims[1];
            return Enumerable.Range(0, r).Select(i => new string(Enumerable.Range(0, c).Select(j => Data[i + r * j]).ToArray())).ToArray();
        }
    }
}

/// <summary>A cell array; <see cref="Elements"/> column-major.</summary>
public sealed record MatCell(int[] Dims, MatValue[] Elements) : MatValue(Dims)
{
    private protected override string KindName => "cell";

    /// <summary>A 1×N cell row.</summary>
    public static MatCell Row(params MatValue[] elements) => new([1, elements.Length], elements);

    public MatValue this[int index] => Elements[index];
}

/// <summary>
/// A struct array: <see cref="FieldNames"/> in file order and, per element (column-major), one value per field.
/// </summary>
public sealed record MatStruct(int[] Dims, string[] FieldNames, IReadOnlyDictionary<string, MatValue>[] Elements) : MatValue(Dims)
{
    private protected override string KindName => "struct";

    /// <summary>A 1×1 struct with the given fields, in order.</summary>
    public static MatStruct Single(params (string Name, MatValue Value)[] fields) =>
        new([1, 1], fields.Select(f => f.Name).ToArray(), [fields.ToDictionary(f => f.Name, f => f.Value)]);

    /// <summary>A 1×N struct array with the given field names; each element maps every field to a value.</summary>
    public static MatStruct Row(string[] fieldNames, params IReadOnlyDictionary<string, MatValue>[] elements) => new([1, elements.Length], fieldNames, elements);

    public bool HasField(string name) => FieldNames.Contains(name);

    /// <summary>Field <paramref name="name"/> of element <paramref name="element"/> (column-major index).</summary>
    public MatValue this[int element, string name] =>
        Elements[element].TryGetValue(name, out var v) ? v
        : throw new KeyNotFoundException($"No field '{name}'; fields are: {string.Join(", ", FieldNames)}.");
}

/// <summary>
/// The variables of a MATLAB Level 5 MAT-file (what MATLAB writes with -v6 and -v7, and scipy.io.savemat).
/// Little-endian files are read; big-endian files, v7.3 (HDF5) files, sparse and complex arrays, function
/// handles and objects are rejected with a <see cref="DataFormatException"/> naming the file and variable.
/// Every length in the file is checked against the bytes present before anything is allocated.
/// </summary>
public sealed class MatFile
{
    private const int HeaderLength = 128;
    private const int TagLength = 8;
    // Deflate expands at most about 1032:1, so a compressed element can never hold more than this many bytes
    // per compressed byte; a larger announced size is a corrupt (or hostile) file, refused before allocating.
    private const long MaxDeflateRatio = 1032;

    private enum MiType
    {
        Int8 = 1, UInt8 = 2, Int16 = 3, UInt16 = 4, Int32 = 5, UInt32 = 6, Single = 7, Double = 9,
        Int64 = 12, UInt64 = 13, Matrix = 14, Compressed = 15, Utf8 = 16, Utf16 = 17, Utf32 = 18,
    }

    private MatFile(string path, string headerText, Dictionary<string, MatValue> variables)
    {
        Path = path;
        HeaderText = headerText;
        Variables = variables;
    }

    /// <summary>The file read.</summary>
    public string Path { get; }

    /// <summary>The descriptive text at the start of the header ("MATLAB 5.0 MAT-file, Platform: ...").</summary>
    public string HeaderText { get; }

    /// <summary>The variables by name, in file order.</summary>
    public IReadOnlyDictionary<string, MatValue> Variables { get; }

    /// <summary>Variable <paramref name="name"/> as a <typeparamref name="T"/>; otherwise an error naming the file, the variable and what it is.</summary>
    public T Get<T>(string name) where T : MatValue
    {
        if (!Variables.TryGetValue(name, out var v))
            throw new DataFormatException(Path, $"no variable '{name}' (variables: {(Variables.Count == 0 ? "none" : string.Join(", ", Variables.Keys))}).");
        return v as T ?? throw new DataFormatException(Path, $"variable '{name}' is a {v.Describe()}, not a {typeof(T).Name}.");
    }

    /// <summary>Reads every variable of the MAT-file at <paramref name="path"/>.</summary>
    public static MatFile Read(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, "no such file.");
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < HeaderLength)
            throw new DataFormatException(path, $"truncated header: a MAT-file starts with a 128-byte header, the file has {bytes.Length} bytes.");
        string text = Encoding.ASCII.GetString(bytes, 0, 116).TrimEnd(' ', '\0');
        if (bytes[126] == 'M' && bytes[127] == 'I')
            throw new DataFormatException(path, "big-endian MAT-file (endian indicator 'MI'); only little-endian files are read: re-save it on a little-endian machine.");
        if (bytes[126] != 'I' || bytes[127] != 'M')
            throw new DataFormatException(path, text.StartsWith("MATLAB", StringComparison.Ordinal)
                ? "bad header: no endian indicator 'IM' at bytes 126-127."
                : "bad header: not a MATLAB Level 5 MAT-file (no 'MATLAB' text, no endian indicator; Level 4 files are not read).");
        int version = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(124));
        if (version == 0x0200)
            throw new DataFormatException(path, "a v7.3 (HDF5) MAT-file; only Level 5 files are read: re-save it with save(..., '-v7').");
        if (version != 0x0100) throw new DataFormatException(path, $"bad header: version 0x{version:x4}, expected 0x0100.");

        var variables = new Dictionary<string, MatValue>();
        var reader = new Reader(path);
        int pos = HeaderLength;
        while (pos < bytes.Length)
        {
            var tag = reader.Tag(bytes, pos, bytes.Length, "top level");
            var (name, value) = tag.Type switch
            {
                MiType.Matrix => reader.Matrix(bytes.AsSpan(tag.Data, tag.Length), null),
                MiType.Compressed => reader.Compressed(bytes.AsSpan(tag.Data, tag.Length), pos),
                _ => throw new DataFormatException(path, $"data element of type {(int)tag.Type} at offset {pos}: expected a matrix (14) or compressed element (15) at the top level."),
            };
            // A later variable of the same name replaces the earlier one, as MATLAB's load does.
            variables[name] = value;
            pos = tag.Type == MiType.Compressed ? tag.Data + tag.Length : tag.Next;
        }
        return new MatFile(path, text, variables);
    }

    /// <summary>
    /// Writes <paramref name="variables"/> (numeric and logical arrays, char arrays, cells, structs, nested in
    /// any way) as a Level 5 MAT-file that MATLAB and scipy.io.loadmat read; each variable in its own zlib
    /// element when <paramref name="compress"/> is set (MATLAB's default, -v7), plain otherwise (-v6).
    /// </summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, MatValue>> variables, bool compress = true)
    {
        using var file = File.Create(path);
        var header = new byte[HeaderLength];
        header.AsSpan(0, 116).Fill((byte)' ');
        Encoding.ASCII.GetBytes($"MATLAB 5.0 MAT-file, Platform: .NET, Created on: {DateTime.UtcNow:ddd MMM dd HH:mm:ss yyyy}").CopyTo(header, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(124), 0x0100);
        header[126] = (byte)'I';
        header[127] = (byte)'M';
        file.Write(header);
        foreach (var (name, value) in variables)
        {
            if (name.Length == 0 || !char.IsAsciiLetter(name[0]) || !name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
                throw new ArgumentException($"'{name}' is not a MATLAB variable name (a letter, then letters, digits and underscores).");
            var matrix = new MemoryStream();
            WriteMatrix(matrix, name, value);
            if (!compress)
            {
                matrix.WriteTo(file);
                continue;
            }
            var packed = new MemoryStream();
            using (var z = new ZLibStream(packed, CompressionLevel.Optimal, leaveOpen: true)) matrix.WriteTo(z);
            var tag = new byte[TagLength];
            BinaryPrimitives.WriteUInt32LittleEndian(tag, (uint)MiType.Compressed);
            BinaryPrimitives.WriteUInt32LittleEndian(tag.AsSpan(4), checked((uint)packed.Length));
            file.Write(tag);
            packed.WriteTo(file); // compressed elements are not padded
        }
    }

    // ---- writing ----

    private static void WriteMatrix(Stream s, string name, MatValue value)
    {
        var body = new MemoryStream();
        var (cls, logical) = value switch
        {
            MatArray a => (a.Class, a.IsLogical),
            MatChar => (MatClass.Char, false),
            MatCell => (MatClass.Cell, false),
            MatStruct => (MatClass.Struct, false),
            _ => throw new ArgumentException($"Cannot write a {value.GetType().Name}."),
        };
        var flags = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(flags, (uint)cls | (logical ? 0x0200u : 0));
        WriteElement(body, MiType.UInt32, flags);
        WriteElement(body, MiType.Int32, MemoryMarshal.AsBytes(value.Dims.AsSpan()));
        WriteElement(body, MiType.Int8, Encoding.ASCII.GetBytes(name));
        switch (value)
        {
            case MatArray a:
                WriteElement(body, NativeType(a.Class), RawBytes(a.Data));
                break;
            case MatChar c:
                WriteElement(body, MiType.UInt16, MemoryMarshal.AsBytes(c.Data.AsSpan()));
                break;
            case MatCell c:
                if (c.Elements.Length != c.Count) throw new ArgumentException($"A {c.Describe()} cell needs {c.Count} elements, not {c.Elements.Length}.");
                foreach (var e in c.Elements) WriteMatrix(body, "", e);
                break;
            case MatStruct st:
                if (st.Elements.Length != st.Count) throw new ArgumentException($"A {st.Describe()} struct needs {st.Count} elements, not {st.Elements.Length}.");
                // Field names are stored in fixed-width, NUL-padded slots; MATLAB uses 32 bytes, more for long names.
                int width = Math.Max(32, st.FieldNames.Select(f => f.Length + 1).DefaultIfEmpty(0).Max());
                WriteElement(body, MiType.Int32, BitConverter.GetBytes(width));
                var names = new byte[width * st.FieldNames.Length];
                for (int i = 0; i < st.FieldNames.Length; i++) Encoding.ASCII.GetBytes(st.FieldNames[i]).CopyTo(names, i * width);
                WriteElement(body, MiType.Int8, names);
                foreach (var element in st.Elements)
                    foreach (var field in st.FieldNames)
                        WriteMatrix(body, "", element.TryGetValue(field, out var v) ? v : throw new ArgumentException($"A struct element lacks field '{field}'."));
                break;
        }
        Span<byte> tag = stackalloc byte[TagLength];
        BinaryPrimitives.WriteUInt32LittleEndian(tag, (uint)MiType.Matrix);
        BinaryPrimitives.WriteUInt32LittleEndian(tag[4..], checked((uint)body.Length));
        s.Write(tag);
        body.WriteTo(s);
    }

    /// <summary>One data element: the small (4-byte) form for 1..4 bytes, as MATLAB writes it; otherwise tag, data, padding to 8 bytes.</summary>
    private static void WriteElement(Stream s, MiType type, ReadOnlySpan<byte> data)
    {
        Span<byte> tag = stackalloc byte[TagLength];
        if (data.Length is > 0 and <= 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(tag, (uint)type | ((uint)data.Length << 16));
            data.CopyTo(tag[4..]);
            s.Write(tag);
            return;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(tag, (uint)type);
        BinaryPrimitives.WriteUInt32LittleEndian(tag[4..], (uint)data.Length);
        s.Write(tag);
        s.Write(data);
        s.Write(new byte[Pad(data.Length) - data.Length]);
    }

    private static byte[] RawBytes(Array data) => data switch
    {
        double[] a => MemoryMarshal.AsBytes(a.AsSpan()).ToArray(),
        float[] a => MemoryMarshal.AsBytes(a.AsSpan()).ToArray(),
        sbyte[] a => MemoryMarshal.AsBytes(a.AsSpan()).ToArray(),
        byte[] a => a,
        short[] a => MemoryMarshal.AsBytes(a.AsSpan()).ToArray(),
        ushort[] a => MemoryMarshal.AsBytes(a.AsSpan()).ToArray(),
        int[] a => MemoryMarshal.AsBytes(a.AsSpan()).ToArray(),
        uint[] a => MemoryMarshal.AsBytes(a.AsSpan()).ToArray(),
        long[] a => MemoryMarshal.AsBytes(a.AsSpan()).ToArray(),
        ulong[] a => MemoryMarshal.AsBytes(a.AsSpan()).ToArray(),
        _ => throw new ArgumentException(data.GetType().Name),
    };

    private static MiType NativeType(MatClass c) => c switch
    {
        MatClass.Double => MiType.Double, MatClass.Single => MiType.Single,
        MatClass.Int8 => MiType.Int8, MatClass.UInt8 => MiType.UInt8,
        MatClass.Int16 => MiType.Int16, MatClass.UInt16 => MiType.UInt16,
        MatClass.Int32 => MiType.Int32, MatClass.UInt32 => MiType.UInt32,
        MatClass.Int64 => MiType.Int64, MatClass.UInt64 => MiType.UInt64,
        _ => throw new ArgumentException($"{c} is not numeric."),
    };

    private static int Pad(int n) => (n + 7) & ~7;

    // ---- reading ----

    private readonly record struct Tag(MiType Type, int Data, int Length, int Next);

    /// <summary>Parses data elements of one file; every fault becomes a DataFormatException naming the file and where.</summary>
    private sealed class Reader(string path)
    {
        private DataFormatException Fail(string? where, string problem) =>
            new(path, where is null ? problem : $"variable '{where}': {problem}");

        /// <summary>The data element whose tag starts at <paramref name="pos"/>, inside a buffer that ends at <paramref name="end"/>.</summary>
        public Tag Tag(ReadOnlySpan<byte> buffer, int pos, int end, string? where)
        {
            if (end - pos < 4) throw Fail(where, $"truncated: a data element tag at offset {pos} needs 8 bytes, {end - pos} are left.");
            uint first = BinaryPrimitives.ReadUInt32LittleEndian(buffer[pos..]);
            if (first >> 16 != 0)
            {
                // Small data element: type and byte count share the first word, the data fills the second.
                int n = (int)(first >> 16);
                if (n > 4) throw Fail(where, $"corrupt small data element at offset {pos}: {n} bytes in a 4-byte field.");
                if (end - pos < 8) throw Fail(where, $"truncated: a small data element at offset {pos} needs 8 bytes, {end - pos} are left.");
                return new Tag((MiType)(first & 0xFFFF), pos + 4, n, pos + 8);
            }
            if (end - pos < 8) throw Fail(where, $"truncated: a data element tag at offset {pos} needs 8 bytes, {end - pos} are left.");
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(buffer[(pos + 4)..]);
            long left = end - (pos + 8);
            if (length > left) throw Fail(where, $"truncated or corrupt: a data element at offset {pos} announces {length} bytes, {left} are left.");
            int data = pos + 8;
            // The last element of a buffer may omit its padding.
            return new Tag((MiType)first, data, (int)length, (int)Math.Min(end, (long)data + Pad((int)length)));
        }

        public (string Name, MatValue Value) Compressed(ReadOnlySpan<byte> packed, int offset)
        {
            byte[] inner;
            try
            {
                using var z = new ZLibStream(new MemoryStream(packed.ToArray()), CompressionMode.Decompress);
                var head = new byte[TagLength];
                int got = z.ReadAtLeast(head, TagLength, throwOnEndOfStream: false);
                if (got < TagLength) throw Fail(null, $"compressed element at offset {offset} holds {got} bytes, less than a data element tag.");
                if ((MiType)BinaryPrimitives.ReadUInt32LittleEndian(head) != MiType.Matrix)
                    throw Fail(null, $"compressed element at offset {offset} holds a data element of type {BinaryPrimitives.ReadUInt32LittleEndian(head)}, not a matrix (14).");
                uint length = BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(4));
                if (length > (long)packed.Length * MaxDeflateRatio || length > Array.MaxLength - TagLength)
                    throw Fail(null, $"corrupt compressed element at offset {offset}: {packed.Length} compressed bytes cannot hold the {length} announced.");
                inner = new byte[TagLength + length];
                head.CopyTo(inner, 0);
                got = z.ReadAtLeast(inner.AsSpan(TagLength), (int)length, throwOnEndOfStream: false);
                if (got < length) throw Fail(null, $"truncated compressed element at offset {offset}: {got} of {length} bytes decompress.");
            }
            catch (InvalidDataException e)
            {
                throw Fail(null, $"corrupt zlib data in the compressed element at offset {offset}: {e.Message}");
            }
            var tag = Tag(inner, 0, inner.Length, null);
            return Matrix(inner.AsSpan(tag.Data, tag.Length), null);
        }

        /// <summary>An miMATRIX element's content; <paramref name="parent"/> names the enclosing variable (null at the top level).</summary>
        public (string Name, MatValue Value) Matrix(ReadOnlySpan<byte> m, string? parent)
        {
            // An empty element stands for [] (MATLAB writes empty cell contents this way).
            if (m.Length == 0) return ("", new MatArray(MatClass.Double, [0, 0], Array.Empty<double>()));
            string where = parent ?? "(unnamed)";
            var flags = Tag(m, 0, m.Length, where);
            if (flags.Type != MiType.UInt32 || flags.Length != 8) throw Fail(where, $"array flags must be 8 bytes of type 6, not {flags.Length} of type {(int)flags.Type}.");
            uint word = BinaryPrimitives.ReadUInt32LittleEndian(m[flags.Data..]);
            var cls = (MatClass)(word & 0xFF);
            bool complex = (word & 0x0800) != 0, logical = (word & 0x0200) != 0;

            var dimsTag = Tag(m, flags.Next, m.Length, where);
            if (dimsTag.Type != MiType.Int32 || dimsTag.Length % 4 != 0 || dimsTag.Length < 8)
                throw Fail(where, $"dimensions must be two or more int32 values, not {dimsTag.Length} bytes of type {(int)dimsTag.Type}.");
            var dims = MemoryMarshal.Cast<byte, int>(m.Slice(dimsTag.Data, dimsTag.Length)).ToArray();
            if (dims.Any(d => d < 0)) throw Fail(where, $"negative dimension in {string.Join('×', dims)}.");

            var nameTag = Tag(m, dimsTag.Next, m.Length, where);
            if (nameTag.Type is not (MiType.Int8 or MiType.UInt8)) throw Fail(where, $"array name must be of type 1, not {(int)nameTag.Type}.");
            string name = Encoding.ASCII.GetString(m.Slice(nameTag.Data, nameTag.Length)).TrimEnd('\0');
            where = parent is null ? name : parent;
            int pos = nameTag.Next;
            int left = m.Length - pos;
            long count = 1;
            foreach (int d in dims)
                if ((count *= d) > Array.MaxLength) throw Fail(where, $"{string.Join('×', dims)} is too many elements.");

            switch (cls)
            {
                case MatClass.Sparse: throw Fail(where, $"is a sparse array ({string.Join('×', dims)}); sparse arrays are not read: store full(x).");
                case MatClass.Function: throw Fail(where, "is a function handle; function handles are not read.");
                case MatClass.Object or MatClass.Opaque: throw Fail(where, "is a MATLAB object (class instance); objects are not read: store plain arrays, cells and structs.");
            }
            if (complex) throw Fail(where, $"is a complex {cls.ToString().ToLowerInvariant()} array; complex arrays are not read.");

            switch (cls)
            {
                case MatClass.Cell:
                {
                    // Every element is at least an 8-byte tag: a count beyond that is corrupt, caught before allocating.
                    if (count * TagLength > left) throw Fail(where, $"a {string.Join('×', dims)} cell needs at least {count * TagLength} bytes, {left} are left.");
                    var elements = new MatValue[count];
                    for (int i = 0; i < count; i++)
                    {
                        var t = Tag(m, pos, m.Length, where);
                        if (t.Type != MiType.Matrix) throw Fail(where, $"cell element {i + 1} is a data element of type {(int)t.Type}, not a matrix.");
                        elements[i] = Matrix(m.Slice(t.Data, t.Length), $"{where}{{{i + 1}}}").Value;
                        pos = t.Next;
                    }
                    return (name, new MatCell(dims, elements));
                }
                case MatClass.Struct:
                {
                    var lengthTag = Tag(m, pos, m.Length, where);
                    if (lengthTag.Type != MiType.Int32 || lengthTag.Length != 4) throw Fail(where, "struct field-name length must be one int32.");
                    int width = BinaryPrimitives.ReadInt32LittleEndian(m[lengthTag.Data..]);
                    var namesTag = Tag(m, lengthTag.Next, m.Length, where);
                    if (namesTag.Type is not (MiType.Int8 or MiType.UInt8)) throw Fail(where, $"struct field names must be of type 1, not {(int)namesTag.Type}.");
                    if (width <= 0 ? namesTag.Length != 0 : namesTag.Length % width != 0)
                        throw Fail(where, $"struct field names take {namesTag.Length} bytes, not a multiple of the field-name length {width}.");
                    int fields = width <= 0 ? 0 : namesTag.Length / width;
                    var fieldNames = new string[fields];
                    for (int f = 0; f < fields; f++)
                    {
                        var slot = m.Slice(namesTag.Data + f * width, width);
                        int nul = slot.IndexOf((byte)0);
                        fieldNames[f] = Encoding.ASCII.GetString(nul < 0 ? slot : slot[..nul]);
                    }
                    pos = namesTag.Next;
                    left = m.Length - pos;
                    if (count * fields * TagLength > left)
                        throw Fail(where, $"a {string.Join('×', dims)} struct of {fields} fields needs at least {count * fields * TagLength} bytes, {left} are left.");
                    var elements = new IReadOnlyDictionary<string, MatValue>[count];
                    for (int i = 0; i < count; i++)
                    {
                        var element = new Dictionary<string, MatValue>(fields);
                        string at = count == 1 ? where : $"{where}({i + 1})";
                        foreach (var field in fieldNames)
                        {
                            var t = Tag(m, pos, m.Length, where);
                            if (t.Type != MiType.Matrix) throw Fail(where, $"field '{field}' is a data element of type {(int)t.Type}, not a matrix.");
                            element[field] = Matrix(m.Slice(t.Data, t.Length), $"{at}.{field}").Value;
                            pos = t.Next;
                        }
                        elements[i] = element;
                    }
                    return (name, new MatStruct(dims, fieldNames, elements));
                }
                case MatClass.Char:
                {
                    if (count == 0) return (name, new MatChar(dims, []));
                    var t = Tag(m, pos, m.Length, where);
                    var raw = m.Slice(t.Data, t.Length);
                    char[] chars = t.Type switch
                    {
                        MiType.UInt16 or MiType.Utf16 when raw.Length % 2 == 0 => MemoryMarshal.Cast<byte, char>(raw).ToArray(),
                        MiType.Utf8 => Encoding.UTF8.GetString(raw).ToCharArray(),
                        MiType.UInt8 or MiType.Int8 => Encoding.Latin1.GetString(raw).ToCharArray(),
                        MiType.Utf32 when raw.Length % 4 == 0 => Encoding.UTF32.GetString(raw).ToCharArray(),
                        _ => throw Fail(where, $"char data of {raw.Length} bytes of type {(int)t.Type} (expected UTF-16, UTF-8, UTF-32 or 8-bit characters)."),
                    };
                    if (chars.Length != count)
                    {
                        // UTF-8/UTF-32 text may decode to a different number of UTF-16 units; a single row stays a string.
                        if (dims.Length == 2 && dims[0] == 1) return (name, MatChar.FromString(new string(chars)));
                        throw Fail(where, $"{chars.Length} characters for a {string.Join('×', dims)} char array.");
                    }
                    return (name, new MatChar(dims, chars));
                }
                default:
                {
                    if (MatArray.ElementType(cls) is null) throw Fail(where, $"unknown array class {(int)cls}.");
                    var array = Numeric(m, pos, cls, dims, count, where);
                    if (!logical) return (name, array);
                    // MATLAB stores logicals as class uint8; any other class is read as nonzero = true.
                    var bits = cls == MatClass.UInt8 ? (byte[])array.Data : array.ColumnMajor<double>().Select(v => v != 0 ? (byte)1 : (byte)0).ToArray();
                    return (name, new MatArray(MatClass.UInt8, dims, bits, isLogical: true));
                }
            }
        }

        /// <summary>The real part of a numeric array, converted from its stored type (often narrower) to the class's type.</summary>
        private MatArray Numeric(ReadOnlySpan<byte> m, int pos, MatClass cls, int[] dims, long count, string where)
        {
            if (count == 0 && pos >= m.Length) return new MatArray(cls, dims, Array.CreateInstance(MatArray.ElementType(cls)!, 0));
            var t = Tag(m, pos, m.Length, where);
            int size = t.Type switch
            {
                MiType.Int8 or MiType.UInt8 => 1,
                MiType.Int16 or MiType.UInt16 => 2,
                MiType.Int32 or MiType.UInt32 or MiType.Single => 4,
                MiType.Double or MiType.Int64 or MiType.UInt64 => 8,
                _ => throw Fail(where, $"numeric data of type {(int)t.Type} is not a numeric storage type."),
            };
            if (count * size != t.Length)
                throw Fail(where, $"a {string.Join('×', dims)} {cls.ToString().ToLowerInvariant()} array needs {count} values ({count * size} bytes of type {(int)t.Type}), the element holds {t.Length} bytes.");
            var raw = m.Slice(t.Data, t.Length);
            Array data = cls switch
            {
                MatClass.Double => FromStored<double>(raw, t.Type),
                MatClass.Single => FromStored<float>(raw, t.Type),
                MatClass.Int8 => FromStored<sbyte>(raw, t.Type),
                MatClass.UInt8 => FromStored<byte>(raw, t.Type),
                MatClass.Int16 => FromStored<short>(raw, t.Type),
                MatClass.UInt16 => FromStored<ushort>(raw, t.Type),
                MatClass.Int32 => FromStored<int>(raw, t.Type),
                MatClass.UInt32 => FromStored<uint>(raw, t.Type),
                MatClass.Int64 => FromStored<long>(raw, t.Type),
                MatClass.UInt64 => FromStored<ulong>(raw, t.Type),
                _ => throw Fail(where, $"unknown array class {(int)cls}."),
            };
            return new MatArray(cls, dims, data);
        }

        private static T[] FromStored<T>(ReadOnlySpan<byte> raw, MiType stored) where T : unmanaged, INumberBase<T> => stored switch
        {
            MiType.Int8 => Cast<sbyte, T>(raw),
            MiType.UInt8 => Cast<byte, T>(raw),
            MiType.Int16 => Cast<short, T>(raw),
            MiType.UInt16 => Cast<ushort, T>(raw),
            MiType.Int32 => Cast<int, T>(raw),
            MiType.UInt32 => Cast<uint, T>(raw),
            MiType.Single => Cast<float, T>(raw),
            MiType.Double => Cast<double, T>(raw),
            MiType.Int64 => Cast<long, T>(raw),
            MiType.UInt64 => Cast<ulong, T>(raw),
            _ => throw new InvalidOperationException(stored.ToString()),
        };

        private static TOut[] Cast<TIn, TOut>(ReadOnlySpan<byte> raw) where TIn : unmanaged, INumberBase<TIn> where TOut : unmanaged, INumberBase<TOut>
        {
            // Element data is unaligned in the file: copy it out before reinterpreting.
            var source = new TIn[raw.Length / Marshal.SizeOf<TIn>()];
            raw.CopyTo(MemoryMarshal.AsBytes(source.AsSpan()));
            // By type, not `is`: the runtime lets a ushort[] pass as a short[] (same size), which would keep the stored type.
            if (typeof(TIn) == typeof(TOut)) return (TOut[])(object)source;
            var result = new TOut[source.Length];
            for (int i = 0; i < source.Length; i++) result[i] = TOut.CreateTruncating(source[i]);
            return result;
        }
    }
}
