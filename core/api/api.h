/*
 * The application object handed to every handler (req->app), and the
 * registration functions of the route groups.
 */
#ifndef AOS_API_H
#define AOS_API_H

#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

struct aos_pool;
struct aos_metrics;
struct aos_router;
struct aos_http_server;

struct aos_app {
    struct aos_pool *pool;
    struct aos_metrics *metrics;
    struct aos_http_server *server;
    time_t started;
    /* NULL when ready; otherwise a static string saying why not
     * ("starting", "draining", ...). */
    _Atomic(const char *) not_ready;
};

/* /healthz, /readyz, /metrics. */
int aos_api_ops_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);

#endif
