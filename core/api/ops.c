#include "config.h"

#include "api/api.h"

#include "events/events.h"
#include "orch/engine.h"
#include "http/http.h"
#include "gateway/journal.h"
#include "http/server.h"
#include "metrics.h"
#include "plugin.h"
#include "runtime.h"
#include "store/store.h"
#include "threadpool.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Liveness: the loop answers.  Deliberately checks nothing else, so an
 * orchestrator restarts us only when we are truly stuck. */
static void handle_healthz(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    static const char body[] = "{\"status\":\"ok\"}";
    aos_http_respond(req, 200, "application/json", body, sizeof body - 1);
}

static void respond_readiness(struct aos_http_request *req, struct aos_app *app)
{
    char reason[384];
    struct json_object *obj = json_object_new_object();
    if (aos_app_ready(app, reason, sizeof reason)) {
        json_object_object_add(obj, "status", json_object_new_string("ready"));
        aos_http_respond_json(req, 200, obj);
        return;
    }
    json_object_object_add(obj, "status", json_object_new_string("not_ready"));
    json_object_object_add(obj, "reason", json_object_new_string(reason));
    aos_http_add_header(req, "Retry-After", "1");
    aos_http_respond_json(req, 503, obj);
}

struct readyz_ping {
    struct aos_http_request *req;
    struct aos_app *app;
    int rc;
    char err[256];
};

static void readyz_ping_work(void *arg)
{
    struct readyz_ping *p = arg;
    p->rc = aos_store_ping(p->app->store, p->err, sizeof p->err);
}

static void readyz_ping_done(void *arg)
{
    struct readyz_ping *p = arg;
    aos_app_set_unready(p->app, AOS_UNREADY_STORE, p->rc != AOS_DB_OK, p->err);
    respond_readiness(p->req, p->app);
    free(p);
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Readiness: start-up finished (plugins loaded, store connected and
 * migrated), the store still answers, not draining.  Load balancers take
 * the node out of rotation on 503.  The store is pinged at most once a
 * second, so a flood of probes cannot saturate the worker pool. */
static void handle_readyz(struct aos_http_request *req, void *ctx)
{
    struct aos_app *app = ctx;
    static _Atomic uint64_t last_ping_ms;
    uint64_t now = monotonic_ms(), last = atomic_load(&last_ping_ms);
    /* During start-up the bring-up loop owns the store condition. */
    if (app->store == NULL || aos_app_unready(app, AOS_UNREADY_STARTING) || now - last < 1000 ||
        !atomic_compare_exchange_strong(&last_ping_ms, &last, now)) {
        respond_readiness(req, app);
        return;
    }
    struct readyz_ping *p = calloc(1, sizeof *p);
    if (p == NULL) {
        respond_readiness(req, app);
        return;
    }
    p->req = req;
    p->app = app;
    if (aos_http_defer(req, app->pool, readyz_ping_work, readyz_ping_done, p) != 0)
        free(p);
}

static void handle_metrics(struct aos_http_request *req, void *ctx)
{
    struct aos_app *app = ctx;
    struct aos_runtime *rt = aos_runtime_acquire();
    double plugins = rt != NULL ? (double)aos_plugin_set_count(rt->plugins) : 0;
    double generation = rt != NULL ? (double)rt->generation : 0;
    aos_runtime_release(rt);
    struct aos_journal_stats js = {0};
    if (app->journal != NULL)
        aos_journal_get_stats(app->journal, &js);
    struct aos_events_stats es;
    aos_events_get_stats(app->events, &es);
    struct aos_engine_stats en;
    aos_engine_get_stats(app->engine, &en);
    const struct aos_metrics_gauge gauges[] = {
        {"aosd_plugins_loaded", "Plugins loaded and initialised.", plugins},
        {"aosd_config_generation", "Configuration generation in force (1 at start, +1 per reload).", generation},
        {"aosd_http_connections", "Open client connections.", (double)aos_http_server_connections(app->server)},
        {"aosd_pool_pending_jobs", "Blocking jobs queued or running.", (double)aos_pool_pending(app->pool)},
        {"aosd_ready", "1 when ready to serve.", aos_app_ready(app, NULL, 0) ? 1.0 : 0.0},
        {"aosd_uptime_seconds", "Seconds since start.", difftime(time(NULL), app->started)},
        {"aosd_journal_written", "Journal rows committed.", (double)js.written},
        {"aosd_journal_dropped", "Journal entries lost (queue full, or store down at shutdown).", (double)js.dropped},
        {"aosd_journal_failed_batches", "Journal write transactions that failed.", (double)js.failed_batches},
        {"aosd_journal_unattributed", "Requests without a tenant, not journaled.", (double)js.unattributed},
        {"aosd_journal_queued", "Journal entries waiting to be written.", (double)js.queued},
        {"aosd_events_streams", "Open SSE event streams.", (double)es.subscribers},
        {"aosd_events_delivered", "Event frames written to SSE streams.", (double)es.delivered},
        {"aosd_events_slow_disconnects", "SSE streams cut off for exceeding events.client_buffer.",
         (double)es.slow_disconnects},
        {"aosd_events_refused", "SSE streams refused at events.max_subscribers.", (double)es.refused},
        {"aosd_events_high_water", "Highest event id read by this node.", (double)es.high_water},
        {"aosd_events_poll_failures", "Reads of new events from the store that failed.", (double)es.poll_failures},
        {"aosd_events_redis_up", "1 while subscribed to the Redis wake-up channel.", es.redis_up ? 1.0 : 0.0},
        {"aosd_events_redis_wakeups", "Wake-ups received from other nodes through Redis.", (double)es.redis_wakeups},
        {"aosd_engine_workers", "Engine worker threads.", (double)en.workers},
        {"aosd_engine_busy_workers", "Engine workers executing a run now.", (double)en.busy},
        {"aosd_engine_steps", "Step calls made (every attempt).", (double)en.steps},
        {"aosd_engine_checkpoints", "Checkpoints committed.", (double)en.checkpoints},
        {"aosd_engine_commits", "Group-commit transactions (checkpoints / commits = batch size).", (double)en.commits},
        {"aosd_engine_retries", "Step attempts that failed and were retried.", (double)en.retries},
        {"aosd_engine_lease_lost", "Step results dropped because the run's lease had been lost.", (double)en.lease_lost},
        {"aosd_engine_claims", "Runs claimed from the queue.", (double)en.claims},
        {"aosd_engine_takeovers", "Runs taken over after their lease expired.", (double)en.takeovers},
    };
    size_t len = 0;
    char *text = aos_metrics_render(app->metrics, gauges, sizeof gauges / sizeof gauges[0], &len);
    if (text == NULL) {
        aos_http_respond_error(req, 500, "internal", "cannot render metrics");
        return;
    }
    aos_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static const struct aos_route ops_routes[] = {
    {"GET", "/healthz", handle_healthz, AOS_ROLE_NONE, 0},
    {"GET", "/readyz", handle_readyz, AOS_ROLE_NONE, 0},
    {"GET", "/metrics", handle_metrics, AOS_ROLE_NONE, 0},
};

int aos_api_ops_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen)
{
    return aos_router_add(router, ops_routes, sizeof ops_routes / sizeof ops_routes[0], app, err, errlen);
}
