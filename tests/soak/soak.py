#!/usr/bin/env python3
"""soak.py — the soak run of issue 14: a randomized client mix against one claq-server for a
bounded time, then checks that nothing leaked or broke. Not a test by itself (test_soak.py runs
it for 60 s in the suite's ASan pass); run longer campaigns by hand:
    CLAQ_BIN=build-asan CLAQ_SHARED=../shared python3 tests/soak/soak.py --seconds 600
The mix, on 8 client threads: whole and streamed completions and chats (random n, max_tokens,
logprobs, stop, temperature), streams cancelled mid-way by closing the socket, malformed and
truncated JSON, bodies over the size limit, prompts longer than the context, many choices,
slow readers of long streams, pipelined keep-alive requests, /tokenize and /detokenize.
At the end it asserts: no 5xx answer, every request that was not cancelled got a whole response
(a status line; for streams the [DONE] event or an in-band error), the server's open file
descriptors back to their starting count and its RSS within a margin of the warmed-up figure
after the clients stop, and on SIGTERM a clean exit with no sanitizer or leak report in its
output. Standard library only."""
import argparse
import json
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from srv_harness import Server, require  # noqa: E402

MAX_BODY = 256 * 1024
ROUTES = ("/v1/completions", "/v1/chat/completions")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.problems = []

    def add(self, key, problem=None):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            if problem and len(self.problems) < 50:
                self.problems.append(problem)


def http_bytes(path, body, extra=""):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    head = ("POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n%s\r\n" % (path, len(body), extra)).encode()
    return head + body


def read_response(f, slow=False):
    """Reads one whole HTTP response from f (the connection's one buffered reader: pipelined
    responses share it) by Content-Length, chunks or until close; returns (status, body)."""
    line = f.readline()
    if not line:
        return None, b""
    parts = line.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    length, chunked = None, False
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        k = k.strip().lower()
        if k == "content-length":
            length = int(v.strip())
        elif k == "transfer-encoding" and "chunked" in v.lower():
            chunked = True
    body = b""
    if chunked:
        while True:
            size_line = f.readline()
            if not size_line:
                break
            n = int(size_line.split(b";")[0].strip() or b"0", 16)
            if n == 0:
                f.readline()
                break
            body += f.read(n)
            f.readline()
            if slow:
                time.sleep(0.02)
    elif length is not None:
        body = f.read(length)
    else:
        body = f.read()
    return status, body


