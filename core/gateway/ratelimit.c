#include "config.h"

#include "core/gateway/ratelimit.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <uthash.h>
#include <utlist.h>

#include "core/log.h"
#include "core/loop.h"
#include "core/redis_url.h"

/* One token in integer units: a microsecond of refill adds per_minute
 * units, so a token is 60 s * 1e6 us worth of a 1/min rate. */
#define RL_UNIT 60000000LL
#define RL_SHARDS 16
#define RL_MAX_KEYS 16
#define RL_DEFAULT_MAX_BUCKETS 200000
#define RL_BACKOFF_MIN_MS 100
#define RL_BACKOFF_MAX_MS 5000

enum rl_fail { RL_FAIL_OPEN = 0, RL_FAIL_CLOSED = 1, RL_FAIL_LOCAL = 2 };

static const char *const rl_fail_names[] = {"open", "closed", "local"};
static const char *const rl_class_names[] = {"read", "write"};
static const char rl_class_tags[] = {'r', 'w'};

/* KEYS: buckets; ARGV: burst, per_minute, ttl_ms.  Same arithmetic as
 * local_take().  Integers stay below 2^53, so Lua's doubles are exact;
 * %.0f because Lua's own number->string conversion keeps 14 digits only. */
static const char rl_script[] =
    "local unit = 60000000\n"
    "local cap = tonumber(ARGV[1]) * unit\n"
    "local rate = tonumber(ARGV[2])\n"
    "local ttl = tonumber(ARGV[3])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local units = {}\n"
    "local ok = 1\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local v = redis.call('HMGET', k, 'u', 't')\n"
    "  local u = tonumber(v[1])\n"
    "  local last = tonumber(v[2])\n"
    "  if u == nil or last == nil then\n"
    "    u = cap\n"
    "  elseif now > last then\n"
    "    u = u + (now - last) * rate\n"
    "  end\n"
    "  if u > cap then u = cap end\n"
    "  units[i] = u\n"
    "  if u < unit then ok = 0 end\n"
    "end\n"
    "local low = cap\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local u = units[i]\n"
    "  if ok == 1 then\n"
    "    u = u - unit\n"
    "    redis.call('HSET', k, 'u', string.format('%.0f', u), 't', string.format('%.0f', now))\n"
    "    redis.call('PEXPIRE', k, ttl)\n"
    "  end\n"
    "  if u < low then low = u end\n"
    "end\n"
    "return {ok, string.format('%.0f', low)}\n";

struct rl_bucket {
    UT_hash_handle hh;
    struct rl_bucket *prev, *next; /* LRU order, most recent last */
    int64_t units;
    int64_t last_us;
    char key[];
};

struct rl_shard {
    pthread_mutex_t mu;
    struct rl_bucket *table;
    struct rl_bucket *lru;
    size_t n;
};

struct rl_tenant {
    char id[AOS_UUID_STR];
    struct aos_rate rate[2];
};

struct rl_limits {
    bool enabled;
    int fail;
    struct aos_rate rate[2];
    char **exempt; /* one allocation: pointers, then the strings */
    size_t nexempt;
    struct rl_tenant *tenants;
    size_t ntenants;
};

struct rl_conn {
    struct aos_ratelimit *rl;
    struct aos_loop *loop;
    redisAsyncContext *ac; /* NULL while down */
    bool up;               /* connected (else connecting or down) */
    bool closing;
    struct event *retry_ev;
    struct event *connect_ev;
    int backoff_ms;
};

struct aos_ratelimit {
    bool redis_policy;
    pthread_rwlock_t limits_lock;
    struct rl_limits *limits;

    struct rl_shard shards[RL_SHARDS];
    size_t shard_cap;
    aos_rl_clock_fn clock;
    void *clock_arg;

    /* Redis */
    char *host; /* TCP host, or NULL for a unix socket */
    int port;
    char *path;
    char *password;
    int db;
    char label[160]; /* host:port for log lines, never the password */
    double connect_timeout;
    double timeout;
    char *prefix;
    char client_name[96]; /* "aosd-rl:<prefix>", or "" when the prefix has no valid name */
    char sha[41];
    atomic_bool redis_down;
    struct rl_conn **conns;
    size_t nconns;
};

struct rl_req {
    struct aos_ratelimit *rl;
    struct rl_conn *conn;
    aos_rl_done_fn done;
    void *arg;
    enum aos_rl_class cls;
    struct aos_rate rate;
    int fail;
    struct event *timer;
    bool answered;
    bool sent_eval;
    char **keys; /* Redis keys: prefix + "<c>:" + caller key */
    size_t nkeys;
    size_t plen; /* keys[i] + plen is the local bucket key */
    char nkeys_s[24], burst_s[16], rate_s[16], ttl_s[24];
};

/* ------------------------------------------------------------ helpers */

