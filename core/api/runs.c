#include "config.h"
/*
 * Runs: starting, reading, cancelling and resuming them.
 *
 *   POST /api/v1/aoa/run              user   {"agent": id or name | "workflow": id or name,
 *                                             "input": {...}}  -> 202 {"run_id", "status", ...}
 *   POST /api/v1/agents/{id}/runs     user   {"input": {...}}   -> 202
 *   GET  /api/v1/runs                 user   ?status=&agent=&limit=1..100&cursor=, NEWEST first
 *   GET  /api/v1/runs/{id}            user   the run with its steps and usage
 *   POST /api/v1/runs/{id}/cancel     user   202 (running: stops at its next checkpoint) or 200
 *   POST /api/v1/runs/{id}/resume     admin  a budget_exceeded run goes back to the queue
 *
 * Queuing a run writes the run and its run.queued event in one
 * transaction; the engine (core/orch) is woken afterwards.  The tenant is
 * the principal's; another tenant's run is 404.
 */
#include "api/api.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events/events.h"
#include "http/http.h"
#include "json.h"
#include "log.h"
#include "orch/engine.h"
#include "plugin.h"
#include "runtime.h"
#include "store/runs.h"
#include "store/store.h"
#include "store/workflows.h"

#define LIMIT_DEFAULT 50
#define LIMIT_MAX 100

struct run_job {
    struct aos_http_request *req;
    struct aos_app *app;
    struct aos_api_caller caller;
    char id[AOS_ID_LEN];
    /* create */
    char *agent_ref;    /* id or name, as given */
    char *workflow_ref; /* id or name, as given */
    char *input;
    char agent_id[AOS_ID_LEN];
    char workflow_id[AOS_ID_LEN];
    char plugin_problem[200];
    /* list */
    char status[AOS_RUN_STATUS_LEN];
    char agent_filter[AOS_ID_LEN];
    char cursor[AOS_CURSOR_LEN];
    size_t limit;
    /* results */
    int rc;
    int result;
    char err[512];
    struct aos_run run;
    struct aos_step_row *steps;
    size_t nsteps;
    struct aos_run *items;
    size_t n;
    char next[AOS_CURSOR_LEN];
};

static struct run_job *job_new(struct aos_http_request *req)
{
    struct run_job *j = aos_api_alloc(req, sizeof *j);

    if (j == NULL)
        return NULL;
    j->req = req;
    j->app = req->app;
    aos_api_caller_set(&j->caller, req);
    return j;
}

static void job_free(struct run_job *j)
{
    free(j->agent_ref);
    free(j->workflow_ref);
    free(j->input);
    aos_run_clear(&j->run);
    aos_step_rows_free(j->steps, j->nsteps);
    aos_runs_free(j->items, j->n);
    free(j);
}

static void defer(struct run_job *j, void (*work)(void *), void (*done)(void *))
{
    if (aos_http_defer(j->req, j->app->pool, work, done, j) != 0)
        job_free(j);
}

/* Runs work, then done, on the run the path names. */
static void defer_by_path(struct aos_http_request *req, void (*work)(void *), void (*done)(void *))
{
    const char *id = aos_api_path_uuid(req, "run");
    struct run_job *j;

    if (id == NULL || (j = job_new(req)) == NULL)
        return;
    snprintf(j->id, sizeof j->id, "%s", id);
    defer(j, work, done);
}

/* ------------------------------------------------------------ rendering */

static struct json_object *stored_json(const char *text)
{
    return text != NULL ? json_tokener_parse(text) : NULL;
}

static struct json_object *id_or_null(const char *id)
{
    return id != NULL && id[0] != '\0' ? json_object_new_string(id) : NULL;
}

static struct json_object *ms_or_null(int64_t ms) { return ms > 0 ? json_object_new_int64(ms) : NULL; }

