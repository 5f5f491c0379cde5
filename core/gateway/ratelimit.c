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

#include "core/fmt.h"
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
/* Part of every Redis key: a bucket's layout changed (hash -> "units:last"
 * string), so nodes of two versions sharing a Redis during a rolling
 * upgrade each count in their own keys instead of failing on each other's
 * (WRONGTYPE). */
#define RL_KEY_VERSION "2:"
/* Drained batches a loop keeps for reuse (most recent): a client sending
 * one request at a time then costs a hash lookup, not an allocation, a
 * timer and a hash insert and delete per check. */
#define RL_IDLE_BATCHES 64

enum rl_fail { RL_FAIL_OPEN = 0, RL_FAIL_CLOSED = 1, RL_FAIL_LOCAL = 2 };

static const char *const rl_fail_names[] = {"open", "closed", "local"};
static const char *const rl_class_names[] = {"read", "write"};
static const char rl_class_tags[] = {'r', 'w'};

/* KEYS: buckets; ARGV: burst, per_minute, ttl_ms, n (checks in this
 * call).  Same arithmetic as rl_local_take(), for n checks at one instant:
 * k = how many of them get a token from every key (0..n), and the lowest
 * bucket after taking k.  Returns {k, lowest units}.  A bucket is one
 * string "units:last_us" written with its expiry (SET PX: a key expires
 * when its bucket would be full again, the same as absent), so a call is
 * TIME, one MGET and, when something is taken, one SET per key -- four
 * redis.call for the usual two keys, where the hash layout took seven.
 * Something else under our key is an error (WRONGTYPE), never overwritten.
 * Integers stay below 2^53, so Lua's doubles are exact; %.0f because Lua's
 * own number->string conversion keeps 14 digits only. */
static const char rl_script[] =
    "local unit = 60000000\n"
    "local cap = tonumber(ARGV[1]) * unit\n"
    "local rate = tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local v = redis.call('MGET', unpack(KEYS))\n"
    "local low = cap\n"
    "for i = 1, #KEYS do\n"
    "  local u = cap\n"
    "  if v[i] then\n"
    "    local a, b = string.match(v[i], '^(%d+):(%d+)$')\n"
    "    if not a then\n"
    "      return redis.error_reply('WRONGTYPE not a rate-limit bucket: ' .. KEYS[i])\n"
    "    end\n"
    "    u = tonumber(a)\n"
    "    local last = tonumber(b)\n"
    "    if now > last then u = u + (now - last) * rate end\n"
    "    if u > cap then u = cap end\n"
    "  end\n"
    "  v[i] = u\n"
    "  if u < low then low = u end\n"
    "end\n"
    "local k = math.floor(low / unit)\n"
    "local n = tonumber(ARGV[4])\n"
    "if k > n then k = n end\n"
    "if k > 0 then\n"
    "  local take = k * unit\n"
    "  local ts = string.format(':%.0f', now)\n"
    "  for i = 1, #KEYS do\n"
    "    redis.call('SET', KEYS[i], string.format('%.0f', v[i] - take) .. ts, 'PX', ARGV[3])\n"
    "  end\n"
    "end\n"
    "return {k, string.format('%.0f', low - k * unit)}\n";

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
    struct rl_batch *batches;                 /* by key set and rate: at most one call each in flight */
    struct event *flush_ev;                   /* end of this loop iteration: send what waits */
    struct rl_batch *flush_head, *flush_tail; /* batches with checks to send, oldest first */
    struct rl_batch *idle;                    /* drained batches, least recently used first */
    size_t nidle;
    struct rl_batch *last; /* the batch of the latest check: most checks repeat it, a memcmp
                            * instead of hashing the whole key set */
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
    char *kprefix;        /* prefix + RL_KEY_VERSION: where the buckets live */
    char client_name[96]; /* "aosd-rl:<prefix>", or "" when the prefix has no valid name */
    char sha[41];
    atomic_bool redis_down;
    struct rl_conn **conns;
    size_t nconns;
    atomic_uint_fast64_t calls; /* script calls sent (tests, benchmarks) */
};

/* One check waiting for Redis. */
struct rl_wait {
    struct rl_wait *next;
    aos_rl_done_fn done;
    void *arg;
    int fail;
};

