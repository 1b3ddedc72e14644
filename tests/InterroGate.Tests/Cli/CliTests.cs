using InterroGate.Cli;
using InterroGate.Runtime;
using InterroGate.Configuration;

namespace InterroGate.Tests.Cli;

/// <summary>How command-line arguments map to commands and configurations.</summary>
[Collection("Torch")]
public sealed class CliTests
{
    [Fact]
    public void Train_takes_a_config_overrides_an_output_folder_and_a_resume_point()
    {
        var result = Program.Build().Parse(["train", "multifashion-quick/mtl", "--set", "training.epochs=1", "--set", "data.trainSize=100", "-o", "out", "--resume", "x.ckpt"]);
        Assert.Empty(result.Errors);
        Assert.Equal("train", result.CommandResult.Command.Name);
        Assert.Equal("multifashion-quick/mtl", result.GetValue<string>("config"));
        Assert.Equal(new[] { "training.epochs=1", "data.trainSize=100" }, result.GetValue<string[]>("--set"));
        Assert.Equal("out", result.GetValue<string>("--out"));
        Assert.Equal("x.ckpt", result.GetValue<string>("--resume"));
    }

    [Fact]
    public void Evaluate_accepts_only_known_splits()
    {
        Assert.Empty(Program.Build().Parse(["evaluate", "a.ckpt", "--split", "val"]).Errors);
        Assert.NotEmpty(Program.Build().Parse(["evaluate", "a.ckpt", "--split", "train-ish"]).Errors);
    }

    /// <summary>Runs the CLI, returning its exit code and what it wrote to standard error.</summary>
    internal static (int Code, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var previous = Console.Error;
        Console.SetError(output);
        try
        {
            return (Program.Main(args), output.ToString());
        }
        finally
        {
            Console.SetError(previous);
        }
    }

