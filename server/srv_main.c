/* srv_main.c — claq-server's main: parse the configuration, build the loop and the server, run,
 * then free in reverse order and check that every handle was closed (uv_loop_close == 0).
 * Main thread (which becomes the loop thread). Owns nothing else. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "srv_config.h"
#include "srv_log.h"
#include "srv_server.h"

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    /* a hangup (the terminal closing, a supervisor's reload signal) is not a stop request:
     * SIGTERM / SIGINT drain; SIGHUP's default action killed every stream at once */
    signal(SIGHUP, SIG_IGN);
    srv_config cfg;
    srv_config_defaults(&cfg);
    char err[1024] = "";
    int rc = srv_config_parse(&cfg, argc, argv, stdout, err, sizeof(err));
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "claq-server: %s\n", err);
        return 2;
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "claq-server: cannot create the event loop\n");
        return 1;
    }
    srv_server *s = calloc(1, sizeof(*s));
    if (!s) {
        fprintf(stderr, "claq-server: out of memory\n");
        return 1;
    }
    int code = 0;
    if (srv_server_start(s, &cfg, &loop, err, sizeof(err)) != 0) {
        srv_log("error", "%s", err);
        code = 1;
    } else {
        uv_run(&loop, UV_RUN_DEFAULT);
        code = s->exit_code;
    }
    srv_server_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);   /* close callbacks */
    if (uv_loop_close(&loop) != 0) {
        srv_log("error", "event loop closed with handles still open");
        if (code == 0)
            code = 1;
    }
    free(s);
    srv_log("info", "exit %d", code);
    return code;
}
