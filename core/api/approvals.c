#include "config.h"
/*
 * Human-in-the-loop approvals.
 *
 *   GET  /api/v1/approvals                 approver  ?status=pending|approved|rejected|expired,
 *                                                    ?limit=1..100, ?cursor=; OLDEST first
 *   GET  /api/v1/approvals/{id}            approver
 *   POST /api/v1/approvals/{id}/approve    approver  {"comment": optional, <= 2000 characters}
 *   POST /api/v1/approvals/{id}/reject     approver  likewise
 *
 * Role approver means approver or admin.  With engine.four_eyes (the
 * default) the principal who started the run may not decide its approvals
 * (403 four_eyes).  A decision is recorded once: repeating the same
 * decision answers 200 with the approval as it stands (a retried request
 * changes nothing), the other decision -- or any after expiry -- is 409.
 * The decision reaches the step when the run resumes: the run is queued
 * again in the same transaction.
 */
#include "api/api.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events/events.h"
#include "http/http.h"
#include "json.h"
#include "orch/engine.h"
#include "runtime.h"
#include "store/runs.h"
#include "store/store.h"

#define LIMIT_DEFAULT 50
#define LIMIT_MAX 100
#define COMMENT_MAX 2000

struct approval_job {
    struct aos_http_request *req;
    struct aos_app *app;
    struct aos_api_caller caller;
    char id[AOS_ID_LEN];
    bool approve;
    bool four_eyes;
    char *comment;
    char status[16];
    char cursor[AOS_CURSOR_LEN];
    size_t limit;
    int rc;
    int result;
    char err[512];
    struct aos_approval approval;
    struct aos_approval *items;
    size_t n;
    char next[AOS_CURSOR_LEN];
};

static struct approval_job *job_new(struct aos_http_request *req)
{
    struct approval_job *j = aos_api_alloc(req, sizeof *j);

    if (j == NULL)
        return NULL;
    j->req = req;
    j->app = req->app;
    aos_api_caller_set(&j->caller, req);
    return j;
}

static void job_free(struct approval_job *j)
{
    free(j->comment);
    aos_approval_clear(&j->approval);
    aos_approvals_free(j->items, j->n);
    free(j);
}

static void defer(struct approval_job *j, void (*work)(void *), void (*done)(void *))
{
    if (aos_http_defer(j->req, j->app->pool, work, done, j) != 0)
        job_free(j);
}

static struct json_object *approval_json(const struct aos_approval *a)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "id", json_object_new_string(a->id));
    json_object_object_add(o, "run_id", json_object_new_string(a->run_id));
    json_object_object_add(o, "step", json_object_new_int64(a->step_seq));
    json_object_object_add(o, "status", json_object_new_string(a->status));
    json_object_object_add(o, "proposal", a->proposal != NULL ? json_tokener_parse(a->proposal) : NULL);
    json_object_object_add(o, "requested_by",
                           a->requested_by != NULL ? json_object_new_string(a->requested_by) : NULL);
    json_object_object_add(o, "decided_by", a->decided_by != NULL ? json_object_new_string(a->decided_by) : NULL);
    json_object_object_add(o, "comment", a->comment != NULL ? json_object_new_string(a->comment) : NULL);
    json_object_object_add(o, "created_at", json_object_new_int64(a->created_at));
    json_object_object_add(o, "decided_at", a->decided_at > 0 ? json_object_new_int64(a->decided_at) : NULL);
    json_object_object_add(o, "expires_at", a->expires_at > 0 ? json_object_new_int64(a->expires_at) : NULL);
    return o;
}

/* ------------------------------------------------------------ decide */

static int decide_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct approval_job *j = arg;
    int rc;

    aos_approval_clear(&j->approval);
    rc = aos_store_approval_decide(tx, j->caller.tenant_id, j->id, j->caller.principal, j->approve,
                                   j->comment, j->four_eyes, &j->result, &j->approval, err, errlen);
    if (rc != AOS_DB_OK || j->result != AOS_DECIDED)
        return rc;
    struct json_object *p = json_object_new_object();
    json_object_object_add(p, "approval_id", json_object_new_string(j->approval.id));
    json_object_object_add(p, "decision", json_object_new_string(j->approval.status));
    json_object_object_add(p, "decided_by", json_object_new_string(j->caller.principal));
    json_object_object_add(p, "comment", j->comment != NULL ? json_object_new_string(j->comment) : NULL);
    rc = aos_event_append(tx, j->app->pii, j->caller.tenant_id, "approval.decided", j->approval.run_id,
                          aos_json_text(p, NULL), NULL, err, errlen);
    json_object_put(p);
    if (rc == AOS_DB_OK)
        rc = aos_event_append(tx, j->app->pii, j->caller.tenant_id, "run.queued", j->approval.run_id,
                              "{\"reason\":\"approval decided\"}", NULL, err, errlen);
    return rc;
}

static void decide_work(void *arg)
{
    struct approval_job *j = arg;

    j->rc = aos_store_transact(j->app->store, true, decide_tx, j, j->err, sizeof j->err);
    if (j->rc == AOS_DB_OK && j->result == AOS_DECIDED) {
        aos_events_committed(j->app->events);
        aos_engine_wake(j->app->engine);
    }
}

static void decide_done(void *arg)
{
    struct approval_job *j = arg;

    if (j->rc == AOS_DB_NOT_FOUND)
        aos_http_respond_error(j->req, 404, "not_found", "no such approval");
    else if (j->rc != AOS_DB_OK)
        aos_api_store_error(j->req, j->rc, j->err);
    else if (j->result == AOS_DECIDE_FOUR_EYES)
        aos_http_respond_error(j->req, 403, "four_eyes",
                               "the user who started the run may not decide its approvals (engine.four_eyes)");
    else if (j->result == AOS_DECIDED_OTHER)
        aos_http_respond_error(j->req, 409, "already_decided", "the approval is already %s", j->approval.status);
    else
        aos_http_respond_json(j->req, 200, approval_json(&j->approval));
    job_free(j);
}

