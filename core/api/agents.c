#include "config.h"
/*
 * /api/v1/agents: a tenant's agents, each a configured instance of an
 * agent plugin.
 *
 *   GET    /api/v1/agents          user   page of live agents, OLDEST first
 *                                         (?limit=1..100, default 50; ?cursor=)
 *   POST   /api/v1/agents          admin  201 with the agent
 *   GET    /api/v1/agents/{id}     user
 *   PUT    /api/v1/agents/{id}     admin  replaces every writable field
 *   DELETE /api/v1/agents/{id}     admin  soft delete: 204, then 404
 *
 * Body of POST and PUT (PUT is a full replacement: an omitted optional
 * field goes back to its default):
 *   {"name": 1..100 characters, "plugin": "agent-echo", "config": {...},
 *    "autonomy": "observe"|"supervised"|"autonomous"|null (the tenant's),
 *    "approval_policy": {...},
 *    "budget": {"tokens_day", "tokens_month", "micro_usd_day",
 *               "micro_usd_month": integer >= 0 or null (none),
 *               "step_tokens", "step_micro_usd": the most one step may
 *               spend, reserved before it runs; integer >= 0 or null
 *               (the engine's default, engine.step_reserve_*)}}
 * Read-only fields of a response (id, created_at, ...) are ignored in a
 * body, so a client may PUT back what it GOT; any other unknown field is
 * 422, so that a typo is not silently dropped.
 *
 * The plugin must be loaded, of kind agent, and allowed for the tenant
 * (tenant `plugins`, absent = every enabled plugin): else 422
 * unknown_plugin / plugin_not_allowed.  The plugin's validate_config op
 * (which may block) runs on the pool; its refusal is 422 invalid_config.
 * The tenant comes from the principal only.
 */
#include "api/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "http/http.h"
#include "json.h"
#include "log.h"
#include "plugin.h"
#include "runtime.h"
#include "store/ops.h"
#include "store/store.h"
#include "threadpool.h"

#define LIMIT_DEFAULT 50
#define LIMIT_MAX 100
#define PLUGIN_NAME_MAX 64
#define BUDGET_MAX INT64_C(1000000000000000000) /* 10^18: far beyond any real budget, below INT64_MAX */

enum verdict {
    VERDICT_OK = 0,
    VERDICT_UNKNOWN_PLUGIN,
    VERDICT_NOT_ALLOWED,
    VERDICT_INVALID_CONFIG,
    VERDICT_NO_RUNTIME
};

/* A job carried from a handler to the pool and back.  Strings are copies:
 * the JSON body is freed before the job runs. */
struct agent_job {
    struct aos_http_request *req;
    struct aos_app *app;
    struct aos_api_caller caller;
    char id[AOS_ID_LEN];
    /* create / update input */
    struct aos_agent_spec spec; /* points into the copies below */
    char *name;
    char *plugin;
    char *config;
    char *autonomy;
    char *approval_policy;
    enum verdict verdict;
    char verr[256];
    /* list input */
    char cursor[AOS_CURSOR_LEN];
    size_t limit;
    /* results */
    int rc;
    char err[512];
    struct aos_agent agent;
    struct aos_agent *items;
    size_t n;
    char next[AOS_CURSOR_LEN];
};

static struct agent_job *job_new(struct aos_http_request *req)
{
    struct agent_job *j = aos_api_alloc(req, sizeof *j);

    if (j == NULL)
        return NULL;
    j->req = req;
    j->app = req->app;
    aos_api_caller_set(&j->caller, req);
    aos_agent_spec_init(&j->spec);
    return j;
}

static void job_free(struct agent_job *j)
{
    free(j->name);
    free(j->plugin);
    free(j->config);
    free(j->autonomy);
    free(j->approval_policy);
    aos_agent_clear(&j->agent);
    aos_agents_free(j->items, j->n);
    free(j);
}

static void defer(struct agent_job *j, void (*work)(void *), void (*done)(void *))
{
    if (aos_http_defer(j->req, j->app->pool, work, done, j) != 0)
        job_free(j);
}

/* Runs work, then done, on the agent the path names. */
static void defer_by_path(struct aos_http_request *req, void (*work)(void *), void (*done)(void *))
{
    const char *id = aos_api_path_uuid(req, "agent");
    struct agent_job *j;

    if (id == NULL || (j = job_new(req)) == NULL)
        return;
    snprintf(j->id, sizeof j->id, "%s", id);
    defer(j, work, done);
}

/* ------------------------------------------------------------ rendering */

