#include "config.h"
/*
 * /api/v1/workflows: a tenant's workflows, each a named chain of its
 * agents whose output feeds the next (the engine starts runs of them:
 * POST /api/v1/aoa/run {"workflow": id or name}).
 *
 *   GET    /api/v1/workflows          user   page of live workflows, OLDEST
 *                                            first (?limit=1..100, default
 *                                            50; ?cursor=)
 *   POST   /api/v1/workflows          admin  201 with the workflow
 *   GET    /api/v1/workflows/{id}     user
 *   PUT    /api/v1/workflows/{id}     admin  replaces every writable field
 *   DELETE /api/v1/workflows/{id}     admin  soft delete: 204, then 404
 *
 * Body of POST and PUT (PUT is a full replacement):
 *   {"name": 1..100 characters,
 *    "steps": [{"agent": "<agent id or name>"}, ...]  (1..32 steps),
 *    "description": 0..1000 characters or null (none)}
 * Every step's agent must be a live agent of the tenant, else 422
 * unknown_agent naming the step ("step 2: ...").  Names are resolved to
 * ids when the workflow is written, so responses show ids:
 * "steps":[{"agent":"<id>"}].  Read-only fields of a response (id,
 * created_at, ...) are ignored in a body, so a client may PUT back what
 * it GOT; any other unknown field, here or in a step, is 422.
 * The tenant comes from the principal only.
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "json.h"
#include "store/ops.h"
#include "store/store.h"
#include "store/workflows.h"

#define LIMIT_DEFAULT 50
#define LIMIT_MAX 100

/* A job carried from a handler to the pool and back.  Strings are copies:
 * the JSON body is freed before the job runs. */
struct workflow_job {
    struct aos_http_request *req;
    struct aos_app *app;
    struct aos_api_caller caller;
    char id[AOS_ID_LEN];
    /* create / update input */
    char *name;
    char *description;
    char *refs[AOS_WORKFLOW_STEPS_MAX]; /* each step's agent id or name, as sent */
    size_t nrefs;
    struct aos_workflow_step steps[AOS_WORKFLOW_STEPS_MAX];
    bool bad_step; /* a step names no live agent: err says which */
    /* list input */
    char cursor[AOS_CURSOR_LEN];
    size_t limit;
    /* results */
    int rc;
    char err[512];
    struct aos_workflow workflow;
    struct aos_workflow *items;
    size_t n;
    char next[AOS_CURSOR_LEN];
};

static struct workflow_job *job_new(struct aos_http_request *req)
{
    struct workflow_job *j = aos_api_alloc(req, sizeof *j);

    if (j == NULL)
        return NULL;
    j->req = req;
    j->app = req->app;
    aos_api_caller_set(&j->caller, req);
    return j;
}

static void job_free(struct workflow_job *j)
{
    free(j->name);
    free(j->description);
    for (size_t i = 0; i < j->nrefs; i++)
        free(j->refs[i]);
    aos_workflow_clear(&j->workflow);
    aos_workflows_free(j->items, j->n);
    free(j);
}

static void defer(struct workflow_job *j, void (*work)(void *), void (*done)(void *))
{
    if (aos_http_defer(j->req, j->app->pool, work, done, j) != 0)
        job_free(j);
}

/* Runs work, then done, on the workflow the path names. */
static void defer_by_path(struct aos_http_request *req, void (*work)(void *), void (*done)(void *))
{
    const char *id = aos_api_path_uuid(req, "workflow");
    struct workflow_job *j;

    if (id == NULL || (j = job_new(req)) == NULL)
        return;
    snprintf(j->id, sizeof j->id, "%s", id);
    defer(j, work, done);
}

/* ------------------------------------------------------------ rendering */

static struct json_object *workflow_json(const struct aos_workflow *w)
{
    struct json_object *o = json_object_new_object();
    struct json_object *steps = json_object_new_array();

