#include "config.h"
/*
 * The API journal writer (journal.h): a bounded ring filled by the HTTP
 * loops, drained by one writer thread in batches of one transaction each.
 *
 * Every entry gets a sequence number when it enters the ring; entries
 * leave in that order (taken by the writer from the head, or dropped from
 * the head when the ring is full), which makes "everything queued before
 * now has been dealt with" a comparison of sequence numbers (sync()).
 */
#include "gateway/journal.h"

#include "pii/pii.h"
#include <stdatomic.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/server.h"
#include "log.h"
#include "loop.h"
#include "store/ops.h"
#include "store/store.h"

#define DEFAULT_QUEUE 8192
#define DEFAULT_BATCH 256
#define DEFAULT_FLUSH_MS 200
#define DEFAULT_PRUNE_INTERVAL_MS 60000
#define DEFAULT_PRUNE_CHUNK 1000
#define DEFAULT_SHUTDOWN_MS 10000
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000
#define DAY_MS 86400000LL

struct aos_journal {
    struct aos_store *store;
    _Atomic(const struct aos_pii *) pii; /* redacts client-chosen text before it is written */
    struct aos_journal_config cfg;
    pthread_t thread;

    /* guarded by lock */
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the writer: work, stop, hold released */
    pthread_cond_t idle; /* sync() waiters: entries resolved */
    struct aos_journal_record *ring;
    size_t head, count;
    uint64_t seq_in;    /* sequence number of the next entry */
    uint64_t batch_seq; /* sequence number of the batch's first entry */
    size_t inflight;    /* entries taken by the writer, not yet resolved */
    unsigned urgent;    /* sync() callers waiting: do not wait for a full batch */
    bool stop, hold;
    int retention_days;
    struct aos_journal_stats st;

    /* the writer thread's own */
    struct aos_journal_record *batch;
    int64_t next_prune_ms;    /* monotonic */
    bool pruned_once;         /* the first pass at start may precede the migrations */
    int64_t stop_deadline_ms; /* monotonic; 0 until a write fails during free() */
};

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timespec mono_deadline(int ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Cuts to the field and keeps printable ASCII only: whatever a client put
 * into a header that reached the entry can never break a driver's UTF-8
 * rule or a log reader's terminal. */
static void copy_text(char *dst, size_t size, const char *src)
{
    size_t i = 0;

    if (src != NULL)
        for (; src[i] != '\0' && i + 1 < size; i++)
            dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
    dst[i] = '\0';
}

static int64_t clamp_u64(uint64_t v) { return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v; }

/* ---------------------------------------------------------------- observer */

void aos_journal_observer(void *arg, const struct aos_http_log_entry *e)
{
    struct aos_journal *j = arg;
    struct aos_journal_record r;

    if (e->tenant_id == NULL || e->tenant_id[0] == '\0') {
        pthread_mutex_lock(&j->lock);
        j->st.unattributed++;
        pthread_mutex_unlock(&j->lock);
        return;
    }
    /* Built outside the lock: the loops contend only for the ring slot. */
    memset(&r, 0, sizeof(r));
    copy_text(r.tenant_id, sizeof(r.tenant_id), e->tenant_id);
    r.time_ms = e->time_ms;
    copy_text(r.request_id, sizeof(r.request_id), e->request_id);
    r.request_id_generated = e->request_id_generated;
    copy_text(r.principal, sizeof(r.principal), e->principal);
    copy_text(r.method, sizeof(r.method), e->method);
    /* No pattern (a 404, a refused request): never the raw path. */
    copy_text(r.route, sizeof(r.route), e->route != NULL ? e->route : "-");
    r.status = e->status;
    r.latency_us = clamp_u64(e->latency_us);
    r.bytes_in = clamp_u64(e->bytes_in);
    r.bytes_out = clamp_u64(e->bytes_out);
    copy_text(r.client_ip, sizeof(r.client_ip), e->peer_ip);

    pthread_mutex_lock(&j->lock);
    if (j->count == j->cfg.queue_size) {
        /* The observer never waits: the oldest entry makes room. */
        j->head = (j->head + 1) % j->cfg.queue_size;
        j->count--;
        j->st.dropped++;
        pthread_cond_broadcast(&j->idle); /* a sync() may wait for that entry */
    }
    j->ring[(j->head + j->count) % j->cfg.queue_size] = r;
    j->count++;
    j->seq_in++;
    j->st.accepted++;
    if (j->count == j->cfg.batch_size)
        pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
}

/* ---------------------------------------------------------------- writer */

struct insert_ctx {
    const struct aos_journal_record *recs;
    size_t n;
    size_t inserted;
};

static int insert_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct insert_ctx *c = arg;
    return aos_store_journal_insert(tx, c->recs, c->n, &c->inserted, err, errlen);
}

