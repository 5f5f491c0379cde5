/*
 * Small helpers shared by the typed store operations (ops.c, runs.c and
 * the other per-concern files under core/store/): copying result cells
 * into structs and parsing keyset cursors.  Internal to core/store/.
 */
#ifndef AOS_STORE_CELLS_H
#define AOS_STORE_CELLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/db.h"

struct aos_store_tx;

#define AOS_NPARAMS(p) (sizeof(p) / sizeof((p)[0]))

/* A cell into a fixed-size field ("" for NULL); a value that does not fit
 * is a schema/driver bug, reported (AOS_DB_ERROR) rather than truncated. */
int aos_cell_fixed(const struct aos_db_result *r, size_t row, size_t col, char *dst, size_t size, char *err,
                   size_t errlen);
/* A cell into a malloc'd string (NULL for SQL NULL). */
int aos_cell_dup(const struct aos_db_result *r, size_t row, size_t col, char **dst, char *err, size_t errlen);
/* Integer cell, `null_value` for SQL NULL. */
int64_t aos_cell_int_or(const struct aos_db_result *r, size_t row, size_t col, int64_t null_value);
/* Cursor "<integer>.<uuid>" (the last row of the previous page). */
bool aos_cursor_parse(const char *cursor, int64_t *key, char id[37]);
/* Checks a keyset page request: limit 1..1000 and, unless first, a
 * "<integer>.<uuid>" cursor into *after_key and after_id.  AOS_DB_OK, or
 * AOS_DB_CONSTRAINT with err saying which. */
int aos_page_cursor(const char *cursor, size_t limit, bool first, int64_t *after_key, char after_id[37], char *err,
                    size_t errlen);

/* One page of a tenant's rows in keyset order over (created_at, id), for
 * the list operations of users, agents, workflows.  The two statements take
 * ($1 tenant, $2 limit) and ($1 tenant, $2 created_at, $3 id, $4 limit) and
 * return rows from_row understands; elements are elem_size bytes with an
 * int64_t created_at and a char id[] at the given offsets (the next
 * cursor is made of them).  Validates limit (1..1000) and cursor
 * (AOS_DB_CONSTRAINT), reads limit + 1 rows to learn whether a next page
 * exists.  *out is calloc'd (NULL when *n == 0), freed with free_list;
 * next_cursor (AOS_CURSOR_LEN bytes) is "" on the last page.  A malformed
 * tenant id is an empty page: no tenant has it. */
struct aos_page_kind {
    const char *sql_first;
    const char *sql_after;
    size_t elem_size;
    size_t created_at_offset;
    size_t id_offset;
    int (*from_row)(const struct aos_db_result *r, size_t row, void *elem, char *err, size_t errlen);
    void (*free_list)(void *list, size_t n);
};
int aos_page_fetch(struct aos_store_tx *tx, const struct aos_page_kind *kind, const char *tenant_id,
                   const char *cursor, size_t limit, void **out, size_t *n, char *next_cursor, char *err,
                   size_t errlen);
/* A growing text buffer for the JSON documents the PostgreSQL batch
 * statements take (jsonb_to_recordset): allocation failures are sticky
 * (oom), checked once at the end.  Start from {0}; free(b.p). */
struct aos_jbuf {
    char *p;
    size_t len, cap;
    bool oom;
};
void aos_jb_raw(struct aos_jbuf *b, const char *s, size_t n);
void aos_jb_s(struct aos_jbuf *b, const char *s);
/* s as a JSON string (escaped), or null. */
void aos_jb_str(struct aos_jbuf *b, const char *s);
void aos_jb_int(struct aos_jbuf *b, int64_t v);
/* Runs a statement whose changed-row count matters: *changes receives it. */
int aos_exec_changes(struct aos_store_tx *tx, const char *sql, const struct aos_db_param *p, size_t np,
                     int64_t *changes, char *err, size_t errlen);

#endif
