#include "config.h"
/*
 * Runs, steps, approvals and budget reservations (store/runs.h).
 *
 * Locking: on PostgreSQL the rows a decision depends on are read FOR
 * UPDATE (the run before a checkpoint, the approval before a decision, the
 * tenant row before a budget check), so that concurrent transactions on
 * several nodes serialise on them; the queue claim skips rows another
 * claimer holds (SKIP LOCKED).  SQLite has one writer at a time, which
 * gives the same guarantees without the clauses.  Every write is also
 * conditional on the state it expects (status, lease owner, next_step), so
 * a lost race shows as "0 rows changed", never as a wrong write.
 */
#include "store/runs.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/cells.h"
#include "store/store.h"

#define NP AOS_NPARAMS

static bool is_pg(struct aos_store_tx *tx) { return aos_store_is_pgsql(aos_store_tx_store(tx)); }

static int nf(char *err, size_t errlen, const char *what)
{
    aos_db_seterr(err, errlen, "%s not found", what);
    return AOS_DB_NOT_FOUND;
}

bool aos_run_status_final(const char *s)
{
    return strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0;
}

/* ------------------------------------------------------------ rows */

#define RUN_COLS                                                                                          \
    "id, tenant_id, agent_id, workflow_id, status, created_by, input, state, output, error, next_step, " \
    "attempt, stage, cancel_requested, tokens_in, tokens_out, cost_micro_usd, reserved_day, "           \
    "reserved_tokens, reserved_micro_usd, run_after, created_at, updated_at, started_at, finished_at"

void aos_run_clear(struct aos_run *r)
{
    if (r == NULL)
        return;
    free(r->created_by);
    free(r->input);
    free(r->state);
    free(r->output);
    free(r->error);
    memset(r, 0, sizeof *r);
}

void aos_runs_free(struct aos_run *r, size_t n)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        aos_run_clear(&r[i]);
    free(r);
}

static int run_from_row(const struct aos_db_result *res, size_t row, struct aos_run *r, char *err, size_t errlen)
{
    int rc;

    memset(r, 0, sizeof *r);
    if ((rc = aos_cell_fixed(res, row, 0, r->id, sizeof r->id, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_fixed(res, row, 1, r->tenant_id, sizeof r->tenant_id, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_fixed(res, row, 2, r->agent_id, sizeof r->agent_id, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_fixed(res, row, 3, r->workflow_id, sizeof r->workflow_id, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_fixed(res, row, 4, r->status, sizeof r->status, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_dup(res, row, 5, &r->created_by, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_dup(res, row, 6, &r->input, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_dup(res, row, 7, &r->state, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_dup(res, row, 8, &r->output, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_dup(res, row, 9, &r->error, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_fixed(res, row, 17, r->reserved_day, sizeof r->reserved_day, err, errlen)) != AOS_DB_OK) {
        aos_run_clear(r);
        return rc;
    }
    r->next_step = aos_db_result_int(res, row, 10);
    r->attempt = aos_db_result_int(res, row, 11);
    r->stage = aos_db_result_int(res, row, 12);
    r->cancel_requested = aos_db_result_int(res, row, 13) != 0;
    r->tokens_in = aos_db_result_int(res, row, 14);
    r->tokens_out = aos_db_result_int(res, row, 15);
    r->cost_micro_usd = aos_db_result_int(res, row, 16);
    r->reserved_tokens = aos_db_result_int(res, row, 18);
    r->reserved_micro_usd = aos_db_result_int(res, row, 19);
    r->run_after = aos_db_result_int(res, row, 20);
    r->created_at = aos_db_result_int(res, row, 21);
    r->updated_at = aos_db_result_int(res, row, 22);
    r->started_at = aos_cell_int_or(res, row, 23, 0);
    r->finished_at = aos_cell_int_or(res, row, 24, 0);
    return AOS_DB_OK;
}

void aos_step_rows_free(struct aos_step_row *s, size_t n)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(s[i].result);
        free(s[i].error);
    }
    free(s);
}

#define APPROVAL_COLS                                                                                   \
    "id, tenant_id, run_id, step_seq, proposal, status, requested_by, decided_by, comment, created_at, " \
    "decided_at, expires_at"

void aos_approval_clear(struct aos_approval *a)
{
    if (a == NULL)
        return;
    free(a->proposal);
    free(a->requested_by);
    free(a->decided_by);
    free(a->comment);
    memset(a, 0, sizeof *a);
}

void aos_approvals_free(struct aos_approval *a, size_t n)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        aos_approval_clear(&a[i]);
    free(a);
}

static int approval_from_row(const struct aos_db_result *res, size_t row, struct aos_approval *a, char *err,
                             size_t errlen)
{
    int rc;

    memset(a, 0, sizeof *a);
    if ((rc = aos_cell_fixed(res, row, 0, a->id, sizeof a->id, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_fixed(res, row, 1, a->tenant_id, sizeof a->tenant_id, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_fixed(res, row, 2, a->run_id, sizeof a->run_id, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_dup(res, row, 4, &a->proposal, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_fixed(res, row, 5, a->status, sizeof a->status, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_dup(res, row, 6, &a->requested_by, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_dup(res, row, 7, &a->decided_by, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_dup(res, row, 8, &a->comment, err, errlen)) != AOS_DB_OK) {
        aos_approval_clear(a);
        return rc;
    }
    a->step_seq = aos_db_result_int(res, row, 3);
    a->created_at = aos_db_result_int(res, row, 9);
    a->decided_at = aos_cell_int_or(res, row, 10, 0);
    a->expires_at = aos_cell_int_or(res, row, 11, 0);
    return AOS_DB_OK;
}

static int release_held(struct aos_store_tx *tx, const char *tid, const char *rid, char day_out[AOS_DAY_LEN],
                        char *err, size_t errlen);

/* ------------------------------------------------------------ API side */

static const char SQL_AGENT_LIVE[] = "SELECT 1 FROM agents WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL";
static const char SQL_WORKFLOW_LIVE[] =
    "SELECT 1 FROM workflows WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL";
static const char SQL_RUN_INSERT[] =
    "INSERT INTO runs (id, tenant_id, agent_id, workflow_id, status, created_by, input, run_after, created_at, "
    "updated_at) VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $7, $7)";

static int exists(struct aos_store_tx *tx, const char *sql, const char *tid, const char *id, bool *found,
                  char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(id)};
    int rc = aos_store_exec(tx, sql, p, NP(p), &res, err, errlen);

    *found = rc == AOS_DB_OK && aos_db_result_rows(res) > 0;
    aos_db_result_free(res);
    return rc;
}

int aos_store_run_create(struct aos_store_tx *tx, const char *tenant_id, const char *agent_id,
                         const char *workflow_id, const char *created_by, const char *input,
                         char id_out[AOS_ID_LEN], char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], target[AOS_ID_LEN], id[AOS_ID_LEN];
    bool agent = agent_id != NULL, found = false;
    int rc;

    if ((agent_id == NULL) == (workflow_id == NULL) || created_by == NULL ||
        !aos_store_json_object_valid(input)) {
        aos_db_seterr(err, errlen, "a run needs one agent or workflow, a creator and a JSON object input");
        return AOS_DB_CONSTRAINT;
    }
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(agent ? agent_id : workflow_id, target))
        return nf(err, errlen, agent ? "agent" : "workflow");
    rc = exists(tx, agent ? SQL_AGENT_LIVE : SQL_WORKFLOW_LIVE, tid, target, &found, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    if (!found)
        return nf(err, errlen, agent ? "agent" : "workflow");
    aos_store_id_new(id);
    struct aos_db_param p[] = {AOS_DB_P_TEXT(id),
                               AOS_DB_P_TEXT(tid),
                               agent ? AOS_DB_P_TEXT(target) : AOS_DB_P_NULL,
                               agent ? AOS_DB_P_NULL : AOS_DB_P_TEXT(target),
                               AOS_DB_P_TEXT(created_by),
                               AOS_DB_P_TEXT(input),
                               AOS_DB_P_INT(aos_store_now_ms())};
    rc = aos_store_exec(tx, SQL_RUN_INSERT, p, NP(p), NULL, err, errlen);
    if (rc == AOS_DB_OK)
        memcpy(id_out, id, AOS_ID_LEN);
    return rc;
}

static const char SQL_RUN_GET[] = "SELECT " RUN_COLS " FROM runs WHERE tenant_id = $1 AND id = $2";

int aos_store_run_get(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, struct aos_run *out,
                      char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN];
    struct aos_db_result *res = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(run_id, rid))
        return nf(err, errlen, "run");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid)};
    rc = aos_store_exec(tx, SQL_RUN_GET, p, NP(p), &res, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_db_result_rows(res) == 0 ? nf(err, errlen, "run") : run_from_row(res, 0, out, err, errlen);
    aos_db_result_free(res);
    return rc;
}

static const char SQL_STEPS[] =
    "SELECT seq, agent_id, attempt, outcome, result, error, tokens_in, tokens_out, cost_micro_usd, started_at, "
    "finished_at FROM steps WHERE tenant_id = $1 AND run_id = $2 ORDER BY seq";

int aos_store_run_steps(struct aos_store_tx *tx, const char *tenant_id, const char *run_id,
                        struct aos_step_row **out, size_t *n, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN];
    struct aos_db_result *res = NULL;
    struct aos_step_row *list = NULL;
    size_t rows = 0, i;
    int rc;

    *out = NULL;
    *n = 0;
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(run_id, rid))
        return AOS_DB_OK;
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid)};
    if ((rc = aos_store_exec(tx, SQL_STEPS, p, NP(p), &res, err, errlen)) != AOS_DB_OK)
        return rc;
    rows = aos_db_result_rows(res);
    if (rows > 0 && (list = calloc(rows, sizeof *list)) == NULL) {
        aos_db_seterr(err, errlen, "out of memory");
        rc = AOS_DB_ERROR;
        goto out;
    }
    for (i = 0; i < rows; i++) {
        struct aos_step_row *s = &list[i];
        s->seq = aos_db_result_int(res, i, 0);
        s->attempt = aos_db_result_int(res, i, 2);
        if ((rc = aos_cell_fixed(res, i, 1, s->agent_id, sizeof s->agent_id, err, errlen)) != AOS_DB_OK ||
            (rc = aos_cell_fixed(res, i, 3, s->outcome, sizeof s->outcome, err, errlen)) != AOS_DB_OK ||
            (rc = aos_cell_dup(res, i, 4, &s->result, err, errlen)) != AOS_DB_OK ||
            (rc = aos_cell_dup(res, i, 5, &s->error, err, errlen)) != AOS_DB_OK)
            goto out;
        s->tokens_in = aos_db_result_int(res, i, 6);
        s->tokens_out = aos_db_result_int(res, i, 7);
        s->cost_micro_usd = aos_db_result_int(res, i, 8);
        s->started_at = aos_db_result_int(res, i, 9);
        s->finished_at = aos_db_result_int(res, i, 10);
    }
    *out = list;
    *n = rows;
    list = NULL;
out:
    aos_step_rows_free(list, rows);
    aos_db_result_free(res);
    return rc;
}

/* The list's SQL: one constant text per combination of filters (so that
 * prepared statements are cached), parameters numbered in order. */
static void run_list_sql(char *buf, size_t len, bool status, bool agent, bool cursor)
{
    int k = 2;
    size_t used = (size_t)snprintf(buf, len, "SELECT " RUN_COLS " FROM runs WHERE tenant_id = $1");
    if (status && used < len)
        used += (size_t)snprintf(buf + used, len - used, " AND status = $%d", k++);
    if (agent && used < len)
        used += (size_t)snprintf(buf + used, len - used, " AND agent_id = $%d", k++);
    if (cursor && used < len) {
        used += (size_t)snprintf(buf + used, len - used, " AND (created_at < $%d OR (created_at = $%d AND id < $%d))",
                                 k, k, k + 1);
        k += 2;
    }
    if (used < len)
        snprintf(buf + used, len - used, " ORDER BY created_at DESC, id DESC LIMIT $%d", k);
}

int aos_store_run_list(struct aos_store_tx *tx, const char *tenant_id, const char *status, const char *agent_id,
                       const char *cursor, size_t limit, struct aos_run **out, size_t *n,
                       char next_cursor[AOS_CURSOR_LEN], char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], aid[AOS_ID_LEN], after_id[AOS_ID_LEN], sql[1024];
    struct aos_db_param p[6];
    struct aos_db_result *res = NULL;
    struct aos_run *list = NULL;
    int64_t after_ts = 0;
    size_t np = 0, rows = 0, take, i;
    bool first = cursor == NULL || cursor[0] == '\0';
    int rc;

    *out = NULL;
    *n = 0;
    next_cursor[0] = '\0';
    if ((rc = aos_page_cursor(cursor, limit, first, &after_ts, after_id, err, errlen)) != AOS_DB_OK)
        return rc;
    if (!aos_store_id_norm(tenant_id, tid) || (agent_id != NULL && !aos_store_id_norm(agent_id, aid)))
        return AOS_DB_OK; /* matches nothing */
    run_list_sql(sql, sizeof sql, status != NULL, agent_id != NULL, !first);
    p[np++] = AOS_DB_P_TEXT(tid);
    if (status != NULL)
        p[np++] = AOS_DB_P_TEXT(status);
    if (agent_id != NULL)
        p[np++] = AOS_DB_P_TEXT(aid);
    if (!first) {
        p[np++] = AOS_DB_P_INT(after_ts);
        p[np++] = AOS_DB_P_TEXT(after_id);
    }
    p[np++] = AOS_DB_P_INT(limit + 1); /* one more tells whether a next page exists */
    if ((rc = aos_store_exec(tx, sql, p, np, &res, err, errlen)) != AOS_DB_OK)
        return rc;
    rows = aos_db_result_rows(res);
    take = rows > limit ? limit : rows;
    if (take > 0 && (list = calloc(take, sizeof *list)) == NULL) {
        aos_db_seterr(err, errlen, "out of memory");
        rc = AOS_DB_ERROR;
        goto out;
    }
    for (i = 0; i < take; i++)
        if ((rc = run_from_row(res, i, &list[i], err, errlen)) != AOS_DB_OK)
            goto out;
    if (rows > limit)
        snprintf(next_cursor, AOS_CURSOR_LEN, "%" PRId64 ".%s", list[take - 1].created_at, list[take - 1].id);
    *out = list;
    *n = take;
    list = NULL;
out:
    aos_runs_free(list, take);
    aos_db_result_free(res);
    return rc;
}

static const char SQL_RUN_STATUS[] = "SELECT status FROM runs WHERE tenant_id = $1 AND id = $2";
static const char SQL_RUN_STATUS_PG[] = "SELECT status FROM runs WHERE tenant_id = $1 AND id = $2 FOR UPDATE";
static const char SQL_RUN_CANCEL_REQUEST[] =
    "UPDATE runs SET cancel_requested = 1, updated_at = $3 WHERE tenant_id = $1 AND id = $2 AND status = 'running'";
static const char SQL_RUN_CANCEL_NOW[] =
    "UPDATE runs SET status = 'cancelled', cancel_requested = 1, state = NULL, finished_at = $3, updated_at = $3 "
    "WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'waiting_approval', 'budget_exceeded')";
static const char SQL_APPROVAL_CLOSE_CANCELLED[] =
    "UPDATE approvals SET status = 'rejected', decided_by = $3, decided_at = $4, comment = 'run cancelled' "
    "WHERE tenant_id = $1 AND run_id = $2 AND status = 'pending'";

static int run_status(struct aos_store_tx *tx, const char *tid, const char *rid, char status[AOS_RUN_STATUS_LEN],
                      char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid)};
    int rc = aos_store_exec(tx, is_pg(tx) ? SQL_RUN_STATUS_PG : SQL_RUN_STATUS, p, NP(p), &res, err, errlen);

    if (rc == AOS_DB_OK)
        rc = aos_db_result_rows(res) == 0 ? nf(err, errlen, "run")
                                          : aos_cell_fixed(res, 0, 0, status, AOS_RUN_STATUS_LEN, err, errlen);
    aos_db_result_free(res);
    return rc;
}

int aos_store_run_cancel(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, const char *by,
                         int *result, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN], status[AOS_RUN_STATUS_LEN];
    int64_t now = aos_store_now_ms(), changes = 0;
    int rc;

    *result = 0;
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(run_id, rid))
        return nf(err, errlen, "run");
    if ((rc = run_status(tx, tid, rid, status, err, errlen)) != AOS_DB_OK)
        return rc;
    if (aos_run_status_final(status)) {
        *result = AOS_RUN_ALREADY_FINAL;
        return AOS_DB_OK;
    }
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid), AOS_DB_P_INT(now)};
    if (strcmp(status, "running") == 0) {
        rc = aos_exec_changes(tx, SQL_RUN_CANCEL_REQUEST, p, NP(p), &changes, err, errlen);
        *result = AOS_RUN_CANCEL_REQUESTED;
    } else {
        rc = aos_exec_changes(tx, SQL_RUN_CANCEL_NOW, p, NP(p), &changes, err, errlen);
        if (rc == AOS_DB_OK)
            rc = release_held(tx, tid, rid, NULL, err, errlen); /* parked by a draining node */
        if (rc == AOS_DB_OK) {
            struct aos_db_param q[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid), AOS_DB_P_TEXT(by != NULL ? by : ""),
                                       AOS_DB_P_INT(now)};
            rc = aos_store_exec(tx, SQL_APPROVAL_CLOSE_CANCELLED, q, NP(q), NULL, err, errlen);
        }
        *result = AOS_RUN_CANCELLED;
    }
    if (rc == AOS_DB_OK && changes == 0) {
        /* SQLite only (PostgreSQL holds the row): cannot happen inside one
         * write transaction, but never report a cancel that did not happen. */
        aos_db_seterr(err, errlen, "run changed state during cancel");
        rc = AOS_DB_RETRY;
    }
    return rc;
}

