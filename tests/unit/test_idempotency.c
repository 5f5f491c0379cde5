/*
 * Idempotency keys (core/gateway/idempotency.c) on SQLite always and on
 * PostgreSQL when AOS_TEST_PGSQL is set, each test in a private, freshly
 * migrated database (store_fixture.h).  Time is passed explicitly
 * (now_ms), so nothing here depends on the clock; the concurrency tests
 * release 8 threads at a barrier and assert an outcome that must hold
 * whatever the interleaving: exactly one claim.
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

#include "gateway/idempotency.h"
#include "store/migrate.h"
#include "store/ops.h"
#include "store/store.h"
#include "store_fixture.h"

#define TENANT_A FX_TENANT_A
#define TENANT_B FX_TENANT_B
#define MISSING_ID "deadbeef-dead-4eef-8eef-deadbeefdead"

#define T0 INT64_C(1700000000000)
#define WINDOW INT64_C(86400000)
#define LEASE INT64_C(60000)

static char err[512];
#define E err, sizeof(err)

#define OK(call)                                                          \
    do {                                                                  \
        int rc_ = (call);                                                 \
        if (rc_ != AOS_DB_OK)                                             \
            fail_msg("%s: %s (%s)", #call, aos_db_status_name(rc_), err); \
    } while (0)

/* ---------------------------------------------------------------- helpers */

static char fp_a[AOS_IDEM_FINGERPRINT_LEN + 1], fp_b[AOS_IDEM_FINGERPRINT_LEN + 1];

static void fingerprints(void)
{
    aos_idem_fingerprint("POST", "/api/v1/agents", "{\"name\":\"a\"}", 12, fp_a);
    aos_idem_fingerprint("POST", "/api/v1/agents", "{\"name\":\"b\"}", 12, fp_b);
}

static struct aos_idem_request req(const char *tenant, const char *principal, const char *key, const char *fp,
                                   int64_t now)
{
    struct aos_idem_request r;

    memset(&r, 0, sizeof(r));
    r.tenant_id = tenant;
    r.principal = principal;
    r.key = key;
    r.fingerprint = fp;
    r.now_ms = now;
    r.window_ms = WINDOW;
    r.lease_ms = LEASE;
    return r;
}

/* aos_idem_begin's outcome; a REPLAY's response is checked against the
 * expected one (exp_* ignored for other outcomes). */
static int begin_outcome(struct fx *f, const struct aos_idem_request *r, int exp_status, const char *exp_ct,
                         const char *exp_body)
{
    struct aos_idem_stored s;
    int outcome = -1;

    OK(aos_idem_begin(f->store, r, &outcome, &s, E));
    if (outcome == AOS_IDEM_REPLAY) {
        assert_int_equal(s.status, exp_status);
        if (exp_ct == NULL)
            assert_null(s.content_type);
        else
            assert_string_equal(s.content_type, exp_ct);
        assert_non_null(s.body);
        assert_int_equal(s.body_len, strlen(exp_body));
        assert_memory_equal(s.body, exp_body, s.body_len + 1);
    } else {
        assert_null(s.body);
        assert_null(s.content_type);
    }
    aos_idem_stored_clear(&s);
    return outcome;
}

static int64_t count_rows(struct fx *f)
{
    struct aos_store_tx *tx = NULL;
    struct aos_db_result *res = NULL;
    int64_t n;

    OK(aos_store_begin(f->store, false, &tx, E));
    if (aos_store_exec(tx, "SELECT COUNT(*) FROM idempotency", NULL, 0, &res, E) != AOS_DB_OK) {
        aos_store_rollback(tx);
        fail_msg("count: %s", err);
    }
    n = aos_db_result_int(res, 0, 0);
    aos_db_result_free(res);
    aos_store_rollback(tx);
    return n;
}

/* ---------------------------------------------------------------- pure functions */

static void test_key_valid(void **state)
{
    char max[AOS_IDEM_KEY_MAX + 2];

    (void)state;
    assert_true(aos_idem_key_valid("a"));
    assert_true(aos_idem_key_valid("8e03978e-40d5-43e8-bc93-6894a57f9324"));
    assert_true(aos_idem_key_valid("!~{}\"'\\"));
    memset(max, 'k', AOS_IDEM_KEY_MAX);
    max[AOS_IDEM_KEY_MAX] = '\0';
    assert_true(aos_idem_key_valid(max));
    max[AOS_IDEM_KEY_MAX] = 'k';
    max[AOS_IDEM_KEY_MAX + 1] = '\0';
    assert_false(aos_idem_key_valid(max)); /* 256 */
    assert_false(aos_idem_key_valid(NULL));
    assert_false(aos_idem_key_valid(""));
    assert_false(aos_idem_key_valid("a b"));
    assert_false(aos_idem_key_valid("a\tb"));
    assert_false(aos_idem_key_valid("a\x7f"));
    assert_false(aos_idem_key_valid("caf\xc3\xa9"));
}

