/*
 * Runs, steps, approvals and budget reservations in the store
 * (core/store/runs.c, the contract is store/runs.h) on SQLite always and
 * on PostgreSQL when AOS_TEST_PGSQL is set, each test in a private,
 * freshly migrated database with the tenants acme (A) and globex (B)
 * (store_fixture.h).
 *
 * Engine-side calls take "now" from the caller: tests pass times well
 * after the wall clock (T = now + 1 hour), so a run queued by the API
 * side (run_after = wall clock) is always due, and nothing depends on how
 * fast the test runs.
 */
#include "config.h"

/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/ops.h"
#include "store/runs.h"
#include "store/store.h"
#include "store/workflows.h"

/* err, E, tx, TX(), OK() and the assert_ helpers: see store_fixture.h. */
#define FX_STORE_CALLS
#include "store_fixture.h"

#define TENANT_A FX_TENANT_A
#define TENANT_B FX_TENANT_B
#define MISSING_ID "deadbeef-dead-4eef-8eef-deadbeefdead"
#define LEASE 30000
#define DAY "2031-03-04"
#define CREATOR "user-1"

/* A time comfortably after the wall clock (see the top of the file): an
 * hour, so that even a test slowed down by valgrind stays before it. */
static int64_t later(void) { return aos_store_now_ms() + 3600000; }

/* ------------------------------------------------------------ raw SQL */

/* sql with up to three text parameters (a, b, c; the first NULL ends the
 * list), in its own transaction.  The caller frees the result. */
static struct aos_db_result *q(struct fx *f, const char *sql, const char *a, const char *b, const char *c)
{
    struct aos_db_param p[3];
    struct aos_db_result *res = NULL;
    size_t n = 0;

    if (a != NULL) {
        p[n++] = AOS_DB_P_TEXT(a);
        if (b != NULL) {
            p[n++] = AOS_DB_P_TEXT(b);
            if (c != NULL)
                p[n++] = AOS_DB_P_TEXT(c);
        }
    }
    OK(f, aos_store_exec(tx, sql, p, n, &res, E));
    return res;
}

/* The integer in the first cell; null_value for SQL NULL; -1 for no row. */
static int64_t q_int_or(struct fx *f, int64_t null_value, const char *sql, const char *a, const char *b,
                        const char *c)
{
    struct aos_db_result *res = q(f, sql, a, b, c);
    int64_t v = -1;

    if (aos_db_result_rows(res) > 0)
        v = aos_db_result_is_null(res, 0, 0) ? null_value : aos_db_result_int(res, 0, 0);
    aos_db_result_free(res);
    return v;
}

static int64_t q_int(struct fx *f, const char *sql, const char *a, const char *b, const char *c)
{
    return q_int_or(f, -2, sql, a, b, c);
}

/* The text in the first cell; "<null>" for SQL NULL, "<none>" for no row. */
static void q_text(struct fx *f, char *buf, size_t len, const char *sql, const char *a, const char *b,
                   const char *c)
{
    struct aos_db_result *res = q(f, sql, a, b, c);

    if (aos_db_result_rows(res) == 0)
        snprintf(buf, len, "<none>");
    else if (aos_db_result_is_null(res, 0, 0))
        snprintf(buf, len, "<null>");
    else
        snprintf(buf, len, "%s", aos_db_result_text(res, 0, 0));
    aos_db_result_free(res);
}

/* UPDATE ... SET col = $1 WHERE id = $2. */
static void set_int(struct fx *f, const char *sql, int64_t v, const char *id)
{
    struct aos_db_param p[] = {AOS_DB_P_INT(v), AOS_DB_P_TEXT(id)};

    OK(f, aos_store_exec(tx, sql, p, 2, NULL, E));
}

static void lease_owner(struct fx *f, const char *run, char buf[AOS_WORKER_ID_LEN])
{
    q_text(f, buf, AOS_WORKER_ID_LEN, "SELECT lease_owner FROM runs WHERE id = $1", run, NULL, NULL);
}

/* -1 when the run has no lease. */
static int64_t lease_expires(struct fx *f, const char *run)
{
    return q_int_or(f, -1, "SELECT lease_expires FROM runs WHERE id = $1", run, NULL, NULL);
}

static int64_t count_steps(struct fx *f, const char *run)
{
    return q_int(f, "SELECT COUNT(*) FROM steps WHERE run_id = $1", run, NULL, NULL);
}

static int64_t count_approvals(struct fx *f, const char *run)
{
    return q_int(f, "SELECT COUNT(*) FROM approvals WHERE run_id = $1", run, NULL, NULL);
}

/* A column of the usage row (tenant, day, agent); -1 if there is no row. */
static int64_t usage_col(struct fx *f, const char *col, const char *tenant, const char *day, const char *agent)
{
    char sql[160];

    snprintf(sql, sizeof sql, "SELECT %s FROM usage WHERE tenant_id = $1 AND day = $2 AND agent_id = $3", col);
    return q_int(f, sql, tenant, day, agent);
}

/* ------------------------------------------------------------ rows */

static void to_upper(const char *in, char out[AOS_ID_LEN])
{
    size_t i;

    for (i = 0; in[i] != '\0' && i < AOS_ID_LEN - 1; i++)
        out[i] = (char)((in[i] >= 'a' && in[i] <= 'f') ? in[i] - 'a' + 'A' : in[i]);
    out[i] = '\0';
}

static void agent_new(struct fx *f, const char *tenant, const char *name, char id[AOS_ID_LEN])
{
    struct aos_agent_spec s;

    aos_agent_spec_init(&s);
    s.name = name;
    s.plugin = "agent-echo";
    OK(f, aos_store_agent_create(tx, tenant, &s, id, E));
}

/* A workflow of one (a2 NULL) or two agents. */
static void workflow_new(struct fx *f, const char *tenant, const char *name, const char *a1, const char *a2,
                         char id[AOS_ID_LEN])
{
    struct aos_workflow_step st[2];
    struct aos_workflow_spec s;

    memset(&s, 0, sizeof s);
    memset(st, 0, sizeof st);
    snprintf(st[0].agent_id, AOS_ID_LEN, "%s", a1);
    if (a2 != NULL)
        snprintf(st[1].agent_id, AOS_ID_LEN, "%s", a2);
    s.name = name;
    s.steps = st;
    s.nsteps = a2 != NULL ? 2 : 1;
    s.created_by = CREATOR;
    OK(f, aos_store_workflow_create(tx, tenant, &s, id, E));
}

static void run_new(struct fx *f, const char *tenant, const char *agent, char id[AOS_ID_LEN])
{
    OK(f, aos_store_run_create(tx, tenant, agent, NULL, CREATOR, "{\"q\":1}", id, E));
}

static void run_load(struct fx *f, const char *tenant, const char *id, struct aos_run *r)
{
    OK(f, aos_store_run_get(tx, tenant, id, r, E));
}

static void run_status_is(struct fx *f, const char *tenant, const char *id, const char *want)
{
    struct aos_run r;

    run_load(f, tenant, id, &r);
    if (strcmp(r.status, want) != 0)
        fail_msg("run %s is %s, want %s", id, r.status, want);
    aos_run_clear(&r);
}

/* Claims the next run of tenant for worker at now, which must be `want`. */
static void claim_ok(struct fx *f, const char *tenant, const char *worker, int64_t now, const char *want,
                     struct aos_claimed_run *c)
{
    OK(f, aos_store_run_claim(tx, tenant, worker, now, LEASE, c, E));
    if (want != NULL && strcmp(c->run.id, want) != 0)
        fail_msg("claimed %s, want %s", c->run.id, want);
}

static void claim_only(struct fx *f, const char *tenant, const char *worker, int64_t now, const char *want)
{
    struct aos_claimed_run c;

    claim_ok(f, tenant, worker, now, want, &c);
    aos_claimed_run_clear(&c);
}

static int claim_rc(struct fx *f, const char *tenant, const char *worker, int64_t now)
{
    struct aos_claimed_run c;
    int rc = TX(f, aos_store_run_claim(tx, tenant, worker, now, LEASE, &c, E));

    aos_claimed_run_clear(&c);
    return rc;
}

/* A checkpoint of step seq, executed from t to t + 1. */
static struct aos_checkpoint cp_of(const char *tenant, const char *run, const char *worker, const char *agent,
                                   int64_t seq, int kind, int64_t t)
{
    struct aos_checkpoint cp;

    memset(&cp, 0, sizeof cp);
    cp.tenant_id = tenant;
    cp.run_id = run;
    cp.worker_id = worker;
    cp.agent_id = agent;
    cp.seq = seq;
    cp.attempt = 1;
    cp.kind = kind;
    cp.started_at = t;
    cp.finished_at = t + 1;
    cp.lease_expires = t + LEASE;
    return cp;
}

/* Writes cp in its own transaction: the checkpoint result. */
static int cp_write(struct fx *f, struct aos_checkpoint *cp, const char *day, char status[AOS_RUN_STATUS_LEN])
{
    int result = -7;

    OK(f, aos_store_checkpoint(tx, cp, day, &result, status, E));
    return result;
}

/* Claims `run` (it must be the tenant's next) at t and checkpoints step
 * next_step as an APPROVAL expiring at `expires`: the approval id. */
static void park(struct fx *f, const char *tenant, const char *run, const char *agent, int64_t t, int64_t expires,
                 char approval[AOS_ID_LEN])
{
    struct aos_claimed_run c;
    struct aos_checkpoint cp;
    char st[AOS_RUN_STATUS_LEN];

    claim_ok(f, tenant, "w1", t, run, &c);
    cp = cp_of(tenant, run, "w1", agent, c.run.next_step, AOS_CP_APPROVAL, t);
    aos_claimed_run_clear(&c);
    cp.result = "{\"action\":\"send\"}";
    cp.approval_expires = expires;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "waiting_approval");
    memcpy(approval, cp.approval_id, AOS_ID_LEN);
}

/* Claims run at t and ends it with a checkpoint of kind DONE or FAILED. */
static void finish(struct fx *f, const char *tenant, const char *run, const char *agent, int64_t t, int kind)
{
    struct aos_claimed_run c;
    struct aos_checkpoint cp;
    char st[AOS_RUN_STATUS_LEN];

    claim_ok(f, tenant, "w1", t, run, &c);
    cp = cp_of(tenant, run, "w1", agent, c.run.next_step, kind, t);
    aos_claimed_run_clear(&c);
    cp.result = kind == AOS_CP_DONE ? "{\"ok\":true}" : NULL;
    cp.error = kind == AOS_CP_FAILED ? "boom" : NULL;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, kind == AOS_CP_DONE ? "succeeded" : "failed");
}

/* ids of one page of runs; returns how many. */
static size_t list_runs(struct fx *f, const char *tenant, const char *status, const char *agent, const char *cursor,
                        size_t limit, char ids[][AOS_ID_LEN], char next[AOS_CURSOR_LEN])
{
    struct aos_run *l = NULL;
    size_t n = 99, i;

    OK(f, aos_store_run_list(tx, tenant, status, agent, cursor, limit, &l, &n, next, E));
    assert_true(n <= limit);
    if (n == 0)
        assert_null(l);
    for (i = 0; i < n; i++) {
        assert_string_equal(l[i].tenant_id, tenant);
        memcpy(ids[i], l[i].id, AOS_ID_LEN);
    }
    aos_runs_free(l, n);
    return n;
}

static size_t list_approvals(struct fx *f, const char *tenant, const char *status, const char *cursor, size_t limit,
                             char ids[][AOS_ID_LEN], char next[AOS_CURSOR_LEN])
{
    struct aos_approval *l = NULL;
    size_t n = 99, i;

    OK(f, aos_store_approval_list(tx, tenant, status, cursor, limit, &l, &n, next, E));
    assert_true(n <= limit);
    if (n == 0)
        assert_null(l);
    for (i = 0; i < n; i++) {
        assert_string_equal(l[i].tenant_id, tenant);
        memcpy(ids[i], l[i].id, AOS_ID_LEN);
    }
    aos_approvals_free(l, n);
    return n;
}

/* ------------------------------------------------------------ create, get, list */

static void test_create_agent_run(void **state)
{
    struct fx *f = fx_get(state);
    char agent[AOS_ID_LEN], id[AOS_ID_LEN], norm[AOS_ID_LEN], upper[AOS_ID_LEN];
    struct aos_step_row *steps = NULL;
    struct aos_run r;
    int64_t before, after;
    size_t n = 99;

    agent_new(f, TENANT_A, "a1", agent);
    to_upper(agent, upper);
    before = aos_store_now_ms();
    OK(f, aos_store_run_create(tx, TENANT_A, upper, NULL, CREATOR, "{\"q\":[1,2],\"s\":\"x\"}", id, E));
    after = aos_store_now_ms();
    assert_true(aos_store_id_norm(id, norm));
    assert_string_equal(norm, id);

    run_load(f, TENANT_A, id, &r);
    assert_string_equal(r.id, id);
    assert_string_equal(r.tenant_id, TENANT_A);
    assert_string_equal(r.agent_id, agent); /* normalised */
    assert_string_equal(r.workflow_id, "");
    assert_string_equal(r.status, "queued");
    assert_string_equal(r.created_by, CREATOR);
    assert_json_eq(r.input, "{\"q\":[1,2],\"s\":\"x\"}");
    assert_null(r.state);
    assert_null(r.output);
    assert_null(r.error);
    assert_int_equal(r.next_step, 0);
    assert_int_equal(r.attempt, 0);
    assert_int_equal(r.stage, 0);
    assert_false(r.cancel_requested);
    assert_int_equal(r.tokens_in, 0);
    assert_int_equal(r.tokens_out, 0);
    assert_int_equal(r.cost_micro_usd, 0);
    assert_string_equal(r.reserved_day, "");
    assert_int_equal(r.reserved_tokens, 0);
    assert_int_equal(r.reserved_micro_usd, 0);
    assert_in_range(r.created_at, before, after);
    assert_int_equal(r.run_after, r.created_at);
    assert_int_equal(r.updated_at, r.created_at);
    assert_int_equal(r.started_at, 0);
    assert_int_equal(r.finished_at, 0);
    aos_run_clear(&r);

    /* Upper-case run ids name the same run. */
    to_upper(id, upper);
    run_load(f, TENANT_A, upper, &r);
    assert_string_equal(r.id, id);
    aos_run_clear(&r);

    OK(f, aos_store_run_steps(tx, TENANT_A, id, &steps, &n, E));
    assert_int_equal(n, 0);
    assert_null(steps);

    assert_int_equal(TX(f, aos_store_run_get(tx, TENANT_A, MISSING_ID, &r, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_run_get(tx, TENANT_A, "not-a-uuid", &r, E)), AOS_DB_NOT_FOUND);
    assert_null(r.input);

    assert_true(aos_run_status_final("succeeded"));
    assert_true(aos_run_status_final("failed"));
    assert_true(aos_run_status_final("cancelled"));
    assert_false(aos_run_status_final("queued"));
    assert_false(aos_run_status_final("running"));
    assert_false(aos_run_status_final("waiting_approval"));
    assert_false(aos_run_status_final("budget_exceeded"));
}

static void test_create_workflow_run(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], a2[AOS_ID_LEN], wf[AOS_ID_LEN], wfb[AOS_ID_LEN], ab[AOS_ID_LEN], id[AOS_ID_LEN];
    struct aos_run r;

    agent_new(f, TENANT_A, "a1", a1);
    agent_new(f, TENANT_A, "a2", a2);
    workflow_new(f, TENANT_A, "chain", a1, a2, wf);
    OK(f, aos_store_run_create(tx, TENANT_A, NULL, wf, CREATOR, "{}", id, E));
    run_load(f, TENANT_A, id, &r);
    assert_string_equal(r.workflow_id, wf);
    assert_string_equal(r.agent_id, "");
    assert_string_equal(r.status, "queued");
    assert_int_equal(r.stage, 0);
    assert_json_eq(r.input, "{}");
    aos_run_clear(&r);

    /* Another tenant's workflow, a deleted one, a missing one. */
    agent_new(f, TENANT_B, "b1", ab);
    workflow_new(f, TENANT_B, "theirs", ab, NULL, wfb);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, NULL, wfb, CREATOR, "{}", id, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, NULL, MISSING_ID, CREATOR, "{}", id, E)),
                     AOS_DB_NOT_FOUND);
    OK(f, aos_store_workflow_delete(tx, TENANT_A, wf, E));
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, NULL, wf, CREATOR, "{}", id, E)), AOS_DB_NOT_FOUND);
    /* An agent id given as a workflow id is no workflow. */
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, NULL, a1, CREATOR, "{}", id, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM runs", NULL, NULL, NULL), 1);
}

