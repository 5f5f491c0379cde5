/*
 * The event log in the store (core/store/events.c) and its writer
 * aos_event_append (core/events/events.c: PII redaction), on SQLite always
 * and on PostgreSQL when AOS_TEST_PGSQL is set, each test in a private,
 * freshly migrated database with the tenants acme (A) and globex (B)
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

#include "events/events.h"
#include "pii/pii.h"
#include "store/events.h"
#include "store/ops.h"
#include "store/store.h"

/* err, E, tx, TX(), OK() and the assert_ helpers: see store_fixture.h. */
#define FX_STORE_CALLS
#include "store_fixture.h"

#define TENANT_A FX_TENANT_A
#define TENANT_B FX_TENANT_B
#define RUN_1 "11111111-1111-4111-8111-111111111111"
#define RUN_2 "22222222-2222-4222-8222-222222222222"

static int64_t insert(struct fx *f, const char *tenant, const char *type, const char *run,
                      const char *payload)
{
    int64_t id = 0;

    OK(f, aos_store_event_insert(tx, tenant, type, run, payload, 1000, &id, E));
    assert_true(id > 0);
    return id;
}

/* ---------------------------------------------------------------- tests */

static void test_insert_list(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_event *ev = NULL;
    size_t n = 0;
    bool more = true;
    int64_t a1, a2, b1;

    a1 = insert(f, TENANT_A, "run.started", RUN_1, "{\"n\":1,\"s\":\"x\"}");
    b1 = insert(f, TENANT_B, "run.started", NULL, NULL);
    a2 = insert(f, TENANT_A, "approval.requested", NULL, "{}");
    assert_true(a1 < b1 && b1 < a2);

    OK(f, aos_store_event_list(tx, TENANT_A, 0, NULL, 10, &ev, &n, &more, E));
    assert_int_equal(n, 2);
    assert_false(more);
    assert_int_equal(ev[0].id, a1);
    assert_string_equal(ev[0].tenant_id, TENANT_A);
    assert_string_equal(ev[0].type, "run.started");
    assert_string_equal(ev[0].run_id, RUN_1);
    assert_json_eq(ev[0].payload, "{\"n\":1,\"s\":\"x\"}");
    assert_int_equal(ev[0].created_at, 1000);
    assert_int_equal(ev[1].id, a2);
    assert_string_equal(ev[1].run_id, "");
    assert_json_eq(ev[1].payload, "{}");
    aos_event_list_free(ev, n);

    /* B's own, with the default payload. */
    OK(f, aos_store_event_list(tx, TENANT_B, 0, NULL, 10, &ev, &n, &more, E));
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].id, b1);
    assert_json_eq(ev[0].payload, "{}");
    aos_event_list_free(ev, n);

    /* after_id is exclusive. */
    OK(f, aos_store_event_list(tx, TENANT_A, a1, NULL, 10, &ev, &n, &more, E));
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].id, a2);
    aos_event_list_free(ev, n);
    OK(f, aos_store_event_list(tx, TENANT_A, a2, NULL, 10, &ev, &n, &more, E));
    assert_int_equal(n, 0);
    assert_null(ev);

    /* A tenant that is not a UUID has no events (not an error). */
    OK(f, aos_store_event_list(tx, "nope", 0, NULL, 10, &ev, &n, &more, E));
    assert_int_equal(n, 0);
}

