/*
 * The store conformance suite: every typed operation of core/store/ops.h
 * on SQLite always and on PostgreSQL when AOS_TEST_PGSQL is set, each test
 * in a private, freshly migrated database (store_fixture.h).  Both drivers
 * must give the same answers: tenant isolation (another tenant's rows are
 * NOT_FOUND and never listed), rollback leaves nothing, concurrent writers
 * lose no update, config-driven tenant sync.
 */
#include "config.h"

/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "store/migrate.h"
#include "store/ops.h"
#include "store/store.h"
#include "store_fixture.h"

#define TENANT_A "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f"
#define TENANT_B "0b9a5c1e-2d3f-4a6b-8c7d-9e0f1a2b3c4d"
#define TENANT_C "c0ffee00-1234-4abc-9def-000000000003"
#define MISSING_ID "deadbeef-dead-4eef-8eef-deadbeefdead"

static char *plugins_ab[] = {(char *)"agent-echo", (char *)"connector-llm"};

static struct aos_conf_tenant conf_tenant(const char *id, const char *name)
{
    struct aos_conf_tenant t;

    memset(&t, 0, sizeof(t));
    snprintf(t.id, sizeof(t.id), "%s", id);
    t.name = (char *)name;
    t.read.per_minute = 300;
    t.read.burst = 60;
    t.write.per_minute = 100;
    t.write.burst = 30;
    t.autonomy = (char *)"supervised";
    return t;
}

/* ---------------------------------------------------------------- helpers */

/* The test's open transaction: a failing assertion jumps out of the test,
 * and teardown rolls it back before closing the store. */
static struct aos_store_tx *open_tx;

static struct aos_store_tx *begin(struct fx *f)
{
    struct aos_store_tx *tx = NULL;
    char e[512] = "";

    if (aos_store_begin(f->store, true, &tx, e, sizeof(e)) != AOS_DB_OK)
        fail_msg("begin: %s", e);
    open_tx = tx;
    return tx;
}

static void commit(struct aos_store_tx *tx)
{
    char e[512] = "";

    open_tx = NULL;
    if (aos_store_commit(tx, e, sizeof(e)) != AOS_DB_OK)
        fail_msg("commit: %s", e);
}

static void rollback(struct aos_store_tx *tx)
{
    open_tx = NULL;
    aos_store_rollback(tx);
}

/* Operations report into this buffer (the test's thread only). */
static char err[512];
#define E err, sizeof(err)

