#include "config.h"
/*
 * The store: a pool of driver connections, transactions on them, and the
 * availability state that /readyz and the HTTP 503s report.
 *
 * Pool.  store.pool_size slots, filled lazily: a connection is opened when
 * no idle one is left, and replaced when the driver says it is broken, when
 * it is handed back inside a transaction it could not end, or when it
 * predates an outage (the epoch below).  A caller that finds every slot
 * lent out waits on a condition variable up to store.busy_timeout, then
 * gets AOS_DB_UNAVAILABLE ("all N connections busy"): the answer to
 * overload is the same 503 + Retry-After as to an outage, but it leaves
 * the availability state alone (the database is fine) and
 * aos_store_transact does not retry it (a retry would only wait again).
 *
 * SQLite writers.  WAL lets readers run beside one writer; two writers
 * would meet in SQLite's busy handler, which sleeps and polls (PLATFORM-
 * NOTES §12 measured stalls of seconds with 2-4 writer connections).  So a
 * write transaction first takes the store's writer token (handed to one
 * waiter at a time, bounded by busy_timeout -> AOS_DB_RETRY), then a
 * connection, then BEGIN IMMEDIATE.  The busy timeout then only matters
 * against other processes using the same file (aosctl, --migrate).
 * Read transactions are BEGIN DEFERRED with PRAGMA query_only, PostgreSQL
 * ones BEGIN READ ONLY: a write in a read transaction fails on both.
 *
 * Availability.  Any AOS_DB_UNAVAILABLE from the driver marks the store
 * down with the driver's message (which never holds secrets) and bumps the
 * epoch so idle connections from before the outage are dropped instead of
 * failing one request each.  While down, one caller per backoff interval
 * (100 ms doubling to 5 s) is let through to try a fresh connection; every
 * other call fails at once with AOS_DB_UNAVAILABLE, so requests never queue
 * behind connect timeouts.  The first statement that succeeds marks the
 * store up again.  An idle connection that turns out dead at BEGIN (server
 * restarted, proxy timed it out) is replaced once before giving up, since
 * nothing has run on it yet.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "log.h"
#include "store/store.h"

#define NS_PER_MS INT64_C(1000000)
#define NS_PER_S INT64_C(1000000000)
#define BACKOFF_MIN_NS (100 * NS_PER_MS)
#define BACKOFF_MAX_NS (5 * NS_PER_S)
#define TRANSACT_ATTEMPTS 5
#define TRANSACT_BASE_NS (2 * NS_PER_MS)

enum { STATE_UNKNOWN = 0, STATE_UP = 1, STATE_DOWN = 2 };

struct slot {
    struct aos_db_conn *conn; /* NULL: empty */
    unsigned epoch;           /* store epoch when conn was opened */
    int query_only;           /* sqlite: PRAGMA query_only as last set; -1 unknown */
    bool in_use;
};

struct aos_store {
    struct aos_conf_store conf; /* deep copy; conninfo is wiped on free */
    const struct aos_db_driver *drv;
    bool sqlite;

    pthread_mutex_t mu;
    pthread_cond_t cv;        /* CLOCK_MONOTONIC; a slot was handed back */
    pthread_cond_t writer_cv; /* CLOCK_MONOTONIC; the writer token was handed back */
    size_t nslots;
    struct slot *slots;
    unsigned epoch;
    bool writer_busy; /* sqlite: the writer token */

    atomic_int state;
    char reason[256];
    int64_t next_attempt_ns;
    int64_t backoff_ns;
    struct aos_store_stats stats;
};

struct aos_store_tx {
    struct aos_store *store;
    size_t slot;
    struct aos_db_conn *conn;
    bool write;
    bool holds_writer;
    bool discard;    /* the connection must not go back to the pool */
    int fail_status; /* first failure inside the transaction, 0 if none */
    char fail_msg[256];
};

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    /* A truncated message is still a message: nothing to recover. */
    (void)vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static struct timespec to_timespec(int64_t ns)
{
    struct timespec ts = {.tv_sec = (time_t)(ns / NS_PER_S), .tv_nsec = (long)(ns % NS_PER_S)};
    return ts;
}