/* A stored JSON object as a json-c object; {} (and a log line) if the
 * store ever hands back something else. */
static struct json_object *stored_object(const char *text, const char *what, const char *request_id)
{
    char err[128];
    struct json_object *o = NULL;

    if (text != NULL)
        o = aos_json_parse_object(text, strlen(text), 1024, err, sizeof err);
    if (o == NULL) {
        aos_err("stored agent JSON is not an object", "field", what, "request_id", request_id, NULL);
        o = json_object_new_object();
    }
    return o;
}

static struct json_object *budget_value(int64_t v) { return v >= 0 ? json_object_new_int64(v) : NULL; }

static struct json_object *agent_json(const struct aos_agent *a, const char *request_id)
{
    struct json_object *o = json_object_new_object();
    struct json_object *b = json_object_new_object();

    json_object_object_add(o, "id", json_object_new_string(a->id));
    json_object_object_add(o, "name", json_object_new_string(a->name != NULL ? a->name : ""));
    json_object_object_add(o, "plugin", json_object_new_string(a->plugin != NULL ? a->plugin : ""));
    json_object_object_add(o, "config", stored_object(a->config, "config", request_id));
    json_object_object_add(o, "autonomy", a->autonomy != NULL ? json_object_new_string(a->autonomy) : NULL);
    json_object_object_add(o, "approval_policy",
                           stored_object(a->approval_policy, "approval_policy", request_id));
    json_object_object_add(b, "tokens_day", budget_value(a->budget_tokens_day));
    json_object_object_add(b, "tokens_month", budget_value(a->budget_tokens_month));
    json_object_object_add(b, "micro_usd_day", budget_value(a->budget_micro_usd_day));
    json_object_object_add(b, "micro_usd_month", budget_value(a->budget_micro_usd_month));
    json_object_object_add(b, "step_tokens", budget_value(a->step_reserve_tokens));
    json_object_object_add(b, "step_micro_usd", budget_value(a->step_reserve_micro_usd));
    json_object_object_add(o, "budget", b);
    json_object_object_add(o, "created_by",
                           a->created_by != NULL ? json_object_new_string(a->created_by) : NULL);
    json_object_object_add(o, "created_at", json_object_new_int64(a->created_at));
    json_object_object_add(o, "updated_at", json_object_new_int64(a->updated_at));
    return o;
}

static void respond_agent(struct agent_job *j, int status)
{
    aos_http_add_header(j->req, "Cache-Control", "no-store");
    aos_http_respond_json(j->req, status, agent_json(&j->agent, j->req->request_id));
}

/* ------------------------------------------------------------ input */

static bool is_null(struct json_object *body, const char *key)
{
    struct json_object *v = NULL;

    return json_object_object_get_ex(body, key, &v) && v == NULL;
}

/* A copy of an optional JSON-object field as text; *out stays NULL when
 * the field is absent.  Returns 0, or -1 with err. */
