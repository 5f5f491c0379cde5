/*
 * The dashboard and vitals figures (core/store/stats.c) on SQLite always
 * and on PostgreSQL when AOS_TEST_PGSQL is set: runs, steps, approvals and
 * usage rows are inserted with plain SQL at fixed times around NOW, and
 * every figure is checked exactly.  Tenants acme (A) and globex (B) from
 * store_fixture.h; B's rows must never show in A's figures.
 */
#include "config.h"

/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/ops.h"
#include "store/stats.h"
#include "store/store.h"
#include "store/workflows.h"

/* err, E, tx, TX(), OK() and the assert_ helpers: see store_fixture.h. */
#define FX_STORE_CALLS
#include "store_fixture.h"

#define TENANT_A FX_TENANT_A
#define TENANT_B FX_TENANT_B
#define NIL_ID "00000000-0000-0000-0000-000000000000"

/* 2024-03-15 12:00:00 UTC */
#define NOW INT64_C(1710504000000)
#define HOUR INT64_C(3600000)
#define DAY (24 * HOUR)
#define SINCE (NOW - HOUR) /* the 1h window's start */

/* ---------------------------------------------------------------- rows */

static struct aos_db_param opt_int(int64_t v) { return v >= 0 ? AOS_DB_P_INT(v) : AOS_DB_P_NULL; }

static int64_t agents_made;

static void agent(struct fx *f, const char *tenant, const char *name, int64_t tokens_day, int64_t usd_month,
                  char id[AOS_ID_LEN])
{
    struct aos_agent_spec s;

    aos_agent_spec_init(&s);
    s.name = name;
    s.plugin = "agent-echo";
    s.budget_tokens_day = tokens_day;
    s.budget_micro_usd_month = usd_month;
    OK(f, aos_store_agent_create(tx, tenant, &s, id, E));
    /* Distinct creation times: agents are listed oldest first, and two
     * created in the same millisecond would be ordered by id. */
    agents_made++;
    struct aos_db_param p[] = {AOS_DB_P_INT(NOW - 100 * DAY + agents_made), AOS_DB_P_TEXT(id)};
    OK(f, aos_store_exec(tx, "UPDATE agents SET created_at = $1 WHERE id = $2", p, 2, NULL, E));
}

/* A run; agent_id or workflow_id NULL; finished -1 = not finished.
 * Running runs get a lease expiring at `lease` (else none). */
static void run(struct fx *f, const char *tenant, char id[AOS_ID_LEN], const char *agent_id,
                const char *workflow_id, const char *status, int64_t run_after, int64_t lease,
                int64_t finished)
{
    aos_store_id_new(id);
    struct aos_db_param p[] = {AOS_DB_P_TEXT(id),
                               AOS_DB_P_TEXT(tenant),
                               AOS_DB_P_TEXT(agent_id),
                               AOS_DB_P_TEXT(workflow_id),
                               AOS_DB_P_TEXT(status),
                               AOS_DB_P_INT(run_after),
                               lease >= 0 ? AOS_DB_P_TEXT("worker-1") : AOS_DB_P_NULL,
                               opt_int(lease),
                               AOS_DB_P_INT(NOW - 10 * DAY),
                               opt_int(finished)};
    OK(f, aos_store_exec(
              tx,
              "INSERT INTO runs (id, tenant_id, agent_id, workflow_id, status, created_by, run_after, "
              "lease_owner, lease_expires, created_at, updated_at, finished_at) "
              "VALUES ($1, $2, $3, $4, $5, 'user-1', $6, $7, $8, $9, $9, $10)",
              p, sizeof(p) / sizeof(p[0]), NULL, E));
}

static void step(struct fx *f, const char *tenant, const char *run_id, int seq, const char *agent_id,
                 const char *outcome, int64_t started, int64_t finished)
{
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tenant),   AOS_DB_P_TEXT(run_id),  AOS_DB_P_INT(seq),
                               AOS_DB_P_TEXT(agent_id), AOS_DB_P_TEXT(outcome), AOS_DB_P_INT(started),
                               AOS_DB_P_INT(finished)};
    OK(f, aos_store_exec(
              tx,
              "INSERT INTO steps (tenant_id, run_id, seq, agent_id, outcome, started_at, finished_at) "
              "VALUES ($1, $2, $3, $4, $5, $6, $7)",
              p, sizeof(p) / sizeof(p[0]), NULL, E));
}