/* The checks of one loop for one key set and rate.  Those that arrive
 * while a call for the set is in flight (or in the same loop iteration)
 * wait in `pend` and go as ONE script call with cost n when it returns:
 * Redis runs the script once per call, not once per check, and the first
 * k in arrival order get the k tokens there were -- what n calls in a row
 * would have answered, without n round trips of Lua. */
struct rl_batch {
    UT_hash_handle hh; /* in conn->batches, by id[0..idlen) */
    struct rl_conn *conn;
    struct rl_batch *flush_next;
    struct rl_batch *idle_prev, *idle_next; /* on conn->idle while drained */
    struct event *timer;                    /* the call in flight */
    enum aos_rl_class cls;
    struct aos_rate rate;
    struct rl_wait *pend, **pend_tail; /* not sent yet, arrival order */
    size_t npend;
    struct rl_wait *fly; /* in the call in flight; NULL once answered */
    size_t nfly;
    bool inflight; /* a call is in flight (its reply callback has not run) */
    bool queued;   /* on conn's flush list */
    bool idle;     /* on conn's idle list */
    bool sent_eval;
    size_t nkeys;
    size_t plen;  /* keys[i] + plen is the local bucket key */
    char **keys;  /* Redis keys, pointing into id */
    size_t idlen; /* id = burst, per_minute, then the keys with their NULs */
    char *id;
    char burst_s[16], rate_s[16], ttl_s[24], nkeys_s[24];
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

static void rl_on_reply(redisAsyncContext *ac, void *reply_, void *privdata);
static void rl_on_batch_timeout(evutil_socket_t fd, short what, void *arg);

static void rl_fmt_int(char *out, int64_t v)
{
    size_t n = 0;
    if (v < 0) {
        out[n++] = '-';
        v = -v;
    }
    n += aos_fmt_u64(out + n, (uint64_t)v);
    out[n] = '\0';
}

/* Answers a detached list of checks by their redis_fail, and frees it. */
static void rl_waits_down(struct rl_batch *b, struct rl_wait *w)
{
    struct aos_ratelimit *rl = b->conn->rl;
    while (w != NULL) {
        struct rl_wait *next = w->next;
        rl_answer_down(rl, w->fail, b->cls, b->rate, b->keys, b->nkeys, b->plen, w->done, w->arg);
        free(w);
        w = next;
    }
}

/* Detaches before answering: a done callback may start another check,
 * which then joins this batch's `pend` (never the list being answered). */
static void rl_batch_fly_down(struct rl_batch *b)
{
    struct rl_wait *w = b->fly;
    b->fly = NULL;
    b->nfly = 0;
    rl_waits_down(b, w);
}

static void rl_batch_pend_down(struct rl_batch *b)
{
    struct rl_wait *w = b->pend;
    b->pend = NULL;
    b->pend_tail = &b->pend;
    b->npend = 0;
    rl_waits_down(b, w);
}

static void rl_batch_free(struct rl_batch *b)
{
    struct rl_conn *c = b->conn;
    if (b->idle) {
        DL_DELETE2(c->idle, b, idle_prev, idle_next);
        c->nidle--;
    }
    if (c->last == b)
        c->last = NULL;
    HASH_DELETE(hh, c->batches, b);
    event_free(b->timer);
    free(b);
}

/* A drained batch goes to the idle list; the least recent beyond
 * RL_IDLE_BATCHES is freed. */
static void rl_batch_maybe_free(struct rl_batch *b)
{
    struct rl_conn *c = b->conn;
    if (b->inflight || b->queued || b->npend > 0 || b->idle)
        return;
    b->idle = true;
    DL_APPEND2(c->idle, b, idle_prev, idle_next);
    if (++c->nidle > RL_IDLE_BATCHES)
        rl_batch_free(c->idle);
}

/* Sends at the end of this loop iteration, so the checks of the same
 * iteration share the call.  hiredis writes only when the loop polls the
 * socket again anyway: a lone check leaves as early as it did uncoalesced. */
static void rl_batch_queue(struct rl_batch *b)
{
    struct rl_conn *c = b->conn;
    if (b->queued)
        return;
    b->queued = true;
    b->flush_next = NULL;
    if (c->flush_tail != NULL) {
        c->flush_tail->flush_next = b; /* the flush is already due */
    } else {
        c->flush_head = b;
        event_active(c->flush_ev, EV_TIMEOUT, 0);
    }
    c->flush_tail = b;
}

/* The command in RESP, built here: hiredis's printf-style formatting was
 * most of the client-side cost of a Redis check. */
static int rl_batch_send(struct rl_batch *b, redisAsyncContext *ac, bool eval)
{
    const char *argv[RL_MAX_KEYS + 7];
    size_t lens[RL_MAX_KEYS + 7];
    char n_s[24];
    int argc = 0;
    rl_fmt_int(n_s, (int64_t)b->nfly);
    argv[argc++] = eval ? "EVAL" : "EVALSHA";
    argv[argc++] = eval ? rl_script : b->conn->rl->sha;
    argv[argc++] = b->nkeys_s;
    for (size_t i = 0; i < b->nkeys; i++)
        argv[argc++] = b->keys[i];
    argv[argc++] = b->burst_s;
    argv[argc++] = b->rate_s;
    argv[argc++] = b->ttl_s;
    argv[argc++] = n_s;
    /* + 1: hiredis 0.14 reads the formatted command with strchr()
     * (nextArgument in __redisAsyncCommand), so it must end in a NUL that
     * is not part of the command. */
    size_t total = 1 + 20 + 2 + 1;
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
    n += aos_fmt_u64(buf + n, (uint64_t)argc);
    buf[n++] = '\r';
    buf[n++] = '\n';
    for (int i = 0; i < argc; i++) {
        buf[n++] = '$';
        n += aos_fmt_u64(buf + n, lens[i]);
        buf[n++] = '\r';
        buf[n++] = '\n';
        memcpy(buf + n, argv[i], lens[i]);
        n += lens[i];
        buf[n++] = '\r';
        buf[n++] = '\n';
    }
    buf[n] = '\0';
    int rc = redisAsyncFormattedCommand(ac, rl_on_reply, b, buf, n) == REDIS_OK ? 0 : -1;
    if (buf != stack)
        free(buf);
    if (rc == 0)
        atomic_fetch_add_explicit(&b->conn->rl->calls, 1, memory_order_relaxed);
    return rc;
}

/* Everything waiting becomes the call in flight. */
static void rl_batch_start(struct rl_batch *b)
{
    struct rl_conn *c = b->conn;
    b->fly = b->pend;
    b->nfly = b->npend;
    b->pend = NULL;
    b->pend_tail = &b->pend;
    b->npend = 0;
    b->sent_eval = false;
    if (rl_batch_send(b, c->ac, false) != 0) {
        rl_batch_fly_down(b);
        return;
    }
    b->inflight = true;
    double t = c->rl->timeout;
    struct timeval tv = {(time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6)};
    evtimer_add(b->timer, &tv);
}

static void rl_on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct rl_conn *c = arg;
    struct rl_batch *b;
    (void)fd;
    (void)what;
    while ((b = c->flush_head) != NULL) {
        c->flush_head = b->flush_next;
        if (c->flush_head == NULL)
            c->flush_tail = NULL;
        b->queued = false;
        if (!b->inflight && b->npend > 0) {
            if (c->ac != NULL)
                rl_batch_start(b);
            else
                rl_batch_pend_down(b);
        }
        rl_batch_maybe_free(b);
    }
}