static int64_t rl_clock_default(void *arg)
{
    struct timespec ts;
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int rl_fail_parse(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return RL_FAIL_LOCAL;
    for (size_t i = 0; i < sizeof rl_fail_names / sizeof rl_fail_names[0]; i++)
        if (strcmp(s, rl_fail_names[i]) == 0)
            return (int)i;
    return -1;
}

static uint64_t rl_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static int64_t ceil_div(int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

/* Everything a result says follows from the lowest bucket after the take,
 * because every key of one check has the same capacity and rate. */
static void rl_fill(struct aos_rl_result *r, enum aos_rl_class cls, struct aos_rate rate, bool ok,
                    int64_t low)
{
    int64_t cap = (int64_t)rate.burst * RL_UNIT;
    memset(r, 0, sizeof *r);
    r->allowed = ok;
    r->limit = rate.per_minute;
    r->burst = rate.burst;
    r->window_s = 60;
    r->policy_name = rl_class_names[cls];
    if (low < 0)
        low = 0;
    r->remaining = (int)(low / RL_UNIT);
    if (rate.per_minute > 0) {
        r->reset_s = (int)ceil_div(ceil_div(cap - low, rate.per_minute), 1000000);
        if (!ok)
            r->retry_after_s = (int)ceil_div(ceil_div(RL_UNIT - low, rate.per_minute), 1000000);
    } else if (!ok) {
        r->retry_after_s = 60; /* never refills: anything sooner would be a lie */
    }
    if (!ok && r->retry_after_s < 1)
        r->retry_after_s = 1;
}

/* Builds prefix + "<c>:" + key for each distinct key, in one block: in
 * buf[0..bufsize) when it fits (the local policy passes its stack: no
 * allocation per check), else malloc'd -- free it when it is not buf. */
static char **rl_keys_build(const char *prefix, enum aos_rl_class cls, const char *const *keys, size_t nkeys,
                            size_t *nout, void *buf, size_t bufsize)
{
    size_t plen = strlen(prefix), total = 0, n = 0;
    for (size_t i = 0; i < nkeys; i++)
        total += plen + 2 + strlen(keys[i] ? keys[i] : "") + 1;
    size_t need = nkeys * sizeof(char *) + total + 1;
    char **out = buf != NULL && need <= bufsize ? buf : malloc(need);
    if (out == NULL)
        return NULL;
    char *p = (char *)(out + nkeys);
    for (size_t i = 0; i < nkeys; i++) {
        const char *k = keys[i] ? keys[i] : "";
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = strcmp(keys[j] ? keys[j] : "", k) == 0;
        if (dup)
            continue;
        size_t len = plen + 2 + strlen(k);
        memcpy(p, prefix, plen);
        p[plen] = rl_class_tags[cls];
        p[plen + 1] = ':';
        memcpy(p + plen + 2, k, len - plen - 2 + 1);
        out[n++] = p;
        p += len + 1;
    }
    *nout = n;
    return out;
}

/* ------------------------------------------------------------ limits */

static void rl_limits_free(struct rl_limits *l)
{
    if (l == NULL)
        return;
    free(l->exempt);
    free(l->tenants);
    free(l);
}

static struct rl_limits *rl_limits_build(const struct aos_conf_limits *limits,
                                         const struct aos_conf_tenant *tenants, size_t ntenants)
{
    struct rl_limits *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->enabled = limits->enabled;
    l->fail = rl_fail_parse(limits->redis_fail);
    l->rate[AOS_RL_READ] = limits->read;
    l->rate[AOS_RL_WRITE] = limits->write;
    if (l->fail < 0) {
        aos_err("ratelimit: bad limits.redis_fail (want open, closed or local)", "value", limits->redis_fail,
                NULL);
        goto fail;
    }
    if (limits->nexempt > 0) {
        size_t total = 0;
        for (size_t i = 0; i < limits->nexempt; i++)
            total += strlen(limits->exempt[i]) + 1;
        l->exempt = malloc(limits->nexempt * sizeof *l->exempt + total);
        if (l->exempt == NULL)
            goto fail;
        char *p = (char *)(l->exempt + limits->nexempt);
        for (size_t i = 0; i < limits->nexempt; i++) {
            size_t len = strlen(limits->exempt[i]) + 1;
            memcpy(p, limits->exempt[i], len);
            l->exempt[i] = p;
            p += len;
        }
        l->nexempt = limits->nexempt;
    }
    if (ntenants > 0) {
        l->tenants = calloc(ntenants, sizeof *l->tenants);
        if (l->tenants == NULL)
            goto fail;
    }
    for (size_t i = 0; i < ntenants; i++) {
        if (!tenants[i].limits_set)
            continue;
        struct rl_tenant *t = &l->tenants[l->ntenants++];
        memcpy(t->id, tenants[i].id, sizeof t->id);
        t->id[sizeof t->id - 1] = '\0';
        t->rate[AOS_RL_READ] = tenants[i].read;
        t->rate[AOS_RL_WRITE] = tenants[i].write;
    }
    return l;
fail:
    rl_limits_free(l);
    return NULL;
}

int aos_ratelimit_set_limits(struct aos_ratelimit *rl, const struct aos_conf_limits *limits,
                             const struct aos_conf_tenant *tenants, size_t ntenants)
{
    struct rl_limits *l = rl_limits_build(limits, tenants, ntenants);
    if (l == NULL)
        return -1;
    pthread_rwlock_wrlock(&rl->limits_lock);
    struct rl_limits *old = rl->limits;
    rl->limits = l;
    pthread_rwlock_unlock(&rl->limits_lock);
    rl_limits_free(old);
    return 0;
}

/* Copies what one check needs, so a reload never races with it. */
static bool rl_limits_get(struct aos_ratelimit *rl, enum aos_rl_class cls, const char *tenant_id,
                          struct aos_rate *rate, int *fail)
{
    pthread_rwlock_rdlock(&rl->limits_lock);
    const struct rl_limits *l = rl->limits;
    bool enabled = l->enabled;
    *rate = l->rate[cls];
    *fail = l->fail;
    if (tenant_id != NULL) {
        for (size_t i = 0; i < l->ntenants; i++) {
            if (strcmp(l->tenants[i].id, tenant_id) == 0) {
                *rate = l->tenants[i].rate[cls];
                break;
            }
        }
    }
    pthread_rwlock_unlock(&rl->limits_lock);
    return enabled;
}

bool aos_ratelimit_is_exempt(struct aos_ratelimit *rl, const char *path)
{
    bool exempt = false;
    pthread_rwlock_rdlock(&rl->limits_lock);
    const struct rl_limits *l = rl->limits;
    for (size_t i = 0; i < l->nexempt && !exempt; i++)
        exempt = strncmp(path, l->exempt[i], strlen(l->exempt[i])) == 0;
    pthread_rwlock_unlock(&rl->limits_lock);
    return exempt;
}

/* ------------------------------------------------------------ local buckets */

static struct rl_bucket *rl_bucket_get(struct aos_ratelimit *rl, struct rl_shard *sh, const char *key,
                                       int64_t cap, int64_t now)
{
    size_t len = strlen(key);
    struct rl_bucket *b = NULL;
    HASH_FIND(hh, sh->table, key, len, b);
    if (b != NULL) {
        DL_DELETE(sh->lru, b);
        DL_APPEND(sh->lru, b);
        return b;
    }
    if (sh->n >= rl->shard_cap && sh->lru != NULL) {
        /* Buckets this check already holds sit at the tail; the cap is at
         * least RL_MAX_KEYS, so the head is never one of them. */
        struct rl_bucket *old = sh->lru;
        DL_DELETE(sh->lru, old);
        HASH_DELETE(hh, sh->table, old);
        free(old);
        sh->n--;
    }
    b = malloc(sizeof *b + len + 1);
    if (b == NULL)
        return NULL;
    memcpy(b->key, key, len + 1);
    b->units = cap;
    b->last_us = now;
    HASH_ADD_KEYPTR(hh, sh->table, b->key, len, b);
    DL_APPEND(sh->lru, b);
    sh->n++;
    return b;
}

static void rl_refill(struct rl_bucket *b, struct aos_rate rate, int64_t cap, int64_t now)
{
    if (now > b->last_us && rate.per_minute > 0 && b->units < cap) {
        int64_t elapsed = now - b->last_us;
        int64_t need = cap - b->units;
        if (elapsed > need / rate.per_minute)
            b->units = cap;
        else
            b->units += elapsed * rate.per_minute;
    }
    if (now > b->last_us)
        b->last_us = now;
    if (b->units > cap)
        b->units = cap;
}

/* All-or-nothing take on distinct bucket keys.  Shards are locked in
 * ascending order so two checks never deadlock. */
static void rl_local_take(struct aos_ratelimit *rl, enum aos_rl_class cls, struct aos_rate rate,
                          char *const *keys, size_t nkeys, size_t plen, struct aos_rl_result *r)
{
    int64_t cap = (int64_t)rate.burst * RL_UNIT;
    unsigned shard_of[RL_MAX_KEYS], order[RL_MAX_KEYS];
    struct rl_bucket *b[RL_MAX_KEYS];
    size_t nord = 0;
    bool ok = true;
    int64_t low = cap;

    aos_assert(nkeys <= RL_MAX_KEYS);
    if (nkeys == 0) {
        rl_fill(r, cls, rate, true, cap);
        return;
    }
    for (size_t i = 0; i < nkeys; i++) {
        shard_of[i] = (unsigned)(rl_hash(keys[i] + plen) % RL_SHARDS);
        size_t j = 0;
        while (j < nord && order[j] < shard_of[i])
            j++;
        if (j < nord && order[j] == shard_of[i])
            continue;
        memmove(order + j + 1, order + j, (nord - j) * sizeof order[0]);
        order[j] = shard_of[i];
        nord++;
    }
    for (size_t i = 0; i < nord; i++)
        pthread_mutex_lock(&rl->shards[order[i]].mu);
    int64_t now = rl->clock(rl->clock_arg);
    bool oom = false;
    for (size_t i = 0; i < nkeys && !oom; i++) {
        b[i] = rl_bucket_get(rl, &rl->shards[shard_of[i]], keys[i] + plen, cap, now);
        if (b[i] == NULL) {
            oom = true;
            break;
        }
        rl_refill(b[i], rate, cap, now);
        if (b[i]->units < RL_UNIT)
            ok = false;
    }
    if (oom) {
        /* Out of memory: refusing everyone would turn a blip into an
         * outage; admit without counting. */
        for (size_t i = nord; i-- > 0;)
            pthread_mutex_unlock(&rl->shards[order[i]].mu);
        rl_fill(r, cls, rate, true, cap);
        return;
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (ok)
            b[i]->units -= RL_UNIT;
        if (b[i]->units < low)
            low = b[i]->units;
    }
    for (size_t i = nord; i-- > 0;)
        pthread_mutex_unlock(&rl->shards[order[i]].mu);
    rl_fill(r, cls, rate, ok, low);
}

size_t aos_ratelimit_local_count(struct aos_ratelimit *rl)
{
    size_t n = 0;
    for (size_t i = 0; i < RL_SHARDS; i++) {
        pthread_mutex_lock(&rl->shards[i].mu);
        n += rl->shards[i].n;
        pthread_mutex_unlock(&rl->shards[i].mu);
    }
    return n;
}

/* ------------------------------------------------------------ fallback */

static void rl_answer_down(struct aos_ratelimit *rl, int fail, enum aos_rl_class cls, struct aos_rate rate,
                           char *const *keys, size_t nkeys, size_t plen, aos_rl_done_fn done, void *arg)
{
    struct aos_rl_result r;
    switch (fail) {
    case RL_FAIL_OPEN:
        rl_fill(&r, cls, rate, true, (int64_t)rate.burst * RL_UNIT);
        r.remaining = -1; /* nothing was counted */
        r.reset_s = 0;
        break;
    case RL_FAIL_CLOSED:
        rl_fill(&r, cls, rate, false, 0);
        r.unavailable = true;
        r.retry_after_s = 1;
        break;
    default:
        rl_local_take(rl, cls, rate, keys, nkeys, plen, &r);
        break;
    }
    r.degraded = true;
    done(arg, &r);
}

/* ------------------------------------------------------------ Redis */

static void rl_mark_down(struct aos_ratelimit *rl, const char *why)
{
    if (!atomic_exchange(&rl->redis_down, true)) {
        pthread_rwlock_rdlock(&rl->limits_lock);
        const char *fail = rl_fail_names[rl->limits->fail];
        pthread_rwlock_unlock(&rl->limits_lock);
        aos_warn("ratelimit: redis down, answering by limits.redis_fail", "redis", rl->label, "error", why,
                 "redis_fail", fail, NULL);
    }
}

static void rl_mark_up(struct aos_ratelimit *rl)
{
    if (atomic_exchange(&rl->redis_down, false))
        aos_info("ratelimit: redis up again", "redis", rl->label, NULL);
}

static void rl_conn_retry_later(struct rl_conn *c)
{
    if (c->closing)
        return;
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    evtimer_add(c->retry_ev, &tv);
    c->backoff_ms *= 2;
    if (c->backoff_ms > RL_BACKOFF_MAX_MS)
        c->backoff_ms = RL_BACKOFF_MAX_MS;
}

/* The context is dying or dead: forget it (hiredis frees it) and retry. */
static void rl_conn_lost(struct rl_conn *c, const char *why)
{
    c->ac = NULL;
    c->up = false;
    evtimer_del(c->connect_ev);
    if (c->closing)
        return;
    rl_mark_down(c->rl, why);
    rl_conn_retry_later(c);
}

/* Drops a live context on purpose (timeout): its pending callbacks run
 * now with a NULL reply and answer by redis_fail. */
static void rl_conn_drop(struct rl_conn *c, const char *why)
{
    redisAsyncContext *ac = c->ac;
    rl_conn_lost(c, why);
    if (ac != NULL)
        redisAsyncFree(ac);
}

static void rl_on_connect(const redisAsyncContext *ac, int status)
{
    struct rl_conn *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    if (status != REDIS_OK) {
        rl_conn_lost(c, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    c->up = true;
    c->backoff_ms = RL_BACKOFF_MIN_MS;
    evtimer_del(c->connect_ev);
    rl_mark_up(c->rl);
}

static void rl_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rl_conn *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    rl_conn_lost(c, status == REDIS_OK ? "disconnected" : (ac->errstr[0] ? ac->errstr : "disconnected"));
}

static void rl_on_setup_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    (void)ac;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        aos_warn("ratelimit: redis refused a setup command", "command", (const char *)privdata, "error",
                 reply->str, NULL);
}

static int rl_send_script_load(redisAsyncContext *ac)
{
    const char *argv[] = {"SCRIPT", "LOAD", rl_script};
    size_t lens[] = {6, 4, sizeof rl_script - 1};
    return redisAsyncCommandArgv(ac, rl_on_setup_reply, (void *)"SCRIPT LOAD", 3, argv, lens);
}

static void rl_conn_connect(struct rl_conn *c)
{
    struct aos_ratelimit *rl = c->rl;
    redisAsyncContext *ac =
        rl->host ? redisAsyncConnect(rl->host, rl->port) : redisAsyncConnectUnix(rl->path);
    if (ac == NULL) {
        rl_mark_down(rl, "out of memory");
        rl_conn_retry_later(c);
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        rl_mark_down(rl, why);
        rl_conn_retry_later(c);
        return;
    }
    ac->data = c;
    if (redisLibeventAttach(ac, aos_loop_base(c->loop)) != REDIS_OK) {
        redisAsyncFree(ac);
        rl_mark_down(rl, "cannot attach to the event loop");
        rl_conn_retry_later(c);
        return;
    }
    redisAsyncSetConnectCallback(ac, rl_on_connect);
    redisAsyncSetDisconnectCallback(ac, rl_on_disconnect);
    c->ac = ac;
    c->up = false;
    /* Commands queue behind the connect and run in order. */
    if (rl->password != NULL) {
        const char *argv[] = {"AUTH", rl->password};
        size_t lens[] = {4, strlen(rl->password)};
        redisAsyncCommandArgv(ac, rl_on_setup_reply, (void *)"AUTH", 2, argv, lens);
    }
    if (rl->db != 0)
        redisAsyncCommand(ac, rl_on_setup_reply, (void *)"SELECT", "SELECT %d", rl->db);
    if (rl->client_name[0] != '\0') {
        /* Lets an operator (and the tests) find our connections in CLIENT LIST. */
        const char *argv[] = {"CLIENT", "SETNAME", rl->client_name};
        size_t lens[] = {6, 7, strlen(rl->client_name)};
        redisAsyncCommandArgv(ac, rl_on_setup_reply, (void *)"CLIENT SETNAME", 3, argv, lens);
    }
    rl_send_script_load(ac);
    double t = rl->connect_timeout > 0 ? rl->connect_timeout : 2.0;
    struct timeval tv = {(time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6)};
    evtimer_add(c->connect_ev, &tv);
}

static void rl_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rl_conn_connect(arg);
}

static void rl_on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct rl_conn *c = arg;
    (void)fd;
    (void)what;
    if (c->ac != NULL && !c->up)
        rl_conn_drop(c, "connect timeout");
}

