// Registries read from the types: a method's name is its JSON "type" ([JsonDerivedType] on the base record), its
// one-line description a property of its config record. `interrogate list`, the error messages that name valid
// choices and the tests enumerate these.
using System.Reflection;
using System.Text.Json.Serialization;

namespace InterroGate.Configuration;

/// <summary>A config record that names a method: a one-line description, shown by `interrogate list`.</summary>
public interface IDescribed
{
    string Description { get; }
}

/// <summary>
/// The methods registered under <typeparamref name="TBase"/>: every <see cref="JsonDerivedTypeAttribute"/> on it, by
/// its discriminator, in declaration order. Adding a method is its config record plus one such line.
/// </summary>
public static class Registry<TBase> where TBase : class, IDescribed
{
    private static readonly (string Name, Type Type)[] Entries = typeof(TBase).GetCustomAttributes<JsonDerivedTypeAttribute>()
        .Select(a => (Name: (string)a.TypeDiscriminator!, Type: a.DerivedType)).ToArray();

    /// <summary>Registered names.</summary>
    public static IReadOnlyList<string> Names { get; } = Entries.Select(e => e.Name).ToArray();

    /// <summary>Name to the record type.</summary>
    public static Type TypeOf(string name) => Entries.FirstOrDefault(e => e.Name == name).Type
        ?? throw new ConfigException("type", $"'{name}' is unknown; valid: {string.Join(", ", Names)}");

    /// <summary>The name <paramref name="value"/>'s record is registered under.</summary>
    public static string NameOf(TBase value) => Entries.First(e => e.Type == value.GetType()).Name;

    /// <summary>The record with its default options.</summary>
    public static TBase Default(string name) => (TBase)Activator.CreateInstance(TypeOf(name))!;

    /// <summary>Name to one-line description, from each record's <see cref="IDescribed.Description"/>.</summary>
    public static IReadOnlyDictionary<string, string> Descriptions { get; } =
        Entries.ToDictionary(e => e.Name, e => ((TBase)Activator.CreateInstance(e.Type)!).Description);
}