static void test_filters(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_event *ev = NULL;
    size_t n = 0;
    bool more;
    int64_t ids[6];
    struct aos_event_filter flt;

    ids[0] = insert(f, TENANT_A, "run.started", RUN_1, NULL);
    ids[1] = insert(f, TENANT_A, "run.step", RUN_1, NULL);
    ids[2] = insert(f, TENANT_A, "runner.odd", RUN_2, NULL);
    ids[3] = insert(f, TENANT_A, "approval.requested", RUN_1, NULL);
    ids[4] = insert(f, TENANT_A, "run.started", RUN_2, NULL);
    ids[5] = insert(f, TENANT_B, "run.started", RUN_1, NULL);

    flt = (struct aos_event_filter){.type = "run.started"};
    OK(f, aos_store_event_list(tx, TENANT_A, 0, &flt, 10, &ev, &n, &more, E));
    assert_int_equal(n, 2);
    assert_int_equal(ev[0].id, ids[0]);
    assert_int_equal(ev[1].id, ids[4]);
    aos_event_list_free(ev, n);

    /* "run.*" is a prefix match on "run." exactly: not "runner.odd". */
    flt = (struct aos_event_filter){.type = "run.*"};
    OK(f, aos_store_event_list(tx, TENANT_A, 0, &flt, 10, &ev, &n, &more, E));
    assert_int_equal(n, 3);
    assert_int_equal(ev[0].id, ids[0]);
    assert_int_equal(ev[1].id, ids[1]);
    assert_int_equal(ev[2].id, ids[4]);
    aos_event_list_free(ev, n);

    flt = (struct aos_event_filter){.type = "*"};
    OK(f, aos_store_event_list(tx, TENANT_A, 0, &flt, 10, &ev, &n, &more, E));
    assert_int_equal(n, 5);
    aos_event_list_free(ev, n);

    flt = (struct aos_event_filter){.run_id = RUN_1};
    OK(f, aos_store_event_list(tx, TENANT_A, 0, &flt, 10, &ev, &n, &more, E));
    assert_int_equal(n, 3);
    assert_int_equal(ev[2].id, ids[3]);
    aos_event_list_free(ev, n);

    flt = (struct aos_event_filter){.type = "run.*", .run_id = RUN_1};
    OK(f, aos_store_event_list(tx, TENANT_A, 0, &flt, 10, &ev, &n, &more, E));
    assert_int_equal(n, 2);
    assert_int_equal(ev[0].id, ids[0]);
    assert_int_equal(ev[1].id, ids[1]);
    aos_event_list_free(ev, n);

    flt = (struct aos_event_filter){.type = "run.started", .run_id = RUN_2};
    OK(f, aos_store_event_list(tx, TENANT_A, 0, &flt, 10, &ev, &n, &more, E));
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].id, ids[4]);
    aos_event_list_free(ev, n);

    /* The run filter matches by value whatever the case given. */
    flt = (struct aos_event_filter){.run_id = "11111111-1111-4111-8111-111111111111"};
    OK(f, aos_store_event_list(tx, TENANT_B, 0, &flt, 10, &ev, &n, &more, E));
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].id, ids[5]);
    aos_event_list_free(ev, n);

    /* A run filter that is not a UUID matches nothing. */
    flt = (struct aos_event_filter){.run_id = "not-a-run"};
    OK(f, aos_store_event_list(tx, TENANT_A, 0, &flt, 10, &ev, &n, &more, E));
    assert_int_equal(n, 0);

    /* Malformed type filters: '*' not last, bad characters. */
    flt = (struct aos_event_filter){.type = "r*n"};
    assert_int_equal(TX(f, aos_store_event_list(tx, TENANT_A, 0, &flt, 10, &ev, &n, &more, E)),
                     AOS_DB_CONSTRAINT);
    flt = (struct aos_event_filter){.type = "run started"};
    assert_int_equal(TX(f, aos_store_event_list(tx, TENANT_A, 0, &flt, 10, &ev, &n, &more, E)),
                     AOS_DB_CONSTRAINT);
    flt = (struct aos_event_filter){.type = "run%"};
    assert_int_equal(TX(f, aos_store_event_list(tx, TENANT_A, 0, &flt, 10, &ev, &n, &more, E)),
                     AOS_DB_CONSTRAINT);
}

