/*
 * Agents in the store (core/store/ops.c, "agents") on SQLite always and on
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

/* err, E, tx, TX(), OK() and the assert_ helpers: see store_fixture.h. */
#define FX_STORE_CALLS
#include "store_fixture.h"

#define TENANT_A FX_TENANT_A
#define TENANT_B FX_TENANT_B
#define MISSING_ID "deadbeef-dead-4eef-8eef-deadbeefdead"

static struct aos_agent_spec spec_named(const char *name)
{
    struct aos_agent_spec s;

    aos_agent_spec_init(&s);
    s.name = name;
    s.plugin = "agent-echo";
    return s;
}

/* ---------------------------------------------------------------- tests */

static void test_create_get(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_agent_spec s = spec_named("summariser");
    struct aos_agent a;
    char id[AOS_ID_LEN], upper[AOS_ID_LEN];

    s.config = "{\"steps\":3,\"nested\":{\"k\":[1,2]}}";
    s.autonomy = "autonomous";
    s.approval_policy = "{\"risky\":true}";
    s.budget_tokens_day = 1000;
    s.budget_micro_usd_month = 0;
    s.step_reserve_tokens = 0;
    s.step_reserve_micro_usd = 2500;
    s.created_by = "user-1";
    OK(f, aos_store_agent_create(tx, TENANT_A, &s, id, E));
    assert_true(aos_store_id_norm(id, upper));

    OK(f, aos_store_agent_get(tx, TENANT_A, id, &a, E));
    assert_string_equal(a.id, id);
    assert_string_equal(a.tenant_id, TENANT_A);
    assert_string_equal(a.name, "summariser");
    assert_string_equal(a.plugin, "agent-echo");
    assert_json_eq(a.config, "{\"steps\":3,\"nested\":{\"k\":[1,2]}}");
    assert_string_equal(a.autonomy, "autonomous");
    assert_json_eq(a.approval_policy, "{\"risky\":true}");
    assert_int_equal(a.budget_tokens_day, 1000);
    assert_int_equal(a.budget_tokens_month, -1);
    assert_int_equal(a.budget_micro_usd_day, -1);
    assert_int_equal(a.budget_micro_usd_month, 0);
    assert_int_equal(a.step_reserve_tokens, 0);
    assert_int_equal(a.step_reserve_micro_usd, 2500);
    assert_string_equal(a.created_by, "user-1");
    assert_true(a.created_at > 0);
    assert_int_equal(a.updated_at, a.created_at);
    aos_agent_clear(&a);

    /* Defaults: config and policy {}, no autonomy, no budgets. */
    s = spec_named("plain");
    OK(f, aos_store_agent_create(tx, TENANT_A, &s, id, E));
    OK(f, aos_store_agent_get_by_name(tx, TENANT_A, "plain", &a, E));
    assert_string_equal(a.id, id);
    assert_json_eq(a.config, "{}");
    assert_json_eq(a.approval_policy, "{}");
    assert_null(a.autonomy);
    assert_null(a.created_by);
    assert_int_equal(a.budget_tokens_day, -1);
    assert_int_equal(a.step_reserve_tokens, -1);
    assert_int_equal(a.step_reserve_micro_usd, -1);
    aos_agent_clear(&a);

    /* Ids in upper case are the same agent. */
    for (size_t i = 0; id[i] != '\0'; i++)
        upper[i] = (char)((id[i] >= 'a' && id[i] <= 'f') ? id[i] - 'a' + 'A' : id[i]);
    upper[AOS_ID_LEN - 1] = '\0';
    OK(f, aos_store_agent_get(tx, TENANT_A, upper, &a, E));
    assert_string_equal(a.id, id);
    aos_agent_clear(&a);

    assert_int_equal(TX(f, aos_store_agent_get(tx, TENANT_A, MISSING_ID, &a, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_agent_get(tx, TENANT_A, "not-a-uuid", &a, E)), AOS_DB_NOT_FOUND);
    assert_null(a.name);
}

static void test_invalid(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_agent_spec s;
    char id[AOS_ID_LEN], longname[AOS_AGENT_NAME_MAX * 2 + 2];
    size_t i;

    s = spec_named("");
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s = spec_named(NULL);
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    /* 100 two-byte characters fit; 101 do not. */
    for (i = 0; i < AOS_AGENT_NAME_MAX; i++) {
        longname[2 * i] = (char)0xc3;
        longname[2 * i + 1] = (char)0xa9;
    }
    longname[2 * AOS_AGENT_NAME_MAX] = '\0';
    s = spec_named(longname);
    OK(f, aos_store_agent_create(tx, TENANT_A, &s, id, E));
    longname[2 * AOS_AGENT_NAME_MAX] = 'x';
    longname[2 * AOS_AGENT_NAME_MAX + 1] = '\0';
    s = spec_named(longname);
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);

    s = spec_named("x");
    s.plugin = "";
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s = spec_named("x");
    s.config = "[1,2]";
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s.config = "{\"a\":1} trailing";
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s.config = "{bad";
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s = spec_named("x");
    s.approval_policy = "\"always\"";
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s = spec_named("x");
    s.autonomy = "reckless";
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s = spec_named("x");
    s.budget_tokens_month = -2;
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s = spec_named("x");
    s.step_reserve_tokens = -2;
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    s = spec_named("x");
    s.step_reserve_micro_usd = INT64_MIN;
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id, E)), AOS_DB_CONSTRAINT);
    /* A tenant the store does not know. */
    s = spec_named("x");
    assert_int_equal(TX(f, aos_store_agent_create(tx, MISSING_ID, &s, id, E)), AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_agent_create(tx, "nope", &s, id, E)), AOS_DB_NOT_FOUND);

    assert_true(aos_store_json_object_valid("{}"));
    assert_true(aos_store_json_object_valid("{\"a\":[{}]}"));
    assert_false(aos_store_json_object_valid(NULL));
    assert_false(aos_store_json_object_valid(""));
    assert_false(aos_store_json_object_valid("null"));
    assert_false(aos_store_json_object_valid("{} {}"));
}

