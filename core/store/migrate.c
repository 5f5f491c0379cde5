#include "config.h"

#include "store/migrate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* Same text on both drivers; BIGINT is only a type name to SQLite. */
static const char SQL_CREATE_TABLE[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";
static const char SQL_LOCK_PG[] = "SELECT pg_advisory_xact_lock(" STR(AOS_MIGRATE_LOCK_ID) ")";
/* Whether the table exists, without touching it: on PostgreSQL an error
 * would abort the transaction.  current_schema() is where an unqualified
 * CREATE TABLE puts it (the first existing schema of search_path). */
static const char SQL_EXISTS_SQLITE[] =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'";
static const char SQL_EXISTS_PG[] = "SELECT count(*) FROM pg_catalog.pg_tables "
                                    "WHERE schemaname = current_schema() AND tablename = 'schema_migrations'";
static const char SQL_SELECT[] = "SELECT version, name, applied_at FROM schema_migrations ORDER BY version";
static const char SQL_INSERT[] =
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)";
static const char SQL_DELETE[] = "DELETE FROM schema_migrations WHERE version = $1";

struct applied {
    int version;
    char name[64];
    int64_t applied_at;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const struct aos_migration *aos_migrate_set(const struct aos_store *s, size_t *count)
{
    if (aos_store_is_pgsql(s)) {
        *count = aos_migrations_pgsql_count;
        return aos_migrations_pgsql;
    }
    *count = aos_migrations_sqlite_count;
    return aos_migrations_sqlite;
}

/* Reads schema_migrations (nothing if it does not exist).  *rows is
 * malloc'd (NULL when *n == 0). */
static int read_applied(struct aos_store_tx *tx, struct applied **rows, size_t *n, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct applied *out = NULL;
    bool pg = aos_store_is_pgsql(aos_store_tx_store(tx));
    size_t i, nrows;
    int rc;

    *rows = NULL;
    *n = 0;
    rc = aos_store_exec(tx, pg ? SQL_EXISTS_PG : SQL_EXISTS_SQLITE, NULL, 0, &res, err, errlen);
    if (rc != AOS_DB_OK)
        goto out;
    if (aos_db_result_rows(res) != 1 || aos_db_result_int(res, 0, 0) == 0)
        goto out; /* no table: version 0 */
    aos_db_result_free(res);
    res = NULL;

    rc = aos_store_exec(tx, SQL_SELECT, NULL, 0, &res, err, errlen);
    if (rc != AOS_DB_OK)
        goto out;
    nrows = aos_db_result_rows(res);
    if (nrows == 0)
        goto out;
    out = calloc(nrows, sizeof(*out));
    if (out == NULL) {
        aos_db_seterr(err, errlen, "out of memory");
        rc = AOS_DB_ERROR;
        goto out;
    }
    for (i = 0; i < nrows; i++) {
        const char *name = aos_db_result_text(res, i, 1);
        int64_t v = aos_db_result_int(res, i, 0);

        if (v <= 0 || v > 1000000) {
            aos_db_seterr(err, errlen, "schema_migrations holds an impossible version %lld", (long long)v);
            rc = AOS_DB_SCHEMA;
            goto out;
        }
        out[i].version = (int)v;
        snprintf(out[i].name, sizeof(out[i].name), "%s", name != NULL ? name : "");
        out[i].applied_at = aos_db_result_int(res, i, 2);
    }
    *rows = out;
    *n = nrows;
    out = NULL;
out:
    free(out);
    aos_db_result_free(res);
    return rc;
}

/* Checks the applied rows against the set and finds the current version:
 * versions must be 1..current without gaps, and every version the binary
 * knows must carry the binary's name (else another build migrated it). */
static int judge(const struct aos_migration *set, size_t count, const struct applied *rows, size_t n,
                 int *current, char *err, size_t errlen)
{
    size_t i;

    *current = 0;
    for (i = 0; i < n; i++) {
        if (rows[i].version != (int)i + 1) {
            aos_db_seterr(err, errlen,
                   "schema_migrations is inconsistent: version %d is recorded but version %d is not; "
                   "repair the database by hand",
                   rows[i].version, (int)i + 1);
            return AOS_DB_SCHEMA;
        }
        if ((size_t)rows[i].version <= count && strcmp(rows[i].name, set[i].name) != 0) {
            aos_db_seterr(err, errlen,
                   "database has migration %04d_%s applied but this aosd's migration %d is %04d_%s: "
                   "the database was migrated by a different build",
                   rows[i].version, rows[i].name, set[i].version, set[i].version, set[i].name);
            return AOS_DB_SCHEMA;
        }
    }
    if (n > 0)
        *current = rows[n - 1].version;
    return AOS_DB_OK;
}

static int read_current(struct aos_store_tx *tx, const struct aos_migration *set, size_t count, int *current,
                        char *err, size_t errlen)
{
    struct applied *rows = NULL;
    size_t n = 0;
    int rc;

    rc = read_applied(tx, &rows, &n, err, errlen);
    if (rc == AOS_DB_OK)
        rc = judge(set, count, rows, n, current, err, errlen);
    free(rows);
    return rc;
}

static void newer_message(int current, size_t count, char *err, size_t errlen)
{
    aos_db_seterr(err, errlen, "database schema is at version %d but this aosd knows only up to %d: upgrade aosd",
           current, (int)count);
}

/* A write transaction holding the migration lock, with schema_migrations
 * present. */
static int begin_locked(struct aos_store *s, struct aos_store_tx **tx, char *err, size_t errlen)
{
    int rc;

    rc = aos_store_begin(s, true, tx, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    if (aos_store_is_pgsql(s)) {
        rc = aos_store_exec(*tx, SQL_LOCK_PG, NULL, 0, NULL, err, errlen);
        if (rc != AOS_DB_OK)
            goto fail;
    }
    rc = aos_store_exec(*tx, SQL_CREATE_TABLE, NULL, 0, NULL, err, errlen);
    if (rc != AOS_DB_OK)
        goto fail;
    return AOS_DB_OK;
fail:
    aos_store_rollback(*tx);
    *tx = NULL;
    return rc;
}

static bool set_valid(const struct aos_migration *set, size_t count, char *err, size_t errlen)
{
    size_t i;

    for (i = 0; i < count; i++) {
        if (set[i].version != (int)i + 1 || set[i].name == NULL || set[i].up == NULL || set[i].down == NULL) {
            aos_db_seterr(err, errlen, "migration set is malformed at entry %zu", i);
            return false;
        }
    }
    return true;
}

int aos_migrate_up_set(struct aos_store *s, const struct aos_migration *set, size_t count, int target,
                       aos_migrate_report_fn report, void *arg, char *err, size_t errlen)
{
    struct aos_store_tx *tx = NULL;
    char dberr[512];
    bool first = true;
    int current, rc;

    if (!set_valid(set, count, err, errlen))
        return AOS_DB_ERROR;
    if (target == 0)
        target = (int)count;
    if (target < 0 || (size_t)target > count) {
        aos_db_seterr(err, errlen, "cannot migrate up to version %d: this aosd knows versions 1 to %d", target,
               (int)count);
        return AOS_DB_SCHEMA;
    }
    for (;;) {
        const struct aos_migration *m;
        struct aos_db_param p[3];

        rc = begin_locked(s, &tx, err, errlen);
        if (rc != AOS_DB_OK)
            return rc;
        rc = read_current(tx, set, count, &current, err, errlen);
        if (rc != AOS_DB_OK)
            goto fail;
        if ((size_t)current > count) {
            newer_message(current, count, err, errlen);
            rc = AOS_DB_SCHEMA;
            goto fail;
        }
        if (first && current > target) {
            aos_db_seterr(err, errlen, "database schema is at version %d, above target %d: use down to go back",
                   current, target);
            rc = AOS_DB_SCHEMA;
            goto fail;
        }
        first = false;
        if (current >= target) {
            aos_store_rollback(tx); /* nothing to do: leave no trace */
            return AOS_DB_OK;
        }
        m = &set[current];
        rc = aos_store_exec_script(tx, m->up, dberr, sizeof(dberr));
        if (rc != AOS_DB_OK) {
            aos_db_seterr(err, errlen, "migration %04d_%s failed: %s", m->version, m->name, dberr);
            goto fail;
        }
        p[0] = AOS_DB_P_INT(m->version);
        p[1] = AOS_DB_P_TEXT(m->name);
        p[2] = AOS_DB_P_INT(wall_ms());
        rc = aos_store_exec(tx, SQL_INSERT, p, 3, NULL, dberr, sizeof(dberr));
        if (rc != AOS_DB_OK) {
            aos_db_seterr(err, errlen, "migration %04d_%s: recording it failed: %s", m->version, m->name, dberr);
            goto fail;
        }
        rc = aos_store_commit(tx, dberr, sizeof(dberr));
        tx = NULL;
        if (rc != AOS_DB_OK) {
            aos_db_seterr(err, errlen, "migration %04d_%s: commit failed: %s", m->version, m->name, dberr);
            return rc;
        }
        if (report != NULL)
            report(arg, m->version, m->name);
    }
fail:
    aos_store_rollback(tx);
    return rc;
}

int aos_migrate_down_set(struct aos_store *s, const struct aos_migration *set, size_t count, int steps,
                         aos_migrate_report_fn report, void *arg, char *err, size_t errlen)
{
    struct aos_store_tx *tx = NULL;
    char dberr[512];
    int done, current, rc;

    if (!set_valid(set, count, err, errlen))
        return AOS_DB_ERROR;
    if (steps < 1) {
        aos_db_seterr(err, errlen, "cannot roll back %d migrations: give 1 or more", steps);
        return AOS_DB_ERROR;
    }
    for (done = 0; done < steps; done++) {
        const struct aos_migration *m;
        struct aos_db_param p[1];

        rc = begin_locked(s, &tx, err, errlen);
        if (rc != AOS_DB_OK)
            return rc;
        rc = read_current(tx, set, count, &current, err, errlen);
        if (rc != AOS_DB_OK)
            goto fail;
        if (current == 0) {
            aos_store_rollback(tx);
            return AOS_DB_OK;
        }
        if ((size_t)current > count) {
            aos_db_seterr(err, errlen,
                   "database schema is at version %d but this aosd knows only up to %d: it has no down "
                   "migration for version %d; use the aosd that applied it",
                   current, (int)count, current);
            rc = AOS_DB_SCHEMA;
            goto fail;
        }
        m = &set[current - 1];
        rc = aos_store_exec_script(tx, m->down, dberr, sizeof(dberr));
        if (rc != AOS_DB_OK) {
            aos_db_seterr(err, errlen, "rolling back migration %04d_%s failed: %s", m->version, m->name, dberr);
            goto fail;
        }
        p[0] = AOS_DB_P_INT(m->version);
        rc = aos_store_exec(tx, SQL_DELETE, p, 1, NULL, dberr, sizeof(dberr));
        if (rc != AOS_DB_OK) {
            aos_db_seterr(err, errlen, "rolling back migration %04d_%s: unrecording it failed: %s", m->version,
                   m->name, dberr);
            goto fail;
        }
        rc = aos_store_commit(tx, dberr, sizeof(dberr));
        tx = NULL;
        if (rc != AOS_DB_OK) {
            aos_db_seterr(err, errlen, "rolling back migration %04d_%s: commit failed: %s", m->version, m->name,
                   dberr);
            return rc;
        }
        if (report != NULL)
            report(arg, m->version, m->name);
    }
    return AOS_DB_OK;
fail:
    aos_store_rollback(tx);
    return rc;
}

/* Reads the current version in a read-only transaction. */
static int current_version(struct aos_store *s, const struct aos_migration *set, size_t count, int *current,
                           char *err, size_t errlen)
{
    struct aos_store_tx *tx = NULL;
    int rc;

    rc = aos_store_begin(s, false, &tx, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    rc = read_current(tx, set, count, current, err, errlen);
    aos_store_rollback(tx);
    return rc;
}

int aos_migrate_check_set(struct aos_store *s, const struct aos_migration *set, size_t count, char *err,
                          size_t errlen)
{
    char names[256];
    size_t used = 0;
    int current, rc, v, pending, shown = 0;

    rc = current_version(s, set, count, &current, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    if ((size_t)current > count) {
        newer_message(current, count, err, errlen);
        return AOS_DB_SCHEMA;
    }
    if ((size_t)current == count)
        return AOS_DB_OK;
    pending = (int)count - current;
    names[0] = '\0';
    for (v = current + 1; v <= (int)count; v++) {
        int w;

        if (shown == 5) {
            w = snprintf(names + used, sizeof(names) - used, ", ...");
            if (w > 0 && (size_t)w < sizeof(names) - used)
                used += (size_t)w;
            break;
        }
        w = snprintf(names + used, sizeof(names) - used, "%s%04d_%s", shown > 0 ? ", " : "", v,
                     set[v - 1].name);
        if (w < 0 || (size_t)w >= sizeof(names) - used)
            break; /* the list is informative; the count above is exact */
        used += (size_t)w;
        shown++;
    }
    aos_db_seterr(err, errlen, "%d migration%s pending (%s): run `aosd --migrate -c FILE`", pending,
           pending == 1 ? "" : "s", names);
    return AOS_DB_SCHEMA;
}

int aos_migrate_up(struct aos_store *s, int target, aos_migrate_report_fn report, void *arg, char *err,
                   size_t errlen)
{
    size_t count;
    const struct aos_migration *set = aos_migrate_set(s, &count);

    return aos_migrate_up_set(s, set, count, target, report, arg, err, errlen);
}

int aos_migrate_down(struct aos_store *s, int steps, aos_migrate_report_fn report, void *arg, char *err,
                     size_t errlen)
{
    size_t count;
    const struct aos_migration *set = aos_migrate_set(s, &count);

    return aos_migrate_down_set(s, set, count, steps, report, arg, err, errlen);
}

int aos_migrate_check(struct aos_store *s, char *err, size_t errlen)
{
    size_t count;
    const struct aos_migration *set = aos_migrate_set(s, &count);

    return aos_migrate_check_set(s, set, count, err, errlen);
}

int aos_migrate_status(struct aos_store *s, int *current, int *latest, char *err, size_t errlen)
{
    size_t count;
    const struct aos_migration *set = aos_migrate_set(s, &count);

    *current = 0;
    *latest = (int)count;
    return current_version(s, set, count, current, err, errlen);
}

int aos_migrate_history(struct aos_store *s, struct aos_migration_state **out, size_t *n, char *err,
                        size_t errlen)
{
    struct aos_store_tx *tx = NULL;
    struct aos_migration_state *st = NULL;
    struct applied *rows = NULL;
    size_t count, nrows = 0, total, i;
    const struct aos_migration *set = aos_migrate_set(s, &count);
    int rc;

    *out = NULL;
    *n = 0;
    rc = aos_store_begin(s, false, &tx, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    rc = read_applied(tx, &rows, &nrows, err, errlen);
    aos_store_rollback(tx);
    if (rc != AOS_DB_OK)
        goto out;
    /* Versions are 1..max(count, newest applied); gaps show as not applied. */
    total = count;
    for (i = 0; i < nrows; i++)
        if ((size_t)rows[i].version > total)
            total = (size_t)rows[i].version;
    if (total == 0)
        goto out;
    st = calloc(total, sizeof(*st));
    if (st == NULL) {
        aos_db_seterr(err, errlen, "out of memory");
        rc = AOS_DB_ERROR;
        goto out;
    }
    for (i = 0; i < total; i++) {
        st[i].version = (int)i + 1;
        if (i < count) {
            st[i].known = true;
            snprintf(st[i].name, sizeof(st[i].name), "%s", set[i].name);
        }
    }
    for (i = 0; i < nrows; i++) {
        struct aos_migration_state *e = &st[rows[i].version - 1];

        e->applied = true;
        e->applied_at = rows[i].applied_at;
        if (!e->known)
            snprintf(e->name, sizeof(e->name), "%s", rows[i].name);
    }
    *out = st;
    *n = total;
    st = NULL;
out:
    free(st);
    free(rows);
    return rc;
}
