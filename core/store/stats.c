#include "config.h"
/*
 * A tenant's operational figures (stats.h): a few grouped queries, each
 * scoped by `tenant_id = $1`, one SQL text for both drivers.  Sums are
 * CAST to BIGINT because SUM(bigint) is numeric on PostgreSQL.
 *
 * Index use: runs in flight through (tenant_id, status, ...); runs
 * finished in the window through runs_finished (finished_at); approvals
 * through (tenant_id, status, ...); usage through its key (tenant_id,
 * day, ...).  Steps of the window are found through the steps key's
 * tenant_id prefix: an index on steps (tenant_id, finished_at) would make
 * that a range scan (checkpoints of finished runs are pruned, which bounds
 * it meanwhile).
 */
#include "store/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/cells.h"

static const char *const run_status_names[AOS_STATS_RUN_NSTATUS] = {
    "queued", "running", "waiting_approval", "budget_exceeded", "succeeded", "failed", "cancelled"};

/* In flight now: not finished, in a status a run leaves again.  The IN
 * list walks the (tenant_id, status) index. */
static const char SQL_RUNS_OPEN[] =
    "SELECT agent_id, status, COUNT(*) FROM runs WHERE tenant_id = $1 AND finished_at IS NULL "
    "AND status IN ('queued', 'running', 'waiting_approval', 'budget_exceeded') GROUP BY agent_id, status";
static const char SQL_RUNS_FINISHED[] = "SELECT agent_id, status, COUNT(*) FROM runs WHERE tenant_id = $1 "
                                        "AND finished_at >= $2 GROUP BY agent_id, status";
#define STEP_MS "CASE WHEN finished_at > started_at THEN finished_at - started_at ELSE 0 END"
static const char SQL_STEPS_WINDOW[] =
    "SELECT agent_id, COUNT(*), MAX(" STEP_MS
    "), CAST(SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END) AS "
    "BIGINT) FROM steps WHERE tenant_id = $1 AND finished_at >= $2 GROUP BY agent_id";
static const char SQL_STEPS_SAMPLE[] = "SELECT agent_id, " STEP_MS " FROM steps WHERE tenant_id = $1 AND "
                                       "finished_at >= $2 ORDER BY finished_at DESC, run_id DESC, seq DESC "
                                       "LIMIT $3";
/* The agent of an approval: the step that asked (a workflow's runs have
 * no agent of their own), else the run's. */
static const char SQL_APPROVALS_PENDING[] =
    "SELECT COALESCE(s.agent_id, r.agent_id), COUNT(*), MIN(a.created_at) FROM approvals a "
    "JOIN runs r ON r.tenant_id = a.tenant_id AND r.id = a.run_id "
    "LEFT JOIN steps s ON s.tenant_id = a.tenant_id AND s.run_id = a.run_id AND s.seq = a.step_seq "
    "WHERE a.tenant_id = $1 AND a.status = 'pending' GROUP BY COALESCE(s.agent_id, r.agent_id)";
#define TODAY(col) "CAST(SUM(CASE WHEN day = $3 THEN " col " ELSE 0 END) AS BIGINT)"
#define MONTH(col) "CAST(SUM(" col ") AS BIGINT)"
/* clang-format off */
static const char SQL_USAGE[] =
    "SELECT agent_id, "
    TODAY("tokens_in") ", " TODAY("tokens_out") ", " TODAY("micro_usd") ", "
    TODAY("reserved_tokens") ", " TODAY("reserved_micro_usd") ", "
    MONTH("tokens_in") ", " MONTH("tokens_out") ", " MONTH("micro_usd") ", "
    MONTH("reserved_tokens") ", " MONTH("reserved_micro_usd") " "
    "FROM usage WHERE tenant_id = $1 AND day >= $2 AND day <= $3 GROUP BY agent_id";
/* clang-format on */
static const char SQL_AGENTS[] =
    "SELECT id, name, budget_tokens_day, budget_tokens_month, budget_micro_usd_day, budget_micro_usd_month "
    "FROM agents WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY created_at, id LIMIT $2";

