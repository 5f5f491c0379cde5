#include "config.h"

#include "http/server.h"

#include "http/http.h"
#include "json.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "threadpool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <http_parser.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024
#define REQUEST_ID_MAX 128

enum conn_state {
    CS_IDLE,     /* waiting for the first byte of a request */
    CS_HEADERS,  /* request line / headers arriving */
    CS_BODY,     /* body arriving */
    CS_HANDLING, /* handler (or deferred work) owns the request */
    CS_WRITING,  /* response queued, waiting for the socket to take it */
    CS_LINGER,   /* refused mid-request: response sent, discarding input before close */
    CS_TAKEOVER, /* stream headers queued; the socket leaves the server once they are written */
};

/* How long a refused client may keep sending before we close for good. */
#define LINGER_SECONDS 2.0

struct hloop;

/* A growable byte buffer: the request line and headers are copied into it
 * as http-parser hands out fragments that may span several reads. */
struct bytes {
    char *data;
    size_t len;
    size_t cap;
};

struct header_slot {
    size_t name_off;
    size_t value_off;
};

struct req_impl {
    struct aos_http_request pub; /* first: handlers see only this */
    struct bytes raw;            /* url \0 name \0 value \0 name \0 ... */
    size_t url_len;
    struct header_slot *slots;
    struct aos_http_header *headers;
    size_t nheaders;
    size_t cap_headers;
    int last_cb;                 /* 0 none, 1 field, 2 value */
    struct bytes body;
    char method[16];
    char request_id[REQUEST_ID_MAX + 1];
    bool request_id_generated;
    bool keep_alive;
    bool http10;
};

struct aos_http_conn {
    struct aos_http_conn *prev;
    struct aos_http_conn *next;
    struct hloop *hl;
    struct bufferevent *bev;
    struct event *timer;
    http_parser parser;
    enum conn_state state;
    struct req_impl *req;        /* request being parsed or handled */
    size_t header_bytes;
    /* Set by a parser callback that refuses the request. */
    int fail_status;
    const char *fail_code;
    char fail_msg[160];
    bool close_after_write;
    bool linger;
    bool read_paused;
    char peer_ip[INET6_ADDRSTRLEN];
    /* CS_TAKEOVER: who gets the socket (aos_http_takeover) */
    aos_http_takeover_fn takeover_fn;
    void *takeover_arg;
};

struct listen_socket {
    evutil_socket_t fd;
};

struct hloop {
    struct aos_http_server *server;
    struct aos_loop *loop;
    int index;
    struct listen_socket *sockets; /* one per listen address, owned until listeners take them */
    struct evconnlistener **listeners;
    size_t nlisteners;
    struct aos_http_conn *conns;
    struct aos_http_limits limits; /* this loop's copy; replaced by posts */
    uint64_t request_seq;
    time_t date_sec;
    char date[40];
};

struct aos_http_server {
    const struct aos_conf_server *conf; /* listen addresses: read only by bind, before start */
    const struct aos_router *router;
    struct aos_metrics *metrics;
    void *app;
    aos_http_guard_fn guard;
    aos_http_observer_fn observer;
    void *observer_arg;
    struct aos_http_limits initial_limits;
    struct hloop *loops;
    int nloops;
    size_t naddrs;
    int port;
    atomic_long connections;
    atomic_bool draining;
    bool started;
    char boot_id[17]; /* random per process: request ids stay unique across restarts */
};

static http_parser_settings parser_settings;

/* ------------------------------------------------------------------ utils */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void observe(struct aos_http_server *server, const struct aos_http_log_entry *e)
{
    if (server->observer != NULL)
        server->observer(server->observer_arg, e);
}

static struct timeval seconds_tv(double s)
{
    struct timeval tv;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    return tv;
}