static void test_create_refusals(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], gone[AOS_ID_LEN], ab[AOS_ID_LEN], wf[AOS_ID_LEN], id[AOS_ID_LEN];

    agent_new(f, TENANT_A, "a1", a1);
    agent_new(f, TENANT_A, "gone", gone);
    agent_new(f, TENANT_B, "b1", ab);
    workflow_new(f, TENANT_A, "wf", a1, NULL, wf);
    OK(f, aos_store_agent_delete(tx, TENANT_A, gone, E));

    /* Both targets, neither. */
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, a1, wf, CREATOR, "{}", id, E)), AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, NULL, NULL, CREATOR, "{}", id, E)), AOS_DB_CONSTRAINT);
    /* No creator; input not a JSON object. */
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, a1, NULL, NULL, "{}", id, E)), AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, a1, NULL, CREATOR, NULL, id, E)), AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, a1, NULL, CREATOR, "{bad", id, E)), AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, a1, NULL, CREATOR, "[1]", id, E)), AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, a1, NULL, CREATOR, "", id, E)), AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, a1, NULL, CREATOR, "{} {}", id, E)),
                     AOS_DB_CONSTRAINT);
    /* Deleted agent, other tenant's agent, missing, malformed. */
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, gone, NULL, CREATOR, "{}", id, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, ab, NULL, CREATOR, "{}", id, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_B, a1, NULL, CREATOR, "{}", id, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, MISSING_ID, NULL, CREATOR, "{}", id, E)),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, "nope", NULL, CREATOR, "{}", id, E)),
                     AOS_DB_NOT_FOUND);
    /* A workflow id given as an agent id is no agent. */
    assert_int_equal(TX(f, aos_store_run_create(tx, TENANT_A, wf, NULL, CREATOR, "{}", id, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_run_create(tx, "nope", a1, NULL, CREATOR, "{}", id, E)), AOS_DB_NOT_FOUND);

    /* Nothing was written. */
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM runs", NULL, NULL, NULL), 0);
}

