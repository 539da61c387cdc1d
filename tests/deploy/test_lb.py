"""test_lb.py — deploy/nginx.conf in front of 3 claq-server replicas on loopback (Debian's nginx,
the built claq-server, no containers): the repository's configuration with only its four
addresses rewritten to free ports. Measures throughput through the balancer against one replica
alone, then runs a mixed load (streamed and whole completions) while one replica is SIGKILLed and
another SIGTERMed, and asserts: every whole (non-streamed) request succeeds (those caught on the
killed replica are retried by nginx), a stream cut by the kill ends promptly and visibly (no
[DONE], a truncated chunked body) instead of hanging, every request the drained replica accepted
completes and it exits 0 after "drained", and the survivor still serves.
The throughput ratio is printed, not asserted: 3 replicas on separate cores would give about 3x
(the issue asks for >= 2.5x), but this test may run on 2 shared cores. Skips (77) without nginx,
the binary or the model.
ctest-label: slow
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.environ.get("CLAQ_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "server"))
import srv_harness as h  # noqa: E402

MODEL = "small-lm-5m"     # big enough that a replica is CPU-bound, small enough to be quick
PROMPT = "Once upon a time"
CONF_ADDRS = ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"]
CONF_LISTEN = "listen 127.0.0.1:8090;"

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_conf(src, dst, replica_ports, lb_port):
    """The repository's nginx.conf with its replica and listen addresses replaced, nothing else."""
    text = open(src).read()
    for addr, port in zip(CONF_ADDRS, replica_ports):
        line = "server %s " % addr
        if text.count(line) != 1:
            raise RuntimeError("%s: expected '%s' exactly once" % (src, line))
        text = text.replace(line, "server 127.0.0.1:%d " % port)
    if text.count(CONF_LISTEN) != 1:
        raise RuntimeError("%s: expected '%s' exactly once" % (src, CONF_LISTEN))
    text = text.replace(CONF_LISTEN, "listen 127.0.0.1:%d;" % lb_port)
    with open(dst, "w") as f:
        f.write(text)


def completion(port, rid, stream, max_tokens, timeout=60):
    """One POST /v1/completions on a fresh connection. Returns a dict: status, complete (whole
    answer or [DONE] seen), events, error (text of a transport error), seconds."""
    t0 = time.time()
    out = {"rid": rid, "stream": stream, "status": None, "complete": False, "events": 0,
           "error": None}
    body = json.dumps({"prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0,
                       "stream": stream})
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("POST", "/v1/completions", body=body,
                  headers={"Content-Type": "application/json", "X-Request-Id": rid})
        r = c.getresponse()
        out["status"] = r.status
        if not stream:
            data = json.loads(r.read())
            out["complete"] = r.status == 200 and \
                data["choices"][0]["finish_reason"] in ("length", "stop")
        else:
            while True:
                ln = r.readline()
                if not ln:
                    break
                if ln.startswith(b"data: "):
                    out["events"] += 1
                    if ln.strip() == b"data: [DONE]":
                        out["complete"] = True
            r.read()
        c.close()
    except (OSError, http.client.HTTPException, ValueError) as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
    out["seconds"] = time.time() - t0
    return out


