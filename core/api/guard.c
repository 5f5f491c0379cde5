/*
 * The gateway chain, in the order a request meets it:
 *
 *   request id, limits, timeouts   core/http/server.c (before routing)
 *   API journal                    server observer -> core/gateway/journal.c (after the response)
 *   authentication                 aos_api_guard: JWT on the loop, API keys on the pool;
 *                                  on SSE routes also a stream token in ?token= (never
 *                                  an access token in a URL: events/token.h)
 *   tenant                         guard_finish: tenant still configured, X-Tenant-ID must match
 *   role                           guard_finish: the route's declared role
 *   rate limit                     gateway_limit: per client IP and per principal, /api/ only
 *   idempotency                    gateway_idempotency: authenticated POST with Idempotency-Key
 *   handler                        aos_http_call_handler
 *
 * Refusals (each a JSON error):
 *   Authorization/X-API-Key/X-Tenant-ID
 *   sent twice, or both credentials        400 duplicate_header
 *   no credentials                         401 missing_credentials
 *   bad/expired token, unknown/revoked key 401 invalid_credentials
 *   ?token= plus Authorization/X-API-Key   400 duplicate_header
 *   tenant no longer configured            401 invalid_credentials
 *   X-Tenant-ID not a UUID                 400 invalid_tenant_id
 *   X-Tenant-ID of another tenant          403 tenant_mismatch
 *   role below the route's                 403 forbidden
 *   over the rate limit                    429 rate_limited (+ Retry-After)
 *   shared limiter down, redis_fail=closed 503 rate_limit_unavailable
 *   Idempotency-Key malformed or repeated  400 invalid_idempotency_key
 *   same key, other request                422 idempotency_key_reused
 *   same key, first request still running  409 idempotency_in_progress
 */
#include "config.h"

#include "api/api.h"

#include "auth/backends.h"
#include "auth/jwt.h"
#include "auth/token_cache.h"
#include "conf.h"
#include "events/token.h"
#include "gateway/idempotency.h"
#include "gateway/ratelimit.h"
#include "http/http.h"
#include "log.h"
#include "runtime.h"
#include "store/store.h"
#include "threadpool.h"

#include <stdio.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define JWT_LEEWAY_SECONDS 30
/* Stream tokens live minutes and are issued and checked by the same
 * cluster: a small allowance for clock skew between its nodes. */
#define STREAM_TOKEN_LEEWAY_SECONDS 2

static const char *const route_role_names[] = {"", "user", "approver", "admin"};

/* Appends src to dst[0..*n) within size (truncating, always terminated,
 * as snprintf would): the per-request strings are built without printf. */
static void str_append(char *dst, size_t size, size_t *n, const char *src)
{
    size_t len = strlen(src);
    if (*n + len >= size)
        len = size - 1 - *n;
    memcpy(dst + *n, src, len);
    *n += len;
    dst[*n] = '\0';
}

static void str_copy(char *dst, size_t size, const char *src)
{
    size_t n = 0;
    str_append(dst, size, &n, src);
}

static void unauthorized(struct aos_http_request *req, const char *code, const char *message)
{
    aos_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"aosd\"");
    aos_http_respond_error(req, 401, code, "%s", message);
}

bool aos_api_uuid_valid(const char *s)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (s[i] == '\0')
            return false;
        if (shape[i] == '-' ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return s[sizeof shape - 1] == '\0';
}

/* A claim holds this long; a node that dies mid-request frees its keys
 * for a retry after it. */
#define IDEM_LEASE_MS (120 * 1000)

struct idem_job {
    struct aos_http_request *req;
    struct aos_store *store;
    struct aos_idem_request r;
    char tenant_id[AOS_ID_MAX];
    char principal[AOS_ID_MAX];
    char key[AOS_IDEM_KEY_MAX + 1];
    char fingerprint[AOS_IDEM_FINGERPRINT_LEN + 1];
    int rc;
    int outcome;
    struct aos_idem_stored stored;
    char err[256];
    /* the response to store (completion job) */
    int status;
    char *content_type;
    char *body;
    size_t body_len;
};

static void idem_job_free(struct idem_job *j)
{
    aos_idem_stored_clear(&j->stored);
    free(j->content_type);
    free(j->body);
    free(j);
}

