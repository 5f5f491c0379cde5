#include "config.h"

#include "store/cells.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/ops.h"
#include "store/store.h"

int aos_cell_fixed(const struct aos_db_result *r, size_t row, size_t col, char *dst, size_t size, char *err,
                   size_t errlen)
{
    const char *s = aos_db_result_text(r, row, col);
    size_t len = s != NULL ? strlen(s) : 0;

    if (len >= size) {
        aos_db_seterr(err, errlen, "store returned a %zu-byte value for a %zu-byte field", len, size - 1);
        return AOS_DB_ERROR;
    }
    memcpy(dst, s != NULL ? s : "", len);
    dst[len] = '\0';
    return AOS_DB_OK;
}

int aos_cell_dup(const struct aos_db_result *r, size_t row, size_t col, char **dst, char *err, size_t errlen)
{
    const char *s = aos_db_result_text(r, row, col);

    *dst = NULL;
    if (s == NULL)
        return AOS_DB_OK;
    *dst = strdup(s);
    if (*dst == NULL) {
        aos_db_seterr(err, errlen, "out of memory");
        return AOS_DB_ERROR;
    }
    return AOS_DB_OK;
}

int64_t aos_cell_int_or(const struct aos_db_result *r, size_t row, size_t col, int64_t null_value)
{
    return aos_db_result_is_null(r, row, col) ? null_value : aos_db_result_int(r, row, col);
}

bool aos_cursor_parse(const char *cursor, int64_t *key, char id[37])
{
    char *end;
    long long v;

    if (!isdigit((unsigned char)cursor[0]))
        return false;
    errno = 0;
    v = strtoll(cursor, &end, 10);
    if (errno != 0 || *end != '.')
        return false;
    *key = (int64_t)v;
    return aos_store_id_norm(end + 1, id);
}

int aos_exec_changes(struct aos_store_tx *tx, const char *sql, const struct aos_db_param *p, size_t np,
                     int64_t *changes, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc = aos_store_exec(tx, sql, p, np, &res, err, errlen);

    *changes = rc == AOS_DB_OK ? aos_db_result_changes(res) : 0;
    aos_db_result_free(res);
    return rc;
}

int aos_page_cursor(const char *cursor, size_t limit, bool first, int64_t *after_key, char after_id[37], char *err,
                    size_t errlen)
{
    if (limit < 1 || limit > 1000) {
        aos_db_seterr(err, errlen, "page size must be 1 to 1000");
        return AOS_DB_CONSTRAINT;
    }
    if (!first && !aos_cursor_parse(cursor, after_key, after_id)) {
        aos_db_seterr(err, errlen, "malformed cursor");
        return AOS_DB_CONSTRAINT;
    }
    return AOS_DB_OK;
}

int aos_page_fetch(struct aos_store_tx *tx, const struct aos_page_kind *kind, const char *tenant_id,
                   const char *cursor, size_t limit, void **out, size_t *n, char *next_cursor, char *err,
                   size_t errlen)
{
    struct aos_db_result *res = NULL;
    unsigned char *list = NULL;
    char tid[AOS_ID_LEN], after_id[AOS_ID_LEN];
    int64_t after_ts = 0;
    size_t rows = 0, take = 0;
    bool first = cursor == NULL || cursor[0] == '\0';
    int rc;

    *out = NULL;
    *n = 0;
    next_cursor[0] = '\0';
    if ((rc = aos_page_cursor(cursor, limit, first, &after_ts, after_id, err, errlen)) != AOS_DB_OK)
        return rc;
    if (!aos_store_id_norm(tenant_id, tid))
        return AOS_DB_OK;
    /* One row more than the page tells whether another page follows. */
    if (first) {
        struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(limit + 1)};
        rc = aos_store_exec(tx, kind->sql_first, p, AOS_NPARAMS(p), &res, err, errlen);
    } else {
        struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(after_ts), AOS_DB_P_TEXT(after_id),
                                   AOS_DB_P_INT(limit + 1)};
        rc = aos_store_exec(tx, kind->sql_after, p, AOS_NPARAMS(p), &res, err, errlen);
    }
    if (rc != AOS_DB_OK)
        goto out;
    rows = aos_db_result_rows(res);
    take = rows > limit ? limit : rows;
    if (take == 0)
        goto out;
    list = calloc(take, kind->elem_size);
    if (list == NULL) {
        aos_db_seterr(err, errlen, "out of memory");
        rc = AOS_DB_ERROR;
        goto out;
    }
    for (size_t i = 0; i < take; i++) {
        rc = kind->from_row(res, i, list + i * kind->elem_size, err, errlen);
        if (rc != AOS_DB_OK)
            goto out;
    }
    if (rows > limit) {
        const unsigned char *last = list + (take - 1) * kind->elem_size;
        int64_t created_at;
        memcpy(&created_at, last + kind->created_at_offset, sizeof created_at);
        snprintf(next_cursor, AOS_CURSOR_LEN, "%" PRId64 ".%s", created_at,
                 (const char *)(last + kind->id_offset));
    }
    *out = list;
    *n = take;
    list = NULL;
out:
    if (list != NULL)
        kind->free_list(list, take);
    aos_db_result_free(res);
    return rc;
}

void aos_jb_raw(struct aos_jbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 2048;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void aos_jb_s(struct aos_jbuf *b, const char *s) { aos_jb_raw(b, s, strlen(s)); }

void aos_jb_str(struct aos_jbuf *b, const char *s)
{
    const char *from = s;
    if (s == NULL) {
        aos_jb_s(b, "null");
        return;
    }
    aos_jb_raw(b, "\"", 1);
    for (const char *q = s;; q++) {
        unsigned char c = (unsigned char)*q;
        if (c != '\0' && c >= 0x20 && c != '"' && c != '\\')
            continue;
        aos_jb_raw(b, from, (size_t)(q - from));
        if (c == '\0')
            break;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            aos_jb_raw(b, esc, 2);
        } else {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            aos_jb_raw(b, esc, 6);
        }
        from = q + 1;
    }
    aos_jb_raw(b, "\"", 1);
}

void aos_jb_int(struct aos_jbuf *b, int64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%" PRId64, v);
    aos_jb_raw(b, t, (size_t)n);
}
