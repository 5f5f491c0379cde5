#include "config.h"

#include "api/api.h"

#include "http/http.h"
#include "json.h"
#include "threadpool.h"

#include <stdint.h>
#include <stdlib.h>
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

static const struct aos_route testing_routes[] = {
    {"POST", "/api/v1/testing/echo", handle_testing_echo, AOS_ROLE_NONE, 0},
    /* The same behind authentication: exercises the whole gateway chain
     * (idempotency keys need a principal). */
    {"POST", "/api/v1/testing/echo-user", handle_testing_echo, AOS_ROLE_USER, 0},
};

int aos_api_testing_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen)
{
    return aos_router_add(router, testing_routes, sizeof testing_routes / sizeof testing_routes[0], app, err,
                          errlen);
}

