#include "config.h"
/*
 * The SSE streams of one HTTP loop (a shard): sockets taken over from the
 * HTTP server after the response headers, written directly.
 *
 * Per stream: the socket, a readable event (the client left), the tenant
 * and filter, the last id given to the client and, only once the socket
 * has been full, a writable event and a queue of references to shared
 * frames.  A stream that keeps up costs no allocation per event: frames
 * are encoded once by the hub and written straight from the hub's batch,
 * one send (sendmsg for several frames) per stream and walk.
 *
 * Delivery walks the shard's streams in slices of WALK_SLICE, giving the
 * loop back between slices (accepts, requests, client reads), and takes
 * every frame that has arrived so far: batches that come in during a walk
 * reach the rest of that walk at once, in the same write as the frames
 * it started with, and the streams already passed at the next walk, which
 * follows at once.  Under load (a walk longer than the gap between
 * batches) frames thus coalesce into fewer, larger writes instead of
 * queueing walk after walk: a node that cannot write every event to every
 * stream separately still writes every stream once per walk.
 *
 * Heartbeats: streams are also kept in order of their last write, so the
 * tick looks only at streams idle for a heartbeat interval (and at most
 * HB_SLICE of them per turn), never at all of them.
 *
 * A stream is in one of four modes:
 *   WAIT     the hub has not read its starting point yet (just after
 *            start-up): the stream waits for it rather than being refused,
 *            since EventSource gives up on an error status;
 *   STORE    resuming from an id the ring no longer holds: pages of the
 *            tenant's events are read from the store on the pool;
 *   CATCHUP  reading the ring from its last id;
 *   LIVE     taking the hub's batches as they come.
 * STORE and CATCHUP read ahead only while the client keeps up (the queue
 * stays under catch-up size), so a long resume never trips the slow-client
 * limit; a LIVE stream whose queue exceeds events.client_buffer is cut off
 * (its client resumes with Last-Event-ID).
 */
#include "events/hub_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "store/store.h"
#include "threadpool.h"

#define MAX_IOV 64
/* Streams visited per turn of the loop during a walk or a heartbeat
 * round: about 5-10 ms of writes on one core (PLATFORM-NOTES §13). */
#define WALK_SLICE 1024
#define HB_SLICE 1024
#define CATCHUP_MAX_BYTES (64 * 1024) /* read ahead while resuming */
#define CATCHUP_FRAMES 256
#define STORE_PAGE 200
/* The kernel's own buffer per stream (PLATFORM-NOTES §13): small, so that
 * a stalled client shows up in our queue rather than in kernel memory. */
#define SOCKET_SNDBUF (64 * 1024)

enum sub_mode { SUB_WAIT, SUB_STORE, SUB_CATCHUP, SUB_LIVE };

/* A type or run filter: allocated only for streams that have one. */
struct sub_filter {
    bool has_type;
    bool has_run;
    char type[AOS_EVENT_TYPE_MAX + 1];
    char run_id[AOS_ID_LEN];
};

/* What a walk reads of every stream comes first (one or two cache lines
 * per stream); the rest is for streams that are written to or stalled. */
struct sub {
    struct sub *next;
    struct sub *prev;
    unsigned char mode; /* enum sub_mode */
    bool closed;        /* socket closed, unlinked; freed once no page job holds it */
    bool job;           /* a store page is being read */
    bool write_armed;
    bool resume; /* WAIT: resume from last_id once the hub is ready */
    int fd;
    int64_t last_id; /* every id up to here has been given (or did not match) */
    size_t qlen;
    struct sub_filter *filter; /* NULL: every event of the tenant */
    char tenant_id[AOS_ID_LEN];
    uint64_t last_write_ms;
    struct sub *lru_prev; /* the shard's streams by last write, oldest first */
    struct sub *lru_next;
    struct aos_ev_shard *sh;
    struct event *ev_read;
    struct event *ev_write; /* created when the socket first fills up */
    /* frames waiting for room in the socket: a ring of references */
    struct aos_ev_frame **q;
    size_t qhead;
    size_t qcap;
    size_t qoff;   /* bytes of the first frame already written */
    size_t qbytes; /* bytes queued, qoff deducted */
};

