using System.CommandLine;
using InterroGate.Data;
using InterroGate.Runtime;
using Spectre.Console;

namespace InterroGate.Cli.Commands;

internal static class DoctorCommand
{
    public static Command Create()
    {
        var cmd = new Command("doctor", "Check the environment: .NET, TorchSharp, libtorch, threads, CUDA, data sets.");
        cmd.SetAction(_ =>
        {
            var r = EnvironmentReport.Collect([("fashion-mnist", () => FashionMnist.Describe(FashionMnist.DefaultRoot))]);
            var t = new Table().AddColumn("check").AddColumn("result");
            t.AddRow(".NET", r.DotNet);
            t.AddRow("TorchSharp", r.TorchSharp);
            t.AddRow("libtorch", r.LibTorch is null ? "[red]not loaded[/]" : Markup.Escape(r.LibTorch));
            if (r.LibTorch is not null)
            {
                t.AddRow("libtorch backend", Markup.Escape(r.Backend ?? "?"));
                t.AddRow("threads", $"{r.Threads} intra-op, {r.InteropThreads} inter-op ({Environment.ProcessorCount} cores)");
                t.AddRow("CPU memory allocator", Markup.Escape(r.Allocator));
                t.AddRow("CUDA", r.CudaAvailable ? $"available, {r.CudaDevices} device(s) (--device cuda or cuda:N)" : Markup.Escape(Devices.WhyNoCuda(NativeRuntime.Location)));
                foreach (var g in r.Gpus) t.AddRow("GPU", Markup.Escape(g));
                t.AddRow("mixed precision", Autocast.Unavailable() is { } why
                    ? $"[yellow]not available[/]: {Markup.Escape(why)}"
                    : "bf16 available (training.precision=bf16, libtorch's autocast)");
            }
            foreach (var (name, status) in r.Datasets) t.AddRow($"data: {name}", Markup.Escape(status));
            AnsiConsole.Write(t);
            if (r.LoadError is not null)
            {
                AnsiConsole.MarkupLine($"[red]{Markup.Escape(r.LoadError)}[/]");
                return 2;
            }
            return 0;
        });
        return cmd;
    }
}