static const char SQL_RUN_RESUME[] =
    "UPDATE runs SET status = 'queued', error = NULL, run_after = $3, updated_at = $3 WHERE tenant_id = $1 AND "
    "id = $2 AND status = 'budget_exceeded'";

int aos_store_run_resume(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, char *err,
                         size_t errlen)
{
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN], status[AOS_RUN_STATUS_LEN];
    int64_t changes = 0;
    int rc;

    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(run_id, rid))
        return nf(err, errlen, "run");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid), AOS_DB_P_INT(aos_store_now_ms())};
    if ((rc = aos_exec_changes(tx, SQL_RUN_RESUME, p, NP(p), &changes, err, errlen)) != AOS_DB_OK || changes > 0)
        return rc;
    if ((rc = run_status(tx, tid, rid, status, err, errlen)) != AOS_DB_OK)
        return rc;
    aos_db_seterr(err, errlen, "the run is %s, not budget_exceeded", status);
    return AOS_DB_CONSTRAINT;
}

/* ------------------------------------------------------------ approvals */

static const char SQL_APPROVAL_GET[] = "SELECT " APPROVAL_COLS " FROM approvals WHERE tenant_id = $1 AND id = $2";
static const char SQL_APPROVAL_GET_PG[] =
    "SELECT " APPROVAL_COLS " FROM approvals WHERE tenant_id = $1 AND id = $2 FOR UPDATE";

static int approval_get(struct aos_store_tx *tx, const char *sql, const char *tid, const char *aid,
                        struct aos_approval *out, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(aid)};
    int rc = aos_store_exec(tx, sql, p, NP(p), &res, err, errlen);

    if (rc == AOS_DB_OK)
        rc = aos_db_result_rows(res) == 0 ? nf(err, errlen, "approval")
                                          : approval_from_row(res, 0, out, err, errlen);
    aos_db_result_free(res);
    return rc;
}

int aos_store_approval_get(struct aos_store_tx *tx, const char *tenant_id, const char *approval_id,
                           struct aos_approval *out, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], aid[AOS_ID_LEN];

    memset(out, 0, sizeof *out);
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(approval_id, aid))
        return nf(err, errlen, "approval");
    return approval_get(tx, SQL_APPROVAL_GET, tid, aid, out, err, errlen);
}

static void approval_list_sql(char *buf, size_t len, bool status, bool cursor)
{
    int k = 2;
    size_t used = (size_t)snprintf(buf, len, "SELECT " APPROVAL_COLS " FROM approvals WHERE tenant_id = $1");
    if (status && used < len)
        used += (size_t)snprintf(buf + used, len - used, " AND status = $%d", k++);
    if (cursor && used < len) {
        used += (size_t)snprintf(buf + used, len - used, " AND (created_at > $%d OR (created_at = $%d AND id > $%d))",
                                 k, k, k + 1);
        k += 2;
    }
    if (used < len)
        snprintf(buf + used, len - used, " ORDER BY created_at, id LIMIT $%d", k);
}

int aos_store_approval_list(struct aos_store_tx *tx, const char *tenant_id, const char *status, const char *cursor,
                            size_t limit, struct aos_approval **out, size_t *n, char next_cursor[AOS_CURSOR_LEN],
                            char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], after_id[AOS_ID_LEN], sql[1024];
    struct aos_db_param p[5];
    struct aos_db_result *res = NULL;
    struct aos_approval *list = NULL;
    int64_t after_ts = 0;
    size_t np = 0, rows, take = 0, i;
    bool first = cursor == NULL || cursor[0] == '\0';
    int rc;

    *out = NULL;
    *n = 0;
    next_cursor[0] = '\0';
    if ((rc = aos_page_cursor(cursor, limit, first, &after_ts, after_id, err, errlen)) != AOS_DB_OK)
        return rc;
    if (!aos_store_id_norm(tenant_id, tid))
        return AOS_DB_OK;
    approval_list_sql(sql, sizeof sql, status != NULL, !first);
    p[np++] = AOS_DB_P_TEXT(tid);
    if (status != NULL)
        p[np++] = AOS_DB_P_TEXT(status);
    if (!first) {
        p[np++] = AOS_DB_P_INT(after_ts);
        p[np++] = AOS_DB_P_TEXT(after_id);
    }
    p[np++] = AOS_DB_P_INT(limit + 1);
    if ((rc = aos_store_exec(tx, sql, p, np, &res, err, errlen)) != AOS_DB_OK)
        return rc;
    rows = aos_db_result_rows(res);
    take = rows > limit ? limit : rows;
    if (take > 0 && (list = calloc(take, sizeof *list)) == NULL) {
        aos_db_seterr(err, errlen, "out of memory");
        rc = AOS_DB_ERROR;
        goto out;
    }
    for (i = 0; i < take; i++)
        if ((rc = approval_from_row(res, i, &list[i], err, errlen)) != AOS_DB_OK)
            goto out;
    if (rows > limit)
        snprintf(next_cursor, AOS_CURSOR_LEN, "%" PRId64 ".%s", list[take - 1].created_at, list[take - 1].id);
    *out = list;
    *n = take;
    list = NULL;
out:
    aos_approvals_free(list, take);
    aos_db_result_free(res);
    return rc;
}

