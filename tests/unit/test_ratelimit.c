/* Rate limiter: exact token-bucket numbers with an injected clock, keys
 * all-or-nothing, tenant overrides, eviction bound, header strings, no
 * over-admission across threads; with AOS_TEST_REDIS=redis://host:port/db
 * the same through Redis, two "nodes" sharing one budget, coalescing
 * (checks waiting behind a call go as one, answered in arrival order), the
 * NOSCRIPT path and every redis_fail mode against a closed port. */
#include "config.h"

/* clang-format off: cmocka.h needs these first, in this order */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "core/gateway/ratelimit.h"
#include "core/loop.h"

static char *exempt_default[] = {"/api/v1/orchestration/"};

static struct aos_conf_limits limits_default(void)
{
    struct aos_conf_limits l = {
        .enabled = true,
        .read = {300, 60},
        .write = {100, 30},
        .exempt = exempt_default,
        .nexempt = 1,
        .policy = (char *)"local",
        .redis_fail = (char *)"local",
    };
    return l;
}

/* ---------------------------------------------------------------- helpers */

struct fake_clock {
    int64_t now_us;
};

static int64_t fake_now(void *arg) { return ((struct fake_clock *)arg)->now_us; }

struct outcome {
    int calls;
    int allowed;
    struct aos_rl_result last;
};

static void on_done(void *arg, const struct aos_rl_result *r)
{
    struct outcome *o = arg;
    o->calls++;
    if (r->allowed)
        o->allowed++;
    o->last = *r;
}

static struct aos_rl_result check1(struct aos_ratelimit *rl, enum aos_rl_class cls, const char *tenant,
                                   const char *const *keys, size_t nkeys)
{
    struct outcome o = {0};
    aos_ratelimit_check(rl, NULL, cls, tenant, keys, nkeys, on_done, &o);
    assert_int_equal(o.calls, 1); /* local policy answers inline */
    return o.last;
}

static int take_many(struct aos_ratelimit *rl, enum aos_rl_class cls, const char *tenant,
                     const char *const *keys, size_t nkeys, int n)
{
    int allowed = 0;
    for (int i = 0; i < n; i++)
        if (check1(rl, cls, tenant, keys, nkeys).allowed)
            allowed++;
    return allowed;
}

static struct aos_ratelimit *local_new(struct fake_clock *clk)
{
    struct aos_conf_limits l = limits_default();
    struct aos_ratelimit *rl = aos_ratelimit_new(&l, NULL);
    assert_non_null(rl);
    aos_ratelimit_set_clock(rl, fake_now, clk);
    return rl;
}

/* ---------------------------------------------------------------- local */

static void test_burst_read(void **state)
{
    (void)state;
    struct fake_clock clk = {1000000};
    struct aos_ratelimit *rl = local_new(&clk);
    const char *keys[] = {"p:t:alice", "ip:10.0.0.1"};
    for (int i = 0; i < 60; i++) {
        struct aos_rl_result r = check1(rl, AOS_RL_READ, NULL, keys, 2);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 59 - i);
    }
    struct aos_rl_result r = check1(rl, AOS_RL_READ, NULL, keys, 2);
    assert_false(r.allowed);
    assert_false(r.degraded);
    assert_false(r.unavailable);
    assert_int_equal(r.limit, 300);
    assert_int_equal(r.burst, 60);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.retry_after_s, 1);
    assert_int_equal(r.reset_s, 12); /* 60 tokens at 5/s */
    /* Writes have their own buckets. */
    assert_true(check1(rl, AOS_RL_WRITE, NULL, keys, 2).allowed);
    aos_ratelimit_free(rl);
}

static void test_burst_write(void **state)
{
    (void)state;
    struct fake_clock clk = {1000000};
    struct aos_ratelimit *rl = local_new(&clk);
    const char *keys[] = {"p:t:bob", "ip:10.0.0.2"};
    assert_int_equal(take_many(rl, AOS_RL_WRITE, NULL, keys, 2, 30), 30);
    struct aos_rl_result r = check1(rl, AOS_RL_WRITE, NULL, keys, 2);
    assert_false(r.allowed);
    assert_string_equal(r.policy_name, "write");
    assert_int_equal(r.retry_after_s, 1); /* 0.6 s rounded up, never earlier */
    assert_int_equal(r.reset_s, 18);      /* 30 tokens at 100/min */
    assert_int_equal(take_many(rl, AOS_RL_WRITE, NULL, keys, 2, 10), 0);
    aos_ratelimit_free(rl);
}

static void test_refill(void **state)
{
    (void)state;
    struct fake_clock clk = {5000000};
    struct aos_ratelimit *rl = local_new(&clk);
    const char *keys[] = {"p:t:carol"};
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, keys, 1, 100), 60);
    clk.now_us += 1000000;
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, keys, 1, 100), 5);
    clk.now_us += 199999; /* not quite one token */
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, keys, 1, 1), 0);
    clk.now_us += 1;
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, keys, 1, 2), 1);
    clk.now_us += 3600LL * 1000000; /* an hour: full, never more than burst */
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, keys, 1, 100), 60);
    /* Writes: 100/min -> 0.6 s per token. */
    assert_int_equal(take_many(rl, AOS_RL_WRITE, NULL, keys, 1, 100), 30);
    clk.now_us += 6000000;
    assert_int_equal(take_many(rl, AOS_RL_WRITE, NULL, keys, 1, 100), 10);
    aos_ratelimit_free(rl);
}