/* Answers the call in flight from a well-formed reply {k, lowest units
 * after taking k}: the first k checks (arrival order) each took a token,
 * the i-th seeing the buckets as they were right after its own take; the
 * others were refused and see them after all k.  False if the reply is
 * anything else. */
static bool rl_batch_answer(struct rl_batch *b, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[1]->type != REDIS_REPLY_STRING)
        return false;
    long long k = reply->element[0]->integer;
    if (k < 0 || (unsigned long long)k > b->nfly)
        return false;
    char *end;
    errno = 0;
    long long low = strtoll(reply->element[1]->str, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    struct rl_wait *w = b->fly;
    b->fly = NULL;
    b->nfly = 0;
    for (long long i = 0; w != NULL; i++) {
        struct rl_wait *next = w->next;
        struct aos_rl_result r;
        bool ok = i < k;
        rl_fill(&r, b->cls, b->rate, ok, ok ? low + (k - 1 - i) * RL_UNIT : low);
        w->done(w->arg, &r);
        free(w);
        w = next;
    }
    return true;
}

static void rl_on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    redisReply *reply = reply_;
    struct rl_batch *b = privdata;
    struct rl_conn *c = b->conn;

    if (reply == NULL) {
        /* The context is being freed (connection lost, or we dropped it). */
        if (c->ac == ac)
            rl_conn_lost(c, ac->errstr[0] ? ac->errstr : "connection lost");
    } else if (b->fly != NULL) {
        if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0 && !b->sent_eval &&
            c->ac == ac) {
            /* The script cache was flushed (or Redis restarted): EVAL this
             * call and load it again for the next ones. */
            b->sent_eval = true;
            if (rl_send_script_load(ac) == REDIS_OK && rl_batch_send(b, ac, true) == 0)
                return;
        } else if (!rl_batch_answer(b, reply) && c->ac == ac) {
            /* NOAUTH, READONLY after a failover, BUSY, OOM, WRONGTYPE...:
             * this server cannot count for us now.  Dropping the connection
             * logs once and retries with backoff, instead of one warning
             * per request.  (Inside a callback hiredis defers the free.) */
            rl_conn_drop(c, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply to the script");
        }
    }
    evtimer_del(b->timer);
    b->inflight = false;
    rl_batch_fly_down(b); /* no-op when answered */
    if (b->npend > 0) {
        if (c->ac != NULL)
            rl_batch_queue(b);
        else
            rl_batch_pend_down(b);
    }
    rl_batch_maybe_free(b);
}

