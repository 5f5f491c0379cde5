#include "config.h"
/*
 * PostgreSQL driver (libpq): one PGconn per connection, used by one thread
 * at a time (the pool guarantees it; libpq asks no more).
 *
 * Statements are prepared once per connection under a generated name and
 * then executed by name: one round trip per statement and no re-parsing.
 * Values travel in text format (integers printed in decimal) with their
 * types left for the server to infer from the statement, so the same SQL
 * text and parameters mean the same on both drivers.
 *
 * Secrets: the conninfo may hold a password.  It is never copied into an
 * error message or a log line: messages name the server as host:port/db,
 * and libpq's own messages are scrubbed of the password before use.
 * PostgreSQL's DETAIL (which quotes row values) is never used either.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store/db.h"
#include "store/libpq_dl.h"

#define STMT_CACHE_MAX 256
#define DEFAULT_CONNECT_TIMEOUT "5"

struct pg_stmt {
    uint64_t hash;
    char *sql;
    int nparams; /* as the server counted them */
    char name[24];
};

struct aos_db_conn {
    PGconn *pg;
    bool broken;
    unsigned next_id;
    char where[192]; /* host:port/db, for messages */
    size_t nstmt;
    struct pg_stmt stmt[STMT_CACHE_MAX];
};

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

static uint64_t sql_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Copies src into dst (size n) on one line, every occurrence of secret
 * replaced by "***", trailing blanks dropped. */
static void scrub(char *dst, size_t n, const char *src, const char *secret)
{
    size_t slen = secret ? strlen(secret) : 0;
    size_t o = 0;
    if (n == 0)
        return;
    while (src && *src && o + 1 < n) {
        if (slen > 0 && strncmp(src, secret, slen) == 0) {
            for (const char *m = "***"; *m && o + 1 < n; m++)
                dst[o++] = *m;
            src += slen;
            continue;
        }
        char ch = *src++;
        if (ch == '\n' || ch == '\r' || ch == '\t') {
            if (o > 0 && dst[o - 1] != ' ')
                dst[o++] = ' ';
            continue;
        }
        dst[o++] = ch;
    }
    while (o > 0 && dst[o - 1] == ' ')
        o--;
    dst[o] = '\0';
}

static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    char line[512];
    scrub(line, sizeof line, message, NULL);
    aos_log(AOS_LVL_WARN, "postgresql notice", "msg", line, NULL);
}

static const char *opt_value(const PQconninfoOption *opts, const char *key)
{
    for (const PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, key) == 0)
            return o->val;
    return NULL;
}

/* host:port/db for messages, scrubbed too: a password may sit anywhere in
 * a mistyped conninfo. */
static void describe_server(struct aos_db_conn *c, const char *password)
{
    char raw[sizeof c->where];
    const char *host = PQhost(c->pg), *port = PQport(c->pg), *db = PQdb(c->pg);
    snprintf(raw, sizeof raw, "%s:%s/%s", host && *host ? host : "localhost", port && *port ? port : "5432",
             db && *db ? db : "?");
    scrub(c->where, sizeof c->where, raw, password);
}

static void pgsql_disconnect(struct aos_db_conn *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nstmt; i++)
        free(c->stmt[i].sql);
    PQfinish(c->pg);
    free(c);
}

