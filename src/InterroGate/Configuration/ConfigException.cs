namespace InterroGate.Configuration;

/// <summary>
/// A configuration error: names the key, the value found and what is valid. A key that is a command-line option
/// (<c>--out</c>) or the configuration argument itself (<c>config</c>) is called that, not a config key.
/// </summary>
public sealed class ConfigException(string key, string message) : Exception(Format(key, message))
{
    public string Key { get; } = key;

    private static string Format(string key, string message) => key switch
    {
        "config" => $"config argument: {message}",
        _ when key.StartsWith("--", StringComparison.Ordinal) => $"option '{key}': {message}",
        _ => $"config key '{key}': {message}",
    };

    public static void Require(bool ok, string key, object? value, string valid)
    {
        if (!ok) throw new ConfigException(key, $"{value} is out of range; valid: {valid}");
    }
}
