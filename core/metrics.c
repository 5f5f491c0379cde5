#include "config.h"

#include "metrics.h"

#include "http/router.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statuses the API uses get their own counter; anything else is counted
 * per class so a cardinality explosion is impossible. */
static const int tracked_statuses[] = {200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408,
                                       409, 410, 413, 414, 415, 422, 429, 431, 500, 501, 502, 503, 504};
#define NTRACKED (sizeof tracked_statuses / sizeof tracked_statuses[0])
#define NSTATUS (NTRACKED + 5) /* + other 1xx..5xx */

static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
#define NBUCKETS (sizeof bucket_bounds / sizeof bucket_bounds[0])

/* HEAD is folded into GET routes by the router; the method label comes
 * from the route, except for unmatched requests where it is the request's. */
struct route_row {
    atomic_uint_fast64_t by_status[NSTATUS];
    atomic_uint_fast64_t buckets[NBUCKETS + 1]; /* last = +Inf overflow */
    atomic_uint_fast64_t sum_ns;
    atomic_uint_fast64_t count;
};

struct aos_metrics {
    const struct aos_router *router;
    size_t nroutes;
    struct route_row *rows; /* nroutes + 1; the last is "unmatched" */
};

struct aos_metrics *aos_metrics_new(const struct aos_router *router)
{
    struct aos_metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->router = router;
    m->nroutes = router != NULL ? aos_router_count(router) : 0;
    m->rows = calloc(m->nroutes + 1, sizeof *m->rows);
    if (m->rows == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void aos_metrics_free(struct aos_metrics *m)
{
    if (m == NULL)
        return;
    free(m->rows);
    free(m);
}

static size_t status_slot(int status)
{
    for (size_t i = 0; i < NTRACKED; i++)
        if (tracked_statuses[i] == status)
            return i;
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    return NTRACKED + (size_t)(cls - 1);
}

void aos_metrics_observe(struct aos_metrics *m, int route_index, const char *method, int status,
                         uint64_t duration_ns)
{
    (void)method;
    size_t row = route_index >= 0 && (size_t)route_index < m->nroutes ? (size_t)route_index : m->nroutes;
    struct route_row *r = &m->rows[row];
    atomic_fetch_add_explicit(&r->by_status[status_slot(status)], 1, memory_order_relaxed);
    double secs = (double)duration_ns / 1e9;
    size_t b = 0;
    while (b < NBUCKETS && secs > bucket_bounds[b])
        b++;
    atomic_fetch_add_explicit(&r->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sum_ns, duration_ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
}

static void route_labels(const struct aos_metrics *m, size_t row, char *buf, size_t len)
{
    const struct aos_route *route = row < m->nroutes ? aos_router_route(m->router, (int)row) : NULL;
    if (route != NULL)
        snprintf(buf, len, "route=\"%s\",method=\"%s\"", route->pattern, route->method);
    else
        snprintf(buf, len, "route=\"unmatched\",method=\"\"");
}

static void status_label(size_t slot, char *buf, size_t len)
{
    if (slot < NTRACKED)
        snprintf(buf, len, "%d", tracked_statuses[slot]);
    else
        snprintf(buf, len, "%zuxx", slot - NTRACKED + 1);
}

char *aos_metrics_render(struct aos_metrics *m, const struct aos_metrics_gauge *gauges, size_t ngauges,
                         size_t *len)
{
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    if (f == NULL)
        return NULL;
    char labels[512], status[16];

    fputs("# HELP aosd_http_requests_total HTTP requests answered, by route and status.\n"
          "# TYPE aosd_http_requests_total counter\n",
          f);
    for (size_t row = 0; row <= m->nroutes; row++) {
        route_labels(m, row, labels, sizeof labels);
        for (size_t s = 0; s < NSTATUS; s++) {
            uint64_t v = atomic_load_explicit(&m->rows[row].by_status[s], memory_order_relaxed);
            if (v == 0)
                continue;
            status_label(s, status, sizeof status);
            fprintf(f, "aosd_http_requests_total{%s,status=\"%s\"} %llu\n", labels, status,
                    (unsigned long long)v);
        }
    }

    fputs("# HELP aosd_http_request_duration_seconds Time from complete request headers to response queued.\n"
          "# TYPE aosd_http_request_duration_seconds histogram\n",
          f);
    for (size_t row = 0; row <= m->nroutes; row++) {
        struct route_row *r = &m->rows[row];
        uint64_t count = atomic_load_explicit(&r->count, memory_order_relaxed);
        if (count == 0)
            continue;
        route_labels(m, row, labels, sizeof labels);
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= NBUCKETS; b++) {
            cumulative += atomic_load_explicit(&r->buckets[b], memory_order_relaxed);
            if (b < NBUCKETS)
                fprintf(f, "aosd_http_request_duration_seconds_bucket{%s,le=\"%g\"} %llu\n", labels,
                        bucket_bounds[b], (unsigned long long)cumulative);
            else
                fprintf(f, "aosd_http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %llu\n", labels,
                        (unsigned long long)cumulative);
        }
        fprintf(f, "aosd_http_request_duration_seconds_sum{%s} %.9f\n", labels,
                (double)atomic_load_explicit(&r->sum_ns, memory_order_relaxed) / 1e9);
        /* Counters are read one by one while loops keep counting, so the
         * +Inf bucket (summed) is the count that matches the buckets. */
        fprintf(f, "aosd_http_request_duration_seconds_count{%s} %llu\n", labels,
                (unsigned long long)cumulative);
    }

    for (size_t i = 0; i < ngauges; i++)
        fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", gauges[i].name, gauges[i].help, gauges[i].name,
                gauges[i].name, gauges[i].value);

    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    *len = outlen;
    return out;
}
