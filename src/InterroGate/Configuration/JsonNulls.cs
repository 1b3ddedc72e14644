using System.Collections;
using System.Reflection;

namespace InterroGate.Configuration;

/// <summary>
/// JSON deserialisation fills a non-nullable property with null when the file says null (or a list holds a null):
/// this finds the first such value in a deserialised object graph, so readers can refuse it by name instead of
/// failing later on it.
/// </summary>
public static class JsonNulls
{
    private static readonly NullabilityInfoContext Nullability = new();

    /// <summary>The path (camelCase keys, [i] indices) of the first null where the type declares none may be; null if there is none.</summary>
    public static string? FirstNull(object? value, string path = "") => Visit(value, path, depth: 0);

    private static string? Visit(object? value, string path, int depth)
    {
        if (value is null || depth > 64) return null;
        var type = value.GetType();
        if (type.IsPrimitive || type.IsEnum || value is string || value is decimal) return null;
        if (value is IDictionary dictionary)
        {
            foreach (DictionaryEntry e in dictionary)
            {
                string key = Join(path, e.Key.ToString() ?? "");
                if (e.Value is null && !IsNullableValueOfDictionary(type)) return key;
                if (Visit(e.Value, key, depth + 1) is { } found) return found;
            }
            return null;
        }
        if (value is IEnumerable list)
        {
            int i = 0;
            foreach (var item in list)
            {
                string at = $"{path}[{i++}]";
                if (item is null && !ElementMayBeNull(type)) return at;
                if (Visit(item, at, depth + 1) is { } found) return found;
            }
            return null;
        }
        if (type.Namespace?.StartsWith("InterroGate", StringComparison.Ordinal) != true) return null;
        foreach (var p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (p.GetIndexParameters().Length > 0 || !p.CanRead || p.GetCustomAttribute<System.Text.Json.Serialization.JsonIgnoreAttribute>() is not null) continue;
            object? v;
            try { v = p.GetValue(value); }
            catch (TargetInvocationException) { continue; } // a computed property that cannot be computed: not a stored value
            string key = Join(path, char.ToLowerInvariant(p.Name[0]) + p.Name[1..]);
            if (v is null)
            {
                if (!p.PropertyType.IsValueType && Nullability.Create(p).ReadState == NullabilityState.NotNull) return key;
                continue;
            }
            if (Visit(v, key, depth + 1) is { } found) return found;
        }
        return null;
    }

    private static string Join(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";

    // Generic arguments carry no nullability annotations at run time; lists and dictionaries of this project hold no nulls
    // except where their element type is a nullable value type.
    private static bool ElementMayBeNull(Type listType) =>
        listType.IsArray ? Nullable.GetUnderlyingType(listType.GetElementType()!) is not null
        : listType.GetGenericArguments() is [var t] && Nullable.GetUnderlyingType(t) is not null;

    private static bool IsNullableValueOfDictionary(Type dictionaryType) =>
        dictionaryType.GetGenericArguments() is [_, var v] && Nullable.GetUnderlyingType(v) is not null;
}
