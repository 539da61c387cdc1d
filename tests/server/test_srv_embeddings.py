"""test_srv_embeddings.py — POST /v1/embeddings against an independent NumPy forward pass of
stories260K (llama2.c layout, written here from the format description, not from our C code):
the vector is the mean of the prompt's final-normed hidden states, L2-normalised, within 1e-4
of the reference. Also: OpenAI's response shape and usage; a list of inputs gives exactly the
vectors the inputs give one by one, and concurrently under a KV pool too small for them
(preemption); token-id input equals the same text; base64 decodes to the same floats; bad
input (missing, empty, wrong types, dimensions, encoding_format, over the context) is a 400
naming the field."""
import base64
import json
import os
import struct
import sys
import threading

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srv_harness import Checker, Server, require  # noqa: E402

mdir = require("stories260K.bin")
C = Checker()


def load_stories(path):
    raw = open(path, "rb").read()
    dim, hidden, nl, nh, nkv, vocab, seq = struct.unpack_from("<7i", raw, 0)
    a = np.frombuffer(raw, dtype="<f4", offset=28)
    hd, kvd = dim // nh, nkv * (dim // nh)
    shapes = [("emb", (abs(vocab), dim)), ("rms_att", (nl, dim)), ("wq", (nl, dim, dim)),
              ("wk", (nl, kvd, dim)), ("wv", (nl, kvd, dim)), ("wo", (nl, dim, dim)),
              ("rms_ffn", (nl, dim)), ("w1", (nl, hidden, dim)), ("w2", (nl, dim, hidden)),
              ("w3", (nl, hidden, dim)), ("rms_final", (dim,))]
    w, o = {}, 0
    for name, shp in shapes:
        n = int(np.prod(shp))
        w[name] = a[o:o + n].reshape(shp).astype(np.float64)
        o += n
    return w, dict(dim=dim, nl=nl, nh=nh, nkv=nkv, hd=hd)


def rmsnorm(x, g):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * g


def rope(x, pos, hd):   # x [n_heads, hd], interleaved pairs (2i, 2i+1)
    i = np.arange(0, hd, 2)
    f = pos / (10000.0 ** (i / hd))
    c, s = np.cos(f), np.sin(f)
    y = x.copy()
    y[:, 0::2] = x[:, 0::2] * c - x[:, 1::2] * s
    y[:, 1::2] = x[:, 0::2] * s + x[:, 1::2] * c
    return y


def ref_embedding(w, cfg, ids):
    dim, nl, nh, nkv, hd = cfg["dim"], cfg["nl"], cfg["nh"], cfg["nkv"], cfg["hd"]
    K = [[] for _ in range(nl)]
    V = [[] for _ in range(nl)]
    acc = np.zeros(dim)
    for pos, t in enumerate(ids):
        x = w["emb"][t].copy()
        for l in range(nl):
            h = rmsnorm(x, w["rms_att"][l])
            q = rope((w["wq"][l] @ h).reshape(nh, hd), pos, hd)
            k = rope((w["wk"][l] @ h).reshape(nkv, hd), pos, hd)
            v = (w["wv"][l] @ h).reshape(nkv, hd)
            K[l].append(k)
            V[l].append(v)
            ks, vs = np.stack(K[l]), np.stack(V[l])   # [pos + 1, nkv, hd]
            out = np.zeros((nh, hd))
            for hh in range(nh):
                g = hh // (nh // nkv)
                sc = ks[:, g, :] @ q[hh] / np.sqrt(hd)
                p = np.exp(sc - sc.max())
                out[hh] = (p / p.sum()) @ vs[:, g, :]
            x = x + w["wo"][l] @ out.reshape(-1)
            h = rmsnorm(x, w["rms_ffn"][l])
            a1, a3 = w["w1"][l] @ h, w["w3"][l] @ h
            x = x + w["w2"][l] @ (a1 / (1 + np.exp(-a1)) * a3)
        acc += rmsnorm(x, w["rms_final"])
    return acc / np.linalg.norm(acc)


def emb(srv, body):
    st, _, j = srv.post("/v1/embeddings", body)
    return st, j


w, cfg = load_stories(os.path.join(mdir, "stories260K.bin"))
texts = ["Lily and Ben went to the park", "Zoo", "The little dog was sad because it lost its ball",
         "Once upon a time there was a big red ball. " * 6]