static const char SQL_APPROVAL_DECIDE[] =
    "UPDATE approvals SET status = $3, decided_by = $4, decided_at = $5, comment = $6 "
    "WHERE tenant_id = $1 AND id = $2 AND status = 'pending'";
static const char SQL_RUN_REQUEUE_WAITING[] =
    "UPDATE runs SET status = 'queued', run_after = $3, updated_at = $3 "
    "WHERE tenant_id = $1 AND id = $2 AND status = 'waiting_approval'";

int aos_store_approval_decide(struct aos_store_tx *tx, const char *tenant_id, const char *approval_id,
                              const char *by, bool approve, const char *comment, bool four_eyes, int *result,
                              struct aos_approval *out, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], aid[AOS_ID_LEN];
    const char *want = approve ? "approved" : "rejected";
    int64_t now = aos_store_now_ms(), changes = 0;
    int rc;

    *result = 0;
    memset(out, 0, sizeof *out);
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(approval_id, aid))
        return nf(err, errlen, "approval");
    if ((rc = approval_get(tx, is_pg(tx) ? SQL_APPROVAL_GET_PG : SQL_APPROVAL_GET, tid, aid, out, err, errlen)) !=
        AOS_DB_OK)
        return rc;
    if (strcmp(out->status, "pending") != 0) {
        *result = strcmp(out->status, want) == 0 ? AOS_DECIDED_SAME : AOS_DECIDED_OTHER;
        return AOS_DB_OK;
    }
    if (four_eyes && out->requested_by != NULL && by != NULL && strcmp(out->requested_by, by) == 0) {
        *result = AOS_DECIDE_FOUR_EYES;
        return AOS_DB_OK;
    }
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(aid), AOS_DB_P_TEXT(want),
                               AOS_DB_P_TEXT(by),  AOS_DB_P_INT(now),  AOS_DB_P_TEXT(comment)};
    if ((rc = aos_exec_changes(tx, SQL_APPROVAL_DECIDE, p, NP(p), &changes, err, errlen)) != AOS_DB_OK)
        return rc;
    if (changes == 0) {
        aos_db_seterr(err, errlen, "approval changed during the decision");
        return AOS_DB_RETRY;
    }
    struct aos_db_param q[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(out->run_id), AOS_DB_P_INT(now)};
    if ((rc = aos_store_exec(tx, SQL_RUN_REQUEUE_WAITING, q, NP(q), NULL, err, errlen)) != AOS_DB_OK)
        return rc;
    aos_approval_clear(out);
    if ((rc = approval_get(tx, SQL_APPROVAL_GET, tid, aid, out, err, errlen)) == AOS_DB_OK)
        *result = AOS_DECIDED;
    return rc;
}

/* ------------------------------------------------------------ budgets */

bool aos_budget_limits_any(const struct aos_budget_limits *b)
{
    return b->tenant_tokens_day > 0 || b->tenant_tokens_month > 0 || b->tenant_micro_usd_day > 0 ||
           b->tenant_micro_usd_month > 0 || b->agent_tokens_day > 0 || b->agent_tokens_month > 0 ||
           b->agent_micro_usd_day > 0 || b->agent_micro_usd_month > 0;
}

static const char SQL_TENANT_LOCK_PG[] = "SELECT id FROM tenants WHERE id = $1 FOR UPDATE";
static const char SQL_RUN_RESERVATION[] = "SELECT reserved_day FROM runs WHERE tenant_id = $1 AND id = $2";
/* Spent and reserved, per scope: agent/day, agent/month, tenant/day,
 * tenant/month ($2 = day, $3 = agent, $4 = first day of the month). */
#define SUMS(cond, expr) "CAST(COALESCE(SUM(CASE WHEN " cond " THEN " expr " ELSE 0 END), 0) AS BIGINT)"
#define SCOPE(cond)                                                                                      \
    SUMS(cond, "tokens_in + tokens_out") ", " SUMS(cond, "micro_usd") ", " SUMS(cond, "reserved_tokens") \
        ", " SUMS(cond, "reserved_micro_usd")
static const char SQL_BUDGET_SUMS[] = "SELECT " SCOPE("agent_id = $3 AND day = $2") ", " SCOPE(
    "agent_id = $3") ", " SCOPE("day = $2") ", " SCOPE("1 = 1") " FROM usage WHERE tenant_id = $1 AND day >= $4 "
                                                                "AND day <= $2";
static const char SQL_USAGE_RESERVE[] =
    "INSERT INTO usage (tenant_id, day, agent_id, reserved_tokens, reserved_micro_usd, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, day, agent_id) DO UPDATE SET "
    "reserved_tokens = usage.reserved_tokens + excluded.reserved_tokens, "
    "reserved_micro_usd = usage.reserved_micro_usd + excluded.reserved_micro_usd, updated_at = excluded.updated_at";
static const char SQL_RUN_SET_RESERVATION[] =
    "UPDATE runs SET reserved_day = $3, reserved_tokens = $4, reserved_micro_usd = $5, reserved_agent_id = $6 "
    "WHERE tenant_id = $1 AND id = $2";

struct budget_check {
    const char *name;
    int64_t limit;
    int64_t spent, reserved, amount;
};

int aos_store_budget_reserve(struct aos_store_tx *tx, const char *tenant_id, const char *run_id,
                             const char *agent_id, const char *day, int64_t tokens, int64_t micro_usd,
                             const struct aos_budget_limits *limits, bool *reserved, char *warn, size_t warnlen,
                             char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN], aid[AOS_ID_LEN], month[AOS_DAY_LEN];
    struct aos_db_result *res = NULL;
    size_t used = 0;
    int rc;

    *reserved = false;
    if (warn != NULL && warnlen > 0)
        warn[0] = '\0';
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(run_id, rid) || !aos_store_id_norm(agent_id, aid))
        return nf(err, errlen, "run");
    if (strlen(day) != 10 || tokens < 0 || micro_usd < 0) {
        aos_db_seterr(err, errlen, "a reservation needs a day and amounts >= 0");
        return AOS_DB_CONSTRAINT;
    }
    if (!aos_budget_limits_any(limits)) {
        *reserved = true; /* nothing to guard: no reservation kept */
        return AOS_DB_OK;
    }
    struct aos_db_param pt[] = {AOS_DB_P_TEXT(tid)};
    if (is_pg(tx) && (rc = aos_store_exec(tx, SQL_TENANT_LOCK_PG, pt, NP(pt), NULL, err, errlen)) != AOS_DB_OK)
        return rc;
    struct aos_db_param pr[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid)};
    if ((rc = aos_store_exec(tx, SQL_RUN_RESERVATION, pr, NP(pr), &res, err, errlen)) != AOS_DB_OK)
        goto out;
    if (aos_db_result_rows(res) == 0) {
        rc = nf(err, errlen, "run");
        goto out;
    }
    if (!aos_db_result_is_null(res, 0, 0)) {
        *reserved = true; /* taken before a crash or a retry: still held */
        goto out;
    }
    aos_db_result_free(res);
    res = NULL;
    memcpy(month, day, 8);
    memcpy(month + 8, "01", 3);
    struct aos_db_param ps[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(day), AOS_DB_P_TEXT(aid), AOS_DB_P_TEXT(month)};
    if ((rc = aos_store_exec(tx, SQL_BUDGET_SUMS, ps, NP(ps), &res, err, errlen)) != AOS_DB_OK)
        goto out;
    /* columns: per scope (agent/day, agent/month, tenant/day, tenant/month)
     * spent tokens, spent micro, reserved tokens, reserved micro */
#define COL(scope, k) aos_db_result_int(res, 0, (size_t)((scope) * 4 + (k)))
    const struct budget_check checks[] = {
        {"agent tokens_day", limits->agent_tokens_day, COL(0, 0), COL(0, 2), tokens},
        {"agent micro_usd_day", limits->agent_micro_usd_day, COL(0, 1), COL(0, 3), micro_usd},
        {"agent tokens_month", limits->agent_tokens_month, COL(1, 0), COL(1, 2), tokens},
        {"agent micro_usd_month", limits->agent_micro_usd_month, COL(1, 1), COL(1, 3), micro_usd},
        {"tenant tokens_day", limits->tenant_tokens_day, COL(2, 0), COL(2, 2), tokens},
        {"tenant micro_usd_day", limits->tenant_micro_usd_day, COL(2, 1), COL(2, 3), micro_usd},
        {"tenant tokens_month", limits->tenant_tokens_month, COL(3, 0), COL(3, 2), tokens},
        {"tenant micro_usd_month", limits->tenant_micro_usd_month, COL(3, 1), COL(3, 3), micro_usd},
    };
#undef COL
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        const struct budget_check *c = &checks[i];
        if (c->limit <= 0)
            continue;
        if (c->spent >= c->limit || c->spent + c->reserved + c->amount > c->limit) {
            if (warn != NULL && warnlen > 0)
                snprintf(warn, warnlen, "%s", c->name); /* the limit that refused */
            goto out;                                   /* *reserved stays false */
        }
        /* Crossing 80% with this reservation: warn once, at the crossing. */
        if ((c->spent + c->reserved) * 5 < c->limit * 4 && (c->spent + c->reserved + c->amount) * 5 >= c->limit * 4 &&
            warn != NULL && used < warnlen)
            used += (size_t)snprintf(warn + used, warnlen - used, "%s%s", used > 0 ? ", " : "", c->name);
    }
    if (tokens > 0 || micro_usd > 0) {
        struct aos_db_param pu[] = {AOS_DB_P_TEXT(tid),   AOS_DB_P_TEXT(day),       AOS_DB_P_TEXT(aid),
                                    AOS_DB_P_INT(tokens), AOS_DB_P_INT(micro_usd), AOS_DB_P_INT(aos_store_now_ms())};
        if ((rc = aos_store_exec(tx, SQL_USAGE_RESERVE, pu, NP(pu), NULL, err, errlen)) != AOS_DB_OK)
            goto out;
        struct aos_db_param pn[] = {AOS_DB_P_TEXT(tid),    AOS_DB_P_TEXT(rid),       AOS_DB_P_TEXT(day),
                                    AOS_DB_P_INT(tokens), AOS_DB_P_INT(micro_usd), AOS_DB_P_TEXT(aid)};
        if ((rc = aos_store_exec(tx, SQL_RUN_SET_RESERVATION, pn, NP(pn), NULL, err, errlen)) != AOS_DB_OK)
            goto out;
    }
    *reserved = true;
out:
    aos_db_result_free(res);
    return rc;
}

/* ------------------------------------------------------------ claiming */

void aos_claimed_run_clear(struct aos_claimed_run *c)
{
    if (c == NULL)
        return;
    aos_run_clear(&c->run);
    aos_agent_clear(&c->agent);
    free(c->decision);
    memset(c, 0, sizeof *c);
}

static const char SQL_READY_TENANTS[] =
    "SELECT t.id FROM tenants t WHERE t.active = 1 AND (EXISTS (SELECT 1 FROM runs r WHERE r.tenant_id = t.id AND "
    "r.status = 'queued' AND r.run_after <= $1) OR EXISTS (SELECT 1 FROM runs r WHERE r.tenant_id = t.id AND "
    "r.status = 'running' AND r.lease_expires < $1)) ORDER BY t.id LIMIT $2";

int aos_store_runs_ready_tenants(struct aos_store_tx *tx, int64_t now, char (*out)[AOS_ID_LEN], size_t max,
                                 size_t *n, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct aos_db_param p[] = {AOS_DB_P_INT(now), AOS_DB_P_INT(max)};
    int rc = aos_store_exec(tx, SQL_READY_TENANTS, p, NP(p), &res, err, errlen);

    *n = 0;
    if (rc == AOS_DB_OK) {
        size_t rows = aos_db_result_rows(res);
        for (size_t i = 0; i < rows && rc == AOS_DB_OK; i++)
            rc = aos_cell_fixed(res, i, 0, out[i], AOS_ID_LEN, err, errlen);
        if (rc == AOS_DB_OK)
            *n = rows;
    }
    aos_db_result_free(res);
    return rc;
}

