#include "config.h"
/*
 * The tenant's operational figures, computed from the store by
 * store/stats.h (what counts where is stated there); nothing here is
 * estimated or made up.
 *
 *   GET /api/v1/aoa/dashboard?window=1h|24h|7d       user  (default 24h)
 *   GET /api/v1/orchestration/vitals?window=1h|24h|7d user  (default 24h)
 *
 * Both are exempt from rate limits by the default limits.exempt.
 * Dashboard:
 *   {"window":"24h","window_s":86400,"now":ms,"since":ms,
 *    "runs":{"by_status":{"queued":n,...all seven}},
 *    "throughput":{"runs_finished","steps","steps_failed","steps_per_s"},
 *    "step_latency_ms":{"count","sample","p50","p95","p99","max"},
 *    "approvals":{"pending","oldest_pending_age_ms"},
 *    "spend":{"day","month_start","today":SPEND,"month":SPEND,"budget":BUDGET,"ratio":RATIO},
 *    "agents":[{"id","name","runs":{"by_status"},"steps","steps_failed",
 *               "step_latency_ms","approvals":{"pending"},
 *               "spend":{"today","month","budget","ratio"}}],
 *    "agents_truncated":false}
 *   SPEND  = {"tokens","tokens_in","tokens_out","micro_usd","reserved_tokens","reserved_micro_usd"}
 *   BUDGET = {"tokens_day","tokens_month","micro_usd_day","micro_usd_month"}: the
 *            tenant's from config (tenant `budgets`; 0 there = none) or the
 *            agent's own; null = none
 *   RATIO  = the same keys: spent (reservations excluded) / budget, null
 *            where the budget is none or 0
 * Percentiles (nearest rank) cover the newest `sample` (at most 10000)
 * steps of the window; count and max cover all of them; null when there
 * are none.
 * Vitals:
 *   {"window","window_s","now",
 *    "queue":{"queued","ready","oldest_ready_age_ms","running","expired_leases","waiting_approval"},
 *    "steps_last_minute", "failures":{"runs","steps"},
 *    "approvals":{"pending","oldest_pending_age_ms"}}
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "http/http.h"
#include "runtime.h"
#include "store/ops.h"
#include "store/stats.h"
#include "store/store.h"

struct window {
    const char *name;
    int64_t ms;
};

static const struct window windows[] = {
    {"1h", INT64_C(3600000)},
    {"24h", INT64_C(86400000)},
    {"7d", INT64_C(604800000)},
};
#define WINDOW_DEFAULT 1 /* 24h */

struct dash_job {
    struct aos_http_request *req;
    struct aos_app *app;
    char tenant_id[AOS_ID_MAX];
    const struct window *window;
    bool vitals;
    struct aos_stats_query q;
    /* the tenant's budgets from config; -1 = none */
    int64_t budget[4];
    int rc;
    char err[512];
    struct aos_stats_dashboard dash;
    struct aos_stats_vitals vit;
};

/* ------------------------------------------------------------ rendering */

static struct json_object *count_or_null(int64_t v) { return v >= 0 ? json_object_new_int64(v) : NULL; }

/* A decimal with `decimals` places, printed as such (json-c's default
 * %.17g shows 0.1 as 0.10000000000000001). */
static struct json_object *fixed(double v, int decimals)
{
    char buf[64];

    if (snprintf(buf, sizeof buf, "%.*f", decimals, v) >= (int)sizeof buf)
        return json_object_new_double(v);
    return json_object_new_double_s(v, buf);
}

static struct json_object *age_or_null(int64_t now, int64_t t)
{
    return t >= 0 ? json_object_new_int64(now > t ? now - t : 0) : NULL;
}

static struct json_object *by_status(const int64_t runs[AOS_STATS_RUN_NSTATUS])
{
    struct json_object *o = json_object_new_object();

