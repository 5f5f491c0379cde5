/*
 * The SQL driver interface behind the store: one implementation per
 * database (sqlite.c, pgsql.c).  Internal to core/store/: the rest of the
 * daemon uses store.h and the typed operations, never SQL.
 *
 * SQL text is shared between drivers where the dialects agree: placeholders
 * are $1..$n.  (SQLite treats "$1" as a NAMED parameter numbered by first
 * appearance -- PLATFORM-NOTES §9 -- so the SQLite driver binds by name,
 * sqlite3_bind_parameter_index(st, "$N"), and any order works.)
 *
 * Parameters are typed values; nothing is ever formatted into SQL text.
 * Every $1..$n must appear in the statement and no other parameter may:
 * both drivers refuse a statement whose parameters and nparams disagree.
 * PostgreSQL infers each parameter's type from where it is used (values
 * travel as text); where it cannot (`$1 IS NULL`, `$1 + $2`), cast it:
 * `CAST($1 AS BIGINT)`, `CAST($1 AS TEXT)` (SQLite has no `::`).  A
 * parameter used twice must be used as one type both times.
 *
 * TEXT values are UTF-8 without NUL bytes: PostgreSQL cannot store a NUL
 * in text, so both drivers refuse a TEXT parameter containing one
 * (AOS_DB_ERROR) rather than truncate it silently on one driver only.
 *
 * Error messages (err) carry the database's primary message and code only:
 * never PostgreSQL's DETAIL (which quotes row values), never the conninfo
 * or a password.
 */
#ifndef AOS_STORE_DB_H
#define AOS_STORE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "conf.h"

/* Results of every store and driver call.  Negative = failure. */
enum aos_db_status {
    AOS_DB_OK = 0,
    AOS_DB_ERROR = -1,       /* bug or unexpected database error: 500 */
    AOS_DB_CONSTRAINT = -2,  /* unique / foreign-key / check violation: 409 or 422 */
    AOS_DB_UNAVAILABLE = -3, /* cannot reach the database (connection lost, server down): 503 */
    AOS_DB_RETRY = -4,       /* transient: serialization failure, deadlock, SQLITE_BUSY: retry the transaction */
    AOS_DB_NOT_FOUND = -5,   /* typed operations: no such row (in this tenant) */
    AOS_DB_SCHEMA = -6       /* schema missing, pending migrations, or newer than this binary knows */
};

const char *aos_db_status_name(int status);

/* printf into a caller's error buffer (err may be NULL or errlen 0); a
 * truncated reason is still a reason. */
void aos_db_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

enum aos_db_type { AOS_DB_NULL = 0, AOS_DB_TEXT = 1, AOS_DB_INT = 2 };

struct aos_db_param {
    int type;          /* enum aos_db_type */
    const char *text;  /* TEXT: not necessarily NUL-terminated */
    size_t len;        /* TEXT: length in bytes */
    int64_t i;         /* INT */
};

#define AOS_DB_P_NULL ((struct aos_db_param){AOS_DB_NULL, NULL, 0, 0})
#define AOS_DB_P_INT(v) ((struct aos_db_param){AOS_DB_INT, NULL, 0, (int64_t)(v)})
/* s may be NULL (binds SQL NULL). */
#define AOS_DB_P_TEXT(s) ((s) != NULL ? (struct aos_db_param){AOS_DB_TEXT, (s), strlen(s), 0} : AOS_DB_P_NULL)
#define AOS_DB_P_TEXTN(s, n) ((struct aos_db_param){AOS_DB_TEXT, (s), (n), 0})

/* A fully materialised result (all rows copied out of the driver), owned
 * by the caller: free with aos_db_result_free.  Reading a row or column
 * past the result is a bug: the accessors abort (aos_assert). */
struct aos_db_result;

size_t aos_db_result_rows(const struct aos_db_result *r);
size_t aos_db_result_cols(const struct aos_db_result *r);
/* Rows changed by an INSERT/UPDATE/DELETE (with or without RETURNING);
 * 0 for any other statement. */
int64_t aos_db_result_changes(const struct aos_db_result *r);
/* NUL-terminated text of a cell, or NULL for SQL NULL.  Integers come back
 * as decimal text.  Valid until the result is freed. */
const char *aos_db_result_text(const struct aos_db_result *r, size_t row, size_t col);
/* Length in bytes of a cell's text (0 for SQL NULL). */
size_t aos_db_result_len(const struct aos_db_result *r, size_t row, size_t col);
/* Integer value of a cell (0 for NULL or for text that is not entirely a
 * decimal integer: "1.5", "t"). */
int64_t aos_db_result_int(const struct aos_db_result *r, size_t row, size_t col);
bool aos_db_result_is_null(const struct aos_db_result *r, size_t row, size_t col);
void aos_db_result_free(struct aos_db_result *r);

/* Builder used by drivers. */
struct aos_db_result *aos_db_result_new(size_t cols);
int aos_db_result_add_row(struct aos_db_result *r, const char *const *cells, const size_t *lens);
void aos_db_result_set_changes(struct aos_db_result *r, int64_t changes);

struct aos_db_conn; /* a driver's connection */

struct aos_db_driver {
    const char *name; /* "sqlite" or "pgsql" */
    /* Opens one connection.  AOS_DB_UNAVAILABLE when the server cannot be
     * reached (the caller retries later); err says why, never with the
     * password.  AOS_DB_ERROR when retrying cannot help: a malformed
     * conninfo, a SQLite file whose directory does not exist. */
    int (*connect)(const struct aos_conf_store *conf, struct aos_db_conn **out, char *err, size_t errlen);
    void (*disconnect)(struct aos_db_conn *conn);
    /* Runs one statement with typed parameters.  res may be NULL when the
     * caller wants no rows; otherwise *res is a new result on AOS_DB_OK
     * (possibly with no rows) and NULL on failure.  Prepared statements are
     * cached per connection keyed by the SQL text (up to 256 per
     * connection; beyond that a statement is prepared for each call), so
     * keep SQL texts constant and put every value in a parameter. */
    int (*exec)(struct aos_db_conn *conn, const char *sql, const struct aos_db_param *params, size_t nparams,
                struct aos_db_result **res, char *err, size_t errlen);
    /* Runs a script of several statements without parameters (migrations). */
    int (*exec_script)(struct aos_db_conn *conn, const char *sql, char *err, size_t errlen);
    /* False once the connection is known broken (it is then replaced). */
    bool (*healthy)(struct aos_db_conn *conn);
    /* True while a transaction is open on the connection (also one that
     * failed and waits for ROLLBACK).  Lets the pool tell a connection it
     * can reuse from one left in an unknown state. */
    bool (*in_transaction)(struct aos_db_conn *conn);
};

extern const struct aos_db_driver aos_db_sqlite;
extern const struct aos_db_driver aos_db_pgsql;

#endif
