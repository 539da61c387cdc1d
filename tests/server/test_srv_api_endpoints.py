"""test_srv_api_endpoints.py — curl drives every endpoint of claq-server, streaming and not, on
real models (stories260K + tok512, and the HF tinystories-656k): shapes of the OpenAI objects,
usage arithmetic, n, echo, stop across tokens, logprobs in both formats, seed reproducibility,
model checks, X-Request-Id echo, CORS preflight, API key, tokenize/detokenize round trip,
metrics, and the access log."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srv_harness import Checker, Server, require  # noqa: E402

require("stories260K.bin")
C = Checker()


def curl(srv, method, path, body=None, headers=(), stream=False):
    """Runs curl; returns (status, headers dict lower-case, body text)."""
    cmd = ["curl", "-sS", "-i", "-X", method, "--max-time", "60"]
    if stream:
        cmd.append("-N")
    for h in headers:
        cmd += ["-H", h]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary",
                body if isinstance(body, str) else json.dumps(body)]
    cmd.append("http://%s:%d%s" % (srv.host, srv.port, path))
    out = subprocess.run(cmd, capture_output=True, check=True).stdout.decode("utf-8")
    head, _, text = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    hd = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hd[k.strip().lower()] = v.strip()
    return status, hd, text


def sse_events(text):
    ev = []
    for block in text.split("\n\n"):
        for ln in block.split("\n"):
            if ln.startswith("data: "):
                p = ln[6:]
                ev.append(p if p == "[DONE]" else json.loads(p))
    return ev


srv = Server("stories260K.bin", "tok512.bin", args=["--cors-origin", "*"])
try:
    # ---- health, models ----
    st, hd, body = curl(srv, "GET", "/health")
    C.check(st == 200 and json.loads(body)["status"] == "ok", "/health 200 ok")
    st, hd, body = curl(srv, "GET", "/v1/models")
    j = json.loads(body)
    C.check(st == 200 and j["object"] == "list" and j["data"][0]["id"] == "stories260K.bin",
            "/v1/models lists the served id: %s" % body)
    st, _, _ = curl(srv, "GET", "/v1/models/stories260K.bin")
    C.check(st == 200, "/v1/models/{id} 200")
    # clients that URL-encode path parameters: the id is percent-decoded
    st, _, body = curl(srv, "GET", "/v1/models/stories260K%2ebin")
    C.check(st == 200 and json.loads(body)["id"] == "stories260K.bin",
            "/v1/models/{id} percent-decoded: %d %s" % (st, body[:200]))
    st, _, body = curl(srv, "GET", "/v1/models/stories260K%2")
    C.check(st == 400 and "percent" in body, "a malformed escape is a 400: %d %s" % (st, body))
    st, _, body = curl(srv, "GET", "/v1/models/nope")
    C.check(st == 404 and json.loads(body)["error"]["code"] == "model_not_found",
            "/v1/models/nope 404 model_not_found")

    # ---- completions, non-stream: the documented llama2.c reference continuation ----
    st, hd, body = curl(srv, "POST", "/v1/completions",
                        {"prompt": "Zoo", "max_tokens": 60, "temperature": 0})
    j = json.loads(body)
    ref = (" was a little girl named Lily. She loved to play outside in the park. One day, "
           "she saw a big, red ball. She wanted to play with it, but she didn't want to play with")
    C.check(st == 200 and j["object"] == "text_completion", "completion object")
    # llama2.c's -n 60 counts the prompt positions too: its reference is a prefix of ours
    C.check(j["choices"][0]["text"].startswith(ref), "greedy text matches llama2.c: %r" %
            j["choices"][0]["text"])
    u = j["usage"]
    C.check(u["prompt_tokens"] == 4 and u["completion_tokens"] == 60 and
            u["total_tokens"] == 64, "usage %s" % u)
    C.check(j["choices"][0]["finish_reason"] == "length", "finish_reason length")
    C.check(hd.get("content-type", "").startswith("application/json"), "json content type")

    # default max_tokens is 16 for completions
    st, _, body = curl(srv, "POST", "/v1/completions", {"prompt": "Zoo", "temperature": 0})
    C.check(json.loads(body)["usage"]["completion_tokens"] == 16, "default max_tokens 16")

    # echo, token-id prompts, list of prompts, n
    st, _, body = curl(srv, "POST", "/v1/completions",
                       {"prompt": "Zoo", "max_tokens": 5, "temperature": 0, "echo": True})
    C.check(json.loads(body)["choices"][0]["text"].startswith("Zoo was"), "echo prepends prompt")
    st, _, body = curl(srv, "POST", "/v1/completions",
                       {"prompt": [1, 410, 469, 347], "max_tokens": 8, "temperature": 0})
    C.check(st == 200 and json.loads(body)["choices"][0]["text"] == ref[:len(
        json.loads(body)["choices"][0]["text"])] and json.loads(body)["usage"]["prompt_tokens"] == 4,
        "token-id prompt gives the same text: %s" % body)
    st, _, body = curl(srv, "POST", "/v1/completions",
                       {"prompt": ["Zoo", "Once upon a time"], "n": 2, "max_tokens": 6,
                        "temperature": 0})
    j = json.loads(body)
    C.check(st == 200 and len(j["choices"]) == 4 and
            [c["index"] for c in j["choices"]] == [0, 1, 2, 3], "2 prompts x n=2 = 4 choices")
    C.check(j["choices"][0]["text"] == j["choices"][1]["text"] and
            j["choices"][0]["text"] != j["choices"][2]["text"], "greedy choices per prompt")
    C.check(j["usage"]["completion_tokens"] == 24, "usage sums choices: %s" % j["usage"])
    st, _, body = curl(srv, "POST", "/v1/completions",
                       {"prompt": [[1, 410], [1, 469]], "max_tokens": 3, "temperature": 0})
    C.check(st == 200 and len(json.loads(body)["choices"]) == 2, "list of token-id lists")

    # stop across token boundaries: " girl" is split into " g", "ir", "l" by tok512
    st, _, body = curl(srv, "POST", "/v1/completions",
                       {"prompt": "Zoo", "max_tokens": 60, "temperature": 0, "stop": "irl n"})
    j = json.loads(body)
    C.check(j["choices"][0]["text"] == " was a little g" and
            j["choices"][0]["finish_reason"] == "stop", "stop string across tokens: %r" %
            j["choices"][0]["text"])
    st, _, body = curl(srv, "POST", "/v1/completions",
                       {"prompt": "Zoo", "max_tokens": 60, "temperature": 0,
                        "stop": ["zzz", "Lily"]})
    C.check(json.loads(body)["choices"][0]["text"] == " was a little girl named ",
            "stop list")

    # sampling: seed reproducible, different seeds differ (with high temperature)
    req = {"prompt": "Zoo", "max_tokens": 30, "temperature": 1.0, "seed": 1234, "top_p": 0.95,
           "top_k": 40, "min_p": 0.01}
    a = json.loads(curl(srv, "POST", "/v1/completions", req)[2])["choices"][0]["text"]
    b = json.loads(curl(srv, "POST", "/v1/completions", req)[2])["choices"][0]["text"]
    req["seed"] = 99
    c = json.loads(curl(srv, "POST", "/v1/completions", req)[2])["choices"][0]["text"]
    C.check(a == b, "same seed, same text")
    C.check(a != c, "different seed, different text")
    st, _, body = curl(srv, "POST", "/v1/completions",
                       {"prompt": "Zoo", "max_tokens": 20, "temperature": 0,
                        "presence_penalty": 1.5, "frequency_penalty": 1.0,
                        "repetition_penalty": 1.3, "user": "u1"})
    C.check(st == 200 and json.loads(body)["choices"][0]["text"] != ref[:20],
            "penalties accepted and change greedy text")
    # logit_bias: ban the first greedy token (" was" = the 5th token id we see in tokenize)
    st, _, body = curl(srv, "POST", "/tokenize", {"prompt": "Zoo was"})
    toks = json.loads(body)["tokens"]
    was = toks[-1]
    st, _, body = curl(srv, "POST", "/v1/completions",
                       {"prompt": "Zoo", "max_tokens": 3, "temperature": 0,
                        "logit_bias": {str(was): -100}})
    C.check(st == 200 and not json.loads(body)["choices"][0]["text"].startswith(" was"),
            "logit_bias -100 bans a token: %s" % body)

    # logprobs, completions format
    st, _, body = curl(srv, "POST", "/v1/completions",
                       {"prompt": "Zoo", "max_tokens": 5, "temperature": 0, "logprobs": 3})
    lp = json.loads(body)["choices"][0]["logprobs"]
    C.check(st == 200 and len(lp["tokens"]) == 5 and len(lp["token_logprobs"]) == 5 and
            len(lp["top_logprobs"]) == 5 and len(lp["top_logprobs"][0]) == 3 and
            lp["text_offset"][0] == 0 and all(x <= 0 for x in lp["token_logprobs"]),
            "completions logprobs: %s" % json.dumps(lp)[:300])
    C.check("".join(lp["tokens"]) == json.loads(body)["choices"][0]["text"],
            "logprob tokens concatenate to the text")
    # a stop string holds text back while it may be starting: each token's offset still counts
    # the characters of the tokens before it, streamed or not (they were counted as released)
    req = {"prompt": "One day, she saw a", "max_tokens": 12, "seed": 100, "logprobs": 0,
           "stop": "ed"}
    for stream in (False, True):
        if stream:
            st, events, _ = srv.sse("/v1/completions", dict(req, stream=True))
            toks, offs = [], []
            for e in events[:-1]:
                for c in e.get("choices", []):
                    if c.get("logprobs"):
                        toks += c["logprobs"]["tokens"]
                        offs += c["logprobs"]["text_offset"]
        else:
            st, _, j = srv.post("/v1/completions", req)
            toks = j["choices"][0]["logprobs"]["tokens"]
            offs = j["choices"][0]["logprobs"]["text_offset"]
            tops = j["choices"][0]["logprobs"]["top_logprobs"]
            # logprobs 0: the chosen token alone (OpenAI returns it always)
            C.check(all(list(t) == [k] for t, k in zip(tops, toks)),
                    "top_logprobs holds the chosen token: %s" % tops[:3])
        want = [sum(len(t) for t in toks[:i]) for i in range(len(toks))]
        C.check(st == 200 and len(toks) > 3 and offs == want,
                "text_offset with a stop string (stream %s): %s, want %s" % (stream, offs, want))
    # logprobs follow the text: no entry for a token that a stop string took whole, streamed
    # or not, on both endpoints; a token with a character in the text keeps its entry
    base = {"max_tokens": 24, "temperature": 0, "logprobs": 1}
    st, _, j = srv.post("/v1/completions", dict(base, prompt="Zoo"))
    free = j["choices"][0]["logprobs"]["tokens"]
    cut = 5 if len(free) > 8 else 2
    stop = "".join(free[cut:cut + 3]).lstrip() or free[cut]
    for stream in (False, True):
        if stream:
            st, events, _ = srv.sse("/v1/completions", dict(base, prompt="Zoo", stop=stop,
                                                            stream=True))
            toks, text = [], ""
            for e in events[:-1]:
                for c in e.get("choices", []):
                    text += c.get("text", "")
                    if c.get("logprobs"):
                        toks += c["logprobs"]["tokens"]
        else:
            st, _, j = srv.post("/v1/completions", dict(base, prompt="Zoo", stop=stop))
            toks, text = j["choices"][0]["logprobs"]["tokens"], j["choices"][0]["text"]
        k = text.find(stop)
        C.check(st == 200 and k < 0 and toks == free[:len(toks)] and
                len("".join(toks[:-1])) < len(text) <= len("".join(toks)),
                "completions logprobs end with the text at stop %r (stream %s): %r %s"
                % (stop, stream, text, toks))
        chat = {"messages": [{"role": "user", "content": "Zoo"}], "max_tokens": 24,
                "temperature": 0, "logprobs": True, "stop": stop, "stream": stream}
        if stream:
            st, events, _ = srv.sse("/v1/chat/completions", chat)
            ents, text = [], ""
            for e in events[:-1]:
                for c in e.get("choices", []):
                    text += c["delta"].get("content") or ""
                    ents += (c.get("logprobs") or {}).get("content") or []
                    C.check(c.get("logprobs") is None or c["delta"].get("content") is not None,
                            "a chat chunk with logprobs carries content: %s" % c)
        else:
            st, _, j = srv.post("/v1/chat/completions", chat)
            ents = (j["choices"][0]["logprobs"] or {}).get("content") or []
            text = j["choices"][0]["message"]["content"]
        joined = "".join(x["token"] for x in ents)
        C.check(st == 200 and (not ents or len("".join(x["token"] for x in ents[:-1])) <
                               len(text) <= len(joined)),
                "chat logprobs end with the text (stop %r, stream %s): %r %r"
                % (stop, stream, text, joined))
    # one bias per token: a repeated id replaces, never adds (past the +-100 range too): the
    # greedy token's logprob (taken after the bias) with {T: 4, T: 4} is the one with {T: 4}
    the = json.loads(curl(srv, "POST", "/tokenize", {"prompt": "Zoo the"})[2])["tokens"][-1]
    la, lb = [json.loads(srv.request("POST", "/v1/completions", (
        '{"prompt": "Zoo", "max_tokens": 1, "temperature": 0, "logprobs": 1, '
        '"logit_bias": {%s}}' % ", ".join(['"%d": 4' % the] * k)))[2])
        ["choices"][0]["logprobs"]["token_logprobs"][0] for k in (2, 1)]
    l0 = json.loads(srv.request("POST", "/v1/completions", (
        '{"prompt": "Zoo", "max_tokens": 1, "temperature": 0, "logprobs": 1}'))[2])[
        "choices"][0]["logprobs"]["token_logprobs"][0]
    C.check(abs(la - lb) < 1e-4 and abs(lb - l0) > 1e-3,
            "a repeated logit_bias key: %s, once %s, none %s" % (la, lb, l0))
    # text_offset counts characters of the returned text: a character split over byte
    # tokens counts once, at the token that completes it (prompt echoed, and generated)
    for req in ({"prompt": "A \u65e5\u672c b \u2603", "max_tokens": 0},
                {"prompt": "Zo\u00eb \U0001F355", "max_tokens": 12, "temperature": 1.5,
                 "seed": 4, "logit_bias": {str(i): 4 for i in range(131, 260)}}):
        st, _, text = curl(srv, "POST", "/v1/completions", dict(req, echo=True, logprobs=1))
        ch = json.loads(text)["choices"][0]
        off, toks, full = ch["logprobs"]["text_offset"], ch["logprobs"]["tokens"], ch["text"]
        whole = [i for i, t in enumerate(toks) if not t.startswith("bytes:")]
        C.check(st == 200 and off == sorted(off) and off[-1] <= len(full) and
                len(whole) >= 3 and
                all(full[off[i]:off[i] + len(toks[i])] == toks[i] for i in whole),
                "text_offset points at each token's text in %r: %s %s" % (full, off, toks))
        # a byte-fallback token is named by its bytes, as OpenAI does ("bytes:\\xe6"), so
        # distinct byte tokens never share a top_logprobs key (they were all U+FFFD), and the
        # chosen token's key holds its own logprob
        lp = ch["logprobs"]
        parts = [t for t in toks if t.startswith("bytes:")]
        raw = b"".join(bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-f]{2})", t))
                       for t in parts)
        C.check(len(parts) >= 3 and all(re.fullmatch(r"bytes:(\\x[0-9a-f]{2})+", t)
                                        for t in parts) and
                (req["max_tokens"] > 0 or
                 raw.decode("utf-8", "replace") == "\u65e5\u672c\u2603"),
                "byte tokens named by their bytes: %s" % parts)
        C.check(all(top is None or top.get(t) == l for t, l, top in
                    zip(toks, lp["token_logprobs"], lp["top_logprobs"])),
                "top_logprobs[i][tokens[i]] == token_logprobs[i]: %s" % lp["top_logprobs"])
    # asked for, and the first token ends the answer (EOS raised): empty lists, not null
    for path, req, key in (("/v1/completions", {"prompt": "Zoo", "logprobs": 2}, "tokens"),
                            ("/v1/chat/completions", {"messages": [{"role": "user",
                                                                    "content": "Hi"}],
                                                      "logprobs": True}, "content")):
        st, _, text = curl(srv, "POST", path, dict(req, max_tokens=5, logit_bias={"2": 100}))
        ch = json.loads(text)["choices"][0]
        C.check(st == 200 and ch["finish_reason"] == "stop" and
                isinstance(ch["logprobs"], dict) and ch["logprobs"].get(key) == [],
                "%s ended by its first token, logprobs asked: empty %s (%s)" % (path, key,
                                                                              text[:300]))

    # suffix rejected, model checks
    st, _, body = curl(srv, "POST", "/v1/completions", {"prompt": "a", "suffix": "b"})
    C.check(st == 400 and "suffix" in json.loads(body)["error"]["message"], "suffix 400")
    st, _, body = curl(srv, "POST", "/v1/completions", {"prompt": "a", "model": "gpt-4"})
    C.check(st == 404 and json.loads(body)["error"]["code"] == "model_not_found",
            "unknown model 404")
    st, _, body = curl(srv, "POST", "/v1/completions",
                       {"prompt": "a", "model": "stories260K.bin", "max_tokens": 2})
    C.check(st == 200, "explicit served model 200")
    st, _, body = curl(srv, "POST", "/v1/completions", {"prompt": "a", "max_tokens": 600})
    e = json.loads(body)["error"]
    C.check(st == 400 and e["code"] == "context_length_exceeded" and "512" in e["message"],
            "context_length_exceeded with numbers: %s" % e)
    # a prompt that fills the context exactly: accepted when nothing is to follow it (scoring
    # with echo, embeddings), refused when a token is to be generated or it is one longer
    full = [1] + [(i * 37) % 500 + 3 for i in range(511)]
    st, _, body = curl(srv, "POST", "/v1/completions",
                       {"prompt": full, "max_tokens": 0, "echo": True, "logprobs": 1})
    j = json.loads(body)
    C.check(st == 200 and j["usage"]["prompt_tokens"] == 512 and
            len(j["choices"][0]["logprobs"]["tokens"]) == 512,
            "a 512-token prompt scored with max_tokens 0 in a 512 context: %d %s" % (st, body[:200]))
    st, _, body = curl(srv, "POST", "/v1/embeddings", {"input": full})
    C.check(st == 200 and json.loads(body)["usage"]["prompt_tokens"] == 512,
            "a 512-token embedding input: %d %s" % (st, body[:200]))
    for extra, what in (({"prompt": full, "max_tokens": 1}, "512 + 1 generated"),
                        ({"prompt": full + [5], "max_tokens": 0}, "513 scored")):
        st, _, body = curl(srv, "POST", "/v1/completions", extra)
        C.check(st == 400 and json.loads(body)["error"]["code"] == "context_length_exceeded",
                "%s tokens: context_length_exceeded (%d %s)" % (what, st, body[:200]))

    # ---- completions, stream ----
    st, hd, text = curl(srv, "POST", "/v1/completions",
                        {"prompt": "Zoo", "max_tokens": 20, "temperature": 0, "stream": True,
                         "stream_options": {"include_usage": True}}, stream=True)
    ev = sse_events(text)
    C.check(st == 200 and hd.get("content-type") == "text/event-stream", "SSE content type")
    C.check(ev[-1] == "[DONE]", "stream ends with [DONE]")
    C.check(ev[-2]["choices"] == [] and ev[-2]["usage"]["completion_tokens"] == 20,
            "usage chunk last: %s" % ev[-2])
    txt = "".join(e["choices"][0]["text"] for e in ev[:-2] if e["choices"])
    C.check(txt == ref[:len(txt)] and len(txt) > 40, "streamed text == non-stream text")
    C.check(ev[-3]["choices"][0]["finish_reason"] == "length", "final chunk finish_reason")
    C.check(all(e.get("usage", None) is None for e in ev[:-2]), "usage null before the end")
    st, hd, text = curl(srv, "POST", "/v1/completions",
                        {"prompt": "Zoo", "max_tokens": 5, "stream": True}, stream=True)
    ev = sse_events(text)
    C.check(all("usage" not in e for e in ev[:-1]) and ev[-1] == "[DONE]",
            "no usage without include_usage")

    # ---- chat ----
    # a request may name 8 stop strings; the template's end-of-turn text is held beside them
    for n, want in ((8, 200), (9, 400)):
        st, _, body = curl(srv, "POST", "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "Zoo"}], "max_tokens": 4,
            "stop": ["zq%d" % i for i in range(n)]})
        C.check(st == want, "%d stop strings: %d %s" % (n, st, body[:200]))
    # text parts are joined with a newline (vLLM's rule), never run into one word
    tk = [json.loads(curl(srv, "POST", "/tokenize", {"messages": [
        {"role": "user", "content": c}]})[2])["tokens"]
        for c in ([{"type": "text", "text": "Zoo"}, {"type": "text", "text": "day"}],
                  "Zoo\nday", "Zooday")]
    C.check(tk[0] == tk[1] != tk[2], "text parts joined by a newline: %s" % tk)
    msgs = [{"role": "system", "content": "You tell stories."},
            {"role": "user", "content": [{"type": "text", "text": "Zoo"}]}]
    st, _, body = curl(srv, "POST", "/v1/chat/completions",
                       {"messages": msgs, "max_tokens": 12, "temperature": 0})
    j = json.loads(body)
    C.check(st == 200 and j["object"] == "chat.completion" and
            j["choices"][0]["message"]["role"] == "assistant" and
            len(j["choices"][0]["message"]["content"]) > 0, "chat completion: %s" % body[:200])
    C.check(j["usage"]["completion_tokens"] == 12 and
            j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"] + 12, "chat usage")
    st, _, body = curl(srv, "POST", "/v1/chat/completions",
                       {"messages": [{"role": "user", "content": "Zoo"}], "temperature": 0})
    j = json.loads(body)
    C.check(st == 200 and j["usage"]["total_tokens"] <= 512 and
            j["usage"]["completion_tokens"] > 16, "chat default max_tokens up to the context")
    st, _, body = curl(srv, "POST", "/v1/chat/completions",
                       {"messages": [{"role": "user", "content": "Zoo"}], "max_tokens": 4,
                        "temperature": 0, "logprobs": True, "top_logprobs": 2, "n": 2})
    j = json.loads(body)
    c0 = j["choices"][0]["logprobs"]["content"]
    C.check(len(j["choices"]) == 2 and len(c0) == 4 and len(c0[0]["top_logprobs"]) == 2 and
            isinstance(c0[0]["bytes"], list) and c0[0]["logprob"] <= 0,
            "chat logprobs format: %s" % json.dumps(c0[0])[:200])
    st, hd, text = curl(srv, "POST", "/v1/chat/completions",
                        {"messages": [{"role": "user", "content": "Zoo"}], "max_tokens": 8,
                         "temperature": 0, "stream": True,
                         "stream_options": {"include_usage": True}}, stream=True)
    ev = sse_events(text)
    C.check(ev[0]["object"] == "chat.completion.chunk" and
            ev[0]["choices"][0]["delta"]["role"] == "assistant", "first chat chunk has role")
    C.check(len({e["id"] for e in ev[:-1]}) == 1, "one id across chunks")
    C.check(ev[-2]["usage"]["completion_tokens"] == 8 and ev[-1] == "[DONE]",
            "chat stream usage + DONE")
    C.check(ev[-3]["choices"][0]["finish_reason"] == "length", "chat finish chunk")

    # ---- tokenize / detokenize ----
    st, _, body = curl(srv, "POST", "/tokenize", {"prompt": "Zoo"})
    C.check(st == 200 and json.loads(body)["tokens"] == [1, 410, 469, 347],
            "tokenize matches the documented ids: %s" % body)
    st, _, body = curl(srv, "POST", "/detokenize", {"tokens": [1, 410, 469, 347]})
    C.check(st == 200 and json.loads(body)["prompt"] == "Zoo", "detokenize: %s" % body)
    st, _, body = curl(srv, "POST", "/tokenize",
                       {"messages": [{"role": "user", "content": "Zoo"}]})
    C.check(st == 200 and json.loads(body)["count"] >= 2, "tokenize messages (chat template)")
    # a NUL byte (token 3 is <0x00> here) is text like any other: JSON writes it \u0000
    st, _, body = curl(srv, "POST", "/detokenize", {"tokens": [72, 3, 73]})
    C.check(st == 200 and json.loads(body)["prompt"] == "E\x00F", "detokenize a NUL: %s" % body)
    st, _, body = curl(srv, "POST", "/v1/completions", {"prompt": [1, 72, 3, 73], "echo": True,
                                                        "max_tokens": 5, "temperature": 0})
    text = json.loads(body)["choices"][0]["text"]
    C.check(st == 200 and text.startswith("E\x00F") and len(text) > 3,
            "echo of a prompt holding a NUL keeps the generated text: %r" % text)
    req = {"prompt": "a", "max_tokens": 12, "logit_bias": {"3": 26}, "seed": 1}
    st, _, body = curl(srv, "POST", "/v1/completions", dict(req, logprobs=1))
    ch = json.loads(body)["choices"][0]
    st2, _, sse = curl(srv, "POST", "/v1/completions", dict(req, stream=True), stream=True)
    streamed = "".join(e["choices"][0]["text"] for e in sse_events(sse)[:-1] if e["choices"])
    C.check(st == 200 and "\x00" in ch["text"] and "".join(ch["logprobs"]["tokens"]) == ch["text"]
            and streamed == ch["text"], "generated NULs kept, streamed and not, and in logprobs: "
            "%r %r %r" % (ch["text"], streamed, ch["logprobs"]["tokens"]))
    st, _, body = curl(srv, "POST", "/detokenize", {"tokens": [99999]})
    C.check(st == 400, "detokenize out-of-range id 400")
    # decoding runs on the event loop: at most max(n_ctx, 8192) ids
    st, _, body = curl(srv, "POST", "/detokenize", {"tokens": [410] * 8192})
    C.check(st == 200 and len(json.loads(body)["prompt"]) >= 8000,
            "detokenize 8192 ids: %d" % st)
    st, _, body = curl(srv, "POST", "/detokenize", {"tokens": [410] * 8193})
    C.check(st == 400 and "8192" in body and "tokens" in body, "detokenize 8193 ids: %s" % body[:200])

    # ---- request id, CORS ----
    st, hd, _ = curl(srv, "GET", "/health", headers=["X-Request-Id: my-trace-42"])
    C.check(hd.get("x-request-id") == "my-trace-42", "X-Request-Id echoed")
    st, hd, _ = curl(srv, "GET", "/health")
    C.check(hd.get("x-request-id", "").startswith("req-"), "X-Request-Id generated")
    st, hd, _ = curl(srv, "OPTIONS", "/v1/chat/completions",
                     headers=["Origin: http://example.com",
                              "Access-Control-Request-Method: POST"])
    C.check(st == 204 and hd.get("access-control-allow-origin") == "*" and
            "POST" in hd.get("access-control-allow-methods", ""), "CORS preflight 204")

    # ---- metrics ----
    st, hd, body = curl(srv, "GET", "/metrics")
    for name in ["claq_num_requests_running", "claq_num_requests_waiting",
                 "claq_time_to_first_token_seconds_bucket", "claq_inter_token_latency_seconds",
                 "claq_e2e_request_latency_seconds", "claq_prompt_tokens_total",
                 "claq_generation_tokens_total", "claq_kv_cache_usage_ratio",
                 "claq_admission_rejections_total"]:
        C.check(name in body, "metric %s present" % name)
    m = srv.metrics()
    C.check(m['claq_generation_tokens_total{model_name="stories260K.bin"}'] > 100,
            "generation token counter counts")
    # prompt tokens count once per request (n choices share it: usage.prompt_tokens), and every
    # answered generation is timed, one without tokens (max_tokens 0, embeddings) included
    PT = 'claq_prompt_tokens_total{model_name="stories260K.bin"}'
    E2E = 'claq_e2e_request_latency_seconds_count{model_name="stories260K.bin"}'
    for req, path in (({"prompt": "Once upon a time", "max_tokens": 4, "n": 3, "seed": 1},
                       "/v1/completions"),
                      ({"prompt": "Once", "max_tokens": 0}, "/v1/completions"),
                      ({"input": "Once upon a time"}, "/v1/embeddings")):
        m0 = srv.metrics()
        st, _, body = curl(srv, "POST", path, req)
        m1 = srv.metrics()
        pt = json.loads(body)["usage"]["prompt_tokens"] if st == 200 else -1
        C.check(st == 200 and m1[PT] - m0[PT] == pt and m1[E2E] - m0[E2E] == 1,
                "%s %s: prompt tokens +%s (usage %s), e2e count +%s" %
                (path, req, m1[PT] - m0[PT], pt, m1[E2E] - m0[E2E]))

    # ---- access log ----
    acc = srv.access_lines()
    C.check(any(a["route"] == "POST /v1/completions" and a["status"] == 200 and
                a["completion_tokens"] == 60 and a["ttft_ms"] is not None for a in acc),
            "access log line with tokens and TTFT")
    C.check(any(a["request_id"] == "my-trace-42" for a in acc), "access log has request id")
finally:
    rc = srv.stop()
C.check(rc == 0, "exit 0 after SIGTERM (rc=%s)" % rc)

# ---- API key, and an HF model with its own tokenizer ----
if os.path.exists(os.path.join(os.environ.get("CLAQ_SHARED", ""), "models/tinystories-656k")):
    srv = Server("tinystories-656k", args=["--api-key", "sekret", "--served-model-name",
                                           "org/tiny-1"])
    try:
        st, _, _ = curl(srv, "GET", "/health")
        C.check(st == 200, "/health public with an API key")
        st, _, _ = curl(srv, "GET", "/metrics")
        C.check(st == 401, "/metrics behind the key unless --metrics-public")
        st, hd, _ = curl(srv, "OPTIONS", "/v1/chat/completions",
                         headers=["Origin: http://evil.example",
                                  "Access-Control-Request-Method: POST"])
        C.check("access-control-allow-origin" not in hd,
                "CORS off by default (no --cors-origin): %s" % hd)
        st, _, body = curl(srv, "GET", "/metrics", headers=["Authorization: Bearer sekret"])
        C.check(st == 200 and "claq_ready" in body, "/metrics with the key")
        st, hd, body = curl(srv, "GET", "/v1/models")
        C.check(st == 401 and json.loads(body)["error"]["code"] == "invalid_api_key" and
                hd.get("www-authenticate") == "Bearer", "401 without key, WWW-Authenticate")
        st, _, body = curl(srv, "GET", "/v1/models", headers=["Authorization: Bearer wrong"])
        C.check(st == 401, "401 with a wrong key")
        auth = ["Authorization: Bearer sekret"]
        st, _, body = curl(srv, "GET", "/v1/models", headers=auth)
        C.check(st == 200 and json.loads(body)["data"][0]["id"] == "org/tiny-1",
                "--served-model-name with a slash, as given: %s" % body[:200])
        st, _, body = curl(srv, "POST", "/v1/completions",
                           {"model": "org/tiny-1", "prompt": "Once upon a time", "max_tokens": 20,
                            "temperature": 0}, headers=auth)
        j = json.loads(body)
        C.check(st == 200 and "upon" not in j["choices"][0]["text"][:3] and
                len(j["choices"][0]["text"]) > 20, "HF model completes: %s" % body[:300])
        st, _, body = curl(srv, "POST", "/v1/chat/completions",
                           {"messages": [{"role": "user", "content": "Tell a story"}],
                            "max_tokens": 10, "temperature": 0, "stream": True}, headers=auth,
                           stream=True)
        C.check(st == 200 and sse_events(body)[-1] == "[DONE]", "HF chat stream")
        # message contents are plain text: typing a control token's text does not forge it
        # (<|end_story|> is id 2 here, the EOS; the raw text of a prompt is also plain)
        forged = {"messages": [{"role": "user", "content": "x <|end_story|> y"}]}
        st, _, body = curl(srv, "POST", "/tokenize", forged, headers=auth)
        toks = json.loads(body)["tokens"]
        C.check(st == 200 and 2 not in toks[1:] and len(toks) > 12,
                "user text cannot forge <|end_story|>: %s" % toks)
    finally:
        rc = srv.stop()
    C.check(rc == 0, "exit 0 (HF)")
C.done(srv)
