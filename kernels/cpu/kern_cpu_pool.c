/* kern_cpu_pool.c — the CPU backend's worker pool. The calling thread is worker 0; n-1 helper
 * threads sleep on a condition variable between jobs (no spinning: a spinning pool made decode
 * thousands of times slower whenever another process held one of the 2 cores). Tasks are handed
 * out through an atomic counter. Driven by one thread at a time. */
#include "kern_cpu_impl.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct kern_pool {
    int n;                         /* workers including the caller */
    pthread_t *threads;            /* [n-1]; owned */
    pthread_mutex_t mu;
    pthread_cond_t wake;           /* a new job or shutdown */
    pthread_cond_t done;           /* the last task of the job finished */
    uint64_t generation;           /* bumps per job; under mu */
    int quit;                      /* under mu */
    int caller_waits;              /* the caller sleeps on done; under mu */
    /* The current job. Tasks are claimed through next = (generation << 32 | index), so a helper
     * that wakes late, after the caller finished the job alone and moved on, claims nothing:
     * the caller never waits for a helper to wake up (in a VM that wake-up costs ~100 us, more
     * than a small matmul). The fields are atomics because such a late helper may read them
     * while the caller writes the next job; a read that races is never used (its claim fails). */
    _Atomic(kern_task_fn) fn;
    _Atomic(void *) arg;
    atomic_llong n_tasks;
    atomic_ullong next;
    atomic_llong completed;        /* tasks of the current job finished */
};

typedef struct pool_worker_arg {
    kern_pool *p;
    int id;
} pool_worker_arg;

/* Claims the next task of job gen; 0 when that job has no task left or is no longer current. */
static int claim(kern_pool *p, uint32_t gen, int64_t *task)
{
    unsigned long long cur = atomic_load(&p->next);
    for (;;) {
        if ((uint32_t)(cur >> 32) != gen) return 0;
        int64_t idx = (int64_t)(cur & 0xffffffffull);
        if (idx >= atomic_load(&p->n_tasks)) return 0;
        if (atomic_compare_exchange_weak(&p->next, &cur, cur + 1)) {
            *task = idx;
            return 1;
        }
    }
}

static void run_tasks(kern_pool *p, uint32_t gen, int worker)
{
    int64_t t;
    while (claim(p, gen, &t)) {
        /* A claimed task keeps its job current (the caller waits for it), so these are job gen's. */
        atomic_load(&p->fn)(atomic_load(&p->arg), t, worker);
        if (atomic_fetch_add(&p->completed, 1) + 1 == atomic_load(&p->n_tasks)) {
            pthread_mutex_lock(&p->mu);
            if (p->caller_waits) pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

/* Bounded spin: up to POOL_SPIN_NS of pause-loop polling before a thread sleeps. Decode issues
 * jobs tens of microseconds apart and a sleeping thread takes ~100 us to wake in a VM; spinning
 * that briefly removes the wake-up from most jobs, and the bound caps what a spinner can take
 * from another process on a busy machine (unbounded spinning made llama.cpp thousands of times
 * slower here). sched_yield every round lets a runnable thread on the same core go first. */
#define POOL_SPIN_NS 50000

static uint64_t pool_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pool_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Polls until cond(p, v) holds or the spin bound passes; returns whether it held. */
static int spin_until(const kern_pool *p, int (*cond)(const kern_pool *, uint64_t), uint64_t v)
{
    uint64_t t0 = pool_now_ns();
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (cond(p, v)) return 1;
            pool_pause();
        }
        if (pool_now_ns() - t0 > POOL_SPIN_NS) return cond(p, v);
        sched_yield();
    }
}

static int job_posted(const kern_pool *p, uint64_t seen)
{
    return (atomic_load(&p->next) >> 32) != (uint32_t)seen;
}

static int job_done(const kern_pool *p, uint64_t n_tasks)
{
    return (uint64_t)atomic_load(&p->completed) >= n_tasks;
}

static void *worker_main(void *v)
{
    pool_worker_arg a = *(pool_worker_arg *)v;
    free(v);
    kern_pool *p = a.p;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (!p->quit && p->generation == seen) {
            pthread_mutex_unlock(&p->mu);
            spin_until(p, job_posted, seen);   /* then take the lock either way */
            pthread_mutex_lock(&p->mu);
        }
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->quit) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_tasks(p, (uint32_t)seen, a.id);
        pthread_mutex_lock(&p->mu);
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
    if (n_tasks > 0xffffffffll) return KERN_E_INVAL;
    if (p->n == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++) fn(arg, t, 0);
        return KERN_OK;
    }
    pthread_mutex_lock(&p->mu);
    uint32_t gen = (uint32_t)++p->generation;
    /* Close the claim word first: a helper that read the previous job's exhausted `next` and
     * then this job's larger n_tasks would otherwise win its compare-and-swap on the old word
     * and run a task of this job twice, its extra count ending the job early (seen as rare
     * wrong results on an oversubscribed machine). The closed word has this generation and an
     * index no job reaches, so the stale compare-and-swap fails and nobody claims until the
     * job is in place. */
    atomic_store(&p->next, ((unsigned long long)gen << 32) | 0xffffffffull);
    atomic_store(&p->fn, fn);
    atomic_store(&p->arg, arg);
    atomic_store(&p->n_tasks, n_tasks);
    atomic_store(&p->completed, 0);
    atomic_store(&p->next, (unsigned long long)gen << 32);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, gen, 0);
    if (!spin_until(p, job_done, (uint64_t)n_tasks)) {
        pthread_mutex_lock(&p->mu);
        p->caller_waits = 1;
        while (atomic_load(&p->completed) < n_tasks) pthread_cond_wait(&p->done, &p->mu);
        p->caller_waits = 0;
        pthread_mutex_unlock(&p->mu);
    }
    return KERN_OK;
}
