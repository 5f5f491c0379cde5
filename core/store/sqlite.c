#include "config.h"
/*
 * SQLite driver: one sqlite3 handle per connection.
 *
 * Threads: connections are opened with SQLITE_OPEN_NOMUTEX (SQLite's
 * "multi-thread" mode).  The pool (store.c) hands a connection to one
 * thread at a time and its mutex orders every hand-over, which is exactly
 * the discipline multi-thread mode asks for, so the per-call mutex of
 * FULLMUTEX would buy nothing but its cost.  The library itself is built
 * thread-safe (SQLITE_THREADSAFE=1), which keeps its global state safe.
 *
 * Durability: WAL with synchronous=FULL (PLATFORM-NOTES §12: every commit
 * is on disk when COMMIT returns).  Foreign keys are enforced.  Double-
 * quoted strings are identifiers only, as in PostgreSQL, so SQL shared by
 * both drivers means the same thing on both.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/db.h"

#define STMT_CACHE_MAX 256

struct stmt_entry {
    uint64_t hash;
    char *sql;
    const char *caller_sql; /* the caller's pointer last seen: SQL texts are constants */
    sqlite3_stmt *st;
    /* pidx[i]: SQLite's index of "$<i+1>" (0 when the statement lacks it),
     * worked out once instead of a snprintf and a name lookup per
     * parameter per call; NULL for a statement without parameters. */
    int *pidx;
    int nparams;
};

struct aos_db_conn {
    sqlite3 *db;
    bool broken;
    size_t nstmt;
    struct stmt_entry stmt[STMT_CACHE_MAX];
};

static uint64_t sql_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (errlen == 0)
        return;
    va_start(ap, fmt);
    /* A truncated message is still a message: nothing to recover. */
    (void)vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int map_code(int code)
{
    switch (code & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return AOS_DB_OK;
    case SQLITE_CONSTRAINT:
        return AOS_DB_CONSTRAINT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return AOS_DB_RETRY;
    case SQLITE_CANTOPEN:
        return AOS_DB_UNAVAILABLE;
    default:
        return AOS_DB_ERROR;
    }
}

/* A connection that saw the file fail under it is replaced rather than
 * trusted again. */
static bool code_breaks_conn(int code)
{
    switch (code & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
    case SQLITE_NOMEM:
        return true;
    default:
        return false;
    }
}

/* Formats "sqlite: <what>: <message> (<code name>)" and maps the code. */
static int fail(struct aos_db_conn *c, int code, const char *what, char *err, size_t errlen)
{
    const char *msg = c && c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(code);
    if (c != NULL && code_breaks_conn(code))
        c->broken = true;
    set_err(err, errlen, "sqlite: %s: %s (%s)", what, msg, sqlite3_errstr(code));
    return map_code(code);
}

/* SQLite would create the directory's file but not the directory: say so
 * plainly instead of "unable to open database file". */
static int check_dir(const char *path, char *err, size_t errlen)
{
    int rc = AOS_DB_ERROR;
    char *dir = strdup(path);
    if (dir == NULL) {
        set_err(err, errlen, "sqlite: out of memory");
        return AOS_DB_ERROR;
    }
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        rc = AOS_DB_OK; /* relative to the working directory, which exists */
        goto out;
    }
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (errno == ENOENT)
            set_err(err, errlen,
                    "sqlite: store.path %s: directory %s does not exist (create it, or point "
                    "store.path or server.data_dir at an existing directory)",
                    path, dir);
        else
            set_err(err, errlen, "sqlite: store.path %s: cannot access directory %s", path, dir);
        goto out;
    }
    if (!S_ISDIR(sb.st_mode)) {
        set_err(err, errlen, "sqlite: store.path %s: %s is not a directory", path, dir);
        goto out;
    }
    rc = AOS_DB_OK;
out:
    free(dir);
    return rc;
}

/* The database holds tenants' data: a new file is created 0600 whatever the
 * umask.  SQLite gives the -wal and -shm files the main file's mode. */
static int create_private(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        if (fchmod(fd, 0600) != 0 || close(fd) != 0) {
            set_err(err, errlen, "sqlite: store.path %s: cannot set mode 0600: %s", path, strerror(errno));
            return AOS_DB_ERROR;
        }
        return AOS_DB_OK;
    }
    if (errno == EEXIST)
        return AOS_DB_OK;
    set_err(err, errlen, "sqlite: store.path %s: cannot create: %s", path, strerror(errno));
    return errno == EACCES || errno == EROFS || errno == EISDIR ? AOS_DB_ERROR : AOS_DB_UNAVAILABLE;
}