def throughput(port, n, conc, max_tokens):
    """n whole completions, conc at a time; returns (requests/s, list of failures)."""
    lock = threading.Lock()
    todo = list(range(n))
    bad = []

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            r = completion(port, "tp-%d-%d" % (port, i), False, max_tokens)
            if not r["complete"]:
                with lock:
                    bad.append(r)
    t0 = time.time()
    th = [threading.Thread(target=worker) for _ in range(conc)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return n / (time.time() - t0), bad


def main():
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                      else None)
    if not nginx:
        print("SKIP: nginx is not installed (deploy/install-deps.sh installs Debian's nginx)")
        return h.SKIP
    h.require(MODEL)
    conf_src = os.path.join(SRC, "deploy", "nginx.conf")

    # --threads 1: each replica is one CPU-bound worker, as replicas on separate cores would be.
    replicas, ngx = [], None
    prefix = tempfile.mkdtemp(prefix="claq-lb.")
    try:
        for _ in range(3):
            replicas.append(h.Server(MODEL, args=["--threads", "1", "--drain-timeout", "30"]))
        os.chmod(prefix, 0o755)        # nginx workers drop root privileges when started as root
        os.makedirs(os.path.join(prefix, "tmp"))
        lb_port = free_port()
        conf = os.path.join(prefix, "nginx.conf")
        write_conf(conf_src, conf, [s.port for s in replicas], lb_port)
        nlog = open(os.path.join(prefix, "nginx.log"), "w+")
        cmd = [nginx, "-p", prefix, "-c", conf, "-e", "stderr", "-g", "daemon off;"]
        t = subprocess.run(cmd[:-2] + ["-t"], capture_output=True, text=True)
        if t.returncode != 0:
            print(t.stderr)
            check(False, "nginx -t accepts deploy/nginx.conf")
            return 1
        ngx = subprocess.Popen(cmd, stdout=nlog, stderr=subprocess.STDOUT)
        return run(replicas, ngx, lb_port, nlog)
    finally:
        if ngx and ngx.poll() is None:
            ngx.send_signal(signal.SIGQUIT)    # graceful stop of nginx
            try:
                ngx.wait(10)
            except subprocess.TimeoutExpired:
                ngx.kill()
        for s in replicas:
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait()
        shutil.rmtree(prefix, ignore_errors=True)