static int bytes_append(struct bytes *b, const char *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (p == NULL)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

/* Appends a terminator that is part of the data (separates strings). */
static int bytes_terminate(struct bytes *b)
{
    if (bytes_append(b, "", 0) != 0)
        return -1;
    b->len++; /* keep the NUL written by bytes_append */
    return 0;
}

const char *aos_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static const char *loop_date(struct hloop *hl)
{
    time_t now = time(NULL);
    if (now != hl->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(hl->date, sizeof hl->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        hl->date_sec = now;
    }
    return hl->date;
}

/* X-Request-ID values are echoed into headers and logs: accept only a
 * conservative alphabet so a client cannot inject anything. */
static bool request_id_valid(const char *s, size_t len)
{
    if (len == 0 || len > REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.' || c == ':'))
            return false;
    }
    return true;
}

static void make_request_id(struct hloop *hl, char *out, size_t len)
{
    snprintf(out, len, "%s-%x-%llx", hl->server->boot_id, (unsigned)hl->index,
             (unsigned long long)++hl->request_seq);
}

/* ----------------------------------------------------------- lifecycle */

static void req_free(struct req_impl *r)
{
    if (r == NULL)
        return;
    aos_route_match_release(&r->pub.match);
    if (r->pub.out_headers != NULL)
        evbuffer_free(r->pub.out_headers);
    free(r->raw.data);
    free(r->slots);
    free(r->headers);
    free(r->body.data);
    free(r);
}

static void conn_arm_timer(struct aos_http_conn *c, double seconds)
{
    struct timeval tv = seconds_tv(seconds);
    evtimer_add(c->timer, &tv);
}

static void conn_free(struct aos_http_conn *c)
{
    struct hloop *hl = c->hl;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        hl->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->req != NULL) {
        if (c->state == CS_HANDLING) {
            /* The handler still holds the request (deferred work): it frees
             * it when it responds; the response goes nowhere. */
            c->req->pub.conn = NULL;
        } else {
            req_free(c->req);
        }
    }
    event_free(c->timer);
    bufferevent_free(c->bev); /* closes the socket (unless a takeover detached it) */
    aos_http_takeover_fn takeover_fn = c->takeover_fn;
    void *takeover_arg = c->takeover_arg;
    free(c);
    atomic_fetch_sub(&hl->server->connections, 1);
    /* A takeover that never completed still owes its caller one call. */
    if (takeover_fn != NULL)
        takeover_fn(-1, takeover_arg);
}

static void conn_parse(struct aos_http_conn *c);

/* ------------------------------------------------------------ responses */

/* After refusing a request whose body may still be arriving, closing at
 * once would make the kernel answer the unread bytes with a RST that can
 * destroy our error response in flight.  Half-close, discard, then close
 * (nginx calls this lingering close). */
static void conn_start_linger(struct aos_http_conn *c)
{
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    c->state = CS_LINGER;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_enable(c->bev, EV_READ);
    conn_arm_timer(c, LINGER_SECONDS);
}

static void conn_write_done(struct aos_http_conn *c)
{
    if (c->close_after_write || atomic_load(&c->hl->server->draining)) {
        if (c->linger)
            conn_start_linger(c);
        else
            conn_free(c);
        return;
    }
    c->state = CS_IDLE;
    c->header_bytes = 0;
    conn_arm_timer(c, c->hl->limits.idle_timeout);
    if (c->read_paused) {
        bufferevent_enable(c->bev, EV_READ);
        c->read_paused = false;
    }
    /* Pipelined requests may already sit in the input buffer: no read
     * event will announce them again. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        conn_parse(c);
}

/* The stream's headers are out: hand the socket over and forget it. */
static void conn_takeover_done(struct aos_http_conn *c)
{
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    aos_http_takeover_fn fn = c->takeover_fn;
    void *arg = c->takeover_arg;
    c->takeover_fn = NULL;
    /* Detached first, so that freeing the bufferevent leaves it open. */
    if (fd < 0 || bufferevent_setfd(c->bev, -1) != 0) {
        conn_free(c);
        fn(-1, arg);
        return;
    }
    conn_free(c);
    fn((int)fd, arg);
}

static void conn_on_write(struct bufferevent *bev, void *arg)
{
    struct aos_http_conn *c = arg;
    (void)bev;
    if (c->state == CS_WRITING)
        conn_write_done(c);
    else if (c->state == CS_TAKEOVER)
        conn_takeover_done(c);
}

/* Queues status line, headers and body on the connection. */
static void conn_queue_response(struct aos_http_conn *c, int status, const char *content_type,
                                struct evbuffer *extra_headers, const char *request_id, const void *body,
                                size_t len, bool send_body)
{
    struct hloop *hl = c->hl;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    bool close = c->close_after_write || atomic_load(&hl->server->draining);
    bool http10 = c->req != NULL && c->req->http10;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Length: %zu\r\nX-Request-ID: %s\r\n"
                        "X-Content-Type-Options: nosniff\r\n",
                        status, aos_http_reason(status), loop_date(hl), len, request_id);
    if (content_type != NULL)
        evbuffer_add_printf(out, "Content-Type: %s\r\n", content_type);
    if (close)
        evbuffer_add(out, "Connection: close\r\n", 19);
    else if (http10)
        evbuffer_add(out, "Connection: keep-alive\r\n", 24);
    if (extra_headers != NULL)
        evbuffer_add_buffer(out, extra_headers);
    evbuffer_add(out, "\r\n", 2);
    if (send_body && len > 0)
        evbuffer_add(out, body, len);
    c->close_after_write = close;
    c->state = CS_WRITING;
    evtimer_del(c->timer);
    struct timeval wtv = seconds_tv(hl->limits.write_timeout);
    bufferevent_set_timeouts(c->bev, NULL, &wtv);
}

static struct json_object *error_object(const char *code, const char *message, const char *request_id)
{
    return aos_json_error(code, message, request_id);
}

/* Answers a request that never reached a handler (parse errors, limits,
 * timeouts) and closes the connection afterwards: after a framing error
 * the rest of the stream cannot be trusted. */
static void conn_fail(struct aos_http_conn *c, int status, const char *code, const char *message)
{
    char rid[REQUEST_ID_MAX + 1];
    const char *request_id = rid;
    bool generated = true;
    if (c->req != NULL && c->req->request_id[0] != '\0') {
        request_id = c->req->request_id;
        generated = c->req->request_id_generated;
    } else {
        make_request_id(c->hl, rid, sizeof rid);
    }
    struct json_object *obj = error_object(code, message, request_id);
    size_t len = 0;
    const char *text = obj != NULL ? aos_json_text(obj, &len) : "";
    c->close_after_write = true;
    c->linger = true;
    bufferevent_disable(c->bev, EV_READ);
    conn_queue_response(c, status, "application/json", NULL, request_id, text, len, true);
    aos_metrics_observe(c->hl->server->metrics, -1, NULL, status, 0);
    struct aos_http_log_entry entry = {
        .time_ms = wall_ms(),
        .request_id = request_id,
        .request_id_generated = generated,
        .method = c->req != NULL && c->req->method[0] != '\0' ? c->req->method : "-",
        .status = status,
        .bytes_out = len,
        .peer_ip = c->peer_ip,
    };
    observe(c->hl->server, &entry);
    aos_log(AOS_LVL_INFO, "request refused", "status", code, "client", c->peer_ip, "request_id", request_id,
            "reason", message, NULL);
    if (obj != NULL)
        json_object_put(obj);
    if (c->req != NULL) {
        req_free(c->req);
        c->req = NULL;
    }
}

static bool header_text_ok(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return false;
    return true;
}

void aos_http_add_header(struct aos_http_request *req, const char *name, const char *value)
{
    if (!header_text_ok(name) || !header_text_ok(value)) {
        aos_warn("response header dropped: contains CR or LF", "header", name, NULL);
        return;
    }
    if (req->out_headers == NULL && (req->out_headers = evbuffer_new()) == NULL)
        return;
    evbuffer_add_printf(req->out_headers, "%s: %s\r\n", name, value);
}

void aos_http_respond(struct aos_http_request *req, int status, const char *content_type, const void *body,
                      size_t len)
{
    struct req_impl *r = (struct req_impl *)req;
    aos_assert(!req->responded);
    if (req->respond_hook != NULL) {
        bool (*hook)(struct aos_http_request *, int, const char *, const void *, size_t, void *) = req->respond_hook;
        req->respond_hook = NULL;
        if (hook(req, status, content_type, body, len, req->respond_hook_arg))
            return; /* the hook sends this response later, itself */
    }
    req->responded = true;
    struct aos_http_conn *c = req->conn;
    if (c == NULL) {
        /* Client left while the work ran. */
        req_free(r);
        return;
    }
    if (!r->keep_alive)
        c->close_after_write = true;
    conn_queue_response(c, status, content_type, req->out_headers, r->request_id, body, len, !req->head);
    uint64_t elapsed = now_ns() - req->start_ns;
    aos_metrics_observe(c->hl->server->metrics, req->match.route != NULL ? req->match.index : -1, req->method,
                        status, elapsed);
    struct aos_http_log_entry entry = {
        .time_ms = wall_ms(),
        .request_id = r->request_id,
        .request_id_generated = r->request_id_generated,
        .method = req->method,
        .route = req->match.route != NULL ? req->match.route->pattern : NULL,
        .status = status,
        .latency_us = elapsed / 1000,
        .bytes_in = req->body_len,
        .bytes_out = req->head ? 0 : len,
        .peer_ip = c->peer_ip,
        .tenant_id = req->authenticated ? req->principal.tenant_id : NULL,
        .principal = req->authenticated ? req->principal.subject : NULL,
    };
    observe(c->hl->server, &entry);
    c->req = NULL;
    req_free(r);
}

void aos_http_respond_json(struct aos_http_request *req, int status, struct json_object *obj)
{
    size_t len = 0;
    const char *text = obj != NULL ? aos_json_text(obj, &len) : "null";
    if (obj == NULL)
        len = 4;
    aos_http_respond(req, status, "application/json", text, len);
    if (obj != NULL)
        json_object_put(obj);
}

void aos_http_respond_error(struct aos_http_request *req, int status, const char *code, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    struct req_impl *r = (struct req_impl *)req;
    aos_http_respond_json(req, status, error_object(code, message, r->request_id));
}

int aos_http_takeover(struct aos_http_request *req, int status, const char *content_type, const void *body,
                      size_t len, aos_http_takeover_fn fn, void *arg)
{
    struct req_impl *r = (struct req_impl *)req;
    struct aos_http_conn *c = req->conn;
    aos_assert(!req->responded && fn != NULL);
    if (c == NULL || req->head || strcmp(req->method, "GET") != 0 ||
        evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        return -1;
    struct hloop *hl = c->hl;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    req->responded = true;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nDate: %s\r\nX-Request-ID: %s\r\nX-Content-Type-Options: nosniff\r\n"
                        "Content-Type: %s\r\nConnection: close\r\n",
                        status, aos_http_reason(status), loop_date(hl), r->request_id,
                        content_type != NULL ? content_type : "application/octet-stream");
    if (req->out_headers != NULL)
        evbuffer_add_buffer(out, req->out_headers);
    evbuffer_add(out, "\r\n", 2);
    if (len > 0)
        evbuffer_add(out, body, len);
    uint64_t elapsed = now_ns() - req->start_ns;
    aos_metrics_observe(hl->server->metrics, req->match.route != NULL ? req->match.index : -1, req->method, status,
                        elapsed);
    struct aos_http_log_entry entry = {
        .time_ms = wall_ms(),
        .request_id = r->request_id,
        .request_id_generated = r->request_id_generated,
        .method = req->method,
        .route = req->match.route != NULL ? req->match.route->pattern : NULL,
        .status = status,
        .latency_us = elapsed / 1000,
        .bytes_in = req->body_len,
        .bytes_out = len,
        .peer_ip = c->peer_ip,
        .tenant_id = req->authenticated ? req->principal.tenant_id : NULL,
        .principal = req->authenticated ? req->principal.subject : NULL,
    };
    observe(hl->server, &entry);
    c->req = NULL;
    req_free(r);
    c->state = CS_TAKEOVER;
    c->takeover_fn = fn;
    c->takeover_arg = arg;
    c->close_after_write = true;
    evtimer_del(c->timer);
    /* Reading stays paused (one request at a time): bytes sent after the
     * request are the new owner's to discard. */
    struct timeval wtv = seconds_tv(hl->limits.write_timeout);
    bufferevent_set_timeouts(c->bev, NULL, &wtv);
    return 0;
}

const char *aos_http_header(const struct aos_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

size_t aos_http_header_count(const struct aos_http_request *req, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            n++;
    return n;
}

const char *aos_http_param(const struct aos_http_request *req, const char *name)
{
    return aos_route_param(&req->match, name);
}

bool aos_http_client_gone(const struct aos_http_request *req) { return req->conn == NULL; }

struct json_object *aos_http_body_json(struct aos_http_request *req)
{
    const char *ct = aos_http_header(req, "Content-Type");
    if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0 ||
        (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
        aos_http_respond_error(req, 415, "unsupported_media_type",
                               "request body must be JSON (Content-Type: application/json)");
        return NULL;
    }
    char err[256];
    struct aos_http_conn *c = req->conn;
    int depth = c != NULL ? c->hl->limits.max_json_depth : 32;
    struct json_object *obj = aos_json_parse_object(req->body, req->body_len, depth, err, sizeof err);
    if (obj == NULL)
        aos_http_respond_error(req, 400, "invalid_json", "%s", err);
    return obj;
}

int aos_http_defer(struct aos_http_request *req, struct aos_pool *pool, void (*work)(void *),
                   void (*done)(void *), void *arg)
{
    if (aos_pool_submit(pool, work, done, req->loop, arg) == 0)
        return 0;
    aos_http_add_header(req, "Retry-After", "1");
    aos_http_respond_error(req, 503, "overloaded", "server is busy; retry shortly");
    return -1;
}

/* -------------------------------------------------------------- parsing */

static struct req_impl *conn_req(struct aos_http_conn *c)
{
    if (c->req == NULL) {
        c->req = calloc(1, sizeof *c->req);
        if (c->req != NULL) {
            c->req->pub.conn = c;
            c->req->pub.peer_ip = c->peer_ip;
            c->req->pub.loop = c->hl->loop;
            c->req->pub.app = c->hl->server->app;
        }
    }
    return c->req;
}

static int refuse(struct aos_http_conn *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(struct aos_http_conn *c, int status, const char *code, const char *fmt, ...)
{
    c->fail_status = status;
    c->fail_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->fail_msg, sizeof c->fail_msg, fmt, ap);
    va_end(ap);
    return -1; /* makes http-parser stop with HPE_CB_* */
}

static int on_message_begin(http_parser *p)
{
    struct aos_http_conn *c = p->data;
    if (c->state == CS_IDLE) {
        c->state = CS_HEADERS;
        /* An absolute deadline for the headers: a slow drip of bytes
         * (slowloris) must not keep resetting it. */
        conn_arm_timer(c, c->hl->limits.header_timeout);
    }
    if (conn_req(c) == NULL)
        return refuse(c, 500, "internal", "out of memory");
    return 0;
}

static int count_header_bytes(struct aos_http_conn *c, size_t len)
{
    c->header_bytes += len;
    if ((int64_t)c->header_bytes > c->hl->limits.max_header_size)
        return refuse(c, 431, "header_fields_too_large", "request headers exceed %lld bytes",
                      (long long)c->hl->limits.max_header_size);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct aos_http_conn *c = p->data;
    struct req_impl *r = c->req;
    r->url_len += len;
    if (r->url_len > (size_t)c->hl->limits.max_uri_size)
        return refuse(c, 414, "uri_too_long", "request target exceeds %d bytes", c->hl->limits.max_uri_size);
    if (count_header_bytes(c, len) != 0)
        return -1;
    return bytes_append(&r->raw, at, len) == 0 ? 0 : refuse(c, 500, "internal", "out of memory");
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct aos_http_conn *c = p->data;
    struct req_impl *r = c->req;
    if (count_header_bytes(c, len) != 0)
        return -1;
    if (r->last_cb != 1) {
        /* A new header starts: close the previous string (url or value). */
        if ((int)r->nheaders >= c->hl->limits.max_headers)
            return refuse(c, 431, "header_fields_too_large", "more than %d request headers",
                          c->hl->limits.max_headers);
        if (r->nheaders == r->cap_headers) {
            size_t cap = r->cap_headers ? r->cap_headers * 2 : 16;
            struct header_slot *s = realloc(r->slots, cap * sizeof *s);
            if (s == NULL)
                return refuse(c, 500, "internal", "out of memory");
            r->slots = s;
            r->cap_headers = cap;
        }
        if (bytes_terminate(&r->raw) != 0)
            return refuse(c, 500, "internal", "out of memory");
        r->slots[r->nheaders].name_off = r->raw.len;
        r->slots[r->nheaders].value_off = SIZE_MAX;
        r->nheaders++;
        r->last_cb = 1;
    }
    return bytes_append(&r->raw, at, len) == 0 ? 0 : refuse(c, 500, "internal", "out of memory");
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct aos_http_conn *c = p->data;
    struct req_impl *r = c->req;
    if (count_header_bytes(c, len) != 0)
        return -1;
    if (r->last_cb != 2) {
        if (bytes_terminate(&r->raw) != 0)
            return refuse(c, 500, "internal", "out of memory");
        r->slots[r->nheaders - 1].value_off = r->raw.len;
        r->last_cb = 2;
    }
    return bytes_append(&r->raw, at, len) == 0 ? 0 : refuse(c, 500, "internal", "out of memory");
}

static char *trim(char *s, size_t *len)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    *len = n;
    return s;
}

static int on_headers_complete(http_parser *p)
{
    struct aos_http_conn *c = p->data;
    struct req_impl *r = c->req;
    if (r->url_len == 0)
        return refuse(c, 400, "bad_request", "empty request target");
    /* The raw buffer is final now: turn offsets into pointers. */
    if (bytes_terminate(&r->raw) != 0)
        return refuse(c, 500, "internal", "out of memory");
    if (r->nheaders > 0) {
        r->headers = calloc(r->nheaders, sizeof *r->headers);
        if (r->headers == NULL)
            return refuse(c, 500, "internal", "out of memory");
    }
    int hosts = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        struct aos_http_header *h = &r->headers[i];
        h->name = r->raw.data + r->slots[i].name_off;
        if (r->slots[i].value_off == SIZE_MAX) {
            h->value = "";
            h->value_len = 0;
        } else {
            h->value = trim(r->raw.data + r->slots[i].value_off, &h->value_len);
        }
        if (strlen(h->value) != h->value_len)
            return refuse(c, 400, "bad_request", "NUL byte in header %s", h->name);
        if (strcasecmp(h->name, "Host") == 0)
            hosts++;
    }
    /* Two Host headers let a proxy and us disagree on the target. */
    if (hosts > 1)
        return refuse(c, 400, "bad_request", "more than one Host header");
    if (p->http_major == 1 && p->http_minor == 1 && hosts == 0)
        return refuse(c, 400, "bad_request", "HTTP/1.1 request without Host header");

    r->pub.headers = r->headers;
    r->pub.nheaders = r->nheaders;
    snprintf(r->method, sizeof r->method, "%s", http_method_str((enum http_method)p->method));
    r->pub.method = r->method;
    r->pub.head = p->method == HTTP_HEAD;
    r->http10 = p->http_major == 1 && p->http_minor == 0;

    const char *rid = aos_http_header(&r->pub, "X-Request-ID");
    r->request_id_generated = rid == NULL || !request_id_valid(rid, strlen(rid));
    if (!r->request_id_generated)
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    else
        make_request_id(c->hl, r->request_id, sizeof r->request_id);
    r->pub.request_id = r->request_id;

    if ((p->flags & F_CHUNKED) == 0 && p->content_length != ULLONG_MAX && p->content_length > 0) {
        if (p->content_length > (uint64_t)c->hl->limits.max_body_size)
            return refuse(c, 413, "payload_too_large", "request body of %llu bytes exceeds the limit of %lld",
                          (unsigned long long)p->content_length, (long long)c->hl->limits.max_body_size);
        /* Exact allocation up front: no realloc while the body streams in. */
        r->body.cap = (size_t)p->content_length + 1;
        r->body.data = malloc(r->body.cap);
        if (r->body.data == NULL)
            return refuse(c, 500, "internal", "out of memory");
    }
    /* curl and others wait up to a second for "100 Continue" before
     * sending a large body; the limits have been checked, so say go. */
    const char *expect = aos_http_header(&r->pub, "Expect");
    if (expect != NULL && !r->http10 && strcasecmp(expect, "100-continue") == 0)
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->state = CS_BODY;
    conn_arm_timer(c, c->hl->limits.body_timeout);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct aos_http_conn *c = p->data;
    struct req_impl *r = c->req;
    if ((int64_t)(r->body.len + len) > c->hl->limits.max_body_size)
        return refuse(c, 413, "payload_too_large", "request body exceeds the limit of %lld bytes",
                      (long long)c->hl->limits.max_body_size);
    return bytes_append(&r->body, at, len) == 0 ? 0 : refuse(c, 500, "internal", "out of memory");
}