    for (int i = 0; i < AOS_STATS_RUN_NSTATUS; i++)
        json_object_object_add(o, aos_stats_run_status_name(i), json_object_new_int64(runs[i]));
    return o;
}

static struct json_object *runs_json(const int64_t runs[AOS_STATS_RUN_NSTATUS])
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "by_status", by_status(runs));
    return o;
}

static struct json_object *latency_json(const struct aos_stats_latency *l)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "count", json_object_new_int64(l->count));
    json_object_object_add(o, "sample", json_object_new_int64(l->sample));
    json_object_object_add(o, "p50", count_or_null(l->p50));
    json_object_object_add(o, "p95", count_or_null(l->p95));
    json_object_object_add(o, "p99", count_or_null(l->p99));
    json_object_object_add(o, "max", count_or_null(l->max));
    return o;
}

static struct json_object *spend_json(const struct aos_stats_spend *s)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "tokens", json_object_new_int64(s->tokens_in + s->tokens_out));
    json_object_object_add(o, "tokens_in", json_object_new_int64(s->tokens_in));
    json_object_object_add(o, "tokens_out", json_object_new_int64(s->tokens_out));
    json_object_object_add(o, "micro_usd", json_object_new_int64(s->micro_usd));
    json_object_object_add(o, "reserved_tokens", json_object_new_int64(s->reserved_tokens));
    json_object_object_add(o, "reserved_micro_usd", json_object_new_int64(s->reserved_micro_usd));
    return o;
}

static const char *const budget_keys[4] = {"tokens_day", "tokens_month", "micro_usd_day", "micro_usd_month"};

/* budget: tokens_day, tokens_month, micro_usd_day, micro_usd_month; -1 = none. */
static struct json_object *budget_json(const int64_t budget[4])
{
    struct json_object *o = json_object_new_object();

    for (int i = 0; i < 4; i++)
        json_object_object_add(o, budget_keys[i], count_or_null(budget[i]));
    return o;
}

static struct json_object *ratio_json(const struct aos_stats_spend *today,
                                      const struct aos_stats_spend *month, const int64_t budget[4])
{
    struct json_object *o = json_object_new_object();
    int64_t spent[4] = {today->tokens_in + today->tokens_out, month->tokens_in + month->tokens_out,
                        today->micro_usd, month->micro_usd};

    for (int i = 0; i < 4; i++)
        json_object_object_add(o, budget_keys[i],
                               budget[i] > 0 ? fixed((double)spent[i] / (double)budget[i], 6) : NULL);
    return o;
}

static struct json_object *agent_json(const struct aos_stats_agent *a)
{
    struct json_object *o = json_object_new_object(), *spend = json_object_new_object();
    struct json_object *appr = json_object_new_object();
    int64_t budget[4] = {a->budget_tokens_day, a->budget_tokens_month, a->budget_micro_usd_day,
                         a->budget_micro_usd_month};

    json_object_object_add(o, "id", json_object_new_string(a->id));
    json_object_object_add(o, "name", json_object_new_string(a->name != NULL ? a->name : ""));
    json_object_object_add(o, "runs", runs_json(a->runs));
    json_object_object_add(o, "steps", json_object_new_int64(a->latency.count));
    json_object_object_add(o, "steps_failed", json_object_new_int64(a->steps_failed));
    json_object_object_add(o, "step_latency_ms", latency_json(&a->latency));
    json_object_object_add(appr, "pending", json_object_new_int64(a->approvals_pending));
    json_object_object_add(o, "approvals", appr);
    json_object_object_add(spend, "today", spend_json(&a->today));
    json_object_object_add(spend, "month", spend_json(&a->month));
    json_object_object_add(spend, "budget", budget_json(budget));
    json_object_object_add(spend, "ratio", ratio_json(&a->today, &a->month, budget));
    json_object_object_add(o, "spend", spend);
    return o;
}