static bool transient(int rc) { return rc != AOS_DB_CONSTRAINT && rc != AOS_DB_ERROR; }

/* Records the outcome of the batch in flight.  Caller holds the lock. */
static void resolve_locked(struct aos_journal *j, size_t written, size_t rejected, size_t dropped)
{
    j->st.written += written;
    j->st.rejected += rejected;
    j->st.dropped += dropped;
    j->inflight = 0;
    pthread_cond_broadcast(&j->idle);
}

/* A batch the store refuses for good: each row on its own, so that one
 * bad row costs only itself. */
static void write_rows(struct aos_journal *j, size_t n, const char *why)
{
    size_t i, written = 0, rejected = 0;
    char err[256];

    aos_log(AOS_LVL_WARN, "journal batch refused, writing rows one by one", "reason", why, NULL);
    for (i = 0; i < n; i++) {
        struct insert_ctx c = {.recs = &j->batch[i], .n = 1};
        int rc = aos_store_transact(j->store, true, insert_tx, &c, err, sizeof(err));

        written += rc == AOS_DB_OK ? c.inserted : 0;
        rejected += rc == AOS_DB_OK ? 1 - c.inserted : 1;
    }
    pthread_mutex_lock(&j->lock);
    j->st.batches += written > 0 ? 1 : 0;
    resolve_locked(j, written, rejected, 0);
    pthread_mutex_unlock(&j->lock);
}

/* The request id is the one field a client chooses (X-Request-ID): a
 * card or phone number there must not reach the disk.  Done here, on the
 * writer thread, to keep it off the request path. */
static void redact_batch(struct aos_journal *j, size_t n)
{
    const struct aos_pii *pii = atomic_load(&j->pii);
    if (pii == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        struct aos_journal_record *r = &j->batch[i];
        if (r->request_id_generated)
            continue; /* our own "<boot>-<loop>-<seq>": nothing a client chose */
        char *clean = aos_pii_redact_all(pii, r->request_id, strlen(r->request_id));
        /* On failure drop the value rather than write it unredacted. */
        copy_text(r->request_id, sizeof(r->request_id), clean != NULL ? clean : "-");
        free(clean);
    }
}

void aos_journal_set_pii(struct aos_journal *journal, const struct aos_pii *pii)
{
    if (journal != NULL)
        atomic_store(&journal->pii, pii);
}

static void write_batch(struct aos_journal *j, size_t n)
{
    redact_batch(j, n);
    struct insert_ctx c = {.recs = j->batch, .n = n};
    int delay = RETRY_MIN_MS;
    bool logged = false;
    char err[256];

    for (;;) {
        int rc = aos_store_transact(j->store, true, insert_tx, &c, err, sizeof(err));
        bool stopping;

        pthread_mutex_lock(&j->lock);
        if (rc == AOS_DB_OK) {
            j->st.batches++;
            resolve_locked(j, c.inserted, n - c.inserted, 0);
            pthread_mutex_unlock(&j->lock);
            if (logged)
                aos_log(AOS_LVL_INFO, "journal writes resumed", NULL);
            return;
        }
        j->st.failed_batches++;
        stopping = j->stop;
        pthread_mutex_unlock(&j->lock);
        if (!transient(rc)) {
            write_rows(j, n, err);
            return;
        }
        /* One deadline for the whole shutdown, not one per batch. */
        if (stopping && j->stop_deadline_ms == 0)
            j->stop_deadline_ms = mono_ms() + j->cfg.shutdown_timeout_ms;
        if (stopping && mono_ms() >= j->stop_deadline_ms) {
            char lost[24];
            snprintf(lost, sizeof(lost), "%zu", n);
            aos_log(AOS_LVL_ERROR, "journal entries lost at shutdown: store unavailable", "entries", lost,
                    "reason", err, NULL);
            pthread_mutex_lock(&j->lock);
            resolve_locked(j, 0, 0, n);
            pthread_mutex_unlock(&j->lock);
            return;
        }
        if (!logged) {
            aos_log(AOS_LVL_WARN, "journal write failed, retrying", "reason", err, NULL);
            logged = true;
        }
        /* free() interrupts the wait: the shutdown deadline starts then. */
        pthread_mutex_lock(&j->lock);
        if (!j->stop || stopping) {
            struct timespec until = mono_deadline(delay);
            pthread_cond_timedwait(&j->wake, &j->lock, &until);
        }
        pthread_mutex_unlock(&j->lock);
        delay = delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : delay * 2;
        if (stopping && delay > 1000)
            delay = 1000;
    }
}