static const char SQL_VITALS_RUNS[] =
    "SELECT status, COUNT(*), CAST(SUM(CASE WHEN run_after <= $2 THEN 1 ELSE 0 END) AS BIGINT), "
    "MIN(CASE WHEN run_after <= $2 THEN run_after ELSE NULL END), "
    "CAST(SUM(CASE WHEN lease_expires < $2 THEN 1 ELSE 0 END) AS BIGINT) FROM runs WHERE tenant_id = $1 "
    "AND status IN ('queued', 'running', 'waiting_approval') GROUP BY status";
static const char SQL_VITALS_STEPS[] =
    "SELECT CAST(COALESCE(SUM(CASE WHEN finished_at >= $3 THEN 1 ELSE 0 END), 0) AS BIGINT), "
    "CAST(COALESCE(SUM(CASE WHEN outcome = 'failed' AND finished_at >= $4 THEN 1 ELSE 0 END), 0) AS BIGINT) "
    "FROM steps WHERE tenant_id = $1 AND finished_at >= $2";
static const char SQL_VITALS_FAILED[] =
    "SELECT COUNT(*) FROM runs WHERE tenant_id = $1 AND status = 'failed' AND finished_at >= $2";
static const char SQL_VITALS_APPROVALS[] =
    "SELECT COUNT(*), MIN(created_at) FROM approvals WHERE tenant_id = $1 AND status = 'pending'";

const char *aos_stats_run_status_name(int status)
{
    return status >= 0 && status < AOS_STATS_RUN_NSTATUS ? run_status_names[status] : NULL;
}

static int run_status_index(const char *name)
{
    for (int i = 0; name != NULL && i < AOS_STATS_RUN_NSTATUS; i++)
        if (strcmp(name, run_status_names[i]) == 0)
            return i;
    return -1;
}

static int oom(char *err, size_t errlen)
{
    aos_db_seterr(err, errlen, "out of memory");
    return AOS_DB_ERROR;
}

static void latency_none(struct aos_stats_latency *l)
{
    memset(l, 0, sizeof(*l));
    l->p50 = l->p95 = l->p99 = l->max = -1;
}

void aos_stats_dashboard_clear(struct aos_stats_dashboard *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->nagents; i++)
        free(d->agents[i].name);
    free(d->agents);
    memset(d, 0, sizeof(*d));
}

static int query_check(const struct aos_stats_query *q, bool dashboard, char *err, size_t errlen)
{
    if (q->window_ms <= 0 || q->now_ms < q->window_ms ||
        (dashboard && (q->sample_max < 1 || q->sample_max > AOS_STATS_SAMPLE_MAX ||
                       q->agents_max > AOS_STATS_AGENTS_MAX))) {
        aos_db_seterr(err, errlen, "stats need a window > 0, a sample of 1 to %d and at most %d agents",
                      AOS_STATS_SAMPLE_MAX, AOS_STATS_AGENTS_MAX);
        return AOS_DB_CONSTRAINT;
    }
    return AOS_DB_OK;
}

/* ---------------------------------------------------------------- agents index */

/* The dashboard's agents sorted by id, for attributing grouped rows. */
struct agent_index {
    struct aos_stats_agent **by_id;
    size_t n;
};

static int cmp_agent_ptr(const void *a, const void *b)
{
    return strcmp((*(struct aos_stats_agent *const *)a)->id, (*(struct aos_stats_agent *const *)b)->id);
}

static int cmp_key_agent(const void *key, const void *elem)
{
    return strcmp(key, (*(struct aos_stats_agent *const *)elem)->id);
}

/* The listed agent of id, or NULL (deleted, beyond agents_max, the nil
 * id of unattributed usage, NULL for a workflow's run). */
static struct aos_stats_agent *agent_find(const struct agent_index *ix, const char *id)
{
    struct aos_stats_agent **hit;

    if (id == NULL || ix->n == 0)
        return NULL;
    hit = bsearch(id, ix->by_id, ix->n, sizeof(*ix->by_id), cmp_key_agent);
    return hit != NULL ? *hit : NULL;
}

