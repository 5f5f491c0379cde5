/*
 * The API journal writer: one record per authenticated request, written
 * off the hot path in batches.
 *
 * The HTTP server calls aos_journal_observer() on a loop thread after
 * every response.  The observer copies the entry into a bounded in-memory
 * queue and returns: it never blocks and never allocates.  One writer
 * thread takes up to batch_size entries (or whatever arrived within
 * flush_ms) and inserts them in ONE store transaction.
 *
 * What is stored: only requests with a tenant (authenticated), because the
 * journal is per tenant and read by that tenant's admins; the others are
 * counted as `unattributed`.  The route pattern, never the raw path (no
 * ids or e-mails from URLs); never bodies, headers, tokens or secrets (the
 * server's entry holds none).  Text fields are cut to their column sizes
 * and reduced to printable ASCII.
 *
 * Failure: a batch the store refuses for a transient reason (database
 * down, busy) is kept and retried with backoff, up to 5 s apart; new
 * entries keep queueing meanwhile.  When the queue is full the OLDEST
 * queued entry is dropped (and counted) to make room: the observer never
 * waits.  A batch failing for a permanent reason is retried row by row and
 * the rows that still fail are counted as `rejected`.
 *
 * Retention: once a minute the writer deletes rows older than
 * retention_days (0 = keep forever) in chunks of prune_chunk rows, each in
 * its own transaction, so the writer is never stalled long.
 *
 * Shutdown: aos_journal_free() writes EVERYTHING still queued before it
 * returns (retrying a down store for at most shutdown_timeout_ms, then
 * counting what is left as dropped).  Call it after the HTTP loops have
 * stopped (no more observer calls) and before the store is freed.
 */
#ifndef AOS_GATEWAY_JOURNAL_H
#define AOS_GATEWAY_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aos_store;
struct aos_http_log_entry;
struct aos_journal;

/* Zero fields take the defaults in brackets. */
struct aos_journal_config {
    size_t queue_size;       /* [8192] entries held in memory (~650 bytes each) */
    size_t batch_size;       /* [256] entries per transaction */
    int flush_ms;            /* [200] longest wait for a batch to fill */
    int retention_days;      /* governance.retention.journal_days; 0 = forever (no default) */
    int prune_interval_ms;   /* [60000] */
    size_t prune_chunk;      /* [1000] rows deleted per transaction */
    int shutdown_timeout_ms; /* [10000] retrying a down store in free() */
};

/* Counters for /metrics; monotonic except `queued`. */
struct aos_journal_stats {
    uint64_t accepted;       /* entries queued by the observer */
    uint64_t unattributed;   /* entries without a tenant: not stored */
    uint64_t written;        /* rows committed */
    uint64_t dropped;        /* entries lost to a full queue or a shutdown with the store down */
    uint64_t rejected;       /* rows the store refused (unknown tenant, bad value) */
    uint64_t batches;        /* committed write transactions */
    uint64_t failed_batches; /* write transactions that failed (each retry counts) */
    uint64_t pruned;         /* rows deleted by retention */
    size_t queued;           /* entries waiting now (including a batch in flight) */
};

/* Starts the writer thread.  store must outlive the journal.  NULL on
 * failure (out of memory, no thread), with a log line. */
struct aos_journal *aos_journal_new(struct aos_store *store, const struct aos_journal_config *cfg);
/* Flushes everything queued (see above), stops the writer, frees.  NULL is
 * a no-op.  No observer call may run concurrently or afterwards. */
void aos_journal_free(struct aos_journal *journal);

/* An aos_http_observer_fn: aos_http_server_set_observer(server,
 * aos_journal_observer, journal).  Thread-safe, non-blocking. */
void aos_journal_observer(void *journal, const struct aos_http_log_entry *entry);

/* Retention from a reloaded config (SIGHUP).  Thread-safe. */
void aos_journal_set_retention(struct aos_journal *journal, int retention_days);
/* PII in client-chosen fields (the request id) is replaced by "<TYPE>"
 * before rows are written.  pii must outlive the journal; NULL disables. */
struct aos_pii;
void aos_journal_set_pii(struct aos_journal *journal, const struct aos_pii *pii);

void aos_journal_get_stats(struct aos_journal *journal, struct aos_journal_stats *out);

/* Blocks until every entry queued before the call is written, rejected or
 * dropped.  Not on a loop thread.  For tests and orderly maintenance. */
void aos_journal_sync(struct aos_journal *journal);

/* While held, the writer takes nothing from the queue (entries pile up and
 * the queue-full policy applies).  Deterministic tests only; free()
 * ignores a hold. */
void aos_journal_hold(struct aos_journal *journal, bool hold);

#endif
