#include "config.h"
/*
 * The event hub (events.h, hub_internal.h): one thread per node that
 * polls the store for new events, keeps the ring of recent frames, posts
 * batches to the HTTP loops and, with Redis, exchanges wake-ups with the
 * other nodes.
 *
 * Redis carries only wake-ups ("something was committed, read the
 * store"), never events: a message lost while Redis or the connection is
 * down costs at most one poll interval, and each (re)subscription is
 * followed by a poll.  Channel "aos:events:<db>" (pub/sub ignores the
 * database number, so it is part of the name); the message is the
 * sender's node id, so a node ignores its own.
 */
#include "events/hub_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <time.h>

#include "conf.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "redis_url.h"
#include "store/store.h"

/* Rows per store read: a burst is read in slices so that batches reach
 * the streams while the rest is still being read. */
#define POLL_BATCH 1000
#define REDIS_BACKOFF_MIN_MS 100
#define REDIS_BACKOFF_MAX_MS 5000

/* ------------------------------------------------------------ frames */

struct aos_ev_frame *aos_ev_frame_new(const struct aos_event *e)
{
    struct json_object *o = aos_event_to_json(e);
    struct aos_ev_frame *f = NULL;
    const char *text;
    size_t tlen = 0;
    char head[40];
    int hl;

    if (o == NULL)
        return NULL;
    text = aos_json_text(o, &tlen);
    hl = snprintf(head, sizeof head, "id: %" PRId64 "\ndata: ", e->id);
    if (text == NULL || hl < 0 || (size_t)hl >= sizeof head)
        goto out;
    f = malloc(sizeof *f + (size_t)hl + tlen + 3);
    if (f == NULL)
        goto out;
    atomic_init(&f->refs, 1);
    f->is_static = false;
    f->id = e->id;
    memcpy(f->tenant_id, e->tenant_id, sizeof f->tenant_id);
    memcpy(f->type, e->type, sizeof f->type);
    memcpy(f->run_id, e->run_id, sizeof f->run_id);
    /* Compact JSON has no raw newline (json-c escapes them in strings):
     * the frame is one data line. */
    memcpy(f->data, head, (size_t)hl);
    memcpy(f->data + hl, text, tlen);
    memcpy(f->data + (size_t)hl + tlen, "\n\n", 3);
    f->len = (size_t)hl + tlen + 2;
out:
    json_object_put(o);
    return f;
}

void aos_ev_frame_ref(struct aos_ev_frame *f)
{
    if (!f->is_static)
        atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void aos_ev_frame_unref(struct aos_ev_frame *f)
{
    if (f == NULL || f->is_static)
        return;
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        free(f);
}

void aos_ev_batch_unref(struct aos_ev_batch *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < b->n; i++)
        aos_ev_frame_unref(b->frames[i]);
    free(b);
}

/* -------------------------------------------------------------- ring */

static struct aos_ev_frame *ring_at(struct aos_events *hub, size_t i)
{
    return hub->ring[(hub->ring_head + i) % hub->ring_cap];
}

