/*
 * The store: a connection pool over one driver (SQLite by default,
 * PostgreSQL for several nodes) and transactions on it.
 *
 * Threads: every call here may block (network, fsync): call it from the
 * thread pool, never from an HTTP loop.  A store is shared by all threads;
 * a transaction belongs to the thread that began it.
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

/* Opens (or re-opens) at least one connection and checks it works.
 * AOS_DB_OK, or AOS_DB_UNAVAILABLE with err saying why. */
int aos_store_connect(struct aos_store *store, char *err, size_t errlen);

/* Begins a transaction on a pooled connection; waits for a free connection
 * up to the busy timeout.  `write` transactions on SQLite start with BEGIN
 * IMMEDIATE so two writers never deadlock on a lock upgrade. */
int aos_store_begin(struct aos_store *store, bool write, struct aos_store_tx **tx, char *err, size_t errlen);
/* Commits and releases the transaction (also on failure: tx is gone). */
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
 * backoff, a few times) when the database says AOS_DB_RETRY. */
typedef int (*aos_store_tx_fn)(struct aos_store_tx *tx, void *arg, char *err, size_t errlen);
int aos_store_transact(struct aos_store *store, bool write, aos_store_tx_fn fn, void *arg, char *err,
                       size_t errlen);

/* Cheap round trip (SELECT 1) on a pooled connection, updating the
 * availability state.  For /readyz and the start-up connect loop. */
int aos_store_ping(struct aos_store *store, char *err, size_t errlen);

/* Availability as last observed.  The reason is a copy-safe static or
 * store-owned string ("connection refused ..."), never containing secrets. */
bool aos_store_available(struct aos_store *store);
/* Copies the last failure reason into buf (empty when available). */
void aos_store_unavailable_reason(struct aos_store *store, char *buf, size_t len);

#endif