struct aos_ev_shard {
    struct aos_events *hub;
    struct aos_loop *loop;
    struct sub *subs;
    size_t nsubs;
    struct sub *lru_head; /* written longest ago */
    struct sub *lru_tail;
    struct event *tick;
    /* Frames for the LIVE streams, in id order, each referenced: the
     * first walk_n were there when the current walk began, so they have
     * reached every stream once it ends. */
    struct aos_ev_frame **pend;
    size_t npend;
    size_t pend_cap;
    size_t walk_n;
    bool walking;
    struct sub *cursor; /* the next stream of the walk; NULL: at its end */
    struct event *walk_ev;
};

static struct aos_ev_frame heartbeat_frame = {.is_static = true, .len = 3, .data = ":\n\n"};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sub_filter(const struct sub *s, struct aos_event_filter *f)
{
    f->type = s->filter != NULL && s->filter->has_type ? s->filter->type : NULL;
    f->run_id = s->filter != NULL && s->filter->has_run ? s->filter->run_id : NULL;
}

/* The stream was written to at `now`: it goes to the end of the
 * heartbeat order. */
static void sub_touch(struct sub *s, uint64_t now)
{
    struct aos_ev_shard *sh = s->sh;

    s->last_write_ms = now;
    if (sh->lru_tail == s)
        return;
    /* unlink (s is not the tail, so it has a successor) */
    s->lru_next->lru_prev = s->lru_prev;
    if (s->lru_prev != NULL)
        s->lru_prev->lru_next = s->lru_next;
    else
        sh->lru_head = s->lru_next;
    /* append */
    s->lru_prev = sh->lru_tail;
    s->lru_next = NULL;
    sh->lru_tail->lru_next = s;
    sh->lru_tail = s;
}

static size_t catchup_bytes(struct aos_events *hub)
{
    long long half = atomic_load(&hub->client_buffer) / 2;

    return half > 0 && half < CATCHUP_MAX_BYTES ? (size_t)half : CATCHUP_MAX_BYTES;
}

/* soon: the previous tick left streams due (HB_SLICE per turn). */
static void tick_arm(struct aos_ev_shard *sh, bool soon)
{
    long long hb = atomic_load(&sh->hub->heartbeat_ms);
    long long ms = hb / 4;

    /* Heartbeats go out within a quarter interval of falling due. */
    if (ms < 50)
        ms = 50;
    if (ms > 1000)
        ms = 1000;
    if (soon)
        ms = 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(sh->tick, &tv);
}

/* ---------------------------------------------------------- closing */

static void sub_free(struct sub *s)
{
    free(s->q);
    free(s->filter);
    free(s);
}

/* Closes the stream.  Frees s unless a store page job still holds it:
 * callers must not touch s afterwards. */
static void sub_close(struct sub *s, const char *why)
{
    struct aos_ev_shard *sh = s->sh;

    if (s->closed)
        return;
    s->closed = true;
    if (sh->cursor == s) /* the walk goes on with the next stream */
        sh->cursor = s->next;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        sh->subs = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    if (s->lru_prev != NULL)
        s->lru_prev->lru_next = s->lru_next;
    else
        sh->lru_head = s->lru_next;
    if (s->lru_next != NULL)
        s->lru_next->lru_prev = s->lru_prev;
    else
        sh->lru_tail = s->lru_prev;
    s->lru_prev = s->lru_next = NULL;
    sh->nsubs--;
    if (sh->nsubs == 0)
        evtimer_del(sh->tick);
    if (s->ev_read != NULL)
        event_free(s->ev_read);
    if (s->ev_write != NULL)
        event_free(s->ev_write);
    s->ev_read = s->ev_write = NULL;
    close(s->fd);
    s->fd = -1;
    while (s->qlen > 0) {
        aos_ev_frame_unref(s->q[s->qhead]);
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
    }
    s->qbytes = 0;
    aos_events_release(sh->hub);
    aos_debug("event stream closed", "tenant", s->tenant_id, "reason", why, NULL);
    if (!s->job)
        sub_free(s);
}