static int take_object(struct json_object *body, const char *key, char **out, char *err, size_t errlen)
{
    struct json_object *v = NULL;
    const char *text;
    int r = aos_json_get_object(body, key, &v, err, errlen);

    if (r == 1)
        return 0;
    if (r < 0 || !json_object_is_type(v, json_type_object)) {
        snprintf(err, errlen, "field '%s' must be a JSON object", key);
        return -1;
    }
    text = aos_json_text(v, NULL);
    *out = strdup(text != NULL ? text : "{}");
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int take_string(struct json_object *body, const char *key, size_t maxlen, bool required, char **out,
                       char *err, size_t errlen)
{
    const char *s = NULL;
    int r = aos_json_get_string(body, key, 1, maxlen, &s, err, errlen);

    if (r < 0 || (r == 1 && required))
        return -1;
    if (r == 1)
        return 0;
    *out = strdup(s);
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static const char *const body_fields[] = {"name",     "plugin",          "config",
                                          "autonomy", "approval_policy", "budget"};
/* What a response carries and a body may echo back. */
static const char *const readonly_fields[] = {"id", "created_by", "created_at", "updated_at", "tenant_id"};

static int take_budget(struct json_object *body, struct aos_agent_spec *spec, char *err, size_t errlen)
{
    static const char *const keys[] = {"tokens_day",      "tokens_month", "micro_usd_day",
                                       "micro_usd_month", "step_tokens",  "step_micro_usd"};
    int64_t *dst[] = {&spec->budget_tokens_day,    &spec->budget_tokens_month,
                      &spec->budget_micro_usd_day, &spec->budget_micro_usd_month,
                      &spec->step_reserve_tokens,  &spec->step_reserve_micro_usd};
    struct json_object *b = NULL;
    int r;

    if (is_null(body, "budget"))
        return 0;
    r = aos_json_get_object(body, "budget", &b, err, errlen);
    if (r == 1)
        return 0;
    if (r < 0 || !json_object_is_type(b, json_type_object)) {
        snprintf(err, errlen, "field 'budget' must be a JSON object");
        return -1;
    }
    json_object_object_foreach(b, key, val)
    {
        (void)val;
        if (!aos_api_listed(key, keys, sizeof keys / sizeof keys[0])) {
            snprintf(err, errlen,
                     "field 'budget' has an unknown member (known: tokens_day, tokens_month, "
                     "micro_usd_day, micro_usd_month, step_tokens, step_micro_usd)");
            return -1;
        }
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int64_t v;

        if (is_null(b, keys[i]))
            continue;
        r = aos_json_get_int(b, keys[i], 0, BUDGET_MAX, &v, err, errlen);
        if (r < 0)
            return -1;
        if (r == 0)
            *dst[i] = v;
    }
    return 0;
}

/* Validates and copies a POST/PUT body into j->spec.  Returns 0, or -1
 * having answered 422. */
static int take_body(struct agent_job *j, struct json_object *body)
{
    char err[256];

    json_object_object_foreach(body, key, val)
    {
        (void)val;
        if (!aos_api_listed(key, body_fields, sizeof body_fields / sizeof body_fields[0]) &&
            !aos_api_listed(key, readonly_fields, sizeof readonly_fields / sizeof readonly_fields[0])) {
            /* The key is client text: not echoed (it may be anything). */
            snprintf(err, sizeof err,
                     "unknown field (known: name, plugin, config, autonomy, approval_policy, "
                     "budget)");
            goto invalid;
        }
    }
    if (take_string(body, "name", AOS_AGENT_NAME_MAX, true, &j->name, err, sizeof err) != 0)
        goto invalid;
    if (aos_api_has_control(j->name)) {
        snprintf(err, sizeof err, "field 'name' must not contain control characters");
        goto invalid;
    }
    if (take_string(body, "plugin", PLUGIN_NAME_MAX, true, &j->plugin, err, sizeof err) != 0)
        goto invalid;
    if (take_object(body, "config", &j->config, err, sizeof err) != 0)
        goto invalid;
    if (!is_null(body, "autonomy")) {
        if (take_string(body, "autonomy", 16, false, &j->autonomy, err, sizeof err) != 0)
            goto invalid;
        if (j->autonomy != NULL && strcmp(j->autonomy, "observe") != 0 &&
            strcmp(j->autonomy, "supervised") != 0 && strcmp(j->autonomy, "autonomous") != 0) {
            snprintf(err, sizeof err, "field 'autonomy' must be observe, supervised, autonomous or null");
            goto invalid;
        }
    }
    if (take_object(body, "approval_policy", &j->approval_policy, err, sizeof err) != 0)
        goto invalid;
    if (take_budget(body, &j->spec, err, sizeof err) != 0)
        goto invalid;
    j->spec.name = j->name;
    j->spec.plugin = j->plugin;
    j->spec.config = j->config;
    j->spec.autonomy = j->autonomy;
    j->spec.approval_policy = j->approval_policy;
    j->spec.created_by = j->caller.principal[0] != '\0' ? j->caller.principal : NULL;
    return 0;
invalid:
    aos_http_respond_error(j->req, 422, "invalid_field", "%s", err);
    return -1;
}

/* ------------------------------------------------------------ plugin checks */

/* Runs on the pool: the plugin's validate_config may block. */
static void check_plugin(struct agent_job *j)
{
    struct aos_runtime *rt = aos_runtime_acquire();
    const struct aos_plugin_instance *p;
    const struct aos_conf_tenant *t;
    const char *config = j->config != NULL ? j->config : "{}";

    if (rt == NULL) {
        j->verdict = VERDICT_NO_RUNTIME;
        return;
    }
    p = aos_plugin_set_find(rt->plugins, j->plugin);
    t = aos_conf_tenant_find(rt->conf, j->caller.tenant_id);
    if (p == NULL || aos_plugin_instance_kind(p) != AOS_PLUGIN_AGENT)
        j->verdict = VERDICT_UNKNOWN_PLUGIN;
    else if (t == NULL || !aos_conf_tenant_allows_plugin(t, j->plugin))
        j->verdict = VERDICT_NOT_ALLOWED;
    else if (aos_plugin_agent_validate_config(p, config, strlen(config), j->verr, sizeof j->verr) != 0)
        j->verdict = VERDICT_INVALID_CONFIG;
    aos_runtime_release(rt);
}

/* Answers a refused plugin check; false if there was none. */
static bool respond_verdict(struct agent_job *j)
{
    switch (j->verdict) {
    case VERDICT_OK:
        return false;
    case VERDICT_UNKNOWN_PLUGIN:
        aos_http_respond_error(j->req, 422, "unknown_plugin", "plugin '%s' is not an enabled agent plugin",
                               j->plugin);
        return true;
    case VERDICT_NOT_ALLOWED:
        aos_http_respond_error(j->req, 422, "plugin_not_allowed",
                               "plugin '%s' is not allowed for this tenant (tenant setting plugins)",
                               j->plugin);
        return true;
    case VERDICT_INVALID_CONFIG:
        aos_http_respond_error(j->req, 422, "invalid_config", "plugin '%s' rejects the config: %s", j->plugin,
                               j->verr[0] != '\0' ? j->verr : "invalid");
        return true;
    case VERDICT_NO_RUNTIME:
    default:
        aos_http_add_header(j->req, "Retry-After", "1");
        aos_http_respond_error(j->req, 503, "unavailable",
                               "the daemon is starting or stopping; retry shortly");
        return true;
    }
}

static void respond_write_error(struct agent_job *j)
{
    if (j->rc == AOS_DB_CONSTRAINT)
        aos_http_respond_error(j->req, 409, "name_taken", "an agent with this name exists in the tenant");
    else
        aos_api_store_error(j->req, j->rc, j->err);
}

/* ------------------------------------------------------------ create */

static int create_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct agent_job *j = arg;
    int rc;

    /* transact may run this twice: drop a first attempt's row. */
    aos_agent_clear(&j->agent);
    rc = aos_store_agent_create(tx, j->caller.tenant_id, &j->spec, j->id, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_store_agent_get(tx, j->caller.tenant_id, j->id, &j->agent, err, errlen);
    return rc;
}

static void create_work(void *arg)
{
    struct agent_job *j = arg;

    check_plugin(j);
    if (j->verdict == VERDICT_OK)
        j->rc = aos_store_transact(j->app->store, true, create_tx, j, j->err, sizeof j->err);
}

static void create_done(void *arg)
{
    struct agent_job *j = arg;

    if (respond_verdict(j))
        goto out;
    if (j->rc != AOS_DB_OK) {
        respond_write_error(j);
        goto out;
    }
    respond_agent(j, 201);
out:
    job_free(j);
}

static void handle_create(struct aos_http_request *req, void *ctx)
{
    struct json_object *body;
    struct agent_job *j;

    (void)ctx;
    body = aos_http_body_json(req);
    if (body == NULL)
        return;
    j = job_new(req);
    if (j == NULL)
        goto out;
    if (take_body(j, body) != 0) {
        job_free(j);
        goto out;
    }
    defer(j, create_work, create_done);
out:
    json_object_put(body);
}

/* ------------------------------------------------------------ update */

static int update_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct agent_job *j = arg;
    int rc;

    aos_agent_clear(&j->agent);
    rc = aos_store_agent_update(tx, j->caller.tenant_id, j->id, &j->spec, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_store_agent_get(tx, j->caller.tenant_id, j->id, &j->agent, err, errlen);
    return rc;
}

static int exists_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct agent_job *j = arg;

    aos_agent_clear(&j->agent);
    return aos_store_agent_get(tx, j->caller.tenant_id, j->id, &j->agent, err, errlen);
}

static void update_work(void *arg)
{
    struct agent_job *j = arg;

    /* Another tenant's (or a deleted) agent is 404 before anything is
     * said about the body's plugin: the answer must not depend on it. */
    j->rc = aos_store_transact(j->app->store, false, exists_tx, j, j->err, sizeof j->err);
    if (j->rc != AOS_DB_OK)
        return;
    check_plugin(j);
    if (j->verdict == VERDICT_OK)
        j->rc = aos_store_transact(j->app->store, true, update_tx, j, j->err, sizeof j->err);
}

static void update_done(void *arg)
{
    struct agent_job *j = arg;

    if (j->rc == AOS_DB_NOT_FOUND) {
        aos_http_respond_error(j->req, 404, "not_found", "no such agent");
        goto out;
    }
    if (j->rc != AOS_DB_OK && j->verdict == VERDICT_OK) {
        respond_write_error(j);
        goto out;
    }
    if (respond_verdict(j))
        goto out;
    respond_agent(j, 200);
out:
    job_free(j);
}

static void handle_update(struct aos_http_request *req, void *ctx)
{
    struct json_object *body;
    struct agent_job *j;
    const char *id;

    (void)ctx;
    id = aos_api_path_uuid(req, "agent");
    if (id == NULL)
        return;
    body = aos_http_body_json(req);
    if (body == NULL)
        return;
    j = job_new(req);
    if (j == NULL)
        goto out;
    snprintf(j->id, sizeof j->id, "%s", id);
    if (take_body(j, body) != 0) {
        job_free(j);
        goto out;
    }
    defer(j, update_work, update_done);
out:
    json_object_put(body);
}

/* ------------------------------------------------------------ get, delete */

static void get_work(void *arg)
{
    struct agent_job *j = arg;

    j->rc = aos_store_transact(j->app->store, false, exists_tx, j, j->err, sizeof j->err);
}

static void get_done(void *arg)
{
    struct agent_job *j = arg;

    if (j->rc == AOS_DB_NOT_FOUND)
        aos_http_respond_error(j->req, 404, "not_found", "no such agent");
    else if (j->rc != AOS_DB_OK)
        aos_api_store_error(j->req, j->rc, j->err);
    else
        respond_agent(j, 200);
    job_free(j);
}

static void handle_get(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    defer_by_path(req, get_work, get_done);
}

static int delete_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct agent_job *j = arg;

    return aos_store_agent_delete(tx, j->caller.tenant_id, j->id, err, errlen);
}