static void test_list_paging_filters_scoping(void **state)
{
    struct fx *f = fx_get(state);
    static const int64_t created[5] = {1000, 2000, 3000, 3000, 5000};
    char a1[AOS_ID_LEN], a2[AOS_ID_LEN], r[5][AOS_ID_LEN], ids[8][AOS_ID_LEN], next[AOS_CURSOR_LEN];
    char want_cursor[AOS_CURSOR_LEN], all[5][AOS_ID_LEN];
    const char *hi, *lo;
    struct aos_step_row *steps = NULL;
    struct aos_run *list = NULL, run;
    size_t n, i, got;
    int res = 0;

    agent_new(f, TENANT_A, "a1", a1);
    agent_new(f, TENANT_A, "a2", a2);
    for (i = 0; i < 5; i++) {
        run_new(f, TENANT_A, i % 2 == 0 ? a1 : a2, r[i]);
        set_int(f, "UPDATE runs SET created_at = $1 WHERE id = $2", created[i], r[i]);
    }
    /* Newest first; r2 and r3 were created in the same millisecond: id decides. */
    hi = strcmp(r[2], r[3]) > 0 ? r[2] : r[3];
    lo = hi == r[2] ? r[3] : r[2];
    const char *order[5] = {r[4], hi, lo, r[1], r[0]};

    /* Pages of 2: 2 + 2 + 1, each cursor "<created_at>.<id>" of its last row. */
    n = list_runs(f, TENANT_A, NULL, NULL, NULL, 2, ids, next);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], order[0]);
    assert_string_equal(ids[1], order[1]);
    snprintf(want_cursor, sizeof want_cursor, "3000.%s", hi);
    assert_string_equal(next, want_cursor);
    n = list_runs(f, TENANT_A, NULL, NULL, want_cursor, 2, ids, next);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], order[2]);
    assert_string_equal(ids[1], order[3]);
    assert_string_not_equal(next, "");
    memcpy(want_cursor, next, sizeof want_cursor);
    n = list_runs(f, TENANT_A, NULL, NULL, want_cursor, 2, ids, next);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], order[4]);
    assert_string_equal(next, "");
    /* Exactly one page: no cursor. */
    n = list_runs(f, TENANT_A, NULL, NULL, NULL, 5, all, next);
    assert_int_equal(n, 5);
    for (i = 0; i < 5; i++)
        assert_string_equal(all[i], order[i]);
    assert_string_equal(next, "");
    /* The list carries whole rows. */
    OK(f, aos_store_run_list(tx, TENANT_A, NULL, NULL, NULL, 1, &list, &got, next, E));
    assert_int_equal(got, 1);
    assert_string_equal(list[0].id, r[4]);
    assert_string_equal(list[0].agent_id, a1);
    assert_string_equal(list[0].status, "queued");
    assert_string_equal(list[0].created_by, CREATOR);
    assert_json_eq(list[0].input, "{\"q\":1}");
    assert_int_equal(list[0].created_at, 5000);
    aos_runs_free(list, got);

    /* Agent filter: a1 ran r0, r2, r4; a2 ran r1, r3. */
    n = list_runs(f, TENANT_A, NULL, a1, NULL, 10, ids, next);
    assert_int_equal(n, 3);
    assert_string_equal(ids[0], r[4]);
    assert_string_equal(ids[1], r[2]);
    assert_string_equal(ids[2], r[0]);
    n = list_runs(f, TENANT_A, NULL, a2, NULL, 10, ids, next);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], r[3]);
    assert_string_equal(ids[1], r[1]);
    assert_int_equal(list_runs(f, TENANT_A, NULL, MISSING_ID, NULL, 10, ids, next), 0);
    assert_int_equal(list_runs(f, TENANT_A, NULL, "nope", NULL, 10, ids, next), 0);

    /* Status filter (r1 and r2 cancelled), alone, with the agent, paged. */
    OK(f, aos_store_run_cancel(tx, TENANT_A, r[1], "admin", &res, E));
    assert_int_equal(res, AOS_RUN_CANCELLED);
    OK(f, aos_store_run_cancel(tx, TENANT_A, r[2], "admin", &res, E));
    n = list_runs(f, TENANT_A, "cancelled", NULL, NULL, 10, ids, next);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], r[2]);
    assert_string_equal(ids[1], r[1]);
    n = list_runs(f, TENANT_A, "queued", a1, NULL, 10, ids, next);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], r[4]);
    assert_string_equal(ids[1], r[0]);
    n = list_runs(f, TENANT_A, "queued", NULL, NULL, 2, ids, next);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], r[4]);
    assert_string_equal(ids[1], r[3]);
    memcpy(want_cursor, next, sizeof want_cursor);
    n = list_runs(f, TENANT_A, "queued", NULL, want_cursor, 2, ids, next);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], r[0]);
    assert_string_equal(next, "");
    assert_int_equal(list_runs(f, TENANT_A, "running", NULL, NULL, 10, ids, next), 0);

    /* Malformed pages. */
    assert_int_equal(TX(f, aos_store_run_list(tx, TENANT_A, NULL, NULL, NULL, 0, &list, &got, next, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_run_list(tx, TENANT_A, NULL, NULL, NULL, 1001, &list, &got, next, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_run_list(tx, TENANT_A, NULL, NULL, "garbage", 10, &list, &got, next, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_run_list(tx, TENANT_A, NULL, NULL, "12.not-a-uuid", 10, &list, &got, next, E)),
                     AOS_DB_CONSTRAINT);

    /* Tenant B sees none of it. */
    assert_int_equal(list_runs(f, TENANT_B, NULL, NULL, NULL, 10, ids, next), 0);
    assert_string_equal(next, "");
    assert_int_equal(list_runs(f, TENANT_B, NULL, a1, NULL, 10, ids, next), 0);
    assert_int_equal(list_runs(f, TENANT_B, "queued", NULL, NULL, 10, ids, next), 0);
    assert_int_equal(TX(f, aos_store_run_get(tx, TENANT_B, r[0], &run, E)), AOS_DB_NOT_FOUND);
    OK(f, aos_store_run_steps(tx, TENANT_B, r[0], &steps, &got, E));
    assert_int_equal(got, 0);
    assert_int_equal(TX(f, aos_store_run_cancel(tx, TENANT_B, r[0], "intruder", &res, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_run_resume(tx, TENANT_B, r[0], E)), AOS_DB_NOT_FOUND);
    run_status_is(f, TENANT_A, r[0], "queued");
}

/* ------------------------------------------------------------ claiming */

static void test_claim_and_takeover(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r0[AOS_ID_LEN], r1[AOS_ID_LEN], owner[AOS_WORKER_ID_LEN];
    struct aos_claimed_run c;
    int64_t t = later();

    agent_new(f, TENANT_A, "a1", a1);
    assert_int_equal(claim_rc(f, TENANT_A, "w1", t), AOS_DB_NOT_FOUND);
    assert_int_equal(claim_rc(f, "nope", "w1", t), AOS_DB_NOT_FOUND);

    run_new(f, TENANT_A, a1, r0);
    /* Another tenant's queue is its own. */
    assert_int_equal(claim_rc(f, TENANT_B, "w1", t), AOS_DB_NOT_FOUND);
    claim_ok(f, TENANT_A, "w1", t, r0, &c);
    assert_string_equal(c.run.status, "running");
    assert_int_equal(c.run.started_at, t);
    assert_int_equal(c.run.updated_at, t);
    assert_int_equal(c.run.attempt, 0);
    assert_int_equal(c.run.next_step, 0);
    assert_false(c.taken_over);
    assert_false(c.agent_deleted);
    assert_int_equal(c.stages, 1);
    assert_null(c.decision);
    assert_string_equal(c.agent.id, a1);
    assert_string_equal(c.agent.name, "a1");
    assert_string_equal(c.agent.plugin, "agent-echo");
    assert_json_eq(c.run.input, "{\"q\":1}");
    aos_claimed_run_clear(&c);
    lease_owner(f, r0, owner);
    assert_string_equal(owner, "w1");
    assert_int_equal(lease_expires(f, r0), t + LEASE);
    run_status_is(f, TENANT_A, r0, "running");

    /* A live lease is not taken: the queue is empty until it expires. */
    assert_int_equal(claim_rc(f, TENANT_A, "w2", t + LEASE - 1), AOS_DB_NOT_FOUND);
    lease_owner(f, r0, owner);
    assert_string_equal(owner, "w1");

    /* Expired: taken over before a queued run, counted as a failed attempt. */
    run_new(f, TENANT_A, a1, r1);
    claim_ok(f, TENANT_A, "w2", t + LEASE + 1, r0, &c);
    assert_true(c.taken_over);
    assert_int_equal(c.run.attempt, 1);
    assert_string_equal(c.run.status, "running");
    assert_int_equal(c.run.started_at, t); /* the first start stays */
    assert_int_equal(c.run.updated_at, t + LEASE + 1);
    assert_string_equal(c.agent.id, a1);
    aos_claimed_run_clear(&c);
    lease_owner(f, r0, owner);
    assert_string_equal(owner, "w2");
    assert_int_equal(lease_expires(f, r0), t + LEASE + 1 + LEASE);

    /* Then the queued one. */
    claim_ok(f, TENANT_A, "w3", t + LEASE + 1, r1, &c);
    assert_false(c.taken_over);
    assert_int_equal(c.run.attempt, 0);
    assert_int_equal(c.run.started_at, t + LEASE + 1);
    aos_claimed_run_clear(&c);
    assert_int_equal(claim_rc(f, TENANT_A, "w4", t + LEASE + 1), AOS_DB_NOT_FOUND);
}

static void test_claim_order_and_run_after(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r0[AOS_ID_LEN], r1[AOS_ID_LEN], r2[AOS_ID_LEN], r3[AOS_ID_LEN];
    int64_t t = later();

    agent_new(f, TENANT_A, "a1", a1);
    run_new(f, TENANT_A, a1, r0);
    run_new(f, TENANT_A, a1, r1);
    run_new(f, TENANT_A, a1, r2);
    run_new(f, TENANT_A, a1, r3);
    set_int(f, "UPDATE runs SET run_after = $1 WHERE id = $2", t - 10, r0);
    set_int(f, "UPDATE runs SET run_after = $1 WHERE id = $2", t - 20, r1);
    set_int(f, "UPDATE runs SET run_after = $1 WHERE id = $2", t - 20, r2);
    set_int(f, "UPDATE runs SET created_at = $1 WHERE id = $2", 100, r1);
    set_int(f, "UPDATE runs SET created_at = $1 WHERE id = $2", 50, r2);
    set_int(f, "UPDATE runs SET run_after = $1 WHERE id = $2", t + 5000, r3);

    /* Oldest run_after first, then oldest created. */
    claim_only(f, TENANT_A, "w1", t, r2);
    claim_only(f, TENANT_A, "w1", t, r1);
    claim_only(f, TENANT_A, "w1", t, r0);
    /* r3 is not due before its run_after. */
    assert_int_equal(claim_rc(f, TENANT_A, "w1", t), AOS_DB_NOT_FOUND);
    assert_int_equal(claim_rc(f, TENANT_A, "w1", t + 4999), AOS_DB_NOT_FOUND);
    run_status_is(f, TENANT_A, r3, "queued");
    claim_only(f, TENANT_A, "w1", t + 5000, r3);
}

static void test_ready_tenants(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], b1[AOS_ID_LEN], ra[AOS_ID_LEN], rb[AOS_ID_LEN], rb2[AOS_ID_LEN];
    char out[4][AOS_ID_LEN];
    struct aos_conf_tenant only_a = fx_conf_tenant(FX_TENANT_A, "acme");
    int64_t t = later();
    size_t n = 99;

    agent_new(f, TENANT_A, "a1", a1);
    agent_new(f, TENANT_B, "b1", b1);
    OK(f, aos_store_runs_ready_tenants(tx, t, out, 4, &n, E));
    assert_int_equal(n, 0);

    run_new(f, TENANT_A, a1, ra);
    run_new(f, TENANT_B, b1, rb);
    /* By tenant id: B's id sorts first. */
    OK(f, aos_store_runs_ready_tenants(tx, t, out, 4, &n, E));
    assert_int_equal(n, 2);
    assert_string_equal(out[0], TENANT_B);
    assert_string_equal(out[1], TENANT_A);
    OK(f, aos_store_runs_ready_tenants(tx, t, out, 1, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(out[0], TENANT_B);

    /* A's only run is leased: A is not ready until the lease expires. */
    claim_only(f, TENANT_A, "w1", t, ra);
    OK(f, aos_store_runs_ready_tenants(tx, t, out, 4, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(out[0], TENANT_B);
    OK(f, aos_store_runs_ready_tenants(tx, t + LEASE + 1, out, 4, &n, E));
    assert_int_equal(n, 2);
    assert_string_equal(out[0], TENANT_B);
    assert_string_equal(out[1], TENANT_A);

    /* B's run claimed, a second one not due yet: B is not ready. */
    claim_only(f, TENANT_B, "w1", t, rb);
    run_new(f, TENANT_B, b1, rb2);
    set_int(f, "UPDATE runs SET run_after = $1 WHERE id = $2", t + 1000, rb2);
    OK(f, aos_store_runs_ready_tenants(tx, t, out, 4, &n, E));
    assert_int_equal(n, 0);
    OK(f, aos_store_runs_ready_tenants(tx, t + 1000, out, 4, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(out[0], TENANT_B);

    /* An inactive tenant is never ready, whatever its queue holds. */
    OK(f, aos_store_tenants_sync(tx, &only_a, 1, E));
    OK(f, aos_store_runs_ready_tenants(tx, t + 1000, out, 4, &n, E));
    assert_int_equal(n, 0);
    OK(f, aos_store_runs_ready_tenants(tx, t + 10 * LEASE, out, 4, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(out[0], TENANT_A);
}

static void test_claim_context_decisions(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r1[AOS_ID_LEN], r2[AOS_ID_LEN], r3[AOS_ID_LEN], ap[AOS_ID_LEN], st[AOS_RUN_STATUS_LEN];
    struct aos_expired_approval *exp = NULL;
    struct aos_claimed_run c;
    struct aos_checkpoint cp;
    struct aos_approval a;
    int64_t t = later();
    size_t n = 0;
    int res = 0;

    agent_new(f, TENANT_A, "a1", a1);

    /* Approved: the step after the approval sees the decision. */
    run_new(f, TENANT_A, a1, r1);
    park(f, TENANT_A, r1, a1, t, 0, ap);
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap, "approver-1", true, "ok", true, &res, &a, E));
    assert_int_equal(res, AOS_DECIDED);
    aos_approval_clear(&a);
    claim_ok(f, TENANT_A, "w1", t + 10, r1, &c);
    assert_int_equal(c.run.next_step, 1);
    assert_json_eq(c.decision, "{\"approved\":true,\"decision\":\"approved\",\"comment\":\"ok\","
                               "\"decided_by\":\"approver-1\"}");
    aos_claimed_run_clear(&c);
    /* ... also when that step is retried ... */
    cp = cp_of(TENANT_A, r1, "w1", a1, 1, AOS_CP_RETRY, t + 10);
    cp.run_after = t + 10;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    claim_ok(f, TENANT_A, "w1", t + 20, r1, &c);
    assert_int_equal(c.run.attempt, 1);
    assert_non_null(c.decision);
    assert_json_eq(c.decision, "{\"approved\":true,\"decision\":\"approved\",\"comment\":\"ok\","
                               "\"decided_by\":\"approver-1\"}");
    aos_claimed_run_clear(&c);
    /* ... but not the step after it. */
    cp = cp_of(TENANT_A, r1, "w1", a1, 1, AOS_CP_CONTINUE, t + 20);
    cp.attempt = 2;
    cp.result = "{\"s\":1}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    OK(f, aos_store_run_release(tx, TENANT_A, r1, "w1", &res, E));
    assert_int_equal(res, AOS_CP_OK);
    claim_ok(f, TENANT_A, "w1", t + 30, r1, &c);
    assert_int_equal(c.run.next_step, 2);
    assert_null(c.decision);
    assert_json_eq(c.run.state, "{\"s\":1}");
    aos_claimed_run_clear(&c);
    cp = cp_of(TENANT_A, r1, "w1", a1, 2, AOS_CP_DONE, t + 30);
    cp.result = "{}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);

    /* Rejected without a comment. */
    run_new(f, TENANT_A, a1, r2);
    park(f, TENANT_A, r2, a1, t + 40, 0, ap);
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap, "approver-2", false, NULL, true, &res, &a, E));
    assert_int_equal(res, AOS_DECIDED);
    aos_approval_clear(&a);
    claim_ok(f, TENANT_A, "w1", t + 50, r2, &c);
    assert_json_eq(c.decision, "{\"approved\":false,\"decision\":\"rejected\",\"comment\":null,"
                               "\"decided_by\":\"approver-2\"}");
    aos_claimed_run_clear(&c);
    cp = cp_of(TENANT_A, r2, "w1", a1, 1, AOS_CP_FAILED, t + 50);
    cp.error = "rejected";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);

    /* Expired: a rejection nobody made. */
    run_new(f, TENANT_A, a1, r3);
    park(f, TENANT_A, r3, a1, t + 60, t + 100, ap);
    OK(f, aos_store_approvals_expire(tx, t + 101, 10, &exp, &n, E));
    assert_int_equal(n, 1);
    free(exp);
    claim_ok(f, TENANT_A, "w1", t + 101, r3, &c);
    assert_json_eq(c.decision, "{\"approved\":false,\"decision\":\"expired\",\"comment\":null,"
                               "\"decided_by\":null}");
    aos_claimed_run_clear(&c);
}

static void test_claim_context_workflow_and_deleted(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], a2[AOS_ID_LEN], a3[AOS_ID_LEN], wf[AOS_ID_LEN], wf2[AOS_ID_LEN];
    char r[AOS_ID_LEN], r2[AOS_ID_LEN], r3[AOS_ID_LEN], r4[AOS_ID_LEN], owner[AOS_WORKER_ID_LEN];
    char st[AOS_RUN_STATUS_LEN];
    struct aos_step_row *steps = NULL;
    struct aos_claimed_run c;
    struct aos_checkpoint cp;
    struct aos_run run;
    int64_t t = later();
    size_t n = 0;

    agent_new(f, TENANT_A, "a1", a1);
    agent_new(f, TENANT_A, "a2", a2);
    agent_new(f, TENANT_A, "a3", a3);
    workflow_new(f, TENANT_A, "chain", a1, a2, wf);

    /* Stage 0 runs a1. */
    OK(f, aos_store_run_create(tx, TENANT_A, NULL, wf, CREATOR, "{\"in\":0}", r, E));
    claim_ok(f, TENANT_A, "w1", t, r, &c);
    assert_int_equal(c.stages, 2);
    assert_int_equal(c.run.stage, 0);
    assert_string_equal(c.agent.id, a1);
    assert_string_equal(c.agent.name, "a1");
    assert_false(c.agent_deleted);
    aos_claimed_run_clear(&c);

    /* STAGE_DONE: the output feeds the next stage, the run is queued again. */
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_STAGE_DONE, t);
    cp.result = "{\"x\":1}";
    cp.tokens_in = 3;
    cp.tokens_out = 4;
    cp.cost_micro_usd = 5;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "queued");
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "queued");
    assert_json_eq(run.output, "{\"x\":1}");
    assert_null(run.state);
    assert_int_equal(run.stage, 1);
    assert_int_equal(run.next_step, 1);
    assert_int_equal(run.attempt, 0);
    assert_int_equal(run.run_after, t + 1);
    assert_int_equal(run.updated_at, t + 1);
    assert_int_equal(run.finished_at, 0);
    assert_int_equal(run.tokens_in, 3);
    assert_int_equal(run.tokens_out, 4);
    assert_int_equal(run.cost_micro_usd, 5);
    aos_run_clear(&run);
    lease_owner(f, r, owner);
    assert_string_equal(owner, "<null>");
    assert_int_equal(lease_expires(f, r), -1);
    OK(f, aos_store_run_steps(tx, TENANT_A, r, &steps, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(steps[0].outcome, "done");
    assert_string_equal(steps[0].agent_id, a1);
    assert_json_eq(steps[0].result, "{\"x\":1}");
    aos_step_rows_free(steps, n);

    /* Stage 1 runs a2 on stage 0's output. */
    claim_ok(f, TENANT_A, "w1", t + 10, r, &c);
    assert_int_equal(c.stages, 2);
    assert_int_equal(c.run.stage, 1);
    assert_string_equal(c.agent.id, a2);
    assert_json_eq(c.run.output, "{\"x\":1}");
    assert_false(c.agent_deleted);
    assert_null(c.decision);
    aos_claimed_run_clear(&c);
    cp = cp_of(TENANT_A, r, "w1", a2, 1, AOS_CP_DONE, t + 10);
    cp.result = "{\"y\":2}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "succeeded");

    /* An agent run whose agent was deleted after it was queued. */
    run_new(f, TENANT_A, a3, r2);
    OK(f, aos_store_agent_delete(tx, TENANT_A, a3, E));
    claim_ok(f, TENANT_A, "w1", t + 20, r2, &c);
    assert_true(c.agent_deleted);
    assert_string_equal(c.agent.id, a3);
    assert_null(c.agent.name);
    assert_int_equal(c.stages, 1);
    aos_claimed_run_clear(&c);

    /* A workflow run reaching a deleted agent. */
    OK(f, aos_store_run_create(tx, TENANT_A, NULL, wf, CREATOR, "{}", r3, E));
    claim_ok(f, TENANT_A, "w1", t + 30, r3, &c);
    assert_false(c.agent_deleted);
    aos_claimed_run_clear(&c);
    cp = cp_of(TENANT_A, r3, "w1", a1, 0, AOS_CP_STAGE_DONE, t + 30);
    cp.result = "{}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    OK(f, aos_store_agent_delete(tx, TENANT_A, a2, E));
    claim_ok(f, TENANT_A, "w1", t + 40, r3, &c);
    assert_true(c.agent_deleted);
    assert_string_equal(c.agent.id, a2);
    assert_int_equal(c.stages, 2);
    aos_claimed_run_clear(&c);

    /* A workflow whose definition has no agent for the stage. */
    workflow_new(f, TENANT_A, "short", a1, NULL, wf2);
    OK(f, aos_store_run_create(tx, TENANT_A, NULL, wf2, CREATOR, "{}", r4, E));
    {
        struct aos_db_result *res =
            q(f, "UPDATE workflows SET definition = '{\"steps\":[]}' WHERE id = $1", wf2, NULL, NULL);
        aos_db_result_free(res);
    }
    claim_ok(f, TENANT_A, "w1", t + 50, r4, &c);
    assert_true(c.agent_deleted);
    aos_claimed_run_clear(&c);
}

/* ------------------------------------------------------------ checkpoints */

static void test_checkpoint_continue_done(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r[AOS_ID_LEN], owner[AOS_WORKER_ID_LEN], st[AOS_RUN_STATUS_LEN];
    struct aos_step_row *steps = NULL;
    struct aos_usage u;
    struct aos_checkpoint cp;
    struct aos_run run;
    int64_t t = later();
    size_t n = 0;

    agent_new(f, TENANT_A, "a1", a1);
    run_new(f, TENANT_A, a1, r);
    claim_only(f, TENANT_A, "w1", t, r);

    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_CONTINUE, t + 100);
    cp.result = "{\"s\":1}";
    cp.tokens_in = 10;
    cp.tokens_out = 5;
    cp.cost_micro_usd = 7;
    cp.lease_expires = t + 90000;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "running");
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "running");
    assert_int_equal(run.next_step, 1);
    assert_int_equal(run.attempt, 0);
    assert_json_eq(run.state, "{\"s\":1}");
    assert_null(run.output);
    assert_int_equal(run.tokens_in, 10);
    assert_int_equal(run.tokens_out, 5);
    assert_int_equal(run.cost_micro_usd, 7);
    assert_int_equal(run.updated_at, t + 101);
    assert_int_equal(run.finished_at, 0);
    aos_run_clear(&run);
    /* The lease is renewed, still ours. */
    lease_owner(f, r, owner);
    assert_string_equal(owner, "w1");
    assert_int_equal(lease_expires(f, r), t + 90000);

    /* Second step, second attempt: sums add up, state replaced. */
    cp = cp_of(TENANT_A, r, "w1", a1, 1, AOS_CP_CONTINUE, t + 200);
    cp.attempt = 2;
    cp.result = "{\"s\":2}";
    cp.tokens_in = 1;
    cp.tokens_out = 2;
    cp.cost_micro_usd = 3;
    cp.lease_expires = t + 95000;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_int_equal(lease_expires(f, r), t + 95000);

    /* DONE: succeeded with output; state dropped; lease released. */
    cp = cp_of(TENANT_A, r, "w1", a1, 2, AOS_CP_DONE, t + 300);
    cp.result = "{\"answer\":42}";
    cp.tokens_in = 100;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "succeeded");
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "succeeded");
    assert_json_eq(run.output, "{\"answer\":42}");
    assert_null(run.state);
    assert_null(run.error);
    assert_int_equal(run.next_step, 3);
    assert_int_equal(run.tokens_in, 111);
    assert_int_equal(run.tokens_out, 7);
    assert_int_equal(run.cost_micro_usd, 10);
    assert_int_equal(run.finished_at, t + 301);
    assert_int_equal(run.started_at, t);
    aos_run_clear(&run);
    lease_owner(f, r, owner);
    assert_string_equal(owner, "<null>");
    assert_int_equal(lease_expires(f, r), -1);

    OK(f, aos_store_run_steps(tx, TENANT_A, r, &steps, &n, E));
    assert_int_equal(n, 3);
    assert_int_equal(steps[0].seq, 0);
    assert_string_equal(steps[0].agent_id, a1);
    assert_int_equal(steps[0].attempt, 1);
    assert_string_equal(steps[0].outcome, "continue");
    assert_json_eq(steps[0].result, "{\"s\":1}");
    assert_null(steps[0].error);
    assert_int_equal(steps[0].tokens_in, 10);
    assert_int_equal(steps[0].tokens_out, 5);
    assert_int_equal(steps[0].cost_micro_usd, 7);
    assert_int_equal(steps[0].started_at, t + 100);
    assert_int_equal(steps[0].finished_at, t + 101);
    assert_int_equal(steps[1].seq, 1);
    assert_int_equal(steps[1].attempt, 2);
    assert_json_eq(steps[1].result, "{\"s\":2}");
    assert_int_equal(steps[2].seq, 2);
    assert_string_equal(steps[2].outcome, "done");
    assert_json_eq(steps[2].result, "{\"answer\":42}");
    assert_int_equal(steps[2].tokens_in, 100);
    aos_step_rows_free(steps, n);

    /* Usage booked on `day` (no reservation was held). */
    OK(f, aos_store_usage_total(tx, TENANT_A, a1, DAY, DAY, &u, E));
    assert_int_equal(u.tokens_in, 111);
    assert_int_equal(u.tokens_out, 7);
    assert_int_equal(u.micro_usd, 10);
}

