namespace InterroGate.Configuration;

/// <summary>
/// A configuration error: names the key, the value found and what is valid. A key that is a command-line option
/// (<c>--out</c>), a command's argument (<c>IMAGES</c>) or the configuration argument itself (<c>config</c>) is called
/// that, not a config key.
/// </summary>
public sealed class ConfigException(string key, string message) : Exception(Format(key, message))
{
    public string Key { get; } = key;

    private static string Format(string key, string message) => key switch
    {
        "config" => $"config argument: {message}",
        _ when key.StartsWith("--", StringComparison.Ordinal) => $"option '{key}': {message}",
        _ when key.Length > 0 && key.All(char.IsAsciiLetterUpper) => $"argument {key}: {message}", // a command's argument, as its help names it
        _ => $"config key '{key}': {message}",
    };

    public static void Require(bool ok, string key, object? value, string valid)
    {
        if (!ok) throw new ConfigException(key, $"{value} is out of range; valid: {valid}");
    }
}