static void idem_complete_work(void *arg)
{
    struct idem_job *j = arg;
    j->rc = aos_idem_complete(j->store, &j->r, j->status, j->content_type, j->body, j->body_len, j->err,
                              sizeof j->err);
    if (j->rc != AOS_DB_OK)
        /* Free the key for an immediate retry rather than 409s until the
         * lease lapses. */
        aos_idem_release(j->store, &j->r, j->err, sizeof j->err);
}

static void idem_complete_done(void *arg)
{
    struct idem_job *j = arg;
    if (j->rc != AOS_DB_OK)
        aos_warn("idempotent response not stored", "error", j->err, "request_id", j->req->request_id, NULL);
    aos_http_respond(j->req, j->status, j->content_type, j->body, j->body_len);
    idem_job_free(j);
}

/* The handler answered: store the response first, then send it, so a
 * client that saw it can never get 409 for a retry. */
static bool idem_capture(struct aos_http_request *req, int status, const char *content_type, const void *body,
                         size_t len, void *arg)
{
    struct idem_job *j = arg;
    struct aos_app *app = req->app;
    j->status = status;
    j->content_type = content_type != NULL ? strdup(content_type) : NULL;
    j->body = malloc(len + 1);
    if (j->body == NULL || (content_type != NULL && j->content_type == NULL)) {
        idem_job_free(j);
        return false;
    }
    if (len > 0)
        memcpy(j->body, body, len);
    j->body[len] = '\0';
    j->body_len = len;
    if (aos_pool_submit(app->pool, idem_complete_work, idem_complete_done, req->loop, j) != 0) {
        aos_warn("idempotent response not stored (pool full): retries wait for the lease", NULL);
        idem_job_free(j);
        return false;
    }
    return true;
}

static void idem_begin_work(void *arg)
{
    struct idem_job *j = arg;
    j->rc = aos_idem_begin(j->store, &j->r, &j->outcome, &j->stored, j->err, sizeof j->err);
}

static void idem_begin_done(void *arg)
{
    struct idem_job *j = arg;
    struct aos_http_request *req = j->req;
    if (j->rc != AOS_DB_OK) {
        aos_api_store_error(req, j->rc, j->err);
        idem_job_free(j);
        return;
    }
    switch (j->outcome) {
    case AOS_IDEM_PROCEED:
        aos_idem_stored_clear(&j->stored);
        req->respond_hook = idem_capture;
        req->respond_hook_arg = j; /* owned by the hook from here */
        aos_http_call_handler(req);
        return;
    case AOS_IDEM_REPLAY:
        aos_http_add_header(req, "Idempotent-Replayed", "true");
        aos_http_respond(req, j->stored.status, j->stored.content_type, j->stored.body, j->stored.body_len);
        break;
    case AOS_IDEM_IN_PROGRESS:
        aos_http_add_header(req, "Retry-After", "1");
        aos_http_respond_error(req, 409, "idempotency_in_progress",
                               "a request with this Idempotency-Key is still being processed");
        break;
    default:
        aos_http_respond_error(req, 422, "idempotency_key_reused",
                               "this Idempotency-Key was used for a different request");
        break;
    }
    idem_job_free(j);
}

/* Authenticated POSTs with an Idempotency-Key run at most once per key:
 * repeats get the first response.  Unauthenticated POSTs (login) and
 * routes flagged AOS_ROUTE_NO_IDEMPOTENCY (new API keys, stream tokens)
 * are not covered: their responses hold credentials that must never be
 * stored. */
