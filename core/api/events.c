#include "config.h"
/*
 * The event log over HTTP.
 *
 *   GET  /api/v1/events               user  page of the tenant's events, OLDEST first:
 *                                           ?after=<id> (or ?cursor=, the previous
 *                                           page's next_cursor), ?type=run.started or
 *                                           run.*, ?run=<uuid>, ?limit=1..1000 (100)
 *   GET  /api/v1/events/stream        user  SSE stream of the tenant's events
 *   GET  /api/v1/aoa/events           user  the same stream
 *   POST /api/v1/events/stream-token  user  {"token","token_type":"stream","expires_in"}
 *
 * Streams take the same type/run filters.  They start after the id in the
 * Last-Event-ID header (what EventSource sends when it reconnects) or,
 * without it, after ?last_event_id= (a first connect that resumes); with
 * neither, "from now" means: every event committed after the client got
 * the response head.  Each event is one frame "id: <id>\ndata: <event as
 * in the list>\n\n"; the stream opens with a retry: hint (events.retry)
 * and idle streams get a ":" comment every events.heartbeat.
 *
 * Both stream routes accept the usual Authorization / X-API-Key, or a
 * stream token in ?token= (guard.c; see events/token.h): EventSource
 * cannot send headers, and the main JWT must never travel in a URL.
 * Every route serves the principal's tenant only.
 */
#include "api/api.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events/events.h"
#include "events/token.h"
#include "http/http.h"
#include "json.h"
#include "log.h"
#include "runtime.h"
#include "store/events.h"
#include "store/store.h"
#include "threadpool.h"
#include "loop.h"

#include <event2/event.h>

#define LIMIT_DEFAULT 100
#define LIMIT_MAX 1000
#define TOKEN_TTL_DEFAULT 300

/* ------------------------------------------------------------ query */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A query parameter, percent-decoded (clients encode '*' as %2A).
 * 1 found, 0 absent, -1 malformed (repeated, too long, bad escape, NUL). */
static int query_param(const struct aos_http_request *req, const char *name, char *out, size_t size)
{
    char raw[256];
    size_t i, o = 0;
    int r = aos_api_query_get(req->query, name, raw, sizeof raw);

    if (r != 1)
        return r;
    for (i = 0; raw[i] != '\0'; i++) {
        char c = raw[i];

        if (c == '%') {
            int h = hexval(raw[i + 1]), l = h >= 0 ? hexval(raw[i + 2]) : -1;

            if (h < 0 || l < 0 || (h == 0 && l == 0))
                return -1;
            c = (char)(h * 16 + l);
            i += 2;
        }
        if (o + 1 >= size)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 1;
}

/* A non-negative event id: decimal digits only. */
static bool parse_id(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!isdigit((unsigned char)s[0]) || strlen(s) > 19)
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0)
        return false;
    *out = (int64_t)v;
    return true;
}

struct filters {
    char type[AOS_EVENT_TYPE_MAX + 2];
    char run[AOS_ID_LEN];
    bool has_type;
    bool has_run;
};

/* ?type= and ?run=.  false: answered 400. */
static bool parse_filters(struct aos_http_request *req, struct filters *f)
{
    char run[64];
    int r;

    memset(f, 0, sizeof *f);
    r = query_param(req, "type", f->type, sizeof f->type);
    if (r < 0 || (r == 1 && !aos_event_filter_type_valid(f->type))) {
        aos_http_respond_error(
            req, 400, "invalid_query",
            "type must be an event type (A-Z a-z 0-9 . _ : -, up to %d) or a prefix ending in *",
            AOS_EVENT_TYPE_MAX);
        return false;
    }
    f->has_type = r == 1;
    r = query_param(req, "run", run, sizeof run);
    if (r < 0 || (r == 1 && !aos_store_id_norm(run, f->run))) {
        aos_http_respond_error(req, 400, "invalid_query", "run must be a run id (UUID)");
        return false;
    }
    f->has_run = r == 1;
    return true;
}

