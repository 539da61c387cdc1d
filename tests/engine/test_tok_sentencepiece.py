"""test_tok_sentencepiece.py — our SentencePiece BPE (engine/eng_tokenizer.c) encodes and decodes
exactly as the `sentencepiece` library does, for Llama 2's tokenizer.model (identity normalizer,
byte fallback) and small-lm-5m's (nmt_nfkc charsmap, remove_extra_whitespaces), on >= 2,000 real
lines of wikitext, PTB and TinyStories plus hand-made edge cases, invalid UTF-8 and random id
sequences. The C side runs through $CLAQ_BIN/test_tok_cli in one batch per check."""
import os
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


def run(model_rel, rep):
    path = os.path.join(tc.SHARED, model_rel)
    sp = spm.SentencePieceProcessor(model_file=path)
    texts = lines()
    real = len(texts)
    texts += tc.EDGE_CASES
    ours = tc.encode_batch(path, texts + tc.INVALID_UTF8)
    for t, got in zip(texts + tc.INVALID_UTF8, ours):
        want = sp.encode(t)
        rep.check(got == want, "%s encode %r:\n   ours %s\n   spm  %s" % (
            model_rel, t[:80], got[:40], want[:40]))
    ours_bos = tc.encode_batch(path, texts[:200], bos=True)
    for t, got in zip(texts[:200], ours_bos):
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


rep = tc.Report("sentencepiece")
n1 = run("models/tokenizer.model", rep)
n2 = run("models/small-lm-5m/tokenizer.model", rep)
rep.check(n1 >= 2000 and n2 >= 2000, "too few real lines (%d, %d)" % (n1, n2))
sys.exit(0 if rep.done() else 1)
