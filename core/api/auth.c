/*
 * /api/v1/auth: register, login, me, api-keys.
 *
 * Every handler validates its input on the loop, then does the blocking
 * part (Argon2id, store) on the worker pool and answers from the
 * completion.  The tenant always comes from the principal (or, for login
 * and open registration, from the configuration), never from input that
 * could name someone else's tenant.
 */
#include "config.h"

#include "api/api.h"

#include "auth/apikey.h"
#include "auth/backends.h"
#include "auth/jwt.h"
#include "auth/password.h"
#include "auth/token_cache.h"
#include "conf.h"
#include "http/http.h"
#include "json.h"
#include "log.h"
#include "runtime.h"
#include "store/ops.h"
#include "store/store.h"
#include "threadpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define EMAIL_MAX 254
#define NAME_MAX_LEN 100
#define EXPIRES_DAYS_MAX 3650

/* A job carried from a handler to the pool and back.  Strings are copies:
 * the JSON body is freed before the job runs. */
struct auth_job {
    struct aos_http_request *req;
    struct aos_app *app;
    int rc;               /* AOS_DB_* or AOS_AUTH_* depending on the job */
    char err[512];
    char email[EMAIL_MAX + 1];
    char *password;       /* wiped and freed */
    size_t password_len;
    char tenant_id[AOS_ID_MAX];
    char role[16];
    char name[NAME_MAX_LEN + 1];
    char id[AOS_ID_LEN];
    int64_t expires_at;
    bool gate_held;
    /* results */
    char *hash;           /* Argon2id PHC string of a new password */
    char *token;
    int ttl;
    char key[AOS_APIKEY_LEN + 1];
    char prefix[AOS_APIKEY_PREFIX_LEN + 1];
    struct aos_user user;
    struct aos_api_key *keys;
    size_t nkeys;
    struct aos_principal principal;
};

static struct auth_job *job_new(struct aos_http_request *req)
{
    struct auth_job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        aos_http_respond_error(req, 500, "internal", "out of memory");
        return NULL;
    }
    j->req = req;
    j->app = req->app;
    return j;
}

static void job_free(struct auth_job *j)
{
    if (j->password != NULL) {
        explicit_bzero(j->password, j->password_len);
        free(j->password);
    }
    if (j->gate_held)
        aos_gate_leave(j->app->login_gate);
    if (j->token != NULL) {
        explicit_bzero(j->token, strlen(j->token));
        free(j->token);
    }
    free(j->hash);
    explicit_bzero(j->key, sizeof j->key);
    aos_user_clear(&j->user);
    aos_api_keys_free(j->keys, j->nkeys);
    free(j);
}

static void defer_on(struct aos_pool *pool, struct auth_job *j, void (*work)(void *), void (*done)(void *))
{
    if (aos_http_defer(j->req, pool, work, done, j) != 0)
        job_free(j);
}

static void defer(struct auth_job *j, void (*work)(void *), void (*done)(void *))
{
    defer_on(j->app->pool, j, work, done);
}