static void test_fingerprint(void **state)
{
    char a[AOS_IDEM_FINGERPRINT_LEN + 1], b[AOS_IDEM_FINGERPRINT_LEN + 1];

    (void)state;
    /* Pinned: fingerprints are persisted, so the framing (each field as
     * an 8-byte big-endian length then its bytes, SHA-256, lower hex)
     * must never change.  Computed independently with Python hashlib. */
    aos_idem_fingerprint("POST", "/api/v1/agents", "{\"name\":\"x\"}", 12, a);
    assert_string_equal(a, "02000e0b151d11004bff838473a172568e6888fc02fe113c562f831345316efa");
    aos_idem_fingerprint("", "", "", 0, a);
    assert_string_equal(a, "9d908ecfb6b256def8b49a7c504e6c889c4b0e41fe6ce3e01863dd7b61a20aa0");
    aos_idem_fingerprint(NULL, NULL, NULL, 5, b);
    assert_string_equal(a, b);

    /* Field boundaries matter. */
    aos_idem_fingerprint("a", "bc", "", 0, a);
    aos_idem_fingerprint("ab", "c", "", 0, b);
    assert_string_not_equal(a, b);
    aos_idem_fingerprint("POST", "/x", "y", 1, a);
    aos_idem_fingerprint("POST", "/xy", "", 0, b);
    assert_string_not_equal(a, b);
    /* Only len bytes of the body count; a NUL inside it counts. */
    aos_idem_fingerprint("POST", "/x", "abcdef", 3, a);
    aos_idem_fingerprint("POST", "/x", "abc", 3, b);
    assert_string_equal(a, b);
    aos_idem_fingerprint("POST", "/x", "ab\0c", 4, a);
    aos_idem_fingerprint("POST", "/x", "ab\0d", 4, b);
    assert_string_not_equal(a, b);
    assert_int_equal(strlen(a), AOS_IDEM_FINGERPRINT_LEN);
}

/* ---------------------------------------------------------------- begin / complete */

static void test_proceed_complete_replay(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_idem_request r;
    static const char body[] = "{\"id\":\"42\",\"name\":\"caf\xc3\xa9\"}\n";

    fingerprints();
    r = req(TENANT_A, "user-1", "key-1", fp_a, T0);
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_PROCEED);
    r.now_ms = T0 + 10;
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_IN_PROGRESS);
    OK(aos_idem_complete(f->store, &r, 201, "application/json", body, strlen(body), E));
    /* Completing twice: the claim is gone. */
    assert_int_equal(aos_idem_complete(f->store, &r, 201, "application/json", body, strlen(body), E),
                     AOS_DB_NOT_FOUND);
    r.now_ms = T0 + 20;
    assert_int_equal(begin_outcome(f, &r, 201, "application/json", body), AOS_IDEM_REPLAY);
    /* Still replayed just before the window ends. */
    r.now_ms = T0 + WINDOW - 1;
    assert_int_equal(begin_outcome(f, &r, 201, "application/json", body), AOS_IDEM_REPLAY);

    /* 5xx responses are replayed too; no content type, empty body. */
    r = req(TENANT_A, "user-1", "key-2", fp_a, T0);
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_PROCEED);
    OK(aos_idem_complete(f->store, &r, 503, NULL, NULL, 0, E));
    assert_int_equal(begin_outcome(f, &r, 503, NULL, ""), AOS_IDEM_REPLAY);
    assert_int_equal(count_rows(f), 2);
}

static void test_mismatch(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_idem_request r, other;

    fingerprints();
    r = req(TENANT_A, "user-1", "key-1", fp_a, T0);
    other = req(TENANT_A, "user-1", "key-1", fp_b, T0 + 1);
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_PROCEED);
    /* Another request under the key: 422 before 409. */
    assert_int_equal(begin_outcome(f, &other, 0, NULL, NULL), AOS_IDEM_MISMATCH);
    /* ... and it cannot complete or release the first one's claim. */
    assert_int_equal(aos_idem_complete(f->store, &other, 200, "application/json", "{}", 2, E),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(aos_idem_release(f->store, &other, E), AOS_DB_NOT_FOUND);
    OK(aos_idem_complete(f->store, &r, 200, "application/json", "{}", 2, E));
    assert_int_equal(begin_outcome(f, &other, 0, NULL, NULL), AOS_IDEM_MISMATCH);
    assert_int_equal(begin_outcome(f, &r, 200, "application/json", "{}"), AOS_IDEM_REPLAY);
}

