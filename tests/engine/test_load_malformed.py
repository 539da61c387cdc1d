"""test_load_malformed.py — one case per hostile input to the model loaders. Each case derives a
broken variant of the real TinyStories-656K directory or stories260K.bin in a temp dir and asserts
that `$CLAQ_BIN/test_load_open PATH` (eng_model_open) exits 1 — not a signal, not 0 — with an
error naming the variant's path and the tensor / field at fault; when `claq logits` is built,
the same through the real CLI."""
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
n_cases = 0


def find_claq_logits():
    """`claq logits` once it is built: every case then also goes through the real CLI."""
    claq = os.path.join(lf.BIN, "claq")
    if not os.access(claq, os.X_OK):
        return None
    try:
        p = subprocess.run([claq, "logits", "--help"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return claq if p.returncode == 0 else None


CLAQ = find_claq_logits()


def cli_problems(path, tag, fragments):
    """claq logits on a broken model: exit 1 (runtime error), no signal, message names it."""
    with tempfile.NamedTemporaryFile(suffix=".f32") as out:
        p = subprocess.run([CLAQ, "logits", "--model", path, "--ids", "1", "--out", out.name],
                           capture_output=True, text=True, timeout=120)
    problems = []
    if p.returncode != 1:
        problems.append("claq logits exit status %d (want 1)" % p.returncode)
    for frag in (tag,) + fragments:
        if frag not in p.stderr:
            problems.append("claq logits message lacks %r" % frag)
    if "Sanitizer" in p.stderr or "runtime error" in p.stderr:
        problems.append("claq logits: sanitizer report")
    if problems:
        problems.append("claq stderr: " + p.stderr.strip()[-300:])
    return problems


def expect_error(case, path, *fragments):
    """The open must fail cleanly; the message must name the variant and every fragment."""
    global n_cases
    n_cases += 1
    rc, out, err = lf.open_model(path)
    tag = os.path.basename(path.rstrip("/"))
    problems = []
    if rc < 0 or rc > 1:
        problems.append("exit status %d (crash or signal)" % rc)
    elif rc == 0:
        problems.append("opened although it is broken")
    if "ERROR" not in err:
        problems.append("no ERROR line")
    if "Sanitizer" in err or "runtime error" in err:
        problems.append("sanitizer report (sanitizers also exit 1)")
    if CLAQ:
        problems += cli_problems(path, tag, fragments)
    for frag in (tag,) + fragments:
        if frag not in err:
            problems.append("message lacks %r" % frag)
    if problems:
        failures.append("%s: %s\n    stderr: %s" % (case, "; ".join(problems), err.strip()))
        print("FAIL", case)
    else:
        print("ok  ", case, "->", err.strip().split(": ", 1)[-1][:150])


# ---- HF directory variants ----------------------------------------------------------------

def hf_case(root, name, tensors=None, config_edit=None, config_text=None, raw=None):
    d = lf.make_hf_dir(root, name, config_edit=config_edit, config_text=config_text)
    st = os.path.join(d, "model.safetensors")
    if raw is not None:
        raw(st)
    else:
        lf.write_st(st, tensors if tensors is not None else lf.tiny_tensors())
    return d


def replace(tensors, name, dtype=None, shape=None, data=None):
    out = []
    for n, dt, sh, b in tensors:
        if n == name:
            out.append((n, dtype or dt, shape if shape is not None else sh,
                        data if data is not None else b))
        else:
            out.append((n, dt, sh, b))
    return out


def poke_f32(tensors, name, index, value):
    for n, dt, sh, b in tensors:
        if n == name:
            a = np.frombuffer(b, dtype="<f4").copy()
            a[index] = value
            return replace(tensors, name, data=a.tobytes())
    raise KeyError(name)


def run_hf_cases(root):
    good = lf.tiny_tensors()
    items, meta, data = lf.read_st(os.path.join(lf.TINY, "model.safetensors"))
    header = {"__metadata__": meta} if meta else {}
    header.update(dict(items))
    hbytes = lf.encode_header(header)

    def raw_with(hb, d=data, hlen=None):
        return lambda p: lf.write_raw_st(p, hb, d, hlen)

    def edited_header(fn):
        h = json.loads(json.dumps(header))
        fn(h)
        return lf.encode_header(h)

    # Containers: truncation, magic, lying lengths, header shape.
    d = hf_case(root, "hf_truncated_half", raw=raw_with(hbytes, data[:len(data) // 2]))
    expect_error("safetensors truncated mid-data", d, "model.safetensors", "outside")
    d = hf_case(root, "hf_truncated_to_5_bytes",
                raw=lambda p: open(p, "wb").write(b"\x10\x00\x00\x00\x00"))
    expect_error("safetensors shorter than its length prefix", d, "too short")
    d = hf_case(root, "hf_bad_magic", raw=lambda p: open(p, "wb").write(
        b"GGUF\x03\x00\x00\x00" + hbytes + data))
    expect_error("not a safetensors file (GGUF magic)", d, "header length", "over the")
    d = hf_case(root, "hf_header_len_past_eof", raw=raw_with(hbytes, hlen=len(hbytes) + len(data) + 1))
    expect_error("header length larger than the file", d, "larger than the file")
    d = hf_case(root, "hf_header_len_short", raw=raw_with(hbytes, hlen=len(hbytes) - 40))
    expect_error("header length cuts the JSON", d, "not valid JSON")
    d = hf_case(root, "hf_header_len_long", raw=raw_with(hbytes, hlen=len(hbytes) + 64))
    expect_error("header length swallows data (offsets shift past the end)", d, "outside")
    d = hf_case(root, "hf_header_array", raw=raw_with(b'[{"a":1}]     ', data))
    expect_error("header is a JSON array", d, "JSON object")
    d = hf_case(root, "hf_header_string_entry", raw=raw_with(edited_header(
        lambda h: h.__setitem__("model.norm.weight", "F32"))))
    expect_error("tensor entry is a string", d, "model.norm.weight", "not an object")

    # Offsets.
    d = hf_case(root, "hf_offsets_out_of_range", raw=raw_with(edited_header(
        lambda h: h["model.norm.weight"].__setitem__("data_offsets", [2623488, 2624000 + 4096]))))
    expect_error("data_offsets beyond the data", d, "model.norm.weight", "outside")
    d = hf_case(root, "hf_offsets_overlap", raw=raw_with(edited_header(
        lambda h: h["model.layers.0.self_attn.v_proj.weight"].__setitem__(
            "data_offsets", h["model.layers.0.self_attn.q_proj.weight"]["data_offsets"][:1] +
            [h["model.layers.0.self_attn.q_proj.weight"]["data_offsets"][0] + 32768]))))
    expect_error("two tensors share bytes", d, "overlaps", "self_attn")
    d = hf_case(root, "hf_offsets_vs_shape", raw=raw_with(edited_header(
        lambda h: h["lm_head.weight"].__setitem__("shape", [2048, 129]))))
    expect_error("data_offsets span != shape x dtype", d, "lm_head.weight", "needs")
    d = hf_case(root, "hf_offsets_negative", raw=raw_with(edited_header(
        lambda h: h["model.norm.weight"].__setitem__("data_offsets", [-4, 508]))))
    expect_error("negative offset", d, "model.norm.weight", "data_offsets")

    # Tensors vs config.
    d = hf_case(root, "hf_missing_tensor",
                [t for t in good if t[0] != "model.layers.1.mlp.up_proj.weight"])
    expect_error("a layer tensor is missing", d, "missing tensor",
                 "model.layers.1.mlp.up_proj.weight")
    d = hf_case(root, "hf_no_embedding", [t for t in good if t[0] != "lm_head.weight"])
    expect_error("neither embed_tokens nor lm_head", d, "model.embed_tokens.weight")
    d = hf_case(root, "hf_untied_without_head", config_edit=lambda c: c.__setitem__(
        "tie_word_embeddings", False))
    expect_error("untied config but only lm_head present", d, "model.embed_tokens.weight",
                 "tie_word_embeddings")
    d = hf_case(root, "hf_wrong_shape",
                replace(good, "model.layers.0.self_attn.k_proj.weight", shape=[128, 64]))
    expect_error("k_proj transposed", d, "model.layers.0.self_attn.k_proj.weight",
                 "[128, 64]", "[64, 128]")
    d = hf_case(root, "hf_norm_rank2",
                replace(good, "model.layers.1.input_layernorm.weight", shape=[1, 128]))
    expect_error("norm vector stored as [1, 128]", d, "model.layers.1.input_layernorm.weight",
                 "shape")
    d = hf_case(root, "hf_vocab_mismatch", config_edit=lambda c: c.__setitem__("vocab_size", 4096))
    expect_error("config vocab_size disagrees with lm_head", d, "lm_head.weight", "[4096, 128]")
    d = hf_case(root, "hf_nan_weight",
                poke_f32(good, "model.layers.1.self_attn.o_proj.weight", 777, np.nan))
    expect_error("NaN in o_proj", d, "model.layers.1.self_attn.o_proj.weight", "non-finite")
    d = hf_case(root, "hf_inf_norm", poke_f32(good, "model.norm.weight", 5, np.inf))
    expect_error("Inf in the final norm", d, "model.norm.weight", "non-finite")
    d = hf_case(root, "hf_nan_embedding", poke_f32(good, "lm_head.weight", 2048 * 128 - 1, -np.nan))
    expect_error("NaN in the last embedding element", d, "lm_head.weight", "non-finite")
    v = "model.layers.0.self_attn.v_proj.weight"
    d = hf_case(root, "hf_dtype_i8", replace(good, v, dtype="I8", data=bytes(64 * 128)))
    expect_error("I8 tensor", d, v, "I8")
    d = hf_case(root, "hf_dtype_unknown", replace(good, v, dtype="Q4_K", data=bytes(100)))
    expect_error("unknown dtype string", d, v, "Q4_K")
    # An unknown-dtype tensor the loader does not need must not matter.
    d = hf_case(root, "hf_extra_i64_buffer_ok", good + [("model.rotary.inv_freq", "I64", [8],
                                                          bytes(64))])
    rc, out, err = lf.open_model(d)
    if rc != 0:
        failures.append("extra I64 tensor should be ignored: " + err.strip())

    # config.json.
    cases = [
        ("hf_cfg_heads_zero", lambda c: c.__setitem__("num_attention_heads", 0),
         ["num_attention_heads"]),
        ("hf_cfg_heads_not_dividing", lambda c: (c.__setitem__("num_attention_heads", 7),
                                                 c.__setitem__("num_key_value_heads", 7)),
         ["num_attention_heads", "does not divide", "hidden_size"]),
        ("hf_cfg_kv_not_dividing", lambda c: c.__setitem__("num_key_value_heads", 3),
         ["num_key_value_heads"]),
        ("hf_cfg_hidden_string", lambda c: c.__setitem__("hidden_size", "128"), ["hidden_size"]),
        ("hf_cfg_layers_huge", lambda c: c.__setitem__("num_hidden_layers", 10 ** 12),
         ["num_hidden_layers"]),
        ("hf_cfg_layers_fraction", lambda c: c.__setitem__("num_hidden_layers", 2.5),
         ["num_hidden_layers"]),
        ("hf_cfg_missing_vocab", lambda c: c.pop("vocab_size"), ["vocab_size"]),
        ("hf_cfg_eps_negative", lambda c: c.__setitem__("rms_norm_eps", -1e-6), ["rms_norm_eps"]),
        ("hf_cfg_rope_scaling_yarn", lambda c: c.__setitem__("rope_scaling",
                                                             {"rope_type": "yarn", "factor": 4.0}),
         ["rope_scaling", "yarn"]),
        ("hf_cfg_rope_scaling_no_factor", lambda c: c.__setitem__("rope_scaling",
                                                                  {"type": "linear"}),
         ["rope_scaling", "factor"]),
        ("hf_cfg_rope_llama3_bands", lambda c: c.__setitem__("rope_scaling", {
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0,
            "original_max_position_embeddings": 8192}), ["rope_scaling", "low_freq_factor"]),
        ("hf_cfg_rope_llama3_no_orig", lambda c: c.__setitem__("rope_scaling", {
            "rope_type": "llama3", "factor": 8.0}),
         ["rope_scaling", "original_max_position_embeddings"]),
        ("hf_cfg_hidden_1e300", lambda c: c.__setitem__("hidden_size", 1e300), ["hidden_size"]),
        ("hf_cfg_gpt2", lambda c: (c.__setitem__("model_type", "gpt2"),
                                   c.__setitem__("architectures", ["GPT2LMHeadModel"])),
         ["gpt2"]),
        ("hf_cfg_bos_out_of_vocab", lambda c: c.__setitem__("bos_token_id", 5000), ["bos"]),
        ("hf_cfg_odd_head_dim", lambda c: c.__setitem__("head_dim", 15), ["head_dim"]),
        ("hf_cfg_attention_bias", lambda c: c.__setitem__("attention_bias", True),
         ["attention_bias"]),
    ]
    for name, edit, frags in cases:
        d = hf_case(root, name, good, config_edit=edit)
        expect_error(name[3:], d, "config.json", *frags)
    d = hf_case(root, "hf_cfg_not_json", good, config_text='{"hidden_size": 128,')
    expect_error("config.json is not JSON", d, "config.json", "JSON")
    d = hf_case(root, "hf_cfg_missing", good)
    os.unlink(os.path.join(d, "config.json"))
    expect_error("config.json missing", d, "config.json")
    d = hf_case(root, "hf_no_weights", good)
    os.unlink(os.path.join(d, "model.safetensors"))
    expect_error("no safetensors at all", d, "model.safetensors")
    # weights the model would leave unused change what the checkpoint means: refused
    d = hf_case(root, "hf_fewer_layers_in_config", good,
                config_edit=lambda c: c.update(num_hidden_layers=c["num_hidden_layers"] - 1))
    expect_error("config.json names fewer layers than the weights hold", d,
                 "num_hidden_layers", "model.layers.")
    q = [t for t in good if t[0] == "model.layers.0.self_attn.q_proj.weight"][0]
    bias = ("model.layers.0.self_attn.q_proj.bias", "F32", (q[2][0],),
            np.zeros(q[2][0], "<f4").tobytes())
    d = hf_case(root, "hf_q_bias", good + [bias])
    expect_error("a q_proj bias (Qwen2-style)", d, "q_proj.bias", "biases")
    d = hf_case(root, "hf_gen_eos_out_of_range", good)
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [2, 999999]}, f)
    expect_error("generation_config.json eos id past the vocabulary", d,
                 "generation_config.json", "999999")

    # Sharded index.
    def shard_dir(name, weight_map_edit=None, drop_shard=False):
        d = lf.make_hf_dir(root, name)
        half = len(good) // 2
        lf.write_st(os.path.join(d, "model-00001-of-00002.safetensors"), good[:half])
        if not drop_shard:
            lf.write_st(os.path.join(d, "model-00002-of-00002.safetensors"), good[half:])
        wm = {t[0]: "model-00001-of-00002.safetensors" for t in good[:half]}
        wm.update({t[0]: "model-00002-of-00002.safetensors" for t in good[half:]})
        if weight_map_edit:
            weight_map_edit(wm)
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": wm}, f)
        return d

    d = shard_dir("hf_shard_missing_file", drop_shard=True)
    expect_error("index names a shard that does not exist", d, "model-00002-of-00002.safetensors")
    d = shard_dir("hf_shard_wrong_place", lambda wm: wm.__setitem__(
        "model.norm.weight", "model-00001-of-00002.safetensors"))
    expect_error("index places a tensor in the wrong shard", d, "model.norm.weight",
                 "model-00001-of-00002.safetensors")
    d = shard_dir("hf_shard_escapes_dir", lambda wm: wm.__setitem__(
        "model.norm.weight", "../../etc/passwd"))
    expect_error("shard path escapes the directory", d, "model.norm.weight", "plain file name")
    d = shard_dir("hf_shard_index_not_json")
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        f.write('{"weight_map": ')
    expect_error("index is not JSON", d, "model.safetensors.index.json")


def expect_config(case, path, *fragments):
    """The open must succeed and the printed config line must hold every fragment."""
    global n_cases
    n_cases += 1
    rc, out, err = lf.open_model(path)
    cfg = lf.summary(out)["config"] if rc == 0 else ""
    missing = [f for f in fragments if f not in cfg]
    if rc != 0 or missing:
        failures.append("%s: rc %d, config %r lacks %r; stderr %s" % (case, rc, cfg, missing,
                                                                     err.strip()))
        print("FAIL", case)
    else:
        print("ok  ", case, "-> loads:", " ".join(fragments))


def run_valid_config_cases(root):
    """Legal config.json spellings the loader must accept (defaults, lists, other arch keys)."""
    good = lf.tiny_tensors()
    d = hf_case(root, "ok_eos_list_bos_null", good, config_edit=lambda c: (
        c.__setitem__("eos_token_id", [2, 7]), c.__setitem__("bos_token_id", None)))
    expect_config("eos_token_id list, bos null", d, "bos -1 eos 2")
    d = hf_case(root, "ok_yi", good, config_edit=lambda c: (
        c.pop("model_type"), c.__setitem__("architectures", ["YiForCausalLM"])))
    expect_config("architectures YiForCausalLM only", d, "arch yi")
    d = hf_case(root, "ok_defaults", good, config_edit=lambda c: [
        c.pop(k) for k in ("rope_theta", "rms_norm_eps", "rope_scaling", "hidden_act")])
    expect_config("rope_theta / rms_norm_eps defaults", d, "theta 10000", "eps 1e-06")
    d = hf_case(root, "hf_kv_default_is_heads", good, config_edit=lambda c: c.pop(
        "num_key_value_heads"))
    expect_error("num_key_value_heads absent: defaults to 8 heads, k_proj is 4", d,
                 "model.layers.0.self_attn.k_proj.weight", "[128, 128]")


# ---- llama2.c variants --------------------------------------------------------------------

def run_llama2c_cases(root):
    with open(lf.STORIES, "rb") as f:
        raw = f.read()
    hdr = list(struct.unpack("<7i", raw[:28]))
    body = np.frombuffer(raw[28:], dtype="<f4")
    dim, hid, L, nh, nkv, vocab, seq = hdr
    hd = dim // nh
    kvd = nkv * hd

    def write(name, header=None, floats=None, tail=b"", cut=None):
        p = os.path.join(root, name)
        b = struct.pack("<7i", *(header or hdr)) + (body if floats is None else floats).tobytes()
        b += tail
        if cut is not None:
            b = b[:cut]
        with open(p, "wb") as f:
            f.write(b)
        return p

    p = write("l2c_truncated.bin", cut=len(raw) - 100)
    expect_error("llama2.c truncated by 100 bytes", p, "bytes but its header", "implies")
    p = write("l2c_trailing.bin", tail=b"\0" * 64)
    expect_error("llama2.c with trailing bytes", p, "bytes but its header")
    p = write("l2c_tiny.bin", cut=10)
    expect_error("llama2.c shorter than its header", p, "28-byte")
    for name, idx, val, frag in [
        ("l2c_dim_negative.bin", 0, -64, "dim"),
        ("l2c_heads_zero.bin", 3, 0, "n_heads"),
        ("l2c_heads_not_dividing.bin", 3, 7, "does not divide"),
        ("l2c_kv_not_dividing.bin", 4, 3, "n_kv_heads"),
        ("l2c_layers_huge.bin", 2, 1 << 30, "n_layers"),
        ("l2c_seq_zero.bin", 6, 0, "seq_len"),
    ]:
        h = list(hdr)
        h[idx] = val
        expect_error("llama2.c header " + name[4:-4], write(name, header=h), frag)
    h = list(hdr)
    h[5] = -vocab   # claims an unshared classifier that is not there
    expect_error("llama2.c claims a classifier it lacks", write("l2c_missing_wcls.bin", header=h),
                 "implies")
    p = os.path.join(root, "l2c_gguf_magic.bin")
    with open(p, "wb") as f:
        f.write(b"GGUF" + raw[4:])
    expect_error("llama2.c path holding another format", p, "out of range")

    # NaN / Inf at exact places: wq of layer 2, and rms_final.
    E, NA = vocab * dim, L * dim
    Q = L * dim * dim
    fl = body.copy()
    fl[E + NA + 2 * dim * dim + 5] = np.nan
    expect_error("NaN in layer 2 wq", write("l2c_nan_wq.bin", floats=fl), "layer 2 wq",
                 "non-finite")
    fl = body.copy()
    fin = E + NA + Q + 2 * L * kvd * dim + Q + NA + 3 * L * hid * dim
    fl[fin + 3] = np.inf
    expect_error("Inf in rms_final", write("l2c_inf_final.bin", floats=fl), "rms_final",
                 "non-finite")

    # Version headers we do not take.
    def v_header(version):
        b = struct.pack("<Ii7iB", 0x616B3432, version, *hdr, 1)
        return b + b"\0" * (256 - len(b))
    p = os.path.join(root, "l2c_v2.bin")
    with open(p, "wb") as f:
        f.write(v_header(2) + raw[28:])
    expect_error("llama2.c version 2 (Q8_0)", p, "version 2")
    p = os.path.join(root, "l2c_v9.bin")
    with open(p, "wb") as f:
        f.write(v_header(9) + raw[28:])
    expect_error("llama2.c unknown version", p, "version 9")
    p = os.path.join(root, "l2c_v1_truncated.bin")
    with open(p, "wb") as f:
        f.write(v_header(1) + raw[28:-8])
    expect_error("llama2.c version 1 truncated", p, "implies")


def run_path_cases(root):
    """Paths that are not regular files: a FIFO used to block open() for ever (the CLI hung; a
    server loading one could not shut down), so they must fail at once."""
    fifo = os.path.join(root, "model_fifo")
    os.mkfifo(fifo)
    expect_error("model path is a FIFO", fifo, "not a regular file", "FIFO")
    d = lf.make_hf_dir(root, "hf_config_fifo")
    lf.write_st(os.path.join(d, "model.safetensors"), lf.tiny_tensors())
    os.remove(os.path.join(d, "config.json"))
    os.mkfifo(os.path.join(d, "config.json"))
    expect_error("config.json is a FIFO", d, "config.json", "FIFO")
    d = lf.make_hf_dir(root, "hf_safetensors_fifo")
    os.mkfifo(os.path.join(d, "model.safetensors"))
    expect_error("model.safetensors is a FIFO", d, "model.safetensors", "FIFO")


def run_duplicate_key_cases(root):
    """A key twice in one JSON object: Python's json (transformers, the safetensors reader)
    keeps the last, cJSON's lookup the first, so the same file would be a different model here
    than there: refused, naming the key."""
    text = open(os.path.join(lf.TINY, "config.json")).read().rstrip()
    assert text.endswith("}")
    d = hf_case(root, "hf_cfg_dup_rope_theta",
                config_text=text[:-1] + ', "rope_theta": 500000.0}')
    expect_error("config.json with rope_theta twice", d, "rope_theta", "twice")
    items, meta, data = lf.read_st(os.path.join(lf.TINY, "model.safetensors"))
    header = {"__metadata__": meta} if meta else {}
    header.update(dict(items))
    hb = lf.encode_header(header).rstrip(b" ")
    assert b'"dtype":"F32"' in hb
    hb = hb.replace(b'"dtype":"F32"', b'"dtype":"F32","dtype":"F32"', 1)
    hb += b" " * ((-len(hb)) % 8)
    d = hf_case(root, "hf_st_dup_dtype", raw=lambda p: lf.write_raw_st(p, hb, data))
    expect_error("safetensors entry with dtype twice", d, "dtype", "twice")
    # a NUL inside a tensor name: cJSON ended the name there (loading 'model.norm.weight'),
    # where JSON allows no control byte in a string and other readers refuse the file
    hb = lf.encode_header(header).rstrip(b" ")
    assert b'"model.norm.weight"' in hb
    hb = hb.replace(b'"model.norm.weight"', b'"model.norm.weight\x00junk"', 1)
    hb += b" " * ((-len(hb)) % 8)
    d = hf_case(root, "hf_st_nul_in_name", raw=lambda p: lf.write_raw_st(p, hb, data))
    expect_error("safetensors tensor name with a NUL", d, "control byte 0x00")
    text = open(os.path.join(lf.TINY, "config.json")).read()
    assert '"llama"' in text
    d = hf_case(root, "hf_cfg_tab_in_string",
                config_text=text.replace('"llama"', '"lla\tma"', 1))
    expect_error("config.json string with a raw tab", d, "control byte 0x09")


with tempfile.TemporaryDirectory(prefix="claq_load_malformed_") as root:
    run_path_cases(root)
    run_duplicate_key_cases(root)
    run_hf_cases(root)
    run_valid_config_cases(root)
    run_llama2c_cases(root)

print("%d cases, %d failures%s" % (n_cases, len(failures),
                                   "" if CLAQ else " (claq logits not built: loader only)"))
if failures:
    print("\n".join(failures))
    sys.exit(1)