static void test_both_keys(void **state)
{
    (void)state;
    struct fake_clock clk = {1000000};
    struct aos_ratelimit *rl = local_new(&clk);
    const char *a[] = {"ip:1.2.3.4"};
    const char *ab[] = {"p:t:dave", "ip:1.2.3.4"};
    const char *b[] = {"p:t:dave"};
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, a, 1, 60), 60);
    /* The exhausted IP blocks the pair... */
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, ab, 2, 20), 0);
    /* ...and the principal's bucket was never charged. */
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, b, 1, 100), 60);
    /* Duplicate keys count once. */
    const char *dup[] = {"p:t:erin", "p:t:erin"};
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, dup, 2, 100), 60);
    aos_ratelimit_free(rl);
}

static void test_tenant_override(void **state)
{
    (void)state;
    struct fake_clock clk = {1000000};
    struct aos_ratelimit *rl = local_new(&clk);
    struct aos_conf_limits l = limits_default();
    struct aos_conf_tenant t[2] = {0};
    snprintf(t[0].id, sizeof t[0].id, "%s", "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f");
    t[0].limits_set = true;
    t[0].read = (struct aos_rate){60, 5};
    t[0].write = (struct aos_rate){10, 2};
    snprintf(t[1].id, sizeof t[1].id, "%s", "00000000-0000-4000-8000-000000000001");
    t[1].limits_set = false; /* no override: defaults */
    t[1].read = (struct aos_rate){1, 1};
    assert_int_equal(aos_ratelimit_set_limits(rl, &l, t, 2), 0);

    const char *k1[] = {"p:acme:u"};
    const char *k2[] = {"p:other:u"};
    const char *k3[] = {"p:none:u"};
    assert_int_equal(take_many(rl, AOS_RL_READ, t[0].id, k1, 1, 100), 5);
    assert_int_equal(take_many(rl, AOS_RL_WRITE, t[0].id, k1, 1, 100), 2);
    struct aos_rl_result r = check1(rl, AOS_RL_READ, t[0].id, k1, 1);
    assert_int_equal(r.limit, 60);
    assert_int_equal(r.burst, 5);
    assert_int_equal(take_many(rl, AOS_RL_READ, t[1].id, k2, 1, 100), 60);
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, k3, 1, 100), 60);

    /* Reload: new defaults apply to the next checks; disabling turns everything on. */
    l.read = (struct aos_rate){600, 3};
    assert_int_equal(aos_ratelimit_set_limits(rl, &l, NULL, 0), 0);
    const char *k4[] = {"p:fresh:u"};
    assert_int_equal(take_many(rl, AOS_RL_READ, t[0].id, k4, 1, 100), 3);
    l.redis_fail = (char *)"sideways";
    assert_int_equal(aos_ratelimit_set_limits(rl, &l, NULL, 0), -1); /* old limits stay */
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, (const char *[]){"p:fresh2:u"}, 1, 100), 3);
    l.redis_fail = (char *)"local";
    l.enabled = false;
    assert_int_equal(aos_ratelimit_set_limits(rl, &l, NULL, 0), 0);
    r = check1(rl, AOS_RL_READ, NULL, k4, 1);
    assert_true(r.allowed);
    assert_int_equal(r.limit, 0);
    struct aos_rl_header h[AOS_RL_MAX_HEADERS];
    assert_int_equal(aos_ratelimit_headers(&r, h, AOS_RL_MAX_HEADERS), 0);
    aos_ratelimit_free(rl);
}

static void test_exempt(void **state)
{
    (void)state;
    struct aos_conf_limits l = limits_default();
    struct aos_ratelimit *rl = aos_ratelimit_new(&l, NULL);
    assert_non_null(rl);
    assert_true(aos_ratelimit_is_exempt(rl, "/api/v1/orchestration/runs"));
    assert_true(aos_ratelimit_is_exempt(rl, "/api/v1/orchestration/"));
    assert_false(aos_ratelimit_is_exempt(rl, "/api/v1/orchestration"));
    assert_false(aos_ratelimit_is_exempt(rl, "/api/v1/agents"));
    char *ex[] = {"/static/", "/api/v1/aoa/"};
    l.exempt = ex;
    l.nexempt = 2;
    assert_int_equal(aos_ratelimit_set_limits(rl, &l, NULL, 0), 0);
    assert_false(aos_ratelimit_is_exempt(rl, "/api/v1/orchestration/runs"));
    assert_true(aos_ratelimit_is_exempt(rl, "/static/app.js"));
    assert_true(aos_ratelimit_is_exempt(rl, "/api/v1/aoa/x"));
    l.nexempt = 0;
    assert_int_equal(aos_ratelimit_set_limits(rl, &l, NULL, 0), 0);
    assert_false(aos_ratelimit_is_exempt(rl, "/static/app.js"));
    aos_ratelimit_free(rl);
}

