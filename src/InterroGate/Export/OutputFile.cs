namespace InterroGate.Export;

/// <summary>How the exporters write a file: checked first, written beside it, then renamed over it.</summary>
internal static class OutputFile
{
    /// <summary>
    /// Writes <paramref name="path"/> through <paramref name="write"/> into path.tmp, then renames it, so that a reader
    /// never sees half a file. A path that is a folder, or in a folder that does not exist, is refused naming it; the
    /// temporary file does not outlive a failed write.
    /// </summary>
    public static void WriteAtomically(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path)) throw new IOException($"{path} is a folder; name the file to write.");
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"{folder} does not exist: create the folder before writing {Path.GetFileName(path)} in it.");
        string temp = path + ".tmp";
        try
        {
            using (var f = File.Create(temp)) write(f);
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp); // no exception where it is already gone
            throw;
        }
    }
}