struct json_object *aos_api_run_json(const struct aos_run *r, const struct aos_step_row *steps, size_t nsteps,
                                     bool with_steps)
{
    struct json_object *o = json_object_new_object(), *u = json_object_new_object();

    json_object_object_add(o, "id", json_object_new_string(r->id));
    json_object_object_add(o, "status", json_object_new_string(r->status));
    json_object_object_add(o, "agent_id", id_or_null(r->agent_id));
    json_object_object_add(o, "workflow_id", id_or_null(r->workflow_id));
    json_object_object_add(o, "input", stored_json(r->input));
    json_object_object_add(o, "output", aos_run_status_final(r->status) ? stored_json(r->output) : NULL);
    json_object_object_add(o, "error", r->error != NULL ? json_object_new_string(r->error) : NULL);
    json_object_object_add(o, "next_step", json_object_new_int64(r->next_step));
    json_object_object_add(o, "attempt", json_object_new_int64(r->attempt));
    json_object_object_add(o, "stage", json_object_new_int64(r->stage));
    json_object_object_add(o, "cancel_requested", json_object_new_boolean(r->cancel_requested));
    json_object_object_add(o, "created_by", r->created_by != NULL ? json_object_new_string(r->created_by) : NULL);
    json_object_object_add(o, "created_at", json_object_new_int64(r->created_at));
    json_object_object_add(o, "updated_at", json_object_new_int64(r->updated_at));
    json_object_object_add(o, "started_at", ms_or_null(r->started_at));
    json_object_object_add(o, "finished_at", ms_or_null(r->finished_at));
    json_object_object_add(u, "tokens_in", json_object_new_int64(r->tokens_in));
    json_object_object_add(u, "tokens_out", json_object_new_int64(r->tokens_out));
    json_object_object_add(u, "cost_micro_usd", json_object_new_int64(r->cost_micro_usd));
    json_object_object_add(u, "reserved_tokens", json_object_new_int64(r->reserved_tokens));
    json_object_object_add(u, "reserved_micro_usd", json_object_new_int64(r->reserved_micro_usd));
    json_object_object_add(o, "usage", u);
    if (!with_steps)
        return o;
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < nsteps; i++) {
        const struct aos_step_row *s = &steps[i];
        struct json_object *so = json_object_new_object();
        json_object_object_add(so, "seq", json_object_new_int64(s->seq));
        json_object_object_add(so, "agent_id", id_or_null(s->agent_id));
        json_object_object_add(so, "attempt", json_object_new_int64(s->attempt));
        json_object_object_add(so, "outcome", json_object_new_string(s->outcome));
        json_object_object_add(so, "result", stored_json(s->result));
        json_object_object_add(so, "error", s->error != NULL ? json_object_new_string(s->error) : NULL);
        json_object_object_add(so, "tokens_in", json_object_new_int64(s->tokens_in));
        json_object_object_add(so, "tokens_out", json_object_new_int64(s->tokens_out));
        json_object_object_add(so, "cost_micro_usd", json_object_new_int64(s->cost_micro_usd));
        json_object_object_add(so, "started_at", json_object_new_int64(s->started_at));
        json_object_object_add(so, "finished_at", json_object_new_int64(s->finished_at));
        json_object_object_add(so, "duration_ms", json_object_new_int64(s->finished_at - s->started_at));
        json_object_array_add(arr, so);
    }
    json_object_object_add(o, "steps", arr);
    return o;
}

/* ------------------------------------------------------------ create */

/* The agent's plugin must still be enabled and allowed: refuse now rather
 * than queue a run that can only fail. */
static void check_plugin(struct run_job *j, const char *plugin)
{
    struct aos_runtime *rt = aos_runtime_acquire();
    const struct aos_plugin_instance *p = rt != NULL ? aos_plugin_set_find(rt->plugins, plugin) : NULL;
    const struct aos_conf_tenant *t = rt != NULL ? aos_conf_tenant_find(rt->conf, j->caller.tenant_id) : NULL;

    if (p == NULL || aos_plugin_instance_kind(p) != AOS_PLUGIN_AGENT || t == NULL ||
        !aos_conf_tenant_allows_plugin(t, plugin))
        snprintf(j->plugin_problem, sizeof j->plugin_problem,
                 "the agent's plugin '%s' is not an enabled agent plugin allowed for this tenant", plugin);
    if (rt != NULL)
        aos_runtime_release(rt);
}