static void approval(struct fx *f, const char *tenant, const char *run_id, int seq, const char *status,
                     int64_t created)
{
    char id[AOS_ID_LEN];
    bool pending = strcmp(status, "pending") == 0;

    aos_store_id_new(id);
    struct aos_db_param p[] = {AOS_DB_P_TEXT(id),
                               AOS_DB_P_TEXT(tenant),
                               AOS_DB_P_TEXT(run_id),
                               AOS_DB_P_INT(seq),
                               AOS_DB_P_TEXT(status),
                               pending ? AOS_DB_P_NULL : AOS_DB_P_TEXT("approver-1"),
                               pending ? AOS_DB_P_NULL : AOS_DB_P_INT(created + 1),
                               AOS_DB_P_INT(created)};
    OK(f, aos_store_exec(
              tx,
              "INSERT INTO approvals (id, tenant_id, run_id, step_seq, proposal, status, requested_by, "
              "decided_by, decided_at, created_at) VALUES ($1, $2, $3, $4, '{}', $5, 'user-1', $6, $7, $8)",
              p, sizeof(p) / sizeof(p[0]), NULL, E));
}

static void usage(struct fx *f, const char *tenant, const char *day, const char *agent_id, int64_t tin,
                  int64_t tout, int64_t usd, int64_t rtok, int64_t rusd)
{
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tenant), AOS_DB_P_TEXT(day), AOS_DB_P_TEXT(agent_id),
                               AOS_DB_P_INT(tin),     AOS_DB_P_INT(tout), AOS_DB_P_INT(usd),
                               AOS_DB_P_INT(rtok),    AOS_DB_P_INT(rusd), AOS_DB_P_INT(NOW)};
    OK(f, aos_store_exec(
              tx,
              "INSERT INTO usage (tenant_id, day, agent_id, tokens_in, tokens_out, micro_usd, "
              "reserved_tokens, reserved_micro_usd, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
              "$9)",
              p, sizeof(p) / sizeof(p[0]), NULL, E));
}

/* ---------------------------------------------------------------- the world */

static char a1[AOS_ID_LEN], a2[AOS_ID_LEN], a3[AOS_ID_LEN], bagent[AOS_ID_LEN];

/* Tenant A: agents a1 (budgets: 1000 tokens a day, 50000 micro-USD a
 * month), a2 (none) and a3 (deleted, but with history); a workflow w of
 * a1 then a2.  Tenant B: one agent and one of everything.  The expected
 * figures are worked out next to each row. */
