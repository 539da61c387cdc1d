"""test_perplexity_kl.py — `claq perplexity --reference` (issue 13: KL divergence and top-1
agreement, llama.cpp's --kl-divergence convention) against numpy on the real small-lm-5m:
  * the first window of valid.txt scored by a 2-bit RTN packing of the model against the FP32
    model: perplexity, reference perplexity, mean / median / p99 / max KL(P_ref || P_model) and
    top-1 agreement recomputed in numpy from `claq logits` of both models on the same tokens
    (relative 1e-4, agreement exact);
  * the model against itself: KL 0, agreement 1, ratio 1;
  * more bits mean less divergence: mean KL of RTN 2-bit > 3-bit > 4-bit > 0.
Needs numpy (Debian's /usr/bin/python3)."""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("SKIP: numpy missing")
    sys.exit(77)

SHARED = os.environ.get("CLAQ_SHARED", "")
CLAQ = os.path.join(os.environ.get("CLAQ_BIN", ""), "claq")
MODEL = os.path.join(SHARED, "models", "small-lm-5m")
TEXT = os.path.join(SHARED, "data", "small-lm", "valid.txt")
if not os.path.isdir(MODEL) or not os.access(CLAQ, os.X_OK):
    print("SKIP: needs $CLAQ_SHARED/models/small-lm-5m and $CLAQ_BIN/claq")
    sys.exit(77)
CTX = 64
fails = 0


def check(cond, what):
    global fails
    if not cond:
        fails += 1
        print("FAIL:", what)


def run(*args):
    r = subprocess.run([CLAQ] + list(args), capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit("claq %s failed: %s" % (args[0], r.stderr[-2000:]))
    return r.stdout


def ppl_kl(model, ref, windows=1):
    out = run("perplexity", "--model", model, "--reference", ref, "--file", TEXT, "--ctx",
              str(CTX), "--max-windows", str(windows), "--threads", "2")
    vals = {}
    for line in out.splitlines():
        k, _, v = line.partition(":")
        try:
            vals[k.strip()] = float(v)
        except ValueError:
            pass
    return vals


def logits(model, ids, tmp):
    path = os.path.join(tmp, "logits.bin")
    run("logits", "--model", model, "--ids", " ".join(map(str, ids)), "--out", path)
    return np.fromfile(path, dtype=np.float32).reshape(len(ids), -1).astype(np.float64)


def log_softmax(x):
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


with tempfile.TemporaryDirectory() as tmp:
    packed = {}
    for b in (2, 3, 4):
        packed[b] = os.path.join(tmp, "rtn%d.claq" % b)
        run("quantize", "--model", MODEL, "--method", "rtn", "--bits", str(b), "--out", packed[b])

    got = ppl_kl(packed[2], MODEL)
    # the first window: the text's tokens with BOS, as perplexity tokenizes the whole file
    text = open(TEXT, encoding="utf-8").read()
    ids = [int(x) for x in run("tokenize", "--model", MODEL, "--text", text[:4000]).split()][:CTX]
    check(len(ids) == CTX, "tokenized %d ids" % len(ids))
    lq = log_softmax(logits(packed[2], ids, tmp))[:-1]
    lp = log_softmax(logits(MODEL, ids, tmp))[:-1]
    tgt = np.array(ids[1:])
    kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
    kl = np.maximum(kl, 0)
    ks = np.sort(kl)
    want = {
        "perplexity": np.exp(-lq[np.arange(CTX - 1), tgt].mean()),
        "reference perplexity": np.exp(-lp[np.arange(CTX - 1), tgt].mean()),
        # llama.cpp's conventions: the median averages the two middle values of an even count,
        # a percentile interpolates linearly at p (n - 1) (numpy's defaults)
        "kl mean": kl.mean(), "kl median": np.median(ks),
        "kl p99": np.percentile(ks, 99), "kl max": ks[-1],
    }
    for k, v in want.items():
        g = got.get(k)
        check(g is not None and abs(g - v) <= 1e-4 * abs(v) + 1e-6,
              "%s: claq %s, numpy %.6f" % (k, g, v))
    agree = float((lp.argmax(axis=1) == lq.argmax(axis=1)).mean())
    check(abs(got.get("top-1 agreement", -1) - agree) < 1e-4,
          "top-1 agreement: claq %s, numpy %.4f" % (got.get("top-1 agreement"), agree))
    print("window of %d: claq %s" % (CTX, {k: got.get(k) for k in want}))

    same = ppl_kl(MODEL, MODEL)
    check(same.get("kl mean") == 0 and same.get("kl max") == 0 and
          same.get("top-1 agreement") == 1 and same.get("ppl ratio") == 1,
          "model against itself: %s" % same)

    means = {b: ppl_kl(packed[b], MODEL, windows=4)["kl mean"] for b in (2, 3, 4)}
    print("mean KL over 4 windows: RTN 2-bit %.5f, 3-bit %.5f, 4-bit %.5f" %
          (means[2], means[3], means[4]))
    check(means[2] > means[3] > means[4] > 0, "KL does not fall with bits: %s" % means)

print("FAIL" if fails else "PASS")
sys.exit(1 if fails else 0)