static int resolve_agent(struct aos_store_tx *tx, struct run_job *j, char *err, size_t errlen)
{
    struct aos_agent a;
    int rc;

    if (aos_api_uuid_valid(j->agent_ref))
        rc = aos_store_agent_get(tx, j->caller.tenant_id, j->agent_ref, &a, err, errlen);
    else
        rc = aos_store_agent_get_by_name(tx, j->caller.tenant_id, j->agent_ref, &a, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    memcpy(j->agent_id, a.id, AOS_ID_LEN);
    check_plugin(j, a.plugin);
    aos_agent_clear(&a);
    return AOS_DB_OK;
}

static int resolve_workflow(struct aos_store_tx *tx, struct run_job *j, char *err, size_t errlen)
{
    struct aos_workflow w;
    int rc;

    if (aos_api_uuid_valid(j->workflow_ref))
        rc = aos_store_workflow_get(tx, j->caller.tenant_id, j->workflow_ref, &w, err, errlen);
    else
        rc = aos_store_workflow_get_by_name(tx, j->caller.tenant_id, j->workflow_ref, &w, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    memcpy(j->workflow_id, w.id, AOS_ID_LEN);
    aos_workflow_clear(&w);
    return AOS_DB_OK;
}

static int create_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct run_job *j = arg;
    int rc;

    j->plugin_problem[0] = '\0';
    aos_run_clear(&j->run);
    rc = j->agent_ref != NULL ? resolve_agent(tx, j, err, errlen) : resolve_workflow(tx, j, err, errlen);
    if (rc != AOS_DB_OK || j->plugin_problem[0] != '\0')
        return rc == AOS_DB_OK ? AOS_DB_CONSTRAINT : rc;
    rc = aos_store_run_create(tx, j->caller.tenant_id, j->agent_ref != NULL ? j->agent_id : NULL,
                              j->agent_ref != NULL ? NULL : j->workflow_id, j->caller.principal, j->input,
                              j->id, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    struct json_object *p = json_object_new_object();
    json_object_object_add(p, "agent_id", id_or_null(j->agent_ref != NULL ? j->agent_id : NULL));
    json_object_object_add(p, "workflow_id", id_or_null(j->agent_ref != NULL ? NULL : j->workflow_id));
    json_object_object_add(p, "created_by", json_object_new_string(j->caller.principal));
    rc = aos_event_append(tx, j->app->pii, j->caller.tenant_id, "run.queued", j->id, aos_json_text(p, NULL),
                          NULL, err, errlen);
    json_object_put(p);
    if (rc == AOS_DB_OK)
        rc = aos_store_run_get(tx, j->caller.tenant_id, j->id, &j->run, err, errlen);
    return rc;
}

/* Runs tx in a write transaction; once it has queued the run, the event
 * streams and the engine are told. */
static void queue_work(struct run_job *j, aos_store_tx_fn tx)
{
    j->rc = aos_store_transact(j->app->store, true, tx, j, j->err, sizeof j->err);
    if (j->rc == AOS_DB_OK) {
        aos_events_committed(j->app->events);
        aos_engine_wake(j->app->engine);
    }
}

static void create_work(void *arg) { queue_work(arg, create_tx); }

static void create_done(void *arg)
{
    struct run_job *j = arg;

    if (j->plugin_problem[0] != '\0') {
        aos_http_respond_error(j->req, 422, "plugin_not_allowed", "%s", j->plugin_problem);
    } else if (j->rc == AOS_DB_NOT_FOUND) {
        aos_http_respond_error(j->req, 404, "not_found", "no such %s in this tenant",
                               j->agent_ref != NULL ? "agent" : "workflow");
    } else if (j->rc != AOS_DB_OK) {
        aos_debug("run not queued", "error", j->err, "request_id", j->req->request_id, NULL);
        aos_api_store_error(j->req, j->rc, j->err);
    } else {
        struct json_object *o = aos_api_run_json(&j->run, NULL, 0, false);
        char location[96];
        json_object_object_add(o, "run_id", json_object_new_string(j->run.id));
        snprintf(location, sizeof location, "/api/v1/runs/%s", j->run.id);
        aos_http_add_header(j->req, "Location", location);
        aos_http_respond_json(j->req, 202, o);
    }
    job_free(j);
}

static const char *const run_fields[] = {"agent", "workflow", "input"};

/* Takes "input" (an object, default {}) from body.  false after answering
 * (the request is then freed: the caller must not touch it). */
static bool take_input(struct run_job *j, struct json_object *body)
{
    struct json_object *input = NULL;
    char err[256];
    int r = aos_json_get_object(body, "input", &input, err, sizeof err);

    if (r < 0 || (r == 0 && !json_object_is_type(input, json_type_object))) {
        aos_http_respond_error(j->req, 422, "invalid_request", "field 'input' must be a JSON object");
        return false;
    }
    const char *text = r == 0 ? aos_json_text(input, NULL) : "{}";
    if ((j->input = strdup(text)) == NULL) {
        aos_http_respond_error(j->req, 500, "internal", "out of memory");
        return false;
    }
    return true;
}

static void handle_aoa_run(struct aos_http_request *req, void *ctx)
{
    struct json_object *body = aos_http_body_json(req);
    struct run_job *j;
    const char *agent = NULL, *workflow = NULL;
    char err[256];
    int ra, rw;

    (void)ctx;
    if (body == NULL)
        return;
    if (aos_api_unknown_field(req, body, run_fields, 3))
        goto out;
    ra = aos_json_get_string(body, "agent", 1, 100, &agent, err, sizeof err);
    rw = aos_json_get_string(body, "workflow", 1, 100, &workflow, err, sizeof err);
    if (ra < 0 || rw < 0 || (ra == 0) == (rw == 0)) {
        aos_http_respond_error(req, 422, "invalid_request",
                               "give exactly one of 'agent' or 'workflow' (an id or a name of 1 to 100 characters)");
        goto out;
    }
    if ((j = job_new(req)) == NULL)
        goto out;
    if (ra == 0)
        j->agent_ref = strdup(agent);
    else
        j->workflow_ref = strdup(workflow);
    if (j->agent_ref == NULL && j->workflow_ref == NULL) {
        aos_http_respond_error(req, 500, "internal", "out of memory");
        job_free(j);
        goto out;
    }
    if (!take_input(j, body)) { /* it answered: req is gone */
        job_free(j);
        goto out;
    }
    defer(j, create_work, create_done);
out:
    json_object_put(body);
}

static const char *const agent_run_fields[] = {"input"};

static void handle_agent_run(struct aos_http_request *req, void *ctx)
{
    const char *id = aos_api_path_uuid(req, "agent");
    struct json_object *body;
    struct run_job *j;

    (void)ctx;
    if (id == NULL)
        return;
    if ((body = aos_http_body_json(req)) == NULL)
        return;
    if (aos_api_unknown_field(req, body, agent_run_fields, 1))
        goto out;
    if ((j = job_new(req)) == NULL)
        goto out;
    if ((j->agent_ref = strdup(id)) == NULL) {
        aos_http_respond_error(req, 500, "internal", "out of memory");
        job_free(j);
        goto out;
    }
    if (!take_input(j, body)) { /* it answered: req is gone */
        job_free(j);
        goto out;
    }
    defer(j, create_work, create_done);
out:
    json_object_put(body);
}

/* ------------------------------------------------------------ get */

static int get_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct run_job *j = arg;
    int rc;

    aos_run_clear(&j->run);
    aos_step_rows_free(j->steps, j->nsteps);
    j->steps = NULL;
    j->nsteps = 0;
    rc = aos_store_run_get(tx, j->caller.tenant_id, j->id, &j->run, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_store_run_steps(tx, j->caller.tenant_id, j->id, &j->steps, &j->nsteps, err, errlen);
    return rc;
}

static void get_work(void *arg)
{
    struct run_job *j = arg;
    j->rc = aos_store_transact(j->app->store, false, get_tx, j, j->err, sizeof j->err);
}

static void get_done(void *arg)
{
    struct run_job *j = arg;

    if (j->rc == AOS_DB_NOT_FOUND)
        aos_http_respond_error(j->req, 404, "not_found", "no such run");
    else if (j->rc != AOS_DB_OK)
        aos_api_store_error(j->req, j->rc, j->err);
    else {
        aos_http_add_header(j->req, "Cache-Control", "no-store");
        aos_http_respond_json(j->req, 200, aos_api_run_json(&j->run, j->steps, j->nsteps, true));
    }
    job_free(j);
}

static void handle_get(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    defer_by_path(req, get_work, get_done);
}

/* ------------------------------------------------------------ cancel, resume */

static int cancel_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct run_job *j = arg;
    int rc;

    aos_run_clear(&j->run);
    rc = aos_store_run_cancel(tx, j->caller.tenant_id, j->id, j->caller.principal, &j->result, err, errlen);
    if (rc == AOS_DB_OK && j->result == AOS_RUN_CANCELLED) {
        struct json_object *p = json_object_new_object();
        json_object_object_add(p, "by", json_object_new_string(j->caller.principal));
        rc = aos_event_append(tx, j->app->pii, j->caller.tenant_id, "run.cancelled", j->id,
                              aos_json_text(p, NULL), NULL, err, errlen);
        json_object_put(p);
    } else if (rc == AOS_DB_OK && j->result == AOS_RUN_CANCEL_REQUESTED) {
        rc = aos_event_append(tx, j->app->pii, j->caller.tenant_id, "run.cancel_requested", j->id, NULL, NULL,
                              err, errlen);
    }
    if (rc == AOS_DB_OK)
        rc = aos_store_run_get(tx, j->caller.tenant_id, j->id, &j->run, err, errlen);
    return rc;
}

static void cancel_work(void *arg)
{
    struct run_job *j = arg;

    j->rc = aos_store_transact(j->app->store, true, cancel_tx, j, j->err, sizeof j->err);
    if (j->rc == AOS_DB_OK && j->result != AOS_RUN_ALREADY_FINAL)
        aos_events_committed(j->app->events);
}

static void cancel_done(void *arg)
{
    struct run_job *j = arg;

    if (j->rc == AOS_DB_NOT_FOUND)
        aos_http_respond_error(j->req, 404, "not_found", "no such run");
    else if (j->rc != AOS_DB_OK)
        aos_api_store_error(j->req, j->rc, j->err);
    else if (j->result == AOS_RUN_ALREADY_FINAL)
        aos_http_respond_error(j->req, 409, "run_finished", "the run has already finished (%s)", j->run.status);
    else
        aos_http_respond_json(j->req, j->result == AOS_RUN_CANCEL_REQUESTED ? 202 : 200,
                              aos_api_run_json(&j->run, NULL, 0, false));
    job_free(j);
}

static void handle_cancel(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    defer_by_path(req, cancel_work, cancel_done);
}

static int resume_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct run_job *j = arg;
    int rc;

    aos_run_clear(&j->run);
    rc = aos_store_run_resume(tx, j->caller.tenant_id, j->id, err, errlen);
    if (rc == AOS_DB_OK) {
        struct json_object *p = json_object_new_object();
        json_object_object_add(p, "reason", json_object_new_string("resumed"));
        json_object_object_add(p, "by", json_object_new_string(j->caller.principal));
        rc = aos_event_append(tx, j->app->pii, j->caller.tenant_id, "run.queued", j->id,
                              aos_json_text(p, NULL), NULL, err, errlen);
        json_object_put(p);
    }
    if (rc == AOS_DB_OK || rc == AOS_DB_CONSTRAINT) {
        int grc = aos_store_run_get(tx, j->caller.tenant_id, j->id, &j->run, j->err, sizeof j->err);
        if (grc != AOS_DB_OK)
            return grc;
    }
    return rc;
}