/* ------------------------------------------------------------ list */

struct list_job {
    struct aos_http_request *req;
    struct aos_app *app;
    char tenant_id[AOS_ID_MAX];
    struct filters f;
    int64_t after;
    size_t limit;
    int rc;
    char err[512];
    struct aos_event *items;
    size_t n;
    bool more;
};

static int list_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct list_job *j = arg;
    struct aos_event_filter flt = {j->f.has_type ? j->f.type : NULL, j->f.has_run ? j->f.run : NULL};

    aos_event_list_free(j->items, j->n);
    j->items = NULL;
    j->n = 0;
    return aos_store_event_list(tx, j->tenant_id, j->after, &flt, j->limit, &j->items, &j->n, &j->more, err,
                                errlen);
}

static void list_work(void *arg)
{
    struct list_job *j = arg;

    j->rc = aos_store_transact(j->app->store, false, list_tx, j, j->err, sizeof j->err);
}

static void list_job_free(struct list_job *j)
{
    aos_event_list_free(j->items, j->n);
    free(j);
}

static void list_done(void *arg)
{
    struct list_job *j = arg;
    struct json_object *items;
    char next[24] = "";

    if (j->rc != AOS_DB_OK) {
        aos_api_store_error(j->req, j->rc, j->err);
        goto out;
    }
    items = json_object_new_array();
    for (size_t i = 0; i < j->n; i++)
        json_object_array_add(items, aos_event_to_json(&j->items[i]));
    if (j->more && j->n > 0)
        snprintf(next, sizeof next, "%" PRId64, j->items[j->n - 1].id);
    aos_api_respond_page(j->req, items, next);
out:
    list_job_free(j);
}

static void handle_list(struct aos_http_request *req, void *ctx)
{
    struct aos_app *app = ctx;
    struct list_job *j;
    char buf[32], cur[32];
    int ra, rc;

    j = aos_api_alloc(req, sizeof *j);
    if (j == NULL)
        return;
    j->req = req;
    j->app = app;
    j->limit = LIMIT_DEFAULT;
    snprintf(j->tenant_id, sizeof j->tenant_id, "%s", req->principal.tenant_id);
    rc = aos_api_query_get(req->query, "limit", buf, sizeof buf);
    if (rc < 0 || (rc == 1 && !aos_api_parse_limit(buf, LIMIT_MAX, &j->limit))) {
        aos_http_respond_error(req, 400, "invalid_query", "limit must be an integer from 1 to %d", LIMIT_MAX);
        goto fail;
    }
    /* after= and cursor= are the same id; next_cursor is just the last id. */
    ra = aos_api_query_get(req->query, "after", buf, sizeof buf);
    rc = aos_api_query_get(req->query, "cursor", cur, sizeof cur);
    if (ra < 0 || rc < 0 || (ra == 1 && rc == 1) || (ra == 1 && !parse_id(buf, &j->after)) ||
        (rc == 1 && !parse_id(cur, &j->after))) {
        aos_http_respond_error(req, 400, "invalid_query", "after (or cursor) must be one event id");
        goto fail;
    }
    if (!parse_filters(req, &j->f))
        goto fail;
    if (aos_http_defer(req, app->pool, list_work, list_done, j) != 0)
        list_job_free(j);
    return;
fail:
    list_job_free(j);
}

/* ------------------------------------------------------------ stream */

struct stream_ctx {
    struct aos_events *hub;
    struct aos_loop *loop;
    char tenant_id[AOS_ID_MAX];
    struct filters f;
    bool resume;
    int64_t last_id;
    /* Waiting for the hub's starting point (see stream_open). */
    struct aos_http_request *req;
    struct event *wait_ev;
    int waited_ms, wait_step_ms;
};

/* How long a new stream waits for the hub to learn where "now" is (one
 * store read, normally a millisecond) before it gets 503. */
#define READY_WAIT_MAX_MS 5000
#define READY_WAIT_STEP_MAX_MS 50