static int agents_load(struct aos_store_tx *tx, const char *tid, const struct aos_stats_query *q,
                       struct aos_stats_dashboard *d, struct agent_index *ix, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    size_t rows, i;
    int rc;

    /* One row more than asked tells whether the list is cut short. */
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(q->agents_max + 1)};
    rc = aos_store_exec(tx, SQL_AGENTS, p, AOS_NPARAMS(p), &res, err, errlen);
    if (rc != AOS_DB_OK)
        goto out;
    rows = aos_db_result_rows(res);
    d->agents_truncated = rows > q->agents_max;
    if (rows > q->agents_max)
        rows = q->agents_max;
    if (rows == 0)
        goto out;
    d->agents = calloc(rows, sizeof(*d->agents));
    ix->by_id = calloc(rows, sizeof(*ix->by_id));
    if (d->agents == NULL || ix->by_id == NULL) {
        rc = oom(err, errlen);
        goto out;
    }
    for (i = 0; i < rows; i++) {
        struct aos_stats_agent *a = &d->agents[i];
        const char *id = aos_db_result_text(res, i, 0);
        const char *name = aos_db_result_text(res, i, 1);

        if (id == NULL || strlen(id) != AOS_ID_LEN - 1) {
            aos_db_seterr(err, errlen, "store returned a malformed agent id");
            rc = AOS_DB_ERROR;
            goto out;
        }
        memcpy(a->id, id, AOS_ID_LEN);
        a->name = strdup(name != NULL ? name : "");
        if (a->name == NULL) {
            rc = oom(err, errlen);
            goto out;
        }
        d->nagents = i + 1;
        a->budget_tokens_day = aos_cell_int_or(res, i, 2, -1);
        a->budget_tokens_month = aos_cell_int_or(res, i, 3, -1);
        a->budget_micro_usd_day = aos_cell_int_or(res, i, 4, -1);
        a->budget_micro_usd_month = aos_cell_int_or(res, i, 5, -1);
        latency_none(&a->latency);
        ix->by_id[i] = a;
    }
    ix->n = rows;
    qsort(ix->by_id, ix->n, sizeof(*ix->by_id), cmp_agent_ptr);
out:
    aos_db_result_free(res);
    return rc;
}

/* ---------------------------------------------------------------- runs */

static int runs_count(struct aos_store_tx *tx, const char *sql, const struct aos_db_param *p, size_t np,
                      bool finished, struct aos_stats_dashboard *d, const struct agent_index *ix, char *err,
                      size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc = aos_store_exec(tx, sql, p, np, &res, err, errlen);

    if (rc != AOS_DB_OK)
        goto out;
    for (size_t i = 0; i < aos_db_result_rows(res); i++) {
        int st = run_status_index(aos_db_result_text(res, i, 1));
        int64_t n = aos_db_result_int(res, i, 2);
        struct aos_stats_agent *a = agent_find(ix, aos_db_result_text(res, i, 0));

        if (st < 0) {
            aos_db_seterr(err, errlen, "store returned an unknown run status");
            rc = AOS_DB_ERROR;
            goto out;
        }
        d->runs[st] += n;
        if (finished)
            d->runs_finished += n;
        if (a != NULL)
            a->runs[st] += n;
    }
out:
    aos_db_result_free(res);
    return rc;
}

/* ---------------------------------------------------------------- steps */

struct sample {
    size_t agent; /* index into d->agents, or SIZE_MAX */
    int64_t ms;
};

static int cmp_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

static int cmp_sample(const void *a, const void *b)
{
    const struct sample *x = a, *y = b;

    if (x->agent != y->agent)
        return x->agent < y->agent ? -1 : 1;
    return (x->ms > y->ms) - (x->ms < y->ms);
}

/* Nearest rank: the smallest value with at least pct% of the sample at or
 * below it. */
static int64_t percentile(const int64_t *sorted, size_t n, unsigned pct)
{
    size_t rank = (pct * n + 99) / 100;

    return sorted[rank > 0 ? rank - 1 : 0];
}

