#include "config.h"
/*
 * The auth backends end to end below HTTP: the real plugins/auth-local and
 * plugins/auth-apikey, dlopen()ed through the loader from
 * $AOS_BUILDDIR/plugins/<name>/.libs/, asking the host's SDK 1.1 lookups,
 * which query a real store: SQLite always, PostgreSQL too when
 * AOS_TEST_PGSQL is set (a private schema per test: store_fixture.h).
 * Users are hashed with core/auth/password.c and keys made with
 * core/auth/apikey.c, so the plugins' own copies of those rules are checked
 * against the core's.  Also the unit tests of core/auth/apikey.c.
 *
 * Documented outcomes pinned here: an e-mail registered in several tenants
 * without a tenant named is DENY (auth_local.c says why); a malformed API
 * key is DENY (as API_KEY, and as a bearer starting with "aos_"), any other
 * bearer is IGNORE.
 */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <libconfig.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apikey.h"
#include "auth/password.h"
#include "conf.h"
#include "log.h"
#include "plugin.h"
#include "store/migrate.h"
#include "store/ops.h"
#include "store/store.h"
#include "store_fixture.h"

#define TENANT_A "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f"
#define TENANT_B "0b9a5c1e-2d3f-4a6b-8c7d-9e0f1a2b3c4d"
#define TENANT_C "c0ffee00-1234-4abc-9def-000000000003" /* deactivated in setup */

#define ALICE_PW "correct horse battery staple"
#define DUP_PW_A "password of dup in acme"
#define DUP_PW_B "password of dup in globex"

/* Cheap Argon2id parameters: the plugin reads them from each hash, and
 * the tests are about outcomes, not cost. */
static const struct aos_argon2_params test_argon2 = {.t_cost = 1, .m_cost_kib = 64, .parallelism = 1};

/* What setup created, for the assertions. */
struct world {
    char alice[AOS_ID_LEN];       /* A, admin, ALICE_PW */
    char bob[AOS_ID_LEN];         /* A, user, no password hash */
    char carol[AOS_ID_LEN];       /* A, approver, a hash that is not Argon2id */
    char dup_a[AOS_ID_LEN];       /* dup@ in A, user, DUP_PW_A */
    char dup_b[AOS_ID_LEN];       /* dup@ in B, approver, DUP_PW_B */
    char dave[AOS_ID_LEN];        /* C (inactive), admin, ALICE_PW */
    char key[AOS_APIKEY_LEN + 1]; /* A, alice's, role approver */
    char key_id[AOS_ID_LEN];
    char service_key[AOS_APIKEY_LEN + 1]; /* B, service key, role user */
    char service_key_id[AOS_ID_LEN];
    char revoked_key[AOS_APIKEY_LEN + 1];
    char expired_key[AOS_APIKEY_LEN + 1];
    char inactive_key[AOS_APIKEY_LEN + 1]; /* C */
};
static struct world w;

struct loaded {
    struct aos_conf conf;
    config_t cfg;
    bool cfg_used;
    char *enable[1];
    struct aos_conf_plugin_block block;
    char dir[1024];
    struct aos_plugin_set *set;
    const struct aos_plugin_instance *p;
};
static struct loaded local, apikey;

static char err[512];
#define E err, sizeof(err)

