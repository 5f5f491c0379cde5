/*
 * store_bench: what one store transaction costs, on SQLite and PostgreSQL,
 * through the store API the daemon uses (pool, BEGIN/COMMIT, cached
 * prepared statements) -- see bench/README.md.
 *
 *   insert  one single-row INSERT + COMMIT per transaction
 *   read    one tenant-scoped point read by (tenant_id, id) per (read-only)
 *           transaction, over rows spread across tenants
 *
 * Each workload runs --runs times per thread count; the run with the median
 * throughput is reported with its p50/p99 latency (per transaction, from
 * before BEGIN to after COMMIT).  The benchmark uses tables of its own with
 * a random suffix and drops them afterwards.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store/store.h"

#define MAX_THREADS 64
#define MAX_RUNS 9

struct opts {
    const char *sqlite_dir;
    const char *pgsql;
    int threads[8];
    int nthreads;
    int runs;
    long inserts; /* transactions per insert run */
    long reads;   /* transactions per read run */
    long rows;    /* rows preloaded for the read workload */
    int tenants;
    bool no_sqlite;
};

struct bench {
    struct aos_store *store;
    const char *driver;
    char ins_sql[256];
    char read_sql[256];
    char load_sql[256];
    char tbl_ins[64], tbl_kv[64];
    const struct opts *o;
};