static void test_disabled(void **state)
{
    (void)state;
    struct aos_conf_limits l = limits_default();
    l.enabled = false;
    struct aos_ratelimit *rl = aos_ratelimit_new(&l, NULL);
    assert_non_null(rl);
    const char *k[] = {"p:x:y"};
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, k, 1, 1000), 1000);
    assert_int_equal(aos_ratelimit_local_count(rl), 0);
    aos_ratelimit_free(rl);
}

static void test_bad_config(void **state)
{
    (void)state;
    struct aos_conf_limits l = limits_default();
    l.policy = (char *)"redis"; /* without redis.url */
    assert_null(aos_ratelimit_new(&l, NULL));
    struct aos_conf_redis red = {.enabled = true, .url = (char *)"http://x", .connect_timeout = 1};
    assert_null(aos_ratelimit_new(&l, &red));
    l.policy = (char *)"fancy";
    assert_null(aos_ratelimit_new(&l, NULL));
    l.policy = (char *)"local";
    l.redis_fail = (char *)"maybe";
    assert_null(aos_ratelimit_new(&l, NULL));
}

static void test_eviction_bound(void **state)
{
    (void)state;
    struct fake_clock clk = {1000000};
    struct aos_ratelimit *rl = local_new(&clk);
    aos_ratelimit_set_max_buckets(rl, 512);
    char key[64];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof key, "ip:10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        const char *k[] = {key};
        assert_true(check1(rl, AOS_RL_READ, NULL, k, 1).allowed);
        assert_true(aos_ratelimit_local_count(rl) <= 512);
    }
    assert_true(aos_ratelimit_local_count(rl) >= 256);
    /* A bucket in active use survives the churn (LRU), so it still limits. */
    const char *hot[] = {"p:t:hot"};
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, hot, 1, 30), 30);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "ip:172.16.0.%d", i);
        const char *k[] = {key};
        check1(rl, AOS_RL_READ, NULL, k, 1);
    }
    assert_int_equal(take_many(rl, AOS_RL_READ, NULL, hot, 1, 100), 30);
    aos_ratelimit_free(rl);
}

static void test_headers(void **state)
{
    (void)state;
    struct fake_clock clk = {1000000};
    struct aos_ratelimit *rl = local_new(&clk);
    const char *k[] = {"p:t:hdr"};
    struct aos_rl_header h[AOS_RL_MAX_HEADERS];

    struct aos_rl_result r = check1(rl, AOS_RL_READ, NULL, k, 1);
    assert_int_equal(aos_ratelimit_headers(&r, h, AOS_RL_MAX_HEADERS), 5);
    assert_string_equal(h[0].name, "RateLimit-Policy");
    assert_string_equal(h[0].value, "\"read\";q=300;w=60");
    assert_string_equal(h[1].name, "RateLimit");
    assert_string_equal(h[1].value, "\"read\";r=59;t=1");
    assert_string_equal(h[2].name, "X-RateLimit-Limit");
    assert_string_equal(h[2].value, "300");
    assert_string_equal(h[3].name, "X-RateLimit-Remaining");
    assert_string_equal(h[3].value, "59");
    assert_string_equal(h[4].name, "X-RateLimit-Reset");
    assert_string_equal(h[4].value, "1");

    take_many(rl, AOS_RL_WRITE, NULL, k, 1, 30);
    r = check1(rl, AOS_RL_WRITE, NULL, k, 1);
    assert_false(r.allowed);
    assert_int_equal(aos_ratelimit_headers(&r, h, AOS_RL_MAX_HEADERS), 6);
    assert_string_equal(h[0].value, "\"write\";q=100;w=60");
    assert_string_equal(h[1].value, "\"write\";r=0;t=18");
    assert_string_equal(h[2].value, "100");
    assert_string_equal(h[3].value, "0");
    assert_string_equal(h[4].value, "18");
    assert_string_equal(h[5].name, "Retry-After");
    assert_string_equal(h[5].value, "1");
    /* A truncated array gets the first ones. */
    assert_int_equal(aos_ratelimit_headers(&r, h, 2), 2);
    assert_string_equal(h[1].name, "RateLimit");

    /* Slow tenant: Retry-After is the whole wait for one token, rounded up. */
    struct aos_conf_limits l = limits_default();
    l.read = (struct aos_rate){7, 1};
    assert_int_equal(aos_ratelimit_set_limits(rl, &l, NULL, 0), 0);
    const char *k2[] = {"p:t:slow"};
    assert_true(check1(rl, AOS_RL_READ, NULL, k2, 1).allowed);
    clk.now_us += 1000000;
    r = check1(rl, AOS_RL_READ, NULL, k2, 1);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_s, 8); /* 60/7 = 8.57 s per token, 1 s gone: 7.57 -> 8 */
    assert_int_equal(aos_ratelimit_headers(&r, h, AOS_RL_MAX_HEADERS), 6);
    assert_string_equal(h[5].value, "8");
    assert_string_equal(h[1].value, "\"read\";r=0;t=8");

    /* Degraded results. */
    struct aos_rl_result open = {.allowed = true,
                                 .limit = 300,
                                 .burst = 60,
                                 .window_s = 60,
                                 .remaining = -1,
                                 .policy_name = "read",
                                 .degraded = true};
    assert_int_equal(aos_ratelimit_headers(&open, h, AOS_RL_MAX_HEADERS), 1);
    assert_string_equal(h[0].value, "\"read\";q=300;w=60");
    struct aos_rl_result closed = {.allowed = false,
                                   .limit = 300,
                                   .burst = 60,
                                   .window_s = 60,
                                   .retry_after_s = 1,
                                   .policy_name = "read",
                                   .degraded = true,
                                   .unavailable = true};
    assert_int_equal(aos_ratelimit_headers(&closed, h, AOS_RL_MAX_HEADERS), 1);
    assert_string_equal(h[0].name, "Retry-After");
    assert_string_equal(h[0].value, "1");
    aos_ratelimit_free(rl);
}