/* ---------------------------------------------------------- writing */

static void on_sub_write(evutil_socket_t fd, short what, void *arg);

/* Queues a reference to f (0, or -1 out of memory). */
static int sub_enqueue(struct sub *s, struct aos_ev_frame *f)
{
    if (s->qlen == s->qcap) {
        size_t cap = s->qcap ? s->qcap * 2 : 8;
        struct aos_ev_frame **q = malloc(cap * sizeof *q);

        if (q == NULL)
            return -1;
        for (size_t i = 0; i < s->qlen; i++)
            q[i] = s->q[(s->qhead + i) % s->qcap];
        free(s->q);
        s->q = q;
        s->qhead = 0;
        s->qcap = cap;
    }
    aos_ev_frame_ref(f);
    s->q[(s->qhead + s->qlen) % s->qcap] = f;
    s->qlen++;
    s->qbytes += f->len;
    return 0;
}

/* Writes what is queued until done or the socket is full.  0, or -1 when
 * the client is gone. */
static int sub_flush(struct sub *s)
{
    struct aos_events *hub = s->sh->hub;

    while (s->qlen > 0) {
        struct iovec iov[MAX_IOV];
        size_t n = 0;

        for (; n < s->qlen && n < MAX_IOV; n++) {
            struct aos_ev_frame *f = s->q[(s->qhead + n) % s->qcap];
            size_t off = n == 0 ? s->qoff : 0;

            iov[n].iov_base = f->data + off;
            iov[n].iov_len = f->len - off;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
        ssize_t w = sendmsg(s->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        sub_touch(s, now_ms());
        size_t left = (size_t)w;

        s->qbytes -= left;
        while (left > 0) {
            struct aos_ev_frame *f = s->q[s->qhead];
            size_t rest = f->len - s->qoff;

            if (left < rest) {
                s->qoff += left;
                break;
            }
            left -= rest;
            s->qoff = 0;
            if (f->id > 0)
                atomic_fetch_add_explicit(&hub->delivered, 1, memory_order_relaxed);
            aos_ev_frame_unref(f);
            s->qhead = (s->qhead + 1) % s->qcap;
            s->qlen--;
        }
    }
    if (s->qlen == 0 && s->qcap > 64) {
        /* A burst grew the queue: give the memory back once it is out. */
        free(s->q);
        s->q = NULL;
        s->qcap = s->qhead = 0;
    }
    return 0;
}

/* After a write: waits for room while something is queued and applies
 * the slow-client rule.  0, or -1 when s was closed. */
static int sub_after_write(struct sub *s)
{
    struct aos_events *hub = s->sh->hub;

    if (s->qlen > 0 && !s->write_armed) {
        if (s->ev_write == NULL &&
            (s->ev_write = event_new(aos_loop_base(s->sh->loop), s->fd, EV_WRITE | EV_PERSIST, on_sub_write,
                                     s)) == NULL) {
            sub_close(s, "out of memory");
            return -1;
        }
        event_add(s->ev_write, NULL);
        s->write_armed = true;
    } else if (s->qlen == 0 && s->write_armed) {
        event_del(s->ev_write);
        s->write_armed = false;
    }
    if (s->mode == SUB_LIVE && (long long)s->qbytes > atomic_load(&hub->client_buffer)) {
        char q[24];

        atomic_fetch_add(&hub->slow_disconnects, 1);
        snprintf(q, sizeof q, "%zu", s->qbytes);
        aos_info("event stream cut off: the client does not keep up (it resumes with Last-Event-ID)",
                 "tenant", s->tenant_id, "queued_bytes", q, NULL);
        sub_close(s, "slow client");
        return -1;
    }
    return 0;
}

/* Flushes and applies the slow-client rule.  0, or -1 when s was closed. */
static int sub_push_done(struct sub *s)
{
    if (sub_flush(s) != 0) {
        sub_close(s, "write failed");
        return -1;
    }
    return sub_after_write(s);
}

/* Writes frames straight from the caller's array (nothing is queued, so
 * they are next on the wire) with one sendmsg; what does not fit is
 * queued.  n <= MAX_IOV.  0, or -1 when s was closed. */
static int sub_send(struct sub *s, struct aos_ev_frame *const *frames, size_t n, uint64_t now)
{
    struct iovec iov[MAX_IOV];
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
    size_t i, events = 0, left;
    ssize_t w;

    for (i = 0; i < n; i++) {
        iov[i].iov_base = frames[i]->data;
        iov[i].iov_len = frames[i]->len;
    }
    /* One frame (the usual case) goes with send: the kernel then copies
     * no msghdr and no iovec array in. */
    do
        w = n == 1 ? send(s->fd, frames[0]->data, frames[0]->len, MSG_NOSIGNAL | MSG_DONTWAIT)
                   : sendmsg(s->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            sub_close(s, "write failed");
            return -1;
        }
        w = 0;
    }
    if (w > 0)
        sub_touch(s, now);
    left = (size_t)w;
    for (i = 0; i < n && left >= frames[i]->len; i++) {
        left -= frames[i]->len;
        events += frames[i]->id > 0;
    }
    if (events > 0)
        atomic_fetch_add_explicit(&s->sh->hub->delivered, events, memory_order_relaxed);
    if (i == n)
        return 0;
    /* The socket is full: the rest waits for room. */
    for (size_t j = i; j < n; j++) {
        if (sub_enqueue(s, frames[j]) != 0) {
            sub_close(s, "out of memory");
            return -1;
        }
    }
    s->qoff = left;
    s->qbytes -= left;
    return sub_after_write(s);
}

/* Gives a LIVE stream the frames (in id order) above its last id that
 * match its tenant and filter.  0, or -1 when s was closed. */
static int sub_deliver(struct sub *s, struct aos_ev_frame *const *frames, size_t n, uint64_t now)
{
    struct aos_ev_frame *sel[MAX_IOV];
    struct aos_event_filter f;
    size_t i = n, k = 0;
    bool queue = s->qlen > 0; /* the socket is full: behind what waits */

    while (i > 0 && frames[i - 1]->id > s->last_id)
        i--;
    if (i == n)
        return 0;
    sub_filter(s, &f);
    for (; i < n; i++) {
        struct aos_ev_frame *fr = frames[i];

        s->last_id = fr->id;
        if (strcmp(fr->tenant_id, s->tenant_id) != 0 || !aos_event_filter_match(&f, fr->type, fr->run_id))
            continue;
        if (!queue && k < MAX_IOV) {
            sel[k++] = fr;
            continue;
        }
        if (!queue) {
            /* More than one sendmsg holds: queue them all, in order. */
            for (size_t j = 0; j < k; j++)
                if (sub_enqueue(s, sel[j]) != 0)
                    goto oom;
            k = 0;
            queue = true;
        }
        if (sub_enqueue(s, fr) != 0)
            goto oom;
    }
    if (k > 0)
        return sub_send(s, sel, k, now);
    return queue ? sub_push_done(s) : 0;
oom:
    sub_close(s, "out of memory");
    return -1;
}

/* ---------------------------------------------------------- resuming */

static void sub_advance(struct sub *s);

struct page_job {
    struct sub *s;
    struct aos_events *hub;
    char tenant_id[AOS_ID_LEN];
    char type[AOS_EVENT_TYPE_MAX + 1];
    char run_id[AOS_ID_LEN];
    bool has_type;
    bool has_run;
    int64_t after;
    int64_t floor; /* the ring's floor before the read */
    struct aos_event *rows;
    size_t n;
    bool more;
    int rc;
    char err[256];
};

static int page_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct page_job *j = arg;
    struct aos_event_filter f = {j->has_type ? j->type : NULL, j->has_run ? j->run_id : NULL};

    aos_event_list_free(j->rows, j->n);
    j->rows = NULL;
    j->n = 0;
    return aos_store_event_list(tx, j->tenant_id, j->after, &f, STORE_PAGE, &j->rows, &j->n, &j->more, err,
                                errlen);
}