static int64_t busy_ns(const struct aos_store *s)
{
    double t = s->conf.busy_timeout;
    if (!(t > 0))
        return 0;
    if (t > 3600)
        t = 3600;
    return (int64_t)(t * 1e9);
}

/* Uniform in [lo, hi]: jitter so retrying transactions don't collide in
 * lockstep.  getrandom, not rand(): thread-safe and not seeded by time. */
static int64_t jitter_ns(int64_t lo, int64_t hi)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (uint64_t)now_ns() * 0x9E3779B97F4A7C15ULL;
    if (hi <= lo)
        return lo;
    return lo + (int64_t)(r % (uint64_t)(hi - lo + 1));
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = to_timespec(ns);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

struct aos_store *aos_store_new(const struct aos_conf_store *conf)
{
    struct aos_store *s = NULL;
    pthread_condattr_t ca;
    bool ca_init = false, mu_init = false;

    if (conf == NULL || conf->driver == NULL)
        return NULL;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    if (strcmp(conf->driver, "sqlite") == 0) {
        s->drv = &aos_db_sqlite;
        s->sqlite = true;
    } else if (strcmp(conf->driver, "pgsql") == 0) {
        s->drv = &aos_db_pgsql;
    } else {
        goto fail;
    }
    s->conf = *conf;
    s->conf.driver = dup_or_empty(conf->driver);
    s->conf.path = dup_or_empty(conf->path);
    s->conf.conninfo = dup_or_empty(conf->conninfo);
    if (s->conf.driver == NULL || s->conf.path == NULL || s->conf.conninfo == NULL)
        goto fail;
    s->nslots = conf->pool_size > 0 ? (size_t)conf->pool_size : 1;
    s->slots = calloc(s->nslots, sizeof *s->slots);
    if (s->slots == NULL)
        goto fail;
    if (pthread_mutex_init(&s->mu, NULL) != 0)
        goto fail;
    mu_init = true;
    if (pthread_condattr_init(&ca) != 0)
        goto fail;
    ca_init = true;
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&s->cv, &ca) != 0)
        goto fail;
    if (pthread_cond_init(&s->writer_cv, &ca) != 0) {
        pthread_cond_destroy(&s->cv);
        goto fail;
    }
    pthread_condattr_destroy(&ca);
    atomic_init(&s->state, STATE_UNKNOWN);
    snprintf(s->reason, sizeof s->reason, "not connected yet");
    s->backoff_ns = BACKOFF_MIN_NS;
    return s;
fail:
    if (ca_init)
        pthread_condattr_destroy(&ca);
    if (mu_init)
        pthread_mutex_destroy(&s->mu);
    free(s->slots);
    free(s->conf.driver);
    free(s->conf.path);
    free(s->conf.conninfo);
    free(s);
    return NULL;
}

void aos_store_free(struct aos_store *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nslots; i++) {
        aos_assert(!s->slots[i].in_use);
        if (s->slots[i].conn != NULL)
            s->drv->disconnect(s->slots[i].conn);
    }
    aos_assert(!s->writer_busy);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->writer_cv);
    pthread_mutex_destroy(&s->mu);
    free(s->slots);
    free(s->conf.driver);
    free(s->conf.path);
    explicit_bzero(s->conf.conninfo, strlen(s->conf.conninfo));
    free(s->conf.conninfo);
    free(s);
}

const char *aos_store_driver_name(const struct aos_store *s) { return s->drv->name; }

bool aos_store_is_pgsql(const struct aos_store *s) { return !s->sqlite; }

/* ------------------------------------------------------------ availability */

static void mark_down(struct aos_store *s, const char *why)
{
    bool changed;
    pthread_mutex_lock(&s->mu);
    changed = atomic_load(&s->state) != STATE_DOWN;
    if (changed) {
        s->backoff_ns = BACKOFF_MIN_NS;
        s->next_attempt_ns = now_ns() + BACKOFF_MIN_NS;
    }
    atomic_store(&s->state, STATE_DOWN);
    s->epoch++;
    snprintf(s->reason, sizeof s->reason, "%s", why && *why ? why : "database unavailable");
    pthread_mutex_unlock(&s->mu);
    if (changed)
        aos_log(AOS_LVL_WARN, "store unavailable", "driver", s->drv->name, "reason", why, NULL);
}

