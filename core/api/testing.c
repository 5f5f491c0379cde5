#include "config.h"

#include "api/api.h"

#include "events/events.h"
#include "http/http.h"
#include "json.h"
#include "store/events.h"
#include "store/store.h"
#include "threadpool.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* AOS_TESTING=1 only: echoes a JSON body so the black-box tests can
 * exercise body limits, JSON errors and the thread-pool round trip before
 * real JSON routes exist.  {"sleep_ms": N} holds a pool thread that long,
 * which makes in-flight work observable (drain, client disconnects). */
struct testing_echo {
    struct aos_http_request *req;
    struct json_object *body;
    int64_t sleep_ms;
};

static void testing_echo_work(void *arg)
{
    struct testing_echo *e = arg;
    if (e->sleep_ms > 0) {
        struct timespec ts = {(time_t)(e->sleep_ms / 1000), (long)(e->sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void testing_echo_done(void *arg)
{
    struct testing_echo *e = arg;
    struct json_object *wrap = json_object_new_object();
    json_object_object_add(wrap, "echo", e->body);
    aos_http_respond_json(e->req, 200, wrap);
    free(e);
}

static void handle_testing_echo(struct aos_http_request *req, void *ctx)
{
    struct aos_app *app = ctx;
    struct json_object *obj = aos_http_body_json(req);
    if (obj == NULL)
        return;
    char err[160];
    int64_t sleep_ms = 0;
    if (aos_json_get_int(obj, "sleep_ms", 0, 10000, &sleep_ms, err, sizeof err) < 0) {
        json_object_put(obj);
        aos_http_respond_error(req, 422, "invalid_field", "%s", err);
        return;
    }
    struct testing_echo *e = malloc(sizeof *e);
    if (e == NULL) {
        json_object_put(obj);
        aos_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    *e = (struct testing_echo){.req = req, .body = obj, .sleep_ms = sleep_ms};
    if (aos_http_defer(req, app->pool, testing_echo_work, testing_echo_done, e) != 0) {
        json_object_put(obj);
        free(e);
    }
}

/* AOS_TESTING=1 only: appends events for the caller's tenant in one
 * transaction, as the engine will, then wakes the hub -- so the event log,
 * its streams and their resume rules are testable before the engine
 * exists.  Body: {"events":[{"type","run_id"?,"payload"?}, ...],
 * "repeat"?: N} (the list appended N times, 1..10000).  201
 * {"ids":[...] (at most 1000 shown), "first_id","last_id","count"}. */
#define TESTING_EVENTS_MAX 1000
#define TESTING_REPEAT_MAX 10000

struct testing_event {
    char *type;
    char *run_id;
    char *payload;
};

struct testing_events {
    struct aos_http_request *req;
    struct aos_app *app;
    char tenant_id[AOS_ID_MAX];
    struct testing_event *ev;
    size_t n;
    int64_t repeat;
    int64_t *ids;
    size_t nids;
    int rc;
    char err[512];
};

static void testing_events_free(struct testing_events *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->ev[i].type);
        free(t->ev[i].run_id);
        free(t->ev[i].payload);
    }
    free(t->ev);
    free(t->ids);
    free(t);
}

static int testing_events_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct testing_events *t = arg;

    t->nids = 0; /* a retried transaction starts over */
    for (int64_t r = 0; r < t->repeat; r++) {
        for (size_t i = 0; i < t->n; i++) {
            int rc = aos_event_append(tx, t->app->pii, t->tenant_id, t->ev[i].type, t->ev[i].run_id,
                                      t->ev[i].payload, &t->ids[t->nids], err, errlen);
            if (rc != AOS_DB_OK)
                return rc;
            t->nids++;
        }
    }
    return AOS_DB_OK;
}

static void testing_events_work(void *arg)
{
    struct testing_events *t = arg;

    t->rc = aos_store_transact(t->app->store, true, testing_events_tx, t, t->err, sizeof t->err);
}

static void testing_events_done(void *arg)
{
    struct testing_events *t = arg;

    if (t->rc == AOS_DB_CONSTRAINT) {
        aos_http_respond_error(t->req, 422, "invalid_event", "%s", t->err);
    } else if (t->rc != AOS_DB_OK) {
        aos_api_store_error(t->req, t->rc, t->err);
    } else {
        struct json_object *o = json_object_new_object(), *ids = json_object_new_array();

        aos_events_committed(t->app->events);
        for (size_t i = 0; i < t->nids && i < TESTING_EVENTS_MAX; i++)
            json_object_array_add(ids, json_object_new_int64(t->ids[i]));
        json_object_object_add(o, "ids", ids);
        json_object_object_add(o, "first_id", json_object_new_int64(t->nids > 0 ? t->ids[0] : 0));
        json_object_object_add(o, "last_id", json_object_new_int64(t->nids > 0 ? t->ids[t->nids - 1] : 0));
        json_object_object_add(o, "count", json_object_new_int64((int64_t)t->nids));
        aos_http_respond_json(t->req, 201, o);
    }
    testing_events_free(t);
}

static char *dup_field(struct json_object *o, const char *key, bool object)
{
    struct json_object *v = NULL;

    if (!json_object_object_get_ex(o, key, &v) || v == NULL)
        return NULL;
    if (object)
        return strdup(aos_json_text(v, NULL));
    return json_object_is_type(v, json_type_string) ? strdup(json_object_get_string(v)) : NULL;
}

static void handle_testing_events(struct aos_http_request *req, void *ctx)
{
    struct aos_app *app = ctx;
    struct json_object *body = aos_http_body_json(req), *list = NULL;
    struct testing_events *t = NULL;
    char err[160];
    size_t n;

    if (body == NULL)
        return;
    t = calloc(1, sizeof *t);
    if (t == NULL)
        goto oom;
    t->req = req;
    t->app = app;
    t->repeat = 1;
    snprintf(t->tenant_id, sizeof t->tenant_id, "%s", req->principal.tenant_id);
    if (aos_json_get_int(body, "repeat", 1, TESTING_REPEAT_MAX, &t->repeat, err, sizeof err) < 0) {
        aos_http_respond_error(req, 422, "invalid_field", "%s", err);
        goto out;
    }
    if (!json_object_object_get_ex(body, "events", &list) || !json_object_is_type(list, json_type_array) ||
        (n = json_object_array_length(list)) == 0 || n > TESTING_EVENTS_MAX) {
        aos_http_respond_error(req, 422, "invalid_field", "field 'events' must be an array of 1 to %d events",
                               TESTING_EVENTS_MAX);
        goto out;
    }
    t->ev = calloc(n, sizeof *t->ev);
    t->ids = calloc(n * (size_t)t->repeat, sizeof *t->ids);
    if (t->ev == NULL || t->ids == NULL)
        goto oom;
    t->n = n;
    for (size_t i = 0; i < n; i++) {
        struct json_object *e = json_object_array_get_idx(list, i);
        struct json_object *p = NULL;

        t->ev[i].type = dup_field(e, "type", false);
        t->ev[i].run_id = dup_field(e, "run_id", false);
        if (json_object_object_get_ex(e, "payload", &p) && p != NULL)
            t->ev[i].payload = dup_field(e, "payload", true);
        struct json_object *run = NULL;
        if (t->ev[i].type == NULL ||
            (json_object_object_get_ex(e, "run_id", &run) && run != NULL && t->ev[i].run_id == NULL)) {
            aos_http_respond_error(req, 422, "invalid_field",
                                   "event %zu needs a string 'type' (and a string 'run_id' if any)", i);
            goto out;
        }
    }
    json_object_put(body);
    if (aos_http_defer(req, app->pool, testing_events_work, testing_events_done, t) != 0)
        testing_events_free(t);
    return;
oom:
    aos_http_respond_error(req, 500, "internal", "out of memory");
out:
    json_object_put(body);
    if (t != NULL)
        testing_events_free(t);
}

static const struct aos_route testing_routes[] = {
    {"POST", "/api/v1/testing/echo", handle_testing_echo, AOS_ROLE_NONE, 0},
    /* The same behind authentication: exercises the whole gateway chain
     * (idempotency keys need a principal). */
    {"POST", "/api/v1/testing/echo-user", handle_testing_echo, AOS_ROLE_USER, 0},
    {"POST", "/api/v1/testing/events", handle_testing_events, AOS_ROLE_USER, 0},
};

int aos_api_testing_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen)
{
    return aos_router_add(router, testing_routes, sizeof testing_routes / sizeof testing_routes[0], app, err,
                          errlen);
}

