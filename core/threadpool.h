/*
 * A fixed pool of threads for blocking work (store queries, password
 * hashing, plugin calls).  The HTTP loops never block: they submit a job
 * with a `work` function (runs on a pool thread) and a `done` function (runs
 * afterwards on the submitting loop's thread, via aos_loop_post), so the
 * request is only ever touched by its own loop.
 *
 * The queue is bounded: when it is full, submit fails at once and the
 * caller answers 503 instead of letting latency grow without bound.
 */
#ifndef AOS_THREADPOOL_H
#define AOS_THREADPOOL_H

#include <stddef.h>

struct aos_loop;
struct aos_pool;

typedef void (*aos_pool_fn)(void *arg);

/* nthreads >= 1, max_queue >= 1 (jobs waiting, not counting running ones). */
struct aos_pool *aos_pool_new(int nthreads, int max_queue);

/* A pool for CPU-heavy work that must not starve the HTTP loops (Argon2id):
 * its threads are named `name` and run `nice_incr` steps nicer than the
 * process (Linux keeps a nice value per thread).  Under contention the
 * scheduler then gives the loops most of the CPU -- authenticated traffic
 * keeps its latency during a login burst, and the hashes still progress. */
struct aos_pool *aos_pool_new_background(int nthreads, int max_queue, const char *name, int nice_incr);

/* Queues work(arg) for a pool thread; afterwards done(arg) runs on
 * done_loop's thread (or on the pool thread if done_loop is NULL; done may
 * be NULL).  Returns 0, or -1 when the queue is full or the pool is
 * shutting down; then neither function runs and arg still belongs to the
 * caller. */
int aos_pool_submit(struct aos_pool *pool, aos_pool_fn work, aos_pool_fn done, struct aos_loop *done_loop,
                    void *arg);

/* Jobs waiting + running. */
size_t aos_pool_pending(struct aos_pool *pool);

/* Stops accepting jobs, runs every job already queued, joins the threads
 * and frees the pool.  Completions of those jobs are still posted to their
 * loops: keep the loops alive (running or not) until this returns. */
void aos_pool_free(struct aos_pool *pool);

#endif
