#include "config.h"
/*
 * Idempotency keys (idempotency.h) on the store's idempotency table.
 *
 * Every decision about a key is taken in one write transaction: the claim
 * is INSERT ... ON CONFLICT DO NOTHING, and when the row already exists it
 * is read under a row lock (FOR UPDATE on PostgreSQL; on SQLite the write
 * transaction holds the database's single writer lock) before it is
 * replaced or taken over.  So two requests with one key can never both be
 * told to proceed, on either driver, on one node or several.
 *
 * Responses are stored as TEXT and replayed byte for byte: the API only
 * answers with JSON.  A body containing a NUL byte cannot be TEXT on
 * PostgreSQL, so aos_idem_complete refuses it (AOS_DB_ERROR, nothing
 * stored, the claim left as it was): the caller releases the claim
 * (aos_idem_release) or lets its lease lapse.
 */
#include "gateway/idempotency.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "log.h"
#include "store/ops.h"
#include "store/store.h"

#define NPARAMS(p) (sizeof(p) / sizeof((p)[0]))

/* ---------------------------------------------------------------- keys and fingerprints */

bool aos_idem_key_valid(const char *key)
{
    size_t i;

    if (key == NULL || key[0] == '\0')
        return false;
    for (i = 0; key[i] != '\0'; i++) {
        if (i >= AOS_IDEM_KEY_MAX || (unsigned char)key[i] < 0x21 || (unsigned char)key[i] > 0x7e)
            return false;
    }
    return true;
}

/* Each field is preceded by its length (8 bytes, big-endian), so no two
 * different (method, route, body) triples hash the same bytes.  The
 * framing is persisted through the fingerprints: changing it would turn
 * every retry within the window into a 422. */
