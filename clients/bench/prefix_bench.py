#!/usr/bin/python3
"""prefix_bench.py — time to first token with and without automatic prefix caching, measured
side by side: two running claq-servers (or any OpenAI-compatible servers) on the same model,
one started with --no-prefix-cache, get the same requests, alternately, one at a time, so
both see the same machine state.

Two workloads, both through /v1/chat/completions, streamed (TTFT = the first chunk with
non-empty content; the end of the stream when there is none):
  shared  a long system prompt (--system-tokens, cut from --text) and a different short user
          question per request: every request after the first repeats the system prompt.
  chat    --chats conversations of --turns turns: each turn sends the whole history (system,
          earlier questions and the answers the server gave) plus a new question.
For each: TTFT p50 / mean per server over the requests that can reuse something (all but the
first of `shared`, turns 2.. of `chat`), the ratio, and the prompt tokens the cached server
reported as cached (usage.prompt_tokens_details.cached_tokens).

Standard library only (Debian /usr/bin/python3). Does not start servers (prefix_bench.sh does).
"""
import argparse
import http.client
import json
import statistics
import sys
import time
import urllib.parse


def post_stream(url, body, timeout=600):
    """Streams one chat request; returns (ttft seconds, answer text, usage dict)."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    data = json.dumps(body).encode()
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", data, {"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError("HTTP %d: %s" % (r.status, r.read()[:300]))
    ttft, text, usage = None, [], {}
    buf = b""
    while True:
        chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            for ln in ev.split(b"\n"):
                if not ln.startswith(b"data: ") or ln == b"data: [DONE]":
                    continue
                j = json.loads(ln[6:])
                for c in j.get("choices", []):
                    piece = c.get("delta", {}).get("content")
                    if piece:   # not the role chunk sent at once with content ""
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        text.append(piece)
                if j.get("usage"):
                    usage = j["usage"]
    conn.close()
    if ttft is None:   # no content at all (EOS first): the end of the stream is the first token
        ttft = time.perf_counter() - t0
    return ttft, "".join(text), usage


def tokens_of(url, text):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("POST", "/tokenize", json.dumps({"prompt": text}),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    j = json.loads(r.read())
    conn.close()
    return j["tokens"]


def detok(url, ids):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("POST", "/detokenize", json.dumps({"tokens": ids}),
                 {"Content-Type": "application/json"})
    j = json.loads(conn.getresponse().read())
    conn.close()
    return j["prompt"]


def body(messages, max_tokens):
    return {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url-nocache", required=True, help="server started with --no-prefix-cache")
    ap.add_argument("--url-cache", required=True, help="the same model, prefix cache on")
    ap.add_argument("--text", required=True, help="text file the prompts are cut from")
    ap.add_argument("--system-tokens", type=int, default=1000)
    ap.add_argument("--chat-system-tokens", type=int, default=0,
                    help="system prompt of the chats (default: --system-tokens)")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--chats", type=int, default=3)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--label", default="")
    a = ap.parse_args()

    words = open(a.text, encoding="utf-8", errors="replace").read(400000).split()
    ids = tokens_of(a.url_cache, " ".join(words[:a.system_tokens * 2]))
    system = detok(a.url_cache, ids[1:a.system_tokens + 1])
    chat_system = detok(a.url_cache, ids[1:(a.chat_system_tokens or a.system_tokens) + 1])
    servers = [("no cache", a.url_nocache), ("cache", a.url_cache)]
    qpos = a.system_tokens * 2 + 100

    def question(k):
        return " ".join(words[qpos + 13 * k: qpos + 13 * k + 8]) + "?"

    rows = []
    # shared system prompt
    ttft = {n: [] for n, _ in servers}
    cached = []
    ptoks = 0
    for i in range(a.requests):
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": question(i)}]
        for name, url in servers:
            t, _, usage = post_stream(url, body(msgs, a.max_tokens))
            if i > 0:
                ttft[name].append(t)
            if name == "cache" and i > 0:
                cached.append(usage.get("prompt_tokens_details", {}).get("cached_tokens", 0))
                ptoks = usage.get("prompt_tokens", 0)
    rows.append(("shared system prompt", a.requests - 1, ptoks, ttft, cached))

    # multi-turn chats (each server continues its own history with its own answers; greedy
    # decoding with the same model gives the same answers, so the prompts match)
    ttft = {n: [] for n, _ in servers}
    cached = []
    ptoks = 0
    k = 100
    for c in range(a.chats):
        hist = {n: [{"role": "system", "content": chat_system}] for n, _ in servers}
        for turn in range(a.turns):
            q = question(k)
            k += 1
            for name, url in servers:
                hist[name].append({"role": "user", "content": q})
                t, text, usage = post_stream(url, body(hist[name], a.max_tokens))
                hist[name].append({"role": "assistant", "content": text})
                if turn > 0:
                    ttft[name].append(t)
                if name == "cache" and turn > 0:
                    cached.append(usage.get("prompt_tokens_details", {})
                                  .get("cached_tokens", 0))
                    ptoks = max(ptoks, usage.get("prompt_tokens", 0))
    rows.append(("multi-turn chat, turns 2..%d" % a.turns, a.chats * (a.turns - 1), ptoks, ttft,
                 cached))

    print("| model | workload | requests | prompt tokens (max) | cached tokens (mean) | "
          "TTFT p50 no cache | TTFT p50 cache | ratio | TTFT mean no cache | TTFT mean cache |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for wl, n, pt, t, cached in rows:
        p0, p1 = statistics.median(t["no cache"]), statistics.median(t["cache"])
        m0, m1 = statistics.mean(t["no cache"]), statistics.mean(t["cache"])
        print("| %s | %s | %d | %d | %.0f | %.1f ms | %.1f ms | %.1fx | %.1f ms | %.1f ms |"
              % (a.label, wl, n, pt, statistics.mean(cached) if cached else 0, p0 * 1e3,
                 p1 * 1e3, p0 / p1 if p1 > 0 else 0, m0 * 1e3, m1 * 1e3))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