static void rl_req_free(struct rl_req *q)
{
    if (q->timer != NULL)
        event_free(q->timer);
    free(q->keys);
    free(q);
}

static void rl_req_answer_down(struct rl_req *q)
{
    if (q->answered)
        return;
    q->answered = true;
    rl_answer_down(q->rl, q->fail, q->cls, q->rate, q->keys, q->nkeys, q->plen, q->done, q->arg);
}

static void rl_on_reply(redisAsyncContext *ac, void *reply_, void *privdata);

/* Decimal digits of v (>= 0) at out; returns how many (at most 20). */
static size_t rl_fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static void rl_fmt_int(char *out, int64_t v)
{
    size_t n = 0;
    if (v < 0) {
        out[n++] = '-';
        v = -v;
    }
    n += rl_fmt_u64(out + n, (uint64_t)v);
    out[n] = '\0';
}

/* The command in RESP, built here: hiredis's printf-style formatting was
 * most of the client-side cost of a Redis check. */
static int rl_req_send(struct rl_req *q, bool eval)
{
    const char *argv[RL_MAX_KEYS + 6];
    size_t lens[RL_MAX_KEYS + 6];
    int argc = 0;
    argv[argc++] = eval ? "EVAL" : "EVALSHA";
    argv[argc++] = eval ? rl_script : q->rl->sha;
    argv[argc++] = q->nkeys_s;
    for (size_t i = 0; i < q->nkeys; i++)
        argv[argc++] = q->keys[i];
    argv[argc++] = q->burst_s;
    argv[argc++] = q->rate_s;
    argv[argc++] = q->ttl_s;
    size_t total = 1 + 20 + 2;
    for (int i = 0; i < argc; i++) {
        lens[i] = strlen(argv[i]);
        total += 1 + 20 + 2 + lens[i] + 2;
    }
    char stack[1024];
    char *buf = total <= sizeof stack ? stack : malloc(total);
    if (buf == NULL)
        return -1;
    size_t n = 0;
    buf[n++] = '*';
    n += rl_fmt_u64(buf + n, (uint64_t)argc);
    buf[n++] = '\r';
    buf[n++] = '\n';
    for (int i = 0; i < argc; i++) {
        buf[n++] = '$';
        n += rl_fmt_u64(buf + n, lens[i]);
        buf[n++] = '\r';
        buf[n++] = '\n';
        memcpy(buf + n, argv[i], lens[i]);
        n += lens[i];
        buf[n++] = '\r';
        buf[n++] = '\n';
    }
    int rc = redisAsyncFormattedCommand(q->conn->ac, rl_on_reply, q, buf, n) == REDIS_OK ? 0 : -1;
    if (buf != stack)
        free(buf);
    return rc;
}

