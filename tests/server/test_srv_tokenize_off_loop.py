"""test_srv_tokenize_off_loop.py — prompt tokenization of big requests runs on a worker thread,
not on the event loop. (1) The same completions (string, list, echo + logprobs, token ids) and
chat requests, and the same bad ones, get identical answers from a server that tokenizes
everything inline and from one that sends every request to the worker thread
(--tokenize-inline-bytes 0). (2) While a request with 64 context-sized prompts (~1 MiB of text)
is being tokenized, /health keeps answering on another connection within a fraction of that
time. (3) SIGTERM, and a second SIGTERM (stop now), while such jobs run (claq_tokenize_jobs >= 1):
the drain answers every request, the stop waits for the jobs; both exit 0 (under ASan: no use of
the freed tokenizer)."""
import json
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srv_harness import Checker, Server, require  # noqa: E402

require("stories260K.bin")
C = Checker()
shared = os.environ["CLAQ_SHARED"]
tdir = os.path.join(shared, "data", "tinystories")
story = open(os.path.join(tdir, sorted(os.listdir(tdir))[0]), encoding="utf-8",
             errors="replace").read()
MODEL, TOK = "stories260K.bin", "tok512.bin"   # context 512: 16 KiB of text per prompt at most

# ---- (1) inline and worker-thread tokenization answer alike ----
cases = [
    ("/v1/completions", {"prompt": story[:300], "max_tokens": 12, "temperature": 0}),
    ("/v1/completions", {"prompt": [story[i * 200:i * 200 + 150] for i in range(5)],
                         "max_tokens": 8, "temperature": 0}),
    ("/v1/completions", {"prompt": story[1000:1200], "max_tokens": 6, "temperature": 0,
                         "echo": True, "logprobs": 2}),
    ("/v1/completions", {"prompt": "", "max_tokens": 5, "temperature": 0}),
    ("/v1/completions", {"prompt": [1, 403, 407, 261], "max_tokens": 5, "temperature": 0,
                         "echo": True}),
    ("/v1/completions", {"prompt": story[:400], "max_tokens": 10, "temperature": 0.8,
                         "seed": 7, "stream": True, "stop": [" the", "."]}),
    ("/v1/chat/completions", {"messages": [{"role": "system", "content": "Tell stories."},
                                           {"role": "user", "content": story[500:700]}],
                              "max_tokens": 10, "temperature": 0}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": story[:250]}],
                              "max_tokens": 10, "temperature": 0, "stream": True}),
    # refused after tokenizing: longer than the context
    ("/v1/completions", {"prompt": story[:12000], "max_tokens": 5}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": story[:12000]}]}),
]


def answer(srv, path, body):
    """What must not depend on where tokenizing ran: status, texts, logprobs, usage, error."""
    if body.get("stream"):
        st, ev, _ = srv.sse(path, body)
        parts = []
        for e in ev:
            if e == "[DONE]":
                parts.append(e)
                continue
            for c in e.get("choices", []):
                parts.append(c.get("text") or (c.get("delta") or {}).get("content") or "")
                parts.append(c.get("finish_reason"))
        return st, parts
    st, _, j = srv.post(path, body)
    if st != 200:
        return st, j.get("error", {}).get("code"), j.get("error", {}).get("param")
    keep = []
    for c in j["choices"]:
        keep.append((c.get("text") or c.get("message", {}).get("content"),
                     json.dumps(c.get("logprobs"), sort_keys=True), c.get("finish_reason")))
    return st, keep, j["usage"]


results = {}
for mode, args in (("inline", []), ("worker", ["--tokenize-inline-bytes", "0"])):
    srv = Server(MODEL, TOK, args=args)
    try:
        results[mode] = [answer(srv, p, b) for p, b in cases]
    finally:
        rc = srv.stop()
    C.check(rc == 0, "%s server exits 0" % mode)
for i, (a, b) in enumerate(zip(results["inline"], results["worker"])):
    C.check(a == b, "case %d answers alike\n  inline: %r\n  worker: %r" % (i, a, b))
C.check(results["inline"][0][0] == 200 and results["inline"][6][0] == 200,
        "the plain completion and chat succeed")
C.check(results["inline"][8][:2] == (400, "context_length_exceeded") and
        results["inline"][9][:2] == (400, "context_length_exceeded"),
        "over-long prompts get 400 context_length_exceeded: %r" % (results["inline"][8:],))

