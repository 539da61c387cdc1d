/* kern_cpu_pool.c — the CPU backend's worker pool. The calling thread is worker 0; n-1 helper
 * threads sleep on a condition variable between jobs (no spinning: a spinning pool made decode
 * thousands of times slower whenever another process held one of the 2 cores). Tasks are handed
 * out through an atomic counter. Driven by one thread at a time. */
#include "kern_cpu_impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct kern_pool {
    int n;                         /* workers including the caller */
    pthread_t *threads;            /* [n-1]; owned */
    pthread_mutex_t mu;
    pthread_cond_t wake;           /* a new job or shutdown */
    pthread_cond_t done;           /* all helpers finished the job */
    uint64_t generation;           /* bumps per job */
    int active;                    /* helpers still in the current job */
    int quit;
    kern_task_fn fn;               /* current job */
    void *arg;
    int64_t n_tasks;
    atomic_llong next;             /* next task index to hand out */
};

typedef struct pool_worker_arg {
    kern_pool *p;
    int id;
} pool_worker_arg;

static void run_tasks(kern_pool *p, int worker)
{
    for (;;) {
        int64_t t = atomic_fetch_add(&p->next, 1);
        if (t >= p->n_tasks) break;
        p->fn(p->arg, t, worker);
    }
}

static void *worker_main(void *v)
{
    pool_worker_arg a = *(pool_worker_arg *)v;
    free(v);
    kern_pool *p = a.p;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_tasks(p, a.id);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int kern_pool_create(kern_pool **out, int n_threads)
{
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 256) n_threads = 256;
    kern_pool *p = calloc(1, sizeof *p);
    if (!p) return KERN_E_NOMEM;
    p->n = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!p->threads) { kern_pool_destroy(p); return KERN_E_NOMEM; }
    for (int i = 1; i < n_threads; i++) {
        pool_worker_arg *a = malloc(sizeof *a);
        if (!a) { kern_pool_destroy(p); return KERN_E_NOMEM; }
        a->p = p;
        a->id = i;
        if (pthread_create(&p->threads[i - 1], NULL, worker_main, a) != 0) {
            free(a);
            kern_pool_destroy(p);
            return KERN_E_NOMEM;
        }
        p->n++;
    }
    *out = p;
    return KERN_OK;
}

void kern_pool_destroy(kern_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n - 1; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int kern_pool_threads(const kern_pool *p) { return p->n; }

int kern_pool_run(kern_pool *p, int64_t n_tasks, kern_task_fn fn, void *arg)
{
    if (n_tasks <= 0) return KERN_OK;
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    if (p->n == 1 || n_tasks == 1) {
        run_tasks(p, 0);
        return KERN_OK;
    }
    pthread_mutex_lock(&p->mu);
    p->active = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return KERN_OK;
}
