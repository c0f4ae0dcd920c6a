#include "core/shm.h"

#include <sys/mman.h>

static size_t shm_size(size_t n)
{
    return sizeof(struct shm_stats) + n * sizeof(struct shm_listener_stats);
}

struct shm_stats *shm_stats_new(size_t n_listeners)
{
    void *p = mmap(NULL, shm_size(n_listeners), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct shm_stats *s = p;
    s->n_listeners = n_listeners;
    return s;
}

void shm_stats_free(struct shm_stats *s)
{
    if (s != NULL)
        munmap(s, shm_size(s->n_listeners));
}