static void world(struct fx *f)
{
    char w[AOS_ID_LEN], r[16][AOS_ID_LEN], rb[AOS_ID_LEN];
    struct aos_workflow_step ws[2];
    struct aos_workflow_spec wspec;

    agent(f, TENANT_A, "a1", 1000, 50000, a1);
    agent(f, TENANT_A, "a2", -1, -1, a2);
    agent(f, TENANT_A, "a3", -1, -1, a3);
    agent(f, TENANT_B, "b1", 5, 5, bagent);
    snprintf(ws[0].agent_id, AOS_ID_LEN, "%s", a1);
    snprintf(ws[1].agent_id, AOS_ID_LEN, "%s", a2);
    memset(&wspec, 0, sizeof(wspec));
    wspec.name = "chain";
    wspec.steps = ws;
    wspec.nsteps = 2;
    OK(f, aos_store_workflow_create(tx, TENANT_A, &wspec, w, E));

    /* In flight (finished_at unset): counted whatever their age. */
    run(f, TENANT_A, r[1], a1, NULL, "queued", NOW - 5000, -1, -1);       /* ready */
    run(f, TENANT_A, r[2], a1, NULL, "queued", NOW + 10000, -1, -1);      /* delayed (retry) */
    run(f, TENANT_A, r[3], a1, NULL, "running", NOW - 9000, NOW - 1, -1); /* lease expired */
    run(f, TENANT_A, r[4], a2, NULL, "running", NOW - 9000, NOW + 30000, -1);
    run(f, TENANT_A, r[5], a2, NULL, "waiting_approval", NOW - 9000, -1, -1);
    run(f, TENANT_A, r[11], a1, NULL, "budget_exceeded", NOW - 9000, -1, -1);
    run(f, TENANT_A, r[14], NULL, w, "waiting_approval", NOW - 9000, -1, -1); /* a workflow's */
    /* Finished: counted when finished_at is in the window. */
    run(f, TENANT_A, r[6], a1, NULL, "succeeded", NOW - DAY, -1, NOW - 1000);
    run(f, TENANT_A, r[7], a1, NULL, "succeeded", NOW - DAY, -1, SINCE - 1); /* 1h: out; 24h: in */
    run(f, TENANT_A, r[8], a1, NULL, "failed", NOW - DAY, -1, SINCE);        /* the first ms of the window */
    run(f, TENANT_A, r[9], a2, NULL, "cancelled", NOW - DAY, -1, NOW - 10);
    run(f, TENANT_A, r[10], NULL, w, "succeeded", NOW - DAY, -1, NOW - 20);
    run(f, TENANT_A, r[12], a3, NULL, "succeeded", NOW - DAY, -1, NOW - 30);
    run(f, TENANT_A, r[13], a2, NULL, "failed", NOW - 3 * DAY, -1, NOW - 2 * DAY); /* 24h: out */

    /* Steps (latency = finished - started).  In the 1h window, sorted:
     * 0 10 10 50 100 200 300 700 1000: count 9, max 1000, p50 = 5th = 100,
     * p95 = p99 = 9th = 1000.  a1: 0 10 100 200 300 1000; a2: 10 50. */
    step(f, TENANT_A, r[6], 0, a1, "continue", NOW - 120100, NOW - 120000); /* 100; not the last minute */
    step(f, TENANT_A, r[6], 1, a1, "continue", NOW - 1800, NOW - 1500);     /* 300 */
    step(f, TENANT_A, r[6], 2, a1, "failed", NOW - 1400, NOW - 1200);       /* 200, failed */
    step(f, TENANT_A, r[9], 0, a2, "done", NOW - 150, NOW - 100);           /* 50 */
    step(f, TENANT_A, r[10], 0, a1, "done", NOW - 1050, NOW - 50);          /* 1000 */
    step(f, TENANT_A, r[10], 1, a2, "done", NOW - 50, NOW - 40);            /* 10 */
    step(f, TENANT_A, r[8], 0, a1, "continue", NOW - 900, NOW - 1000);      /* clock went back: 0 */
    step(f, TENANT_A, r[12], 0, a3, "done", NOW - 730, NOW - 30);           /* 700, deleted agent */
    step(f, TENANT_A, r[14], 0, a1, "needs_approval", NOW - 80, NOW - 70);  /* 10 */
    step(f, TENANT_A, r[7], 0, a1, "failed", SINCE - 5010, SINCE - 10);     /* 5000: 24h only */

    /* Approvals: pending ones count whatever their age; a2's by its run,
     * a1's by the workflow step that asked. */
    approval(f, TENANT_A, r[5], 0, "pending", NOW - 600000);
    approval(f, TENANT_A, r[14], 0, "pending", NOW - 60);
    approval(f, TENANT_A, r[6], 1, "approved", NOW - 5000);
    approval(f, TENANT_A, r[9], 0, "rejected", NOW - 5000);

    /* Usage, today = 2024-03-15, month from 2024-03-01. */
    usage(f, TENANT_A, "2024-03-15", a1, 100, 50, 7000, 10, 20);
    usage(f, TENANT_A, "2024-03-15", NIL_ID, 1, 2, 3, 0, 0); /* unattributed */
    usage(f, TENANT_A, "2024-03-01", a1, 1000, 0, 500, 0, 0);
    usage(f, TENANT_A, "2024-02-29", a1, 99999, 9, 9, 9, 9); /* last month */
    usage(f, TENANT_A, "2024-03-16", a1, 55555, 5, 5, 5, 5); /* "tomorrow" (a clock ahead) */
    usage(f, TENANT_A, "2024-03-10", a2, 5, 5, 5, 1, 1);
    usage(f, TENANT_A, "2024-03-14", a3, 7, 0, 0, 0, 0); /* deleted agent */

    /* Tenant B: one of everything, never in A's figures. */
    run(f, TENANT_B, rb, bagent, NULL, "queued", NOW - 1, -1, -1);
    run(f, TENANT_B, rb, bagent, NULL, "succeeded", NOW - DAY, -1, NOW - 5);
    step(f, TENANT_B, rb, 0, bagent, "failed", NOW - 47, NOW - 5); /* 42 */
    approval(f, TENANT_B, rb, 0, "pending", NOW - 7);
    usage(f, TENANT_B, "2024-03-15", bagent, 11, 22, 33, 44, 55);

    /* a3 is deleted now: its history counts for the tenant only. */
    OK(f, aos_store_agent_delete(tx, TENANT_A, a3, E));
}