#define OK(call)                                                          \
    do {                                                                  \
        int rc_ = (call);                                                 \
        if (rc_ != AOS_DB_OK)                                             \
            fail_msg("%s: %s (%s)", #call, aos_db_status_name(rc_), err); \
    } while (0)

static int setup(void **state)
{
    struct fx *f = *state;
    struct aos_store_tx *tx = NULL;
    struct aos_conf_tenant t[2];

    if (fx_open(f) != 0)
        return -1;
    if (!f->enabled)
        return 0;
    if (aos_migrate_up(f->store, 0, NULL, NULL, E) != AOS_DB_OK) {
        fprintf(stderr, "# migrate: %s\n", err);
        return -1;
    }
    t[0] = conf_tenant(TENANT_A, "acme");
    t[1] = conf_tenant(TENANT_B, "globex");
    if (aos_store_begin(f->store, true, &tx, E) != AOS_DB_OK ||
        aos_store_tenants_sync(tx, t, 2, E) != AOS_DB_OK || aos_store_commit(tx, E) != AOS_DB_OK) {
        fprintf(stderr, "# tenants: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    if (open_tx != NULL) {
        aos_store_rollback(open_tx);
        open_tx = NULL;
    }
    fx_close(*state);
    return 0;
}

static void user_add(struct fx *f, const char *tenant, const char *email, const char *role,
                     char id[AOS_ID_LEN])
{
    struct aos_store_tx *tx = begin(f);

    OK(aos_store_user_create(tx, tenant, email, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", role, id, E));
    commit(tx);
}

static void key_add(struct fx *f, const char *tenant, const char *user_id, const char *prefix,
                    char id[AOS_ID_LEN])
{
    struct aos_store_tx *tx = begin(f);
    struct aos_api_key_spec spec = {
        user_id, user_id ? "laptop" : "billing-service", prefix, "sha256:0123", "user", 0};

    OK(aos_store_apikey_create(tx, tenant, &spec, id, E));
    commit(tx);
}

static void json_expect_int(struct json_object *root, const char *a, const char *b, const char *c,
                            int64_t want)
{
    struct json_object *o = root, *n;

    assert_true(json_object_object_get_ex(o, a, &n));
    o = n;
    assert_true(json_object_object_get_ex(o, b, &n));
    o = n;
    if (c != NULL) {
        assert_true(json_object_object_get_ex(o, c, &n));
        o = n;
    }
    assert_int_equal(json_object_get_int64(o), want);
}

/* ---------------------------------------------------------------- tenants */

static void test_tenants_sync(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_tenant_sync_stats st;
    struct aos_conf_tenant t[3];
    struct aos_store_tx *tx;
    struct aos_tenant a, b, *list = NULL;
    struct json_object *settings;
    size_t n;
    int64_t a_updated;

    /* Setup synced A and B: both active, with their settings. */
    tx = begin(f);
    OK(aos_store_tenant_get(tx, TENANT_A, &a, E));
    assert_string_equal(a.id, TENANT_A);
    assert_string_equal(a.name, "acme");
    assert_true(a.active);
    assert_true(a.created_at > 0 && a.updated_at == a.created_at);
    settings = json_tokener_parse(a.settings);
    assert_non_null(settings);
    json_expect_int(settings, "limits", "read", "per_minute", 300);
    json_expect_int(settings, "limits", "write", "burst", 30);
    json_expect_int(settings, "budgets", "tokens_day", NULL, 0);
    json_object_put(settings);
    a_updated = a.updated_at;
    aos_tenant_clear(&a);

    /* Idempotent: the same config again changes nothing, not even updated_at. */
    t[0] = conf_tenant(TENANT_A, "acme");
    t[1] = conf_tenant(TENANT_B, "globex");
    OK(aos_store_tenants_sync_stats(tx, t, 2, &st, E));
    assert_int_equal(st.added, 0);
    assert_int_equal(st.updated, 0);
    assert_int_equal(st.unchanged, 2);
    assert_int_equal(st.deactivated, 0);
    OK(aos_store_tenant_get(tx, TENANT_A, &a, E));
    assert_int_equal(a.updated_at, a_updated);
    aos_tenant_clear(&a);

    /* Budgets, plugins, autonomy and a rename of B: stored. */
    t[1].name = (char *)"globex-corp";
    t[1].budget_micro_usd_day = 5000000;
    t[1].plugins = plugins_ab;
    t[1].nplugins = 2;
    t[1].autonomy = (char *)"autonomous";
    OK(aos_store_tenants_sync_stats(tx, t, 2, &st, E));
    assert_int_equal(st.updated, 1);
    assert_int_equal(st.unchanged, 1);
    OK(aos_store_tenant_get(tx, TENANT_B, &b, E));
    assert_string_equal(b.name, "globex-corp");
    settings = json_tokener_parse(b.settings);
    assert_non_null(settings);
    json_expect_int(settings, "budgets", "micro_usd_day", NULL, 5000000);
    struct json_object *pl, *au;
    assert_true(json_object_object_get_ex(settings, "plugins", &pl));
    assert_int_equal(json_object_array_length(pl), 2);
    assert_string_equal(json_object_get_string(json_object_array_get_idx(pl, 1)), "connector-llm");
    assert_true(json_object_object_get_ex(settings, "autonomy", &au));
    assert_string_equal(json_object_get_string(au), "autonomous");
    json_object_put(settings);
    aos_tenant_clear(&b);

    /* Names swapped between two tenants in one sync. */
    t[0].name = (char *)"globex-corp";
    t[1].name = (char *)"acme";
    OK(aos_store_tenants_sync_stats(tx, t, 2, &st, E));
    assert_int_equal(st.updated, 2);
    OK(aos_store_tenant_get(tx, TENANT_A, &a, E));
    OK(aos_store_tenant_get(tx, TENANT_B, &b, E));
    assert_string_equal(a.name, "globex-corp");
    assert_string_equal(b.name, "acme");
    aos_tenant_clear(&a);
    aos_tenant_clear(&b);

    /* B leaves the config: deactivated, kept; a new tenant C takes B's name. */
    t[1] = conf_tenant(TENANT_C, "acme");
    OK(aos_store_tenants_sync_stats(tx, t, 2, &st, E));
    assert_int_equal(st.added, 1);
    assert_int_equal(st.deactivated, 1);
    assert_int_equal(st.unchanged, 1);
    OK(aos_store_tenant_get(tx, TENANT_B, &b, E));
    assert_false(b.active);
    aos_tenant_clear(&b);
    OK(aos_store_tenant_list(tx, false, &list, &n, E));
    assert_int_equal(n, 2);
    assert_string_equal(list[0].name, "acme");
    assert_string_equal(list[0].id, TENANT_C);
    assert_string_equal(list[1].id, TENANT_A);
    aos_tenants_free(list, n);
    OK(aos_store_tenant_list(tx, true, &list, &n, E));
    assert_int_equal(n, 3);
    aos_tenants_free(list, n);

    /* Deactivating twice counts once; B coming back is reactivated. */
    OK(aos_store_tenants_sync_stats(tx, t, 2, &st, E));
    assert_int_equal(st.deactivated, 0);
    assert_int_equal(st.unchanged, 2);
    t[0] = conf_tenant(TENANT_B, "globex");
    t[1] = conf_tenant(TENANT_C, "acme");
    OK(aos_store_tenants_sync_stats(tx, t, 2, &st, E));
    assert_int_equal(st.updated, 1);
    assert_int_equal(st.deactivated, 1);
    OK(aos_store_tenant_get(tx, TENANT_B, &b, E));
    assert_true(b.active);
    assert_string_equal(b.name, "globex");
    aos_tenant_clear(&b);

    /* An empty config deactivates everyone and deletes nothing. */
    OK(aos_store_tenants_sync_stats(tx, NULL, 0, &st, E));
    assert_int_equal(st.deactivated, 2);
    OK(aos_store_tenant_list(tx, false, &list, &n, E));
    assert_int_equal(n, 0);
    assert_null(list);
    OK(aos_store_tenant_list(tx, true, &list, &n, E));
    assert_int_equal(n, 3);
    aos_tenants_free(list, n);

    /* Upper-case ids are the same tenant; unknown and malformed are NOT_FOUND. */
    OK(aos_store_tenant_get(tx, "6F1C2A4E-9B7D-4C3A-8E2F-1A2B3C4D5E6F", &a, E));
    assert_string_equal(a.id, TENANT_A);
    aos_tenant_clear(&a);
    assert_int_equal(aos_store_tenant_get(tx, MISSING_ID, &a, E), AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_tenant_get(tx, "not-a-uuid", &a, E), AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_tenant_get(tx, NULL, &a, E), AOS_DB_NOT_FOUND);

    /* A malformed configured id is refused, with nothing half-done. */
    t[0] = conf_tenant("nope", "x");
    assert_int_equal(aos_store_tenants_sync(tx, t, 1, E), AOS_DB_CONSTRAINT);
    commit(tx);
}

/* ---------------------------------------------------------------- users */

static void test_users(void **state)
{
    struct fx *f = fx_get(state);
    char id[AOS_ID_LEN], id2[AOS_ID_LEN], upper[AOS_ID_LEN];
    struct aos_store_tx *tx;
    struct aos_user u;
    size_t i;

    user_add(f, TENANT_A, "ada@example.com", "admin", id);
    assert_int_equal(strlen(id), 36);

    tx = begin(f);
    OK(aos_store_user_get(tx, TENANT_A, id, &u, E));
    assert_string_equal(u.id, id);
    assert_string_equal(u.tenant_id, TENANT_A);
    assert_string_equal(u.email, "ada@example.com");
    assert_string_equal(u.role, "admin");
    assert_non_null(u.password_hash);
    assert_string_equal(u.password_hash, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
    assert_true(u.created_at > 0);
    aos_user_clear(&u);
    assert_null(u.email);

    OK(aos_store_user_get_by_email(tx, TENANT_A, "ada@example.com", &u, E));
    assert_string_equal(u.id, id);
    aos_user_clear(&u);
    for (i = 0; i < 36; i++)
        upper[i] = (char)toupper((unsigned char)id[i]);
    upper[36] = '\0';
    OK(aos_store_user_get(tx, TENANT_A, upper, &u, E));
    assert_string_equal(u.id, id);
    aos_user_clear(&u);

    /* Duplicate email in the tenant, unknown role, unknown tenant. */
    assert_int_equal(aos_store_user_create(tx, TENANT_A, "ada@example.com", NULL, "user", id2, E),
                     AOS_DB_CONSTRAINT);
    rollback(tx); /* PostgreSQL: the failed statement ended the transaction */
    tx = begin(f);
    assert_int_equal(aos_store_user_create(tx, TENANT_A, "bob@example.com", NULL, "root", id2, E),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_user_create(tx, TENANT_A, "", NULL, "user", id2, E), AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_user_create(tx, MISSING_ID, "bob@example.com", NULL, "user", id2, E),
                     AOS_DB_CONSTRAINT);
    rollback(tx);

    /* A user without a password (another backend) and role/hash changes. */
    tx = begin(f);
    OK(aos_store_user_create(tx, TENANT_A, "bob@example.com", NULL, "user", id2, E));
    OK(aos_store_user_get(tx, TENANT_A, id2, &u, E));
    assert_null(u.password_hash);
    aos_user_clear(&u);
    OK(aos_store_user_set_role(tx, TENANT_A, id2, "approver", E));
    OK(aos_store_user_set_password_hash(tx, TENANT_A, id2, "$argon2id$new", E));
    OK(aos_store_user_get(tx, TENANT_A, id2, &u, E));
    assert_string_equal(u.role, "approver");
    assert_string_equal(u.password_hash, "$argon2id$new");
    assert_true(u.updated_at >= u.created_at);
    aos_user_clear(&u);
    assert_int_equal(aos_store_user_set_role(tx, TENANT_A, id2, "superuser", E), AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_user_set_role(tx, TENANT_A, MISSING_ID, "user", E), AOS_DB_NOT_FOUND);

    /* Delete: gone, and a second delete is NOT_FOUND. */
    OK(aos_store_user_delete(tx, TENANT_A, id2, E));
    assert_int_equal(aos_store_user_get(tx, TENANT_A, id2, &u, E), AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_user_get_by_email(tx, TENANT_A, "bob@example.com", &u, E), AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_user_delete(tx, TENANT_A, id2, E), AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_user_get(tx, TENANT_A, "garbage", &u, E), AOS_DB_NOT_FOUND);
    commit(tx);
}

static void test_users_list_paging(void **state)
{
    struct fx *f = fx_get(state);
    char ids[7][AOS_ID_LEN], cursor[AOS_CURSOR_LEN] = "", next[AOS_CURSOR_LEN];
    struct aos_store_tx *tx;
    struct aos_user *page;
    size_t n, seen = 0, pages = 0, i, j;
    bool found[7] = {false};

    for (i = 0; i < 7; i++) {
        char email[64];
        snprintf(email, sizeof(email), "user%zu@example.com", i);
        user_add(f, TENANT_A, email, "user", ids[i]);
    }
    user_add(f, TENANT_B, "other@example.com", "user", next); /* never in A's pages */

    tx = begin(f);
    int64_t last_ts = 0;
    char last_id[AOS_ID_LEN] = "";
    do {
        OK(aos_store_user_list(tx, TENANT_A, cursor, 3, &page, &n, next, E));
        pages++;
        for (i = 0; i < n; i++) {
            assert_string_equal(page[i].tenant_id, TENANT_A);
            assert_null(page[i].password_hash); /* lists never carry hashes */
            /* strictly increasing (created_at, id) */
            assert_true(page[i].created_at > last_ts ||
                        (page[i].created_at == last_ts && strcmp(page[i].id, last_id) > 0));
            last_ts = page[i].created_at;
            snprintf(last_id, sizeof(last_id), "%s", page[i].id);
            for (j = 0; j < 7; j++)
                if (strcmp(page[i].id, ids[j]) == 0) {
                    assert_false(found[j]);
                    found[j] = true;
                }
            seen++;
        }
        aos_users_free(page, n);
        snprintf(cursor, sizeof(cursor), "%s", next);
    } while (cursor[0] != '\0' && pages < 10);
    assert_int_equal(pages, 3);
    assert_int_equal(seen, 7);
    for (j = 0; j < 7; j++)
        assert_true(found[j]);

    /* Exactly one full page: no next cursor. */
    OK(aos_store_user_list(tx, TENANT_B, NULL, 1, &page, &n, next, E));
    assert_int_equal(n, 1);
    assert_string_equal(next, "");
    aos_users_free(page, n);

    assert_int_equal(aos_store_user_list(tx, TENANT_A, "garbage", 3, &page, &n, next, E), AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_user_list(tx, TENANT_A, "12.not-an-id", 3, &page, &n, next, E),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_user_list(tx, TENANT_A, NULL, 0, &page, &n, next, E), AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_user_list(tx, TENANT_A, NULL, 1001, &page, &n, next, E), AOS_DB_CONSTRAINT);
    OK(aos_store_user_list(tx, MISSING_ID, NULL, 10, &page, &n, next, E));
    assert_int_equal(n, 0);
    commit(tx);
}

/* ---------------------------------------------------------------- API keys */

static void test_api_keys(void **state)
{
    struct fx *f = fx_get(state);
    char uid[AOS_ID_LEN], uid2[AOS_ID_LEN], k1[AOS_ID_LEN], k2[AOS_ID_LEN], k3[AOS_ID_LEN], kx[AOS_ID_LEN];
    struct aos_store_tx *tx;
    struct aos_api_key k, *list;
    size_t n;

    user_add(f, TENANT_A, "ada@example.com", "admin", uid);
    user_add(f, TENANT_A, "bob@example.com", "user", uid2);
    key_add(f, TENANT_A, uid, "pfx_ada1", k1);
    key_add(f, TENANT_A, NULL, "pfx_svc1", k2);

    tx = begin(f);
    /* By prefix: the one lookup without a tenant argument; returns the tenant. */
    OK(aos_store_apikey_get_by_prefix(tx, "pfx_ada1", &k, E));
    assert_string_equal(k.id, k1);
    assert_string_equal(k.tenant_id, TENANT_A);
    assert_string_equal(k.user_id, uid);
    assert_string_equal(k.name, "laptop");
    assert_string_equal(k.prefix, "pfx_ada1");
    assert_string_equal(k.secret_hash, "sha256:0123");
    assert_string_equal(k.role, "user");
    assert_int_equal(k.expires_at, 0);
    assert_int_equal(k.revoked_at, 0);
    assert_int_equal(k.last_used_at, 0);
    aos_api_key_clear(&k);
    OK(aos_store_apikey_get_by_prefix(tx, "pfx_svc1", &k, E));
    assert_string_equal(k.user_id, "");
    assert_string_equal(k.name, "billing-service");
    aos_api_key_clear(&k);
    assert_int_equal(aos_store_apikey_get_by_prefix(tx, "pfx_none", &k, E), AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_apikey_get_by_prefix(tx, "", &k, E), AOS_DB_NOT_FOUND);

    /* get by id: no secret hash. */
    OK(aos_store_apikey_get(tx, TENANT_A, k1, &k, E));
    assert_null(k.secret_hash);
    aos_api_key_clear(&k);

    /* Lists: all, per user; no hashes. */
    OK(aos_store_apikey_list(tx, TENANT_A, NULL, false, &list, &n, E));
    assert_int_equal(n, 2);
    assert_null(list[0].secret_hash);
    aos_api_keys_free(list, n);
    OK(aos_store_apikey_list(tx, TENANT_A, uid, false, &list, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, k1);
    aos_api_keys_free(list, n);
    OK(aos_store_apikey_list(tx, TENANT_A, uid2, false, &list, &n, E));
    assert_int_equal(n, 0);

    /* Touch: recorded once, then throttled. */
    OK(aos_store_apikey_touch(tx, TENANT_A, k1, E));
    OK(aos_store_apikey_get(tx, TENANT_A, k1, &k, E));
    int64_t used = k.last_used_at;
    assert_true(used > 0);
    aos_api_key_clear(&k);
    OK(aos_store_apikey_touch(tx, TENANT_A, k1, E));
    OK(aos_store_apikey_get(tx, TENANT_A, k1, &k, E));
    assert_int_equal(k.last_used_at, used);
    aos_api_key_clear(&k);

    /* Revoke: only by its owner when an owner is given; idempotent. */
    assert_int_equal(aos_store_apikey_revoke(tx, TENANT_A, k1, uid2, E), AOS_DB_NOT_FOUND);
    OK(aos_store_apikey_revoke(tx, TENANT_A, k1, uid, E));
    assert_int_equal(aos_store_apikey_get_by_prefix(tx, "pfx_ada1", &k, E), AOS_DB_NOT_FOUND);
    OK(aos_store_apikey_get(tx, TENANT_A, k1, &k, E));
    int64_t revoked = k.revoked_at;
    assert_true(revoked > 0);
    aos_api_key_clear(&k);
    OK(aos_store_apikey_revoke(tx, TENANT_A, k1, NULL, E));
    OK(aos_store_apikey_get(tx, TENANT_A, k1, &k, E));
    assert_int_equal(k.revoked_at, revoked);
    aos_api_key_clear(&k);
    OK(aos_store_apikey_list(tx, TENANT_A, NULL, false, &list, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, k2);
    aos_api_keys_free(list, n);
    OK(aos_store_apikey_list(tx, TENANT_A, NULL, true, &list, &n, E));
    assert_int_equal(n, 2);
    aos_api_keys_free(list, n);
    assert_int_equal(aos_store_apikey_revoke(tx, TENANT_A, MISSING_ID, NULL, E), AOS_DB_NOT_FOUND);

    /* Expired keys are not found by prefix. */
    struct aos_api_key_spec old = {NULL, "old", "pfx_old", "sha256:x", "admin", 1};
    OK(aos_store_apikey_create(tx, TENANT_A, &old, k3, E));
    assert_int_equal(aos_store_apikey_get_by_prefix(tx, "pfx_old", &k, E), AOS_DB_NOT_FOUND);
    struct aos_api_key_spec later = {NULL,       "later", "pfx_later",
                                     "sha256:x", "admin", aos_store_now_ms() + 3600 * 1000};
    OK(aos_store_apikey_create(tx, TENANT_A, &later, kx, E));
    OK(aos_store_apikey_get_by_prefix(tx, "pfx_later", &k, E));
    assert_true(k.expires_at > 0);
    aos_api_key_clear(&k);

    struct aos_api_key_spec badrole = {NULL, "x", "pfx_x", "sha256:x", "owner", 0};
    assert_int_equal(aos_store_apikey_create(tx, TENANT_A, &badrole, kx, E), AOS_DB_CONSTRAINT);
    commit(tx);

    /* Prefixes are unique across tenants. */
    tx = begin(f);
    struct aos_api_key_spec dup = {NULL, "dup", "pfx_svc1", "sha256:y", "user", 0};
    assert_int_equal(aos_store_apikey_create(tx, TENANT_B, &dup, kx, E), AOS_DB_CONSTRAINT);
    rollback(tx);

    /* Deleting a user deletes the user's keys. */
    key_add(f, TENANT_A, uid2, "pfx_bob1", k3);
    tx = begin(f);
    OK(aos_store_user_delete(tx, TENANT_A, uid2, E));
    assert_int_equal(aos_store_apikey_get(tx, TENANT_A, k3, &k, E), AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_apikey_get_by_prefix(tx, "pfx_bob1", &k, E), AOS_DB_NOT_FOUND);
    commit(tx);
}

/* ---------------------------------------------------------------- usage */

static void test_usage(void **state)
{
    struct fx *f = fx_get(state);
    static const char AGENT1[] = "a0000000-0000-4000-8000-000000000001";
    static const char AGENT2[] = "a0000000-0000-4000-8000-000000000002";
    struct aos_usage d1 = {100, 20, 3000}, d2 = {1, 2, 3}, tot;
    struct aos_store_tx *tx = begin(f);
    char day[AOS_DAY_LEN];

    OK(aos_store_usage_add(tx, TENANT_A, "2026-11-25", AGENT1, &d1, E));
    OK(aos_store_usage_add(tx, TENANT_A, "2026-11-25", AGENT1, &d1, E));
    OK(aos_store_usage_add(tx, TENANT_A, "2026-11-25", AGENT2, &d2, E));
    OK(aos_store_usage_add(tx, TENANT_A, "2026-11-25", NULL, &d2, E));
    OK(aos_store_usage_add(tx, TENANT_A, "2026-11-26", AGENT1, &d2, E));
    OK(aos_store_usage_add(tx, TENANT_B, "2026-11-25", AGENT1, &d1, E));

    /* One agent, one day. */
    OK(aos_store_usage_total(tx, TENANT_A, AGENT1, "2026-11-25", "2026-11-25", &tot, E));
    assert_int_equal(tot.tokens_in, 200);
    assert_int_equal(tot.tokens_out, 40);
    assert_int_equal(tot.micro_usd, 6000);
    /* Whole tenant, one day: agents plus unattributed. */
    OK(aos_store_usage_total(tx, TENANT_A, NULL, "2026-11-25", "2026-11-25", &tot, E));
    assert_int_equal(tot.tokens_in, 202);
    assert_int_equal(tot.tokens_out, 44);
    assert_int_equal(tot.micro_usd, 6006);
    /* A month. */
    OK(aos_store_usage_total(tx, TENANT_A, NULL, "2026-11-01", "2026-11-30", &tot, E));
    assert_int_equal(tot.tokens_in, 203);
    assert_int_equal(tot.micro_usd, 6009);
    /* Unattributed only (the nil id), and nothing recorded. */
    OK(aos_store_usage_total(tx, TENANT_A, "00000000-0000-0000-0000-000000000000", "2026-11-25", "2026-11-25",
                             &tot, E));
    assert_int_equal(tot.tokens_in, 1);
    OK(aos_store_usage_total(tx, TENANT_A, NULL, "2025-01-01", "2025-01-31", &tot, E));
    assert_int_equal(tot.tokens_in + tot.tokens_out + tot.micro_usd, 0);
    /* Bad input. */
    struct aos_usage neg = {-1, 0, 0};
    assert_int_equal(aos_store_usage_add(tx, TENANT_A, "2026-11-25", NULL, &neg, E), AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_usage_add(tx, TENANT_A, "2026-1-25", NULL, &d2, E), AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_usage_add(tx, TENANT_A, "2026-11-25x", NULL, &d2, E), AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_usage_total(tx, TENANT_A, NULL, "yesterday", "2026-11-25", &tot, E),
                     AOS_DB_CONSTRAINT);
    commit(tx);
    tx = begin(f);
    assert_int_equal(aos_store_usage_add(tx, MISSING_ID, "2026-11-25", NULL, &d2, E), AOS_DB_CONSTRAINT);
    rollback(tx);

    aos_store_day(0, day);
    assert_string_equal(day, "1970-01-01");
    aos_store_day(1764028800000LL, day); /* 2025-11-25T00:00:00Z */
    assert_string_equal(day, "2025-11-25");
    aos_store_day(1764028799999LL, day);
    assert_string_equal(day, "2025-11-24");
}

/* ---------------------------------------------------------------- isolation */

/* Two tenants with the same email, users and keys: nothing crosses. */
static void test_tenant_isolation(void **state)
{
    struct fx *f = fx_get(state);
    char ua[AOS_ID_LEN], ub[AOS_ID_LEN], ka[AOS_ID_LEN], kb[AOS_ID_LEN], kx[AOS_ID_LEN], next[AOS_CURSOR_LEN];
    struct aos_store_tx *tx;
    struct aos_user u, *users;
    struct aos_api_key k, *keys;
    struct aos_usage d = {10, 10, 10}, tot;
    size_t n, i;

    user_add(f, TENANT_A, "same@example.com", "admin", ua);
    user_add(f, TENANT_B, "same@example.com", "user", ub); /* unique per tenant only */
    key_add(f, TENANT_A, ua, "pfx_a", ka);
    key_add(f, TENANT_B, ub, "pfx_b", kb);
    assert_string_not_equal(ua, ub);

    tx = begin(f);
    /* Reads across tenants: NOT_FOUND, never the row. */
    assert_int_equal(aos_store_user_get(tx, TENANT_B, ua, &u, E), AOS_DB_NOT_FOUND);
    assert_null(u.email);
    OK(aos_store_user_get_by_email(tx, TENANT_B, "same@example.com", &u, E));
    assert_string_equal(u.id, ub);
    assert_string_equal(u.tenant_id, TENANT_B);
    aos_user_clear(&u);
    assert_int_equal(aos_store_apikey_get(tx, TENANT_B, ka, &k, E), AOS_DB_NOT_FOUND);

    /* Lists: only the tenant's own rows. */
    OK(aos_store_user_list(tx, TENANT_B, NULL, 100, &users, &n, next, E));
    assert_int_equal(n, 1);
    for (i = 0; i < n; i++)
        assert_string_equal(users[i].tenant_id, TENANT_B);
    aos_users_free(users, n);
    OK(aos_store_apikey_list(tx, TENANT_B, NULL, true, &keys, &n, E));
    assert_int_equal(n, 1);
    assert_string_equal(keys[0].id, kb);
    aos_api_keys_free(keys, n);
    OK(aos_store_apikey_list(tx, TENANT_B, ua, true, &keys, &n, E)); /* A's user under B */
    assert_int_equal(n, 0);

    /* Writes across tenants: NOT_FOUND and nothing changed. */
    assert_int_equal(aos_store_user_set_role(tx, TENANT_B, ua, "user", E), AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_user_set_password_hash(tx, TENANT_B, ua, "x", E), AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_user_delete(tx, TENANT_B, ua, E), AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_apikey_revoke(tx, TENANT_B, ka, NULL, E), AOS_DB_NOT_FOUND);
    OK(aos_store_apikey_touch(tx, TENANT_B, ka, E));
    OK(aos_store_user_get(tx, TENANT_A, ua, &u, E));
    assert_string_equal(u.role, "admin");
    assert_string_equal(u.password_hash, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
    aos_user_clear(&u);
    OK(aos_store_apikey_get(tx, TENANT_A, ka, &k, E));
    assert_int_equal(k.revoked_at, 0);
    assert_int_equal(k.last_used_at, 0);
    aos_api_key_clear(&k);
    OK(aos_store_apikey_get_by_prefix(tx, "pfx_a", &k, E));
    assert_string_equal(k.tenant_id, TENANT_A);
    aos_api_key_clear(&k);

    /* Usage is per tenant. */
    OK(aos_store_usage_add(tx, TENANT_A, "2026-11-25", NULL, &d, E));
    OK(aos_store_usage_total(tx, TENANT_B, NULL, "2026-11-25", "2026-11-25", &tot, E));
    assert_int_equal(tot.tokens_in, 0);
    commit(tx);

    /* A key for another tenant's user is refused by the schema itself. */
    tx = begin(f);
    struct aos_api_key_spec cross = {ua, "cross", "pfx_cross", "sha256:z", "user", 0};
    assert_int_equal(aos_store_apikey_create(tx, TENANT_B, &cross, kx, E), AOS_DB_CONSTRAINT);
    rollback(tx);
}

/* ---------------------------------------------------------------- transactions */

struct tx_arg {
    const char *email;
    int fail_with; /* returned after the insert (0: do a duplicate insert instead) */
};

static int insert_then_fail(struct aos_store_tx *tx, void *arg, char *e, size_t elen)
{
    struct tx_arg *a = arg;
    char id[AOS_ID_LEN];
    struct aos_usage d = {5, 5, 5};
    int rc;

    rc = aos_store_user_create(tx, TENANT_A, a->email, NULL, "user", id, e, elen);
    if (rc != AOS_DB_OK)
        return rc;
    rc = aos_store_usage_add(tx, TENANT_A, "2026-11-25", NULL, &d, e, elen);
    if (rc != AOS_DB_OK)
        return rc;
    if (a->fail_with != 0) {
        snprintf(e, elen, "handler gave up");
        return a->fail_with;
    }
    return aos_store_user_create(tx, TENANT_A, a->email, NULL, "user", id, e, elen); /* duplicate */
}

static int create_real_user_tx(struct aos_store_tx *tx, void *arg, char *e, size_t elen)
{
    char id[AOS_ID_LEN];

    (void)arg;
    return aos_store_user_create(tx, TENANT_A, "real@example.com", NULL, "user", id, e, elen);
}

static void test_failed_transaction_leaves_nothing(void **state)
{
    struct fx *f = fx_get(state);
    struct tx_arg a1 = {"ghost1@example.com", AOS_DB_ERROR}, a2 = {"ghost2@example.com", 0};
    struct aos_store_tx *tx;
    struct aos_user u;
    struct aos_usage tot;
    char id[AOS_ID_LEN];

    assert_int_equal(aos_store_transact(f->store, true, insert_then_fail, &a1, E), AOS_DB_ERROR);
    assert_int_equal(aos_store_transact(f->store, true, insert_then_fail, &a2, E), AOS_DB_CONSTRAINT);

    /* An explicit rollback too. */
    tx = begin(f);
    OK(aos_store_user_create(tx, TENANT_A, "ghost3@example.com", NULL, "user", id, E));
    rollback(tx);

    tx = begin(f);
    assert_int_equal(aos_store_user_get_by_email(tx, TENANT_A, "ghost1@example.com", &u, E),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_user_get_by_email(tx, TENANT_A, "ghost2@example.com", &u, E),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_user_get_by_email(tx, TENANT_A, "ghost3@example.com", &u, E),
                     AOS_DB_NOT_FOUND);
    OK(aos_store_usage_total(tx, TENANT_A, NULL, "2026-11-25", "2026-11-25", &tot, E));
    assert_int_equal(tot.tokens_in, 0);
    commit(tx);

    /* And a transact that succeeds commits. */
    OK(aos_store_transact(f->store, true, create_real_user_tx, NULL, E));
    tx = begin(f);
    OK(aos_store_user_get_by_email(tx, TENANT_A, "real@example.com", &u, E));
    aos_user_clear(&u);
    commit(tx);
}

/* ---------------------------------------------------------------- concurrency */

#define THREADS 8
#define ADDS 200

struct worker {
    struct fx *f;
    pthread_barrier_t *start;
    int ok, constraint, other;
    char err[512];
};

static int add_usage_tx(struct aos_store_tx *tx, void *arg, char *e, size_t elen)
{
    struct aos_usage d = {1, 2, 3};

    (void)arg;
    return aos_store_usage_add(tx, TENANT_A, "2026-11-25", "a0000000-0000-4000-8000-000000000001", &d, e,
                               elen);
}

static void *usage_worker(void *arg)
{
    struct worker *w = arg;
    int i;

    pthread_barrier_wait(w->start);
    for (i = 0; i < ADDS; i++) {
        int rc = aos_store_transact(w->f->store, true, add_usage_tx, NULL, w->err, sizeof(w->err));
        if (rc == AOS_DB_OK)
            w->ok++;
        else
            w->other++;
    }
    return NULL;
}

static void test_concurrent_usage_adds(void **state)
{
    struct fx *f = fx_get(state);
    struct worker w[THREADS];
    pthread_barrier_t start;
    pthread_t th[THREADS];
    struct aos_store_tx *tx;
    struct aos_usage tot;
    int i;

    memset(w, 0, sizeof(w));
    assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
    for (i = 0; i < THREADS; i++) {
        w[i].f = f;
        w[i].start = &start;
        assert_int_equal(pthread_create(&th[i], NULL, usage_worker, &w[i]), 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].other != 0)
            fail_msg("thread %d: %d adds failed: %s", i, w[i].other, w[i].err);
        assert_int_equal(w[i].ok, ADDS);
    }
    pthread_barrier_destroy(&start);
    tx = begin(f);
    OK(aos_store_usage_total(tx, TENANT_A, NULL, "2026-11-25", "2026-11-25", &tot, E));
    assert_int_equal(tot.tokens_in, THREADS * ADDS);
    assert_int_equal(tot.tokens_out, 2 * THREADS * ADDS);
    assert_int_equal(tot.micro_usd, 3 * THREADS * ADDS);
    commit(tx);
}

static int create_same_user_tx(struct aos_store_tx *tx, void *arg, char *e, size_t elen)
{
    char id[AOS_ID_LEN];

    (void)arg;
    return aos_store_user_create(tx, TENANT_A, "race@example.com", NULL, "user", id, e, elen);
}

static void *user_worker(void *arg)
{
    struct worker *w = arg;
    int rc;

    pthread_barrier_wait(w->start);
    rc = aos_store_transact(w->f->store, true, create_same_user_tx, NULL, w->err, sizeof(w->err));
    if (rc == AOS_DB_OK)
        w->ok++;
    else if (rc == AOS_DB_CONSTRAINT)
        w->constraint++;
    else
        w->other++;
    return NULL;
}

static void test_concurrent_same_email(void **state)
{
    struct fx *f = fx_get(state);
    struct worker w[THREADS];
    pthread_barrier_t start;
    pthread_t th[THREADS];
    struct aos_store_tx *tx;
    struct aos_user *users;
    char next[AOS_CURSOR_LEN];
    size_t n;
    int i, ok = 0, constraint = 0;

    memset(w, 0, sizeof(w));
    assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
    for (i = 0; i < THREADS; i++) {
        w[i].f = f;
        w[i].start = &start;
        assert_int_equal(pthread_create(&th[i], NULL, user_worker, &w[i]), 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].other != 0)
            fail_msg("thread %d: unexpected failure: %s", i, w[i].err);
        ok += w[i].ok;
        constraint += w[i].constraint;
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(ok, 1);
    assert_int_equal(constraint, THREADS - 1);
    tx = begin(f);
    OK(aos_store_user_list(tx, TENANT_A, NULL, 100, &users, &n, next, E));
    assert_int_equal(n, 1);
    assert_string_equal(users[0].email, "race@example.com");
    aos_users_free(users, n);
    commit(tx);
}

/* ---------------------------------------------------------------- helpers */

static void test_id_helpers(void **state)
{
    char a[AOS_ID_LEN], b[AOS_ID_LEN], n[AOS_ID_LEN];

    (void)state;
    aos_store_id_new(a);
    aos_store_id_new(b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4'); /* version 4 */
    assert_true(aos_store_id_norm("6F1C2A4E-9B7D-4C3A-8E2F-1A2B3C4D5E6F", n));
    assert_string_equal(n, TENANT_A);
    assert_false(aos_store_id_norm("6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6", n));
    assert_false(aos_store_id_norm("6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6ff", n));
    assert_false(aos_store_id_norm("6f1c2a4e9b7d4c3a8e2f1a2b3c4d5e6f", n));
    assert_false(aos_store_id_norm("", n));
    assert_false(aos_store_id_norm(NULL, n));
    assert_true(aos_store_role_valid("admin") && aos_store_role_valid("approver") &&
                aos_store_role_valid("user"));
    assert_false(aos_store_role_valid("Admin") || aos_store_role_valid("") || aos_store_role_valid(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_helpers),
        FX_TESTS(test_tenants_sync, setup, teardown),
        FX_TESTS(test_users, setup, teardown),
        FX_TESTS(test_users_list_paging, setup, teardown),
        FX_TESTS(test_api_keys, setup, teardown),
        FX_TESTS(test_usage, setup, teardown),
        FX_TESTS(test_tenant_isolation, setup, teardown),
        FX_TESTS(test_failed_transaction_leaves_nothing, setup, teardown),
        FX_TESTS(test_concurrent_usage_adds, setup, teardown),
        FX_TESTS(test_concurrent_same_email, setup, teardown),
    };

    return FX_RUN("test_store", tests);
}