#define HAMMER_THREADS 8
#define HAMMER_ITERS 2000

struct hammer {
    struct aos_ratelimit *rl;
    pthread_barrier_t *barrier;
    atomic_int *allowed;
    int id;
};

static void on_hammer(void *arg, const struct aos_rl_result *r)
{
    if (r->allowed)
        atomic_fetch_add((atomic_int *)arg, 1);
}

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;
    char own[32];
    snprintf(own, sizeof own, "ip:thread-%d", h->id);
    pthread_barrier_wait(h->barrier);
    for (int i = 0; i < HAMMER_ITERS; i++) {
        /* One shared key, and a private key so shards are locked in pairs. */
        const char *k[] = {own, "p:t:shared"};
        aos_ratelimit_check(h->rl, NULL, AOS_RL_READ, NULL, k, 2, on_hammer, h->allowed);
    }
    return NULL;
}

static void test_threads_never_over_admit(void **state)
{
    (void)state;
    struct fake_clock clk = {1000000}; /* frozen: no refill during the race */
    struct aos_ratelimit *rl = local_new(&clk);
    pthread_t th[HAMMER_THREADS];
    struct hammer h[HAMMER_THREADS];
    pthread_barrier_t barrier;
    atomic_int allowed = 0;
    pthread_barrier_init(&barrier, NULL, HAMMER_THREADS);
    for (int i = 0; i < HAMMER_THREADS; i++) {
        h[i] = (struct hammer){rl, &barrier, &allowed, i};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_run, &h[i]), 0);
    }
    for (int i = 0; i < HAMMER_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(atomic_load(&allowed), 60);
    aos_ratelimit_free(rl);
}

/* ---------------------------------------------------------------- Redis */

static const char *redis_url(void)
{
    const char *u = getenv("AOS_TEST_REDIS");
    return u != NULL && u[0] != '\0' ? u : NULL;
}

static char run_prefix[64];

static void make_prefix(const char *test)
{
    unsigned char rnd[8] = {0};
    int fd = open("/dev/urandom", O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, rnd, sizeof rnd), (ssize_t)sizeof rnd);
    close(fd);
    snprintf(run_prefix, sizeof run_prefix, "aostest:%s:%02x%02x%02x%02x%02x%02x:", test, rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5]);
}

static struct aos_ratelimit *redis_new(const char *url, const char *fail)
{
    struct aos_conf_limits l = limits_default();
    l.policy = (char *)"redis";
    l.redis_fail = (char *)fail;
    struct aos_conf_redis red = {.enabled = true, .url = (char *)url, .connect_timeout = 2};
    struct aos_ratelimit *rl = aos_ratelimit_new(&l, &red);
    assert_non_null(rl);
    assert_int_equal(aos_ratelimit_set_prefix(rl, run_prefix), 0);
    return rl;
}

static void run_until(struct aos_loop *loop, const int *calls, int want)
{
    while (*calls < want)
        assert_true(event_base_loop(aos_loop_base(loop), EVLOOP_ONCE) >= 0);
}

/* Exactly one pass of the loop: what is due runs (the end-of-iteration
 * flush that hands coalesced checks to hiredis), without waiting.  Plain
 * EVLOOP_NONBLOCK would go on while anything is ready, a Redis reply
 * included. */
static void one_pass(struct aos_loop *loop)
{
    assert_true(event_base_loop(aos_loop_base(loop), EVLOOP_ONCE | EVLOOP_NONBLOCK) >= 0);
}

/* Fires n checks at once (all in flight together), then runs the loop. */
static void fire(struct aos_ratelimit *rl, struct aos_loop *loop, enum aos_rl_class cls, const char *const *k,
                 size_t nk, int n, struct outcome *o)
{
    for (int i = 0; i < n; i++)
        aos_ratelimit_check(rl, loop, cls, NULL, k, nk, on_done, o);
}