def one_request(srv, st, rng, kind=None):
    kind = kind or rng.choice(["complete", "complete", "chat", "stream", "stream_chat", "cancel",
                       "malformed", "truncated", "oversize", "too_long", "many", "slow",
                       "pipelined", "tokenize"])
    prompt = rng.choice(["Once upon a time", "The little dog", "Lily and Tom went to the",
                         "One day, a big red ball", "é😀 weird ünïcödé"])
    s = socket.create_connection((srv.host, srv.port), timeout=60)
    f = s.makefile("rb")
    try:
        if kind in ("complete", "chat", "stream", "stream_chat", "many", "slow", "cancel"):
            chat = kind in ("chat", "stream_chat") or (kind == "cancel" and rng.random() < 0.5)
            body = {"max_tokens": rng.randint(1, 48), "temperature": rng.choice([0, 0.7, 1.2]),
                    "seed": rng.randint(0, 1000)}
            if chat:
                body["messages"] = [{"role": "user", "content": prompt}]
            else:
                body["prompt"] = prompt
                if rng.random() < 0.3:
                    body["logprobs"] = rng.randint(0, 3)
            if rng.random() < 0.3:
                body["stop"] = [rng.choice([".", " the", "\n"])]
            if kind == "many":
                body["n"], body["max_tokens"] = 8, 4
            stream = kind in ("stream", "stream_chat", "slow", "cancel")
            if kind == "slow":
                body["max_tokens"] = 120
            if stream:
                body["stream"] = True
            s.sendall(http_bytes(ROUTES[chat], body, "Connection: close\r\n"))
            if kind == "cancel":
                s.recv(rng.randint(1, 400))
                st.add("cancel")
                return
            status, data = read_response(f, slow=kind == "slow")
            ok = status == 200
            if ok and stream:
                ok = b"data: [DONE]" in data or b'"error"' in data
            if ok and not stream:
                try:
                    json.loads(data)
                except ValueError:
                    ok = False
            st.add(kind if ok else kind + "-bad",
                   None if ok else "%s: status %s, %r" % (kind, status, data[-200:]))
            if status and status >= 500:
                st.add("5xx", "%s answered %d: %r" % (kind, status, data[:200]))
            return
        if kind == "pipelined":
            reqs = [http_bytes("/tokenize", {"prompt": prompt}),
                    http_bytes("/v1/completions", {"prompt": prompt, "max_tokens": 3}),
                    b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"]
            s.sendall(b"".join(reqs))
            for _ in reqs:
                status, _ = read_response(f)
                if status != 200:
                    st.add("pipelined-bad", "pipelined: status %s" % status)
                    if status and status >= 500:
                        st.add("5xx", "pipelined answered %d" % status)
                    return
            st.add("pipelined")
            return
        if kind == "tokenize":
            s.sendall(http_bytes(rng.choice(["/tokenize", "/detokenize"]),
                                 {"prompt": prompt, "tokens": [1, 2, 3, 400]},
                                 "Connection: close\r\n"))
        elif kind == "malformed":
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
            s.sendall(http_bytes(rng.choice(ROUTES), junk, "Connection: close\r\n"))
        elif kind == "truncated":
            full = json.dumps({"prompt": prompt, "max_tokens": 5})
            s.sendall(http_bytes(rng.choice(ROUTES), full[:rng.randint(1, len(full) - 1)],
                                 "Connection: close\r\n"))
        elif kind == "oversize":
            s.sendall(http_bytes("/v1/completions", "{\"prompt\": \"" + "a" * (MAX_BODY + 10) +
                                 "\"}", "Connection: close\r\n"))
        elif kind == "too_long":
            s.sendall(http_bytes("/v1/completions", {"prompt": "Once upon a time " * 400,
                                                     "max_tokens": 5}, "Connection: close\r\n"))
        status, data = read_response(f)
        want_4xx = kind in ("malformed", "truncated", "oversize", "too_long")
        ok = status is not None and ((400 <= status < 500) if want_4xx else status == 200)
        st.add(kind if ok else kind + "-bad",
               None if ok else "%s: status %s, %r" % (kind, status, data[:200]))
        if status and status >= 500:
            st.add("5xx", "%s answered %d: %r" % (kind, status, data[:200]))
    except OSError as e:
        st.add(kind + "-oserror", "%s: %s" % (kind, e))
    finally:
        f.close()
        s.close()


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_mib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def soak(seconds, threads=8, seed=1):
    require("stories260K.bin")
    env = {"ASAN_OPTIONS": "detect_leaks=1:halt_on_error=0:quarantine_size_mb=16",
           "UBSAN_OPTIONS": "print_stacktrace=1"}
    srv = Server("stories260K.bin", tokenizer="tok512.bin", env=env,
                 args=["--max-body-bytes", str(MAX_BODY), "--threads", "2", "--max-batch", "16",
                       "--header-timeout", "5", "--body-timeout", "5"])
    pid = srv.proc.pid
    st = Stats()
    # warm-up: the first requests allocate the pools, caches and scratch that then stay
    warm = random.Random(seed + 99)
    for _ in range(40):
        one_request(srv, st, warm, warm.choice(["complete", "chat", "stream", "stream_chat",
                                                "many", "pipelined", "tokenize", "malformed"]))
    time.sleep(0.5)
    fd0, rss0 = fds(pid), rss_mib(pid)
    stop = time.time() + seconds

    def worker(i):
        rng = random.Random(seed * 1000 + i)
        while time.time() < stop:
            one_request(srv, st, rng)

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    # let the server see the last closes and time out the half-sent bodies
    deadline = time.time() + 15
    while time.time() < deadline and fds(pid) > fd0:
        time.sleep(0.2)
    fd1, rss1 = fds(pid), rss_mib(pid)
    code = srv.stop()
    log = srv.log_text()
    fails = []
    total = sum(v for k, v in st.counts.items() if k != "5xx")
    bad = {k: v for k, v in st.counts.items() if k.endswith("-bad") or k.endswith("-oserror")}
    print("soak: %d s, %d requests: %s" % (seconds, total, json.dumps(st.counts, sort_keys=True)))
    print("server fds %d -> %d, RSS %.1f -> %.1f MiB, exit %s" % (fd0, fd1, rss0, rss1, code))
    if st.counts.get("5xx"):
        fails.append("%d answers were 5xx" % st.counts["5xx"])
    if bad:
        fails.append("requests without a proper answer: %s" % bad)
    if fd1 > fd0:
        fails.append("open fds grew from %d to %d" % (fd0, fd1))
    if rss1 > rss0 * 1.25 + 32:
        fails.append("RSS grew from %.1f to %.1f MiB" % (rss0, rss1))
    if code != 0:
        fails.append("server exit code %s" % code)
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehavior"):
        if marker in log:
            i = log.index(marker)
            fails.append("sanitizer report: %s" % log[max(0, i - 200):i + 1500])
    for p in st.problems[:10]:
        print("  problem:", p)
    for f in fails:
        print("FAIL:", f)
    return 0 if not fails else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    sys.exit(soak(a.seconds, a.threads, a.seed))