/* Answers q from a well-formed script reply {ok, lowest units}; false if
 * the reply is anything else. */
static bool rl_reply_answer(struct rl_req *q, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[1]->type != REDIS_REPLY_STRING)
        return false;
    char *end;
    errno = 0;
    long long low = strtoll(reply->element[1]->str, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    struct aos_rl_result r;
    rl_fill(&r, q->cls, q->rate, reply->element[0]->integer == 1, low);
    q->answered = true;
    q->done(q->arg, &r);
    return true;
}

static void rl_on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    struct rl_req *q = privdata;
    struct rl_conn *c = q->conn;

    if (reply == NULL) {
        /* The context is being freed (connection lost, or we dropped it). */
        if (c->ac == ac)
            rl_conn_lost(c, ac->errstr[0] ? ac->errstr : "connection lost");
    } else if (!q->answered) {
        if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0 && !q->sent_eval) {
            /* The script cache was flushed (or Redis restarted): EVAL this
             * one and load it again for the next ones. */
            q->sent_eval = true;
            if (rl_send_script_load(ac) == REDIS_OK && rl_req_send(q, true) == 0)
                return;
        } else if (!rl_reply_answer(q, reply) && c->ac == ac) {
            /* NOAUTH, READONLY after a failover, BUSY, OOM, WRONGTYPE...:
             * this server cannot count for us now.  Dropping the connection
             * logs once and retries with backoff, instead of one warning
             * per request.  (Inside a callback hiredis defers the free.) */
            rl_conn_drop(c, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply to the script");
        }
    }
    rl_req_answer_down(q); /* no-op when answered */
    rl_req_free(q);
}

