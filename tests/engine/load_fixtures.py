"""load_fixtures.py — helpers shared by the test_load_*.py scripts: read and write safetensors
files with numpy (8-byte LE header length + JSON header padded with spaces to 8 bytes + data),
build variant model directories in a temp dir, and run `$CLAQ_BIN/test_load_open PATH`.
Not a test itself (ctest only picks up test_*.py)."""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

SHARED = os.environ.get("CLAQ_SHARED", "")
BIN = os.environ.get("CLAQ_BIN", "")
TINY = os.path.join(SHARED, "models", "tinystories-656k")
STORIES = os.path.join(SHARED, "models", "stories260K.bin")

DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "I32": 4, "I64": 8}


def need_env():
    """Exit 77 (skip) when the shared folder or the build is missing."""
    tool = os.path.join(BIN, "test_load_open")
    if not SHARED or not os.path.isdir(TINY) or not os.path.isfile(STORIES):
        print("CLAQ_SHARED models missing: skipping")
        sys.exit(77)
    if not os.access(tool, os.X_OK):
        print("test_load_open not built: skipping")
        sys.exit(77)


def read_st(path):
    """Returns (ordered list of (name, entry), metadata or None, data bytes)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    items = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
    return items, meta, raw[8 + n:]


def st_arrays(path):
    """name -> numpy float32 array (F32 files only)."""
    items, _, data = read_st(path)
    out = {}
    for name, e in items:
        b, t = e["data_offsets"]
        assert e["dtype"] == "F32"
        out[name] = np.frombuffer(data[b:t], dtype="<f4").reshape(e["shape"])
    return out


def encode_header(header, align=8, extra_pad=0):
    """JSON header bytes padded with spaces to a multiple of align (then extra_pad more)."""
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if align > 1:
        h += b" " * ((-len(h)) % align)
    return h + b" " * extra_pad


def write_st(path, tensors, meta=None, align=8, extra_pad=0):
    """tensors: list of (name, dtype str, shape list, raw bytes). Offsets are computed."""
    header = {}
    if meta is not None:
        header["__metadata__"] = meta
    off = 0
    blobs = []
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = encode_header(header, align, extra_pad)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_raw_st(path, header_bytes, data, hlen=None):
    """Writes a safetensors file with an arbitrary header and a possibly lying length."""
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes) if hlen is None else hlen))
        f.write(header_bytes)
        f.write(data)


def to_bf16_bytes(a):
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4")
    # round to nearest even (exact for TinyStories-656K, whose weights are bf16 values)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
    return r.tobytes()


def to_f16_bytes(a):
    return np.ascontiguousarray(a, dtype="<f4").astype("<f2").tobytes()


def tiny_tensors(conv=None):
    """The TinyStories-656K tensors as (name, dtype, shape, bytes); conv picks the dtype."""
    out = []
    for name, arr in st_arrays(os.path.join(TINY, "model.safetensors")).items():
        if conv == "F16":
            out.append((name, "F16", arr.shape, to_f16_bytes(arr)))
        elif conv == "BF16":
            out.append((name, "BF16", arr.shape, to_bf16_bytes(arr)))
        else:
            out.append((name, "F32", arr.shape, np.ascontiguousarray(arr, "<f4").tobytes()))
    return out


def make_hf_dir(root, name, config_edit=None, config_text=None, with_tokenizer=True):
    """Creates root/name with TinyStories' config.json (optionally edited) and tokenizer files;
    the caller writes the weights. Returns the directory path."""
    d = os.path.join(root, name)
    os.makedirs(d)
    if config_text is None:
        with open(os.path.join(TINY, "config.json")) as f:
            cfg = json.load(f)
        if config_edit:
            config_edit(cfg)
        config_text = json.dumps(cfg, indent=2)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(config_text)
    if with_tokenizer:
        for fn in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(TINY, fn), os.path.join(d, fn))
    return d


def open_model(path, timeout=120):
    """Runs test_load_open PATH; returns (returncode, stdout, stderr)."""
    p = subprocess.run([os.path.join(BIN, "test_load_open"), path], capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def summary(stdout):
    """Parses test_load_open's output into {"config": str, "tensors": {name: (dtype, r, c, sum)},
    "norms": {name: sum}}."""
    out = {"config": "", "tensors": {}, "norms": {}, "quant": "", "tied": None}
    for line in stdout.splitlines():
        w = line.split()
        if not w:
            continue
        if w[0] == "OK":
            out["quant"] = w[4]
        elif w[0] == "config":
            out["config"] = line
        elif w[0] == "tensor":
            out["tensors"][w[1]] = (w[2], int(w[3]), int(w[4]), float(w[6]))
        elif w[0] == "norm":
            out["norms"][w[1]] = float(w[4])
        elif w[0] == "tied_view":
            out["tied"] = int(w[1])
    return out