static int on_message_complete(http_parser *p)
{
    struct aos_http_conn *c = p->data;
    /* An Upgrade/CONNECT request would switch protocols we don't speak:
     * answer it, then close. */
    c->req->keep_alive = http_should_keep_alive(p) != 0 && !p->upgrade;
    c->state = CS_HANDLING;
    evtimer_del(c->timer);
    /* One request at a time per connection: stop here and resume once the
     * response is written (pipelined bytes stay buffered). */
    http_parser_pause(p, 1);
    return 0;
}

static void conn_dispatch(struct aos_http_conn *c)
{
    struct req_impl *r = c->req;
    struct aos_http_request *req = &r->pub;
    req->start_ns = now_ns();
    if (r->body.data == NULL && bytes_append(&r->body, "", 0) != 0) {
        conn_fail(c, 500, "internal", "out of memory");
        return;
    }
    req->body = r->body.data;
    req->body_len = r->body.len;

    /* Origin-form only ("/path?query"); absolute-form is for proxies. */
    char *url = r->raw.data;
    if (url[0] != '/') {
        aos_http_respond_error(req, 400, "bad_request", "request target must be an absolute path");
        return;
    }
    char *q = strchr(url, '?');
    if (q != NULL) {
        *q = '\0';
        req->query = q + 1;
    }
    char *frag = strchr(q != NULL ? q + 1 : url, '#');
    if (frag != NULL)
        *frag = '\0';
    req->path = url;
    req->path_len = strlen(url);

    const char *method = req->head ? "GET" : req->method;
    enum aos_route_status st =
        aos_router_match(c->hl->server->router, method, req->path, req->path_len, &req->match);
    switch (st) {
    case AOS_ROUTE_FOUND:
        if (c->hl->server->guard != NULL)
            c->hl->server->guard(req);
        else
            aos_http_call_handler(req);
        return;
    case AOS_ROUTE_METHOD_NOT_ALLOWED:
        aos_http_add_header(req, "Allow", req->match.allow);
        aos_http_respond_error(req, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)",
                               req->method, req->path, req->match.allow);
        return;
    case AOS_ROUTE_BAD_PATH:
        aos_http_respond_error(req, 400, "bad_request", "malformed percent-encoding in path");
        return;
    case AOS_ROUTE_NOT_FOUND:
    default:
        aos_http_respond_error(req, 404, "not_found", "no route for %s %s", req->method, req->path);
        return;
    }
}

