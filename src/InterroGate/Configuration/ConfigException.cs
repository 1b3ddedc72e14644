namespace InterroGate.Configuration;

/// <summary>A configuration error: names the key, the value found and what is valid.</summary>
public sealed class ConfigException(string key, string message) : Exception($"config key '{key}': {message}")
{
    public string Key { get; } = key;

    public static void Require(bool ok, string key, object? value, string valid)
    {
        if (!ok) throw new ConfigException(key, $"{value} is out of range; valid: {valid}");
    }
}
