// Named child modules, one per task.
using static TorchSharp.torch;

namespace InterroGate.Layers;

/// <summary>
/// Child modules by name, registered under their names (so parameters read <c>heads.{task}.…</c>). Used instead
/// of TorchSharp's ModuleDict, whose two indexers make <c>Module.to</c> fail ("An item with the same key has
/// already been added. Key: Item") whenever a model moves to another device or dtype.
/// </summary>
public sealed class ModuleMap<T> : nn.Module where T : nn.Module
{
    private readonly Dictionary<string, T> _byName = new(StringComparer.Ordinal);
    private readonly List<string> _names = new();

    public ModuleMap(IEnumerable<(string Name, T Module)> modules) : base(nameof(ModuleMap<T>))
    {
        foreach (var (name, module) in modules)
        {
            if (!_byName.TryAdd(name, module)) throw new ArgumentException($"Two modules are named '{name}'.");
            _names.Add(name);
            register_module(name, module);
        }
    }

    public T this[string name] => _byName.TryGetValue(name, out var m)
        ? m : throw new KeyNotFoundException($"No module named '{name}'; there are: {string.Join(", ", _names)}.");

    public IReadOnlyList<string> Names => _names;
    public int Count => _names.Count;
}

public static class ModuleMap
{
    public static ModuleMap<T> Of<T>(IEnumerable<(string, T)> modules) where T : nn.Module => new(modules);
}