static void rl_on_req_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct rl_req *q = arg;
    struct rl_conn *c = q->conn;
    (void)fd;
    (void)what;
    rl_req_answer_down(q);
    /* A Redis that does not answer in time is down: dropping the context
     * answers every queued check now instead of each waiting its turn.
     * The drop runs this request's reply callback, which frees it. */
    if (c->ac != NULL)
        rl_conn_drop(c, "command timeout");
}

static struct rl_conn *rl_conn_find(struct aos_ratelimit *rl, struct aos_loop *loop)
{
    for (size_t i = 0; i < rl->nconns; i++)
        if (rl->conns[i]->loop == loop)
            return rl->conns[i];
    return NULL;
}

static void rl_check_redis(struct aos_ratelimit *rl, struct aos_loop *loop, enum aos_rl_class cls,
                           struct aos_rate rate, int fail, const char *const *keys, size_t nkeys,
                           aos_rl_done_fn done, void *arg)
{
    struct rl_conn *c = rl_conn_find(rl, loop);
    struct rl_req *q = calloc(1, sizeof *q);
    if (q == NULL)
        goto fail;
    q->rl = rl;
    q->conn = c;
    q->done = done;
    q->arg = arg;
    q->cls = cls;
    q->rate = rate;
    q->fail = fail;
    q->plen = strlen(rl->prefix);
    q->keys = rl_keys_build(rl->prefix, cls, keys, nkeys, &q->nkeys, NULL, 0);
    if (q->keys == NULL)
        goto fail;
    if (c == NULL || c->ac == NULL || q->nkeys == 0) {
        if (q->nkeys == 0) {
            struct aos_rl_result r;
            rl_fill(&r, cls, rate, true, (int64_t)rate.burst * RL_UNIT);
            done(arg, &r);
        } else {
            rl_req_answer_down(q);
        }
        rl_req_free(q);
        return;
    }
    int64_t ttl_ms =
        rate.per_minute > 0 ? ceil_div((int64_t)rate.burst * 60000, rate.per_minute) + 1000 : 86400000;
    rl_fmt_int(q->nkeys_s, (int64_t)q->nkeys);
    rl_fmt_int(q->burst_s, rate.burst);
    rl_fmt_int(q->rate_s, rate.per_minute);
    rl_fmt_int(q->ttl_s, ttl_ms);
    q->timer = evtimer_new(aos_loop_base(loop), rl_on_req_timeout, q);
    if (q->timer == NULL || rl_req_send(q, false) != 0) {
        rl_req_answer_down(q);
        rl_req_free(q);
        return;
    }
    double t = rl->timeout;
    struct timeval tv = {(time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6)};
    evtimer_add(q->timer, &tv);
    return;
fail:
    if (q != NULL)
        free(q->keys);
    free(q);
    {
        /* Out of memory: no keys to fall back on; answer by the mode. */
        struct aos_rl_result r;
        rl_fill(&r, cls, rate, fail != RL_FAIL_CLOSED, (int64_t)rate.burst * RL_UNIT);
        r.degraded = true;
        r.unavailable = fail == RL_FAIL_CLOSED;
        done(arg, &r);
    }
}