static void test_lease_takeover(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_idem_request r;

    fingerprints();
    r = req(TENANT_A, "user-1", "key-1", fp_a, T0);
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_PROCEED);
    r.now_ms = T0 + LEASE - 1;
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_IN_PROGRESS);
    /* The lease lapses at T0 + LEASE: the next request takes over... */
    r.now_ms = T0 + LEASE;
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_PROCEED);
    /* ... with a fresh lease of its own. */
    r.now_ms = T0 + 2 * LEASE - 1;
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_IN_PROGRESS);
    OK(aos_idem_complete(f->store, &r, 200, "application/json", "{\"n\":2}", 7, E));
    /* The first (dead) request completing late finds no claim. */
    assert_int_equal(aos_idem_complete(f->store, &r, 200, "application/json", "{\"n\":1}", 7, E),
                     AOS_DB_NOT_FOUND);
    r.now_ms = T0 + 3 * LEASE;
    assert_int_equal(begin_outcome(f, &r, 200, "application/json", "{\"n\":2}"), AOS_IDEM_REPLAY);
}

static void test_expired_replaced(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_idem_request r, other;

    fingerprints();
    r = req(TENANT_A, "user-1", "key-1", fp_a, T0);
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_PROCEED);
    OK(aos_idem_complete(f->store, &r, 201, "application/json", "{\"v\":1}", 7, E));
    /* At expiry another request may use the key: no 422, a new claim. */
    other = req(TENANT_A, "user-1", "key-1", fp_b, T0 + WINDOW);
    assert_int_equal(begin_outcome(f, &other, 0, NULL, NULL), AOS_IDEM_PROCEED);
    other.now_ms = T0 + WINDOW + 1;
    assert_int_equal(begin_outcome(f, &other, 0, NULL, NULL), AOS_IDEM_IN_PROGRESS);
    r.now_ms = T0 + WINDOW + 1;
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_MISMATCH);
    OK(aos_idem_complete(f->store, &other, 400, "application/problem+json", "{\"v\":2}", 7, E));
    other.now_ms = T0 + 2 * WINDOW - 1; /* the window restarted with the new claim */
    assert_int_equal(begin_outcome(f, &other, 400, "application/problem+json", "{\"v\":2}"), AOS_IDEM_REPLAY);

    /* An expired claim still in progress is replaced as well. */
    r = req(TENANT_A, "user-1", "key-2", fp_a, T0);
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_PROCEED);
    other = req(TENANT_A, "user-1", "key-2", fp_b, T0 + WINDOW);
    assert_int_equal(begin_outcome(f, &other, 0, NULL, NULL), AOS_IDEM_PROCEED);
    assert_int_equal(count_rows(f), 2);
}

static void test_scope(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_idem_request a1, a2, b1;

    fingerprints();
    a1 = req(TENANT_A, "user-1", "shared-key", fp_a, T0);
    a2 = req(TENANT_A, "user-2", "shared-key", fp_b, T0);
    b1 = req(TENANT_B, "user-1", "shared-key", fp_b, T0);
    assert_int_equal(begin_outcome(f, &a1, 0, NULL, NULL), AOS_IDEM_PROCEED);
    assert_int_equal(begin_outcome(f, &a2, 0, NULL, NULL), AOS_IDEM_PROCEED);
    assert_int_equal(begin_outcome(f, &b1, 0, NULL, NULL), AOS_IDEM_PROCEED);
    OK(aos_idem_complete(f->store, &a1, 201, "application/json", "\"a1\"", 4, E));
    OK(aos_idem_complete(f->store, &a2, 202, "application/json", "\"a2\"", 4, E));
    assert_int_equal(begin_outcome(f, &a1, 201, "application/json", "\"a1\""), AOS_IDEM_REPLAY);
    assert_int_equal(begin_outcome(f, &a2, 202, "application/json", "\"a2\""), AOS_IDEM_REPLAY);
    assert_int_equal(begin_outcome(f, &b1, 0, NULL, NULL), AOS_IDEM_IN_PROGRESS);
    /* Tenant ids are compared as UUIDs (any case). */
    b1.tenant_id = "0B9A5C1E-2D3F-4A6B-8C7D-9E0F1A2B3C4D";
    assert_int_equal(begin_outcome(f, &b1, 0, NULL, NULL), AOS_IDEM_IN_PROGRESS);
    assert_int_equal(count_rows(f), 3);
}