/* Takes the body's "password" as a private copy. */
static int take_password(struct auth_job *j, struct json_object *body, char *err, size_t errlen)
{
    const char *pw = NULL;
    int r = aos_json_get_string(body, "password", 1, 4096, &pw, err, errlen);
    if (r != 0)
        return -1;
    j->password_len = strlen(pw);
    j->password = malloc(j->password_len + 1);
    if (j->password == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(j->password, pw, j->password_len + 1);
    return 0;
}

static int take_email(struct auth_job *j, struct json_object *body, char *err, size_t errlen)
{
    const char *email = NULL;
    if (aos_json_get_string(body, "email", 1, EMAIL_MAX, &email, err, errlen) != 0)
        return -1;
    return aos_email_normalize(email, j->email, sizeof j->email, err, errlen);
}

/* Resolves a tenant named by id or name among the configured tenants. */
static bool resolve_tenant(const char *id_or_name, char out[AOS_ID_MAX])
{
    struct aos_runtime *rt = aos_runtime_acquire();
    const struct aos_conf_tenant *t = rt != NULL ? aos_conf_tenant_find(rt->conf, id_or_name) : NULL;
    if (t != NULL)
        snprintf(out, AOS_ID_MAX, "%s", t->id);
    aos_runtime_release(rt);
    return t != NULL;
}

static void respond_store_error(struct auth_job *j)
{
    aos_api_store_error(j->req, j->rc, j->err);
}

/* ------------------------------------------------------------------ login */

static void login_work(void *arg)
{
    struct auth_job *j = arg;
    struct aos_runtime *rt = aos_runtime_acquire();
    if (rt == NULL) {
        j->rc = AOS_AUTH_ERROR;
        return;
    }
    struct aos_credentials cred = {
        .size = sizeof cred,
        .kind = AOS_CRED_PASSWORD,
        .identifier = j->email,
        .secret = j->password,
        .secret_len = j->password_len,
        .tenant_id = j->tenant_id[0] != '\0' ? j->tenant_id : NULL,
    };
    j->rc = aos_auth_authenticate(rt, &cred, &j->principal, j->err, sizeof j->err);
    if (j->rc == AOS_AUTH_ALLOW) {
        j->ttl = rt->conf->auth.token_ttl;
        j->token = aos_jwt_issue(&rt->jwt, j->principal.subject, j->principal.tenant_id, j->principal.role, j->ttl,
                                 NULL, j->err, sizeof j->err);
        if (j->token == NULL)
            j->rc = AOS_AUTH_ERROR;
    }
    aos_runtime_release(rt);
}

static void login_done(void *arg)
{
    struct auth_job *j = arg;
    struct aos_http_request *req = j->req;
    if (j->rc == AOS_AUTH_ALLOW) {
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "access_token", json_object_new_string(j->token));
        json_object_object_add(o, "token_type", json_object_new_string("bearer"));
        json_object_object_add(o, "expires_in", json_object_new_int(j->ttl));
        json_object_object_add(o, "tenant_id", json_object_new_string(j->principal.tenant_id));
        json_object_object_add(o, "role", json_object_new_string(j->principal.role));
        aos_http_add_header(req, "Cache-Control", "no-store");
        aos_http_respond_json(req, 200, o);
    } else if (j->rc == AOS_AUTH_DENY) {
        aos_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"aosd\"");
        aos_http_respond_error(req, 401, "invalid_credentials", "invalid e-mail or password");
    } else if (strstr(j->err, "several tenants") != NULL) {
        aos_http_respond_error(req, 409, "tenant_required",
                               "this e-mail is registered in several tenants: send \"tenant\" (name or id)");
    } else {
        aos_warn("login failed", "error", j->err, "request_id", req->request_id, NULL);
        aos_http_add_header(req, "Retry-After", "2");
        aos_http_respond_error(req, 503, "auth_unavailable", "cannot check credentials right now; retry shortly");
    }
    job_free(j);
}

static void handle_login(struct aos_http_request *req, void *ctx)
{
    struct aos_app *app = ctx;
    struct json_object *body = aos_http_body_json(req);
    if (body == NULL)
        return;
    char err[256];
    struct auth_job *j = job_new(req);
    if (j == NULL)
        goto out;
    if (take_email(j, body, err, sizeof err) != 0 || take_password(j, body, err, sizeof err) != 0) {
        aos_http_respond_error(req, 422, "invalid_field", "%s", err);
        job_free(j);
        goto out;
    }
    const char *tenant = NULL;
    if (aos_json_get_string(body, "tenant", 1, 64, &tenant, err, sizeof err) < 0) {
        aos_http_respond_error(req, 422, "invalid_field", "%s", err);
        job_free(j);
        goto out;
    }
    if (tenant == NULL)
        tenant = aos_http_header(req, "X-Tenant-ID");
    if (tenant != NULL && !resolve_tenant(tenant, j->tenant_id)) {
        /* Same answer as a wrong password: don't reveal which tenants exist. */
        aos_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"aosd\"");
        aos_http_respond_error(req, 401, "invalid_credentials", "invalid e-mail or password");
        job_free(j);
        goto out;
    }
    /* Argon2id costs ~20 ms of CPU and 19 MiB: bound how many run at once
     * so a login flood leaves workers for everything else. */
    if (!aos_gate_try_enter(app->login_gate)) {
        aos_http_add_header(req, "Retry-After", "1");
        aos_http_respond_error(req, 503, "too_many_logins", "too many logins in progress; retry shortly");
        job_free(j);
        goto out;
    }
    j->gate_held = true;
    defer_on(app->hash_pool, j, login_work, login_done);