struct prune_ctx {
    int64_t older_than;
    size_t limit;
    size_t deleted;
};

static int prune_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct prune_ctx *c = arg;
    return aos_store_journal_prune(tx, c->older_than, c->limit, &c->deleted, err, errlen);
}

/* One chunk per call; a full chunk makes the next one due at once, so a
 * large backlog is pruned between batches rather than stalling them. */
static void prune_step(struct aos_journal *j, int days)
{
    struct prune_ctx c = {.limit = j->cfg.prune_chunk};
    char err[256];
    int rc;

    j->next_prune_ms = mono_ms() + j->cfg.prune_interval_ms;
    if (days <= 0)
        return;
    c.older_than = aos_store_now_ms() - (int64_t)days * DAY_MS;
    rc = aos_store_transact(j->store, true, prune_tx, &c, err, sizeof(err));
    if (rc != AOS_DB_OK) {
        /* Before bring-up has connected and migrated the store this is
         * expected; it is tried again at the next interval. */
        bool expected = rc == AOS_DB_UNAVAILABLE || rc == AOS_DB_SCHEMA || !j->pruned_once;
        aos_log(expected ? AOS_LVL_DEBUG : AOS_LVL_WARN, "journal retention failed", "reason", err, NULL);
        return;
    }
    j->pruned_once = true;
    pthread_mutex_lock(&j->lock);
    j->st.pruned += c.deleted;
    pthread_mutex_unlock(&j->lock);
    if (c.deleted == c.limit)
        j->next_prune_ms = 0;
}