struct worker {
    struct bench *b;
    int id;
    long n;
    long first_key;
    double *lat_ms;
    uint64_t rng;
    long failures;
    char err[256];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char payload[] =
    "{\"kind\":\"bench\",\"agent\":\"agent-finops\",\"step\":3,\"input\":{\"query\":\"monthly spend by "
    "service\",\"window\":\"30d\"},\"output\":{\"total\":1234.56,\"currency\":\"USD\",\"top\":[\"compute\","
    "\"storage\",\"network\"]},\"tokens\":{\"in\":812,\"out\":233}}";

/* ------------------------------------------------------------ workloads */

struct insert_arg {
    struct bench *b;
    int64_t id;
    int64_t tenant;
};

static int insert_fn(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct insert_arg *a = arg;
    struct aos_db_param p[] = {AOS_DB_P_INT(a->tenant), AOS_DB_P_INT(a->id), AOS_DB_P_TEXT(payload)};
    return aos_store_exec(tx, a->b->ins_sql, p, 3, NULL, err, errlen);
}

struct read_arg {
    struct bench *b;
    int64_t tenant, id;
    bool found;
};

static int read_fn(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct read_arg *a = arg;
    struct aos_db_result *r = NULL;
    struct aos_db_param p[] = {AOS_DB_P_INT(a->tenant), AOS_DB_P_INT(a->id)};
    int rc = aos_store_exec(tx, a->b->read_sql, p, 2, &r, err, errlen);
    if (rc == AOS_DB_OK)
        a->found = aos_db_result_rows(r) == 1 && aos_db_result_len(r, 0, 0) == sizeof payload - 1;
    aos_db_result_free(r);
    return rc;
}

static void *insert_worker(void *arg)
{
    struct worker *w = arg;
    for (long i = 0; i < w->n; i++) {
        struct insert_arg a = {w->b, w->first_key + i, (w->first_key + i) % w->b->o->tenants};
        double t0 = now_s();
        int rc = aos_store_transact(w->b->store, true, insert_fn, &a, w->err, sizeof w->err);
        w->lat_ms[i] = (now_s() - t0) * 1e3;
        if (rc != AOS_DB_OK)
            w->failures++;
    }
    return NULL;
}

static void *read_worker(void *arg)
{
    struct worker *w = arg;
    const struct opts *o = w->b->o;
    long per_tenant = o->rows / o->tenants;
    for (long i = 0; i < w->n; i++) {
        uint64_t r = xorshift(&w->rng);
        struct read_arg a = {w->b, (int64_t)(r % (uint64_t)o->tenants),
                             (int64_t)((r >> 20) % (uint64_t)per_tenant), false};
        double t0 = now_s();
        int rc = aos_store_transact(w->b->store, false, read_fn, &a, w->err, sizeof w->err);
        w->lat_ms[i] = (now_s() - t0) * 1e3;
        if (rc != AOS_DB_OK || !a.found)
            w->failures++;
    }
    return NULL;
}

struct result {
    double ops;
    double p50, p99;
};

static int run_once(struct bench *b, bool insert, int nthreads, long total, long key_base, struct result *out)
{
    struct worker w[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    double *lat = calloc((size_t)total, sizeof *lat);
    if (lat == NULL)
        return -1;
    long per = total / nthreads, off = 0;
    for (int i = 0; i < nthreads; i++) {
        w[i] = (struct worker){.b = b,
                               .id = i,
                               .n = i == nthreads - 1 ? total - off : per,
                               .first_key = key_base + off,
                               .lat_ms = lat + off};
        if (getrandom(&w[i].rng, sizeof w[i].rng, 0) != sizeof w[i].rng || w[i].rng == 0)
            w[i].rng = 88172645463325252ULL + (uint64_t)i;
        off += w[i].n;
    }
    double t0 = now_s();
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, insert ? insert_worker : read_worker, &w[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            exit(1);
        }
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    double wall = now_s() - t0;
    long failures = 0;
    for (int i = 0; i < nthreads; i++) {
        if (w[i].failures && !failures)
            fprintf(stderr, "store_bench: %s %s: %ld failures, e.g. %s\n", b->driver,
                    insert ? "insert" : "read", w[i].failures, w[i].err);
        failures += w[i].failures;
    }
    qsort(lat, (size_t)total, sizeof *lat, cmp_double);
    out->ops = (double)total / wall;
    out->p50 = lat[(size_t)((double)total * 0.50)];
    out->p99 = lat[(size_t)((double)total * 0.99)];
    free(lat);
    return failures ? -1 : 0;
}

/* ------------------------------------------------------------ setup */

static int script(struct bench *b, const char *sql)
{
    char err[512];
    struct aos_store_tx *tx = NULL;
    int rc = aos_store_begin(b->store, true, &tx, err, sizeof err);
    if (rc == AOS_DB_OK && (rc = aos_store_exec_script(tx, sql, err, sizeof err)) == AOS_DB_OK)
        rc = aos_store_commit(tx, err, sizeof err);
    else if (tx != NULL)
        aos_store_rollback(tx);
    if (rc != AOS_DB_OK)
        fprintf(stderr, "store_bench: %s: %s\n", b->driver, err);
    return rc;
}

struct load_arg {
    struct bench *b;
    long from, to;
};

static int load_fn(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct load_arg *a = arg;
    const struct opts *o = a->b->o;
    long per_tenant = o->rows / o->tenants;
    for (long k = a->from; k < a->to; k++) {
        struct aos_db_param p[] = {AOS_DB_P_INT(k / per_tenant), AOS_DB_P_INT(k % per_tenant),
                                   AOS_DB_P_TEXT(payload)};
        int rc = aos_store_exec(tx, a->b->load_sql, p, 3, NULL, err, errlen);
        if (rc != AOS_DB_OK)
            return rc;
    }
    return AOS_DB_OK;
}

static int setup_tables(struct bench *b)
{
    unsigned char rb[6];
    char sfx[16], sql[1024], err[512];
    if (getrandom(rb, sizeof rb, 0) != sizeof rb)
        return -1;
    snprintf(sfx, sizeof sfx, "%02x%02x%02x%02x%02x%02x", rb[0], rb[1], rb[2], rb[3], rb[4], rb[5]);
    snprintf(b->tbl_ins, sizeof b->tbl_ins, "bench_ins_%s", sfx);
    snprintf(b->tbl_kv, sizeof b->tbl_kv, "bench_kv_%s", sfx);
    /* Shaped like the daemon's tenant-owned tables: a tenant column on
     * every row, every lookup by (tenant_id, id). */
    snprintf(sql, sizeof sql,
             "CREATE TABLE %s (tenant_id BIGINT NOT NULL, id BIGINT NOT NULL, body TEXT NOT NULL,"
             " PRIMARY KEY (tenant_id, id));"
             "CREATE TABLE %s (tenant_id BIGINT NOT NULL, id BIGINT NOT NULL, body TEXT NOT NULL,"
             " PRIMARY KEY (tenant_id, id));",
             b->tbl_ins, b->tbl_kv);
    if (script(b, sql) != AOS_DB_OK)
        return -1;
    snprintf(b->ins_sql, sizeof b->ins_sql, "INSERT INTO %s (tenant_id, id, body) VALUES ($1, $2, $3)",
             b->tbl_ins);
    snprintf(b->load_sql, sizeof b->load_sql, "INSERT INTO %s (tenant_id, id, body) VALUES ($1, $2, $3)",
             b->tbl_kv);
    snprintf(b->read_sql, sizeof b->read_sql, "SELECT body FROM %s WHERE tenant_id = $1 AND id = $2",
             b->tbl_kv);
    for (long k = 0; k < b->o->rows; k += 5000) {
        struct load_arg a = {b, k, k + 5000 < b->o->rows ? k + 5000 : b->o->rows};
        int rc = aos_store_transact(b->store, true, load_fn, &a, err, sizeof err);
        if (rc != AOS_DB_OK) {
            fprintf(stderr, "store_bench: %s: loading rows: %s\n", b->driver, err);
            return -1;
        }
    }
    /* Planner statistics, as a live database would have them. */
    snprintf(sql, sizeof sql, "ANALYZE %s", b->tbl_kv);
    return script(b, sql) == AOS_DB_OK ? 0 : -1;
}

static void drop_tables(struct bench *b)
{
    char sql[256];
    snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s; DROP TABLE IF EXISTS %s;", b->tbl_ins, b->tbl_kv);
    script(b, sql);
}

/* ------------------------------------------------------------ main */

static int bench_driver(const struct opts *o, const char *driver, const char *path, const char *conninfo)
{
    int maxt = 1;
    for (int i = 0; i < o->nthreads; i++)
        maxt = o->threads[i] > maxt ? o->threads[i] : maxt;
    struct aos_conf_store conf = {.driver = (char *)driver,
                                  .path = (char *)(path ? path : ""),
                                  .conninfo = (char *)(conninfo ? conninfo : ""),
                                  .pool_size = maxt,
                                  .busy_timeout = 30};
    struct bench b = {.driver = driver, .o = o};
    char err[512];
    int rc = -1;
    b.store = aos_store_new(&conf);
    if (b.store == NULL || aos_store_connect(b.store, err, sizeof err) != AOS_DB_OK) {
        fprintf(stderr, "store_bench: %s: cannot connect: %s\n", driver, b.store ? err : "bad configuration");
        goto out;
    }
    if (setup_tables(&b) != 0)
        goto drop;
    long key_base = 0;
    for (int w = 0; w < 2; w++) {
        bool insert = w == 0;
        for (int t = 0; t < o->nthreads; t++) {
            struct result r[MAX_RUNS];
            int nt = o->threads[t];
            for (int run = 0; run < o->runs; run++) {
                long total = insert ? o->inserts : o->reads;
                if (run_once(&b, insert, nt, total, key_base, &r[run]) != 0)
                    goto drop;
                key_base += total;
            }
            /* The median run by throughput, reported whole. */
            struct result sorted[MAX_RUNS];
            memcpy(sorted, r, sizeof sorted);
            for (int i = 1; i < o->runs; i++)
                for (int j = i; j > 0 && sorted[j].ops < sorted[j - 1].ops; j--) {
                    struct result tmp = sorted[j];
                    sorted[j] = sorted[j - 1];
                    sorted[j - 1] = tmp;
                }
            const struct result *m = &sorted[o->runs / 2];
            printf("| %-6s | %-6s | %7d | %9.0f | %7.3f | %7.3f | ", driver, insert ? "insert" : "read", nt,
                   m->ops, m->p50, m->p99);
            for (int run = 0; run < o->runs; run++)
                printf("%s%.0f", run ? " / " : "", r[run].ops);
            printf(" |\n");
            fflush(stdout);
        }
    }
    rc = 0;
drop:
    drop_tables(&b);
out:
    aos_store_free(b.store);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: store_bench [options]\n"
            "  --pgsql CONNINFO   also benchmark PostgreSQL (default: $AOS_BENCH_PGSQL)\n"
            "  --no-sqlite        skip SQLite\n"
            "  --sqlite-dir DIR   where the SQLite file goes (default: a new dir under $TMPDIR or /var/tmp;\n"
            "                     must be on the disk you want to measure, not tmpfs)\n"
            "  --threads LIST     comma-separated thread counts (default 1,4)\n"
            "  --runs N           runs per measurement, median reported (default 3)\n"
            "  --inserts N        insert transactions per run (default 5000)\n"
            "  --reads N          read transactions per run (default 50000)\n"
            "  --rows N           rows preloaded for reads (default 100000)\n"
            "  --tenants N        tenants the rows are spread over (default 10)\n");
}

static long parse_long(const char *s, long min, long max)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "store_bench: bad number %s (%ld..%ld)\n", s, min, max);
        exit(2);
    }
    return v;
}

