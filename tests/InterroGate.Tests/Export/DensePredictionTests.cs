using System.Text.Json;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Data;
using InterroGate.Data.Formats;
using InterroGate.Export;
using InterroGate.Heads;
using InterroGate.Pruning;
using InterroGate.Tasks;
using InterroGate.Tests.Cli;
using static TorchSharp.torch;

namespace InterroGate.Tests.Export;

/// <summary>
/// Predictions of dense tasks read as maps at the image's own size (a class per pixel, probabilities, depth, unit
/// normals), summarised in the table and JSON, and written as files with `predict --maps`.
/// </summary>
[Collection("Torch")]
public sealed class DensePredictionTests : IDisposable
{
    private static readonly TaskSet Tasks = new([
        new TaskSpec("semseg", TaskKind.Segmentation, 3),
        new TaskSpec("depth", TaskKind.Depth, 1),
        new TaskSpec("normals", TaskKind.Normals, 3),
        new TaskSpec("sal", TaskKind.Saliency, 1),
        new TaskSpec("kind", TaskKind.Classification, 4),
    ]);

    private readonly string _dir = Directory.CreateTempSubdirectory("ig-dense-predict-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>A static MTL network with ASPP heads that reads 16×16 RGB images, saved to a file.</summary>
    private string Model()
    {
        manual_seed(3);
        var model = new HardSharing(Tasks, ResNetSpec.ResNet20(0.5), 3, new HeadConfig { Channels = 8 });
        model.eval();
        using var graph = StaticConversion.ToStatic(model, new ImageInput(3, 16, 16)).Graph;
        string path = Path.Combine(_dir, "dense.safetensors");
        StaticModelFile.Save(path, graph);
        return path;
    }

    /// <summary>A 20×24 RGB PNG: another size than the network's input.</summary>
    private string Image(string name)
    {
        string path = Path.Combine(_dir, name);
        InterroGate.Data.Formats.ImageFiles.WritePng(path, new DecodedImage(Enumerable.Range(0, 20 * 24 * 3).Select(i => (byte)(i * 37 % 256)).ToArray(), 20, 24, 3));
        return path;
    }

    [Fact]
    public void Dense_predictions_are_maps_at_the_images_own_size()
    {
        string image = Image("a.png");
        using var predictor = Predictor.Load(Model());
        var result = Assert.Single(predictor.PredictFiles([image]));
        Assert.Null(result.Error);
        Assert.Equal("resized from 24×20 to 16×16", result.Note);

        // The network's outputs at 16×16, resized back to 20×24 as the maps should be.
        var (pixels, _, _) = InterroGate.Export.ImageFiles.Read(image, predictor.Input);
        var outputs = predictor.Forward(pixels.unsqueeze(0));
        Tensor Back(string task) => nn.functional.interpolate(outputs[task], [20, 24], mode: InterpolationMode.Bilinear, align_corners: false)[0];

        var semseg = result.Tasks!["semseg"].Map!;
        Assert.Equal(new long[] { 20, 24 }, semseg.Shape);
        Assert.Equal(Back("semseg").argmax(0).flatten().data<long>().ToArray().Select(v => (float)v), semseg.Values);
        Assert.StartsWith("24×20, classes ", semseg.Summary);
        Assert.Empty(result.Tasks["semseg"].Values);

        var sal = result.Tasks["sal"].Map!;
        Assert.Equal(Back("sal").sigmoid().flatten().data<float>().ToArray(), sal.Values);
        Assert.Matches(@"^24×20, \d+\.\d% salient \(p > 0\.5\)$", sal.Summary);

        var depth = result.Tasks["depth"].Map!;
        Assert.Equal(Back("depth").flatten().data<float>().ToArray(), depth.Values);

        var normals = result.Tasks["normals"].Map!;
        Assert.Equal(new long[] { 3, 20, 24 }, normals.Shape);
        for (int k = 0; k < 20 * 24; k++)
        {
            double length = Math.Sqrt(Enumerable.Range(0, 3).Sum(c => normals.Values[c * 480 + k] * normals.Values[c * 480 + k]));
            Assert.Equal(1, length, 4);
        }

        // Image-level tasks are read as before.
        Assert.Equal(4, result.Tasks["kind"].Values.Length);
        Assert.Null(result.Tasks["kind"].Map);
    }

    [Fact]
    public void Predict_writes_the_maps_and_summarises_them()
    {
        string model = Model(), image = Image("a.png"), maps = Path.Combine(_dir, "maps");
        var (code, json, error) = CliTests.RunCapturing("predict", model, image, "--json", "--maps", maps);
        Assert.True(code == 0, error + json);
        using var doc = JsonDocument.Parse(json);
        var tasks = doc.RootElement[0].GetProperty("tasks");
        var semseg = tasks.GetProperty("semseg");
        Assert.Equal([20, 24], semseg.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
        Assert.False(semseg.TryGetProperty("values", out _)); // no per-pixel numbers in the JSON
        Assert.Equal(Path.Combine(maps, "a.semseg.png"), semseg.GetProperty("map").GetString());
        Assert.Equal(Path.Combine(maps, "a.depth.npy"), tasks.GetProperty("depth").GetProperty("map").GetString());

        // The files hold the maps the predictor gives.
        using var predictor = Predictor.Load(model);
        var predicted = predictor.PredictFiles([image])[0].Tasks!;
        var classes = InterroGate.Data.Formats.ImageFiles.Read(Path.Combine(maps, "a.semseg.png"));
        Assert.Equal((20, 24, 1), (classes.Height, classes.Width, classes.Channels));
        Assert.Equal(predicted["semseg"].Map!.Values.Select(v => (byte)v), classes.Pixels);
        var sal = InterroGate.Data.Formats.ImageFiles.Read(Path.Combine(maps, "a.sal.png"));
        Assert.Equal(predicted["sal"].Map!.Values.Select(p => (byte)Math.Round(p * 255)), sal.Pixels);
        var normals = Npy.Read(Path.Combine(maps, "a.normals.npy"));
        Assert.Equal(new long[] { 3, 20, 24 }, normals.Shape);
        Assert.Equal(predicted["normals"].Map!.Values, normals.ToTensor().flatten().data<float>().ToArray());
        Assert.Equal(new long[] { 20, 24 }, Npy.Read(Path.Combine(maps, "a.depth.npy")).Shape);

        // The table shows the summaries (Spectre.Console writes to the console it was given at first use, so it is
        // pointed at a writer of this test's own for the call).
        var writer = new StringWriter();
        var previous = Spectre.Console.AnsiConsole.Console;
        Spectre.Console.AnsiConsole.Console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings
        {
            Out = new Spectre.Console.AnsiConsoleOutput(writer),
            Ansi = Spectre.Console.AnsiSupport.No,
        });
        try { Assert.Equal(0, CliTests.Run("predict", model, image).Code); }
        finally { Spectre.Console.AnsiConsole.Console = previous; }
        Assert.Contains("salient", writer.ToString());
        Assert.Contains("classes", writer.ToString());
    }

    [Fact]
    public void Maps_need_a_dense_task_and_a_folder()
    {
        string model = Model(), image = Image("a.png");
        File.WriteAllText(Path.Combine(_dir, "file"), "");
        var (code, error) = CliTests.Run("predict", model, image, "--maps", Path.Combine(_dir, "file"));
        Assert.Equal(2, code);
        Assert.Contains("is a file; give a folder", error);
    }
}