static void rl_on_batch_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct rl_batch *b = arg;
    struct rl_conn *c = b->conn;
    (void)fd;
    (void)what;
    rl_batch_fly_down(b);
    /* A Redis that does not answer in time is down: dropping the context
     * answers every queued check now instead of each waiting its turn.
     * The drop runs this call's reply callback, which may free b. */
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

/* This loop's batch for the key set keys[0..nkeys) (contiguous, as
 * rl_keys_build lays them out) at this rate; made when there is none.
 * NULL: out of memory. */
static struct rl_batch *rl_batch_get(struct rl_conn *c, enum aos_rl_class cls, struct aos_rate rate,
                                     char *const *keys, size_t nkeys)
{
    const char *kbeg = keys[0];
    const char *kend = keys[nkeys - 1] + strlen(keys[nkeys - 1]) + 1;
    size_t klen = (size_t)(kend - kbeg);
    size_t idlen = 2 * sizeof(int) + klen;
    char stack[512];
    char *id = idlen <= sizeof stack ? stack : malloc(idlen);
    struct rl_batch *b = NULL;
    if (id == NULL)
        return NULL;
    memcpy(id, &rate.burst, sizeof(int));
    memcpy(id + sizeof(int), &rate.per_minute, sizeof(int));
    memcpy(id + 2 * sizeof(int), kbeg, klen);
    if (c->last != NULL && c->last->idlen == idlen && memcmp(c->last->id, id, idlen) == 0)
        b = c->last;
    else
        HASH_FIND(hh, c->batches, id, idlen, b);
    if (b != NULL) {
        c->last = b;
        if (b->idle) {
            DL_DELETE2(c->idle, b, idle_prev, idle_next);
            c->nidle--;
            b->idle = false;
        }
        goto out;
    }
    b = malloc(sizeof *b + nkeys * sizeof(char *) + idlen);
    if (b == NULL)
        goto out;
    memset(b, 0, sizeof *b);
    b->timer = evtimer_new(aos_loop_base(c->loop), rl_on_batch_timeout, b);
    if (b->timer == NULL) {
        free(b);
        b = NULL;
        goto out;
    }
    b->conn = c;
    b->cls = cls;
    b->rate = rate;
    b->pend_tail = &b->pend;
    b->nkeys = nkeys;
    b->plen = strlen(c->rl->kprefix);
    b->keys = (char **)(b + 1);
    b->id = (char *)(b->keys + nkeys);
    b->idlen = idlen;
    memcpy(b->id, id, idlen);
    for (size_t i = 0; i < nkeys; i++)
        b->keys[i] = b->id + 2 * sizeof(int) + (size_t)(keys[i] - kbeg);
    int64_t ttl_ms =
        rate.per_minute > 0 ? ceil_div((int64_t)rate.burst * 60000, rate.per_minute) + 1000 : 86400000;
    rl_fmt_int(b->nkeys_s, (int64_t)nkeys);
    rl_fmt_int(b->burst_s, rate.burst);
    rl_fmt_int(b->rate_s, rate.per_minute);
    rl_fmt_int(b->ttl_s, ttl_ms);
    HASH_ADD_KEYPTR(hh, c->batches, b->id, b->idlen, b);
    c->last = b;
out:
    if (id != stack)
        free(id);
    return b;
}