static const char SQL_PICK_EXPIRED[] = "SELECT id FROM runs WHERE tenant_id = $1 AND status = 'running' AND "
                                       "lease_expires < $2 ORDER BY lease_expires LIMIT 1";
static const char SQL_PICK_EXPIRED_PG[] = "SELECT id FROM runs WHERE tenant_id = $1 AND status = 'running' AND "
                                          "lease_expires < $2 ORDER BY lease_expires LIMIT 1 FOR UPDATE SKIP LOCKED";
static const char SQL_PICK_QUEUED[] = "SELECT id FROM runs WHERE tenant_id = $1 AND status = 'queued' AND "
                                      "run_after <= $2 ORDER BY run_after, created_at LIMIT 1";
static const char SQL_PICK_QUEUED_PG[] = "SELECT id FROM runs WHERE tenant_id = $1 AND status = 'queued' AND "
                                         "run_after <= $2 ORDER BY run_after, created_at LIMIT 1 FOR UPDATE SKIP "
                                         "LOCKED";
/* A takeover counts as a failed attempt: the step that was running when
 * the owner died or hung may be the cause (a poison step must not kill
 * worker after worker forever). */
static const char SQL_CLAIM[] =
    "UPDATE runs SET attempt = attempt + (CASE WHEN status = 'running' THEN 1 ELSE 0 END), status = 'running', "
    "lease_owner = $3, lease_expires = $4, started_at = COALESCE(started_at, $5), updated_at = $5 "
    "WHERE tenant_id = $1 AND id = $2 AND (status = 'queued' OR (status = 'running' AND lease_expires < $5)) "
    "RETURNING " RUN_COLS;
static const char SQL_WORKFLOW_DEF[] = "SELECT definition FROM workflows WHERE tenant_id = $1 AND id = $2";
static const char SQL_DECISION[] =
    "SELECT status, comment, decided_by FROM approvals WHERE tenant_id = $1 AND run_id = $2 AND step_seq = $3";

/* The agent id of workflow stage `stage` in definition text
 * {"steps":[{"agent":"<id>"},...]}, and the number of stages. */
static bool workflow_stage_agent(const char *def, int64_t stage, char out[AOS_ID_LEN], int64_t *stages);

static int pick(struct aos_store_tx *tx, const char *sql, const char *tid, int64_t now, char id[AOS_ID_LEN],
                bool *found, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(now)};
    int rc = aos_store_exec(tx, sql, p, NP(p), &res, err, errlen);

    *found = false;
    if (rc == AOS_DB_OK && aos_db_result_rows(res) > 0) {
        rc = aos_cell_fixed(res, 0, 0, id, AOS_ID_LEN, err, errlen);
        *found = rc == AOS_DB_OK;
    }
    aos_db_result_free(res);
    return rc;
}

/* {"approved":bool,"decision":"approved|rejected|expired","comment":...,"decided_by":...} */
static char *decision_json(const char *status, const char *comment, const char *by);

static int claim_context(struct aos_store_tx *tx, const char *tid, struct aos_claimed_run *c, char *err,
                         size_t errlen)
{
    struct aos_db_result *res = NULL;
    char agent_id[AOS_ID_LEN];
    int rc = AOS_DB_OK;

    c->stages = 1;
    if (c->run.workflow_id[0] != '\0') {
        struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(c->run.workflow_id)};
        if ((rc = aos_store_exec(tx, SQL_WORKFLOW_DEF, p, NP(p), &res, err, errlen)) != AOS_DB_OK)
            goto out;
        if (aos_db_result_rows(res) == 0 ||
            !workflow_stage_agent(aos_db_result_text(res, 0, 0), c->run.stage, agent_id, &c->stages)) {
            c->agent_deleted = true; /* a broken workflow: the engine fails the run */
            goto out;
        }
        aos_db_result_free(res);
        res = NULL;
    } else {
        memcpy(agent_id, c->run.agent_id, AOS_ID_LEN);
    }
    rc = aos_store_agent_get(tx, tid, agent_id, &c->agent, err, errlen);
    if (rc == AOS_DB_NOT_FOUND) {
        c->agent_deleted = true;
        memcpy(c->agent.id, agent_id, AOS_ID_LEN);
        rc = AOS_DB_OK;
    }
    if (rc != AOS_DB_OK || c->run.next_step == 0)
        goto out;
    struct aos_db_param q[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(c->run.id), AOS_DB_P_INT(c->run.next_step - 1)};
    if ((rc = aos_store_exec(tx, SQL_DECISION, q, NP(q), &res, err, errlen)) != AOS_DB_OK)
        goto out;
    if (aos_db_result_rows(res) > 0 && strcmp(aos_db_result_text(res, 0, 0), "pending") != 0) {
        c->decision = decision_json(aos_db_result_text(res, 0, 0), aos_db_result_text(res, 0, 1),
                                    aos_db_result_text(res, 0, 2));
        if (c->decision == NULL) {
            aos_db_seterr(err, errlen, "out of memory");
            rc = AOS_DB_ERROR;
        }
    }
out:
    aos_db_result_free(res);
    return rc;
}

int aos_store_run_claim(struct aos_store_tx *tx, const char *tenant_id, const char *worker_id, int64_t now,
                        int64_t lease_ms, struct aos_claimed_run *out, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN];
    struct aos_db_result *res = NULL;
    bool found = false, pg = is_pg(tx);
    int rc;

    memset(out, 0, sizeof *out);
    if (!aos_store_id_norm(tenant_id, tid))
        return nf(err, errlen, "tenant");
    if ((rc = pick(tx, pg ? SQL_PICK_EXPIRED_PG : SQL_PICK_EXPIRED, tid, now, rid, &found, err, errlen)) !=
        AOS_DB_OK)
        return rc;
    out->taken_over = found;
    if (!found &&
        (rc = pick(tx, pg ? SQL_PICK_QUEUED_PG : SQL_PICK_QUEUED, tid, now, rid, &found, err, errlen)) != AOS_DB_OK)
        return rc;
    if (!found)
        return AOS_DB_NOT_FOUND; /* quietly: the usual answer of an empty queue */
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid), AOS_DB_P_TEXT(worker_id),
                               AOS_DB_P_INT(now + lease_ms), AOS_DB_P_INT(now)};
    if ((rc = aos_store_exec(tx, SQL_CLAIM, p, NP(p), &res, err, errlen)) != AOS_DB_OK)
        goto out;
    if (aos_db_result_rows(res) == 0) {
        rc = AOS_DB_NOT_FOUND; /* taken meanwhile (SQLite cannot: one writer) */
        goto out;
    }
    if ((rc = run_from_row(res, 0, &out->run, err, errlen)) != AOS_DB_OK)
        goto out;
    rc = claim_context(tx, tid, out, err, errlen);
out:
    aos_db_result_free(res);
    if (rc != AOS_DB_OK)
        aos_claimed_run_clear(out);
    return rc;
}

static const char SQL_RENEW[] = "UPDATE runs SET lease_expires = $4 WHERE tenant_id = $1 AND id = $2 AND "
                                "lease_owner = $3 AND status = 'running'";

int aos_store_run_renew(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, const char *worker_id,
                        int64_t lease_expires, bool *renewed, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN];
    int64_t changes = 0;
    int rc;

    *renewed = false;
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(run_id, rid))
        return nf(err, errlen, "run");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid), AOS_DB_P_TEXT(worker_id),
                               AOS_DB_P_INT(lease_expires)};
    rc = aos_exec_changes(tx, SQL_RENEW, p, NP(p), &changes, err, errlen);
    *renewed = changes > 0;
    return rc;
}

/* ------------------------------------------------------------ reservations */

static const char SQL_HELD[] = "SELECT reserved_day, reserved_agent_id, reserved_tokens, reserved_micro_usd FROM runs "
                               "WHERE tenant_id = $1 AND id = $2 AND reserved_day IS NOT NULL";
static const char SQL_USAGE_RELEASE[] =
    "UPDATE usage SET reserved_tokens = CASE WHEN reserved_tokens > $4 THEN reserved_tokens - $4 ELSE 0 END, "
    "reserved_micro_usd = CASE WHEN reserved_micro_usd > $5 THEN reserved_micro_usd - $5 ELSE 0 END, "
    "updated_at = $6 WHERE tenant_id = $1 AND day = $2 AND agent_id = $3";
static const char SQL_RUN_CLEAR_RESERVATION[] =
    "UPDATE runs SET reserved_day = NULL, reserved_agent_id = NULL, reserved_tokens = 0, reserved_micro_usd = 0 "
    "WHERE tenant_id = $1 AND id = $2";

/* Gives back a reservation whose row values the caller has read. */
static int release_known(struct aos_store_tx *tx, const char *tid, const char *rid, const char *day, const char *agent,
                         int64_t tokens, int64_t micro_usd, char *err, size_t errlen)
{
    int rc;
    if (agent != NULL && agent[0] != '\0') {
        struct aos_db_param pr[] = {AOS_DB_P_TEXT(tid),   AOS_DB_P_TEXT(day),       AOS_DB_P_TEXT(agent),
                                    AOS_DB_P_INT(tokens), AOS_DB_P_INT(micro_usd), AOS_DB_P_INT(aos_store_now_ms())};
        if ((rc = aos_store_exec(tx, SQL_USAGE_RELEASE, pr, NP(pr), NULL, err, errlen)) != AOS_DB_OK)
            return rc;
    }
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid)};
    return aos_store_exec(tx, SQL_RUN_CLEAR_RESERVATION, p, NP(p), NULL, err, errlen);
}

/* Gives back the budget reservation a run holds, if any: whatever ends or
 * parks a run must call this, or the reservation would shrink the budget
 * for good.  day_out (may be NULL) receives the reservation's day, or "". */
static int release_held(struct aos_store_tx *tx, const char *tid, const char *rid, char day_out[AOS_DAY_LEN],
                        char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    char day[AOS_DAY_LEN] = "", agent[AOS_ID_LEN] = "";
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid)};
    int rc = aos_store_exec(tx, SQL_HELD, p, NP(p), &res, err, errlen);

    if (day_out != NULL)
        day_out[0] = '\0';
    if (rc != AOS_DB_OK || aos_db_result_rows(res) == 0)
        goto out;
    if ((rc = aos_cell_fixed(res, 0, 0, day, sizeof day, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_fixed(res, 0, 1, agent, sizeof agent, err, errlen)) != AOS_DB_OK)
        goto out;
    if (agent[0] != '\0') {
        struct aos_db_param pr[] = {AOS_DB_P_TEXT(tid),
                                    AOS_DB_P_TEXT(day),
                                    AOS_DB_P_TEXT(agent),
                                    AOS_DB_P_INT(aos_db_result_int(res, 0, 2)),
                                    AOS_DB_P_INT(aos_db_result_int(res, 0, 3)),
                                    AOS_DB_P_INT(aos_store_now_ms())};
        if ((rc = aos_store_exec(tx, SQL_USAGE_RELEASE, pr, NP(pr), NULL, err, errlen)) != AOS_DB_OK)
            goto out;
    }
    if ((rc = aos_store_exec(tx, SQL_RUN_CLEAR_RESERVATION, p, NP(p), NULL, err, errlen)) == AOS_DB_OK &&
        day_out != NULL)
        memcpy(day_out, day, AOS_DAY_LEN);
out:
    aos_db_result_free(res);
    return rc;
}

