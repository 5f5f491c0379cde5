/*
 * The event log in the store: typed, tenant-scoped operations on the
 * `events` table (db/<driver>/0001_initial.up.sql), in the manner of
 * store/ops.h.  Every state change of a tenant is one row: a monotonically
 * increasing id, a type ("run.started", ...), an optional run and a JSON
 * object payload (already PII-redacted by the caller: core/events/events.h
 * aos_event_append is the writer the rest of the daemon uses).
 *
 * Ordering: ids increase in insertion order on both drivers, and on
 * PostgreSQL aos_store_event_insert first takes a transaction-level
 * advisory lock (AOS_EVENTS_LOCK_ID), so event-writing transactions COMMIT
 * in id order: a reader that sees id N has seen every committed id below
 * N.  That is what lets a stream resume after "the last id I saw" with no
 * gap.  The lock is held until the writer's transaction ends, so insert
 * events as the LAST statements of a transaction.
 *
 * Tenant scoping: list and insert take the tenant.  Three operations do
 * not, on purpose, each documented as such: aos_store_events_since (the
 * node's fan-out poller reads every tenant's new events in one query),
 * aos_store_events_max_id and aos_store_events_prune (retention), like
 * the journal's prune.
 *
 * Memory: lists are malloc'd arrays released with aos_event_list_free; on
 * failure they are NULL with *n == 0.
 */
#ifndef AOS_STORE_EVENTS_H
#define AOS_STORE_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/ops.h"
#include "store/store.h"

/* The advisory lock event writers take on PostgreSQL ("aosd-evt"). */
#define AOS_EVENTS_LOCK_ID INT64_C(0x616f73642d657674)

/* An event type: 1..AOS_EVENT_TYPE_MAX characters of [A-Za-z0-9._:-]. */
#define AOS_EVENT_TYPE_MAX 64

struct aos_event {
    int64_t id;
    char tenant_id[AOS_ID_LEN];
    char type[AOS_EVENT_TYPE_MAX + 1];
    char run_id[AOS_ID_LEN]; /* "" when the event concerns no run */
    char *payload;           /* JSON object text, malloc'd; compare by value (PostgreSQL re-formats) */
    int64_t created_at;      /* unix ms */
};
void aos_event_clear(struct aos_event *e);
void aos_event_list_free(struct aos_event *e, size_t n);

/* Whether s is a valid event type (see AOS_EVENT_TYPE_MAX). */
bool aos_store_event_type_valid(const char *s);

/* Filters of a list.  type: NULL = every type; "run.started" = exactly
 * that type; "run.*" = every type starting with "run." (a '*' is allowed
 * only as the last character; "*" alone = every type).  run_id: NULL =
 * any run (and none); else only that run's events (a malformed run id
 * matches nothing). */
struct aos_event_filter {
    const char *type;
    const char *run_id;
};
/* Whether a type filter is well-formed (NULL is). */
bool aos_event_filter_type_valid(const char *type);
/* Whether event e passes filter f (f NULL passes everything).  f's fields
 * must be valid (aos_event_filter_type_valid; run_id in canonical lower
 * case or not a UUID at all). */
bool aos_event_filter_match(const struct aos_event_filter *f, const char *type, const char *run_id);

/* Appends one event; id_out (may be NULL) receives its id.  payload: a
 * JSON object text, NULL = "{}" (stored as given: redaction is the
 * caller's job).  run_id: NULL or a UUID.  created_at: unix ms.
 * CONSTRAINT: malformed type, run id or payload, or no such tenant.  On
 * PostgreSQL takes AOS_EVENTS_LOCK_ID first (see above). */
int aos_store_event_insert(struct aos_store_tx *tx, const char *tenant_id, const char *type,
                           const char *run_id, const char *payload, int64_t created_at, int64_t *id_out,
                           char *err, size_t errlen);

/* Several events in one call, ids in array order (each as for
 * aos_store_event_insert; ids are not returned).  On PostgreSQL one
 * advisory lock and one INSERT for all of them: two statements whatever
 * n.  Any malformed event fails the call (CONSTRAINT) before anything is
 * written. */
struct aos_event_new {
    const char *tenant_id;
    const char *type;
    const char *run_id; /* NULL: none */
    const char *payload; /* JSON object text; NULL = "{}" */
    int64_t created_at;
};
int aos_store_events_insert_many(struct aos_store_tx *tx, const struct aos_event_new *ev, size_t n, char *err,
                                 size_t errlen);

/* One page of the tenant's events with id > after_id, OLDEST first,
 * passing filter (NULL = all).  limit 1..1000.  *more is set when further
 * matching events exist (the caller's next cursor is then the last id of
 * this page).  CONSTRAINT for a bad limit or a malformed filter.
 * *out: aos_event_list_free. */
int aos_store_event_list(struct aos_store_tx *tx, const char *tenant_id, int64_t after_id,
                         const struct aos_event_filter *filter, size_t limit, struct aos_event **out,
                         size_t *n, bool *more, char *err, size_t errlen);

/* DELIBERATELY ACROSS TENANTS, for the node's event hub only (it
 * fans events out to each tenant's own subscribers): up to `limit`
 * (1..100000) events of every tenant with id > after_id, in id order.
 * Never hand its rows to a client without matching their tenant_id. */
int aos_store_events_since(struct aos_store_tx *tx, int64_t after_id, size_t limit, struct aos_event **out,
                           size_t *n, char *err, size_t errlen);
/* Across tenants: the highest event id (0 when the log is empty). */
int aos_store_events_max_id(struct aos_store_tx *tx, int64_t *max_id, char *err, size_t errlen);

/* Retention, across tenants: deletes up to `limit` events created before
 * older_than_ms among the `limit` oldest ids; *deleted says how many (call
 * again while it equals limit).  Bounded work per call, as the journal's
 * prune. */
int aos_store_events_prune(struct aos_store_tx *tx, int64_t older_than_ms, size_t limit, size_t *deleted,
                           char *err, size_t errlen);

#endif
