// Marks a needed symbol version as weak in an ELF64 shared object (.gnu.version_r, VER_FLG_WEAK),
// so the dynamic loader accepts a host whose library lacks that version. The build compiles this file
// as an MSBuild task (build/InterroGate.Native.targets); the tests compile the patcher alone.
#nullable enable
using System;
using System.IO;
using System.Text;
#if !ELF_PATCHER_LIBRARY_ONLY
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;
#endif

namespace InterroGate.Build
{
    public static class ElfVersionPatcher
    {
        private const uint ShtGnuVerneed = 0x6ffffffe;
        private const ushort VerFlgWeak = 0x2;

        /// <summary>Outcome of <see cref="MarkWeak"/>.</summary>
        public enum Result { Patched, AlreadyWeak, NotRequired }

        /// <summary>
        /// Sets VER_FLG_WEAK on every requirement of <paramref name="version"/> (for example GLIBCXX_3.4.32)
        /// in the ELF64 little-endian file at <paramref name="path"/>. Throws <see cref="InvalidDataException"/>
        /// naming the file when it is not such a file or its tables point outside it.
        /// </summary>
        public static Result MarkWeak(string path, string version)
        {
            byte[] elf = File.ReadAllBytes(path);
            Result result = Patch(elf, version, path);
            if (result == Result.Patched)
            {
                string tmp = path + ".patching";
                File.WriteAllBytes(tmp, elf);
                File.Delete(path);
                File.Move(tmp, path);
            }
            return result;
        }

        /// <summary>The patch on bytes in memory; <paramref name="name"/> is used in error messages.</summary>
        public static Result Patch(byte[] elf, string version, string name)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException($"{name}: not an ELF file (bad magic).");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException($"{name}: only 64-bit little-endian ELF files are supported.");

            ulong shoff = U64(elf, 0x28, name);
            int shentsize = U16(elf, 0x3A, name);
            int shnum = U16(elf, 0x3C, name);
            bool found = false, changed = false;
            for (int i = 0; i < shnum; i++)
            {
                long sh = Checked(shoff + (ulong)(i * shentsize), 64, elf, name);
                if (U32(elf, sh + 4, name) != ShtGnuVerneed) continue;
                long offset = Checked(U64(elf, sh + 24, name), 0, elf, name);
                long size = (long)U64(elf, sh + 32, name);
                int strIndex = (int)U32(elf, sh + 40, name);
                int count = (int)U32(elf, sh + 44, name);
                long strSh = Checked(shoff + (ulong)(strIndex * shentsize), 64, elf, name);
                long strOffset = Checked(U64(elf, strSh + 24, name), 0, elf, name);

                long need = offset;
                for (int n = 0; n < count; n++)
                {
                    Checked((ulong)need, 16, elf, name);
                    int auxCount = U16(elf, need + 2, name);
                    long aux = need + U32(elf, need + 8, name);
                    for (int a = 0; a < auxCount; a++)
                    {
                        Checked((ulong)aux, 16, elf, name);
                        string auxName = CString(elf, strOffset + U32(elf, aux + 8, name), name);
                        if (auxName == version)
                        {
                            found = true;
                            ushort flags = (ushort)U16(elf, aux + 4, name);
                            if ((flags & VerFlgWeak) == 0)
                            {
                                flags |= VerFlgWeak;
                                elf[aux + 4] = (byte)flags;
                                elf[aux + 5] = (byte)(flags >> 8);
                                changed = true;
                            }
                        }
                        aux += U32(elf, aux + 12, name);
                    }
                    long next = U32(elf, need + 12, name);
                    if (next == 0) break;
                    need += next;
                    if (need >= offset + size) throw new InvalidDataException($"{name}: .gnu.version_r chain leaves its section.");
                }
            }
            return changed ? Result.Patched : found ? Result.AlreadyWeak : Result.NotRequired;
        }

        /// <summary>Whether the ELF file at <paramref name="library"/> (a libstdc++) defines <paramref name="version"/>.</summary>
        public static bool Defines(string library, string version)
        {
            byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
            byte[] bytes = File.ReadAllBytes(library);
            // Plain scan: the MSBuild task compiles against netstandard2.0 (no span search).
            for (int i = 0; i + needle.Length <= bytes.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && bytes[i + j] == needle[j]) j++;
                if (j == needle.Length) return true;
            }
            return false;
        }

        /// <summary>The host's libstdc++.so.6, from the usual library folders, or null.</summary>
        public static string? FindHostLibStdCxx()
        {
            foreach (string dir in new[] { "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/usr/lib/aarch64-linux-gnu" })
            {
                string p = Path.Combine(dir, "libstdc++.so.6");
                if (File.Exists(p)) return p;
            }
            return null;
        }

        private static long Checked(ulong offset, int length, byte[] elf, string name)
        {
            if (offset > (ulong)elf.Length || (ulong)elf.Length - offset < (ulong)length)
                throw new InvalidDataException($"{name}: ELF table at offset {offset} lies outside the file ({elf.Length} bytes).");
            return (long)offset;
        }

        private static int U16(byte[] b, long o, string name) { Checked((ulong)o, 2, b, name); return b[o] | (b[o + 1] << 8); }
        private static uint U32(byte[] b, long o, string name) { Checked((ulong)o, 4, b, name); return BitConverter.ToUInt32(b, (int)o); }
        private static ulong U64(byte[] b, long o, string name) { Checked((ulong)o, 8, b, name); return BitConverter.ToUInt64(b, (int)o); }

        private static string CString(byte[] b, long o, string name)
        {
            Checked((ulong)o, 1, b, name);
            int end = Array.IndexOf(b, (byte)0, (int)o);
            if (end < 0) throw new InvalidDataException($"{name}: unterminated string in the dynamic string table.");
            return Encoding.ASCII.GetString(b, (int)o, end - (int)o);
        }
    }
#if !ELF_PATCHER_LIBRARY_ONLY
    // MSBuild task: finds libLibTorchSharp.so under a folder and marks its GLIBCXX_3.4.32 need weak,
    // only where the host's libstdc++ does not define that version.
    public class PatchLibTorchSharp : Task
    {
        private const string Version = "GLIBCXX_3.4.32";

        [Required]
        public string Folder { get; set; } = "";

        public override bool Execute()
        {
            string? host = ElfVersionPatcher.FindHostLibStdCxx();
            if (host != null && ElfVersionPatcher.Defines(host, Version))
            {
                Log.LogMessage(MessageImportance.Low, $"{host} defines {Version}; libLibTorchSharp.so left as shipped.");
                return true;
            }
            foreach (string lib in Directory.EnumerateFiles(Folder, "libLibTorchSharp.so", SearchOption.AllDirectories))
            {
                try
                {
                    var result = ElfVersionPatcher.MarkWeak(lib, Version);
                    Log.LogMessage(MessageImportance.Normal, $"{lib}: {Version} requirement {result}.");
                }
                catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
                {
                    Log.LogError($"Could not mark {Version} weak in {lib}: {e.Message}");
                    return false;
                }
            }
            return true;
        }
    }
#endif
}
