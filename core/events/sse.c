#include "config.h"
/*
 * The SSE streams of one HTTP loop (a shard): sockets taken over from the
 * HTTP server after the response headers, written directly.
 *
 * Per stream: the socket, two events (readable: the client left; writable:
 * room again for what is queued), the tenant and filter, the last id given
 * to the client and a queue of references to shared frames, used only
 * while the socket is full.  A stream that keeps up costs no allocation
 * per event: frames are encoded once by the hub and written with one
 * sendmsg per batch.
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
#define CATCHUP_MAX_BYTES (64 * 1024) /* read ahead while resuming */
#define CATCHUP_FRAMES 256
#define STORE_PAGE 200
/* The kernel's own buffer per stream (PLATFORM-NOTES §13): small, so that
 * a stalled client shows up in our queue rather than in kernel memory. */
#define SOCKET_SNDBUF (64 * 1024)

enum sub_mode { SUB_WAIT, SUB_STORE, SUB_CATCHUP, SUB_LIVE };

struct sub {
    struct sub *prev;
    struct sub *next;
    struct aos_ev_shard *sh;
    int fd;
    struct event *ev_read;
    struct event *ev_write;
    enum sub_mode mode;
    bool closed; /* socket closed, unlinked; freed once no page job holds it */
    bool job;    /* a store page is being read */
    bool write_armed;
    bool has_type;
    bool has_run;
    bool resume; /* WAIT: resume from last_id once the hub is ready */
    char tenant_id[AOS_ID_LEN];
    char type[AOS_EVENT_TYPE_MAX + 1];
    char run_id[AOS_ID_LEN];
    int64_t last_id; /* every id up to here has been given (or did not match) */
    uint64_t last_write_ms;
    /* frames waiting for room in the socket: a ring of references */
    struct aos_ev_frame **q;
    size_t qhead;
    size_t qlen;
    size_t qcap;
    size_t qoff;   /* bytes of the first frame already written */
    size_t qbytes; /* bytes queued, qoff deducted */
};

struct aos_ev_shard {
    struct aos_events *hub;
    struct aos_loop *loop;
    struct sub *subs;
    size_t nsubs;
    struct event *tick;
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
    f->type = s->has_type ? s->type : NULL;
    f->run_id = s->has_run ? s->run_id : NULL;
}

static size_t catchup_bytes(struct aos_events *hub)
{
    long long half = atomic_load(&hub->client_buffer) / 2;

    return half > 0 && half < CATCHUP_MAX_BYTES ? (size_t)half : CATCHUP_MAX_BYTES;
}

static void tick_arm(struct aos_ev_shard *sh)
{
    long long hb = atomic_load(&sh->hub->heartbeat_ms);
    long long ms = hb / 4;

    /* Heartbeats go out within a quarter interval of falling due. */
    if (ms < 50)
        ms = 50;
    if (ms > 1000)
        ms = 1000;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(sh->tick, &tv);
}

/* ---------------------------------------------------------- closing */

static void sub_free(struct sub *s)
{
    free(s->q);
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
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        sh->subs = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
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
        s->last_write_ms = now_ms();
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
    if (s->qlen > 0 && !s->write_armed) {
        event_add(s->ev_write, NULL);
        s->write_armed = true;
    } else if (s->qlen == 0 && s->write_armed) {
        event_del(s->ev_write);
        s->write_armed = false;
    }
    return 0;
}

/* Flushes and applies the slow-client rule.  0, or -1 when s was closed. */
static int sub_push_done(struct sub *s)
{
    struct aos_events *hub = s->sh->hub;

    if (sub_flush(s) != 0) {
        sub_close(s, "write failed");
        return -1;
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
    memcpy(j->type, s->type, sizeof j->type);
    memcpy(j->run_id, s->run_id, sizeof j->run_id);
    j->has_type = s->has_type;
    j->has_run = s->has_run;
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
    struct sub *s = sh->subs;

    (void)fd;
    (void)what;
    while (s != NULL) {
        struct sub *next = s->next;

        /* Only idle streams: anything queued or written recently already
         * shows the client (and proxies) that the stream is alive. */
        if (s->qlen == 0 && now - s->last_write_ms >= hb) {
            if (sub_enqueue(s, &heartbeat_frame) != 0)
                sub_close(s, "out of memory");
            else
                (void)sub_push_done(s);
        }
        s = next;
    }
    if (sh->nsubs > 0)
        tick_arm(sh);
}

/* ---------------------------------------------------------- batches */

struct delivery {
    struct aos_ev_shard *sh;
    struct aos_ev_batch *b;
};

static void shard_deliver(void *arg)
{
    struct delivery *d = arg;
    struct aos_ev_batch *b = d->b;
    struct sub *s = d->sh->subs;

    while (s != NULL) {
        struct sub *next = s->next;
        bool queued = false, oom = false;
        struct aos_event_filter f;

        if (s->mode == SUB_LIVE) {
            sub_filter(s, &f);
            for (size_t i = 0; i < b->n && !oom; i++) {
                struct aos_ev_frame *fr = b->frames[i];

                if (fr->id <= s->last_id)
                    continue;
                s->last_id = fr->id;
                if (strcmp(fr->tenant_id, s->tenant_id) != 0 ||
                    !aos_event_filter_match(&f, fr->type, fr->run_id))
                    continue;
                if (sub_enqueue(s, fr) != 0)
                    oom = true;
                else
                    queued = true;
            }
            /* Either call may free s: nothing touches it afterwards. */
            if (oom)
                sub_close(s, "out of memory");
            else if (queued)
                (void)sub_push_done(s);
        }
        s = next;
    }
    aos_ev_batch_unref(b);
    free(d);
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
        tick_arm(sh);
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
    if (sh->tick == NULL) {
        free(sh);
        return NULL;
    }
    return sh;
}

void aos_ev_shard_free(struct aos_ev_shard *sh)
{
    if (sh == NULL)
        return;
    shard_close_all(sh);
    event_free(sh->tick);
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
    s->has_type = spec->type != NULL;
    s->has_run = spec->run_id != NULL;
    snprintf(s->type, sizeof s->type, "%s", s->has_type ? spec->type : "");
    snprintf(s->run_id, sizeof s->run_id, "%s", s->has_run ? spec->run_id : "");
    s->last_write_ms = now_ms();
    if (evutil_make_socket_nonblocking(fd) != 0)
        goto refuse;
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &one, sizeof one);
    s->ev_read = event_new(aos_loop_base(loop), fd, EV_READ | EV_PERSIST, on_sub_read, s);
    s->ev_write = event_new(aos_loop_base(loop), fd, EV_WRITE | EV_PERSIST, on_sub_write, s);
    if (s->ev_read == NULL || s->ev_write == NULL || event_add(s->ev_read, NULL) != 0)
        goto refuse;
    s->next = sh->subs;
    if (sh->subs != NULL)
        sh->subs->prev = s;
    sh->subs = s;
    if (sh->nsubs++ == 0)
        tick_arm(sh);
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
        if (s->ev_write != NULL)
            event_free(s->ev_write);
        free(s);
    }
    if (fd >= 0)
        close(fd);
    aos_events_release(hub);
}
