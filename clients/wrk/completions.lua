-- completions.lua — wrk load script for claq-server's POST /v1/completions (not streamed).
-- Rotates through a few short story prompts; each thread counts its responses and non-2xx
-- statuses, and done() prints one machine-readable summary line (tests parse it):
--   claq-wrk: route=/v1/completions requests=N non2xx=N connect_errors=N read_errors=N ...
-- Usage: wrk -t2 -c16 -d20s -s clients/wrk/completions.lua http://127.0.0.1:8080
-- Environment: CLAQ_MAX_TOKENS (default 16), CLAQ_TEMPERATURE (default 0), CLAQ_CLIENT_MODEL
-- (default: omitted, the server's own), CLAQ_API_KEY (Bearer token, default none).

local route = "/v1/completions"
local max_tokens = tonumber(os.getenv("CLAQ_MAX_TOKENS") or "16") or 16
local temperature = tonumber(os.getenv("CLAQ_TEMPERATURE") or "0") or 0
local model = os.getenv("CLAQ_CLIENT_MODEL")
local api_key = os.getenv("CLAQ_API_KEY")

local prompts = {
    "Once upon a time",
    "Lily and Ben went to the park",
    "The little dog was sad because",
    "One day, a girl named Sue found a box",
    "Tom liked to play with his red ball",
    "The sun was hot and the birds",
}

local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
if api_key and api_key ~= "" then
    headers["Authorization"] = "Bearer " .. api_key
end

local bodies = {}
for i, p in ipairs(prompts) do
    -- prompts are plain ASCII without quotes or backslashes, so no JSON escaping is needed
    local model_field = ""
    if model and model ~= "" then
        model_field = string.format('"model":"%s",', model)
    end
    bodies[i] = string.format('{%s"prompt":"%s","max_tokens":%d,"temperature":%s}',
                              model_field, p, max_tokens, tostring(temperature))
end

-- Per-thread state (each wrk thread runs its own copy of this script).
local threads = {}
local counter = 0

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    responses = 0
    non2xx = 0
end

function request()
    counter = counter + 1
    return wrk.format("POST", route, headers, bodies[(counter % #bodies) + 1])
end

function response(status, hdrs, body)
    responses = responses + 1
    if status < 200 or status > 299 then
        non2xx = non2xx + 1
        if non2xx <= 3 then
            io.stderr:write(string.format("claq-wrk: HTTP %d: %s\n", status,
                                          string.sub(body or "", 1, 200)))
        end
    end
end

function done(summary, latency, requests)
    local total, bad = 0, 0
    for _, t in ipairs(threads) do
        total = total + (t:get("responses") or 0)
        bad = bad + (t:get("non2xx") or 0)
    end
    local e = summary.errors
    io.write(string.format(
        "claq-wrk: route=%s requests=%d responses=%d non2xx=%d connect_errors=%d " ..
        "read_errors=%d write_errors=%d timeouts=%d status_errors=%d " ..
        "latency_p50_ms=%.1f latency_p99_ms=%.1f req_per_s=%.2f\n",
        route, summary.requests, total, bad, e.connect, e.read, e.write, e.timeout, e.status,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        summary.requests / (summary.duration / 1e6)))
end
