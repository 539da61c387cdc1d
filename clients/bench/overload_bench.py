#!/usr/bin/python3
"""overload_bench.py — what a client sees when claq-server is driven past its capacity (issue
14): non-streamed completions from C concurrent clients for a bounded time, first at a load the
server admits whole (--low clients), then at several times its capacity (--high clients).
For each phase it prints requests answered by status, how many 429s carried Retry-After, and the
latency p50 / p99 of the admitted (200) requests; then the ratio of the overloaded p99 to the
unloaded p99 (the target is <= 2: admission control keeps the admitted fast and sends the rest
away early, rather than queueing everyone). A benchmark that prints figures, not a test.
Standard library only; one thread and one keep-alive connection per client. Does not start the
server (overload_bench.sh does)."""
import argparse
import http.client
import json
import threading
import time
import urllib.parse


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def phase(url, clients, seconds, max_tokens):
    u = urllib.parse.urlparse(url)
    stop = time.time() + seconds
    lock = threading.Lock()
    res = {"status": {}, "lat200": [], "retry_after": 0, "errors": 0}
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": max_tokens,
                       "temperature": 0})

    def client():
        conn = None
        while time.time() < stop:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
                t0 = time.time()
                conn.request("POST", "/v1/completions", body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                dt = time.time() - t0
                with lock:
                    res["status"][r.status] = res["status"].get(r.status, 0) + 1
                    if r.status == 200:
                        res["lat200"].append(dt)
                    if r.status == 429 and r.getheader("Retry-After"):
                        res["retry_after"] += 1
                if r.status == 429:   # a well-behaved client backs off a little
                    time.sleep(0.05)
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                with lock:
                    res["errors"] += 1
                if conn:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn:
            conn.close()

    ths = [threading.Thread(target=client) for _ in range(clients)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--low", type=int, default=2)
    ap.add_argument("--high", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--max-tokens", type=int, default=32)
    a = ap.parse_args()
    rows = []
    for name, c in (("unloaded", a.low), ("overloaded", a.high)):
        r = phase(a.url, c, a.seconds, a.max_tokens)
        total = sum(r["status"].values())
        rows.append((name, c, r))
        print("%-10s clients %3d: %5d answers %s, 429 with Retry-After %d, client errors %d; "
              "admitted p50 %.3f s p99 %.3f s" %
              (name, c, total, json.dumps(r["status"], sort_keys=True), r["retry_after"],
               r["errors"], pct(r["lat200"], 50), pct(r["lat200"], 99)))
    p_low, p_high = pct(rows[0][2]["lat200"], 99), pct(rows[1][2]["lat200"], 99)
    n429 = rows[1][2]["status"].get(429, 0)
    print("overload: %d x 429 (%d with Retry-After); admitted p99 %.3f s vs unloaded %.3f s: "
          "ratio %.2f (target <= 2)" % (n429, rows[1][2]["retry_after"], p_high, p_low,
                                         p_high / p_low if p_low else float("nan")))


if __name__ == "__main__":
    main()
