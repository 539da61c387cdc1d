"""tok_common.py — helpers shared by the tokenizer acceptance tests (test_tok_*.py): the real
text lines, the hand-made edge cases, and batch calls of $CLAQ_BIN/test_tok_cli (one process
per batch: --encode / --decode / --detok). Not a test itself (no test_ prefix)."""
import os
import random
import subprocess
import sys

SHARED = os.environ.get("CLAQ_SHARED", "")
BIN = os.environ.get("CLAQ_BIN", "")
CLI = os.path.join(BIN, "test_tok_cli")


def need_env():
    if not SHARED or not os.path.isdir(SHARED):
        print("CLAQ_SHARED not set: skipping")
        sys.exit(77)
    if not os.path.exists(CLI):
        print("test_tok_cli not built at %s" % CLI)
        sys.exit(1)


def read_lines(rel, limit, keep_empty=False):
    with open(os.path.join(SHARED, rel), encoding="utf-8") as f:
        lines = f.read().split("\n")
    if not keep_empty:
        lines = [l for l in lines if l.strip()]
    return lines[:limit]


EDGE_CASES = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "a", " a", "a ", " a ", "  leading spaces",
    "trailing spaces   ", "multiple   spaces   inside", "tab\there\tand\tthere", "new\nline",
    "crlf\r\nline", "unicode: café naïve résumé Ångström", "CJK: 日本語の文章です。中文测试",
    "emoji: 😀🦙👍🏽 👨‍👩‍👧 🇫🇷", "control bytes: \x01\x02\x7f\x1b", "zero-width: a\u200bb\u200d",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "ligature ﬁ ﬂ", "combining e\u0301 a\u0308",
    "nbsp a\u00a0b", "ideographic space a\u3000b", "Arabic: مرحبا بالعالم", "Hindi: नमस्ते",
    "Korean: 안녕하세요", "math: ∑∫√∞ ≠ ≤ ≥", "<s> </s> <unk> <0x0A> <pad>",
    "a" * 1000, "ab " * 300, "   \n\n  ", "......", "1234567890 3.14159 1e-5",
    ' "quoted" (parens) [brackets] {braces}', "'s 're n't", "\u2581 literal block \u2581\u2581",
    "rare: \U0001F9EC \U0001D49C \u0378", "mixed:\tTab  日本 😀\n end ", "ÿþ€‚ƒ„…†‡",
    "\u00ad soft hyphen", "roman Ⅻ circled ① ②", "x" + " " * 40 + "y",
]

INVALID_UTF8 = [b"\xff", b"a\xe2\x82", b"\xc0\xaf x", b"\xed\xa0\x80 surrogate",
                b"\xf4\x90\x80\x80 too big", b"ok \xe2\x82\xac then \x80\x80"]


def encode_batch(tok, texts, bos=False, special=False):
    """texts: list of str or bytes -> list of id lists, from one test_tok_cli run."""
    payload = bytearray()
    for t in texts:
        b = t.encode("utf-8") if isinstance(t, str) else t
        payload += b"%d\n" % len(b) + b
    args = [CLI, "--encode", tok] + (["--bos"] if bos else []) + (["--special"] if special else [])
    r = subprocess.run(args, input=bytes(payload), capture_output=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit("test_tok_cli --encode failed (%d): %s" % (r.returncode, r.stderr[-2000:]))
    out = r.stdout.decode().split("\n")
    assert len(out) == len(texts) + 1, (len(out), len(texts))
    return [[int(x) for x in l.split()] for l in out[:-1]]


def decode_batch(tok, id_lists, streaming=False):
    """id lists -> list of bytes (our decode with skip_leading_space = 1, or the detok)."""
    payload = "".join(" ".join(str(i) for i in ids) + "\n" for ids in id_lists).encode()
    mode = "--detok" if streaming else "--decode"
    r = subprocess.run([CLI, mode, tok], input=payload, capture_output=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit("test_tok_cli %s failed (%d): %s" % (mode, r.returncode, r.stderr[-2000:]))
    out, pos, res = r.stdout, 0, []
    while pos < len(out):
        nl = out.index(b"\n", pos)
        n = int(out[pos:nl])
        res.append(out[nl + 1:nl + 1 + n])
        pos = nl + 1 + n + 1
    assert len(res) == len(id_lists), (len(res), len(id_lists))
    return res


def random_id_lists(n_lists, vocab, avoid, seed, byte_ids=()):
    """Random id sequences (some heavy in byte pieces) for decode checks."""
    rng = random.Random(seed)
    pool = [i for i in range(vocab) if i not in avoid]
    out = []
    for k in range(n_lists):
        ln = rng.randint(0, 40)
        if byte_ids and k % 2:
            out.append([rng.choice(byte_ids) if rng.random() < 0.7 else rng.choice(pool)
                        for _ in range(ln)])
        else:
            out.append([rng.choice(pool) for _ in range(ln)])
    return out


class Report:
    def __init__(self, name):
        self.name, self.fails, self.checked = name, 0, 0

    def check(self, ok, what):
        self.checked += 1
        if not ok:
            self.fails += 1
            if self.fails <= 15:
                print("FAIL [%s] %s" % (self.name, what))

    def done(self):
        print("%s: %d checks, %d failures" % (self.name, self.checked, self.fails))
        return self.fails == 0


# ---- varied strings for reference comparisons (shared by the byte-level and SentencePiece tests)

SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", "\t\n", " \t ",
          "\u00a0", "\u3000", "\u2028", "\u2029", "\u0085", "\u200b", "\ufeff", "\u2009", "\x0b",
          "\x0c", "\u1680", "\u202f", "    \n\n   "]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "--", "!!", "?!", "«»", "“”", "—",
                                                     "、。", "¿¡", "→", "€", "£", "©", "°"]
