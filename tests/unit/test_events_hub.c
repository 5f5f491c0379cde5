/*
 * The event hub and its SSE writer (core/events/hub.c, sse.c) and stream
 * tokens (core/events/token.c), in-process: a real store (SQLite always,
 * PostgreSQL when AOS_TEST_PGSQL is set), the hub's own thread, one loop
 * standing in for an HTTP loop, and socketpairs standing in for the
 * sockets the HTTP server hands over.  Waits are upper bounds only.
 */
#include "config.h"

/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "events/events.h"
#include "events/hub_internal.h"
#include "events/token.h"
#include "loop.h"
#include "store/events.h"
#include "store_fixture.h"
#include "threadpool.h"

#define TENANT_A FX_TENANT_A
#define TENANT_B FX_TENANT_B
#define RUN_1 "11111111-1111-4111-8111-111111111111"
#define WAIT_MS 10000

static char err[512];

struct world {
    struct fx *f;
    struct aos_loop *loop; /* stands in for an HTTP loop */
    struct aos_pool *pool;
    struct aos_events *hub;
};

static struct aos_conf_events conf_default(void)
{
    struct aos_conf_events c = {
        .poll = 0.05,
        .ring = 16,
        .heartbeat = 3600,
        .retry = 3,
        .max_subscribers = 100,
        .client_buffer = 262144,
        .stream_token_ttl = 300,
    };
    return c;
}

static void world_open(struct world *w, struct fx *f, const struct aos_conf_events *conf)
{
    memset(w, 0, sizeof *w);
    w->f = f;
    w->loop = aos_loop_new("test-http");
    w->pool = aos_pool_new(2, 64);
    assert_non_null(w->loop);
    assert_non_null(w->pool);
    w->hub = aos_events_new(f->store, w->pool, conf, NULL, err, sizeof err);
    assert_non_null(w->hub);
    assert_int_equal(aos_events_attach_loop(w->hub, w->loop), 0);
    assert_int_equal(aos_loop_start_thread(w->loop), 0);
    assert_int_equal(aos_events_start(w->hub), 0);
}

