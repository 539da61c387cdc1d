/* srv_limits.h — every limit and default of claq-server, one sentence each (the h2o habit).
 * Most are defaults of a flag in srv_config.c (and its env var); the rest are fixed caps on
 * what one request may hold. Nothing here is mutable.
 * Header only; any thread may read it. */
#ifndef SRV_LIMITS_H
#define SRV_LIMITS_H

/* Port when none is given; 0 asks the kernel for a free one. */
#define SRV_DEFAULT_PORT 8080
/* Request line plus all header fields and values of one request; over it: 431 and close. */
#define SRV_MAX_HEADER_BYTES (16 * 1024)
/* Number of header fields in one request; over it: 431 and close. */
#define SRV_MAX_HEADERS 100
/* Request body bytes, decided from Content-Length before reading (chunked: while reading); 413. */
#define SRV_MAX_BODY_BYTES (4 * 1024 * 1024)
/* Request body bytes buffered across all connections at once; a body that would take the total
 * past it gets 503 server_busy with Retry-After (100 connections x 4 MiB had grown RSS by 350 MiB
 * for the body timeout). */
#define SRV_MAX_INFLIGHT_BODY_BYTES (64 * 1024 * 1024)
/* Longest URL (path and query) we keep; longer ones are 414 and close. */
#define SRV_MAX_URL_BYTES 2048
/* Total time, from its first byte, that a request may take to deliver its headers: 408 (a
 * deadline, not re-armed on each byte, so a slowloris client cannot hold a connection). */
#define SRV_HEADER_TIMEOUT_MS 10000
/* Total time from the end of the headers to the end of the body: 408. */
#define SRV_BODY_TIMEOUT_MS 30000
/* An idle kept-alive connection (no request bytes, nothing in flight) is closed after this. */
#define SRV_IDLE_TIMEOUT_MS 60000
/* Requests in flight on one connection (pipelining); the parser pauses beyond it (and while
 * more than the soft write limit below is unsent). */
#define SRV_MAX_PIPELINE 16
/* Open connections; a connection beyond it is answered 503 and closed. */
#define SRV_MAX_CONNS 4096
/* Bytes queued in libuv for one client: over the soft limit for SRV_WRITE_SOFT_SECONDS, or over
 * the hard limit at once, cancels its generations and closes it (slow reader backpressure);
 * over the soft limit no new request of its is parsed (until half of it is left). */
#define SRV_WRITE_SOFT_BYTES (1 << 20)
#define SRV_WRITE_HARD_BYTES (16 << 20)
#define SRV_WRITE_SOFT_SECONDS 10
/* Sequences waiting for admission; a request that would pass it gets 429 with Retry-After. */
#define SRV_MAX_QUEUE 256
/* Sequences decoded together in one engine step. */
#define SRV_MAX_BATCH 32
/* Prompt tokens prefilled per engine step, shared by all prefilling sequences, so running
 * streams keep flowing while a long prompt is read. */
#define SRV_PREFILL_CHUNK 256
/* Choices per request (n) and prompts per /v1/completions request; their product is capped too. */
#define SRV_MAX_N 16
#define SRV_MAX_PROMPTS 64
#define SRV_MAX_CHOICES 64
/* Chat messages per request. */
#define SRV_MAX_MESSAGES 512
/* Stop strings per request (OpenAI allows 4); the engine holds one more, the chat template's
 * end-of-turn text, so a request's own stops never push it out. */
#define SRV_MAX_STOPS 8
/* Entries of logit_bias per request. */
#define SRV_MAX_LOGIT_BIAS 1024
/* Rendered chat prompt text, in bytes (the body limit bounds it as well). */
#define SRV_MAX_PROMPT_BYTES (8 * 1024 * 1024)
/* Text bytes per context token a prompt may have: a longer string prompt (or rendered chat) is
 * refused as context_length_exceeded before tokenizing, since real text runs 2-6 bytes a token
 * and tokenizing runs on the loop thread (a 4 MiB prompt took over 4 s there, stalling every
 * stream). Bounds the loop's tokenizing to about n_ctx * 32 bytes per prompt. */
#define SRV_MAX_PROMPT_BYTES_PER_TOKEN 32
/* Default of --tokenize-inline-bytes: prompt text a generation request may have tokenized on
 * the loop thread (a few ms of BPE); a request with more goes to the libuv threadpool, so it
 * never stalls other streams. */
#define SRV_TOKENIZE_INLINE_BYTES (16 * 1024)
/* Tokenization jobs queued or running at once; more get 429 (each holds its prompt text). */
#define SRV_MAX_TOKENIZE_JOBS 64
/* Text bytes /tokenize takes (or n_ctx * SRV_MAX_PROMPT_BYTES_PER_TOKEN when larger), for the
 * same reason. */
#define SRV_MAX_TOKENIZE_BYTES (256 * 1024)
/* Token ids /detokenize takes (or n_ctx when larger): it decodes on the loop thread, and ids of
 * long pieces (up to 256 bytes each) make megabytes of text; 800,000 of them stalled every
 * stream for seconds. 8192 of the longest piece decode in a few ms. */
#define SRV_MAX_DETOKENIZE_TOKENS 8192
/* A stream that has produced nothing yet gets an SSE comment this often (queue, long prefill). */
#define SRV_KEEPALIVE_MS 2000
/* A generation running longer than this is ended (408 before any output, in-band error after). */
#define SRV_REQUEST_TIMEOUT_S 600
/* On SIGTERM/SIGINT, in-flight requests get this long to finish before they are cancelled. */
#define SRV_DRAIN_TIMEOUT_S 30
/* Longest X-Request-Id we accept and echo; longer or non-printable ones are replaced. */
#define SRV_MAX_REQUEST_ID 128
/* Bytes of the KV cache by default, when --kv-cache-tokens is not given (the token count is
 * also capped at context * max batch). */
#define SRV_DEFAULT_KV_BYTES (2LL << 30)
/* Retry-After seconds sent with 429. */
#define SRV_RETRY_AFTER_S 1

#endif