static void page_work(void *arg)
{
    struct page_job *j = arg;

    /* Every id up to the floor was visible to the hub before this read
     * begins, so a page that ends the log covers at least that far. */
    j->floor = aos_ev_ring_floor(j->hub);
    j->rc = aos_store_transact(j->hub->store, false, page_tx, j, j->err, sizeof j->err);
}

static void page_done(void *arg)
{
    struct page_job *j = arg;
    struct sub *s = j->s;
    int64_t scanned;

    s->job = false;
    if (s->closed) {
        sub_free(s);
        goto out;
    }
    if (j->rc != AOS_DB_OK) {
        aos_warn("event stream cannot resume from the store; the client retries", "error", j->err, NULL);
        sub_close(s, "store unavailable");
        goto out;
    }
    for (size_t i = 0; i < j->n; i++) {
        struct aos_ev_frame *f = aos_ev_frame_new(&j->rows[i]);

        if (f == NULL || sub_enqueue(s, f) != 0) {
            aos_ev_frame_unref(f);
            sub_close(s, "out of memory");
            goto out;
        }
        aos_ev_frame_unref(f);
        s->last_id = j->rows[i].id;
    }
    scanned = s->last_id;
    if (!j->more && j->floor > scanned)
        scanned = j->floor; /* the tenant has no matching event up to the floor */
    s->last_id = scanned;
    if (sub_push_done(s) != 0)
        goto out;
    if (scanned >= aos_ev_ring_floor(s->sh->hub))
        s->mode = SUB_CATCHUP;
    sub_advance(s);
out:
    aos_event_list_free(j->rows, j->n);
    free(j);
}

