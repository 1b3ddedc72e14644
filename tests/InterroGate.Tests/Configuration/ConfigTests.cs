using InterroGate.Architectures;
using InterroGate.Configuration;
using InterroGate.Gating;
using InterroGate.Tasks;

namespace InterroGate.Tests.Configuration;

public sealed class ConfigTests
{
    private const string Valid = """
        {
          "name": "t",
          "data": { "dataset": "synthetic", "trainSize": 64, "validationSize": 32, "testSize": 32 },
          "backbone": { "name": "resnet20", "width": 0.25 },
          "architecture": { "type": "interrogate", "lambdaS": 2, "tau": [0.1, 0.3], "gating": "block", "sparsity": "flops" },
          "training": { "epochs": 2, "batchSize": 16, "schedule": { "kind": "poly", "power": 0.9 } }
        }
        """;

    private static ConfigException Fails(string json, params string[] overrides)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigJson.Deserialize<RunConfig>(json, overrides).Validate(2));
        return e;
    }

    [Fact]
    public void A_preset_name_given_to_the_wrong_command_or_misspelt_is_named_with_what_to_do()
    {
        Assert.Contains("'multifashion-quick' is a comparison preset: run it with `interrogate compare multifashion-quick`, or train one of its runs: " +
                        "multifashion-quick/stl, multifashion-quick/mtl or multifashion-quick/interrogate",
            Assert.Throws<ConfigException>(() => Presets.LoadRun("multifashion-quick", [])).Message);
        Assert.Contains("'multifashion-quick/mtl' is one run of the comparison preset multifashion-quick: train it with `interrogate train multifashion-quick/mtl`",
            Assert.Throws<ConfigException>(() => Presets.LoadComparison("multifashion-quick/mtl", [])).Message);
        Assert.Contains("did you mean multifashion-quick/interrogate?", Assert.Throws<ConfigException>(() => Presets.LoadRun("multifashion-quik/interrogate", [])).Message);
        Assert.Contains("did you mean celeba-w05 or celeba-w025?", Assert.Throws<ConfigException>(() => Presets.LoadComparison("celeba-w0.5", [])).Message);
        var far = Assert.Throws<ConfigException>(() => Presets.LoadComparison("imagenet", [])).Message;
        Assert.DoesNotContain("did you mean", far);
        Assert.Contains("Presets: multifashion-quick, multifashion-w025", far);
    }

    [Fact]
    public void A_budget_target_with_one_epoch_asks_for_two()
    {
        var one = new RunConfig { Architecture = new InterroGateConfig { Target = InterroGate.Gating.BudgetTarget.AtFraction(0.5) }, Training = new TrainingConfig { Epochs = 1 } };
        Assert.Contains("a budget needs at least 2 epochs (training.epochs)", Assert.Throws<ConfigException>(() => one.Validate(2)).Message);
        var three = one with { Training = new TrainingConfig { Epochs = 3 } };
        Assert.Contains("give 1 to 2", Assert.Throws<ConfigException>(() => three.Validate(2)).Message);
        (three with { Training = new TrainingConfig { Epochs = 3, FreezeGatesLastEpochs = 1 } }).Validate(2);
        // In a comparison the InterroGate runs' section is named, not the baselines' training.
        var quick = Presets.LoadComparison("multifashion-quick", ["targets=[{\"fraction\": 0.5}]", "lambdaS=[]", "interroGateTraining.epochs=1", "interroGateTraining.freezeGatesLastEpochs=0"]);
        var e = Assert.Throws<ConfigException>(() => quick.Validate(2));
        Assert.Equal("interroGateTraining.freezeGatesLastEpochs", e.Key);
        Assert.Contains("a budget needs at least 2 epochs (interroGateTraining.epochs)", e.Message);
    }

    [Fact]
    public void A_valid_file_reads_into_the_method_records()
    {
        var c = ConfigJson.Deserialize<RunConfig>(Valid);
        c.Validate(2);
        var ig = Assert.IsType<InterroGateConfig>(c.Architecture);
        Assert.Equal(GatingMode.Block, ig.Gating);
        Assert.Equal(SparsityKind.Flops, ig.Sparsity);
        Assert.Equal(new[] { 0.1, 0.3 }, ig.Tau);
        Assert.Equal(InterroGate.Training.ScheduleKind.Poly, c.Training.Schedule.Kind);
    }

    [Fact]
    public void An_object_given_with_some_of_its_keys_keeps_the_defaults_of_the_others()
    {
        // A file needs only the keys it changes: {"training": {"schedule": {"gamma": 0.5}}} must keep the default
        // schedule's kind, step size and power, as every other nested object must keep its other defaults.
        AssertEveryObjectKeepsItsDefaults<RunConfig>();
        AssertEveryObjectKeepsItsDefaults<CompareConfig>();
    }

    private static void AssertEveryObjectKeepsItsDefaults<T>() where T : new()
    {
        string defaults = ConfigJson.Serialize(new T());
        var root = System.Text.Json.Nodes.JsonNode.Parse(defaults)!.AsObject();
        var paths = new List<string[]>();
        void Walk(System.Text.Json.Nodes.JsonObject o, string[] at)
        {
            foreach (var (key, value) in o)
                if (value is System.Text.Json.Nodes.JsonObject child)
                {
                    paths.Add([.. at, key]);
                    Walk(child, [.. at, key]);
                }
        }
        Walk(root, []);
        Assert.Contains(paths, p => string.Join(".", p) == "training.schedule");
        foreach (var path in paths)
        {
            // The object at path with none of its keys but its type (a polymorphic record needs it).
            var json = System.Text.Json.Nodes.JsonNode.Parse(defaults)!.AsObject();
            var parent = path[..^1].Aggregate(json, (o, k) => o[k]!.AsObject());
            var emptied = new System.Text.Json.Nodes.JsonObject();
            if (parent[path[^1]]!.AsObject()["type"] is { } type) emptied["type"] = type.DeepClone();
            parent[path[^1]] = emptied;
            Assert.True(defaults == ConfigJson.Serialize(ConfigJson.Deserialize<T>(json.ToJsonString())),
                $"{typeof(T).Name}: {string.Join(".", path)} given as {emptied.ToJsonString()} does not keep its defaults");
        }
    }

    [Fact]
    public void Serialising_round_trips()
    {
        var c = ConfigJson.Deserialize<RunConfig>(Valid);
        var again = ConfigJson.Deserialize<RunConfig>(ConfigJson.Serialize(c));
        Assert.Equal(ConfigJson.Serialize(c), ConfigJson.Serialize(again));
        Assert.Equal(2.0, Assert.IsType<InterroGateConfig>(again.Architecture).LambdaS);
    }

    [Fact]
    public void Unknown_keys_are_named()
    {
        Assert.Equal("training.epocs", Fails(Valid.Replace("\"epochs\"", "\"epocs\"")).Key);
        Assert.Equal("architecture.lambda", Fails(Valid.Replace("\"lambdaS\"", "\"lambda\"")).Key);
    }

    [Fact]
    public void Wrong_types_are_named()
    {
        var e = Fails(Valid.Replace("\"epochs\": 2", "\"epochs\": \"two\""));
        Assert.Equal("training.epochs", e.Key);
    }

    [Theory]
    [InlineData("\"tau\": [0.1, 0.3]", "\"tau\": [0.1, 1.5]", "architecture.tau[1]", "[0, 1]")]
    [InlineData("\"lambdaS\": 2", "\"lambdaS\": -1", "architecture.lambdaS", "≥ 0")]
    [InlineData("\"width\": 0.25", "\"width\": 0", "backbone.width", "> 0")]
    [InlineData("\"batchSize\": 16", "\"batchSize\": 0", "training.batchSize", "> 0")]
    [InlineData("\"tau\": [0.1, 0.3]", "\"tau\": [0.1, 0.3, 0.2]", "architecture.tau", "one per task")]
    public void Out_of_range_values_name_the_key_and_the_valid_range(string from, string to, string key, string range)
    {
        var e = Fails(Valid.Replace(from, to));
        Assert.Equal(key, e.Key);
        Assert.Contains(range, e.Message);
    }

    [Fact]
    public void An_unknown_architecture_type_is_an_error()
    {
        var e = Fails(Valid.Replace("\"type\": \"interrogate\"", "\"type\": \"magic\""));
        Assert.Contains("architecture", e.Key);
    }

    [Fact]
    public void Overrides_set_nested_values_and_are_validated()
    {
        var c = ConfigJson.Deserialize<RunConfig>(Valid, ["training.epochs=7", "architecture.lambdaS=0.5", "tasks=[\"a\"]"]);
        Assert.Equal(7, c.Training.Epochs);
        Assert.Equal(0.5, ((InterroGateConfig)c.Architecture).LambdaS);
        Assert.Equal(new[] { "a" }, c.Tasks);
        Assert.Equal("architecture.lambdaS", Fails(Valid, "architecture.lambdaS=-3").Key);
        Assert.Throws<ConfigException>(() => ConfigJson.Deserialize<RunConfig>(Valid, ["no-equals-sign"]));
    }

    [Fact]
    public void No_tasks_and_unknown_task_names_are_errors_listing_the_data_sets_tasks()
    {
        Assert.Equal("tasks", Fails(Valid, "tasks=[]").Key);
        var available = new TaskSet([new TaskSpec("top_left", TaskKind.Classification, 10), new TaskSpec("bottom_right", TaskKind.Classification, 10)]);
        var e = Assert.Throws<ConfigException>(() => Factory.ResolveTasks(available, ["top_left", "middle"]));
        Assert.Equal("tasks", e.Key);
        Assert.Contains("'middle'", e.Message);
        Assert.Contains("bottom_right", e.Message);
        Assert.Equal(["bottom_right"], Factory.ResolveTasks(available, ["bottom_right"]).Names);
    }

    [Fact]
    public void Malformed_json_is_reported_with_its_line()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigJson.Deserialize<RunConfig>("{\n  \"name\": \"x\",\n  oops\n}"));
        Assert.Contains("line", e.Message);
    }

    [Fact]
    public void Every_preset_is_valid()
    {
        // Presets of data sets read from disk leave data.root to the user (--set data.root=...).
        static DataConfig Rooted(DataConfig d) => DataCatalog.NeedsRoot(d.Dataset) ? d with { Root = "/data" } : d;
        foreach (var (name, make) in Presets.Comparisons)
        {
            var c = make();
            (c with { Data = Rooted(c.Data) }).Validate(c.Tasks?.Count ?? 2);
        }
        foreach (var name in Presets.RunNames)
        {
            var r = Presets.LoadRun(name, []);
            (r with { Data = Rooted(r.Data) }).Validate(r.Tasks?.Count ?? 2);
        }
        var unrooted = Assert.Throws<ConfigException>(() => Presets.NyudResNet50.Validate(3));
        Assert.Equal("data.root", unrooted.Key);
        Assert.Equal("CONFIG", Assert.Throws<ConfigException>(() => Presets.LoadRun("nope", [])).Key);
    }

    [Fact]
    public void Every_preset_gives_each_of_its_runs_balancer_weights_for_the_runs_own_tasks_and_ends_its_schedules_lower()
    {
        static DataConfig Rooted(DataConfig d) => DataCatalog.NeedsRoot(d.Dataset) ? d with { Root = "/data" } : d;
        foreach (var (name, make) in Presets.Comparisons)
        {
            var c = make();
            c = c with { Data = Rooted(c.Data) };
            var tasks = c.Tasks ?? ["a", "b"];
            // STL: one network per task, trained on its loss alone with weight 1 (the reference trains single-task baselines so).
            foreach (var task in tasks)
            {
                var stl = c.Run(new SingleTaskConfig(), $"stl-{task}", [task]);
                stl.Validate(1);
                Assert.IsType<UniformBalancerConfig>(stl.Balancer);
            }
            c.Run(new HardSharingConfig()).Validate(tasks.Count);
            // Every phase ends at a lower learning rate than it starts (the InterroGate phase included).
            foreach (var training in new[] { c.Training, c.InterroGateTraining ?? c.Training })
                Assert.True(training.Schedule.Factor(training.Epochs - 1, 99, 100, training.Epochs) < 0.5, $"{name}: {training.Schedule}");
        }
        // PASCAL-Context's task weights go to the shared networks only.
        var pascal = Presets.PascalResNet18;
        Assert.Equal([1, 2, 5, 10, 50], Assert.IsType<FixedWeightsBalancerConfig>(pascal.Run(new HardSharingConfig()).Balancer).Weights);
        Assert.Equal([5, 50], Assert.IsType<FixedWeightsBalancerConfig>(pascal.Run(new HardSharingConfig(), "pair", ["sal", "edge"]).Balancer).Weights);
    }

    [Fact]
    public void A_comparison_on_a_device_trains_the_baselines_and_InterroGate_there()
    {
        var own = Presets.LoadComparison("fashion-scenes-nyud", []);
        Assert.NotNull(own.InterroGateTraining); // a preset with its own InterroGate recipe
        var moved = own.OnDevice("cuda:1");
        Assert.Equal("cuda:1", moved.Training.Device);
        Assert.Equal("cuda:1", moved.InterroGateTraining!.Device);
        Assert.Equal(own.InterroGateTraining! with { Device = "cuda:1" }, moved.InterroGateTraining); // nothing else changes
        Assert.Null(new CompareConfig().OnDevice("cuda").InterroGateTraining); // none of its own: it follows the baselines
    }

    [Theory]
    [InlineData("nyudv2", "trainSize")]
    [InlineData("pascal-context", "validationSize")]
    [InlineData("folder", "testSize")]
    public void Sizes_for_a_data_set_read_whole_are_refused_not_ignored(string dataset, string key)
    {
        var data = new DataConfig { Dataset = dataset, Root = "/data" };
        new RunConfig { Data = data }.Validate(2); // the defaults are fine
        data = key switch
        {
            "trainSize" => data with { TrainSize = 100 },
            "validationSize" => data with { ValidationSize = 100 },
            _ => data with { TestSize = 100 },
        };
        var e = Assert.Throws<ConfigException>(() => new RunConfig { Data = data }.Validate(2));
        Assert.Equal($"data.{key}", e.Key);
        Assert.Contains("reads its splits whole", e.Message);
        new RunConfig { Data = data with { Dataset = "multifashion", Root = null } }.Validate(2); // a generated set draws that size
    }

    private static string Readme() => Repository.ReadFile("README.md");

    [Theory]
    [InlineData("architecture.tau=0.3", "architecture.tau", "expects a list of numbers, e.g. [0.3]")]
    [InlineData("training.schedule.kind=\"nope\"", "training.schedule.kind", "kind is one of \"constant\", \"step\", \"poly\", \"cosine\"")]
    [InlineData("training.epochs=\"3\"", "training.epochs", "expects a number, not a string (a number is written without quotes")]
    [InlineData("training.lr=abc", "training.lr", "expects a number, not \"abc\"")]
    [InlineData("training.precision=\"fp64\"", "training.precision", "expects one of \"fp32\", \"bf16\"")]
    [InlineData("training.flatOptimizer=3", "training.flatOptimizer", "expects true or false, not a number")]
    [InlineData("tasks=\"a\"", "tasks", "expects a list of strings")]
    public void A_value_of_the_wrong_kind_is_named_in_the_configurations_words(string setting, string key, string message)
    {
        var e = Assert.Throws<ConfigException>(() => ConfigJson.Deserialize<RunConfig>("""{"architecture": {"type": "interrogate"}}""", [setting]));
        Assert.Equal(key, e.Key);
        Assert.Contains(message, e.Message);
        Assert.DoesNotContain("System.", e.Message);
    }

    [Fact]
    public void A_key_given_twice_is_refused()
    {
        var e = Assert.Throws<ConfigException>(() => ConfigJson.Deserialize<RunConfig>("""{"name": "a", "name": "b"}""", source: "run.json"));
        Assert.Contains("run.json is not valid JSON", e.Message);
        Assert.Contains("Duplicate property 'name'", e.Message);
    }

    [Fact]
    public void The_READMEs_sample_configuration_is_what_the_code_applies_for_keys_left_out()
    {
        var readme = Readme();
        int start = readme.IndexOf("A run (`train`)", StringComparison.Ordinal);
        start = readme.IndexOf("```json", start, StringComparison.Ordinal) + "```json".Length;
        var sample = System.Text.Json.Nodes.JsonNode.Parse(readme[start..readme.IndexOf("```", start, StringComparison.Ordinal)]);
        var defaults = System.Text.Json.Nodes.JsonNode.Parse(ConfigJson.Serialize(ConfigJson.Deserialize<RunConfig>("{}")));
        Assert.True(System.Text.Json.Nodes.JsonNode.DeepEquals(sample, defaults), $"README sample differs from the defaults:\n{defaults}");
    }

    [Fact]
    public void Paths_in_a_config_file_are_relative_to_the_file_and_paths_in_overrides_to_the_working_folder()
    {
        var dir = Directory.CreateTempSubdirectory("ig-cfg-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "sub"));
            string file = Path.Combine(dir, "sub", "run.json");
            File.WriteAllText(file, """{"name": "r", "data": {"dataset": "folder", "root": "../data"}, "startFrom": {"mtl": "m.ckpt", "stl": {"a": "/abs/a.ckpt"}}}""");
            var c = Presets.LoadRun(file, []);
            Assert.Equal(Path.Combine(dir, "data"), c.Data.Root);
            Assert.Equal(Path.Combine(dir, "sub", "m.ckpt"), c.StartFrom!.Mtl);
            Assert.Equal("/abs/a.ckpt", c.StartFrom.Stl["a"]);
            Assert.Equal("other", Presets.LoadRun(file, ["data.root=\"other\""]).Data.Root);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_path_that_exists_only_relative_to_the_working_folder_is_an_error_that_says_so()
    {
        // A run's config.json holds the paths it was started with, relative to the working folder then. (The test
        // leaves the working folder alone: other tests run beside it.)
        var dir = Directory.CreateTempSubdirectory("ig-cfg-").FullName;
        try
        {
            string checkpoint = Path.Combine(dir, "mtl", "last.ckpt");
            Directory.CreateDirectory(Path.GetDirectoryName(checkpoint)!);
            File.WriteAllText(checkpoint, "");
            string relative = Path.GetRelativePath(Directory.GetCurrentDirectory(), checkpoint);
            // The config's folder sits deeper than the working folder, so the relative path's ".." steps cannot all
            // reach the root from there (at the root ".." stays put, and both paths would name the same file).
            int depth = Directory.GetCurrentDirectory().Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries).Length;
            string folder = Path.Combine([dir, .. Enumerable.Repeat("deeper", depth + 2), "stl"]);
            Directory.CreateDirectory(folder);
            string file = Path.Combine(folder, "config.json");
            var json = new System.Text.Json.Nodes.JsonObject
            {
                ["name"] = "stl",
                ["architecture"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "stl" },
                ["startFrom"] = new System.Text.Json.Nodes.JsonObject { ["mtl"] = relative },
            };
            File.WriteAllText(file, json.ToJsonString());
            Assert.False(File.Exists(Path.Combine(folder, relative)));
            var e = Assert.Throws<ConfigException>(() => Presets.LoadRun(file, []));
            Assert.Equal("startFrom.mtl", e.Key);
            Assert.Contains("relative to the config file's folder", e.Message);
            Assert.Contains(checkpoint, e.Message); // the absolute path to give instead
            // Given with --set, the path is the user's (relative to the working folder): no error.
            Assert.Equal(relative, Presets.LoadRun(file, [$"startFrom.mtl=\"{relative}\""]).StartFrom!.Mtl);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
