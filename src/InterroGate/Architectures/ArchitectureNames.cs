namespace InterroGate.Architectures;

/// <summary>Architectures as messages name them.</summary>
public static class ArchitectureNames
{
    /// <summary>The display name of an architecture type ("mtl" → "MTL", "cross-stitch" → "Cross-stitch"); an unknown type as given.</summary>
    public static string Display(string type) => type switch
    {
        "stl" => "STL",
        "mtl" => "MTL",
        "interrogate" => "InterroGate",
        "mtan" => "MTAN",
        "cross-stitch" => "Cross-stitch",
        _ => type,
    };

    /// <summary>"an MTL model", "a Cross-stitch model": a model of that type with its article.</summary>
    public static string AModel(string type)
    {
        string name = Display(type);
        bool vowelSound = name is "STL" or "MTL" or "MTAN" || name.Length > 0 && "aeiouAEIOU".Contains(name[0]);
        return $"{(vowelSound ? "an" : "a")} {name} model";
    }
}