static void resume_work(void *arg) { queue_work(arg, resume_tx); }

static void resume_done(void *arg)
{
    struct run_job *j = arg;

    if (j->rc == AOS_DB_NOT_FOUND)
        aos_http_respond_error(j->req, 404, "not_found", "no such run");
    else if (j->rc == AOS_DB_CONSTRAINT)
        aos_http_respond_error(j->req, 409, "not_resumable", "only a budget_exceeded run can be resumed (it is %s)",
                               j->run.status);
    else if (j->rc != AOS_DB_OK)
        aos_api_store_error(j->req, j->rc, j->err);
    else
        aos_http_respond_json(j->req, 202, aos_api_run_json(&j->run, NULL, 0, false));
    job_free(j);
}

static void handle_resume(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    defer_by_path(req, resume_work, resume_done);
}

/* ------------------------------------------------------------ list */

static int list_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct run_job *j = arg;

    aos_runs_free(j->items, j->n);
    j->items = NULL;
    j->n = 0;
    return aos_store_run_list(tx, j->caller.tenant_id, j->status[0] != '\0' ? j->status : NULL,
                              j->agent_filter[0] != '\0' ? j->agent_filter : NULL, j->cursor, j->limit,
                              &j->items, &j->n, j->next, err, errlen);
}

