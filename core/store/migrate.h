/*
 * Schema migrations: numbered up/down pairs per driver (db/sqlite/,
 * db/pgsql/), compiled into the binary at build time (db/embed.sh), so the
 * binary and the schema it knows can never disagree.
 *
 * The database records what was applied in one table,
 *   schema_migrations(version INTEGER PRIMARY KEY, name TEXT, applied_at BIGINT)
 * (applied_at in unix milliseconds), created by the first aos_migrate_up.
 *
 * Each migration runs in its own transaction together with its
 * schema_migrations row (DDL is transactional on both drivers): a failing
 * migration leaves the schema and schema_migrations as they were.  Two
 * migrators at once (two nodes starting) are serialised: on PostgreSQL by
 * pg_advisory_xact_lock(AOS_MIGRATE_LOCK_ID) taken first in each
 * transaction, on SQLite by BEGIN IMMEDIATE.  Each transaction re-reads the
 * current version under that lock, so the loser simply finds less to do.
 *
 * Writing a migration: no BEGIN/COMMIT in the file; same version numbers
 * and names on both drivers (db/embed.sh checks); the down file drops
 * exactly what the up file created (tests/unit/test_migrate.c compares).
 * SQLite table rebuilds (its ALTER TABLE is limited) cannot switch
 * foreign_keys off inside the transaction: use PRAGMA defer_foreign_keys.
 *
 * Every function may block: call from a thread (or at start-up), never
 * from an HTTP loop.  err receives a one-line reason on failure.
 */
#ifndef AOS_STORE_MIGRATE_H
#define AOS_STORE_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aos_store;

/* One migration: version (1, 2, ...), name ("initial", displayed as
 * "0001_initial") and the SQL scripts (no BEGIN/COMMIT inside). */
struct aos_migration {
    int version;
    const char *name;
    const char *up;
    const char *down;
};

/* The embedded sets, generated from db/ (core/store/migrations_gen.c in the
 * build tree), sorted by version 1..count. */
extern const struct aos_migration aos_migrations_sqlite[];
extern const size_t aos_migrations_sqlite_count;
extern const struct aos_migration aos_migrations_pgsql[];
extern const size_t aos_migrations_pgsql_count;

/* The embedded set for the store's driver; *count receives its size. */
const struct aos_migration *aos_migrate_set(const struct aos_store *s, size_t *count);

/* The advisory lock key migrators take on PostgreSQL ("aosd" in ASCII). */
#define AOS_MIGRATE_LOCK_ID 1634693988

/* Called after each migration is committed (applied by aos_migrate_up,
 * rolled back by aos_migrate_down); name is "initial", not "0001_initial". */
typedef void (*aos_migrate_report_fn)(void *arg, int version, const char *name);

/* Where the schema stands: *current is the highest applied version (0 for
 * an empty database, also when schema_migrations does not exist yet),
 * *latest the highest this binary knows.  AOS_DB_OK (also when current >
 * latest: this is a report, aos_migrate_check judges), AOS_DB_SCHEMA when
 * schema_migrations is inconsistent (a gap, or a version whose name differs
 * from this binary's), other AOS_DB_* on database errors. */
int aos_migrate_status(struct aos_store *s, int *current, int *latest, char *err, size_t errlen);

/* One line per version known to the binary or recorded in the database,
 * for `aosd --migrate status`. */
struct aos_migration_state {
    int version;
    char name[64]; /* the binary's name, or the database's for unknown versions */
    bool known;    /* the binary has this migration */
    bool applied;
    int64_t applied_at; /* unix ms; 0 if not applied */
};
/* *out is malloc'd (caller frees), sorted by version. */
int aos_migrate_history(struct aos_store *s, struct aos_migration_state **out, size_t *n, char *err,
                        size_t errlen);

/* Applies pending migrations up to target (0 = latest), one transaction
 * each, calling report (may be NULL) after each.  Already there: AOS_DB_OK
 * and no report.  AOS_DB_SCHEMA when the database is newer than the binary
 * or target is out of range [current..latest]; the failing migration's
 * error otherwise ("migration 0002_x failed: <database message>"), with
 * every earlier migration kept. */
int aos_migrate_up(struct aos_store *s, int target, aos_migrate_report_fn report, void *arg, char *err,
                   size_t errlen);

/* Rolls back the last `steps` (>= 1) applied migrations, newest first, one
 * transaction each; stops early at version 0 (AOS_DB_OK: nothing left).
 * AOS_DB_SCHEMA when the newest applied version is unknown to this binary
 * (it has no down script for it). */
int aos_migrate_down(struct aos_store *s, int steps, aos_migrate_report_fn report, void *arg, char *err,
                     size_t errlen);

/* AOS_DB_OK if the schema is exactly current; AOS_DB_SCHEMA with a message
 * saying what to run otherwise, e.g.
 *   "database schema is at version 5 but this aosd knows only up to 3: upgrade aosd"
 *   "2 migrations pending (0002_x, 0003_y): run `aosd --migrate -c FILE`"
 * and other AOS_DB_* codes on database errors. */
int aos_migrate_check(struct aos_store *s, char *err, size_t errlen);

/* The same engine over a caller's set (sorted, versions 1..count) instead
 * of the embedded one.  For tests (a deliberately failing migration). */
int aos_migrate_up_set(struct aos_store *s, const struct aos_migration *set, size_t count, int target,
                       aos_migrate_report_fn report, void *arg, char *err, size_t errlen);
int aos_migrate_down_set(struct aos_store *s, const struct aos_migration *set, size_t count, int steps,
                         aos_migrate_report_fn report, void *arg, char *err, size_t errlen);
int aos_migrate_check_set(struct aos_store *s, const struct aos_migration *set, size_t count, char *err,
                          size_t errlen);

#endif