#define OK(call)                                                          \
    do {                                                                  \
        int rc_ = (call);                                                 \
        if (rc_ != AOS_DB_OK)                                             \
            fail_msg("%s: %s (%s)", #call, aos_db_status_name(rc_), err); \
    } while (0)

/* ---------------------------------------------------------------- loading */

/* Loads plugin `name` from its build directory, with an optional settings
 * block (libconfig text of the block's inside).  0 or -1 (printed). */
static int plugin_load(struct loaded *l, const char *name, const char *settings)
{
    const char *b = getenv("AOS_BUILDDIR");
    struct aos_conf_errors errs = {0};
    char text[512];

    memset(l, 0, sizeof(*l));
    if (b == NULL) {
        fprintf(stderr, "# AOS_BUILDDIR is not set (run through make check, or export it)\n");
        return -1;
    }
    snprintf(l->dir, sizeof(l->dir), "%s/plugins/%s/.libs", b, name);
    l->enable[0] = (char *)name;
    l->conf.plugins.dir = l->dir;
    l->conf.plugins.enable = l->enable;
    l->conf.plugins.nenable = 1;
    if (settings != NULL) {
        snprintf(text, sizeof(text), "%s = { %s };\n", name, settings);
        config_init(&l->cfg);
        l->cfg_used = true;
        if (config_read_string(&l->cfg, text) != CONFIG_TRUE) {
            fprintf(stderr, "# bad block: %s\n", config_error_text(&l->cfg));
            return -1;
        }
        l->block.name = (char *)name;
        l->block.setting = config_setting_get_elem(config_root_setting(&l->cfg), 0);
        l->block.file = "test.conf";
        l->block.line = 1;
        l->conf.plugins.blocks = &l->block;
        l->conf.plugins.nblocks = 1;
    }
    l->set = aos_plugin_set_load(&l->conf, NULL, &errs);
    if (l->set == NULL) {
        fprintf(stderr, "# cannot load %s: %s\n", name, errs.n > 0 ? errs.lines[0] : "?");
        aos_conf_errors_free(&errs);
        return -1;
    }
    aos_conf_errors_free(&errs);
    l->p = aos_plugin_set_find(l->set, name);
    return l->p != NULL ? 0 : -1;
}

static void plugin_unload(struct loaded *l)
{
    aos_plugin_set_free(l->set);
    if (l->cfg_used)
        config_destroy(&l->cfg);
    memset(l, 0, sizeof(*l));
}

/* ---------------------------------------------------------------- calls */

struct outcome {
    int rc;
    struct aos_principal pr;
    char err[256];
};

static struct outcome auth(const struct loaded *l, int kind, const char *identifier, const char *secret,
                           size_t secret_len, const char *tenant)
{
    struct aos_credentials c = {.kind = kind,
                                .identifier = identifier,
                                .secret = secret,
                                .secret_len = secret_len,
                                .tenant_id = tenant};
    struct outcome o;

    memset(&o, 0, sizeof(o));
    o.rc = aos_plugin_auth_authenticate(l->p, &c, &o.pr, o.err, sizeof(o.err));
    return o;
}

static struct outcome login(const char *email, const char *password, const char *tenant)
{
    return auth(&local, AOS_CRED_PASSWORD, email, password, strlen(password), tenant);
}

static struct outcome key_auth(int kind, const char *key)
{
    return auth(&apikey, kind, NULL, key, strlen(key), NULL);
}

static void assert_allow(struct outcome o, const char *tenant, const char *subject, const char *role)
{
    if (o.rc != AOS_AUTH_ALLOW)
        fail_msg("expected ALLOW, got %d (%s)", o.rc, o.err);
    assert_string_equal(o.pr.tenant_id, tenant);
    assert_string_equal(o.pr.subject, subject);
    assert_string_equal(o.pr.role, role);
}

static void assert_result(struct outcome o, int want)
{
    if (o.rc != want)
        fail_msg("expected %d, got %d (%s)", want, o.rc, o.err);
    /* Anything but ALLOW leaves no principal behind. */
    assert_string_equal(o.pr.tenant_id, "");
    assert_string_equal(o.pr.subject, "");
    assert_string_equal(o.pr.role, "");
}

/* ---------------------------------------------------------------- setup */

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

static int user_add(struct aos_store_tx *tx, const char *tenant, const char *email, const char *password,
                    const char *role, char id[AOS_ID_LEN])
{
    char *hash = NULL;
    int rc;

    if (password != NULL && aos_password_hash(&test_argon2, password, strlen(password), &hash, E) != 0)
        return AOS_DB_ERROR;
    rc = aos_store_user_create(tx, tenant, email, hash, role, id, E);
    free(hash);
    return rc;
}

static int key_add(struct aos_store_tx *tx, const char *tenant, const char *user_id, const char *role,
                   int64_t expires_at, char key[AOS_APIKEY_LEN + 1], char id[AOS_ID_LEN])
{
    char prefix[AOS_APIKEY_PREFIX_LEN + 1], hash[AOS_APIKEY_HASH_LEN + 1];
    struct aos_api_key_spec spec = {.user_id = user_id,
                                    .name = "test key",
                                    .prefix = prefix,
                                    .secret_hash = hash,
                                    .role = role,
                                    .expires_at = expires_at};
    char unused[AOS_ID_LEN];

    if (aos_apikey_generate(key, prefix, hash) != 0) {
        snprintf(err, sizeof(err), "aos_apikey_generate failed");
        return AOS_DB_ERROR;
    }
    return aos_store_apikey_create(tx, tenant, &spec, id != NULL ? id : unused, E);
}

static int populate(struct aos_store *s)
{
    struct aos_store_tx *tx = NULL;
    struct aos_conf_tenant t[3] = {conf_tenant(TENANT_A, "acme"), conf_tenant(TENANT_B, "globex"),
                                   conf_tenant(TENANT_C, "initech")};
    char revoked_id[AOS_ID_LEN], unused[AOS_ID_LEN];
    int rc;

    memset(&w, 0, sizeof(w));
    if ((rc = aos_store_begin(s, true, &tx, E)) != AOS_DB_OK)
        return rc;
    if ((rc = aos_store_tenants_sync(tx, t, 3, E)) != AOS_DB_OK ||
        (rc = user_add(tx, TENANT_A, "alice@example.com", ALICE_PW, "admin", w.alice)) != AOS_DB_OK ||
        (rc = user_add(tx, TENANT_A, "bob@example.com", NULL, "user", w.bob)) != AOS_DB_OK ||
        (rc = aos_store_user_create(tx, TENANT_A, "carol@example.com", "$argon2i$v=19$m=64,t=1,p=1$bm90$YQ",
                                    "approver", w.carol, E)) != AOS_DB_OK ||
        (rc = user_add(tx, TENANT_A, "dup@example.com", DUP_PW_A, "user", w.dup_a)) != AOS_DB_OK ||
        (rc = user_add(tx, TENANT_B, "dup@example.com", DUP_PW_B, "approver", w.dup_b)) != AOS_DB_OK ||
        (rc = user_add(tx, TENANT_C, "dave@example.com", ALICE_PW, "admin", w.dave)) != AOS_DB_OK ||
        (rc = key_add(tx, TENANT_A, w.alice, "approver", 0, w.key, w.key_id)) != AOS_DB_OK ||
        (rc = key_add(tx, TENANT_B, NULL, "user", aos_store_now_ms() + 3600 * 1000, w.service_key,
                      w.service_key_id)) != AOS_DB_OK ||
        (rc = key_add(tx, TENANT_A, NULL, "user", 0, w.revoked_key, revoked_id)) != AOS_DB_OK ||
        (rc = aos_store_apikey_revoke(tx, TENANT_A, revoked_id, NULL, E)) != AOS_DB_OK ||
        /* Expired a minute ago: a past time is a valid expiry to store. */
        (rc = key_add(tx, TENANT_A, NULL, "user", aos_store_now_ms() - 60000, w.expired_key, unused)) !=
            AOS_DB_OK ||
        (rc = key_add(tx, TENANT_C, w.dave, "admin", 0, w.inactive_key, unused)) != AOS_DB_OK ||
        /* initech leaves the configuration: deactivated, its rows kept. */
        (rc = aos_store_tenants_sync(tx, t, 2, E)) != AOS_DB_OK) {
        aos_store_rollback(tx);
        return rc;
    }
    return aos_store_commit(tx, E);
}

static int setup(void **state)
{
    struct fx *f = *state;

    if (fx_open(f) != 0)
        return -1;
    if (!f->enabled)
        return 0;
    if (aos_migrate_up(f->store, 0, NULL, NULL, E) != AOS_DB_OK || populate(f->store) != AOS_DB_OK) {
        fprintf(stderr, "# setup: %s\n", err);
        return -1;
    }
    if (plugin_load(&local, "auth-local", NULL) != 0 || plugin_load(&apikey, "auth-apikey", NULL) != 0)
        return -1;
    aos_plugin_host_attach_store(f->store);
    return 0;
}

static int teardown(void **state)
{
    aos_plugin_host_attach_store(NULL);
    plugin_unload(&local);
    plugin_unload(&apikey);
    fx_close(*state);
    return 0;
}

/* ---------------------------------------------------------------- auth-local */

static void test_password_allow(void **state)
{
    fx_get(state);
    assert_allow(login("alice@example.com", ALICE_PW, NULL), TENANT_A, w.alice, "admin");
    /* Naming the right tenant (in upper case too: ids are normalised). */
    assert_allow(login("alice@example.com", ALICE_PW, TENANT_A), TENANT_A, w.alice, "admin");
    assert_allow(login("alice@example.com", ALICE_PW, "6F1C2A4E-9B7D-4C3A-8E2F-1A2B3C4D5E6F"), TENANT_A,
                 w.alice, "admin");
}

static void test_password_wrong(void **state)
{
    fx_get(state);
    assert_result(login("alice@example.com", "correct horse battery stapler", NULL), AOS_AUTH_DENY);
    assert_result(login("alice@example.com", "", NULL), AOS_AUTH_DENY);
    /* The password is compared as bytes: a prefix is not a match. */
    assert_result(auth(&local, AOS_CRED_PASSWORD, "alice@example.com", ALICE_PW, strlen(ALICE_PW) - 1, NULL),
                  AOS_AUTH_DENY);
}

static void test_unknown_email(void **state)
{
    fx_get(state);
    assert_result(login("nobody@example.com", ALICE_PW, NULL), AOS_AUTH_DENY);
    assert_result(login("nobody@example.com", ALICE_PW, TENANT_A), AOS_AUTH_DENY);
    assert_result(login("", ALICE_PW, NULL), AOS_AUTH_DENY);
    assert_result(auth(&local, AOS_CRED_PASSWORD, NULL, ALICE_PW, strlen(ALICE_PW), NULL), AOS_AUTH_DENY);
    /* The host compares the normalised form it was given, exactly. */
    assert_result(login("Alice@example.com", ALICE_PW, NULL), AOS_AUTH_DENY);
}

static void test_email_in_two_tenants(void **state)
{
    fx_get(state);
    /* Documented: no tenant named -> DENY, whichever password. */
    assert_result(login("dup@example.com", DUP_PW_A, NULL), AOS_AUTH_DENY);
    assert_result(login("dup@example.com", DUP_PW_B, NULL), AOS_AUTH_DENY);
    /* With the tenant, each account signs in with its own password only. */
    assert_allow(login("dup@example.com", DUP_PW_A, TENANT_A), TENANT_A, w.dup_a, "user");
    assert_allow(login("dup@example.com", DUP_PW_B, TENANT_B), TENANT_B, w.dup_b, "approver");
    assert_result(login("dup@example.com", DUP_PW_B, TENANT_A), AOS_AUTH_DENY);
    assert_result(login("dup@example.com", DUP_PW_A, TENANT_B), AOS_AUTH_DENY);
}

static void test_wrong_tenant_named(void **state)
{
    fx_get(state);
    /* alice exists only in A: naming B (or garbage) finds nobody. */
    assert_result(login("alice@example.com", ALICE_PW, TENANT_B), AOS_AUTH_DENY);
    assert_result(login("alice@example.com", ALICE_PW, "not-a-uuid"), AOS_AUTH_DENY);
    assert_result(login("alice@example.com", ALICE_PW, "deadbeef-dead-4eef-8eef-deadbeefdead"),
                  AOS_AUTH_DENY);
}

static void test_inactive_tenant(void **state)
{
    fx_get(state);
    assert_result(login("dave@example.com", ALICE_PW, NULL), AOS_AUTH_DENY);
    assert_result(login("dave@example.com", ALICE_PW, TENANT_C), AOS_AUTH_DENY);
}

static void test_user_without_password(void **state)
{
    fx_get(state);
    assert_result(login("bob@example.com", "", NULL), AOS_AUTH_DENY);
    assert_result(login("bob@example.com", "anything at all", NULL), AOS_AUTH_DENY);
}

static void test_corrupt_hash_is_error(void **state)
{
    fx_get(state);
    struct outcome o = login("carol@example.com", "whatever it was", NULL);
    assert_result(o, AOS_AUTH_ERROR);
    assert_non_null(strstr(o.err, "cannot verify the stored password hash of user"));
    assert_non_null(strstr(o.err, w.carol));
    /* The hash itself is never echoed. */
    assert_null(strstr(o.err, "argon2i$"));
}

static void test_local_ignores_other_kinds(void **state)
{
    fx_get(state);
    assert_result(auth(&local, AOS_CRED_API_KEY, NULL, w.key, strlen(w.key), NULL), AOS_AUTH_IGNORE);
    assert_result(auth(&local, AOS_CRED_BEARER, NULL, "eyJhbGciOi.x.y", 14, NULL), AOS_AUTH_IGNORE);
    assert_result(auth(&local, 99, "alice@example.com", ALICE_PW, strlen(ALICE_PW), NULL), AOS_AUTH_IGNORE);
}

static void test_local_without_dummy_hash(void **state)
{
    fx_get(state);
    plugin_unload(&local);
    if (plugin_load(&local, "auth-local", "dummy_hash_on_miss = false;") != 0)
        fail_msg("cannot load auth-local with dummy_hash_on_miss = false");
    const int *dummy = aos_plugin_instance_data(local.p);
    assert_int_equal(*dummy, 0);
    assert_result(login("nobody@example.com", ALICE_PW, NULL), AOS_AUTH_DENY);
    assert_allow(login("alice@example.com", ALICE_PW, NULL), TENANT_A, w.alice, "admin");
}

/* ---------------------------------------------------------------- auth-apikey */

static void test_key_allow(void **state)
{
    fx_get(state);
    char subject[64];

    snprintf(subject, sizeof(subject), "key:%s", w.key_id);
    assert_allow(key_auth(AOS_CRED_API_KEY, w.key), TENANT_A, subject, "approver");
    /* The same key as "Authorization: Bearer aos_...". */
    assert_allow(key_auth(AOS_CRED_BEARER, w.key), TENANT_A, subject, "approver");
    /* A service key with a future expiry, in the other tenant. */
    snprintf(subject, sizeof(subject), "key:%s", w.service_key_id);
    assert_allow(key_auth(AOS_CRED_API_KEY, w.service_key), TENANT_B, subject, "user");
}

static void test_key_wrong_secret(void **state)
{
    fx_get(state);
    char bad[AOS_APIKEY_LEN + 1];

    /* Right prefix, last secret digit changed. */
    memcpy(bad, w.key, sizeof(bad));
    bad[AOS_APIKEY_LEN - 1] = bad[AOS_APIKEY_LEN - 1] == '0' ? '1' : '0';
    assert_result(key_auth(AOS_CRED_API_KEY, bad), AOS_AUTH_DENY);
    /* Right prefix, another key's secret. */
    memcpy(bad + 17, w.service_key + 17, AOS_APIKEY_SECRET_LEN);
    assert_result(key_auth(AOS_CRED_API_KEY, bad), AOS_AUTH_DENY);
    /* Well-formed, unknown prefix. */
    memcpy(bad, w.key, sizeof(bad));
    memcpy(bad + 4, "zzzzzzzzzzzz", AOS_APIKEY_PREFIX_LEN);
    assert_result(key_auth(AOS_CRED_API_KEY, bad), AOS_AUTH_DENY);
}

static void test_key_revoked_expired_inactive(void **state)
{
    fx_get(state);
    assert_result(key_auth(AOS_CRED_API_KEY, w.revoked_key), AOS_AUTH_DENY);
    assert_result(key_auth(AOS_CRED_API_KEY, w.expired_key), AOS_AUTH_DENY);
    assert_result(key_auth(AOS_CRED_API_KEY, w.inactive_key), AOS_AUTH_DENY);
    assert_result(key_auth(AOS_CRED_BEARER, w.revoked_key), AOS_AUTH_DENY);
}

static void test_key_malformed(void **state)
{
    fx_get(state);
    char k[AOS_APIKEY_LEN + 2];
    const size_t n = AOS_APIKEY_LEN;

    /* Each variant differs from the valid key in one way: documented DENY. */
    memcpy(k, w.key, n + 1);
    k[n - 1] = '\0'; /* one short */
    assert_result(key_auth(AOS_CRED_API_KEY, k), AOS_AUTH_DENY);
    memcpy(k, w.key, n);
    k[n] = '0';
    k[n + 1] = '\0'; /* one long */
    assert_result(key_auth(AOS_CRED_API_KEY, k), AOS_AUTH_DENY);
    memcpy(k, w.key, n + 1);
    k[20] = (char)(k[20] >= 'a' ? k[20] - 32 : 'A'); /* upper-case in the secret */
    assert_result(key_auth(AOS_CRED_API_KEY, k), AOS_AUTH_DENY);
    memcpy(k, w.key, n + 1);
    k[16] = '-'; /* separator */
    assert_result(key_auth(AOS_CRED_API_KEY, k), AOS_AUTH_DENY);
    memcpy(k, w.key, n + 1);
    k[0] = 'x'; /* tag */
    assert_result(key_auth(AOS_CRED_API_KEY, k), AOS_AUTH_DENY);
    memcpy(k, w.key, n + 1);
    k[5] = '_'; /* prefix character */
    assert_result(key_auth(AOS_CRED_API_KEY, k), AOS_AUTH_DENY);
    assert_result(key_auth(AOS_CRED_API_KEY, ""), AOS_AUTH_DENY);
    assert_result(auth(&apikey, AOS_CRED_API_KEY, NULL, NULL, 0, NULL), AOS_AUTH_DENY);
    /* A bearer that claims to be a key (starts with aos_) is judged as one. */
    assert_result(key_auth(AOS_CRED_BEARER, "aos_short"), AOS_AUTH_DENY);
    /* A NUL inside: the length, not the terminator, is the key. */
    memcpy(k, w.key, n + 1);
    k[30] = '\0';
    assert_result(auth(&apikey, AOS_CRED_API_KEY, NULL, k, n, NULL), AOS_AUTH_DENY);
}

static void test_apikey_ignores_other_kinds(void **state)
{
    fx_get(state);
    assert_result(auth(&apikey, AOS_CRED_PASSWORD, "alice@example.com", w.key, strlen(w.key), NULL),
                  AOS_AUTH_IGNORE);
    /* A JWT bearer is for another backend. */
    assert_result(key_auth(AOS_CRED_BEARER, "eyJhbGciOiJIUzI1NiJ9.e30.sig"), AOS_AUTH_IGNORE);
    assert_result(key_auth(AOS_CRED_BEARER, "aos"), AOS_AUTH_IGNORE);
    assert_result(auth(&apikey, AOS_CRED_BEARER, NULL, NULL, 0, NULL), AOS_AUTH_IGNORE);
}

/* ---------------------------------------------------------------- both */

static void test_no_store_attached(void **state)
{
    fx_get(state);
    aos_plugin_host_attach_store(NULL);
    struct outcome o = login("alice@example.com", ALICE_PW, NULL);
    assert_result(o, AOS_AUTH_ERROR);
    assert_non_null(strstr(o.err, "no store"));
    o = key_auth(AOS_CRED_API_KEY, w.key);
    assert_result(o, AOS_AUTH_ERROR);
    assert_non_null(strstr(o.err, "no store"));
    /* Kinds a backend ignores never reach the store. */
    assert_result(key_auth(AOS_CRED_BEARER, "eyJhbGciOiJIUzI1NiJ9.e30.sig"), AOS_AUTH_IGNORE);
    /* Re-attached, it works again. */
    aos_plugin_host_attach_store(((struct fx *)*state)->store);
    assert_allow(login("alice@example.com", ALICE_PW, NULL), TENANT_A, w.alice, "admin");
}

/* Both plugins are flagged thread-safe: concurrent calls through the host's
 * lookups (one pooled connection per call) all get the right answer. */
#define THREADS 4
#define ROUNDS 25

static void *hammer(void *arg)
{
    long bad = 0;
    char subject[64];

    (void)arg;
    snprintf(subject, sizeof(subject), "key:%s", w.key_id);
    for (int i = 0; i < ROUNDS; i++) {
        struct outcome o = key_auth(AOS_CRED_API_KEY, w.key);
        if (o.rc != AOS_AUTH_ALLOW || strcmp(o.pr.subject, subject) != 0)
            bad++;
        if (key_auth(AOS_CRED_API_KEY, w.revoked_key).rc != AOS_AUTH_DENY)
            bad++;
    }
    if (login("alice@example.com", ALICE_PW, NULL).rc != AOS_AUTH_ALLOW)
        bad++;
    return (void *)(intptr_t)bad;
}

static void test_concurrent_calls(void **state)
{
    fx_get(state);
    pthread_t t[THREADS];

    assert_true(aos_plugin_instance_flags(local.p) & AOS_PLUGIN_THREAD_SAFE);
    assert_true(aos_plugin_instance_flags(apikey.p) & AOS_PLUGIN_THREAD_SAFE);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        void *bad = NULL;
        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_int_equal((intptr_t)bad, 0);
    }
}

