using InterroGate.Cli;

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
    private static (int Code, string Error) Run(params string[] args)
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
    public void A_config_error_exits_with_code_2_and_names_the_key()
    {
        var (code, error) = Run("train", "multifashion-quick/mtl", "--set", "training.epochs=-1");
        Assert.Equal(2, code);
        Assert.Contains("training.epochs", error);
    }

    [Fact]
    public void Unknown_presets_list_the_valid_ones()
    {
        var (code, error) = Run("compare", "no-such-preset");
        Assert.Equal(2, code);
        Assert.Contains("multifashion-quick", error);
    }
}
