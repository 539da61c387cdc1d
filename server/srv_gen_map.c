/* srv_gen_map.c — the map from scheduler task id to the generation and choice waiting for its
 * events (open addressing, linear probing, backward-shift deletion), kept in the server object.
 * Loop thread only. */
#include <stdlib.h>

#include "srv_gen_impl.h"

static size_t map_slot(uint64_t id, int cap)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 20) & (size_t)(cap - 1);
}

int srv_gen_map_put(srv_server *s, uint64_t id, srv_gen *g, int choice)
{
    if ((s->tasks_n + 1) * 2 > s->tasks_cap) {
        int cap = s->tasks_cap ? s->tasks_cap * 2 : 256;
        srv_task_ref *t = calloc((size_t)cap, sizeof(*t));
        if (!t)
            return -1;
        for (int i = 0; i < s->tasks_cap; i++) {
            if (!s->tasks[i].id)
                continue;
            size_t j = map_slot(s->tasks[i].id, cap);
            while (t[j].id)
                j = (j + 1) & (size_t)(cap - 1);
            t[j] = s->tasks[i];
        }
        free(s->tasks);
        s->tasks = t;
        s->tasks_cap = cap;
    }
    size_t j = map_slot(id, s->tasks_cap);
    while (s->tasks[j].id)
        j = (j + 1) & (size_t)(s->tasks_cap - 1);
    s->tasks[j].id = id;
    s->tasks[j].gen = g;
    s->tasks[j].choice = choice;
    s->tasks_n++;
    return 0;
}

srv_task_ref *srv_gen_map_get(srv_server *s, uint64_t id)
{
    if (!s->tasks_cap || !id)
        return NULL;
    size_t j = map_slot(id, s->tasks_cap);
    while (s->tasks[j].id) {
        if (s->tasks[j].id == id)
            return &s->tasks[j];
        j = (j + 1) & (size_t)(s->tasks_cap - 1);
    }
    return NULL;
}

void srv_gen_map_del(srv_server *s, uint64_t id)
{
    srv_task_ref *e = srv_gen_map_get(s, id);
    if (!e)
        return;
    size_t mask = (size_t)(s->tasks_cap - 1);
    size_t i = (size_t)(e - s->tasks);
    s->tasks[i].id = 0;
    s->tasks_n--;
    for (size_t j = (i + 1) & mask; s->tasks[j].id; j = (j + 1) & mask) {
        size_t home = map_slot(s->tasks[j].id, s->tasks_cap);
        /* move j back to i when i lies cyclically in [home, j) */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->tasks[i] = s->tasks[j];
            s->tasks[j].id = 0;
            i = j;
        }
    }
}
