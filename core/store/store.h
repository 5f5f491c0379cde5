/*
 * The store: a connection pool over one driver (SQLite by default,
 * PostgreSQL for several nodes) and transactions on it.
 *
 * Threads: every call here may block (network, fsync): call it from the
 * thread pool, never from an HTTP loop -- except aos_store_available,
 * aos_store_unavailable_reason, aos_store_retry_after, aos_store_get_stats
 * and the two name getters, which only take a mutex.  A store is shared by
 * all threads; a transaction belongs to the thread that began it.
 *
 * Tenant scoping: typed operations on tenant-owned data (store/ops.h) take
 * the tenant id as an argument and put it in every WHERE clause; there is
 * no operation that reads another tenant's rows.
 *
 * Availability: when the database cannot be reached, calls fail fast with
 * AOS_DB_UNAVAILABLE (HTTP 503 + Retry-After) and the store reconnects by
 * itself, with backoff, on later calls.  aos_store_available() and
 * aos_store_unavailable_reason() feed /readyz.
 */
#ifndef AOS_STORE_H
#define AOS_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "store/db.h"

struct aos_store;
struct aos_store_tx;

/* Creates the store for store.* settings (copied).  Opens no connection
 * yet.  NULL on a bad driver name or out of memory. */
struct aos_store *aos_store_new(const struct aos_conf_store *conf);
/* Closes every connection; no transaction may be open. */
void aos_store_free(struct aos_store *store);

const char *aos_store_driver_name(const struct aos_store *store);
bool aos_store_is_pgsql(const struct aos_store *store);

/* For admin commands run as root (aosctl, aosd --migrate): on SQLite,
 * switch to the owner of the database file (or of its directory before it
 * exists), so the daemon's user can still write what they create.  A
 * no-op when not root, on PostgreSQL, or when root owns it.  0, or -1
 * with err. */
int aos_store_become_owner(const struct aos_conf_store *conf, char *err, size_t errlen);

/* Opens (or re-opens) at least one connection and checks it works.
 * AOS_DB_OK, or AOS_DB_UNAVAILABLE with err saying why (retry later), or
 * AOS_DB_ERROR when retrying cannot help (malformed conninfo, missing
 * directory for the SQLite file).  Unlike every other call it ignores the
 * reconnection backoff: it always tries. */
int aos_store_connect(struct aos_store *store, char *err, size_t errlen);

/* Begins a transaction on a pooled connection; waits for a free connection
 * up to the busy timeout.  `write` transactions on SQLite start with BEGIN
 * IMMEDIATE so two writers never deadlock on a lock upgrade (and take the
 * store's single writer token first: see store.c).  A transaction with
 * write = false is READ ONLY on both drivers: a write in it fails with
 * AOS_DB_ERROR; so does SELECT ... FOR UPDATE on PostgreSQL.
 * Fails with AOS_DB_UNAVAILABLE when the database is down (at once while
 * the store waits to reconnect) or when every pooled connection stayed
 * busy for the busy timeout (overload: the availability state is left
 * alone); AOS_DB_RETRY when a SQLite write waited the busy timeout for
 * another writer. */
int aos_store_begin(struct aos_store *store, bool write, struct aos_store_tx **tx, char *err, size_t errlen);
/* Commits and releases the transaction (also on failure: tx is gone).
 * After a failed statement the transaction is good only for rollback:
 * later exec calls fail with AOS_DB_ERROR, and commit rolls back and
 * returns the first failure's status (so AOS_DB_RETRY still retries).
 * AOS_DB_UNAVAILABLE from commit means the outcome is unknown. */
int aos_store_commit(struct aos_store_tx *tx, char *err, size_t errlen);
/* Rolls back and releases the transaction. */
void aos_store_rollback(struct aos_store_tx *tx);

/* Runs one statement inside tx.  For store/ops.c and migrations only. */
int aos_store_exec(struct aos_store_tx *tx, const char *sql, const struct aos_db_param *params, size_t nparams,
                   struct aos_db_result **res, char *err, size_t errlen);
int aos_store_exec_script(struct aos_store_tx *tx, const char *sql, char *err, size_t errlen);
const struct aos_store *aos_store_tx_store(const struct aos_store_tx *tx);

/* Runs fn(tx, arg) in a transaction, committing if it returns AOS_DB_OK and
 * rolling back otherwise; retries the whole transaction (with jittered
 * backoff, a few times) when the database says AOS_DB_RETRY.  fn may run
 * several times: it must have no effects outside the transaction.  Retries
 * stop after 5 attempts or once busy_timeout has passed. */
typedef int (*aos_store_tx_fn)(struct aos_store_tx *tx, void *arg, char *err, size_t errlen);
int aos_store_transact(struct aos_store *store, bool write, aos_store_tx_fn fn, void *arg, char *err,
                       size_t errlen);

/* Cheap round trip (SELECT 1) on a pooled connection, updating the
 * availability state.  For /readyz and the start-up connect loop.  While
 * the store is down it obeys the reconnection backoff (fails at once
 * between attempts), like every call but aos_store_connect. */
int aos_store_ping(struct aos_store *store, char *err, size_t errlen);

/* Counters for /metrics and tests. */
struct aos_store_stats {
    unsigned long long connects;         /* connections opened */
    unsigned long long connect_failures; /* connection attempts that failed */
    unsigned long long fast_failures;    /* calls refused at once while the database was down */
    unsigned long long pool_timeouts;    /* begins that found no free connection within busy_timeout */
    unsigned long long retries;          /* transactions re-run by aos_store_transact */
    size_t open;                         /* connections open now */
    size_t in_use;                       /* connections lent out now */
};
void aos_store_get_stats(struct aos_store *store, struct aos_store_stats *out);

/* Seconds a client should wait before retrying after AOS_DB_UNAVAILABLE
 * (HTTP Retry-After): until the store's next reconnection attempt, >= 1. */
unsigned aos_store_retry_after(struct aos_store *store);

/* Availability as last observed: false until a first statement succeeds,
 * false from an AOS_DB_UNAVAILABLE until a statement succeeds again.  The
 * reason ("not connected yet", "pgsql: cannot connect to host:port/db:
 * Connection refused ...") never contains secrets. */
bool aos_store_available(struct aos_store *store);
/* Copies the last failure reason into buf (empty when available). */
void aos_store_unavailable_reason(struct aos_store *store, char *buf, size_t len);

#endif