out:
    json_object_put(body);
}

/* --------------------------------------------------------------- register */

static int register_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct auth_job *j = arg;
    return aos_store_user_create(tx, j->tenant_id, j->email, j->hash, j->role, j->id, err, errlen);
}

static void register_work(void *arg)
{
    struct auth_job *j = arg;
    struct aos_runtime *rt = aos_runtime_acquire();
    struct aos_argon2_params params = {
        .t_cost = (uint32_t)rt->conf->auth.argon2.t_cost,
        .m_cost_kib = (uint32_t)rt->conf->auth.argon2.m_cost_kib,
        .parallelism = (uint32_t)rt->conf->auth.argon2.parallelism,
    };
    aos_runtime_release(rt);
    if (aos_password_hash(&params, j->password, j->password_len, &j->hash, j->err, sizeof j->err) != 0) {
        j->rc = AOS_DB_ERROR;
        return;
    }
    j->rc = aos_store_transact(j->app->store, true, register_tx, j, j->err, sizeof j->err);
}

static void register_done(void *arg)
{
    struct auth_job *j = arg;
    if (j->rc == AOS_DB_OK) {
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_string(j->id));
        json_object_object_add(o, "email", json_object_new_string(j->email));
        json_object_object_add(o, "tenant_id", json_object_new_string(j->tenant_id));
        json_object_object_add(o, "role", json_object_new_string(j->role));
        aos_http_respond_json(j->req, 201, o);
    } else if (j->rc == AOS_DB_CONSTRAINT) {
        aos_http_respond_error(j->req, 409, "email_taken", "this e-mail is already registered in the tenant");
    } else {
        respond_store_error(j);
    }
    job_free(j);
}

static void handle_register(struct aos_http_request *req, void *ctx)
{
    struct aos_app *app = ctx;
    char err[256];
    char policy[16], reg_tenant[64];
    int min_len, max_len;
    struct aos_runtime *rt = aos_runtime_acquire();
    snprintf(policy, sizeof policy, "%s", rt->conf->auth.registration);
    snprintf(reg_tenant, sizeof reg_tenant, "%s", rt->conf->auth.registration_tenant);
    min_len = rt->conf->auth.password_min_length;
    max_len = rt->conf->auth.password_max_length;
    aos_runtime_release(rt);

    if (strcmp(policy, "closed") == 0) {
        aos_http_respond_error(req, 403, "registration_closed",
                               "registration is closed (auth.registration); ask an administrator");
        return;
    }
    bool by_admin = strcmp(policy, "admin-only") == 0;
    if (by_admin && !req->authenticated) {
        aos_http_add_header(req, "WWW-Authenticate", "Bearer realm=\"aosd\"");
        aos_http_respond_error(req, 401, "missing_credentials", "registration needs an administrator's credentials");
        return;
    }
    if (by_admin && aos_auth_role_rank(req->principal.role) < aos_auth_role_rank("admin")) {
        aos_http_respond_error(req, 403, "forbidden", "registration needs the admin role");
        return;
    }
    struct json_object *body = aos_http_body_json(req);
    if (body == NULL)
        return;
    struct auth_job *j = job_new(req);
    if (j == NULL)
        goto out;
    const char *role = "user";
    if (take_email(j, body, err, sizeof err) != 0 || take_password(j, body, err, sizeof err) != 0 ||
        aos_password_policy_check(j->password, j->password_len, min_len, max_len, err, sizeof err) != 0 ||
        aos_json_get_string(body, "role", 1, 15, &role, err, sizeof err) < 0) {
        aos_http_respond_error(req, 422, "invalid_field", "%s", err);
        job_free(j);
        goto out;
    }
    if (aos_auth_role_rank(role) == 0 || (!by_admin && strcmp(role, "user") != 0)) {
        aos_http_respond_error(req, 422, "invalid_field",
                               by_admin ? "role must be admin, approver or user"
                                        : "self-registration creates users with the role user only");
        job_free(j);
        goto out;
    }
    snprintf(j->role, sizeof j->role, "%s", role);
    if (by_admin) {
        snprintf(j->tenant_id, sizeof j->tenant_id, "%s", req->principal.tenant_id);
    } else if (!resolve_tenant(reg_tenant, j->tenant_id)) {
        aos_http_respond_error(req, 500, "internal", "auth.registration_tenant names no configured tenant");
        job_free(j);
        goto out;
    }
    if (!aos_gate_try_enter(app->login_gate)) {
        aos_http_add_header(req, "Retry-After", "1");
        aos_http_respond_error(req, 503, "too_many_logins", "too many password operations in progress");
        job_free(j);
        goto out;
    }
    j->gate_held = true;
    defer_on(app->hash_pool, j, register_work, register_done);
out:
    json_object_put(body);
}