static void test_redis_burst(void **state)
{
    (void)state;
    const char *url = redis_url();
    assert_non_null(url); /* listed only when AOS_TEST_REDIS is set */
    make_prefix("burst");
    struct aos_loop *loop = aos_loop_new("rl-test");
    assert_non_null(loop);
    struct aos_ratelimit *rl = redis_new(url, "closed");
    assert_int_equal(aos_ratelimit_attach_loop(rl, loop), 0);

    const char *k[] = {"p:t:alice", "ip:10.0.0.1"};
    /* Sequential: exact numbers and fields. */
    for (int i = 0; i < 60; i++) {
        struct outcome o = {0};
        aos_ratelimit_check(rl, loop, AOS_RL_READ, NULL, k, 2, on_done, &o);
        run_until(loop, &o.calls, 1);
        assert_true(o.last.allowed);
        assert_false(o.last.degraded);
        assert_int_equal(o.last.remaining, 59 - i);
    }
    assert_true(aos_ratelimit_redis_up(rl, loop));
    struct outcome o = {0};
    aos_ratelimit_check(rl, loop, AOS_RL_READ, NULL, k, 2, on_done, &o);
    run_until(loop, &o.calls, 1);
    assert_false(o.last.allowed);
    assert_false(o.last.unavailable);
    assert_int_equal(o.last.retry_after_s, 1);

    /* Concurrent: 100 writes in flight at once, exactly 30 pass. */
    const char *kw[] = {"p:t:bob", "ip:10.0.0.2"};
    struct outcome w = {0};
    fire(rl, loop, AOS_RL_WRITE, kw, 2, 100, &w);
    run_until(loop, &w.calls, 100);
    assert_int_equal(w.allowed, 30);

    /* Both keys: the exhausted IP blocks, the other key is not charged. */
    const char *ip[] = {"ip:10.0.0.1"};
    const char *pair[] = {"p:t:carol", "ip:10.0.0.1"};
    const char *carol[] = {"p:t:carol"};
    struct outcome b = {0};
    fire(rl, loop, AOS_RL_READ, pair, 2, 10, &b);
    run_until(loop, &b.calls, 10);
    assert_int_equal(b.allowed, 0);
    (void)ip;
    struct outcome c = {0};
    fire(rl, loop, AOS_RL_READ, carol, 1, 70, &c);
    run_until(loop, &c.calls, 70);
    assert_int_equal(c.allowed, 60);

    aos_ratelimit_free(rl);
    aos_loop_free(loop);
}

/* Every result of a run of checks, in the order they were answered. */
struct seq {
    int n;
    struct aos_rl_result r[128];
};

static void on_seq(void *arg, const struct aos_rl_result *r)
{
    struct seq *s = arg;
    assert_true(s->n < 128);
    s->r[s->n++] = *r;
}

static void fire_seq(struct aos_ratelimit *rl, struct aos_loop *loop, enum aos_rl_class cls,
                     const char *const *k, size_t nk, int n, struct seq *s)
{
    for (int i = 0; i < n; i++)
        aos_ratelimit_check(rl, loop, cls, NULL, k, nk, on_seq, s);
}

/* Checks of one iteration, and those that arrive while a call is in
 * flight, go to Redis as one call; each is answered in arrival order with
 * exactly what the same checks one by one would have got. */