    json_object_object_add(o, "id", json_object_new_string(w->id));
    json_object_object_add(o, "name", json_object_new_string(w->name != NULL ? w->name : ""));
    json_object_object_add(o, "description",
                           w->description != NULL ? json_object_new_string(w->description) : NULL);
    for (size_t i = 0; i < w->nsteps; i++) {
        struct json_object *s = json_object_new_object();

        json_object_object_add(s, "agent", json_object_new_string(w->steps[i].agent_id));
        json_object_array_add(steps, s);
    }
    json_object_object_add(o, "steps", steps);
    json_object_object_add(o, "created_by",
                           w->created_by != NULL ? json_object_new_string(w->created_by) : NULL);
    json_object_object_add(o, "created_at", json_object_new_int64(w->created_at));
    json_object_object_add(o, "updated_at", json_object_new_int64(w->updated_at));
    return o;
}

static void respond_workflow(struct workflow_job *j, int status)
{
    aos_http_add_header(j->req, "Cache-Control", "no-store");
    aos_http_respond_json(j->req, status, workflow_json(&j->workflow));
}

/* ------------------------------------------------------------ input */

static const char *const body_fields[] = {"name", "steps", "description"};
/* What a response carries and a body may echo back. */
static const char *const readonly_fields[] = {"id", "created_by", "created_at", "updated_at", "tenant_id"};

static char *dup_or_oom(const char *s, char *err, size_t errlen)
{
    char *d = strdup(s);

    if (d == NULL)
        snprintf(err, errlen, "out of memory");
    return d;
}