/* --------------------------------------------------------------------- me */

static bool principal_is_user(const struct aos_principal *p) { return strncmp(p->subject, "key:", 4) != 0; }

static int me_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct auth_job *j = arg;
    return aos_store_user_get(tx, j->principal.tenant_id, j->principal.subject, &j->user, err, errlen);
}

static void me_work(void *arg)
{
    struct auth_job *j = arg;
    j->rc = aos_store_transact(j->app->store, false, me_tx, j, j->err, sizeof j->err);
}

/* The /auth/me cache key: what the answer depends on besides the store's
 * e-mail and the tenant's configured name (bound to the generation).
 * Returns the length, or 0 if it does not fit (then nothing is cached). */
static size_t me_key(const struct aos_principal *p, char out[AOS_USER_CACHE_MAX_KEY])
{
    const char *parts[] = {p->tenant_id, p->subject, p->role};
    size_t n = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t len = strlen(parts[i]);
        if (n + len + 1 > AOS_USER_CACHE_MAX_KEY)
            return 0;
        memcpy(out + n, parts[i], len);
        n += len;
        out[n++] = '\n';
    }
    return n;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void me_done(void *arg)
{
    struct auth_job *j = arg;
    const struct aos_principal *p = &j->principal;
    if (j->rc != AOS_DB_OK && j->rc != AOS_DB_NOT_FOUND) {
        respond_store_error(j);
        job_free(j);
        return;
    }
    if (principal_is_user(p) && j->rc == AOS_DB_NOT_FOUND) {
        /* The token outlived its user. */
        aos_http_respond_error(j->req, 401, "invalid_credentials", "the user no longer exists");
        job_free(j);
        return;
    }
    struct json_object *o = json_object_new_object();
    char tenant_name[64] = "";
    uint64_t generation = 0;
    struct aos_runtime *rt = aos_runtime_acquire();
    const struct aos_conf_tenant *t = rt != NULL ? aos_conf_tenant_find(rt->conf, p->tenant_id) : NULL;
    if (t != NULL)
        snprintf(tenant_name, sizeof tenant_name, "%s", t->name);
    if (rt != NULL)
        generation = rt->generation;
    aos_runtime_release(rt);
    json_object_object_add(o, "subject", json_object_new_string(p->subject));
    json_object_object_add(o, "kind", json_object_new_string(principal_is_user(p) ? "user" : "api_key"));
    json_object_object_add(o, "tenant_id", json_object_new_string(p->tenant_id));
    json_object_object_add(o, "tenant", json_object_new_string(tenant_name));
    json_object_object_add(o, "role", json_object_new_string(p->role));
    if (principal_is_user(p) && j->user.email != NULL)
        json_object_object_add(o, "email", json_object_new_string(j->user.email));
    size_t len = 0;
    const char *text = aos_json_text(o, &len);
    if (text == NULL) {
        aos_http_respond_error(j->req, 500, "internal", "out of memory");
    } else {
        char key[AOS_USER_CACHE_MAX_KEY];
        size_t key_len = me_key(p, key);
        if (key_len > 0)
            aos_user_cache_put(key, key_len, generation, mono_ms(), text, len);
        aos_http_respond(j->req, 200, "application/json", text, len);
    }
    json_object_put(o);
    job_free(j);
}

/* Answered on the loop from the per-loop cache when it can (the common
 * case: no pool hop); otherwise the e-mail comes from the store on the
 * pool, and the rendered answer is cached for AOS_USER_CACHE_TTL_MS
 * (token_cache.h says what that means for a deleted user). */