static int pgsql_connect(const struct aos_conf_store *conf, struct aos_db_conn **out, char *err,
                         size_t errlen)
{
    int rc = AOS_DB_ERROR;
    struct aos_db_conn *c = NULL;
    PQconninfoOption *opts = NULL;
    char *perr = NULL;
    char *password = NULL;
    PGresult *r = NULL;

    *out = NULL;
    if (aos_libpq_load(err, errlen) != 0)
        return AOS_DB_ERROR;
    const char *conninfo = conf->conninfo ? conf->conninfo : "";
    /* libpq's parse errors quote the offending text, which may be the
     * password: say what is wrong without repeating it. */
    opts = PQconninfoParse(conninfo, &perr);
    if (opts == NULL) {
        set_err(err, errlen,
                "pgsql: store.conninfo is not a valid PostgreSQL connection string "
                "(expected postgresql://user@host:port/dbname or \"host=... dbname=...\")");
        goto out;
    }
    const char *pw = opt_value(opts, "password");
    if (pw != NULL && *pw != '\0' && (password = strdup(pw)) == NULL) {
        set_err(err, errlen, "pgsql: out of memory");
        goto out;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        set_err(err, errlen, "pgsql: out of memory");
        goto out;
    }
    /* Keywords before dbname are defaults the conninfo (expanded from
     * dbname) overrides: a conninfo without connect_timeout would otherwise
     * wait for the kernel's TCP timeout on an unreachable host. */
    static const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *vals[] = {DEFAULT_CONNECT_TIMEOUT, "aosd", conninfo, NULL};
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (c->pg == NULL) {
        set_err(err, errlen, "pgsql: out of memory");
        goto out;
    }
    describe_server(c, password);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        char msg[512];
        scrub(msg, sizeof msg, PQerrorMessage(c->pg), password);
        set_err(err, errlen, "pgsql: cannot connect to %s: %s", c->where, msg);
        rc = AOS_DB_UNAVAILABLE;
        goto out;
    }
    PQsetNoticeProcessor(c->pg, notice_to_log, NULL);
    /* Quiet the INFO/NOTICE chatter of IF [NOT] EXISTS; timestamps render
     * the same whatever the server's TimeZone. */
    r = PQexec(c->pg, "SET client_min_messages = warning; SET TIME ZONE 'UTC'");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        char msg[512];
        scrub(msg, sizeof msg, PQerrorMessage(c->pg), password);
        set_err(err, errlen, "pgsql: %s: session setup failed: %s", c->where, msg);
        rc = PQstatus(c->pg) == CONNECTION_OK ? AOS_DB_ERROR : AOS_DB_UNAVAILABLE;
        goto out;
    }
    *out = c;
    c = NULL;
    rc = AOS_DB_OK;
out:
    PQclear(r);
    pgsql_disconnect(c);
    if (password != NULL) {
        explicit_bzero(password, strlen(password));
        free(password);
    }
    PQconninfoFree(opts);
    PQfreemem(perr);
    return rc;
}

static int map_sqlstate(const char *st)
{
    if (st == NULL || strlen(st) != 5)
        return AOS_DB_ERROR;
    if (strncmp(st, "23", 2) == 0)
        return AOS_DB_CONSTRAINT;
    if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "55P03") == 0)
        return AOS_DB_RETRY;
    /* 08P01 is a protocol violation: our bug, not the network. */
    if (strncmp(st, "08", 2) == 0 && strcmp(st, "08P01") != 0)
        return AOS_DB_UNAVAILABLE;
    if (strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0 ||
        strcmp(st, "53300") == 0)
        return AOS_DB_UNAVAILABLE;
    return AOS_DB_ERROR;
}

/* Classifies a failed result (r may be NULL) and writes err. */
static int fail(struct aos_db_conn *c, const PGresult *r, const char *what, char *err, size_t errlen)
{
    char msg[512];
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    int rc = map_sqlstate(st);

    if (PQstatus(c->pg) != CONNECTION_OK) {
        c->broken = true;
        scrub(msg, sizeof msg, primary ? primary : PQerrorMessage(c->pg), NULL);
        set_err(err, errlen, "pgsql: connection to %s lost: %s", c->where, msg);
        return AOS_DB_UNAVAILABLE;
    }
    if (rc == AOS_DB_UNAVAILABLE)
        c->broken = true; /* the server is going away: don't reuse this session */
    scrub(msg, sizeof msg, primary ? primary : PQerrorMessage(c->pg), NULL);
    if (st != NULL)
        set_err(err, errlen, "pgsql: %s: %s (SQLSTATE %s)", what, msg, st);
    else
        set_err(err, errlen, "pgsql: %s: %s", what, msg);
    return rc;
}

static struct pg_stmt *find_stmt(struct aos_db_conn *c, const char *sql, uint64_t h)
{
    for (size_t i = 0; i < c->nstmt; i++)
        if (c->stmt[i].hash == h && strcmp(c->stmt[i].sql, sql) == 0)
            return &c->stmt[i];
    return NULL;
}

/* Prepares sql under a new name and caches it; *out stays NULL when the
 * cache is full (the caller then runs the statement unnamed). */