static void mark_up(struct aos_store *s)
{
    if (atomic_load_explicit(&s->state, memory_order_relaxed) == STATE_UP)
        return;
    int was;
    pthread_mutex_lock(&s->mu);
    was = atomic_load(&s->state);
    atomic_store(&s->state, STATE_UP);
    s->reason[0] = '\0';
    s->backoff_ns = BACKOFF_MIN_NS;
    pthread_mutex_unlock(&s->mu);
    if (was == STATE_DOWN)
        aos_log(AOS_LVL_INFO, "store available again", "driver", s->drv->name, NULL);
}

/* The database answered (even with a constraint error or a conflict):
 * it is reachable. */
static void note(struct aos_store *s, int rc, const char *err)
{
    if (rc == AOS_DB_UNAVAILABLE)
        mark_down(s, err);
    else if (rc == AOS_DB_OK || rc == AOS_DB_CONSTRAINT || rc == AOS_DB_RETRY)
        mark_up(s);
}

/* While down, lets one caller per backoff interval through and fails the
 * others at once. */
static int gate(struct aos_store *s, char *err, size_t errlen)
{
    if (atomic_load_explicit(&s->state, memory_order_relaxed) != STATE_DOWN)
        return AOS_DB_OK;
    int rc = AOS_DB_OK;
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->state) == STATE_DOWN) {
        int64_t now = now_ns();
        if (now < s->next_attempt_ns) {
            s->stats.fast_failures++;
            set_err(err, errlen, "database unavailable: %s", s->reason);
            rc = AOS_DB_UNAVAILABLE;
        } else {
            s->backoff_ns = s->backoff_ns * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : s->backoff_ns * 2;
            s->next_attempt_ns = now + s->backoff_ns;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

bool aos_store_available(struct aos_store *s) { return atomic_load(&s->state) == STATE_UP; }

void aos_store_unavailable_reason(struct aos_store *s, char *buf, size_t len)
{
    if (len == 0)
        return;
    pthread_mutex_lock(&s->mu);
    snprintf(buf, len, "%s", atomic_load(&s->state) == STATE_UP ? "" : s->reason);
    pthread_mutex_unlock(&s->mu);
}

unsigned aos_store_retry_after(struct aos_store *s)
{
    int64_t wait = 0;
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->state) == STATE_DOWN)
        wait = s->next_attempt_ns - now_ns();
    pthread_mutex_unlock(&s->mu);
    if (wait <= NS_PER_S)
        return 1;
    return (unsigned)((wait + NS_PER_S - 1) / NS_PER_S);
}