static void test_redis_coalesce(void **state)
{
    (void)state;
    const char *url = redis_url();
    assert_non_null(url); /* listed only when AOS_TEST_REDIS is set */
    make_prefix("coalesce");
    struct aos_loop *loop = aos_loop_new("rl-test");
    assert_non_null(loop);
    struct aos_ratelimit *rl = redis_new(url, "closed");
    assert_int_equal(aos_ratelimit_attach_loop(rl, loop), 0);

    /* 100 writes in one iteration: one call, the first 30 pass. */
    const char *kw[] = {"p:t:dave", "ip:10.0.0.3"};
    static struct seq w;
    memset(&w, 0, sizeof w);
    fire_seq(rl, loop, AOS_RL_WRITE, kw, 2, 100, &w);
    assert_int_equal(w.n, 0);
    assert_int_equal(aos_ratelimit_redis_calls(rl), 0); /* sent at the end of the iteration */
    run_until(loop, &w.n, 100);
    assert_int_equal(aos_ratelimit_redis_calls(rl), 1);
    for (int i = 0; i < 100; i++) {
        assert_false(w.r[i].degraded);
        assert_int_equal(w.r[i].allowed, i < 30);
        assert_int_equal(w.r[i].remaining, i < 30 ? 29 - i : 0);
        assert_int_equal(w.r[i].limit, 100);
        assert_int_equal(w.r[i].burst, 30);
        /* 100/min: each missing token is 0.6 s to refill. */
        assert_int_equal(w.r[i].reset_s, (int)((i < 30 ? i + 1 : 30) * 600 + 999) / 1000);
        assert_int_equal(w.r[i].retry_after_s, i < 30 ? 0 : 1);
    }

    /* A lone read leaves in the same iteration; 20 more arriving while it
     * is in flight wait, then go together: two calls, counted in order. */
    const char *kr[] = {"p:t:erin"};
    static struct seq r;
    memset(&r, 0, sizeof r);
    fire_seq(rl, loop, AOS_RL_READ, kr, 1, 1, &r);
    one_pass(loop);
    assert_int_equal(aos_ratelimit_redis_calls(rl), 2);
    fire_seq(rl, loop, AOS_RL_READ, kr, 1, 20, &r);
    run_until(loop, &r.n, 21);
    assert_int_equal(aos_ratelimit_redis_calls(rl), 3);
    for (int i = 0; i < 21; i++) {
        assert_true(r.r[i].allowed);
        assert_int_equal(r.r[i].remaining, 59 - i);
    }

    /* Other key sets never share a call (nor a budget). */
    const char *ka[] = {"p:t:fay"}, *kb[] = {"p:t:gus"};
    struct outcome a = {0}, b = {0};
    fire(rl, loop, AOS_RL_READ, ka, 1, 3, &a);
    fire(rl, loop, AOS_RL_READ, kb, 1, 3, &b);
    run_until(loop, &a.calls, 3);
    run_until(loop, &b.calls, 3);
    assert_int_equal(aos_ratelimit_redis_calls(rl), 5);
    assert_int_equal(a.last.remaining, 57);
    assert_int_equal(b.last.remaining, 57);

    /* Freed with one call in flight and checks waiting behind it and for
     * the end of the iteration: every one is answered, by redis_fail. */
    struct outcome f = {0};
    fire(rl, loop, AOS_RL_READ, ka, 1, 1, &f);
    one_pass(loop);
    fire(rl, loop, AOS_RL_READ, ka, 1, 2, &f);
    fire(rl, loop, AOS_RL_READ, kb, 1, 2, &f);
    assert_int_equal(f.calls, 0);
    aos_ratelimit_free(rl);
    assert_int_equal(f.calls, 5);
    assert_int_equal(f.allowed, 0);
    assert_true(f.last.unavailable);
    aos_loop_free(loop);
}

static void test_redis_two_nodes(void **state)
{
    (void)state;
    const char *url = redis_url();
    assert_non_null(url); /* listed only when AOS_TEST_REDIS is set */
    make_prefix("nodes");
    struct aos_loop *l1 = aos_loop_new("node1"), *l2 = aos_loop_new("node2");
    assert_non_null(l1);
    assert_non_null(l2);
    struct aos_ratelimit *r1 = redis_new(url, "closed"), *r2 = redis_new(url, "closed");
    assert_int_equal(aos_ratelimit_attach_loop(r1, l1), 0);
    assert_int_equal(aos_ratelimit_attach_loop(r2, l2), 0);
    const char *k[] = {"p:t:shared", "ip:192.0.2.1"};
    struct outcome o1 = {0}, o2 = {0};
    fire(r1, l1, AOS_RL_READ, k, 2, 75, &o1);
    fire(r2, l2, AOS_RL_READ, k, 2, 75, &o2);
    while (o1.calls < 75 || o2.calls < 75) {
        event_base_loop(aos_loop_base(l1), EVLOOP_NONBLOCK);
        event_base_loop(aos_loop_base(l2), EVLOOP_NONBLOCK);
    }
    assert_int_equal(o1.allowed + o2.allowed, 60);
    assert_false(o1.last.degraded);
    assert_false(o2.last.degraded);
    aos_ratelimit_free(r1);
    aos_ratelimit_free(r2);
    aos_loop_free(l1);
    aos_loop_free(l2);
}