static void test_checkpoint_approval(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r[AOS_ID_LEN], r2[AOS_ID_LEN], owner[AOS_WORKER_ID_LEN], st[AOS_RUN_STATUS_LEN];
    struct aos_step_row *steps = NULL;
    struct aos_checkpoint cp;
    struct aos_approval a;
    struct aos_run run;
    int64_t t = later();
    size_t n = 0;

    agent_new(f, TENANT_A, "a1", a1);
    run_new(f, TENANT_A, a1, r);
    claim_only(f, TENANT_A, "w1", t, r);
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_APPROVAL, t);
    cp.result = "{\"action\":\"pay\",\"amount\":5}";
    cp.tokens_in = 2;
    cp.approval_expires = t + 3600000;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "waiting_approval");
    assert_true(aos_store_id_norm(cp.approval_id, owner));

    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "waiting_approval");
    assert_int_equal(run.next_step, 1);
    assert_int_equal(run.attempt, 0);
    assert_int_equal(run.tokens_in, 2);
    assert_int_equal(run.finished_at, 0);
    aos_run_clear(&run);
    lease_owner(f, r, owner);
    assert_string_equal(owner, "<null>");
    assert_int_equal(lease_expires(f, r), -1);
    /* A waiting run is not claimable. */
    assert_int_equal(claim_rc(f, TENANT_A, "w1", t + 10 * LEASE), AOS_DB_NOT_FOUND);

    OK(f, aos_store_approval_get(tx, TENANT_A, cp.approval_id, &a, E));
    assert_string_equal(a.id, cp.approval_id);
    assert_string_equal(a.tenant_id, TENANT_A);
    assert_string_equal(a.run_id, r);
    assert_int_equal(a.step_seq, 0);
    assert_json_eq(a.proposal, "{\"action\":\"pay\",\"amount\":5}");
    assert_string_equal(a.status, "pending");
    assert_string_equal(a.requested_by, CREATOR);
    assert_null(a.decided_by);
    assert_null(a.comment);
    assert_int_equal(a.created_at, t + 1);
    assert_int_equal(a.decided_at, 0);
    assert_int_equal(a.expires_at, t + 3600000);
    aos_approval_clear(&a);

    OK(f, aos_store_run_steps(tx, TENANT_A, r, &steps, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(steps[0].outcome, "needs_approval");
    assert_json_eq(steps[0].result, "{\"action\":\"pay\",\"amount\":5}");
    aos_step_rows_free(steps, n);

    /* No expiry: expires_at 0. */
    run_new(f, TENANT_A, a1, r2);
    claim_only(f, TENANT_A, "w1", t, r2);
    cp = cp_of(TENANT_A, r2, "w1", a1, 0, AOS_CP_APPROVAL, t);
    cp.result = "{}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    OK(f, aos_store_approval_get(tx, TENANT_A, cp.approval_id, &a, E));
    assert_int_equal(a.expires_at, 0);
    assert_string_equal(a.run_id, r2);
    aos_approval_clear(&a);
}

static void test_checkpoint_failed_retry(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r[AOS_ID_LEN], r2[AOS_ID_LEN], owner[AOS_WORKER_ID_LEN], st[AOS_RUN_STATUS_LEN];
    struct aos_step_row *steps = NULL;
    struct aos_claimed_run c;
    struct aos_checkpoint cp;
    struct aos_usage u;
    struct aos_run run;
    int64_t t = later();
    size_t n = 0;

    agent_new(f, TENANT_A, "a1", a1);
    run_new(f, TENANT_A, a1, r);

    /* CONTINUE, then RETRY: no step row, attempt + 1, back to the queue at run_after. */
    claim_only(f, TENANT_A, "w1", t, r);
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_CONTINUE, t);
    cp.result = "{\"s\":1}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    cp = cp_of(TENANT_A, r, "w1", a1, 1, AOS_CP_RETRY, t + 10);
    cp.error = "timeout";
    cp.tokens_in = 4;
    cp.run_after = t + 5000;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "queued");
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "queued");
    assert_int_equal(run.next_step, 1);
    assert_int_equal(run.attempt, 1);
    assert_int_equal(run.run_after, t + 5000);
    assert_json_eq(run.state, "{\"s\":1}"); /* kept for the retry */
    assert_null(run.error);
    assert_int_equal(run.tokens_in, 4);
    assert_int_equal(run.finished_at, 0);
    aos_run_clear(&run);
    lease_owner(f, r, owner);
    assert_string_equal(owner, "<null>");
    assert_int_equal(count_steps(f, r), 1);
    /* The spend of the failed attempt still counts. */
    OK(f, aos_store_usage_total(tx, TENANT_A, a1, DAY, DAY, &u, E));
    assert_int_equal(u.tokens_in, 4);

    assert_int_equal(claim_rc(f, TENANT_A, "w1", t + 4999), AOS_DB_NOT_FOUND);
    claim_ok(f, TENANT_A, "w1", t + 5000, r, &c);
    assert_int_equal(c.run.attempt, 1); /* a claim from the queue adds none */
    assert_int_equal(c.run.started_at, t);
    aos_claimed_run_clear(&c);

    /* FAILED: final, with the error, state dropped. */
    cp = cp_of(TENANT_A, r, "w1", a1, 1, AOS_CP_FAILED, t + 6000);
    cp.attempt = 2;
    cp.error = "boom";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "failed");
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "failed");
    assert_string_equal(run.error, "boom");
    assert_null(run.output);
    assert_null(run.state);
    assert_int_equal(run.next_step, 2);
    assert_int_equal(run.attempt, 0);
    assert_int_equal(run.finished_at, t + 6001);
    aos_run_clear(&run);
    assert_int_equal(lease_expires(f, r), -1);
    OK(f, aos_store_run_steps(tx, TENANT_A, r, &steps, &n, E));
    assert_int_equal(n, 2);
    assert_int_equal(steps[1].seq, 1);
    assert_int_equal(steps[1].attempt, 2);
    assert_string_equal(steps[1].outcome, "failed");
    assert_string_equal(steps[1].error, "boom");
    assert_null(steps[1].result);
    aos_step_rows_free(steps, n);

    /* FAILED without a reason still has one. */
    run_new(f, TENANT_A, a1, r2);
    claim_only(f, TENANT_A, "w1", t, r2);
    cp = cp_of(TENANT_A, r2, "w1", a1, 0, AOS_CP_FAILED, t);
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    run_load(f, TENANT_A, r2, &run);
    assert_string_equal(run.status, "failed");
    assert_non_null(run.error);
    assert_string_not_equal(run.error, "");
    aos_run_clear(&run);
}

static void test_checkpoint_lease_lost(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r[AOS_ID_LEN], st[AOS_RUN_STATUS_LEN];
    struct aos_checkpoint cp;
    struct aos_run before, after;
    int64_t t = later();
    int result = 0;

    agent_new(f, TENANT_A, "a1", a1);
    run_new(f, TENANT_A, a1, r);
    claim_only(f, TENANT_A, "w1", t, r);
    run_load(f, TENANT_A, r, &before);

    /* Another worker; a step other than next_step. */
    cp = cp_of(TENANT_A, r, "w2", a1, 0, AOS_CP_APPROVAL, t);
    cp.result = "{}";
    cp.tokens_in = 5;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_LEASE_LOST);
    assert_string_equal(st, "");
    cp = cp_of(TENANT_A, r, "w1", a1, 1, AOS_CP_DONE, t);
    cp.result = "{}";
    cp.tokens_in = 5;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_LEASE_LOST);
    /* Another tenant's run (same id). */
    cp = cp_of(TENANT_B, r, "w1", a1, 0, AOS_CP_DONE, t);
    cp.result = "{}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_LEASE_LOST);
    /* Not running any more (handed back). */
    OK(f, aos_store_run_release(tx, TENANT_A, r, "w1", &result, E));
    assert_int_equal(result, AOS_CP_OK);
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_CONTINUE, t);
    cp.result = "{}";
    cp.tokens_in = 5;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_LEASE_LOST);

    /* Nothing written by any of them. */
    run_load(f, TENANT_A, r, &after);
    assert_string_equal(after.status, "queued");
    assert_int_equal(after.next_step, 0);
    assert_int_equal(after.tokens_in, 0);
    assert_null(after.state);
    assert_null(after.output);
    assert_int_equal(after.started_at, before.started_at);
    aos_run_clear(&before);
    aos_run_clear(&after);
    assert_int_equal(count_steps(f, r), 0);
    assert_int_equal(count_approvals(f, r), 0);
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM usage", NULL, NULL, NULL), 0);

    /* Taken over: the old owner's checkpoint is lost, the new owner's is not. */
    claim_only(f, TENANT_A, "w1", t, r);
    claim_only(f, TENANT_A, "w2", t + LEASE + 1, r);
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_DONE, t + 10);
    cp.result = "{}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_LEASE_LOST);
    cp = cp_of(TENANT_A, r, "w2", a1, 0, AOS_CP_DONE, t + LEASE + 10);
    cp.attempt = 2;
    cp.result = "{}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "succeeded");
    /* Finished: nothing more goes in. */
    cp = cp_of(TENANT_A, r, "w2", a1, 1, AOS_CP_CONTINUE, t + LEASE + 20);
    cp.result = "{}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_LEASE_LOST);
    assert_int_equal(count_steps(f, r), 1);
    run_status_is(f, TENANT_A, r, "succeeded");

    /* Malformed checkpoints are refused outright. */
    cp = cp_of(TENANT_A, r, "w2", a1, 1, AOS_CP_CONTINUE, t);
    cp.attempt = 0;
    assert_int_equal(TX(f, aos_store_checkpoint(tx, &cp, DAY, &result, st, E)), AOS_DB_CONSTRAINT);
    cp = cp_of(TENANT_A, r, "w2", a1, 1, 0, t);
    assert_int_equal(TX(f, aos_store_checkpoint(tx, &cp, DAY, &result, st, E)), AOS_DB_CONSTRAINT);
    cp = cp_of(TENANT_A, r, "w2", a1, 1, AOS_CP_RETRY + 1, t);
    assert_int_equal(TX(f, aos_store_checkpoint(tx, &cp, DAY, &result, st, E)), AOS_DB_CONSTRAINT);
    cp = cp_of(TENANT_A, r, "w2", a1, 1, AOS_CP_CONTINUE, t);
    cp.tokens_out = -1;
    assert_int_equal(TX(f, aos_store_checkpoint(tx, &cp, DAY, &result, st, E)), AOS_DB_CONSTRAINT);
    /* A malformed run id matches nothing (which status says so is open). */
    cp = cp_of(TENANT_A, "not-a-run", "w2", a1, 1, AOS_CP_CONTINUE, t);
    result = 0;
    {
        int rc = TX(f, aos_store_checkpoint(tx, &cp, DAY, &result, st, E));
        assert_true(rc == AOS_DB_CONSTRAINT || rc == AOS_DB_NOT_FOUND ||
                    (rc == AOS_DB_OK && result == AOS_CP_LEASE_LOST));
    }
    assert_int_equal(count_steps(f, r), 1);
}

static void test_checkpoint_cancel_requested(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r[AOS_ID_LEN], owner[AOS_WORKER_ID_LEN], st[AOS_RUN_STATUS_LEN];
    struct aos_step_row *steps = NULL;
    struct aos_checkpoint cp;
    struct aos_run run;
    int64_t t = later();
    size_t n = 0;
    int res = 0;

    agent_new(f, TENANT_A, "a1", a1);

    /* CONTINUE: the step is kept, the run ends cancelled. */
    run_new(f, TENANT_A, a1, r);
    claim_only(f, TENANT_A, "w1", t, r);
    OK(f, aos_store_run_cancel(tx, TENANT_A, r, "admin", &res, E));
    assert_int_equal(res, AOS_RUN_CANCEL_REQUESTED);
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "running");
    assert_true(run.cancel_requested);
    assert_int_equal(run.finished_at, 0);
    aos_run_clear(&run);
    OK(f, aos_store_run_cancel(tx, TENANT_A, r, "admin", &res, E));
    assert_int_equal(res, AOS_RUN_CANCEL_REQUESTED);
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_CONTINUE, t + 100);
    cp.result = "{\"s\":1}";
    cp.tokens_in = 9;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "cancelled");
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "cancelled");
    assert_int_equal(run.finished_at, t + 101);
    assert_null(run.state);
    assert_null(run.output);
    assert_int_equal(run.next_step, 1);
    assert_int_equal(run.tokens_in, 9);
    aos_run_clear(&run);
    lease_owner(f, r, owner);
    assert_string_equal(owner, "<null>");
    assert_int_equal(lease_expires(f, r), -1);
    OK(f, aos_store_run_steps(tx, TENANT_A, r, &steps, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(steps[0].outcome, "continue");
    aos_step_rows_free(steps, n);
    assert_int_equal(claim_rc(f, TENANT_A, "w1", t + 10 * LEASE), AOS_DB_NOT_FOUND);

    /* APPROVAL: no approval is opened for a cancelled run. */
    run_new(f, TENANT_A, a1, r);
    claim_only(f, TENANT_A, "w1", t, r);
    OK(f, aos_store_run_cancel(tx, TENANT_A, r, "admin", &res, E));
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_APPROVAL, t + 100);
    cp.result = "{\"action\":\"x\"}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "cancelled");
    run_status_is(f, TENANT_A, r, "cancelled");
    assert_int_equal(count_approvals(f, r), 0);
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM approvals", NULL, NULL, NULL), 0);

    /* STAGE_DONE and RETRY: cancelled too (a RETRY writes no step). */
    run_new(f, TENANT_A, a1, r);
    claim_only(f, TENANT_A, "w1", t, r);
    OK(f, aos_store_run_cancel(tx, TENANT_A, r, "admin", &res, E));
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_RETRY, t + 100);
    cp.run_after = t + 200;
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "cancelled");
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "cancelled");
    assert_int_equal(run.next_step, 0);
    assert_int_equal(run.finished_at, t + 101);
    aos_run_clear(&run);
    assert_int_equal(count_steps(f, r), 0);

    /* DONE: a finished run is not cancelled after the fact. */
    run_new(f, TENANT_A, a1, r);
    claim_only(f, TENANT_A, "w1", t, r);
    OK(f, aos_store_run_cancel(tx, TENANT_A, r, "admin", &res, E));
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_DONE, t + 100);
    cp.result = "{\"done\":1}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "succeeded");
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "succeeded");
    assert_json_eq(run.output, "{\"done\":1}");
    aos_run_clear(&run);

    /* FAILED stays failed. */
    run_new(f, TENANT_A, a1, r);
    claim_only(f, TENANT_A, "w1", t, r);
    OK(f, aos_store_run_cancel(tx, TENANT_A, r, "admin", &res, E));
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_FAILED, t + 100);
    cp.error = "boom";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_string_equal(st, "failed");
}

