"""test_srv_limits_ops.py — the operational limits and switches not covered elsewhere: a slow
reader is cut off by the write-queue limit and its generations cancelled, and one that keeps
taking bytes gets its whole answer even when the connection closes after it; connections beyond
--max-connections get 503; --reuseport lets two servers share a port; Expect: 100-continue is
answered at once; HTTP/1.0 and Connection: close end the connection; SIGHUP is ignored; /health
says 503 while draining; a model that cannot be loaded ends the process with exit 1 and a clear log line; --help
documents every flag and each flag has an environment variable."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srv_harness import Checker, Server, paths, require, statuses  # noqa: E402

require("stories260K.bin")
C = Checker()
M = 'model_name="stories260K.bin"'
_, BIN = paths()


def wait_metric(srv, name, pred, timeout=10):
    t0 = time.time()
    v = None
    while time.time() - t0 < timeout:
        v = srv.metrics().get("%s{%s}" % (name, M))
        if v is not None and pred(v):
            return v
        time.sleep(0.05)
    return v


# ---- --help and environment variables ----
out = subprocess.run([BIN, "--help"], capture_output=True, text=True)
C.check(out.returncode == 0, "--help exits 0")
flags = re.findall(r"^\s+--([a-z-]+)", out.stdout, re.M)
envs = re.findall(r"\[env (CLAQ_[A-Z_]+)\]", out.stdout)
for f in ["model", "tokenizer", "host", "port", "api-key", "served-model-name", "kv-cache-tokens",
          "max-batch", "max-queue", "threads", "chat-template", "request-timeout",
          "max-body-bytes"]:
    C.check(f in flags, "--help documents --%s" % f)
settable = [f for f in flags if f not in ("help", "version")]
C.check(len(envs) == len(settable) and len(set(envs)) == len(envs),
        "every flag has its own env var (%d flags, %d env)" % (len(settable), len(envs)))
C.check(all(len(ln) < 100 for ln in out.stdout.splitlines()), "--help lines under 100 columns")
out = subprocess.run([BIN, "--version"], capture_output=True, text=True)
C.check(out.returncode == 0 and out.stdout.startswith("claq-server "), "--version")
out = subprocess.run([BIN, "--model", "x", "--bogus"], capture_output=True, text=True)
C.check(out.returncode == 2 and "--bogus" in out.stderr, "unknown flag: exit 2 with a message")
out = subprocess.run([BIN, "--model", "x", "--max-batch", "0"], capture_output=True, text=True)
C.check(out.returncode == 2 and "max-batch" in out.stderr, "out-of-range flag rejected")

# env vars configure the server (flags would win)
srv = Server("stories260K.bin", "tok512.bin",
             env={"CLAQ_SERVED_MODEL_NAME": "from-env", "CLAQ_MAX_CONNECTIONS": "3"})
try:
    st, _, data = srv.request("GET", "/v1/models")
    C.check(json.loads(data)["data"][0]["id"] == "from-env", "CLAQ_SERVED_MODEL_NAME applies")
    # ---- --max-connections (3 from the environment) ----
    held = [socket.create_connection((srv.host, srv.port)) for _ in range(3)]
    time.sleep(0.2)
    got = srv.raw(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout=5)
    C.check(statuses(got) == [503] and b"too_many_connections" in got,
            "connection over the limit gets 503: %r" % got[:120])
    for h in held:
        h.close()
    time.sleep(0.3)
    st, _, _ = srv.request("GET", "/health")
    C.check(st == 200, "served again once connections closed")
    # ---- Expect: 100-continue ----
    body = json.dumps({"prompt": "Zoo", "max_tokens": 2}).encode()
    s = socket.create_connection((srv.host, srv.port), timeout=5)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Expect: 100-continue\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    t0 = time.time()
    first = s.recv(100)
    C.check(first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n") and time.time() - t0 < 0.5,
            "100 Continue at once: %r" % first)
    s.sendall(body)
    rest = b""
    while b'"usage"' not in rest:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    C.check(statuses(rest) == [200], "then the response")
    s.close()
    # ---- HTTP/1.0 and Connection: close end the connection ----
    got = srv.raw(b"GET /health HTTP/1.0\r\n\r\nGET /health HTTP/1.0\r\n\r\n", timeout=5)
    C.check(statuses(got) == [200] and b"Connection: close" in got, "HTTP/1.0: one, then close")
    got = srv.raw(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", timeout=5)
    C.check(statuses(got) == [200] and b"Connection: close" in got, "Connection: close honoured")
finally:
    C.check(srv.stop() == 0, "exit 0")

# ---- slow reader: the write queue limit cuts it off and cancels its generations ----
srv = Server("stories260K.bin", "tok512.bin",
             args=["--write-soft-bytes", "16384", "--write-soft-seconds", "0.5",
                   "--write-hard-bytes", "262144", "--step-delay-ms", "10",
                   "--socket-sndbuf", "16384"])
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((srv.host, srv.port))
    body = json.dumps({"prompt": "Zoo", "max_tokens": 500, "n": 16, "stream": True,
                       "logprobs": 5}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" %
              len(body) + body)
    t0 = time.time()
    v = wait_metric(srv, "claq_requests_cancelled_total", lambda v: v == 16, timeout=15)
    el = time.time() - t0
    C.check(v == 16, "slow reader's 16 sequences cancelled (got %s)" % v)
    C.check(el < 4.5, "cut off well before the 5 s generation would end (%.1f s)" % el)
    C.check(srv.wait_log("closing a connection"), "logged why")
    C.check(wait_metric(srv, "claq_http_requests_abandoned_total", lambda v: v == 1) == 1,
            "the cut-off request counted as abandoned")
    C.check(srv.wait_log('"client_gone":true'), "and in the access log, status it began with")
    C.check(wait_metric(srv, "claq_num_requests_running", lambda v: v == 0) == 0, "slots free")
    s.close()
    st, _, _ = srv.request("GET", "/health")
    C.check(st == 200, "still serving")
    # a fast reader gets a response larger than --write-hard-bytes whole: only bytes it has not
    # taken count against the limit, not one big answer queued at once
    text = "Once upon a time, the cat sat on the mat. " * 6000   # 252 KB
    try:
        st, _, j = srv.post("/tokenize", {"prompt": text})
    except Exception as e:   # the old server cut the answer off: IncompleteRead
        st, j = repr(e)[:120], {}
    n = j.get("count", 0) if isinstance(j, dict) else 0
    size = len(json.dumps(j)) if isinstance(j, dict) else 0
    C.check(st == 200 and n == len(j.get("tokens", [])) and size > 262144,
            "fast reader: a %d-byte answer over the 262144-byte hard limit arrives whole "
            "(status %s)" % (size, st))
finally:
    C.check(srv.stop() == 0, "exit 0")

# ---- a slow reader that keeps taking bytes gets its whole answer: the linger window starts
# only once every byte is written (it ran from the last completed write, and a large answer is
# one write), and the idle timeout counts from the last byte taken ----
def slow_fetch(srv, close):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((srv.host, srv.port))
    body = json.dumps({"prompt": "Once upon", "max_tokens": 60, "n": 16, "logprobs": 20,
                       "echo": True, "logit_bias": {"1": -100, "2": -100}}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/"
              b"json\r\n%sContent-Length: %d\r\n\r\n" %
              (b"Connection: close\r\n" if close else b"", len(body)) + body)
    s.settimeout(5)
    buf = b""
    while True:
        try:
            d = s.recv(16384)
        except (socket.timeout, ConnectionResetError):
            break
        if not d:
            break
        buf += d
        m = re.search(rb"Content-Length: (\d+)", buf)
        if not close and m and len(buf.partition(b"\r\n\r\n")[2]) >= int(m.group(1)):
            break
        time.sleep(0.02)   # ~800 KB/s at best, slower than the 4 KiB buffers let through
    s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    return (int(m.group(1)) if m else -1), len(rest)


srv = Server("stories260K.bin", "tok512.bin", args=["--socket-sndbuf", "4096",
                                                    "--idle-timeout", "1"])
try:
    for close in (True, False):
        t0 = time.time()
        cl, got = slow_fetch(srv, close)
        C.check(cl > 200000 and got == cl, "slow reader, %s: all %d bytes of a %d-byte answer "
                "in %.1f s" % ("Connection: close" if close else "keep-alive, --idle-timeout 1",
                               got, cl, time.time() - t0))
finally:
    C.check(srv.stop() == 0, "exit 0")

# ---- a server-wide budget for buffered request bodies: 503 + Retry-After past it ----
srv = Server("stories260K.bin", "tok512.bin",
             args=["--max-body-bytes", "65536", "--max-inflight-body-bytes", "100000"])
try:
    body = json.dumps({"prompt": "x" * (60000 - 14)}).encode()
    assert len(body) == 60000, len(body)
    head = (b"POST /tokenize HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    a = socket.create_connection((srv.host, srv.port), timeout=10)
    a.sendall(head + body[:50000])             # 50,000 bytes held, the rest still to come
    time.sleep(0.3)
    got = srv.raw(head + body, timeout=5)      # would take the total to 110,000
    C.check(statuses(got) == [503] and b"Retry-After: 1" in got and b"server_busy" in got,
            "body past the server-wide budget: 503 + Retry-After: %r" % got[:200])
    a.sendall(body[50000:])
    out = b""
    while b"\r\n\r\n" not in out or not out.rstrip().endswith(b"}"):
        chunk = a.recv(65536)
        if not chunk:
            break
        out += chunk
    a.close()
    C.check(statuses(out) == [200], "the body that was in first completes: %r" % out[:80])
    got = srv.raw(head + body, timeout=5)
    C.check(statuses(got) == [200], "budget given back: the same body now accepted")
finally:
    C.check(srv.stop() == 0, "exit 0")

# ---- --reuseport: two servers on one port ----
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
a = Server("stories260K.bin", "tok512.bin", args=["--reuseport", "--port", str(port)])
try:
    b = Server("stories260K.bin", "tok512.bin", args=["--reuseport", "--port", str(port)])
    C.check(a.port == port and b.port == port, "both listen on %d" % port)
    a0, b0 = len(a.access_lines()), len(b.access_lines())
    for i in range(40):
        st, _, _ = a.request("GET", "/health")
    time.sleep(0.5)   # let both logs reach us
    na, nb = len(a.access_lines()) - a0, len(b.access_lines()) - b0
    C.check(na > 1 and nb > 1 and na + nb >= 40,
            "the kernel spreads connections over both (%d / %d)" % (na, nb))
    C.check(b.stop() == 0, "b exits 0")
finally:
    C.check(a.stop() == 0, "a exits 0")

# ---- /health 503 while draining (a long request in flight) ----
srv = Server("stories260K.bin", "tok512.bin", args=["--step-delay-ms", "10"])
s = socket.create_connection((srv.host, srv.port), timeout=10)
hc = socket.create_connection((srv.host, srv.port), timeout=10)   # kept alive, opened before
body = json.dumps({"prompt": "Zoo", "max_tokens": 300, "stream": True}).encode()
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" %
          len(body) + body)
s.recv(100)
srv.proc.send_signal(signal.SIGHUP)   # not a stop request (its default action killed us)
time.sleep(0.2)
C.check(srv.proc.poll() is None, "SIGHUP ignored: still running")
srv.proc.send_signal(signal.SIGTERM)
time.sleep(0.2)
hc.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
got = hc.recv(4096)
C.check(statuses(got) == [503] and b"server_shutting_down" in got and
        b"Connection: close" in got, "/health 503 while draining: %r" % got[:100])
hc.close()
s.close()
C.check(srv.stop() == 0, "exit 0 after drain")

# ---- a model that cannot be loaded ----
shared, _ = paths()
p = subprocess.run([BIN, "--model", os.path.join(shared, "models", "README.md"), "--port", "0"],
                   capture_output=True, text=True, timeout=30)
C.check(p.returncode == 1 and "could not load the model" in p.stderr and
        "listening on" in p.stderr, "load failure: listened first, then exit 1 with a reason")
# a tokenizer bigger than the model's vocabulary (Llama 2's 32000 pieces on a 2048-token model)
p = subprocess.run([BIN, "--model", os.path.join(shared, "models", "tinystories-656k"),
                    "--tokenizer", os.path.join(shared, "models", "tokenizer.model"),
                    "--port", "0"],
                   capture_output=True, text=True, timeout=30)
C.check(p.returncode == 1 and "32000 pieces" in p.stderr and "2048" in p.stderr,
        "mismatched tokenizer refused at load: %s" % p.stderr[-300:])
C.done()