static const char *const decide_fields[] = {"comment"};

static void decide(struct aos_http_request *req, bool approve)
{
    const char *id = aos_api_path_uuid(req, "approval"), *comment = NULL;
    struct json_object *body = NULL;
    struct approval_job *j = NULL;
    char err[256];

    if (id == NULL)
        return;
    if (req->body_len > 0) {
        if ((body = aos_http_body_json(req)) == NULL)
            return;
        if (aos_api_unknown_field(req, body, decide_fields, 1))
            goto out;
        if (aos_json_get_string(body, "comment", 0, COMMENT_MAX, &comment, err, sizeof err) < 0) {
            aos_http_respond_error(req, 422, "invalid_request", "%s", err);
            goto out;
        }
    }
    if ((j = job_new(req)) == NULL)
        goto out;
    snprintf(j->id, sizeof j->id, "%s", id);
    j->approve = approve;
    struct aos_runtime *rt = aos_runtime_acquire();
    j->four_eyes = rt == NULL || rt->conf->engine.four_eyes;
    if (rt != NULL)
        aos_runtime_release(rt);
    if (comment != NULL && (j->comment = strdup(comment)) == NULL) {
        aos_http_respond_error(req, 500, "internal", "out of memory");
        job_free(j);
        goto out;
    }
    defer(j, decide_work, decide_done);
out:
    json_object_put(body);
}

static void handle_approve(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    decide(req, true);
}

static void handle_reject(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    decide(req, false);
}

/* ------------------------------------------------------------ read */

static int get_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct approval_job *j = arg;
    aos_approval_clear(&j->approval);
    return aos_store_approval_get(tx, j->caller.tenant_id, j->id, &j->approval, err, errlen);
}

static void get_work(void *arg)
{
    struct approval_job *j = arg;
    j->rc = aos_store_transact(j->app->store, false, get_tx, j, j->err, sizeof j->err);
}

static void get_done(void *arg)
{
    struct approval_job *j = arg;

    if (j->rc == AOS_DB_NOT_FOUND)
        aos_http_respond_error(j->req, 404, "not_found", "no such approval");
    else if (j->rc != AOS_DB_OK)
        aos_api_store_error(j->req, j->rc, j->err);
    else
        aos_http_respond_json(j->req, 200, approval_json(&j->approval));
    job_free(j);
}

static void handle_get(struct aos_http_request *req, void *ctx)
{
    const char *id = aos_api_path_uuid(req, "approval");
    struct approval_job *j;

    (void)ctx;
    if (id == NULL || (j = job_new(req)) == NULL)
        return;
    snprintf(j->id, sizeof j->id, "%s", id);
    defer(j, get_work, get_done);
}

static int list_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct approval_job *j = arg;

    aos_approvals_free(j->items, j->n);
    j->items = NULL;
    j->n = 0;
    return aos_store_approval_list(tx, j->caller.tenant_id, j->status[0] != '\0' ? j->status : NULL,
                                   j->cursor, j->limit, &j->items, &j->n, j->next, err, errlen);
}

static void list_work(void *arg)
{
    struct approval_job *j = arg;
    j->rc = aos_store_transact(j->app->store, false, list_tx, j, j->err, sizeof j->err);
}

static void list_done(void *arg)
{
    struct approval_job *j = arg;

    if (j->rc != AOS_DB_OK) {
        aos_api_page_error(j->req, j->rc, j->err);
    } else {
        struct json_object *items = json_object_new_array();
        for (size_t i = 0; i < j->n; i++)
            json_object_array_add(items, approval_json(&j->items[i]));
        aos_api_respond_page(j->req, items, j->next);
    }
    job_free(j);
}

static const char *const approval_statuses[] = {"pending", "approved", "rejected", "expired"};

static void handle_list(struct aos_http_request *req, void *ctx)
{
    struct approval_job *j;
    int r;

    (void)ctx;
    if ((j = job_new(req)) == NULL)
        return;
    if (!aos_api_page_query(req, LIMIT_DEFAULT, LIMIT_MAX, &j->limit, j->cursor, sizeof j->cursor))
        goto fail;
    r = aos_api_query_get(req->query, "status", j->status, sizeof j->status);
    if (r < 0 || (r == 1 && !aos_api_listed(j->status, approval_statuses,
                                            sizeof approval_statuses / sizeof approval_statuses[0]))) {
        aos_http_respond_error(req, 400, "invalid_query", "status must be pending, approved, rejected or expired");
        goto fail;
    }
    defer(j, list_work, list_done);
    return;
fail:
    job_free(j);
}

static const struct aos_route approval_routes[] = {
    {"GET", "/api/v1/approvals", handle_list, AOS_ROLE_APPROVER, 0},
    {"GET", "/api/v1/approvals/{id}", handle_get, AOS_ROLE_APPROVER, 0},
    {"POST", "/api/v1/approvals/{id}/approve", handle_approve, AOS_ROLE_APPROVER, 0},
    {"POST", "/api/v1/approvals/{id}/reject", handle_reject, AOS_ROLE_APPROVER, 0},
};

int aos_api_approvals_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen)
{
    return aos_router_add(router, approval_routes, sizeof approval_routes / sizeof approval_routes[0], app, err,
                          errlen);
}