/* ------------------------------------------------------------ API */

void aos_ratelimit_check(struct aos_ratelimit *rl, struct aos_loop *loop, enum aos_rl_class cls,
                         const char *tenant_id, const char *const *keys, size_t nkeys, aos_rl_done_fn done,
                         void *arg)
{
    struct aos_rate rate;
    int fail;
    struct aos_rl_result r;

    aos_assert(nkeys <= RL_MAX_KEYS);
    aos_assert(cls == AOS_RL_READ || cls == AOS_RL_WRITE);
    if (!rl_limits_get(rl, cls, tenant_id, &rate, &fail)) {
        memset(&r, 0, sizeof r);
        r.allowed = true;
        r.window_s = 60;
        r.policy_name = rl_class_names[cls];
        done(arg, &r);
        return;
    }
    if (rl->redis_policy) {
        rl_check_redis(rl, loop, cls, rate, fail, keys, nkeys, done, arg);
        return;
    }
    size_t n;
    /* Pointers first: keep the block aligned for them. */
    _Alignas(char *) char stack[512];
    char **k = rl_keys_build("", cls, keys, nkeys, &n, stack, sizeof stack);
    if (k == NULL) {
        rl_fill(&r, cls, rate, true, (int64_t)rate.burst * RL_UNIT);
    } else {
        rl_local_take(rl, cls, rate, k, n, 0, &r);
        if ((void *)k != (void *)stack)
            free(k);
    }
    done(arg, &r);
}

