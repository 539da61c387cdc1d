"""test_tok_sentencepiece.py — our SentencePiece BPE (engine/eng_tokenizer.c) encodes and decodes
exactly as the `sentencepiece` library does, for Llama 2's tokenizer.model (identity normalizer,
byte fallback) and small-lm-5m's (nmt_nfkc charsmap, remove_extra_whitespaces), on >= 2,000 real
lines of wikitext, PTB and TinyStories plus hand-made edge cases, invalid UTF-8 and random id
sequences, and 20,000 varied strings (scripts, emoji, code, white space, random code points)
through Llama 2's vocabulary (the SentencePiece layout Mistral and Yi use); plus two variants of Llama 2's model re-serialized here (UNUSED pieces, which
SentencePiece resegments, and no byte fallback, where unknown runs become one <unk>). The C side runs through $CLAQ_BIN/test_tok_cli in one batch per check."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tok_common as tc  # noqa: E402

tc.need_env()
import sentencepiece as spm  # noqa: E402


def lines():
    out = tc.read_lines("data/wikitext-2-raw/wiki.test.raw", 1200, keep_empty=True)
    out += tc.read_lines("data/ptb/ptb.test.txt", 600)
    out += tc.read_lines("data/tinystories/tinystories-train-head.txt", 600)
    # multi-line chunks: newlines inside the text
    raw = open(os.path.join(tc.SHARED, "data/tinystories/tinystories-train-head.txt"),
               encoding="utf-8").read()
    out += [raw[i:i + 700] for i in range(0, 70000, 7000)]
    return out


# text that gives more ids than bytes: small-lm-5m's NFKC turns U+FDFA (3 bytes) into 18
# Arabic characters, 26 ids with byte fallback; callers that size the id buffer from the byte
# count must retry with the count the encoder reports
EXPANDING = ["\ufdfa", "\ufdfax" * 300, "\ufdfb\ufdfa" * 40, "a \ufdfa b", "\ufdfa<s>"]


def run(model_rel, rep):
    path = os.path.join(tc.SHARED, model_rel)
    sp = spm.SentencePieceProcessor(model_file=path)
    texts = lines()
    real = len(texts)
    texts += tc.EDGE_CASES + EXPANDING
    ours = tc.encode_batch(path, texts + tc.INVALID_UTF8)
    for t, got in zip(texts + tc.INVALID_UTF8, ours):
        want = sp.encode(t)
        rep.check(got == want, "%s encode %r:\n   ours %s\n   spm  %s" % (
            model_rel, t[:80], got[:40], want[:40]))
    with_bos = texts[:200] + EXPANDING
    for t, got in zip(with_bos, tc.encode_batch(path, with_bos, bos=True)):
        rep.check(got == [sp.bos_id()] + sp.encode(t), "%s encode+bos %r" % (model_rel, t[:60]))

    # decode: what SentencePiece encoded, with BOS/EOS around, and random id sequences
    id_lists = [sp.encode(t) for t in texts]
    id_lists += [[sp.bos_id()] + sp.encode(t) + [sp.eos_id()] for t in texts[:300]]
    byte_ids = [i for i in range(sp.get_piece_size()) if sp.is_byte(i)]
    id_lists += tc.random_id_lists(400, sp.get_piece_size(), {sp.unk_id()}, 7, byte_ids)
    for streaming in (False, True):
        dec = tc.decode_batch(path, id_lists, streaming)
        for ids, got in zip(id_lists, dec):
            want = sp.decode(ids).encode("utf-8")
            rep.check(got == want, "%s %s %s:\n   ours %r\n   spm  %r" % (
                model_rel, "detok" if streaming else "decode", ids[:20], got[:80], want[:80]))
    print("%s: %d real lines, %d edge cases, %d invalid-UTF-8 inputs, %d decode sequences" % (
        model_rel, real, len(tc.EDGE_CASES), len(tc.INVALID_UTF8), len(id_lists)))
    return real


# ---- variants of Llama 2's model, re-serialized here: UNUSED pieces (SentencePiece splits them
# back into the pieces that made them) and no byte fallback (unknown runs -> one <unk>) ----

def pb_fields(b):
    i = 0
    while i < len(b):
        key, i = pb_varint(b, i)
        f, w = key >> 3, key & 7
        if w == 0:
            v, i = pb_varint(b, i)
        elif w == 5:
            v, i = b[i:i + 4], i + 4
        elif w == 1:
            v, i = b[i:i + 8], i + 8
        else:
            n, i = pb_varint(b, i)
            v, i = b[i:i + n], i + n
        yield f, w, v


def pb_varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def pb_enc_varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        out.append(c | (0x80 if v else 0))
        if not v:
            return bytes(out)


def pb_serialize(fields):
    out = bytearray()
    for f, w, v in fields:
        out += pb_enc_varint(f << 3 | w)
        if w == 0:
            out += pb_enc_varint(v)
        elif w in (1, 5):
            out += v
        else:
            out += pb_enc_varint(len(v)) + v
    return bytes(out)


def variant(src, retype, drop_bytes, trainer_edit):
    """Model proto bytes with piece types changed (retype: id -> type), byte pieces dropped
    and trainer_spec varint fields set (trainer_edit: field -> value)."""
    top = list(pb_fields(open(src, "rb").read()))
    out, pid = [], 0
    for f, w, v in top:
        if f == 1:
            sub = list(pb_fields(v))
            typ = next((x for g, _, x in sub if g == 3), 1)
            if drop_bytes and typ == 6:
                pid += 1
                continue
            typ = retype.get(pid, typ)
            sub = [x for x in sub if x[0] != 3] + [(3, 0, typ)]
            v = pb_serialize(sub)
            pid += 1
        elif f == 2:
            sub = [x for x in pb_fields(v) if x[0] not in trainer_edit]
            v = pb_serialize(sub + [(k, 0, val) for k, val in trainer_edit.items()])
        out.append((f, w, v))
    return pb_serialize(out)


def run_variant(name, proto, texts, rep):
    import tempfile
    sp = spm.SentencePieceProcessor(model_proto=proto)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "tokenizer.model")
        open(path, "wb").write(proto)
        for t, got in zip(texts, tc.encode_batch(path, texts)):
            want = sp.encode(t)
            rep.check(got == want, "%s %r:\n   ours %s\n   spm  %s" % (name, t[:60], got[:30],
                                                                      want[:30]))
        # our decode omits <unk> (a special token); SentencePiece writes " \u2047 ": compare
        # the sequences without one
        known = [t for t in texts if sp.unk_id() not in sp.encode(t)]
        rep.check(len(known) > len(texts) // 2, "%s: too few inputs without <unk>" % name)
        dec = tc.decode_batch(path, [sp.encode(t) for t in known])
        for t, got in zip(known, dec):
            want = sp.decode(sp.encode(t)).encode("utf-8")
            rep.check(got == want, "%s decode %r: %r vs %r" % (name, t[:40], got[:60], want[:60]))
    print("%s: %d inputs" % (name, len(texts)))


def run_cli(rep):
    """The claq tools size their id buffers through eng_tokenizer_encode_alloc: `claq tokenize`
    prints exactly SentencePiece's ids for expanding text, and `claq generate` takes it as a
    prompt (it used to print ids read past the buffer, and to reject id 29800 as outside the
    vocabulary)."""
    claq = os.path.join(tc.BIN, "claq")
    model = os.path.join(tc.SHARED, "models/small-lm-5m")
    path = os.path.join(model, "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=path)
    for t in EXPANDING:
        r = subprocess.run([claq, "tokenize", "--tokenizer", path, "--text", t],
                           capture_output=True, timeout=120)
        want = [sp.bos_id()] + sp.encode(t)
        got = ([int(x) for x in r.stdout.decode().split()] if r.returncode == 0
               else r.stderr.decode()[-300:])
        rep.check(got == want,
                  "claq tokenize %r:\n   ours %s\n   spm  %s" % (t[:20], got[:30], want[:30]))
    r = subprocess.run([claq, "generate", "--model", model, "--prompt", EXPANDING[0],
                        "--max-tokens", "3", "--threads", "1", "--temperature", "0"],
                       capture_output=True, timeout=300)
    rep.check(r.returncode == 0, "claq generate --prompt %r: rc %d: %s" % (
        EXPANDING[0], r.returncode, r.stderr.decode()[-300:]))
    print("claq tokenize: %d expanding texts; claq generate: rc %d" % (len(EXPANDING),
                                                                      r.returncode))


rep = tc.Report("sentencepiece")
run_cli(rep)
n1 = run("models/tokenizer.model", rep)
n2 = run("models/small-lm-5m/tokenizer.model", rep)
rep.check(n1 >= 2000 and n2 >= 2000, "too few real lines (%d, %d)" % (n1, n2))

llama = os.path.join(tc.SHARED, "models/tokenizer.model")
base = spm.SentencePieceProcessor(model_file=llama)

# 20,000 varied strings (tok_common.varied_strings: scripts, emoji, code, white space runs, random
# code points of every plane) through Llama 2's vocabulary, the layout Mistral and Yi share
varied = tc.varied_strings(20000, 4321)
bad = 0
for t, got in zip(varied, tc.encode_batch(llama, varied)):
    if got != base.encode(t):
        bad += 1
        if bad <= 5:
            print("varied encode %r:\n   ours %s\n   spm  %s" % (t[:80], got[:30],
                                                              base.encode(t)[:30]))
rep.check(bad == 0, "varied strings: %d of %d encode differently" % (bad, len(varied)))
vids = [base.encode(t) for t in varied[::4]]
for streaming in (False, True):
    dec = tc.decode_batch(llama, vids, streaming)
    dbad = sum(1 for ids, got in zip(vids, dec) if got != base.decode(ids).encode("utf-8"))
    rep.check(dbad == 0, "varied strings: %d of %d %s differently" %
              (dbad, len(vids), "detok" if streaming else "decode"))
print("models/tokenizer.model: %d varied strings, %d mismatches; %d decoded both ways" %
      (len(varied), bad, len(vids)))

some = tc.read_lines("data/wikitext-2-raw/wiki.test.raw", 300) + tc.EDGE_CASES
unused = {i: 5 for i in range(300, 12000, 3) if len(base.id_to_piece(i)) > 1}
run_variant("llama+unused", variant(llama, unused, False, {}), some, rep)
n_unused = sum(1 for t in some[:300] for i in base.encode(t) if i in unused)
rep.check(n_unused > 100, "the UNUSED variant touched only %d tokens" % n_unused)
run_variant("llama-no-byte-fallback", variant(llama, {}, True, {35: 0}), some, rep)
# user-defined pieces are matched whole (longest first) before any merging
user = {base.piece_to_id(p): 4 for p in ["\u2581the", "ing", "er", "\u2581\u2581", "\u2581(",
                                         "),", "\u2581=", "ed"]
        if base.piece_to_id(p) != base.unk_id()}
rep.check(len(user) >= 5, "user-defined candidates missing (%d)" % len(user))
run_variant("llama+user-defined", variant(llama, user, False, {}), some, rep)
sys.exit(0 if rep.done() else 1)
