// The boundary benchmark's matching (Martin et al., PAMI 2004; the BSDS and PASCAL-Context edge evaluation):
// predictions thinned to one-pixel lines, then matched one to one with true edge pixels within a distance.
namespace InterroGate.Analysis;

/// <summary>Thinning of binary edge maps and one-to-one matching of edge pixels within a distance.</summary>
public static class EdgeMatching
{
    /// <summary>
    /// Zhang-Suen thinning of <paramref name="map"/> (row-major <paramref name="height"/> × <paramref name="width"/>):
    /// removes boundary pixels in two alternating sub-passes until none changes, leaving lines one pixel wide that
    /// keep the shape's connectivity. Returns a new map.
    /// </summary>
    public static bool[] Thin(ReadOnlySpan<bool> map, int height, int width)
    {
        var m = map.ToArray();
        var remove = new List<int>();
        bool P(int y, int x) => y >= 0 && y < height && x >= 0 && x < width && m[y * width + x];
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int pass = 0; pass < 2; pass++)
            {
                remove.Clear();
                for (int y = 0; y < height; y++)
                    for (int x = 0; x < width; x++)
                    {
                        if (!m[y * width + x]) continue;
                        // Neighbours p2..p9 clockwise from north.
                        Span<bool> n = [P(y - 1, x), P(y - 1, x + 1), P(y, x + 1), P(y + 1, x + 1), P(y + 1, x), P(y + 1, x - 1), P(y, x - 1), P(y - 1, x - 1)];
                        int b = 0, a = 0;
                        for (int k = 0; k < 8; k++)
                        {
                            if (n[k]) b++;
                            if (!n[k] && n[(k + 1) % 8]) a++;
                        }
                        if (b < 2 || b > 6 || a != 1) continue;
                        bool keep = pass == 0
                            ? (n[0] && n[2] && n[4]) || (n[2] && n[4] && n[6])
                            : (n[0] && n[2] && n[6]) || (n[0] && n[4] && n[6]);
                        if (!keep) remove.Add(y * width + x);
                    }
                foreach (int i in remove) m[i] = false;
                changed |= remove.Count > 0;
            }
        }
        return m;
    }

    /// <summary>
    /// The largest number of (predicted, true) pixel pairs, each pixel in at most one pair, whose distance is at most
    /// <paramref name="radius"/> pixels, a real number as the boundary benchmark has it (Hopcroft-Karp maximum bipartite
    /// matching). Precision is this over the predicted pixels, recall this over the true ones.
    /// </summary>
    public static int MatchCount(ReadOnlySpan<bool> predicted, ReadOnlySpan<bool> truth, int height, int width, double radius)
    {
        var left = new List<int>();
        for (int i = 0; i < predicted.Length; i++) if (predicted[i]) left.Add(i);
        var rightIndex = new int[truth.Length];
        int rights = 0;
        for (int i = 0; i < truth.Length; i++) rightIndex[i] = truth[i] ? rights++ : -1;
        if (left.Count == 0 || rights == 0) return 0;

        var adjacency = new int[left.Count][];
        var buffer = new List<int>();
        double r2 = radius * radius;
        int reach = (int)Math.Floor(radius);
        for (int l = 0; l < left.Count; l++)
        {
            buffer.Clear();
            int y0 = left[l] / width, x0 = left[l] % width;
            for (int dy = -reach; dy <= reach; dy++)
                for (int dx = -reach; dx <= reach; dx++)
                {
                    int y = y0 + dy, x = x0 + dx;
                    if (dx * dx + dy * dy > r2 || y < 0 || y >= height || x < 0 || x >= width) continue;
                    int j = rightIndex[y * width + x];
                    if (j >= 0) buffer.Add(j);
                }
            adjacency[l] = buffer.ToArray();
        }
        return HopcroftKarp(adjacency, rights);
    }

    private static int HopcroftKarp(int[][] adjacency, int rights)
    {
        int lefts = adjacency.Length;
        var matchLeft = Enumerable.Repeat(-1, lefts).ToArray();
        var matchRight = Enumerable.Repeat(-1, rights).ToArray();
        var dist = new int[lefts];
        var queue = new int[lefts];
        int matched = 0;
        while (true)
        {
            // BFS from the free left vertices, layering by alternating path length.
            int head = 0, tail = 0;
            bool reachable = false;
            for (int l = 0; l < lefts; l++)
            {
                dist[l] = matchLeft[l] < 0 ? 0 : -1;
                if (dist[l] == 0) queue[tail++] = l;
            }
            while (head < tail)
            {
                int l = queue[head++];
                foreach (int r in adjacency[l])
                {
                    int next = matchRight[r];
                    if (next < 0) reachable = true;
                    else if (dist[next] < 0)
                    {
                        dist[next] = dist[l] + 1;
                        queue[tail++] = next;
                    }
                }
            }
            if (!reachable) return matched;
            for (int l = 0; l < lefts; l++)
                if (matchLeft[l] < 0 && Augment(l)) matched++;
        }

        // Depth-first search for an augmenting path along the BFS layers, with an explicit stack (paths along long edge
        // lines can be long; recursion could run out of stack).
        bool Augment(int root)
        {
            var path = new Stack<(int Left, int Edge)>();
            path.Push((root, 0));
            while (path.Count > 0)
            {
                var (l, e) = path.Pop();
                if (e >= adjacency[l].Length)
                {
                    dist[l] = -1; // a dead end for this phase
                    continue;
                }
                path.Push((l, e + 1));
                int r = adjacency[l][e], next = matchRight[r];
                if (next < 0)
                {
                    // Found a free right vertex: flip the path (each stack entry's current edge is the one taken).
                    foreach (var (pl, pe) in path)
                    {
                        int pr = adjacency[pl][pe - 1];
                        matchLeft[pl] = pr;
                        matchRight[pr] = pl;
                    }
                    return true;
                }
                if (dist[next] == dist[l] + 1) path.Push((next, 0));
            }
            return false;
        }
    }
}
