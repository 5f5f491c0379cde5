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
/* Runs a statement whose changed-row count matters: *changes receives it. */
int aos_exec_changes(struct aos_store_tx *tx, const char *sql, const struct aos_db_param *p, size_t np,
                     int64_t *changes, char *err, size_t errlen);

#endif
