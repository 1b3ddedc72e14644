// The cost counter on the paper's dense settings: encoder and per-head MACs and parameters of ResNet-50 + ASPP and
// HRNet-18 at NYUD-v2's 480×640, and ResNet-18 + ASPP at PASCAL-Context's 512×512, beside what the paper's tables imply from
// the paper's tables (STL = T·(E+H), MTL = E + T·H).
// Usage: dotnet run -c Release --project bench/InterroGate.Bench -- dense-cost
using System.Globalization;
using InterroGate.Analysis;
using InterroGate.Backbones;
using InterroGate.Gating;
using InterroGate.Heads;
using InterroGate.Tasks;
using static TorchSharp.torch;

internal static class DenseCost
{
    private sealed record Setting(string Name, IEncoderSpec Spec, int Height, int Width, (string Task, int Outputs)[] Heads,
        Func<long, int, nn.Module<Tensor, Tensor>> Head, string Paper);

    public static void Run()
    {
        using var _ = no_grad();
        var nyud = new[] { ("semseg", 40), ("depth", 1), ("normals", 3) };
        var pascal = new[] { ("semseg", 21), ("human_parts", 7), ("sal", 1), ("normals", 3), ("edge", 1) };
        nn.Module<Tensor, Tensor> Aspp(long c, int k, int os) => new AsppHead(c, k, AsppHead.RatesFor(os), 256);
        var settings = new List<Setting>
        {
            new("NYUD-v2 ResNet-50 OS8 + ASPP", ResNetSpec.ResNet50(ResNetSpec.DilationForOutputStride(8)), 480, 640, nyud,
                (c, k) => Aspp(c, k, 8), "E ≈ 233 G, H ≈ 150 G; params E ≈ 23.5 M, H ≈ 16.1 M (GFlops: STL 1149, MTL 683)"),
            new("NYUD-v2 ResNet-50 OS16 + ASPP", ResNetSpec.ResNet50(ResNetSpec.DilationForOutputStride(16)), 480, 640, nyud,
                (c, k) => Aspp(c, k, 16), "(same)"),
            new("NYUD-v2 HRNet-18 + HRNet head", HRNetSpec.V2(18), 480, 640, nyud,
                (c, k) => new HrNetHead(c, k), "E ≈ 20.3 G, H ≈ 1.4 G (GFlops: STL 65.1, MTL 24.5)"),
            new("PASCAL-Context ResNet-18 OS8 + ASPP", ResNetSpec.ResNet18(ResNetSpec.DilationForOutputStride(8)), 512, 512, pascal,
                (c, k) => Aspp(c, k, 8), "E ≈ 96.5 G, H ≈ 37.5 G (GFlops: STL 670, MTL 284)"),
            new("PASCAL-Context HRNet-18 + HRNet head", HRNetSpec.V2(18), 512, 512, pascal,
                (c, k) => new HrNetHead(c, k), "—"),
        };
        Console.WriteLine("| setting | encoder G MACs | heads G MACs (each) | encoder params (M) | head params (M, each) | MTL G MACs | STL G MACs | InterroGate gated layers | from the paper's tables |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var s in settings)
        {
            using var encoder = s.Spec.CreateEncoder(3);
            encoder.eval();
            var e = CostCounter.Count(encoder, x => encoder.call(x), [1, 3, s.Height, s.Width]);
            long fh = s.Height / s.Spec.OutputStride + (s.Height % s.Spec.OutputStride == 0 ? 0 : 1);
            long fw = s.Width / s.Spec.OutputStride + (s.Width % s.Spec.OutputStride == 0 ? 0 : 1);
            var heads = s.Heads.Select(h =>
            {
                using var head = s.Head(s.Spec.OutChannels, h.Outputs);
                head.eval();
                return CostCounter.Count(head, x => head.call(x), [1, s.Spec.OutChannels, fh, fw]);
            }).ToArray();
            long mtl = e.Macs + heads.Sum(h => h.Macs), stl = s.Heads.Length * e.Macs + heads.Sum(h => h.Macs);
            string[] taskNames = s.Heads.Select(h => h.Task).ToArray();
            int gatedLayers;
            using (var gated = new GatedEncoder(taskNames, s.Spec, 3, (s.Height, s.Width), GatingMode.Conv, 0.5))
                gatedLayers = gated.GateLayers.Count;
            string G(long macs) => (macs / 1e9).ToString("F2", CultureInfo.InvariantCulture);
            string M(long p) => (p / 1e6).ToString("F2", CultureInfo.InvariantCulture);
            Console.WriteLine($"| {s.Name} at {s.Height}×{s.Width} | {G(e.Macs)} | {string.Join(" / ", heads.Select(h => G(h.Macs)))} | " +
                              $"{M(e.Params)} | {string.Join(" / ", heads.Select(h => M(h.Params)))} | {G(mtl)} | {G(stl)} | {gatedLayers} | {s.Paper} |");
        }
        Console.WriteLine();
        Console.WriteLine(CostCounter.Convention);
    }
}