/* ------------------------------------------------------------ checkpoints */

static const char SQL_CP_OWNED[] = "SELECT cancel_requested, created_by FROM runs WHERE tenant_id = $1 AND "
                                   "id = $2 AND status = 'running' AND lease_owner = $3 AND next_step = $4";
static const char SQL_CP_OWNED_PG[] = "SELECT cancel_requested, created_by FROM runs WHERE tenant_id = $1 AND "
                                      "id = $2 AND status = 'running' AND lease_owner = $3 AND next_step = $4 "
                                      "FOR UPDATE";
static const char SQL_STEP_INSERT[] =
    "INSERT INTO steps (tenant_id, run_id, seq, agent_id, attempt, outcome, result, error, tokens_in, tokens_out, "
    "cost_micro_usd, started_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
/* The run's usage and the release of its reservation are common to every
 * update below: $3..$5 usage, $6 now. */
#define RUN_USAGE                                                                                      \
    "tokens_in = tokens_in + $3, tokens_out = tokens_out + $4, cost_micro_usd = cost_micro_usd + $5, " \
    "updated_at = $6"
#define RUN_RELEASE "lease_owner = NULL, lease_expires = NULL"
static const char SQL_RUN_CONTINUE[] = "UPDATE runs SET " RUN_USAGE ", state = $7, next_step = next_step + 1, "
                                       "attempt = 0, lease_expires = $8 WHERE tenant_id = $1 AND id = $2";
/* A finished workflow stage goes back to the queue: the next claim loads
 * the next stage's agent ($8 = now, run_after). */
static const char SQL_RUN_STAGE_DONE[] = "UPDATE runs SET " RUN_USAGE ", " RUN_RELEASE ", status = 'queued', "
                                         "output = $7, state = NULL, stage = stage + 1, next_step = next_step + 1, "
                                         "attempt = 0, run_after = $8 WHERE tenant_id = $1 AND id = $2";
static const char SQL_RUN_WAIT[] = "UPDATE runs SET " RUN_USAGE ", " RUN_RELEASE ", status = 'waiting_approval', "
                                   "next_step = next_step + 1, attempt = 0 WHERE tenant_id = $1 AND id = $2";
/* An approval the autonomy mode decided at once: the run goes straight
 * back to the queue ($7 = now) and the next step sees the decision. */
static const char SQL_RUN_AUTO_DECIDED[] = "UPDATE runs SET " RUN_USAGE ", " RUN_RELEASE ", status = 'queued', "
                                           "next_step = next_step + 1, attempt = 0, run_after = $7 "
                                           "WHERE tenant_id = $1 AND id = $2";
static const char SQL_APPROVAL_INSERT_DECIDED[] =
    "INSERT INTO approvals (id, tenant_id, run_id, step_seq, proposal, status, requested_by, decided_by, "
    "decided_at, comment, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9)";
static const char SQL_RUN_RETRY[] = "UPDATE runs SET " RUN_USAGE ", " RUN_RELEASE ", status = 'queued', "
                                    "attempt = attempt + 1, run_after = $7 WHERE tenant_id = $1 AND id = $2";
/* $7 status, $8 output, $9 error, $10 1 if the step was checkpointed. */
static const char SQL_RUN_FINISH[] = "UPDATE runs SET " RUN_USAGE ", " RUN_RELEASE ", status = $7, output = $8, "
                                     "error = $9, state = NULL, next_step = next_step + $10, attempt = 0, "
                                     "finished_at = $6 WHERE tenant_id = $1 AND id = $2";
static const char SQL_APPROVAL_INSERT[] =
    "INSERT INTO approvals (id, tenant_id, run_id, step_seq, proposal, status, requested_by, created_at, "
    "expires_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8)";

static const char *const outcome_names[] = {
    [AOS_CP_CONTINUE] = "continue", [AOS_CP_STAGE_DONE] = "done", [AOS_CP_DONE] = "done",
    [AOS_CP_APPROVAL] = "needs_approval", [AOS_CP_FAILED] = "failed", [AOS_CP_RETRY] = NULL,
};

/* The approval of an APPROVAL checkpoint: decided at once by the autonomy
 * mode, or pending.  cp->approval_id receives its id. */
static int insert_approval(struct aos_store_tx *tx, struct aos_checkpoint *cp, const char *tid, const char *rid,
                           const char *created_by, int64_t now, char *err, size_t errlen)
{
    aos_store_id_new(cp->approval_id);
    if (cp->auto_decision != NULL) {
        char by[40], comment[64];
        snprintf(by, sizeof by, "autonomy:%s", cp->autonomy != NULL ? cp->autonomy : "?");
        snprintf(comment, sizeof comment, "decided by the %s autonomy mode", cp->autonomy != NULL ? cp->autonomy : "?");
        struct aos_db_param pa[] = {AOS_DB_P_TEXT(cp->approval_id),
                                    AOS_DB_P_TEXT(tid),
                                    AOS_DB_P_TEXT(rid),
                                    AOS_DB_P_INT(cp->seq),
                                    AOS_DB_P_TEXT(cp->result != NULL ? cp->result : "{}"),
                                    AOS_DB_P_TEXT(cp->auto_decision),
                                    AOS_DB_P_TEXT(created_by != NULL ? created_by : ""),
                                    AOS_DB_P_TEXT(by),
                                    AOS_DB_P_INT(now),
                                    AOS_DB_P_TEXT(comment)};
        return aos_store_exec(tx, SQL_APPROVAL_INSERT_DECIDED, pa, NP(pa), NULL, err, errlen);
    }
    struct aos_db_param pa[] = {AOS_DB_P_TEXT(cp->approval_id),
                                AOS_DB_P_TEXT(tid),
                                AOS_DB_P_TEXT(rid),
                                AOS_DB_P_INT(cp->seq),
                                AOS_DB_P_TEXT(cp->result != NULL ? cp->result : "{}"),
                                AOS_DB_P_TEXT(created_by != NULL ? created_by : ""),
                                AOS_DB_P_INT(now),
                                cp->approval_expires > 0 ? AOS_DB_P_INT(cp->approval_expires) : AOS_DB_P_NULL};
    return aos_store_exec(tx, SQL_APPROVAL_INSERT, pa, NP(pa), NULL, err, errlen);
}

int aos_store_checkpoint(struct aos_store_tx *tx, struct aos_checkpoint *cp, const char *day, int *result,
                         char status[AOS_RUN_STATUS_LEN], char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN], aid[AOS_ID_LEN], rday[AOS_DAY_LEN];
    struct aos_db_result *res = NULL;
    char *created_by = NULL;
    int64_t now = cp->finished_at;
    bool cancel;
    int rc;

    *result = 0;
    status[0] = '\0';
    if (cp->kind < AOS_CP_CONTINUE || cp->kind > AOS_CP_RETRY || !aos_store_id_norm(cp->tenant_id, tid) ||
        !aos_store_id_norm(cp->run_id, rid) || !aos_store_id_norm(cp->agent_id, aid) || cp->tokens_in < 0 ||
        cp->tokens_out < 0 || cp->cost_micro_usd < 0 || cp->attempt < 1) {
        aos_db_seterr(err, errlen, "malformed checkpoint");
        return AOS_DB_CONSTRAINT;
    }
    struct aos_db_param po[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid), AOS_DB_P_TEXT(cp->worker_id),
                                AOS_DB_P_INT(cp->seq)};
    if ((rc = aos_store_exec(tx, is_pg(tx) ? SQL_CP_OWNED_PG : SQL_CP_OWNED, po, NP(po), &res, err, errlen)) !=
        AOS_DB_OK)
        goto out;
    if (aos_db_result_rows(res) == 0) {
        *result = AOS_CP_LEASE_LOST;
        goto out;
    }
    if ((rc = aos_cell_dup(res, 0, 1, &created_by, err, errlen)) != AOS_DB_OK)
        goto out;
    cancel = aos_db_result_int(res, 0, 0) != 0;

    /* Settle: release what was reserved, book what was spent (on the
     * reservation's day: a step that began before midnight counts there). */
    if ((rc = release_held(tx, tid, rid, rday, err, errlen)) != AOS_DB_OK)
        goto out;
    if (cp->tokens_in > 0 || cp->tokens_out > 0 || cp->cost_micro_usd > 0) {
        struct aos_usage u = {cp->tokens_in, cp->tokens_out, cp->cost_micro_usd};
        if ((rc = aos_store_usage_add(tx, tid, rday[0] != '\0' ? rday : day, aid, &u, err, errlen)) != AOS_DB_OK)
            goto out;
    }

    if (cp->kind != AOS_CP_RETRY) {
        struct aos_db_param ps[] = {AOS_DB_P_TEXT(tid),
                                    AOS_DB_P_TEXT(rid),
                                    AOS_DB_P_INT(cp->seq),
                                    AOS_DB_P_TEXT(aid),
                                    AOS_DB_P_INT(cp->attempt),
                                    AOS_DB_P_TEXT(outcome_names[cp->kind]),
                                    AOS_DB_P_TEXT(cp->result),
                                    AOS_DB_P_TEXT(cp->error),
                                    AOS_DB_P_INT(cp->tokens_in),
                                    AOS_DB_P_INT(cp->tokens_out),
                                    AOS_DB_P_INT(cp->cost_micro_usd),
                                    AOS_DB_P_INT(cp->started_at),
                                    AOS_DB_P_INT(cp->finished_at)};
        if ((rc = aos_store_exec(tx, SQL_STEP_INSERT, ps, NP(ps), NULL, err, errlen)) != AOS_DB_OK)
            goto out;
    }

    struct aos_db_param pu[10] = {AOS_DB_P_TEXT(tid),          AOS_DB_P_TEXT(rid),
                                  AOS_DB_P_INT(cp->tokens_in), AOS_DB_P_INT(cp->tokens_out),
                                  AOS_DB_P_INT(cp->cost_micro_usd), AOS_DB_P_INT(now)};
    const char *sql;
    size_t np = 6;
    const char *final = NULL;
    int kind = cp->kind;

    /* A requested cancel wins over everything but a finished run. */
    if (cancel && kind != AOS_CP_DONE && kind != AOS_CP_FAILED)
        final = "cancelled";
    else if (kind == AOS_CP_DONE)
        final = "succeeded";
    else if (kind == AOS_CP_FAILED)
        final = "failed";
    if (final != NULL) {
        sql = SQL_RUN_FINISH;
        pu[np++] = AOS_DB_P_TEXT(final);
        pu[np++] = kind == AOS_CP_DONE ? AOS_DB_P_TEXT(cp->result) : AOS_DB_P_NULL;
        pu[np++] = kind == AOS_CP_FAILED ? AOS_DB_P_TEXT(cp->error != NULL ? cp->error : "failed") : AOS_DB_P_NULL;
        pu[np++] = AOS_DB_P_INT(kind == AOS_CP_RETRY ? 0 : 1);
    } else if (kind == AOS_CP_CONTINUE) {
        sql = SQL_RUN_CONTINUE;
        pu[np++] = AOS_DB_P_TEXT(cp->result);
        pu[np++] = AOS_DB_P_INT(cp->lease_expires);
    } else if (kind == AOS_CP_STAGE_DONE) {
        sql = SQL_RUN_STAGE_DONE;
        pu[np++] = AOS_DB_P_TEXT(cp->result);
        pu[np++] = AOS_DB_P_INT(now);
    } else if (kind == AOS_CP_APPROVAL && cp->auto_decision != NULL) {
        sql = SQL_RUN_AUTO_DECIDED;
        pu[np++] = AOS_DB_P_INT(now);
    } else if (kind == AOS_CP_APPROVAL) {
        sql = SQL_RUN_WAIT;
    } else {
        sql = SQL_RUN_RETRY;
        pu[np++] = AOS_DB_P_INT(cp->run_after);
    }
    if ((rc = aos_store_exec(tx, sql, pu, np, NULL, err, errlen)) != AOS_DB_OK)
        goto out;

    if (final == NULL && kind == AOS_CP_APPROVAL &&
        (rc = insert_approval(tx, cp, tid, rid, created_by, now, err, errlen)) != AOS_DB_OK)
        goto out;
    snprintf(status, AOS_RUN_STATUS_LEN, "%s",
             final != NULL                 ? final
             : kind == AOS_CP_APPROVAL     ? (cp->auto_decision != NULL ? "queued" : "waiting_approval")
             : kind == AOS_CP_RETRY || kind == AOS_CP_STAGE_DONE ? "queued"
                                           : "running");
    *result = AOS_CP_OK;