static void window_fields(struct json_object *o, const struct dash_job *j, int64_t now)
{
    json_object_object_add(o, "window", json_object_new_string(j->window->name));
    json_object_object_add(o, "window_s", json_object_new_int64(j->window->ms / 1000));
    json_object_object_add(o, "now", json_object_new_int64(now));
}

static struct json_object *dashboard_json(const struct dash_job *j)
{
    const struct aos_stats_dashboard *d = &j->dash;
    struct json_object *o = json_object_new_object(), *tp = json_object_new_object();
    struct json_object *appr = json_object_new_object(), *spend = json_object_new_object();
    struct json_object *agents = json_object_new_array();

    window_fields(o, j, d->now_ms);
    json_object_object_add(o, "since", json_object_new_int64(d->since_ms));
    json_object_object_add(o, "runs", runs_json(d->runs));
    json_object_object_add(tp, "runs_finished", json_object_new_int64(d->runs_finished));
    json_object_object_add(tp, "steps", json_object_new_int64(d->latency.count));
    json_object_object_add(tp, "steps_failed", json_object_new_int64(d->steps_failed));
    json_object_object_add(tp, "steps_per_s",
                           fixed((double)d->latency.count / ((double)j->window->ms / 1000.0), 6));
    json_object_object_add(o, "throughput", tp);
    json_object_object_add(o, "step_latency_ms", latency_json(&d->latency));
    json_object_object_add(appr, "pending", json_object_new_int64(d->approvals_pending));
    json_object_object_add(appr, "oldest_pending_age_ms",
                           age_or_null(d->now_ms, d->oldest_pending_approval_ms));
    json_object_object_add(o, "approvals", appr);
    json_object_object_add(spend, "day", json_object_new_string(d->day));
    json_object_object_add(spend, "month_start", json_object_new_string(d->month_start));
    json_object_object_add(spend, "today", spend_json(&d->today));
    json_object_object_add(spend, "month", spend_json(&d->month));
    json_object_object_add(spend, "budget", budget_json(j->budget));
    json_object_object_add(spend, "ratio", ratio_json(&d->today, &d->month, j->budget));
    json_object_object_add(o, "spend", spend);
    for (size_t i = 0; i < d->nagents; i++)
        json_object_array_add(agents, agent_json(&d->agents[i]));
    json_object_object_add(o, "agents", agents);
    json_object_object_add(o, "agents_truncated", json_object_new_boolean(d->agents_truncated));
    return o;
}

static struct json_object *vitals_json(const struct dash_job *j)
{
    const struct aos_stats_vitals *v = &j->vit;
    struct json_object *o = json_object_new_object(), *queue = json_object_new_object();
    struct json_object *fail = json_object_new_object(), *appr = json_object_new_object();

    window_fields(o, j, v->now_ms);
    json_object_object_add(queue, "queued", json_object_new_int64(v->queued));
    json_object_object_add(queue, "ready", json_object_new_int64(v->ready));
    json_object_object_add(queue, "oldest_ready_age_ms", age_or_null(v->now_ms, v->oldest_ready_ms));
    json_object_object_add(queue, "running", json_object_new_int64(v->running));
    json_object_object_add(queue, "expired_leases", json_object_new_int64(v->expired_leases));
    json_object_object_add(queue, "waiting_approval", json_object_new_int64(v->waiting_approval));
    json_object_object_add(o, "queue", queue);
    json_object_object_add(o, "steps_last_minute", json_object_new_int64(v->steps_last_minute));
    json_object_object_add(fail, "runs", json_object_new_int64(v->runs_failed));
    json_object_object_add(fail, "steps", json_object_new_int64(v->steps_failed));
    json_object_object_add(o, "failures", fail);
    json_object_object_add(appr, "pending", json_object_new_int64(v->approvals_pending));
    json_object_object_add(appr, "oldest_pending_age_ms",
                           age_or_null(v->now_ms, v->oldest_pending_approval_ms));
    json_object_object_add(o, "approvals", appr);
    return o;
}

