// The library from C#, end to end: train InterroGate on MultiFashion, evaluate it, prune it to a static network,
// save that and predict with it (QuickStart.cs; README.md, "Using the library from C#").
// Usage: dotnet run --project examples/QuickStart -c Release [-- OUTPUT_DIR [DATASET [TRAIN_SIZE [EPOCHS]]]]
// (DATASET: multifashion, the default, or any data set of `interrogate list`; it prints the classification tasks' predictions)
using System.Globalization;
using InterroGate.Examples;

string output = args.Length > 0 ? args[0] : "runs/quickstart";
string dataset = args.Length > 1 ? args[1] : "multifashion";
int trainSize = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 8000;
int epochs = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 3;
QuickStart.Run(output, dataset, trainSize, epochs, Console.WriteLine);
