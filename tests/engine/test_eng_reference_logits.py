#!/usr/bin/env python3
"""test_eng_reference_logits — our forward pass against an independent float64 numpy LLaMA written
here from the Hugging Face definitions (RMSNorm, rotate_half RoPE, GQA causal attention, SwiGLU,
tied head), read straight from the safetensors file. Checks max|ours - ref| / max|ref| <= 1e-4 at
every position, for several prompts, on tinystories-656k (F32) and small-lm-5m; then converts
tinystories-656k to F16, BF16 and a 2-shard F32 index and checks those load and agree within dtype
tolerance against the reference run on the converted weights. Prefill vs one-token decode must be
bit-identical (claq logits --batch-check)."""
import json, os, shutil, struct, subprocess, sys, tempfile
import numpy as np

SHARED = os.environ.get("CLAQ_SHARED", os.path.join(os.path.dirname(__file__), "../../../shared"))
CLAQ = os.path.join(os.environ.get("CLAQ_BIN", "build"), "claq")
FAIL = []

def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[base + a: base + b]
        dt = info["dtype"]
        if dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(dt)
        out[name] = arr.reshape(info["shape"]).astype(np.float64)
    return out

def write_safetensors(path, tensors, dtype):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        a = arr.astype(np.float32)
        if dtype == "F32":
            raw = a.astype("<f4").tobytes()
        elif dtype == "F16":
            raw = a.astype("<f2").tobytes()
        else:  # BF16, round to nearest even
            u = a.view(np.uint32).astype(np.uint64)
            u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
            raw = u.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)

