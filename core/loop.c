#include "config.h"

#include "loop.h"

#include "log.h"

#include <event2/thread.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct post {
    struct post *next;
    aos_loop_fn fn;
    void *arg;
};

struct aos_loop {
    char name[32];
    struct event_base *base;
    struct event *wakeup;   /* activated by posters; drains the queue */
    pthread_mutex_t lock;
    struct post *head;
    struct post *tail;
    bool stopping;
    bool has_thread;
    pthread_t thread;
};

int aos_loop_global_init(void)
{
    return evthread_use_pthreads() == 0 ? 0 : -1;
}

static void loop_drain(evutil_socket_t fd, short what, void *arg)
{
    struct aos_loop *loop = arg;
    (void)fd;
    (void)what;
    /* Take the whole queue at once: posts made while we run land in the
     * next activation instead of starving the loop. */
    pthread_mutex_lock(&loop->lock);
    struct post *p = loop->head;
    loop->head = loop->tail = NULL;
    pthread_mutex_unlock(&loop->lock);
    while (p != NULL) {
        struct post *next = p->next;
        p->fn(p->arg);
        free(p);
        p = next;
    }
}

struct aos_loop *aos_loop_new(const char *name)
{
    struct aos_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return NULL;
    snprintf(loop->name, sizeof loop->name, "%s", name);
    pthread_mutex_init(&loop->lock, NULL);
    /* The epoll changelist folds the read/write interest changes of one
     * loop iteration into at most one epoll_ctl per socket: a response
     * used to cost four (bufferevents toggle EV_READ and EV_WRITE around
     * every request).  Its one caveat, fds shared through dup(), does not
     * apply: aosd never dups a socket. */
    struct event_config *cfg = event_config_new();
    if (cfg == NULL)
        goto fail;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    loop->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (loop->base == NULL)
        goto fail;
    loop->wakeup = event_new(loop->base, -1, 0, loop_drain, loop);
    if (loop->wakeup == NULL)
        goto fail;
    return loop;
fail:
    aos_loop_free(loop);
    return NULL;
}

void aos_loop_free(struct aos_loop *loop)
{
    if (loop == NULL)
        return;
    struct post *p = loop->head;
    while (p != NULL) {
        struct post *next = p->next;
        free(p);
        p = next;
    }
    if (loop->wakeup != NULL)
        event_free(loop->wakeup);
    if (loop->base != NULL)
        event_base_free(loop->base);
    pthread_mutex_destroy(&loop->lock);
    free(loop);
}

struct event_base *aos_loop_base(struct aos_loop *loop) { return loop->base; }

const char *aos_loop_name(const struct aos_loop *loop) { return loop->name; }

int aos_loop_post(struct aos_loop *loop, aos_loop_fn fn, void *arg)
{
    struct post *p = malloc(sizeof *p);
    if (p == NULL)
        return -1;
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&loop->lock);
    if (loop->stopping) {
        pthread_mutex_unlock(&loop->lock);
        free(p);
        return -1;
    }
    if (loop->tail != NULL)
        loop->tail->next = p;
    else
        loop->head = p;
    loop->tail = p;
    pthread_mutex_unlock(&loop->lock);
    /* Thread-safe with evthread locking; activating twice is harmless. */
    event_active(loop->wakeup, 0, 0);
    return 0;
}

static void *loop_thread(void *arg)
{
    struct aos_loop *loop = arg;
    aos_thread_name("aos-%s", loop->name);
    aos_loop_run(loop);
    return NULL;
}

int aos_loop_run(struct aos_loop *loop)
{
    loop->thread = pthread_self();
    int rc = event_base_loop(loop->base, EVLOOP_NO_EXIT_ON_EMPTY);
    /* Run what was posted before the stop request (completions of work that
     * already happened must not leak). */
    loop_drain(-1, 0, loop);
    return rc < 0 ? -1 : 0;
}

int aos_loop_start_thread(struct aos_loop *loop)
{
    if (pthread_create(&loop->thread, NULL, loop_thread, loop) != 0)
        return -1;
    loop->has_thread = true;
    return 0;
}

static void loop_exit(void *arg)
{
    struct aos_loop *loop = arg;
    event_base_loopbreak(loop->base);
}

void aos_loop_stop(struct aos_loop *loop)
{
    /* The exit request is queued under the same lock that closes the queue,
     * so every post accepted before it runs first and none is accepted
     * after it. */
    struct post *p = malloc(sizeof *p);
    pthread_mutex_lock(&loop->lock);
    if (loop->stopping || p == NULL) {
        bool already = loop->stopping;
        loop->stopping = true;
        pthread_mutex_unlock(&loop->lock);
        free(p);
        if (!already)
            event_base_loopbreak(loop->base);
        return;
    }
    *p = (struct post){.fn = loop_exit, .arg = loop};
    if (loop->tail != NULL)
        loop->tail->next = p;
    else
        loop->head = p;
    loop->tail = p;
    loop->stopping = true;
    pthread_mutex_unlock(&loop->lock);
    event_active(loop->wakeup, 0, 0);
}

void aos_loop_join(struct aos_loop *loop)
{
    if (loop->has_thread) {
        pthread_join(loop->thread, NULL);
        loop->has_thread = false;
    }
}

void aos_loop_run_pending(struct aos_loop *loop) { loop_drain(-1, 0, loop); }

bool aos_loop_is_current(const struct aos_loop *loop)
{
    return pthread_equal(pthread_self(), loop->thread) != 0;
}

void aos_thread_name(const char *fmt, ...)
{
    /* The kernel keeps 15 bytes: "aos-http/12" fits, longer names are cut. */
    char name[16];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    (void)pthread_setname_np(pthread_self(), name);
}
