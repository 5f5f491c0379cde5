/*
 * The request/response API handlers use.
 *
 * Threading: a request belongs to one HTTP loop.  Its handler runs on that
 * loop's thread and must not block: blocking work goes through
 * aos_http_defer(), whose `done` callback runs back on the same loop.
 *
 * Lifetime: the server owns the request.  Every field stays valid until the
 * handler (or its deferred completion) calls exactly one aos_http_respond*
 * function; after that the request is gone.  If the client disconnects
 * while work is deferred, the request stays valid and the response is
 * simply discarded (aos_http_client_gone() tells).
 */
#ifndef AOS_HTTP_H
#define AOS_HTTP_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/router.h"

#include <aos/plugin.h>

struct aos_loop;
struct aos_pool;
struct aos_http_conn;

struct aos_http_header {
    const char *name;   /* as sent, NUL-terminated */
    const char *value;  /* NUL-terminated, surrounding whitespace trimmed */
    size_t value_len;
};

struct aos_http_request {
    const char *method;        /* "GET", "POST", ... */
    const char *path;          /* raw path without query, NUL-terminated */
    size_t path_len;
    const char *query;         /* raw query string without '?', or NULL */
    const struct aos_http_header *headers;
    size_t nheaders;
    const char *body;          /* NUL-terminated for convenience; may contain NULs */
    size_t body_len;
    const char *request_id;    /* echoed X-Request-ID or a generated one */
    const char *peer_ip;       /* client address text */
    bool head;                 /* HEAD request: the body is not sent */
    uint64_t start_ns;         /* CLOCK_MONOTONIC at headers complete */
    struct aos_route_match match;
    struct aos_loop *loop;     /* the loop that owns this request */
    void *app;                 /* the application context given to the server */
    /* Set by the auth guard before the handler of a protected route runs:
     * the request's tenant is principal.tenant_id, never anything from
     * the input. */
    bool authenticated;
    struct aos_principal principal;

    /* Called once by aos_http_respond* with the final response, before it
     * is queued.  Must not block.  Returning true means the hook took the
     * response over: it keeps copies and calls aos_http_respond again
     * later (the idempotency step first stores the response, so that a
     * client who has seen it always gets it replayed). */
    bool (*respond_hook)(struct aos_http_request *req, int status, const char *content_type, const void *body,
                         size_t len, void *arg);
    void *respond_hook_arg;

    /* private to the server */
    struct aos_http_conn *conn;
    char *out_headers;         /* "Name: value\r\n"... added by aos_http_add_header */
    size_t out_headers_len;
    size_t out_headers_cap;
    bool responded;
};

/* How many request headers are named `name` (case-insensitive). */
size_t aos_http_header_count(const struct aos_http_request *req, const char *name);
/* Case-insensitive header lookup; first match or NULL. */
const char *aos_http_header(const struct aos_http_request *req, const char *name);
/* Value of path parameter `name` of the matched route, or NULL. */
const char *aos_http_param(const struct aos_http_request *req, const char *name);

/* Adds a response header (copied).  Names and values must not contain CR,
 * LF or NUL; offending headers are dropped with a log line. */
void aos_http_add_header(struct aos_http_request *req, const char *name, const char *value);

/* Sends the response and ends the request.  body is copied. */
void aos_http_respond(struct aos_http_request *req, int status, const char *content_type, const void *body,
                      size_t len);
/* Sends obj as application/json and drops the caller's reference. */
void aos_http_respond_json(struct aos_http_request *req, int status, struct json_object *obj);
/* Sends {"error":{"code","message","request_id"}}. */
void aos_http_respond_error(struct aos_http_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parses the body as a JSON object within the server's limits.  On failure
 * it has already responded (415 without a JSON content type, 400 for bad
 * JSON, naming the problem) and returns NULL.  The caller owns the result. */
struct json_object *aos_http_body_json(struct aos_http_request *req);

/* Runs work(arg) on the pool, then done(arg) on this request's loop.  If the
 * pool is saturated it responds 503 with Retry-After and returns -1 (then
 * neither function runs and arg still belongs to the caller). */
int aos_http_defer(struct aos_http_request *req, struct aos_pool *pool, void (*work)(void *),
                   void (*done)(void *), void *arg);

/* True if the client has disconnected (a deferred response will be dropped). */
bool aos_http_client_gone(const struct aos_http_request *req);

/* Socket takeover, for streams (SSE) that the caller writes itself.
 *
 * Answers the request with `status`, the headers added so far,
 * Content-Type content_type and "Connection: close", without
 * Content-Length: the body runs until the socket closes.  body[0..len)
 * (copied; may be empty) follows the headers.  Once all of that has been
 * written, the connection leaves the HTTP server (no timeouts, no
 * connection count, no drain) and fn(fd, arg) runs on the request's loop
 * thread with the socket, non-blocking: fn owns it from then on and must
 * close it.  If the client leaves, the write times out, or the server
 * stops first, fn(-1, arg) runs instead (exactly one call either way).
 *
 * Only for a GET request with nothing pipelined behind it: returns -1 and
 * does nothing (the request is still the caller's to answer) for HEAD,
 * when more bytes have already arrived after the request, or when the
 * client is gone.  Returns 0 otherwise; the request is then finished, as
 * after aos_http_respond (metrics and the journal see `status`). */
typedef void (*aos_http_takeover_fn)(int fd, void *arg);
int aos_http_takeover(struct aos_http_request *req, int status, const char *content_type, const void *body,
                      size_t len, aos_http_takeover_fn fn, void *arg);

/* Runs the matched route's handler.  For the auth guard, once it has let
 * the request through (possibly after deferred work). */
void aos_http_call_handler(struct aos_http_request *req);

/* Reason phrase for a status code. */
const char *aos_http_reason(int status);

#endif