static void handle_me(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    char key[AOS_USER_CACHE_MAX_KEY];
    size_t key_len = me_key(&req->principal, key);
    if (key_len > 0) {
        struct aos_runtime *rt = aos_runtime_acquire();
        uint64_t generation = rt != NULL ? rt->generation : 0;
        aos_runtime_release(rt);
        const char *body;
        size_t len;
        if (aos_user_cache_get(key, key_len, generation, mono_ms(), &body, &len)) {
            aos_http_respond(req, 200, "application/json", body, len);
            return;
        }
    }
    struct auth_job *j = job_new(req);
    if (j == NULL)
        return;
    j->principal = req->principal;
    if (!principal_is_user(&req->principal)) {
        j->rc = AOS_DB_NOT_FOUND;
        me_done(j);
        return;
    }
    defer(j, me_work, me_done);
}

/* --------------------------------------------------------------- api-keys */

static int key_create_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct auth_job *j = arg;
    char hash[AOS_APIKEY_HASH_LEN + 1];
    if (aos_apikey_generate(j->key, j->prefix, hash) != 0) {
        snprintf(err, errlen, "no randomness for a new API key");
        return AOS_DB_ERROR;
    }
    struct aos_api_key_spec spec = {
        .user_id = principal_is_user(&j->principal) ? j->principal.subject : NULL,
        /* Unnamed keys are labelled by their public prefix. */
        .name = j->name[0] != '\0' ? j->name : j->prefix,
        .prefix = j->prefix,
        .secret_hash = hash,
        .role = j->role,
        .expires_at = j->expires_at,
    };
    return aos_store_apikey_create(tx, j->principal.tenant_id, &spec, j->id, err, errlen);
}

static void key_create_work(void *arg)
{
    struct auth_job *j = arg;
    j->rc = aos_store_transact(j->app->store, true, key_create_tx, j, j->err, sizeof j->err);
}

static void key_create_done(void *arg)
{
    struct auth_job *j = arg;
    if (j->rc != AOS_DB_OK) {
        respond_store_error(j);
        job_free(j);
        return;
    }
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(j->id));
    json_object_object_add(o, "key", json_object_new_string(j->key));
    json_object_object_add(o, "prefix", json_object_new_string(j->prefix));
    json_object_object_add(o, "role", json_object_new_string(j->role));
    if (j->name[0] != '\0')
        json_object_object_add(o, "name", json_object_new_string(j->name));
    json_object_object_add(o, "expires_at", j->expires_at ? json_object_new_int64(j->expires_at) : NULL);
    aos_http_add_header(j->req, "Cache-Control", "no-store");
    aos_http_respond_json(j->req, 201, o);
    job_free(j);
}

static void handle_key_create(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    struct json_object *body = aos_http_body_json(req);
    if (body == NULL)
        return;
    char err[256];
    const char *role = "user", *name = NULL;
    int64_t days = 0;
    struct auth_job *j = job_new(req);
    if (j == NULL)
        goto out;
    if (aos_json_get_string(body, "role", 1, 15, &role, err, sizeof err) < 0 ||
        aos_json_get_string(body, "name", 1, NAME_MAX_LEN, &name, err, sizeof err) < 0 ||
        aos_json_get_int(body, "expires_days", 1, EXPIRES_DAYS_MAX, &days, err, sizeof err) < 0) {
        aos_http_respond_error(req, 422, "invalid_field", "%s", err);
        job_free(j);
        goto out;
    }
    if (aos_auth_role_rank(role) == 0) {
        aos_http_respond_error(req, 422, "invalid_field", "role must be admin, approver or user");
        job_free(j);
        goto out;
    }
    /* A key never carries more power than whoever made it. */
    if (aos_auth_role_rank(role) > aos_auth_role_rank(req->principal.role)) {
        aos_http_respond_error(req, 403, "forbidden", "a key cannot have a higher role than its creator");
        job_free(j);
        goto out;
    }
    j->principal = req->principal;
    snprintf(j->role, sizeof j->role, "%s", role);
    if (name != NULL)
        snprintf(j->name, sizeof j->name, "%s", name);
    j->expires_at = days > 0 ? aos_store_now_ms() + days * 86400000LL : 0;
    defer(j, key_create_work, key_create_done);
out:
    json_object_put(body);
}

