#include "config.h"
/*
 * The event log's store operations (store/events.h).  As in ops.c: one
 * constant SQL text per case, $1..$n placeholders, every value a
 * parameter, every statement on a tenant's rows scoped by `tenant_id = $1`
 * except the three documented cross-tenant ones.
 */
#include "store/events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/cells.h"

#define NPARAMS(p) (sizeof(p) / sizeof((p)[0]))

#define EVENT_COLS "id, tenant_id, type, run_id, payload, created_at"

/* Taken by every event-writing transaction on PostgreSQL: sequence values
 * are drawn under it and it is released only after the commit is visible,
 * so commits happen in id order. */
static const char SQL_EVENT_LOCK_PG[] = "SELECT pg_advisory_xact_lock(7020957218189440628)";
static const char SQL_EVENT_INSERT[] = "INSERT INTO events (tenant_id, type, run_id, payload, created_at) "
                                       "VALUES ($1, $2, $3, $4, $5) RETURNING id";

/* The list's six shapes: no type filter / exact type / type prefix, each
 * with or without a run.  Keyset paging on (tenant_id, id) or
 * (tenant_id, run_id, id), both indexed. */
#define LIST_HEAD "SELECT " EVENT_COLS " FROM events WHERE tenant_id = $1 AND id > $2"
#define LIST_TAIL " ORDER BY id LIMIT $3"
static const char SQL_LIST_ALL[] = LIST_HEAD LIST_TAIL;
static const char SQL_LIST_TYPE[] = LIST_HEAD " AND type = $4" LIST_TAIL;
static const char SQL_LIST_PREFIX[] = LIST_HEAD " AND substr(type, 1, $5) = $4" LIST_TAIL;
static const char SQL_LIST_RUN[] = LIST_HEAD " AND run_id = $4" LIST_TAIL;
static const char SQL_LIST_TYPE_RUN[] = LIST_HEAD " AND type = $4 AND run_id = $5" LIST_TAIL;
static const char SQL_LIST_PREFIX_RUN[] = LIST_HEAD " AND substr(type, 1, $5) = $4 AND run_id = $6" LIST_TAIL;

static const char SQL_EVENTS_SINCE[] = "SELECT " EVENT_COLS " FROM events WHERE id > $1 ORDER BY id LIMIT $2";
static const char SQL_EVENTS_MAX[] = "SELECT COALESCE(MAX(id), 0) FROM events";
/* Only the $2 oldest ids are examined: bounded work however large the log
 * (there is no index on created_at). */
static const char SQL_EVENTS_PRUNE[] =
    "DELETE FROM events WHERE id IN (SELECT id FROM (SELECT id, created_at FROM events ORDER BY id LIMIT $2) "
    "AS h WHERE created_at < $1)";

/* The advisory lock key must match the header's constant. */
_Static_assert(AOS_EVENTS_LOCK_ID == INT64_C(7020957218189440628),
               "AOS_EVENTS_LOCK_ID and SQL_EVENT_LOCK_PG differ");

void aos_event_clear(struct aos_event *e)
{
    if (e == NULL)
        return;
    free(e->payload);
    memset(e, 0, sizeof(*e));
}

void aos_event_list_free(struct aos_event *e, size_t n)
{
    size_t i;

    if (e == NULL)
        return;
    for (i = 0; i < n; i++)
        aos_event_clear(&e[i]);
    free(e);
}

static bool type_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

bool aos_store_event_type_valid(const char *s)
{
    size_t i;

    if (s == NULL || s[0] == '\0')
        return false;
    for (i = 0; s[i] != '\0'; i++)
        if (i >= AOS_EVENT_TYPE_MAX || !type_char(s[i]))
            return false;
    return true;
}

bool aos_event_filter_type_valid(const char *type)
{
    size_t len, i;

    if (type == NULL)
        return true;
    len = strlen(type);
    if (len == 0 || len > AOS_EVENT_TYPE_MAX)
        return false;
    for (i = 0; i < len; i++)
        if (!type_char(type[i]) && !(type[i] == '*' && i == len - 1))
            return false;
    return true;
}

bool aos_event_filter_match(const struct aos_event_filter *f, const char *type, const char *run_id)
{
    if (f == NULL)
        return true;
    if (f->run_id != NULL && (run_id == NULL || strcmp(f->run_id, run_id) != 0))
        return false;
    if (f->type != NULL) {
        size_t len = strlen(f->type);

        if (len > 0 && f->type[len - 1] == '*')
            return strncmp(type, f->type, len - 1) == 0;
        return strcmp(type, f->type) == 0;
    }
    return true;
}

