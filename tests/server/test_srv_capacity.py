"""test_srv_capacity.py — capacity and lifetime: a client that disconnects mid-stream has its
sequence cancelled and its KV blocks freed (seen in /metrics); a full wait queue answers 429
with Retry-After while queued streams get SSE keep-alive comments; the per-request timeout
ends a generation (408, or an in-band error when streaming); SIGTERM drains (in-flight requests
finish, exit 0) and a drain deadline cancels what is left. --step-delay-ms slows each engine step
so that these races are deterministic."""
import json
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srv_harness import Checker, Server, require, statuses  # noqa: E402

require("stories260K.bin")
C = Checker()
M = 'model_name="stories260K.bin"'


def open_stream(srv, max_tokens, path="/v1/completions"):
    body = json.dumps({"prompt": "Zoo", "max_tokens": max_tokens, "temperature": 0,
                       "stream": True}).encode()
    s = socket.create_connection((srv.host, srv.port), timeout=30)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" %
              (path.encode(), len(body)) + body)
    return s


def read_until(s, needle, timeout=10):
    s.settimeout(timeout)
    got = b""
    t0 = time.time()
    while needle not in got and time.time() - t0 < timeout:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def wait_metric(srv, name, pred, timeout=5):
    t0 = time.time()
    v = None
    while time.time() - t0 < timeout:
        v = srv.metrics().get("%s{%s}" % (name, M))
        if v is not None and pred(v):
            return v
        time.sleep(0.02)
    return v


# ---- disconnect, queue, keep-alive ----
srv = Server("stories260K.bin", "tok512.bin",
             args=["--max-batch", "2", "--max-queue", "2", "--step-delay-ms", "20",
                   "--sse-keepalive", "0.2"])
try:
    s = open_stream(srv, 400)
    got = read_until(s, b'"text":" was"')
    C.check(b'"text":" was"' in got, "stream produced tokens")
    C.check(wait_metric(srv, "claq_num_requests_running", lambda v: v == 1) == 1,
            "one sequence running")
    C.check(wait_metric(srv, "claq_kv_cache_usage_ratio", lambda v: v > 0) > 0, "KV in use")
    t0 = time.time()
    s.close()
    C.check(wait_metric(srv, "claq_num_requests_running", lambda v: v == 0) == 0,
            "disconnect frees the running slot")
    C.check(wait_metric(srv, "claq_requests_cancelled_total", lambda v: v == 1) == 1,
            "the sequence was cancelled, not finished")
    C.check(wait_metric(srv, "claq_kv_cache_usage_ratio", lambda v: v == 0) == 0,
            "its KV blocks are back in the pool")
    print("disconnect -> freed in %.3f s" % (time.time() - t0))
    C.check(srv.metrics()["claq_generation_tokens_total{%s}" % M] < 400,
            "generation stopped early")

    # fill the batch (2) and the queue (2), then one more is refused
    socks = [open_stream(srv, 300) for _ in range(4)]
    C.check(wait_metric(srv, "claq_num_requests_waiting", lambda v: v == 2) == 2 and
            wait_metric(srv, "claq_num_requests_running", lambda v: v == 2) == 2,
            "2 running, 2 waiting")
    st, hd, data = srv.request("POST", "/v1/completions", {"prompt": "Zoo", "max_tokens": 5})
    C.check(st == 429 and hd.get("retry-after") == "1" and
            json.loads(data)["error"]["code"] == "queue_full", "queue full -> 429: %d %s" %
            (st, data[:200]))
    C.check(srv.metrics()["claq_admission_rejections_total{%s}" % M] == 1, "rejection counted")
    # a queued stream gets keep-alive comments before its first token
    got = read_until(socks[3], b": keep-alive\n\n", timeout=3)
    C.check(b": keep-alive\n\n" in got and b'"text":" was"' not in got,
            "queued stream gets SSE keep-alive comments: %r" % got[-200:])
    for x in socks:
        x.close()
    C.check(wait_metric(srv, "claq_num_requests_running", lambda v: v == 0) == 0 and
            wait_metric(srv, "claq_num_requests_waiting", lambda v: v == 0) == 0,
            "all capacity back after the clients left")
    st, _, j = srv.post("/v1/completions", {"prompt": "Zoo", "max_tokens": 4, "temperature": 0})
    C.check(st == 200 and j["choices"][0]["text"] == " was a little g", "serving afterwards")
    # more sequences than the queue can ever hold (2 + 2) is the client's to fix: 400, not 429
    st, hd, j = srv.post("/v1/completions", {"prompt": "Zoo", "max_tokens": 2, "n": 5})
    C.check(st == 400 and j["error"]["param"] == "n" and "retry-after" not in hd,
            "n over queue + batch: 400: %s %s" % (st, j))
