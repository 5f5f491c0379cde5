/*
 * The migration engine (core/store/migrate.c) on SQLite always and on
 * PostgreSQL when AOS_TEST_PGSQL is set, each test in a private database
 * (store_fixture.h): up from empty, status and check messages, down and up
 * again, full round trips that compare the schema's objects, refusal of a
 * newer schema, a failing migration that leaves nothing behind, and two
 * migrators at once.
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

#include "store/migrate.h"
#include "store/store.h"
#include "store_fixture.h"

static int setup(void **state) { return fx_open(*state); }

static int teardown(void **state)
{
    fx_close(*state);
    return 0;
}

static size_t known(struct fx *f, const struct aos_migration **set)
{
    size_t n;

    *set = aos_migrate_set(f->store, &n);
    return n;
}

struct report_log {
    int calls;
    int versions[64];
};

/* Runs on the migrating thread: records only (cmocka asserts belong to
 * the test's thread). */
static void report(void *arg, int version, const char *name)
{
    struct report_log *l = arg;

    if (l->calls < 64)
        l->versions[l->calls] = name != NULL && name[0] != '\0' ? version : -1;
    l->calls++;
}

/* Every object of the schema (tables, indexes, sequences), one per line,
 * sorted: two snapshots are equal iff the schemas have the same objects. */
static char *snapshot(struct fx *f)
{
    static const char SQL_SQLITE[] = "SELECT type || ':' || name || ':' || tbl_name FROM sqlite_master "
                                     "WHERE substr(name, 1, 7) <> 'sqlite_' ORDER BY 1";
    static const char SQL_PG[] = "SELECT c.relkind::text || ':' || c.relname FROM pg_class c "
                                 "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE n.nspname = current_schema() ORDER BY 1";
    struct aos_store_tx *tx = NULL;
    struct aos_db_result *res = NULL;
    char err[512] = "";
    char *out;
    size_t i, len = 1;
    int rc;

    assert_int_equal(aos_store_begin(f->store, false, &tx, err, sizeof(err)), AOS_DB_OK);
    rc = aos_store_exec(tx, f->pg ? SQL_PG : SQL_SQLITE, NULL, 0, &res, err, sizeof(err));
    aos_store_rollback(tx); /* before asserting: a failure must not leave it open */
    if (rc != AOS_DB_OK)
        fail_msg("snapshot: %s", err);
    for (i = 0; i < aos_db_result_rows(res); i++)
        len += strlen(aos_db_result_text(res, i, 0)) + 1;
    out = calloc(1, len);
    assert_non_null(out);
    for (i = 0; i < aos_db_result_rows(res); i++) {
        strncat(out, aos_db_result_text(res, i, 0), len - strlen(out) - 1);
        strncat(out, "\n", len - strlen(out) - 1);
    }
    aos_db_result_free(res);
    return out;
}

