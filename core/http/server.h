/*
 * The HTTP/1.1 server: connections, parsing (nodejs http-parser), limits,
 * timeouts, keep-alive and pipelining, on one or more libevent loops.
 *
 * Why not evhttp: it has one timeout for everything (no separate header,
 * body, write and idle timeouts), answers 400 instead of 431/414, sends HTML
 * error bodies instead of our JSON error shape, and cannot hand a socket
 * over for SSE fan-out without double buffering (PLATFORM-NOTES §10, §13).
 *
 * Process model: aos_http_server_bind() opens every listening socket (one
 * per address per loop, SO_REUSEPORT) on the main thread before privileges
 * are dropped; aos_http_server_start() starts one thread per loop.
 */
#ifndef AOS_HTTP_SERVER_H
#define AOS_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "http/router.h"

struct aos_http_server;
struct aos_http_request;
struct aos_metrics;
struct aos_loop;

/* Limits and timeouts, taken from server.* settings.  Replaceable at run
 * time (SIGHUP) with aos_http_server_set_limits. */
struct aos_http_limits {
    int64_t max_body_size;
    int64_t max_header_size;
    int max_headers;
    int max_uri_size;
    int max_json_depth;
    int max_connections;
    double header_timeout;
    double body_timeout;
    double write_timeout;
    double idle_timeout;
};

void aos_http_limits_from_conf(struct aos_http_limits *limits, const struct aos_conf_server *server);

/* router and metrics must outlive the server; app is handed to handlers
 * as req->app. */
struct aos_http_server *aos_http_server_new(const struct aos_conf_server *conf, const struct aos_router *router,
                                            struct aos_metrics *metrics, void *app);
/* The guard (the gateway chain) runs instead of the handler for every
 * routed request; it authenticates, authorises and rate-limits, then calls
 * aos_http_call_handler(req) or responds itself.  Set before start. */
typedef void (*aos_http_guard_fn)(struct aos_http_request *req);
void aos_http_server_set_guard(struct aos_http_server *server, aos_http_guard_fn guard);

/* What the server knows about one finished request, for the API journal.
 * Every pointer is valid only during the observer call: copy what you keep.
 * Never holds bodies, headers or credentials. */
struct aos_http_log_entry {
    int64_t time_ms;          /* wall clock when the response was queued */
    const char *request_id;
    const char *method;
    const char *route;        /* matched pattern, or NULL (404, refused) */
    int status;
    uint64_t latency_us;      /* request complete -> response queued */
    uint64_t bytes_in;        /* request body */
    uint64_t bytes_out;       /* response body */
    const char *peer_ip;
    const char *tenant_id;    /* principal's tenant, or NULL if unauthenticated */
    const char *principal;    /* principal's subject, or NULL */
    bool request_id_generated; /* made by the server, not sent by the client (so it holds no PII) */
};
/* Called on the request's loop thread after every response (including
 * requests refused before routing).  Must not block.  Set before start. */
typedef void (*aos_http_observer_fn)(void *arg, const struct aos_http_log_entry *entry);
void aos_http_server_set_observer(struct aos_http_server *server, aos_http_observer_fn fn, void *arg);

/* Opens the listening sockets.  Returns 0, or -1 with a message in err. */
int aos_http_server_bind(struct aos_http_server *server, char *err, size_t errlen);
/* Starts the loop threads.  Returns 0 or -1. */
int aos_http_server_start(struct aos_http_server *server);
/* Replaces limits for connections and requests from now on.  Thread-safe. */
void aos_http_server_set_limits(struct aos_http_server *server, const struct aos_http_limits *limits);
/* Stops accepting, closes idle keep-alive connections, lets requests in
 * flight finish (each response then closes its connection).  Returns at
 * once; poll aos_http_server_connections() until 0 or a deadline. */
void aos_http_server_begin_drain(struct aos_http_server *server);
bool aos_http_server_draining(const struct aos_http_server *server);
/* Open client connections across all loops. */
long aos_http_server_connections(const struct aos_http_server *server);
/* Stops the loops (closing whatever is still open) and joins them. */
void aos_http_server_stop(struct aos_http_server *server);
void aos_http_server_free(struct aos_http_server *server);

/* The HTTP loops, for components that keep per-loop state (the Redis
 * connections of the rate limiter).  Valid from _new to _free. */
int aos_http_server_loop_count(const struct aos_http_server *server);
struct aos_loop *aos_http_server_loop(const struct aos_http_server *server, int i);

/* The bound port of the first listener (useful with port 0 in tests). */
int aos_http_server_port(const struct aos_http_server *server);

#endif