static void on_takeover(int fd, void *arg)
{
    struct stream_ctx *c = arg;
    struct aos_events_stream_spec spec = {
        .tenant_id = c->tenant_id,
        .type = c->f.has_type ? c->f.type : NULL,
        .run_id = c->f.has_run ? c->f.run : NULL,
        .resume = c->resume,
        .last_id = c->last_id,
    };

    aos_events_stream_start(c->hub, c->loop, fd, &spec);
    free(c);
}

static void stream_ctx_free(struct stream_ctx *c)
{
    if (c->wait_ev != NULL)
        event_free(c->wait_ev);
    free(c);
}

/* Sends the head and hands the connection to the streams.  A stream "from
 * now" starts after the hub's high-water mark read here, before the head
 * goes out: the catch-up from that id delivers whatever commits between
 * this moment and the stream's first walk, so no event committed after
 * the client saw the head can fall between the two. */
static void stream_open(struct stream_ctx *c, struct aos_http_request *req)
{
    char hint[48];

    if (!c->resume) {
        c->resume = true;
        c->last_id = aos_events_high_water(c->hub);
    }
    int n = snprintf(hint, sizeof hint, "retry: %lld\n\n", aos_events_retry_ms(c->hub));
    if (c->wait_ev != NULL) {
        event_free(c->wait_ev);
        c->wait_ev = NULL;
    }
    if (aos_http_takeover(req, 200, "text/event-stream", hint, (size_t)n, on_takeover, c) != 0) {
        aos_events_release(c->hub);
        aos_http_respond_error(
            req, 400, "bad_request",
            "an event stream must be the last request on its connection (nothing pipelined)");
        free(c);
    }
}

/* The hub does not know its high-water mark yet (start-up, or the first
 * stream after commits nobody read: hub.c reads it again).  Until it does,
 * "now" is unknown, so the head waits -- a short poll on this loop, no
 * thread held. */
static void on_ready_wait(evutil_socket_t fd, short what, void *arg)
{
    struct stream_ctx *c = arg;
    struct aos_http_request *req = c->req;

    (void)fd;
    (void)what;
    if (aos_events_ready(c->hub) && !aos_http_client_gone(req)) {
        stream_open(c, req);
        return;
    }
    c->waited_ms += c->wait_step_ms;
    if (aos_http_client_gone(req) || c->waited_ms >= READY_WAIT_MAX_MS) {
        aos_events_release(c->hub);
        aos_http_add_header(req, "Retry-After", "2");
        aos_http_respond_error(req, 503, "events_unavailable", "the event stream is not ready yet; retry shortly");
        stream_ctx_free(c);
        return;
    }
    if (c->wait_step_ms < READY_WAIT_STEP_MAX_MS)
        c->wait_step_ms *= 2;
    struct timeval tv = {0, (suseconds_t)c->wait_step_ms * 1000};
    evtimer_add(c->wait_ev, &tv);
}