out:
    free(created_by);
    aos_db_result_free(res);
    return rc;
}

/* ------------------------------------------------------------ batched checkpoints */

/* The checkpoints of a group commit go to PostgreSQL as one JSON document
 * per statement (jsonb_to_recordset): a constant number of round trips per
 * batch instead of five per checkpoint.  Built by hand: every value is
 * either a validated id, a number, a JSON text already checked by the
 * engine, or a string escaped here (store/cells.h: aos_jbuf). */

/* ,"key": then a string or an integer */
static void jb_kstr(struct aos_jbuf *b, const char *key, const char *v)
{
    aos_jb_s(b, key);
    aos_jb_str(b, v);
}

static void jb_kint(struct aos_jbuf *b, const char *key, int64_t v)
{
    aos_jb_s(b, key);
    aos_jb_int(b, v);
}

static const char SQL_CP_OWNED_MANY_PG[] =
    "SELECT r.id, r.lease_owner, r.cancel_requested, r.created_by, r.reserved_day, r.reserved_agent_id, "
    "r.reserved_tokens, r.reserved_micro_usd FROM runs r JOIN jsonb_to_recordset(CAST($1 AS jsonb)) "
    "AS c(tid uuid, rid uuid, own text, seq integer) ON r.tenant_id = c.tid AND r.id = c.rid "
    "WHERE r.id = ANY(CAST($2 AS uuid[])) AND r.status = 'running' AND r.lease_owner = c.own AND "
    "r.next_step = c.seq ORDER BY r.id FOR UPDATE OF r";
static const char SQL_STEP_INSERT_MANY_PG[] =
    "INSERT INTO steps (tenant_id, run_id, seq, agent_id, attempt, outcome, result, error, tokens_in, tokens_out, "
    "cost_micro_usd, started_at, finished_at) SELECT c.tid, c.rid, c.seq, c.aid, c.att, c.oc, CAST(c.res AS jsonb), "
    "c.err, c.tin, c.tout, c.cost, c.sa, c.fa FROM jsonb_to_recordset(CAST($1 AS jsonb)) AS c(tid uuid, rid uuid, "
    "seq integer, aid uuid, att integer, oc text, res text, err text, tin bigint, tout bigint, cost bigint, "
    "sa bigint, fa bigint)";
/* The owner check and the update below also get the batch's run ids as an
 * array ($2): `r.id = ANY($2)` is a primary-key lookup the planner always
 * takes, where a join on jsonb_to_recordset alone (100 rows estimated)
 * made it hash-join a sequential scan of runs, dead row versions included:
 * O(table) per batch, ~100 us per checkpoint with 4000 runs.
 *
 * Every per-kind update of aos_store_checkpoint in one statement; c.k says
 * which: continue | stage | wait | auto | retry | finish.  c.res is the new
 * state (continue) or output (stage, finish). */
static const char SQL_RUN_UPDATE_MANY_PG[] =
    "UPDATE runs AS r SET tokens_in = r.tokens_in + c.tin, tokens_out = r.tokens_out + c.tout, "
    "cost_micro_usd = r.cost_micro_usd + c.cost, updated_at = c.now, status = c.st, "
    "lease_owner = CASE WHEN c.k = 'continue' THEN r.lease_owner END, "
    "lease_expires = CASE WHEN c.k = 'continue' THEN c.lease END, "
    "state = CASE WHEN c.k = 'continue' THEN CAST(c.res AS jsonb) WHEN c.k IN ('wait', 'auto', 'retry') THEN r.state "
    "END, "
    "output = CASE WHEN c.k IN ('stage', 'finish') THEN CAST(c.res AS jsonb) ELSE r.output END, "
    "error = CASE WHEN c.k = 'finish' THEN c.err ELSE r.error END, next_step = r.next_step + c.inc, "
    "attempt = CASE WHEN c.k = 'retry' THEN r.attempt + 1 ELSE 0 END, "
    "stage = r.stage + CASE WHEN c.k = 'stage' THEN 1 ELSE 0 END, "
    "run_after = CASE WHEN c.k IN ('stage', 'auto', 'retry') THEN c.ra ELSE r.run_after END, "
    "finished_at = CASE WHEN c.k = 'finish' THEN c.now ELSE r.finished_at END "
    "FROM jsonb_to_recordset(CAST($1 AS jsonb)) AS c(tid uuid, rid uuid, tin bigint, tout bigint, cost bigint, "
    "now bigint, k text, st text, res text, err text, inc integer, lease bigint, ra bigint) "
    "WHERE r.id = ANY(CAST($2 AS uuid[])) AND r.tenant_id = c.tid AND r.id = c.rid";

/* One checkpoint of a batch, as the batch sees it. */
struct cp_row {
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN], aid[AOS_ID_LEN];
    bool owned, cancel;
    char *created_by;
    char rday[AOS_DAY_LEN];
};

/* $1 the JSON document b, and $2 the array ids when not NULL. */
static int exec_json(struct aos_store_tx *tx, const char *sql, struct aos_jbuf *b, struct aos_jbuf *ids,
                     struct aos_db_result **res, char *err, size_t errlen)
{
    if (b->oom || (ids != NULL && ids->oom)) {
        aos_db_seterr(err, errlen, "out of memory");
        return AOS_DB_ERROR;
    }
    struct aos_db_param p[] = {AOS_DB_P_TEXTN(b->p, b->len), ids != NULL ? AOS_DB_P_TEXTN(ids->p, ids->len)
                                                                         : AOS_DB_P_NULL};
    return aos_store_exec(tx, sql, p, ids != NULL ? 2 : 1, res, err, errlen);
}

/* A uuid[] literal element (ids are canonical: no quoting needed). */
static void ids_add(struct aos_jbuf *ids, const char *id)
{
    aos_jb_s(ids, ids->len > 1 ? "," : "");
    aos_jb_s(ids, id);
}

/* The owner check of every checkpoint (one statement), then the release
 * of reservations held (rare: only with budgets). */
static int batch_owned(struct aos_store_tx *tx, struct aos_checkpoint *const *cps, struct cp_row *rows, size_t n,
                       char *err, size_t errlen)
{
    struct aos_jbuf b = {0}, ids = {0};
    struct aos_db_result *res = NULL;
    int rc;

    aos_jb_s(&b, "[");
    aos_jb_s(&ids, "{");
    for (size_t i = 0; i < n; i++) {
        ids_add(&ids, rows[i].rid);
        aos_jb_s(&b, i > 0 ? ",{" : "{");
        jb_kstr(&b, "\"tid\":", rows[i].tid);
        jb_kstr(&b, ",\"rid\":", rows[i].rid);
        jb_kstr(&b, ",\"own\":", cps[i]->worker_id);
        jb_kint(&b, ",\"seq\":", cps[i]->seq);
        aos_jb_s(&b, "}");
    }
    aos_jb_s(&b, "]");
    aos_jb_s(&ids, "}");
    if ((rc = exec_json(tx, SQL_CP_OWNED_MANY_PG, &b, &ids, &res, err, errlen)) != AOS_DB_OK)
        goto out;
    for (size_t k = 0; k < aos_db_result_rows(res); k++) {
        const char *id = aos_db_result_text(res, k, 0), *owner = aos_db_result_text(res, k, 1);
        for (size_t i = 0; i < n; i++) {
            struct cp_row *r = &rows[i];
            if (r->owned || id == NULL || owner == NULL || strcmp(r->rid, id) != 0 ||
                strcmp(cps[i]->worker_id, owner) != 0)
                continue;
            r->owned = true;
            r->cancel = aos_db_result_int(res, k, 2) != 0;
            if ((rc = aos_cell_dup(res, k, 3, &r->created_by, err, errlen)) != AOS_DB_OK)
                goto out;
            if (!aos_db_result_is_null(res, k, 4)) {
                char agent[AOS_ID_LEN] = "";
                if ((rc = aos_cell_fixed(res, k, 4, r->rday, sizeof r->rday, err, errlen)) != AOS_DB_OK ||
                    (rc = aos_cell_fixed(res, k, 5, agent, sizeof agent, err, errlen)) != AOS_DB_OK ||
                    (rc = release_known(tx, r->tid, r->rid, r->rday, agent, aos_db_result_int(res, k, 6),
                                        aos_db_result_int(res, k, 7), err, errlen)) != AOS_DB_OK)
                    goto out;
            }
            break;
        }
    }
out:
    aos_db_result_free(res);
    free(b.p);
    free(ids.p);
    return rc;
}

static const char *usage_day(const struct cp_row *r, const char *day) { return r->rday[0] != '\0' ? r->rday : day; }

/* (tenant, day, agent): the usage table's key order. */
static int usage_cmp(const struct cp_row *a, const char *aday, const struct cp_row *b, const char *bday)
{
    int c = strcmp(a->tid, b->tid);
    if (c == 0)
        c = strcmp(usage_day(a, aday), usage_day(b, bday));
    return c != 0 ? c : strcmp(a->aid, b->aid);
}

/* Usage summed per (tenant, day, agent): one upsert per key, not per step,
 * in key order, so that two transactions (committers, nodes) updating the
 * same usage rows wait for each other instead of deadlocking. */
static int batch_usage(struct aos_store_tx *tx, struct aos_checkpoint *const *cps, const char *const *days,
                       struct cp_row *rows, size_t n, char *err, size_t errlen)
{
    bool *done = calloc(n, sizeof *done);
    size_t *order = calloc(n, sizeof *order);
    int rc = AOS_DB_OK;

