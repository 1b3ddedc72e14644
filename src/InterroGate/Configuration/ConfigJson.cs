using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using InterroGate.Training;

namespace InterroGate.Configuration;

/// <summary>
/// Reads and writes configurations as JSON: camelCase keys, enums as strings, comments allowed;
/// unknown keys, wrong types and malformed JSON are <see cref="ConfigException"/>s naming the key.
/// </summary>
public static class ConfigJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        AllowOutOfOrderMetadataProperties = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase, allowIntegerValues: false) },
    };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    /// <summary>
    /// Parses <paramref name="json"/> after applying <paramref name="overrides"/> (key.path=value). With
    /// <paramref name="baseDirectory"/> (the folder of the file the JSON came from), relative paths written in the file
    /// (data.root, startFrom.mtl, startFrom.stl.*) are taken relative to that folder; paths given in overrides stay
    /// relative to the working folder.
    /// </summary>
    public static T Deserialize<T>(string? json, IEnumerable<string>? overrides = null, string source = "config", string? baseDirectory = null)
    {
        if (json is null) throw new ConfigException("$", $"{source} holds no configuration");
        JsonNode node;
        try
        {
            node = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions
                   {
                       CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true,
                       AllowDuplicateProperties = false, // {"name": "a", "name": "b"}: an error naming the key, not the last one silently
                   })
                   ?? throw new ConfigException("$", $"{source} is empty");
        }
        catch (JsonException e)
        {
            throw new ConfigException("$", $"{source} is not valid JSON{(e.LineNumber is long line ? $" (line {line + 1})" : "")}: {e.Message}");
        }
        if (baseDirectory is not null)
        {
            var overridden = (overrides ?? []).Select(o => o.IndexOf('=') is > 0 and var eq ? o[..eq].Trim() : o).ToHashSet();
            ResolvePaths(node, baseDirectory, overridden);
        }
        foreach (var o in overrides ?? []) ApplyOverride(node, o);
        // A comparison's InterroGate options are InterroGate's by definition: a "type" there would be read as nothing.
        if (typeof(T) == typeof(CompareConfig) && node is JsonObject top && top["interroGate"] is JsonObject ig && ig.ContainsKey("type"))
            throw new ConfigException("interroGate.type", "is not a key of a comparison's InterroGate options (they are InterroGate's; other architectures go in \"architectures\")");
        try
        {
            var value = node.Deserialize<T>(Options) ?? throw new ConfigException("$", $"{source} is null");
            if (JsonNulls.FirstNull(value) is { } key) throw new ConfigException(key, "is null; give a value or leave the key out for its default");
            return value;
        }
        catch (JsonException e)
        {
            var key = KeyOf(e);
            string problem = Describe(e, key);
            // A name outside a list of names: say which one was given.
            if (problem.StartsWith("expects one of", StringComparison.Ordinal) && ValueAt(node, key) is JsonValue given)
                problem += $", not {(given.TryGetValue(out string? text) ? $"\"{text}\"" : given.ToJsonString())}";
            // A word where a number belongs (--set training.lr=abc): the word, not advice about quotes nobody wrote.
            else if (problem.StartsWith("expects a number, not a string", StringComparison.Ordinal) && ValueAt(node, key) is JsonValue word
                     && word.TryGetValue(out string? wordText) && !double.TryParse(wordText, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _))
                problem = $"expects a number, not \"{wordText}\"";
            throw new ConfigException(key, problem);
        }
        catch (Exception e) when (e is NotSupportedException or InvalidOperationException)
        {
            // e.g. a method record without its "type" (the serializer names the path in its message).
            var m = System.Text.RegularExpressions.Regex.Match(e.Message, @"Path: \$\.?([^ |]*)");
            string key = m.Success && m.Groups[1].Value.Length > 0 ? m.Groups[1].Value : "$";
            throw new ConfigException(key, e.Message.Contains("type discriminator", StringComparison.Ordinal)
                ? "needs its \"type\" (see `interrogate list` for the names)" : e.Message.Split('\n')[0]);
        }
    }

    /// <summary>
    /// The keys that hold file or folder paths, resolved against a config file's folder. An input path (not the cache
    /// folder, which is made where it is missing) that does not exist there but does relative to the working folder (a
    /// run's own config.json holds the paths it was given, relative to where it was started) is an error that says
    /// so, unless an override sets that key.
    /// </summary>
    private static void ResolvePaths(JsonNode root, string baseDirectory, IReadOnlySet<string> overridden)
    {
        void Fix(JsonObject? o, string key, string name, bool mustExist = true)
        {
            if (o?[key] is not JsonValue v || !v.TryGetValue(out string? path) || path.Length == 0 || Path.IsPathRooted(path)) return;
            string resolved = Path.GetFullPath(Path.Combine(baseDirectory, path));
            static bool Exists(string p) => File.Exists(p) || Directory.Exists(p);
            if (mustExist && !overridden.Contains(name) && !Exists(resolved) && Exists(path))
                throw new ConfigException(name, $"{path} is read relative to the config file's folder, {baseDirectory}, where it does not exist; " +
                    $"it exists relative to the working folder: write it there as an absolute path, or give it with --set {name}=\"{Path.GetFullPath(path)}\"");
            o[key] = resolved;
        }
        if (root is not JsonObject r) return;
        Fix(r["data"] as JsonObject, "root", "data.root");
        Fix(r["data"] as JsonObject, "cache", "data.cache", mustExist: false); // made where it is missing
        Fix(r, "pretrained", "pretrained"); // a comparison's
        if (r["startFrom"] is JsonObject start)
        {
            Fix(start, "mtl", "startFrom.mtl");
            Fix(start, "pretrained", "startFrom.pretrained");
            if (start["stl"] is JsonObject stl)
                foreach (var key in stl.Select(p => p.Key).ToArray()) Fix(stl, key, $"startFrom.stl.{key}");
        }
    }

    /// <summary>Sets <c>a.b.c=value</c> in <paramref name="root"/>; value is JSON if it parses, else a string.</summary>
    public static void ApplyOverride(JsonNode root, string assignment)
    {
        int eq = assignment.IndexOf('=');
        if (eq <= 0) throw new ConfigException(assignment, "an override must look like key.path=value");
        var path = assignment[..eq].Trim().Split('.');
        string raw = assignment[(eq + 1)..].Trim();
        JsonNode? value;
        try { value = JsonNode.Parse(raw); }
        catch (JsonException) { value = JsonValue.Create(raw); }

        JsonNode current = root;
        for (int i = 0; i < path.Length - 1; i++)
        {
            if (current is not JsonObject obj) throw new ConfigException(string.Join('.', path[..(i + 1)]), "is not an object");
            if (obj[path[i]] is null) obj[path[i]] = new JsonObject();
            current = obj[path[i]]!;
        }
        if (current is not JsonObject parent) throw new ConfigException(assignment[..eq], "its parent is not an object");
        parent[path[^1]] = value;
    }

    /// <summary>The value at a key as System.Text.Json names it (<c>training.precision</c>, <c>architectures[0].fusion</c>), or null.</summary>
    private static JsonNode? ValueAt(JsonNode? node, string key)
    {
        foreach (var part in key.Split('.'))
        {
            var m = System.Text.RegularExpressions.Regex.Match(part, @"^([^\[]*)((?:\[\d+\])*)$");
            if (!m.Success) return null;
            if (m.Groups[1].Value.Length > 0)
                node = node is JsonObject o && o.TryGetPropertyValue(m.Groups[1].Value, out var child) ? child : null;
            foreach (System.Text.RegularExpressions.Match index in System.Text.RegularExpressions.Regex.Matches(m.Groups[2].Value, @"\d+"))
                node = node is JsonArray a && int.TryParse(index.Value, out int i) && i < a.Count ? a[i] : null;
        }
        return node;
    }

    private static string KeyOf(JsonException e)
    {
        var path = e.Path ?? "$";
        var key = path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path.TrimStart('$');
        // System.Text.Json names the unmapped property in the message, not in the path.
        var m = System.Text.RegularExpressions.Regex.Match(e.Message, "property '([^']+)' could not be mapped");
        if (m.Success) key = key.Length == 0 || key == m.Groups[1].Value ? m.Groups[1].Value : key.EndsWith("." + m.Groups[1].Value, StringComparison.Ordinal) ? key : $"{key}.{m.Groups[1].Value}";
        return key.Length == 0 ? "$" : key;
    }

    private static string Describe(JsonException e, string key)
    {
        if (e.Message.Contains("could not be mapped", StringComparison.Ordinal)) return "unknown key";
        bool polymorphic = e.Message.Contains("type discriminator", StringComparison.OrdinalIgnoreCase)
            || e.Message.Contains("could not be converted to InterroGate.Architectures.ArchitectureConfig", StringComparison.Ordinal)
            || e.Message.Contains("could not be converted to InterroGate.Configuration.BalancerConfig", StringComparison.Ordinal);
        if (polymorphic)
        {
            IEnumerable<string>? valid = e.Message.Contains("BalancerConfig", StringComparison.Ordinal) || key.Contains("balancer", StringComparison.Ordinal) || key.StartsWith("methods", StringComparison.Ordinal) ? Factory.Balancers.Keys
                : e.Message.Contains("ArchitectureConfig", StringComparison.Ordinal) || key.Contains("architecture", StringComparison.Ordinal) ? Factory.Architectures.Keys : null;
            return valid is null
                ? $"unknown or missing \"type\" ({e.Message})"
                : $"unknown or missing \"type\"; valid: {string.Join(", ", valid)}";
        }
        if (e.InnerException is InvalidOperationException { Message: var inner } && inner.StartsWith("Cannot get the value of a token type", StringComparison.Ordinal))
        {
            var token = System.Text.RegularExpressions.Regex.Match(inner, "token type '([A-Za-z]+)' as (?:a )?([A-Za-z]+)");
            if (token.Success)
            {
                string wanted = token.Groups[2].Value.ToLowerInvariant(), got = token.Groups[1].Value.ToLowerInvariant();
                return $"expects {Article(wanted)}, not {Article(got)}" + (wanted == "number" && got == "string" ? " (a number is written without quotes: 3, not \"3\")" : "");
            }
        }
        var converted = System.Text.RegularExpressions.Regex.Match(e.Message, @"could not be converted to ([^\s]+?)\.? Path");
        if (converted.Success) return $"expects {Expected(converted.Groups[1].Value)}";
        return e.InnerException?.Message ?? e.Message;
    }

    private static string Article(string word) => word switch
    {
        "boolean" => "true or false",
        "true" or "false" => word,
        "array" or "object" => "an " + word,
        _ => "a " + word,
    };

    /// <summary>What a value of the .NET type named <paramref name="typeName"/> is written as in a configuration.</summary>
    private static string Expected(string typeName)
    {
        if (typeName.Contains("[System.Double]", StringComparison.Ordinal) || typeName == "System.Double[]") return "a list of numbers, e.g. [0.3]";
        if (typeName.Contains("[System.Int32]", StringComparison.Ordinal) || typeName == "System.Int32[]") return "a list of whole numbers, e.g. [0, 1]";
        if (typeName.Contains("[System.String]", StringComparison.Ordinal)) return "a list of strings, e.g. [\"a\", \"b\"]";
        switch (typeName)
        {
            case "System.Double": case "System.Nullable`1[System.Double]": return "a number";
            case "System.Int32": case "System.Int64": case "System.Nullable`1[System.Int32]": return "a whole number";
            case "System.Boolean": return "true or false";
            case "System.String": return "a string, in quotes";
        }
        var type = typeof(ConfigJson).Assembly.GetType(typeName);
        if (type is { IsEnum: true })
            return $"one of {string.Join(", ", Enum.GetNames(type).Select(n => $"\"{JsonNamingPolicy.CamelCase.ConvertName(n)}\""))}";
        if (type is not null && typeof(LearningRateSchedule).IsAssignableFrom(type)) // a bad kind fails as the whole schedule
            return $"a schedule whose kind is one of {string.Join(", ", Enum.GetNames<ScheduleKind>().Select(n => $"\"{JsonNamingPolicy.CamelCase.ConvertName(n)}\""))}";
        return type is null ? typeName : $"an object of {type.Name}'s keys (`interrogate config show` prints them)";
    }
}
