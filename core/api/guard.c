/*
 * The auth guard: runs before the handler of every route that declares a
 * role.  Order of refusals (each a JSON error):
 *   no credentials                         401 missing_credentials
 *   bad/expired token, unknown/revoked key 401 invalid_credentials
 *   tenant no longer configured            401 invalid_credentials
 *   X-Tenant-ID not a UUID                 400 invalid_tenant_id
 *   X-Tenant-ID of another tenant          403 tenant_mismatch
 *   role below the route's                 403 forbidden
 * JWTs are verified on the loop (an HMAC: microseconds); API keys need a
 * store lookup, so their check runs on the worker pool.
 */
#include "config.h"

#include "api/api.h"

#include "auth/backends.h"
#include "auth/jwt.h"
#include "conf.h"
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

/* Principal known: tenant checks, role check, then the handler. */
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
    aos_http_call_handler(req);
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
    const char *authz = aos_http_header(req, "Authorization");
    const char *apikey = aos_http_header(req, "X-API-Key");
    if (authz == NULL && apikey == NULL) {
        if (req->match.route->flags & AOS_ROUTE_AUTH_OPTIONAL)
            aos_http_call_handler(req);
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