static int oom(char *err, size_t errlen)
{
    aos_db_seterr(err, errlen, "out of memory");
    return AOS_DB_ERROR;
}

static int event_from_row(const struct aos_db_result *r, size_t row, struct aos_event *e, char *err,
                          size_t errlen)
{
    const char *tid = aos_db_result_text(r, row, 1);
    const char *type = aos_db_result_text(r, row, 2);
    const char *run = aos_db_result_text(r, row, 3);
    const char *payload = aos_db_result_text(r, row, 4);

    memset(e, 0, sizeof(*e));
    if (tid == NULL || strlen(tid) >= sizeof(e->tenant_id) || type == NULL ||
        strlen(type) >= sizeof(e->type) || (run != NULL && strlen(run) >= sizeof(e->run_id))) {
        aos_db_seterr(err, errlen, "store returned a malformed event row");
        return AOS_DB_ERROR;
    }
    e->id = aos_db_result_int(r, row, 0);
    e->created_at = aos_db_result_int(r, row, 5);
    snprintf(e->tenant_id, sizeof(e->tenant_id), "%s", tid);
    snprintf(e->type, sizeof(e->type), "%s", type);
    snprintf(e->run_id, sizeof(e->run_id), "%s", run != NULL ? run : "");
    e->payload = strdup(payload != NULL ? payload : "{}");
    return e->payload != NULL ? AOS_DB_OK : oom(err, errlen);
}

/* Copies the first `take` rows of res into a new array. */
static int events_from_result(const struct aos_db_result *res, size_t take, struct aos_event **out, size_t *n,
                              char *err, size_t errlen)
{
    struct aos_event *list;
    size_t i;
    int rc;

    if (take == 0)
        return AOS_DB_OK;
    list = calloc(take, sizeof(*list));
    if (list == NULL)
        return oom(err, errlen);
    for (i = 0; i < take; i++) {
        rc = event_from_row(res, i, &list[i], err, errlen);
        if (rc != AOS_DB_OK) {
            aos_event_list_free(list, i);
            return rc;
        }
    }
    *out = list;
    *n = take;
    return AOS_DB_OK;
}

int aos_store_event_insert(struct aos_store_tx *tx, const char *tenant_id, const char *type,
                           const char *run_id, const char *payload, int64_t created_at, int64_t *id_out,
                           char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN];
    int rc;

    if (id_out != NULL)
        *id_out = 0;
    if (payload == NULL)
        payload = "{}";
    if (!aos_store_id_norm(tenant_id, tid)) {
        aos_db_seterr(err, errlen, "no such tenant");
        return AOS_DB_CONSTRAINT;
    }
    if (!aos_store_event_type_valid(type)) {
        aos_db_seterr(err, errlen, "event type must be 1 to %d characters of A-Z a-z 0-9 . _ : -",
                      AOS_EVENT_TYPE_MAX);
        return AOS_DB_CONSTRAINT;
    }
    if (run_id != NULL && !aos_store_id_norm(run_id, rid)) {
        aos_db_seterr(err, errlen, "event run id must be a UUID");
        return AOS_DB_CONSTRAINT;
    }
    if (!aos_store_json_object_valid(payload)) {
        aos_db_seterr(err, errlen, "event payload must be a JSON object");
        return AOS_DB_CONSTRAINT;
    }
    if (aos_store_is_pgsql(aos_store_tx_store(tx))) {
        rc = aos_store_exec(tx, SQL_EVENT_LOCK_PG, NULL, 0, NULL, err, errlen);
        if (rc != AOS_DB_OK)
            return rc;
    }
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(type),
                               run_id != NULL ? AOS_DB_P_TEXT(rid) : AOS_DB_P_NULL, AOS_DB_P_TEXT(payload),
                               AOS_DB_P_INT(created_at)};
    rc = aos_store_exec(tx, SQL_EVENT_INSERT, p, NPARAMS(p), &res, err, errlen);
    if (rc == AOS_DB_OK && aos_db_result_rows(res) != 1) {
        aos_db_seterr(err, errlen, "event insert returned no id");
        rc = AOS_DB_ERROR;
    }
    if (rc == AOS_DB_OK && id_out != NULL)
        *id_out = aos_db_result_int(res, 0, 0);
    aos_db_result_free(res);
    return rc;
}

