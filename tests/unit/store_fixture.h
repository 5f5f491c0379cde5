/*
 * A fresh, private database for each store test, on each driver:
 *  - SQLite: a new file in a new temporary directory, removed afterwards;
 *  - PostgreSQL (when AOS_TEST_PGSQL holds a conninfo): a new schema
 *    aos_t_<random> in that database, selected for every pooled connection
 *    through `options=-csearch_path=...` appended to the conninfo, and
 *    dropped afterwards.  Tests running in parallel against ONE database
 *    (make -j check, the integration tests) never see each other's tables.
 *
 * Included by the store tests after <cmocka.h>.  Tests are listed once
 * per driver with FX_TESTS(fn) and run by FX_RUN, which leaves the
 * PostgreSQL copies out when AOS_TEST_PGSQL is unset (rather than skipping
 * them: cmocka 1.1.5 reports a skip as "not ok # SKIP", which the TAP
 * driver counts as a failure).
 *
 * A test that defines FX_STORE_CALLS before the include also gets the
 * short forms for store calls made one transaction each (see the end).
 */
#ifndef AOS_TEST_STORE_FIXTURE_H
#define AOS_TEST_STORE_FIXTURE_H

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uuid/uuid.h>

#include "conf.h"
#include "store/migrate.h"
#include "store/ops.h"
#include "store/store.h"

struct fx {
    bool pg;      /* which driver this copy of the test uses */
    bool enabled; /* false: PostgreSQL without AOS_TEST_PGSQL */
    struct aos_store *store;
    struct aos_conf_store conf;
    char dir[256];   /* sqlite: the temporary directory */
    char path[300];  /* sqlite: the database file */
    char schema[40]; /* pgsql: the private schema */
    char *conninfo;  /* pgsql: conninfo selecting the schema */
};

static struct fx fx_sqlite = {.pg = false};
static struct fx fx_pgsql = {.pg = true};

