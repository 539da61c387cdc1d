"""test_claq_file_row_embed.py -- the 6- and 7-bit row-quantized token embedding
(`--embed-bits 6|7`, dtypes q6_row and q7_row, issue 13 item 3) checked by an independent reader
of docs/format.md.

1. `claq synth --pack --bits 3` packs tinystories-656k (tied F32 embedding/head, 2048 x 128)
   with `--embed-bits 6`, `7` and `8`; without --head-bits the one row-quantized matrix is both
   the embedding and the head.
2. This script decodes the q6_row / q7_row section with numpy following ONLY docs/format.md
   (code + qmax + 1 in b bits, little-endian within a row of ceil(b cols / 8) bytes, then f32
   scales; qmax = 31 or 63) and checks against the source weights read from model.safetensors:
   every stored value is 1 .. 2^b - 1, a row's unused high bits are zero, each scale is a / qmax
   for an a in [max|w| x 49/64, max|w|], every weight is within half a step of code x scale
   unless clipped (then within |w| - qmax x scale), and each row's squared error is no larger
   than that of any of the 16 documented clip candidates (so the writer did pick the best one,
   and never loses to the plain max |w| / qmax).
3. Each file is smaller than the q8 one by exactly the section lengths' difference, `claq
   inspect` names the tensor Q6_ROW / Q7_ROW and its true_bpw counts the file's bytes, and the
   model scored against the q8 one (`claq perplexity --reference`) stays close (mean KL < 0.02,
   top-1 agreement > 85 %: a wrong bit order or scale gives KL of several nats).
4. Corrupt files are refused at load naming the tensor and row: a stored 0 (code -qmax - 1), a
   NaN scale, a section one byte short; `--embed-bits 5` is refused by the CLI.
Skips (77) without the shared folder.
"""
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np

