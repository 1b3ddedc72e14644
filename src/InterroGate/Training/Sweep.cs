// Sweeps: the InterroGate runs of a comparison over λs, a τ grid per task and any further config key, split into
// shards that run anywhere (one process, a Slurm job array) and merged into one table.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using InterroGate.Analysis;
using InterroGate.Architectures;
using InterroGate.Configuration;

namespace InterroGate.Training;

/// <summary>
/// One InterroGate run of a sweep: its folder name, its table label, λs (or, with <see cref="Target"/>, the adapted
/// λs's starting value) and the config overrides that make it.
/// </summary>
public sealed record SweepPoint(int Index, string Name, string Label, double LambdaS, IReadOnlyList<string> Overrides, Gating.BudgetTarget? Target = null);

/// <summary>The InterroGate runs a comparison makes: λs (or the budget targets) × the τ grid × the grid, in that order.</summary>
public static class SweepPoints
{
    /// <summary>Keys a sweep cannot vary: the STL and MTL runs every InterroGate run starts from would no longer fit.</summary>
    private static readonly string[] SharedPrefixes = ["data", "tasks", "backbone", "head", "name", "startFrom"];

    public static IReadOnlyList<SweepPoint> Of(CompareConfig c, int tasks)
    {
        var axes = new List<(string Key, string Short, (string Json, string Text)[] Values)>();
        if (c.TauGrid is { } taus)
        {
            var combos = new List<double[]> { Array.Empty<double>() };
            for (int t = 0; t < tasks; t++)
                combos = combos.SelectMany(prefix => taus.Select(v => prefix.Append(v).ToArray())).ToList();
            axes.Add(("architecture.tau", "tau", combos.Select(v => ($"[{string.Join(",", v.Select(Number))}]", string.Join("_", v.Select(Number)))).ToArray()));
        }
        foreach (var (key, values) in c.Grid ?? new Dictionary<string, IReadOnlyList<JsonElement>>())
            axes.Add((key, key.Split('.')[^1], values.Select(v => (v.GetRawText(), Text(v))).ToArray()));

        var points = new List<SweepPoint>();
        // Either the λs list or the budget targets make the first axis.
        var first = c.Targets is { Count: > 0 } targets
            ? targets.Select(t => (Name: $"interrogate-target{Safe(t.Label)}", Label: $"InterroGate (target {t.Label}", Lambda: c.InterroGate.LambdaS, Target: (Gating.BudgetTarget?)t)).ToArray()
            : c.LambdaS.Select(l => (Name: $"interrogate-ls{ComparisonRunner.Lambda(l)}", Label: $"InterroGate (λs={ComparisonRunner.Lambda(l)}", Lambda: l, Target: (Gating.BudgetTarget?)null)).ToArray();
        foreach (var head in first)
        {
            var combos = new List<(string Json, string Text)[]> { Array.Empty<(string, string)>() };
            foreach (var axis in axes) combos = combos.SelectMany(prefix => axis.Values.Select(v => prefix.Append(v).ToArray())).ToList();
            foreach (var combo in combos)
            {
                string name = head.Name + string.Concat(combo.Select((v, i) => $"-{Safe(axes[i].Short)}{Safe(v.Text)}"));
                string label = head.Label + string.Concat(combo.Select((v, i) => $", {axes[i].Short}={v.Text}")) + ")";
                points.Add(new SweepPoint(points.Count, name, label, head.Lambda, combo.Select((v, i) => $"{axes[i].Key}={v.Json}").ToArray(), head.Target));
            }
        }
        return points;
    }

    /// <summary>The run of <paramref name="point"/>: InterroGate at its λs with its overrides applied.</summary>
    public static RunConfig Run(CompareConfig c, SweepPoint point)
    {
        var run = c.Run(c.InterroGate with { LambdaS = point.LambdaS, Target = point.Target }, point.Name);
        return point.Overrides.Count == 0 ? run : ConfigJson.Deserialize<RunConfig>(ConfigJson.Serialize(run), point.Overrides, point.Name);
    }