/* Only schema_migrations (and, on PostgreSQL, its primary key index). */
static void assert_only_bookkeeping(struct fx *f)
{
    char *s = snapshot(f);
    char *line, *save = NULL;

    for (line = strtok_r(s, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        if (strstr(line, "schema_migrations") == NULL)
            fail_msg("object left behind after rolling everything back: %s", line);
    }
    free(s);
}

static void exec_ok(struct fx *f, const char *sql, const struct aos_db_param *p, size_t np)
{
    struct aos_store_tx *tx = NULL;
    char err[512] = "";

    assert_int_equal(aos_store_begin(f->store, true, &tx, err, sizeof(err)), AOS_DB_OK);
    if (aos_store_exec(tx, sql, p, np, NULL, err, sizeof(err)) != AOS_DB_OK) {
        aos_store_rollback(tx);
        fail_msg("%s: %s", sql, err);
    }
    assert_int_equal(aos_store_commit(tx, err, sizeof(err)), AOS_DB_OK);
}

static void pending_message(const struct aos_migration *set, int current, int latest, char *buf, size_t len)
{
    char names[256] = "";
    int v;

    for (v = current + 1; v <= latest; v++) {
        char one[80];

        snprintf(one, sizeof(one), "%s%04d_%s", v > current + 1 ? ", " : "", v, set[v - 1].name);
        strncat(names, one, sizeof(names) - strlen(names) - 1);
    }
    snprintf(buf, len, "%d migration%s pending (%s): run `aosd --migrate -c FILE`", latest - current,
             latest - current == 1 ? "" : "s", names);
}

static void test_up_from_empty(void **state)
{
    struct fx *f = fx_get(state);
    const struct aos_migration *set;
    int latest = (int)known(f, &set);
    struct report_log log = {0};
    char err[512] = "", want[512];
    int cur = -1, lat = -1;
    char *objects;

    assert_true(latest >= 1);
    /* Empty database: version 0, everything pending, nothing created by asking. */
    assert_int_equal(aos_migrate_status(f->store, &cur, &lat, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(cur, 0);
    assert_int_equal(lat, latest);
    assert_int_equal(aos_migrate_check(f->store, err, sizeof(err)), AOS_DB_SCHEMA);
    pending_message(set, 0, latest, want, sizeof(want));
    assert_string_equal(err, want);
    objects = snapshot(f);
    assert_string_equal(objects, "");
    free(objects);

    assert_int_equal(aos_migrate_up(f->store, 0, report, &log, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(log.calls, latest);
    for (int i = 0; i < latest; i++) {
        assert_int_equal(log.versions[i], i + 1);
    }
    assert_int_equal(aos_migrate_status(f->store, &cur, &lat, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(cur, latest);
    assert_int_equal(aos_migrate_check(f->store, err, sizeof(err)), AOS_DB_OK);

    /* Every table of DESIGN.md section 6 exists. */
    objects = snapshot(f);
    static const char *const tables[] = {
        "tenants", "users",       "api_keys",  "agents",          "workflows",
        "runs",    "steps",       "approvals", "events",          "usage",
        "journal", "idempotency", "consent",   "forget_requests", "schema_migrations"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        char needle[64];

        snprintf(needle, sizeof(needle), f->pg ? "r:%s\n" : "table:%s:", tables[i]);
        if (strstr(objects, needle) == NULL)
            fail_msg("table %s missing after migrating up", tables[i]);
    }
    free(objects);

    /* Up again: nothing to do, nothing reported. */
    log.calls = 0;
    assert_int_equal(aos_migrate_up(f->store, 0, report, &log, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(log.calls, 0);
}

static void test_down_one_then_up(void **state)
{
    struct fx *f = fx_get(state);
    const struct aos_migration *set;
    int latest = (int)known(f, &set);
    struct report_log log = {0};
    char err[512] = "", want[512];
    int cur, lat;

    assert_int_equal(aos_migrate_up(f->store, 0, NULL, NULL, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(aos_migrate_down(f->store, 1, report, &log, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(log.calls, 1);
    assert_int_equal(log.versions[0], latest);
    assert_int_equal(aos_migrate_status(f->store, &cur, &lat, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(cur, latest - 1);
    assert_int_equal(aos_migrate_check(f->store, err, sizeof(err)), AOS_DB_SCHEMA);
    pending_message(set, latest - 1, latest, want, sizeof(want));
    assert_string_equal(err, want);

    log.calls = 0;
    assert_int_equal(aos_migrate_up(f->store, 0, report, &log, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(log.calls, 1);
    assert_int_equal(log.versions[0], latest);
    assert_int_equal(aos_migrate_check(f->store, err, sizeof(err)), AOS_DB_OK);
}

/* Up one version at a time recording the schema, then down one at a time:
 * each down must restore exactly the schema before its up. */
static void test_round_trip(void **state)
{
    struct fx *f = fx_get(state);
    const struct aos_migration *set;
    int latest = (int)known(f, &set);
    struct report_log log = {0};
    char err[512] = "";
    char **snap;
    int v, cur, lat;

    snap = calloc((size_t)latest + 1, sizeof(*snap));
    assert_non_null(snap);
    for (v = 1; v <= latest; v++) {
        assert_int_equal(aos_migrate_up(f->store, v, NULL, NULL, err, sizeof(err)), AOS_DB_OK);
        snap[v] = snapshot(f);
    }
    for (v = latest; v >= 1; v--) {
        assert_int_equal(aos_migrate_down(f->store, 1, NULL, NULL, err, sizeof(err)), AOS_DB_OK);
        if (v > 1) {
            char *now = snapshot(f);
            assert_string_equal(now, snap[v - 1]);
            free(now);
        }
    }
    assert_only_bookkeeping(f);
    assert_int_equal(aos_migrate_status(f->store, &cur, &lat, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(cur, 0);
    /* Nothing left to roll back: fine, nothing reported. */
    assert_int_equal(aos_migrate_down(f->store, 1, report, &log, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(log.calls, 0);

    /* All the way up and all the way down in one call each. */
    assert_int_equal(aos_migrate_up(f->store, 0, NULL, NULL, err, sizeof(err)), AOS_DB_OK);
    char *again = snapshot(f);
    assert_string_equal(again, snap[latest]);
    free(again);
    assert_int_equal(aos_migrate_down(f->store, latest + 5, report, &log, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(log.calls, latest);
    assert_only_bookkeeping(f);
    assert_int_equal(aos_migrate_up(f->store, 0, NULL, NULL, err, sizeof(err)), AOS_DB_OK);
    again = snapshot(f);
    assert_string_equal(again, snap[latest]);
    free(again);

    for (v = 0; v <= latest; v++)
        free(snap[v]);
    free(snap);
}

static void test_newer_schema_refused(void **state)
{
    struct fx *f = fx_get(state);
    const struct aos_migration *set;
    int latest = (int)known(f, &set);
    char err[512] = "", want[512];
    int cur, lat;

    assert_int_equal(aos_migrate_up(f->store, 0, NULL, NULL, err, sizeof(err)), AOS_DB_OK);
    struct aos_db_param p[] = {AOS_DB_P_INT(latest + 1), AOS_DB_P_TEXT("from_the_future"), AOS_DB_P_INT(1)};
    exec_ok(f, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", p, 3);

    snprintf(want, sizeof(want),
             "database schema is at version %d but this aosd knows only up to %d: upgrade aosd", latest + 1,
             latest);
    assert_int_equal(aos_migrate_check(f->store, err, sizeof(err)), AOS_DB_SCHEMA);
    assert_string_equal(err, want);
    err[0] = '\0';
    assert_int_equal(aos_migrate_up(f->store, 0, NULL, NULL, err, sizeof(err)), AOS_DB_SCHEMA);
    assert_string_equal(err, want);
    err[0] = '\0';
    assert_int_equal(aos_migrate_down(f->store, 1, NULL, NULL, err, sizeof(err)), AOS_DB_SCHEMA);
    assert_non_null(strstr(err, "knows only up to"));
    /* status reports; it does not judge. */
    assert_int_equal(aos_migrate_status(f->store, &cur, &lat, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(cur, latest + 1);
    assert_int_equal(lat, latest);

    struct aos_migration_state *h = NULL;
    size_t nh = 0;
    assert_int_equal(aos_migrate_history(f->store, &h, &nh, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(nh, (size_t)latest + 1);
    assert_true(h[0].known && h[0].applied && h[0].applied_at > 0);
    assert_false(h[latest].known);
    assert_true(h[latest].applied);
    assert_string_equal(h[latest].name, "from_the_future");
    free(h);
}

/* schema_migrations naming another build's migration is refused. */
static void test_name_mismatch_refused(void **state)
{
    struct fx *f = fx_get(state);
    char err[512] = "";

    assert_int_equal(aos_migrate_up(f->store, 0, NULL, NULL, err, sizeof(err)), AOS_DB_OK);
    struct aos_db_param p[] = {AOS_DB_P_TEXT("something_else")};
    exec_ok(f, "UPDATE schema_migrations SET name = $1 WHERE version = 1", p, 1);
    assert_int_equal(aos_migrate_check(f->store, err, sizeof(err)), AOS_DB_SCHEMA);
    assert_non_null(strstr(err, "0001_something_else"));
    assert_non_null(strstr(err, "different build"));
    assert_int_equal(aos_migrate_up(f->store, 0, NULL, NULL, err, sizeof(err)), AOS_DB_SCHEMA);
}

/* A migration that fails half-way leaves its own changes and its
 * schema_migrations row out, and keeps the migrations before it. */
static void test_failing_migration_leaves_nothing(void **state)
{
    struct fx *f = fx_get(state);
    const struct aos_migration *set;
    size_t latest = known(f, &set);
    struct aos_migration *bad;
    struct report_log log = {0};
    char err[512] = "", want[64];
    char *before, *after;
    int cur, lat;

    bad = calloc(latest + 1, sizeof(*bad));
    assert_non_null(bad);
    memcpy(bad, set, latest * sizeof(*bad));
    bad[latest].version = (int)latest + 1;
    bad[latest].name = "broken";
    /* Creates a table, alters another, then fails. */
    bad[latest].up = "CREATE TABLE t_broken (x INTEGER);\n"
                     "CREATE INDEX t_broken_x ON t_broken (x);\n"
                     "ALTER TABLE tenants ADD COLUMN t_broken_col INTEGER;\n"
                     "INSERT INTO no_such_table VALUES (1);\n";
    bad[latest].down = "DROP TABLE t_broken;";

    /* From empty: 1..latest are applied and kept, then latest+1 fails. */
    assert_int_equal(aos_migrate_up_set(f->store, bad, latest + 1, 0, report, &log, err, sizeof(err)),
                     AOS_DB_ERROR);
    snprintf(want, sizeof(want), "migration %04d_broken failed: ", (int)latest + 1);
    assert_non_null(strstr(err, want));
    assert_int_equal(log.calls, (int)latest);
    assert_int_equal(aos_migrate_status(f->store, &cur, &lat, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(cur, (int)latest);
    assert_int_equal(aos_migrate_check(f->store, err, sizeof(err)), AOS_DB_OK);

    /* Again, now from latest: the schema is exactly as before. */
    before = snapshot(f);
    assert_null(strstr(before, "t_broken"));
    assert_int_equal(aos_migrate_up_set(f->store, bad, latest + 1, 0, NULL, NULL, err, sizeof(err)),
                     AOS_DB_ERROR);
    after = snapshot(f);
    assert_string_equal(before, after);
    assert_int_equal(aos_migrate_check_set(f->store, bad, latest + 1, err, sizeof(err)), AOS_DB_SCHEMA);
    assert_non_null(strstr(err, "1 migration pending"));

    /* The column added before the failure is gone too. */
    struct aos_store_tx *tx = NULL;
    assert_int_equal(aos_store_begin(f->store, false, &tx, err, sizeof(err)), AOS_DB_OK);
    int rc = aos_store_exec(tx, "SELECT t_broken_col FROM tenants", NULL, 0, NULL, err, sizeof(err));
    aos_store_rollback(tx);
    assert_int_not_equal(rc, AOS_DB_OK);

    free(before);
    free(after);
    free(bad);
}

static void test_bad_arguments(void **state)
{
    struct fx *f = fx_get(state);
    const struct aos_migration *set;
    int latest = (int)known(f, &set);
    char err[512] = "";
    int cur, lat;

    assert_int_equal(aos_migrate_up(f->store, latest + 1, NULL, NULL, err, sizeof(err)), AOS_DB_SCHEMA);
    assert_int_equal(aos_migrate_up(f->store, -1, NULL, NULL, err, sizeof(err)), AOS_DB_SCHEMA);
    assert_int_equal(aos_migrate_down(f->store, 0, NULL, NULL, err, sizeof(err)), AOS_DB_ERROR);
    assert_int_equal(aos_migrate_status(f->store, &cur, &lat, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(cur, 0);
    if (latest >= 2) {
        assert_int_equal(aos_migrate_up(f->store, latest, NULL, NULL, err, sizeof(err)), AOS_DB_OK);
        assert_int_equal(aos_migrate_up(f->store, 1, NULL, NULL, err, sizeof(err)), AOS_DB_SCHEMA);
        assert_non_null(strstr(err, "use down"));
    }
}

struct migrator {
    struct aos_store *store;
    pthread_barrier_t *start;
    struct report_log log;
    int rc;
    char err[512];
};

static void *migrator_main(void *arg)
{
    struct migrator *m = arg;

    pthread_barrier_wait(m->start);
    m->rc = aos_migrate_up(m->store, 0, report, &m->log, m->err, sizeof(m->err));
    return NULL;
}

/* Two nodes starting at once: both succeed, each migration runs once. */
static void test_concurrent_migrators(void **state)
{
    struct fx *f = fx_get(state);
    const struct aos_migration *set;
    int latest = (int)known(f, &set);
    struct migrator m[4];
    pthread_barrier_t start;
    pthread_t th[4];
    char err[512] = "";
    int i, total = 0, cur, lat;

    memset(m, 0, sizeof(m));
    assert_int_equal(pthread_barrier_init(&start, NULL, 4), 0);
    for (i = 0; i < 4; i++) {
        m[i].store = fx_another_store(f);
        assert_non_null(m[i].store);
        m[i].start = &start;
        assert_int_equal(pthread_create(&th[i], NULL, migrator_main, &m[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        if (m[i].rc != AOS_DB_OK)
            fail_msg("migrator %d: %s", i, m[i].err);
        total += m[i].log.calls;
        aos_store_free(m[i].store);
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(total, latest);
    assert_int_equal(aos_migrate_status(f->store, &cur, &lat, err, sizeof(err)), AOS_DB_OK);
    assert_int_equal(cur, latest);
    assert_int_equal(aos_migrate_check(f->store, err, sizeof(err)), AOS_DB_OK);
}

/* The embedded sets agree: same versions and names on both drivers. */
static void test_embedded_sets_agree(void **state)
{
    (void)state;
    assert_true(aos_migrations_sqlite_count >= 1);
    assert_int_equal(aos_migrations_sqlite_count, aos_migrations_pgsql_count);
    for (size_t i = 0; i < aos_migrations_sqlite_count; i++) {
        assert_int_equal(aos_migrations_sqlite[i].version, (int)i + 1);
        assert_int_equal(aos_migrations_pgsql[i].version, (int)i + 1);
        assert_string_equal(aos_migrations_sqlite[i].name, aos_migrations_pgsql[i].name);
        assert_true(strlen(aos_migrations_sqlite[i].up) > 0 && strlen(aos_migrations_sqlite[i].down) > 0);
        assert_true(strlen(aos_migrations_pgsql[i].up) > 0 && strlen(aos_migrations_pgsql[i].down) > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_sets_agree),
        FX_TESTS(test_up_from_empty, setup, teardown),
        FX_TESTS(test_down_one_then_up, setup, teardown),
        FX_TESTS(test_round_trip, setup, teardown),
        FX_TESTS(test_newer_schema_refused, setup, teardown),
        FX_TESTS(test_name_mismatch_refused, setup, teardown),
        FX_TESTS(test_failing_migration_leaves_nothing, setup, teardown),
        FX_TESTS(test_bad_arguments, setup, teardown),
        FX_TESTS(test_concurrent_migrators, setup, teardown),
    };

    return FX_RUN("test_migrate", tests);
}
