#!/usr/bin/env python3
"""Independent reference for the gradient methods, written from the papers in plain Python (no numpy, no torch).

Reads the JSON written by `dotnet run -c Release --project bench/InterroGate.Bench -- gradient-reference OUT.json`
(gradient matrices and the library's results), recomputes every method here with different solvers where the
library uses an iterative one, and prints the largest absolute and relative difference per method.

  PCGrad   Yu et al., NeurIPS 2020            projection, fixed order (others in increasing index)
  CAGrad   Liu et al., NeurIPS 2021           dual over the simplex by exponentiated-gradient (mirror) descent
  MGDA     Sener & Koltun, NeurIPS 2018       exact min-norm point by enumerating active sets (KKT)
  IMTL-G   Liu et al., ICLR 2021              the paper's closed form, Gauss-Jordan solve
  Nash-MTL Navon et al., ICML 2022            (GG^T) a = 1/a by exact coordinate minimisation
  Aligned  Senushkin et al., CVPR 2023        Jacobi eigen-decomposition of GG^T
"""
import itertools
import json
import math
import sys


def dot(x, y):
    return sum(a * b for a, b in zip(x, y))


def add(x, y, s=1.0):
    return [a + s * b for a, b in zip(x, y)]


def scale(x, s):
    return [a * s for a in x]


def gram(g):
    return [[dot(a, b) for b in g] for a in g]


def combine(g, w):
    out = [0.0] * len(g[0])
    for wi, gi in zip(w, g):
        out = add(out, gi, wi)
    return out


