"""srv_harness.py — starts claq-server on an ephemeral loopback port with a real model from
$CLAQ_SHARED and talks to it with the standard library (http.client, socket). Shared by the
tests/server/test_srv_*.py scripts; not a test itself. Exit code 77 means "skipped"."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

SKIP = 77


def paths():
    shared = os.environ.get("CLAQ_SHARED", "")
    binary = os.path.join(os.environ.get("CLAQ_BIN", ""), "claq-server")
    return shared, binary


def require(model_rel):
    shared, binary = paths()
    if not os.access(binary, os.X_OK):
        print("SKIP: claq-server not built at", binary)
        sys.exit(SKIP)
    m = os.path.join(shared, "models", model_rel)
    if not os.path.exists(m):
        print("SKIP: model missing:", m)
        sys.exit(SKIP)
    return os.path.join(shared, "models")


def llama3_tiny(tmp):
    """`claq synth --shape llama3-tiny` (random weights, LLaMA-3.2's layout at test size) with
    LLaMA-3's real byte-level BPE tokenizer, built from llama3-tokenizer-js into tmp; returns the
    model directory. Exits 77 when the node packages are missing and npm cannot install them."""
    src = os.environ.get("CLAQ_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
    engine_tests = os.path.join(src, "tests", "engine")
    if not os.path.isfile(os.path.join(engine_tests, "node_modules", "llama3-tokenizer-js",
                                       "package.json")):
        if subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"],
                          cwd=engine_tests).returncode != 0:
            print("SKIP: llama3-tokenizer-js is not installed and npm could not install it")
            sys.exit(SKIP)
    tokdir = os.path.join(tmp, "tok")
    subprocess.run(["node", "tok_bytelevel_ref.mjs", "fixture", tokdir, "llama3"],
                   cwd=engine_tests, check=True)
    model = os.path.join(tmp, "llama3-tiny")
    subprocess.run([os.path.join(os.environ.get("CLAQ_BIN", ""), "claq"), "synth", "--shape",
                    "llama3-tiny", "--tokenizer", os.path.join(tokdir, "tokenizer.json"),
                    "--out", model], check=True, stdout=subprocess.DEVNULL)
    return model


def raw_request(host, port, data, timeout=10, shut=False, read=True):
    """Sends raw bytes to host:port on a fresh socket (any server: nginx in front too); returns
    everything read until EOF/timeout."""
    s = socket.create_connection((host, port), timeout=timeout)
    if data:
        s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    if read:
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
    s.close()
    return out


class Server:
    """One claq-server process. args are extra flags; the model is required."""

    def __init__(self, model, tokenizer=None, args=(), env=None, wait_ready=True):
        shared, binary = paths()
        mdir = os.path.join(shared, "models")
        cmd = [binary, "--model", os.path.join(mdir, model), "--port", "0",
               "--host", "127.0.0.1"]
        if tokenizer:
            cmd += ["--tokenizer", os.path.join(mdir, tokenizer)]
        cmd += list(args)
        e = dict(os.environ)
        if env:
            e.update(env)
        self.lines = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=e)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.host, self.port = None, None
        deadline = time.time() + 30
        while time.time() < deadline and self.port is None:
            with self.lock:
                for ln in self.lines:
                    m = re.search(r"listening on http://([0-9.]+):(\d+)", ln)
                    if m:
                        self.host, self.port = m.group(1), int(m.group(2))
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if self.port is None:
            self.kill()
            raise RuntimeError("server did not start:\n" + self.log_text())
        if wait_ready:
            self.wait_ready()

    def _read(self):
        for raw in self.proc.stderr:
            with self.lock:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def log_text(self):
        with self.lock:
            return "\n".join(self.lines)

    def wait_log(self, text, timeout=10):
        """True once a line the server wrote contains text: its stderr is read by a thread, so
        a line written before the server was ready may not have been read yet."""
        deadline = time.time() + timeout
        while True:
            if text in self.log_text():
                return True
            if time.time() > deadline:
                return False
            time.sleep(0.02)

    def access_lines(self):
        out = []
        with self.lock:
            for ln in self.lines:
                try:
                    j = json.loads(ln)
                except ValueError:
                    continue
                if j.get("msg") == "access":
                    out.append(j)
        return out

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                st, _, _ = self.request("GET", "/health")
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server never became ready:\n" + self.log_text())

    def conn(self, timeout=60):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=60):
        """One request on a fresh connection: (status, headers dict lower-case, body bytes)."""
        c = self.conn(timeout)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        if body is not None and method == "POST":   # the server takes JSON bodies only (415)
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hd = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        return r.status, hd, data

    def post(self, path, obj, headers=None, timeout=120):
        st, hd, data = self.request("POST", path, obj, headers, timeout)
        return st, hd, json.loads(data) if data else None

    def sse(self, path, obj, headers=None, timeout=120):
        """Streams a request; returns (status, list of parsed data events, raw text)."""
        st, hd, data = self.request("POST", path, obj, headers, timeout)
        text = data.decode("utf-8")
        events = []
        for block in text.split("\n\n"):
            for ln in block.split("\n"):
                if ln.startswith("data: "):
                    payload = ln[6:]
                    events.append(payload if payload == "[DONE]" else json.loads(payload))
        return st, events, text

    def raw(self, data, timeout=10, shut=False, read=True):
        """Sends raw bytes on a fresh socket; returns everything read until EOF/timeout."""
        return raw_request(self.host, self.port, data, timeout, shut, read)

    def metrics(self):
        st, _, data = self.request("GET", "/metrics")
        assert st == 200, st
        vals = {}
        for ln in data.decode().splitlines():
            if ln.startswith("#") or not ln.strip():
                continue
            name, _, v = ln.rpartition(" ")
            vals[name] = float(v)
        return vals

    def metric(self, name):
        for k, v in self.metrics().items():
            if k.startswith(name + "{") or k == name:
                return v
        raise KeyError(name)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        else:   # it died on its own: say how, with what it wrote (a sanitizer report, say)
            self.reader.join(5)
            print("server exited by itself with status %r; log tail:\n%s"
                  % (self.proc.returncode, "\n".join(self.log_text().splitlines()[-80:])))
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise AssertionError("server did not exit after signal %d" % sig)
        self.reader.join(5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def concurrently(fn, items):
    """fn(*item) for every item, each on its own thread, all released at once (a barrier);
    returns the results in item order."""
    res = [None] * len(items)
    barrier = threading.Barrier(len(items))

    def worker(i):
        barrier.wait()
        res[i] = fn(*items[i])

    th = [threading.Thread(target=worker, args=(i,)) for i in range(len(items))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return res


def statuses(raw_bytes):
    """All HTTP status codes found in a raw response byte stream, in order."""
    return [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw_bytes)]


class Checker:
    """Counts failures, prints each, and exits non-zero at the end if any."""

    def __init__(self):
        self.fails = 0
        self.n = 0

    def check(self, cond, what):
        self.n += 1
        if not cond:
            self.fails += 1
            print("FAIL:", what, flush=True)
        return cond

    def done(self, server=None):
        if self.fails and server is not None:
            print("---- server log (tail) ----")
            print("\n".join(server.log_text().splitlines()[-60:]))
        print("%d checks, %d failed" % (self.n, self.fails))
        sys.exit(1 if self.fails else 0)
