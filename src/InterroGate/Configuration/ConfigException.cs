namespace InterroGate.Configuration;

/// <summary>
/// A configuration error: names the key, the value found and what is valid. A command-line option (a key starting
/// with <c>--</c>, which no config key does) is called an option, and a command's argument made with
/// <see cref="ForArgument"/> an argument, not a config key.
/// </summary>
public sealed class ConfigException : Exception
{
    public ConfigException(string key, string message)
        : base(key.StartsWith("--", StringComparison.Ordinal) ? $"option '{key}': {message}" : $"config key '{key}': {message}") => Key = key;

    private ConfigException(string key, string message, bool argument) : base($"argument {key}: {message}") => Key = key;

    /// <summary>An error in a command's argument (<paramref name="name"/> as its help names it: CONFIG, IMAGES).</summary>
    public static ConfigException ForArgument(string name, string message) => new(name, message, argument: true);

    public string Key { get; }

    public static void Require(bool ok, string key, object? value, string valid)
    {
        if (!ok) throw new ConfigException(key, $"{value} is out of range; valid: {valid}");
    }
}