/* ------------------------------------------------------------ work */

/* The tenant's budgets as configured now (0 in config = none). */
static void tenant_budgets(struct dash_job *j)
{
    struct aos_runtime *rt = aos_runtime_acquire();
    const struct aos_conf_tenant *t = rt != NULL ? aos_conf_tenant_find(rt->conf, j->tenant_id) : NULL;
    int64_t v[4] = {0, 0, 0, 0};

    if (t != NULL) {
        v[0] = t->budget_tokens_day;
        v[1] = t->budget_tokens_month;
        v[2] = t->budget_micro_usd_day;
        v[3] = t->budget_micro_usd_month;
    }
    for (int i = 0; i < 4; i++)
        j->budget[i] = v[i] > 0 ? v[i] : -1;
    if (rt != NULL)
        aos_runtime_release(rt);
}

static int stats_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct dash_job *j = arg;

    if (j->vitals)
        return aos_store_stats_vitals(tx, j->tenant_id, &j->q, &j->vit, err, errlen);
    /* transact may run this twice: drop a first attempt's figures. */
    aos_stats_dashboard_clear(&j->dash);
    return aos_store_stats_dashboard(tx, j->tenant_id, &j->q, &j->dash, err, errlen);
}

static void stats_work(void *arg)
{
    struct dash_job *j = arg;

    if (!j->vitals)
        tenant_budgets(j);
    j->q.now_ms = aos_store_now_ms();
    j->rc = aos_store_transact(j->app->store, false, stats_tx, j, j->err, sizeof j->err);
}

static void stats_done(void *arg)
{
    struct dash_job *j = arg;

    if (j->rc != AOS_DB_OK) {
        aos_api_store_error(j->req, j->rc, j->err);
    } else {
        aos_http_add_header(j->req, "Cache-Control", "no-store");
        aos_http_respond_json(j->req, 200, j->vitals ? vitals_json(j) : dashboard_json(j));
    }
    aos_stats_dashboard_clear(&j->dash);
    free(j);
}

static void handle(struct aos_http_request *req, bool vitals)
{
    struct dash_job *j;
    const struct window *w = &windows[WINDOW_DEFAULT];
    char name[8];
    int r = aos_api_query_get(req->query, "window", name, sizeof name);

    if (r != 0) {
        w = NULL;
        for (size_t i = 0; r == 1 && i < sizeof windows / sizeof windows[0]; i++)
            if (strcmp(name, windows[i].name) == 0)
                w = &windows[i];
        if (w == NULL) {
            aos_http_respond_error(req, 400, "invalid_query", "window must be 1h, 24h or 7d");
            return;
        }
    }
    j = calloc(1, sizeof *j);
    if (j == NULL) {
        aos_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    j->req = req;
    j->app = req->app;
    snprintf(j->tenant_id, sizeof j->tenant_id, "%s", req->principal.tenant_id);
    j->window = w;
    j->vitals = vitals;
    j->q.window_ms = w->ms;
    j->q.sample_max = AOS_STATS_SAMPLE_MAX;
    j->q.agents_max = AOS_STATS_AGENTS_MAX;
    if (aos_http_defer(req, j->app->pool, stats_work, stats_done, j) != 0)
        free(j);
}

static void handle_dashboard(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    handle(req, false);
}

static void handle_vitals(struct aos_http_request *req, void *ctx)
{
    (void)ctx;
    handle(req, true);
}

static const struct aos_route dashboard_routes[] = {
    {"GET", "/api/v1/aoa/dashboard", handle_dashboard, AOS_ROLE_USER, 0},
    {"GET", "/api/v1/orchestration/vitals", handle_vitals, AOS_ROLE_USER, 0},
};

int aos_api_dashboard_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen)
{
    return aos_router_add(router, dashboard_routes, sizeof dashboard_routes / sizeof dashboard_routes[0], app,
                          err, errlen);
}