    if (done == NULL || order == NULL) {
        free(done);
        free(order);
        aos_db_seterr(err, errlen, "out of memory");
        return AOS_DB_ERROR;
    }
    for (size_t i = 0; i < n; i++) { /* insertion sort: a batch is small */
        size_t j = i;
        for (; j > 0 && usage_cmp(&rows[order[j - 1]], days[order[j - 1]], &rows[i], days[i]) > 0; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    for (size_t oi = 0; oi < n && rc == AOS_DB_OK; oi++) {
        size_t i = order[oi];
        const char *day = rows[i].rday[0] != '\0' ? rows[i].rday : days[i];
        struct aos_usage u = {0, 0, 0};
        if (done[i] || !rows[i].owned)
            continue;
        for (size_t j = i; j < n; j++) {
            const char *dj = rows[j].rday[0] != '\0' ? rows[j].rday : days[j];
            if (done[j] || !rows[j].owned || strcmp(rows[j].tid, rows[i].tid) != 0 ||
                strcmp(rows[j].aid, rows[i].aid) != 0 || strcmp(dj, day) != 0)
                continue;
            done[j] = true;
            u.tokens_in += cps[j]->tokens_in;
            u.tokens_out += cps[j]->tokens_out;
            u.micro_usd += cps[j]->cost_micro_usd;
        }
        if (u.tokens_in > 0 || u.tokens_out > 0 || u.micro_usd > 0)
            rc = aos_store_usage_add(tx, rows[i].tid, day, rows[i].aid, &u, err, errlen);
    }
    free(done);
    free(order);
    return rc;
}

static int batch_steps(struct aos_store_tx *tx, struct aos_checkpoint *const *cps, struct cp_row *rows, size_t n,
                       char *err, size_t errlen)
{
    struct aos_jbuf b = {0};
    size_t k = 0;
    int rc = AOS_DB_OK;

    aos_jb_s(&b, "[");
    for (size_t i = 0; i < n; i++) {
        const struct aos_checkpoint *cp = cps[i];
        if (!rows[i].owned || cp->kind == AOS_CP_RETRY)
            continue;
        aos_jb_s(&b, k++ > 0 ? ",{" : "{");
        jb_kstr(&b, "\"tid\":", rows[i].tid);
        jb_kstr(&b, ",\"rid\":", rows[i].rid);
        jb_kint(&b, ",\"seq\":", cp->seq);
        jb_kstr(&b, ",\"aid\":", rows[i].aid);
        jb_kint(&b, ",\"att\":", cp->attempt);
        jb_kstr(&b, ",\"oc\":", outcome_names[cp->kind]);
        jb_kstr(&b, ",\"res\":", cp->result);
        jb_kstr(&b, ",\"err\":", cp->error);
        jb_kint(&b, ",\"tin\":", cp->tokens_in);
        jb_kint(&b, ",\"tout\":", cp->tokens_out);
        jb_kint(&b, ",\"cost\":", cp->cost_micro_usd);
        jb_kint(&b, ",\"sa\":", cp->started_at);
        jb_kint(&b, ",\"fa\":", cp->finished_at);
        aos_jb_s(&b, "}");
    }
    aos_jb_s(&b, "]");
    if (k > 0)
        rc = exec_json(tx, SQL_STEP_INSERT_MANY_PG, &b, NULL, NULL, err, errlen);
    free(b.p);
    return rc;
}

static int checkpoints_pg(struct aos_store_tx *tx, struct aos_checkpoint *const *cps, const char *const *days,
                          size_t n, int *results, char (*status)[AOS_RUN_STATUS_LEN], char *err, size_t errlen)
{
    struct cp_row *rows = calloc(n, sizeof *rows);
    struct aos_jbuf b = {0}, ids = {0};
    size_t k = 0;
    int rc;

    if (rows == NULL) {
        aos_db_seterr(err, errlen, "out of memory");
        return AOS_DB_ERROR;
    }
    for (size_t i = 0; i < n; i++) {
        const struct aos_checkpoint *cp = cps[i];
        results[i] = 0;
        status[i][0] = '\0';
        if (cp->kind < AOS_CP_CONTINUE || cp->kind > AOS_CP_RETRY || !aos_store_id_norm(cp->tenant_id, rows[i].tid) ||
            !aos_store_id_norm(cp->run_id, rows[i].rid) || !aos_store_id_norm(cp->agent_id, rows[i].aid) ||
            cp->tokens_in < 0 || cp->tokens_out < 0 || cp->cost_micro_usd < 0 || cp->attempt < 1 ||
            cp->worker_id == NULL) {
            aos_db_seterr(err, errlen, "malformed checkpoint");
            rc = AOS_DB_CONSTRAINT;
            goto out;
        }
    }
    if ((rc = batch_owned(tx, cps, rows, n, err, errlen)) != AOS_DB_OK ||
        (rc = batch_steps(tx, cps, rows, n, err, errlen)) != AOS_DB_OK)
        goto out;

    aos_jb_s(&b, "[");
    aos_jb_s(&ids, "{");
    for (size_t i = 0; i < n; i++) {
        struct aos_checkpoint *cp = cps[i];
        const char *final = NULL, *k_name, *st, *res = NULL, *error = NULL;
        int64_t inc = 1, lease = 0, ra = 0, now = cp->finished_at;
        int kind = cp->kind;

        if (!rows[i].owned) {
            results[i] = AOS_CP_LEASE_LOST;
            continue;
        }
        /* As in aos_store_checkpoint: a requested cancel wins over
         * everything but a finished run. */
        if (rows[i].cancel && kind != AOS_CP_DONE && kind != AOS_CP_FAILED)
            final = "cancelled";
        else if (kind == AOS_CP_DONE)
            final = "succeeded";
        else if (kind == AOS_CP_FAILED)
            final = "failed";
        if (final != NULL) {
            k_name = "finish";
            st = final;
            res = kind == AOS_CP_DONE ? cp->result : NULL;
            error = kind == AOS_CP_FAILED ? (cp->error != NULL ? cp->error : "failed") : NULL;
            inc = kind == AOS_CP_RETRY ? 0 : 1;
        } else if (kind == AOS_CP_CONTINUE) {
            k_name = "continue";
            st = "running";
            res = cp->result;
            lease = cp->lease_expires;
        } else if (kind == AOS_CP_STAGE_DONE) {
            k_name = "stage";
            st = "queued";
            res = cp->result;
            ra = now;
        } else if (kind == AOS_CP_APPROVAL && cp->auto_decision != NULL) {
            k_name = "auto";
            st = "queued";
            ra = now;
        } else if (kind == AOS_CP_APPROVAL) {
            k_name = "wait";
            st = "waiting_approval";
        } else {
            k_name = "retry";
            st = "queued";
            ra = cp->run_after;
            inc = 0;
        }
        ids_add(&ids, rows[i].rid);
        aos_jb_s(&b, k++ > 0 ? ",{" : "{");
        jb_kstr(&b, "\"tid\":", rows[i].tid);
        jb_kstr(&b, ",\"rid\":", rows[i].rid);
        jb_kint(&b, ",\"tin\":", cp->tokens_in);
        jb_kint(&b, ",\"tout\":", cp->tokens_out);
        jb_kint(&b, ",\"cost\":", cp->cost_micro_usd);
        jb_kint(&b, ",\"now\":", now);
        jb_kstr(&b, ",\"k\":", k_name);
        jb_kstr(&b, ",\"st\":", st);
        jb_kstr(&b, ",\"res\":", res);
        jb_kstr(&b, ",\"err\":", error);
        jb_kint(&b, ",\"inc\":", inc);
        jb_kint(&b, ",\"lease\":", lease);
        jb_kint(&b, ",\"ra\":", ra);
        aos_jb_s(&b, "}");
        if (final == NULL && kind == AOS_CP_APPROVAL &&
            (rc = insert_approval(tx, cp, rows[i].tid, rows[i].rid, rows[i].created_by, now, err, errlen)) !=
                AOS_DB_OK)
            goto out;
        snprintf(status[i], AOS_RUN_STATUS_LEN, "%s", st);
        results[i] = AOS_CP_OK;
    }
    aos_jb_s(&b, "]");
    aos_jb_s(&ids, "}");
    if (k > 0 && (rc = exec_json(tx, SQL_RUN_UPDATE_MANY_PG, &b, &ids, NULL, err, errlen)) != AOS_DB_OK)
        goto out;
    /* Usage last: its rows are shared by every transaction writing steps of
     * the same agent, so the lock is best taken just before the commit (the
     * caller appends events, then commits). */
    rc = batch_usage(tx, cps, days, rows, n, err, errlen);
out:
    if (rc != AOS_DB_OK) {
        for (size_t i = 0; i < n; i++) {
            results[i] = 0;
            status[i][0] = '\0';
        }
    }
    for (size_t i = 0; i < n; i++)
        free(rows[i].created_by);
    free(rows);
    free(b.p);
    free(ids.p);
    return rc;
}

/* Claims of several runs of one tenant in one statement (PostgreSQL):
 * expired leases first, then the oldest queued runs, each row skipped if
 * another claimer holds it; lease owners from the JSON array $3 in claim
 * order (row k gets element k-1).  The UPDATE finds its rows by primary
 * key only: e and q locked them (FOR UPDATE re-checks their conditions on
 * the newest row version), so nothing can have changed them since, and a
 * status or tenant condition here let the planner scan the whole queue
 * (a bitmap scan of runs_claim, O(queued runs) per claim: 2-3 ms with 2000
 * queued). */
#define RUN_COLS_R                                                                                             \
    "r.id, r.tenant_id, r.agent_id, r.workflow_id, r.status, r.created_by, r.input, r.state, r.output, "      \
    "r.error, r.next_step, r.attempt, r.stage, r.cancel_requested, r.tokens_in, r.tokens_out, "               \
    "r.cost_micro_usd, r.reserved_day, r.reserved_tokens, r.reserved_micro_usd, r.run_after, r.created_at, " \
    "r.updated_at, r.started_at, r.finished_at"
static const char SQL_CLAIM_MANY_PG[] =
    "WITH e AS (SELECT id, lease_expires AS o1, created_at AS o2 FROM runs WHERE tenant_id = $1 AND "
    "status = 'running' AND lease_expires < $2 ORDER BY lease_expires LIMIT $4 FOR UPDATE SKIP LOCKED), "
    "q AS (SELECT id, run_after AS o1, created_at AS o2 FROM runs WHERE tenant_id = $1 AND status = 'queued' AND "
    "run_after <= $2 ORDER BY run_after, created_at LIMIT $4 FOR UPDATE SKIP LOCKED), "
    "p AS (SELECT id, 0 AS pri, o1, o2 FROM e UNION ALL SELECT id, 1 AS pri, o1, o2 FROM q), "
    "n AS (SELECT id, pri, row_number() OVER (ORDER BY pri, o1, o2, id) AS k FROM p) "
    "UPDATE runs AS r SET attempt = r.attempt + (CASE WHEN r.status = 'running' THEN 1 ELSE 0 END), "
    "status = 'running', lease_owner = CAST($3 AS jsonb) ->> CAST(n.k - 1 AS integer), lease_expires = $5, "
    "started_at = COALESCE(r.started_at, $2), updated_at = $2 FROM n WHERE r.id = n.id AND n.k <= $4 "
    "RETURNING " RUN_COLS_R ", n.k, n.pri";

static char *dup_or_null(const char *s, bool *oom)
{
    char *d = s != NULL ? strdup(s) : NULL;
    if (s != NULL && d == NULL)
        *oom = true;
    return d;
}

static bool agent_copy(struct aos_agent *dst, const struct aos_agent *src)
{
    bool oom = false;
    *dst = *src;
    dst->name = dup_or_null(src->name, &oom);
    dst->plugin = dup_or_null(src->plugin, &oom);
    dst->config = dup_or_null(src->config, &oom);
    dst->autonomy = dup_or_null(src->autonomy, &oom);
    dst->approval_policy = dup_or_null(src->approval_policy, &oom);
    dst->created_by = dup_or_null(src->created_by, &oom);
    if (oom)
        aos_agent_clear(dst);
    return !oom;
}

int aos_store_run_claim_many(struct aos_store_tx *tx, const char *tenant_id, const char *const *owners, size_t max,
                             int64_t now, int64_t lease_ms, struct aos_claimed_run *out, size_t *n, char *err,
                             size_t errlen)
{
    char tid[AOS_ID_LEN];
    struct aos_db_result *res = NULL;
    struct aos_jbuf b = {0};
    size_t rows = 0;
    int rc = AOS_DB_OK;

    *n = 0;
    for (size_t i = 0; i < max; i++)
        memset(&out[i], 0, sizeof out[i]);
    if (max == 0)
        return AOS_DB_OK;
    if (!aos_store_id_norm(tenant_id, tid))
        return nf(err, errlen, "tenant");
    if (!is_pg(tx) || max == 1) {
        /* SQLite: one writer, cached statements: one claim after the other. */
        for (size_t i = 0; i < max; i++) {
            rc = aos_store_run_claim(tx, tid, owners[i], now, lease_ms, &out[i], err, errlen);
            if (rc == AOS_DB_NOT_FOUND)
                return AOS_DB_OK;
            if (rc != AOS_DB_OK)
                goto fail;
            (*n)++;
        }
        return AOS_DB_OK;
    }
    aos_jb_s(&b, "[");
    for (size_t i = 0; i < max; i++) {
        aos_jb_s(&b, i > 0 ? "," : "");
        aos_jb_str(&b, owners[i]);
    }
    aos_jb_s(&b, "]");
    if (b.oom) {
        aos_db_seterr(err, errlen, "out of memory");
        rc = AOS_DB_ERROR;
        goto fail;
    }
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(now), AOS_DB_P_TEXTN(b.p, b.len),
                               AOS_DB_P_INT(max), AOS_DB_P_INT(now + lease_ms)};
    if ((rc = aos_store_exec(tx, SQL_CLAIM_MANY_PG, p, NP(p), &res, err, errlen)) != AOS_DB_OK)
        goto fail;
    rows = aos_db_result_rows(res);
    for (size_t k = 0; k < rows; k++) {
        int64_t pos = aos_db_result_int(res, k, 25);
        if (pos < 1 || (size_t)pos > max || rows > max) {
            aos_db_seterr(err, errlen, "claim returned an unexpected row");
            rc = AOS_DB_ERROR;
            goto fail;
        }
    }
    /* In claim order: out[0..rows) are the rows k = 1..rows. */
    for (size_t k = 0; k < rows; k++) {
        size_t at = (size_t)aos_db_result_int(res, k, 25) - 1;
        struct aos_claimed_run *c = &out[at];
        if ((rc = run_from_row(res, k, &c->run, err, errlen)) != AOS_DB_OK)
            goto fail;
        c->taken_over = aos_db_result_int(res, k, 26) == 0;
    }
    for (size_t i = 0; i < rows; i++) {
        struct aos_claimed_run *c = &out[i];
        if (c->run.id[0] == '\0') {
            aos_db_seterr(err, errlen, "claim returned a gap");
            rc = AOS_DB_ERROR;
            goto fail;
        }
        /* The agent row once per agent of the batch. */
        const struct aos_claimed_run *same = NULL;
        for (size_t j = 0; j < i && same == NULL; j++)
            if (c->run.workflow_id[0] == '\0' && out[j].run.workflow_id[0] == '\0' && !out[j].agent_deleted &&
                strcmp(out[j].run.agent_id, c->run.agent_id) == 0)
                same = &out[j];
        if (same != NULL && c->run.next_step == 0) {
            c->stages = 1;
            if (!agent_copy(&c->agent, &same->agent)) {
                aos_db_seterr(err, errlen, "out of memory");
                rc = AOS_DB_ERROR;
                goto fail;
            }
        } else if ((rc = claim_context(tx, tid, c, err, errlen)) != AOS_DB_OK) {
            goto fail;
        }
    }
    *n = rows;
    aos_db_result_free(res);
    free(b.p);
    return AOS_DB_OK;
fail:
    for (size_t i = 0; i < max; i++)
        aos_claimed_run_clear(&out[i]);
    *n = 0;
    aos_db_result_free(res);
    free(b.p);
    return rc;
}

int aos_store_checkpoints(struct aos_store_tx *tx, struct aos_checkpoint *const *cps, const char *const *days,
                          size_t n, int *results, char (*status)[AOS_RUN_STATUS_LEN], char *err, size_t errlen)
{
    if (n == 0)
        return AOS_DB_OK;
    if (is_pg(tx) && n > 1)
        return checkpoints_pg(tx, cps, days, n, results, status, err, errlen);
    /* SQLite: no round trips to save; its statements are cached. */
    for (size_t i = 0; i < n; i++) {
        int rc = aos_store_checkpoint(tx, cps[i], days[i], &results[i], status[i], err, errlen);
        if (rc != AOS_DB_OK)
            return rc;
    }
    return AOS_DB_OK;
}

static const char SQL_RUN_STOP[] =
    "UPDATE runs SET status = $4, error = $5, state = CASE WHEN $4 = 'budget_exceeded' THEN state ELSE NULL END, "
    "finished_at = CASE WHEN $4 = 'budget_exceeded' THEN NULL ELSE CAST($6 AS BIGINT) END, updated_at = $6, "
    RUN_RELEASE
    " WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND status = 'running'";

int aos_store_run_stop(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, const char *worker_id,
                       const char *status, const char *error, int *result, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN];
    int64_t changes = 0;
    int rc;