/* ------------------------------------------------------------ budgets */

static void run_reservation(struct fx *f, const char *run, char day[AOS_DAY_LEN], int64_t *tokens, int64_t *micro)
{
    struct aos_run r;

    run_load(f, TENANT_A, run, &r);
    memcpy(day, r.reserved_day, AOS_DAY_LEN);
    *tokens = r.reserved_tokens;
    *micro = r.reserved_micro_usd;
    aos_run_clear(&r);
}

static void test_budget_no_limits(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r[AOS_ID_LEN], day[AOS_DAY_LEN], warn[128] = "x";
    struct aos_budget_limits lim;
    int64_t tok = -1, mic = -1;
    bool reserved = false;

    memset(&lim, 0, sizeof lim);
    assert_false(aos_budget_limits_any(&lim));
    lim.agent_micro_usd_month = -1; /* below 1: no limit */
    assert_false(aos_budget_limits_any(&lim));
    lim.tenant_tokens_month = 1;
    assert_true(aos_budget_limits_any(&lim));
    memset(&lim, 0, sizeof lim);

    agent_new(f, TENANT_A, "a1", a1);
    run_new(f, TENANT_A, a1, r);
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r, a1, DAY, 500, 500, &lim, &reserved, warn, sizeof warn, E));
    assert_true(reserved);
    assert_string_equal(warn, "");
    run_reservation(f, r, day, &tok, &mic);
    assert_string_equal(day, "");
    assert_int_equal(tok, 0);
    assert_int_equal(mic, 0);
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM usage", NULL, NULL, NULL), 0);
}

static void test_budget_reserve_refuse_keep_warn(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], ab[AOS_ID_LEN], r1[AOS_ID_LEN], r2[AOS_ID_LEN], r3[AOS_ID_LEN], r4[AOS_ID_LEN];
    char rb[AOS_ID_LEN], day[AOS_DAY_LEN], warn[128];
    struct aos_budget_limits lim;
    struct aos_usage u = {990, 0, 0};
    int64_t tok = 0, mic = 0;
    bool reserved = false;

    memset(&lim, 0, sizeof lim);
    lim.agent_tokens_day = 1000;
    agent_new(f, TENANT_A, "a1", a1);
    run_new(f, TENANT_A, a1, r1);
    run_new(f, TENANT_A, a1, r2);
    run_new(f, TENANT_A, a1, r3);
    run_new(f, TENANT_A, a1, r4);

    /* Fits: held on the run and in the usage row of (tenant, day, agent). */
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r1, a1, DAY, 300, 0, &lim, &reserved, warn, sizeof warn, E));
    assert_true(reserved);
    assert_string_equal(warn, "");
    run_reservation(f, r1, day, &tok, &mic);
    assert_string_equal(day, DAY);
    assert_int_equal(tok, 300);
    assert_int_equal(mic, 0);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, DAY, a1), 300);
    assert_int_equal(usage_col(f, "reserved_micro_usd", TENANT_A, DAY, a1), 0);
    assert_int_equal(usage_col(f, "tokens_in", TENANT_A, DAY, a1), 0);

    /* A run holding a reservation keeps it: not taken twice, not resized. */
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r1, a1, DAY, 900, 0, &lim, &reserved, warn, sizeof warn, E));
    assert_true(reserved);
    run_reservation(f, r1, day, &tok, &mic);
    assert_int_equal(tok, 300);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, DAY, a1), 300);

    /* 300 held + 800 > 1000: refused, nothing written, the limit named. */
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r2, a1, DAY, 800, 0, &lim, &reserved, warn, sizeof warn, E));
    assert_false(reserved);
    assert_string_equal(warn, "agent tokens_day");
    run_reservation(f, r2, day, &tok, &mic);
    assert_string_equal(day, "");
    assert_int_equal(tok, 0);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, DAY, a1), 300);

    /* 300 + 500 reaches 80%: the warning comes at the crossing ... */
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r2, a1, DAY, 500, 0, &lim, &reserved, warn, sizeof warn, E));
    assert_true(reserved);
    assert_string_equal(warn, "agent tokens_day");
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, DAY, a1), 800);
    /* ... and only there. */
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r3, a1, DAY, 100, 0, &lim, &reserved, warn, sizeof warn, E));
    assert_true(reserved);
    assert_string_equal(warn, "");
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, DAY, a1), 900);
    /* Exactly up to the limit fits; one more does not. */
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r4, a1, DAY, 101, 0, &lim, &reserved, warn, sizeof warn, E));
    assert_false(reserved);
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r4, a1, DAY, 100, 0, &lim, &reserved, warn, sizeof warn, E));
    assert_true(reserved);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, DAY, a1), 1000);

    /* Spent counts like reserved (another day, nothing held there). */
    OK(f, aos_store_usage_add(tx, TENANT_A, "2031-03-05", a1, &u, E));
    run_new(f, TENANT_A, a1, r1);
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r1, a1, "2031-03-05", 11, 0, &lim, &reserved, warn, sizeof warn,
                                   E));
    assert_false(reserved);
    assert_string_equal(warn, "agent tokens_day");
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r1, a1, "2031-03-05", 10, 0, &lim, &reserved, warn, sizeof warn,
                                   E));
    assert_true(reserved);
    assert_string_equal(warn, ""); /* 990 was past 80% already */

    /* Two limits crossing 80% at once are both named. */
    memset(&lim, 0, sizeof lim);
    lim.agent_tokens_day = 1000;
    lim.tenant_micro_usd_day = 100;
    run_new(f, TENANT_A, a1, r2);
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r2, a1, "2031-03-06", 800, 80, &lim, &reserved, warn, sizeof warn,
                                   E));
    assert_true(reserved);
    assert_non_null(strstr(warn, "agent tokens_day"));
    assert_non_null(strstr(warn, "tenant micro_usd_day"));
    assert_null(strstr(warn, "agent micro_usd_day"));
    run_reservation(f, r2, day, &tok, &mic);
    assert_string_equal(day, "2031-03-06");
    assert_int_equal(tok, 800);
    assert_int_equal(mic, 80);
    assert_int_equal(usage_col(f, "reserved_micro_usd", TENANT_A, "2031-03-06", a1), 80);

    /* Malformed and foreign. */
    run_new(f, TENANT_A, a1, r3);
    assert_int_equal(TX(f, aos_store_budget_reserve(tx, TENANT_A, r3, a1, "2031-3-6", 1, 0, &lim, &reserved, warn,
                                                    sizeof warn, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_budget_reserve(tx, TENANT_A, r3, a1, DAY, -1, 0, &lim, &reserved, warn,
                                                    sizeof warn, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_budget_reserve(tx, TENANT_A, r3, a1, DAY, 0, -1, &lim, &reserved, warn,
                                                    sizeof warn, E)),
                     AOS_DB_CONSTRAINT);
    agent_new(f, TENANT_B, "b1", ab);
    run_new(f, TENANT_B, ab, rb);
    assert_int_equal(TX(f, aos_store_budget_reserve(tx, TENANT_A, rb, a1, DAY, 1, 0, &lim, &reserved, warn,
                                                    sizeof warn, E)),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_budget_reserve(tx, TENANT_B, r3, a1, DAY, 1, 0, &lim, &reserved, warn,
                                                    sizeof warn, E)),
                     AOS_DB_NOT_FOUND);
    run_reservation(f, r3, day, &tok, &mic);
    assert_string_equal(day, "");
}

/* Each of the eight limits against its own scope's sums.  Usage already
 * booked (per year Y, on day Y-06-15 unless said):
 *   a1 Y-06-10: 10   a2 Y-06-15: 20   a1 Y-06-15: 5
 *   a1 Y-05-28: 1000 (last month)   a1 Y-07-01: 1000 (next month)
 *   tenant B's agent Y-06-15: 1000
 * so a1 has spent 5 today and 15 this month, the tenant 25 today and 35
 * this month, in tokens and in micro-USD alike. */
static const struct {
    const char *name;
    size_t off;
    bool tokens;
    int64_t spent;
} limit_cases[] = {
    {"agent tokens_day", offsetof(struct aos_budget_limits, agent_tokens_day), true, 5},
    {"agent micro_usd_day", offsetof(struct aos_budget_limits, agent_micro_usd_day), false, 5},
    {"agent tokens_month", offsetof(struct aos_budget_limits, agent_tokens_month), true, 15},
    {"agent micro_usd_month", offsetof(struct aos_budget_limits, agent_micro_usd_month), false, 15},
    {"tenant tokens_day", offsetof(struct aos_budget_limits, tenant_tokens_day), true, 25},
    {"tenant micro_usd_day", offsetof(struct aos_budget_limits, tenant_micro_usd_day), false, 25},
    {"tenant tokens_month", offsetof(struct aos_budget_limits, tenant_tokens_month), true, 35},
    {"tenant micro_usd_month", offsetof(struct aos_budget_limits, tenant_micro_usd_month), false, 35},
};

static void book(struct fx *f, const char *tenant, const char *day, const char *agent, int64_t in, int64_t out,
                 int64_t micro)
{
    struct aos_usage u = {in, out, micro};

    OK(f, aos_store_usage_add(tx, tenant, day, agent, &u, E));
}

static void test_budget_each_limit(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], a2[AOS_ID_LEN], ab[AOS_ID_LEN], r[AOS_ID_LEN], r2[AOS_ID_LEN], day[AOS_DAY_LEN];
    char d[4][AOS_DAY_LEN], warn[128];
    struct aos_budget_limits lim;
    int64_t tok = 0, mic = 0, amount;
    bool reserved = false;
    size_t i;

    agent_new(f, TENANT_A, "a1", a1);
    agent_new(f, TENANT_A, "a2", a2);
    agent_new(f, TENANT_B, "b1", ab);
    for (i = 0; i < sizeof limit_cases / sizeof limit_cases[0]; i++) {
        int year = 2031 + (int)i;

        snprintf(d[0], AOS_DAY_LEN, "%04d-06-15", year);
        snprintf(d[1], AOS_DAY_LEN, "%04d-06-10", year);
        snprintf(d[2], AOS_DAY_LEN, "%04d-05-28", year);
        snprintf(d[3], AOS_DAY_LEN, "%04d-07-01", year);
        book(f, TENANT_A, d[1], a1, 6, 4, 10);
        book(f, TENANT_A, d[0], a2, 20, 0, 20);
        book(f, TENANT_A, d[0], a1, 3, 2, 5);
        book(f, TENANT_A, d[2], a1, 1000, 0, 1000);
        book(f, TENANT_A, d[3], a1, 0, 1000, 1000);
        book(f, TENANT_B, d[0], ab, 1000, 0, 1000);

        memset(&lim, 0, sizeof lim);
        *(int64_t *)(void *)((char *)&lim + limit_cases[i].off) = 100;
        run_new(f, TENANT_A, a1, r);
        amount = 100 - limit_cases[i].spent + 1;
        OK(f, aos_store_budget_reserve(tx, TENANT_A, r, a1, d[0], limit_cases[i].tokens ? amount : 0,
                                       limit_cases[i].tokens ? 0 : amount, &lim, &reserved, warn, sizeof warn, E));
        if (reserved)
            fail_msg("%s: %" PRId64 " on top of %" PRId64 " was reserved", limit_cases[i].name, amount,
                     limit_cases[i].spent);
        assert_string_equal(warn, limit_cases[i].name);
        run_reservation(f, r, day, &tok, &mic);
        assert_string_equal(day, "");
        assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, d[0], a1), 0);
        assert_int_equal(usage_col(f, "reserved_micro_usd", TENANT_A, d[0], a1), 0);

        amount--;
        OK(f, aos_store_budget_reserve(tx, TENANT_A, r, a1, d[0], limit_cases[i].tokens ? amount : 0,
                                       limit_cases[i].tokens ? 0 : amount, &lim, &reserved, warn, sizeof warn, E));
        if (!reserved)
            fail_msg("%s: %" PRId64 " on top of %" PRId64 " was refused (%s)", limit_cases[i].name, amount,
                     limit_cases[i].spent, warn);
        assert_string_equal(warn, limit_cases[i].name); /* from below 80% to 100% */
        run_reservation(f, r, day, &tok, &mic);
        assert_string_equal(day, d[0]);
        assert_int_equal(tok, limit_cases[i].tokens ? amount : 0);
        assert_int_equal(mic, limit_cases[i].tokens ? 0 : amount);
        assert_int_equal(usage_col(f, limit_cases[i].tokens ? "reserved_tokens" : "reserved_micro_usd", TENANT_A,
                                   d[0], a1),
                         amount);

        /* The reservation now counts against the next run. */
        run_new(f, TENANT_A, a1, r2);
        OK(f, aos_store_budget_reserve(tx, TENANT_A, r2, a1, d[0], limit_cases[i].tokens ? 1 : 0,
                                       limit_cases[i].tokens ? 0 : 1, &lim, &reserved, warn, sizeof warn, E));
        if (reserved)
            fail_msg("%s: reserved past a full reservation", limit_cases[i].name);
    }
}