static void delete_work(void *arg)
{
    struct agent_job *j = arg;

    j->rc = aos_store_transact(j->app->store, true, delete_tx, j, j->err, sizeof j->err);
}

static void delete_done(void *arg)
{
    struct agent_job *j = arg;

    if (j->rc == AOS_DB_OK)
        aos_http_respond(j->req, 204, NULL, NULL, 0);
    else if (j->rc == AOS_DB_NOT_FOUND)
        aos_http_respond_error(j->req, 404, "not_found", "no such agent");
    else
        aos_api_store_error(j->req, j->rc, j->err);
    job_free(j);
}

static void handle_delete(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    defer_by_path(req, delete_work, delete_done);
}

/* ------------------------------------------------------------ list */

static int list_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct agent_job *j = arg;

    /* transact may run this twice: drop a first attempt's page. */
    aos_agents_free(j->items, j->n);
    j->items = NULL;
    j->n = 0;
    return aos_store_agent_list(tx, j->caller.tenant_id, j->cursor, j->limit, &j->items, &j->n, j->next, err,
                                errlen);
}

static void list_work(void *arg)
{
    struct agent_job *j = arg;

    j->rc = aos_store_transact(j->app->store, false, list_tx, j, j->err, sizeof j->err);
}

static void list_done(void *arg)
{
    struct agent_job *j = arg;
    struct json_object *items;

    if (j->rc != AOS_DB_OK) {
        aos_api_page_error(j->req, j->rc, j->err);
        goto out;
    }
    items = json_object_new_array();
    for (size_t i = 0; i < j->n; i++)
        json_object_array_add(items, agent_json(&j->items[i], j->req->request_id));
    aos_api_respond_page(j->req, items, j->next);
out:
    job_free(j);
}

static void handle_list(struct aos_http_request *req, void *ctx)
{
    struct agent_job *j;

    (void)ctx;
    j = job_new(req);
    if (j == NULL)
        return;
    if (!aos_api_page_query(req, LIMIT_DEFAULT, LIMIT_MAX, &j->limit, j->cursor, sizeof j->cursor)) {
        job_free(j);
        return;
    }
    defer(j, list_work, list_done);
}

static const struct aos_route agent_routes[] = {
    {"GET", "/api/v1/agents", handle_list, AOS_ROLE_USER, 0},
    {"POST", "/api/v1/agents", handle_create, AOS_ROLE_ADMIN, 0},
    {"GET", "/api/v1/agents/{id}", handle_get, AOS_ROLE_USER, 0},
    {"PUT", "/api/v1/agents/{id}", handle_update, AOS_ROLE_ADMIN, 0},
    {"DELETE", "/api/v1/agents/{id}", handle_delete, AOS_ROLE_ADMIN, 0},
};

int aos_api_agents_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen)
{
    return aos_router_add(router, agent_routes, sizeof agent_routes / sizeof agent_routes[0], app, err,
                          errlen);
}
