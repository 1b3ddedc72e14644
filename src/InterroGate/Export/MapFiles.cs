using InterroGate.Data;
using InterroGate.Data.Formats;
using InterroGate.Tasks;

namespace InterroGate.Export;

/// <summary>Writes the dense maps of predictions as files: images where a viewer shows them, .npy arrays otherwise.</summary>
public static class MapFiles
{
    /// <summary>
    /// Writes every dense map of <paramref name="results"/> into <paramref name="folder"/> (created if missing) as
    /// <c>IMAGE.TASK.png</c> (segmentation: the class of each pixel, up to 256 classes; saliency and edges: the
    /// probability × 255, rounded) or <c>IMAGE.TASK.npy</c> (depth [H, W], normals [3, H, W], float32; segmentation
    /// of more than 256 classes, int64), IMAGE the image's file name without its extension, prefixed with the image's
    /// position (<c>3-IMAGE</c>) when two images share a name. Returns the path written per (image index, task).
    /// </summary>
    public static Dictionary<(int Image, string Task), string> Write(string folder, IReadOnlyList<ImagePrediction> results)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        ArgumentNullException.ThrowIfNull(results);
        Directory.CreateDirectory(folder);
        var stems = results.Select(r => Path.GetFileNameWithoutExtension(r.Source)).ToArray();
        var repeated = stems.GroupBy(s => s).Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet();
        var written = new Dictionary<(int, string), string>();
        for (int i = 0; i < results.Count; i++)
        {
            if (results[i].Tasks is not { } tasks) continue;
            string stem = repeated.Contains(stems[i]) ? $"{i}-{stems[i]}" : stems[i];
            foreach (var (task, prediction) in tasks)
            {
                if (prediction.Map is not { } map) continue;
                written[(i, task)] = WriteMap(Path.Combine(folder, $"{stem}.{task}"), prediction.Kind, map);
            }
        }
        return written;
    }

    private static string WriteMap(string stem, TaskKind kind, DenseMap map)
    {
        int h = (int)map.Shape[^2], w = (int)map.Shape[^1];
        switch (kind)
        {
            case TaskKind.Segmentation when map.Values.All(v => v < 256):
            case TaskKind.Saliency or TaskKind.Edges:
            {
                var bytes = kind == TaskKind.Segmentation
                    ? map.Values.Select(v => (byte)v).ToArray()
                    : map.Values.Select(p => (byte)Math.Round(Math.Clamp(p, 0f, 1f) * 255)).ToArray();
                string path = stem + ".png";
                Data.Formats.ImageFiles.WritePng(path, new DecodedImage(bytes, h, w, 1));
                return path;
            }
            case TaskKind.Segmentation:
            {
                string path = stem + ".npy";
                Npy.Write(path, map.Shape, map.Values.Select(v => (long)v).ToArray());
                return path;
            }
            default:
            {
                string path = stem + ".npy";
                Npy.Write(path, map.Shape, map.Values);
                return path;
            }
        }
    }
}
