/*
 * Workflows in the store (core/store/workflows.c) on SQLite always and on
 * PostgreSQL when AOS_TEST_PGSQL is set, each test in a private, freshly
 * migrated database with the tenants acme (A) and globex (B)
 * (store_fixture.h).
 */
#include "config.h"

/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/ops.h"
#include "store/store.h"
#include "store/workflows.h"

/* err, E, tx, TX(), OK() and the assert_ helpers: see store_fixture.h. */
#define FX_STORE_CALLS
#include "store_fixture.h"

#define TENANT_A FX_TENANT_A
#define TENANT_B FX_TENANT_B
#define MISSING_ID "deadbeef-dead-4eef-8eef-deadbeefdead"

/* A live agent of the tenant named `name`; its id into id. */
static void agent(struct fx *f, const char *tenant, const char *name, char id[AOS_ID_LEN])
{
    struct aos_agent_spec s;

    aos_agent_spec_init(&s);
    s.name = name;
    s.plugin = "agent-echo";
    OK(f, aos_store_agent_create(tx, tenant, &s, id, E));
}

static struct aos_workflow_spec spec_of(const char *name, const struct aos_workflow_step *steps, size_t n)
{
    struct aos_workflow_spec s;

    memset(&s, 0, sizeof(s));
    s.name = name;
    s.steps = steps;
    s.nsteps = n;
    return s;
}

static void step_set(struct aos_workflow_step *s, const char *id)
{
    snprintf(s->agent_id, AOS_ID_LEN, "%s", id);
}

/* The stored definition document of a workflow (any row, deleted too). */
static void assert_definition(struct fx *f, const char *id, const char *want)
{
    struct aos_store_tx *rtx = NULL;
    struct aos_db_result *res = NULL;

    assert_int_equal(aos_store_begin(f->store, false, &rtx, E), AOS_DB_OK);
    struct aos_db_param p[] = {AOS_DB_P_TEXT(id)};
    assert_int_equal(aos_store_exec(rtx, "SELECT definition FROM workflows WHERE id = $1", p, 1, &res, E),
                     AOS_DB_OK);
    assert_int_equal(aos_db_result_rows(res), 1);
    assert_json_eq(aos_db_result_text(res, 0, 0), want);
    aos_db_result_free(res);
    aos_store_rollback(rtx);
}

static void upper(const char *in, char out[AOS_ID_LEN])
{
    for (size_t i = 0; i < AOS_ID_LEN; i++)
        out[i] = (char)((in[i] >= 'a' && in[i] <= 'f') ? in[i] - 'a' + 'A' : in[i]);
}

/* ---------------------------------------------------------------- tests */