static void gateway_idempotency(struct aos_http_request *req)
{
    size_t n = aos_http_header_count(req, "Idempotency-Key");
    if (n == 0 || strcmp(req->method, "POST") != 0 || !req->authenticated ||
        (req->match.route->flags & AOS_ROUTE_NO_IDEMPOTENCY)) {
        aos_http_call_handler(req);
        return;
    }
    const char *key = aos_http_header(req, "Idempotency-Key");
    if (n > 1 || !aos_idem_key_valid(key)) {
        aos_http_respond_error(req, 400, "invalid_idempotency_key",
                               n > 1 ? "send one Idempotency-Key header"
                                     : "Idempotency-Key must be 1 to 255 visible ASCII characters");
        return;
    }
    struct aos_app *app = req->app;
    struct idem_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        aos_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    struct aos_runtime *rt = aos_runtime_acquire();
    int hours = rt != NULL ? rt->conf->governance.idempotency_hours : 24;
    aos_runtime_release(rt);
    j->req = req;
    j->store = app->store;
    snprintf(j->tenant_id, sizeof j->tenant_id, "%s", req->principal.tenant_id);
    snprintf(j->principal, sizeof j->principal, "%s", req->principal.subject);
    snprintf(j->key, sizeof j->key, "%s", key);
    aos_idem_fingerprint(req->method, req->match.route->pattern, req->body, req->body_len, j->fingerprint);
    j->r = (struct aos_idem_request){
        .tenant_id = j->tenant_id,
        .principal = j->principal,
        .key = j->key,
        .fingerprint = j->fingerprint,
        .now_ms = (int64_t)time(NULL) * 1000,
        .window_ms = (int64_t)hours * 3600 * 1000,
        .lease_ms = IDEM_LEASE_MS,
    };
    if (aos_http_defer(req, app->pool, idem_begin_work, idem_begin_done, j) != 0)
        idem_job_free(j);
}

static void limit_done(void *arg, const struct aos_rl_result *r)
{
    struct aos_http_request *req = arg;
    struct aos_app *app = req->app;
    if (atomic_load(&app->stopped)) {
        aos_http_respond_error(req, 503, "shutting_down", "the server is shutting down");
        return;
    }
    struct aos_rl_header headers[AOS_RL_MAX_HEADERS];
    size_t n = aos_ratelimit_headers(r, headers, AOS_RL_MAX_HEADERS);
    for (size_t i = 0; i < n; i++)
        aos_http_add_header(req, headers[i].name, headers[i].value);
    if (r->unavailable) {
        aos_http_respond_error(req, 503, "rate_limit_unavailable",
                               "the shared rate limiter is unavailable; retry shortly");
        return;
    }
    if (!r->allowed) {
        aos_http_respond_error(req, 429, "rate_limited", "too many %s requests: %d per minute, bursts of %d",
                               r->policy_name, r->limit, r->burst);
        return;
    }
    gateway_idempotency(req);
}

/* Token buckets per client address and, once known, per principal: both
 * must have a token (a botnet of one user, or many users behind one
 * address, are each held).  Only the API is limited: probes and metrics
 * scrapers are not. */
static void gateway_limit(struct aos_http_request *req)
{
    struct aos_app *app = req->app;
    if (app->ratelimit == NULL || strncmp(req->path, "/api/", 5) != 0 ||
        aos_ratelimit_is_exempt(app->ratelimit, req->path)) {
        gateway_idempotency(req);
        return;
    }
    char ip_key[80], principal_key[160];
    const char *keys[2];
    size_t n = 0;
    size_t len = 0;
    str_append(ip_key, sizeof ip_key, &len, "ip:");
    str_append(ip_key, sizeof ip_key, &len, req->peer_ip);
    keys[n++] = ip_key;
    if (req->authenticated) {
        len = 0;
        str_append(principal_key, sizeof principal_key, &len, "p:");
        str_append(principal_key, sizeof principal_key, &len, req->principal.tenant_id);
        str_append(principal_key, sizeof principal_key, &len, ":");
        str_append(principal_key, sizeof principal_key, &len, req->principal.subject);
        keys[n++] = principal_key;
    }
    bool read = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    aos_ratelimit_check(app->ratelimit, req->loop, read ? AOS_RL_READ : AOS_RL_WRITE,
                        req->authenticated ? req->principal.tenant_id : NULL, keys, n, limit_done, req);
}

