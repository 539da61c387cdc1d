"""test_load_dtypes.py — the same weights through every container and dtype we accept load to the
same model. Converts the real TinyStories-656K to F16, BF16, a 2-shard index and a header whose
length is not a multiple of 8 (tensors then sit at odd addresses), and stories260K.bin to the
llama2.c version 1 export and to v0 with an unshared classifier; each must open with identical
shapes, and element sums that match the original (exactly where the conversion is exact: BF16
holds TinyStories' weights exactly). When `claq logits` works, logits are compared too."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load_fixtures as lf  # noqa: E402

lf.need_env()
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL", msg)


def load(path):
    rc, out, err = lf.open_model(path)
    if rc != 0:
        fail("%s did not open: %s" % (path, err.strip()))
        return None
    return lf.summary(out)


def compare(name, ref, got, want_dtype, exact, quant=None, rel_tol=0.0):
    """Same config line and shapes; sums equal (exact) or within rel_tol of the reference."""
    if got is None:
        return
    if got["config"] != ref["config"]:
        fail("%s: config differs:\n  %s\n  %s" % (name, got["config"], ref["config"]))
    if quant and got["quant"] != quant:
        fail("%s: quant_desc %r, want %r" % (name, got["quant"], quant))
    if set(got["tensors"]) != set(ref["tensors"]) or set(got["norms"]) != set(ref["norms"]):
        fail("%s: tensor set differs" % name)
        return
    worst = 0.0
    for t, (dt, r, c, s) in ref["tensors"].items():
        gdt, gr, gc, gs = got["tensors"][t]
        if (gr, gc) != (r, c):
            fail("%s: %s shape %dx%d, want %dx%d" % (name, t, gr, gc, r, c))
        if want_dtype and gdt != want_dtype:
            fail("%s: %s dtype %s, want %s" % (name, t, gdt, want_dtype))
        err = abs(gs - s) / max(1.0, abs(s))
        worst = max(worst, err)
        if (exact and gs != s) or (not exact and err > rel_tol):
            fail("%s: %s sum %.9g, want %.9g" % (name, t, gs, s))
    for t, s in ref["norms"].items():
        gs = got["norms"][t]
        if (exact and gs != s) or (not exact and abs(gs - s) > rel_tol * max(1.0, abs(s))):
            fail("%s: norm %s sum %.9g, want %.9g" % (name, t, gs, s))
    print("ok   %-28s %d tensors, worst relative sum error %.3g" % (name, len(ref["tensors"]),
                                                                    worst))


def logits_available():
    claq = os.path.join(lf.BIN, "claq")
    if not os.access(claq, os.X_OK):
        return None
    p = subprocess.run([claq, "logits", "--help"], capture_output=True, text=True, timeout=60)
    return claq if p.returncode == 0 else None


def logits(claq, model, ids, out_path, vocab):
    p = subprocess.run([claq, "logits", "--model", model, "--ids", ids, "--out", out_path,
                        "--threads", "1"], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        fail("claq logits on %s: rc %d %s" % (model, p.returncode, p.stderr.strip()[-300:]))
        return None
    return np.fromfile(out_path, dtype="<f4").reshape(-1, vocab)


def hf_variants(root):
    ref = load(lf.TINY)
    if ref is None:
        return {}
    if ref["quant"] != "fp32" or ref["tied"] != 1:
        fail("reference tinystories: quant %s tied %s" % (ref["quant"], ref["tied"]))
    dirs = {}

    d = lf.make_hf_dir(root, "tiny_bf16")
    lf.write_st(os.path.join(d, "model.safetensors"), lf.tiny_tensors("BF16"),
                meta={"format": "pt"})
    compare("bf16 (exact)", ref, load(d), "BF16", exact=True, quant="bf16")
    dirs["bf16"] = d

    d = lf.make_hf_dir(root, "tiny_f16")
    lf.write_st(os.path.join(d, "model.safetensors"), lf.tiny_tensors("F16"))
    # TinyStories' weights are bf16 values of magnitude 1.5e-6..4.1, which fp16 also holds
    # exactly (checked here), so this conversion must be exact as well.
    exact16 = all(np.array_equal(a.astype("<f2").astype("<f4"), a)
                  for a in lf.st_arrays(os.path.join(lf.TINY, "model.safetensors")).values())
    compare("f16" + (" (exact)" if exact16 else ""), ref, load(d), "F16", exact=exact16,
            quant="fp16", rel_tol=1e-3)
    dirs["f16"] = d

    d = lf.make_hf_dir(root, "tiny_2shards")
    ts = lf.tiny_tensors()
    half = len(ts) // 2
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    lf.write_st(os.path.join(d, names[0]), ts[:half])
    lf.write_st(os.path.join(d, names[1]), ts[half:])
    wm = {t[0]: names[0] for t in ts[:half]}
    wm.update({t[0]: names[1] for t in ts[half:]})
    total = sum(len(t[3]) for t in ts)
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
    compare("2 shards (exact)", ref, load(d), "F32", exact=True, quant="fp32")
    dirs["shards"] = d

    d = lf.make_hf_dir(root, "tiny_bf16_3shards_mixed")
    tb, tf = lf.tiny_tensors("BF16"), lf.tiny_tensors()
    third = len(ts) // 3
    parts = [tb[:third], tf[third:2 * third], tb[2 * third:]]
    wm = {}
    for k, part in enumerate(parts):
        fn = "model-%05d-of-00003.safetensors" % (k + 1)
        lf.write_st(os.path.join(d, fn), part)
        wm.update({t[0]: fn for t in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": wm}, f)
    got = load(d)
    compare("3 shards bf16+f32 (exact)", ref, got, None, exact=True)
    if got and got["quant"] != "fp32+bf16":
        fail("mixed shards: quant_desc %r, want 'fp32+bf16'" % got["quant"])

    # Header length 8k+3: every F32 tensor starts at an address that is not 4-aligned; the
    # loader must copy those (kernels read typed pointers) and still give the same values.
    d = lf.make_hf_dir(root, "tiny_odd_header")
    lf.write_st(os.path.join(d, "model.safetensors"), ts, extra_pad=3)
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
    if (8 + hlen) % 4 == 0:
        fail("odd-header fixture is aligned after all")
    compare("unaligned data (exact)", ref, load(d), "F32", exact=True)
    dirs["odd"] = d
    return dirs


def llama2c_variants(root):
    ref = load(lf.STORIES)
    if ref is None:
        return None
    with open(lf.STORIES, "rb") as f:
        raw = f.read()
    hdr = list(struct.unpack("<7i", raw[:28]))
    body = np.frombuffer(raw[28:], dtype="<f4")
    dim, hid, L, nh, nkv, vocab, seq = hdr
    kvd = nkv * (dim // nh)
    sizes = [("emb", vocab * dim), ("att", L * dim), ("wq", L * dim * dim), ("wk", L * kvd * dim),
             ("wv", L * kvd * dim), ("wo", L * dim * dim), ("ffn", L * dim),
             ("w1", L * hid * dim), ("w2", L * dim * hid), ("w3", L * hid * dim), ("fin", dim)]
    seg, off = {}, 0
    for name, n in sizes:
        seg[name] = body[off:off + n]
        off += n

    # Version 1: 256-byte header, norms first, no freq_cis.
    p = os.path.join(root, "stories_v1.bin")
    head = struct.pack("<Ii7iB", 0x616B3432, 1, *hdr, 1)
    with open(p, "wb") as f:
        f.write(head + b"\0" * (256 - len(head)))
        for name in ("att", "ffn", "fin", "emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3"):
            f.write(seg[name].tobytes())
    got = load(p)
    compare("llama2.c version 1 (exact)", ref, got, "F32", exact=True, quant="fp32")
    if got and got["tied"] != 1:
        fail("v1 shared classifier is not the embedding view")
    v1_path = p

    # v0 with an unshared classifier (negative vocab_size, wcls after freq_cis).
    p = os.path.join(root, "stories_wcls.bin")
    h = list(hdr)
    h[5] = -vocab
    wcls = (seg["emb"] * 0.5).astype("<f4")
    with open(p, "wb") as f:
        f.write(struct.pack("<7i", *h) + body.tobytes() + wcls.tobytes())
    got = load(p)
    if got:
        if got["tied"] != 0:
            fail("unshared classifier reported as tied")
        want = {"config": ref["config"].replace("tie 1", "tie 0"), "norms": ref["norms"],
                "tensors": dict(ref["tensors"])}
        # wcls = 0.5 * embedding: halving is exact, so its fp64 sum is exactly half as well
        dt, r, c, s = ref["tensors"]["tok_embed"]
        want["tensors"]["output"] = (dt, r, c, s * 0.5)
        compare("llama2.c unshared classifier", want, got, "F32", exact=True)
    return v1_path


with tempfile.TemporaryDirectory(prefix="claq_load_dtypes_") as root:
    dirs = hf_variants(root)
    v1 = llama2c_variants(root)

    claq = logits_available()
    if not claq:
        print("note: `claq logits` is not available in this build; logits not compared")
    elif dirs:
        ids = "1 415 22 87 1000 5 9 2047"
        ref = logits(claq, lf.TINY, ids, os.path.join(root, "ref.f32"), 2048)
        # Tolerances: every variant holds the same values (see above), so only the kernels'
        # dtype paths may differ (conversion then fp32 accumulation, perhaps in another order);
        # same container and dtype (shards, unaligned copy) must be bit-identical.
        for key, tol in (("bf16", 1e-3), ("shards", 0.0), ("odd", 0.0), ("f16", 1e-3)):
            got = logits(claq, dirs[key], ids, os.path.join(root, key + ".f32"), 2048)
            if ref is None or got is None:
                continue
            diff = float(np.max(np.abs(got - ref)))
            same_top = bool(np.all(np.argmax(got, 1) == np.argmax(ref, 1)))
            print("logits %-7s max |diff| %.3g, same argmax %s" % (key, diff, same_top))
            if diff > tol or (key != "f16" and not same_top):
                fail("logits %s differ from fp32 by %.3g (tolerance %g)" % (key, diff, tol))
    if claq and v1:
        ids = "1 410 469 347"   # the README's "Zoo" prompt
        a = logits(claq, lf.STORIES, ids, os.path.join(root, "v0.f32"), 512)
        b = logits(claq, v1, ids, os.path.join(root, "v1.f32"), 512)
        if a is not None and b is not None:
            print("logits llama2.c v1 vs v0: max |diff| %.3g" % float(np.max(np.abs(a - b))))
            if not np.array_equal(a, b):
                fail("llama2.c v1 logits differ from v0")

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
print("all dtype/container variants load identically")