SHARED = os.environ.get("CLAQ_SHARED", "../shared")
BIN = os.environ.get("CLAQ_BIN", "build")
CLAQ = os.path.join(BIN, "claq")
MODEL = os.path.join(SHARED, "models", "tinystories-656k")
TEXT = os.path.join(SHARED, "data", "tinystories", "tinystories-train-head.txt")


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def run(*args, ok=True):
    r = subprocess.run([CLAQ, *args], capture_output=True, text=True)
    if ok and r.returncode != 0:
        fail("claq %s: rc %d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def source_embedding():
    path = os.path.join(MODEL, "model.safetensors")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        body = f.read()
    # a tied checkpoint may store the one matrix under either name
    t = hdr.get("model.embed_tokens.weight") or hdr["lm_head.weight"]
    a, b = t["data_offsets"]
    dt = {"F32": np.float32, "F16": np.float16}[t["dtype"]]
    return np.frombuffer(body[a:b], dtype=dt).astype(np.float32).reshape(t["shape"])


def directory(path):
    raw = open(path, "rb").read()
    if raw[:8] != b"CLAQPACK":
        fail("%s: magic" % path)
    _, _, joff, jlen, doff, _, _ = struct.unpack("<IIQQQQQ", raw[8:56])
    d = json.loads(raw[joff:joff + jlen])
    return raw, d, doff, {t["name"]: t for t in d["tensors"]}


def decode_packed(sec, nb, rows, cols):
    """docs/format.md's q6_row / q7_row at nb bits: (stored values [rows][cols], scales [rows],
    set pad bits)."""
    rb = (nb * cols + 7) // 8
    if len(sec) != rows * rb + 4 * rows:
        fail("q%d_row section is %d bytes, want %d" % (nb, len(sec), rows * rb + 4 * rows))
    b = np.frombuffer(sec[:rows * rb], dtype=np.uint8).reshape(rows, rb)
    bits = np.unpackbits(b, axis=1, bitorder="little")          # bit k of the row, k = 0..
    weights = 1 << np.arange(nb)
    stored = (bits[:, :nb * cols].reshape(rows, cols, nb) * weights).sum(axis=2)
    pad = bits[:, nb * cols:].sum()
    scales = np.frombuffer(sec[rows * rb:], dtype="<f4")
    return stored.astype(np.int64), scales.astype(np.float32), int(pad)


def row_sse(w, a, qmax):
    s = np.float32(a) / np.float32(qmax)
    q = np.clip(np.rint(w * (np.float32(qmax) / np.float32(a))), -qmax, qmax)
    return float(np.sum((q.astype(np.float64) * float(s) - w.astype(np.float64)) ** 2))


def check_values(emb, nb, stored, scales, pad):
    qmax = (1 << (nb - 1)) - 1
    if stored.min() < 1 or stored.max() > 2 * qmax + 1:
        fail("stored %d-bit values outside 1..%d: %d..%d" % (nb, 2 * qmax + 1, stored.min(),
                                                            stored.max()))
    if pad:
        fail("%d unused high bits set" % pad)
    codes = stored - (qmax + 1)
    amax = np.abs(emb).max(axis=1)
    a = scales * qmax
    if np.any(a > amax * (1 + 1e-6)) or np.any(a < amax * (49 / 64) * (1 - 1e-6)):
        r = int(np.argmax((a > amax * (1 + 1e-6)) | (a < amax * 49 / 64 * (1 - 1e-6))))
        fail("row %d: scale x qmax = %g outside [max x 49/64, max] (max %g)" % (r, a[r], amax[r]))
    err = np.abs(codes * scales[:, None] - emb)
    bound = np.maximum(scales[:, None] / 2, np.abs(emb) - qmax * scales[:, None])
    bad = err > bound * (1 + 1e-5) + 1e-12
    if bad.any():
        r, c = np.argwhere(bad)[0]
        fail("row %d col %d: |w - code x scale| = %g > %g" % (r, c, err[r, c], bound[r, c]))
    worse = 0
    for r in range(emb.shape[0]):
        got = float(np.sum((codes[r] * float(scales[r]) - emb[r].astype(np.float64)) ** 2))
        best = min(row_sse(emb[r], amax[r] * (1 - k / 64), qmax) for k in range(16))
        if got > best * (1 + 1e-4) + 1e-18:
            worse += 1
            if worse <= 3:
                print("row %d: squared error %.6g, best candidate %.6g" % (r, got, best))
    if worse:
        fail("%d rows not at their best clip candidate" % worse)
    gain = sum(row_sse(emb[r], amax[r], qmax) for r in range(emb.shape[0])) / \
        float(np.sum((codes * scales[:, None] - emb).astype(np.float64) ** 2))
    print("q%d_row: %d x %d, codes %d..%d, squared error %.3fx lower than max|w|/%d scales"
          % (nb, emb.shape[0], emb.shape[1], codes.min(), codes.max(), gain, qmax))


def corrupt(src, dst, patch):
    raw = bytearray(open(src, "rb").read())
    patch(raw)
    open(dst, "wb").write(bytes(raw))


def refused(path, *want):
    r = run("inspect", path, ok=False)
    if r.returncode == 0 or any(w not in r.stderr for w in want):
        fail("corrupt %s: rc %d, stderr %r (want %r)" % (path, r.returncode, r.stderr, want))
    print("refused:", r.stderr.strip().splitlines()[-1])


def check_bits(d, emb, nb, f8, raw8, tens8):
    V, D = emb.shape
    fb = os.path.join(d, "e%d.claq" % nb)
    run("synth", "--pack", "--model", MODEL, "--bits", "3", "--embed-bits", str(nb), "--out", fb)
    raw, dj, doff, tens = directory(fb)
    t = tens["tok_embeddings"]
    if t["dtype"] != "q%d_row" % nb or t["shape"] != [V, D]:
        fail("tok_embeddings is %s %r" % (t["dtype"], t["shape"]))
    if not dj["config"]["tie_embeddings"] or "output" in tens:
        fail("a tied model without a packed head keeps one matrix")
    o, n = t["data"]
    stored, scales, pad = decode_packed(raw[doff + o:doff + o + n], nb, V, D)
    check_values(emb, nb, stored, scales, pad)

    rb = (nb * D + 7) // 8
    saved = tens8["tok_embeddings"]["data"][1] - n
    if saved != V * D - V * rb:
        fail("q%d section saves %d bytes" % (nb, saved))
    if abs(len(raw8) - len(raw) - saved) >= 64:   # sections are 64-byte aligned
        fail("file %d -> %d bytes, sections differ by %d" % (len(raw8), len(raw), saved))
    print("file: q8_row %d bytes, q%d_row %d bytes" % (len(raw8), nb, len(raw)))

    ins = run("inspect", fb).stdout
    if "tensor tok_embeddings: Q%d_ROW [%d, %d]" % (nb, V, D) not in ins:
        fail("inspect does not name the q%d_row embedding:\n%s" % (nb, ins))
    tok = int(re.search(r"\((\d+) of them tokenizer\)", ins).group(1))
    params = float(re.search(r"^params: (\d+)", ins, re.M).group(1))
    bpw = float(re.search(r"^true_bpw: ([0-9.]+)", ins, re.M).group(1))
    if abs(bpw - 8 * (len(raw) - tok) / params) > 1e-3:
        fail("true_bpw %g, file says %g" % (bpw, 8 * (len(raw) - tok) / params))

    ppl = run("perplexity", "--model", fb, "--file", TEXT, "--ctx", "128", "--max-windows",
              "8", "--reference", f8).stdout
    kl = float(re.search(r"^kl mean: ([0-9.e-]+)", ppl, re.M).group(1))
    top1 = float(re.search(r"^top-1 agreement: ([0-9.]+)", ppl, re.M).group(1))
    p = float(re.search(r"^perplexity: ([0-9.]+)", ppl, re.M).group(1))
    print("q%d vs q8 embedding: perplexity %.4f, mean KL %.5f, top-1 %.4f" % (nb, p, kl, top1))
    if not (math.isfinite(p) and kl < 0.02 and top1 > 0.85):
        fail("q%d_row moves the model too far from q8_row" % nb)

    base = doff + o
    bad = os.path.join(d, "bad.claq")

    def code0(b):
        b[base + 3 * rb] &= 0xFF ^ ((1 << nb) - 1)     # row 3, column 0: stored 0

    corrupt(fb, bad, code0)
    refused(bad, "tok_embeddings", "row 3 column 0")

    def nan_scale(b):
        b[base + V * rb + 4 * 5:base + V * rb + 4 * 6] = struct.pack("<f", float("nan"))

    corrupt(fb, bad, nan_scale)
    refused(bad, "tok_embeddings", "row 5")

    def short(b):
        old = ('"data":[%d,%d]' % (o, n)).encode()
        new = ('"data":[%d,%d]' % (o, n - 1)).encode()
        i = b.find(old)
        if i < 0 or len(new) != len(old):
            fail("cannot find the section entry to shorten")
        b[i:i + len(old)] = new

    corrupt(fb, bad, short)
    refused(bad, "tok_embeddings")


def main():
    if not os.path.exists(os.path.join(MODEL, "model.safetensors")) or not os.path.exists(TEXT):
        print("skip: no tinystories-656k in", SHARED)
        sys.exit(77)
    emb = source_embedding()
    with tempfile.TemporaryDirectory() as d:
        f8 = os.path.join(d, "e8.claq")
        run("synth", "--pack", "--model", MODEL, "--bits", "3", "--embed-bits", "8", "--out", f8)
        raw8, _, _, tens8 = directory(f8)
        if tens8["tok_embeddings"]["dtype"] != "q8_row":
            fail("--embed-bits 8 wrote %s" % tens8["tok_embeddings"]["dtype"])
        for nb in (6, 7):
            check_bits(d, emb, nb, f8, raw8, tens8)
        r = run("synth", "--pack", "--model", MODEL, "--bits", "3", "--embed-bits", "5", "--out",
                os.path.join(d, "x.claq"), ok=False)
        if r.returncode != 2 or "--embed-bits" not in r.stderr:
            fail("--embed-bits 5: rc %d %r" % (r.returncode, r.stderr))
    print("PASS")


if __name__ == "__main__":
    main()