/* Principal known: tenant checks, role check, then the rate limit. */
static void guard_finish(struct aos_http_request *req)
{
    struct aos_runtime *rt = aos_runtime_acquire();
    const struct aos_conf_tenant *t = rt != NULL ? aos_conf_tenant_find(rt->conf, req->principal.tenant_id) : NULL;
    bool tenant_known = t != NULL && strcasecmp(t->id, req->principal.tenant_id) == 0;
    aos_runtime_release(rt);
    if (!tenant_known) {
        /* Config is the source of truth for tenants: a removed tenant's
         * tokens and keys stop working at the next reload. */
        unauthorized(req, "invalid_credentials", "the credentials' tenant no longer exists");
        return;
    }
    const char *hdr = aos_http_header(req, "X-Tenant-ID");
    if (hdr != NULL) {
        if (!aos_api_uuid_valid(hdr)) {
            aos_http_respond_error(req, 400, "invalid_tenant_id", "X-Tenant-ID must be a UUID");
            return;
        }
        if (strcasecmp(hdr, req->principal.tenant_id) != 0) {
            aos_http_respond_error(req, 403, "tenant_mismatch",
                                   "X-Tenant-ID names another tenant than the credentials");
            return;
        }
    }
    int need = req->match.route->role;
    if (need > AOS_ROLE_NONE && aos_auth_role_rank(req->principal.role) < need) {
        aos_http_respond_error(req, 403, "forbidden", "this operation requires the %s role",
                               route_role_names[need]);
        return;
    }
    req->authenticated = true;
    gateway_limit(req);
}

struct key_check {
    struct aos_http_request *req;
    char *key;
    size_t len;
    int result;
    char err[256];
};

static void key_check_work(void *arg)
{
    struct key_check *k = arg;
    struct aos_runtime *rt = aos_runtime_acquire();
    if (rt == NULL) {
        k->result = AOS_AUTH_ERROR;
        return;
    }
    struct aos_credentials cred = {.size = sizeof cred, .kind = AOS_CRED_API_KEY, .secret = k->key,
                                   .secret_len = k->len};
    k->result = aos_auth_authenticate(rt, &cred, &k->req->principal, k->err, sizeof k->err);
    aos_runtime_release(rt);
}

static void key_check_done(void *arg)
{
    struct key_check *k = arg;
    struct aos_http_request *req = k->req;
    int result = k->result;
    if (result == AOS_AUTH_ERROR)
        aos_warn("API key check failed", "error", k->err, "request_id", req->request_id, NULL);
    explicit_bzero(k->key, k->len);
    free(k->key);
    free(k);
    if (result == AOS_AUTH_ALLOW) {
        guard_finish(req);
    } else if (result == AOS_AUTH_DENY) {
        unauthorized(req, "invalid_credentials", "unknown, revoked or expired API key");
    } else {
        aos_http_add_header(req, "Retry-After", "2");
        aos_http_respond_error(req, 503, "auth_unavailable", "cannot check credentials right now; retry shortly");
    }
}