static int prepare(struct aos_db_conn *c, const char *sql, uint64_t h, struct pg_stmt **out, char *err,
                   size_t errlen)
{
    int rc = AOS_DB_OK;
    PGresult *r = NULL;
    char *copy = NULL;

    *out = NULL;
    if (c->nstmt == STMT_CACHE_MAX)
        return AOS_DB_OK;
    struct pg_stmt *s = &c->stmt[c->nstmt];
    snprintf(s->name, sizeof s->name, "aos_%u", c->next_id++);
    if ((copy = strdup(sql)) == NULL) {
        set_err(err, errlen, "pgsql: out of memory");
        return AOS_DB_ERROR;
    }
    r = PQprepare(c->pg, s->name, sql, 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = fail(c, r, "prepare", err, errlen);
        goto out;
    }
    PQclear(r);
    /* The server's count of $n, to refuse a mismatch before Bind (whose
     * error would be a protocol violation). */
    r = PQdescribePrepared(c->pg, s->name);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = fail(c, r, "describe", err, errlen);
        goto out;
    }
    s->nparams = PQnparams(r);
    s->hash = h;
    s->sql = copy;
    copy = NULL;
    c->nstmt++;
    *out = s;
out:
    PQclear(r);
    free(copy);
    return rc;
}

static bool is_dml(const PGresult *r)
{
    const char *tag = PQcmdStatus((PGresult *)r);
    static const char *const dml[] = {"INSERT ", "UPDATE ", "DELETE ", "MERGE "};
    for (size_t i = 0; i < sizeof dml / sizeof dml[0]; i++)
        if (strncmp(tag, dml[i], strlen(dml[i])) == 0)
            return true;
    return false;
}

static int collect(const PGresult *r, struct aos_db_result **res, char *err, size_t errlen)
{
    int rc = AOS_DB_ERROR;
    size_t ncols = (size_t)PQnfields(r), nrows = (size_t)PQntuples(r);
    struct aos_db_result *out = aos_db_result_new(ncols);
    const char **cells = calloc(ncols ? ncols : 1, sizeof *cells);
    size_t *lens = calloc(ncols ? ncols : 1, sizeof *lens);

    if (out == NULL || cells == NULL || lens == NULL)
        goto oom;
    for (size_t i = 0; i < nrows; i++) {
        for (size_t j = 0; j < ncols; j++) {
            if (PQgetisnull(r, (int)i, (int)j)) {
                cells[j] = NULL;
                lens[j] = 0;
            } else {
                cells[j] = PQgetvalue(r, (int)i, (int)j);
                lens[j] = (size_t)PQgetlength(r, (int)i, (int)j);
            }
        }
        if (aos_db_result_add_row(out, cells, lens) != AOS_DB_OK)
            goto oom;
    }
    if (is_dml(r))
        aos_db_result_set_changes(out, strtoll(PQcmdTuples((PGresult *)r), NULL, 10));
    *res = out;
    out = NULL;
    rc = AOS_DB_OK;
    goto out;
oom:
    set_err(err, errlen, "pgsql: out of memory");
out:
    aos_db_result_free(out);
    free(cells);
    free(lens);
    return rc;
}

/* Text format: every value as NUL-terminated text (the caller's TEXT may
 * be an unterminated slice, so all values are copied into one buffer). */
static int format_params(const struct aos_db_param *params, size_t nparams, const char **vals, char **bufp,
                         char *err, size_t errlen)
{
    size_t need = 1;
    for (size_t i = 0; i < nparams; i++) {
        const struct aos_db_param *p = &params[i];
        switch (p->type) {
        case AOS_DB_NULL:
            break;
        case AOS_DB_INT:
            need += 24;
            break;
        case AOS_DB_TEXT:
            if (p->text == NULL && p->len > 0) {
                set_err(err, errlen, "pgsql: parameter $%zu: NULL text with length %zu", i + 1, p->len);
                return AOS_DB_ERROR;
            }
            if (p->len > 0 && memchr(p->text, '\0', p->len) != NULL) {
                set_err(err, errlen, "pgsql: parameter $%zu: text contains a NUL byte", i + 1);
                return AOS_DB_ERROR;
            }
            if (p->len >= SIZE_MAX - need) {
                set_err(err, errlen, "pgsql: parameter $%zu too long", i + 1);
                return AOS_DB_ERROR;
            }
            need += p->len + 1;
            break;
        default:
            set_err(err, errlen, "pgsql: parameter $%zu: unknown type %d", i + 1, p->type);
            return AOS_DB_ERROR;
        }
    }
    char *buf = malloc(need);
    if (buf == NULL) {
        set_err(err, errlen, "pgsql: out of memory");
        return AOS_DB_ERROR;
    }
    size_t pos = 0;
    for (size_t i = 0; i < nparams; i++) {
        const struct aos_db_param *p = &params[i];
        if (p->type == AOS_DB_NULL) {
            vals[i] = NULL;
            continue;
        }
        vals[i] = buf + pos;
        if (p->type == AOS_DB_INT) {
            int n = snprintf(buf + pos, 24, "%" PRId64, p->i);
            pos += (size_t)n + 1;
        } else {
            if (p->len > 0)
                memcpy(buf + pos, p->text, p->len);
            buf[pos + p->len] = '\0';
            pos += p->len + 1;
        }
    }
    *bufp = buf;
    return AOS_DB_OK;
}