static void world_close(struct world *w)
{
    aos_events_stop(w->hub);
    aos_loop_stop(w->loop);
    aos_loop_join(w->loop);
    aos_pool_free(w->pool);
    aos_loop_run_pending(w->loop);
    aos_events_free(w->hub);
    aos_loop_free(w->loop);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void wait_ready(struct world *w)
{
    uint64_t end = mono_ms() + WAIT_MS;

    while (!aos_events_ready(w->hub) && mono_ms() < end)
        usleep(1000);
    assert_true(aos_events_ready(w->hub));
}

static void synced(void *arg) { atomic_store((atomic_bool *)arg, true); }

/* Returns once everything posted to the loop before has run (it is FIFO):
 * a stream opened before is then registered. */
static void loop_sync(struct world *w)
{
    atomic_bool done = false;
    uint64_t end = mono_ms() + WAIT_MS;

    assert_int_equal(aos_loop_post(w->loop, synced, &done), 0);
    while (!atomic_load(&done) && mono_ms() < end)
        usleep(1000);
    assert_true(atomic_load(&done));
}

/* Waits until the hub has read up to id. */
static void wait_hw(struct world *w, int64_t id)
{
    uint64_t end = mono_ms() + WAIT_MS;

    while (aos_events_high_water(w->hub) < id && mono_ms() < end)
        usleep(1000);
    assert_true(aos_events_high_water(w->hub) >= id);
}

/* Appends n events of `type` for tenant in one transaction, then wakes the
 * hub; ids[] (may be NULL) receives their ids. */
static void append(struct world *w, const char *tenant, const char *type, const char *run,
                   const char *payload, int n, int64_t *ids)
{
    struct aos_store_tx *tx = NULL;

    assert_int_equal(aos_store_begin(w->f->store, true, &tx, err, sizeof err), AOS_DB_OK);
    for (int i = 0; i < n; i++) {
        int64_t id = 0;

        if (aos_event_append(tx, NULL, tenant, type, run, payload, &id, err, sizeof err) != AOS_DB_OK) {
            aos_store_rollback(tx);
            fail_msg("append: %s", err);
        }
        if (ids != NULL)
            ids[i] = id;
    }
    assert_int_equal(aos_store_commit(tx, err, sizeof err), AOS_DB_OK);
    aos_events_committed(w->hub);
}

/* ---------------------------------------------------------- a client */

struct client {
    int fd; /* our end */
    char *buf;
    size_t len;
    size_t cap;
    bool eof;
    int64_t ids[4096];
    size_t nids;
    size_t comments;
    size_t retries;
};

struct start_arg {
    struct aos_events *hub;
    struct aos_loop *loop;
    int fd;
    struct aos_events_stream_spec spec;
    char tenant[AOS_ID_LEN];
    char type[AOS_EVENT_TYPE_MAX + 2];
};

static void start_on_loop(void *arg)
{
    struct start_arg *a = arg;

    a->spec.tenant_id = a->tenant;
    if (a->spec.type != NULL)
        a->spec.type = a->type;
    aos_events_stream_start(a->hub, a->loop, a->fd, &a->spec);
    free(a);
}

/* Opens a stream over a socketpair; the server side's send buffer is made
 * small when sndbuf > 0 (so that a non-reading client fills it soon). */
static void client_open(struct world *w, struct client *c, const char *tenant, const char *type, bool resume,
                        int64_t last_id, int rcvbuf)
{
    int sv[2];
    struct start_arg *a = calloc(1, sizeof *a);

    memset(c, 0, sizeof *c);
    assert_non_null(a);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    if (rcvbuf > 0) {
        assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf), 0);
        assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &rcvbuf, sizeof rcvbuf), 0);
    }
    c->fd = sv[1];
    assert_int_equal(aos_events_reserve(w->hub), 0);
    a->hub = w->hub;
    a->loop = w->loop;
    a->fd = sv[0];
    snprintf(a->tenant, sizeof a->tenant, "%s", tenant);
    if (type != NULL) {
        snprintf(a->type, sizeof a->type, "%s", type);
        a->spec.type = a->type;
    }
    a->spec.resume = resume;
    a->spec.last_id = last_id;
    assert_int_equal(aos_loop_post(w->loop, start_on_loop, a), 0);
}

static void client_parse(struct client *c)
{
    char *end;

    while ((end = memmem(c->buf, c->len, "\n\n", 2)) != NULL) {
        size_t flen = (size_t)(end - c->buf) + 2;

        if (c->buf[0] == ':') {
            c->comments++;
        } else if (strncmp(c->buf, "retry: ", 7) == 0) {
            c->retries++;
        } else {
            long long id = 0;

            assert_int_equal(sscanf(c->buf, "id: %lld\ndata: {", &id), 1);
            assert_true(c->nids < sizeof c->ids / sizeof c->ids[0]);
            c->ids[c->nids++] = id;
        }
        memmove(c->buf, c->buf + flen, c->len - flen);
        c->len -= flen;
        c->buf[c->len] = '\0';
    }
}

/* Reads until want events and want_comments comments arrived (or EOF, or
 * the upper bound). */
static void client_read2(struct client *c, size_t want, size_t want_comments)
{
    uint64_t end = mono_ms() + WAIT_MS;

    while ((c->nids < want || c->comments < want_comments) && !c->eof && mono_ms() < end) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};

        if (poll(&p, 1, 100) <= 0)
            continue;
        if (c->len + 65536 > c->cap) {
            c->cap = c->len + 65536;
            c->buf = realloc(c->buf, c->cap + 1);
            assert_non_null(c->buf);
        }
        ssize_t r = read(c->fd, c->buf + c->len, 65536);
        if (r <= 0) {
            c->eof = true;
            break;
        }
        c->len += (size_t)r;
        c->buf[c->len] = '\0'; /* sscanf reads a string */
        client_parse(c);
    }
}

static void client_read(struct client *c, size_t want) { client_read2(c, want, 0); }

static void client_close(struct client *c)
{
    close(c->fd);
    free(c->buf);
}