static void redis_sync_cmd(const char *url, const char *cmd)
{
    char host[128];
    int port = 6379;
    const char *p = url + strlen("redis://");
    size_t hl = strcspn(p, ":/");
    assert_true(hl < sizeof host);
    memcpy(host, p, hl);
    host[hl] = '\0';
    if (p[hl] == ':')
        port = atoi(p + hl + 1);
    redisContext *c = redisConnect(host, port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisReply *r = redisCommand(c, cmd);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
}

static void test_redis_noscript(void **state)
{
    (void)state;
    const char *url = redis_url();
    assert_non_null(url); /* listed only when AOS_TEST_REDIS is set */
    make_prefix("noscript");
    struct aos_loop *loop = aos_loop_new("rl-test");
    struct aos_ratelimit *rl = redis_new(url, "closed");
    assert_int_equal(aos_ratelimit_attach_loop(rl, loop), 0);
    const char *k[] = {"p:t:ns"};
    struct outcome o = {0};
    aos_ratelimit_check(rl, loop, AOS_RL_READ, NULL, k, 1, on_done, &o);
    run_until(loop, &o.calls, 1);
    assert_true(o.last.allowed);
    redis_sync_cmd(url, "SCRIPT FLUSH");
    /* Several in flight hit NOSCRIPT together; each retries with EVAL. */
    struct outcome p = {0};
    fire(rl, loop, AOS_RL_READ, k, 1, 5, &p);
    run_until(loop, &p.calls, 5);
    assert_int_equal(p.allowed, 5);
    assert_false(p.last.degraded);
    assert_int_equal(p.last.remaining, 54);
    /* And EVALSHA works again afterwards. */
    struct outcome q = {0};
    fire(rl, loop, AOS_RL_READ, k, 1, 60, &q);
    run_until(loop, &q.calls, 60);
    assert_int_equal(q.allowed, 54);
    assert_false(q.last.degraded);
    aos_ratelimit_free(rl);
    aos_loop_free(loop);
}

/* A script error (here WRONGTYPE: someone else's string under our key) is
 * answered by redis_fail and the connection is recycled. */
static void test_redis_script_error(void **state)
{
    (void)state;
    const char *url = redis_url();
    assert_non_null(url); /* listed only when AOS_TEST_REDIS is set */
    make_prefix("wrongtype");
    char cmd[200];
    snprintf(cmd, sizeof cmd, "SET %s2:r:p:t:wrong x PX 60000", run_prefix);
    redis_sync_cmd(url, cmd);
    struct aos_loop *loop = aos_loop_new("rl-test");
    struct aos_ratelimit *rl = redis_new(url, "closed");
    assert_int_equal(aos_ratelimit_attach_loop(rl, loop), 0);
    const char *k[] = {"p:t:wrong"};
    struct outcome o = {0};
    aos_ratelimit_check(rl, loop, AOS_RL_READ, NULL, k, 1, on_done, &o);
    run_until(loop, &o.calls, 1);
    assert_false(o.last.allowed);
    assert_true(o.last.unavailable);
    assert_false(aos_ratelimit_redis_up(rl, loop));
    while (!aos_ratelimit_redis_up(rl, loop))
        assert_true(event_base_loop(aos_loop_base(loop), EVLOOP_ONCE) >= 0);
    const char *good[] = {"p:t:right"};
    struct outcome g = {0};
    aos_ratelimit_check(rl, loop, AOS_RL_READ, NULL, good, 1, on_done, &g);
    run_until(loop, &g.calls, 1);
    assert_true(g.last.allowed);
    assert_false(g.last.degraded);
    aos_ratelimit_free(rl);
    aos_loop_free(loop);
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* bound, never listened: connections are refused */
    return ntohs(a.sin_port);
}

static void test_redis_down(void **state)
{
    (void)state;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", closed_port());
    make_prefix("down");
    const char *k[] = {"p:t:down"};
    static const char *const modes[] = {"open", "closed", "local"};
    for (size_t m = 0; m < 3; m++) {
        struct aos_loop *loop = aos_loop_new("rl-test");
        struct aos_ratelimit *rl = redis_new(url, modes[m]);
        assert_int_equal(aos_ratelimit_attach_loop(rl, loop), 0);
        /* The first check is queued behind the connect, which is refused;
         * the later ones are answered at once while Redis is down. */
        struct outcome o = {0};
        aos_ratelimit_check(rl, loop, AOS_RL_READ, NULL, k, 1, on_done, &o);
        run_until(loop, &o.calls, 1);
        assert_true(o.last.degraded);
        assert_false(aos_ratelimit_redis_up(rl, loop));
        struct outcome p = {0};
        fire(rl, loop, AOS_RL_READ, k, 1, 70, &p);
        assert_int_equal(p.calls, 70);
        assert_true(p.last.degraded);
        switch (m) {
        case 0:
            assert_true(o.last.allowed);
            assert_int_equal(p.allowed, 70);
            assert_int_equal(p.last.remaining, -1);
            break;
        case 1:
            assert_false(o.last.allowed);
            assert_true(o.last.unavailable);
            assert_int_equal(p.allowed, 0);
            assert_true(p.last.unavailable);
            break;
        default:
            assert_true(o.last.allowed);
            assert_false(o.last.unavailable);
            assert_int_equal(p.allowed, 59); /* local buckets: 60 in all */
            assert_false(p.last.allowed);
            assert_false(p.last.unavailable);
            break;
        }
        aos_ratelimit_free(rl);
        aos_loop_free(loop);
    }
}

/* Kills our connection from the server side: the next checks are answered
 * by redis_fail, then the backoff timer reconnects and Redis counts again. */
static void test_redis_reconnect(void **state)
{
    (void)state;
    const char *url = redis_url();
    assert_non_null(url); /* listed only when AOS_TEST_REDIS is set */
    make_prefix("reconnect");
    struct aos_loop *loop = aos_loop_new("rl-test");
    struct aos_ratelimit *rl = redis_new(url, "local");
    assert_int_equal(aos_ratelimit_attach_loop(rl, loop), 0);
    const char *k[] = {"p:t:re"};
    struct outcome o = {0};
    fire(rl, loop, AOS_RL_READ, k, 1, 10, &o);
    run_until(loop, &o.calls, 10);
    assert_int_equal(o.allowed, 10);
    assert_false(o.last.degraded);
    assert_true(aos_ratelimit_redis_up(rl, loop));

    /* Find this instance's connection by its name and kill it. */
    char cmd[160];
    snprintf(cmd, sizeof cmd, "aosd-rl:%s", run_prefix);
    char host[128];
    const char *p = url + strlen("redis://");
    size_t hl = strcspn(p, ":/");
    memcpy(host, p, hl);
    host[hl] = '\0';
    redisContext *c = redisConnect(host, p[hl] == ':' ? atoi(p + hl + 1) : 6379);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisReply *r = redisCommand(c, "CLIENT LIST");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char needle[200];
    snprintf(needle, sizeof needle, " name=%s ", cmd);
    const char *line = strstr(r->str, needle);
    assert_non_null(line);
    while (line > r->str && line[-1] != '\n')
        line--;
    long long id = 0;
    assert_int_equal(sscanf(line, "id=%lld", &id), 1);
    freeReplyObject(r);
    r = redisCommand(c, "CLIENT KILL ID %lld", id);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(c);

    while (aos_ratelimit_redis_up(rl, loop))
        assert_true(event_base_loop(aos_loop_base(loop), EVLOOP_ONCE) >= 0);
    struct outcome d = {0};
    aos_ratelimit_check(rl, loop, AOS_RL_READ, NULL, k, 1, on_done, &d);
    assert_int_equal(d.calls, 1); /* answered at once while down */
    assert_true(d.last.degraded);
    assert_true(d.last.allowed);

    while (!aos_ratelimit_redis_up(rl, loop))
        assert_true(event_base_loop(aos_loop_base(loop), EVLOOP_ONCE) >= 0);
    struct outcome u = {0};
    fire(rl, loop, AOS_RL_READ, k, 1, 60, &u);
    run_until(loop, &u.calls, 60);
    assert_false(u.last.degraded);
    /* Redis kept its count across the outage (10 taken, plus a refill we
     * cannot pin: at most 60 pass, and at least the 50 left). */
    assert_true(u.allowed >= 50 && u.allowed <= 60);
    aos_ratelimit_free(rl);
    aos_loop_free(loop);
}

/* A server that accepts (the kernel's backlog does) but never answers:
 * our own timer declares Redis down and answers by redis_fail. */
static void test_redis_timeout(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", ntohs(a.sin_port));
    make_prefix("timeout");
    struct aos_loop *loop = aos_loop_new("rl-test");
    struct aos_ratelimit *rl = redis_new(url, "closed");
    aos_ratelimit_set_timeout(rl, 0.05);
    assert_int_equal(aos_ratelimit_attach_loop(rl, loop), 0);
    const char *k[] = {"p:t:hang"};
    struct outcome o = {0};
    fire(rl, loop, AOS_RL_READ, k, 1, 3, &o);
    /* The three leave as one call; two more wait behind it. */
    one_pass(loop);
    assert_int_equal(aos_ratelimit_redis_calls(rl), 1);
    fire(rl, loop, AOS_RL_READ, k, 1, 2, &o);
    run_until(loop, &o.calls, 5);
    assert_int_equal(o.allowed, 0);
    assert_true(o.last.unavailable);
    assert_int_equal(aos_ratelimit_redis_calls(rl), 1);
    assert_false(aos_ratelimit_redis_up(rl, loop));
    aos_ratelimit_free(rl);
    aos_loop_free(loop);
    close(fd);
}

static void test_redis_unattached_loop(void **state)
{
    (void)state;
    make_prefix("unattached");
    struct aos_loop *loop = aos_loop_new("rl-test");
    struct aos_ratelimit *rl = redis_new("redis://127.0.0.1:1/0", "closed");
    const char *k[] = {"p:t:x"};
    struct outcome o = {0};
    aos_ratelimit_check(rl, loop, AOS_RL_READ, NULL, k, 1, on_done, &o);
    assert_int_equal(o.calls, 1);
    assert_true(o.last.unavailable);
    aos_ratelimit_free(rl);
    aos_loop_free(loop);
}

int main(void)
{
    if (aos_loop_global_init() != 0)
        return 1;
    /* Tests that need a Redis server come last and are left out (not
     * skipped: cmocka 1.1.5 reports a skip as "not ok # SKIP", which the
     * TAP driver counts as a failure) when AOS_TEST_REDIS is unset. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_read),
        cmocka_unit_test(test_burst_write),
        cmocka_unit_test(test_refill),
        cmocka_unit_test(test_both_keys),
        cmocka_unit_test(test_tenant_override),
        cmocka_unit_test(test_exempt),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_eviction_bound),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_threads_never_over_admit),
        cmocka_unit_test(test_redis_down),
        cmocka_unit_test(test_redis_timeout),
        cmocka_unit_test(test_redis_unattached_loop),
        /* with a server: */
        cmocka_unit_test(test_redis_burst),
        cmocka_unit_test(test_redis_coalesce),
        cmocka_unit_test(test_redis_two_nodes),
        cmocka_unit_test(test_redis_noscript),
        cmocka_unit_test(test_redis_script_error),
        cmocka_unit_test(test_redis_reconnect),
    };
    const size_t nserver = 6;
    size_t n = sizeof tests / sizeof tests[0];
    if (redis_url() == NULL)
        n -= nserver;
    return _cmocka_run_group_tests("test_ratelimit", tests, n, NULL, NULL);
}