    [Fact]
    public void Predict_takes_folders_of_images_and_refuses_an_option_it_lacks()
    {
        string dir = Directory.CreateTempSubdirectory("ig-predict-args-").FullName;
        try
        {
            foreach (var name in new[] { "b.png", "a.NPY", "notes.txt" }) File.WriteAllText(Path.Combine(dir, name), "");
            Directory.CreateDirectory(Path.Combine(dir, "sub"));
            string single = Path.Combine(dir, "c.jpg");
            Assert.Equal([Path.Combine(dir, "a.NPY"), Path.Combine(dir, "b.png"), single],
                InterroGate.Cli.Commands.DeployCommands.ImageArguments([dir, single]));
            Assert.Equal("option '--bogus': predict has no such option (its options: --json, --maps)",
                Assert.Throws<ConfigException>(() => InterroGate.Cli.Commands.DeployCommands.ImageArguments(["--bogus"])).Message);
            Assert.Contains($"argument IMAGES: {Path.Combine(dir, "sub")} is a folder without image files",
                Assert.Throws<ConfigException>(() => InterroGate.Cli.Commands.DeployCommands.ImageArguments([Path.Combine(dir, "sub")])).Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_comparison_override_that_does_not_reach_the_interrogate_runs_is_named()
    {
        var (code, error) = Run("compare", "multifashion-quick", "--set", "interroGate.lambdaS=3", "-o", Path.Combine(Path.GetTempPath(), $"ig-notes-{Guid.NewGuid():N}"));
        Assert.Equal(2, code);
        Assert.Contains("config key 'interroGate.lambdaS': a comparison trains InterroGate at each value of lambdaS (1, 2, 4, 8)", error);

        var quick = Presets.LoadComparison("multifashion-quick", []);
        var notes = InterroGate.Cli.Commands.CompareCommand.OverrideNotes(quick, ["training.epochs=1", "training.lr=0.01", "interroGateTraining.lr=0.001", "data.trainSize=64"]).ToArray();
        Assert.Equal("training.epochs applies to the STL and MTL runs; the InterroGate runs train with interroGateTraining " +
                     "(--set interroGateTraining.epochs=... for them too)", Assert.Single(notes)); // training.lr is given for both
        Assert.Empty(InterroGate.Cli.Commands.CompareCommand.OverrideNotes(quick with { InterroGateTraining = null }, ["training.epochs=1"]));
        // With budget targets the λs list is empty and interroGate.lambdaS is the dual update's start: allowed.
        Assert.Empty(InterroGate.Cli.Commands.CompareCommand.OverrideNotes(quick with { LambdaS = [] }, ["interroGate.lambdaS=3"]));
    }

    [Fact]
    public void Asking_for_cuda_where_there_is_none_exits_with_code_2_before_reading_data()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"ig-device-{Guid.NewGuid():N}");
        var (code, error) = Run("train", "multifashion-quick/mtl", "--device", "cuda", "-o", dir);
        Assert.Equal(2, code);
        Assert.Contains("device 'cuda'", error);
        Assert.Contains("CUDA is not available", error);
        Assert.False(Directory.Exists(dir)); // nothing written
        var (badCode, badError) = Run("compare", "multifashion-quick", "--device", "gpu");
        Assert.Equal(2, badCode);
        Assert.Contains(Devices.Valid, badError);
    }

    [Fact]
    public void A_config_error_exits_with_code_2_and_names_the_key()
    {
        var (code, error) = Run("train", "multifashion-quick/mtl", "--set", "training.epochs=-1");
        Assert.Equal(2, code);
        Assert.Contains("training.epochs", error);
    }

    [Fact]
    public void A_misspelt_command_is_named_with_the_one_meant()
    {
        var (code, error) = Run("trian", "multifashion-quick/mtl");
        Assert.Equal(2, code);
        Assert.Contains("unknown command 'trian'; did you mean train?", error);
        (code, error) = Run("comprae", "x");
        Assert.Contains("did you mean compare?", error);
        (code, error) = Run("nope");
        Assert.Equal(2, code);
        Assert.Contains("unknown command 'nope' (commands: doctor,", error);
    }

    [Fact]
    public void A_folder_given_where_a_file_is_read_is_called_a_folder()
    {
        string dir = Directory.CreateTempSubdirectory("ig-in-").FullName;
        try
        {
            foreach (var args in new[] { new[] { "evaluate", dir }, ["prune", dir, "-o", Path.Combine(dir, "m.safetensors")], ["export", dir, "--format", "state-dict", "-o", Path.Combine(dir, "s.safetensors")] })
            {
                var (code, error) = Run(args);
                Assert.True(code == 2 && error.Contains("is a folder; give a checkpoint file", StringComparison.Ordinal), $"interrogate {string.Join(' ', args)}: exit {code}, {error}");
            }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData(null, 64L * 1024 * 1024)]
    [InlineData("", 64L * 1024 * 1024)]
    [InlineData("100", 100L)]
    public void The_image_size_limit_comes_from_its_variable(string? value, long expected) =>
        Assert.Equal(expected, InterroGate.Data.Formats.ImageFiles.MaxPixelsFromEnvironment(value));

    [Theory]
    [InlineData("abc")]
    [InlineData("-1")]
    [InlineData("0")]
    [InlineData("1e6")]
    public void An_image_size_limit_that_is_no_positive_whole_number_is_refused_naming_the_variable(string value)
    {
        var e = Assert.Throws<ConfigException>(() => InterroGate.Data.Formats.ImageFiles.MaxPixelsFromEnvironment(value));
        Assert.Equal("INTERROGATE_MAX_IMAGE_PIXELS", e.Key);
        Assert.Contains($"'{value}' is not a positive whole number", e.Message);
    }

    [Fact]
    public void Outputs_are_checked_before_any_work_and_never_replace_what_is_read()
    {
        string dir = Directory.CreateTempSubdirectory("ig-out-").FullName;
        try
        {
            string file = Path.Combine(dir, "a.ckpt");
            File.WriteAllText(file, "x");
            var cases = new (string[] Args, string Message)[]
            {
                (["train", "multifashion-quick/mtl", "-o", ""], "is empty"),
                (["train", "multifashion-quick/mtl", "-o", file], "is a file; name a folder"),
                (["train", "multifashion-quick/mtl", "-o", Path.Combine(file, "run")], "is a file, not a folder"),
                (["prune", file, "-o", dir], "is a folder; name the file to write in it"),
                (["prune", file, "-o", Path.Combine(dir, "new") + "/"], "names a folder; name the file to write in it"),
                (["prune", file, "-o", file], "is the file being read"),
                (["export", file, "--format", "onnx", "-o", file], "is the file being read"),
                (["report", dir, "-o", dir], "is a folder"),
                (["report", dir, "-o", Path.Combine(dir, "none", "r.html")], $"{Path.Combine(dir, "none")} does not exist: create the folder before writing r.html in it"),
                (["gates", dir, "-o", file], "is a file; name a folder"),
            };
            foreach (var (args, message) in cases)
            {
                var (code, error) = Run(args);
                Assert.True(code == 2 && error.Contains("option '--out'", StringComparison.Ordinal) && error.Contains(message, StringComparison.Ordinal),
                    $"interrogate {string.Join(' ', args)}: exit {code}, {error}");
            }
            Assert.Equal("x", File.ReadAllText(file));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [InlineData("0,1,x")]
    [InlineData("")]
    [InlineData("0,,1")]
    [InlineData("0,1,0")]
    public void Compare_refuses_a_seed_list_that_is_malformed_or_repeats_before_training(string seeds)
    {
        var (code, error) = Run("compare", "multifashion-quick", "--seeds", seeds, "-o", Path.Combine(Path.GetTempPath(), $"ig-seeds-{Guid.NewGuid():N}"));
        Assert.Equal(2, code);
        Assert.Contains("config key 'seeds'", error);
    }

    [Theory]
    [InlineData("--targets", "0.5,1.5")]
    [InlineData("--targets", "half")]
    [InlineData("--set", "targets=[{\"fraction\":0.5}]")] // with the preset's λs list still there
    [InlineData("--set", "targets=[{\"fraction\":0.5,\"macs\":4e6}]")]
    public void Compare_refuses_malformed_budgets_or_budgets_beside_a_lambda_list_before_training(string option, string value)
    {
        var (code, error) = Run("compare", "multifashion-quick", option, value, "-o", Path.Combine(Path.GetTempPath(), $"ig-targets-{Guid.NewGuid():N}"));
        Assert.Equal(2, code);
        Assert.Contains("config key 'targets", error);
    }

    [Fact]
    public void An_unexpected_failure_prints_one_line_and_the_crash_log_path_and_exits_with_70()
    {
        var stderr = new StringWriter();
        var previous = Console.Error;
        Console.SetError(stderr);
        int code;
        try
        {
            code = InterroGate.Cli.Commands.CommonOptions.Guard(_ => throw new InvalidOperationException("boom\nsecond line"));
        }
        finally
        {
            Console.SetError(previous);
        }
        Assert.Equal(70, code);
        var lines = stderr.ToString().TrimEnd().Split('\n');
        Assert.Single(lines);
        Assert.StartsWith("internal error: boom (InvalidOperationException); details in ", lines[0]);
        string log = lines[0][(lines[0].IndexOf("details in ", StringComparison.Ordinal) + "details in ".Length)..].Trim();
        var text = File.ReadAllText(log);
        Assert.Contains("second line", text);
        Assert.Contains("   at ", text); // the trace is in the log, not on the console
        File.Delete(log);
    }

    [Fact]
    public void A_batch_larger_than_the_data_set_names_the_key()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"ig-batch-{Guid.NewGuid():N}");
        try
        {
            var (code, error) = Run("train", "multifashion-quick/mtl", "--set", "data.dataset=\"synthetic\"", "--set", "data.trainSize=64",
                "--set", "training.batchSize=128", "-o", dir);
            Assert.Equal(2, code);
            Assert.Contains("config key 'training.batchSize'", error);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Config_init_writes_a_starter_that_trains_from_the_data_folder_and_config_show_resolves_it()
    {
        var dir = Directory.CreateTempSubdirectory("ig-init-").FullName;
        try
        {
            string data = Path.Combine(dir, "mydata");
            foreach (var split in new[] { "train", "test" })
            {
                Directory.CreateDirectory(Path.Combine(data, split));
                InterroGate.Data.Npy.Write(Path.Combine(data, split, "images.npy"), [40, 8, 8], new byte[40 * 64]);
                InterroGate.Data.Npy.Write(Path.Combine(data, split, "digit.npy"), [40], Enumerable.Range(0, 40).Select(i => (long)(i % 3)).ToArray());
            }
            File.WriteAllText(Path.Combine(data, "tasks.json"), """{"tasks": [{"name": "digit", "kind": "classification", "classes": 3}]}""");
            string file = Path.Combine(dir, "configs", "mine.json");
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            var (code, output, error) = RunCapturing("config", "init", "--dataset", "folder", "--root", data, "-o", file);
            Assert.True(code == 0, error);
            Assert.Contains("tasks digit", output);
            Assert.Contains("\"root\": \"../mydata\"", File.ReadAllText(file)); // relative to the config file

            var (showCode, shown, _) = RunCapturing("config", "show", file, "--set", "training.epochs=1");
            Assert.Equal(0, showCode);
            var resolved = InterroGate.Configuration.ConfigJson.Deserialize<InterroGate.Configuration.RunConfig>(shown);
            Assert.Equal(data, resolved.Data.Root);
            Assert.Equal(1, resolved.Training.Epochs);
            // A value train would refuse: the configuration is shown, then the refusal, and the exit code says so.
            var (badCode, badShown, badError) = RunCapturing("config", "show", file, "--set", "training.epochs=-5");
            Assert.Equal(2, badCode);
            Assert.Equal(-5, InterroGate.Configuration.ConfigJson.Deserialize<InterroGate.Configuration.RunConfig>(badShown).Training.Epochs);
            Assert.Contains("train would refuse this configuration: config key 'training.epochs': -5 is out of range", badError);
            Assert.Equal(["digit"], resolved.Tasks!);
            Assert.Equal(2, Run("config", "init", "--dataset", "folder", "--root", data, "-o", file).Code); // exists: not overwritten

            // Trained, then the data folder moves: evaluate says how to point at it, and reads it there with --data-root.
            string run = Path.Combine(dir, "run");
            var (trainCode, trainError) = Run("train", file, "--set", "training.epochs=1", "--set", "training.batchSize=16",
                "--set", "backbone.width=0.25", "-o", run);
            Assert.True(trainCode == 0, trainError);
            string checkpoint = Path.Combine(run, InterroGate.Training.Trainer.LastFileName);
            var (evalCode, evalOutput, evalError) = RunCapturing("evaluate", checkpoint, "--json");
            Assert.True(evalCode == 0, evalError);
            string moved = Path.Combine(dir, "elsewhere");
            Directory.Move(data, moved);
            var (lostCode, lostError) = Run("evaluate", checkpoint);
            Assert.Equal(2, lostCode);
            Assert.Contains(data, lostError);
            Assert.Contains("if it moved, give its new place with --data-root", lostError);
            var (foundCode, foundOutput, foundError) = RunCapturing("evaluate", checkpoint, "--json", "--data-root", moved);
            Assert.True(foundCode == 0, foundError);
            Assert.Equal(System.Text.Json.JsonDocument.Parse(evalOutput).RootElement.GetProperty("metrics").GetRawText(),
                System.Text.Json.JsonDocument.Parse(foundOutput).RootElement.GetProperty("metrics").GetRawText()); // the same data, the same scores
            var (noCode, noError) = Run("evaluate", checkpoint, "--data-root", Path.Combine(dir, "nowhere"));
            Assert.Equal(2, noCode);
            Assert.Contains("--data-root", noError);
            // The same folder with images of another size: refused, not evaluated at that size.
            string larger = Path.Combine(dir, "larger");
            foreach (var split in new[] { "train", "test" })
            {
                Directory.CreateDirectory(Path.Combine(larger, split));
                InterroGate.Data.Npy.Write(Path.Combine(larger, split, "images.npy"), [40, 16, 16], new byte[40 * 256]);
                File.Copy(Path.Combine(moved, split, "digit.npy"), Path.Combine(larger, split, "digit.npy"));
            }
            File.Copy(Path.Combine(moved, "tasks.json"), Path.Combine(larger, "tasks.json"));
            var (sizeCode, sizeError) = Run("evaluate", checkpoint, "--data-root", larger);
            Assert.Equal(2, sizeCode);
            Assert.Contains("holds 1×16×16", sizeError);
            Assert.Contains("was trained on 1×8×8", sizeError);
            Directory.Move(moved, data);

            // A task whose name would leave its folder as a file name is refused before anything is written.
            File.WriteAllText(Path.Combine(data, "tasks.json"), """{"tasks": [{"name": "../digit", "kind": "classification", "classes": 3}]}""");
            string escaping = Path.Combine(dir, "configs", "escaping.json");
            var (nameCode, nameError) = Run("config", "init", "--dataset", "folder", "--root", data, "-o", escaping);
            Assert.Equal(2, nameCode);
            Assert.Contains("tasks[0] is named \"../digit\"", nameError);
            Assert.False(File.Exists(escaping));

            // A comparison file is told apart by any key of a comparison, not only lambdaS.
            string comparison = Path.Combine(dir, "configs", "cmp.json");
            File.WriteAllText(comparison, """{ "stlStartsFromMtl": false, "data": { "dataset": "synthetic" } }""");
            var (cmpCode, cmpShown, cmpError) = RunCapturing("config", "show", comparison);
            Assert.True(cmpCode == 0, cmpError);
            Assert.False(InterroGate.Configuration.ConfigJson.Deserialize<InterroGate.Configuration.CompareConfig>(cmpShown).StlStartsFromMtl);
            Assert.False(InterroGate.Configuration.Presets.IsComparison(file));
            // The run configuration config init wrote, given to compare: named as a run's, with the command for it.
            var (runAsComparison, runAsComparisonError) = Run("compare", file, "-o", Path.Combine(dir, "cmp-out"));
            Assert.Equal(2, runAsComparison);
            Assert.Contains($"{file} is a run configuration (it has \"architecture\", which a comparison does not): train it with `interrogate train {file}`", runAsComparisonError);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Unknown_presets_list_the_valid_ones()
    {
        var (code, error) = Run("compare", "no-such-preset");
        Assert.Equal(2, code);
        Assert.Contains("multifashion-quick", error);
    }

    /// <summary>Runs the CLI capturing both streams.</summary>
    internal static (int Code, string Output, string Error) RunCapturing(params string[] args)
    {
        var output = new StringWriter();
        var previous = Console.Out;
        Console.SetOut(output);
        try
        {
            var (code, error) = Run(args);
            return (code, output.ToString(), error);
        }
        finally
        {
            Console.SetOut(previous);
        }
    }

    [Fact]
    public void InterroGate_on_a_ViT_trains_and_its_pruned_network_exports_predicts_and_shows_its_gates()
    {
        var dir = Directory.CreateTempSubdirectory("ig-cli-vit-").FullName;
        try
        {
            var config = Training.TrainerTests.Config(new InterroGate.Architectures.InterroGateConfig { LambdaS = 1 }, epochs: 1, train: 64)
                with { Backbone = new InterroGate.Configuration.BackboneConfig { Name = "vit_cpu_patch4_32" } };
            var run = InterroGate.Training.PreparedRun.Create(config);
            string ckpt = new InterroGate.Training.Trainer(config, run.Model, run.Data, Path.Combine(dir, "vit")).Run().LastCheckpoint;

            var (gatesCode, gatesTable, gatesError) = RunCapturing("gates", Path.Combine(dir, "vit"), "-o", Path.Combine(dir, "plots"));
            Assert.True(gatesCode == 0, gatesError);
            Assert.Contains("of 17 gated layers", gatesTable); // the patch embedding and four linear units per block
            Assert.Contains("| 13 blocks.3.attn.qkv | 192 |", gatesTable);
            Assert.True(File.Exists(Path.Combine(dir, "plots", "gates.png")));

            string pruned = Path.Combine(dir, "vit.safetensors");
            var (code, output, error) = RunCapturing("prune", ckpt, "-o", pruned, "--json");
            Assert.True(code == 0, error);
            long macsAfter;
            using (var report = System.Text.Json.JsonDocument.Parse(output))
            {
                var r = report.RootElement.GetProperty("report");
                macsAfter = r.GetProperty("macsAfter").GetInt64();
                Assert.InRange(macsAfter, 1, r.GetProperty("macsBefore").GetInt64());
                // One row per gated unit: the patch embedding and four linear units per block.
                Assert.Equal(1 + 4 * 4, r.GetProperty("layers").GetArrayLength());
            }
            Assert.Equal(0, Run("export", pruned, "--format", "onnx", "-o", Path.Combine(dir, "vit.onnx")).Code);
            InterroGate.Data.Npy.Write(Path.Combine(dir, "a.npy"), [32, 32], new byte[32 * 32]); // the synthetic data set is grey
            var (predictCode, json, predictError) = RunCapturing("predict", pruned, Path.Combine(dir, "a.npy"), "--json");
            Assert.True(predictCode == 0, predictError + json);
            using (var predictions = System.Text.Json.JsonDocument.Parse(json))
                Assert.Equal(run.Model.Tasks.Count, predictions.RootElement[0].GetProperty("tasks").EnumerateObject().Count());
            var (costCode, costJson, _) = RunCapturing("cost", pruned, "--json");
            Assert.Equal(0, costCode);
            using (var c = System.Text.Json.JsonDocument.Parse(costJson))
                Assert.Equal(macsAfter, c.RootElement.GetProperty("macs").GetInt64()); // the file's network costs what pruning reported
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Prune_export_predict_and_cost_work_on_checkpoints_and_refuse_what_they_cannot_use()
    {
        var dir = Directory.CreateTempSubdirectory("ig-cli-").FullName;
        try
        {
            string Train(InterroGate.Architectures.ArchitectureConfig arch, string name)
            {
                var config = Training.TrainerTests.Config(arch, epochs: 1, train: 64);
                var run = InterroGate.Training.PreparedRun.Create(config);
                return new InterroGate.Training.Trainer(config, run.Model, run.Data, Path.Combine(dir, name)).Run().LastCheckpoint;
            }
            string mtl = Train(new InterroGate.Architectures.HardSharingConfig(), "mtl");
            string ig = Train(new InterroGate.Architectures.InterroGateConfig(), "ig");

            // gates: the table from the checkpoint and the run's metrics.jsonl, and the Figure 4 plot as PNG and SVG.
            var (gatesCode, gatesTable, _) = RunCapturing("gates", Path.Combine(dir, "ig"), "-o", Path.Combine(dir, "plots"));
            Assert.Equal(0, gatesCode);
            Assert.Contains("| layer | C |", gatesTable);
            Assert.Contains("Gradients: running means over the gate-learning steps of epoch 1", gatesTable);
            string gatesMd = File.ReadAllText(Path.Combine(dir, "plots", "gates.md")).Trim(); // the whole table also in a file
            Assert.StartsWith("| layer | C |", gatesMd);
            Assert.Contains(gatesMd, gatesTable);
            var png = File.ReadAllBytes(Path.Combine(dir, "plots", "gates.png"));
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
            Assert.Contains("<svg", File.ReadAllText(Path.Combine(dir, "plots", "gates.svg")));
            var notGated = Run("gates", mtl);
            Assert.Equal(2, notGated.Code);
            Assert.Contains("only InterroGate models have gates", notGated.Error);

            var refused = Run("prune", mtl);
            Assert.Equal(2, refused.Code);
            Assert.Contains("only InterroGate models are pruned", refused.Error);

            string pruned = Path.Combine(dir, "ig.safetensors");
            var (code, output, _) = RunCapturing("prune", ig, "-o", pruned, "--json");
            Assert.Equal(0, code);
            Assert.True(File.Exists(pruned));
            long macsAfter;
            using (var report = System.Text.Json.JsonDocument.Parse(output))
                macsAfter = report.RootElement.GetProperty("report").GetProperty("macsAfter").GetInt64();

            Assert.Equal(0, Run("export", pruned, "--format", "onnx", "-o", Path.Combine(dir, "ig.onnx")).Code);
            Assert.True(new FileInfo(Path.Combine(dir, "ig.onnx")).Length > 1000);
            Assert.Equal(0, Run("export", mtl, "--format", "safetensors", "-o", Path.Combine(dir, "mtl.safetensors")).Code);

            // One good image and one that is not an image: the good one is still predicted, the bad one named.
            InterroGate.Data.Npy.Write(Path.Combine(dir, "a.npy"), [16, 16], new byte[256]);
            File.WriteAllText(Path.Combine(dir, "b.png"), "not an image");
            var (predictCode, json, error) = RunCapturing("predict", Path.Combine(dir, "mtl.safetensors"), Path.Combine(dir, "a.npy"), Path.Combine(dir, "b.png"), "--json");
            Assert.Equal(1, predictCode);
            using (var predictions = System.Text.Json.JsonDocument.Parse(json))
            {
                var first = predictions.RootElement[0];
                Assert.Equal(3, first.GetProperty("tasks").EnumerateObject().Count());
                Assert.Contains("b.png", predictions.RootElement[1].GetProperty("error").GetString());
            }

            var (costCode, costJson, _) = RunCapturing("cost", "resnet18", "--json");
            Assert.Equal(0, costCode);
            using (var cost = System.Text.Json.JsonDocument.Parse(costJson))
            {
                Assert.Equal(1_814_073_344, cost.RootElement.GetProperty("macs").GetInt64());
                Assert.Equal(11_689_512, cost.RootElement.GetProperty("parameters").GetInt64());
            }
            var (_, igCost, _) = RunCapturing("cost", pruned, "--json");
            using (var c = System.Text.Json.JsonDocument.Parse(igCost))
            {
                Assert.Equal(3, c.RootElement.GetProperty("tasks").EnumerateObject().Count());
                Assert.Equal(macsAfter, c.RootElement.GetProperty("macs").GetInt64()); // the file's network costs what pruning reported
            }
            Assert.Equal(2, Run("cost", pruned, "--input", "big").Code);

            // A static model is told by its content, whatever its name; a file is not written under another format's extension.
            string renamed = Path.Combine(dir, "ig.model");
            File.Copy(pruned, renamed);
            var (renamedCode, renamedCost, renamedError) = RunCapturing("cost", renamed, "--json");
            Assert.True(renamedCode == 0, renamedError);
            using (var c = System.Text.Json.JsonDocument.Parse(renamedCost)) Assert.Equal(macsAfter, c.RootElement.GetProperty("macs").GetInt64());
            Assert.Equal(0, RunCapturing("predict", renamed, Path.Combine(dir, "a.npy"), "--json").Code);
            foreach (var (args, message) in new (string[], string)[]
                     {
                         (["prune", ig, "-o", Path.Combine(dir, "p.onnx")], "p.onnx would hold a static model (safetensors); give it the extension .safetensors"),
                         (["export", pruned, "--format", "onnx", "-o", Path.Combine(dir, "o.safetensors")], "o.safetensors would hold an ONNX model; give it the extension .onnx"),
                         (["export", ig, "--format", "state-dict", "-o", Path.Combine(dir, "s.ckpt")], "s.ckpt would hold a state dict (safetensors)"),
                         (["export", pruned, "--format", "onnx", "-o", Path.Combine(dir, "none", "o.onnx")], $"{Path.Combine(dir, "none")} does not exist: create the folder before writing o.onnx in it"),
                     })
            {
                var (wrongCode, wrongError) = Run(args);
                Assert.True(wrongCode == 2 && wrongError.Contains(message, StringComparison.Ordinal), $"{string.Join(' ', args)}: exit {wrongCode}, {wrongError}");
            }
            Assert.False(File.Exists(Path.Combine(dir, "p.onnx")));

            // Architectures by name: STL's total is the sum of its tasks' networks; MTL shares one encoder.
            long Total(string arch, out long[] perTask)
            {
                var (code, text, error) = RunCapturing("cost", arch, "--backbone", "resnet20", "--input", "32x32", "--tasks", "3", "--json");
                Assert.True(code == 0, $"cost {arch}: {error}");
                using var d = System.Text.Json.JsonDocument.Parse(text);
                perTask = d.RootElement.GetProperty("tasks").EnumerateObject().Select(t => t.Value.GetProperty("macs").GetInt64()).ToArray();
                return d.RootElement.GetProperty("macs").GetInt64();
            }
            long stlMacs = Total("stl", out var stlTasks), mtlMacs = Total("mtl", out var mtlTasks);
            Assert.Equal(3, stlTasks.Length);
            Assert.Equal(stlMacs, stlTasks.Sum());
            Assert.Equal(stlTasks[0], mtlTasks[0]);
            Assert.True(mtlMacs < stlTasks.Sum() / 2);
            // MTAN and cross-stitch are built as named (counted as built: no static form), not as an InterroGate network.
            long mtanMacs = Total("mtan", out _), crossStitchMacs = Total("cross-stitch", out _);
            using (var _ = TorchSharp.torch.NewDisposeScope())
            {
                var tasks = new InterroGate.Tasks.TaskSet(Enumerable.Range(1, 3).Select(i => new InterroGate.Tasks.TaskSpec($"task{i}", InterroGate.Tasks.TaskKind.Classification, 10)));
                using var mtan = new InterroGate.Architectures.Mtan(tasks, (InterroGate.Backbones.ResNetSpec)InterroGate.Backbones.BackboneCatalog.Spec("resnet20"), 3);
                Assert.Equal(InterroGate.Analysis.DeployedCost.OfModel(mtan, (3, 32, 32)).Macs, mtanMacs);
            }
            Assert.True(mtanMacs > mtlMacs && mtanMacs < stlMacs); // an InterroGate network as initialised costs STL's
            Assert.True(crossStitchMacs >= stlMacs);
            Assert.Equal(2, Run("prune", Path.Combine(dir, "none.ckpt")).Code);

            // An MTAN checkpoint has no static form: export and predict say so (a user error), cost counts it as built.
            string mtanCkpt = Train(new InterroGate.Architectures.MtanConfig(), "mtan");
            var noExport = Run("export", mtanCkpt, "--format", "onnx", "-o", Path.Combine(dir, "mtan.onnx"));
            Assert.Equal(2, noExport.Code);
            Assert.Contains("mtan models have no static form", noExport.Error);
            Assert.False(File.Exists(Path.Combine(dir, "mtan.onnx")));
            Assert.Equal(2, Run("predict", mtanCkpt, Path.Combine(dir, "a.npy")).Code);
            var (mtanCostCode, mtanCost, mtanCostError) = RunCapturing("cost", mtanCkpt, "--json");
            Assert.True(mtanCostCode == 0, mtanCostError);
            using (var c = System.Text.Json.JsonDocument.Parse(mtanCost))
            {
                var (model, input, _) = InterroGate.Export.ModelFiles.LoadCheckpoint(mtanCkpt);
                using (model)
                    Assert.Equal(InterroGate.Analysis.DeployedCost.OfModel(model, (input.Channels, input.Height, input.Width)).Macs,
                        c.RootElement.GetProperty("macs").GetInt64());
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