/* ---------------------------------------------------------- tests */

static void test_live_and_resume(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_conf_events conf = conf_default();
    struct world w;
    struct client live, all, filtered, other;
    int64_t ids[64], more[3], bids[2];

    int64_t old;

    world_open(&w, f, &conf);
    append(&w, TENANT_A, "old.one", NULL, NULL, 1, &old);
    wait_ready(&w);
    wait_hw(&w, old);
    client_open(&w, &live, TENANT_A, NULL, false, 0, 0);
    client_open(&w, &other, TENANT_B, NULL, false, 0, 0);
    /* "From now" must mean after old.one and before what follows. */
    loop_sync(&w);
    /* 40 events, more than the ring (16) holds. */
    append(&w, TENANT_A, "run.step", RUN_1, "{\"k\":1}", 20, ids);
    append(&w, TENANT_B, "run.step", NULL, NULL, 2, bids);
    append(&w, TENANT_A, "other.kind", NULL, NULL, 20, ids + 20);
    client_read(&live, 40);
    assert_int_equal(live.nids, 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(live.ids[i], ids[i]);
    client_read(&other, 2);
    assert_int_equal(other.nids, 2);
    assert_int_equal(other.ids[0], bids[0]);
    assert_int_equal(other.ids[1], bids[1]);

    /* Resume from before all of them: the store pages, then the ring. */
    client_open(&w, &all, TENANT_A, NULL, true, ids[0] - 1, 0);
    client_open(&w, &filtered, TENANT_A, "run.*", true, ids[3], 0);
    client_read(&all, 40);
    client_read(&filtered, 16);
    assert_int_equal(all.nids, 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(all.ids[i], ids[i]);
    assert_int_equal(filtered.nids, 16);
    for (int i = 0; i < 16; i++)
        assert_int_equal(filtered.ids[i], ids[4 + i]);

    /* ... and then live, with no duplicate. */
    append(&w, TENANT_A, "run.done", RUN_1, NULL, 3, more);
    client_read(&all, 43);
    client_read(&filtered, 19);
    client_read(&live, 43);
    assert_int_equal(all.nids, 43);
    assert_int_equal(filtered.nids, 19);
    assert_int_equal(live.nids, 43);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(all.ids[40 + i], more[i]);
        assert_int_equal(filtered.ids[16 + i], more[i]);
        assert_int_equal(live.ids[40 + i], more[i]);
    }
    assert_int_equal(other.nids, 2); /* nothing of acme's reached globex */

    /* A client leaving frees its slot. */
    client_close(&live);
    {
        uint64_t end = mono_ms() + WAIT_MS;
        struct aos_events_stats st;

        do {
            aos_events_get_stats(w.hub, &st);
        } while (st.subscribers != 3 && mono_ms() < end);
        assert_int_equal(st.subscribers, 3);
        assert_true(st.delivered >= 40 + 2 + 43 + 19);
        assert_true(st.high_water >= more[2]);
    }
    client_close(&all);
    client_close(&filtered);
    client_close(&other);
    world_close(&w);
}

static void test_slow_client_cut(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_conf_events conf = conf_default();
    struct world w;
    struct client slow;
    struct aos_events_stats st;
    char *payload = malloc(3100);
    uint64_t end;

    assert_non_null(payload);
    memcpy(payload, "{\"blob\":\"", 9);
    memset(payload + 9, 'x', 3000);
    memcpy(payload + 3009, "\"}", 3);
    conf.client_buffer = 8192;
    world_open(&w, f, &conf);
    wait_ready(&w);
    client_open(&w, &slow, TENANT_A, NULL, false, 0, 4096);
    loop_sync(&w);
    aos_events_get_stats(w.hub, &st);
    /* Never read: the socket fills, then our queue, then the cut. */
    for (int i = 0; i < 40 && st.slow_disconnects == 0; i++) {
        append(&w, TENANT_A, "big", NULL, payload, 4, NULL);
        aos_events_get_stats(w.hub, &st);
    }
    end = mono_ms() + WAIT_MS;
    do {
        aos_events_get_stats(w.hub, &st);
    } while ((st.slow_disconnects == 0 || st.subscribers != 0) && mono_ms() < end);
    assert_int_equal(st.slow_disconnects, 1);
    assert_int_equal(st.subscribers, 0);
    /* The client then reads what was sent, in order, and meets the end. */
    client_read(&slow, SIZE_MAX);
    assert_true(slow.eof);
    for (size_t i = 1; i < slow.nids; i++)
        assert_true(slow.ids[i] > slow.ids[i - 1]);
    client_close(&slow);
    free(payload);
    world_close(&w);
}

static void test_heartbeat_retry_and_limit(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_conf_events conf = conf_default();
    struct world w;
    struct client c;
    uint64_t end;

    conf.heartbeat = 0.05;
    conf.max_subscribers = 1;
    world_open(&w, f, &conf);
    wait_ready(&w);
    client_open(&w, &c, TENANT_A, NULL, false, 0, 0);
    assert_int_equal(aos_events_retry_ms(w.hub), 3000);
    /* One slot: a second reservation is refused and counted. */
    end = mono_ms() + WAIT_MS;
    while (aos_events_reserve(w.hub) == 0) {
        aos_events_release(w.hub); /* raced the stream's own start */
        assert_true(mono_ms() < end);
    }
    {
        struct aos_events_stats st;

        aos_events_get_stats(w.hub, &st);
        assert_true(st.refused >= 1);
    }
    /* Idle: heartbeat comments. */
    client_read2(&c, 0, 2);
    assert_true(c.comments >= 2);
    assert_int_equal(c.nids, 0);
    /* Draining closes streams and refuses new ones. */
    aos_events_drain(w.hub);
    assert_int_equal(aos_events_reserve(w.hub), -1);
    client_read(&c, SIZE_MAX);
    assert_true(c.eof);
    client_close(&c);
    world_close(&w);
}

/* Streams opened before the hub has read its starting point wait. */
static void test_wait_for_ready(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_conf_events conf = conf_default();
    struct world w;
    struct client fresh, resumed;
    int64_t before[2], after[1];

    /* The hub is created but not started: not ready. */
    memset(&w, 0, sizeof w);
    w.f = f;
    w.loop = aos_loop_new("test-http");
    w.pool = aos_pool_new(2, 64);
    w.hub = aos_events_new(f->store, w.pool, &conf, NULL, err, sizeof err);
    assert_non_null(w.hub);
    assert_int_equal(aos_events_attach_loop(w.hub, w.loop), 0);
    assert_int_equal(aos_loop_start_thread(w.loop), 0);
    append(&w, TENANT_A, "early", NULL, NULL, 2, before);
    assert_false(aos_events_ready(w.hub));
    client_open(&w, &fresh, TENANT_A, NULL, false, 0, 0);
    client_open(&w, &resumed, TENANT_A, NULL, true, 0, 0);
    assert_int_equal(aos_events_start(w.hub), 0);
    wait_ready(&w);
    loop_sync(&w); /* the waiting streams have begun */
    append(&w, TENANT_A, "late", NULL, NULL, 1, after);
    client_read(&fresh, 1);
    client_read(&resumed, 3);
    assert_int_equal(fresh.nids, 1);
    assert_int_equal(fresh.ids[0], after[0]);
    assert_int_equal(resumed.nids, 3);
    assert_int_equal(resumed.ids[0], before[0]);
    assert_int_equal(resumed.ids[1], before[1]);
    assert_int_equal(resumed.ids[2], after[0]);
    client_close(&fresh);
    client_close(&resumed);
    world_close(&w);
}

/* The ring as the streams read it (hub_internal.h). */
/* With no stream open, commits are not read one by one (only the poll
 * timer reads, here never), and the first stream opened after them starts
 * at a fresh starting point: it gets what follows, not what it missed. */
static void test_idle_commits_not_read(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_conf_events conf = conf_default();
    struct aos_events_stats st;
    struct world w;
    struct client fresh;
    int64_t early[3], late[1];
    atomic_bool done = false;
    uint64_t end = mono_ms() + WAIT_MS;

    conf.poll = 3600; /* the timer stays out of the way */
    world_open(&w, f, &conf);
    wait_ready(&w);
    aos_events_get_stats(w.hub, &st);
    uint64_t polls = st.polls;
    for (int i = 0; i < 3; i++)
        append(&w, TENANT_A, "early", NULL, NULL, 1, &early[i]);
    /* The hub's loop has handled the wake-ups once this has run. */
    assert_int_equal(aos_loop_post(w.hub->loop, synced, &done), 0);
    while (!atomic_load(&done) && mono_ms() < end)
        usleep(1000);
    assert_true(atomic_load(&done));
    aos_events_get_stats(w.hub, &st);
    assert_int_equal(st.polls, polls);
    assert_true(aos_events_high_water(w.hub) < early[0]);

    client_open(&w, &fresh, TENANT_A, NULL, false, 0, 0);
    wait_ready(&w);
    loop_sync(&w); /* the stream has begun */
    append(&w, TENANT_A, "late", NULL, NULL, 1, late);
    client_read(&fresh, 1);
    assert_int_equal(fresh.nids, 1);
    assert_int_equal(fresh.ids[0], late[0]);
    client_close(&fresh);
    world_close(&w);
}

static void test_ring_read(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_conf_events conf = conf_default();
    struct world w;
    struct aos_ev_frame *out[64];
    struct aos_event_filter flt = {.type = "b.*"};
    int64_t ids[40], pos = -1;
    bool at_end = true;
    long n;

    world_open(&w, f, &conf);
    wait_ready(&w);
    /* 40 events through a ring of 16: ids[24..39] stay. */
    append(&w, TENANT_A, "a.x", NULL, NULL, 20, ids);
    append(&w, TENANT_B, "b.x", NULL, NULL, 10, ids + 20);
    append(&w, TENANT_A, "b.y", NULL, NULL, 10, ids + 30);
    wait_hw(&w, ids[39]);
    assert_int_equal(aos_ev_ring_floor(w.hub), ids[23]);
    assert_int_equal(aos_ev_ring_read(w.hub, ids[22], TENANT_A, NULL, 1 << 20, out, 64, &pos, &at_end), -1);

    n = aos_ev_ring_read(w.hub, ids[23], TENANT_A, NULL, 1 << 20, out, 64, &pos, &at_end);
    assert_int_equal(n, 10);
    assert_true(at_end);
    assert_int_equal(pos, ids[39]);
    for (long i = 0; i < n; i++) {
        assert_int_equal(out[i]->id, ids[30 + i]);
        aos_ev_frame_unref(out[i]);
    }
    n = aos_ev_ring_read(w.hub, ids[23], TENANT_B, NULL, 1 << 20, out, 64, &pos, &at_end);
    assert_int_equal(n, 6);
    assert_int_equal(out[0]->id, ids[24]);
    for (long i = 0; i < n; i++)
        aos_ev_frame_unref(out[i]);
    /* A frame budget: stops after 2 of A's, having examined up to there. */
    n = aos_ev_ring_read(w.hub, ids[23], TENANT_A, &flt, 1 << 20, out, 2, &pos, &at_end);
    assert_int_equal(n, 2);
    assert_false(at_end);
    assert_int_equal(pos, ids[31]);
    aos_ev_frame_unref(out[0]);
    aos_ev_frame_unref(out[1]);
    /* A byte budget of 0 reads nothing and never goes back before after. */
    n = aos_ev_ring_read(w.hub, ids[25], TENANT_A, NULL, 0, out, 64, &pos, &at_end);
    assert_int_equal(n, 0);
    assert_false(at_end);
    assert_int_equal(pos, ids[25]);
    /* At the end: nothing, at_end, pos the high-water mark. */
    n = aos_ev_ring_read(w.hub, ids[39], TENANT_A, NULL, 1 << 20, out, 64, &pos, &at_end);
    assert_int_equal(n, 0);
    assert_true(at_end);
    assert_int_equal(pos, ids[39]);
    world_close(&w);
}

static void test_frame(void **state)
{
    struct aos_event e = {.id = 42, .type = "run.started", .created_at = 7};
    struct aos_ev_frame *fr;
    static const char want[] = "id: 42\ndata: {\"id\":42,\"type\":\"run.started\",\"run_id\":\"" RUN_1
                               "\",\"payload\":{\"a\":\"x/y\\ny\"},"
                               "\"created_at\":7}\n\n";

    (void)state;
    snprintf(e.tenant_id, sizeof e.tenant_id, "%s", TENANT_A);
    snprintf(e.run_id, sizeof e.run_id, "%s", RUN_1);
    e.payload = (char *)"{\"a\": \"x/y\\ny\"}";
    fr = aos_ev_frame_new(&e);
    assert_non_null(fr);
    assert_int_equal(fr->len, strlen(want));
    assert_memory_equal(fr->data, want, fr->len);
    assert_int_equal(fr->id, 42);
    assert_string_equal(fr->tenant_id, TENANT_A);
    aos_ev_frame_ref(fr);
    aos_ev_frame_unref(fr);
    aos_ev_frame_unref(fr);
    /* A payload the store should never hold becomes {} (logged). */
    e.payload = (char *)"[1]";
    fr = aos_ev_frame_new(&e);
    assert_non_null(fr);
    assert_non_null(strstr(fr->data, "\"payload\":{}"));
    aos_ev_frame_unref(fr);
}

static void test_tokens(void **state)
{
    struct aos_jwt_key key = {0}, other = {0};
    struct aos_jwt_claims c;
    unsigned char secret[48], secret2[48];
    char *st, *at;
    int64_t now;

    (void)state;
    memset(secret, 'k', sizeof secret);
    memset(secret2, 'q', sizeof secret2);
    key.secret = secret;
    key.len = sizeof secret;
    other.secret = secret2;
    other.len = sizeof secret2;
    st = aos_stream_token_issue(&key, "user-1", TENANT_A, "approver", 60, NULL, err, sizeof err);
    at = aos_jwt_issue(&key, "user-1", TENANT_A, "approver", 60, NULL, err, sizeof err);
    assert_non_null(st);
    assert_non_null(at);
    /* Read after issuing: the tokens' iat may already be the next second. */
    now = (int64_t)time(NULL);
    assert_int_equal(aos_stream_token_verify(&key, st, strlen(st), now, 0, &c), AOS_JWT_OK);
    assert_string_equal(c.sub, "user-1");
    assert_string_equal(c.tid, TENANT_A);
    assert_string_equal(c.role, "approver");
    assert_int_equal(c.exp - c.iat, 60);
    /* Neither kind passes for the other. */
    assert_int_equal(aos_jwt_verify(&key, st, strlen(st), now, 0, &c), AOS_JWT_BAD_SIGNATURE);
    assert_int_equal(aos_stream_token_verify(&key, at, strlen(at), now, 0, &c), AOS_JWT_BAD_SIGNATURE);
    /* Another secret, expiry, leeway. */
    assert_int_equal(aos_stream_token_verify(&other, st, strlen(st), now, 0, &c), AOS_JWT_BAD_SIGNATURE);
    assert_int_equal(aos_stream_token_verify(&key, st, strlen(st), now + 61, 0, &c), AOS_JWT_EXPIRED);
    assert_int_equal(aos_stream_token_verify(&key, st, strlen(st), now + 61, 5, &c), AOS_JWT_OK);
    assert_null(aos_stream_token_issue(&key, "user-1", "not-a-tenant", "user", 60, NULL, err, sizeof err));
    assert_null(aos_stream_token_issue(NULL, "user-1", TENANT_A, "user", 60, NULL, err, sizeof err));
    free(st);
    free(at);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TESTS(test_live_and_resume, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_slow_client_cut, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_heartbeat_retry_and_limit, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_wait_for_ready, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_ring_read, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_idle_commits_not_read, fx_setup_two_tenants, fx_teardown),
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_tokens),
    };

    if (aos_loop_global_init() != 0)
        return 1;
    return FX_RUN("events_hub", tests);
}