def rope_inv_freq(cfg, hd):
    """RoPE inverse frequencies with config.json's rope_scaling, after transformers'
    modeling_rope_utils (default, linear, llama3); dynamic NTK at the scaled length
    factor x original_max_position_embeddings, fixed (what vLLM does and claq documents)."""
    theta = cfg.get("rope_theta", 10000.0)
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    base = theta
    if kind == "dynamic":
        f = rs["factor"]
        orig = rs.get("original_max_position_embeddings", cfg["max_position_embeddings"])
        seq_len = orig * f
        base = theta * ((f * seq_len / orig) - (f - 1)) ** (hd / (hd - 2))
    inv = 1.0 / base ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        f, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        orig = rs["original_max_position_embeddings"]
        low_wl, high_wl = orig / lo, orig / hi
        wl = 2 * np.pi / inv
        scaled = np.where(wl > low_wl, inv / f, inv)
        smooth = (orig / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / f + smooth * scaled
        medium = ~(wl < high_wl) & ~(wl > low_wl)
        inv = np.where(medium, smoothed, scaled)
    return inv

def reference_logits(model_dir, W, ids):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    D, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim", D // H)
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    emb = W.get("model.embed_tokens.weight", W.get("lm_head.weight"))
    head = W.get("lm_head.weight", emb)
    n = len(ids)
    x = emb[np.array(ids)]
    def rms(v, w):
        return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + eps) * w
    inv = rope_inv_freq(cfg, hd)
    ang = np.arange(n)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], -1)
    sin = np.concatenate([np.sin(ang), np.sin(ang)], -1)
    def rope(t):  # t [heads, n, hd]
        half = hd // 2
        rot = np.concatenate([-t[..., half:], t[..., :half]], -1)
        return t * cos + rot * sin
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).reshape(n, H, hd).transpose(1, 0, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).reshape(n, KV, hd).transpose(1, 0, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(n, KV, hd).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        rep = H // KV
        k, v = np.repeat(k, rep, 0), np.repeat(v, rep, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(n, H * hd)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ W[p + "mlp.down_proj.weight"].T
    return rms(x, W["model.norm.weight"]) @ head.T

def our_logits(model, ids, vocab, extra=()):
    with tempfile.NamedTemporaryFile(suffix=".f32") as f:
        r = subprocess.run([CLAQ, "logits", "--model", model, "--ids", " ".join(map(str, ids)),
                            "--out", f.name, *extra], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"claq logits failed ({r.returncode}): {r.stderr.strip()}")
        return np.fromfile(f.name, dtype="<f4").reshape(len(ids), vocab).astype(np.float64)

def tokenize(model, text):
    r = subprocess.run([CLAQ, "tokenize", "--model", model, "--text", text], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return [int(t) for t in r.stdout.split()]

def compare(label, ours, ref, tol):
    worst = 0.0
    for i in range(ref.shape[0]):
        rel = np.max(np.abs(ours[i] - ref[i])) / np.max(np.abs(ref[i]))
        worst = max(worst, rel)
    ok = worst <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {label}: worst position max|ours-ref|/max|ref| = {worst:.2e} (tol {tol:g})")
    if not ok:
        FAIL.append(label)
    return worst

def main():
    if not os.path.exists(CLAQ):
        print(f"{CLAQ} not built"); return 1
    prompts = ["Once upon a time, there was a little girl named Lily.",
               "The cat sat on the mat and looked at the big red ball",
               "Tom and Sue went to the park. They played with a dog"]
    rng = np.random.default_rng(7)
    for name in ["tinystories-656k", "small-lm-5m"]:
        d = os.path.join(SHARED, "models", name)
        W = read_safetensors(os.path.join(d, "model.safetensors"))
        vocab = json.load(open(os.path.join(d, "config.json")))["vocab_size"]
        cases = [tokenize(d, p) for p in prompts]
        cases.append([1] + [int(t) for t in rng.integers(3, vocab, 40)])
        for ci, ids in enumerate(cases):
            extra = ["--batch-check"] if ci == 0 else []
            ours = our_logits(d, ids, vocab, extra)
            compare(f"{name} case {ci} ({len(ids)} tokens)", ours, reference_logits(d, W, ids), 1e-4)

    # a LLaMA-3.2-shaped synthetic model (claq synth --shape llama3-tiny: 128,256-token
    # vocabulary, GQA 4/2, tied head, rope_theta 5e5, llama3 rope_scaling factor 32, F16): the
    # reference runs on the same F16 weights in float64
    l3 = tempfile.mkdtemp(prefix="claq-llama3-")
    try:
        r = subprocess.run([CLAQ, "synth", "--shape", "llama3-tiny", "--tokenizer",
                            os.path.join(SHARED, "models", "tinystories-656k", "tokenizer.json"),
                            "--out", l3], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"claq synth failed: {r.stderr.strip()}")
        W3 = read_safetensors(os.path.join(l3, "model.safetensors"))
        ids3 = [128000] + [int(t) for t in rng.integers(0, 128000, 80)]
        compare("synthetic llama3-tiny (llama3 rope_scaling, GQA, tied, F16)",
                our_logits(l3, ids3, 128256), reference_logits(l3, W3, ids3), 1e-4)
    finally:
        shutil.rmtree(l3)

    # dtype conversions and a 2-shard index of tinystories-656k
    src = os.path.join(SHARED, "models", "tinystories-656k")
    W32 = read_safetensors(os.path.join(src, "model.safetensors"))
    ids = tokenize(src, prompts[0])
    tmp = tempfile.mkdtemp(prefix="claq-dtypes-")
    try:
        for dtype, tol in [("F16", 5e-3), ("BF16", 1e-4)]:
            d = os.path.join(tmp, dtype)
            os.makedirs(d)
            for f in os.listdir(src):
                if f != "model.safetensors":
                    shutil.copy(os.path.join(src, f), d)
            write_safetensors(os.path.join(d, "model.safetensors"), W32, dtype)
            Wc = read_safetensors(os.path.join(d, "model.safetensors"))
            ours = our_logits(d, ids, 2048)
            compare(f"tinystories-656k {dtype} vs reference on {dtype} weights", ours,
                    reference_logits(d, Wc, ids), 1e-4)
            compare(f"tinystories-656k {dtype} vs F32 reference", ours, reference_logits(src, W32, ids), tol)
        d = os.path.join(tmp, "sharded")
        os.makedirs(d)
        for f in os.listdir(src):
            if f != "model.safetensors":
                shutil.copy(os.path.join(src, f), d)
        names = sorted(W32)
        halves = [names[: len(names) // 2], names[len(names) // 2:]]
        wmap = {}
        for i, part in enumerate(halves):
            fn = f"model-{i + 1:05d}-of-00002.safetensors"
            write_safetensors(os.path.join(d, fn), {k: W32[k] for k in part}, "F32")
            wmap.update({k: fn for k in part})
        json.dump({"metadata": {}, "weight_map": wmap}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
        compare("tinystories-656k 2-shard index", our_logits(d, ids, 2048), reference_logits(src, W32, ids), 1e-4)

        # RoPE scaling (LLaMA-3.1-style llama3 bands, linear, dynamic NTK) on tinystories-656k's
        # weights: head_dim 16 at theta 5e5 puts one frequency in each llama3 band at original
        # length 64. Each must match the reference and differ from the unscaled logits.
        ids2 = ids + [int(t) for t in rng.integers(3, 2048, 60)]
        base_logits = our_logits(src, ids2, 2048)
        scalings = {
            "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
            "linear": {"type": "linear", "factor": 2.0},
            "dynamic": {"type": "dynamic", "factor": 2.0},
        }
        for kind, rs in scalings.items():
            d = os.path.join(tmp, "rope-" + kind)
            shutil.copytree(src, d)
            cfg = json.load(open(os.path.join(d, "config.json")))
            cfg["rope_scaling"] = rs
            if kind == "llama3":
                cfg["rope_theta"] = 500000.0
            json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
            ours = our_logits(d, ids2, 2048)
            compare(f"tinystories-656k rope_scaling {kind}", ours, reference_logits(d, W32, ids2), 1e-4)
            moved = np.max(np.abs(ours - base_logits)) / np.max(np.abs(base_logits))
            ok = moved > 1e-3
            print(f"{'ok  ' if ok else 'FAIL'} rope_scaling {kind} moves the logits: {moved:.2e}")
            if not ok:
                FAIL.append(f"rope_scaling {kind} has no effect")
        # the packed format keeps rope_scaling: `claq inspect` reads the same line back from a
        # 4-bit pack of the llama3 copy as from the directory, and the pack's logits differ from
        # a pack of the unscaled model (same weights, same quantizer)
        def inspect_rope(path):
            r = subprocess.run([CLAQ, "inspect", path], capture_output=True, text=True)
            return [l for l in r.stdout.splitlines() if l.startswith("rope_scaling:")]
        packs = {}
        for kind, d in [("llama3", os.path.join(tmp, "rope-llama3")), ("none", src)]:
            out = os.path.join(tmp, f"pack-{kind}.claq")
            r = subprocess.run([CLAQ, "synth", "--pack", "--model", d, "--bits", "4", "--out", out],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"claq synth --pack failed: {r.stderr.strip()}")
            packs[kind] = our_logits(out, ids2, 2048)
        want = inspect_rope(os.path.join(tmp, "rope-llama3"))
        got = inspect_rope(os.path.join(tmp, "pack-llama3.claq"))
        far = np.max(np.abs(packs["llama3"] - packs["none"])) / np.max(np.abs(packs["none"]))
        ok = len(want) == 1 and "type=llama3" in want[0] and got == want and far > 1e-3
        print(f"{'ok  ' if ok else 'FAIL'} packed file keeps rope_scaling: {got} "
              f"(directory {want}); its logits move {far:.2e} from the unscaled pack")
        if not ok:
            FAIL.append("packed file lost rope_scaling")
    finally:
        shutil.rmtree(tmp)
    print(f"{len(FAIL)} failed")
    return 1 if FAIL else 0

if __name__ == "__main__":
    sys.exit(main())