    /// <summary>Checks the grid and the τ grid (keys, values, the runs they make); every fault names its key.</summary>
    public static void Validate(CompareConfig c, int tasks)
    {
        if (c.TauGrid is { } taus)
        {
            ConfigException.Require(taus.Count > 0, "tauGrid", "[]", "at least one τ (or leave tauGrid out)");
            for (int i = 0; i < taus.Count; i++) ConfigException.Require(taus[i] is >= 0 and <= 1, $"tauGrid[{i}]", taus[i], "0 to 1");
            ConfigException.Require(taus.Distinct().Count() == taus.Count, "tauGrid", $"[{string.Join(", ", taus)}]", "distinct values");
        }
        if (c.Grid is { } grid)
        {
            ConfigException.Require(grid.Count > 0, "grid", "{}", "at least one key (or leave grid out)");
            foreach (var (key, values) in grid)
            {
                ConfigException.Require(values.Count > 0, $"grid.{key}", "[]", "at least one value");
                string root = key.Split('.')[0];
                if (SharedPrefixes.Contains(root))
                    throw new ConfigException($"grid.{key}", $"{root} is shared with the STL and MTL runs every InterroGate run starts from; sweep it with separate comparisons");
                if (key == "architecture.lambdaS") throw new ConfigException($"grid.{key}", "λs is swept by the lambdaS list");
                if (key == "architecture.tau" && c.TauGrid is not null) throw new ConfigException($"grid.{key}", "τ is swept by tauGrid; give one or the other");
                ConfigException.Require(values.Select(v => v.GetRawText()).Distinct().Count() == values.Count, $"grid.{key}", $"[{string.Join(", ", values.Select(v => v.GetRawText()))}]", "distinct values");
            }
        }
        if (c.Grid is null && c.TauGrid is null) return;
        ConfigException.Require(c.LambdaS.Count > 0 || c.Targets is { Count: > 0 }, "lambdaS", "[]", "at least one λs (or targets): the grid varies the InterroGate runs");
        var points = Of(c, tasks);
        var twice = points.GroupBy(p => p.Name).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null) throw new ConfigException("grid", $"two points share the run name {twice.Key}; give values that differ once written out");
        foreach (var p in points)
        {
            try
            {
                var run = Run(c, p);
                ConfigException.Require(run.Architecture is InterroGateConfig, "grid", run.Architecture.Type, "grid keys that keep the run an InterroGate run");
                run.Validate(tasks);
            }
            catch (ConfigException e)
            {
                throw new ConfigException($"grid ({p.Name})", e.Message);
            }
        }
    }

    private static string Number(double v) => v.ToString("0.######", CultureInfo.InvariantCulture);

    private static string Text(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => v.GetString()!,
        JsonValueKind.Number => Number(v.GetDouble()),
        JsonValueKind.Array => string.Join("_", v.EnumerateArray().Select(Text)),
        _ => v.GetRawText(),
    };

    private static string Safe(string s) => new(s.Select(ch => char.IsAsciiLetterOrDigit(ch) || ch is '.' or '_' or '-' ? ch : '_').ToArray());
}

/// <summary>Slice <see cref="Index"/> of <see cref="Count"/> of a sweep's InterroGate runs (every run whose number ≡ Index mod Count).</summary>
public sealed record Shard(int Index, int Count)
{
    /// <summary>"i/n" with 0 ≤ i &lt; n; anything else is an error naming <paramref name="key"/>.</summary>
    public static Shard Parse(string text, string key = "--shard")
    {
        var parts = text.Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int i)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int n))
            throw new ConfigException(key, $"'{text}' is not i/n (for example 0/4: the first of four shards)");
        if (n < 1 || i >= n) throw new ConfigException(key, n < 1 ? $"shard {i} of {n}: the number of shards must be at least 1" : $"shard {i} of {n} is out of range; valid: 0 to {n - 1} of {n}");
        return new Shard(i, n);
    }

    /// <summary>
    /// The shard of a Slurm job array task: SLURM_ARRAY_TASK_ID, offset by SLURM_ARRAY_TASK_MIN, of
    /// SLURM_ARRAY_TASK_COUNT tasks; null outside a job array.
    /// </summary>
    public static Shard? FromEnvironment(Func<string, string?>? read = null)
    {
        read ??= Environment.GetEnvironmentVariable;
        if (read("SLURM_ARRAY_TASK_ID") is not { Length: > 0 } id) return null;
        string count = read("SLURM_ARRAY_TASK_COUNT") ?? "";
        if (!int.TryParse(id, out int i) || !int.TryParse(count, out int n))
            throw new ConfigException("SLURM_ARRAY_TASK_ID", $"'{id}' of SLURM_ARRAY_TASK_COUNT '{count}' is not a job array task");
        int min = int.TryParse(read("SLURM_ARRAY_TASK_MIN"), out int m) ? m : 0;
        return Parse($"{i - min}/{n}", "SLURM_ARRAY_TASK_ID");
    }

    public bool Takes(int run) => run % Count == Index;

    public string FileName => $"shard-{Index}-of-{Count}.json";
}

/// <summary>What one shard trained: per seed, the baselines' and its InterroGate runs' entries.</summary>
public sealed record ShardResult(string Config, int Index, int Count, IReadOnlyList<Tasks.TaskSpec> Tasks, IReadOnlyList<ShardSeed> Seeds)
{
    /// <summary>Ids of a split list the shard's runs left out for missing files (<c>data.skipMissing</c>); null when none.</summary>
    public IReadOnlyDictionary<string, int>? SkippedIds { get; init; }
}

/// <summary>One seed's part of a shard (Seed null: a sweep without a seed list).</summary>
public sealed record ShardSeed(int? Seed, IReadOnlyList<ComparisonEntry> Baselines, IReadOnlyList<ShardEntry> Points);

/// <summary>An InterroGate run of a shard with its place in the sweep.</summary>
public sealed record ShardEntry(int Point, ComparisonEntry Entry);

/// <summary>Shard files: written by each shard, merged into one table by <see cref="Merge"/>.</summary>
public static class SweepShards
{
    public const string Folder = "shards";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>The comparison a shard belongs to, as compared between shards (seeds included, nothing about the shard).</summary>
    public static string Identity(CompareConfig c) => ConfigJson.Serialize(c);