srv = Server("stories260K.bin", "tok512.bin", args=["--kv-dtype", "f32"])
try:
    st, j = emb(srv, {"input": texts, "model": "stories260K.bin"})
    C.check(st == 200 and j["object"] == "list" and len(j["data"]) == len(texts),
            "list answer: %s" % json.dumps(j)[:200])
    vecs = [np.array(d["embedding"]) for d in j["data"]]
    C.check(all(d["object"] == "embedding" and d["index"] == i for i, d in enumerate(j["data"])),
            "data entries in order")
    ntok = 0
    for i, t in enumerate(texts):
        ids = srv.post("/tokenize", {"prompt": t})[2]["tokens"]
        ntok += len(ids)
        ref = ref_embedding(w, cfg, ids)
        err = float(np.max(np.abs(vecs[i] - ref)))
        print("input %d: max |server - numpy| %.2e" % (i, err))
        C.check(len(vecs[i]) == cfg["dim"] and err < 1e-4,
                "input %d (%d tokens): |server - numpy| = %.2e" % (i, len(ids), err))
        st, j1 = emb(srv, {"input": t})
        C.check(st == 200 and j1["data"][0]["embedding"] == j["data"][i]["embedding"],
                "input %d alone = in the list, exactly" % i)
        st, j2 = emb(srv, {"input": ids})
        C.check(st == 200 and j2["data"][0]["embedding"] == j["data"][i]["embedding"],
                "input %d as token ids = as text" % i)
    C.check(j["usage"] == {"prompt_tokens": ntok, "total_tokens": ntok},
            "usage counts the prompt tokens: %s (want %d)" % (j["usage"], ntok))
    st, jb = emb(srv, {"input": texts[0], "encoding_format": "base64"})
    raw = base64.b64decode(jb["data"][0]["embedding"])
    dec = list(struct.unpack("<%df" % (len(raw) // 4), raw))
    C.check(st == 200 and np.allclose(dec, vecs[0], rtol=0, atol=1e-7) and len(dec) == cfg["dim"],
            "base64 decodes to the float answer")
    for body, field in (({}, "input"), ({"input": []}, "input"), ({"input": [[]]}, "input"),
                        ({"input": 5}, "input"), ({"input": [1, "a"]}, "input"),
                        ({"input": ""}, "input"), ({"input": ["a", ""]}, "input"),
                        ({"input": [99999]}, "input"), ({"input": "x", "dimensions": 3},
                                                        "dimensions"),
                        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
                        ({"input": "x", "dimensions": str(cfg["dim"])}, "dimensions"),
                        ({"input": ["a"] * 100}, "input"),
                        ({"input": "Zoo " * 2000}, "input")):
        st, jj = emb(srv, body)
        C.check(st == 400 and jj["error"]["param"] == field and
                (body.get("dimensions") != str(cfg["dim"]) or
                 "must be a number" in jj["error"]["message"]),
                "bad %s -> 400 naming %s: %d %s" % (json.dumps(body)[:60], field, st,
                                                   json.dumps(jj)[:160]))
finally:
    C.check(srv.stop() == 0, "clean exit")

# concurrently in a pool that cannot hold them all at once: preempted embeddings recompute
srv = Server("stories260K.bin", "tok512.bin",
             args=["--kv-dtype", "f32", "--kv-cache-tokens", "512", "--step-delay-ms", "2",
                   "--prefill-chunk", "16"])
try:
    many = texts * 4
    res = [None] * len(many)
    gen = "Once upon a time " * 20   # long generations beside them fill the pool

    def worker(i):
        if i < len(many):
            res[i] = emb(srv, {"input": many[i]})
        else:
            srv.post("/v1/completions", {"prompt": gen, "max_tokens": 150, "temperature": 0})

    th = [threading.Thread(target=worker, args=(i,)) for i in range(len(many) + 4)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    for i, (st, j) in enumerate(res):
        C.check(st == 200 and np.array_equal(np.array(j["data"][0]["embedding"]),
                                             vecs[i % len(texts)]),
                "concurrent input %d = alone" % i)
    print("preemptions with embeddings in flight: %d" % srv.metric("claq_preemptions_total"))
finally:
    C.check(srv.stop() == 0, "clean exit")
C.done()