void aos_store_get_stats(struct aos_store *s, struct aos_store_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->open = 0;
    out->in_use = 0;
    for (size_t i = 0; i < s->nslots; i++) {
        out->open += s->slots[i].conn != NULL;
        out->in_use += s->slots[i].in_use;
    }
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------ pool */

/* Waits for cv until deadline; false on timeout.  Called locked. */
static bool wait_until(struct aos_store *s, pthread_cond_t *cv, int64_t deadline)
{
    if (now_ns() >= deadline)
        return false;
    struct timespec ts = to_timespec(deadline);
    int rc = pthread_cond_timedwait(cv, &s->mu, &ts);
    return rc != ETIMEDOUT || now_ns() < deadline;
}

static int writer_take(struct aos_store *s, int64_t deadline, char *err, size_t errlen)
{
    int rc = AOS_DB_OK;
    pthread_mutex_lock(&s->mu);
    while (s->writer_busy) {
        /* On a timeout, look once more: a signal may have raced it. */
        if (!wait_until(s, &s->writer_cv, deadline) && s->writer_busy) {
            set_err(err, errlen,
                    "sqlite: another write transaction held the database for the whole "
                    "store.busy_timeout (%gs)",
                    s->conf.busy_timeout);
            rc = AOS_DB_RETRY;
            goto out;
        }
    }
    s->writer_busy = true;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void writer_give(struct aos_store *s)
{
    pthread_mutex_lock(&s->mu);
    s->writer_busy = false;
    /* One waiter can take it: waking them all would only make the others
     * go back to sleep. */
    pthread_cond_signal(&s->writer_cv);
    pthread_mutex_unlock(&s->mu);
}

/* Lends a connection: an idle one if any, else opens one in a free slot,
 * else waits.  *fresh tells whether it was opened just now.  An idle
 * connection already in the wanted query_only mode (>= 0: SQLite) is
 * preferred: switching the pragma expires every statement the connection
 * has prepared, and re-preparing them was a fifth of a checkpoint's CPU
 * (BENCHMARKS.md, "Engine throughput"). */
static int acquire(struct aos_store *s, int64_t deadline, int want_query_only, size_t *slotp, bool *fresh,
                   char *err, size_t errlen)
{
    struct aos_db_conn *stale = NULL;
    size_t idx = SIZE_MAX;
    bool timed_out = false;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (int pass = want_query_only >= 0 ? 0 : 1; pass < 2 && idx == SIZE_MAX; pass++) {
            for (size_t i = 0; i < s->nslots && idx == SIZE_MAX; i++) {
                struct slot *sl = &s->slots[i];
                if (sl->in_use || sl->conn == NULL || (pass == 0 && sl->query_only != want_query_only))
                    continue;
                sl->in_use = true;
                if (sl->epoch != s->epoch || !s->drv->healthy(sl->conn)) {
                    stale = sl->conn; /* reopen in this slot, outside the lock */
                    sl->conn = NULL;
                }
                idx = i;
            }
        }
        for (size_t i = 0; i < s->nslots && idx == SIZE_MAX; i++) {
            if (!s->slots[i].in_use && s->slots[i].conn == NULL) {
                s->slots[i].in_use = true;
                idx = i;
            }
        }
        if (idx != SIZE_MAX)
            break;
        if (timed_out) {
            s->stats.pool_timeouts++;
            pthread_mutex_unlock(&s->mu);
            set_err(err, errlen, "all %zu database connections stayed busy for store.busy_timeout (%gs)",
                    s->nslots, s->conf.busy_timeout);
            return AOS_DB_UNAVAILABLE;
        }
        /* After a timeout, scan once more: a signal may have raced it. */
        timed_out = !wait_until(s, &s->cv, deadline);
    }
    struct slot *sl = &s->slots[idx];
    unsigned epoch = s->epoch;
    bool have = sl->conn != NULL;
    pthread_mutex_unlock(&s->mu);

    if (stale != NULL)
        s->drv->disconnect(stale);
    *slotp = idx;
    *fresh = !have;
    if (have)
        return AOS_DB_OK;

    struct aos_db_conn *c = NULL;
    int rc = s->drv->connect(&s->conf, &c, err, errlen);
    pthread_mutex_lock(&s->mu);
    if (rc == AOS_DB_OK) {
        sl->conn = c;
        sl->epoch = epoch;
        sl->query_only = -1;
        s->stats.connects++;
    } else {
        sl->in_use = false;
        s->stats.connect_failures++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != AOS_DB_OK)
        note(s, rc, err);
    return rc;
}

/* Hands a connection back; closes it if it cannot be trusted. */
static void release(struct aos_store *s, size_t idx, bool discard)
{
    struct aos_db_conn *close_it = NULL;
    pthread_mutex_lock(&s->mu);
    struct slot *sl = &s->slots[idx];
    aos_assert(sl->in_use);
    if (sl->conn != NULL && (discard || sl->epoch != s->epoch || !s->drv->healthy(sl->conn) ||
                             s->drv->in_transaction(sl->conn))) {
        close_it = sl->conn;
        sl->conn = NULL;
    }
    sl->in_use = false;
    pthread_cond_signal(&s->cv); /* one slot: one waiter */
    pthread_mutex_unlock(&s->mu);
    if (close_it != NULL)
        s->drv->disconnect(close_it);
}

/* Runs one bookkeeping statement (BEGIN, SELECT 1, ...) without results. */
static int run(struct aos_store *s, struct aos_db_conn *c, const char *sql, char *err, size_t errlen)
{
    return s->drv->exec(c, sql, NULL, 0, NULL, err, errlen);
}

/* Lends a connection and runs `first` on it, after setting PRAGMA
 * query_only when asked (SQLite, query_only >= 0).  An idle connection that proves dead is replaced
 * once: nothing ran on it, so trying again is safe. */
static int acquire_and_run(struct aos_store *s, int64_t deadline, const char *first, int query_only,
                           size_t *slotp, char *err, size_t errlen)
{
    int rc = AOS_DB_ERROR;
    for (int attempt = 0; attempt < 2; attempt++) {
        bool fresh = false;
        size_t idx;
        if ((rc = acquire(s, deadline, query_only, &idx, &fresh, err, errlen)) != AOS_DB_OK)
            return rc;
        struct aos_db_conn *c = s->slots[idx].conn;
        rc = AOS_DB_OK;
        /* Before BEGIN: under query_only even BEGIN IMMEDIATE fails. */
        if (query_only >= 0 && s->slots[idx].query_only != query_only) {
            rc = run(s, c, query_only ? "PRAGMA query_only=1" : "PRAGMA query_only=0", err, errlen);
            if (rc == AOS_DB_OK)
                s->slots[idx].query_only = query_only; /* the slot is ours: no lock needed */
        }
        if (rc == AOS_DB_OK)
            rc = run(s, c, first, err, errlen);
        if (rc == AOS_DB_OK) {
            note(s, rc, err);
            *slotp = idx;
            return AOS_DB_OK;
        }
        if (s->drv->in_transaction(c) && run(s, c, "ROLLBACK", NULL, 0) != AOS_DB_OK)
            release(s, idx, true);
        else
            release(s, idx, rc == AOS_DB_UNAVAILABLE);
        if (rc == AOS_DB_UNAVAILABLE && !fresh && attempt == 0) {
            /* Its idle siblings are most likely dead too: drop them all. */
            pthread_mutex_lock(&s->mu);
            s->epoch++;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        break;
    }
    note(s, rc, err);
    return rc;
}

int aos_store_connect(struct aos_store *s, char *err, size_t errlen)
{
    size_t idx;
    int rc = acquire_and_run(s, now_ns() + busy_ns(s), "SELECT 1", -1, &idx, err, errlen);
    if (rc == AOS_DB_OK)
        release(s, idx, false);
    return rc;
}

int aos_store_ping(struct aos_store *s, char *err, size_t errlen)
{
    int rc = gate(s, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    return aos_store_connect(s, err, errlen);
}

/* ------------------------------------------------------------ transactions */

int aos_store_begin(struct aos_store *s, bool write, struct aos_store_tx **txp, char *err, size_t errlen)
{
    int rc;
    struct aos_store_tx *tx = NULL;
    bool writer = false;
    size_t idx;
    int64_t deadline = now_ns() + busy_ns(s);

    *txp = NULL;
    if ((rc = gate(s, err, errlen)) != AOS_DB_OK)
        return rc;
    tx = calloc(1, sizeof *tx);
    if (tx == NULL) {
        set_err(err, errlen, "out of memory");
        return AOS_DB_ERROR;
    }
    if (s->sqlite && write) {
        if ((rc = writer_take(s, deadline, err, errlen)) != AOS_DB_OK)
            goto fail;
        writer = true;
    }
    const char *begin =
        s->sqlite ? (write ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED") : (write ? "BEGIN" : "BEGIN READ ONLY");
    if ((rc = acquire_and_run(s, deadline, begin, s->sqlite ? !write : -1, &idx, err, errlen)) != AOS_DB_OK)
        goto fail;
    tx->store = s;
    tx->slot = idx;
    tx->conn = s->slots[idx].conn;
    tx->write = write;
    tx->holds_writer = writer;
    *txp = tx;
    return AOS_DB_OK;
fail:
    if (writer)
        writer_give(s);
    free(tx);
    return rc;
}

static void tx_end(struct aos_store_tx *tx)
{
    struct aos_store *s = tx->store;
    release(s, tx->slot, tx->discard);
    if (tx->holds_writer)
        writer_give(s);
    free(tx);
}

/* Ends an open transaction with ROLLBACK; a connection that cannot is not
 * reused. */
static void tx_rollback_conn(struct aos_store_tx *tx)
{
    struct aos_store *s = tx->store;
    if (!s->drv->healthy(tx->conn)) {
        tx->discard = true;
        return;
    }
    if (!s->drv->in_transaction(tx->conn))
        return;
    char err[256];
    int rc = run(s, tx->conn, "ROLLBACK", err, sizeof err);
    if (rc != AOS_DB_OK) {
        tx->discard = true;
        note(s, rc, err);
    }
}

static void tx_failed(struct aos_store_tx *tx, int rc, const char *err)
{
    if (tx->fail_status != 0)
        return;
    tx->fail_status = rc;
    snprintf(tx->fail_msg, sizeof tx->fail_msg, "%s", err ? err : "");
}

int aos_store_commit(struct aos_store_tx *tx, char *err, size_t errlen)
{
    struct aos_store *s = tx->store;
    int rc;
    if (tx->fail_status != 0) {
        rc = tx->fail_status;
        set_err(err, errlen, "transaction rolled back after an earlier failure: %s", tx->fail_msg);
        tx_rollback_conn(tx);
        tx_end(tx);
        return rc;
    }
    rc = run(s, tx->conn, "COMMIT", err, errlen);
    note(s, rc, err);
    if (rc != AOS_DB_OK)
        tx_rollback_conn(tx);
    tx_end(tx);
    return rc;
}

void aos_store_rollback(struct aos_store_tx *tx)
{
    if (tx == NULL)
        return;
    tx_rollback_conn(tx);
    tx_end(tx);
}

static int tx_refuse(struct aos_store_tx *tx, char *err, size_t errlen)
{
    set_err(err, errlen, "transaction already failed (%s): only rollback is possible", tx->fail_msg);
    return AOS_DB_ERROR;
}

int aos_store_exec(struct aos_store_tx *tx, const char *sql, const struct aos_db_param *params,
                   size_t nparams, struct aos_db_result **res, char *err, size_t errlen)
{
    if (res != NULL)
        *res = NULL;
    if (tx->fail_status != 0)
        return tx_refuse(tx, err, errlen);
    int rc = tx->store->drv->exec(tx->conn, sql, params, nparams, res, err, errlen);
    if (rc != AOS_DB_OK)
        tx_failed(tx, rc, err);
    note(tx->store, rc, err);
    return rc;
}

int aos_store_exec_script(struct aos_store_tx *tx, const char *sql, char *err, size_t errlen)
{
    if (tx->fail_status != 0)
        return tx_refuse(tx, err, errlen);
    int rc = tx->store->drv->exec_script(tx->conn, sql, err, errlen);
    if (rc != AOS_DB_OK)
        tx_failed(tx, rc, err);
    note(tx->store, rc, err);
    return rc;
}

const struct aos_store *aos_store_tx_store(const struct aos_store_tx *tx) { return tx->store; }

int aos_store_transact(struct aos_store *s, bool write, aos_store_tx_fn fn, void *arg, char *err,
                       size_t errlen)
{
    int rc = AOS_DB_ERROR;
    int64_t give_up = now_ns() + busy_ns(s);

    for (int attempt = 0;; attempt++) {
        struct aos_store_tx *tx = NULL;
        rc = aos_store_begin(s, write, &tx, err, errlen);
        if (rc == AOS_DB_OK) {
            rc = fn(tx, arg, err, errlen);
            if (rc == AOS_DB_OK)
                rc = aos_store_commit(tx, err, errlen);
            else
                aos_store_rollback(tx);
        }
        /* Retries are bounded in count and by the busy timeout, so a
         * transaction that keeps conflicting fails in bounded time. */
        if (rc != AOS_DB_RETRY || attempt + 1 >= TRANSACT_ATTEMPTS || now_ns() >= give_up)
            return rc;
        int64_t base = TRANSACT_BASE_NS << attempt;
        sleep_ns(jitter_ns(base / 2, base));
        pthread_mutex_lock(&s->mu);
        s->stats.retries++;
        pthread_mutex_unlock(&s->mu);
    }
}
