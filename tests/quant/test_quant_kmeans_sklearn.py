"""test_quant_kmeans_sklearn.py — claq's per-column 1-D K-Means (eng_kmeans_1d, via
`test_quant_core --kmeans`) must reach an MSE no worse than scikit-learn's KMeans with the
settings the CLAQ reference uses (k-means++, n_init=1, random_state=10, max_iter=300, tol=1e-4),
within 1e-3 relative, on every column: Gaussian and heavy-tailed (Student-t 3, Laplace, Gaussian
with a few large outliers) columns of 32..4096 rows, k = 4, 8, 16. Our MSE is measured with the
fp16-rounded codebook we store; scikit-learn's with its fp32 centres. Runs with Debian's
/usr/bin/python3 (numpy + sklearn)."""
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")   # one-column fits: threads only add overhead
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

try:
    from sklearn.cluster import KMeans
except ImportError:  # pragma: no cover
    print("sklearn missing: skip")
    sys.exit(77)

BIN = os.path.join(os.environ.get("CLAQ_BIN", "build"), "test_quant_core")
if not os.path.exists(BIN):
    print(f"{BIN} not built: skip")
    sys.exit(77)

LENGTHS = [32, 64, 128, 256, 768, 2048, 4096]
KS = [4, 8, 16]
DISTS = ["gauss", "student3", "laplace", "gauss+outliers"]


def columns(rng, dist, n, count):
    if dist == "gauss":
        x = rng.standard_normal((count, n))
    elif dist == "student3":
        x = rng.standard_t(3, (count, n))
    elif dist == "laplace":
        x = rng.laplace(size=(count, n))
    else:
        x = rng.standard_normal((count, n))
        idx = rng.integers(0, n, (count, max(1, n // 100)))
        for c in range(count):
            x[c, idx[c]] *= 12.0
    return (0.02 * x).astype(np.float32)   # weight-like scale (fp16 normal range)


def ours(cols, k):
    with tempfile.NamedTemporaryFile(suffix=".f32", delete=False) as f:
        cols.tofile(f)
        path = f.name
    try:
        out = subprocess.run([BIN, "--kmeans", path, str(cols.shape[1]), str(k)],
                             capture_output=True, text=True, check=True)
    finally:
        os.unlink(path)
    sys.stderr.write(out.stderr)
    return np.array([float(v) for v in out.stdout.split()])


def sklearn_mse(x, k):
    km = KMeans(n_clusters=k, init="k-means++", n_init=1, random_state=10, max_iter=300,
                tol=1e-4).fit(x.reshape(-1, 1))
    c = km.cluster_centers_.astype(np.float64).ravel()
    d = np.min((x.astype(np.float64)[:, None] - c[None, :]) ** 2, axis=1)
    return d.mean()


def main():
    rng = np.random.default_rng(2405)
    worst = 0.0
    failures = 0
    total = 0
    better = 0
    for dist in DISTS:
        for n in LENGTHS:
            count = 4 if n <= 1024 else 2
            for k in KS:
                cols = columns(rng, dist, n, count)
                mine = ours(cols, k)
                if len(mine) != count:
                    print(f"FAIL {dist} n={n} k={k}: got {len(mine)} results for {count} columns")
                    return 1
                for c in range(count):
                    ref = sklearn_mse(cols[c], k)
                    rel = (mine[c] - ref) / ref
                    worst = max(worst, rel)
                    total += 1
                    better += mine[c] < ref
                    if rel > 1e-3:
                        failures += 1
                        print(f"FAIL {dist} n={n} k={k} col {c}: mse {mine[c]:.6g} vs sklearn "
                              f"{ref:.6g} (+{100 * rel:.3f}%)")
    print(f"{total} columns: ours better on {better}, worst relative excess {worst:+.2e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