def run(replicas, ngx, lb_port, nlog):
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", lb_port, timeout=2)
            c.request("GET", "/lb-health")
            if c.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.05)
    r = completion(lb_port, "first", False, 8)
    check(r["complete"], "a completion through nginx answers 200 (%s)" % (r["error"] or r["status"]))
    # an HTTP/1.0 client without Host (old health checkers): nginx names the host upstream
    got = h.raw_request("127.0.0.1", lb_port, b"GET /v1/models HTTP/1.0\r\n\r\n")
    check(got.startswith(b"HTTP/1.1 200") or got.startswith(b"HTTP/1.0 200"),
          "an HTTP/1.0 request without Host through nginx: 200 (%r)" % got[:120])

    # ---- throughput: one replica directly, then three through nginx ----
    n, conc, mt = 48, 6, 64
    throughput(replicas[0].port, 6, 3, mt)                 # warm-up
    one, bad1 = throughput(replicas[0].port, n, conc, mt)
    three, bad3 = throughput(lb_port, n, conc, mt)
    check(not bad1 and not bad3, "throughput runs: every request completed (%d, %d failed)"
          % (len(bad1), len(bad3)))
    ratio = three / one
    print("throughput: one replica %.1f req/s, 3 replicas via nginx %.1f req/s, ratio %.2fx "
          "(%d requests of %d tokens, %d concurrent, %d CPU cores on this machine)"
          % (one, three, ratio, n, mt, conc, os.cpu_count()), flush=True)
    if os.cpu_count() >= 4:
        check(ratio >= 2.5, "3 replicas on >= 4 cores give >= 2.5x one replica's throughput")
    else:
        print("note: %d cores cannot hold 3 CPU-bound replicas plus nginx and the load "
              "generator, so the 2.5x target is reported, not asserted" % os.cpu_count())

    # ---- failover: SIGKILL one replica, then SIGTERM another, under a mixed load ----
    killed, drained, survivor = replicas[2], replicas[1], replicas[0]
    results, lock, stop = [], threading.Lock(), threading.Event()
    counter = [0]

    def loader(stream):
        while not stop.is_set():
            with lock:
                counter[0] += 1
                rid = "fo-%d-%s" % (counter[0], "s" if stream else "w")
            r = completion(lb_port, rid, stream, 200, timeout=60)
            with lock:
                results.append(r)
    th = [threading.Thread(target=loader, args=(i % 2 == 0,)) for i in range(8)]
    for x in th:
        x.start()
    time.sleep(2.0)
    killed.proc.kill()                                     # SIGKILL mid-load
    t_kill = time.time()
    time.sleep(1.5)
    drained.proc.send_signal(signal.SIGTERM)               # drain mid-load
    t_term = time.time()
    time.sleep(2.5)
    stop.set()
    for x in th:
        x.join(120)
    check(not any(x.is_alive() for x in th), "every load thread finished (nothing hangs)")
    try:
        rc_drained = drained.proc.wait(40)
    except subprocess.TimeoutExpired:
        rc_drained = None
    killed.proc.wait()
    drained.reader.join(5)                                 # both exited: read their logs to EOF
    killed.reader.join(5)

    whole = [r for r in results if not r["stream"]]
    streams = [r for r in results if r["stream"]]
    whole_bad = [r for r in whole if not r["complete"]]
    cut = [r for r in streams if not r["complete"]]
    print("failover load: %d whole requests, %d streams; SIGKILL at +2.0 s, SIGTERM at +%.1f s"
          % (len(whole), len(streams), t_term - t_kill + 2.0), flush=True)
    check(len(whole) >= 8 and len(streams) >= 8, "the load ran (enough requests of each kind)")
    check(not whole_bad, "no whole request lost: %d of %d failed %s"
          % (len(whole_bad), len(whole), [(r["rid"], r["status"], r["error"]) for r in whole_bad][:5]))

    # Who served what: each replica's access log names the request ids it answered.
    served = {}
    for name, s in (("survivor", survivor), ("drained", drained)):
        for a in s.access_lines():
            served.setdefault(a["request_id"], []).append((name, a["status"]))
    for r in cut:
        ok200 = [x for x in served.get(r["rid"], []) if x[1] == 200]
        check(not ok200 and r["seconds"] < 30,
              "cut stream %s was on the killed replica and ended in %.2f s with %d events, "
              "no [DONE] (%s)" % (r["rid"], r["seconds"], r["events"], r["error"] or "EOF"))
    print("streams cut by the SIGKILL: %d of %d (the rest completed with [DONE])"
          % (len(cut), len(streams)), flush=True)

    # The drained replica: exit 0 after "drained", every request it started answered 200 (a 503
    # it sent while draining was retried elsewhere by nginx), and the client got all of them.
    check(rc_drained == 0, "the SIGTERMed replica exited 0 after draining (rc %s)" % rc_drained)
    check("drained: every request answered" in drained.log_text(),
          "the SIGTERMed replica logged 'drained: every request answered'")
    by_rid = {r["rid"]: r for r in results}
    drained_ok = [a for a in drained.access_lines() if a["route"] != "-"
                  and a["request_id"].startswith("fo-")]
    lost = [a["request_id"] for a in drained_ok if a["status"] == 200
            and not by_rid.get(a["request_id"], {}).get("complete")]
    check(drained_ok and not lost, "the drained replica's %d failover requests all reached the "
          "client whole (lost: %s)" % (len(drained_ok), lost[:5]))
    non503 = [a for a in drained_ok if a["status"] not in (200, 503)]
    check(not non503, "the drained replica answered only 200 (or 503 while draining, retried)")

    # nginx: retried requests show two upstreams in its log
    nlog.flush()
    nlog.seek(0)
    lines = nlog.read().splitlines()
    retried = [ln for ln in lines if re.search(r"upstream=\S+, ", ln)]
    print("nginx retried %d request(s) on another replica, e.g. %s"
          % (len(retried), retried[0] if retried else "-"), flush=True)
    check(len(retried) + len(cut) > 0, "the kill or the drain hit requests in flight")

    r = completion(lb_port, "after", False, 16)
    check(r["complete"], "the survivor still serves through nginx")
    survivor.proc.send_signal(signal.SIGTERM)
    check(survivor.proc.wait(40) == 0, "the survivor drains and exits 0")
    check(ngx.poll() is None, "nginx kept running throughout")
    if failures:
        print("---- nginx log (last 30 lines) ----\n" + "\n".join(lines[-30:]))
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