static void test_unique_name_and_reuse(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_agent_spec s = spec_named("dup");
    struct aos_agent a;
    char id1[AOS_ID_LEN], id2[AOS_ID_LEN], id3[AOS_ID_LEN], idb[AOS_ID_LEN];

    OK(f, aos_store_agent_create(tx, TENANT_A, &s, id1, E));
    assert_int_equal(TX(f, aos_store_agent_create(tx, TENANT_A, &s, id2, E)), AOS_DB_CONSTRAINT);
    /* Names are per tenant. */
    OK(f, aos_store_agent_create(tx, TENANT_B, &s, idb, E));
    /* Renaming onto a taken name is refused too. */
    s = spec_named("other");
    OK(f, aos_store_agent_create(tx, TENANT_A, &s, id2, E));
    s = spec_named("dup");
    assert_int_equal(TX(f, aos_store_agent_update(tx, TENANT_A, id2, &s, E)), AOS_DB_CONSTRAINT);

    /* Soft delete: gone for every operation, the name is free again. */
    OK(f, aos_store_agent_delete(tx, TENANT_A, id1, E));
    assert_int_equal(TX(f, aos_store_agent_get(tx, TENANT_A, id1, &a, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_agent_get_by_name(tx, TENANT_A, "dup", &a, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_agent_update(tx, TENANT_A, id1, &s, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_agent_delete(tx, TENANT_A, id1, E)), AOS_DB_NOT_FOUND);
    OK(f, aos_store_agent_create(tx, TENANT_A, &s, id3, E));
    assert_string_not_equal(id1, id3);
    OK(f, aos_store_agent_get_by_name(tx, TENANT_A, "dup", &a, E));
    assert_string_equal(a.id, id3);
    aos_agent_clear(&a);

    /* The deleted row is kept (runs refer to it), marked deleted. */
    assert_soft_deleted(f, "agents", id1);
}

static void test_update(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_agent_spec s = spec_named("before");
    struct aos_agent a, b;
    char id[AOS_ID_LEN];

    s.autonomy = "observe";
    s.budget_tokens_day = 5;
    s.step_reserve_tokens = 40;
    s.config = "{\"a\":1}";
    s.created_by = "creator";
    OK(f, aos_store_agent_create(tx, TENANT_A, &s, id, E));
    OK(f, aos_store_agent_get(tx, TENANT_A, id, &a, E));

    /* A full replacement: fields not given go back to their defaults. */
    s = spec_named("after");
    s.plugin = "agent-other";
    s.config = "{\"b\":[true]}";
    s.budget_micro_usd_day = 77;
    s.step_reserve_micro_usd = INT64_C(1000000000000);
    s.created_by = "someone else";
    OK(f, aos_store_agent_update(tx, TENANT_A, id, &s, E));
    OK(f, aos_store_agent_get(tx, TENANT_A, id, &b, E));
    assert_string_equal(b.name, "after");
    assert_string_equal(b.plugin, "agent-other");
    assert_json_eq(b.config, "{\"b\":[true]}");
    assert_null(b.autonomy);
    assert_int_equal(b.budget_tokens_day, -1);
    assert_int_equal(b.budget_micro_usd_day, 77);
    assert_int_equal(a.step_reserve_tokens, 40);
    assert_int_equal(b.step_reserve_tokens, -1);
    assert_int_equal(b.step_reserve_micro_usd, INT64_C(1000000000000));
    assert_string_equal(b.created_by, "creator");
    assert_int_equal(b.created_at, a.created_at);
    assert_true(b.updated_at >= a.updated_at);
    aos_agent_clear(&a);
    aos_agent_clear(&b);

    assert_int_equal(TX(f, aos_store_agent_update(tx, TENANT_A, MISSING_ID, &s, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_agent_update(tx, TENANT_A, "bad", &s, E)), AOS_DB_NOT_FOUND);
    s.config = "[]";
    assert_int_equal(TX(f, aos_store_agent_update(tx, TENANT_A, id, &s, E)), AOS_DB_CONSTRAINT);
}

static void test_tenant_isolation(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_agent_spec s = spec_named("secret");
    struct aos_agent a, *list = NULL;
    char id[AOS_ID_LEN], next[AOS_CURSOR_LEN];
    size_t n = 99;

    OK(f, aos_store_agent_create(tx, TENANT_A, &s, id, E));
    assert_int_equal(TX(f, aos_store_agent_get(tx, TENANT_B, id, &a, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_agent_get_by_name(tx, TENANT_B, "secret", &a, E)), AOS_DB_NOT_FOUND);
    s = spec_named("hijacked");
    assert_int_equal(TX(f, aos_store_agent_update(tx, TENANT_B, id, &s, E)), AOS_DB_NOT_FOUND);
    assert_int_equal(TX(f, aos_store_agent_delete(tx, TENANT_B, id, E)), AOS_DB_NOT_FOUND);
    OK(f, aos_store_agent_list(tx, TENANT_B, NULL, 100, &list, &n, next, E));
    assert_int_equal(n, 0);
    assert_null(list);
    assert_string_equal(next, "");

    /* A's agent is untouched by B's attempts. */
    OK(f, aos_store_agent_get(tx, TENANT_A, id, &a, E));
    assert_string_equal(a.name, "secret");
    aos_agent_clear(&a);
    OK(f, aos_store_agent_list(tx, TENANT_A, NULL, 100, &list, &n, next, E));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, id);
    aos_agents_free(list, n);
}

static void test_list_paging(void **state)
{
    struct fx *f = fx_get(state);
    enum { N = 7 };
    char ids[N][AOS_ID_LEN], name[16], cursor[AOS_CURSOR_LEN] = "", next[AOS_CURSOR_LEN];
    bool seen[N] = {false};
    struct aos_agent *list = NULL;
    size_t n, total = 0, pages = 0, i, k;
    int64_t last_ts = 0;
    char last_id[AOS_ID_LEN] = "";

    for (i = 0; i < N; i++) {
        struct aos_agent_spec s;

        snprintf(name, sizeof(name), "agent-%zu", i);
        s = spec_named(name);
        OK(f, aos_store_agent_create(tx, TENANT_A, &s, ids[i], E));
    }
    /* Deleted agents and B's agents are not listed. */
    OK(f, aos_store_agent_delete(tx, TENANT_A, ids[3], E));
    {
        struct aos_agent_spec s = spec_named("b-agent");
        char idb[AOS_ID_LEN];

        OK(f, aos_store_agent_create(tx, TENANT_B, &s, idb, E));
    }
    do {
        OK(f, aos_store_agent_list(tx, TENANT_A, cursor, 2, &list, &n, next, E));
        assert_true(n <= 2);
        for (k = 0; k < n; k++) {
            /* Oldest first, strictly increasing (created_at, id). */
            assert_true(list[k].created_at > last_ts ||
                        (list[k].created_at == last_ts && strcmp(list[k].id, last_id) > 0));
            last_ts = list[k].created_at;
            snprintf(last_id, sizeof(last_id), "%s", list[k].id);
            assert_string_equal(list[k].tenant_id, TENANT_A);
            for (i = 0; i < N; i++)
                if (strcmp(list[k].id, ids[i]) == 0) {
                    assert_false(seen[i]);
                    seen[i] = true;
                }
        }
        total += n;
        pages++;
        aos_agents_free(list, n);
        list = NULL;
        snprintf(cursor, sizeof(cursor), "%s", next);
        assert_true(pages <= N);
    } while (cursor[0] != '\0');
    assert_int_equal(total, N - 1);
    assert_int_equal(pages, 3);
    for (i = 0; i < N; i++)
        assert_true(seen[i] == (i != 3));

    /* An exact page: no further cursor. */
    OK(f, aos_store_agent_list(tx, TENANT_A, NULL, N - 1, &list, &n, next, E));
    assert_int_equal(n, N - 1);
    assert_string_equal(next, "");
    aos_agents_free(list, n);

    assert_int_equal(TX(f, aos_store_agent_list(tx, TENANT_A, "garbage", 2, &list, &n, next, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_agent_list(tx, TENANT_A, "12.not-a-uuid", 2, &list, &n, next, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_agent_list(tx, TENANT_A, NULL, 0, &list, &n, next, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_agent_list(tx, TENANT_A, NULL, 1001, &list, &n, next, E)),
                     AOS_DB_CONSTRAINT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TESTS(test_create_get, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_invalid, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_unique_name_and_reuse, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_update, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_tenant_isolation, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_list_paging, fx_setup_two_tenants, fx_teardown),
    };

    return FX_RUN("agents_store", tests);
}
