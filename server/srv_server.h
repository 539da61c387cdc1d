/* srv_server.h — the top-level server object: the loop's handles (listener, scheduler wake-up,
 * signals, sweep and drain timers), the scheduler, metrics, open connections and the map from
 * task id to the generation waiting for it. Built and freed by srv_main.c; loop thread only
 * (the scheduler reaches it only through srv_sched). */
#ifndef SRV_SERVER_H
#define SRV_SERVER_H

#include <uv.h>

#include "srv_config.h"
#include "srv_http.h"
#include "srv_metrics.h"
#include "srv_sched.h"

struct srv_gen;

typedef struct srv_task_ref {
    uint64_t id;                /* 0 = empty slot */
    struct srv_gen *gen;        /* borrowed: the generation (owned by its response) */
    int choice;                 /* index of the choice within gen */
} srv_task_ref;

typedef struct srv_server {
    const srv_config *cfg;      /* borrowed from main */
    uv_loop_t *loop;            /* borrowed from main */
    srv_http http;              /* the listener and every connection */
    uv_async_t wake;            /* the scheduler's outbox has events */
    uv_signal_t sig_term, sig_int;
    uv_timer_t sweep;           /* connection deadlines and backpressure */
    uv_timer_t drain;           /* shutdown deadline */
    int handles_open;           /* wake/signals/timers initialised */
    srv_sched sched;
    srv_metrics metrics;
    char model_id[256];         /* served model name */
    int64_t created;            /* unix time the server started: the model object's 'created' */
    int ready;                  /* model loaded */
    int load_failed;
    int chat_tmpl;              /* eng_chat_template chosen at load (used when chat_jinja is NULL) */
    struct eng_jinja *chat_jinja; /* owned: the compiled Jinja chat template (--chat-template FILE
                                   at start, else the model's at load), or NULL */
    char *chat_bos, *chat_eos;  /* owned: bos_token / eos_token text for chat_jinja, or NULL */
    int chat_from_file;         /* chat_jinja came from --chat-template FILE */
    int n_ctx;                  /* copied from the scheduler at ready */
    const eng_model *model;     /* borrowed from the scheduler after ready */
    const eng_tokenizer *tok;   /* borrowed from the scheduler after ready */
    srv_task_ref *tasks;        /* open-addressing map id -> generation; owned */
    int tasks_cap, tasks_n;
    int n_gens;                 /* generations alive */
    int draining;               /* SIGTERM/SIGINT seen (http.draining follows it) */
    int drain_cancelled;        /* the drain deadline passed: the generations left were
                                   cancelled and their answers (503 / in-band errors) go out */
    int stopping;               /* handles being closed */
    int exit_code;
} srv_server;

/* Starts everything (listener first, then the scheduler, which loads the model). 0 or -1. */
int srv_server_start(srv_server *s, const srv_config *cfg, uv_loop_t *loop, char *err,
                     size_t cap);
/* Closes what start opened; safe on a zeroed struct. Call after uv_run returned. */
void srv_server_free(srv_server *s);
/* Begins the drain (as SIGTERM does). */
void srv_server_drain(srv_server *s);
/* Called when a response slot or a generation finishes: ends the drain when nothing is left. */
void srv_server_check_drained(srv_server *s);

/* A tokenization job returned (srv_tokjob.c): a shutdown waiting for it goes on. */
void srv_server_job_done(srv_server *s);


#endif
