"""test_srv_batch_invariance.py — 38 concurrent requests (different prompts and lengths, some
streamed, some long enough to be prefilled in several chunks while others decode, some asking
for echoed prompt log-probabilities, a few long seeded sampled ones) return exactly the text and
log-probabilities the same requests return one by one. Proves continuous batching does not
change results (batch-invariant kernels, per-sequence KV) and that the scheduler really batches
(engine steps are far fewer than generated tokens). Then the same requests against a KV pool of
a fraction of what they need together: running sequences are preempted and recompute their K/V,
and every result is still the one-by-one result."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srv_harness import Checker, Server, concurrently, require  # noqa: E402

require("stories260K.bin")
C = Checker()

words = open(os.path.join(os.environ["CLAQ_SHARED"], "data", "tinystories",
                          sorted(os.listdir(os.path.join(os.environ["CLAQ_SHARED"], "data",
                                                         "tinystories")))[0]),
             encoding="utf-8", errors="replace").read().split()


def make_requests():
    reqs = []
    for i in range(32):
        start = (i * 37) % max(1, len(words) - 200)
        # a few long prompts (> prefill chunk of 64 below) mixed with short ones
        n_words = 120 if i % 8 == 3 else 3 + i % 7
        prompt = " ".join(words[start:start + n_words])
        path = "/v1/chat/completions" if i % 4 == 1 else "/v1/completions"
        body = {"max_tokens": 24 + (i * 5) % 40, "temperature": 0, "stream": i % 3 == 0}
        if path == "/v1/completions":
            body["prompt"] = prompt
            if i % 8 == 6:   # prompt scoring: logprobs of the echoed prompt and of the output
                body.update({"echo": True, "logprobs": 2})
        else:
            body["messages"] = [{"role": "user", "content": prompt}]
        reqs.append((path, body))
    # long generations from short prompts: in the small pool below they are preempted after
    # many tokens, so their recomputation covers generated tokens, and the seeded sampled ones
    # show that sampler state (random stream, penalty counts) survives the preemption
    for i in range(6):
        start = (i * 101 + 7) % max(1, len(words) - 20)
        body = {"prompt": " ".join(words[start:start + 4]), "max_tokens": 170 + 7 * i,
                "temperature": 0, "stream": i % 2 == 0}
        if i >= 3:
            body.update({"temperature": 0.9, "seed": 1000 + i, "frequency_penalty": 0.5,
                         "presence_penalty": 0.3, "logprobs": 1})
        reqs.append(("/v1/completions", body))
    return reqs


def run_one(srv, path, body):
    """The text (and logprobs) of a 200 answer, or an "HTTP <status>" line saying what failed."""
    if body["stream"]:
        st, ev, _ = srv.sse(path, body)
        if st != 200 or not ev or ev[-1] != "[DONE]":
            return "HTTP %d (stream): %r" % (st, ev[-1:] if ev else ev)
        out, lps = [], []
        for e in ev[:-1]:
            for c in e["choices"]:
                out.append(c.get("text") if "text" in c else c["delta"].get("content") or "")
                if c.get("logprobs"):
                    lps.append(json.dumps(c["logprobs"], sort_keys=True))
        return "".join(out) + "".join(lps)
    st, _, j = srv.post(path, body)
    if st != 200:
        return "HTTP %d: %s" % (st, json.dumps(j))
    c = j["choices"][0]
    text = c["text"] if "text" in c else c["message"]["content"]
    return text + (json.dumps(c["logprobs"], sort_keys=True) if c.get("logprobs") else "")


def run_concurrent(srv, reqs):
    return concurrently(lambda path, body: run_one(srv, path, body), reqs)


def compare(serial, results, what):
    for i, (a, b) in enumerate(zip(serial, results)):
        C.check(a == b, "%s, request %d: text differs\n  serial:     %r\n  concurrent: %r"
                % (what, i, a, b))


# a small prefill chunk so the long prompts take several steps while others decode
srv = Server("stories260K.bin", "tok512.bin", args=["--prefill-chunk", "64", "--max-batch", "32"])
try:
    reqs = make_requests()
    serial = [run_one(srv, p, b) for p, b in reqs]
    bad = [s for s in serial if s.startswith("HTTP ")]
    C.check(not bad, "serial requests all succeed: %r" % bad[:2])
    steps0 = srv.metric("claq_engine_steps_total")
    gen0 = srv.metric("claq_generation_tokens_total")

    C.check(sum(1 for s in serial if s and '"token_logprobs"' in s) >= 3,
            "echo + logprobs requests return log-probabilities")
    results = run_concurrent(srv, reqs)
    compare(serial, results, "large KV pool")
    C.check(srv.metric("claq_preemptions_total") == 0, "no preemption with a large pool")
    steps = srv.metric("claq_engine_steps_total") - steps0
    gen = srv.metric("claq_generation_tokens_total") - gen0
    print("concurrent run: %d tokens generated in %d engine steps" % (gen, steps))
    C.check(steps < gen / 4, "requests were batched (%d steps for %d tokens)" % (steps, gen))
finally:
    rc = srv.stop()
C.check(rc == 0, "clean exit")

# 384 positions (24 blocks) for 38 requests that need ~3,600 together: admission takes only the
# prompt's blocks, so sequences start, run out of blocks while decoding and are preempted.
srv = Server("stories260K.bin", "tok512.bin",
             args=["--prefill-chunk", "64", "--max-batch", "32", "--kv-cache-tokens", "384"])
try:
    results = run_concurrent(srv, reqs)
    compare(serial, results, "small KV pool")
    pre = srv.metric("claq_preemptions_total")
    print("small KV pool: %d preemptions" % pre)
    C.check(pre > 0, "the small pool forced preemptions (%d)" % pre)
    C.check(srv.metric("claq_kv_cache_usage_ratio") == 0, "every block returned at the end")
finally:
    rc = srv.stop()
C.check(rc == 0, "clean exit")
C.done(srv)
