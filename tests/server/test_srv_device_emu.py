"""test_srv_device_emu.py — claq-server with `--device cuda` on the CUDA host emulator
(libclaq_cuda_emu.so, CLAQ_CUDA_LIB) against the same server on the CPU, stories260K:
  - each request alone, then all of them at once (one batch with rows of every kind): greedy,
    seeded samples with temperature / top-k / top-p / min-p, presence / frequency / repetition
    penalties, logit_bias, logprobs, and grammars (response_format json_schema / json_object,
    tools with tool_choice auto and required: the mask goes to the device with the step; all
    picked on the device) give the same text (chat: the same message), and the
    same logprobs within 2e-2 (the two backends' logits differ in their last bits), on both
    servers;
  - no request copies logits back: the emulated device's device->host bytes grow by 4 bytes
    (one token id) per generated token, 176 with logprobs; no weight bytes after load;
  - a third server with decode steps recorded as CUDA graphs (CLAQ_CUDA_GRAPHS=1) gives the
    CPU's text too, alone and batched.
What this shows: the scheduler's device path (picks and samples on the backend, the draw the
host sampler would take, rows left to the host) end to end over HTTP. The kernels run on the
emulator, not on a GPU (kernels/cuda/README.md). Skips (77) without the emulator library."""
# ctest-cost: 70 (about 70 s in its longer pass; ctest -j starts the costliest first)
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srv_harness import SKIP, Checker, Server, require  # noqa: E402

require("stories260K.bin")
emu = os.path.join(os.environ.get("CLAQ_BIN", ""), "libclaq_cuda_emu.so")
if not os.path.isfile(emu):
    print("SKIP: no emulator library at", emu, "(CLAQ_CUDA_EMU off)")
    sys.exit(SKIP)