static struct aos_stats_query query(int64_t window, size_t sample, size_t agents)
{
    struct aos_stats_query q = {NOW, window, sample, agents};

    return q;
}

static void assert_runs(const int64_t *runs, int64_t queued, int64_t running, int64_t waiting, int64_t budget,
                        int64_t succeeded, int64_t failed, int64_t cancelled)
{
    int64_t want[AOS_STATS_RUN_NSTATUS] = {queued, running, waiting, budget, succeeded, failed, cancelled};

    for (int i = 0; i < AOS_STATS_RUN_NSTATUS; i++)
        if (runs[i] != want[i])
            fail_msg("runs %s: got %lld, want %lld", aos_stats_run_status_name(i), (long long)runs[i],
                     (long long)want[i]);
}

static void assert_latency(const struct aos_stats_latency *l, int64_t count, int64_t sample, int64_t p50,
                           int64_t p95, int64_t p99, int64_t max)
{
    assert_int_equal(l->count, count);
    assert_int_equal(l->sample, sample);
    assert_int_equal(l->p50, p50);
    assert_int_equal(l->p95, p95);
    assert_int_equal(l->p99, p99);
    assert_int_equal(l->max, max);
}

static void assert_spend(const struct aos_stats_spend *s, int64_t tin, int64_t tout, int64_t usd,
                         int64_t rtok, int64_t rusd)
{
    assert_int_equal(s->tokens_in, tin);
    assert_int_equal(s->tokens_out, tout);
    assert_int_equal(s->micro_usd, usd);
    assert_int_equal(s->reserved_tokens, rtok);
    assert_int_equal(s->reserved_micro_usd, rusd);
}

/* ---------------------------------------------------------------- tests */