finally:
    rc = srv.stop()
C.check(rc == 0, "exit 0")

# ---- request timeout ----
srv = Server("stories260K.bin", "tok512.bin",
             args=["--step-delay-ms", "20", "--request-timeout", "0.5"])
try:
    t0 = time.time()
    st, _, j = srv.post("/v1/completions", {"prompt": "Zoo", "max_tokens": 400})
    C.check(st == 408 and j["error"]["code"] == "request_timeout" and time.time() - t0 < 3,
            "non-stream timeout 408: %s %s" % (st, j))
    st, ev, raw = srv.sse("/v1/completions", {"prompt": "Zoo", "max_tokens": 400,
                                              "stream": True})
    C.check(st == 200 and ev[-1] == "[DONE]" and
            any(isinstance(e, dict) and e.get("error", {}).get("code") == "request_timeout"
                for e in ev), "stream timeout: in-band error then [DONE]")
    C.check(srv.metrics()["claq_requests_timeout_total{%s}" % M] == 2, "timeouts counted")
finally:
    rc = srv.stop()
C.check(rc == 0, "exit 0")

# ---- SIGTERM drains: in-flight work finishes, new connections are refused ----
srv = Server("stories260K.bin", "tok512.bin", args=["--step-delay-ms", "10"])
res = {}


def long_request():
    res["r"] = srv.post("/v1/completions", {"prompt": "Zoo", "max_tokens": 80,
                                            "temperature": 0})


th = threading.Thread(target=long_request)
th.start()
wait_metric(srv, "claq_num_requests_running", lambda v: v == 1)
srv.proc.send_signal(signal.SIGTERM)
time.sleep(0.2)
refused = False
try:
    srv.request("GET", "/health", timeout=2)
except OSError:
    refused = True
C.check(refused, "listener closed while draining")
th.join(30)
st, _, j = res.get("r", (None, None, None))
C.check(st == 200 and j["usage"]["completion_tokens"] == 80,
        "in-flight request completed during the drain: %s" % st)
rc = srv.stop()
C.check(rc == 0, "drained and exited 0 (rc=%s)" % rc)

# ---- a drain deadline cancels what is left, each client is answered, still exit 0 ----
srv = Server("stories260K.bin", "tok512.bin",
             args=["--step-delay-ms", "20", "--drain-timeout", "0.3"])
s = open_stream(srv, 400)
read_until(s, b'"text"')
res = {}
th = threading.Thread(target=lambda: res.update(r=srv.post(
    "/v1/completions", {"prompt": "Zoo", "max_tokens": 400, "temperature": 0})))
th.start()
wait_metric(srv, "claq_num_requests_running", lambda v: v == 2)
t0 = time.time()
srv.proc.send_signal(signal.SIGTERM)
rest = read_until(s, b"never", timeout=5)
rc = srv.stop(timeout=10)
th.join(10)
C.check(rc == 0 and time.time() - t0 < 4, "drain deadline -> exit 0 quickly (rc=%s)" % rc)
C.check(b"server_shutting_down" in rest and b"data: [DONE]" in rest and
        rest.endswith(b"0\r\n\r\n"), "the cut stream ends with an in-band error, [DONE] and "
        "the last chunk: %r" % rest[-200:])
st, _, j = res.get("r", (None, None, None))
C.check(st == 503 and j["error"]["code"] == "server_shutting_down",
        "the cut non-stream request gets 503 server_shutting_down: %s %s" % (st, j))
s.close()
C.done(srv)