static void rl_check_redis(struct aos_ratelimit *rl, struct aos_loop *loop, enum aos_rl_class cls,
                           struct aos_rate rate, int fail, const char *const *keys, size_t nkeys,
                           aos_rl_done_fn done, void *arg)
{
    struct rl_conn *c = rl_conn_find(rl, loop);
    size_t n, plen = strlen(rl->kprefix);
    /* Pointers first: keep the block aligned for them. */
    _Alignas(char *) char stack[1024];
    char **k = rl_keys_build(rl->kprefix, cls, keys, nkeys, &n, stack, sizeof stack);
    struct aos_rl_result r;
    if (k == NULL) {
        /* Out of memory: no keys to fall back on; answer by the mode. */
        rl_fill(&r, cls, rate, fail != RL_FAIL_CLOSED, (int64_t)rate.burst * RL_UNIT);
        r.degraded = true;
        r.unavailable = fail == RL_FAIL_CLOSED;
        done(arg, &r);
        return;
    }
    if (n == 0) {
        rl_fill(&r, cls, rate, true, (int64_t)rate.burst * RL_UNIT);
        done(arg, &r);
    } else if (c == NULL || c->ac == NULL) {
        rl_answer_down(rl, fail, cls, rate, k, n, plen, done, arg);
    } else {
        struct rl_wait *w = malloc(sizeof *w);
        struct rl_batch *b = w != NULL ? rl_batch_get(c, cls, rate, k, n) : NULL;
        if (b == NULL) {
            free(w);
            rl_answer_down(rl, fail, cls, rate, k, n, plen, done, arg);
        } else {
            w->next = NULL;
            w->done = done;
            w->arg = arg;
            w->fail = fail;
            *b->pend_tail = w;
            b->pend_tail = &w->next;
            b->npend++;
            if (!b->inflight)
                rl_batch_queue(b);
        }
    }
    if ((void *)k != (void *)stack)
        free(k);
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
    atomic_init(&rl->calls, 0);
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
    free(rl->kprefix);
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
    c->flush_ev = event_new(aos_loop_base(loop), -1, 0, rl_on_flush, c);
    if (c->retry_ev == NULL || c->connect_ev == NULL || c->flush_ev == NULL) {
        if (c->retry_ev != NULL)
            event_free(c->retry_ev);
        if (c->connect_ev != NULL)
            event_free(c->connect_ev);
        if (c->flush_ev != NULL)
            event_free(c->flush_ev);
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
        /* Calls in flight are answered (by redis_fail) as hiredis frees the
         * context; then what still waits for the end of an iteration. */
        rl_conn_drop(c, "shutdown");
        struct rl_batch *b, *tmp;
        HASH_ITER(hh, c->batches, b, tmp)
        {
            rl_batch_pend_down(b);
            rl_batch_free(b);
        }
        c->flush_head = c->flush_tail = NULL;
        event_free(c->flush_ev);
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
    free(rl->kprefix);
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
    size_t len = strlen(prefix);
    char *p = strdup(prefix);
    char *kp = malloc(len + sizeof RL_KEY_VERSION);
    if (p == NULL || kp == NULL) {
        free(p);
        free(kp);
        return -1;
    }
    memcpy(kp, prefix, len);
    memcpy(kp + len, RL_KEY_VERSION, sizeof RL_KEY_VERSION);
    free(rl->prefix);
    free(rl->kprefix);
    rl->prefix = p;
    rl->kprefix = kp;
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

uint64_t aos_ratelimit_redis_calls(struct aos_ratelimit *rl)
{
    return (uint64_t)atomic_load_explicit(&rl->calls, memory_order_relaxed);
}
