/*
 * Operational figures of one tenant, computed from the store's rows
 * (runs, steps, approvals, usage, agents) for GET /api/v1/aoa/dashboard and
 * GET /api/v1/orchestration/vitals.  Nothing is estimated: every figure is
 * a count, sum, minimum or maximum of rows, except the step latency
 * percentiles, which come from the newest `sample_max` steps of the window
 * (the response says how many: `sample`).
 *
 * Conventions are those of store/ops.h (tenant-scoped, caller's
 * transaction -- a read-only one suffices --, outputs cleared on failure).
 * A malformed tenant id gives all zeros, like a tenant without rows.
 *
 * What counts where (window = [now - window_ms, +inf), times in unix ms):
 *  - runs by status: every run NOT finished (finished_at unset) whose
 *    status is queued, running, waiting_approval or budget_exceeded --
 *    what is in flight now, however old -- plus every run FINISHED in the
 *    window (finished_at in it), whatever its status.  A run that ended
 *    before the window is not counted.  Runs of a workflow count for the
 *    tenant, not for an agent (runs.agent_id is unset for them).
 *  - runs finished: runs with finished_at in the window.
 *  - steps: checkpoints (steps rows) with finished_at in the window, per
 *    agent by steps.agent_id (so a workflow's steps count for the agent
 *    that ran them).  Latency of a step = finished_at - started_at (0 if
 *    the clock went backwards).
 *  - approvals pending: every approval in status pending, whatever its
 *    age; per agent by the agent of the step that asked (steps.agent_id),
 *    else of the run.
 *  - spend: usage rows of today (UTC day of now) and of this month (the
 *    1st to today), tokens in and out, micro-USD and the reservations of
 *    steps in flight; usage not attributed to an agent counts for the
 *    tenant only.
 */
#ifndef AOS_STORE_STATS_H
#define AOS_STORE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/ops.h"
#include "store/store.h"

#define AOS_STATS_SAMPLE_MAX 10000 /* most step durations read for percentiles */
#define AOS_STATS_AGENTS_MAX 1000  /* most agents listed per dashboard */

/* The run statuses of the schema, in its order: index into runs[]. */
enum aos_stats_run_status {
    AOS_STATS_RUN_QUEUED = 0,
    AOS_STATS_RUN_RUNNING,
    AOS_STATS_RUN_WAITING_APPROVAL,
    AOS_STATS_RUN_BUDGET_EXCEEDED,
    AOS_STATS_RUN_SUCCEEDED,
    AOS_STATS_RUN_FAILED,
    AOS_STATS_RUN_CANCELLED,
    AOS_STATS_RUN_NSTATUS
};
/* "queued", "running", ... for an index; NULL out of range. */
const char *aos_stats_run_status_name(int status);

struct aos_stats_query {
    int64_t now_ms;    /* the dashboard's "now" (callers pass aos_store_now_ms()) */
    int64_t window_ms; /* > 0 */
    size_t sample_max; /* 1..AOS_STATS_SAMPLE_MAX */
    size_t agents_max; /* 0..AOS_STATS_AGENTS_MAX */
};

struct aos_stats_latency {
    int64_t count;         /* steps finished in the window */
    int64_t sample;        /* the newest of them whose durations give p50..p99 */
    int64_t p50, p95, p99; /* ms, nearest-rank over the sample; -1 when sample == 0 */
    int64_t max;           /* ms, over all `count` steps; -1 when count == 0 */
};

struct aos_stats_spend {
    int64_t tokens_in;
    int64_t tokens_out;
    int64_t micro_usd;
    int64_t reserved_tokens;
    int64_t reserved_micro_usd;
};

struct aos_stats_agent {
    char id[AOS_ID_LEN];
    char *name;
    int64_t runs[AOS_STATS_RUN_NSTATUS];
    int64_t steps_failed; /* steps with outcome failed in the window */
    struct aos_stats_latency latency;
    int64_t approvals_pending;
    struct aos_stats_spend today;
    struct aos_stats_spend month;
    /* The agent's own budgets; -1 = none. */
    int64_t budget_tokens_day;
    int64_t budget_tokens_month;
    int64_t budget_micro_usd_day;
    int64_t budget_micro_usd_month;
};

struct aos_stats_dashboard {
    int64_t now_ms;
    int64_t since_ms;              /* now_ms - window_ms */
    char day[AOS_DAY_LEN];         /* today, UTC */
    char month_start[AOS_DAY_LEN]; /* the 1st of this month */
    int64_t runs[AOS_STATS_RUN_NSTATUS];
    int64_t runs_finished;
    int64_t steps_failed;
    struct aos_stats_latency latency; /* latency.count = steps in the window */
    int64_t approvals_pending;
    int64_t oldest_pending_approval_ms; /* its created_at; -1 when none */
    struct aos_stats_spend today;
    struct aos_stats_spend month;
    /* The tenant's live agents, oldest first (created_at, id), at most
     * agents_max; agents_truncated when there are more. */
    struct aos_stats_agent *agents;
    size_t nagents;
    bool agents_truncated;
};
void aos_stats_dashboard_clear(struct aos_stats_dashboard *d);

/* Fills out for the tenant.  CONSTRAINT for a query out of range. */
int aos_store_stats_dashboard(struct aos_store_tx *tx, const char *tenant_id, const struct aos_stats_query *q,
                              struct aos_stats_dashboard *out, char *err, size_t errlen);

struct aos_stats_vitals {
    int64_t now_ms;
    int64_t since_ms;
    int64_t queued;            /* runs in status queued */
    int64_t ready;             /* of them, claimable now (run_after <= now) */
    int64_t oldest_ready_ms;   /* the smallest run_after among the ready; -1 when none */
    int64_t running;           /* runs in status running */
    int64_t expired_leases;    /* of them, with lease_expires < now: a worker died or stalls */
    int64_t waiting_approval;  /* runs in status waiting_approval */
    int64_t steps_last_minute; /* steps finished in [now - 60 s, +inf) */
    int64_t runs_failed;       /* runs in status failed finished in the window */
    int64_t steps_failed;      /* steps with outcome failed finished in the window */
    int64_t approvals_pending;
    int64_t oldest_pending_approval_ms; /* its created_at; -1 when none */
};

/* Fills out for the tenant (sample_max and agents_max are not used).
 * CONSTRAINT for a window <= 0. */
int aos_store_stats_vitals(struct aos_store_tx *tx, const char *tenant_id, const struct aos_stats_query *q,
                           struct aos_stats_vitals *out, char *err, size_t errlen);

#endif