/* Index of the first frame with id > after (ring_len if none). */
static size_t ring_find(struct aos_events *hub, int64_t after)
{
    size_t lo = 0, hi = hub->ring_len;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (ring_at(hub, mid)->id <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

long aos_ev_ring_read(struct aos_events *hub, int64_t after, const char *tenant_id,
                      const struct aos_event_filter *filter, size_t max_bytes, struct aos_ev_frame **out,
                      size_t max, int64_t *pos, bool *at_end)
{
    size_t i, n = 0, bytes = 0;
    long rc;

    pthread_mutex_lock(&hub->ring_mu);
    if (after < hub->floor) {
        rc = -1;
        goto out;
    }
    *pos = after > hub->high_water ? after : hub->high_water;
    *at_end = true;
    size_t start = ring_find(hub, after);
    for (i = start; i < hub->ring_len; i++) {
        struct aos_ev_frame *f = ring_at(hub, i);

        if (n == max || bytes >= max_bytes) {
            /* Stop before f: everything up to the previous frame is read. */
            *pos = i > start ? ring_at(hub, i - 1)->id : after;
            *at_end = false;
            break;
        }
        if (strcmp(f->tenant_id, tenant_id) != 0 || !aos_event_filter_match(filter, f->type, f->run_id))
            continue;
        aos_ev_frame_ref(f);
        out[n++] = f;
        bytes += f->len;
    }
    rc = (long)n;
out:
    pthread_mutex_unlock(&hub->ring_mu);
    return rc;
}

int64_t aos_ev_ring_floor(struct aos_events *hub)
{
    pthread_mutex_lock(&hub->ring_mu);
    int64_t f = hub->floor;
    pthread_mutex_unlock(&hub->ring_mu);
    return f;
}

/* Appends frames (taking their references) and evicts the oldest. */
static void ring_append(struct aos_events *hub, struct aos_ev_frame **frames, size_t n)
{
    pthread_mutex_lock(&hub->ring_mu);
    for (size_t i = 0; i < n; i++) {
        if (hub->ring_len == hub->ring_cap) {
            struct aos_ev_frame *old = hub->ring[hub->ring_head];

            hub->floor = old->id;
            aos_ev_frame_unref(old);
            hub->ring_head = (hub->ring_head + 1) % hub->ring_cap;
            hub->ring_len--;
        }
        hub->ring[(hub->ring_head + hub->ring_len) % hub->ring_cap] = frames[i];
        hub->ring_len++;
        hub->high_water = frames[i]->id;
    }
    pthread_mutex_unlock(&hub->ring_mu);
}

/* -------------------------------------------------------------- poll */

struct poll_job {
    int64_t after;
    struct aos_event *rows;
    size_t n;
    int64_t max_id;
    bool start; /* read the starting point instead */
};

static int poll_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct poll_job *j = arg;

    aos_event_list_free(j->rows, j->n);
    j->rows = NULL;
    j->n = 0;
    if (j->start)
        return aos_store_events_max_id(tx, &j->max_id, err, errlen);
    return aos_store_events_since(tx, j->after, POLL_BATCH, &j->rows, &j->n, err, errlen);
}

static void poll_failed(struct aos_events *hub, const char *err)
{
    atomic_fetch_add(&hub->poll_failures, 1);
    /* Before the first good read the store is usually still coming up
     * (bring-up migrates it): that is not worth a warning. */
    if (!hub->poll_failing)
        aos_log(atomic_load(&hub->ready) ? AOS_LVL_WARN : AOS_LVL_DEBUG,
                "events: cannot read new events from the store; streams wait", "error", err, NULL);
    hub->poll_failing = true;
}

/* A batch for the shards, holding its own references (NULL: no shards,
 * or out of memory -- then the live streams are closed so that their
 * clients resume: they would miss these ids). */
static struct aos_ev_batch *batch_make(struct aos_events *hub, struct aos_ev_frame **frames, size_t n)
{
    struct aos_ev_batch *b;

    if (hub->nshards == 0 || n == 0)
        return NULL;
    b = malloc(sizeof *b + n * sizeof b->frames[0]);
    if (b == NULL) {
        aos_err("events: out of memory for a batch: closing streams so that they resume", NULL);
        for (size_t i = 0; i < hub->nshards; i++)
            aos_ev_shard_post_close_all(hub->shards[i]);
        return NULL;
    }
    atomic_init(&b->refs, (unsigned)hub->nshards);
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        aos_ev_frame_ref(frames[i]);
        b->frames[i] = frames[i];
    }
    return b;
}

/* On the hub's thread.  Blocks on the store: this thread does nothing else
 * that must be fast. */
