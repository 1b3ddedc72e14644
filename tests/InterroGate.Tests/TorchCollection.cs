namespace InterroGate.Tests;

/// <summary>Tests that touch libtorch's global state (seed, threads) run one at a time.</summary>
[CollectionDefinition("Torch", DisableParallelization = true)]
public sealed class TorchCollection;