static void test_dashboard(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_stats_dashboard d;
    struct aos_stats_query q = query(HOUR, AOS_STATS_SAMPLE_MAX, AOS_STATS_AGENTS_MAX);

    world(f);
    OK(f, aos_store_stats_dashboard(tx, TENANT_A, &q, &d, E));
    assert_int_equal(d.now_ms, NOW);
    assert_int_equal(d.since_ms, SINCE);
    assert_string_equal(d.day, "2024-03-15");
    assert_string_equal(d.month_start, "2024-03-01");
    /* open: 2 queued, 2 running, 2 waiting, 1 budget_exceeded; finished
     * in the hour: r6 r10 r12 succeeded, r8 failed, r9 cancelled. */
    assert_runs(d.runs, 2, 2, 2, 1, 3, 1, 1);
    assert_int_equal(d.runs_finished, 5);
    assert_latency(&d.latency, 9, 9, 100, 1000, 1000, 1000);
    assert_int_equal(d.steps_failed, 1);
    assert_int_equal(d.approvals_pending, 2);
    assert_int_equal(d.oldest_pending_approval_ms, NOW - 600000);
    assert_spend(&d.today, 101, 52, 7003, 10, 20);
    assert_spend(&d.month, 1113, 57, 7508, 11, 21);

    /* Live agents, oldest first; the deleted a3 is not listed. */
    assert_int_equal(d.nagents, 2);
    assert_false(d.agents_truncated);
    const struct aos_stats_agent *x = &d.agents[0], *y = &d.agents[1];
    assert_string_equal(x->id, a1);
    assert_string_equal(x->name, "a1");
    assert_runs(x->runs, 2, 1, 0, 1, 1, 1, 0);
    assert_latency(&x->latency, 6, 6, 100, 1000, 1000, 1000);
    assert_int_equal(x->steps_failed, 1);
    assert_int_equal(x->approvals_pending, 1);
    assert_spend(&x->today, 100, 50, 7000, 10, 20);
    assert_spend(&x->month, 1100, 50, 7500, 10, 20);
    assert_int_equal(x->budget_tokens_day, 1000);
    assert_int_equal(x->budget_tokens_month, -1);
    assert_int_equal(x->budget_micro_usd_day, -1);
    assert_int_equal(x->budget_micro_usd_month, 50000);
    assert_string_equal(y->id, a2);
    assert_runs(y->runs, 0, 1, 1, 0, 0, 0, 1);
    /* [10, 50]: p50 = 1st, p95 = p99 = 2nd. */
    assert_latency(&y->latency, 2, 2, 10, 50, 50, 50);
    assert_int_equal(y->steps_failed, 0);
    assert_int_equal(y->approvals_pending, 1);
    assert_spend(&y->today, 0, 0, 0, 0, 0);
    assert_spend(&y->month, 5, 5, 5, 1, 1);
    assert_int_equal(y->budget_tokens_day, -1);
    assert_int_equal(y->budget_micro_usd_month, -1);
    aos_stats_dashboard_clear(&d);

    /* 24h: r7 (and its 5000 ms failed step) join; r13 (2 days ago) not. */
    q = query(DAY, AOS_STATS_SAMPLE_MAX, AOS_STATS_AGENTS_MAX);
    OK(f, aos_store_stats_dashboard(tx, TENANT_A, &q, &d, E));
    assert_runs(d.runs, 2, 2, 2, 1, 4, 1, 1);
    assert_int_equal(d.runs_finished, 6);
    /* 0 10 10 50 100 200 300 700 1000 5000: p50 = 5th, p95 = p99 = 10th. */
    assert_latency(&d.latency, 10, 10, 100, 5000, 5000, 5000);
    assert_int_equal(d.steps_failed, 2);
    assert_runs(d.agents[0].runs, 2, 1, 0, 1, 2, 1, 0);
    /* a1: 0 10 100 200 300 1000 5000: p50 = 4th, p95 = p99 = 7th. */
    assert_latency(&d.agents[0].latency, 7, 7, 200, 5000, 5000, 5000);
    /* Spend does not depend on the window. */
    assert_spend(&d.today, 101, 52, 7003, 10, 20);
    aos_stats_dashboard_clear(&d);

    /* 7 days: r13 too. */
    q = query(7 * DAY, AOS_STATS_SAMPLE_MAX, AOS_STATS_AGENTS_MAX);
    OK(f, aos_store_stats_dashboard(tx, TENANT_A, &q, &d, E));
    assert_runs(d.runs, 2, 2, 2, 1, 4, 2, 1);
    assert_int_equal(d.runs_finished, 7);
    aos_stats_dashboard_clear(&d);
}

