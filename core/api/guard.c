/*
 * The gateway chain, in the order a request meets it:
 *
 *   request id, limits, timeouts   core/http/server.c (before routing)
 *   API journal                    server observer -> core/gateway/journal.c (after the response)
 *   authentication                 aos_api_guard: JWT on the loop, API keys on the pool
 *   tenant                         guard_finish: tenant still configured, X-Tenant-ID must match
 *   role                           guard_finish: the route's declared role
 *   rate limit                     gateway_limit: per client IP and per principal, /api/ only
 *   handler                        aos_http_call_handler
 *
 * Refusals (each a JSON error):
 *   no credentials                         401 missing_credentials
 *   bad/expired token, unknown/revoked key 401 invalid_credentials
 *   tenant no longer configured            401 invalid_credentials
 *   X-Tenant-ID not a UUID                 400 invalid_tenant_id
 *   X-Tenant-ID of another tenant          403 tenant_mismatch
 *   role below the route's                 403 forbidden
 *   over the rate limit                    429 rate_limited (+ Retry-After)
 *   shared limiter down, redis_fail=closed 503 rate_limit_unavailable
 */
#include "config.h"

#include "api/api.h"

#include "auth/backends.h"
#include "auth/jwt.h"
#include "conf.h"
#include "gateway/ratelimit.h"
#include "http/http.h"
#include "log.h"
#include "runtime.h"
#include "threadpool.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define JWT_LEEWAY_SECONDS 30

static const char *const route_role_names[] = {"", "user", "approver", "admin"};

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

static void limit_done(void *arg, const struct aos_rl_result *r)
{
    struct aos_http_request *req = arg;
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
    aos_http_call_handler(req);
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
        aos_http_call_handler(req);
        return;
    }
    char ip_key[80], principal_key[160];
    const char *keys[2];
    size_t n = 0;
    snprintf(ip_key, sizeof ip_key, "ip:%s", req->peer_ip);
    keys[n++] = ip_key;
    if (req->authenticated) {
        snprintf(principal_key, sizeof principal_key, "p:%s:%s", req->principal.tenant_id, req->principal.subject);
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
    int r = rt != NULL ? aos_jwt_verify(&rt->jwt, token, len, (int64_t)time(NULL), JWT_LEEWAY_SECONDS, &claims)
                       : AOS_JWT_MALFORMED;
    aos_runtime_release(rt);
    if (r != AOS_JWT_OK) {
        unauthorized(req, "invalid_credentials",
                     r == AOS_JWT_EXPIRED ? "the access token has expired" : "invalid access token");
        return;
    }
    memset(&req->principal, 0, sizeof req->principal);
    req->principal.size = sizeof req->principal;
    snprintf(req->principal.tenant_id, sizeof req->principal.tenant_id, "%s", claims.tid);
    snprintf(req->principal.subject, sizeof req->principal.subject, "%s", claims.sub);
    snprintf(req->principal.role, sizeof req->principal.role, "%s", claims.role);
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
    const char *authz = aos_http_header(req, "Authorization");
    const char *apikey = aos_http_header(req, "X-API-Key");
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