/* The two copies of a test, one per driver; state is the struct fx. */
#define FX_TESTS(fn, setup, teardown) \
    {"sqlite_" #fn, fn, setup, teardown, &fx_sqlite}, { "pgsql_" #fn, fn, setup, teardown, &fx_pgsql }

/* Runs one statement outside any test transaction (setup, teardown). */
static inline int fx_exec_once(struct aos_store *s, const char *sql, char *err, size_t errlen)
{
    struct aos_store_tx *tx = NULL;
    int rc = aos_store_begin(s, true, &tx, err, errlen);

    if (rc != AOS_DB_OK)
        return rc;
    rc = aos_store_exec_script(tx, sql, err, errlen);
    if (rc != AOS_DB_OK) {
        aos_store_rollback(tx);
        return rc;
    }
    return aos_store_commit(tx, err, errlen);
}

/* An admin store on the shared database itself (public schema untouched:
 * only CREATE/DROP SCHEMA run through it). */
static inline struct aos_store *fx_admin_store(const char *base)
{
    struct aos_conf_store c = {0};

    c.driver = (char *)"pgsql";
    c.conninfo = (char *)base;
    c.pool_size = 1;
    c.busy_timeout = 10;
    return aos_store_new(&c);
}

static inline bool fx_uri(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

/* Opens a new private database for f.  Returns 0 or -1 (message printed). */
static inline int fx_open(struct fx *f)
{
    char err[512] = "";
    int rc;

    f->enabled = true;
    f->store = NULL;
    memset(&f->conf, 0, sizeof(f->conf));
    f->conf.pool_size = 4;
    f->conf.busy_timeout = 30;
    if (!f->pg) {
        const char *tmp = getenv("TMPDIR");

        snprintf(f->dir, sizeof(f->dir), "%s/aos-store-test.XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
        if (mkdtemp(f->dir) == NULL) {
            perror("mkdtemp");
            return -1;
        }
        snprintf(f->path, sizeof(f->path), "%s/aos.db", f->dir);
        f->conf.driver = (char *)"sqlite";
        f->conf.path = f->path;
    } else {
        const char *base = getenv("AOS_TEST_PGSQL");
        struct aos_store *admin;
        char sql[128], hex[33];
        unsigned char raw[16];
        size_t need, i;

        if (base == NULL || *base == '\0') {
            f->enabled = false;
            return 0;
        }
        uuid_generate_random(raw);
        for (i = 0; i < 8; i++)
            snprintf(hex + 2 * i, 3, "%02x", raw[i]);
        snprintf(f->schema, sizeof(f->schema), "aos_t_%s", hex);
        admin = fx_admin_store(base);
        if (admin == NULL)
            return -1;
        /* The name is ours (random hex), never input: safe to format. */
        snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", f->schema);
        rc = fx_exec_once(admin, sql, err, sizeof(err));
        aos_store_free(admin);
        if (rc != AOS_DB_OK) {
            fprintf(stderr, "# cannot create schema %s: %s\n", f->schema, err);
            return -1;
        }
        need = strlen(base) + strlen(f->schema) + 64;
        f->conninfo = malloc(need);
        if (f->conninfo == NULL)
            return -1;
        if (fx_uri(base))
            snprintf(f->conninfo, need, "%s%coptions=-csearch_path%%3D%s", base,
                     strchr(base, '?') ? '&' : '?', f->schema);
        else
            snprintf(f->conninfo, need, "%s options='-csearch_path=%s'", base, f->schema);
        f->conf.driver = (char *)"pgsql";
        f->conf.conninfo = f->conninfo;
    }
    f->store = aos_store_new(&f->conf);
    if (f->store == NULL) {
        fprintf(stderr, "# aos_store_new failed\n");
        return -1;
    }
    rc = aos_store_connect(f->store, err, sizeof(err));
    if (rc != AOS_DB_OK) {
        fprintf(stderr, "# connect failed: %s\n", err);
        return -1;
    }
    return 0;
}

/* A second store on the same private database (concurrent migrators). */
static inline struct aos_store *fx_another_store(struct fx *f) { return aos_store_new(&f->conf); }

static inline void fx_close(struct fx *f)
{
    char err[512] = "";

    if (f->store != NULL) {
        aos_store_free(f->store);
        f->store = NULL;
    }
    if (!f->enabled)
        return;
    if (!f->pg) {
        DIR *d = opendir(f->dir);
        struct dirent *e;
        char p[600];

        while (d != NULL && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
            unlink(p);
        }
        if (d != NULL)
            closedir(d);
        rmdir(f->dir);
    } else if (f->schema[0] != '\0') {
        struct aos_store *admin = fx_admin_store(getenv("AOS_TEST_PGSQL"));
        char sql[128];

        snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", f->schema);
        if (admin == NULL || fx_exec_once(admin, sql, err, sizeof(err)) != AOS_DB_OK)
            fprintf(stderr, "# cannot drop schema %s: %s\n", f->schema, err);
        aos_store_free(admin);
        f->schema[0] = '\0';
    }
    free(f->conninfo);
    f->conninfo = NULL;
}

/* In a test: the driver's state, or skip the PostgreSQL copy. */
static inline struct fx *fx_get(void **state)
{
    struct fx *f = *state;

    if (!f->enabled)
        skip();
    return f;
}

/* Runs tests[0..n), without the PostgreSQL copies if there is no server. */
static inline int fx_run(const char *group, const struct CMUnitTest *tests, size_t n)
{
    const char *pg = getenv("AOS_TEST_PGSQL");
    bool with_pg = pg != NULL && *pg != '\0';
    struct CMUnitTest *run = calloc(n, sizeof(*run));
    size_t i, m = 0;
    int rc;

    if (run == NULL)
        return 1;
    for (i = 0; i < n; i++)
        if (with_pg || tests[i].initial_state != &fx_pgsql)
            run[m++] = tests[i];
    if (!with_pg)
        fprintf(stderr, "# AOS_TEST_PGSQL is not set: %zu PostgreSQL tests not run\n", n - m);
    rc = _cmocka_run_group_tests(group, run, m, NULL, NULL);
    free(run);
    return rc;
}
/* Two configured tenants, as aos_conf_load would produce them. */
#define FX_TENANT_A "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f"
#define FX_TENANT_B "0b9a5c1e-2d3f-4a6b-8c7d-9e0f1a2b3c4d"

static inline struct aos_conf_tenant fx_conf_tenant(const char *id, const char *name)
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

/* cmocka setup: open the fixture, migrate to the latest schema and sync
 * the tenants "acme" (FX_TENANT_A) and "globex" (FX_TENANT_B). */
static inline int fx_setup_two_tenants(void **state)
{
    struct fx *f = *state;
    struct aos_store_tx *tx = NULL;
    struct aos_conf_tenant t[2];
    char err[512];

    if (fx_open(f) != 0)
        return -1;
    if (!f->enabled)
        return 0;
    if (aos_migrate_up(f->store, 0, NULL, NULL, err, sizeof(err)) != AOS_DB_OK) {
        fprintf(stderr, "# migrate: %s\n", err);
        return -1;
    }
    t[0] = fx_conf_tenant(FX_TENANT_A, "acme");
    t[1] = fx_conf_tenant(FX_TENANT_B, "globex");
    if (aos_store_begin(f->store, true, &tx, err, sizeof(err)) != AOS_DB_OK ||
        aos_store_tenants_sync(tx, t, 2, err, sizeof(err)) != AOS_DB_OK ||
        aos_store_commit(tx, err, sizeof(err)) != AOS_DB_OK) {
        fprintf(stderr, "# tenants: %s\n", err);
        return -1;
    }
    return 0;
}

static inline int fx_teardown(void **state)
{
    fx_close(*state);
    return 0;
}

#define FX_RUN(group, tests) fx_run(group, tests, sizeof(tests) / sizeof((tests)[0]))

#ifdef FX_STORE_CALLS
/*
 * Store calls, each in a write transaction of its own that commits on
 * AOS_DB_OK and rolls back otherwise:
 *     OK(f, aos_store_agent_get(tx, TENANT_A, id, &a, E));   must succeed
 *     assert_int_equal(TX(f, aos_store_agent_get(...)), AOS_DB_NOT_FOUND);
 * The call names the transaction `tx` and reports into `err` through E.
 */
#include <json-c/json.h>

/* Operations report into this buffer (the test's thread only). */
static char err[512];
#define E err, sizeof(err)

/* The transaction TX() runs its call in (the calls name it `tx`). */
static struct aos_store_tx *tx;

static inline struct aos_store_tx *tx_begin(struct fx *f)
{
    struct aos_store_tx *t = NULL;

    if (aos_store_begin(f->store, true, &t, E) != AOS_DB_OK)
        fail_msg("begin: %s", err);
    return t;
}

/* Commits on AOS_DB_OK, else rolls back; returns rc. */
static inline int tx_end(struct aos_store_tx *t, int rc)
{
    char cerr[512];

    if (rc != AOS_DB_OK) {
        aos_store_rollback(t);
        return rc;
    }
    if (aos_store_commit(t, cerr, sizeof(cerr)) != AOS_DB_OK)
        fail_msg("commit: %s", cerr);
    return rc;
}

/* Runs call in a write transaction of f's store: its status. */
#define TX(f, call) (tx = tx_begin(f), tx_end(tx, (call)))

#define OK(f, call)                                                        \
    do {                                                                   \
        int rc2_ = TX(f, call);                                            \
        if (rc2_ != AOS_DB_OK)                                             \
            fail_msg("%s: %s (%s)", #call, aos_db_status_name(rc2_), err); \
    } while (0)

/* Equal JSON values, whatever the formatting (PostgreSQL re-formats). */
static inline void assert_json_eq(const char *got, const char *want)
{
    struct json_object *g, *w;

    if (got == NULL)
        fail_msg("JSON missing, want %s", want);
    g = json_tokener_parse(got);
    w = json_tokener_parse(want);
    assert_non_null(g);
    assert_non_null(w);
    if (!json_object_equal(g, w))
        fail_msg("JSON differs: got %s, want %s", got, want);
    json_object_put(g);
    json_object_put(w);
}

/* Asserts that row id of table is kept, marked deleted (a soft delete). */
static inline void assert_soft_deleted(struct fx *f, const char *table, const char *id)
{
    struct aos_store_tx *rtx = NULL;
    struct aos_db_result *res = NULL;
    struct aos_db_param p[] = {AOS_DB_P_TEXT(id)};
    char sql[128];

    /* table is the test's own constant, never input. */
    snprintf(sql, sizeof(sql), "SELECT deleted_at FROM %s WHERE id = $1", table);
    assert_int_equal(aos_store_begin(f->store, false, &rtx, E), AOS_DB_OK);
    assert_int_equal(aos_store_exec(rtx, sql, p, 1, &res, E), AOS_DB_OK);
    assert_int_equal(aos_db_result_rows(res), 1);
    assert_false(aos_db_result_is_null(res, 0, 0));
    aos_db_result_free(res);
    aos_store_rollback(rtx);
}
#endif /* FX_STORE_CALLS */

#endif
