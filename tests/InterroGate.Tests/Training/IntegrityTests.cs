using InterroGate.Architectures;
using InterroGate.Data;
using InterroGate.Export;
using InterroGate.Pruning;
using InterroGate.Training;

namespace InterroGate.Tests.Training;

/// <summary>Checkpoints and static models carry checksums: a damaged file is refused, and resume falls back to the previous checkpoint.</summary>
[Collection("Torch")]
public sealed class IntegrityTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ig-integrity-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static void FlipByte(string path, double where)
    {
        var bytes = File.ReadAllBytes(path);
        bytes[(int)(bytes.Length * where)] ^= 0x10;
        File.WriteAllBytes(path, bytes);
    }

    [Fact]
    public void A_flipped_byte_in_the_weights_is_refused_and_resume_falls_back_to_the_previous_checkpoint()
    {
        var config = TrainerTests.Config(new HardSharingConfig(), epochs: 2, train: 64);
        var run = PreparedRun.Create(config);
        var trainer = new Trainer(config, run.Model, run.Data, _dir);
        trainer.Run();
        string previous = Checkpoint.PreviousPath(trainer.LastPath);
        Assert.Equal(1, Checkpoint.ReadMeta(previous).Epoch); // the checkpoint the last save replaced is kept
        Assert.Null(Checkpoint.Verify(trainer.LastPath));

        FlipByte(trainer.LastPath, 0.25); // inside the weights (the optimiser states, twice their size, follow them)
        Assert.Contains("checksum", Checkpoint.Verify(trainer.LastPath));
        var fresh = PreparedRun.Create(config);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(trainer.LastPath, fresh.Model));
        Assert.Contains("damaged", e.Message);

        // Damage in the optimiser states, which only a resume loads, is refused by every load too.
        File.Copy(previous, trainer.LastPath, overwrite: true);
        Checkpoint.Load(trainer.LastPath, fresh.Model);
        FlipByte(trainer.LastPath, 0.9);
        Assert.Contains("damaged", Assert.Throws<CheckpointException>(() => Checkpoint.Load(trainer.LastPath, fresh.Model)).Message);

        // Resume: the damaged file is not loaded; training continues from epoch 1's checkpoint and ends whole.
        var messages = new RunMessages();
        var again = PreparedRun.Create(config);
        new Trainer(config, again.Model, again.Data, _dir, messages).Run(trainer.LastPath);
        Assert.Contains(messages.Lines, m => m.Contains("resuming from the previous checkpoint", StringComparison.Ordinal));
        Assert.Null(Checkpoint.Verify(trainer.LastPath));
        Assert.Equal(2, Checkpoint.ReadMeta(trainer.LastPath).Epoch);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(_dir, "metrics.jsonl")).Length);

        // Both damaged: a clear error naming the file.
        FlipByte(trainer.LastPath, 0.6);
        FlipByte(previous, 0.6);
        var none = Assert.Throws<CheckpointException>(() => new Trainer(config, again.Model, again.Data, _dir).Run(trainer.LastPath));
        Assert.Contains("no whole previous checkpoint", none.Message);
    }

    [Fact]
    public void A_flipped_byte_in_a_static_model_is_refused()
    {
        var model = new InterroGateModel(new InterroGate.Tasks.TaskSet([new InterroGate.Tasks.TaskSpec("a", InterroGate.Tasks.TaskKind.Classification, 3)]),
            InterroGate.Backbones.ResNetSpec.ResNet20(0.25), 1, (8, 8), new InterroGateConfig());
        string path = Path.Combine(_dir, "m.safetensors");
        StaticModelFile.Save(path, Pruner.Prune(model, new ImageInput(1, 8, 8)).Graph);
        StaticModelFile.Load(path); // whole: loads
        FlipByte(path, 0.9); // in the tensor data, which the safetensors format itself does not check
        var e = Assert.Throws<SafeTensorsException>(() => StaticModelFile.Load(path));
        Assert.Contains("checksum", e.Message);
    }
}
