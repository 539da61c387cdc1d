#!/usr/bin/python3
"""serve_bench.py — load and latency sweep against a running claq-server (or any
OpenAI-compatible server), the way users drive it: streamed requests (SSE) from N concurrent
clients, for N in a concurrency list (default 1,2,4,8,16,32,64).

For every level it prints one table row: completed requests/s, generated tokens/s (from the
stream's usage chunk, stream_options.include_usage), time to first token p50/p99, inter-token
latency p50/p99 (gaps between content chunks), mean completion tokens and errors.

Standard library only (Debian /usr/bin/python3): one thread per simulated client, each with its
own keep-alive http.client connection. Does not start the server (run_server_bench.sh does).
Loopback or your own test host only; every level is bounded in time.
"""
import argparse
import http.client
import json
import math
import os
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "Once upon a time",
    "Lily and Ben went to the park",
    "The little dog was sad because",
    "One day, a girl named Sue found a box",
    "Tom liked to play with his red ball",
    "The sun was hot and the birds",
    "Mom said it was time for bed, but",
    "A big cat sat on the wall and",
]


def percentile(values, p):
    """Nearest-rank percentile of a list (None when empty)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


class Target:
    """Where and what to send: parsed from the command line, shared read-only by workers."""

    def __init__(self, args):
        u = urllib.parse.urlsplit(args.url)
        if u.scheme != "http":
            raise SystemExit("serve_bench: only http:// URLs are supported")
        self.host = u.hostname
        self.port = u.port or 80
        prefix = u.path.rstrip("/")
        if prefix.endswith("/v1"):
            prefix = prefix[:-3]
        self.route = prefix + ("/v1/chat/completions" if args.route == "chat" else "/v1/completions")
        self.chat = args.route == "chat"
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if args.api_key:
            self.headers["Authorization"] = "Bearer " + args.api_key
        self.model = args.model
        self.max_tokens = args.max_tokens
        self.temperature = args.temperature
        self.timeout = args.timeout

    def body(self, i):
        prompt = PROMPTS[i % len(PROMPTS)]
        b = {"max_tokens": self.max_tokens, "temperature": self.temperature, "stream": True,
             "stream_options": {"include_usage": True}}
        if self.model:
            b["model"] = self.model
        if self.chat:
            b["messages"] = [{"role": "user", "content": prompt}]
        else:
            b["prompt"] = prompt
        return json.dumps(b).encode()


def one_request(conn, t, i):
    """Sends one streamed request on conn; returns a dict of measurements.
    Raises on transport errors (the caller reconnects)."""
    t0 = time.perf_counter()
    conn.request("POST", t.route, body=t.body(i), headers=t.headers)
    resp = conn.getresponse()
    if resp.status != 200:
        body = resp.read(4096)
        return {"error": "HTTP %d %s" % (resp.status, body[:200].decode("utf-8", "replace"))}
    ttft = None
    last = None
    gaps = []
    chunks = 0
    usage = None
    done = False
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue  # blank separators and ':' keep-alive comments
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            continue
        obj = json.loads(data)
        if "error" in obj:
            return {"error": "in-band error: %s" % str(obj["error"])[:200]}
        if obj.get("usage"):
            usage = obj["usage"]
        for ch in obj.get("choices") or []:
            text = ch.get("text")
            if text is None:
                text = (ch.get("delta") or {}).get("content")
            if text:
                now = time.perf_counter()
                if ttft is None:
                    ttft = now - t0
                else:
                    gaps.append(now - last)
                last = now
                chunks += 1
    end = time.perf_counter()
    if not done:
        return {"error": "stream ended without [DONE]"}
    tokens = usage["completion_tokens"] if usage and "completion_tokens" in usage else chunks
    return {"ttft": ttft, "gaps": gaps, "tokens": tokens, "e2e": end - t0,
            "usage_missing": usage is None}


def run_level(t, concurrency, duration, min_requests):
    """Runs `concurrency` workers until `duration` seconds have passed and at least
    `min_requests` requests were started; returns the aggregate row."""
    lock = threading.Lock()
    state = {"started": 0}
    results = []
    deadline = time.perf_counter() + duration

    def worker(wid):
        conn = None
        while True:
            with lock:
                if time.perf_counter() >= deadline and state["started"] >= min_requests:
                    break
                i = state["started"]
                state["started"] += 1
            if conn is None:
                conn = http.client.HTTPConnection(t.host, t.port, timeout=t.timeout)
            try:
                r = one_request(conn, t, i + wid)
            except (OSError, http.client.HTTPException, ValueError) as e:
                r = {"error": "%s: %s" % (type(e).__name__, e)}
                conn.close()
                conn = None
            with lock:
                results.append(r)
        if conn is not None:
            conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0

    ok = [r for r in results if "error" not in r]
    errs = [r["error"] for r in results if "error" in r]
    ttfts = [r["ttft"] for r in ok if r["ttft"] is not None]
    gaps = [g for r in ok for g in r["gaps"]]
    tokens = sum(r["tokens"] for r in ok)
    return {
        "concurrency": concurrency,
        "requests": len(ok),
        "errors": len(errs),
        "first_errors": errs[:3],
        "usage_missing": sum(1 for r in ok if r["usage_missing"]),
        "wall_s": wall,
        "req_per_s": len(ok) / wall if wall > 0 else 0.0,
        "gen_tok_per_s": tokens / wall if wall > 0 else 0.0,
        "mean_tokens": tokens / len(ok) if ok else 0.0,
        "ttft_p50_ms": ms(percentile(ttfts, 50)),
        "ttft_p99_ms": ms(percentile(ttfts, 99)),
        "itl_p50_ms": ms(percentile(gaps, 50)),
        "itl_p99_ms": ms(percentile(gaps, 99)),
        "e2e_p50_ms": ms(percentile([r["e2e"] for r in ok], 50)),
    }


def ms(v):
    return None if v is None else v * 1e3


def fmt(v, spec="%.1f"):
    return "-" if v is None else spec % v


HEADER = ("| concurrency | requests | req/s | gen tok/s | mean tokens | TTFT p50 ms | TTFT p99 ms "
          "| ITL p50 ms | ITL p99 ms | errors |")
RULE = "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"


def row(r):
    return "| %d | %d | %s | %s | %s | %s | %s | %s | %s | %d |" % (
        r["concurrency"], r["requests"], fmt(r["req_per_s"], "%.2f"), fmt(r["gen_tok_per_s"]),
        fmt(r["mean_tokens"]), fmt(r["ttft_p50_ms"]), fmt(r["ttft_p99_ms"]),
        fmt(r["itl_p50_ms"], "%.2f"), fmt(r["itl_p99_ms"], "%.2f"), r["errors"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("CLAQ_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--api-key", default=os.environ.get("CLAQ_API_KEY"))
    ap.add_argument("--model", default=os.environ.get("CLAQ_CLIENT_MODEL"),
                    help="model id (default: omitted, the server's served model)")
    ap.add_argument("--route", choices=["completions", "chat"], default="completions")
    ap.add_argument("--concurrency", default="1,2,4,8,16,32,64",
                    help="comma-separated list of client counts")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    ap.add_argument("--min-requests", type=int, default=0,
                    help="at least this many requests per level (default: 2 x concurrency)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--timeout", type=float, default=120.0, help="socket timeout, seconds")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    args = ap.parse_args()

    try:
        levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    except ValueError:
        ap.error("--concurrency must be a comma-separated list of integers")
    if not levels or min(levels) < 1 or max(levels) > 1024:
        ap.error("--concurrency values must be between 1 and 1024")
    if args.duration <= 0 or args.duration > 600:
        ap.error("--duration must be in (0, 600] seconds")

    t = Target(args)
    print("# serve_bench: %s:%d%s route=%s max_tokens=%d temperature=%g duration=%gs/level"
          % (t.host, t.port, t.route, args.route, args.max_tokens, args.temperature,
             args.duration), flush=True)
    print(HEADER)
    print(RULE, flush=True)
    rows = []
    for c in levels:
        r = run_level(t, c, args.duration, args.min_requests or 2 * c)
        rows.append(r)
        print(row(r), flush=True)
        for e in r["first_errors"]:
            print("#   error at concurrency %d: %s" % (c, e), file=sys.stderr)
        if r["usage_missing"]:
            print("#   %d streamed responses had no usage chunk (tokens counted from chunks)"
                  % r["usage_missing"], file=sys.stderr)
    if len(rows) >= 2 and rows[0]["gen_tok_per_s"] > 0:
        best = max(rows, key=lambda r: r["gen_tok_per_s"])
        print("# peak generated tok/s %.1f at concurrency %d = %.2fx concurrency %d"
              % (best["gen_tok_per_s"], best["concurrency"],
                 best["gen_tok_per_s"] / rows[0]["gen_tok_per_s"], rows[0]["concurrency"]))
    by_c = {r["concurrency"]: r for r in rows}
    if 1 in by_c and 8 in by_c and by_c[1]["gen_tok_per_s"] > 0:
        print("# generated tok/s, concurrency 8 vs 1: %.1f / %.1f = %.2fx"
              % (by_c[8]["gen_tok_per_s"], by_c[1]["gen_tok_per_s"],
                 by_c[8]["gen_tok_per_s"] / by_c[1]["gen_tok_per_s"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