/* Runs a PRAGMA (or any statement) and, when want is non-NULL, checks that
 * its first column reads want. */
static int run_simple(struct aos_db_conn *c, const char *sql, const char *want, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return fail(c, rc, sql, err, errlen);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        int r = fail(c, rc, sql, err, errlen);
        sqlite3_finalize(st);
        return r;
    }
    if (want != NULL) {
        const unsigned char *got = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
        if (got == NULL || sqlite3_stricmp((const char *)got, want) != 0) {
            set_err(err, errlen, "sqlite: %s returned %s", sql, got ? (const char *)got : "nothing");
            sqlite3_finalize(st);
            return AOS_DB_ERROR;
        }
    }
    sqlite3_finalize(st);
    return AOS_DB_OK;
}

static void sqlite_disconnect(struct aos_db_conn *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nstmt; i++) {
        sqlite3_finalize(c->stmt[i].st);
        free(c->stmt[i].sql);
        free(c->stmt[i].pidx);
    }
    /* close_v2: never leaves a zombie handle behind a statement we missed. */
    sqlite3_close_v2(c->db);
    free(c);
}

static int sqlite_connect(const struct aos_conf_store *conf, struct aos_db_conn **out, char *err,
                          size_t errlen)
{
    int rc;
    struct aos_db_conn *c = NULL;
    const char *path = conf->path;

    *out = NULL;
    if (path == NULL || *path == '\0') {
        set_err(err, errlen, "sqlite: store.path is empty");
        return AOS_DB_ERROR;
    }
    if ((rc = check_dir(path, err, errlen)) != AOS_DB_OK)
        return rc;
    if ((rc = create_private(path, err, errlen)) != AOS_DB_OK)
        return rc;
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        set_err(err, errlen, "sqlite: out of memory");
        return AOS_DB_ERROR;
    }
    int src =
        sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        if (c->db == NULL) {
            set_err(err, errlen, "sqlite: out of memory");
            rc = AOS_DB_ERROR;
        } else {
            set_err(err, errlen, "sqlite: cannot open %s: %s", path, sqlite3_errmsg(c->db));
            rc = map_code(src);
            if (rc == AOS_DB_OK)
                rc = AOS_DB_ERROR;
        }
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_DQS_DML, 0, (int *)NULL);
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_DQS_DDL, 0, (int *)NULL);
    double ms = conf->busy_timeout * 1000.0;
    sqlite3_busy_timeout(c->db, ms <= 0 ? 0 : ms >= INT_MAX ? INT_MAX : (int)ms);
    /* Switching to WAL needs a moment of exclusive access: when another
     * connection is busy, the busy timeout above covers it. */
    if ((rc = run_simple(c, "PRAGMA journal_mode=WAL", "wal", err, errlen)) != AOS_DB_OK ||
        (rc = run_simple(c, "PRAGMA synchronous=FULL", NULL, err, errlen)) != AOS_DB_OK ||
        (rc = run_simple(c, "PRAGMA foreign_keys=ON", NULL, err, errlen)) != AOS_DB_OK ||
        (rc = run_simple(c, "PRAGMA foreign_keys", "1", err, errlen)) != AOS_DB_OK)
        goto fail;
    *out = c;
    return AOS_DB_OK;
fail:
    sqlite_disconnect(c);
    return rc;
}

/* SQLite's index of each "$N", N = 1..count: SQLite numbers them by first
 * appearance (PLATFORM-NOTES §9).  NULL with *n = 0 when there are none;
 * NULL with *n = -1 when out of memory. */
static int *param_indexes(sqlite3_stmt *st, int *n)
{
    int count = sqlite3_bind_parameter_count(st);
    *n = 0;
    if (count <= 0)
        return NULL;
    int *idx = calloc((size_t)count, sizeof *idx);
    if (idx == NULL) {
        *n = -1;
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        char name[24];
        snprintf(name, sizeof name, "$%d", i + 1);
        idx[i] = sqlite3_bind_parameter_index(st, name);
    }
    *n = count;
    return idx;
}

/* The cached statement for sql, or NULL.  Callers pass string constants,
 * so the pointer seen last time finds it without hashing the text; the
 * text is still compared, since a pointer alone could be a reused buffer. */