/* ids are drawn in the ORDER BY, i.e. in array order. */
static const char SQL_EVENT_INSERT_MANY_PG[] =
    "INSERT INTO events (tenant_id, type, run_id, payload, created_at) SELECT c.tid, c.ty, c.rid, c.p, c.at "
    "FROM ROWS FROM (jsonb_to_recordset(CAST($1 AS jsonb)) AS (tid uuid, ty text, rid uuid, p jsonb, at bigint)) "
    "WITH ORDINALITY AS c(tid, ty, rid, p, at, ord) ORDER BY c.ord";

int aos_store_events_insert_many(struct aos_store_tx *tx, const struct aos_event_new *ev, size_t n, char *err,
                                 size_t errlen)
{
    struct aos_jbuf b = {0};
    int rc = AOS_DB_OK;

    if (n == 0)
        return AOS_DB_OK;
    if (!aos_store_is_pgsql(aos_store_tx_store(tx)) || n == 1) {
        for (size_t i = 0; i < n && rc == AOS_DB_OK; i++)
            rc = aos_store_event_insert(tx, ev[i].tenant_id, ev[i].type, ev[i].run_id, ev[i].payload,
                                        ev[i].created_at, NULL, err, errlen);
        return rc;
    }
    /* One JSON document: every part below is validated first (ids in
     * canonical form, types of [A-Za-z0-9._:-], payloads JSON objects), so
     * nothing needs escaping. */
    aos_jb_s(&b, "[");
    for (size_t i = 0; i < n; i++) {
        char tid[AOS_ID_LEN], rid[AOS_ID_LEN], at[24];
        const char *payload = ev[i].payload != NULL ? ev[i].payload : "{}";

        if (!aos_store_id_norm(ev[i].tenant_id, tid)) {
            aos_db_seterr(err, errlen, "no such tenant");
            rc = AOS_DB_CONSTRAINT;
            goto out;
        }
        if (!aos_store_event_type_valid(ev[i].type)) {
            aos_db_seterr(err, errlen, "event type must be 1 to %d characters of A-Z a-z 0-9 . _ : -",
                          AOS_EVENT_TYPE_MAX);
            rc = AOS_DB_CONSTRAINT;
            goto out;
        }
        if (ev[i].run_id != NULL && !aos_store_id_norm(ev[i].run_id, rid)) {
            aos_db_seterr(err, errlen, "event run id must be a UUID");
            rc = AOS_DB_CONSTRAINT;
            goto out;
        }
        if (!aos_store_json_object_valid(payload)) {
            aos_db_seterr(err, errlen, "event payload must be a JSON object");
            rc = AOS_DB_CONSTRAINT;
            goto out;
        }
        snprintf(at, sizeof at, "%" PRId64, ev[i].created_at);
        aos_jb_s(&b, i > 0 ? ",{\"tid\":\"" : "{\"tid\":\"");
        aos_jb_s(&b, tid);
        aos_jb_s(&b, "\",\"ty\":\"");
        aos_jb_s(&b, ev[i].type);
        if (ev[i].run_id != NULL) {
            aos_jb_s(&b, "\",\"rid\":\"");
            aos_jb_s(&b, rid);
            aos_jb_s(&b, "\",\"at\":");
        } else {
            aos_jb_s(&b, "\",\"rid\":null,\"at\":");
        }
        aos_jb_s(&b, at);
        aos_jb_s(&b, ",\"p\":");
        aos_jb_s(&b, payload);
        aos_jb_s(&b, "}");
    }
    aos_jb_s(&b, "]");
    if (b.oom) {
        aos_db_seterr(err, errlen, "out of memory");
        rc = AOS_DB_ERROR;
        goto out;
    }
    /* The event lock once for the batch (see store/events.h). */
    if ((rc = aos_store_exec(tx, SQL_EVENT_LOCK_PG, NULL, 0, NULL, err, errlen)) != AOS_DB_OK)
        goto out;
    struct aos_db_param p[] = {AOS_DB_P_TEXTN(b.p, b.len)};
    rc = aos_store_exec(tx, SQL_EVENT_INSERT_MANY_PG, p, NPARAMS(p), NULL, err, errlen);
out:
    free(b.p);
    return rc;
}

