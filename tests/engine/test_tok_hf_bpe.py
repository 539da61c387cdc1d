"""test_tok_hf_bpe.py — our HF tokenizer.json BPE (engine/eng_tokenizer.c) against a merge-rank BPE
reference written here (the HF tokenizers library is not installed), for tinystories-656k:
normalizer Prepend "▁" + Replace " " -> "▁", no pre-tokenizer, byte_fallback without byte
pieces, fuse_unk. >= 2,000 TinyStories lines and sentences, edge cases whose characters are not
in the vocabulary (-> fused <unk>, no crash), decode and streaming detok (Replace ▁, ByteFallback,
Fuse, Strip one leading space, special tokens skipped). Also a tokenizer.json with [piece, score]
vocab and no merges, built from Llama 2's model, against the sentencepiece library, and the
tinystories vocab behind a Metaspace pre-tokenizer against a per-word reference."""
import json
import os
import re
import sys
import tempfile

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
    """The tokenizer as shipped: Prepend + Replace normalizer, the whole text one word."""
    if not text:
        return []
    return ref_encode_word("\u2581" + text.replace(" ", "\u2581"))


def ref_encode_word(s):
    """GPT-2-style BPE: merge every occurrence of the lowest-rank pair, left to right, until no
    pair has a rank (the same result as HF's heap, which merges the leftmost lowest rank)."""
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

# A tokenizer.json without merges whose vocab is [piece, score] pairs (Unigram-style exports):
# merged by score, it must reproduce SentencePiece BPE. Built here from Llama 2's model.
import sentencepiece as spm  # noqa: E402

sp = spm.SentencePieceProcessor(model_file=os.path.join(tc.SHARED, "models/tokenizer.model"))
scored = {
    "added_tokens": [{"id": i, "content": sp.id_to_piece(i), "special": True}
                     for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)],
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": None,
    "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": True,
              "vocab": [[sp.id_to_piece(i), sp.get_score(i)] for i in range(sp.get_piece_size())]},
}
with tempfile.TemporaryDirectory() as d:
    jpath = os.path.join(d, "tokenizer.json")
    with open(jpath, "w", encoding="utf-8") as f:
        json.dump(scored, f)
    stexts = tc.read_lines("data/wikitext-2-raw/wiki.test.raw", 400) + paras[:300] + tc.EDGE_CASES
    for t, got in zip(stexts, tc.encode_batch(jpath, stexts)):
        rep.check(got == sp.encode(t), "scored tokenizer.json %r:\n   ours %s\n   spm  %s" % (
            t[:60], got[:30], sp.encode(t)[:30]))
print("scored-vocab tokenizer.json == sentencepiece on %d inputs" % len(stexts))

# The same with 33,000 unused pieces in front, so that every id, the <0xHH> byte pieces
# included, sits past 32767 (byte-fallback ids were once kept in 16 bits).
SHIFT = 33000
shifted = dict(scored)
shifted["added_tokens"] = [dict(a, id=a["id"] + SHIFT) for a in scored["added_tokens"]]
shifted["model"] = dict(scored["model"], vocab=[["<unused%d>" % i, -1e9] for i in range(SHIFT)] +
                        scored["model"]["vocab"])
with tempfile.TemporaryDirectory() as d:
    jpath = os.path.join(d, "tokenizer.json")
    with open(jpath, "w", encoding="utf-8") as f:
        json.dump(shifted, f)
    n_bytes = 0
    for t, got in zip(stexts, tc.encode_batch(jpath, stexts)):
        want = [i + SHIFT for i in sp.encode(t)]
        n_bytes += sum(1 for i in want if SHIFT + 3 <= i < SHIFT + 259)
        rep.check(got == want, "ids past 32767 %r:\n   ours %s\n   want %s" % (
            t[:60], got[:30], want[:30]))
    rep.check(n_bytes > 0, "no byte-fallback ids in the shifted test")
print("tokenizer.json with ids past 32767 (%d byte-fallback ids) == sentencepiece + %d" % (
    n_bytes, SHIFT))


# The same vocab behind a Metaspace pre-tokenizer (prepend_scheme always, split): BPE runs per
# word, each word starting at a U+2581.
def ref_metaspace(text):
    s = text.replace(" ", "\u2581")
    if not s.startswith("\u2581"):
        s = "\u2581" + s
    words = [w for w in re.split("(?=\u2581)", s) if w]
    return [i for w in words for i in ref_encode_word(w)]


meta = dict(spec)
meta["normalizer"] = None
meta["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                         "split": True}
with tempfile.TemporaryDirectory() as d:
    jpath = os.path.join(d, "tokenizer.json")
    with open(jpath, "w", encoding="utf-8") as f:
        json.dump(meta, f)
    mtexts = [t for t in paras[:300] + sentences[:300] + tc.EDGE_CASES if t]
    for t, got in zip(mtexts, tc.encode_batch(jpath, mtexts)):
        want = ref_metaspace(t)
        rep.check(got == want, "metaspace %r:\n   ours %s\n   ref  %s" % (t[:60], got[:30],
                                                                          want[:30]))
print("Metaspace tokenizer.json == per-word reference on %d inputs" % len(mtexts))

print("tinystories-656k: %d TinyStories lines/sentences, %d other inputs (%d with <unk>), "
      "%d decode sequences" % (real, len(texts) - real, n_unk, len(id_lists)))
rep.check(real >= 2000, "too few TinyStories lines (%d)" % real)
sys.exit(0 if rep.done() else 1)