static void test_filter_match(void **state)
{
    struct aos_event_filter flt = {.type = "run.*"};

    (void)state;
    assert_true(aos_event_filter_match(NULL, "x", NULL));
    assert_true(aos_event_filter_match(&flt, "run.started", NULL));
    assert_true(aos_event_filter_match(&flt, "run.", NULL));
    assert_false(aos_event_filter_match(&flt, "runner", NULL));
    assert_false(aos_event_filter_match(&flt, "run", NULL));
    flt.type = "run.started";
    assert_true(aos_event_filter_match(&flt, "run.started", ""));
    assert_false(aos_event_filter_match(&flt, "run.started2", ""));
    flt.type = "*";
    assert_true(aos_event_filter_match(&flt, "anything", ""));
    flt.type = NULL;
    flt.run_id = RUN_1;
    assert_true(aos_event_filter_match(&flt, "a", RUN_1));
    assert_false(aos_event_filter_match(&flt, "a", RUN_2));
    assert_false(aos_event_filter_match(&flt, "a", ""));
    assert_false(aos_event_filter_match(&flt, "a", NULL));
    assert_true(aos_event_filter_type_valid(NULL));
    assert_true(aos_event_filter_type_valid("*"));
    assert_true(aos_event_filter_type_valid("a.b-c_d:e*"));
    assert_false(aos_event_filter_type_valid(""));
    assert_false(aos_event_filter_type_valid("**"));
    assert_false(aos_event_filter_type_valid("a b"));
}