static void latency_from_sorted(struct aos_stats_latency *l, const int64_t *sorted, size_t n)
{
    l->sample = (int64_t)n;
    if (n == 0)
        return;
    l->p50 = percentile(sorted, n, 50);
    l->p95 = percentile(sorted, n, 95);
    l->p99 = percentile(sorted, n, 99);
}

static int steps_window(struct aos_store_tx *tx, const char *tid, int64_t since,
                        struct aos_stats_dashboard *d, const struct agent_index *ix, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(since)};
    rc = aos_store_exec(tx, SQL_STEPS_WINDOW, p, AOS_NPARAMS(p), &res, err, errlen);
    if (rc != AOS_DB_OK)
        goto out;
    for (size_t i = 0; i < aos_db_result_rows(res); i++) {
        struct aos_stats_agent *a = agent_find(ix, aos_db_result_text(res, i, 0));
        int64_t n = aos_db_result_int(res, i, 1), max = aos_db_result_int(res, i, 2);
        int64_t failed = aos_db_result_int(res, i, 3);

        d->latency.count += n;
        if (max > d->latency.max)
            d->latency.max = max;
        d->steps_failed += failed;
        if (a != NULL) {
            a->latency.count += n;
            a->latency.max = max > a->latency.max ? max : a->latency.max;
            a->steps_failed += failed;
        }
    }
out:
    aos_db_result_free(res);
    return rc;
}

static int steps_sample(struct aos_store_tx *tx, const char *tid, int64_t since, size_t sample_max,
                        struct aos_stats_dashboard *d, const struct agent_index *ix, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct sample *s = NULL;
    int64_t *ms = NULL;
    size_t n, i, start;
    int rc;

    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(since), AOS_DB_P_INT(sample_max)};
    rc = aos_store_exec(tx, SQL_STEPS_SAMPLE, p, AOS_NPARAMS(p), &res, err, errlen);
    if (rc != AOS_DB_OK)
        goto out;
    n = aos_db_result_rows(res);
    if (n == 0)
        goto out;
    s = calloc(n, sizeof(*s));
    ms = calloc(n, sizeof(*ms));
    if (s == NULL || ms == NULL) {
        rc = oom(err, errlen);
        goto out;
    }
    for (i = 0; i < n; i++) {
        struct aos_stats_agent *a = agent_find(ix, aos_db_result_text(res, i, 0));

        s[i].agent = a != NULL ? (size_t)(a - d->agents) : SIZE_MAX;
        s[i].ms = aos_db_result_int(res, i, 1);
        ms[i] = s[i].ms;
    }
    qsort(ms, n, sizeof(*ms), cmp_int64);
    latency_from_sorted(&d->latency, ms, n);
    /* Per agent: the sample ordered by (agent, ms) is one sorted run per
     * agent. */
    qsort(s, n, sizeof(*s), cmp_sample);
    for (i = 0; i < n; i++)
        ms[i] = s[i].ms;
    for (start = 0; start < n; start = i) {
        for (i = start; i < n && s[i].agent == s[start].agent; i++)
            ;
        if (s[start].agent != SIZE_MAX)
            latency_from_sorted(&d->agents[s[start].agent].latency, ms + start, i - start);
    }
out:
    free(ms);
    free(s);
    aos_db_result_free(res);
    return rc;
}

/* ---------------------------------------------------------------- approvals, usage */

static int approvals_pending(struct aos_store_tx *tx, const char *tid, struct aos_stats_dashboard *d,
                             const struct agent_index *ix, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid)};
    rc = aos_store_exec(tx, SQL_APPROVALS_PENDING, p, AOS_NPARAMS(p), &res, err, errlen);
    if (rc != AOS_DB_OK)
        goto out;
    for (size_t i = 0; i < aos_db_result_rows(res); i++) {
        struct aos_stats_agent *a = agent_find(ix, aos_db_result_text(res, i, 0));
        int64_t n = aos_db_result_int(res, i, 1), oldest = aos_db_result_int(res, i, 2);

        d->approvals_pending += n;
        if (d->oldest_pending_approval_ms < 0 || oldest < d->oldest_pending_approval_ms)
            d->oldest_pending_approval_ms = oldest;
        if (a != NULL)
            a->approvals_pending += n;
    }