int aos_store_event_list(struct aos_store_tx *tx, const char *tenant_id, int64_t after_id,
                         const struct aos_event_filter *filter, size_t limit, struct aos_event **out,
                         size_t *n, bool *more, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct aos_db_param p[6];
    const char *sql;
    const char *type = filter != NULL ? filter->type : NULL;
    const char *run = filter != NULL ? filter->run_id : NULL;
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN];
    size_t np = 3, rows, tlen = 0;
    bool prefix = false;
    int rc;

    *out = NULL;
    *n = 0;
    *more = false;
    if (limit < 1 || limit > 1000) {
        aos_db_seterr(err, errlen, "page size must be 1 to 1000");
        return AOS_DB_CONSTRAINT;
    }
    if (!aos_event_filter_type_valid(type)) {
        aos_db_seterr(err, errlen, "malformed event type filter");
        return AOS_DB_CONSTRAINT;
    }
    if (!aos_store_id_norm(tenant_id, tid))
        return AOS_DB_OK; /* no such tenant: no events */
    if (run != NULL && !aos_store_id_norm(run, rid))
        return AOS_DB_OK; /* not a run id: matches nothing */
    if (type != NULL) {
        tlen = strlen(type);
        prefix = type[tlen - 1] == '*';
        if (prefix)
            tlen--;
        if (prefix && tlen == 0)
            type = NULL; /* "*": every type */
    }
    p[0] = AOS_DB_P_TEXT(tid);
    p[1] = AOS_DB_P_INT(after_id);
    /* One row more than the page tells whether another page follows. */
    p[2] = AOS_DB_P_INT(limit + 1);
    if (type != NULL) {
        p[np++] = AOS_DB_P_TEXTN(type, tlen);
        if (prefix)
            p[np++] = AOS_DB_P_INT(tlen);
    }
    if (run != NULL)
        p[np++] = AOS_DB_P_TEXT(rid);
    if (type == NULL)
        sql = run != NULL ? SQL_LIST_RUN : SQL_LIST_ALL;
    else if (prefix)
        sql = run != NULL ? SQL_LIST_PREFIX_RUN : SQL_LIST_PREFIX;
    else
        sql = run != NULL ? SQL_LIST_TYPE_RUN : SQL_LIST_TYPE;
    rc = aos_store_exec(tx, sql, p, np, &res, err, errlen);
    if (rc != AOS_DB_OK)
        goto out;
    rows = aos_db_result_rows(res);
    rc = events_from_result(res, rows > limit ? limit : rows, out, n, err, errlen);
    if (rc == AOS_DB_OK)
        *more = rows > limit;
out:
    aos_db_result_free(res);
    return rc;
}

int aos_store_events_since(struct aos_store_tx *tx, int64_t after_id, size_t limit, struct aos_event **out,
                           size_t *n, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    *out = NULL;
    *n = 0;
    if (limit < 1 || limit > 100000) {
        aos_db_seterr(err, errlen, "batch size must be 1 to 100000");
        return AOS_DB_CONSTRAINT;
    }
    struct aos_db_param p[] = {AOS_DB_P_INT(after_id), AOS_DB_P_INT(limit)};
    rc = aos_store_exec(tx, SQL_EVENTS_SINCE, p, NPARAMS(p), &res, err, errlen);
    if (rc == AOS_DB_OK)
        rc = events_from_result(res, aos_db_result_rows(res), out, n, err, errlen);
    aos_db_result_free(res);
    return rc;
}

int aos_store_events_max_id(struct aos_store_tx *tx, int64_t *max_id, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    *max_id = 0;
    rc = aos_store_exec(tx, SQL_EVENTS_MAX, NULL, 0, &res, err, errlen);
    if (rc == AOS_DB_OK && aos_db_result_rows(res) == 1)
        *max_id = aos_db_result_int(res, 0, 0);
    aos_db_result_free(res);
    return rc;
}

int aos_store_events_prune(struct aos_store_tx *tx, int64_t older_than_ms, size_t limit, size_t *deleted,
                           char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    *deleted = 0;
    if (limit < 1 || limit > 1000000) {
        aos_db_seterr(err, errlen, "prune chunk must be 1 to 1000000");
        return AOS_DB_CONSTRAINT;
    }
    struct aos_db_param p[] = {AOS_DB_P_INT(older_than_ms), AOS_DB_P_INT(limit)};
    rc = aos_store_exec(tx, SQL_EVENTS_PRUNE, p, NPARAMS(p), &res, err, errlen);
    if (rc == AOS_DB_OK)
        *deleted = (size_t)aos_db_result_changes(res);
    aos_db_result_free(res);
    return rc;
}
