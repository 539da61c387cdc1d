"""test_tok_hf_added_normalized.py — added tokens that tokenizer.json marks "normalized" are
matched on the normalized text, as HF's AddedVocabulary does, when special-token text is parsed
(claq tokenize --special, chat templates). tinystories-656k's <unk>, <|start_story|> and
<|end_story|> are such tokens behind a Prepend("\u2581") + Replace(" ", "\u2581") normalizer, so
HF looks for "\u2581<|end_story|>": 'a <|end_story|>' ends with the token, 'a<|end_story|>' is
plain text, '<unk>x' is <unk> then x. Compared with @huggingface/tokenizers (tokenizers.js, HF's
own JS port, through tok_bytelevel_ref.mjs) on hand-made cases and TinyStories lines with
the three tokens inserted at random, with and without a space before them. Left out: texts
where tokenizers.js looks a section up whole before normalizing it and takes one equal to a
token's raw or normalized text as that token, where HF's Rust normalizes and splits it (the
second of two adjacent tokens; the text "\u2581<unk>"), so tokens are never adjacent here.
Needs node and tests/engine/node_modules (deploy/install-deps.sh); skips (77) when npm cannot
install them."""
# ctest-cost: 10
import json
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tok_common as tc  # noqa: E402

tc.need_env()
HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.path.join(tc.SHARED, "models/tinystories-656k")
TOK = os.path.join(DIR, "tokenizer.json")
SPECIALS = ["<unk>", "<|start_story|>", "<|end_story|>"]

# (text, HF's ids with add_special_tokens) from the review: the first two differed
KNOWN = [("a <|end_story|>", [1, 85, 2]), ("<unk>x", [1, 0, 76])]

HAND = ["a <|end_story|>", "<unk>x", "a<|end_story|>", "<|start_story|>Once upon a time",
        " <|end_story|>", "x  <unk>", "a <|end_story|> b<|end_story|>", "<|end_story|>",
        "The end.<|end_story|>", "The end. <|end_story|>\n<|start_story|>", " <unk> ",
        "a\u2581<|end_story|>", "<|end_story|> x", "<unk", "<|end_story|",
        "tab\t<unk>", "newline\n<unk>", "two  <|end_story|>", "<|start_story|> <|end_story|>"]


def need_node_modules():
    r = subprocess.run(["bash", os.path.join(HERE, "..", "npm_ensure.sh"), HERE,
                        "@huggingface/tokenizers"], timeout=600)
    if r.returncode != 0:
        print("SKIP: the reference packages are not installed and npm could not install them")
        sys.exit(77)


def ref_encode(texts):
    payload = "".join(json.dumps(t) + "\n" for t in texts).encode()
    r = subprocess.run(["node", os.path.join(HERE, "tok_bytelevel_ref.mjs"), "encode", DIR, "1"],
                       input=payload, capture_output=True, timeout=600, cwd=HERE)
    if r.returncode != 0:
        raise SystemExit("node failed: %s" % r.stderr.decode()[-3000:])
    out = r.stdout.decode().split("\n")
    return [[int(x) for x in l.split()] for l in out[:len(texts)]]


def with_specials(rng, line):
    """line with 1-3 special tokens inserted at word edges, never next to each other."""
    words = line.split(" ")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(words) + 1)
        tok = rng.choice(SPECIALS)
        if i < len(words) and rng.random() < 0.5:
            words[i] = words[i] + tok   # glued to the word before: plain text for HF
        else:
            words.insert(i, tok)        # its own word: a space before it, unless first
    text = " ".join(words)
    for a in SPECIALS:
        for b in SPECIALS:
            text = text.replace(a + b, a + " x " + b)
    return text


def main():
    need_node_modules()
    rng = random.Random(5)
    lines = tc.read_lines("data/tinystories/tinystories-train-head.txt", 1500)
    texts = HAND + [with_specials(rng, l) for l in lines]
    ours = tc.encode_batch(TOK, texts, bos=True, special=True)
    ref = ref_encode(texts)
    fails = 0
    for text, want in KNOWN:
        got = ours[texts.index(text)]
        if got != want:
            print("FAIL %r: ours %s, HF %s" % (text, got, want))
            fails += 1
    bad = [i for i in range(len(texts)) if ours[i] != ref[i]]
    for i in bad[:8]:
        print("MISMATCH %r\n  ours %s\n  ref  %s" % (texts[i][:100], ours[i][:40], ref[i][:40]))
    n_tok = sum(1 for ids in ref for x in ids[1:] if x in (0, 1, 2))
    print("tinystories-656k: %d texts with special parsing, %d special ids in the reference, "
          "%d mismatches" % (len(texts), n_tok, len(bad)))
    if n_tok < 500:
        print("FAIL: too few special tokens matched (%d)" % n_tok)
        fails += 1
    fails += len(bad)
    print("FAIL" if fails else "PASS")
    return 1 if fails else 0


sys.exit(main())