static void test_budget_settle_and_release(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r[AOS_ID_LEN], r2[AOS_ID_LEN], day[AOS_DAY_LEN], warn[128], st[AOS_RUN_STATUS_LEN];
    struct aos_budget_limits lim;
    struct aos_checkpoint cp;
    struct aos_run run;
    int64_t t = later(), tok = 0, mic = 0;
    bool reserved = false;
    int res = 0;

    memset(&lim, 0, sizeof lim);
    lim.agent_tokens_day = 100000;
    agent_new(f, TENANT_A, "a1", a1);
    run_new(f, TENANT_A, a1, r);
    claim_only(f, TENANT_A, "w1", t, r);

    /* Reserved before midnight, settled after: booked on the reservation's day. */
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r, a1, "2031-01-31", 300, 3000, &lim, &reserved, warn, sizeof warn,
                                   E));
    assert_true(reserved);
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_CONTINUE, t);
    cp.result = "{}";
    cp.tokens_in = 40;
    cp.tokens_out = 20;
    cp.cost_micro_usd = 500;
    assert_int_equal(cp_write(f, &cp, "2031-02-01", st), AOS_CP_OK);
    assert_int_equal(usage_col(f, "tokens_in", TENANT_A, "2031-01-31", a1), 40);
    assert_int_equal(usage_col(f, "tokens_out", TENANT_A, "2031-01-31", a1), 20);
    assert_int_equal(usage_col(f, "micro_usd", TENANT_A, "2031-01-31", a1), 500);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, "2031-01-31", a1), 0);
    assert_int_equal(usage_col(f, "reserved_micro_usd", TENANT_A, "2031-01-31", a1), 0);
    assert_int_equal(usage_col(f, "tokens_in", TENANT_A, "2031-02-01", a1), -1); /* no row */
    run_reservation(f, r, day, &tok, &mic);
    assert_string_equal(day, "");
    assert_int_equal(tok, 0);
    assert_int_equal(mic, 0);

    /* The next step reserves afresh; without a reservation, `day` is used. */
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r, a1, "2031-02-01", 300, 0, &lim, &reserved, warn, sizeof warn, E));
    assert_true(reserved);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, "2031-02-01", a1), 300);
    cp = cp_of(TENANT_A, r, "w1", a1, 1, AOS_CP_RETRY, t + 10);
    cp.tokens_in = 1;
    cp.run_after = t + 10;
    assert_int_equal(cp_write(f, &cp, "2031-02-02", st), AOS_CP_OK); /* RETRY settles too */
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, "2031-02-01", a1), 0);
    assert_int_equal(usage_col(f, "tokens_in", TENANT_A, "2031-02-01", a1), 1);
    claim_only(f, TENANT_A, "w1", t + 20, r);
    cp = cp_of(TENANT_A, r, "w1", a1, 1, AOS_CP_DONE, t + 20);
    cp.attempt = 2;
    cp.result = "{}";
    cp.tokens_out = 7;
    assert_int_equal(cp_write(f, &cp, "2031-02-02", st), AOS_CP_OK);
    assert_int_equal(usage_col(f, "tokens_out", TENANT_A, "2031-02-02", a1), 7);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, "2031-02-02", a1), 0);
    run_load(f, TENANT_A, r, &run);
    assert_int_equal(run.tokens_in, 41);
    assert_int_equal(run.tokens_out, 27);
    assert_int_equal(run.cost_micro_usd, 500);
    aos_run_clear(&run);

    /* Stopping releases the reservation. */
    run_new(f, TENANT_A, a1, r2);
    claim_only(f, TENANT_A, "w1", t, r2);
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r2, a1, "2031-04-01", 200, 20, &lim, &reserved, warn, sizeof warn,
                                   E));
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, "2031-04-01", a1), 200);
    OK(f, aos_store_run_stop(tx, TENANT_A, r2, "w1", "failed", "plugin gone", &res, E));
    assert_int_equal(res, AOS_CP_OK);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, "2031-04-01", a1), 0);
    assert_int_equal(usage_col(f, "reserved_micro_usd", TENANT_A, "2031-04-01", a1), 0);
    run_reservation(f, r2, day, &tok, &mic);
    assert_string_equal(day, "");

    /* Released to the queue: the reservation stays and the next claim reuses it. */
    run_new(f, TENANT_A, a1, r2);
    claim_only(f, TENANT_A, "w1", t, r2);
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r2, a1, "2031-04-02", 200, 0, &lim, &reserved, warn, sizeof warn,
                                   E));
    OK(f, aos_store_run_release(tx, TENANT_A, r2, "w1", &res, E));
    assert_int_equal(res, AOS_CP_OK);
    run_reservation(f, r2, day, &tok, &mic);
    assert_string_equal(day, "2031-04-02");
    assert_int_equal(tok, 200);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, "2031-04-02", a1), 200);
    claim_only(f, TENANT_A, "w2", t + 1, r2);
    OK(f, aos_store_budget_reserve(tx, TENANT_A, r2, a1, "2031-04-03", 999, 0, &lim, &reserved, warn, sizeof warn,
                                   E));
    assert_true(reserved);
    run_reservation(f, r2, day, &tok, &mic);
    assert_string_equal(day, "2031-04-02");
    assert_int_equal(tok, 200);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, "2031-04-02", a1), 200);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, "2031-04-03", a1), -1);
    /* Parked again, then cancelled: the reservation goes back. */
    OK(f, aos_store_run_release(tx, TENANT_A, r2, "w2", &res, E));
    OK(f, aos_store_run_cancel(tx, TENANT_A, r2, "admin", &res, E));
    assert_int_equal(res, AOS_RUN_CANCELLED);
    assert_int_equal(usage_col(f, "reserved_tokens", TENANT_A, "2031-04-02", a1), 0);
    run_reservation(f, r2, day, &tok, &mic);
    assert_string_equal(day, "");
    assert_int_equal(tok, 0);
}

/* ------------------------------------------------------------ stop, release, renew, cancel, resume */

/* A cancel requested while running survives a park (drain) or a takeover:
 * the next claim sees it and the engine stops the run as cancelled, with
 * no further step. */
static void test_cancel_survives_release(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r[AOS_ID_LEN];
    struct aos_claimed_run c;
    struct aos_run run;
    int64_t t = later();
    int res = 0;

    agent_new(f, TENANT_A, "a1", a1);
    run_new(f, TENANT_A, a1, r);
    claim_only(f, TENANT_A, "w1", t, r);
    OK(f, aos_store_run_cancel(tx, TENANT_A, r, "someone", &res, E));
    assert_int_equal(res, AOS_RUN_CANCEL_REQUESTED);
    OK(f, aos_store_run_release(tx, TENANT_A, r, "w1", &res, E));
    assert_int_equal(res, AOS_CP_OK);
    run_status_is(f, TENANT_A, r, "queued");
    claim_ok(f, TENANT_A, "w2", t + 1, r, &c);
    assert_true(c.run.cancel_requested);
    aos_claimed_run_clear(&c);
    OK(f, aos_store_run_stop(tx, TENANT_A, r, "w2", "cancelled", NULL, &res, E));
    assert_int_equal(res, AOS_CP_OK);
    OK(f, aos_store_run_get(tx, TENANT_A, r, &run, E));
    assert_string_equal(run.status, "cancelled");
    assert_true(run.finished_at > 0);
    assert_null(run.state);
    aos_run_clear(&run);
}

static void test_stop_release_renew(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r[AOS_ID_LEN], owner[AOS_WORKER_ID_LEN], st[AOS_RUN_STATUS_LEN];
    struct aos_checkpoint cp;
    struct aos_run run;
    int64_t t = later();
    bool renewed = true;
    int res = 0;

    agent_new(f, TENANT_A, "a1", a1);

    /* Renew: only the owner, only while running. */
    run_new(f, TENANT_A, a1, r);
    OK(f, aos_store_run_renew(tx, TENANT_A, r, "w1", t + 99999, &renewed, E));
    assert_false(renewed); /* queued */
    claim_only(f, TENANT_A, "w1", t, r);
    OK(f, aos_store_run_renew(tx, TENANT_A, r, "w1", t + 50000, &renewed, E));
    assert_true(renewed);
    assert_int_equal(lease_expires(f, r), t + 50000);
    renewed = true;
    OK(f, aos_store_run_renew(tx, TENANT_A, r, "w2", t + 70000, &renewed, E));
    assert_false(renewed);
    renewed = true;
    OK(f, aos_store_run_renew(tx, TENANT_B, r, "w1", t + 70000, &renewed, E));
    assert_false(renewed);
    assert_int_equal(lease_expires(f, r), t + 50000);
    lease_owner(f, r, owner);
    assert_string_equal(owner, "w1");

    /* Release: only the owner; back to the queue, due now. */
    OK(f, aos_store_run_release(tx, TENANT_A, r, "w2", &res, E));
    assert_int_equal(res, AOS_CP_LEASE_LOST);
    run_status_is(f, TENANT_A, r, "running");
    OK(f, aos_store_run_release(tx, TENANT_A, r, "w1", &res, E));
    assert_int_equal(res, AOS_CP_OK);
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "queued");
    assert_true(run.run_after <= aos_store_now_ms());
    assert_int_equal(run.started_at, t);
    aos_run_clear(&run);
    lease_owner(f, r, owner);
    assert_string_equal(owner, "<null>");
    assert_int_equal(lease_expires(f, r), -1);
    OK(f, aos_store_run_release(tx, TENANT_A, r, "w1", &res, E));
    assert_int_equal(res, AOS_CP_LEASE_LOST); /* not running */
    OK(f, aos_store_run_renew(tx, TENANT_A, r, "w1", t + 50000, &renewed, E));
    assert_false(renewed);

    /* Stop as budget_exceeded: not final, state kept, lease released. */
    claim_only(f, TENANT_A, "w1", t + 10, r);
    cp = cp_of(TENANT_A, r, "w1", a1, 0, AOS_CP_CONTINUE, t + 10);
    cp.result = "{\"s\":1}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    OK(f, aos_store_run_stop(tx, TENANT_A, r, "w2", "budget_exceeded", "over", &res, E));
    assert_int_equal(res, AOS_CP_LEASE_LOST);
    run_status_is(f, TENANT_A, r, "running");
    assert_int_equal(TX(f, aos_store_run_stop(tx, TENANT_A, r, "w1", "succeeded", NULL, &res, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_run_stop(tx, TENANT_A, r, "w1", "queued", NULL, &res, E)),
                     AOS_DB_CONSTRAINT);
    run_status_is(f, TENANT_A, r, "running");
    OK(f, aos_store_run_stop(tx, TENANT_A, r, "w1", "budget_exceeded", "agent tokens_day", &res, E));
    assert_int_equal(res, AOS_CP_OK);
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "budget_exceeded");
    assert_string_equal(run.error, "agent tokens_day");
    assert_json_eq(run.state, "{\"s\":1}");
    assert_int_equal(run.next_step, 1);
    assert_int_equal(run.finished_at, 0);
    aos_run_clear(&run);
    lease_owner(f, r, owner);
    assert_string_equal(owner, "<null>");
    assert_int_equal(claim_rc(f, TENANT_A, "w1", t + 10 * LEASE), AOS_DB_NOT_FOUND);
    OK(f, aos_store_run_stop(tx, TENANT_A, r, "w1", "failed", "x", &res, E));
    assert_int_equal(res, AOS_CP_LEASE_LOST); /* not running */

    /* Resumed, claimed, stopped as failed: final. */
    OK(f, aos_store_run_resume(tx, TENANT_A, r, E));
    claim_only(f, TENANT_A, "w1", t + 20, r);
    OK(f, aos_store_run_stop(tx, TENANT_A, r, "w1", "failed", "agent deleted", &res, E));
    assert_int_equal(res, AOS_CP_OK);
    run_load(f, TENANT_A, r, &run);
    assert_string_equal(run.status, "failed");
    assert_string_equal(run.error, "agent deleted");
    assert_null(run.state);
    assert_true(run.finished_at > 0);
    aos_run_clear(&run);
    assert_int_equal(lease_expires(f, r), -1);
    assert_int_equal(TX(f, aos_store_run_stop(tx, TENANT_A, "nope", "w1", "failed", "x", &res, E)),
                     AOS_DB_NOT_FOUND);
}

static void test_cancel_and_resume(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], rq[AOS_ID_LEN], rw[AOS_ID_LEN], rr[AOS_ID_LEN], rb[AOS_ID_LEN], ap[AOS_ID_LEN];
    struct aos_approval a;
    struct aos_run run;
    int64_t t = later(), before;
    int res = 0;

    agent_new(f, TENANT_A, "a1", a1);

    /* Waiting for an approval: cancelled now, its approval rejected by the canceller. */
    run_new(f, TENANT_A, a1, rw);
    park(f, TENANT_A, rw, a1, t, 0, ap);
    before = aos_store_now_ms();
    OK(f, aos_store_run_cancel(tx, TENANT_A, rw, "admin-9", &res, E));
    assert_int_equal(res, AOS_RUN_CANCELLED);
    run_load(f, TENANT_A, rw, &run);
    assert_string_equal(run.status, "cancelled");
    assert_true(run.finished_at >= before);
    aos_run_clear(&run);
    OK(f, aos_store_approval_get(tx, TENANT_A, ap, &a, E));
    assert_string_equal(a.status, "rejected");
    assert_string_equal(a.decided_by, "admin-9");
    assert_non_null(a.comment);
    assert_true(a.decided_at >= before);
    aos_approval_clear(&a);

    /* Queued: cancelled now, never claimed. */
    run_new(f, TENANT_A, a1, rq);
    OK(f, aos_store_run_cancel(tx, TENANT_A, rq, "admin", &res, E));
    assert_int_equal(res, AOS_RUN_CANCELLED);
    run_load(f, TENANT_A, rq, &run);
    assert_string_equal(run.status, "cancelled");
    assert_true(run.cancel_requested);
    assert_true(run.finished_at >= before);
    aos_run_clear(&run);
    assert_int_equal(claim_rc(f, TENANT_A, "w1", t), AOS_DB_NOT_FOUND);

    /* Final: nothing to do. */
    OK(f, aos_store_run_cancel(tx, TENANT_A, rq, "admin", &res, E));
    assert_int_equal(res, AOS_RUN_ALREADY_FINAL);
    run_status_is(f, TENANT_A, rq, "cancelled");

    /* Running: requested, the worker stops it. */
    run_new(f, TENANT_A, a1, rr);
    claim_only(f, TENANT_A, "w1", t, rr);
    OK(f, aos_store_run_cancel(tx, TENANT_A, rr, "admin", &res, E));
    assert_int_equal(res, AOS_RUN_CANCEL_REQUESTED);
    run_load(f, TENANT_A, rr, &run);
    assert_string_equal(run.status, "running");
    assert_true(run.cancel_requested);
    aos_run_clear(&run);

    /* Budget exceeded: cancelled now; resume only from budget_exceeded. */
    run_new(f, TENANT_A, a1, rb);
    assert_int_equal(TX(f, aos_store_run_resume(tx, TENANT_A, rb, E)), AOS_DB_CONSTRAINT); /* queued */
    claim_only(f, TENANT_A, "w1", t, rb);
    assert_int_equal(TX(f, aos_store_run_resume(tx, TENANT_A, rb, E)), AOS_DB_CONSTRAINT); /* running */
    OK(f, aos_store_run_stop(tx, TENANT_A, rb, "w1", "budget_exceeded", "over", &res, E));
    before = aos_store_now_ms();
    OK(f, aos_store_run_resume(tx, TENANT_A, rb, E));
    run_load(f, TENANT_A, rb, &run);
    assert_string_equal(run.status, "queued");
    assert_true(run.run_after >= before);
    assert_true(run.run_after <= aos_store_now_ms());
    aos_run_clear(&run);
    assert_int_equal(TX(f, aos_store_run_resume(tx, TENANT_A, rb, E)), AOS_DB_CONSTRAINT); /* queued again */
    claim_only(f, TENANT_A, "w1", t, rb);
    OK(f, aos_store_run_stop(tx, TENANT_A, rb, "w1", "budget_exceeded", "over", &res, E));
    OK(f, aos_store_run_cancel(tx, TENANT_A, rb, "admin", &res, E));
    assert_int_equal(res, AOS_RUN_CANCELLED);
    run_status_is(f, TENANT_A, rb, "cancelled");
    assert_int_equal(TX(f, aos_store_run_resume(tx, TENANT_A, rb, E)), AOS_DB_CONSTRAINT); /* final */
    assert_int_equal(TX(f, aos_store_run_resume(tx, TENANT_A, rw, E)), AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_run_resume(tx, TENANT_A, MISSING_ID, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_run_cancel(tx, TENANT_A, MISSING_ID, "admin", &res, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_run_cancel(tx, TENANT_A, "nope", "admin", &res, E)), AOS_DB_NOT_FOUND);
}