out:
    aos_db_result_free(res);
    return rc;
}

static void spend_add(struct aos_stats_spend *s, const struct aos_db_result *r, size_t row, size_t col)
{
    s->tokens_in += aos_db_result_int(r, row, col);
    s->tokens_out += aos_db_result_int(r, row, col + 1);
    s->micro_usd += aos_db_result_int(r, row, col + 2);
    s->reserved_tokens += aos_db_result_int(r, row, col + 3);
    s->reserved_micro_usd += aos_db_result_int(r, row, col + 4);
}

static int usage_spend(struct aos_store_tx *tx, const char *tid, struct aos_stats_dashboard *d,
                       const struct agent_index *ix, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(d->month_start), AOS_DB_P_TEXT(d->day)};
    rc = aos_store_exec(tx, SQL_USAGE, p, AOS_NPARAMS(p), &res, err, errlen);
    if (rc != AOS_DB_OK)
        goto out;
    for (size_t i = 0; i < aos_db_result_rows(res); i++) {
        struct aos_stats_agent *a = agent_find(ix, aos_db_result_text(res, i, 0));

        spend_add(&d->today, res, i, 1);
        spend_add(&d->month, res, i, 6);
        if (a != NULL) {
            spend_add(&a->today, res, i, 1);
            spend_add(&a->month, res, i, 6);
        }
    }
out:
    aos_db_result_free(res);
    return rc;
}

/* ---------------------------------------------------------------- dashboard */

int aos_store_stats_dashboard(struct aos_store_tx *tx, const char *tenant_id, const struct aos_stats_query *q,
                              struct aos_stats_dashboard *out, char *err, size_t errlen)
{
    struct agent_index ix = {NULL, 0};
    char tid[AOS_ID_LEN];
    int rc;

    memset(out, 0, sizeof(*out));
    latency_none(&out->latency);
    out->oldest_pending_approval_ms = -1;
    if ((rc = query_check(q, true, err, errlen)) != AOS_DB_OK)
        return rc;
    out->now_ms = q->now_ms;
    out->since_ms = q->now_ms - q->window_ms;
    aos_store_day(q->now_ms, out->day);
    memcpy(out->month_start, out->day, AOS_DAY_LEN);
    memcpy(out->month_start + 8, "01", 2); /* "YYYY-MM-" + "01" */
    if (!aos_store_id_norm(tenant_id, tid))
        return AOS_DB_OK;

    struct aos_db_param p_open[] = {AOS_DB_P_TEXT(tid)};
    struct aos_db_param p_fin[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(out->since_ms)};
    rc = agents_load(tx, tid, q, out, &ix, err, errlen);
    if (rc == AOS_DB_OK)
        rc = runs_count(tx, SQL_RUNS_OPEN, p_open, AOS_NPARAMS(p_open), false, out, &ix, err, errlen);
    if (rc == AOS_DB_OK)
        rc = runs_count(tx, SQL_RUNS_FINISHED, p_fin, AOS_NPARAMS(p_fin), true, out, &ix, err, errlen);
    if (rc == AOS_DB_OK)
        rc = steps_window(tx, tid, out->since_ms, out, &ix, err, errlen);
    if (rc == AOS_DB_OK)
        rc = steps_sample(tx, tid, out->since_ms, q->sample_max, out, &ix, err, errlen);
    if (rc == AOS_DB_OK)
        rc = approvals_pending(tx, tid, out, &ix, err, errlen);
    if (rc == AOS_DB_OK)
        rc = usage_spend(tx, tid, out, &ix, err, errlen);
    free(ix.by_id);
    if (rc != AOS_DB_OK) {
        aos_stats_dashboard_clear(out);
        latency_none(&out->latency);
        out->oldest_pending_approval_ms = -1;
    }
    return rc;
}

/* ---------------------------------------------------------------- vitals */