    public static string Write(string directory, ShardResult result, Shard shard)
    {
        string folder = Path.Combine(directory, Folder);
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, shard.FileName);
        RunFiles.WriteAtomically(path, JsonSerializer.Serialize(result, Json));
        return path;
    }

    /// <summary>
    /// The table of a sharded sweep in <paramref name="directory"/>: every shard's file must be there, of one
    /// configuration and one shard count; rows in the sweep's order, over seeds as <c>compare --seeds</c> gives them.
    /// </summary>
    public static ComparisonTable Merge(string directory, out IReadOnlyList<ComparisonEntry> entries) => Merge(directory, out entries, out _);

    /// <summary><see cref="Merge(string, out IReadOnlyList{ComparisonEntry})"/>, with the sweep's configuration.</summary>
    public static ComparisonTable Merge(string directory, out IReadOnlyList<ComparisonEntry> entries, out CompareConfig sweep)
    {
        string folder = Path.Combine(directory, Folder);
        var files = Directory.Exists(folder) ? Directory.GetFiles(folder, "shard-*-of-*.json").Order(StringComparer.Ordinal).ToArray() : [];
        if (!Directory.Exists(directory)) throw new RunFolderException(directory, "does not exist; give the folder the shards were run with (-o)");
        if (files.Length == 0) throw new RunFolderException(directory, $"holds no shard results ({Folder}/shard-I-of-N.json); run `interrogate sweep CONFIG --shard I/N -o {directory}` first");
        var shards = files.Select(f =>
        {
            try
            {
                var result = JsonSerializer.Deserialize<ShardResult>(File.ReadAllText(f), Json) ?? throw new JsonException("empty");
                // Valid JSON that lacks a shard result's parts ({} included): the same answer as a damaged file.
                if (result.Config is null || result.Tasks is null || result.Seeds is null || result.Seeds.Any(x => x?.Baselines is null || x.Points is null))
                    throw new JsonException("its configuration, tasks or per-seed results are missing");
                if (result.Count < 1 || result.Index < 0 || result.Index >= result.Count)
                    throw new JsonException($"shard {result.Index} of {result.Count}");
                return (Path: f, Result: result);
            }
            catch (JsonException e)
            {
                throw new RunFolderException(directory, $"{Path.GetFileName(f)} is not a shard result ({e.Message})");
            }
        }).ToArray();
        var first = shards[0];
        foreach (var s in shards.Skip(1))
        {
            if (s.Result.Count != first.Result.Count)
                throw new RunFolderException(directory, $"{Path.GetFileName(s.Path)} is one of {s.Result.Count} shards, {Path.GetFileName(first.Path)} one of {first.Result.Count}: results of two different splits");
            if (s.Result.Config != first.Result.Config)
            {
                var changed = RunFiles.ChangedKeys(first.Result.Config, s.Result.Config, new HashSet<string>());
                throw new RunFolderException(directory, $"{Path.GetFileName(s.Path)} and {Path.GetFileName(first.Path)} come from different configurations " +
                                                        $"(differing: {string.Join(", ", changed)}); merge only the shards of one sweep");
            }
        }
        var missing = Enumerable.Range(0, first.Result.Count).Except(shards.Select(s => s.Result.Index)).ToArray();
        if (missing.Length > 0)
            throw new RunFolderException(directory, $"{(missing.Length == 1 ? "shard" : "shards")} {string.Join(", ", missing)} of {first.Result.Count} {(missing.Length == 1 ? "has" : "have")} no result yet (missing {string.Join(", ", missing.Select(i => new Shard(i, first.Result.Count).FileName))})");

        var config = sweep = ConfigJson.Deserialize<CompareConfig>(first.Result.Config);
        var seeds = first.Result.Seeds.Select(s => s.Seed).ToArray();
        var tables = new List<ComparisonTable>();
        var all = new List<ComparisonEntry>();
        foreach (var seed in seeds)
        {
            var parts = shards.Select(s => s.Result.Seeds.Single(x => x.Seed == seed)).ToArray();
            var baselines = parts[0].Baselines;
            var points = parts.SelectMany(p => p.Points).OrderBy(p => p.Point).ToArray();
            var twice = points.GroupBy(p => p.Point).FirstOrDefault(g => g.Count() > 1);
            if (twice is not null) throw new RunFolderException(directory, $"run {twice.First().Entry.Label} appears in two shards");
            var seedEntries = baselines.Concat(points.Select(p => p.Entry)).ToList();
            all.AddRange(seedEntries);
            var tasks = new Tasks.TaskSet(first.Result.Tasks);
            tables.Add(ComparisonRunner.BuildTable(tasks, baselines.Where(e => e.Architecture == "stl").ToList(), seedEntries.Where(e => e.Architecture != "stl").ToList(),
                first.Result.SkippedIds));
        }
        entries = all;
        return ComparisonRunner.WithRuns(config.Seeds is null ? tables[0] : ComparisonTable.OverSeeds(tables), all);
    }
}