/* ------------------------------------------------------------ approvals */

static void test_approvals_get_list(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r[3][AOS_ID_LEN], ap[3][AOS_ID_LEN], ids[4][AOS_ID_LEN], next[AOS_CURSOR_LEN];
    char cursor[AOS_CURSOR_LEN], want[AOS_CURSOR_LEN];
    const char *lo, *hi;
    struct aos_approval a, *list = NULL;
    int64_t t = later();
    size_t n = 0;
    int res = 0;

    agent_new(f, TENANT_A, "a1", a1);
    /* Created at t+1, t+11 and t+11 (the checkpoints' finish times). */
    run_new(f, TENANT_A, a1, r[0]);
    park(f, TENANT_A, r[0], a1, t, 0, ap[0]);
    run_new(f, TENANT_A, a1, r[1]);
    park(f, TENANT_A, r[1], a1, t + 10, 0, ap[1]);
    run_new(f, TENANT_A, a1, r[2]);
    park(f, TENANT_A, r[2], a1, t + 10, t + 999999, ap[2]);
    lo = strcmp(ap[1], ap[2]) < 0 ? ap[1] : ap[2];
    hi = lo == ap[1] ? ap[2] : ap[1];

    /* Oldest first, paged. */
    n = list_approvals(f, TENANT_A, NULL, NULL, 2, ids, next);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], ap[0]);
    assert_string_equal(ids[1], lo);
    snprintf(want, sizeof want, "%" PRId64 ".%s", t + 11, lo);
    assert_string_equal(next, want);
    memcpy(cursor, next, sizeof cursor);
    n = list_approvals(f, TENANT_A, NULL, cursor, 2, ids, next);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], hi);
    assert_string_equal(next, "");
    n = list_approvals(f, TENANT_A, NULL, NULL, 3, ids, next);
    assert_int_equal(n, 3);
    assert_string_equal(next, "");

    /* Status filter. */
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap[0], "approver", true, NULL, true, &res, &a, E));
    aos_approval_clear(&a);
    n = list_approvals(f, TENANT_A, "pending", NULL, 10, ids, next);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], lo);
    assert_string_equal(ids[1], hi);
    n = list_approvals(f, TENANT_A, "approved", NULL, 10, ids, next);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], ap[0]);
    assert_int_equal(list_approvals(f, TENANT_A, "expired", NULL, 10, ids, next), 0);
    n = list_approvals(f, TENANT_A, "pending", NULL, 1, ids, next);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], lo);
    memcpy(cursor, next, sizeof cursor);
    n = list_approvals(f, TENANT_A, "pending", cursor, 1, ids, next);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], hi);
    assert_string_equal(next, "");

    /* The list carries whole rows. */
    OK(f, aos_store_approval_list(tx, TENANT_A, "approved", NULL, 10, &list, &n, next, E));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].run_id, r[0]);
    assert_string_equal(list[0].status, "approved");
    assert_string_equal(list[0].decided_by, "approver");
    assert_string_equal(list[0].requested_by, CREATOR);
    assert_int_equal(list[0].created_at, t + 1);
    assert_json_eq(list[0].proposal, "{\"action\":\"send\"}");
    aos_approvals_free(list, n);
    OK(f, aos_store_approval_get(tx, TENANT_A, ap[2], &a, E));
    assert_int_equal(a.expires_at, t + 999999);
    assert_string_equal(a.run_id, r[2]);
    aos_approval_clear(&a);

    /* Malformed pages. */
    assert_int_equal(TX(f, aos_store_approval_list(tx, TENANT_A, NULL, NULL, 0, &list, &n, next, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_approval_list(tx, TENANT_A, NULL, NULL, 1001, &list, &n, next, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_approval_list(tx, TENANT_A, NULL, "x.y", 10, &list, &n, next, E)),
                     AOS_DB_CONSTRAINT);

    /* Tenant B sees nothing, decides nothing. */
    assert_int_equal(list_approvals(f, TENANT_B, NULL, NULL, 10, ids, next), 0);
    assert_string_equal(next, "");
    assert_int_equal(list_approvals(f, TENANT_B, "pending", NULL, 10, ids, next), 0);
    assert_int_equal(TX(f, aos_store_approval_get(tx, TENANT_B, ap[1], &a, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_approval_decide(tx, TENANT_B, ap[1], "intruder", true, NULL, false, &res, &a, E)),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_approval_get(tx, TENANT_A, MISSING_ID, &a, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_approval_get(tx, TENANT_A, "nope", &a, E)), AOS_DB_NOT_FOUND);
    OK(f, aos_store_approval_get(tx, TENANT_A, ap[1], &a, E));
    assert_string_equal(a.status, "pending");
    aos_approval_clear(&a);
    run_status_is(f, TENANT_A, r[1], "waiting_approval");
}

static void test_approval_decide(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r1[AOS_ID_LEN], r2[AOS_ID_LEN], r3[AOS_ID_LEN];
    char ap1[AOS_ID_LEN], ap2[AOS_ID_LEN], ap3[AOS_ID_LEN];
    struct aos_expired_approval *exp = NULL;
    struct aos_approval a;
    struct aos_run run;
    int64_t t = later(), before;
    size_t n = 0;
    int res = 0;

    agent_new(f, TENANT_A, "a1", a1);
    /* All three wait before any is decided (a decided run is due again). */
    run_new(f, TENANT_A, a1, r1);
    park(f, TENANT_A, r1, a1, t, 0, ap1);
    run_new(f, TENANT_A, a1, r2);
    park(f, TENANT_A, r2, a1, t, 0, ap2);
    run_new(f, TENANT_A, a1, r3);
    park(f, TENANT_A, r3, a1, t, t + 100, ap3);

    /* Four eyes: the run's creator cannot approve it. */
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap1, CREATOR, true, "mine", true, &res, &a, E));
    assert_int_equal(res, AOS_DECIDE_FOUR_EYES);
    assert_string_equal(a.status, "pending");
    aos_approval_clear(&a);
    OK(f, aos_store_approval_get(tx, TENANT_A, ap1, &a, E));
    assert_string_equal(a.status, "pending");
    assert_null(a.decided_by);
    aos_approval_clear(&a);
    run_status_is(f, TENANT_A, r1, "waiting_approval");

    /* Decided by someone else: recorded, the run queued again. */
    before = aos_store_now_ms();
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap1, "approver-1", true, "fine", true, &res, &a, E));
    assert_int_equal(res, AOS_DECIDED);
    assert_string_equal(a.id, ap1);
    assert_string_equal(a.status, "approved");
    assert_string_equal(a.decided_by, "approver-1");
    assert_string_equal(a.comment, "fine");
    assert_true(a.decided_at >= before);
    aos_approval_clear(&a);
    run_load(f, TENANT_A, r1, &run);
    assert_string_equal(run.status, "queued");
    assert_true(run.run_after >= before);
    assert_true(run.run_after <= aos_store_now_ms());
    assert_int_equal(run.next_step, 1);
    aos_run_clear(&run);

    /* The same decision again (a retried request): nothing changes. */
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap1, "approver-2", true, "again", true, &res, &a, E));
    assert_int_equal(res, AOS_DECIDED_SAME);
    assert_string_equal(a.status, "approved");
    assert_string_equal(a.decided_by, "approver-1");
    assert_string_equal(a.comment, "fine");
    aos_approval_clear(&a);
    /* The other decision: refused. */
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap1, "approver-2", false, "no", true, &res, &a, E));
    assert_int_equal(res, AOS_DECIDED_OTHER);
    assert_string_equal(a.status, "approved");
    aos_approval_clear(&a);
    OK(f, aos_store_approval_get(tx, TENANT_A, ap1, &a, E));
    assert_string_equal(a.decided_by, "approver-1");
    aos_approval_clear(&a);

    /* Four eyes off: the creator may decide. */
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap2, CREATOR, false, NULL, false, &res, &a, E));
    assert_int_equal(res, AOS_DECIDED);
    assert_string_equal(a.status, "rejected");
    assert_string_equal(a.decided_by, CREATOR);
    assert_null(a.comment);
    aos_approval_clear(&a);
    run_status_is(f, TENANT_A, r2, "queued");

    /* Expired: any decision is the other one. */
    OK(f, aos_store_approvals_expire(tx, t + 101, 10, &exp, &n, E));
    assert_int_equal(n, 1);
    free(exp);
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap3, "approver-1", true, NULL, true, &res, &a, E));
    assert_int_equal(res, AOS_DECIDED_OTHER);
    assert_string_equal(a.status, "expired");
    aos_approval_clear(&a);
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap3, "approver-1", false, NULL, true, &res, &a, E));
    assert_int_equal(res, AOS_DECIDED_OTHER);
    aos_approval_clear(&a);
    assert_int_equal(TX(f, aos_store_approval_decide(tx, TENANT_A, MISSING_ID, "x", true, NULL, true, &res, &a, E)),
                     AOS_DB_NOT_FOUND);
}