static int rm_dir(const char *dir, const char *file)
{
    char p[PATH_MAX + 64];
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        if (snprintf(p, sizeof p, "%s/%s%s", dir, file, sfx[i]) < (int)sizeof p)
            unlink(p);
    }
    return rmdir(dir);
}

int main(int argc, char **argv)
{
    struct opts o = {.runs = 3, .inserts = 5000, .reads = 50000, .rows = 100000, .tenants = 10};
    o.pgsql = getenv("AOS_BENCH_PGSQL");
    static const struct option longopts[] = {{"pgsql", required_argument, NULL, 'p'},
                                             {"no-sqlite", no_argument, NULL, 'S'},
                                             {"sqlite-dir", required_argument, NULL, 'd'},
                                             {"threads", required_argument, NULL, 't'},
                                             {"runs", required_argument, NULL, 'r'},
                                             {"inserts", required_argument, NULL, 'i'},
                                             {"reads", required_argument, NULL, 'R'},
                                             {"rows", required_argument, NULL, 'n'},
                                             {"tenants", required_argument, NULL, 'T'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int ch;
    char *list = NULL;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            o.pgsql = optarg;
            break;
        case 'S':
            o.no_sqlite = true;
            break;
        case 'd':
            o.sqlite_dir = optarg;
            break;
        case 't':
            list = optarg;
            break;
        case 'r':
            o.runs = (int)parse_long(optarg, 1, MAX_RUNS);
            break;
        case 'i':
            o.inserts = parse_long(optarg, 100, 100000000);
            break;
        case 'R':
            o.reads = parse_long(optarg, 100, 100000000);
            break;
        case 'n':
            o.rows = parse_long(optarg, 100, 100000000);
            break;
        case 'T':
            o.tenants = (int)parse_long(optarg, 1, 100000);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (list == NULL) {
        o.threads[0] = 1;
        o.threads[1] = 4;
        o.nthreads = 2;
    } else {
        for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (o.nthreads == 8) {
                fprintf(stderr, "store_bench: at most 8 thread counts\n");
                return 2;
            }
            o.threads[o.nthreads++] = (int)parse_long(tok, 1, MAX_THREADS);
        }
    }
    if (o.rows < o.tenants) {
        fprintf(stderr, "store_bench: --rows must be at least --tenants\n");
        return 2;
    }
    aos_log_configure(AOS_LVL_WARN, AOS_LOG_TEXT);

    printf("| driver | work   | threads | ops/s     | p50 ms  | p99 ms  | ops/s of each run |\n");
    printf("|--------|--------|---------|-----------|---------|---------|-------------------|\n");
    int rc = 0;
    if (!o.no_sqlite) {
        char dir[PATH_MAX], path[PATH_MAX + 16];
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/aos-bench-XXXXXX",
                 o.sqlite_dir  ? o.sqlite_dir
                 : tmp && *tmp ? tmp
                               : "/var/tmp");
        if (mkdtemp(dir) == NULL) {
            fprintf(stderr, "store_bench: mkdtemp %s: %s\n", dir, strerror(errno));
            return 1;
        }
        snprintf(path, sizeof path, "%s/bench.db", dir);
        if (bench_driver(&o, "sqlite", path, NULL) != 0)
            rc = 1;
        rm_dir(dir, "bench.db");
    }
    if (o.pgsql != NULL && *o.pgsql != '\0' && bench_driver(&o, "pgsql", NULL, o.pgsql) != 0)
        rc = 1;
    return rc;
}
