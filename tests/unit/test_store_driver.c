/*
 * The store's SQL layer: both drivers, the pool, transactions, retries and
 * availability.  Every shared test runs against SQLite (a fresh temp dir)
 * and, when AOS_TEST_PGSQL holds a conninfo, against PostgreSQL too; there
 * each test uses its own tables with a random suffix (other test binaries
 * share the database in parallel) and drops them afterwards.
 *
 * The PostgreSQL outage tests put a small TCP proxy of their own between
 * the store and the server, so "the server went away" and "it came back"
 * are a command rather than a restart of a shared server.
 */
#include "config.h"

/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "store/db.h"
#include "store/store.h"

#define SECRET "S3cr3t-Pw-7f1d"

struct backend {
    const char *name;
    bool pg;
};
static const struct backend be_sqlite = {"sqlite", false};
static const struct backend be_pgsql = {"pgsql", true};

#define NSQL 16
struct ctx {
    const struct backend *be;
    bool skip;
    char dir[PATH_MAX];
    char path[PATH_MAX + 16];
    char sfx[17];
    char t[40], p[40], c[40]; /* table names */
    struct aos_conf_store conf;
    struct aos_store *store;
    char sqlbuf[NSQL][1024];
    int sqlnext;
};

/* ------------------------------------------------------------ helpers */