static void test_paging(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_event *ev = NULL;
    size_t n = 0, total = 0, pages = 0;
    bool more = true;
    int64_t ids[7], after = 0;
    int i;

    for (i = 0; i < 7; i++)
        ids[i] = insert(f, TENANT_A, i % 2 ? "odd" : "even", NULL, NULL);
    (void)insert(f, TENANT_B, "even", NULL, NULL);
    while (more) {
        OK(f, aos_store_event_list(tx, TENANT_A, after, NULL, 3, &ev, &n, &more, E));
        for (size_t k = 0; k < n; k++)
            assert_int_equal(ev[k].id, ids[total + k]);
        total += n;
        pages++;
        if (n > 0)
            after = ev[n - 1].id;
        aos_event_list_free(ev, n);
        assert_true(pages <= 3);
    }
    assert_int_equal(total, 7);
    assert_int_equal(pages, 3);

    /* An exact page says there is no more. */
    OK(f, aos_store_event_list(tx, TENANT_A, 0, NULL, 7, &ev, &n, &more, E));
    assert_int_equal(n, 7);
    assert_false(more);
    aos_event_list_free(ev, n);

    /* Paging within a filter. */
    struct aos_event_filter flt = {.type = "even"};
    OK(f, aos_store_event_list(tx, TENANT_A, 0, &flt, 2, &ev, &n, &more, E));
    assert_int_equal(n, 2);
    assert_true(more);
    after = ev[1].id;
    assert_int_equal(after, ids[2]);
    aos_event_list_free(ev, n);
    OK(f, aos_store_event_list(tx, TENANT_A, after, &flt, 2, &ev, &n, &more, E));
    assert_int_equal(n, 2);
    assert_false(more);
    assert_int_equal(ev[0].id, ids[4]);
    assert_int_equal(ev[1].id, ids[6]);
    aos_event_list_free(ev, n);

    assert_int_equal(TX(f, aos_store_event_list(tx, TENANT_A, 0, NULL, 0, &ev, &n, &more, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_event_list(tx, TENANT_A, 0, NULL, 1001, &ev, &n, &more, E)),
                     AOS_DB_CONSTRAINT);
}

static void test_invalid(void **state)
{
    struct fx *f = fx_get(state);
    int64_t id = 7;
    char longtype[AOS_EVENT_TYPE_MAX + 2];

    memset(longtype, 'a', sizeof(longtype) - 1);
    longtype[sizeof(longtype) - 1] = '\0';
    assert_int_equal(TX(f, aos_store_event_insert(tx, TENANT_A, "", NULL, NULL, 1, &id, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(id, 0);
    assert_int_equal(TX(f, aos_store_event_insert(tx, TENANT_A, "a b", NULL, NULL, 1, &id, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_event_insert(tx, TENANT_A, longtype, NULL, NULL, 1, &id, E)),
                     AOS_DB_CONSTRAINT);
    longtype[AOS_EVENT_TYPE_MAX] = '\0';
    OK(f, aos_store_event_insert(tx, TENANT_A, longtype, NULL, NULL, 1, &id, E));
    assert_int_equal(TX(f, aos_store_event_insert(tx, TENANT_A, "t", "run-1", NULL, 1, &id, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_event_insert(tx, TENANT_A, "t", NULL, "[1]", 1, &id, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_event_insert(tx, TENANT_A, "t", NULL, "{bad", 1, &id, E)),
                     AOS_DB_CONSTRAINT);
    /* Unknown tenant: the foreign key; malformed tenant: refused first. */
    assert_int_equal(
        TX(f, aos_store_event_insert(tx, "deadbeef-dead-4eef-8eef-deadbeefdead", "t", NULL, NULL, 1, &id, E)),
        AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_store_event_insert(tx, "acme", "t", NULL, NULL, 1, &id, E)),
                     AOS_DB_CONSTRAINT);
}

static void test_since_max_prune(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_event *ev = NULL;
    size_t n = 0, deleted = 0;
    int64_t max = -1, ids[4];

    OK(f, aos_store_events_max_id(tx, &max, E));
    assert_int_equal(max, 0);
    OK(f, aos_store_event_insert(tx, TENANT_A, "old", NULL, NULL, 100, &ids[0], E));
    OK(f, aos_store_event_insert(tx, TENANT_B, "old", NULL, NULL, 100, &ids[1], E));
    OK(f, aos_store_event_insert(tx, TENANT_A, "new", NULL, NULL, 5000, &ids[2], E));
    OK(f, aos_store_event_insert(tx, TENANT_B, "new", NULL, NULL, 5000, &ids[3], E));
    OK(f, aos_store_events_max_id(tx, &max, E));
    assert_int_equal(max, ids[3]);

    /* Across tenants, in id order, bounded. */
    OK(f, aos_store_events_since(tx, 0, 3, &ev, &n, E));
    assert_int_equal(n, 3);
    assert_int_equal(ev[0].id, ids[0]);
    assert_string_equal(ev[0].tenant_id, TENANT_A);
    assert_int_equal(ev[1].id, ids[1]);
    assert_string_equal(ev[1].tenant_id, TENANT_B);
    assert_int_equal(ev[2].id, ids[2]);
    aos_event_list_free(ev, n);
    OK(f, aos_store_events_since(tx, ids[2], 100, &ev, &n, E));
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].id, ids[3]);
    aos_event_list_free(ev, n);
    OK(f, aos_store_events_since(tx, ids[3], 100, &ev, &n, E));
    assert_int_equal(n, 0);
    assert_int_equal(TX(f, aos_store_events_since(tx, 0, 0, &ev, &n, E)), AOS_DB_CONSTRAINT);

    /* Retention: only events older than the cutoff, in chunks. */
    OK(f, aos_store_events_prune(tx, 1000, 1, &deleted, E));
    assert_int_equal(deleted, 1);
    OK(f, aos_store_events_prune(tx, 1000, 10, &deleted, E));
    assert_int_equal(deleted, 1);
    OK(f, aos_store_events_prune(tx, 1000, 10, &deleted, E));
    assert_int_equal(deleted, 0);
    OK(f, aos_store_events_since(tx, 0, 100, &ev, &n, E));
    assert_int_equal(n, 2);
    assert_int_equal(ev[0].id, ids[2]);
    assert_int_equal(ev[1].id, ids[3]);
    aos_event_list_free(ev, n);
    /* Ids keep increasing after a prune (no reuse). */
    int64_t again = insert(f, TENANT_A, "later", NULL, NULL);
    assert_true(again > ids[3]);
    assert_int_equal(TX(f, aos_store_events_prune(tx, 1000, 0, &deleted, E)), AOS_DB_CONSTRAINT);
}

static void test_append_redacts(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_pii *pii = aos_pii_new(NULL, 0, E);
    struct aos_event *ev = NULL;
    size_t n = 0;
    bool more;
    int64_t id = 0;

    assert_non_null(pii);
    OK(f, aos_event_append(tx, pii, TENANT_A, "run.started", RUN_1,
                           "{\"who\":\"mail jane.doe@example.com now\",\"n\":5,\"ok\":true,\"none\":null,"
                           "\"list\":[\"call +1 415 555 0100\",{\"deep\":\"ip 10.1.2.3\"}],"
                           "\"jane@example.org\":\"keys are kept\"}",
                           &id, E));
    assert_true(id > 0);
    OK(f, aos_event_append(tx, pii, TENANT_A, "run.done", NULL, NULL, NULL, E));
    OK(f, aos_store_event_list(tx, TENANT_A, 0, NULL, 10, &ev, &n, &more, E));
    assert_int_equal(n, 2);
    assert_int_equal(ev[0].id, id);
    assert_json_eq(ev[0].payload, "{\"who\":\"mail <EMAIL_ADDRESS> now\",\"n\":5,\"ok\":true,\"none\":null,"
                                  "\"list\":[\"call <PHONE_NUMBER>\",{\"deep\":\"ip <IP_ADDRESS>\"}],"
                                  "\"jane@example.org\":\"keys are kept\"}");
    assert_null(strstr(ev[0].payload, "jane.doe"));
    assert_json_eq(ev[1].payload, "{}");
    aos_event_list_free(ev, n);

    /* Without detectors the payload is stored as given. */
    OK(f, aos_event_append(tx, NULL, TENANT_A, "raw", NULL, "{\"who\":\"jane.doe@example.com\"}", NULL, E));
    /* Not an object, or too deep: refused, nothing stored. */
    assert_int_equal(TX(f, aos_event_append(tx, pii, TENANT_A, "x", NULL, "[\"a\"]", NULL, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_event_append(tx, pii, TENANT_A, "x", NULL, "\"a\"", NULL, E)),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(TX(f, aos_event_append(tx, pii, TENANT_A, "x", NULL, "{", NULL, E)), AOS_DB_CONSTRAINT);
    OK(f, aos_store_event_list(tx, TENANT_A, id, NULL, 10, &ev, &n, &more, E));
    assert_int_equal(n, 2);
    assert_json_eq(ev[1].payload, "{\"who\":\"jane.doe@example.com\"}");
    aos_event_list_free(ev, n);
    aos_pii_free(pii);
}

static void test_redact_payload(void **state)
{
    struct aos_pii *pii = aos_pii_new(NULL, 0, E);
    char *out;

    (void)state;
    assert_non_null(pii);
    out = aos_event_redact_payload(pii, "{\"a\":\"x@y.example.com\",\"b\":{\"c\":[\"10.0.0.1\"]}}");
    assert_non_null(out);
    assert_json_eq(out, "{\"a\":\"<EMAIL_ADDRESS>\",\"b\":{\"c\":[\"<IP_ADDRESS>\"]}}");
    free(out);
    assert_null(aos_event_redact_payload(pii, "[]"));
    assert_null(aos_event_redact_payload(pii, NULL));
    aos_pii_free(pii);
}

/* PostgreSQL: an appending transaction holds the ordering lock until it
 * ends, visible to other sessions in pg_locks. */
static void test_pg_lock_held(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_store_tx *w = NULL, *r = NULL;
    struct aos_db_result *res = NULL;
    static const char sql[] =
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1634693988 "
        "AND objid = 761624180 AND objsubid = 1 AND granted AND pid = $1";

    int64_t held = -1, after = -1, pid = -1;

    if (!f->pg)
        return; /* SQLite has one writer at a time: nothing to lock */
    /* Counts are taken with every transaction ended before asserting:
     * a failed assertion must not leave a connection lent out.  Only the
     * writer's session counts: other programs may be appending events to
     * the same server meanwhile. */
    assert_int_equal(aos_store_begin(f->store, true, &w, E), AOS_DB_OK);
    if (aos_store_exec(w, "SELECT pg_backend_pid()", NULL, 0, &res, E) == AOS_DB_OK)
        pid = aos_db_result_int(res, 0, 0);
    aos_db_result_free(res);
    res = NULL;
    struct aos_db_param pp[] = {AOS_DB_P_INT(pid)};
    if (aos_event_append(w, NULL, TENANT_A, "t", NULL, NULL, NULL, E) == AOS_DB_OK &&
        aos_store_begin(f->store, false, &r, E) == AOS_DB_OK) {
        if (aos_store_exec(r, sql, pp, 1, &res, E) == AOS_DB_OK)
            held = aos_db_result_int(res, 0, 0);
        aos_db_result_free(res);
        res = NULL;
        aos_store_rollback(r);
    }
    assert_int_equal(aos_store_commit(w, E), AOS_DB_OK);
    if (aos_store_begin(f->store, false, &r, E) == AOS_DB_OK) {
        if (aos_store_exec(r, sql, pp, 1, &res, E) == AOS_DB_OK)
            after = aos_db_result_int(res, 0, 0);
        aos_db_result_free(res);
        aos_store_rollback(r);
    }
    assert_true(pid > 0);
    assert_int_equal(held, 1);
    assert_int_equal(after, 0);
}

/* Several events in one call: ids in array order, each as a single
 * insert would write it; one malformed event writes none. */
static void test_insert_many(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_event *ev = NULL;
    size_t n = 0;
    bool more = true;
    const struct aos_event_new rows[] = {
        {TENANT_A, "step.completed", RUN_1, "{\"seq\":0,\"s\":\"a \\\"q\\\" b\"}", 2000},
        {TENANT_B, "run.queued", NULL, NULL, 2001},
        {TENANT_A, "run.succeeded", RUN_1, "{\"output\":{\"x\":[1,2]}}", 2002},
        {TENANT_A, "budget.warning", RUN_2, "{}", 2003},
    };
    const struct aos_event_new bad[] = {
        {TENANT_A, "ok.type", RUN_1, "{}", 1},
        {TENANT_A, "bad type", RUN_1, "{}", 1},
    };

    OK(f, aos_store_events_insert_many(tx, rows, 0, E));
    OK(f, aos_store_events_insert_many(tx, rows, 4, E));
    OK(f, aos_store_event_list(tx, TENANT_A, 0, NULL, 10, &ev, &n, &more, E));
    assert_int_equal(n, 3);
    assert_true(ev[0].id < ev[1].id && ev[1].id < ev[2].id);
    assert_string_equal(ev[0].type, "step.completed");
    assert_string_equal(ev[0].run_id, RUN_1);
    assert_json_eq(ev[0].payload, "{\"seq\":0,\"s\":\"a \\\"q\\\" b\"}");
    assert_int_equal(ev[0].created_at, 2000);
    assert_string_equal(ev[1].type, "run.succeeded");
    assert_json_eq(ev[1].payload, "{\"output\":{\"x\":[1,2]}}");
    assert_string_equal(ev[2].type, "budget.warning");
    assert_string_equal(ev[2].run_id, RUN_2);
    int64_t first = ev[0].id, last = ev[2].id;
    aos_event_list_free(ev, n);
    OK(f, aos_store_event_list(tx, TENANT_B, 0, NULL, 10, &ev, &n, &more, E));
    assert_int_equal(n, 1);
    assert_true(ev[0].id > first && ev[0].id < last); /* the array's order across tenants */
    assert_string_equal(ev[0].run_id, "");
    assert_json_eq(ev[0].payload, "{}");
    aos_event_list_free(ev, n);

    assert_int_equal(TX(f, aos_store_events_insert_many(tx, bad, 2, E)), AOS_DB_CONSTRAINT);
    OK(f, aos_store_event_list(tx, TENANT_A, last, NULL, 10, &ev, &n, &more, E));
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TESTS(test_insert_list, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_insert_many, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_filters, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_paging, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_invalid, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_since_max_prune, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_append_redacts, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_pg_lock_held, fx_setup_two_tenants, fx_teardown),
        cmocka_unit_test(test_filter_match),
        cmocka_unit_test(test_redact_payload),
    };

    return FX_RUN("events_store", tests);
}