static void test_sample_and_agent_limit(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_stats_dashboard d;
    struct aos_stats_query q = query(HOUR, 3, 1);

    world(f);
    /* The newest 3 steps: 700 (a3, NOW-30), 10 (a2, NOW-40), 1000 (a1,
     * NOW-50): sorted 10 700 1000, p50 = 2nd, p95 = p99 = 3rd.  Count and
     * max still cover all 9. */
    OK(f, aos_store_stats_dashboard(tx, TENANT_A, &q, &d, E));
    assert_latency(&d.latency, 9, 3, 700, 1000, 1000, 1000);
    /* Only the oldest agent is listed, and the list says it is cut. */
    assert_int_equal(d.nagents, 1);
    assert_true(d.agents_truncated);
    assert_string_equal(d.agents[0].id, a1);
    assert_latency(&d.agents[0].latency, 6, 1, 1000, 1000, 1000, 1000);
    /* Tenant figures do not depend on which agents are listed. */
    assert_runs(d.runs, 2, 2, 2, 1, 3, 1, 1);
    assert_spend(&d.month, 1113, 57, 7508, 11, 21);
    assert_int_equal(d.approvals_pending, 2);
    aos_stats_dashboard_clear(&d);

    q = query(HOUR, 1, 0);
    OK(f, aos_store_stats_dashboard(tx, TENANT_A, &q, &d, E));
    assert_latency(&d.latency, 9, 1, 700, 700, 700, 1000);
    assert_int_equal(d.nagents, 0);
    assert_null(d.agents);
    assert_true(d.agents_truncated);
    aos_stats_dashboard_clear(&d);

    /* Out of range queries. */
    q = query(HOUR, 0, 1);
    assert_int_equal(TX(f, aos_store_stats_dashboard(tx, TENANT_A, &q, &d, E)), AOS_DB_CONSTRAINT);
    q = query(HOUR, AOS_STATS_SAMPLE_MAX + 1, 1);
    assert_int_equal(TX(f, aos_store_stats_dashboard(tx, TENANT_A, &q, &d, E)), AOS_DB_CONSTRAINT);
    q = query(HOUR, 1, AOS_STATS_AGENTS_MAX + 1);
    assert_int_equal(TX(f, aos_store_stats_dashboard(tx, TENANT_A, &q, &d, E)), AOS_DB_CONSTRAINT);
    q = query(0, 1, 1);
    assert_int_equal(TX(f, aos_store_stats_dashboard(tx, TENANT_A, &q, &d, E)), AOS_DB_CONSTRAINT);
    assert_null(d.agents);
}

static void test_tenant_isolation(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_stats_dashboard d;
    struct aos_stats_vitals v;
    struct aos_stats_query q = query(HOUR, AOS_STATS_SAMPLE_MAX, AOS_STATS_AGENTS_MAX);

    world(f);
    /* B sees exactly its own rows. */
    OK(f, aos_store_stats_dashboard(tx, TENANT_B, &q, &d, E));
    assert_runs(d.runs, 1, 0, 0, 0, 1, 0, 0);
    assert_int_equal(d.runs_finished, 1);
    assert_latency(&d.latency, 1, 1, 42, 42, 42, 42);
    assert_int_equal(d.steps_failed, 1);
    assert_int_equal(d.approvals_pending, 1);
    assert_int_equal(d.oldest_pending_approval_ms, NOW - 7);
    assert_spend(&d.today, 11, 22, 33, 44, 55);
    assert_spend(&d.month, 11, 22, 33, 44, 55);
    assert_int_equal(d.nagents, 1);
    assert_string_equal(d.agents[0].id, bagent);
    assert_int_equal(d.agents[0].approvals_pending, 1);
    aos_stats_dashboard_clear(&d);
    OK(f, aos_store_stats_vitals(tx, TENANT_B, &q, &v, E));
    assert_int_equal(v.queued, 1);
    assert_int_equal(v.running, 0);
    assert_int_equal(v.steps_last_minute, 1);
    assert_int_equal(v.steps_failed, 1);
    assert_int_equal(v.approvals_pending, 1);

    /* A tenant id that names nothing: all zeros. */
    OK(f, aos_store_stats_dashboard(tx, "not-a-tenant", &q, &d, E));
    assert_runs(d.runs, 0, 0, 0, 0, 0, 0, 0);
    assert_latency(&d.latency, 0, 0, -1, -1, -1, -1);
    assert_int_equal(d.nagents, 0);
    aos_stats_dashboard_clear(&d);
    OK(f, aos_store_stats_dashboard(tx, "9e9e9e9e-9e9e-4e9e-8e9e-9e9e9e9e9e9e", &q, &d, E));
    assert_int_equal(d.runs_finished, 0);
    assert_int_equal(d.approvals_pending, 0);
    assert_spend(&d.month, 0, 0, 0, 0, 0);
    aos_stats_dashboard_clear(&d);
}