static void handle_stream(struct aos_http_request *req, void *ctx)
{
    struct aos_app *app = ctx;
    struct aos_events *hub = app->events;
    struct stream_ctx *c = NULL;
    const char *hdr;
    char buf[32];
    int r;

    if (hub == NULL) {
        aos_http_add_header(req, "Retry-After", "2");
        aos_http_respond_error(req, 503, "events_unavailable", "this node serves no event streams");
        return;
    }
    c = aos_api_alloc(req, sizeof *c);
    if (c == NULL)
        return;
    c->hub = hub;
    c->loop = req->loop;
    snprintf(c->tenant_id, sizeof c->tenant_id, "%s", req->principal.tenant_id);
    if (!parse_filters(req, &c->f))
        goto fail;
    /* A reconnecting EventSource sends the header; the parameter serves a
     * first connect that resumes (the header wins: it is newer). */
    if (aos_http_header_count(req, "Last-Event-ID") > 1) {
        aos_http_respond_error(req, 400, "duplicate_header", "send at most one Last-Event-ID header");
        goto fail;
    }
    hdr = aos_http_header(req, "Last-Event-ID");
    if (hdr != NULL && hdr[0] != '\0') {
        if (!parse_id(hdr, &c->last_id)) {
            aos_http_respond_error(req, 400, "invalid_last_event_id", "Last-Event-ID must be an event id");
            goto fail;
        }
        c->resume = true;
    } else {
        r = aos_api_query_get(req->query, "last_event_id", buf, sizeof buf);
        if (r < 0 || (r == 1 && !parse_id(buf, &c->last_id))) {
            aos_http_respond_error(req, 400, "invalid_query", "last_event_id must be an event id");
            goto fail;
        }
        c->resume = r == 1;
    }
    aos_http_add_header(req, "Cache-Control", "no-store");
    /* Reverse proxies (nginx) must pass frames on at once. */
    aos_http_add_header(req, "X-Accel-Buffering", "no");
    if (req->head) {
        aos_http_respond(req, 200, "text/event-stream", NULL, 0);
        goto fail;
    }
    if (aos_events_reserve(hub) != 0) {
        aos_http_add_header(req, "Retry-After", "5");
        aos_http_respond_error(req, 503, "too_many_streams", "this node serves its maximum of event streams");
        goto fail;
    }
    if (c->resume || aos_events_ready(hub)) {
        stream_open(c, req);
        return;
    }
    c->req = req;
    c->wait_step_ms = 1;
    c->wait_ev = evtimer_new(aos_loop_base(req->loop), on_ready_wait, c);
    struct timeval tv = {0, 1000};
    if (c->wait_ev == NULL || evtimer_add(c->wait_ev, &tv) != 0) {
        aos_events_release(hub);
        aos_http_respond_error(req, 500, "internal", "out of memory");
        stream_ctx_free(c);
        return;
    }
    return;
fail:
    free(c);
}

/* ------------------------------------------------------------ token */

static void handle_stream_token(struct aos_http_request *req, void *ctx)
{
    struct aos_app *app = ctx;
    struct aos_runtime *rt = aos_runtime_acquire();
    int ttl = app->events != NULL ? aos_events_token_ttl(app->events) : TOKEN_TTL_DEFAULT;
    char err[256] = "";
    char *token = NULL;
    struct json_object *o;

    if (rt != NULL)
        token = aos_stream_token_issue(&rt->jwt, req->principal.subject, req->principal.tenant_id,
                                       req->principal.role, ttl, NULL, err, sizeof err);
    aos_runtime_release(rt);
    if (token == NULL) {
        aos_err("cannot issue a stream token", "error", err, "request_id", req->request_id, NULL);
        aos_http_respond_error(req, 500, "internal", "cannot issue a stream token");
        return;
    }
    o = json_object_new_object();
    json_object_object_add(o, "token", json_object_new_string(token));
    json_object_object_add(o, "token_type", json_object_new_string("stream"));
    json_object_object_add(o, "expires_in", json_object_new_int(ttl));
    explicit_bzero(token, strlen(token));
    free(token);
    aos_http_add_header(req, "Cache-Control", "no-store");
    aos_http_respond_json(req, 200, o);
}

static const struct aos_route event_routes[] = {
    {"GET", "/api/v1/events", handle_list, AOS_ROLE_USER, 0},
    {"GET", "/api/v1/events/stream", handle_stream, AOS_ROLE_USER, AOS_ROUTE_STREAM_TOKEN},
    {"GET", "/api/v1/aoa/events", handle_stream, AOS_ROLE_USER, AOS_ROUTE_STREAM_TOKEN},
    {"POST", "/api/v1/events/stream-token", handle_stream_token, AOS_ROLE_USER, AOS_ROUTE_NO_IDEMPOTENCY},
};

int aos_api_events_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen)
{
    return aos_router_add(router, event_routes, sizeof event_routes / sizeof event_routes[0], app, err,
                          errlen);
}
