// Loading a torchvision-layout ResNet-50 state dict (25.6 M parameters, with its 1000-way fc) as pretrained weights:
// from a PyTorch pickle (.pth) and from safetensors, into an MTL model's encoder and into an InterroGate model's three
// branches (two tasks). The file is written here (random weights, torchvision names and shapes): no network access.
using System.Collections;
using System.Diagnostics;
using InterroGate.Architectures;
using InterroGate.Backbones;
using InterroGate.Configuration;
using InterroGate.Tasks;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

internal static class PretrainedLoad
{
    public static void Run(string dir)
    {
        Directory.CreateDirectory(dir);
        manual_seed(0);
        Dictionary<string, Tensor> state;
        using (var net = new ResNet(ResNetSpec.ResNet50(), 3))
            state = net.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        state["fc.weight"] = randn(1000, 2048);
        state["fc.bias"] = randn(1000);
        string pth = Path.Combine(dir, "resnet50.pth"), st = Path.Combine(dir, "resnet50.safetensors");
        PyTorchPickler.PickleStateDict(pth, new Hashtable(state));
        Safetensors.SaveStateDict(st, state);
        Console.WriteLine($"torchvision-layout ResNet-50: {state.Count} tensors, {state.Values.Sum(t => t.numel()) / 1e6:F1} M values; " +
                          $".pth {new FileInfo(pth).Length / 1e6:F1} MB, .safetensors {new FileInfo(st).Length / 1e6:F1} MB");
        Console.WriteLine();
        Console.WriteLine("| file | model | backbones | tensors loaded | missing | unexpected | wrong shape | read + load s (median of 3) |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        var tasks = new TaskSet([new TaskSpec("a", TaskKind.Classification, 10), new TaskSpec("b", TaskKind.Classification, 10)]);
        foreach (var file in new[] { pth, st })
            foreach (var arch in new ArchitectureConfig[] { new HardSharingConfig(), new InterroGateConfig() })
            {
                var times = new List<double>();
                PretrainedReport? report = null;
                for (int i = 0; i < 3; i++)
                {
                    using var model = Factory.CreateModel(new RunConfig { Backbone = new BackboneConfig { Name = "resnet50" }, Architecture = arch }, tasks, (3, 224, 224));
                    var clock = Stopwatch.StartNew();
                    report = PretrainedWeights.Apply(model, file);
                    times.Add(clock.Elapsed.TotalSeconds);
                }
                times.Sort();
                static string L(IReadOnlyList<string> names) => names.Count == 0 ? "none" : string.Join(", ", names);
                Console.WriteLine($"| {Path.GetExtension(file)} | {arch.Type} | {report!.Backbones.Count} | {report.Loaded} of {report.Targets} | {L(report.Missing)} | {L(report.Unexpected)} | {L(report.Mismatched)} | {times[1]:F2} |");
            }
    }
}