static void hub_poll(struct aos_events *hub)
{
    struct poll_job j = {0};
    char err[256] = "";
    struct aos_ev_frame **frames = NULL;
    size_t nf = 0;
    int rc;

    atomic_fetch_add(&hub->polls, 1);
    j.start = !atomic_load(&hub->ready);
    /* Whatever was committed before this point is read now. */
    atomic_store(&hub->lagging, false);
    pthread_mutex_lock(&hub->ring_mu);
    j.after = hub->high_water;
    pthread_mutex_unlock(&hub->ring_mu);
    if (j.start && hub->test_start_delay_ms > 0)
        usleep((useconds_t)hub->test_start_delay_ms * 1000);
    rc = aos_store_transact(hub->store, false, poll_tx, &j, err, sizeof err);
    if (rc != AOS_DB_OK) {
        poll_failed(hub, err);
        goto out;
    }
    if (hub->poll_failing && atomic_load(&hub->ready))
        aos_info("events: reading the store again", NULL);
    hub->poll_failing = false;
    if (j.start) {
        pthread_mutex_lock(&hub->ring_mu);
        /* A new starting point (also after a lag): older frames are the
         * store's to serve, and the ring restarts empty, without a gap. */
        for (size_t i = 0; i < hub->ring_len; i++)
            aos_ev_frame_unref(ring_at(hub, i));
        hub->ring_head = hub->ring_len = 0;
        hub->high_water = hub->floor = j.max_id;
        pthread_mutex_unlock(&hub->ring_mu);
        atomic_store(&hub->ready, true);
        for (size_t i = 0; i < hub->nshards; i++)
            aos_ev_shard_post_ready(hub->shards[i]);
        char hw[24];
        snprintf(hw, sizeof hw, "%" PRId64, j.max_id);
        aos_debug("events: streaming from the end of the log", "id", hw, NULL);
        goto out;
    }
    if (j.n == 0)
        goto out;
    frames = calloc(j.n, sizeof *frames);
    if (frames == NULL) {
        poll_failed(hub, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < j.n; i++) {
        frames[nf] = aos_ev_frame_new(&j.rows[i]);
        if (frames[nf] == NULL) {
            /* Never skip an id: stop here, the rest is read next time. */
            poll_failed(hub, "out of memory");
            break;
        }
        nf++;
    }
    if (nf == 0)
        goto out;
    /* Ring first, then the batch.  A stream catching up switches to
     * batches when it has read the ring to its end under ring_mu: if that
     * end includes these ids it skips them in the batch; if not, the batch
     * is posted after the switch and reaches it.  The other order would
     * let a loop run the batch while the stream still reads the ring
     * without these ids: a gap. */
    struct aos_ev_batch *b = batch_make(hub, frames, nf);

    ring_append(hub, frames, nf); /* takes the references */
    for (size_t i = 0; b != NULL && i < hub->nshards; i++)
        aos_ev_shard_post_batch(hub->shards[i], b);
    if (j.n == POLL_BATCH && nf == j.n)
        event_active(hub->again_ev, EV_TIMEOUT, 1);
out:
    free(frames);
    aos_event_list_free(j.rows, j.n);
}

/* With no stream open, a commit is not worth a store read (the engine
 * commits hundreds of times a second): the poll timer still reads, and
 * the next stream to open first waits for a fresh starting point
 * (aos_events_reserve).  `lagging` is set before `subscribers` is looked
 * at, and reserve does the opposite, so one of them sees the other. */
static bool hub_idle(struct aos_events *hub)
{
    if (!atomic_load(&hub->ready))
        return false;
    atomic_store(&hub->lagging, true);
    return atomic_load(&hub->subscribers) == 0;
}

/* ------------------------------------------------------------- redis */

struct rconn {
    struct ev_redis *r;
    bool is_sub;
    redisAsyncContext *ac; /* NULL while down */
    bool up;
    int backoff_ms;
    struct event *retry_ev;
    struct event *timeout_ev;
};

struct ev_redis {
    struct aos_events *hub;
    char *host;
    int port;
    char *path;
    char *password;
    int db;
    double connect_timeout;
    char channel[48];
    char node_id[33];
    bool closing;
    struct rconn sub;
    struct rconn pub;
};

static void redis_free(struct ev_redis *r)
{
    if (r == NULL)
        return;
    free(r->host);
    free(r->path);
    if (r->password != NULL)
        explicit_bzero(r->password, strlen(r->password));
    free(r->password);
    free(r);
}

/* redis.url: core/redis_url.h. */
static int redis_parse_url(struct ev_redis *r, const char *url)
{
    struct aos_redis_target t;

    if (aos_redis_url_parse(url, &t) != 0)
        return -1;
    r->host = t.host; /* the strings move into r */
    r->port = t.port;
    r->path = t.path;
    r->password = t.password;
    r->db = t.db;
    return 0;
}

static void rconn_connect(struct rconn *c);

static void rconn_retry_later(struct rconn *c)
{
    if (c->r->closing)
        return;
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    evtimer_add(c->retry_ev, &tv);
    c->backoff_ms = c->backoff_ms * 2 > REDIS_BACKOFF_MAX_MS ? REDIS_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void rconn_lost(struct rconn *c, const char *why)
{
    struct aos_events *hub = c->r->hub;

    c->ac = NULL;
    evtimer_del(c->timeout_ev);
    if (c->is_sub && atomic_exchange(&hub->redis_up, false))
        aos_warn("events: lost the redis wake-up channel; streams rely on polling", "error", why, NULL);
    c->up = false;
    rconn_retry_later(c);
}

static void on_redis_connect(const redisAsyncContext *ac, int status)
{
    struct rconn *c = ac->data;

    if (c == NULL || c->ac != ac)
        return;
    if (status != REDIS_OK) {
        rconn_lost(c, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    c->up = true;
    c->backoff_ms = REDIS_BACKOFF_MIN_MS;
    evtimer_del(c->timeout_ev);
}

static void on_redis_disconnect(const redisAsyncContext *ac, int status)
{
    struct rconn *c = ac->data;

    if (c == NULL || c->ac != ac)
        return;
    rconn_lost(c, status == REDIS_OK ? "disconnected" : (ac->errstr[0] ? ac->errstr : "disconnected"));
}

static void on_redis_setup_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;

    (void)ac;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        aos_warn("events: redis refused a command", "command", (const char *)privdata, "error", reply->str,
                 NULL);
}

/* Every reply on the subscribed connection: the subscription itself,
 * then one per message. */
static void on_redis_message(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    struct rconn *c = privdata;
    struct aos_events *hub;

    if (reply == NULL || c == NULL || c->ac != ac || c->r->closing)
        return;
    hub = c->r->hub;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        if (!atomic_exchange(&hub->redis_up, true))
            aos_info("events: subscribed to the redis wake-up channel", "channel", c->r->channel, NULL);
        /* Wake-ups sent while we were not listening are lost: read now. */
        hub_poll(hub);
        return;
    }
    if (strcmp(reply->element[0]->str, "message") != 0 || reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(reply->element[2]->str, c->r->node_id) == 0)
        return; /* our own: polled already */
    atomic_fetch_add(&hub->redis_wakeups, 1);
    if (!hub_idle(hub))
        hub_poll(hub);
}

static void rconn_connect(struct rconn *c)
{
    struct ev_redis *r = c->r;
    redisAsyncContext *ac =
        r->host != NULL ? redisAsyncConnect(r->host, r->port) : redisAsyncConnectUnix(r->path);
    char why[128];

    if (ac == NULL || ac->err) {
        snprintf(why, sizeof why, "%s", ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        if (c->is_sub && atomic_exchange(&r->hub->redis_up, false))
            aos_warn("events: redis unreachable; streams rely on polling", "error", why, NULL);
        rconn_retry_later(c);
        return;
    }
    ac->data = c;
    if (redisLibeventAttach(ac, aos_loop_base(r->hub->loop)) != REDIS_OK) {
        redisAsyncFree(ac);
        rconn_retry_later(c);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_redis_connect);
    redisAsyncSetDisconnectCallback(ac, on_redis_disconnect);
    c->ac = ac;
    c->up = false;
    /* Commands queue behind the connect and run in order. */
    if (r->password != NULL) {
        const char *argv[] = {"AUTH", r->password};
        size_t lens[] = {4, strlen(r->password)};

        redisAsyncCommandArgv(ac, on_redis_setup_reply, (void *)"AUTH", 2, argv, lens);
    }
    {
        const char *argv[] = {"CLIENT", "SETNAME", c->is_sub ? "aosd-events-sub" : "aosd-events-pub"};
        size_t lens[] = {6, 7, strlen(argv[2])};

        redisAsyncCommandArgv(ac, on_redis_setup_reply, (void *)"CLIENT SETNAME", 3, argv, lens);
    }
    if (c->is_sub) {
        const char *argv[] = {"SUBSCRIBE", r->channel};
        size_t lens[] = {9, strlen(r->channel)};

        redisAsyncCommandArgv(ac, on_redis_message, c, 2, argv, lens);
    }
    double t = r->connect_timeout > 0 ? r->connect_timeout : 2.0;
    struct timeval tv = {(time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6)};
    evtimer_add(c->timeout_ev, &tv);
}

static void on_rconn_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rconn_connect(arg);
}

static void on_rconn_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct rconn *c = arg;
    redisAsyncContext *ac = c->ac;

    (void)fd;
    (void)what;
    if (ac == NULL || c->up)
        return;
    rconn_lost(c, "connect timeout");
    redisAsyncFree(ac);
}

static void redis_publish(struct ev_redis *r)
{
    if (r == NULL || !r->pub.up || r->pub.ac == NULL)
        return;
    const char *argv[] = {"PUBLISH", r->channel, r->node_id};
    size_t lens[] = {7, strlen(r->channel), strlen(r->node_id)};

    redisAsyncCommandArgv(r->pub.ac, NULL, NULL, 3, argv, lens);
}

static int rconn_init(struct ev_redis *r, struct rconn *c, bool is_sub)
{
    struct event_base *base = aos_loop_base(r->hub->loop);

    c->r = r;
    c->is_sub = is_sub;
    c->backoff_ms = REDIS_BACKOFF_MIN_MS;
    c->retry_ev = evtimer_new(base, on_rconn_retry, c);
    c->timeout_ev = evtimer_new(base, on_rconn_timeout, c);
    return c->retry_ev != NULL && c->timeout_ev != NULL ? 0 : -1;
}

/* On the hub's thread (or after it stopped). */
static void rconn_close(struct rconn *c)
{
    redisAsyncContext *ac = c->ac;

    c->ac = NULL;
    c->up = false;
    if (ac != NULL)
        redisAsyncFree(ac);
    if (c->retry_ev != NULL)
        event_free(c->retry_ev);
    if (c->timeout_ev != NULL)
        event_free(c->timeout_ev);
    c->retry_ev = c->timeout_ev = NULL;
}

/* ------------------------------------------------------------- hub */

static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hub_poll(arg);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct aos_events *hub = arg;

    (void)fd;
    (void)what;
    atomic_store(&hub->wake_pending, false);
    /* Tell the other nodes first: their read and ours then overlap. */
    redis_publish(hub->redis);
    if (!hub_idle(hub))
        hub_poll(hub);
}