    *result = 0;
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(run_id, rid))
        return nf(err, errlen, "run");
    if (strcmp(status, "failed") != 0 && strcmp(status, "budget_exceeded") != 0 && strcmp(status, "cancelled") != 0) {
        aos_db_seterr(err, errlen, "a run stops as failed, cancelled or budget_exceeded");
        return AOS_DB_CONSTRAINT;
    }
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid),    AOS_DB_P_TEXT(rid),   AOS_DB_P_TEXT(worker_id),
                               AOS_DB_P_TEXT(status), AOS_DB_P_TEXT(error), AOS_DB_P_INT(aos_store_now_ms())};
    rc = aos_exec_changes(tx, SQL_RUN_STOP, p, NP(p), &changes, err, errlen);
    if (rc == AOS_DB_OK && changes > 0)
        rc = release_held(tx, tid, rid, NULL, err, errlen);
    if (rc == AOS_DB_OK)
        *result = changes > 0 ? AOS_CP_OK : AOS_CP_LEASE_LOST;
    return rc;
}

static const char SQL_RUN_RELEASE[] = "UPDATE runs SET status = 'queued', run_after = $4, updated_at = $4, " RUN_RELEASE
                                      " WHERE tenant_id = $1 AND id = $2 AND lease_owner = $3 AND status = 'running'";

int aos_store_run_release(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, const char *worker_id,
                          int *result, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], rid[AOS_ID_LEN];
    int64_t changes = 0;
    int rc;

    *result = 0;
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(run_id, rid))
        return nf(err, errlen, "run");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(rid), AOS_DB_P_TEXT(worker_id),
                               AOS_DB_P_INT(aos_store_now_ms())};
    rc = aos_exec_changes(tx, SQL_RUN_RELEASE, p, NP(p), &changes, err, errlen);
    if (rc == AOS_DB_OK)
        *result = changes > 0 ? AOS_CP_OK : AOS_CP_LEASE_LOST;
    return rc;
}

/* ------------------------------------------------------------ housekeeping */

static const char SQL_APPROVALS_DUE[] = "SELECT tenant_id, id, run_id FROM approvals WHERE status = 'pending' AND "
                                        "expires_at IS NOT NULL AND expires_at < $1 ORDER BY expires_at LIMIT $2";
static const char SQL_APPROVAL_EXPIRE[] = "UPDATE approvals SET status = 'expired', decided_at = $3 "
                                          "WHERE tenant_id = $1 AND id = $2 AND status = 'pending'";

int aos_store_approvals_expire(struct aos_store_tx *tx, int64_t now, size_t limit,
                               struct aos_expired_approval **out, size_t *n, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct aos_expired_approval *list = NULL;
    size_t rows, done = 0;
    int rc;

    *out = NULL;
    *n = 0;
    struct aos_db_param p[] = {AOS_DB_P_INT(now), AOS_DB_P_INT(limit)};
    if ((rc = aos_store_exec(tx, SQL_APPROVALS_DUE, p, NP(p), &res, err, errlen)) != AOS_DB_OK)
        return rc;
    rows = aos_db_result_rows(res);
    if (rows > 0 && (list = calloc(rows, sizeof *list)) == NULL) {
        aos_db_seterr(err, errlen, "out of memory");
        rc = AOS_DB_ERROR;
        goto out;
    }
    for (size_t i = 0; i < rows; i++) {
        struct aos_expired_approval *e = &list[done];
        int64_t changes = 0;
        if ((rc = aos_cell_fixed(res, i, 0, e->tenant_id, AOS_ID_LEN, err, errlen)) != AOS_DB_OK ||
            (rc = aos_cell_fixed(res, i, 1, e->approval_id, AOS_ID_LEN, err, errlen)) != AOS_DB_OK ||
            (rc = aos_cell_fixed(res, i, 2, e->run_id, AOS_ID_LEN, err, errlen)) != AOS_DB_OK)
            goto out;
        struct aos_db_param pe[] = {AOS_DB_P_TEXT(e->tenant_id), AOS_DB_P_TEXT(e->approval_id), AOS_DB_P_INT(now)};
        if ((rc = aos_exec_changes(tx, SQL_APPROVAL_EXPIRE, pe, NP(pe), &changes, err, errlen)) != AOS_DB_OK)
            goto out;
        if (changes == 0)
            continue; /* decided meanwhile */
        struct aos_db_param pr[] = {AOS_DB_P_TEXT(e->tenant_id), AOS_DB_P_TEXT(e->run_id), AOS_DB_P_INT(now)};
        if ((rc = aos_store_exec(tx, SQL_RUN_REQUEUE_WAITING, pr, NP(pr), NULL, err, errlen)) != AOS_DB_OK)
            goto out;
        done++;
    }
    *out = list;
    *n = done;
    list = NULL;
out:
    free(list);
    aos_db_result_free(res);
    return rc;
}

static const char SQL_RUNS_PRUNE[] =
    "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE finished_at IS NOT NULL AND finished_at < $1 "
    "ORDER BY finished_at LIMIT $2)";

int aos_store_runs_prune(struct aos_store_tx *tx, int64_t older_than, size_t limit, size_t *deleted, char *err,
                         size_t errlen)
{
    int64_t changes = 0;
    struct aos_db_param p[] = {AOS_DB_P_INT(older_than), AOS_DB_P_INT(limit)};
    int rc = aos_exec_changes(tx, SQL_RUNS_PRUNE, p, NP(p), &changes, err, errlen);

    *deleted = (size_t)changes;
    return rc;
}

/* ------------------------------------------------------------ JSON bits */

#include <json-c/json.h>

static bool workflow_stage_agent(const char *def, int64_t stage, char out[AOS_ID_LEN], int64_t *stages)
{
    struct json_object *root = def != NULL ? json_tokener_parse(def) : NULL, *steps, *st, *agent;
    bool ok = false;

    if (root != NULL && json_object_object_get_ex(root, "steps", &steps) &&
        json_object_is_type(steps, json_type_array)) {
        size_t len = json_object_array_length(steps);
        *stages = (int64_t)len;
        if (stage >= 0 && (size_t)stage < len && (st = json_object_array_get_idx(steps, (size_t)stage)) != NULL &&
            json_object_object_get_ex(st, "agent", &agent) && json_object_is_type(agent, json_type_string))
            ok = aos_store_id_norm(json_object_get_string(agent), out);
    }
    json_object_put(root);
    return ok;
}

static char *decision_json(const char *status, const char *comment, const char *by)
{
    struct json_object *o = json_object_new_object();
    char *text = NULL;

    if (o == NULL)
        return NULL;
    json_object_object_add(o, "approved", json_object_new_boolean(strcmp(status, "approved") == 0));
    json_object_object_add(o, "decision", json_object_new_string(status));
    json_object_object_add(o, "comment", comment != NULL ? json_object_new_string(comment) : NULL);
    json_object_object_add(o, "decided_by", by != NULL ? json_object_new_string(by) : NULL);
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    if (s != NULL)
        text = strdup(s);
    json_object_put(o);
    return text;
}
