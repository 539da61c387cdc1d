/* fuzz_http.c — libFuzzer target: the whole server in this process (claq-server's start-up with
 * stories260K + tok512 from ../shared on a loopback port, its libuv loop on a thread of its own),
 * driven over real TCP connections by the fuzzer's thread. Byte 0 of an input picks the mode:
 *   0 mod 8      raw bytes of one connection (any request line, headers, framing, pipelining),
 *                sent in pieces whose sizes come from byte 1, then the write side is shut;
 *   1..7 mod 8   the rest is the JSON body of a well-framed request to one endpoint
 *                (/v1/completions, /v1/chat/completions, /tokenize, /detokenize, /v1/models,
 *                /health, /metrics), so the request parsers of every endpoint see arbitrary JSON.
 * The response is read to the end; a 500 answer aborts (the server never answers bad input with
 * a 500), and ASan/UBSan see every path the bytes reach. run.sh runs it with -close_fd_mask=2
 * (the server's access log goes to stderr; sanitizer reports still reach libFuzzer's output).
 * Single fuzzer thread; the server runs on its loop thread and its own workers. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "srv_config.h"
#include "srv_server.h"

static uv_loop_t g_loop;
static srv_server *g_srv;
static int g_port;

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&g_loop, UV_RUN_DEFAULT);
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    const char *sh = getenv("CLAQ_SHARED");
    static char model[4096], tok[4096];
    snprintf(model, sizeof model, "%s/models/stories260K.bin", sh ? sh : "../shared");
    snprintf(tok, sizeof tok, "%s/models/tok512.bin", sh ? sh : "../shared");
    char *args[] = {"claq-server", "--model", model, "--tokenizer", tok, "--host", "127.0.0.1",
                    "--port", "0", "--threads", "1", "--max-batch", "8",
                    "--kv-cache-tokens", "8192", "--header-timeout", "2", "--body-timeout", "2",
                    "--request-timeout", "5", NULL};
    static srv_config cfg;
    srv_config_defaults(&cfg);
    char err[1024] = "";
    if (srv_config_parse(&cfg, (int)(sizeof args / sizeof *args) - 1, args, stdout, err,
                         sizeof err) != 0) {
        fprintf(stderr, "fuzz_http: config: %s\n", err);
        exit(1);
    }
    if (uv_loop_init(&g_loop) != 0) exit(1);
    g_srv = calloc(1, sizeof *g_srv);
    if (!g_srv || srv_server_start(g_srv, &cfg, &g_loop, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_http: server: %s (set CLAQ_SHARED)\n", err);
        exit(1);
    }
    g_port = g_srv->http.port;
    pthread_t th;
    if (pthread_create(&th, NULL, loop_main, NULL) != 0) exit(1);
    pthread_detach(th);
    return 0;
}

static int connect_local(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)g_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until EOF or timeout; aborts on a 500 status line anywhere in the answer (pipelined
 * responses follow each other). */
static void read_all(int fd)
{
    static char buf[1 << 16];
    char head[16];
    size_t hn = 0;
    int at_line_start = 1;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++) {   /* status lines: "HTTP/1.1 500" at a line start */
            if (at_line_start) hn = 0;
            if (hn < sizeof head) head[hn++] = buf[i];
            at_line_start = buf[i] == '\n';
            if (hn == 12 && memcmp(head, "HTTP/1.", 7) == 0 && memcmp(head + 8, " 500", 4) == 0) {
                fprintf(stderr, "fuzz_http: the server answered 500\n");
                abort();
            }
        }
    }
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int fd = connect_local();
    if (fd < 0) return 0;
    const int mode = data[0] % 8;
    if (mode == 0) {   /* raw connection bytes, in pieces of 1 .. 256 bytes */
        const uint8_t *p = data + 2;
        size_t n = size - 2, piece = (size_t)data[1] + 1;
        while (n > 0) {
            size_t k = n < piece ? n : piece;
            send_all(fd, p, k);
            p += k;
            n -= k;
        }
        shutdown(fd, SHUT_WR);   /* whatever the bytes were, nothing more comes */
    } else {
        static const char *const routes[7] = {
            "POST /v1/completions", "POST /v1/chat/completions", "POST /tokenize",
            "POST /detokenize", "GET /v1/models", "GET /health", "GET /metrics"};
        char head[256];
        int hl = snprintf(head, sizeof head, "%s HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                          "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                          routes[mode - 1], size - 1);
        send_all(fd, (const uint8_t *)head, (size_t)hl);
        send_all(fd, data + 1, size - 1);
        /* no half-close: the request is complete and says Connection: close, and an EOF while
         * an answer is still being made counts as the client leaving (its generation would be
         * cancelled before the response paths run) */
    }
    read_all(fd);
    close(fd);
    return 0;
}