static int key_list_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct auth_job *j = arg;
    return aos_store_apikey_list(tx, j->principal.tenant_id, NULL, false, &j->keys, &j->nkeys, err, errlen);
}

static void key_list_work(void *arg)
{
    struct auth_job *j = arg;
    j->rc = aos_store_transact(j->app->store, false, key_list_tx, j, j->err, sizeof j->err);
}

static struct json_object *ms_or_null(int64_t ms) { return ms != 0 ? json_object_new_int64(ms) : NULL; }

static void key_list_done(void *arg)
{
    struct auth_job *j = arg;
    if (j->rc != AOS_DB_OK) {
        respond_store_error(j);
        job_free(j);
        return;
    }
    struct json_object *items = json_object_new_array();
    for (size_t i = 0; i < j->nkeys; i++) {
        const struct aos_api_key *k = &j->keys[i];
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_string(k->id));
        json_object_object_add(o, "prefix", json_object_new_string(k->prefix != NULL ? k->prefix : ""));
        json_object_object_add(o, "name", k->name != NULL ? json_object_new_string(k->name) : NULL);
        json_object_object_add(o, "role", json_object_new_string(k->role));
        json_object_object_add(o, "user_id", k->user_id[0] ? json_object_new_string(k->user_id) : NULL);
        json_object_object_add(o, "created_at", json_object_new_int64(k->created_at));
        json_object_object_add(o, "expires_at", ms_or_null(k->expires_at));
        json_object_object_add(o, "last_used_at", ms_or_null(k->last_used_at));
        json_object_array_add(items, o);
    }
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "items", items);
    json_object_object_add(o, "next_cursor", NULL);
    aos_http_respond_json(j->req, 200, o);
    job_free(j);
}

static void handle_key_list(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    struct auth_job *j = job_new(req);
    if (j == NULL)
        return;
    j->principal = req->principal;
    defer(j, key_list_work, key_list_done);
}

static int key_revoke_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct auth_job *j = arg;
    return aos_store_apikey_revoke(tx, j->principal.tenant_id, j->id, NULL, err, errlen);
}

static void key_revoke_work(void *arg)
{
    struct auth_job *j = arg;
    j->rc = aos_store_transact(j->app->store, true, key_revoke_tx, j, j->err, sizeof j->err);
}

static void key_revoke_done(void *arg)
{
    struct auth_job *j = arg;
    if (j->rc == AOS_DB_OK)
        aos_http_respond(j->req, 204, NULL, NULL, 0);
    else
        respond_store_error(j);
    job_free(j);
}

static void handle_key_revoke(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    const char *id = aos_http_param(req, "id");
    if (id == NULL || !aos_api_uuid_valid(id)) {
        aos_http_respond_error(req, 404, "not_found", "no such API key");
        return;
    }
    struct auth_job *j = job_new(req);
    if (j == NULL)
        return;
    j->principal = req->principal;
    snprintf(j->id, sizeof j->id, "%s", id);
    defer(j, key_revoke_work, key_revoke_done);
}

static const struct aos_route auth_routes[] = {
    {"POST", "/api/v1/auth/register", handle_register, AOS_ROLE_NONE, AOS_ROUTE_AUTH_OPTIONAL},
    {"POST", "/api/v1/auth/login", handle_login, AOS_ROLE_NONE, 0},
    {"GET", "/api/v1/auth/me", handle_me, AOS_ROLE_USER, 0},
    {"POST", "/api/v1/auth/api-keys", handle_key_create, AOS_ROLE_ADMIN, AOS_ROUTE_NO_IDEMPOTENCY},
    {"GET", "/api/v1/auth/api-keys", handle_key_list, AOS_ROLE_ADMIN, 0},
    {"DELETE", "/api/v1/auth/api-keys/{id}", handle_key_revoke, AOS_ROLE_ADMIN, 0},
};

int aos_api_auth_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen)
{
    return aos_router_add(router, auth_routes, sizeof auth_routes / sizeof auth_routes[0], app, err, errlen);
}