static void *writer_main(void *arg)
{
    struct aos_journal *j = arg;
    aos_thread_name("aos-journal");

    pthread_mutex_lock(&j->lock);
    for (;;) {
        bool prune_due = !j->stop && mono_ms() >= j->next_prune_ms;
        size_t n, i;
        int days;

        if (!j->stop && !prune_due &&
            (j->hold || j->count == 0 || (j->count < j->cfg.batch_size && j->urgent == 0))) {
            struct timespec until = mono_deadline(j->cfg.flush_ms);
            pthread_cond_timedwait(&j->wake, &j->lock, &until);
        }
        if (j->stop && j->count == 0)
            break;
        n = j->hold && !j->stop ? 0 : (j->count < j->cfg.batch_size ? j->count : j->cfg.batch_size);
        j->batch_seq = j->seq_in - j->count;
        for (i = 0; i < n; i++)
            j->batch[i] = j->ring[(j->head + i) % j->cfg.queue_size];
        j->head = (j->head + n) % j->cfg.queue_size;
        j->count -= n;
        j->inflight = n;
        days = j->retention_days;
        pthread_mutex_unlock(&j->lock);

        if (n > 0)
            write_batch(j, n);
        if (prune_due)
            prune_step(j, days);

        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

/* ---------------------------------------------------------------- public */

static void config_defaults(struct aos_journal_config *c)
{
    if (c->queue_size == 0)
        c->queue_size = DEFAULT_QUEUE;
    if (c->batch_size == 0)
        c->batch_size = DEFAULT_BATCH;
    if (c->flush_ms <= 0)
        c->flush_ms = DEFAULT_FLUSH_MS;
    if (c->prune_interval_ms <= 0)
        c->prune_interval_ms = DEFAULT_PRUNE_INTERVAL_MS;
    if (c->prune_chunk == 0)
        c->prune_chunk = DEFAULT_PRUNE_CHUNK;
    if (c->shutdown_timeout_ms <= 0)
        c->shutdown_timeout_ms = DEFAULT_SHUTDOWN_MS;
    if (c->retention_days < 0)
        c->retention_days = 0;
}

struct aos_journal *aos_journal_new(struct aos_store *store, const struct aos_journal_config *cfg)
{
    struct aos_journal *j = calloc(1, sizeof(*j));
    pthread_condattr_t ca;
    bool cond_attr = false, lock_ok = false, wake_ok = false, idle_ok = false;
    int rc;

    if (j == NULL)
        goto fail;
    j->store = store;
    if (cfg != NULL)
        j->cfg = *cfg;
    config_defaults(&j->cfg);
    j->retention_days = j->cfg.retention_days;
    j->ring = calloc(j->cfg.queue_size, sizeof(*j->ring));
    j->batch = calloc(j->cfg.batch_size, sizeof(*j->batch));
    if (j->ring == NULL || j->batch == NULL)
        goto fail;
    if (pthread_condattr_init(&ca) != 0)
        goto fail;
    cond_attr = true;
    /* Waits must not stretch or shrink with wall-clock steps. */
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0)
        goto fail;
    lock_ok = pthread_mutex_init(&j->lock, NULL) == 0;
    wake_ok = lock_ok && pthread_cond_init(&j->wake, &ca) == 0;
    idle_ok = wake_ok && pthread_cond_init(&j->idle, &ca) == 0;
    if (!idle_ok)
        goto fail;
    rc = pthread_create(&j->thread, NULL, writer_main, j);
    if (rc != 0)
        goto fail;
    pthread_condattr_destroy(&ca);
    return j;
fail:
    aos_log(AOS_LVL_ERROR, "cannot start the journal writer", NULL);
    if (cond_attr)
        pthread_condattr_destroy(&ca);
    if (j != NULL) {
        if (idle_ok)
            pthread_cond_destroy(&j->idle);
        if (wake_ok)
            pthread_cond_destroy(&j->wake);
        if (lock_ok)
            pthread_mutex_destroy(&j->lock);
        free(j->ring);
        free(j->batch);
        free(j);
    }
    return NULL;
}

void aos_journal_free(struct aos_journal *j)
{
    if (j == NULL)
        return;
    pthread_mutex_lock(&j->lock);
    j->stop = true;
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
    pthread_join(j->thread, NULL);
    pthread_cond_destroy(&j->idle);
    pthread_cond_destroy(&j->wake);
    pthread_mutex_destroy(&j->lock);
    free(j->ring);
    free(j->batch);
    free(j);
}

void aos_journal_set_retention(struct aos_journal *j, int retention_days)
{
    pthread_mutex_lock(&j->lock);
    j->retention_days = retention_days > 0 ? retention_days : 0;
    pthread_mutex_unlock(&j->lock);
}

void aos_journal_get_stats(struct aos_journal *j, struct aos_journal_stats *out)
{
    pthread_mutex_lock(&j->lock);
    *out = j->st;
    out->queued = j->count + j->inflight;
    pthread_mutex_unlock(&j->lock);
}

/* The oldest entry not yet resolved, by sequence number. */
static uint64_t first_unresolved_locked(const struct aos_journal *j)
{
    return j->inflight > 0 ? j->batch_seq : j->seq_in - j->count;
}

void aos_journal_sync(struct aos_journal *j)
{
    pthread_mutex_lock(&j->lock);
    uint64_t target = j->seq_in;
    j->urgent++;
    pthread_cond_signal(&j->wake);
    while (first_unresolved_locked(j) < target) {
        /* Timed: the observer's drop-path broadcast is best effort. */
        struct timespec until = mono_deadline(50);
        pthread_cond_timedwait(&j->idle, &j->lock, &until);
    }
    j->urgent--;
    pthread_mutex_unlock(&j->lock);
}

void aos_journal_hold(struct aos_journal *j, bool hold)
{
    pthread_mutex_lock(&j->lock);
    j->hold = hold;
    pthread_cond_signal(&j->wake);
    pthread_mutex_unlock(&j->lock);
}
