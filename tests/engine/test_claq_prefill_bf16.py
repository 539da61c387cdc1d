"""test_claq_prefill_bf16.py -- `--prefill-precision bf16` of the claq tool (prompt linears of
packed CLAQ matrices in bfloat16, kern.h matmul_bf16), end to end on small-lm-5m packed at 3 bits
(`claq synth --pack`):

1. Per-token results do not depend on batching: `claq logits --batch-check` (the prompt in
   64-token chunks against one token at a time) is bit-identical under bf16 too.
2. Relaxed for real, and close: bf16 logits differ from fp32's, the argmax agrees at >= 95 % of
   positions and no logit moves by more than 2 % of the largest |logit|; over 8 windows of
   valid.txt (`claq perplexity --reference` the same file in fp32) the mean KL divergence is
   below 1e-4 (measured ~2e-6), top-1 agreement >= 99 % and perplexity within 0.1 %.
3. Falls back exactly: an unpacked (dense) model, and an ISA capped to AVX2 (CLAQ_ISA=avx2,
   which also prints a note), give fp32's logits bit for bit.
4. A bad value is refused (exit 2) before the model loads.
Without AVX512_BF16 on this CPU, 2 is skipped and 3's capped run is the only path. Skips (77)
without the shared folder."""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

SHARED = os.environ.get("CLAQ_SHARED", "../shared")
BIN = os.environ.get("CLAQ_BIN", "build")
CLAQ = os.path.join(BIN, "claq")
MODEL = os.path.join(SHARED, "models", "small-lm-5m")
TOK = os.path.join(MODEL, "tokenizer.model")
VALID = os.path.join(SHARED, "data", "small-lm", "valid.txt")
fails = 0


def check(cond, what):
    global fails
    if not cond:
        fails += 1
        print("FAIL:", what, flush=True)


def run(*args, env=None, ok=True):
    e = dict(os.environ)
    if env:
        e.update(env)
    r = subprocess.run([CLAQ, *args], capture_output=True, text=True, env=e)
    if ok and r.returncode != 0:
        print("FAIL: claq %s: rc %d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        sys.exit(1)
    return r


def logits(model, out, *extra, env=None):
    r = run("logits", "--model", model, "--tokenizer", TOK, "--text", TEXT, "--out", out,
            "--threads", "2", *extra, env=env)
    return np.fromfile(out, dtype=np.float32), r.stderr


if not os.path.isdir(MODEL) or not os.path.exists(VALID):
    print("SKIP: small-lm-5m or its valid.txt missing")
    sys.exit(77)
has_bf16 = "avx512_bf16" in open("/proc/cpuinfo").read()
TEXT = " ".join(open(VALID, encoding="utf-8").read().split()[:120])
tmp = tempfile.mkdtemp(prefix="claq-bf16-")
packed = os.path.join(tmp, "sl3.claq")
run("synth", "--pack", "--model", MODEL, "--bits", "3", "--out", packed)
lp = os.path.join(tmp, "l.bin")

# 4. a bad value, before anything loads
r = run("logits", "--model", packed, "--text", "x", "--out", lp, "--prefill-precision", "fp8",
        ok=False)
check(r.returncode == 2 and "--prefill-precision" in r.stderr,
      "bad value: rc %d %r" % (r.returncode, r.stderr[-200:]))

f32, _ = logits(packed, lp)
vocab = 0
with open(os.path.join(MODEL, "config.json")) as f:
    vocab = int(re.search(r'"vocab_size"\s*:\s*(\d+)', f.read()).group(1))
n = f32.size // vocab
check(n >= 100, "%d positions scored" % n)

# 1. batch invariance under bf16
_, err = logits(packed, lp, "--prefill-precision", "bf16", "--batch-check")
check("bit-identical" in err, "bf16 batch check: %r" % err[-300:])

# 2. relaxed and close
b16, err = logits(packed, lp, "--prefill-precision", "bf16")
if has_bf16:
    a, b = f32.reshape(n, vocab), b16.reshape(n, vocab)
    check(not np.array_equal(a, b), "bf16 logits differ from fp32's")
    agree = float(np.mean(a.argmax(1) == b.argmax(1)))
    moved = float(np.abs(a - b).max() / np.abs(a).max())
    print("logits: argmax agreement %.4f, largest move %.2e of max |logit|" % (agree, moved))
    check(agree >= 0.95, "argmax agreement %.4f" % agree)
    check(moved <= 0.02, "largest logit move %.3g of max |logit|" % moved)
    r = run("perplexity", "--model", packed, "--reference", packed, "--file", VALID, "--ctx",
            "256", "--max-windows", "8", "--threads", "2", "--prefill-precision", "bf16")
    out = r.stdout + r.stderr
    kl = float(re.search(r"kl mean: ([0-9.e+-]+)", out).group(1))
    top1 = float(re.search(r"top-1 agreement: ([0-9.]+)", out).group(1))
    ppl = float(re.search(r"^perplexity: ([0-9.]+)", out, re.M).group(1))
    r = run("perplexity", "--model", packed, "--file", VALID, "--ctx", "256", "--max-windows",
            "8", "--threads", "2")
    ppl32 = float(re.search(r"^perplexity: ([0-9.]+)", r.stdout + r.stderr, re.M).group(1))
    print("perplexity fp32 %.4f, bf16 %.4f; KL mean %.2e, top-1 agreement %.4f"
          % (ppl32, ppl, kl, top1))
    check(kl < 1e-4, "KL mean %.3g" % kl)
    check(top1 >= 0.99, "top-1 agreement %.4f" % top1)
    check(abs(ppl / ppl32 - 1) < 1e-3, "perplexity %.4f vs %.4f" % (ppl, ppl32))
else:
    print("this CPU has no AVX512_BF16: the relaxed path is not measured here")
    check(np.array_equal(f32, b16), "without AVX512_BF16, bf16 logits are fp32's")

# 3. exact fallbacks: a dense model, and an ISA without bfloat16 dot products
d32, _ = logits(MODEL, lp)
d16, _ = logits(MODEL, lp, "--prefill-precision", "bf16")
check(np.array_equal(d32, d16), "dense model: bf16 falls back to fp32 bit for bit")
c32, _ = logits(packed, lp, env={"CLAQ_ISA": "avx2"})
c16, err = logits(packed, lp, "--prefill-precision", "bf16", env={"CLAQ_ISA": "avx2"})
check(np.array_equal(c32, c16), "CLAQ_ISA=avx2: bf16 falls back to fp32 bit for bit")
check("no AVX512_BF16" in err, "CLAQ_ISA=avx2 prints a note: %r" % err[-200:])

subprocess.run(["rm", "-rf", tmp])
if fails:
    print("%d failures" % fails)
    sys.exit(1)
print("ok: bf16 prefill batch invariant, close to fp32, exact fallbacks")
