"""test_claq_file_inspect.py -- an independent reader of docs/format.md checks the C writer, and
`claq inspect` reports the bytes truthfully.

1. `claq synth` writes a 1-layer model of the `small` shape (F16, random Student-t weights) and
   `claq synth --pack --bits 3.05` packs it (per-column K-Means, AP-style 4-bit columns, the
   rest 3-bit, whose codes 10 and 21 straddle two words).
2. This script parses the packed file with numpy following ONLY docs/format.md (header, JSON
   directory, 64-byte alignment, column grouping, tiled [word][row] bit strings with straddling
   3-bit codes, row-CSR outliers) and checks, for every linear of layer 0, that each weight's
   code selects the centroid nearest to the original F16 weight read from model.safetensors
   (K-Means assignment), that the 4-bit columns are the AP count, and that colmap is a
   permutation.
3. `claq inspect` must print per-matrix histograms equal to the directory's counts, and its last
   line `true_bpw:` must equal 8 * (file bytes - tokenizer bytes) / parameters computed here.
Skips (77) without the shared folder (it needs a tokenizer file to embed).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

SHARED = os.environ.get("CLAQ_SHARED", "../shared")
BIN = os.environ.get("CLAQ_BIN", "build")
TOK = os.path.join(SHARED, "models", "tokenizer.model")
CLAQ = os.path.join(BIN, "claq")


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def run(*args):
    r = subprocess.run([CLAQ, *args], capture_output=True, text=True)
    if r.returncode != 0:
        fail("claq %s: rc %d\n%s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r.stdout


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        base = 8 + n
    data = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        assert v["dtype"] == "F16"
        out[k] = np.frombuffer(data[base + a:base + b], dtype=np.float16).reshape(v["shape"])
    return out


def codes_of(words, rows_pad, wpr, blocks, r, s):
    """Code of (row r, storage column s), docs/format.md: tiles of 64 rows, blocks [word][row]."""
    t, rr = divmod(r, 64)
    rt = min(64, rows_pad - t * 64)
    blk, c = divmod(s, 32)
    before = sum(b for b in blocks[:blk])
    b = blocks[blk]
    base = t * 64 * wpr + rt * before
    bit = c * b
    w, sh = divmod(bit, 32)
    v = int(words[base + w * rt + rr]) >> sh
    if sh + b > 32:
        v |= int(words[base + (w + 1) * rt + rr]) << (32 - sh)
    return v & ((1 << b) - 1)


def main():
    if not os.path.exists(TOK):
        print("skip: no tokenizer in", SHARED)
        sys.exit(77)
    with tempfile.TemporaryDirectory() as d:
        hf = os.path.join(d, "hf")
        out = os.path.join(d, "m.claq")
        run("synth", "--shape", "small", "--layers", "1", "--out", hf, "--tokenizer", TOK, "--seed", "7")
        run("synth", "--pack", "--model", hf, "--bits", "3.05", "--out", out)
        raw = open(out, "rb").read()
        if raw[:8] != b"CLAQPACK":
            fail("magic")
        ver, hsz, joff, jlen, doff, dlen, fsz = struct.unpack("<IIQQQQQ", raw[8:56])
        if (ver, hsz, joff) != (1, 64, 64) or doff % 64 or fsz != len(raw) or doff + dlen != fsz:
            fail("header fields %r" % ((ver, hsz, joff, jlen, doff, dlen, fsz),))
        dj = json.loads(raw[joff:joff + jlen])
        data = raw[doff:]
        cfg = dj["config"]
        st = read_safetensors(os.path.join(hf, "model.safetensors"))
        names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
        short = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        tens = {t["name"]: t for t in dj["tensors"]}
        checked = 0
        for hfname, sn in zip(names, short):
            t = tens["layers.0." + sn]
            rows, cols = t["rows"], t["cols"]
            n4, n3, n2 = t["cols4"], t["cols3"], t["cols2"]
            if n4 + n3 + n2 != cols:
                fail("column counts")
            want4 = int(np.floor(cols * (3.05 - 3.0) / 1.0 + 0.5))
            if n4 != want4 or n2 != 0:
                fail("%s: AP 3.05 should give %d 4-bit columns, got %d" % (sn, want4, n4))
            sec = {}
            for k, (o, n) in t["sections"].items():
                if o % 64:
                    fail("section %s not 64-aligned" % k)
                sec[k] = data[o:o + n]
            blocks = [4] * ((n4 + 31) // 32) + [3] * ((n3 + 31) // 32) + [2] * ((n2 + 31) // 32)
            cols_pad = 32 * len(blocks)
            rows_pad = (rows + 15) // 16 * 16
            wpr = sum(blocks)
            colmap = np.frombuffer(sec["colmap"], dtype=np.uint32)
            cb = np.frombuffer(sec["cb"], dtype=np.float16)
            words = np.frombuffer(sec["codes"], dtype=np.uint32)
            if len(colmap) != cols_pad or len(words) != rows_pad * wpr:
                fail("%s: section sizes" % sn)
            real = colmap[colmap != 0xFFFFFFFF]
            if sorted(real.tolist()) != list(range(cols)):
                fail("%s: colmap is not a permutation" % sn)
            W = st["model.layers.0.%s.weight" % hfname].astype(np.float32)
            cb_off = 0
            rng = np.random.default_rng(1)
            for s in range(cols_pad):
                b = blocks[s // 32]
                K = 1 << b
                j = int(colmap[s])
                book = cb[cb_off:cb_off + K].astype(np.float32)
                cb_off += K
                if j == 0xFFFFFFFF:
                    if np.any(book != 0):
                        fail("padding codebook not zero")
                    continue
                if np.any(np.diff(book) < 0):
                    fail("%s col %d: codebook not ascending" % (sn, j))
                for r in rng.choice(rows, size=min(rows, 24), replace=False):
                    code = codes_of(words, rows_pad, wpr, blocks, int(r), s)
                    w = W[r, j]
                    best = np.min(np.abs(book - w))
                    if abs(book[code] - w) > best + 1e-6:
                        fail("%s (%d,%d): code %d -> %g, nearest centroid is %g away from %g"
                             % (sn, r, j, code, book[code], best, w))
                    checked += 1
            rowptr = np.frombuffer(sec["rowptr"], dtype=np.uint32)
            if rowptr[0] != 0 or rowptr[-1] != t["nnz"] or np.any(np.diff(rowptr.astype(np.int64)) < 0):
                fail("%s: rowptr" % sn)
        # claq inspect: per-matrix histograms and the true bpw of the whole model.
        txt = run("inspect", out)
        lines = txt.strip().splitlines()
        if not lines[-1].startswith("true_bpw: "):
            fail("last line is not true_bpw: %r" % lines[-1])
        got = float(lines[-1].split()[1])
        tok = dj["tokenizer"]["data"][1] + (dj.get("tokenizer_config", {"data": [0, 0]})["data"][1])
        D, H, V, L = cfg["dim"], cfg["hidden_dim"], cfg["vocab_size"], cfg["n_layers"]
        q = cfg["n_heads"] * cfg["head_dim"]
        kv = cfg["n_kv_heads"] * cfg["head_dim"]
        per_layer = D * q + 2 * D * kv + q * D + 3 * D * H + 2 * D
        params = V * D * (1 if cfg["tie_embeddings"] else 2) + D + L * per_layer
        want = 8.0 * (len(raw) - tok) / params
        if abs(got - want) > 1e-4 * want:
            fail("true_bpw %g, expected %g" % (got, want))
        for sn in short:
            t = tens["layers.0." + sn]
            hist = "cols 4b/3b/2b %d/%d/%d" % (t["cols4"], t["cols3"], t["cols2"])
            if not any(l.startswith("layers.0." + sn) and hist in l for l in lines):
                fail("inspect line for %s lacks %r" % (sn, hist))
        print("ok: %d codes decoded per docs/format.md match K-Means assignments; true_bpw %.4f"
              % (checked, got))


if __name__ == "__main__":
    main()