static struct timeval ms_tv(long long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

static void apply_conf(struct aos_events *hub, const struct aos_conf_events *conf)
{
    atomic_store(&hub->poll_ms, conf->poll > 0.001 ? (long long)(conf->poll * 1000.0 + 0.5) : 1);
    atomic_store(&hub->heartbeat_ms,
                 conf->heartbeat > 0.001 ? (long long)(conf->heartbeat * 1000.0 + 0.5) : 1);
    atomic_store(&hub->retry_ms, (long long)(conf->retry * 1000.0 + 0.5));
    atomic_store(&hub->client_buffer, (long long)conf->client_buffer);
    atomic_store(&hub->max_subscribers, (long long)conf->max_subscribers);
    atomic_store(&hub->token_ttl, (long long)conf->stream_token_ttl);
}

struct aos_events *aos_events_new(struct aos_store *store, struct aos_pool *pool,
                                  const struct aos_conf_events *conf, const struct aos_conf_redis *redis,
                                  char *err, size_t errlen)
{
    struct aos_events *hub = calloc(1, sizeof *hub);
    bool mu = false;

    if (hub == NULL)
        goto oom;
    hub->store = store;
    hub->pool = pool;
    const char *testing = getenv("AOS_TESTING"), *delay = getenv("AOS_TEST_HUB_START_DELAY_MS");
    if (testing != NULL && strcmp(testing, "1") == 0 && delay != NULL)
        hub->test_start_delay_ms = (int)strtol(delay, NULL, 10);
    apply_conf(hub, conf);
    if (pthread_mutex_init(&hub->ring_mu, NULL) != 0)
        goto oom;
    mu = true;
    hub->ring_cap = conf->ring > 0 ? (size_t)conf->ring : 1;
    hub->ring = calloc(hub->ring_cap, sizeof *hub->ring);
    hub->loop = aos_loop_new("events");
    if (hub->ring == NULL || hub->loop == NULL)
        goto oom;
    struct event_base *base = aos_loop_base(hub->loop);
    hub->poll_timer = event_new(base, -1, EV_PERSIST, on_poll_timer, hub);
    hub->wake_ev = event_new(base, -1, 0, on_wake, hub);
    hub->again_ev = event_new(base, -1, 0, on_poll_timer, hub);
    if (hub->poll_timer == NULL || hub->wake_ev == NULL || hub->again_ev == NULL)
        goto oom;
    if (redis != NULL && redis->enabled && redis->url != NULL && redis->url[0] != '\0') {
        struct ev_redis *r = calloc(1, sizeof *r);
        unsigned char rnd[16];

        if (r == NULL)
            goto oom;
        hub->redis = r;
        r->hub = hub;
        r->connect_timeout = redis->connect_timeout;
        if (redis_parse_url(r, redis->url) != 0) {
            snprintf(
                err, errlen,
                "events: cannot parse redis.url (want redis://[:password@]host[:port][/db] or unix:///path)");
            goto fail;
        }
        snprintf(r->channel, sizeof r->channel, "aos:events:%d", r->db);
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            goto oom;
        for (size_t i = 0; i < sizeof rnd; i++)
            snprintf(r->node_id + 2 * i, 3, "%02x", rnd[i]);
        if (rconn_init(r, &r->sub, true) != 0 || rconn_init(r, &r->pub, false) != 0)
            goto oom;
    }
    return hub;
oom:
    snprintf(err, errlen, "events: out of memory");
fail:
    if (hub != NULL && !mu) {
        free(hub);
        return NULL;
    }
    aos_events_free(hub);
    return NULL;
}

int aos_events_attach_loop(struct aos_events *hub, struct aos_loop *loop)
{
    struct aos_ev_shard **s;
    struct aos_ev_shard *sh;

    if (atomic_load(&hub->started))
        return -1;
    s = realloc(hub->shards, (hub->nshards + 1) * sizeof *s);
    if (s == NULL)
        return -1;
    hub->shards = s;
    sh = aos_ev_shard_new(hub, loop);
    if (sh == NULL)
        return -1;
    hub->shards[hub->nshards++] = sh;
    return 0;
}

static void hub_begin(void *arg)
{
    struct aos_events *hub = arg;

    if (hub->redis != NULL) {
        rconn_connect(&hub->redis->sub);
        rconn_connect(&hub->redis->pub);
    }
    hub_poll(hub);
}

int aos_events_start(struct aos_events *hub)
{
    struct timeval tv = ms_tv(atomic_load(&hub->poll_ms));

    if (evtimer_add(hub->poll_timer, &tv) != 0 || aos_loop_post(hub->loop, hub_begin, hub) != 0 ||
        aos_loop_start_thread(hub->loop) != 0)
        return -1;
    atomic_store(&hub->started, true);
    return 0;
}

static void hub_rearm_timer(void *arg)
{
    struct aos_events *hub = arg;
    struct timeval tv = ms_tv(atomic_load(&hub->poll_ms));

    evtimer_add(hub->poll_timer, &tv);
}

void aos_events_set_conf(struct aos_events *hub, const struct aos_conf_events *conf)
{
    long long poll;

    if (hub == NULL)
        return;
    poll = atomic_load(&hub->poll_ms);
    apply_conf(hub, conf);
    if (atomic_load(&hub->started) && poll != atomic_load(&hub->poll_ms))
        aos_loop_post(hub->loop, hub_rearm_timer, hub);
    for (size_t i = 0; i < hub->nshards; i++)
        aos_ev_shard_post_settings(hub->shards[i]);
}

void aos_events_committed(struct aos_events *hub)
{
    if (hub == NULL || !atomic_load(&hub->started))
        return;
    /* Many commits between two wake-ups make one read. */
    if (!atomic_exchange(&hub->wake_pending, true))
        event_active(hub->wake_ev, EV_TIMEOUT, 1);
}

void aos_events_drain(struct aos_events *hub)
{
    if (hub == NULL || atomic_exchange(&hub->draining, true))
        return;
    for (size_t i = 0; i < hub->nshards; i++)
        aos_ev_shard_post_close_all(hub->shards[i]);
}

static void hub_close_redis(void *arg)
{
    struct aos_events *hub = arg;

    if (hub->redis == NULL)
        return;
    hub->redis->closing = true;
    rconn_close(&hub->redis->sub);
    rconn_close(&hub->redis->pub);
}

void aos_events_stop(struct aos_events *hub)
{
    if (hub == NULL || !atomic_exchange(&hub->started, false))
        return;
    /* Redis contexts belong to the hub's thread: closed there, last. */
    if (aos_loop_post(hub->loop, hub_close_redis, hub) != 0)
        aos_warn("events: cannot close redis on its thread", NULL);
    aos_loop_stop(hub->loop);
    aos_loop_join(hub->loop);
}

void aos_events_free(struct aos_events *hub)
{
    if (hub == NULL)
        return;
    aos_events_stop(hub);
    for (size_t i = 0; i < hub->nshards; i++)
        aos_ev_shard_free(hub->shards[i]);
    free(hub->shards);
    if (hub->redis != NULL) {
        hub_close_redis(hub); /* no-op if the thread did it */
        redis_free(hub->redis);
    }
    if (hub->poll_timer != NULL)
        event_free(hub->poll_timer);
    if (hub->wake_ev != NULL)
        event_free(hub->wake_ev);
    if (hub->again_ev != NULL)
        event_free(hub->again_ev);
    for (size_t i = 0; hub->ring != NULL && i < hub->ring_len; i++)
        aos_ev_frame_unref(ring_at(hub, i));
    free(hub->ring);
    aos_loop_free(hub->loop);
    pthread_mutex_destroy(&hub->ring_mu);
    free(hub);
}

int64_t aos_events_high_water(struct aos_events *hub)
{
    pthread_mutex_lock(&hub->ring_mu);
    int64_t hw = hub->high_water;
    pthread_mutex_unlock(&hub->ring_mu);
    return hw;
}

bool aos_events_ready(struct aos_events *hub) { return hub != NULL && atomic_load(&hub->ready); }

int aos_events_reserve(struct aos_events *hub)
{
    if (atomic_load(&hub->draining))
        return -1;
    long long before = atomic_fetch_add(&hub->subscribers, 1);
    if (before >= atomic_load(&hub->max_subscribers)) {
        atomic_fetch_sub(&hub->subscribers, 1);
        atomic_fetch_add(&hub->refused, 1);
        return -1;
    }
    /* The first stream after commits the hub did not read: the high-water
     * mark may be old, so the stream waits for the hub to read a new
     * starting point (as at start-up) instead of beginning there. */
    if (before == 0 && atomic_exchange(&hub->lagging, false)) {
        atomic_store(&hub->ready, false);
        aos_events_committed(hub);
    }
    return 0;
}

void aos_events_release(struct aos_events *hub) { atomic_fetch_sub(&hub->subscribers, 1); }

long long aos_events_retry_ms(struct aos_events *hub) { return atomic_load(&hub->retry_ms); }

int aos_events_token_ttl(struct aos_events *hub) { return (int)atomic_load(&hub->token_ttl); }

void aos_events_get_stats(struct aos_events *hub, struct aos_events_stats *out)
{
    memset(out, 0, sizeof *out);
    if (hub == NULL)
        return;
    long long subs = atomic_load(&hub->subscribers);
    out->subscribers = subs > 0 ? (uint64_t)subs : 0;
    out->delivered = atomic_load(&hub->delivered);
    out->slow_disconnects = atomic_load(&hub->slow_disconnects);
    out->refused = atomic_load(&hub->refused);
    out->polls = atomic_load(&hub->polls);
    out->poll_failures = atomic_load(&hub->poll_failures);
    out->redis_wakeups = atomic_load(&hub->redis_wakeups);
    out->high_water = aos_events_high_water(hub);
    out->redis_up = atomic_load(&hub->redis_up);
}