static void test_bad_input(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_idem_request r;
    struct aos_idem_stored s;
    int outcome;

    fingerprints();
    r = req(MISSING_ID, "user-1", "key-1", fp_a, T0);
    assert_int_equal(aos_idem_begin(f->store, &r, &outcome, &s, E), AOS_DB_CONSTRAINT);
    assert_null(s.body);
    r.tenant_id = "not-a-uuid";
    assert_int_equal(aos_idem_begin(f->store, &r, &outcome, &s, E), AOS_DB_CONSTRAINT);
    r = req(TENANT_A, "user-1", "bad key", fp_a, T0);
    assert_int_equal(aos_idem_begin(f->store, &r, &outcome, &s, E), AOS_DB_ERROR);
    r = req(TENANT_A, "user-1", "key-1", "", T0); /* what an OOM fingerprint looks like */
    assert_int_equal(aos_idem_begin(f->store, &r, &outcome, &s, E), AOS_DB_ERROR);
    r = req(TENANT_A, "", "key-1", fp_a, T0);
    assert_int_equal(aos_idem_begin(f->store, &r, &outcome, &s, E), AOS_DB_ERROR);
    r = req(TENANT_A, "user-1", "key-1", fp_a, T0);
    r.lease_ms = 0;
    assert_int_equal(aos_idem_begin(f->store, &r, &outcome, &s, E), AOS_DB_ERROR);
    r.lease_ms = LEASE;
    r.window_ms = INT64_MAX;
    assert_int_equal(aos_idem_begin(f->store, &r, &outcome, &s, E), AOS_DB_ERROR);
    assert_int_equal(count_rows(f), 0);

    /* A body with a NUL byte is refused and the claim left in progress;
     * releasing it lets the retry run at once. */
    r = req(TENANT_A, "user-1", "key-1", fp_a, T0);
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_PROCEED);
    assert_int_equal(aos_idem_complete(f->store, &r, 200, "application/octet-stream", "a\0b", 3, E),
                     AOS_DB_ERROR);
    assert_int_equal(aos_idem_complete(f->store, &r, 1000, "application/json", "{}", 2, E), AOS_DB_ERROR);
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_IN_PROGRESS);
    OK(aos_idem_release(f->store, &r, E));
    assert_int_equal(aos_idem_release(f->store, &r, E), AOS_DB_NOT_FOUND);
    assert_int_equal(count_rows(f), 0);
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_PROCEED);
    /* A completed record cannot be released. */
    OK(aos_idem_complete(f->store, &r, 200, "application/json", "{}", 2, E));
    assert_int_equal(aos_idem_release(f->store, &r, E), AOS_DB_NOT_FOUND);
}

/* ---------------------------------------------------------------- concurrency */

#define NTHREADS 8

struct racer {
    struct fx *f;
    pthread_barrier_t *barrier;
    struct aos_idem_request r;
    int rc;
    int outcome;
    int status;
    char err[512];
};

static void *race(void *arg)
{
    struct racer *x = arg;
    struct aos_idem_stored s;

    pthread_barrier_wait(x->barrier);
    x->rc = aos_idem_begin(x->f->store, &x->r, &x->outcome, &s, x->err, sizeof(x->err));
    x->status = s.status;
    aos_idem_stored_clear(&s);
    return NULL;
}