/* Header values are built with appends, not snprintf: they are on every
 * limited request (a tenth of its instructions went to printf). */
struct hv {
    char *p;
    size_t n;
};

static void hv_str(struct hv *v, const char *s)
{
    size_t len = strlen(s);
    if (v->n + len >= sizeof ((struct aos_rl_header *)0)->value)
        len = sizeof ((struct aos_rl_header *)0)->value - 1 - v->n;
    memcpy(v->p + v->n, s, len);
    v->n += len;
    v->p[v->n] = '\0';
}

static void hv_int(struct hv *v, int x)
{
    char tmp[16];
    size_t n = 0;
    unsigned u = x < 0 ? 0u - (unsigned)x : (unsigned)x;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (x < 0)
        tmp[sizeof tmp - 1 - n++] = '-';
    char s[17];
    memcpy(s, tmp + sizeof tmp - n, n);
    s[n] = '\0';
    hv_str(v, s);
}

static struct hv hv_of(struct aos_rl_header *h)
{
    h->value[0] = '\0';
    return (struct hv){h->value, 0};
}

size_t aos_ratelimit_headers(const struct aos_rl_result *r, struct aos_rl_header *out, size_t max)
{
    struct aos_rl_header h[AOS_RL_MAX_HEADERS];
    struct hv v;
    size_t n = 0;

    if (r->limit == 0 && !r->unavailable)
        return 0;
    if (r->unavailable) {
        h[n].name = "Retry-After";
        v = hv_of(&h[n++]);
        hv_int(&v, r->retry_after_s > 0 ? r->retry_after_s : 1);
    } else {
        h[n].name = "RateLimit-Policy";
        v = hv_of(&h[n++]);
        hv_str(&v, "\"");
        hv_str(&v, r->policy_name);
        hv_str(&v, "\";q=");
        hv_int(&v, r->limit);
        hv_str(&v, ";w=");
        hv_int(&v, r->window_s);
        if (r->remaining >= 0) {
            h[n].name = "RateLimit";
            v = hv_of(&h[n++]);
            hv_str(&v, "\"");
            hv_str(&v, r->policy_name);
            hv_str(&v, "\";r=");
            hv_int(&v, r->remaining);
            hv_str(&v, ";t=");
            hv_int(&v, r->reset_s);
            h[n].name = "X-RateLimit-Limit";
            v = hv_of(&h[n++]);
            hv_int(&v, r->limit);
            h[n].name = "X-RateLimit-Remaining";
            v = hv_of(&h[n++]);
            hv_int(&v, r->remaining);
            h[n].name = "X-RateLimit-Reset";
            v = hv_of(&h[n++]);
            hv_int(&v, r->reset_s);
            if (!r->allowed) {
                h[n].name = "Retry-After";
                v = hv_of(&h[n++]);
                hv_int(&v, r->retry_after_s);
            }
        }
    }
    if (n > max)
        n = max;
    memcpy(out, h, n * sizeof h[0]);
    return n;
}

/* redis.url (core/redis_url.h), plus the label the logs name it by. */
static int rl_parse_url(struct aos_ratelimit *rl, const char *url)
{
    struct aos_redis_target t;
    int w;

    if (aos_redis_url_parse(url, &t) != 0)
        return -1;
    rl->host = t.host; /* the strings move into rl */
    rl->port = t.port;
    rl->path = t.path;
    rl->password = t.password;
    rl->db = t.db;
    if (rl->path != NULL)
        w = snprintf(rl->label, sizeof rl->label, "unix:%s", rl->path);
    else
        w = snprintf(rl->label, sizeof rl->label, "%s:%d", rl->host, rl->port);
    return w >= 0 && (size_t)w < sizeof rl->label ? 0 : -1;
}