C = Checker()
TOOL = {"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}
REQS = [
    ("greedy", {"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0}),
    ("top-p + top-k", {"prompt": "The dog", "max_tokens": 24, "temperature": 0.9,
                       "top_p": 0.9, "top_k": 40, "seed": 5}),
    ("top-p", {"prompt": "Lily had", "max_tokens": 24, "temperature": 1.0, "top_p": 0.8,
               "seed": 6}),
    ("min-p", {"prompt": "Tom saw a", "max_tokens": 24, "temperature": 1.2, "min_p": 0.05,
               "seed": 7}),
    ("temperature", {"prompt": "One day", "max_tokens": 24, "temperature": 0.7, "seed": 8}),
    ("presence penalty", {"prompt": "The sun", "max_tokens": 16, "temperature": 0.8,
                          "seed": 10, "presence_penalty": 1.0}),
    ("logit_bias", {"prompt": "A bird", "max_tokens": 16, "temperature": 0.8, "seed": 11,
                    "logit_bias": {"100": 5, "3": -100}}),
    ("greedy + frequency and repetition penalties",
     {"prompt": "The girl", "max_tokens": 24, "temperature": 0, "frequency_penalty": 0.7,
      "repetition_penalty": 1.3}),
    ("logprobs", {"prompt": "The cat", "max_tokens": 16, "temperature": 0.8, "seed": 9,
                  "logprobs": 3}),
    ("greedy + logprobs 0", {"prompt": "A dog", "max_tokens": 12, "temperature": 0,
                             "logprobs": 0, "presence_penalty": 0.5}),
    ("json_schema", {"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0.8,
                     "seed": 3, "response_format": {"type": "json_schema", "json_schema": {
                         "name": "x", "schema": {"type": "object", "properties": {
                             "name": {"type": "string"}, "age": {"type": "integer"}},
                             "required": ["name", "age"]}}}}),
    ("json_schema + logprobs + bias", {"prompt": "The cat", "max_tokens": 20,
                                       "temperature": 0.9, "seed": 4, "logprobs": 2,
                                       "logit_bias": {"100": 5},
                                       "response_format": {"type": "json_schema", "json_schema": {
                                           "name": "y", "schema": {"type": "array", "items": {
                                               "type": "integer"}}}}}),
    ("chat json_object greedy", {"path": "/v1/chat/completions", "max_tokens": 20,
                                 "temperature": 0, "response_format": {"type": "json_object"},
                                 "messages": [{"role": "user", "content": "hi"}]}),
    ("chat tools auto", {"path": "/v1/chat/completions", "max_tokens": 20, "temperature": 0.7,
                         "seed": 1, "tools": [TOOL],
                         "messages": [{"role": "user", "content": "hi"}]}),
    ("chat tools required", {"path": "/v1/chat/completions", "max_tokens": 20,
                             "temperature": 0.7, "seed": 2, "tools": [TOOL],
                             "tool_choice": "required",
                             "messages": [{"role": "user", "content": "call f"}]}),
]
ON_DEVICE = REQS
LP_BYTES = 176   # a pick (4) and its kern_sample_lp (token, logprob, count, 20 ids, 20 values: 172)


def same_logprobs(a, b, tol=2e-2):
    """Completions logprobs objects equal: tokens, offsets and top keys exactly, values within
    tol. The device's logits are not the CPU's to the last bit (another summation order, and
    the pool's fp16 entries rounded by other kernels: the greedy test bounds them by 1e-3 x
    (1 + max |logit|), about 1e-2 here), so neither are their log-probabilities (seen: up to
    3e-3); the kernel's own arithmetic on equal logits is checked to 1e-6 by
    test_kern_cuda_sample_matches_sampler."""
    if not a or not b or a["tokens"] != b["tokens"] or a["text_offset"] != b["text_offset"]:
        return False
    if any(abs(x - y) > tol for x, y in zip(a["token_logprobs"], b["token_logprobs"])):
        return False
    for ta, tb in zip(a["top_logprobs"] or [], b["top_logprobs"] or []):
        if (ta is None) != (tb is None) or (ta and (list(ta) != list(tb) or
                                                    any(abs(ta[k] - tb[k]) > tol for k in ta))):
            return False
    return len(a["token_logprobs"]) == len(b["token_logprobs"])


def post(srv, body):
    body = dict(body, model="m")
    return srv.post(body.pop("path", "/v1/completions"), body)


def run_all(srv, together):
    out = {}

    def one(name, body):
        st, _, j = post(srv, body)
        c = j["choices"][0] if st == 200 else {}
        msg = c.get("text", c.get("message", j))
        for call in (msg.get("tool_calls") or []) if isinstance(msg, dict) else []:
            call.pop("id", None)   # random per request: the calls' content is compared
        out[name] = (st, msg, c.get("logprobs"))

    if together:
        ts = [threading.Thread(target=one, args=r) for r in REQS]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    else:
        for name, body in REQS:
            one(name, body)
    return out


cpu = Server("stories260K.bin", "tok512.bin", args=["--served-model-name", "m"])
dev = Server("stories260K.bin", "tok512.bin", args=["--served-model-name", "m", "--device", "cuda"],
             env={"CLAQ_CUDA_LIB": emu})
devg = Server("stories260K.bin", "tok512.bin", args=["--served-model-name", "m", "--device", "cuda"],
              env={"CLAQ_CUDA_LIB": emu, "CLAQ_CUDA_GRAPHS": "1"})
try:
    # the device's bytes for each request it samples: one token id back per token, no logits
    D2H = "claq_device_copy_bytes_total{model_name=\"m\",direction=\"d2h\"}"
    WTS = "claq_device_copy_bytes_total{model_name=\"m\",direction=\"h2d_weights\"}"
    w0 = dev.metric(WTS)
    for name, body in ON_DEVICE:
        d2h0 = dev.metric(D2H)
        st, _, j = post(dev, body)
        C.check(st == 200, "%s on the device: 200 (%d)" % (name, st))
        n = j["usage"]["completion_tokens"] if st == 200 else 0
        d2h1 = dev.metric(D2H)
        per = LP_BYTES if "logprobs" in body else 4
        C.check(n > 0 and d2h1 - d2h0 <= per * n, "%s: %d tokens copied %d bytes back (at most "
                "%d per token: the device picked them)" % (name, n, d2h1 - d2h0, per))
    C.check(dev.metric(WTS) == w0, "no weight bytes copied after load")
    for together in (False, True):
        a, b, g = run_all(cpu, together), run_all(dev, together), run_all(devg, together)
        for name, _ in REQS:
            C.check(g[name][0] == 200 and a[name][1] == g[name][1],
                    "%s%s: same text on the CPU and the emulated device with graphs\n  cpu:    "
                    "%r\n  graphs: %r" % (name, " (batched)" if together else "", a[name][1],
                                          g[name][1]))
            C.check(a[name][0] == 200 and b[name][0] == 200,
                    "%s: 200 on both (%r %r)" % (name, a[name][0], b[name][0]))
            C.check(a[name][1] == b[name][1], "%s%s: same text on the CPU and the emulated device"
                    "\n  cpu:    %r\n  device: %r" % (name, " (batched)" if together else "",
                                                      a[name][1], b[name][1]))
            la, lb = a[name][2], b[name][2]
            if la is not None or lb is not None:
                C.check(same_logprobs(la, lb), "%s%s: the same logprobs\n  cpu:    %r\n  "
                        "device: %r" % (name, " (batched)" if together else "", la, lb))
    GS = "claq_device_graph_steps_total{model_name=\"m\"}"
    GB = "claq_device_graph_builds_total{model_name=\"m\"}"
    C.check(devg.metric(GS) > devg.metric(GB) > 0,
            "/metrics: the graphs server launched %s steps as graphs, %s builds"
            % (devg.metric(GS), devg.metric(GB)))
    C.check(dev.metric(GS) == 0 and cpu.metric(GS) == 0, "/metrics: no graph steps without graphs")
    print("device server: every request's text equals the CPU server's, alone and batched, "
          "with and without CUDA graphs; %d request kinds sampled on the device without copying "
          "logits" % len(ON_DEVICE))
finally:
    cpu.stop()
    dev.stop()
    devg.stop()
C.done()