# ---- (2) the loop keeps serving while 1 MiB of prompts is tokenized ----
big = {"prompt": [story[(i * 997) % 20000:(i * 997) % 20000 + 16000] for i in range(64)],
       "max_tokens": 4}


def send_big(srv, out):
    t0 = time.time()
    try:
        st, _, j = srv.post("/v1/completions", big, timeout=300)
        out["status"], out["code"] = st, (j or {}).get("error", {}).get("code")
    except OSError as e:
        out["status"], out["code"] = None, repr(e)
    out["t"] = time.time() - t0


srv = Server(MODEL, TOK, args=os.environ.get("OFFLOOP_ARGS", "").split())
try:
    out = {}
    th = threading.Thread(target=send_big, args=(srv, out))
    hc = srv.conn(30)
    th.start()
    worst, n = 0.0, 0
    while th.is_alive():
        t0 = time.time()
        hc.request("GET", "/health")
        r = hc.getresponse()
        r.read()
        if th.is_alive():
            worst = max(worst, time.time() - t0)
            n += 1
        time.sleep(0.005)
    th.join()
    print("64 x 16 KB prompts answered %s in %.3f s; /health meanwhile: %d answers, worst %.3f s"
          % (out.get("status"), out.get("t", 0), n, worst))
    C.check(out.get("status") == 400 and out.get("code") == "context_length_exceeded",
            "the big request is answered (each prompt exceeds the context): %r" % (out,))
    C.check(out.get("t", 0) > 0.05, "tokenizing 1 MiB took long enough to measure (%.3f s)"
            % out.get("t", 0))
    C.check(n >= 3 and worst < out.get("t", 0) / 3,
            "/health kept answering while the prompts were tokenized (%d answers, worst %.3f s "
            "of %.3f s)" % (n, worst, out.get("t", 0)))
finally:
    rc = srv.stop()
C.check(rc == 0, "clean exit")

# ---- (3) shutdown while tokenization jobs run ----
payload = json.dumps(big).encode()
raw_req = (b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(payload)) + payload


def send_raw(srv, out, sent):
    """Sends the big request on its own socket, says so, then reads the answer's status."""
    try:
        sk = socket.create_connection((srv.host, srv.port), timeout=120)
        sk.sendall(raw_req)
        sent.set()
        data = b""
        while True:
            chunk = sk.recv(65536)
            if not chunk:
                break
            data += chunk
        sk.close()
        m = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
        out["status"], out["code"] = (int(m.group(1)) if m else None), repr(data[:80])
    except OSError as e:
        sent.set()
        out["status"], out["code"] = None, repr(e)


for sigs in ((signal.SIGTERM,), (signal.SIGTERM, signal.SIGTERM)):
    srv = Server(MODEL, TOK)
    outs = [{} for _ in range(8)]   # 8 x 1 MiB: the threadpool is busy for a while
    sent = [threading.Event() for _ in outs]
    ths = [threading.Thread(target=send_raw, args=(srv, o, e)) for o, e in zip(outs, sent)]
    for th in ths:
        th.start()
    for e in sent:
        e.wait(60)   # every request is on the wire before the signal
    deadline, busy = time.time() + 20, 0
    while time.time() < deadline and not busy:
        busy = srv.metric("claq_tokenize_jobs")
        time.sleep(0.002)
    C.check(busy >= 1, "jobs seen on the worker threads before the signal (%d)" % busy)
    for sg in sigs:
        srv.proc.send_signal(sg)
        time.sleep(0.05)   # a second signal right away would be coalesced with the first
    rc = srv.proc.wait(60)
    srv.reader.join(5)
    for th in ths:
        th.join()
    out = {"status": sorted(set(o.get("status") for o in outs), key=str),
           "errors": sorted(set(o.get("code") for o in outs if o.get("status") is None))}
    C.check(rc == 0, "%d signal(s) during tokenization: exit 0 (rc %r)" % (len(sigs), rc))
    C.check("AddressSanitizer" not in srv.log_text() and "runtime error" not in srv.log_text(),
            "no sanitizer report")
    if len(sigs) == 2:
        C.check(re.search(r"waiting for \d+ tokenization job", srv.log_text()),
                "the stop waited for the running jobs")
        C.check(set(out["status"]) <= {None, 400, 503},
                "each request is answered or its connection closed: %r" % (out,))
    else:
        # tokenized before the signal: 400 (too long); body read only after it: 503
        C.check(set(out["status"]) <= {400, 503},
                "a drain answers every request in flight: %r" % (out,))
C.done(srv)