static void sub_read_store(struct sub *s)
{
    struct page_job *j = calloc(1, sizeof *j);
    struct aos_events *hub = s->sh->hub;

    if (j == NULL) {
        sub_close(s, "out of memory");
        return;
    }
    j->s = s;
    j->hub = hub;
    memcpy(j->tenant_id, s->tenant_id, sizeof j->tenant_id);
    if (s->filter != NULL) {
        memcpy(j->type, s->filter->type, sizeof j->type);
        memcpy(j->run_id, s->filter->run_id, sizeof j->run_id);
        j->has_type = s->filter->has_type;
        j->has_run = s->filter->has_run;
    }
    j->after = s->last_id;
    s->job = true;
    if (hub->pool == NULL || aos_pool_submit(hub->pool, page_work, page_done, s->sh->loop, j) != 0) {
        s->job = false;
        free(j);
        sub_close(s, "server busy");
    }
}

/* Reads ahead (ring or store) while the client keeps up. */
static void sub_advance(struct sub *s)
{
    struct aos_events *hub = s->sh->hub;
    size_t limit = catchup_bytes(hub);

    while (!s->closed && s->mode != SUB_LIVE && s->mode != SUB_WAIT && !s->job && s->qbytes < limit) {
        struct aos_ev_frame *frames[CATCHUP_FRAMES];
        struct aos_event_filter f;
        int64_t pos = s->last_id;
        bool at_end = false;
        long n;

        if (s->mode == SUB_STORE) {
            sub_read_store(s);
            return;
        }
        sub_filter(s, &f);
        n = aos_ev_ring_read(hub, s->last_id, s->tenant_id, &f, limit - s->qbytes, frames, CATCHUP_FRAMES,
                             &pos, &at_end);
        if (n < 0) {
            s->mode = SUB_STORE;
            continue;
        }
        bool oom = false;

        for (long i = 0; i < n; i++) {
            if (!oom && sub_enqueue(s, frames[i]) != 0)
                oom = true;
            aos_ev_frame_unref(frames[i]);
        }
        if (oom) {
            sub_close(s, "out of memory"); /* may free s */
            return;
        }
        s->last_id = pos;
        /* Caught up under the ring's lock: every later batch holds only
         * ids above pos, every earlier one only ids up to it. */
        if (at_end)
            s->mode = SUB_LIVE;
        if (sub_push_done(s) != 0)
            return;
    }
}

