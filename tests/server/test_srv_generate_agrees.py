"""test_srv_generate_agrees.py — `claq generate` and the server end a sequence by the same rules
(one eng_gen object in the engine): greedy completions long enough for the model to end its
story (stories260K ends one with BOS, as llama2.c does; tinystories-656k with its EOS) give the
same text from both, the server reports finish_reason "stop" with the same token count the CLI
printed, and a stop string cuts both at the same place."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srv_harness import Checker, Server, require  # noqa: E402

mdir = require("stories260K.bin")
C = Checker()
claq = os.path.join(os.environ.get("CLAQ_BIN", ""), "claq")


def cli(model, tok, prompt, max_tokens, stop=None):
    cmd = [claq, "generate", "--model", os.path.join(mdir, model), "--prompt", prompt,
           "--max-tokens", str(max_tokens), "--temperature", "0"]
    if tok:
        cmd += ["--tokenizer", os.path.join(mdir, tok)]
    if stop:
        cmd += ["--stop", stop]
    r = subprocess.run(cmd, capture_output=True, timeout=120)
    out = r.stdout.decode("utf-8", "replace")
    assert out.startswith(prompt) and out.endswith("\n"), out[:200]
    n = int(re.search(r"generated: (\d+) tokens", r.stderr.decode()).group(1))
    return out[len(prompt):-1], n


for model, tok, prompts in (("stories260K.bin", "tok512.bin", ["Zoo", "Tom had a dog"]),
                            ("tinystories-656k", None, ["Once upon a time", "Lily saw a cat"])):
    srv = Server(model, tok)
    try:
        ended = 0
        for prompt in prompts:
            text, n = cli(model, tok, prompt, 480)
            st, _, j = srv.post("/v1/completions", {"prompt": prompt, "max_tokens": 480,
                                                    "temperature": 0})
            C.check(st == 200, "%s %r: 200 (%d)" % (model, prompt, st))
            c = j["choices"][0]
            C.check(c["text"] == text, "%s %r: server and claq generate agree\n  cli:    %r\n"
                    "  server: %r" % (model, prompt, text[-120:], c["text"][-120:]))
            C.check(j["usage"]["completion_tokens"] == n, "%s %r: %d tokens (cli %d)"
                    % (model, prompt, j["usage"]["completion_tokens"], n))
            if n < 480:
                ended += 1
                C.check(c["finish_reason"] == "stop", "%s %r: the model's own end is 'stop' (%s)"
                        % (model, prompt, c["finish_reason"]))
            # a stop string from the middle of the answer cuts both in the same place
            words = text.split()
            if len(words) > 12:
                stop = " " + words[10]
                t2, _ = cli(model, tok, prompt, 480, stop)
                st, _, j = srv.post("/v1/completions", {"prompt": prompt, "max_tokens": 480,
                                                        "temperature": 0, "stop": stop})
                C.check(st == 200 and j["choices"][0]["text"] == t2 and
                        j["choices"][0]["finish_reason"] == "stop",
                        "%s %r: stop %r cuts both alike (%r vs %r)"
                        % (model, prompt, stop, t2[-60:], j["choices"][0]["text"][-60:]))
        C.check(ended > 0, "%s: a story ended before max_tokens (%d)" % (model, ended))
    finally:
        C.check(srv.stop() == 0, "clean exit")
C.done()