/* The store op behind user_lookup, directly: matches and fail-closed. */
static void test_store_user_find_login(void **state)
{
    struct fx *f = fx_get(state);
    struct aos_store_tx *tx = NULL;
    struct aos_user u;
    int matches = -1;

    OK(aos_store_begin(f->store, false, &tx, E));
    OK(aos_store_user_find_login(tx, NULL, "alice@example.com", &u, &matches, E));
    assert_int_equal(matches, 1);
    assert_string_equal(u.id, w.alice);
    assert_string_equal(u.tenant_id, TENANT_A);
    assert_string_equal(u.email, "alice@example.com");
    assert_string_equal(u.role, "admin");
    assert_non_null(u.password_hash);
    assert_int_equal(strncmp(u.password_hash, "$argon2id$", 10), 0);
    aos_user_clear(&u);
    /* Several tenants: NOT_FOUND (fail closed), matches says why. */
    assert_int_equal(aos_store_user_find_login(tx, NULL, "dup@example.com", &u, &matches, E),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(matches, 2);
    assert_null(u.email);
    OK(aos_store_user_find_login(tx, TENANT_B, "dup@example.com", &u, &matches, E));
    assert_int_equal(matches, 1);
    assert_string_equal(u.id, w.dup_b);
    aos_user_clear(&u);
    /* Inactive tenant, unknown e-mail, malformed tenant: nothing. */
    assert_int_equal(aos_store_user_find_login(tx, NULL, "dave@example.com", &u, &matches, E),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(matches, 0);
    assert_int_equal(aos_store_user_find_login(tx, TENANT_C, "dave@example.com", &u, &matches, E),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_user_find_login(tx, NULL, "x@example.com", &u, &matches, E), AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_user_find_login(tx, "nope", "alice@example.com", &u, &matches, E),
                     AOS_DB_NOT_FOUND);
    assert_int_equal(aos_store_user_find_login(tx, NULL, "", &u, &matches, E), AOS_DB_NOT_FOUND);
    assert_int_equal(matches, 0);
    aos_store_rollback(tx);
}

/* ---------------------------------------------------------------- apikey.c */

static bool all_of(const char *s, size_t n, const char *set)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0' || strchr(set, s[i]) == NULL)
            return false;
    return true;
}

#define NKEYS 200

static void test_apikey_generate(void **state)
{
    (void)state;
    static char keys[NKEYS][AOS_APIKEY_LEN + 1];
    char prefix[AOS_APIKEY_PREFIX_LEN + 1], hash[AOS_APIKEY_HASH_LEN + 1], h2[AOS_APIKEY_HASH_LEN + 1];
    char p2[AOS_APIKEY_PREFIX_LEN + 1];
    const char *secret = NULL;

    assert_int_equal(AOS_APIKEY_LEN, 81);
    for (int i = 0; i < NKEYS; i++) {
        char *k = keys[i];
        assert_int_equal(aos_apikey_generate(k, prefix, hash), 0);
        assert_int_equal(strlen(k), AOS_APIKEY_LEN);
        assert_memory_equal(k, "aos_", 4);
        assert_true(all_of(k + 4, AOS_APIKEY_PREFIX_LEN, "abcdefghijklmnopqrstuvwxyz0123456789"));
        assert_int_equal(k[16], '_');
        assert_true(all_of(k + 17, AOS_APIKEY_SECRET_LEN, "0123456789abcdef"));
        assert_int_equal(strlen(prefix), AOS_APIKEY_PREFIX_LEN);
        assert_memory_equal(prefix, k + 4, AOS_APIKEY_PREFIX_LEN);
        assert_int_equal(strlen(hash), AOS_APIKEY_HASH_LEN);
        assert_true(all_of(hash, AOS_APIKEY_HASH_LEN, "0123456789abcdef"));
        /* What generate returns is what parse + hash give back. */
        assert_int_equal(aos_apikey_parse(k, strlen(k), p2, &secret), 0);
        assert_string_equal(p2, prefix);
        assert_ptr_equal(secret, k + 17);
        aos_apikey_hash(secret, AOS_APIKEY_SECRET_LEN, h2);
        assert_string_equal(h2, hash);
        for (int j = 0; j < i; j++) {
            assert_memory_not_equal(keys[j] + 4, k + 4, AOS_APIKEY_PREFIX_LEN);
            assert_memory_not_equal(keys[j] + 17, k + 17, AOS_APIKEY_SECRET_LEN);
        }
    }
}

/* Every prefix character shows up across many keys: the alphabet is fully
 * used (a skewed or truncated alphabet would miss some; 2400 draws from 36
 * leave a given character out with probability ~1e-29). */
static void test_apikey_prefix_alphabet(void **state)
{
    (void)state;
    const char *alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    char key[AOS_APIKEY_LEN + 1], prefix[AOS_APIKEY_PREFIX_LEN + 1], hash[AOS_APIKEY_HASH_LEN + 1];
    bool seen[256] = {false};

    for (int i = 0; i < NKEYS; i++) {
        assert_int_equal(aos_apikey_generate(key, prefix, hash), 0);
        for (int j = 0; j < AOS_APIKEY_PREFIX_LEN; j++)
            seen[(unsigned char)prefix[j]] = true;
    }
    for (const char *c = alphabet; *c != '\0'; c++)
        if (!seen[(unsigned char)*c])
            fail_msg("prefix character '%c' never drawn", *c);
}

static void test_apikey_parse(void **state)
{
    (void)state;
    const char *good = "aos_abc123def456_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char prefix[AOS_APIKEY_PREFIX_LEN + 1], k[128];
    const char *secret = NULL;
    const size_t n = strlen(good);

    assert_int_equal(n, AOS_APIKEY_LEN);
    assert_int_equal(aos_apikey_parse(good, n, prefix, &secret), 0);
    assert_string_equal(prefix, "abc123def456");
    assert_ptr_equal(secret, good + 17);

    /* Every single-character deviation at every position is refused. */
    for (size_t i = 0; i < n; i++) {
        static const char probes[] = {'A', 'Z', 'g', '_', '-', ' ', '\0', '\n', (char)0xc3};
        for (size_t j = 0; j < sizeof(probes); j++) {
            memcpy(k, good, n + 1);
            if (k[i] == probes[j])
                continue;
            k[i] = probes[j];
            /* One swap is still valid: a prefix letter for another. */
            bool valid = i >= 4 && i < 16 && probes[j] == 'g';
            if (aos_apikey_parse(k, n, prefix, &secret) != (valid ? 0 : -1))
                fail_msg("position %zu probe 0x%02x: wrong verdict", i, (unsigned char)probes[j]);
        }
    }
    /* Wrong lengths, including the valid text with a wrong length. */
    assert_int_equal(aos_apikey_parse(good, n - 1, prefix, &secret), -1);
    memcpy(k, good, n + 1);
    k[n] = 'a';
    k[n + 1] = '\0';
    assert_int_equal(aos_apikey_parse(k, n + 1, prefix, &secret), -1);
    assert_int_equal(aos_apikey_parse("", 0, prefix, &secret), -1);
    assert_int_equal(aos_apikey_parse(NULL, n, prefix, &secret), -1);
    assert_int_equal(aos_apikey_parse("aos_", 4, prefix, &secret), -1);
    /* Bearer-style decoration is not stripped here. */
    snprintf(k, sizeof(k), " %s", good);
    assert_int_equal(aos_apikey_parse(k, n + 1, prefix, &secret), -1);
    assert_int_equal(aos_apikey_parse(k, n, prefix, &secret), -1);
    /* Prefix and secret swapped in length. */
    assert_int_equal(
        aos_apikey_parse("aos_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef_abc123def456",
                         n, prefix, &secret),
        -1);
}

static void test_apikey_hash(void **state)
{
    (void)state;
    char h[AOS_APIKEY_HASH_LEN + 1];

    aos_apikey_hash("abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    aos_apikey_hash("", 0, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* The length counts, not the terminator. */
    aos_apikey_hash("abcdef", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int main(void)
{
    /* One group: TAP allows one plan per stream.  The apikey.c tests have
     * no driver state, so FX_RUN keeps them whatever AOS_TEST_PGSQL says. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apikey_generate),
        cmocka_unit_test(test_apikey_prefix_alphabet),
        cmocka_unit_test(test_apikey_parse),
        cmocka_unit_test(test_apikey_hash),
        FX_TESTS(test_password_allow, setup, teardown),
        FX_TESTS(test_password_wrong, setup, teardown),
        FX_TESTS(test_unknown_email, setup, teardown),
        FX_TESTS(test_email_in_two_tenants, setup, teardown),
        FX_TESTS(test_wrong_tenant_named, setup, teardown),
        FX_TESTS(test_inactive_tenant, setup, teardown),
        FX_TESTS(test_user_without_password, setup, teardown),
        FX_TESTS(test_corrupt_hash_is_error, setup, teardown),
        FX_TESTS(test_local_ignores_other_kinds, setup, teardown),
        FX_TESTS(test_local_without_dummy_hash, setup, teardown),
        FX_TESTS(test_key_allow, setup, teardown),
        FX_TESTS(test_key_wrong_secret, setup, teardown),
        FX_TESTS(test_key_revoked_expired_inactive, setup, teardown),
        FX_TESTS(test_key_malformed, setup, teardown),
        FX_TESTS(test_apikey_ignores_other_kinds, setup, teardown),
        FX_TESTS(test_no_store_attached, setup, teardown),
        FX_TESTS(test_concurrent_calls, setup, teardown),
        FX_TESTS(test_store_user_find_login, setup, teardown),
    };

    aos_log_configure(AOS_LVL_WARN, AOS_LOG_TEXT);
    return FX_RUN("auth backends", tests);
}