static void rand_hex(char *out, size_t nbytes)
{
    unsigned char b[32];
    assert_true(nbytes <= sizeof b);
    assert_int_equal(getrandom(b, nbytes, 0), (ssize_t)nbytes);
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* SQL text with @t, @p, @c replaced by this test's table names.  The
 * result lives in a small ring: the same template yields the same text,
 * which is what the statement caches key on. */
static const char *Q(struct ctx *c, const char *tmpl)
{
    char *out = c->sqlbuf[c->sqlnext++ % NSQL];
    size_t o = 0;
    for (const char *s = tmpl; *s; s++) {
        const char *name = NULL;
        if (s[0] == '@' && (s[1] == 't' || s[1] == 'p' || s[1] == 'c'))
            name = s[1] == 't' ? c->t : s[1] == 'p' ? c->p : c->c;
        if (name != NULL) {
            size_t n = strlen(name);
            assert_true(o + n < sizeof c->sqlbuf[0]);
            memcpy(out + o, name, n);
            o += n;
            s++;
        } else {
            assert_true(o + 1 < sizeof c->sqlbuf[0]);
            out[o++] = *s;
        }
    }
    out[o] = '\0';
    return out;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void conf_init(struct aos_conf_store *conf, const char *driver, const char *path, const char *conninfo)
{
    memset(conf, 0, sizeof *conf);
    conf->driver = (char *)driver;
    conf->path = (char *)(path ? path : "");
    conf->conninfo = (char *)(conninfo ? conninfo : "");
    conf->pool_size = 4;
    conf->busy_timeout = 5;
}

/* One statement in its own transaction. */
static int exec1(struct ctx *c, bool write, const char *sql, const struct aos_db_param *params, size_t n,
                 struct aos_db_result **res, char *err, size_t errlen)
{
    struct aos_store_tx *tx = NULL;
    int rc = aos_store_begin(c->store, write, &tx, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    rc = aos_store_exec(tx, sql, params, n, res, err, errlen);
    if (rc != AOS_DB_OK) {
        aos_store_rollback(tx);
        return rc;
    }
    rc = aos_store_commit(tx, err, errlen);
    if (rc != AOS_DB_OK && res != NULL) {
        aos_db_result_free(*res);
        *res = NULL;
    }
    return rc;
}

static void ok1(struct ctx *c, bool write, const char *sql, const struct aos_db_param *params, size_t n,
                struct aos_db_result **res)
{
    char err[512] = "";
    int rc = exec1(c, write, sql, params, n, res, err, sizeof err);
    if (rc != AOS_DB_OK)
        fail_msg("%s: %s -> %s: %s", c->be->name, sql, aos_db_status_name(rc), err);
}

static int64_t scalar(struct ctx *c, const char *sql)
{
    struct aos_db_result *r = NULL;
    ok1(c, false, sql, NULL, 0, &r);
    assert_int_equal(aos_db_result_rows(r), 1);
    int64_t v = aos_db_result_int(r, 0, 0);
    aos_db_result_free(r);
    return v;
}

static int64_t count_rows(struct ctx *c, const char *table_tmpl)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table_tmpl);
    return scalar(c, Q(c, sql));
}

static void create_tables(struct ctx *c)
{
    char err[512] = "";
    struct aos_store_tx *tx = NULL;
    assert_int_equal(aos_store_begin(c->store, true, &tx, err, sizeof err), AOS_DB_OK);
    int rc =
        aos_store_exec_script(tx,
                              Q(c, "CREATE TABLE @p (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"
                                   "CREATE TABLE @t (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v TEXT, n BIGINT,"
                                   " pos BIGINT CHECK (pos >= 0), pid INTEGER REFERENCES @p(id));"
                                   "CREATE TABLE @c (id INTEGER PRIMARY KEY, n BIGINT NOT NULL);"
                                   "INSERT INTO @p (id, name) VALUES (1, 'one');"
                                   "INSERT INTO @c (id, n) VALUES (1, 0);"
                                   "INSERT INTO @c (id, n) VALUES (2, 0);"),
                              err, sizeof err);
    if (rc != AOS_DB_OK)
        fail_msg("create tables: %s", err);
    assert_int_equal(aos_store_commit(tx, err, sizeof err), AOS_DB_OK);
}

static int setup(void **state)
{
    const struct backend *be = *state;
    struct ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->be = be;
    *state = c;
    rand_hex(c->sfx, 8);
    snprintf(c->t, sizeof c->t, "aos_t_%s", c->sfx);
    snprintf(c->p, sizeof c->p, "aos_p_%s", c->sfx);
    snprintf(c->c, sizeof c->c, "aos_c_%s", c->sfx);
    if (be->pg) {
        const char *ci = getenv("AOS_TEST_PGSQL");
        if (ci == NULL || *ci == '\0') {
            c->skip = true;
            return 0;
        }
        conf_init(&c->conf, "pgsql", NULL, ci);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(c->dir, sizeof c->dir, "%s/aos-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        assert_non_null(mkdtemp(c->dir));
        snprintf(c->path, sizeof c->path, "%s/aos.db", c->dir);
        conf_init(&c->conf, "sqlite", c->path, NULL);
    }
    c->store = aos_store_new(&c->conf);
    assert_non_null(c->store);
    create_tables(c);
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    if (c->store != NULL && c->be->pg) {
        char err[512];
        struct aos_store_tx *tx = NULL;
        if (aos_store_begin(c->store, true, &tx, err, sizeof err) == AOS_DB_OK) {
            if (aos_store_exec_script(tx,
                                      Q(c, "DROP TABLE IF EXISTS @t; DROP TABLE IF EXISTS @c;"
                                           " DROP TABLE IF EXISTS @p;"),
                                      err, sizeof err) == AOS_DB_OK)
                aos_store_commit(tx, err, sizeof err);
            else
                aos_store_rollback(tx);
        }
    }
    aos_store_free(c->store);
    if (c->dir[0])
        nftw(c->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
    return 0;
}

#define CTX(state)            \
    struct ctx *c = *(state); \
    if (c->skip)              \
    skip()

/* ------------------------------------------------------------ shared tests */

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(aos_db_status_name(AOS_DB_OK), "ok");
    assert_string_equal(aos_db_status_name(AOS_DB_RETRY), "retry");
    assert_string_equal(aos_db_status_name(AOS_DB_UNAVAILABLE), "unavailable");
    assert_string_equal(aos_db_status_name(AOS_DB_CONSTRAINT), "constraint");
    assert_string_equal(aos_db_status_name(42), "unknown");
}

static void test_ping_and_state(void **state)
{
    CTX(state);
    char err[512] = "", reason[256];
    struct aos_store *s = aos_store_new(&c->conf);
    assert_non_null(s);
    assert_string_equal(aos_store_driver_name(s), c->be->name);
    assert_int_equal(aos_store_is_pgsql(s), c->be->pg);
    assert_false(aos_store_available(s));
    aos_store_unavailable_reason(s, reason, sizeof reason);
    assert_string_equal(reason, "not connected yet");
    assert_int_equal(aos_store_ping(s, err, sizeof err), AOS_DB_OK);
    assert_true(aos_store_available(s));
    aos_store_unavailable_reason(s, reason, sizeof reason);
    assert_string_equal(reason, "");
    struct aos_store_stats st;
    aos_store_get_stats(s, &st);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.open, 1);
    assert_int_equal(st.in_use, 0);
    aos_store_free(s);
}

static void test_typed_params(void **state)
{
    CTX(state);
    static char big[100001];
    memset(big, 'x', sizeof big - 1);
    const char *utf8 = "na\xc3\xafve \xe2\x82\xac \xf0\x9f\x98\x80 'quoted' \"dq\" \\ back";
    const char *ins = Q(c, "INSERT INTO @t (id, k, v, n) VALUES ($1, $2, $3, $4)");
    struct aos_db_param p1[] = {AOS_DB_P_INT(1), AOS_DB_P_TEXT("a"), AOS_DB_P_NULL, AOS_DB_P_INT(INT64_MAX)};
    struct aos_db_param p2[] = {AOS_DB_P_INT(2), AOS_DB_P_TEXT("b"), AOS_DB_P_TEXT(""),
                                AOS_DB_P_INT(INT64_MIN)};
    struct aos_db_param p3[] = {AOS_DB_P_INT(3), AOS_DB_P_TEXT(utf8), AOS_DB_P_TEXT(big), AOS_DB_P_INT(-1)};
    /* A slice: only the first 3 bytes are the value. */
    const char *volatile none = NULL; /* AOS_DB_P_TEXT(NULL) binds SQL NULL */
    struct aos_db_param p4[] = {AOS_DB_P_INT(4), AOS_DB_P_TEXTN("abcdef", 3), AOS_DB_P_TEXT(none),
                                AOS_DB_P_NULL};
    ok1(c, true, ins, p1, 4, NULL);
    ok1(c, true, ins, p2, 4, NULL);
    ok1(c, true, ins, p3, 4, NULL);
    ok1(c, true, ins, p4, 4, NULL);

    struct aos_db_result *r = NULL;
    ok1(c, false, Q(c, "SELECT id, k, v, n FROM @t ORDER BY id"), NULL, 0, &r);
    assert_int_equal(aos_db_result_rows(r), 4);
    assert_int_equal(aos_db_result_cols(r), 4);
    assert_int_equal(aos_db_result_int(r, 0, 0), 1);
    assert_string_equal(aos_db_result_text(r, 0, 1), "a");
    assert_true(aos_db_result_is_null(r, 0, 2));
    assert_null(aos_db_result_text(r, 0, 2));
    assert_int_equal(aos_db_result_len(r, 0, 2), 0);
    assert_string_equal(aos_db_result_text(r, 0, 3), "9223372036854775807");
    assert_true(aos_db_result_int(r, 0, 3) == INT64_MAX);
    assert_false(aos_db_result_is_null(r, 1, 2));
    assert_string_equal(aos_db_result_text(r, 1, 2), "");
    assert_true(aos_db_result_int(r, 1, 3) == INT64_MIN);
    assert_string_equal(aos_db_result_text(r, 2, 1), utf8);
    assert_int_equal(aos_db_result_len(r, 2, 2), sizeof big - 1);
    assert_memory_equal(aos_db_result_text(r, 2, 2), big, sizeof big - 1);
    assert_int_equal(aos_db_result_int(r, 2, 3), -1);
    assert_string_equal(aos_db_result_text(r, 3, 1), "abc");
    assert_true(aos_db_result_is_null(r, 3, 2));
    assert_true(aos_db_result_is_null(r, 3, 3));
    aos_db_result_free(r);

    /* Parameters in WHERE, of both types. */
    struct aos_db_param w[] = {AOS_DB_P_TEXT("b"), AOS_DB_P_INT(INT64_MIN)};
    ok1(c, false, Q(c, "SELECT id FROM @t WHERE k = $1 AND n = $2"), w, 2, &r);
    assert_int_equal(aos_db_result_rows(r), 1);
    assert_int_equal(aos_db_result_int(r, 0, 0), 2);
    aos_db_result_free(r);
}

static void test_text_with_nul_refused(void **state)
{
    CTX(state);
    char err[512] = "";
    struct aos_db_param p[] = {AOS_DB_P_INT(1), AOS_DB_P_TEXTN("a\0b", 3)};
    int rc = exec1(c, true, Q(c, "INSERT INTO @t (id, k) VALUES ($1, $2)"), p, 2, NULL, err, sizeof err);
    assert_int_equal(rc, AOS_DB_ERROR);
    assert_non_null(strstr(err, "NUL"));
    assert_non_null(strstr(err, "$2"));
    assert_int_equal(count_rows(c, "@t"), 0);
}

static void test_params_out_of_order(void **state)
{
    CTX(state);
    struct aos_db_result *r = NULL;
    struct aos_db_param ab[] = {AOS_DB_P_TEXT("A"), AOS_DB_P_TEXT("B")};
    ok1(c, false, "SELECT $2 || '-' || $1 || '-' || $2", ab, 2, &r);
    assert_string_equal(aos_db_result_text(r, 0, 0), "B-A-B");
    aos_db_result_free(r);

    /* $3 twice (for columns of one type), $4 before $1. */
    struct aos_db_param p[] = {AOS_DB_P_TEXT("key"), AOS_DB_P_TEXT("val"), AOS_DB_P_INT(7), AOS_DB_P_INT(9)};
    ok1(c, true, Q(c, "INSERT INTO @t (n, v, id, pos, k) VALUES ($3, $2, $4, $3, $1)"), p, 4, NULL);
    ok1(c, false, Q(c, "SELECT id, k, v, n, pos FROM @t"), NULL, 0, &r);
    assert_int_equal(aos_db_result_rows(r), 1);
    assert_int_equal(aos_db_result_int(r, 0, 0), 9);
    assert_string_equal(aos_db_result_text(r, 0, 1), "key");
    assert_string_equal(aos_db_result_text(r, 0, 2), "val");
    assert_int_equal(aos_db_result_int(r, 0, 3), 7);
    assert_int_equal(aos_db_result_int(r, 0, 4), 7);
    aos_db_result_free(r);
}

static void test_param_count_mismatch(void **state)
{
    CTX(state);
    char err[512] = "";
    struct aos_db_param two[] = {AOS_DB_P_INT(1), AOS_DB_P_INT(2)};
    assert_int_equal(exec1(c, false, "SELECT CAST($1 AS TEXT)", two, 2, NULL, err, sizeof err), AOS_DB_ERROR);
    assert_non_null(strstr(err, "parameter"));
    assert_int_equal(
        exec1(c, false, "SELECT CAST($1 AS TEXT), CAST($2 AS TEXT)", two, 1, NULL, err, sizeof err),
        AOS_DB_ERROR);
    assert_non_null(strstr(err, "parameter"));
    /* Both still work with the right count, and the store is still up. */
    struct aos_db_result *r = NULL;
    ok1(c, false, "SELECT CAST($1 AS TEXT), CAST($2 AS TEXT)", two, 2, &r);
    assert_string_equal(aos_db_result_text(r, 0, 1), "2");
    aos_db_result_free(r);
    assert_true(aos_store_available(c->store));
}

static void test_result_accessors_and_changes(void **state)
{
    CTX(state);
    struct aos_db_result *r = NULL;
    const char *ins = Q(c, "INSERT INTO @t (id, k, n) VALUES ($1, $2, $3)");
    for (int i = 1; i <= 3; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        struct aos_db_param p[] = {AOS_DB_P_INT(i), AOS_DB_P_TEXT(k), AOS_DB_P_INT(i * 10)};
        ok1(c, true, ins, p, 3, &r);
        assert_int_equal(aos_db_result_changes(r), 1);
        assert_int_equal(aos_db_result_rows(r), 0);
        aos_db_result_free(r);
    }
    struct aos_db_param two[] = {AOS_DB_P_INT(2)};
    ok1(c, true, Q(c, "UPDATE @t SET v = 'x' WHERE id >= $1"), two, 1, &r);
    assert_int_equal(aos_db_result_changes(r), 2);
    aos_db_result_free(r);
    ok1(c, true, Q(c, "UPDATE @t SET v = 'y' WHERE id > 100"), NULL, 0, &r);
    assert_int_equal(aos_db_result_changes(r), 0);
    aos_db_result_free(r);
    /* A SELECT after DML reports no changes of its own. */
    ok1(c, false, Q(c, "SELECT id, k, v, n FROM @t ORDER BY id"), NULL, 0, &r);
    assert_int_equal(aos_db_result_changes(r), 0);
    assert_int_equal(aos_db_result_rows(r), 3);
    assert_int_equal(aos_db_result_cols(r), 4);
    assert_true(aos_db_result_is_null(r, 0, 2));
    assert_string_equal(aos_db_result_text(r, 2, 2), "x");
    assert_int_equal(aos_db_result_int(r, 1, 3), 20);
    assert_int_equal(aos_db_result_int(r, 1, 1), 0); /* "k2" is not an integer */
    assert_int_equal(aos_db_result_int(r, 0, 2), 0); /* NULL */
    aos_db_result_free(r);
    struct aos_db_param p[] = {AOS_DB_P_INT(4), AOS_DB_P_TEXT("k4"), AOS_DB_P_INT(40)};
    ok1(c, true, Q(c, "INSERT INTO @t (id, k, n) VALUES ($1, $2, $3) RETURNING id, k"), p, 3, &r);
    assert_int_equal(aos_db_result_changes(r), 1);
    assert_int_equal(aos_db_result_rows(r), 1);
    assert_string_equal(aos_db_result_text(r, 0, 1), "k4");
    aos_db_result_free(r);
    ok1(c, true, Q(c, "DELETE FROM @t WHERE n < 35"), NULL, 0, &r);
    assert_int_equal(aos_db_result_changes(r), 3);
    aos_db_result_free(r);
    ok1(c, false, Q(c, "SELECT id FROM @t WHERE id < 0"), NULL, 0, &r);
    assert_non_null(r);
    assert_int_equal(aos_db_result_rows(r), 0);
    assert_int_equal(aos_db_result_cols(r), 1);
    aos_db_result_free(r);
    assert_int_equal(aos_db_result_rows(NULL), 0);
}

static void test_constraint_mapping(void **state)
{
    CTX(state);
    char err[512] = "";
    const char *ins = Q(c, "INSERT INTO @t (id, k, pos, pid) VALUES ($1, $2, $3, $4)");
    struct aos_db_param ok[] = {AOS_DB_P_INT(1), AOS_DB_P_TEXT("dup-secret-value"), AOS_DB_P_INT(0),
                                AOS_DB_P_INT(1)};
    ok1(c, true, ins, ok, 4, NULL);
    struct aos_db_param dup[] = {AOS_DB_P_INT(2), AOS_DB_P_TEXT("dup-secret-value"), AOS_DB_P_INT(0),
                                 AOS_DB_P_NULL};
    assert_int_equal(exec1(c, true, ins, dup, 4, NULL, err, sizeof err), AOS_DB_CONSTRAINT);
    /* The message names the constraint, never the row's values. */
    assert_null(strstr(err, "dup-secret-value"));
    struct aos_db_param pk[] = {AOS_DB_P_INT(1), AOS_DB_P_TEXT("other"), AOS_DB_P_INT(0), AOS_DB_P_NULL};
    assert_int_equal(exec1(c, true, ins, pk, 4, NULL, err, sizeof err), AOS_DB_CONSTRAINT);
    struct aos_db_param fk[] = {AOS_DB_P_INT(3), AOS_DB_P_TEXT("fk"), AOS_DB_P_INT(0), AOS_DB_P_INT(999)};
    assert_int_equal(exec1(c, true, ins, fk, 4, NULL, err, sizeof err), AOS_DB_CONSTRAINT);
    struct aos_db_param ck[] = {AOS_DB_P_INT(4), AOS_DB_P_TEXT("ck"), AOS_DB_P_INT(-1), AOS_DB_P_NULL};
    assert_int_equal(exec1(c, true, ins, ck, 4, NULL, err, sizeof err), AOS_DB_CONSTRAINT);
    struct aos_db_param nn[] = {AOS_DB_P_INT(5), AOS_DB_P_NULL};
    assert_int_equal(
        exec1(c, true, Q(c, "INSERT INTO @p (id, name) VALUES ($1, $2)"), nn, 2, NULL, err, sizeof err),
        AOS_DB_CONSTRAINT);
    assert_int_equal(count_rows(c, "@t"), 1);
    assert_true(aos_store_available(c->store));
}

struct two_inserts {
    struct ctx *c;
    int calls;
};

static int insert_then_duplicate(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct two_inserts *a = arg;
    a->calls++;
    const char *ins = Q(a->c, "INSERT INTO @t (id, k) VALUES ($1, $2)");
    struct aos_db_param p1[] = {AOS_DB_P_INT(10), AOS_DB_P_TEXT("same")};
    struct aos_db_param p2[] = {AOS_DB_P_INT(11), AOS_DB_P_TEXT("same")};
    int rc = aos_store_exec(tx, ins, p1, 2, NULL, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    return aos_store_exec(tx, ins, p2, 2, NULL, err, errlen);
}

static void test_failed_tx_leaves_nothing(void **state)
{
    CTX(state);
    char err[512] = "";
    struct two_inserts a = {c, 0};
    assert_int_equal(aos_store_transact(c->store, true, insert_then_duplicate, &a, err, sizeof err),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(a.calls, 1); /* a constraint violation is not retried */
    assert_int_equal(count_rows(c, "@t"), 0);

    /* By hand: after the failure the transaction is good only for rollback,
     * and commit reports the first failure. */
    struct aos_store_tx *tx = NULL;
    assert_int_equal(aos_store_begin(c->store, true, &tx, err, sizeof err), AOS_DB_OK);
    assert_int_equal(insert_then_duplicate(tx, &a, err, sizeof err), AOS_DB_CONSTRAINT);
    struct aos_db_result *r = NULL;
    assert_int_equal(aos_store_exec(tx, Q(c, "SELECT count(*) FROM @t"), NULL, 0, &r, err, sizeof err),
                     AOS_DB_ERROR);
    assert_null(r);
    assert_non_null(strstr(err, "rollback"));
    assert_int_equal(aos_store_commit(tx, err, sizeof err), AOS_DB_CONSTRAINT);
    assert_int_equal(count_rows(c, "@t"), 0);
    /* The pooled connection is clean for the next transaction. */
    struct aos_db_param p[] = {AOS_DB_P_INT(1), AOS_DB_P_TEXT("after")};
    ok1(c, true, Q(c, "INSERT INTO @t (id, k) VALUES ($1, $2)"), p, 2, NULL);
    assert_int_equal(count_rows(c, "@t"), 1);
}

static void test_rollback(void **state)
{
    CTX(state);
    char err[512] = "";
    struct aos_store_tx *tx = NULL;
    assert_int_equal(aos_store_begin(c->store, true, &tx, err, sizeof err), AOS_DB_OK);
    struct aos_db_param p[] = {AOS_DB_P_INT(1), AOS_DB_P_TEXT("gone")};
    assert_int_equal(
        aos_store_exec(tx, Q(c, "INSERT INTO @t (id, k) VALUES ($1, $2)"), p, 2, NULL, err, sizeof err),
        AOS_DB_OK);
    assert_int_equal(aos_store_exec(tx, Q(c, "UPDATE @c SET n = 99"), NULL, 0, NULL, err, sizeof err),
                     AOS_DB_OK);
    aos_store_rollback(tx);
    assert_int_equal(count_rows(c, "@t"), 0);
    assert_int_equal(scalar(c, Q(c, "SELECT max(n) FROM @c")), 0);
    aos_store_rollback(NULL);
}

static void test_read_only_tx(void **state)
{
    CTX(state);
    char err[512] = "";
    struct aos_db_param p[] = {AOS_DB_P_INT(1), AOS_DB_P_TEXT("ro")};
    assert_int_equal(
        exec1(c, false, Q(c, "INSERT INTO @t (id, k) VALUES ($1, $2)"), p, 2, NULL, err, sizeof err),
        AOS_DB_ERROR);
    assert_int_equal(count_rows(c, "@t"), 0);
    /* The same pooled connection writes in a write transaction. */
    ok1(c, true, Q(c, "INSERT INTO @t (id, k) VALUES ($1, $2)"), p, 2, NULL);
    assert_int_equal(count_rows(c, "@t"), 1);
}

static void test_exec_script(void **state)
{
    CTX(state);
    char err[512] = "";
    struct aos_store_tx *tx = NULL;
    assert_int_equal(aos_store_begin(c->store, true, &tx, err, sizeof err), AOS_DB_OK);
    assert_int_equal(aos_store_exec_script(tx,
                                           Q(c, "INSERT INTO @t (id, k) VALUES (1, 'a');\n"
                                                "INSERT INTO @t (id, k) VALUES (2, 'b');\n"),
                                           err, sizeof err),
                     AOS_DB_OK);
    assert_int_equal(aos_store_commit(tx, err, sizeof err), AOS_DB_OK);
    assert_int_equal(count_rows(c, "@t"), 2);
    assert_int_equal(aos_store_begin(c->store, true, &tx, err, sizeof err), AOS_DB_OK);
    assert_int_equal(aos_store_exec_script(tx,
                                           Q(c, "INSERT INTO @t (id, k) VALUES (3, 'c');"
                                                "INSERT INTO @t (id, k) VALUES (4, 'a');"),
                                           err, sizeof err),
                     AOS_DB_CONSTRAINT);
    assert_int_equal(aos_store_commit(tx, err, sizeof err), AOS_DB_CONSTRAINT);
    assert_int_equal(count_rows(c, "@t"), 2);
    /* exec runs exactly one statement. */
    assert_int_equal(exec1(c, false, "SELECT 1; SELECT 2", NULL, 0, NULL, err, sizeof err), AOS_DB_ERROR);
}

static void test_statement_cache(void **state)
{
    CTX(state);
    char err[512] = "";
    static char sql[300][48];
    struct aos_store *s = aos_store_new(&(struct aos_conf_store){.driver = c->conf.driver,
                                                                 .path = c->conf.path,
                                                                 .conninfo = c->conf.conninfo,
                                                                 .pool_size = 1,
                                                                 .busy_timeout = 5});
    assert_non_null(s);
    struct aos_store_tx *tx = NULL;
    /* More distinct statements than a connection caches, twice over. */
    for (int round = 0; round < 2; round++) {
        assert_int_equal(aos_store_begin(s, false, &tx, err, sizeof err), AOS_DB_OK);
        for (int i = 0; i < 300; i++) {
            snprintf(sql[i], sizeof sql[i], "SELECT %d + CAST($1 AS INTEGER)", i);
            struct aos_db_param p[] = {AOS_DB_P_INT(round)};
            struct aos_db_result *r = NULL;
            int rc = aos_store_exec(tx, sql[i], p, 1, &r, err, sizeof err);
            if (rc != AOS_DB_OK)
                fail_msg("%s: %s", sql[i], err);
            assert_int_equal(aos_db_result_int(r, 0, 0), i + round);
            aos_db_result_free(r);
        }
        assert_int_equal(aos_store_commit(tx, err, sizeof err), AOS_DB_OK);
    }
    aos_store_free(s);
}

static void test_pool_exhausted(void **state)
{
    CTX(state);
    char err[512] = "";
    struct aos_conf_store conf = c->conf;
    conf.pool_size = 1;
    conf.busy_timeout = 0.05;
    struct aos_store *s = aos_store_new(&conf);
    assert_non_null(s);
    struct aos_store_tx *tx1 = NULL, *tx2 = NULL;
    assert_int_equal(aos_store_begin(s, false, &tx1, err, sizeof err), AOS_DB_OK);
    assert_int_equal(aos_store_begin(s, false, &tx2, err, sizeof err), AOS_DB_UNAVAILABLE);
    assert_null(tx2);
    assert_non_null(strstr(err, "busy"));
    /* Overload is not an outage. */
    assert_true(aos_store_available(s));
    struct aos_store_stats st;
    aos_store_get_stats(s, &st);
    assert_int_equal(st.pool_timeouts, 1);
    assert_int_equal(st.in_use, 1);
    aos_store_rollback(tx1);
    assert_int_equal(aos_store_begin(s, false, &tx2, err, sizeof err), AOS_DB_OK);
    aos_store_rollback(tx2);
    aos_store_get_stats(s, &st);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.in_use, 0);
    aos_store_free(s);
}

struct flaky {
    int calls;
    int fail_first;
};

static int flaky_fn(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    (void)tx;
    struct flaky *f = arg;
    if (f->calls++ < f->fail_first) {
        snprintf(err, errlen, "simulated conflict");
        return AOS_DB_RETRY;
    }
    return AOS_DB_OK;
}

static void test_transact_retries(void **state)
{
    CTX(state);
    char err[512] = "";
    struct flaky f = {0, 2};
    assert_int_equal(aos_store_transact(c->store, true, flaky_fn, &f, err, sizeof err), AOS_DB_OK);
    assert_int_equal(f.calls, 3);
    struct flaky never = {0, 1000};
    assert_int_equal(aos_store_transact(c->store, true, flaky_fn, &never, err, sizeof err), AOS_DB_RETRY);
    assert_int_equal(never.calls, 5);
    struct aos_store_stats st;
    aos_store_get_stats(c->store, &st);
    assert_int_equal(st.retries, 2 + 4);
}

/* N threads add 1 to a counter M times each, two ways; no update may be
 * lost. */
#define NTHREADS 6
#define NITER 30

struct counter_arg {
    struct ctx *c;
    const char *incr, *read, *write;
    atomic_int failures;
    char err[512];
};

static int incr_fn(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct counter_arg *a = arg;
    return aos_store_exec(tx, a->incr, NULL, 0, NULL, err, errlen);
}

static int rmw_fn(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct counter_arg *a = arg;
    struct aos_db_result *r = NULL;
    int rc = aos_store_exec(tx, a->read, NULL, 0, &r, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    int64_t n = aos_db_result_int(r, 0, 0);
    aos_db_result_free(r);
    struct aos_db_param p[] = {AOS_DB_P_INT(n + 1)};
    return aos_store_exec(tx, a->write, p, 1, NULL, err, errlen);
}

static void *counter_thread(void *arg)
{
    struct counter_arg *a = arg;
    char err[400];
    for (int i = 0; i < NITER; i++) {
        int rc = aos_store_transact(a->c->store, true, incr_fn, a, err, sizeof err);
        if (rc == AOS_DB_OK)
            rc = aos_store_transact(a->c->store, true, rmw_fn, a, err, sizeof err);
        if (rc != AOS_DB_OK && atomic_fetch_add(&a->failures, 1) == 0)
            snprintf(a->err, sizeof a->err, "%s: %s", aos_db_status_name(rc), err);
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    CTX(state);
    struct counter_arg a = {.c = c};
    char incr[128], read[128], write[128];
    snprintf(incr, sizeof incr, "UPDATE %s SET n = n + 1 WHERE id = 1", c->c);
    /* SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL needs
     * the row lock, or two transactions read the same n. */
    snprintf(read, sizeof read, "SELECT n FROM %s WHERE id = 2%s", c->c, c->be->pg ? " FOR UPDATE" : "");
    snprintf(write, sizeof write, "UPDATE %s SET n = $1 WHERE id = 2", c->c);
    a.incr = incr;
    a.read = read;
    a.write = write;
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, counter_thread, &a), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    if (atomic_load(&a.failures) != 0)
        fail_msg("%d transactions failed, first: %s", atomic_load(&a.failures), a.err);
    assert_int_equal(scalar(c, Q(c, "SELECT n FROM @c WHERE id = 1")), NTHREADS * NITER);
    assert_int_equal(scalar(c, Q(c, "SELECT n FROM @c WHERE id = 2")), NTHREADS * NITER);
    struct aos_store_stats st;
    aos_store_get_stats(c->store, &st);
    assert_true(st.open <= 4);
    assert_int_equal(st.in_use, 0);
}

/* ------------------------------------------------------------ retry classification */

static void test_retry_classification(void **state)
{
    CTX(state);
    char err[512] = "";
    const struct aos_db_driver *drv = c->be->pg ? &aos_db_pgsql : &aos_db_sqlite;
    struct aos_conf_store conf = c->conf;
    conf.busy_timeout = 0.02;
    struct aos_db_conn *a = NULL, *b = NULL;
    assert_int_equal(drv->connect(&conf, &a, err, sizeof err), AOS_DB_OK);
    assert_int_equal(drv->connect(&conf, &b, err, sizeof err), AOS_DB_OK);
    if (!c->be->pg) {
        /* Two writers on two connections: the second is told to retry. */
        assert_int_equal(drv->exec(a, "BEGIN IMMEDIATE", NULL, 0, NULL, err, sizeof err), AOS_DB_OK);
        assert_int_equal(drv->exec(b, "BEGIN IMMEDIATE", NULL, 0, NULL, err, sizeof err), AOS_DB_RETRY);
        assert_non_null(strstr(err, "locked"));
        assert_false(drv->in_transaction(b));
        assert_true(drv->in_transaction(a));
        assert_int_equal(drv->exec(a, "ROLLBACK", NULL, 0, NULL, err, sizeof err), AOS_DB_OK);
    } else {
        /* A repeatable-read transaction updating a row changed since its
         * snapshot: serialization failure (40001). */
        assert_int_equal(
            drv->exec(a, "BEGIN ISOLATION LEVEL REPEATABLE READ", NULL, 0, NULL, err, sizeof err), AOS_DB_OK);
        assert_int_equal(drv->exec(a, Q(c, "SELECT n FROM @c WHERE id = 1"), NULL, 0, NULL, err, sizeof err),
                         AOS_DB_OK);
        assert_int_equal(
            drv->exec(b, Q(c, "UPDATE @c SET n = n + 1 WHERE id = 1"), NULL, 0, NULL, err, sizeof err),
            AOS_DB_OK);
        assert_int_equal(
            drv->exec(a, Q(c, "UPDATE @c SET n = n + 1 WHERE id = 1"), NULL, 0, NULL, err, sizeof err),
            AOS_DB_RETRY);
        assert_non_null(strstr(err, "40001"));
        assert_true(drv->in_transaction(a));
        assert_true(drv->healthy(a));
        assert_int_equal(drv->exec(a, "ROLLBACK", NULL, 0, NULL, err, sizeof err), AOS_DB_OK);
    }
    assert_false(drv->in_transaction(a));
    drv->disconnect(a);
    drv->disconnect(b);

    /* Through the store: a writer holding the database past another's busy
     * timeout makes it retry, and aos_store_transact gives up in bounded
     * time.  (On SQLite: the store's writer token; on PostgreSQL writers
     * don't block at BEGIN, so the lock is a row lock under NOWAIT.) */
    struct aos_store *s = aos_store_new(&conf);
    assert_non_null(s);
    struct aos_store_tx *t1 = NULL, *t2 = NULL;
    assert_int_equal(aos_store_begin(s, true, &t1, err, sizeof err), AOS_DB_OK);
    assert_int_equal(
        aos_store_exec(t1, Q(c, "UPDATE @c SET n = n + 1 WHERE id = 1"), NULL, 0, NULL, err, sizeof err),
        AOS_DB_OK);
    if (!c->be->pg) {
        assert_int_equal(aos_store_begin(s, true, &t2, err, sizeof err), AOS_DB_RETRY);
        assert_null(t2);
    } else {
        assert_int_equal(aos_store_begin(s, true, &t2, err, sizeof err), AOS_DB_OK);
        assert_int_equal(aos_store_exec(t2, Q(c, "SELECT n FROM @c WHERE id = 1 FOR UPDATE NOWAIT"), NULL, 0,
                                        NULL, err, sizeof err),
                         AOS_DB_RETRY);
        assert_int_equal(aos_store_commit(t2, err, sizeof err), AOS_DB_RETRY);
    }
    aos_store_rollback(t1);
    assert_true(aos_store_available(s));
    aos_store_free(s);

    if (!c->be->pg) {
        /* Another process (here: another store) holding the write lock:
         * SQLite's own SQLITE_BUSY after the busy timeout. */
        struct aos_store *s1 = aos_store_new(&conf), *s2 = aos_store_new(&conf);
        assert_non_null(s1);
        assert_non_null(s2);
        assert_int_equal(aos_store_begin(s1, true, &t1, err, sizeof err), AOS_DB_OK);
        assert_int_equal(aos_store_begin(s2, true, &t2, err, sizeof err), AOS_DB_RETRY);
        assert_non_null(strstr(err, "locked"));
        aos_store_rollback(t1);
        assert_int_equal(aos_store_begin(s2, true, &t2, err, sizeof err), AOS_DB_OK);
        aos_store_rollback(t2);
        aos_store_free(s1);
        aos_store_free(s2);
    }
}

/* ------------------------------------------------------------ SQLite only */

static void test_sqlite_setup(void **state)
{
    CTX(state);
    struct aos_db_result *r = NULL;
    ok1(c, false, "PRAGMA journal_mode", NULL, 0, &r);
    assert_string_equal(aos_db_result_text(r, 0, 0), "wal");
    aos_db_result_free(r);
    assert_int_equal(scalar(c, "PRAGMA synchronous"), 2); /* FULL */
    assert_int_equal(scalar(c, "PRAGMA foreign_keys"), 1);
    struct stat sb;
    assert_int_equal(stat(c->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char wal[PATH_MAX + 32];
    snprintf(wal, sizeof wal, "%s-wal", c->path);
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* Double quotes are identifiers, as in PostgreSQL. */
    char err[512] = "";
    assert_int_equal(exec1(c, false, "SELECT \"no_such_column\"", NULL, 0, NULL, err, sizeof err),
                     AOS_DB_ERROR);
}

static void test_sqlite_new_file_private_whatever_umask(void **state)
{
    CTX(state);
    char err[512] = "", path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/other.db", c->dir);
    struct aos_conf_store conf = c->conf;
    conf.path = path;
    struct aos_store *s = aos_store_new(&conf);
    assert_non_null(s);
    mode_t old = umask(0);
    int rc = aos_store_connect(s, err, sizeof err);
    umask(old);
    assert_int_equal(rc, AOS_DB_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    aos_store_free(s);
}

static void test_sqlite_missing_dir(void **state)
{
    CTX(state);
    char err[512] = "", path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/no/such/dir/aos.db", c->dir);
    struct aos_conf_store conf = c->conf;
    conf.path = path;
    struct aos_store *s = aos_store_new(&conf);
    assert_non_null(s);
    assert_int_equal(aos_store_connect(s, err, sizeof err), AOS_DB_ERROR);
    assert_non_null(strstr(err, "does not exist"));
    assert_non_null(strstr(err, "/no/such/dir"));
    struct stat sb;
    assert_int_not_equal(stat(path, &sb), 0);
    aos_store_free(s);
}

/* The file cannot be opened (a directory stands where it should be), then
 * can: the store reports the outage, fails fast, and recovers by itself. */
static void test_sqlite_unavailable_and_recovery(void **state)
{
    CTX(state);
    char err[512] = "", reason[256], path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/blocked.db", c->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    struct aos_conf_store conf = c->conf;
    conf.path = path;
    struct aos_store *s = aos_store_new(&conf);
    assert_non_null(s);
    assert_int_equal(aos_store_connect(s, err, sizeof err), AOS_DB_UNAVAILABLE);
    assert_false(aos_store_available(s));
    aos_store_unavailable_reason(s, reason, sizeof reason);
    assert_non_null(strstr(reason, "sqlite"));
    struct aos_store_tx *tx = NULL;
    assert_int_equal(aos_store_begin(s, false, &tx, err, sizeof err), AOS_DB_UNAVAILABLE);
    assert_true(aos_store_retry_after(s) >= 1);
    assert_int_equal(rmdir(path), 0);
    int rc = AOS_DB_UNAVAILABLE;
    for (int i = 0; i < 400 && rc != AOS_DB_OK; i++) {
        rc = aos_store_ping(s, err, sizeof err);
        if (rc != AOS_DB_OK)
            nanosleep(&(struct timespec){0, 25 * 1000 * 1000}, NULL);
    }
    assert_int_equal(rc, AOS_DB_OK);
    assert_true(aos_store_available(s));
    assert_int_equal(aos_store_begin(s, true, &tx, err, sizeof err), AOS_DB_OK);
    assert_int_equal(aos_store_commit(tx, err, sizeof err), AOS_DB_OK);
    aos_store_free(s);
}

/* ------------------------------------------------------------ PostgreSQL without a server */

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd); /* bound, never listened, now closed: connections are refused */
    return ntohs(sa.sin_port);
}

static void test_pgsql_closed_port_fails_fast_without_secrets(void **state)
{
    (void)state;
    char conninfo[256], err[512] = "", reason[256], where[64];
    int port = closed_port();
    snprintf(conninfo, sizeof conninfo, "postgresql://aos_user:" SECRET "@127.0.0.1:%d/aos_db", port);
    snprintf(where, sizeof where, "127.0.0.1:%d/aos_db", port);
    struct aos_conf_store conf;
    conf_init(&conf, "pgsql", NULL, conninfo);
    struct aos_store *s = aos_store_new(&conf);
    assert_non_null(s);
    assert_int_equal(aos_store_connect(s, err, sizeof err), AOS_DB_UNAVAILABLE);
    assert_null(strstr(err, SECRET));
    assert_non_null(strstr(err, where));
    assert_false(aos_store_available(s));
    aos_store_unavailable_reason(s, reason, sizeof reason);
    assert_null(strstr(reason, SECRET));
    assert_non_null(strstr(reason, where));

    struct aos_store_stats before, after;
    aos_store_get_stats(s, &before);
    for (int i = 0; i < 100; i++) {
        struct aos_store_tx *tx = NULL;
        assert_int_equal(aos_store_begin(s, true, &tx, err, sizeof err), AOS_DB_UNAVAILABLE);
        assert_null(tx);
        assert_null(strstr(err, SECRET));
    }
    aos_store_get_stats(s, &after);
    /* One attempt per backoff interval (100 ms, doubling), not one per call. */
    assert_true(after.connect_failures - before.connect_failures <= 3);
    assert_true(after.fast_failures - before.fast_failures >= 97);
    assert_true(aos_store_retry_after(s) >= 1);
    assert_int_equal(aos_store_ping(s, err, sizeof err), AOS_DB_UNAVAILABLE);
    assert_null(strstr(err, SECRET));
    aos_store_free(s);
}

static void test_pgsql_bad_conninfo_no_secrets(void **state)
{
    (void)state;
    char err[512];
    char ci[4][256];
    int port = closed_port();
    snprintf(ci[0], sizeof ci[0], "host=127.0.0.1 port=%d password=" SECRET " bogus_option=" SECRET, port);
    snprintf(ci[1], sizeof ci[1], "postgresql://u:" SECRET "@127.0.0.1:" SECRET "/db");
    snprintf(ci[2], sizeof ci[2], "host=127.0.0.1 port=%d password='" SECRET, port);
    snprintf(ci[3], sizeof ci[3], "host=127.0.0.1 port=%d user=u dbname=d password=" SECRET, port);
    for (size_t i = 0; i < 4; i++) {
        struct aos_conf_store conf;
        conf_init(&conf, "pgsql", NULL, ci[i]);
        struct aos_store *s = aos_store_new(&conf);
        assert_non_null(s);
        memset(err, 0, sizeof err);
        int rc = aos_store_connect(s, err, sizeof err);
        assert_true(rc == AOS_DB_ERROR || rc == AOS_DB_UNAVAILABLE);
        assert_true(err[0] != '\0');
        if (strstr(err, SECRET) != NULL)
            fail_msg("conninfo %zu: secret in error: %s", i, err);
        char reason[256];
        aos_store_unavailable_reason(s, reason, sizeof reason);
        assert_null(strstr(reason, SECRET));
        aos_store_free(s);
    }
    /* A malformed conninfo is a configuration error, not an outage. */
    struct aos_db_conn *conn = NULL;
    struct aos_conf_store conf;
    conf_init(&conf, "pgsql", NULL, ci[2]);
    assert_int_equal(aos_db_pgsql.connect(&conf, &conn, err, sizeof err), AOS_DB_ERROR);
    assert_null(conn);
}

/* ------------------------------------------------------------ PostgreSQL outage through a proxy */

#define PROXY_MAXPAIRS 32

struct proxy {
    int lfd;
    int port;
    struct sockaddr_storage target;
    socklen_t tlen;
    int ctl[2], ack[2];
    pthread_t th;
    bool down;
    int pairs[PROXY_MAXPAIRS][2];
    int npairs;
};

static void proxy_close_pair(struct proxy *p, int i)
{
    close(p->pairs[i][0]);
    close(p->pairs[i][1]);
    p->pairs[i][0] = p->pairs[p->npairs - 1][0];
    p->pairs[i][1] = p->pairs[p->npairs - 1][1];
    p->npairs--;
}

static void *proxy_main(void *arg)
{
    struct proxy *p = arg;
    char buf[16384];
    for (;;) {
        struct pollfd fds[2 + 2 * PROXY_MAXPAIRS];
        int n = 0;
        fds[n++] = (struct pollfd){.fd = p->ctl[0], .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        for (int i = 0; i < p->npairs; i++) {
            fds[n++] = (struct pollfd){.fd = p->pairs[i][0], .events = POLLIN};
            fds[n++] = (struct pollfd){.fd = p->pairs[i][1], .events = POLLIN};
        }
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[0].revents) {
            char cmd;
            if (read(p->ctl[0], &cmd, 1) != 1 || cmd == 'q')
                break;
            if (cmd == 'd') {
                p->down = true;
                while (p->npairs > 0)
                    proxy_close_pair(p, 0);
            } else if (cmd == 'u') {
                p->down = false;
            }
            if (write(p->ack[1], "k", 1) != 1)
                break;
            continue; /* the pair indexes in fds are stale now */
        }
        if (fds[1].revents) {
            int cfd = accept(p->lfd, NULL, NULL);
            if (cfd >= 0) {
                int sfd = -1;
                if (!p->down && p->npairs < PROXY_MAXPAIRS) {
                    sfd = socket(p->target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
                    if (sfd >= 0 && connect(sfd, (struct sockaddr *)&p->target, p->tlen) != 0) {
                        close(sfd);
                        sfd = -1;
                    }
                }
                if (sfd < 0) {
                    close(cfd); /* "down": the server closes at once */
                } else {
                    p->pairs[p->npairs][0] = cfd;
                    p->pairs[p->npairs][1] = sfd;
                    p->npairs++;
                }
            }
        }
        for (int i = 2; i < n; i++) {
            if (!fds[i].revents)
                continue;
            int pair = (i - 2) / 2, side = (i - 2) % 2;
            if (pair >= p->npairs || p->pairs[pair][side] != fds[i].fd)
                continue; /* closed earlier in this round */
            ssize_t got = read(fds[i].fd, buf, sizeof buf);
            bool ok = got > 0;
            for (ssize_t off = 0; ok && off < got;) {
                ssize_t w = write(p->pairs[pair][1 - side], buf + off, (size_t)(got - off));
                if (w <= 0)
                    ok = false;
                else
                    off += w;
            }
            if (!ok)
                proxy_close_pair(p, pair);
        }
    }
    while (p->npairs > 0)
        proxy_close_pair(p, 0);
    return NULL;
}

static void proxy_cmd(struct proxy *p, char cmd)
{
    char k;
    assert_int_equal(write(p->ctl[1], &cmd, 1), 1);
    assert_int_equal(read(p->ack[0], &k, 1), 1);
}

/* Starts a proxy to the server of conninfo and writes a conninfo that goes
 * through it into out. */
static struct proxy *proxy_start(const char *conninfo, char *out, size_t outlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
    assert_non_null(opts);
    const char *host = NULL, *hostaddr = NULL, *port = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
    }
    struct proxy *p = calloc(1, sizeof *p);
    assert_non_null(p);
    if (port == NULL || *port == '\0')
        port = "5432";
    if (hostaddr == NULL && (host == NULL || *host == '/' || *host == '\0')) {
        struct sockaddr_un *un = (struct sockaddr_un *)&p->target;
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof un->sun_path, "%s/.s.PGSQL.%s",
                 host && *host ? host : "/var/run/postgresql", port);
        p->tlen = sizeof *un;
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
        assert_int_equal(getaddrinfo(hostaddr ? hostaddr : host, port, &hints, &ai), 0);
        memcpy(&p->target, ai->ai_addr, ai->ai_addrlen);
        p->tlen = ai->ai_addrlen;
        freeaddrinfo(ai);
    }
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(p->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(p->lfd, 16), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(p->lfd, (struct sockaddr *)&sa, &len), 0);
    p->port = ntohs(sa.sin_port);
    assert_int_equal(pipe2(p->ctl, O_CLOEXEC), 0);
    assert_int_equal(pipe2(p->ack, O_CLOEXEC), 0);

    /* Same settings, but host and port of the proxy. */
    size_t o = 0;
    o += (size_t)snprintf(out, outlen, "host=127.0.0.1 port=%d", p->port);
    for (PQconninfoOption *opt = opts; opt->keyword; opt++) {
        if (opt->val == NULL || strcmp(opt->keyword, "host") == 0 || strcmp(opt->keyword, "hostaddr") == 0 ||
            strcmp(opt->keyword, "port") == 0)
            continue;
        o += (size_t)snprintf(out + o, outlen - o, " %s='", opt->keyword);
        for (const char *v = opt->val; *v && o + 3 < outlen; v++) {
            if (*v == '\'' || *v == '\\')
                out[o++] = '\\';
            out[o++] = *v;
        }
        assert_true(o + 2 < outlen);
        out[o++] = '\'';
        out[o] = '\0';
    }
    PQconninfoFree(opts);
    PQfreemem(perr);
    assert_int_equal(pthread_create(&p->th, NULL, proxy_main, p), 0);
    return p;
}

static void proxy_stop(struct proxy *p)
{
    char q = 'q';
    assert_int_equal(write(p->ctl[1], &q, 1), 1);
    pthread_join(p->th, NULL);
    close(p->lfd);
    close(p->ctl[0]);
    close(p->ctl[1]);
    close(p->ack[0]);
    close(p->ack[1]);
    free(p);
}

static void test_pgsql_outage_and_recovery(void **state)
{
    CTX(state);
    char err[512] = "", reason[256], ci[2048], where[64];
    struct proxy *px = proxy_start(c->conf.conninfo, ci, sizeof ci);
    snprintf(where, sizeof where, "127.0.0.1:%d", px->port);
    struct aos_conf_store conf = c->conf;
    conf.conninfo = ci;
    conf.pool_size = 2;
    struct aos_store *s = aos_store_new(&conf);
    assert_non_null(s);
    assert_int_equal(aos_store_ping(s, err, sizeof err), AOS_DB_OK);
    assert_true(aos_store_available(s));

    /* The server goes away in the middle of a transaction. */
    struct aos_store_tx *tx = NULL;
    assert_int_equal(aos_store_begin(s, true, &tx, err, sizeof err), AOS_DB_OK);
    struct aos_db_param p[] = {AOS_DB_P_INT(1), AOS_DB_P_TEXT("lost")};
    const char *ins = Q(c, "INSERT INTO @t (id, k) VALUES ($1, $2)");
    assert_int_equal(aos_store_exec(tx, ins, p, 2, NULL, err, sizeof err), AOS_DB_OK);
    proxy_cmd(px, 'd');
    assert_int_equal(aos_store_exec(tx, Q(c, "SELECT count(*) FROM @t"), NULL, 0, NULL, err, sizeof err),
                     AOS_DB_UNAVAILABLE);
    aos_store_rollback(tx);
    assert_false(aos_store_available(s));
    aos_store_unavailable_reason(s, reason, sizeof reason);
    assert_non_null(strstr(reason, where));
    /* While it is gone, calls fail (fast, or after one quick attempt). */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(aos_store_begin(s, false, &tx, err, sizeof err), AOS_DB_UNAVAILABLE);
        assert_null(strstr(err, "aosd'")); /* no conninfo fragments */
    }
    struct aos_store_stats st;
    aos_store_get_stats(s, &st);
    assert_int_equal(st.in_use, 0);

    /* It comes back: the store reconnects by itself. */
    proxy_cmd(px, 'u');
    int rc = AOS_DB_UNAVAILABLE;
    for (int i = 0; i < 400 && rc != AOS_DB_OK; i++) {
        rc = aos_store_ping(s, err, sizeof err);
        if (rc != AOS_DB_OK)
            nanosleep(&(struct timespec){0, 25 * 1000 * 1000}, NULL);
    }
    assert_int_equal(rc, AOS_DB_OK);
    assert_true(aos_store_available(s));
    aos_store_unavailable_reason(s, reason, sizeof reason);
    assert_string_equal(reason, "");
    struct aos_db_param p2[] = {AOS_DB_P_INT(2), AOS_DB_P_TEXT("kept")};
    assert_int_equal(aos_store_begin(s, true, &tx, err, sizeof err), AOS_DB_OK);
    assert_int_equal(aos_store_exec(tx, ins, p2, 2, NULL, err, sizeof err), AOS_DB_OK);
    assert_int_equal(aos_store_commit(tx, err, sizeof err), AOS_DB_OK);
    /* The insert of the lost transaction never happened. */
    assert_int_equal(count_rows(c, "@t"), 1);
    aos_store_free(s);
    proxy_stop(px);
}

/* Idle connections dropped behind the store's back (server restart, a
 * proxy's idle timeout) cost no request: BEGIN on a dead idle connection
 * is retried once on a new one. */
static void test_pgsql_dead_idle_connection_replaced(void **state)
{
    CTX(state);
    char err[512] = "", ci[2048];
    struct proxy *px = proxy_start(c->conf.conninfo, ci, sizeof ci);
    struct aos_conf_store conf = c->conf;
    conf.conninfo = ci;
    conf.pool_size = 2;
    struct aos_store *s = aos_store_new(&conf);
    assert_non_null(s);
    assert_int_equal(aos_store_ping(s, err, sizeof err), AOS_DB_OK);
    proxy_cmd(px, 'd');
    proxy_cmd(px, 'u');
    struct aos_store_tx *tx = NULL;
    int rc = aos_store_begin(s, true, &tx, err, sizeof err);
    if (rc != AOS_DB_OK)
        fail_msg("begin after the idle connection died: %s: %s", aos_db_status_name(rc), err);
    assert_int_equal(
        aos_store_exec(tx, Q(c, "UPDATE @c SET n = n + 1 WHERE id = 1"), NULL, 0, NULL, err, sizeof err),
        AOS_DB_OK);
    assert_int_equal(aos_store_commit(tx, err, sizeof err), AOS_DB_OK);
    assert_true(aos_store_available(s));
    struct aos_store_stats st;
    aos_store_get_stats(s, &st);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.open, 1);
    aos_store_free(s);
    proxy_stop(px);
    assert_int_equal(scalar(c, Q(c, "SELECT n FROM @c WHERE id = 1")), 1);
}

/* ------------------------------------------------------------ main */

#define ON(be, f)                                         \
    {                                                     \
#be ": " #f, f, setup, teardown, (void *)&be_##be \
    }
#define BOTH(f) ON(sqlite, f), ON(pgsql, f)

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names),
        BOTH(test_ping_and_state),
        BOTH(test_typed_params),
        BOTH(test_text_with_nul_refused),
        BOTH(test_params_out_of_order),
        BOTH(test_param_count_mismatch),
        BOTH(test_result_accessors_and_changes),
        BOTH(test_constraint_mapping),
        BOTH(test_failed_tx_leaves_nothing),
        BOTH(test_rollback),
        BOTH(test_read_only_tx),
        BOTH(test_exec_script),
        BOTH(test_statement_cache),
        BOTH(test_pool_exhausted),
        BOTH(test_transact_retries),
        BOTH(test_concurrent_writers),
        BOTH(test_retry_classification),
        ON(sqlite, test_sqlite_setup),
        ON(sqlite, test_sqlite_new_file_private_whatever_umask),
        ON(sqlite, test_sqlite_missing_dir),
        ON(sqlite, test_sqlite_unavailable_and_recovery),
        cmocka_unit_test(test_pgsql_closed_port_fails_fast_without_secrets),
        cmocka_unit_test(test_pgsql_bad_conninfo_no_secrets),
        ON(pgsql, test_pgsql_outage_and_recovery),
        ON(pgsql, test_pgsql_dead_idle_connection_replaced),
    };
    /* Without a server the PostgreSQL copies are left out rather than
     * skipped: cmocka 1.1.5 reports a skip as "not ok # SKIP", which the
     * TAP driver counts as a failure. */
    const char *pg = getenv("AOS_TEST_PGSQL");
    bool with_pg = pg != NULL && *pg != '\0';
    struct CMUnitTest run[sizeof tests / sizeof tests[0]];
    size_t n = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (with_pg || tests[i].initial_state != &be_pgsql)
            run[n++] = tests[i];
    if (!with_pg)
        fprintf(stderr, "# AOS_TEST_PGSQL is not set: %zu PostgreSQL tests not run\n",
                sizeof tests / sizeof tests[0] - n);
    return _cmocka_run_group_tests("test_store_driver", run, n, NULL, NULL);
}