WORDS = ("the quick brown fox jumps over lazy dog Hello World it's don't I'M we'LL they'Re "
         "you'VE she'D it'S Straße naïve café résumé über Ångström façade ſtraße 'ſ 'S 'T 'M "
         "'D 'LL 'RE 'VE 'll 're 've 'x ' ''s").split(" ")
SCRIPTS = ["日本語の文章です", "中文测试句子", "한국어 문장", "مرحبا بالعالم", "שלום עולם",
           "नमस्ते दुनिया", "Привет мир", "Γειά σου Κόσμε", "สวัสดีชาวโลก", "ሰላም ዓለም",
           "e\u0301 a\u0308 n\u0303", "ﬁ ﬂ", "ｆｕｌｌ ＡＢＣ １２３", "Ⅻ ① ② ½ ¾ ²³", "٣٤٥ ४५६ ๓๔๕",
           "\U0001d49c\U0001d4b7", "𝟘𝟙𝟚", "ǅ ǈ ǋ", "ʰʲʷ", "〇〡〢"]
EMOJI = ["😀", "🦙", "👍🏽", "👨‍👩‍👧", "🇫🇷", "🏳️‍🌈", "❤️", "✅", "🤖💬", "🧬", "☕"]
CODE = ["def f(x):\n    return x**2\n", "int main(void) { return 0; }", "for (i = 0; i < n; i++)",
        "if x != None and y >= 3:", "{\"key\": [1, 2.5e-3, null]}", "<div class=\"a\">hi</div>",
        "SELECT * FROM t WHERE id=42;", "   indented\n\tcode\r\n", "a=>b; c->d; e::f",
        "https://example.com/path?q=1&r=2#frag", "0x1F 0b1010 1_000_000 3.14159 -2e10"]
SPECIAL = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
           "<|reserved_special_token_7|>", "<|eot_id", "|>", "<|", "<|end_of_text|>"]


def rand_cp(rng):
    while True:
        plane = rng.random()
        if plane < 0.5:
            cp = rng.randrange(0x20, 0x3000)
        elif plane < 0.8:
            cp = rng.randrange(0x3000, 0x10000)
        elif plane < 0.97:
            cp = rng.randrange(0x10000, 0x30000)
        else:
            cp = rng.randrange(0x30000, 0x110000)
        if not (0xD800 <= cp < 0xE000):
            return chr(cp)


def rand_digits(rng):
    return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 12)))


def rand_string(rng):
    parts = []
    for _ in range(rng.randint(1, 12)):
        k = rng.random()
        if k < 0.30:
            parts.append(rng.choice(WORDS))
        elif k < 0.45:
            parts.append(rng.choice(SPACES))
        elif k < 0.55:
            parts.append(rng.choice(PUNCT))
        elif k < 0.63:
            parts.append(rand_digits(rng))
        elif k < 0.71:
            parts.append(rng.choice(SCRIPTS))
        elif k < 0.77:
            parts.append(rng.choice(EMOJI))
        elif k < 0.83:
            parts.append(rng.choice(CODE))
        elif k < 0.88:
            parts.append(rng.choice(SPECIAL))
        else:
            parts.append("".join(rand_cp(rng) for _ in range(rng.randint(1, 6))))
    sep = rng.choice(["", " ", "", "\n", " "])
    return sep.join(parts)


def varied_strings(n, seed):
    """n strings: a quarter real TinyStories lines, the edge cases, joined lines, then random
    mixes of words (contractions in any case), white space runs (\\r\\n, Unicode spaces),
    punctuation, digit runs, scripts, emoji sequences, code, special-token text and random code
    points from every plane. Deterministic for a seed."""
    rng = random.Random(seed)
    real = read_lines("data/tinystories/tinystories-train-head.txt", n // 4)
    out = list(real) + [e for e in EDGE_CASES]
    out += [" ".join(real[i:i + 3]) for i in range(0, min(len(real), 600), 3)]
    while len(out) < n:
        out.append(rand_string(rng))
    return out[:n]