struct aos_ratelimit *aos_ratelimit_new(const struct aos_conf_limits *limits,
                                        const struct aos_conf_redis *redis)
{
    struct aos_ratelimit *rl = calloc(1, sizeof *rl);
    size_t ninit = 0;
    bool lock_init = false;
    if (rl == NULL)
        return NULL;
    const char *policy = limits->policy != NULL && limits->policy[0] ? limits->policy : "local";
    if (strcmp(policy, "redis") == 0) {
        rl->redis_policy = true;
    } else if (strcmp(policy, "local") != 0) {
        aos_err("ratelimit: bad limits.policy (want local or redis)", "value", policy, NULL);
        goto fail;
    }
    if (pthread_rwlock_init(&rl->limits_lock, NULL) != 0)
        goto fail;
    lock_init = true;
    rl->limits = rl_limits_build(limits, NULL, 0);
    if (rl->limits == NULL)
        goto fail;
    for (; ninit < RL_SHARDS; ninit++)
        if (pthread_mutex_init(&rl->shards[ninit].mu, NULL) != 0)
            goto fail;
    aos_ratelimit_set_max_buckets(rl, RL_DEFAULT_MAX_BUCKETS);
    rl->clock = rl_clock_default;
    if (aos_ratelimit_set_prefix(rl, "aos:rl:") != 0)
        goto fail;
    atomic_init(&rl->redis_down, false);
    rl->connect_timeout = redis != NULL && redis->connect_timeout > 0 ? redis->connect_timeout : 2.0;
    rl->timeout = rl->connect_timeout;
    if (rl->redis_policy) {
        /* Only for Redis (EVALSHA): the first digest brings up OpenSSL's
         * provider machinery, ~2 MiB resident a local-limits node never
         * needs before its first token check. */
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (EVP_Digest(rl_script, sizeof rl_script - 1, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
            goto fail;
        for (unsigned i = 0; i < mdlen; i++)
            snprintf(rl->sha + 2 * i, 3, "%02x", md[i]);
        if (redis == NULL || !redis->enabled || redis->url == NULL || redis->url[0] == '\0') {
            aos_err("ratelimit: limits.policy = \"redis\" needs redis.url", NULL);
            goto fail;
        }
        if (rl_parse_url(rl, redis->url) != 0) {
            aos_err("ratelimit: cannot parse redis.url (want redis://[:password@]host[:port][/db] or "
                    "unix:///path)",
                    NULL);
            goto fail;
        }
    }
    return rl;
fail:
    for (size_t i = 0; i < ninit; i++)
        pthread_mutex_destroy(&rl->shards[i].mu);
    if (lock_init)
        pthread_rwlock_destroy(&rl->limits_lock);
    rl_limits_free(rl->limits);
    free(rl->prefix);
    free(rl->host);
    free(rl->path);
    free(rl->password);
    free(rl);
    return NULL;
}

int aos_ratelimit_attach_loop(struct aos_ratelimit *rl, struct aos_loop *loop)
{
    if (!rl->redis_policy || rl_conn_find(rl, loop) != NULL)
        return 0;
    struct rl_conn **conns = realloc(rl->conns, (rl->nconns + 1) * sizeof *conns);
    if (conns == NULL)
        return -1;
    rl->conns = conns;
    struct rl_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -1;
    c->rl = rl;
    c->loop = loop;
    c->backoff_ms = RL_BACKOFF_MIN_MS;
    c->retry_ev = evtimer_new(aos_loop_base(loop), rl_on_retry, c);
    c->connect_ev = evtimer_new(aos_loop_base(loop), rl_on_connect_timeout, c);
    if (c->retry_ev == NULL || c->connect_ev == NULL) {
        if (c->retry_ev != NULL)
            event_free(c->retry_ev);
        if (c->connect_ev != NULL)
            event_free(c->connect_ev);
        free(c);
        return -1;
    }
    rl->conns[rl->nconns++] = c;
    rl_conn_connect(c);
    return 0;
}

void aos_ratelimit_free(struct aos_ratelimit *rl)
{
    if (rl == NULL)
        return;
    for (size_t i = 0; i < rl->nconns; i++) {
        struct rl_conn *c = rl->conns[i];
        c->closing = true;
        rl_conn_drop(c, "shutdown");
        event_free(c->retry_ev);
        event_free(c->connect_ev);
        free(c);
    }
    free(rl->conns);
    for (size_t i = 0; i < RL_SHARDS; i++) {
        struct rl_bucket *b, *tmp;
        HASH_ITER(hh, rl->shards[i].table, b, tmp)
        {
            HASH_DELETE(hh, rl->shards[i].table, b);
            free(b);
        }
        pthread_mutex_destroy(&rl->shards[i].mu);
    }
    pthread_rwlock_destroy(&rl->limits_lock);
    rl_limits_free(rl->limits);
    free(rl->prefix);
    free(rl->host);
    free(rl->path);
    free(rl->password);
    free(rl);
}

void aos_ratelimit_set_clock(struct aos_ratelimit *rl, aos_rl_clock_fn now_us, void *arg)
{
    rl->clock = now_us != NULL ? now_us : rl_clock_default;
    rl->clock_arg = arg;
}

int aos_ratelimit_set_prefix(struct aos_ratelimit *rl, const char *prefix)
{
    char *p = strdup(prefix);
    if (p == NULL)
        return -1;
    free(rl->prefix);
    rl->prefix = p;
    int n = snprintf(rl->client_name, sizeof rl->client_name, "aosd-rl:%s", prefix);
    bool ok = n > 0 && (size_t)n < sizeof rl->client_name;
    for (const char *c = prefix; ok && *c; c++)
        ok = *c > ' ' && *c < 127;
    if (!ok)
        rl->client_name[0] = '\0';
    return 0;
}

void aos_ratelimit_set_max_buckets(struct aos_ratelimit *rl, size_t max)
{
    size_t per = max / RL_SHARDS;
    rl->shard_cap = per < RL_MAX_KEYS ? RL_MAX_KEYS : per;
}

void aos_ratelimit_set_timeout(struct aos_ratelimit *rl, double seconds)
{
    rl->timeout = seconds > 0 ? seconds : rl->connect_timeout;
}

bool aos_ratelimit_redis_up(struct aos_ratelimit *rl, struct aos_loop *loop)
{
    struct rl_conn *c = rl_conn_find(rl, loop);
    return c != NULL && c->ac != NULL && c->up;
}
