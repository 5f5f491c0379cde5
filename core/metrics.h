/*
 * Prometheus metrics: request counts by route and status, a latency
 * histogram per route, plus gauges supplied at scrape time.  Counters are
 * relaxed atomics, so every HTTP loop records without locks.
 */
#ifndef AOS_METRICS_H
#define AOS_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct aos_router;
struct aos_metrics;

struct aos_metrics_gauge {
    const char *name;  /* e.g. "aosd_plugins_loaded" */
    const char *help;
    double value;
};

/* One row of counters per route of `router` (which must outlive the
 * metrics), plus one for requests that matched no route. */
struct aos_metrics *aos_metrics_new(const struct aos_router *router);
void aos_metrics_free(struct aos_metrics *m);

/* route_index: aos_route_match.index, or -1 for unmatched requests. */
void aos_metrics_observe(struct aos_metrics *m, int route_index, const char *method, int status,
                         uint64_t duration_ns);

/* Renders the text exposition format (version 0.0.4).  Returns a malloc'd
 * NUL-terminated string (caller frees) and its length, or NULL. */
char *aos_metrics_render(struct aos_metrics *m, const struct aos_metrics_gauge *gauges, size_t ngauges,
                         size_t *len);

#endif