static int one_row(struct aos_store_tx *tx, const char *sql, const struct aos_db_param *p, size_t np,
                   struct aos_db_result **res, char *err, size_t errlen)
{
    int rc = aos_store_exec(tx, sql, p, np, res, err, errlen);

    if (rc == AOS_DB_OK && aos_db_result_rows(*res) != 1) {
        aos_db_seterr(err, errlen, "an aggregate returned %zu rows", aos_db_result_rows(*res));
        rc = AOS_DB_ERROR;
    }
    return rc;
}

int aos_store_stats_vitals(struct aos_store_tx *tx, const char *tenant_id, const struct aos_stats_query *q,
                           struct aos_stats_vitals *out, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    char tid[AOS_ID_LEN];
    int64_t minute_ago, from;
    int rc;

    memset(out, 0, sizeof(*out));
    out->oldest_ready_ms = -1;
    out->oldest_pending_approval_ms = -1;
    if ((rc = query_check(q, false, err, errlen)) != AOS_DB_OK)
        return rc;
    out->now_ms = q->now_ms;
    out->since_ms = q->now_ms - q->window_ms;
    if (!aos_store_id_norm(tenant_id, tid))
        return AOS_DB_OK;

    minute_ago = q->now_ms - 60000;
    from = minute_ago < out->since_ms ? minute_ago : out->since_ms;
    struct aos_db_param pr[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(q->now_ms)};
    struct aos_db_param ps[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(from), AOS_DB_P_INT(minute_ago),
                                AOS_DB_P_INT(out->since_ms)};
    struct aos_db_param pf[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(out->since_ms)};
    struct aos_db_param pa[] = {AOS_DB_P_TEXT(tid)};

    if ((rc = aos_store_exec(tx, SQL_VITALS_RUNS, pr, AOS_NPARAMS(pr), &res, err, errlen)) != AOS_DB_OK)
        goto out;
    for (size_t i = 0; i < aos_db_result_rows(res); i++) {
        int st = run_status_index(aos_db_result_text(res, i, 0));
        int64_t n = aos_db_result_int(res, i, 1);

        if (st == AOS_STATS_RUN_QUEUED) {
            out->queued = n;
            out->ready = aos_db_result_int(res, i, 2);
            if (!aos_db_result_is_null(res, i, 3))
                out->oldest_ready_ms = aos_db_result_int(res, i, 3);
        } else if (st == AOS_STATS_RUN_RUNNING) {
            out->running = n;
            out->expired_leases = aos_db_result_int(res, i, 4);
        } else if (st == AOS_STATS_RUN_WAITING_APPROVAL) {
            out->waiting_approval = n;
        }
    }
    aos_db_result_free(res);
    res = NULL;

    if ((rc = one_row(tx, SQL_VITALS_STEPS, ps, AOS_NPARAMS(ps), &res, err, errlen)) != AOS_DB_OK)
        goto out;
    out->steps_last_minute = aos_db_result_int(res, 0, 0);
    out->steps_failed = aos_db_result_int(res, 0, 1);
    aos_db_result_free(res);
    res = NULL;

    if ((rc = one_row(tx, SQL_VITALS_FAILED, pf, AOS_NPARAMS(pf), &res, err, errlen)) != AOS_DB_OK)
        goto out;
    out->runs_failed = aos_db_result_int(res, 0, 0);
    aos_db_result_free(res);
    res = NULL;

    if ((rc = one_row(tx, SQL_VITALS_APPROVALS, pa, AOS_NPARAMS(pa), &res, err, errlen)) != AOS_DB_OK)
        goto out;
    out->approvals_pending = aos_db_result_int(res, 0, 0);
    if (!aos_db_result_is_null(res, 0, 1))
        out->oldest_pending_approval_ms = aos_db_result_int(res, 0, 1);
out:
    aos_db_result_free(res);
    if (rc != AOS_DB_OK) {
        memset(out, 0, sizeof(*out));
        out->oldest_ready_ms = -1;
        out->oldest_pending_approval_ms = -1;
    }
    return rc;
}
