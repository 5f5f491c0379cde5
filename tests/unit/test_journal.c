/*
 * The API journal: the batched writer (core/gateway/journal.c) and its
 * store operations (aos_store_journal_*), on SQLite always and on
 * PostgreSQL when AOS_TEST_PGSQL is set (store_fixture.h).
 *
 * Determinism: nothing here sleeps or races a clock.  aos_journal_hold()
 * keeps the writer away from the queue while a test fills it, and
 * aos_journal_sync() waits until everything queued has been dealt with.
 */
#include "config.h"

/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/journal.h"
#include "http/server.h"
#include "store/migrate.h"
#include "store/ops.h"
#include "store/store.h"
#include "store_fixture.h"

#define TENANT_A FX_TENANT_A
#define TENANT_B FX_TENANT_B
#define TENANT_UNKNOWN "c0ffee00-1234-4abc-9def-000000000003"

static char err[512];
#define E err, sizeof(err)

#define OK(call)                                                          \
    do {                                                                  \
        int rc_ = (call);                                                 \
        if (rc_ != AOS_DB_OK)                                             \
            fail_msg("%s: %s (%s)", #call, aos_db_status_name(rc_), err); \
    } while (0)

/* ---------------------------------------------------------------- helpers */

static void observe(struct aos_journal *j, const char *tenant, const char *rid, int64_t time_ms, int status)
{
    struct aos_http_log_entry e = {
        .time_ms = time_ms,
        .request_id = rid,
        .method = "GET",
        .route = "/api/v1/agents/{id}",
        .status = status,
        .latency_us = 1500,
        .bytes_in = 3,
        .bytes_out = 42,
        .peer_ip = "192.0.2.7",
        .tenant_id = tenant,
        .principal = tenant != NULL ? "user-1" : NULL,
    };
    aos_journal_observer(j, &e);
}

static int64_t count_rows(struct fx *f, const char *tenant)
{
    struct aos_store_tx *tx = NULL;
    struct aos_db_result *res = NULL;
    int64_t n;

    OK(aos_store_begin(f->store, false, &tx, E));
    if (tenant == NULL) {
        OK(aos_store_exec(tx, "SELECT COUNT(*) FROM journal", NULL, 0, &res, E));
    } else {
        struct aos_db_param p[] = {AOS_DB_P_TEXT(tenant)};
        OK(aos_store_exec(tx, "SELECT COUNT(*) FROM journal WHERE tenant_id = $1", p, 1, &res, E));
    }
    n = aos_db_result_int(res, 0, 0);
    aos_db_result_free(res);
    aos_store_rollback(tx);
    return n;
}

static void list_page(struct fx *f, const char *tenant, const char *cursor, size_t limit,
                      struct aos_journal_record **out, size_t *n, char next[AOS_CURSOR_LEN])
{
    struct aos_store_tx *tx = NULL;

    OK(aos_store_begin(f->store, false, &tx, E));
    int rc = aos_store_journal_list(tx, tenant, cursor, limit, out, n, next, E);
    aos_store_rollback(tx);
    if (rc != AOS_DB_OK)
        fail_msg("journal_list: %s (%s)", aos_db_status_name(rc), err);
}

static struct aos_journal *journal_new(struct fx *f, size_t queue, size_t batch)
{
    struct aos_journal_config c = {.queue_size = queue, .batch_size = batch};
    struct aos_journal *j = aos_journal_new(f->store, &c);

    assert_non_null(j);
    return j;
}

/* ---------------------------------------------------------------- tests */

struct producer {
    struct aos_journal *j;
    int id;
};

#define PRODUCERS 4
#define PER_PRODUCER 1000

static void *produce(void *arg)
{
    struct producer *p = arg;
    char rid[32];

    for (int i = 0; i < PER_PRODUCER; i++) {
        snprintf(rid, sizeof(rid), "t%d-%d", p->id, i);
        observe(p->j, TENANT_A, rid, aos_store_now_ms(), 200);
    }
    return NULL;
}

static void test_threads_all_land(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_journal *j = journal_new(f, PRODUCERS * PER_PRODUCER, 0);
    struct aos_journal_stats st;
    struct producer p[PRODUCERS];
    pthread_t t[PRODUCERS];

    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (struct producer){j, i};
        assert_int_equal(pthread_create(&t[i], NULL, produce, &p[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(t[i], NULL);
    aos_journal_sync(j);
    aos_journal_get_stats(j, &st);
    aos_journal_free(j);
    assert_int_equal(st.accepted, PRODUCERS * PER_PRODUCER);
    assert_int_equal(st.written, PRODUCERS * PER_PRODUCER);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(count_rows(f, NULL), PRODUCERS * PER_PRODUCER);
}

static void test_batching(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_journal *j = journal_new(f, 2000, 256);
    struct aos_journal_stats st;

    aos_journal_hold(j, true);
    for (int i = 0; i < 1000; i++)
        observe(j, TENANT_A, "r", 1000 + i, 200);
    aos_journal_get_stats(j, &st);
    assert_int_equal(st.queued, 1000);
    assert_int_equal(st.batches, 0);
    aos_journal_hold(j, false);
    aos_journal_sync(j);
    aos_journal_get_stats(j, &st);
    aos_journal_free(j);
    assert_int_equal(st.written, 1000);
    /* 256 + 256 + 256 + 232: one transaction per batch, not per entry. */
    assert_int_equal(st.batches, 4);
    assert_int_equal(st.failed_batches, 0);
    assert_int_equal(count_rows(f, TENANT_A), 1000);
}

static void test_free_flushes(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_journal *j = journal_new(f, 8192, 0);

    aos_journal_hold(j, true);
    for (int i = 0; i < 5000; i++)
        observe(j, i % 2 ? TENANT_A : TENANT_B, "r", 1000 + i, 200);
    aos_journal_free(j); /* a hold does not keep free() from writing */
    assert_int_equal(count_rows(f, NULL), 5000);
    assert_int_equal(count_rows(f, TENANT_A), 2500);
}

static void test_queue_full_drops_oldest(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_journal *j = journal_new(f, 4, 0);
    struct aos_journal_stats st;
    struct aos_journal_record *items = NULL;
    char next[AOS_CURSOR_LEN], rid[16];
    size_t n = 0;

    aos_journal_hold(j, true);
    for (int i = 0; i < 10; i++) {
        snprintf(rid, sizeof(rid), "r%d", i);
        observe(j, TENANT_A, rid, 1000 + i, 200);
    }
    aos_journal_get_stats(j, &st);
    assert_int_equal(st.dropped, 6);
    assert_int_equal(st.queued, 4);
    aos_journal_hold(j, false);
    aos_journal_sync(j);
    aos_journal_get_stats(j, &st);
    aos_journal_free(j);
    assert_int_equal(st.written, 4);
    assert_int_equal(st.accepted, 10);
    list_page(f, TENANT_A, NULL, 100, &items, &n, next);
    assert_int_equal(n, 4);
    /* Newest first, and the survivors are the newest four. */
    assert_string_equal(items[0].request_id, "r9");
    assert_string_equal(items[3].request_id, "r6");
    free(items);
}

static void test_tenants_and_fields(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_journal *j = journal_new(f, 0, 0);
    struct aos_journal_stats st;
    struct aos_journal_record *items = NULL;
    char next[AOS_CURSOR_LEN];
    size_t n = 0;

    observe(j, TENANT_A, "a1", 1000, 200);
    observe(j, TENANT_A, "a2", 1001, 404);
    observe(j, TENANT_A, "a3", 1002, 500);
    observe(j, TENANT_B, "b1", 1003, 201);
    observe(j, TENANT_B, "b2", 1004, 403);
    observe(j, NULL, "anon1", 1005, 401);
    observe(j, "", "anon2", 1006, 401);
    observe(j, TENANT_UNKNOWN, "x1", 1007, 200);
    observe(j, "not-a-uuid", "x2", 1008, 200);
    /* A refused request: no pattern; odd bytes in the request id. */
    struct aos_http_log_entry e = {.time_ms = 1009,
                                   .request_id = "id\x01\xc3\xa9",
                                   .method = "POST",
                                   .route = NULL,
                                   .status = 413,
                                   .tenant_id = TENANT_A};
    aos_journal_observer(j, &e);
    aos_journal_sync(j);
    aos_journal_get_stats(j, &st);
    aos_journal_free(j);
    assert_int_equal(st.unattributed, 2);
    assert_int_equal(st.rejected, 2);
    assert_int_equal(st.written, 6);

    list_page(f, TENANT_A, NULL, 100, &items, &n, next);
    assert_int_equal(n, 4);
    assert_string_equal(next, "");
    for (size_t i = 0; i < n; i++)
        assert_string_equal(items[i].tenant_id, TENANT_A);
    assert_string_equal(items[0].request_id, "id???");
    assert_string_equal(items[0].route, "-");
    assert_string_equal(items[0].principal, "");
    assert_string_equal(items[0].client_ip, "");
    assert_int_equal(items[0].status, 413);
    assert_string_equal(items[1].request_id, "a3");
    assert_string_equal(items[1].method, "GET");
    assert_string_equal(items[1].route, "/api/v1/agents/{id}");
    assert_string_equal(items[1].principal, "user-1");
    assert_string_equal(items[1].client_ip, "192.0.2.7");
    assert_int_equal(items[1].status, 500);
    assert_int_equal(items[1].latency_us, 1500);
    assert_int_equal(items[1].bytes_in, 3);
    assert_int_equal(items[1].bytes_out, 42);
    assert_int_equal(items[1].time_ms, 1002);
    free(items);

    list_page(f, TENANT_B, NULL, 100, &items, &n, next);
    assert_int_equal(n, 2);
    assert_string_equal(items[0].request_id, "b2");
    assert_string_equal(items[1].request_id, "b1");
    free(items);

    list_page(f, TENANT_UNKNOWN, NULL, 100, &items, &n, next);
    assert_int_equal(n, 0);
    assert_null(items);
    assert_int_equal(count_rows(f, NULL), 6);
}

static void test_cursor_paging(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_journal *j = journal_new(f, 0, 0);
    struct aos_journal_record *items = NULL;
    char cursor[AOS_CURSOR_LEN] = "", next[AOS_CURSOR_LEN], rid[16];
    bool seen[25] = {false};
    int64_t last_time = INT64_MAX;
    size_t n, total = 0, pages = 0;
    struct aos_store_tx *tx = NULL;

    /* Pairs of equal times: the id breaks ties without loss or repeats. */
    for (int i = 0; i < 25; i++) {
        snprintf(rid, sizeof(rid), "%d", i);
        observe(j, TENANT_A, rid, 5000 + i / 2, 200);
    }
    observe(j, TENANT_B, "other", 5005, 200);
    aos_journal_free(j);
    do {
        list_page(f, TENANT_A, cursor, 10, &items, &n, next);
        pages++;
        for (size_t i = 0; i < n; i++) {
            int k = atoi(items[i].request_id);
            assert_true(k >= 0 && k < 25);
            assert_false(seen[k]);
            seen[k] = true;
            assert_true(items[i].time_ms <= last_time);
            last_time = items[i].time_ms;
        }
        total += n;
        free(items);
        items = NULL;
        snprintf(cursor, sizeof(cursor), "%s", next);
    } while (cursor[0] != '\0');
    assert_int_equal(total, 25);
    assert_int_equal(pages, 3);

    OK(aos_store_begin(f->store, false, &tx, E));
    assert_int_equal(aos_store_journal_list(tx, TENANT_A, "12.x", 10, &items, &n, next, E),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_journal_list(tx, TENANT_A, "abc", 10, &items, &n, next, E), AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_journal_list(tx, TENANT_A, NULL, 0, &items, &n, next, E), AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_journal_list(tx, TENANT_A, NULL, 1001, &items, &n, next, E),
                     AOS_DB_CONSTRAINT);
    aos_store_rollback(tx);
}

static struct aos_journal_record record(const char *tenant, int64_t time_ms)
{
    struct aos_journal_record r;

    memset(&r, 0, sizeof(r));
    snprintf(r.tenant_id, sizeof(r.tenant_id), "%s", tenant);
    r.time_ms = time_ms;
    snprintf(r.request_id, sizeof(r.request_id), "p");
    snprintf(r.method, sizeof(r.method), "GET");
    snprintf(r.route, sizeof(r.route), "/x");
    r.status = 200;
    return r;
}

static void test_prune(void **state)
{
    struct fx *f = fx_get(state);
    int64_t now = aos_store_now_ms(), old = now - 10 * 86400000LL;
    struct aos_journal_record recs[8];
    struct aos_store_tx *tx = NULL;
    size_t inserted = 0, deleted = 0;

    for (int i = 0; i < 5; i++)
        recs[i] = record(i % 2 ? TENANT_A : TENANT_B, old + i);
    for (int i = 5; i < 8; i++)
        recs[i] = record(TENANT_A, now);
    OK(aos_store_begin(f->store, true, &tx, E));
    OK(aos_store_journal_insert(tx, recs, 8, &inserted, E));
    OK(aos_store_commit(tx, E));
    assert_int_equal(inserted, 8);

    size_t expect[] = {2, 2, 1, 0};
    for (size_t k = 0; k < 4; k++) {
        OK(aos_store_begin(f->store, true, &tx, E));
        OK(aos_store_journal_prune(tx, now - 86400000LL, 2, &deleted, E));
        OK(aos_store_commit(tx, E));
        assert_int_equal(deleted, expect[k]);
    }
    assert_int_equal(count_rows(f, NULL), 3);
}

/* The writer applies retention by itself (first pass at start). */
static void test_writer_retention(void **state)
{
    struct fx *f = fx_get(state);
    int64_t now = aos_store_now_ms(), old = now - 10 * 86400000LL;
    struct aos_journal_record recs[5];
    struct aos_store_tx *tx = NULL;
    struct aos_journal_stats st;
    size_t inserted = 0;

    for (int i = 0; i < 5; i++)
        recs[i] = record(TENANT_A, i < 3 ? old : now);
    OK(aos_store_begin(f->store, true, &tx, E));
    OK(aos_store_journal_insert(tx, recs, 5, &inserted, E));
    OK(aos_store_commit(tx, E));

    struct aos_journal_config c = {.retention_days = 1, .prune_chunk = 2};
    struct aos_journal *j = aos_journal_new(f->store, &c);
    assert_non_null(j);
    /* Bounded wait for the writer thread's own schedule (chunks of 2 run
     * back to back): generous, as a slow CI machine needs. */
    for (int i = 0; i < 3000; i++) {
        aos_journal_get_stats(j, &st);
        if (st.pruned >= 3)
            break;
        nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
    }
    aos_journal_free(j);
    assert_int_equal(st.pruned, 3);
    assert_int_equal(count_rows(f, NULL), 2);
}

/* Not a fixture test: stores that cannot work, on no server at all. */

/* A permanent failure (the SQLite file's directory does not exist) costs
 * the rows, counted as rejected; the writer goes on. */
static void test_store_error_rejects(void **state)
{
    struct aos_conf_store c = {0};
    struct aos_journal_stats st;
    struct aos_store *s;
    struct aos_journal *j;

    (void)state;
    c.driver = (char *)"sqlite";
    c.path = (char *)"/nonexistent-aos-dir/sub/aos.db";
    c.pool_size = 1;
    c.busy_timeout = 1;
    s = aos_store_new(&c);
    assert_non_null(s);
    j = aos_journal_new(s, &(struct aos_journal_config){.queue_size = 16});
    assert_non_null(j);
    for (int i = 0; i < 5; i++)
        observe(j, TENANT_A, "r", 1000 + i, 200);
    aos_journal_sync(j);
    aos_journal_get_stats(j, &st);
    aos_journal_free(j);
    aos_store_free(s);
    assert_int_equal(st.written, 0);
    assert_int_equal(st.rejected, 5);
    assert_true(st.failed_batches >= 1);
    assert_int_equal(st.queued, 0);
}

/* A database that is down: the batch is kept and retried, and free()
 * gives up after shutdown_timeout_ms instead of hanging. */
static void test_store_down_bounded_shutdown(void **state)
{
    struct aos_conf_store c = {0};
    struct aos_journal_stats st = {0};
    struct aos_store *s;
    struct aos_journal *j;

    (void)state;
    c.driver = (char *)"pgsql";
    c.conninfo = (char *)"host=127.0.0.1 port=1 dbname=none user=none connect_timeout=2";
    c.pool_size = 1;
    c.busy_timeout = 1;
    s = aos_store_new(&c);
    assert_non_null(s);
    j = aos_journal_new(s, &(struct aos_journal_config){.shutdown_timeout_ms = 300});
    assert_non_null(j);
    for (int i = 0; i < 5; i++)
        observe(j, TENANT_A, "r", 1000 + i, 200);
    for (int i = 0; i < 3000 && st.failed_batches == 0; i++) {
        aos_journal_get_stats(j, &st);
        nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
    }
    assert_true(st.failed_batches >= 1);
    assert_int_equal(st.written + st.rejected, 0);
    assert_int_equal(st.queued, 5); /* kept for a retry, not thrown away */
    aos_journal_free(j);
    aos_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FX_TESTS(test_threads_all_land, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_batching, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_free_flushes, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_queue_full_drops_oldest, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_tenants_and_fields, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_cursor_paging, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_prune, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_writer_retention, fx_setup_two_tenants, fx_teardown),
        cmocka_unit_test(test_store_error_rejects),
        cmocka_unit_test(test_store_down_bounded_shutdown),
    };
    return FX_RUN("journal", tests);
}