static int take_steps(struct workflow_job *j, struct json_object *body, char *err, size_t errlen)
{
    struct json_object *steps = NULL;
    size_t n;
    int r = aos_json_get_object(body, "steps", &steps, err, errlen);

    if (r != 0)
        return -1; /* absent: "field 'steps' is required" */
    if (!json_object_is_type(steps, json_type_array)) {
        snprintf(err, errlen, "field 'steps' must be an array of 1 to %d steps", AOS_WORKFLOW_STEPS_MAX);
        return -1;
    }
    n = json_object_array_length(steps);
    if (n < 1 || n > AOS_WORKFLOW_STEPS_MAX) {
        snprintf(err, errlen, "field 'steps' must be an array of 1 to %d steps (got %zu)",
                 AOS_WORKFLOW_STEPS_MAX, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct json_object *step = json_object_array_get_idx(steps, i);
        const char *ref = NULL;
        char why[200];

        if (!json_object_is_type(step, json_type_object)) {
            snprintf(err, errlen, "step %zu must be an object {\"agent\": id or name}", i + 1);
            return -1;
        }
        json_object_object_foreach(step, key, val)
        {
            (void)val;
            if (strcmp(key, "agent") != 0) {
                snprintf(err, errlen, "step %zu has an unknown field (known: agent)", i + 1);
                return -1;
            }
        }
        if (aos_json_get_string(step, "agent", 1, AOS_AGENT_NAME_MAX, &ref, why, sizeof why) != 0) {
            snprintf(err, errlen, "step %zu: %s", i + 1, why);
            return -1;
        }
        j->refs[i] = dup_or_oom(ref, err, errlen);
        if (j->refs[i] == NULL)
            return -1;
        j->nrefs = i + 1;
    }
    return 0;
}

/* Validates and copies a POST/PUT body into j.  Returns 0, or -1 having
 * answered 422. */
static int take_body(struct workflow_job *j, struct json_object *body)
{
    struct json_object *v = NULL;
    const char *s = NULL;
    char err[256];
    int r;

    json_object_object_foreach(body, key, val)
    {
        (void)val;
        if (!aos_api_listed(key, body_fields, sizeof body_fields / sizeof body_fields[0]) &&
            !aos_api_listed(key, readonly_fields, sizeof readonly_fields / sizeof readonly_fields[0])) {
            /* The key is client text: not echoed (it may be anything). */
            snprintf(err, sizeof err, "unknown field (known: name, steps, description)");
            goto invalid;
        }
    }
    if (aos_json_get_string(body, "name", 1, AOS_WORKFLOW_NAME_MAX, &s, err, sizeof err) != 0)
        goto invalid;
    if (aos_api_has_control(s)) {
        snprintf(err, sizeof err, "field 'name' must not contain control characters");
        goto invalid;
    }
    if ((j->name = dup_or_oom(s, err, sizeof err)) == NULL)
        goto invalid;
    if (!(json_object_object_get_ex(body, "description", &v) && v == NULL)) {
        r = aos_json_get_string(body, "description", 0, AOS_WORKFLOW_DESCRIPTION_MAX, &s, err, sizeof err);
        if (r < 0)
            goto invalid;
        if (r == 0 && (j->description = dup_or_oom(s, err, sizeof err)) == NULL)
            goto invalid;
    }
    if (take_steps(j, body, err, sizeof err) != 0)
        goto invalid;
    return 0;
invalid:
    aos_http_respond_error(j->req, 422, "invalid_field", "%s", err);
    return -1;
}

static void spec_of(const struct workflow_job *j, struct aos_workflow_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    spec->name = j->name;
    spec->description = j->description;
    spec->steps = j->steps;
    spec->nsteps = j->nrefs;
    spec->created_by = j->caller.principal[0] != '\0' ? j->caller.principal : NULL;
}

/* Resolves the body's steps in tx; a step naming no live agent marks the
 * job (answered 422 by the caller). */
static int resolve(struct aos_store_tx *tx, struct workflow_job *j, char *err, size_t errlen)
{
    int rc = aos_store_workflow_resolve_steps(tx, j->caller.tenant_id, (const char *const *)j->refs, j->nrefs,
                                              j->steps, NULL, err, errlen);

    j->bad_step = rc == AOS_DB_NOT_FOUND || rc == AOS_DB_CONSTRAINT;
    return rc;
}

static void respond_write_error(struct workflow_job *j)
{
    if (j->bad_step)
        aos_http_respond_error(j->req, 422, "unknown_agent", "%s", j->err);
    else if (j->rc == AOS_DB_CONSTRAINT)
        aos_http_respond_error(j->req, 409, "name_taken", "a workflow with this name exists in the tenant");
    else
        aos_api_store_error(j->req, j->rc, j->err);
}

/* ------------------------------------------------------------ create */

static int create_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct workflow_job *j = arg;
    struct aos_workflow_spec spec;
    int rc;

    /* transact may run this twice: drop a first attempt's row. */
    aos_workflow_clear(&j->workflow);
    if ((rc = resolve(tx, j, err, errlen)) != AOS_DB_OK)
        return rc;
    spec_of(j, &spec);
    rc = aos_store_workflow_create(tx, j->caller.tenant_id, &spec, j->id, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_store_workflow_get(tx, j->caller.tenant_id, j->id, &j->workflow, err, errlen);
    return rc;
}

static void create_work(void *arg)
{
    struct workflow_job *j = arg;

    j->rc = aos_store_transact(j->app->store, true, create_tx, j, j->err, sizeof j->err);
}

static void create_done(void *arg)
{
    struct workflow_job *j = arg;

    if (j->rc != AOS_DB_OK)
        respond_write_error(j);
    else
        respond_workflow(j, 201);
    job_free(j);
}

static void handle_create(struct aos_http_request *req, void *ctx)
{
    struct json_object *body;
    struct workflow_job *j;

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
    struct workflow_job *j = arg;
    struct aos_workflow_spec spec;
    int rc;

    aos_workflow_clear(&j->workflow);
    j->bad_step = false;
    /* Another tenant's (or a deleted) workflow is 404 before anything is
     * said about the body's agents: the answer must not depend on them. */
    rc = aos_store_workflow_get(tx, j->caller.tenant_id, j->id, &j->workflow, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    aos_workflow_clear(&j->workflow);
    if ((rc = resolve(tx, j, err, errlen)) != AOS_DB_OK)
        return rc;
    spec_of(j, &spec);
    rc = aos_store_workflow_update(tx, j->caller.tenant_id, j->id, &spec, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_store_workflow_get(tx, j->caller.tenant_id, j->id, &j->workflow, err, errlen);
    return rc;
}

static void update_work(void *arg)
{
    struct workflow_job *j = arg;

    j->rc = aos_store_transact(j->app->store, true, update_tx, j, j->err, sizeof j->err);
}

static void update_done(void *arg)
{
    struct workflow_job *j = arg;

    if (j->rc == AOS_DB_NOT_FOUND && !j->bad_step)
        aos_http_respond_error(j->req, 404, "not_found", "no such workflow");
    else if (j->rc != AOS_DB_OK)
        respond_write_error(j);
    else
        respond_workflow(j, 200);
    job_free(j);
}

static void handle_update(struct aos_http_request *req, void *ctx)
{
    struct json_object *body;
    struct workflow_job *j;
    const char *id;

    (void)ctx;
    id = aos_api_path_uuid(req, "workflow");
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

static int get_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct workflow_job *j = arg;

    aos_workflow_clear(&j->workflow);
    return aos_store_workflow_get(tx, j->caller.tenant_id, j->id, &j->workflow, err, errlen);
}

static void get_work(void *arg)
{
    struct workflow_job *j = arg;

    j->rc = aos_store_transact(j->app->store, false, get_tx, j, j->err, sizeof j->err);
}

static void get_done(void *arg)
{
    struct workflow_job *j = arg;

    if (j->rc == AOS_DB_NOT_FOUND)
        aos_http_respond_error(j->req, 404, "not_found", "no such workflow");
    else if (j->rc != AOS_DB_OK)
        aos_api_store_error(j->req, j->rc, j->err);
    else
        respond_workflow(j, 200);
    job_free(j);
}

static void handle_get(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    defer_by_path(req, get_work, get_done);
}

static int delete_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct workflow_job *j = arg;

    return aos_store_workflow_delete(tx, j->caller.tenant_id, j->id, err, errlen);
}

static void delete_work(void *arg)
{
    struct workflow_job *j = arg;

    j->rc = aos_store_transact(j->app->store, true, delete_tx, j, j->err, sizeof j->err);
}

static void delete_done(void *arg)
{
    struct workflow_job *j = arg;

    if (j->rc == AOS_DB_OK)
        aos_http_respond(j->req, 204, NULL, NULL, 0);
    else if (j->rc == AOS_DB_NOT_FOUND)
        aos_http_respond_error(j->req, 404, "not_found", "no such workflow");
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
    struct workflow_job *j = arg;

    /* transact may run this twice: drop a first attempt's page. */
    aos_workflows_free(j->items, j->n);
    j->items = NULL;
    j->n = 0;
    return aos_store_workflow_list(tx, j->caller.tenant_id, j->cursor, j->limit, &j->items, &j->n, j->next,
                                   err, errlen);
}

static void list_work(void *arg)
{
    struct workflow_job *j = arg;

    j->rc = aos_store_transact(j->app->store, false, list_tx, j, j->err, sizeof j->err);
}

static void list_done(void *arg)
{
    struct workflow_job *j = arg;
    struct json_object *items;

    if (j->rc != AOS_DB_OK) {
        aos_api_page_error(j->req, j->rc, j->err);
        goto out;
    }
    items = json_object_new_array();
    for (size_t i = 0; i < j->n; i++)
        json_object_array_add(items, workflow_json(&j->items[i]));
    aos_api_respond_page(j->req, items, j->next);
out:
    job_free(j);
}

static void handle_list(struct aos_http_request *req, void *ctx)
{
    struct workflow_job *j;

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

static const struct aos_route workflow_routes[] = {
    {"GET", "/api/v1/workflows", handle_list, AOS_ROLE_USER, 0},
    {"POST", "/api/v1/workflows", handle_create, AOS_ROLE_ADMIN, 0},
    {"GET", "/api/v1/workflows/{id}", handle_get, AOS_ROLE_USER, 0},
    {"PUT", "/api/v1/workflows/{id}", handle_update, AOS_ROLE_ADMIN, 0},
    {"DELETE", "/api/v1/workflows/{id}", handle_delete, AOS_ROLE_ADMIN, 0},
};

int aos_api_workflows_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen)
{
    return aos_router_add(router, workflow_routes, sizeof workflow_routes / sizeof workflow_routes[0], app,
                          err, errlen);
}