/* Fires NTHREADS identical begins at once; counts[outcome] gets the tally. */
static void race_round(struct fx *f, const struct aos_idem_request *r, int counts[4])
{
    pthread_t th[NTHREADS];
    struct racer x[NTHREADS];
    pthread_barrier_t barrier;
    int i;

    memset(counts, 0, 4 * sizeof(int));
    assert_int_equal(pthread_barrier_init(&barrier, NULL, NTHREADS), 0);
    for (i = 0; i < NTHREADS; i++) {
        memset(&x[i], 0, sizeof(x[i]));
        x[i].f = f;
        x[i].barrier = &barrier;
        x[i].r = *r;
        x[i].outcome = -1;
        assert_int_equal(pthread_create(&th[i], NULL, race, &x[i]), 0);
    }
    for (i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    for (i = 0; i < NTHREADS; i++) {
        if (x[i].rc != AOS_DB_OK)
            fail_msg("thread %d: %s (%s)", i, aos_db_status_name(x[i].rc), x[i].err);
        assert_in_range(x[i].outcome, 0, 3);
        counts[x[i].outcome]++;
        if (x[i].outcome == AOS_IDEM_REPLAY)
            assert_int_equal(x[i].status, 201);
    }
}

static void test_concurrent_duplicates(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_idem_request r;
    int counts[4];

    fingerprints();
    /* A new key: one claim, every other duplicate sees it running. */
    r = req(TENANT_A, "user-1", "race-key", fp_a, T0);
    race_round(f, &r, counts);
    assert_int_equal(counts[AOS_IDEM_PROCEED], 1);
    assert_int_equal(counts[AOS_IDEM_IN_PROGRESS], NTHREADS - 1);

    /* A lapsed lease: exactly one takes it over. */
    r.now_ms = T0 + LEASE;
    race_round(f, &r, counts);
    assert_int_equal(counts[AOS_IDEM_PROCEED], 1);
    assert_int_equal(counts[AOS_IDEM_IN_PROGRESS], NTHREADS - 1);

    /* Completed: everyone replays. */
    OK(aos_idem_complete(f->store, &r, 201, "application/json", "{}", 2, E));
    r.now_ms = T0 + LEASE + 1;
    race_round(f, &r, counts);
    assert_int_equal(counts[AOS_IDEM_REPLAY], NTHREADS);

    /* Expired: exactly one replaces it. */
    r.now_ms = T0 + WINDOW;
    race_round(f, &r, counts);
    assert_int_equal(counts[AOS_IDEM_PROCEED], 1);
    assert_int_equal(counts[AOS_IDEM_IN_PROGRESS], NTHREADS - 1);
    assert_int_equal(count_rows(f), 1);
}

/* ---------------------------------------------------------------- prune */

static void test_prune(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_idem_request r;
    size_t deleted = 99;
    char key[32];
    int i;

    fingerprints();
    /* key-0..key-4 claimed at T0 (expire at T0+WINDOW), key-5..key-6 an
     * hour later; one in another tenant. */
    for (i = 0; i < 7; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        r = req(i == 4 ? TENANT_B : TENANT_A, "user-1", key, fp_a, i < 5 ? T0 : T0 + 3600000);
        assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_PROCEED);
        if (i % 2 == 0)
            OK(aos_idem_complete(f->store, &r, 200, "application/json", "{}", 2, E));
    }
    OK(aos_idem_prune(f->store, T0 + WINDOW - 1, 100, &deleted, E));
    assert_int_equal(deleted, 0);
    OK(aos_idem_prune(f->store, T0 + WINDOW, 0, &deleted, E));
    assert_int_equal(deleted, 0);
    assert_int_equal(count_rows(f), 7);

    /* Bounded chunks: 2 + 2 + 1 of the 5 expired records. */
    OK(aos_idem_prune(f->store, T0 + WINDOW, 2, &deleted, E));
    assert_int_equal(deleted, 2);
    OK(aos_idem_prune(f->store, T0 + WINDOW, 2, &deleted, E));
    assert_int_equal(deleted, 2);
    OK(aos_idem_prune(f->store, T0 + WINDOW, 2, &deleted, E));
    assert_int_equal(deleted, 1);
    OK(aos_idem_prune(f->store, T0 + WINDOW, 2, &deleted, E));
    assert_int_equal(deleted, 0);
    assert_int_equal(count_rows(f), 2);

    /* The survivors are intact: key-6 completed, key-5 still running. */
    r = req(TENANT_A, "user-1", "key-6", fp_a, T0 + WINDOW);
    assert_int_equal(begin_outcome(f, &r, 200, "application/json", "{}"), AOS_IDEM_REPLAY);
    r = req(TENANT_A, "user-1", "key-5", fp_a, T0 + 3600000 + 1);
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_IN_PROGRESS);
    /* A pruned key is new again. */
    r = req(TENANT_A, "user-1", "key-0", fp_b, T0 + WINDOW);
    assert_int_equal(begin_outcome(f, &r, 0, NULL, NULL), AOS_IDEM_PROCEED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_valid),
        cmocka_unit_test(test_fingerprint),
        FX_TESTS(test_proceed_complete_replay, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_mismatch, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_lease_takeover, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_expired_replaced, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_scope, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_bad_input, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_concurrent_duplicates, fx_setup_two_tenants, fx_teardown),
        FX_TESTS(test_prune, fx_setup_two_tenants, fx_teardown),
    };

    return FX_RUN("idempotency", tests);
}