void aos_http_call_handler(struct aos_http_request *req)
{
    req->match.route->handler(req, req->match.ctx);
}

void aos_http_server_set_guard(struct aos_http_server *server, aos_http_guard_fn guard) { server->guard = guard; }

void aos_http_server_set_observer(struct aos_http_server *server, aos_http_observer_fn fn, void *arg)
{
    server->observer = fn;
    server->observer_arg = arg;
}


static void conn_parse_error(struct aos_http_conn *c)
{
    if (c->fail_status != 0) {
        conn_fail(c, c->fail_status, c->fail_code, c->fail_msg);
        return;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    char msg[160];
    snprintf(msg, sizeof msg, "malformed request: %s", http_errno_description(e));
    if (e == HPE_INVALID_METHOD)
        conn_fail(c, 501, "not_implemented", "unknown request method");
    else if (e == HPE_INVALID_VERSION)
        conn_fail(c, 505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are supported");
    else
        conn_fail(c, 400, "bad_request", msg);
}

static void conn_parse(struct aos_http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (c->state != CS_HANDLING && c->state != CS_WRITING) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return;
        size_t n = evbuffer_get_contiguous_space(in);
        const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        if (c->state == CS_BODY)
            conn_arm_timer(c, c->hl->limits.body_timeout); /* inactivity timer: data arrived */
        size_t parsed = http_parser_execute(&c->parser, &parser_settings, data, n);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            evbuffer_drain(in, parsed);
            http_parser_pause(&c->parser, 0);
            /* Backpressure: don't read pipelined requests while handling. */
            bufferevent_disable(c->bev, EV_READ);
            c->read_paused = true;
            conn_dispatch(c);
            return;
        }
        if (e != HPE_OK) {
            conn_parse_error(c);
            return;
        }
        evbuffer_drain(in, parsed);
    }
}

