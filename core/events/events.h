/*
 * The event log and its live fan-out.
 *
 * Writing: every state change appends an event with aos_event_append in
 * the SAME write transaction as the change, as the transaction's last
 * statements; after the commit the writer calls aos_events_committed so
 * that streams see it at once instead of at the next poll.
 *
 * Fan-out (the hub, one per node): a thread of its own reads new events
 * from the store (every tenant, id > its high-water mark, in id order)
 * every events.poll seconds, or at once when woken by
 * aos_events_committed or, with redis.url set, by a wake-up another node
 * published.  It keeps the last events.ring events as SSE frames encoded
 * once and shared (refcounted) by every subscriber, and hands each batch
 * to the HTTP loops, where each loop writes to the SSE sockets it owns
 * (see core/events/sse.c).  Losing Redis only slows delivery to the poll
 * interval: the store is the source of truth.
 */
#ifndef AOS_EVENTS_H
#define AOS_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aos_events; /* the node's event hub */
struct aos_pool;
struct aos_store;
struct aos_store_tx;
struct aos_pii;
struct aos_loop;
struct aos_conf_events;
struct aos_conf_redis;

/* Appends one event in the caller's write transaction.  payload_json: a
 * JSON object text or NULL ("{}"); every string value in it (recursively)
 * is passed through aos_pii_redact_all (core/pii/pii.h; pii may be NULL =
 * no redaction); a string that cannot be redacted becomes "<REDACTED>".
 * type: 1..64 characters of [A-Za-z0-9._:-] (e.g. "run.started").
 * run_id may be NULL.  On PostgreSQL it first takes a transaction-level
 * advisory lock (pg_advisory_xact_lock with a fixed key), so
 * event-writing transactions commit in id order and a reader that saw id
 * N has seen every id below N (see the note above CREATE TABLE events in
 * db/pgsql/0001_initial.up.sql); callers append events as the LAST
 * statements of a transaction to keep the lock short.  id_out may be
 * NULL.  Returns AOS_DB_OK or an AOS_DB_* status (AOS_DB_CONSTRAINT for a
 * malformed type, run id or payload, or an unknown tenant). */
int aos_event_append(struct aos_store_tx *tx, const struct aos_pii *pii, const char *tenant_id,
                     const char *type, const char *run_id, const char *payload_json, int64_t *id_out,
                     char *err, size_t errlen);

/* Tells the hub that a transaction which appended events has committed:
 * wakes the local poll at once and (with Redis) publishes a wake-up to the
 * other nodes.  Thread-safe, never blocks on the network (the hub's own
 * thread does the Redis work); hub may be NULL (no-op). */
void aos_events_committed(struct aos_events *hub);

/* An event as the API shows it (list items and SSE data):
 * {"id","type","run_id" (null if none),"payload" (object),"created_at"
 * (unix ms)}.  A new object (json_object_put), NULL out of memory. */
struct aos_event;
struct json_object;
struct json_object *aos_event_to_json(const struct aos_event *e);

/* Redacts every string value of a JSON object text, recursively (keys are
 * kept).  Returns a malloc'd compact JSON object text, or NULL if json is
 * not a JSON object (or out of memory).  pii NULL = no redaction. */
char *aos_event_redact_payload(const struct aos_pii *pii, const char *json);

/* ------------------------------------------------------------- the hub */

/* Creates the hub (not running).  store and pool (which pages resuming
 * streams through the store) must outlive it; the settings are copied
 * (aos_events_set_conf replaces the reloadable ones).  redis may be NULL
 * or disabled: then only polling wakes the hub.  NULL with err on failure
 * (a redis.url it cannot parse, out of memory). */
struct aos_events *aos_events_new(struct aos_store *store, struct aos_pool *pool,
                                  const struct aos_conf_events *conf, const struct aos_conf_redis *redis,
                                  char *err, size_t errlen);
/* Registers an HTTP loop whose SSE streams the hub feeds (before start). */
int aos_events_attach_loop(struct aos_events *hub, struct aos_loop *loop);
/* Starts the hub's thread.  0 or -1. */
int aos_events_start(struct aos_events *hub);
/* Applies reloadable settings (heartbeat, retry, client_buffer, poll,
 * max_subscribers, stream_token_ttl; ring keeps its start-up size).
 * Thread-safe. */
void aos_events_set_conf(struct aos_events *hub, const struct aos_conf_events *conf);
/* Closes every stream (clients reconnect elsewhere) and refuses new ones.
 * Thread-safe, returns at once. */
void aos_events_drain(struct aos_events *hub);
/* Stops the hub's thread.  Call before the HTTP loops are joined or after;
 * aos_events_free must come after the HTTP loops have stopped and before
 * they are freed (it closes the streams they own). */
void aos_events_stop(struct aos_events *hub);
void aos_events_free(struct aos_events *hub);

/* The hub's high-water mark: the highest event id it has read. */
int64_t aos_events_high_water(struct aos_events *hub);
/* True once the hub has read its starting point from the store (streams
 * opened before that wait for it). */
bool aos_events_ready(struct aos_events *hub);

/* ---------------------------------------------------------- streams */

/* Reserves one of events.max_subscribers stream slots: 0, or -1 when all
 * are taken (counted as refused) or the hub is draining.  Thread-safe. */
int aos_events_reserve(struct aos_events *hub);
/* Gives back a reservation that did not become a stream. */
void aos_events_release(struct aos_events *hub);

struct aos_events_stream_spec {
    const char *tenant_id; /* the principal's tenant */
    const char *type;      /* type filter (aos_event_filter_type_valid), NULL = all */
    const char *run_id;    /* canonical lower-case run id, NULL = all */
    bool resume;           /* false: from now on */
    int64_t last_id;       /* resume: the last id the client has seen */
};
/* Starts a stream on `loop` (an attached HTTP loop; call on its thread)
 * over fd, a socket from aos_http_takeover whose response headers and
 * retry hint are already written.  Takes over fd and the reservation (also
 * when fd < 0, which only releases the slot).  The spec is copied. */
void aos_events_stream_start(struct aos_events *hub, struct aos_loop *loop, int fd,
                             const struct aos_events_stream_spec *spec);
/* The retry: hint for clients, in milliseconds (events.retry). */
long long aos_events_retry_ms(struct aos_events *hub);
/* events.stream_token_ttl, in seconds. */
int aos_events_token_ttl(struct aos_events *hub);

struct aos_events_stats {
    uint64_t subscribers;      /* open SSE streams */
    uint64_t delivered;        /* frames written to streams */
    uint64_t slow_disconnects; /* streams cut off for exceeding events.client_buffer */
    uint64_t refused;          /* streams refused: max_subscribers reached */
    uint64_t polls;            /* store polls */
    uint64_t poll_failures;    /* store polls that failed */
    uint64_t redis_wakeups;    /* wake-ups received from other nodes */
    int64_t high_water;        /* the highest event id read */
    bool redis_up;             /* subscribed to the wake-up channel */
};
void aos_events_get_stats(struct aos_events *hub, struct aos_events_stats *out);

#endif