static void test_create_get(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], a2[AOS_ID_LEN], a2u[AOS_ID_LEN], id[AOS_ID_LEN], id2[AOS_ID_LEN], want[400];
    struct aos_workflow_step steps[3];
    struct aos_workflow w;
    size_t bad = 99;

    agent(f, TENANT_A, "alpha", a1);
    agent(f, TENANT_A, "beta", a2);
    upper(a2, a2u);
    /* Names and ids (any case) resolve to ids, in order; an agent may
     * appear twice. */
    const char *refs[] = {"alpha", a2u, a1};
    OK(f, aos_store_workflow_resolve_steps(tx, TENANT_A, refs, 3, steps, &bad, E));
    assert_string_equal(steps[0].agent_id, a1);
    assert_string_equal(steps[1].agent_id, a2);
    assert_string_equal(steps[2].agent_id, a1);

    struct aos_workflow_spec s = spec_of("pipeline", steps, 3);
    s.description = "summarise, then \"review\" / sign";
    s.created_by = "user-1";
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E));
    OK(f, aos_store_workflow_get(tx, TENANT_A, id, &w, E));
    assert_string_equal(w.id, id);
    assert_string_equal(w.tenant_id, TENANT_A);
    assert_string_equal(w.name, "pipeline");
    assert_string_equal(w.description, "summarise, then \"review\" / sign");
    assert_int_equal(w.nsteps, 3);
    assert_string_equal(w.steps[0].agent_id, a1);
    assert_string_equal(w.steps[1].agent_id, a2);
    assert_string_equal(w.steps[2].agent_id, a1);
    assert_string_equal(w.created_by, "user-1");
    assert_true(w.created_at > 0);
    assert_int_equal(w.updated_at, w.created_at);
    aos_workflow_clear(&w);
    snprintf(want, sizeof(want),
             "{\"steps\":[{\"agent\":\"%s\"},{\"agent\":\"%s\"},{\"agent\":\"%s\"}],"
             "\"description\":\"summarise, then \\\"review\\\" / sign\"}",
             a1, a2, a1);
    assert_definition(f, id, want);

    /* Without a description: none stored, none read. */
    s = spec_of("single", steps, 1);
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id2, E));
    OK(f, aos_store_workflow_get_by_name(tx, TENANT_A, "single", &w, E));
    assert_string_equal(w.id, id2);
    assert_null(w.description);
    assert_null(w.created_by);
    assert_int_equal(w.nsteps, 1);
    aos_workflow_clear(&w);
    snprintf(want, sizeof(want), "{\"steps\":[{\"agent\":\"%s\"}]}", a1);
    assert_definition(f, id2, want);

    /* Steps given in upper case are stored canonical. */
    step_set(&steps[0], a2u);
    s = spec_of("upper", steps, 1);
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id2, E));
    OK(f, aos_store_workflow_get(tx, TENANT_A, id2, &w, E));
    assert_string_equal(w.steps[0].agent_id, a2);
    aos_workflow_clear(&w);

    /* An upper-case workflow id is the same workflow. */
    upper(id, id2);
    OK(f, aos_store_workflow_get(tx, TENANT_A, id2, &w, E));
    assert_string_equal(w.id, id);
    aos_workflow_clear(&w);

    assert_int_equal(TX(f, aos_store_workflow_get(tx, TENANT_A, MISSING_ID, &w, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_workflow_get(tx, TENANT_A, "nope", &w, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_workflow_get_by_name(tx, TENANT_A, "nope", &w, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_workflow_get_by_name(tx, TENANT_A, "", &w, E)), AOS_DB_NOT_FOUND);
    assert_null(w.name);
}

static void test_resolve(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], a2[AOS_ID_LEN], b1[AOS_ID_LEN], dead[AOS_ID_LEN], tricky[AOS_ID_LEN];
    struct aos_workflow_step steps[AOS_WORKFLOW_STEPS_MAX + 1];
    const char *refs[AOS_WORKFLOW_STEPS_MAX + 1];
    size_t bad = 99, i;

    agent(f, TENANT_A, "alpha", a1);
    agent(f, TENANT_B, "foreign", b1);
    agent(f, TENANT_A, "gone", dead);
    OK(f, aos_store_agent_delete(tx, TENANT_A, dead, E));
    /* An agent whose NAME is another agent's id: the id wins. */
    agent(f, TENANT_A, a1, a2);
    const char *byid[] = {a1};
    OK(f, aos_store_workflow_resolve_steps(tx, TENANT_A, byid, 1, steps, NULL, E));
    assert_string_equal(steps[0].agent_id, a1);
    /* A UUID-shaped name that is nobody's id resolves by name. */
    aos_store_id_new(tricky);
    agent(f, TENANT_A, tricky, a2);
    const char *byname[] = {tricky};
    OK(f, aos_store_workflow_resolve_steps(tx, TENANT_A, byname, 1, steps, NULL, E));
    assert_string_equal(steps[0].agent_id, a2);

    /* Unknown, deleted, another tenant's (by id and by name): NOT_FOUND
     * naming the step, 1-based in the message. */
    const char *unknown[] = {"alpha", "nobody"};
    assert_int_equal(TX(f, aos_store_workflow_resolve_steps(tx, TENANT_A, unknown, 2, steps, &bad, E)),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(bad, 1);
    assert_non_null(strstr(err, "step 2"));
    assert_null(strstr(err, "nobody"));
    const char *deleted[] = {dead, "alpha", "alpha"};
    bad = 99;
    assert_int_equal(TX(f, aos_store_workflow_resolve_steps(tx, TENANT_A, deleted, 3, steps, &bad, E)),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(bad, 0);
    const char *gone_name[] = {"gone"};
    assert_int_equal(TX(f, aos_store_workflow_resolve_steps(tx, TENANT_A, gone_name, 1, steps, &bad, E)),
                     AOS_DB_NOT_FOUND);
    const char *foreign[] = {"alpha", "alpha", b1};
    assert_int_equal(TX(f, aos_store_workflow_resolve_steps(tx, TENANT_A, foreign, 3, steps, &bad, E)),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(bad, 2);
    const char *foreign_name[] = {"foreign"};
    assert_int_equal(TX(f, aos_store_workflow_resolve_steps(tx, TENANT_A, foreign_name, 1, steps, &bad, E)),
                     AOS_DB_NOT_FOUND);
    /* ...which B itself resolves. */
    OK(f, aos_store_workflow_resolve_steps(tx, TENANT_B, foreign_name, 1, steps, NULL, E));
    assert_string_equal(steps[0].agent_id, b1);

    /* Shapes: 1..32 refs, none NULL or empty. */
    for (i = 0; i <= AOS_WORKFLOW_STEPS_MAX; i++)
        refs[i] = "alpha";
    OK(f, aos_store_workflow_resolve_steps(tx, TENANT_A, refs, AOS_WORKFLOW_STEPS_MAX, steps, NULL, E));
    assert_int_equal(TX(f, aos_store_workflow_resolve_steps(tx, TENANT_A, refs, AOS_WORKFLOW_STEPS_MAX + 1,
                                                            steps, &bad, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_workflow_resolve_steps(tx, TENANT_A, refs, 0, steps, &bad, E)),
                     AOS_DB_CONSTRAINT);
    refs[4] = "";
    assert_int_equal(TX(f, aos_store_workflow_resolve_steps(tx, TENANT_A, refs, 6, steps, &bad, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(bad, 4);
    refs[4] = NULL;
    assert_int_equal(TX(f, aos_store_workflow_resolve_steps(tx, TENANT_A, refs, 6, steps, &bad, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_workflow_resolve_steps(tx, "nope", byid, 1, steps, &bad, E)),
                     AOS_DB_NOT_FOUND);
}

static void test_invalid(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], b1[AOS_ID_LEN], dead[AOS_ID_LEN], id[AOS_ID_LEN];
    char longtext[2 * AOS_WORKFLOW_DESCRIPTION_MAX + 2];
    struct aos_workflow_step steps[AOS_WORKFLOW_STEPS_MAX + 1];
    struct aos_workflow_spec s;
    size_t i;

    agent(f, TENANT_A, "alpha", a1);
    agent(f, TENANT_B, "foreign", b1);
    agent(f, TENANT_A, "gone", dead);
    OK(f, aos_store_agent_delete(tx, TENANT_A, dead, E));
    for (i = 0; i <= AOS_WORKFLOW_STEPS_MAX; i++)
        step_set(&steps[i], a1);

    s = spec_of("", steps, 1);
    assert_int_equal(TX(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s = spec_of(NULL, steps, 1);
    assert_int_equal(TX(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    /* 100 two-byte characters fit in a name, 101 do not. */
    for (i = 0; i < AOS_WORKFLOW_NAME_MAX; i++) {
        longtext[2 * i] = (char)0xc3;
        longtext[2 * i + 1] = (char)0xa9;
    }
    longtext[2 * AOS_WORKFLOW_NAME_MAX] = '\0';
    s = spec_of(longtext, steps, 1);
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E));
    longtext[2 * AOS_WORKFLOW_NAME_MAX] = 'x';
    longtext[2 * AOS_WORKFLOW_NAME_MAX + 1] = '\0';
    s = spec_of(longtext, steps, 1);
    assert_int_equal(TX(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    /* Descriptions: up to 1000 characters. */
    for (i = 0; i < AOS_WORKFLOW_DESCRIPTION_MAX; i++) {
        longtext[2 * i] = (char)0xc3;
        longtext[2 * i + 1] = (char)0xa9;
    }
    longtext[2 * AOS_WORKFLOW_DESCRIPTION_MAX] = '\0';
    s = spec_of("described", steps, 1);
    s.description = longtext;
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E));
    longtext[2 * AOS_WORKFLOW_DESCRIPTION_MAX] = 'x';
    longtext[2 * AOS_WORKFLOW_DESCRIPTION_MAX + 1] = '\0';
    s = spec_of("described-2", steps, 1);
    s.description = longtext;
    assert_int_equal(TX(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);

    /* 1..32 steps. */
    s = spec_of("full", steps, AOS_WORKFLOW_STEPS_MAX);
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E));
    s = spec_of("overfull", steps, AOS_WORKFLOW_STEPS_MAX + 1);
    assert_int_equal(TX(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s = spec_of("empty", steps, 0);
    assert_int_equal(TX(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s = spec_of("null-steps", NULL, 1);
    assert_int_equal(TX(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);

    /* The store re-checks every step: unknown, deleted, another tenant's,
     * malformed -- whatever the caller resolved. */
    const char *not_live[] = {MISSING_ID, dead, b1, "not-a-uuid", "alpha"};
    for (i = 0; i < sizeof(not_live) / sizeof(not_live[0]); i++) {
        step_set(&steps[1], not_live[i]);
        s = spec_of("bad-step", steps, 2);
        assert_int_equal(TX(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
        assert_non_null(strstr(err, "step 2"));
    }
    step_set(&steps[1], a1);

    /* A tenant the store does not know; a malformed one. */
    s = spec_of("x", steps, 1);
    assert_int_equal(TX(f, aos_store_workflow_create(tx, MISSING_ID, &s, id, E)), AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_workflow_create(tx, "nope", &s, id, E)), AOS_DB_NOT_FOUND);
}

static void test_unique_name_and_reuse(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], b1[AOS_ID_LEN], id1[AOS_ID_LEN], id2[AOS_ID_LEN], id3[AOS_ID_LEN], idb[AOS_ID_LEN];
    struct aos_workflow_step sa, sb;
    struct aos_workflow w;

    agent(f, TENANT_A, "alpha", a1);
    agent(f, TENANT_B, "alpha", b1);
    step_set(&sa, a1);
    step_set(&sb, b1);
    struct aos_workflow_spec s = spec_of("dup", &sa, 1);
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id1, E));
    assert_int_equal(TX(f, aos_store_workflow_create(tx, TENANT_A, &s, id2, E)), AOS_DB_CONSTRAINT);
    /* Names are per tenant. */
    struct aos_workflow_spec sbs = spec_of("dup", &sb, 1);
    OK(f, aos_store_workflow_create(tx, TENANT_B, &sbs, idb, E));
    /* Renaming onto a taken name is refused too. */
    s = spec_of("other", &sa, 1);
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id2, E));
    s = spec_of("dup", &sa, 1);
    assert_int_equal(TX(f, aos_store_workflow_update(tx, TENANT_A, id2, &s, E)), AOS_DB_CONSTRAINT);

    /* Soft delete: gone for every operation, the name free again. */
    OK(f, aos_store_workflow_delete(tx, TENANT_A, id1, E));
    assert_int_equal(TX(f, aos_store_workflow_get(tx, TENANT_A, id1, &w, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_workflow_get_by_name(tx, TENANT_A, "dup", &w, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_workflow_update(tx, TENANT_A, id1, &s, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_workflow_delete(tx, TENANT_A, id1, E)), AOS_DB_NOT_FOUND);
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id3, E));
    assert_string_not_equal(id1, id3);
    OK(f, aos_store_workflow_get_by_name(tx, TENANT_A, "dup", &w, E));
    assert_string_equal(w.id, id3);
    aos_workflow_clear(&w);

    /* The deleted row is kept (runs refer to it), marked deleted. */
    assert_soft_deleted(f, "workflows", id1);
}

static void test_update(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], a2[AOS_ID_LEN], a3[AOS_ID_LEN], id[AOS_ID_LEN];
    struct aos_workflow_step steps[2];
    struct aos_workflow a, b;

    agent(f, TENANT_A, "alpha", a1);
    agent(f, TENANT_A, "beta", a2);
    step_set(&steps[0], a1);
    struct aos_workflow_spec s = spec_of("before", steps, 1);
    s.description = "first";
    s.created_by = "creator";
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E));
    OK(f, aos_store_workflow_get(tx, TENANT_A, id, &a, E));

    /* A full replacement: no description given means none. */
    step_set(&steps[0], a2);
    step_set(&steps[1], a1);
    s = spec_of("after", steps, 2);
    s.created_by = "someone else";
    OK(f, aos_store_workflow_update(tx, TENANT_A, id, &s, E));
    OK(f, aos_store_workflow_get(tx, TENANT_A, id, &b, E));
    assert_string_equal(b.name, "after");
    assert_null(b.description);
    assert_int_equal(b.nsteps, 2);
    assert_string_equal(b.steps[0].agent_id, a2);
    assert_string_equal(b.steps[1].agent_id, a1);
    assert_string_equal(b.created_by, "creator");
    assert_int_equal(b.created_at, a.created_at);
    assert_true(b.updated_at >= a.updated_at);
    assert_string_equal(a.description, "first");
    aos_workflow_clear(&a);
    aos_workflow_clear(&b);

    /* A workflow whose agent was deleted still reads (its id stays); an
     * update must name live agents. */
    OK(f, aos_store_agent_delete(tx, TENANT_A, a2, E));
    OK(f, aos_store_workflow_get(tx, TENANT_A, id, &b, E));
    assert_string_equal(b.steps[0].agent_id, a2);
    aos_workflow_clear(&b);
    assert_int_equal(TX(f, aos_store_workflow_update(tx, TENANT_A, id, &s, E)), AOS_DB_CONSTRAINT);
    agent(f, TENANT_A, "gamma", a3);
    step_set(&steps[0], a3);
    OK(f, aos_store_workflow_update(tx, TENANT_A, id, &s, E));

    assert_int_equal(TX(f, aos_store_workflow_update(tx, TENANT_A, MISSING_ID, &s, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_workflow_update(tx, TENANT_A, "bad", &s, E)), AOS_DB_NOT_FOUND);
    s.nsteps = 0;
    assert_int_equal(TX(f, aos_store_workflow_update(tx, TENANT_A, id, &s, E)), AOS_DB_CONSTRAINT);
}

static void test_tenant_isolation(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], b1[AOS_ID_LEN], id[AOS_ID_LEN], next[AOS_CURSOR_LEN];
    struct aos_workflow_step sa, sb;
    struct aos_workflow w, *list = NULL;
    size_t n = 99;

    agent(f, TENANT_A, "alpha", a1);
    agent(f, TENANT_B, "beta", b1);
    step_set(&sa, a1);
    step_set(&sb, b1);
    struct aos_workflow_spec s = spec_of("secret", &sa, 1);
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E));
    assert_int_equal(TX(f, aos_store_workflow_get(tx, TENANT_B, id, &w, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_workflow_get_by_name(tx, TENANT_B, "secret", &w, E)), AOS_DB_NOT_FOUND);
    struct aos_workflow_spec hijack = spec_of("hijacked", &sb, 1);
    assert_int_equal(TX(f, aos_store_workflow_update(tx, TENANT_B, id, &hijack, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_workflow_delete(tx, TENANT_B, id, E)), AOS_DB_NOT_FOUND);
    OK(f, aos_store_workflow_list(tx, TENANT_B, NULL, 100, &list, &n, next, E));
    assert_int_equal(n, 0);
    assert_null(list);
    assert_string_equal(next, "");

    OK(f, aos_store_workflow_get(tx, TENANT_A, id, &w, E));
    assert_string_equal(w.name, "secret");
    assert_string_equal(w.steps[0].agent_id, a1);
    aos_workflow_clear(&w);
    OK(f, aos_store_workflow_list(tx, TENANT_A, NULL, 100, &list, &n, next, E));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, id);
    assert_int_equal(list[0].nsteps, 1);
    aos_workflows_free(list, n);
}

static void test_list_paging(void **state)
{
    struct fx *f = fx_get(state);
    enum { N = 7 };
    char ids[N][AOS_ID_LEN], name[16], cursor[AOS_CURSOR_LEN] = "", next[AOS_CURSOR_LEN], a1[AOS_ID_LEN];
    char b1[AOS_ID_LEN], idb[AOS_ID_LEN], last_id[AOS_ID_LEN] = "";
    bool seen[N] = {false};
    struct aos_workflow *list = NULL;
    struct aos_workflow_step sa, sb;
    size_t n, total = 0, pages = 0, i, k;
    int64_t last_ts = 0;

    agent(f, TENANT_A, "alpha", a1);
    agent(f, TENANT_B, "beta", b1);
    step_set(&sa, a1);
    step_set(&sb, b1);
    for (i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "wf-%zu", i);
        struct aos_workflow_spec s = spec_of(name, &sa, 1);
        OK(f, aos_store_workflow_create(tx, TENANT_A, &s, ids[i], E));
    }
    OK(f, aos_store_workflow_delete(tx, TENANT_A, ids[3], E));
    struct aos_workflow_spec sbs = spec_of("b-wf", &sb, 1);
    OK(f, aos_store_workflow_create(tx, TENANT_B, &sbs, idb, E));
    do {
        OK(f, aos_store_workflow_list(tx, TENANT_A, cursor, 2, &list, &n, next, E));
        assert_true(n <= 2);
        for (k = 0; k < n; k++) {
            assert_true(list[k].created_at > last_ts ||
                        (list[k].created_at == last_ts && strcmp(list[k].id, last_id) > 0));
            last_ts = list[k].created_at;
            snprintf(last_id, sizeof(last_id), "%s", list[k].id);
            assert_string_equal(list[k].tenant_id, TENANT_A);
            assert_string_equal(list[k].steps[0].agent_id, a1);
            for (i = 0; i < N; i++)
                if (strcmp(list[k].id, ids[i]) == 0) {
                    assert_false(seen[i]);
                    seen[i] = true;
                }
        }
        total += n;
        pages++;
        aos_workflows_free(list, n);
        list = NULL;
        snprintf(cursor, sizeof(cursor), "%s", next);
        assert_true(pages <= N);
    } while (cursor[0] != '\0');
    assert_int_equal(total, N - 1);
    assert_int_equal(pages, 3);
    for (i = 0; i < N; i++)
        assert_true(seen[i] == (i != 3));

    OK(f, aos_store_workflow_list(tx, TENANT_A, NULL, N - 1, &list, &n, next, E));
    assert_int_equal(n, N - 1);
    assert_string_equal(next, "");
    aos_workflows_free(list, n);

    assert_int_equal(TX(f, aos_store_workflow_list(tx, TENANT_A, "garbage", 2, &list, &n, next, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_workflow_list(tx, TENANT_A, "12.not-a-uuid", 2, &list, &n, next, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_workflow_list(tx, TENANT_A, NULL, 0, &list, &n, next, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_workflow_list(tx, TENANT_A, NULL, 1001, &list, &n, next, E)),
                     AOS_DB_CONSTRAINT);
}

/* A definition the store did not write is an error, not a crash. */
static void test_malformed_definition(void **state)
{
    struct fx *f = fx_get(state);
    char a1[AOS_ID_LEN], id[AOS_ID_LEN];
    struct aos_workflow_step sa;
    struct aos_workflow w;
    static const char *const bad[] = {"{}",
                                      "{\"steps\":[]}",
                                      "{\"steps\":[{\"agent\":\"x\"}]}",
                                      "{\"steps\":[{\"agent\":1}]}",
                                      "{\"steps\":{}}",
                                      "{\"steps\":[{\"agent\":\"" MISSING_ID "\"}],\"description\":5}"};

    agent(f, TENANT_A, "alpha", a1);
    step_set(&sa, a1);
    struct aos_workflow_spec s = spec_of("victim", &sa, 1);
    OK(f, aos_store_workflow_create(tx, TENANT_A, &s, id, E));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct aos_db_param p[] = {AOS_DB_P_TEXT(bad[i]), AOS_DB_P_TEXT(id)};
        OK(f, aos_store_exec(tx, "UPDATE workflows SET definition = $1 WHERE id = $2", p, 2, NULL, E));
        assert_int_equal(TX(f, aos_store_workflow_get(tx, TENANT_A, id, &w, E)), AOS_DB_ERROR);
        assert_non_null(strstr(err, "malformed definition"));
        assert_null(w.name);
        assert_null(w.steps);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TESTS(test_create_get, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_resolve, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_invalid, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_unique_name_and_reuse, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_update, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_tenant_isolation, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_list_paging, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_malformed_definition, fx_setup_two_tenants, fx_teardown),
    };

    return FX_RUN("workflows_store", tests);
}