static int digest_field(EVP_MD_CTX *ctx, const void *data, size_t len)
{
    unsigned char n[8];
    uint64_t v = (uint64_t)len;
    int i;

    for (i = 7; i >= 0; i--) {
        n[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
    if (EVP_DigestUpdate(ctx, n, sizeof(n)) != 1)
        return -1;
    return len == 0 || EVP_DigestUpdate(ctx, data, len) == 1 ? 0 : -1;
}

void aos_idem_fingerprint(const char *method, const char *route, const char *body, size_t len,
                          char out[AOS_IDEM_FINGERPRINT_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok;

    if (method == NULL)
        method = "";
    if (route == NULL)
        route = "";
    if (body == NULL)
        len = 0;
    ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
         digest_field(ctx, method, strlen(method)) == 0 && digest_field(ctx, route, strlen(route)) == 0 &&
         digest_field(ctx, body, len) == 0 && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        /* Only out of memory gets here.  An empty fingerprint matches
         * nothing: aos_idem_begin refuses it. */
        out[0] = '\0';
        return;
    }
    for (i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[AOS_IDEM_FINGERPRINT_LEN] = '\0';
}

static bool fingerprint_valid(const char *fp)
{
    size_t i;

    if (fp == NULL || strlen(fp) != AOS_IDEM_FINGERPRINT_LEN)
        return false;
    for (i = 0; i < AOS_IDEM_FINGERPRINT_LEN; i++)
        if (!((fp[i] >= '0' && fp[i] <= '9') || (fp[i] >= 'a' && fp[i] <= 'f')))
            return false;
    return true;
}

void aos_idem_stored_clear(struct aos_idem_stored *s)
{
    if (s == NULL)
        return;
    free(s->content_type);
    free(s->body);
    memset(s, 0, sizeof(*s));
}

/* Checks a request; `tenant` gets the normalised tenant id. */
static int request_check(const struct aos_idem_request *r, bool times, char tenant[AOS_ID_LEN], char *err,
                         size_t errlen)
{
    if (r == NULL || r->principal == NULL || r->principal[0] == '\0' || !aos_idem_key_valid(r->key) ||
        !fingerprint_valid(r->fingerprint)) {
        aos_db_seterr(err, errlen, "idempotency: malformed request (principal, key or fingerprint)");
        return AOS_DB_ERROR;
    }
    if (times && (r->now_ms < 0 || r->window_ms <= 0 || r->lease_ms <= 0 ||
                  r->window_ms > INT64_MAX - r->now_ms || r->lease_ms > INT64_MAX - r->now_ms)) {
        aos_db_seterr(err, errlen, "idempotency: bad time, window or lease");
        return AOS_DB_ERROR;
    }
    /* Ids that are not UUIDs name no tenant (and would be an invalid uuid
     * on PostgreSQL but a plain miss on SQLite): the same answer as for an
     * unknown tenant, on both drivers. */
    if (!aos_store_id_norm(r->tenant_id, tenant)) {
        aos_db_seterr(err, errlen, "idempotency: unknown tenant");
        return AOS_DB_CONSTRAINT;
    }
    return AOS_DB_OK;
}

/* ---------------------------------------------------------------- begin */

static const char SQL_CLAIM[] =
    "INSERT INTO idempotency (tenant_id, principal, idem_key, fingerprint, state, created_at, lease_expires, "
    "expires_at) VALUES ($1, $2, $3, $4, 'in_progress', $5, $6, $7) "
    "ON CONFLICT (tenant_id, principal, idem_key) DO NOTHING";
#define IDEM_COLS "fingerprint, state, status, content_type, response, lease_expires, expires_at"
#define IDEM_WHERE "WHERE tenant_id = $1 AND principal = $2 AND idem_key = $3"
static const char SQL_GET_PG[] = "SELECT " IDEM_COLS " FROM idempotency " IDEM_WHERE " FOR UPDATE";
static const char SQL_GET_SQLITE[] = "SELECT " IDEM_COLS " FROM idempotency " IDEM_WHERE;
enum { COL_FP, COL_STATE, COL_STATUS, COL_CTYPE, COL_RESPONSE, COL_LEASE, COL_EXPIRES };
static const char SQL_RECLAIM[] =
    "UPDATE idempotency SET fingerprint = $4, state = 'in_progress', status = NULL, content_type = NULL, "
    "response = NULL, created_at = $5, lease_expires = $6, expires_at = $7 " IDEM_WHERE;
static const char SQL_TAKEOVER[] =
    "UPDATE idempotency SET lease_expires = $4 " IDEM_WHERE " AND state = 'in_progress'";

struct begin_ctx {
    const struct aos_idem_request *r;
    const char *tenant;
    int outcome;
    bool took_over;
    struct aos_idem_stored *stored;
};

static int exec_changes(struct aos_store_tx *tx, const char *sql, const struct aos_db_param *p, size_t np,
                        int64_t *changes, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc = aos_store_exec(tx, sql, p, np, &res, err, errlen);

    *changes = rc == AOS_DB_OK ? aos_db_result_changes(res) : 0;
    aos_db_result_free(res);
    return rc;
}

static int replay_from_row(const struct aos_db_result *res, struct aos_idem_stored *s, char *err,
                           size_t errlen)
{
    const char *ct = aos_db_result_text(res, 0, COL_CTYPE);
    const char *body = aos_db_result_text(res, 0, COL_RESPONSE);
    size_t len = body != NULL ? aos_db_result_len(res, 0, COL_RESPONSE) : 0;

    s->status = (int)aos_db_result_int(res, 0, COL_STATUS);
    s->content_type = ct != NULL ? strdup(ct) : NULL;
    s->body = malloc(len + 1);
    if ((ct != NULL && s->content_type == NULL) || s->body == NULL) {
        aos_idem_stored_clear(s);
        aos_db_seterr(err, errlen, "out of memory");
        return AOS_DB_ERROR;
    }
    if (len > 0)
        memcpy(s->body, body, len);
    s->body[len] = '\0';
    s->body_len = len;
    return AOS_DB_OK;
}

static int begin_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct begin_ctx *c = arg;
    const struct aos_idem_request *r = c->r;
    int64_t lease = r->now_ms + r->lease_ms, expires = r->now_ms + r->window_ms, changes = 0;
    struct aos_db_result *res = NULL;
    const char *state, *fp;
    int rc;

    /* This function may run several times (retries): start clean. */
    aos_idem_stored_clear(c->stored);
    c->took_over = false;

    struct aos_db_param p[] = {AOS_DB_P_TEXT(c->tenant), AOS_DB_P_TEXT(r->principal),
                               AOS_DB_P_TEXT(r->key),    AOS_DB_P_TEXT(r->fingerprint),
                               AOS_DB_P_INT(r->now_ms),  AOS_DB_P_INT(lease),
                               AOS_DB_P_INT(expires)};
    rc = exec_changes(tx, SQL_CLAIM, p, NPARAMS(p), &changes, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    if (changes == 1) {
        c->outcome = AOS_IDEM_PROCEED;
        return AOS_DB_OK;
    }

    rc = aos_store_exec(tx, aos_store_is_pgsql(aos_store_tx_store(tx)) ? SQL_GET_PG : SQL_GET_SQLITE, p, 3,
                        &res, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    if (aos_db_result_rows(res) != 1) {
        /* PostgreSQL: the conflicting row was pruned between the two
         * statements (READ COMMITTED).  Running again claims the key. */
        aos_db_result_free(res);
        aos_db_seterr(err, errlen, "idempotency: record vanished while claiming it");
        return AOS_DB_RETRY;
    }
    state = aos_db_result_text(res, 0, COL_STATE);
    fp = aos_db_result_text(res, 0, COL_FP);

    if (aos_db_result_int(res, 0, COL_EXPIRES) <= r->now_ms) {
        rc = exec_changes(tx, SQL_RECLAIM, p, NPARAMS(p), &changes, err, errlen);
        c->outcome = AOS_IDEM_PROCEED;
    } else if (fp == NULL || strcmp(fp, r->fingerprint) != 0) {
        c->outcome = AOS_IDEM_MISMATCH;
        changes = 1;
    } else if (state != NULL && strcmp(state, "complete") == 0) {
        rc = replay_from_row(res, c->stored, err, errlen);
        c->outcome = AOS_IDEM_REPLAY;
        changes = 1;
    } else if (!aos_db_result_is_null(res, 0, COL_LEASE) &&
               aos_db_result_int(res, 0, COL_LEASE) > r->now_ms) {
        c->outcome = AOS_IDEM_IN_PROGRESS;
        changes = 1;
    } else {
        struct aos_db_param q[] = {p[0], p[1], p[2], AOS_DB_P_INT(lease)};
        rc = exec_changes(tx, SQL_TAKEOVER, q, NPARAMS(q), &changes, err, errlen);
        c->outcome = AOS_IDEM_PROCEED;
        c->took_over = true;
    }
    aos_db_result_free(res);
    if (rc == AOS_DB_OK && changes != 1) {
        /* The row is locked by us: it cannot have changed under us. */
        aos_db_seterr(err, errlen, "idempotency: record changed while locked");
        rc = AOS_DB_ERROR;
    }
    return rc;
}

int aos_idem_begin(struct aos_store *store, const struct aos_idem_request *r, int *outcome,
                   struct aos_idem_stored *stored, char *err, size_t errlen)
{
    char tenant[AOS_ID_LEN];
    struct begin_ctx c;
    int rc;

    memset(stored, 0, sizeof(*stored));
    *outcome = AOS_IDEM_PROCEED;
    rc = request_check(r, true, tenant, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    memset(&c, 0, sizeof(c));
    c.r = r;
    c.tenant = tenant;
    c.stored = stored;
    rc = aos_store_transact(store, true, begin_tx, &c, err, errlen);
    if (rc != AOS_DB_OK) {
        aos_idem_stored_clear(stored);
        return rc;
    }
    if (c.took_over)
        aos_warn("idempotency: claim with a lapsed lease taken over (its request may have died)", "tenant",
                 tenant, "principal", r->principal, NULL);
    *outcome = c.outcome;
    return AOS_DB_OK;
}

/* ---------------------------------------------------------------- complete, release, prune */

/* The fingerprint guards against completing a claim that expired and was
 * replaced by another request in the meantime. */
static const char SQL_COMPLETE[] =
    "UPDATE idempotency SET state = 'complete', status = $5, content_type = $6, response = $7, "
    "lease_expires = NULL " IDEM_WHERE " AND fingerprint = $4 AND state = 'in_progress'";
static const char SQL_RELEASE[] =
    "DELETE FROM idempotency " IDEM_WHERE " AND fingerprint = $4 AND state = 'in_progress'";
/* Bounded chunks so that a large backlog never holds one long write
 * transaction.  The outer `expires_at <= $1` is re-checked on the row
 * itself, so a record re-claimed meanwhile (PostgreSQL, READ COMMITTED)
 * is never deleted. */
static const char SQL_PRUNE[] =
    "DELETE FROM idempotency WHERE expires_at <= $1 AND (tenant_id, principal, idem_key) IN "
    "(SELECT tenant_id, principal, idem_key FROM idempotency WHERE expires_at <= $1 LIMIT $2)";

struct write_ctx {
    const char *sql;
    const struct aos_db_param *p;
    size_t np;
    int64_t changes;
};

static int write_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct write_ctx *c = arg;

    return exec_changes(tx, c->sql, c->p, c->np, &c->changes, err, errlen);
}

int aos_idem_complete(struct aos_store *store, const struct aos_idem_request *r, int status,
                      const char *content_type, const char *body, size_t len, char *err, size_t errlen)
{
    char tenant[AOS_ID_LEN];
    struct write_ctx c;
    int rc;

    rc = request_check(r, false, tenant, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    if (status < 100 || status > 599) {
        aos_db_seterr(err, errlen, "idempotency: bad status %d", status);
        return AOS_DB_ERROR;
    }
    if (body == NULL) {
        body = "";
        len = 0;
    }
    if (memchr(body, '\0', len) != NULL) {
        aos_db_seterr(err, errlen, "idempotency: a response body with a NUL byte cannot be stored");
        return AOS_DB_ERROR;
    }
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tenant),    AOS_DB_P_TEXT(r->principal),
                               AOS_DB_P_TEXT(r->key),    AOS_DB_P_TEXT(r->fingerprint),
                               AOS_DB_P_INT(status),     AOS_DB_P_TEXT(content_type),
                               AOS_DB_P_TEXTN(body, len)};
    memset(&c, 0, sizeof(c));
    c.sql = SQL_COMPLETE;
    c.p = p;
    c.np = NPARAMS(p);
    rc = aos_store_transact(store, true, write_tx, &c, err, errlen);
    if (rc == AOS_DB_OK && c.changes != 1) {
        aos_db_seterr(err, errlen, "idempotency: no claim in progress for this key");
        rc = AOS_DB_NOT_FOUND;
    }
    return rc;
}

int aos_idem_release(struct aos_store *store, const struct aos_idem_request *r, char *err, size_t errlen)
{
    char tenant[AOS_ID_LEN];
    struct write_ctx c;
    int rc;

    rc = request_check(r, false, tenant, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tenant), AOS_DB_P_TEXT(r->principal), AOS_DB_P_TEXT(r->key),
                               AOS_DB_P_TEXT(r->fingerprint)};
    memset(&c, 0, sizeof(c));
    c.sql = SQL_RELEASE;
    c.p = p;
    c.np = NPARAMS(p);
    rc = aos_store_transact(store, true, write_tx, &c, err, errlen);
    if (rc == AOS_DB_OK && c.changes != 1) {
        aos_db_seterr(err, errlen, "idempotency: no claim in progress for this key");
        rc = AOS_DB_NOT_FOUND;
    }
    return rc;
}

int aos_idem_prune(struct aos_store *store, int64_t now_ms, size_t limit, size_t *deleted, char *err,
                   size_t errlen)
{
    struct write_ctx c;
    int rc;

    *deleted = 0;
    if (limit == 0)
        return AOS_DB_OK;
    if (limit > INT64_MAX)
        limit = INT64_MAX;
    struct aos_db_param p[] = {AOS_DB_P_INT(now_ms), AOS_DB_P_INT((int64_t)limit)};
    memset(&c, 0, sizeof(c));
    c.sql = SQL_PRUNE;
    c.p = p;
    c.np = NPARAMS(p);
    rc = aos_store_transact(store, true, write_tx, &c, err, errlen);
    if (rc == AOS_DB_OK)
        *deleted = c.changes > 0 ? (size_t)c.changes : 0;
    return rc;
}
