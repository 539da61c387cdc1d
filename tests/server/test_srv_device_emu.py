"""test_srv_device_emu.py — claq-server with `--device cuda` on the CUDA host emulator
(libclaq_cuda_emu.so, CLAQ_CUDA_LIB) against the same server on the CPU, stories260K:
  - each request alone, then all of them at once (one batch with rows of every kind): greedy,
    seeded samples with temperature / top-k / top-p / min-p, presence / frequency / repetition
    penalties and logit_bias (picked on the device), and logprobs (which needs the logits on
    the host), give the same text on both servers;
  - a request the device samples copies no logits back: the emulated device's device->host
    bytes grow by 4 bytes (one token id) per generated token; no weight bytes after load.
What this shows: the scheduler's device path (picks and samples on the backend, the draw the
host sampler would take, rows left to the host) end to end over HTTP. The kernels run on the
emulator, not on a GPU (kernels/cuda/README.md). Skips (77) without the emulator library."""
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
    ("logprobs (host)", {"prompt": "The cat", "max_tokens": 16, "temperature": 0.8, "seed": 9,
                         "logprobs": 2}),
]
ON_DEVICE = [r for r in REQS if "(host)" not in r[0]]


def run_all(srv, together):
    out = {}

    def one(name, body):
        st, _, j = srv.post("/v1/completions", dict(body, model="m"))
        out[name] = (st, j["choices"][0]["text"] if st == 200 else j)

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
try:
    # the device's bytes for each request it samples: one token id back per token, no logits
    D2H = "claq_device_copy_bytes_total{model_name=\"m\",direction=\"d2h\"}"
    WTS = "claq_device_copy_bytes_total{model_name=\"m\",direction=\"h2d_weights\"}"
    w0 = dev.metric(WTS)
    for name, body in ON_DEVICE:
        d2h0 = dev.metric(D2H)
        st, _, j = dev.post("/v1/completions", dict(body, model="m"))
        C.check(st == 200, "%s on the device: 200 (%d)" % (name, st))
        n = j["usage"]["completion_tokens"] if st == 200 else 0
        d2h1 = dev.metric(D2H)
        C.check(n > 0 and d2h1 - d2h0 <= 4 * n, "%s: %d tokens copied %d bytes back (at most 4 "
                "per token: the device picked them)" % (name, n, d2h1 - d2h0))
    C.check(dev.metric(WTS) == w0, "no weight bytes copied after load")
    for together in (False, True):
        a, b = run_all(cpu, together), run_all(dev, together)
        for name, _ in REQS:
            C.check(a[name][0] == 200 and b[name][0] == 200,
                    "%s: 200 on both (%r %r)" % (name, a[name][0], b[name][0]))
            C.check(a[name][1] == b[name][1], "%s%s: same text on the CPU and the emulated device"
                    "\n  cpu:    %r\n  device: %r" % (name, " (batched)" if together else "",
                                                      a[name][1], b[name][1]))
    print("device server: every request's text equals the CPU server's, alone and batched; "
          "the %d device-sampled kinds copied 4 bytes back per token" % len(ON_DEVICE))
finally:
    cpu.stop()
    dev.stop()
C.done()