static void test_empty(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_stats_dashboard d;
    struct aos_stats_vitals v;
    struct aos_stats_query q = query(DAY, AOS_STATS_SAMPLE_MAX, AOS_STATS_AGENTS_MAX);

    OK(f, aos_store_stats_dashboard(tx, TENANT_A, &q, &d, E));
    assert_runs(d.runs, 0, 0, 0, 0, 0, 0, 0);
    assert_int_equal(d.runs_finished, 0);
    assert_latency(&d.latency, 0, 0, -1, -1, -1, -1);
    assert_int_equal(d.approvals_pending, 0);
    assert_int_equal(d.oldest_pending_approval_ms, -1);
    assert_spend(&d.today, 0, 0, 0, 0, 0);
    assert_spend(&d.month, 0, 0, 0, 0, 0);
    assert_int_equal(d.nagents, 0);
    assert_false(d.agents_truncated);
    aos_stats_dashboard_clear(&d);

    /* An agent without any history: listed, all zeros. */
    agent(f, TENANT_A, "idle", -1, 0, a1);
    OK(f, aos_store_stats_dashboard(tx, TENANT_A, &q, &d, E));
    assert_int_equal(d.nagents, 1);
    assert_runs(d.agents[0].runs, 0, 0, 0, 0, 0, 0, 0);
    assert_latency(&d.agents[0].latency, 0, 0, -1, -1, -1, -1);
    assert_int_equal(d.agents[0].budget_micro_usd_month, 0);
    aos_stats_dashboard_clear(&d);

    OK(f, aos_store_stats_vitals(tx, TENANT_A, &q, &v, E));
    assert_int_equal(v.queued + v.ready + v.running + v.expired_leases + v.waiting_approval, 0);
    assert_int_equal(v.steps_last_minute + v.runs_failed + v.steps_failed + v.approvals_pending, 0);
    assert_int_equal(v.oldest_ready_ms, -1);
    assert_int_equal(v.oldest_pending_approval_ms, -1);
}

static void test_vitals(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_stats_vitals v;
    struct aos_stats_query q = query(HOUR, 1, 0);

    world(f);
    OK(f, aos_store_stats_vitals(tx, TENANT_A, &q, &v, E));
    assert_int_equal(v.now_ms, NOW);
    assert_int_equal(v.since_ms, SINCE);
    assert_int_equal(v.queued, 2);
    assert_int_equal(v.ready, 1);
    assert_int_equal(v.oldest_ready_ms, NOW - 5000);
    assert_int_equal(v.running, 2);
    assert_int_equal(v.expired_leases, 1);
    assert_int_equal(v.waiting_approval, 2);
    /* All 1h steps but r6's first (two minutes ago). */
    assert_int_equal(v.steps_last_minute, 8);
    assert_int_equal(v.runs_failed, 1);
    assert_int_equal(v.steps_failed, 1);
    assert_int_equal(v.approvals_pending, 2);
    assert_int_equal(v.oldest_pending_approval_ms, NOW - 600000);

    q = query(DAY, 1, 0);
    OK(f, aos_store_stats_vitals(tx, TENANT_A, &q, &v, E));
    assert_int_equal(v.steps_last_minute, 8);
    assert_int_equal(v.runs_failed, 1); /* r13 failed two days ago */
    assert_int_equal(v.steps_failed, 2);
    q = query(7 * DAY, 1, 0);
    OK(f, aos_store_stats_vitals(tx, TENANT_A, &q, &v, E));
    assert_int_equal(v.runs_failed, 2);

    q = query(-1, 1, 0);
    assert_int_equal(TX(f, aos_store_stats_vitals(tx, TENANT_A, &q, &v, E)), AOS_DB_CONSTRAINT);
    assert_int_equal(v.oldest_ready_ms, -1);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(aos_stats_run_status_name(AOS_STATS_RUN_QUEUED), "queued");
    assert_string_equal(aos_stats_run_status_name(AOS_STATS_RUN_WAITING_APPROVAL), "waiting_approval");
    assert_string_equal(aos_stats_run_status_name(AOS_STATS_RUN_CANCELLED), "cancelled");
    assert_null(aos_stats_run_status_name(AOS_STATS_RUN_NSTATUS));
    assert_null(aos_stats_run_status_name(-1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        FX_TESTS(test_dashboard, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_sample_and_agent_limit, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_tenant_isolation, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_empty, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_vitals, fx_setup_two_tenants, fx_teardown),
    };

    return FX_RUN("stats_store", tests);
}
