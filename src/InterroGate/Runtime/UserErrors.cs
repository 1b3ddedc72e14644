namespace InterroGate.Runtime;

/// <summary>
/// The one list of failures a user can cause (a bad key, file, task, device or folder): the command line reports
/// them in one line with exit code 2, and the fuzz tests accept them as a parser's answer to a damaged file. Any
/// other exception is a defect.
/// </summary>
public static class UserErrors
{
    public static bool Is(Exception e) => e is Configuration.ConfigException or Data.DataFormatException or Data.DatasetNotFoundException
        or Training.CheckpointException or Training.RunFolderException or Training.NonFiniteLossException
        or NativeLoadException or DeviceUnavailableException
        or Export.SafeTensorsException or Export.ImageInputException
        or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException;
}