static void test_approvals_expire(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], b1[AOS_ID_LEN], r[6][AOS_ID_LEN], ap[6][AOS_ID_LEN], rb[AOS_ID_LEN], apb[AOS_ID_LEN];
    struct aos_expired_approval *exp = NULL;
    struct aos_approval a;
    struct aos_run run;
    int64_t t = later();
    static const int64_t expires_in[6] = {100, 200, 300, 0, 50, 0};
    size_t n = 0, i;
    int res = 0;

    agent_new(f, TENANT_A, "a1", a1);
    agent_new(f, TENANT_B, "b1", b1);
    for (i = 0; i < 6; i++) {
        run_new(f, TENANT_A, a1, r[i]);
        park(f, TENANT_A, r[i], a1, t, expires_in[i] > 0 ? t + expires_in[i] : 0, ap[i]);
    }
    run_new(f, TENANT_B, b1, rb);
    park(f, TENANT_B, rb, b1, t, t + 150, apb);
    /* ap[4] is decided before its time; ap[5] is rejected by a cancel. */
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap[4], "approver", true, NULL, true, &res, &a, E));
    assert_int_equal(res, AOS_DECIDED);
    aos_approval_clear(&a);
    OK(f, aos_store_run_cancel(tx, TENANT_A, r[5], "admin", &res, E));

    OK(f, aos_store_approvals_expire(tx, t + 99, 10, &exp, &n, E));
    assert_int_equal(n, 0);
    free(exp);

    /* Soonest first, across tenants, up to the limit. */
    OK(f, aos_store_approvals_expire(tx, t + 201, 2, &exp, &n, E));
    assert_int_equal(n, 2);
    assert_string_equal(exp[0].tenant_id, TENANT_A);
    assert_string_equal(exp[0].run_id, r[0]);
    assert_string_equal(exp[0].approval_id, ap[0]);
    assert_string_equal(exp[1].tenant_id, TENANT_B);
    assert_string_equal(exp[1].run_id, rb);
    assert_string_equal(exp[1].approval_id, apb);
    free(exp);
    OK(f, aos_store_approval_get(tx, TENANT_A, ap[0], &a, E));
    assert_string_equal(a.status, "expired");
    assert_null(a.decided_by);
    assert_int_equal(a.decided_at, t + 201);
    aos_approval_clear(&a);
    run_load(f, TENANT_A, r[0], &run);
    assert_string_equal(run.status, "queued");
    assert_int_equal(run.run_after, t + 201);
    aos_run_clear(&run);
    run_status_is(f, TENANT_B, rb, "queued");
    run_status_is(f, TENANT_A, r[1], "waiting_approval");

    OK(f, aos_store_approvals_expire(tx, t + 201, 10, &exp, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(exp[0].approval_id, ap[1]);
    free(exp);
    OK(f, aos_store_approvals_expire(tx, t + 201, 10, &exp, &n, E));
    assert_int_equal(n, 0);
    free(exp);
    run_status_is(f, TENANT_A, r[1], "queued");

    /* Not yet due, never due, decided: untouched. */
    OK(f, aos_store_approval_get(tx, TENANT_A, ap[2], &a, E));
    assert_string_equal(a.status, "pending");
    aos_approval_clear(&a);
    run_status_is(f, TENANT_A, r[2], "waiting_approval");
    OK(f, aos_store_approval_get(tx, TENANT_A, ap[4], &a, E));
    assert_string_equal(a.status, "approved");
    assert_string_equal(a.decided_by, "approver");
    aos_approval_clear(&a);
    OK(f, aos_store_approval_get(tx, TENANT_A, ap[5], &a, E));
    assert_string_equal(a.status, "rejected");
    aos_approval_clear(&a);
    run_status_is(f, TENANT_A, r[5], "cancelled");

    OK(f, aos_store_approvals_expire(tx, t + 100000000, 10, &exp, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(exp[0].approval_id, ap[2]);
    free(exp);
    OK(f, aos_store_approval_get(tx, TENANT_A, ap[3], &a, E));
    assert_string_equal(a.status, "pending");
    assert_int_equal(a.expires_at, 0);
    aos_approval_clear(&a);
    run_status_is(f, TENANT_A, r[3], "waiting_approval");
}

/* ------------------------------------------------------------ pruning */

static void test_runs_prune(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], b1[AOS_ID_LEN], ap[AOS_ID_LEN], st[AOS_RUN_STATUS_LEN];
    char ra[AOS_ID_LEN], rb[AOS_ID_LEN], rc[AOS_ID_LEN], rd[AOS_ID_LEN], re[AOS_ID_LEN], rf[AOS_ID_LEN];
    char rg[AOS_ID_LEN], rh[AOS_ID_LEN];
    struct aos_claimed_run c;
    struct aos_checkpoint cp;
    struct aos_approval a;
    struct aos_run run;
    int64_t t = later();
    size_t deleted = 99;
    int res = 0;

    agent_new(f, TENANT_A, "a1", a1);
    agent_new(f, TENANT_B, "b1", b1);

    /* ra: an approval, a step after it, succeeded; finished at 1001. */
    run_new(f, TENANT_A, a1, ra);
    park(f, TENANT_A, ra, a1, t, 0, ap);
    OK(f, aos_store_approval_decide(tx, TENANT_A, ap, "approver", true, NULL, true, &res, &a, E));
    aos_approval_clear(&a);
    claim_ok(f, TENANT_A, "w1", t, ra, &c);
    aos_claimed_run_clear(&c);
    cp = cp_of(TENANT_A, ra, "w1", a1, 1, AOS_CP_DONE, 1000);
    cp.result = "{}";
    assert_int_equal(cp_write(f, &cp, DAY, st), AOS_CP_OK);
    assert_int_equal(count_steps(f, ra), 2);
    assert_int_equal(count_approvals(f, ra), 1);
    /* rb failed at 2001, rc succeeded at 3001, rh (tenant B) at 1501. */
    run_new(f, TENANT_A, a1, rb);
    finish(f, TENANT_A, rb, a1, t, AOS_CP_FAILED);
    set_int(f, "UPDATE runs SET finished_at = $1 WHERE id = $2", 2001, rb);
    run_new(f, TENANT_A, a1, rc);
    finish(f, TENANT_A, rc, a1, t, AOS_CP_DONE);
    set_int(f, "UPDATE runs SET finished_at = $1 WHERE id = $2", 3001, rc);
    run_new(f, TENANT_B, b1, rh);
    finish(f, TENANT_B, rh, b1, t, AOS_CP_DONE);
    set_int(f, "UPDATE runs SET finished_at = $1 WHERE id = $2", 1501, rh);
    /* Unfinished: running (re), budget_exceeded (rf), queued (rd); rg cancelled now. */
    run_new(f, TENANT_A, a1, re);
    claim_only(f, TENANT_A, "w1", t, re);
    run_new(f, TENANT_A, a1, rf);
    claim_only(f, TENANT_A, "w1", t, rf);
    OK(f, aos_store_run_stop(tx, TENANT_A, rf, "w1", "budget_exceeded", "over", &res, E));
    run_new(f, TENANT_A, a1, rg);
    OK(f, aos_store_run_cancel(tx, TENANT_A, rg, "admin", &res, E));
    run_new(f, TENANT_A, a1, rd);

    /* Strictly before the cutoff. */
    OK(f, aos_store_runs_prune(tx, 1001, 10, &deleted, E));
    assert_int_equal(deleted, 0);
    /* Oldest first, up to the limit, across tenants; steps and approvals go along. */
    OK(f, aos_store_runs_prune(tx, 2002, 2, &deleted, E));
    assert_int_equal(deleted, 2);
    assert_int_equal(TX(f, aos_store_run_get(tx, TENANT_A, ra, &run, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_run_get(tx, TENANT_B, rh, &run, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(count_steps(f, ra), 0);
    assert_int_equal(count_approvals(f, ra), 0);
    assert_int_equal(TX(f, aos_store_approval_get(tx, TENANT_A, ap, &a, E)), AOS_DB_NOT_FOUND);
    run_status_is(f, TENANT_A, rb, "failed");
    OK(f, aos_store_runs_prune(tx, 2002, 10, &deleted, E));
    assert_int_equal(deleted, 1);
    assert_int_equal(TX(f, aos_store_run_get(tx, TENANT_A, rb, &run, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(count_steps(f, rb), 0);
    OK(f, aos_store_runs_prune(tx, 3002, 10, &deleted, E));
    assert_int_equal(deleted, 1);
    /* Far in the future: only the cancelled run is left to go. */
    OK(f, aos_store_runs_prune(tx, t + 100000000, 10, &deleted, E));
    assert_int_equal(deleted, 1);
    assert_int_equal(TX(f, aos_store_run_get(tx, TENANT_A, rg, &run, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM runs", NULL, NULL, NULL), 3);
    run_status_is(f, TENANT_A, rd, "queued");
    run_status_is(f, TENANT_A, re, "running");
    run_status_is(f, TENANT_A, rf, "budget_exceeded");
    OK(f, aos_store_runs_prune(tx, t + 100000000, 10, &deleted, E));
    assert_int_equal(deleted, 0);
}

/* Several runs of one tenant claimed at once: expired leases first, then
 * the oldest queued runs, each leased to its own owner in claim order. */
static void test_claim_many(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], r[5][AOS_ID_LEN], owner[AOS_WORKER_ID_LEN];
    const char *owners[] = {"m1", "m2", "m3", "m4"};
    struct aos_claimed_run c[4];
    int64_t t = later(), t2 = t + LEASE + 1;
    size_t n = 99;

    agent_new(f, TENANT_A, "a1", a1);
    OK(f, aos_store_run_claim_many(tx, TENANT_A, owners, 3, t, LEASE, c, &n, E));
    assert_int_equal(n, 0);
    for (int i = 0; i < 5; i++) {
        run_new(f, TENANT_A, a1, r[i]);
        set_int(f, "UPDATE runs SET run_after = $1 WHERE id = $2", t - 1000 + i, r[i]);
    }
    /* r0 is claimed and its lease then expires. */
    claim_only(f, TENANT_A, "w0", t, r[0]);
    OK(f, aos_store_run_claim_many(tx, TENANT_B, owners, 3, t2, LEASE, c, &n, E));
    assert_int_equal(n, 0); /* another tenant's queue is its own */

    OK(f, aos_store_run_claim_many(tx, TENANT_A, owners, 3, t2, LEASE, c, &n, E));
    assert_int_equal(n, 3);
    assert_string_equal(c[0].run.id, r[0]);
    assert_true(c[0].taken_over);
    assert_int_equal(c[0].run.attempt, 1);
    assert_int_equal(c[0].run.started_at, t);
    for (size_t i = 1; i < 3; i++) {
        assert_string_equal(c[i].run.id, r[i]);
        assert_false(c[i].taken_over);
        assert_int_equal(c[i].run.attempt, 0);
        assert_int_equal(c[i].run.started_at, t2);
    }
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(c[i].run.status, "running");
        assert_string_equal(c[i].agent.id, a1);
        assert_string_equal(c[i].agent.name, "a1");
        assert_string_equal(c[i].agent.plugin, "agent-echo");
        assert_int_equal(c[i].stages, 1);
        assert_false(c[i].agent_deleted);
        lease_owner(f, r[i], owner);
        assert_string_equal(owner, owners[i]);
        assert_int_equal(lease_expires(f, r[i]), t2 + LEASE);
        aos_claimed_run_clear(&c[i]);
    }
    /* Fewer left than asked for: the rest, then none. */
    OK(f, aos_store_run_claim_many(tx, TENANT_A, owners, 4, t2, LEASE, c, &n, E));
    assert_int_equal(n, 2);
    assert_string_equal(c[0].run.id, r[3]);
    assert_string_equal(c[1].run.id, r[4]);
    lease_owner(f, r[4], owner);
    assert_string_equal(owner, "m2");
    aos_claimed_run_clear(&c[0]);
    aos_claimed_run_clear(&c[1]);
    OK(f, aos_store_run_claim_many(tx, TENANT_A, owners, 4, t2, LEASE, c, &n, E));
    assert_int_equal(n, 0);
}

/* Every kind of checkpoint in one aos_store_checkpoints call (on
 * PostgreSQL the batched statements, on SQLite one after the other): the
 * same outcome as aos_store_checkpoint one by one. */
static void test_checkpoints_batch(void **state)
{
    struct fx *f = fx_get(state);
    enum { N = 9 };
    char a1[AOS_ID_LEN], a2[AOS_ID_LEN], wf[AOS_ID_LEN], r[N][AOS_ID_LEN], owner[AOS_WORKER_ID_LEN];
    char st[N][AOS_RUN_STATUS_LEN], buf[64];
    struct aos_checkpoint cp[N], *cps[N];
    const char *days[N];
    struct aos_step_row *steps = NULL;
    struct aos_usage u;
    struct aos_run run;
    int64_t t = later();
    int results[N];
    size_t n = 0;
    int res = 0;

    agent_new(f, TENANT_A, "a1", a1);
    agent_new(f, TENANT_A, "a2", a2);
    workflow_new(f, TENANT_A, "wf", a1, a2, wf);
    for (int i = 0; i < N; i++) {
        if (i == 8)
            OK(f, aos_store_run_create(tx, TENANT_A, NULL, wf, CREATOR, "{\"q\":1}", r[i], E));
        else
            run_new(f, TENANT_A, a1, r[i]);
        claim_only(f, TENANT_A, "w1", t, r[i]);
        cp[i] = cp_of(TENANT_A, r[i], "w1", a1, 0, AOS_CP_CONTINUE, t + 100);
        cps[i] = &cp[i];
        days[i] = DAY;
    }
    OK(f, aos_store_run_cancel(tx, TENANT_A, r[5], "admin", &res, E));
    assert_int_equal(res, AOS_RUN_CANCEL_REQUESTED);
    cp[0].result = "{\"s\":1}";
    cp[0].tokens_in = 10;
    cp[0].lease_expires = t + 90000;
    cp[1].kind = AOS_CP_DONE;
    cp[1].result = "{\"a\":1}";
    cp[1].tokens_in = 5;
    cp[1].cost_micro_usd = 2;
    cp[2].kind = AOS_CP_FAILED;
    cp[2].error = "boom \"quoted\"\n\\ and \t more";
    cp[3].kind = AOS_CP_RETRY;
    cp[3].error = "later";
    cp[3].run_after = t + 5000;
    cp[3].tokens_out = 3;
    cp[4].kind = AOS_CP_APPROVAL;
    cp[4].result = "{\"act\":\"x\"}";
    cp[4].approval_expires = t + 1000;
    cp[5].result = "{\"s\":5}"; /* cancel requested: ends cancelled */
    cp[6].worker_id = "other";  /* not the owner: lease lost */
    cp[7].kind = AOS_CP_APPROVAL;
    cp[7].result = "{\"act\":\"y\"}";
    cp[7].auto_decision = "approved";
    cp[7].autonomy = "autonomous";
    cp[8].kind = AOS_CP_STAGE_DONE;
    cp[8].result = "{\"o\":8}";
    OK(f, aos_store_checkpoints(tx, cps, days, N, results, st, E));

    static const char *const want[N] = {"running", "succeeded", "failed", "queued", "waiting_approval",
                                        "cancelled", "", "queued", "queued"};
    for (int i = 0; i < N; i++) {
        assert_int_equal(results[i], i == 6 ? AOS_CP_LEASE_LOST : AOS_CP_OK);
        assert_string_equal(st[i], want[i]);
        run_status_is(f, TENANT_A, r[i], i == 6 ? "running" : want[i]);
    }
    run_load(f, TENANT_A, r[0], &run);
    assert_int_equal(run.next_step, 1);
    assert_json_eq(run.state, "{\"s\":1}");
    assert_int_equal(run.tokens_in, 10);
    assert_int_equal(run.updated_at, t + 101);
    aos_run_clear(&run);
    lease_owner(f, r[0], owner);
    assert_string_equal(owner, "w1");
    assert_int_equal(lease_expires(f, r[0]), t + 90000);

    run_load(f, TENANT_A, r[1], &run);
    assert_json_eq(run.output, "{\"a\":1}");
    assert_null(run.state);
    assert_int_equal(run.next_step, 1);
    assert_int_equal(run.finished_at, t + 101);
    aos_run_clear(&run);
    assert_int_equal(lease_expires(f, r[1]), -1);

    run_load(f, TENANT_A, r[2], &run);
    assert_string_equal(run.error, cp[2].error);
    assert_null(run.output);
    assert_int_equal(run.finished_at, t + 101);
    aos_run_clear(&run);
    OK(f, aos_store_run_steps(tx, TENANT_A, r[2], &steps, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(steps[0].outcome, "failed");
    assert_string_equal(steps[0].error, cp[2].error);
    aos_step_rows_free(steps, n);

    run_load(f, TENANT_A, r[3], &run);
    assert_int_equal(run.next_step, 0);
    assert_int_equal(run.attempt, 1);
    assert_int_equal(run.run_after, t + 5000);
    assert_int_equal(run.tokens_out, 3);
    aos_run_clear(&run);
    assert_int_equal(count_steps(f, r[3]), 0);
    lease_owner(f, r[3], owner);
    assert_string_equal(owner, "<null>");

    run_load(f, TENANT_A, r[4], &run);
    assert_int_equal(run.next_step, 1);
    aos_run_clear(&run);
    assert_int_equal(count_approvals(f, r[4]), 1);
    q_text(f, buf, sizeof buf, "SELECT status FROM approvals WHERE id = $1", cp[4].approval_id, NULL, NULL);
    assert_string_equal(buf, "pending");
    assert_int_equal(lease_expires(f, r[4]), -1);

    run_load(f, TENANT_A, r[5], &run);
    assert_int_equal(run.next_step, 1);
    assert_null(run.state);
    assert_int_equal(run.finished_at, t + 101);
    aos_run_clear(&run);
    assert_int_equal(count_steps(f, r[5]), 1);

    run_load(f, TENANT_A, r[6], &run);
    assert_int_equal(run.next_step, 0);
    aos_run_clear(&run);
    assert_int_equal(count_steps(f, r[6]), 0);
    lease_owner(f, r[6], owner);
    assert_string_equal(owner, "w1");

    run_load(f, TENANT_A, r[7], &run);
    assert_int_equal(run.next_step, 1);
    assert_int_equal(run.run_after, t + 101);
    aos_run_clear(&run);
    q_text(f, buf, sizeof buf, "SELECT status FROM approvals WHERE id = $1", cp[7].approval_id, NULL, NULL);
    assert_string_equal(buf, "approved");

    run_load(f, TENANT_A, r[8], &run);
    assert_int_equal(run.stage, 1);
    assert_int_equal(run.next_step, 1);
    assert_json_eq(run.output, "{\"o\":8}");
    assert_null(run.state);
    assert_int_equal(run.run_after, t + 101);
    aos_run_clear(&run);

    /* Usage summed over the batch, on `day`. */
    OK(f, aos_store_usage_total(tx, TENANT_A, a1, DAY, DAY, &u, E));
    assert_int_equal(u.tokens_in, 15);
    assert_int_equal(u.tokens_out, 3);
    assert_int_equal(u.micro_usd, 2);

    /* A malformed checkpoint fails the call, and nothing of it is written. */
    cp[0] = cp_of(TENANT_A, r[0], "w1", a1, 1, AOS_CP_CONTINUE, t + 200);
    cp[1] = cp_of(TENANT_A, r[0], "w1", a1, 1, AOS_CP_CONTINUE, t + 200);
    cp[1].attempt = 0;
    assert_int_equal(TX(f, aos_store_checkpoints(tx, cps, days, 2, results, st, E)), AOS_DB_CONSTRAINT);
    assert_int_equal(count_steps(f, r[0]), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TESTS(test_create_agent_run, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_create_workflow_run, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_create_refusals, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_list_paging_filters_scoping, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_claim_and_takeover, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_claim_order_and_run_after, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_ready_tenants, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_claim_context_decisions, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_claim_context_workflow_and_deleted, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_checkpoint_continue_done, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_checkpoint_approval, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_checkpoint_failed_retry, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_checkpoint_lease_lost, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_checkpoint_cancel_requested, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_budget_no_limits, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_budget_reserve_refuse_keep_warn, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_budget_each_limit, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_budget_settle_and_release, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_stop_release_renew, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_cancel_survives_release, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_cancel_and_resume, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_approvals_get_list, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_approval_decide, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_approvals_expire, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_runs_prune, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_claim_many, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_checkpoints_batch, fx_setup_two_tenants, fx_teardown),
    };

    return FX_RUN("runs_store", tests);
}
