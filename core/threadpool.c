#include "config.h"

#include "threadpool.h"

#include "log.h"
#include "loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

struct job {
    struct job *next;
    aos_pool_fn work;
    aos_pool_fn done;
    struct aos_loop *done_loop;
    void *arg;
};

struct aos_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head;
    struct job *tail;
    size_t queued;
    size_t running;
    size_t max_queue;
    bool stopping;
    int nthreads;
    pthread_t *threads;
    char name[16];
    int nice_incr;
};

static void *pool_thread(void *arg)
{
    struct aos_pool *pool = arg;
    aos_thread_name("%s", pool->name);
    if (pool->nice_incr > 0) {
        errno = 0;
        int now = getpriority(PRIO_PROCESS, (id_t)gettid());
        /* Best effort: a thread that cannot be reniced still works. */
        if (errno == 0 && setpriority(PRIO_PROCESS, (id_t)gettid(), now + pool->nice_incr) != 0)
            aos_warn("pool: cannot lower the priority of a thread", "pool", pool->name, NULL);
    }
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->head == NULL && !pool->stopping)
            pthread_cond_wait(&pool->cond, &pool->lock);
        struct job *job = pool->head;
        if (job == NULL)
            break; /* stopping and nothing left */
        pool->head = job->next;
        if (pool->head == NULL)
            pool->tail = NULL;
        pool->queued--;
        pool->running++;
        pthread_mutex_unlock(&pool->lock);

        job->work(job->arg);
        if (job->done != NULL) {
            if (job->done_loop == NULL) {
                job->done(job->arg);
            } else if (aos_loop_post(job->done_loop, job->done, job->arg) != 0) {
                /* The loop is gone (shutdown past its drain deadline): the
                 * completion cannot run anywhere safe.  Say so rather than
                 * touching request state from this thread. */
                aos_warn("completion dropped: loop stopped", "loop", aos_loop_name(job->done_loop), NULL);
            }
        }
        free(job);

        pthread_mutex_lock(&pool->lock);
        pool->running--;
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

static struct aos_pool *pool_new(int nthreads, int max_queue, const char *name, int nice_incr)
{
    if (nthreads < 1 || max_queue < 1)
        return NULL;
    struct aos_pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return NULL;
    snprintf(pool->name, sizeof pool->name, "%s", name);
    pool->nice_incr = nice_incr;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    pool->max_queue = (size_t)max_queue;
    pool->threads = calloc((size_t)nthreads, sizeof *pool->threads);
    if (pool->threads == NULL)
        goto fail;
    for (; pool->nthreads < nthreads; pool->nthreads++)
        if (pthread_create(&pool->threads[pool->nthreads], NULL, pool_thread, pool) != 0)
            goto fail;
    return pool;
fail:
    aos_pool_free(pool);
    return NULL;
}

struct aos_pool *aos_pool_new(int nthreads, int max_queue) { return pool_new(nthreads, max_queue, "aos-pool", 0); }

struct aos_pool *aos_pool_new_background(int nthreads, int max_queue, const char *name, int nice_incr)
{
    return pool_new(nthreads, max_queue, name, nice_incr);
}

int aos_pool_submit(struct aos_pool *pool, aos_pool_fn work, aos_pool_fn done, struct aos_loop *done_loop,
                    void *arg)
{
    struct job *job = malloc(sizeof *job);
    if (job == NULL)
        return -1;
    *job = (struct job){.work = work, .done = done, .done_loop = done_loop, .arg = arg};
    pthread_mutex_lock(&pool->lock);
    if (pool->stopping || pool->queued >= pool->max_queue) {
        pthread_mutex_unlock(&pool->lock);
        free(job);
        return -1;
    }
    if (pool->tail != NULL)
        pool->tail->next = job;
    else
        pool->head = job;
    pool->tail = job;
    pool->queued++;
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

size_t aos_pool_pending(struct aos_pool *pool)
{
    pthread_mutex_lock(&pool->lock);
    size_t n = pool->queued + pool->running;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

void aos_pool_free(struct aos_pool *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}