static void conn_on_read(struct bufferevent *bev, void *arg)
{
    struct aos_http_conn *c = arg;
    if (c->state == CS_LINGER) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    conn_parse(c);
}

static void conn_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct aos_http_conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_TIMEOUT) {
        aos_debug("write timeout: closing", "client", c->peer_ip, NULL);
        conn_free(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) &&
        (c->state == CS_HANDLING || c->state == CS_WRITING)) {
        /* A half-close after the request (printf ... | nc does it) still
         * deserves the response; close once it is written. */
        c->close_after_write = true;
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        /* Client gone.  A request being handled keeps running; its
         * response is discarded (conn_free detaches it). */
        conn_free(c);
    }
}

static void conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct aos_http_conn *c = arg;
    (void)fd;
    (void)what;
    switch (c->state) {
    case CS_IDLE:
    case CS_LINGER:
        conn_free(c);
        return;
    case CS_HEADERS:
        conn_fail(c, 408, "request_timeout", "request headers not received in time");
        return;
    case CS_BODY:
        conn_fail(c, 408, "request_timeout", "request body not received in time");
        return;
    default:
        return;
    }
}

/* ------------------------------------------------------------ accepting */

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    struct hloop *hl = arg;
    struct aos_http_server *server = hl->server;
    (void)lev;
    (void)salen;
    if (atomic_fetch_add(&server->connections, 1) >= hl->limits.max_connections ||
        atomic_load(&server->draining)) {
        atomic_fetch_sub(&server->connections, 1);
        evutil_closesocket(fd);
        return;
    }
    struct aos_http_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        atomic_fetch_sub(&server->connections, 1);
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->hl = hl;
    c->bev = bufferevent_socket_new(aos_loop_base(hl->loop), fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(aos_loop_base(hl->loop), conn_on_timer, c);
    if (c->bev == NULL || c->timer == NULL) {
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->timer != NULL)
            event_free(c->timer);
        free(c);
        atomic_fetch_sub(&server->connections, 1);
        return;
    }
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->peer_ip, sizeof c->peer_ip);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->peer_ip, sizeof c->peer_ip);
    else
        snprintf(c->peer_ip, sizeof c->peer_ip, "unix");
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->state = CS_IDLE;
    c->next = hl->conns;
    if (hl->conns != NULL)
        hl->conns->prev = c;
    hl->conns = c;
    bufferevent_setcb(c->bev, conn_on_read, conn_on_write, conn_on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    /* A fresh connection must send its first request within the header
     * timeout, not the (longer) keep-alive idle timeout. */
    conn_arm_timer(c, hl->limits.header_timeout);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct hloop *hl = arg;
    (void)lev;
    int err = EVUTIL_SOCKET_ERROR();
    /* EMFILE/ENFILE: log and keep going; libevent retries on the next
     * readiness event. */
    aos_warn("accept failed", "loop", aos_loop_name(hl->loop), "error", evutil_socket_error_to_string(err), NULL);
}