static struct stmt_entry *cache_find(struct aos_db_conn *c, const char *sql)
{
    for (size_t i = 0; i < c->nstmt; i++)
        if (c->stmt[i].caller_sql == sql && strcmp(c->stmt[i].sql, sql) == 0)
            return &c->stmt[i];
    uint64_t h = sql_hash(sql);
    for (size_t i = 0; i < c->nstmt; i++) {
        if (c->stmt[i].hash == h && strcmp(c->stmt[i].sql, sql) == 0) {
            c->stmt[i].caller_sql = sql;
            return &c->stmt[i];
        }
    }
    return NULL;
}

static int prepare(struct aos_db_conn *c, const char *sql, sqlite3_stmt **st, struct stmt_entry **entry,
                   char *err, size_t errlen)
{
    *entry = cache_find(c, sql);
    if (*entry != NULL) {
        *st = (*entry)->st;
        return AOS_DB_OK;
    }
    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, &tail);
    if (rc != SQLITE_OK)
        return fail(c, rc, "prepare", err, errlen);
    if (*st == NULL) {
        set_err(err, errlen, "sqlite: empty statement");
        return AOS_DB_ERROR;
    }
    while (tail && (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r' || *tail == ';'))
        tail++;
    if (tail && *tail) {
        /* exec() runs one statement; the rest would be silently ignored. */
        sqlite3_finalize(*st);
        *st = NULL;
        set_err(err, errlen, "sqlite: more than one statement given to exec (use exec_script)");
        return AOS_DB_ERROR;
    }
    /* Flag pragmas (query_only, foreign_keys, ...) act when prepared, not
     * when stepped: a cached one would do nothing the second time. */
    const char *word = sql;
    while (*word == ' ' || *word == '\n' || *word == '\t' || *word == '\r')
        word++;
    if (sqlite3_strnicmp(word, "PRAGMA", 6) == 0)
        return AOS_DB_OK;
    if (c->nstmt < STMT_CACHE_MAX) {
        struct stmt_entry e = {.hash = sql_hash(sql), .sql = strdup(sql), .caller_sql = sql, .st = *st};
        e.pidx = param_indexes(*st, &e.nparams);
        if (e.sql != NULL && e.nparams >= 0) {
            c->stmt[c->nstmt] = e;
            *entry = &c->stmt[c->nstmt++];
        } else {
            free(e.sql); /* out of memory: run it uncached */
            free(e.pidx);
        }
    }
    return AOS_DB_OK;
}

/* Binds $1..$n by name: SQLite numbers "$N" by first appearance, not by N
 * (PLATFORM-NOTES §9).  Each $i must occur and nothing else may, as on
 * PostgreSQL. */
static int bind_params(struct aos_db_conn *c, sqlite3_stmt *st, const struct stmt_entry *entry,
                       const struct aos_db_param *params, size_t nparams, char *err, size_t errlen)
{
    if ((size_t)sqlite3_bind_parameter_count(st) != nparams) {
        set_err(err, errlen, "sqlite: statement has %d parameters, %zu given",
                sqlite3_bind_parameter_count(st), nparams);
        return AOS_DB_ERROR;
    }
    for (size_t i = 0; i < nparams; i++) {
        int idx;
        if (entry != NULL) {
            idx = entry->pidx[i];
        } else {
            char name[24];
            snprintf(name, sizeof name, "$%zu", i + 1);
            idx = sqlite3_bind_parameter_index(st, name);
        }
        if (idx == 0) {
            set_err(err, errlen, "sqlite: parameter $%zu is not used by the statement", i + 1);
            return AOS_DB_ERROR;
        }
        const struct aos_db_param *p = &params[i];
        int rc;
        switch (p->type) {
        case AOS_DB_NULL:
            rc = sqlite3_bind_null(st, idx);
            break;
        case AOS_DB_INT:
            rc = sqlite3_bind_int64(st, idx, p->i);
            break;
        case AOS_DB_TEXT:
            if (p->text == NULL && p->len > 0) {
                set_err(err, errlen, "sqlite: parameter $%zu: NULL text with length %zu", i + 1, p->len);
                return AOS_DB_ERROR;
            }
            if (p->len > 0 && memchr(p->text, '\0', p->len) != NULL) {
                set_err(err, errlen, "sqlite: parameter $%zu: text contains a NUL byte", i + 1);
                return AOS_DB_ERROR;
            }
            /* "" rather than p->text: a NULL pointer would bind SQL NULL. */
            rc = sqlite3_bind_text64(st, idx, p->len ? p->text : "", p->len, SQLITE_STATIC, SQLITE_UTF8);
            break;
        default:
            set_err(err, errlen, "sqlite: parameter $%zu: unknown type %d", i + 1, p->type);
            return AOS_DB_ERROR;
        }
        if (rc != SQLITE_OK)
            return fail(c, rc, "bind", err, errlen);
    }
    return AOS_DB_OK;
}

static int sqlite_exec(struct aos_db_conn *c, const char *sql, const struct aos_db_param *params,
                       size_t nparams, struct aos_db_result **res, char *err, size_t errlen)
{
    int rc;
    sqlite3_stmt *st = NULL;
    struct stmt_entry *entry = NULL;
    struct aos_db_result *r = NULL;
    const char **cells = NULL;
    size_t *lens = NULL;

    if (res != NULL)
        *res = NULL;
    if ((rc = prepare(c, sql, &st, &entry, err, errlen)) != AOS_DB_OK)
        return rc;
    if ((rc = bind_params(c, st, entry, params, nparams, err, errlen)) != AOS_DB_OK)
        goto out;
    size_t ncols = (size_t)sqlite3_column_count(st);
    if (res != NULL) {
        r = aos_db_result_new(ncols);
        cells = calloc(ncols ? ncols : 1, sizeof *cells);
        lens = calloc(ncols ? ncols : 1, sizeof *lens);
        if (r == NULL || cells == NULL || lens == NULL) {
            set_err(err, errlen, "sqlite: out of memory");
            rc = AOS_DB_ERROR;
            goto out;
        }
    }
    bool readonly = sqlite3_stmt_readonly(st) != 0;
    sqlite3_int64 before = sqlite3_total_changes64(c->db);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (r == NULL)
            continue;
        for (size_t i = 0; i < ncols; i++) {
            if (sqlite3_column_type(st, (int)i) == SQLITE_NULL) {
                cells[i] = NULL;
                lens[i] = 0;
                continue;
            }
            /* text() before bytes(): the conversion decides the length. */
            const unsigned char *t = sqlite3_column_text(st, (int)i);
            if (t == NULL) {
                set_err(err, errlen, "sqlite: out of memory");
                rc = AOS_DB_ERROR;
                goto out;
            }
            cells[i] = (const char *)t;
            lens[i] = (size_t)sqlite3_column_bytes(st, (int)i);
        }
        if (aos_db_result_add_row(r, cells, lens) != AOS_DB_OK) {
            set_err(err, errlen, "sqlite: out of memory");
            rc = AOS_DB_ERROR;
            goto out;
        }
    }
    if (step != SQLITE_DONE) {
        rc = fail(c, step, "step", err, errlen);
        if (rc == AOS_DB_OK)
            rc = AOS_DB_ERROR;
        goto out;
    }
    /* sqlite3_changes() keeps the last DML's count across SELECTs and DDL:
     * report it only when this statement changed something. */
    if (r != NULL && !readonly && sqlite3_total_changes64(c->db) != before)
        aos_db_result_set_changes(r, sqlite3_changes64(c->db));
    rc = AOS_DB_OK;
out:
    free(cells);
    free(lens);
    if (entry != NULL) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    } else {
        sqlite3_finalize(st);
    }
    if (rc == AOS_DB_OK && res != NULL)
        *res = r;
    else
        aos_db_result_free(r);
    return rc;
}

static int sqlite_exec_script(struct aos_db_conn *c, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return AOS_DB_OK;
    if (code_breaks_conn(rc))
        c->broken = true;
    set_err(err, errlen, "sqlite: script: %s (%s)", msg ? msg : sqlite3_errmsg(c->db), sqlite3_errstr(rc));
    sqlite3_free(msg);
    rc = map_code(rc);
    return rc == AOS_DB_OK ? AOS_DB_ERROR : rc;
}

static bool sqlite_healthy(struct aos_db_conn *c) { return c != NULL && c->db != NULL && !c->broken; }

static bool sqlite_in_transaction(struct aos_db_conn *c) { return sqlite3_get_autocommit(c->db) == 0; }

const struct aos_db_driver aos_db_sqlite = {
    .name = "sqlite",
    .connect = sqlite_connect,
    .disconnect = sqlite_disconnect,
    .exec = sqlite_exec,
    .exec_script = sqlite_exec_script,
    .healthy = sqlite_healthy,
    .in_transaction = sqlite_in_transaction,
};
