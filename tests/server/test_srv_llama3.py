"""test_srv_llama3.py — claq-server on a LLaMA-3-shaped model: `claq synth --shape llama3-tiny`
(LLaMA-3.2's layout at test size: 128,256-token vocabulary, GQA, tied head, llama3 RoPE scaling,
eos_token_id [128001, 128008, 128009] in config.json and generation_config.json) with LLaMA-3's
real byte-level BPE tokenizer (built at test time from llama3-tokenizer-js by
tests/engine/tok_bytelevel_ref.mjs). Checks that:
  * /tokenize of text that spells <|eot_id|> or <|begin_of_text|> gives plain-text tokens (only
    the one BOS is a control token) and /detokenize gives the text back byte for byte;
  * each of the three end ids, forced with logit_bias, ends the completion (finish_reason
    "stop"), while another special token (<|reserved_special_token_0|>) does not;
  * streamed and whole greedy completions agree and stream valid UTF-8 text;
  * the OpenAI JS SDK chats through the Llama-3.1-Instruct template the model ships
    (openai_llama3_chat.mjs): prompt_tokens match /tokenize, user text that spells <|eot_id|>
    and an assistant header stays plain, <|eot_id|> ends the reply, streamed == whole;
  * the same holds after `claq quantize` packs the model (tokenizer, its config with the chat
    template, and the eos list embedded).
Skips (77) without node's reference packages (tests/engine/node_modules)."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srv_harness import Checker, Server, llama3_tiny, require  # noqa: E402

require("tinystories-656k")
SRC = os.environ.get("CLAQ_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CLAQ_BIN", "")
SHARED = os.environ.get("CLAQ_SHARED", "")

C = Checker()
END_IDS = (128001, 128008, 128009)


def sdk_chat(srv, label):
    here = os.path.join(SRC, "tests", "server")
    if not os.path.isfile(os.path.join(here, "node_modules", "openai", "package.json")):
        if subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"],
                          cwd=here).returncode != 0:
            print("NOTE: the openai SDK is not installed: SDK chat checks skipped")
            return
    env = dict(os.environ, CLAQ_SERVER_URL="http://%s:%d" % (srv.host, srv.port))
    r = subprocess.run(["node", os.path.join(here, "openai_llama3_chat.mjs")], env=env,
                       capture_output=True, text=True, timeout=300)
    print(r.stdout.strip())
    C.check(r.returncode == 0, "%s: OpenAI SDK chat through the LLaMA-3.1 template: %s" %
            (label, r.stderr[-2000:]))


def check_model(path, label):
    srv = Server(path)
    try:
        sdk_chat(srv, label)
        text = "Hi<|eot_id|> there <|begin_of_text|>é😀\n\n  code: x=1;"
        st, _, tk = srv.post("/tokenize", {"prompt": text})
        C.check(st == 200, "%s: /tokenize status %d" % (label, st))
        ids = tk["tokens"] if tk else []
        C.check(ids[:1] == [128000], "%s: BOS first: %s" % (label, ids[:3]))
        C.check(all(i < 128000 for i in ids[1:]),
                "%s: special-token text became control tokens: %s" % (label, ids))
        st, _, dt = srv.post("/detokenize", {"tokens": ids})
        C.check(st == 200 and dt and dt.get("prompt") == text,
                "%s: /detokenize round trip: %r" % (label, dt))

        for eid in END_IDS:
            st, _, r = srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 5,
                                                    "temperature": 0,
                                                    "logit_bias": {str(eid): 100}})
            ch = r["choices"][0] if st == 200 else {}
            C.check(ch.get("finish_reason") == "stop" and ch.get("text") == "",
                    "%s: end id %d did not end the completion: %s" % (label, eid, r))
        st, _, r = srv.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 3,
                                                "temperature": 0,
                                                "logit_bias": {"128002": 100}})
        C.check(st == 200 and r["choices"][0]["finish_reason"] == "length",
                "%s: a non-end special token ended the completion: %s" % (label, r))

        req = {"prompt": "The capital of France is", "max_tokens": 24, "temperature": 0}
        st, _, whole = srv.post("/v1/completions", req)
        st2, events, raw = srv.sse("/v1/completions", dict(req, stream=True))
        streamed = "".join(e["choices"][0]["text"] for e in events
                           if isinstance(e, dict) and e.get("choices"))
        C.check(st == 200 and st2 == 200 and streamed == whole["choices"][0]["text"],
                "%s: streamed %r != whole %r" % (label, streamed, whole["choices"][0]["text"]))
        C.check(whole["usage"]["completion_tokens"] == 24,
                "%s: usage %s" % (label, whole["usage"]))
    finally:
        srv.stop()
    return srv


def main():
    with tempfile.TemporaryDirectory() as tmp:
        model = llama3_tiny(tmp)
        srv = check_model(model, "fp16")
        packed = os.path.join(tmp, "llama3-tiny.claq")
        subprocess.run([os.path.join(BIN, "claq"), "quantize", "--model", model, "--calib",
                        os.path.join(SHARED, "data", "tinystories",
                                     "tinystories-train-head.txt"),
                        "--method", "claq", "--bits", "3", "--nsamples", "8", "--seqlen", "64",
                        "--out", packed], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        srv = check_model(packed, "packed 3-bit")
    C.done(srv)


main()
