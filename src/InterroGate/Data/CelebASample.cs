// A small CelebA-format folder of synthetic faces whose attributes can be seen: for tests, for trying the CelebA
// presets without the real data, and for checking a setup end to end.
using System.Text;
using InterroGate.Data.Formats;

namespace InterroGate.Data;

/// <summary>
/// Writes <c>img_align_celeba/NNNNNN.jpg</c> (178×218 like the aligned release), <c>list_attr_celeba.txt</c> and
/// <c>list_eval_partition.txt</c> in the official formats, with all 40 attribute names. Each image is a face-like
/// ellipse on a background; the attributes of the paper's tasks are drawn into it where a 32×32 centre crop keeps them
/// (Male: a dark jaw band, Young: a bright face, Wearing_Necktie: a dark stripe below the chin), every other attribute
/// is random noise. 80% of the images are train, 10% validation, 10% test, in file order as in the release.
/// </summary>
public static class CelebASample
{
    /// <summary>CelebA's 40 attributes in the order of list_attr_celeba.txt.</summary>
    public static readonly string[] AttributeNames =
    [
        "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
        "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
        "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
        "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling",
        "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
        "Wearing_Necktie", "Young",
    ];

    public const int Width = 178, Height = 218;

    /// <summary>Writes <paramref name="count"/> images and both annotation files into <paramref name="root"/> (created).</summary>
    public static void Write(string root, int count, int seed = 0)
    {
        if (count < 3) throw new ArgumentOutOfRangeException(nameof(count), count, "A CelebA sample needs at least 3 images (one per split).");
        var rng = new Random(seed);
        string images = Path.Combine(root, CelebA.ImagesFolder);
        Directory.CreateDirectory(images);
        int male = Array.IndexOf(AttributeNames, "Male"), young = Array.IndexOf(AttributeNames, "Young"),
            necktie = Array.IndexOf(AttributeNames, "Wearing_Necktie");
        var attr = new StringBuilder();
        attr.Append(count).Append('\n').Append(string.Join(' ', AttributeNames)).Append(" \n");
        var partition = new StringBuilder();
        for (int i = 0; i < count; i++)
        {
            string file = $"{i + 1:D6}.jpg";
            var values = AttributeNames.Select(_ => rng.NextDouble() < 0.3).ToArray();
            values[male] = rng.NextDouble() < 0.42;
            values[young] = rng.NextDouble() < 0.78;
            values[necktie] = values[male] && rng.NextDouble() < 0.3;
            ImageFiles.WriteJpeg(Path.Combine(images, file), Draw(values[male], values[young], values[necktie], rng), quality: 90);
            // The release pads values to two characters ("-1" / " 1") after one space.
            attr.Append(file);
            foreach (var v in values) attr.Append(v ? "  1" : " -1");
            attr.Append('\n');
            int split = i < count * 8 / 10 ? 0 : i < count * 9 / 10 ? 1 : 2;
            partition.Append(file).Append(' ').Append(split).Append('\n');
        }
        File.WriteAllText(Path.Combine(root, CelebA.AttributesFile), attr.ToString());
        File.WriteAllText(Path.Combine(root, CelebA.PartitionFile), partition.ToString());
    }

    private static DecodedImage Draw(bool male, bool young, bool necktie, Random rng)
    {
        var pixels = new byte[Width * Height * 3];
        byte bg = (byte)rng.Next(40, 200);
        double cx = Width / 2.0 + rng.Next(-6, 7), cy = Height / 2.0 + rng.Next(-6, 7);
        int skin = young ? 220 : 150;
        for (int y = 0; y < Height; y++)
            for (int x = 0; x < Width; x++)
            {
                double dx = (x - cx) / 55, dy = (y - cy) / 70;
                bool face = dx * dx + dy * dy < 1;
                int v = face ? skin : bg;
                if (face && male && y > cy + 35) v = 60;                                        // jaw band
                if (necktie && y > cy + 72 && Math.Abs(x - cx) < 10) v = 20;                     // necktie stripe
                v += rng.Next(-12, 13);
                byte b = (byte)Math.Clamp(v, 0, 255);
                int o = (y * Width + x) * 3;
                pixels[o] = b;
                pixels[o + 1] = (byte)Math.Clamp(v - 10, 0, 255);
                pixels[o + 2] = (byte)Math.Clamp(v - 20, 0, 255);
            }
        return new DecodedImage(pixels, Height, Width, 3);
    }
}