static void guard_api_key(struct aos_http_request *req, const char *key, size_t len)
{
    struct aos_app *app = req->app;
    struct key_check *k = calloc(1, sizeof *k);
    if (k == NULL || (k->key = malloc(len + 1)) == NULL) {
        free(k);
        aos_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    memcpy(k->key, key, len);
    k->key[len] = '\0';
    k->len = len;
    k->req = req;
    if (aos_http_defer(req, app->pool, key_check_work, key_check_done, k) != 0) {
        explicit_bzero(k->key, len);
        free(k->key);
        free(k);
    }
}

static void guard_jwt(struct aos_http_request *req, const char *token, size_t len)
{
    struct aos_runtime *rt = aos_runtime_acquire();
    struct aos_jwt_claims claims;
    int64_t now = (int64_t)time(NULL);
    int r = AOS_JWT_MALFORMED;

    if (rt != NULL) {
        if (aos_token_cache_get(token, len, rt->generation, now, JWT_LEEWAY_SECONDS, &claims)) {
            r = AOS_JWT_OK;
        } else {
            r = aos_jwt_verify(&rt->jwt, token, len, now, JWT_LEEWAY_SECONDS, &claims);
            if (r == AOS_JWT_OK)
                aos_token_cache_put(token, len, rt->generation, &claims);
        }
    }
    aos_runtime_release(rt);
    if (r != AOS_JWT_OK) {
        unauthorized(req, "invalid_credentials",
                     r == AOS_JWT_EXPIRED ? "the access token has expired" : "invalid access token");
        return;
    }
    memset(&req->principal, 0, sizeof req->principal);
    req->principal.size = sizeof req->principal;
    str_copy(req->principal.tenant_id, sizeof req->principal.tenant_id, claims.tid);
    str_copy(req->principal.subject, sizeof req->principal.subject, claims.sub);
    str_copy(req->principal.role, sizeof req->principal.role, claims.role);
    guard_finish(req);
}

/* A stream token from ?token= (routes flagged AOS_ROUTE_STREAM_TOKEN
 * only): verified under its own derived key, so an access token is
 * refused here just as a stream token is refused as a bearer token. */
static void guard_stream_token(struct aos_http_request *req, const char *token, size_t len)
{
    struct aos_runtime *rt = aos_runtime_acquire();
    struct aos_jwt_claims claims;
    int r = rt != NULL ? aos_stream_token_verify(&rt->jwt, token, len, (int64_t)time(NULL),
                                                 STREAM_TOKEN_LEEWAY_SECONDS, &claims)
                       : AOS_JWT_MALFORMED;
    aos_runtime_release(rt);
    if (r != AOS_JWT_OK) {
        unauthorized(req, "invalid_credentials",
                     r == AOS_JWT_EXPIRED ? "the stream token has expired" : "invalid stream token");
        return;
    }
    memset(&req->principal, 0, sizeof req->principal);
    req->principal.size = sizeof req->principal;
    str_copy(req->principal.tenant_id, sizeof req->principal.tenant_id, claims.tid);
    str_copy(req->principal.subject, sizeof req->principal.subject, claims.sub);
    str_copy(req->principal.role, sizeof req->principal.role, claims.role);
    guard_finish(req);
}

void aos_api_guard(struct aos_http_request *req)
{
    const struct aos_route *route = req->match.route;
    if (route->role == AOS_ROLE_NONE && !(route->flags & AOS_ROUTE_AUTH_OPTIONAL)) {
        /* Public route (login, probes): credentials sent along are not
         * checked, only the address is rate-limited. */
        gateway_limit(req);
        return;
    }
    /* Two credentials (or two tenants) in one request: which one a proxy
     * and we would each pick is anybody's guess, so refuse. */
    static const char *const single[] = {"Authorization", "X-API-Key", "X-Tenant-ID"};
    for (size_t i = 0; i < sizeof single / sizeof single[0]; i++) {
        if (aos_http_header_count(req, single[i]) > 1) {
            aos_http_respond_error(req, 400, "duplicate_header", "send at most one %s header", single[i]);
            return;
        }
    }
    const char *authz = aos_http_header(req, "Authorization");
    const char *apikey = aos_http_header(req, "X-API-Key");
    if (route->flags & AOS_ROUTE_STREAM_TOKEN) {
        char token[AOS_JWT_MAX_TOKEN + 1];
        int t = aos_api_query_get(req->query, "token", token, sizeof token);
        if (t != 0) {
            if (t < 0)
                unauthorized(req, "invalid_credentials", "send one stream token of at most 4096 bytes");
            else if (authz != NULL || apikey != NULL)
                aos_http_respond_error(req, 400, "duplicate_header",
                                       "send either a stream token or Authorization/X-API-Key, not both");
            else
                guard_stream_token(req, token, strlen(token));
            explicit_bzero(token, sizeof token);
            return;
        }
    }
    if (authz != NULL && apikey != NULL) {
        aos_http_respond_error(req, 400, "duplicate_header", "send either Authorization or X-API-Key, not both");
        return;
    }
    if (authz == NULL && apikey == NULL) {
        if (route->flags & AOS_ROUTE_AUTH_OPTIONAL)
            gateway_limit(req);
        else
            unauthorized(req, "missing_credentials", "this operation needs a bearer token or an API key");
        return;
    }
    if (apikey != NULL) {
        guard_api_key(req, apikey, strlen(apikey));
        return;
    }
    if (strncasecmp(authz, "Bearer ", 7) != 0) {
        unauthorized(req, "invalid_credentials", "use 'Authorization: Bearer <token or API key>'");
        return;
    }
    const char *token = authz + 7;
    while (*token == ' ')
        token++;
    size_t len = strlen(token);
    if (len > AOS_JWT_MAX_TOKEN) {
        unauthorized(req, "invalid_credentials", "credentials too long");
        return;
    }
    /* API keys travel as bearer tokens too; their shape is unmistakable. */
    if (strncmp(token, "aos_", 4) == 0)
        guard_api_key(req, token, len);
    else
        guard_jwt(req, token, len);
}