/* ------------------------------------------------------------- binding */

static evutil_socket_t open_listener(const char *host, int port, char *err, size_t errlen)
{
    char portbuf[8];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, portbuf, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    evutil_socket_t fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        goto done;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* One socket per loop on the same address: the kernel spreads
     * connections across loops without a shared accept lock. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (res->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
done:
    freeaddrinfo(res);
    return fd;
}

static int bound_port(evutil_socket_t fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

int aos_http_server_bind(struct aos_http_server *server, char *err, size_t errlen)
{
    const struct aos_conf_server *conf = server->conf;
    for (size_t a = 0; a < server->naddrs; a++) {
        const struct aos_listen *l = &conf->listen[a];
        int port = l->port;
        for (int i = 0; i < server->nloops; i++) {
            evutil_socket_t fd = open_listener(l->host, port, err, errlen);
            if (fd < 0)
                return -1;
            /* With port 0 the kernel picks one; the other loops must
             * join that same port. */
            if (port == 0)
                port = bound_port(fd);
            server->loops[i].sockets[a].fd = fd;
        }
        if (a == 0)
            server->port = port;
        char portbuf[8], loops[8];
        snprintf(portbuf, sizeof portbuf, "%d", port);
        snprintf(loops, sizeof loops, "%d", server->nloops);
        aos_info("listening", "addr", l->host, "port", portbuf, "loops", loops, NULL);
    }
    return 0;
}

int aos_http_server_port(const struct aos_http_server *server) { return server->port; }

int aos_http_server_loop_count(const struct aos_http_server *server) { return server->nloops; }

struct aos_loop *aos_http_server_loop(const struct aos_http_server *server, int i)
{
    return i >= 0 && i < server->nloops ? server->loops[i].loop : NULL;
}

/* ------------------------------------------------------------- server */

void aos_http_limits_from_conf(struct aos_http_limits *limits, const struct aos_conf_server *s)
{
    *limits = (struct aos_http_limits){
        .max_body_size = s->max_body_size,
        .max_header_size = s->max_header_size,
        .max_headers = s->max_headers,
        .max_uri_size = s->max_uri_size,
        .max_json_depth = s->max_json_depth,
        .max_connections = s->max_connections,
        .header_timeout = s->header_timeout,
        .body_timeout = s->body_timeout,
        .write_timeout = s->write_timeout,
        .idle_timeout = s->idle_timeout,
    };
}

static void init_parser_settings(void)
{
    parser_settings = (http_parser_settings){
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
    };
}

struct aos_http_server *aos_http_server_new(const struct aos_conf_server *conf, const struct aos_router *router,
                                            struct aos_metrics *metrics, void *app)
{
    init_parser_settings();
    struct aos_http_server *server = calloc(1, sizeof *server);
    if (server == NULL)
        return NULL;
    server->conf = conf;
    server->router = router;
    server->metrics = metrics;
    server->app = app;
    server->naddrs = conf->nlisten;
    server->nloops = conf->threads > 0 ? conf->threads : 1;
    aos_http_limits_from_conf(&server->initial_limits, conf);
    unsigned char rnd[8];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        memset(rnd, 0, sizeof rnd);
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(server->boot_id + 2 * i, 3, "%02x", rnd[i]);
    server->loops = calloc((size_t)server->nloops, sizeof *server->loops);
    if (server->loops == NULL)
        goto fail;
    for (int i = 0; i < server->nloops; i++) {
        struct hloop *hl = &server->loops[i];
        char name[24];
        snprintf(name, sizeof name, "http-%d", i);
        hl->server = server;
        hl->index = i;
        hl->limits = server->initial_limits;
        hl->loop = aos_loop_new(name);
        hl->sockets = calloc(server->naddrs, sizeof *hl->sockets);
        hl->listeners = calloc(server->naddrs, sizeof *hl->listeners);
        if (hl->loop == NULL || hl->sockets == NULL || hl->listeners == NULL)
            goto fail;
        for (size_t a = 0; a < server->naddrs; a++)
            hl->sockets[a].fd = -1;
    }
    return server;
fail:
    aos_http_server_free(server);
    return NULL;
}

int aos_http_server_start(struct aos_http_server *server)
{
    for (int i = 0; i < server->nloops; i++) {
        struct hloop *hl = &server->loops[i];
        for (size_t a = 0; a < server->naddrs; a++) {
            hl->listeners[a] = evconnlistener_new(aos_loop_base(hl->loop), on_accept, hl,
                                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
                                                  hl->sockets[a].fd);
            if (hl->listeners[a] == NULL)
                return -1;
            hl->sockets[a].fd = -1; /* the listener owns it now */
            evconnlistener_set_error_cb(hl->listeners[a], on_accept_error);
            hl->nlisteners++;
        }
    }
    for (int i = 0; i < server->nloops; i++)
        if (aos_loop_start_thread(server->loops[i].loop) != 0)
            return -1;
    server->started = true;
    return 0;
}

struct limits_update {
    struct hloop *hl;
    struct aos_http_limits limits;
};

static void loop_set_limits(void *arg)
{
    struct limits_update *u = arg;
    u->hl->limits = u->limits;
    free(u);
}

void aos_http_server_set_limits(struct aos_http_server *server, const struct aos_http_limits *limits)
{
    for (int i = 0; i < server->nloops; i++) {
        struct limits_update *u = malloc(sizeof *u);
        if (u == NULL)
            continue;
        *u = (struct limits_update){.hl = &server->loops[i], .limits = *limits};
        if (!server->started) {
            loop_set_limits(u);
        } else if (aos_loop_post(server->loops[i].loop, loop_set_limits, u) != 0) {
            free(u);
        }
    }
}

static void loop_close_listeners(struct hloop *hl)
{
    for (size_t a = 0; a < hl->nlisteners; a++) {
        if (hl->listeners[a] != NULL) {
            evconnlistener_free(hl->listeners[a]);
            hl->listeners[a] = NULL;
        }
    }
}

static void loop_begin_drain(void *arg)
{
    struct hloop *hl = arg;
    loop_close_listeners(hl);
    /* Idle keep-alive connections have nothing in flight: close them now.
     * Busy ones close after their current response (draining flag). */
    struct aos_http_conn *c = hl->conns;
    while (c != NULL) {
        struct aos_http_conn *next = c->next;
        if (c->state == CS_IDLE)
            conn_free(c);
        c = next;
    }
}

void aos_http_server_begin_drain(struct aos_http_server *server)
{
    atomic_store(&server->draining, true);
    for (int i = 0; i < server->nloops; i++)
        if (server->started)
            aos_loop_post(server->loops[i].loop, loop_begin_drain, &server->loops[i]);
}

bool aos_http_server_draining(const struct aos_http_server *server) { return atomic_load(&server->draining); }

long aos_http_server_connections(const struct aos_http_server *server)
{
    return atomic_load(&server->connections);
}

static void loop_close_all(void *arg)
{
    struct hloop *hl = arg;
    loop_close_listeners(hl);
    while (hl->conns != NULL)
        conn_free(hl->conns);
}

void aos_http_server_stop(struct aos_http_server *server)
{
    if (!server->started)
        return;
    for (int i = 0; i < server->nloops; i++) {
        aos_loop_post(server->loops[i].loop, loop_close_all, &server->loops[i]);
        aos_loop_stop(server->loops[i].loop);
    }
    for (int i = 0; i < server->nloops; i++)
        aos_loop_join(server->loops[i].loop);
    server->started = false;
}

void aos_http_server_free(struct aos_http_server *server)
{
    if (server == NULL)
        return;
    aos_http_server_stop(server);
    for (int i = 0; server->loops != NULL && i < server->nloops; i++) {
        struct hloop *hl = &server->loops[i];
        if (hl->loop != NULL) {
            loop_close_all(hl);
            aos_loop_free(hl->loop);
        }
        for (size_t a = 0; hl->sockets != NULL && a < server->naddrs; a++)
            if (hl->sockets[a].fd >= 0)
                close(hl->sockets[a].fd);
        free(hl->sockets);
        free(hl->listeners);
    }
    free(server->loops);
    free(server);
}
