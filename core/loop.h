/*
 * An event loop thread: a libevent base plus a queue through which any
 * thread can hand it a function to run.  This is how blocking work finishes:
 * a pool thread computes, then posts the completion back to the loop that
 * owns the request, so request state is only ever touched by one thread.
 *
 * libevent must be made thread-aware (evthread_use_pthreads) before the
 * first loop is created; aos_loop_global_init() does it.
 */
#ifndef AOS_LOOP_H
#define AOS_LOOP_H

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>

struct aos_loop;

typedef void (*aos_loop_fn)(void *arg);

/* Once per process, before any loop: enables libevent's pthread locking.
 * Returns 0 or -1. */
int aos_loop_global_init(void);

/* Creates a loop (not running yet).  name is used in log lines. */
struct aos_loop *aos_loop_new(const char *name);
/* Frees the loop.  Posted functions not yet run are dropped: drain first. */
void aos_loop_free(struct aos_loop *loop);

struct event_base *aos_loop_base(struct aos_loop *loop);
const char *aos_loop_name(const struct aos_loop *loop);

/* Runs fn(arg) on the loop's thread, soon.  Thread-safe, FIFO, never runs
 * fn inline.  Returns 0, or -1 (out of memory, or the loop has stopped
 * accepting posts) in which case fn will not run. */
int aos_loop_post(struct aos_loop *loop, aos_loop_fn fn, void *arg);

/* Runs the loop on a new thread until aos_loop_stop.  Returns 0 or -1. */
int aos_loop_start_thread(struct aos_loop *loop);
/* Runs the loop on the calling thread until aos_loop_stop. */
int aos_loop_run(struct aos_loop *loop);
/* Asks the loop to exit after running what was already posted.  Thread-safe. */
void aos_loop_stop(struct aos_loop *loop);
/* Names the calling thread (printf-style, at most 15 bytes kept) for
 * top -H, ps -L, gdb and perf: "aos-http/0", "aos-pool", "aos-engine/3". */
void aos_thread_name(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Waits for a loop started with aos_loop_start_thread to exit. */
void aos_loop_join(struct aos_loop *loop);
/* Runs, on the calling thread, whatever has been posted and not run yet.
 * For shutdown: after the worker pool is joined, its last completions are
 * still queued on a loop that no longer runs. */
void aos_loop_run_pending(struct aos_loop *loop);
/* True when called from the loop's own thread. */
bool aos_loop_is_current(const struct aos_loop *loop);

#endif
