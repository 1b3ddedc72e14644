namespace InterroGate.Deployment;

/// <summary>
/// A static network in one safetensors file: its tensors under their node names, its structure (nodes, task
/// outputs, tasks, input size and normalisation) as JSON in the metadata. Other tools read the weights as
/// any safetensors file.
/// </summary>
public static class StaticModelFile
{
    public const string FormatKey = "format";
    public const string Format = "interrogate-static-network/1";
    public const string StructureKey = "structure";

    public static void Save(string path, StaticGraph graph) =>
        SafeTensors.Save(path, graph.Tensors, new Dictionary<string, string> { [FormatKey] = Format, [StructureKey] = graph.StructureJson() });

    /// <summary>Whether <paramref name="path"/> looks like a static model (a safetensors file with our metadata).</summary>
    public static bool IsStaticModel(string path) =>
        path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);

    public static StaticGraph Load(string path)
    {
        var (tensors, metadata) = SafeTensors.Load(path);
        if (!metadata.TryGetValue(FormatKey, out var format) || format != Format || !metadata.TryGetValue(StructureKey, out var structure))
            throw new SafeTensorsException(path, null, $"holds weights but no static network (its metadata lacks {FormatKey} = {Format}); " +
                "write one with `interrogate prune` or `interrogate export --format safetensors`.");
        try
        {
            return StaticGraph.FromStructure(structure, tensors);
        }
        catch (Exception e) when (e is InvalidDataException or System.Text.Json.JsonException or ArgumentException)
        {
            throw new SafeTensorsException(path, null, e.Message);
        }
    }
}