def solve(a, b):
    """Gauss-Jordan with partial pivoting; a is n x n, b is a list of n."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for k in range(n):
        p = max(range(k, n), key=lambda i: abs(m[i][k]))
        m[k], m[p] = m[p], m[k]
        if abs(m[k][k]) < 1e-300:
            raise ZeroDivisionError("singular")
        for i in range(n):
            if i != k:
                f = m[i][k] / m[k][k]
                m[i] = [x - f * y for x, y in zip(m[i], m[k])]
    return [m[i][n] / m[i][i] for i in range(n)]


def pcgrad(g):
    total = [0.0] * len(g[0])
    for i, gi in enumerate(g):
        p = gi[:]
        for j, gj in enumerate(g):
            if j == i:
                continue
            d = dot(p, gj)
            if d < 0:
                p = add(p, gj, -d / dot(gj, gj))
        total = add(total, p)
    return total


def golden(f, lo, hi, iterations=100):
    """Minimum of a convex function of one variable on [lo, hi]."""
    ratio = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(iterations):
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - ratio * (hi - lo)
            f1 = f(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + ratio * (hi - lo)
            f2 = f(x2)
    return (lo + hi) / 2


def cagrad(g, c, sweeps=400):
    """The dual min_w g_w.g0 + c|g0||g_w| over the simplex, by pairwise exact line searches (moving weight
    between two tasks at a time until no pair improves), then d = (g0 + c|g0|/|g_w| g_w) / (1 + c^2)."""
    t = len(g)
    a = gram(g)
    g0 = scale(combine(g, [1.0] * t), 1.0 / t)
    g0n = math.sqrt(dot(g0, g0))
    if c == 0:
        return g0
    r = c * g0n
    am = [sum(row) / t for row in a]

    def f(w):
        return dot(w, am) + r * math.sqrt(max(sum(w[i] * a[i][j] * w[j] for i in range(t) for j in range(t)), 1e-300))

    w = [1.0 / t] * t
    value = f(w)
    for _ in range(sweeps):
        before = value
        for i in range(t):
            for j in range(i + 1, t):
                total = w[i] + w[j]

                def along(x):
                    v = w[:]
                    v[i], v[j] = x, total - x
                    return f(v)

                x = golden(along, 0.0, total)
                if along(x) < value:
                    w[i], w[j] = x, total - x
                    value = f(w)
        if before - value < 1e-16:
            break
    gw = combine(g, w)
    lam = r / math.sqrt(dot(gw, gw))
    return scale(add(g0, gw, lam), 1.0 / (1 + c * c))


def min_norm(a):
    """argmin over the simplex of w^T A w, exactly: try every support set, keep KKT-feasible solutions."""
    t = len(a)
    best, best_w = float("inf"), None
    for size in range(1, t + 1):
        for s in itertools.combinations(range(t), size):
            # [A_S 1; 1^T 0] [w; -mu] = [0; 1]
            n = len(s)
            m = [[a[i][j] for j in s] + [1.0] for i in s] + [[1.0] * n + [0.0]]
            try:
                x = solve(m, [0.0] * n + [1.0])
            except ZeroDivisionError:
                continue
            ws = x[:n]
            if min(ws) < -1e-12:
                continue
            w = [0.0] * t
            for i, v in zip(s, ws):
                w[i] = max(v, 0.0)
            val = sum(w[i] * a[i][j] * w[j] for i in range(t) for j in range(t))
            if val < best - 1e-15:
                best, best_w = val, w
    return best_w


def mgda(g, normalize):
    if not normalize:
        return min_norm(gram(g))
    # The authors' "l2" normalisation: solve for unit-length gradients, apply the weights to the raw ones.
    norms = [math.sqrt(dot(x, x)) for x in g]
    return min_norm(gram([scale(x, 1.0 / n) for x, n in zip(g, norms)]))


def imtl_g(g):
    t = len(g)
    u = [scale(x, 1.0 / math.sqrt(dot(x, x))) for x in g]
    d = [add(g[0], g[i], -1.0) for i in range(1, t)]
    uu = [add(u[0], u[i], -1.0) for i in range(1, t)]
    du = [[dot(d[i], uu[j]) for j in range(t - 1)] for i in range(t - 1)]   # D U^T
    rhs = [dot(g[0], uu[j]) for j in range(t - 1)]                         # g1 U^T
    # alpha (row) * (D U^T) = g1 U^T  <=>  (D U^T)^T alpha^T = rhs
    dut = [[du[j][i] for j in range(t - 1)] for i in range(t - 1)]
    rest = solve(dut, rhs)
    return [1 - sum(rest)] + rest


def nash_mtl(g, sweeps=20000):
    a = gram(g)
    t = len(a)
    x = [1.0 / math.sqrt(a[i][i]) if a[i][i] > 1e-20 else 0.0 for i in range(t)]
    for _ in range(sweeps):
        change = 0.0
        for i in range(t):
            if a[i][i] <= 1e-20:
                continue
            b = sum(a[i][j] * x[j] for j in range(t) if j != i)
            new = (-b + math.sqrt(b * b + 4 * a[i][i])) / (2 * a[i][i])
            change = max(change, abs(new - x[i]) / new)
            x[i] = new
        if change < 1e-15:
            break
    return x


def jacobi_eigen(a, sweeps=100):
    n = len(a)
    m = [row[:] for row in a]
    v = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    for _ in range(sweeps):
        off = sum(m[i][j] ** 2 for i in range(n) for j in range(n) if i != j)
        if off < 1e-30:
            break
        for p in range(n):
            for q in range(p + 1, n):
                if abs(m[p][q]) < 1e-300:
                    continue
                theta = (m[q][q] - m[p][p]) / (2 * m[p][q])
                tt = (1 if theta >= 0 else -1) / (abs(theta) + math.sqrt(theta * theta + 1))
                c = 1 / math.sqrt(tt * tt + 1)
                s = tt * c
                for k in range(n):
                    mkp, mkq = m[k][p], m[k][q]
                    m[k][p], m[k][q] = c * mkp - s * mkq, s * mkp + c * mkq
                for k in range(n):
                    mpk, mqk = m[p][k], m[q][k]
                    m[p][k], m[q][k] = c * mpk - s * mqk, s * mpk + c * mqk
                for k in range(n):
                    vkp, vkq = v[k][p], v[k][q]
                    v[k][p], v[k][q] = c * vkp - s * vkq, s * vkp + c * vkq
    return [m[i][i] for i in range(n)], v


def aligned_mtl(g):
    lam, v = jacobi_eigen(gram(g))
    n = len(lam)
    top = max(lam)
    keep = [l > top * 1e-10 for l in lam]
    lmin = min(l for l, k in zip(lam, keep) if k)
    b = [[math.sqrt(lmin) * sum(v[i][k] * v[j][k] / math.sqrt(lam[k]) for k in range(n) if keep[k]) for j in range(n)] for i in range(n)]
    return [sum(b[i][j] for i in range(n)) for j in range(n)]


def main(path):
    data = json.load(open(path))
    worst = {}

    def record(name, ours, theirs):
        diff = max(abs(a - b) for a, b in zip(ours, theirs))
        rel = diff / max(max(abs(b) for b in theirs), 1e-300)
        d, r = worst.get(name, (0.0, 0.0))
        worst[name] = (max(d, diff), max(r, rel))

    for case in data["cases"]:
        g = case["g"]
        record("pcgrad", pcgrad(g), case["pcgrad"])
        for c, lib in case["cagrad"].items():
            record("cagrad c=" + c, cagrad(g, float(c)), lib)
        record("mgda", mgda(g, False), case["mgda"])
        record("mgda (l2)", mgda(g, True), case["mgda_l2"])
        record("imtl-g", imtl_g(g), case["imtl_g"])
        record("nash-mtl", nash_mtl(g), case["nash_mtl"])
        record("aligned-mtl", aligned_mtl(g), case["aligned_mtl"])
    print(f"{len(data['cases'])} gradient matrices (T = {sorted({len(c['g']) for c in data['cases']})}); library against this reference")
    print("| method | largest absolute difference | largest relative difference |")
    print("|---|---|---|")
    for name, (d, r) in worst.items():
        print(f"| {name} | {d:.2e} | {r:.2e} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/gradient-methods.json")