static void list_work(void *arg)
{
    struct run_job *j = arg;
    j->rc = aos_store_transact(j->app->store, false, list_tx, j, j->err, sizeof j->err);
}

static void list_done(void *arg)
{
    struct run_job *j = arg;

    if (j->rc != AOS_DB_OK) {
        aos_api_page_error(j->req, j->rc, j->err);
    } else {
        struct json_object *items = json_object_new_array();
        for (size_t i = 0; i < j->n; i++)
            json_object_array_add(items, aos_api_run_json(&j->items[i], NULL, 0, false));
        aos_api_respond_page(j->req, items, j->next);
    }
    job_free(j);
}

static const char *const run_statuses[] = {"queued",    "running", "waiting_approval", "budget_exceeded",
                                           "succeeded", "failed",  "cancelled"};

static void handle_list(struct aos_http_request *req, void *ctx)
{
    struct run_job *j;
    int r;

    (void)ctx;
    if ((j = job_new(req)) == NULL)
        return;
    if (!aos_api_page_query(req, LIMIT_DEFAULT, LIMIT_MAX, &j->limit, j->cursor, sizeof j->cursor))
        goto fail;
    r = aos_api_query_get(req->query, "status", j->status, sizeof j->status);
    if (r < 0 ||
        (r == 1 && !aos_api_listed(j->status, run_statuses, sizeof run_statuses / sizeof run_statuses[0]))) {
        aos_http_respond_error(req, 400, "invalid_query",
                               "status must be one of queued, running, waiting_approval, budget_exceeded, "
                               "succeeded, failed, cancelled");
        goto fail;
    }
    r = aos_api_query_get(req->query, "agent", j->agent_filter, sizeof j->agent_filter);
    if (r < 0 || (r == 1 && !aos_api_uuid_valid(j->agent_filter))) {
        aos_http_respond_error(req, 400, "invalid_query", "agent must be an agent id");
        goto fail;
    }
    defer(j, list_work, list_done);
    return;
fail:
    job_free(j);
}

static const struct aos_route run_routes[] = {
    {"POST", "/api/v1/aoa/run", handle_aoa_run, AOS_ROLE_USER, 0},
    {"POST", "/api/v1/agents/{id}/runs", handle_agent_run, AOS_ROLE_USER, 0},
    {"GET", "/api/v1/runs", handle_list, AOS_ROLE_USER, 0},
    {"GET", "/api/v1/runs/{id}", handle_get, AOS_ROLE_USER, 0},
    {"POST", "/api/v1/runs/{id}/cancel", handle_cancel, AOS_ROLE_USER, 0},
    {"POST", "/api/v1/runs/{id}/resume", handle_resume, AOS_ROLE_ADMIN, 0},
};

int aos_api_runs_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen)
{
    return aos_router_add(router, run_routes, sizeof run_routes / sizeof run_routes[0], app, err, errlen);
}
