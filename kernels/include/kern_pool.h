/* kern_pool.h — the kernels layer's worker pool (kernels/cpu/kern_cpu_pool.c): n workers including
 * the calling thread. kern_pool_run splits [0, n_tasks) among them: each task index runs exactly
 * once, on some worker; it returns when all are done. Idle workers block on a condition variable
 * (never spin). Tasks must not call kern_pool_run. The CPU backend runs its kernels on one; the
 * engine's tools (claq synth) use one for their own parallel loops. A pool is driven by one
 * thread at a time. */
#ifndef KERN_POOL_H
#define KERN_POOL_H

#include <stdint.h>

typedef struct kern_pool kern_pool;
typedef void (*kern_task_fn)(void *arg, int64_t task, int worker);
int kern_pool_create(kern_pool **out, int n_threads);
void kern_pool_destroy(kern_pool *p);
int kern_pool_run(kern_pool *p, int64_t n_tasks, kern_task_fn fn, void *arg);
int kern_pool_threads(const kern_pool *p);

#endif