/* Starts delivery: from last_id (resume) or from the hub's high-water
 * mark.  Only once the hub is ready: before, both are unknown. */
static void sub_begin(struct sub *s)
{
    if (s->resume) {
        s->mode = SUB_CATCHUP;
        sub_advance(s);
    } else {
        s->last_id = aos_events_high_water(s->sh->hub);
        s->mode = SUB_LIVE;
    }
}

/* ---------------------------------------------------------- events */

static void on_sub_write(evutil_socket_t fd, short what, void *arg)
{
    struct sub *s = arg;

    (void)fd;
    (void)what;
    if (sub_push_done(s) != 0)
        return;
    if (s->mode != SUB_LIVE)
        sub_advance(s);
}

static void on_sub_read(evutil_socket_t fd, short what, void *arg)
{
    struct sub *s = arg;
    char buf[512];

    (void)what;
    /* Nothing is expected from the client: read to notice it leaving and
     * drop what it sends, a bounded amount per wake-up. */
    for (int i = 0; i < 16; i++) {
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

        if (r > 0)
            continue;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        sub_close(s, r == 0 ? "client closed" : "read failed");
        return;
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct aos_ev_shard *sh = arg;
    uint64_t now = now_ms();
    uint64_t hb = (uint64_t)atomic_load(&sh->hub->heartbeat_ms);
    struct aos_ev_frame *frame = &heartbeat_frame;
    size_t budget = HB_SLICE;
    struct sub *s;

    (void)fd;
    (void)what;
    /* Oldest write first: the first stream written to within the interval
     * ends the round.  Every stream looked at moves to the end (written
     * to, or touched), so the round ends. */
    while ((s = sh->lru_head) != NULL && now - s->last_write_ms >= hb) {
        if (budget-- == 0) {
            tick_arm(sh, true);
            return;
        }
        /* Only idle streams: anything queued already shows the client
         * (and proxies) that the stream is alive, and goes out first. */
        if (s->qlen > 0)
            sub_touch(s, now);
        else
            (void)sub_send(s, &frame, 1, now); /* may close s; or queue it, then it is touched next */
    }
    if (sh->nsubs > 0)
        tick_arm(sh, false);
}

/* ---------------------------------------------------------- batches */

static void walk_start(struct aos_ev_shard *sh)
{
    sh->walking = true;
    sh->walk_n = sh->npend;
    sh->cursor = sh->subs;
}

/* One slice of the walk (see the top of the file); schedules the next. */
static void walk_slice(struct aos_ev_shard *sh)
{
    static const struct timeval now_tv = {0, 0};
    uint64_t now = now_ms();
    int64_t top = sh->npend > 0 ? sh->pend[sh->npend - 1]->id : 0;

    for (size_t budget = WALK_SLICE; sh->cursor != NULL && budget > 0; budget--) {
        struct sub *s = sh->cursor;

        sh->cursor = s->next;
        if (s->mode == SUB_LIVE && s->last_id < top)
            (void)sub_deliver(s, sh->pend, sh->npend, now); /* may close s */
    }
    if (sh->cursor != NULL) {
        /* A timer, not event_active: libevent runs events activated while
         * it runs its active queue in the same pass, before any I/O. */
        evtimer_add(sh->walk_ev, &now_tv);
        return;
    }
    /* The frames the walk began with have reached every stream. */
    for (size_t i = 0; i < sh->walk_n; i++)
        aos_ev_frame_unref(sh->pend[i]);
    sh->npend -= sh->walk_n;
    memmove(sh->pend, sh->pend + sh->walk_n, sh->npend * sizeof *sh->pend);
    sh->walk_n = 0;
    sh->walking = false;
    if (sh->npend > 0) {
        /* Frames that came during the walk: the streams it had passed. */
        walk_start(sh);
        evtimer_add(sh->walk_ev, &now_tv);
    }
}

static void on_walk(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    walk_slice(arg);
}

struct delivery {
    struct aos_ev_shard *sh;
    struct aos_ev_batch *b;
};

static void shard_close_all(void *arg);

static void shard_deliver(void *arg)
{
    struct delivery *d = arg;
    struct aos_ev_shard *sh = d->sh;
    struct aos_ev_batch *b = d->b;

    free(d);
    if (sh->npend + b->n > sh->pend_cap) {
        size_t cap = sh->pend_cap ? sh->pend_cap : 64;
        struct aos_ev_frame **p;

        while (cap < sh->npend + b->n)
            cap *= 2;
        p = realloc(sh->pend, cap * sizeof *p);
        if (p == NULL) {
            /* Its live streams would miss this batch: close them, their
             * clients resume. */
            aos_err("events: out of memory for a batch: closing streams so that they resume", NULL);
            shard_close_all(sh);
            aos_ev_batch_unref(b);
            return;
        }
        sh->pend = p;
        sh->pend_cap = cap;
    }
    for (size_t i = 0; i < b->n; i++) {
        aos_ev_frame_ref(b->frames[i]);
        sh->pend[sh->npend++] = b->frames[i];
    }
    aos_ev_batch_unref(b);
    /* During a walk the frames join it (the rest of the walk and the
     * next one); otherwise a walk begins, its first slice at once. */
    if (!sh->walking) {
        walk_start(sh);
        walk_slice(sh);
    }
}

void aos_ev_shard_post_batch(struct aos_ev_shard *sh, struct aos_ev_batch *b)
{
    struct delivery *d = malloc(sizeof *d);

    if (d != NULL) {
        d->sh = sh;
        d->b = b;
        if (aos_loop_post(sh->loop, shard_deliver, d) == 0)
            return;
        free(d);
    }
    /* The loop is gone (shutdown) or out of memory: its live streams will
     * not see this batch; close them so their clients resume. */
    aos_ev_batch_unref(b);
    aos_ev_shard_post_close_all(sh);
}

static void shard_close_all(void *arg)
{
    struct aos_ev_shard *sh = arg;

    while (sh->subs != NULL)
        sub_close(sh->subs, "closing");
}

void aos_ev_shard_post_close_all(struct aos_ev_shard *sh)
{
    /* Fails only when the loop has stopped: shard_free closes them then. */
    (void)aos_loop_post(sh->loop, shard_close_all, sh);
}

/* The hub knows its starting point: release the streams that waited. */
static void shard_ready(void *arg)
{
    struct aos_ev_shard *sh = arg;
    struct sub *s = sh->subs;

    while (s != NULL) {
        struct sub *next = s->next;

        if (s->mode == SUB_WAIT)
            sub_begin(s);
        s = next;
    }
}

void aos_ev_shard_post_ready(struct aos_ev_shard *sh) { (void)aos_loop_post(sh->loop, shard_ready, sh); }

static void shard_settings(void *arg)
{
    struct aos_ev_shard *sh = arg;

    if (sh->nsubs > 0)
        tick_arm(sh, false);
}

void aos_ev_shard_post_settings(struct aos_ev_shard *sh)
{
    (void)aos_loop_post(sh->loop, shard_settings, sh);
}

/* ---------------------------------------------------------- shards */

struct aos_ev_shard *aos_ev_shard_new(struct aos_events *hub, struct aos_loop *loop)
{
    struct aos_ev_shard *sh = calloc(1, sizeof *sh);

    if (sh == NULL)
        return NULL;
    sh->hub = hub;
    sh->loop = loop;
    sh->tick = evtimer_new(aos_loop_base(loop), on_tick, sh);
    sh->walk_ev = evtimer_new(aos_loop_base(loop), on_walk, sh);
    if (sh->tick == NULL || sh->walk_ev == NULL) {
        aos_ev_shard_free(sh);
        return NULL;
    }
    return sh;
}

void aos_ev_shard_free(struct aos_ev_shard *sh)
{
    if (sh == NULL)
        return;
    shard_close_all(sh);
    for (size_t i = 0; i < sh->npend; i++)
        aos_ev_frame_unref(sh->pend[i]);
    free(sh->pend);
    if (sh->tick != NULL)
        event_free(sh->tick);
    if (sh->walk_ev != NULL)
        event_free(sh->walk_ev);
    free(sh);
}

struct aos_loop *aos_ev_shard_loop(const struct aos_ev_shard *sh) { return sh->loop; }

void aos_events_stream_start(struct aos_events *hub, struct aos_loop *loop, int fd,
                             const struct aos_events_stream_spec *spec)
{
    struct aos_ev_shard *sh = NULL;
    struct sub *s = NULL;
    int one = SOCKET_SNDBUF;

    for (size_t i = 0; i < hub->nshards; i++)
        if (hub->shards[i]->loop == loop)
            sh = hub->shards[i];
    if (fd < 0 || sh == NULL || atomic_load(&hub->draining) || (s = calloc(1, sizeof *s)) == NULL)
        goto refuse;
    s->sh = sh;
    s->fd = fd;
    snprintf(s->tenant_id, sizeof s->tenant_id, "%s", spec->tenant_id);
    if (spec->type != NULL || spec->run_id != NULL) {
        if ((s->filter = calloc(1, sizeof *s->filter)) == NULL)
            goto refuse;
        s->filter->has_type = spec->type != NULL;
        s->filter->has_run = spec->run_id != NULL;
        snprintf(s->filter->type, sizeof s->filter->type, "%s", spec->type != NULL ? spec->type : "");
        snprintf(s->filter->run_id, sizeof s->filter->run_id, "%s", spec->run_id != NULL ? spec->run_id : "");
    }
    if (evutil_make_socket_nonblocking(fd) != 0)
        goto refuse;
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &one, sizeof one);
    s->ev_read = event_new(aos_loop_base(loop), fd, EV_READ | EV_PERSIST, on_sub_read, s);
    if (s->ev_read == NULL || event_add(s->ev_read, NULL) != 0)
        goto refuse;
    s->next = sh->subs;
    if (sh->subs != NULL)
        sh->subs->prev = s;
    sh->subs = s;
    /* The newest write: the end of the heartbeat order. */
    s->last_write_ms = now_ms();
    s->lru_prev = sh->lru_tail;
    if (sh->lru_tail != NULL)
        sh->lru_tail->lru_next = s;
    else
        sh->lru_head = s;
    sh->lru_tail = s;
    if (sh->nsubs++ == 0)
        tick_arm(sh, false);
    s->resume = spec->resume;
    s->last_id = spec->resume && spec->last_id > 0 ? spec->last_id : 0;
    /* Ready is set before the hub posts shard_ready, so a stream that sees
     * it unset here is released by that post (which runs after us). */
    if (atomic_load(&hub->ready)) {
        sub_begin(s);
    } else {
        s->mode = SUB_WAIT;
        aos_events_committed(hub); /* read the starting point now */
    }
    return;
refuse:
    if (s != NULL) {
        if (s->ev_read != NULL)
            event_free(s->ev_read);
        free(s->filter);
        free(s);
    }
    if (fd >= 0)
        close(fd);
    aos_events_release(hub);
}