static int pgsql_exec(struct aos_db_conn *c, const char *sql, const struct aos_db_param *params,
                      size_t nparams, struct aos_db_result **res, char *err, size_t errlen)
{
    int rc = AOS_DB_ERROR;
    PGresult *r = NULL;
    const char **vals = NULL;
    char *buf = NULL;
    struct pg_stmt *s = NULL;

    if (res != NULL)
        *res = NULL;
    if (nparams > 65535) {
        set_err(err, errlen, "pgsql: %zu parameters (at most 65535)", nparams);
        return AOS_DB_ERROR;
    }
    if ((vals = calloc(nparams ? nparams : 1, sizeof *vals)) == NULL) {
        set_err(err, errlen, "pgsql: out of memory");
        goto out;
    }
    if ((rc = format_params(params, nparams, vals, &buf, err, errlen)) != AOS_DB_OK)
        goto out;
    uint64_t h = sql_hash(sql);
    s = find_stmt(c, sql, h);
    if (s == NULL && (rc = prepare(c, sql, h, &s, err, errlen)) != AOS_DB_OK)
        goto out;
    if (s != NULL && (size_t)s->nparams != nparams) {
        set_err(err, errlen, "pgsql: statement has %d parameters, %zu given", s->nparams, nparams);
        rc = AOS_DB_ERROR;
        goto out;
    }
    if (s != NULL)
        r = PQexecPrepared(c->pg, s->name, (int)nparams, vals, NULL, NULL, 0);
    else
        r = PQexecParams(c->pg, sql, (int)nparams, NULL, vals, NULL, NULL, 0);
    ExecStatusType est = PQresultStatus(r);
    if (est == PGRES_TUPLES_OK || est == PGRES_COMMAND_OK) {
        rc = res != NULL ? collect(r, res, err, errlen) : AOS_DB_OK;
    } else {
        rc = fail(c, r, "exec", err, errlen);
        if (rc == AOS_DB_OK)
            rc = AOS_DB_ERROR;
    }
out:
    PQclear(r);
    free(vals);
    free(buf);
    return rc;
}

static int pgsql_exec_script(struct aos_db_conn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType est = PQresultStatus(r);
    int rc = AOS_DB_OK;
    if (est != PGRES_COMMAND_OK && est != PGRES_TUPLES_OK && est != PGRES_EMPTY_QUERY) {
        rc = fail(c, r, "script", err, errlen);
        if (rc == AOS_DB_OK)
            rc = AOS_DB_ERROR;
    }
    PQclear(r);
    return rc;
}

static bool pgsql_healthy(struct aos_db_conn *c)
{
    if (c == NULL || c->pg == NULL || c->broken || PQstatus(c->pg) != CONNECTION_OK)
        return false;
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    return ts != PQTRANS_ACTIVE && ts != PQTRANS_UNKNOWN;
}

static bool pgsql_in_transaction(struct aos_db_conn *c)
{
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    return ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR || ts == PQTRANS_ACTIVE;
}

const struct aos_db_driver aos_db_pgsql = {
    .name = "pgsql",
    .connect = pgsql_connect,
    .disconnect = pgsql_disconnect,
    .exec = pgsql_exec,
    .exec_script = pgsql_exec_script,
    .healthy = pgsql_healthy,
    .in_transaction = pgsql_in_transaction,
};
