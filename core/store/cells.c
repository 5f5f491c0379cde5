#include "config.h"

#include "store/cells.h"

#include <ctype.h>
#include <errno.h>
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
