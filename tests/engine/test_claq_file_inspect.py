"""test_claq_file_inspect.py -- an independent reader of docs/format.md checks the C writer, and
`claq inspect` reports the bytes truthfully.

1. `claq synth` writes a 1-layer model of the `small` shape (F16, random Student-t weights) and
   `claq synth --pack --bits 3.05` packs it (per-column K-Means, AP-style 4-bit columns, the
   rest 3-bit, whose codes 10 and 21 straddle two words), once with each codebook form
   (--cb-bits 16: fp16 entries; 8: lo/step/index bytes on an 8-bit grid).
2. This script parses the packed file with numpy following ONLY docs/format.md, version 2
   (header, JSON directory, 64-byte alignment, the column map derived from 2-bit widths, both
   codebook forms with the grid decoded as fp16(lo + idx * step) in fp32, tiled [word][row] bit
   strings with straddling 3-bit codes, per-row outlier counts) and checks, for every linear of
   layer 0, that each weight's code selects the centroid nearest to the original F16 weight read
   from model.safetensors (K-Means assignment) and that the 4-bit columns are the AP count.
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
        run("synth", "--shape", "small", "--layers", "1", "--out", hf, "--tokenizer", TOK, "--seed", "7")
        for cb_bits, form in (("16", "f16"), ("8", "grid8")):
            out = os.path.join(d, "m%s.claq" % cb_bits)
            run("synth", "--pack", "--model", hf, "--bits", "3.05", "--cb-bits", cb_bits, "--out", out)
            check_file(hf, out, form)
        check_aliasing(out, os.path.join(d, "alias.claq"))


def check_aliasing(src, dst):
    """A directory whose two tensors point at the same bytes (format.md gives each its own
    sections) is refused, naming both: it used to load as a different model than it claims."""
    raw = open(src, "rb").read()
    magic, ver, hsz, joff, jlen, doff, dlen, fsz = struct.unpack("<8sIIQQQQQ", raw[:56])
    dirj = json.loads(raw[joff:joff + jlen])
    t = {e["name"]: e for e in dirj["tensors"]}
    t["layers.0.ffn_norm"]["data"] = t["layers.0.attn_norm"]["data"]
    j = json.dumps(dirj, separators=(",", ":")).encode()
    doff2 = (joff + len(j) + 63) // 64 * 64
    head = struct.pack("<8sIIQQQQQ", magic, ver, hsz, joff, len(j), doff2, dlen, doff2 + dlen)
    body = head + b"\0" * (joff - len(head)) + j
    with open(dst, "wb") as f:
        f.write(body + b"\0" * (doff2 - len(body)) + raw[doff:])
    r = subprocess.run([CLAQ, "inspect", "--model", dst], capture_output=True, text=True,
                       errors="replace")
    if r.returncode != 1 or "overlaps" not in r.stderr or "layers.0.attn_norm" not in r.stderr:
        fail("aliased sections: exit %d, %s" % (r.returncode, r.stderr.strip()[-300:]))
    print("ok: a directory with two tensors on one section is refused:",
          r.stderr.strip()[-160:])


def decode_codebooks(sec, form, blocks, colmap):
    """Per storage column its 2^b centroids (float32), padding columns zero (format.md)."""
    widths = [blocks[s // 32] for s in range(len(colmap))]
    real = [s for s in range(len(colmap)) if colmap[s] != 0xFFFFFFFF]
    books = {}
    raw = sec["cb"]
    if form == "f16":
        cb = np.frombuffer(raw, dtype=np.float16)
        if len(cb) != sum(1 << widths[s] for s in real):
            fail("f16 codebook length")
        off = 0
        for s in real:
            books[s] = cb[off:off + (1 << widths[s])].astype(np.float32)
            off += 1 << widths[s]
        return books
    if form != "grid8":
        fail("cb_form %r" % form)
    ls = np.frombuffer(raw[:4 * len(real)], dtype=np.float16).reshape(-1, 2)
    idx = np.frombuffer(raw[4 * len(real):], dtype=np.uint8)
    if len(idx) != sum(1 << widths[s] for s in real):
        fail("grid8 index length")
    off = 0
    for i, s in enumerate(real):
        k = 1 << widths[s]
        g = idx[off:off + k].astype(np.float32)
        off += k
        lo, step = np.float32(ls[i, 0]), np.float32(ls[i, 1])
        if step < 0 or np.any(np.diff(g) < 0):
            fail("grid step or indices")
        books[s] = (lo + g * step).astype(np.float32).astype(np.float16).astype(np.float32)
    return books


def check_file(hf, out, form):
    if True:
        raw = open(out, "rb").read()
        if raw[:8] != b"CLAQPACK":
            fail("magic")
        ver, hsz, joff, jlen, doff, dlen, fsz = struct.unpack("<IIQQQQQ", raw[8:56])
        if (ver, hsz, joff) != (2, 64, 64) or doff % 64 or fsz != len(raw) or doff + dlen != fsz:
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
            if t.get("cb_form") != form:
                fail("%s: cb_form %r, expected %r" % (sn, t.get("cb_form"), form))
            # widths: 2 bits per column (bits - 2), 4 columns a byte, present when mixed
            wb = np.frombuffer(sec["widths"], dtype=np.uint8)
            if len(wb) != (cols + 3) // 4:
                fail("%s: widths length %d" % (sn, len(wb)))
            colw = [2 + ((int(wb[j // 4]) >> (2 * (j % 4))) & 3) for j in range(cols)]
            colmap = []
            for bw, nb in ((4, n4), (3, n3), (2, n2)):
                group = [j for j in range(cols) if colw[j] == bw]
                if len(group) != nb:
                    fail("%s: widths give %d %d-bit columns, directory %d" % (sn, len(group), bw, nb))
                colmap += group + [0xFFFFFFFF] * ((-len(group)) % 32)
            words = np.frombuffer(sec["codes"], dtype=np.uint32)
            if len(colmap) != cols_pad or len(words) != rows_pad * wpr:
                fail("%s: section sizes" % sn)
            books = decode_codebooks(sec, form, blocks, colmap)
            W = st["model.layers.0.%s.weight" % hfname].astype(np.float32)
            rng = np.random.default_rng(1)
            for s in range(cols_pad):
                j = int(colmap[s])
                if j == 0xFFFFFFFF:
                    continue
                book = books[s]
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
            if t["nnz"] != 0 or len(sec["rowcnt"]) != 0:
                fail("%s: synth --pack keeps no outliers, so no row counts" % sn)
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
        print("ok (%s): %d codes decoded per docs/format.md match K-Means assignments; "
              "true_bpw %.4f" % (form, checked, got))


if __name__ == "__main__":
    main()
