#include "config.h"

#include <stdarg.h>
#include <stdio.h>
/*
 * The materialised result of one statement: every cell copied out of the
 * driver so the connection can go back to the pool before the caller looks
 * at the rows.  Each row is one allocation: the cells' offsets, their
 * lengths, then the cells packed one after another, each NUL-terminated.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store/db.h"

/* off[c] is SIZE_MAX for SQL NULL; len[c] excludes the terminator. */
struct aos_db_row {
    size_t *off; /* the allocation; len and buf live in it too */
    size_t *len;
    char *buf;
};

struct aos_db_result {
    size_t cols;
    size_t rows;
    size_t cap;
    int64_t changes;
    struct aos_db_row *row;
};

static const struct {
    int status;
    const char *name;
} status_names[] = {
    {AOS_DB_OK, "ok"},
    {AOS_DB_ERROR, "error"},
    {AOS_DB_CONSTRAINT, "constraint"},
    {AOS_DB_UNAVAILABLE, "unavailable"},
    {AOS_DB_RETRY, "retry"},
    {AOS_DB_NOT_FOUND, "not_found"},
    {AOS_DB_SCHEMA, "schema"},
};

const char *aos_db_status_name(int status)
{
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++)
        if (status_names[i].status == status)
            return status_names[i].name;
    return "unknown";
}

struct aos_db_result *aos_db_result_new(size_t cols)
{
    struct aos_db_result *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->cols = cols;
    return r;
}

int aos_db_result_add_row(struct aos_db_result *r, const char *const *cells, const size_t *lens)
{
    size_t hdr, total = 0;

    if (r->rows == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 8;
        if (ncap > SIZE_MAX / sizeof *r->row)
            return AOS_DB_ERROR;
        struct aos_db_row *n = realloc(r->row, ncap * sizeof *n);
        if (n == NULL)
            return AOS_DB_ERROR;
        r->row = n;
        r->cap = ncap;
    }
    if (r->cols > SIZE_MAX / (2 * sizeof(size_t)))
        return AOS_DB_ERROR;
    hdr = 2 * r->cols * sizeof(size_t);
    total = hdr + 1; /* +1: never malloc(0) */
    for (size_t c = 0; c < r->cols; c++) {
        if (cells[c] == NULL)
            continue;
        if (lens[c] >= SIZE_MAX - total - 1)
            return AOS_DB_ERROR;
        total += lens[c] + 1;
    }
    size_t *mem = malloc(total);
    if (mem == NULL)
        return AOS_DB_ERROR;
    struct aos_db_row row = {mem, mem + r->cols, (char *)mem + hdr};
    size_t pos = 0;
    for (size_t c = 0; c < r->cols; c++) {
        if (cells[c] == NULL) {
            row.off[c] = SIZE_MAX;
            row.len[c] = 0;
            continue;
        }
        if (lens[c] > 0)
            memcpy(row.buf + pos, cells[c], lens[c]);
        row.buf[pos + lens[c]] = '\0';
        row.off[c] = pos;
        row.len[c] = lens[c];
        pos += lens[c] + 1;
    }
    r->row[r->rows++] = row;
    return AOS_DB_OK;
}

void aos_db_result_set_changes(struct aos_db_result *r, int64_t changes) { r->changes = changes; }

size_t aos_db_result_rows(const struct aos_db_result *r) { return r ? r->rows : 0; }

size_t aos_db_result_cols(const struct aos_db_result *r) { return r ? r->cols : 0; }

int64_t aos_db_result_changes(const struct aos_db_result *r) { return r ? r->changes : 0; }

/* Reading past the result is a bug in the caller, not a database error. */
static const struct aos_db_row *cell_row(const struct aos_db_result *r, size_t row, size_t col)
{
    aos_assert(r != NULL);
    aos_assert(row < r->rows);
    aos_assert(col < r->cols);
    return &r->row[row];
}

const char *aos_db_result_text(const struct aos_db_result *r, size_t row, size_t col)
{
    const struct aos_db_row *rw = cell_row(r, row, col);
    return rw->off[col] == SIZE_MAX ? NULL : rw->buf + rw->off[col];
}

size_t aos_db_result_len(const struct aos_db_result *r, size_t row, size_t col)
{
    const struct aos_db_row *rw = cell_row(r, row, col);
    return rw->len[col];
}

int64_t aos_db_result_int(const struct aos_db_result *r, size_t row, size_t col)
{
    const char *s = aos_db_result_text(r, row, col);
    if (s == NULL || *s == '\0')
        return 0;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return 0;
    return (int64_t)v;
}

bool aos_db_result_is_null(const struct aos_db_result *r, size_t row, size_t col)
{
    return cell_row(r, row, col)->off[col] == SIZE_MAX;
}

void aos_db_result_free(struct aos_db_result *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->rows; i++)
        free(r->row[i].off);
    free(r->row);
    free(r);
}

void aos_db_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
