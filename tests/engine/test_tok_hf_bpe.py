"""test_tok_hf_bpe.py — our HF tokenizer.json BPE (engine/eng_tokenizer.c) against a merge-rank BPE
reference written here (the HF tokenizers library is not installed), for tinystories-656k:
normalizer Prepend "▁" + Replace " " -> "▁", no pre-tokenizer, byte_fallback without byte
pieces, fuse_unk. >= 2,000 TinyStories lines and sentences, edge cases whose characters are not
in the vocabulary (-> fused <unk>, no crash), decode and streaming detok (Replace ▁, ByteFallback,
Fuse, Strip one leading space, special tokens skipped)."""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tok_common as tc  # noqa: E402

tc.need_env()

PATH = os.path.join(tc.SHARED, "models/tinystories-656k/tokenizer.json")
spec = json.load(open(PATH, encoding="utf-8"))
model = spec["model"]
vocab = dict(model["vocab"])
for a in spec["added_tokens"]:
    vocab[a["content"]] = a["id"]
inv = {i: p for p, i in vocab.items()}
special = {a["id"] for a in spec["added_tokens"] if a["special"]}
unk = vocab[model["unk_token"]]
merges = [m.split(" ", 1) if isinstance(m, str) else m for m in model["merges"]]
rank = {(a, b): r for r, (a, b) in enumerate(merges)}   # later duplicates win, as in HF


def ref_encode(text):
    """GPT-2-style BPE: merge every occurrence of the lowest-rank pair, left to right, until no
    pair has a rank (the same result as HF's heap, which merges the leftmost lowest rank)."""
    if not text:
        return []
    s = "\u2581" + text.replace(" ", "\u2581")
    word, prev_unk = [], False
    for ch in s:
        if ch in vocab:
            word.append(ch)
            prev_unk = False
            continue
        bs = ["<0x%02X>" % b for b in ch.encode("utf-8")]
        if model["byte_fallback"] and all(b in vocab for b in bs):
            word += bs
            prev_unk = False
        elif not (prev_unk and model["fuse_unk"]):
            word.append(None)   # <unk>: takes part in no merge of this vocab
            prev_unk = True
    while len(word) > 1:
        pairs = [(rank.get((a, b), 1 << 30), i) for i, (a, b) in
                 enumerate(zip(word[:-1], word[1:])) if a is not None and b is not None]
        best = min(pairs, default=(1 << 30, 0))[0]
        if best == 1 << 30:
            break
        a, b = merges[best]
        out, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(word[i])
                i += 1
        word = out
    return [unk if w is None else vocab[w] for w in word]


def ref_decode(ids):
    out, pend = [], bytearray()
    for i in ids:
        if i in special:
            continue
        p = inv[i]
        m = re.fullmatch(r"<0x([0-9A-F]{2})>", p)
        if m:
            pend.append(int(m.group(1), 16))
            continue
        out.append(pend.decode("utf-8", "replace"))
        pend = bytearray()
        out.append(p.replace("\u2581", " "))
    out.append(pend.decode("utf-8", "replace"))
    s = "".join(out)
    return s[1:] if s.startswith(" ") else s


raw = open(os.path.join(tc.SHARED, "data/tinystories/tinystories-train-head.txt"),
           encoding="utf-8").read()
paras = [l for l in raw.split("\n") if l.strip()]
sentences = [s for p in paras for s in re.split(r"(?<=[.!?]) ", p)][:1000]
texts = paras + sentences
real = len(texts)
texts += [raw[i:i + 600] for i in range(0, 60000, 10000)]   # chunks with newlines (-> <unk>)
texts += tc.EDGE_CASES
texts += tc.read_lines("data/wikitext-2-raw/wiki.test.raw", 80)
refs = [ref_encode(t) for t in texts]

rep = tc.Report("hf-bpe")
ours = tc.encode_batch(PATH, texts)
n_unk = 0
for t, want, got in zip(texts, refs, ours):
    n_unk += unk in want
    rep.check(got == want, "encode %r:\n   ours %s\n   ref  %s" % (t[:80], got[:30], want[:30]))
ours_bos = tc.encode_batch(PATH, texts[:100], bos=True)
for t, want, got in zip(texts[:100], refs, ours_bos):
    rep.check(got == [1] + want, "encode+bos %r" % t[:60])
rep.check(n_unk >= 20, "only %d inputs exercised <unk>" % n_unk)

# invalid UTF-8 must not crash; the result only has to be ids of the vocab
for got in tc.encode_batch(PATH, tc.INVALID_UTF8):
    rep.check(all(0 <= i < 2048 for i in got), "invalid UTF-8 gave %s" % got)

id_lists = list(refs)
id_lists += tc.random_id_lists(400, len(inv), set(), 11)
for streaming in (False, True):
    dec = tc.decode_batch(PATH, id_lists, streaming)
    for ids, got in zip(id_lists, dec):
        want = ref_decode(ids).encode("utf-8")
        rep.check(got == want, "%s %s:\n   ours %r\n   ref  %r" % (
            "detok" if streaming else "decode", ids[:20], got[:80], want[:80]))
print("tinystories-656k: %d TinyStories lines/sentences, %d other inputs (%d with <unk>), "
      "%d decode sequences" % (real, len(texts) - real, n_unk, len(id_lists)))
rep.check(real >= 2000, "too few TinyStories lines (%d)" % real)
sys.exit(0 if rep.done() else 1)
