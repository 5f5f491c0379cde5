#include "config.h"

#include "http/server.h"

#include "http/http.h"
#include "json.h"
#include "fmt.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "threadpool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
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
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024
#define REQUEST_ID_MAX 128
/* One recv() per readiness event into the loop's buffer; a request that
 * fits is parsed straight from it, with nothing copied into the
 * connection. */
#define READ_CHUNK 16384
/* Bytes a connection may buffer while its request is being handled
 * (pipelined requests): beyond this we stop reading until it is done. */
#define INPUT_CAP (64 * 1024)
/* Responses with more pieces than this are rare (a blocked socket): the
 * rest waits in the connection's output buffer. */
#define FLUSH_IOV 16

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

/* Deadlines: every connection waiting for something is on the list of
 * that kind of wait, and since every entry of a list got the same timeout
 * at the time it was set, appending keeps a list in deadline order.  One
 * timer per loop, armed for the earliest head, replaces a timer per
 * connection re-armed several times per request. */
enum deadline_kind { DL_NONE = -1, DL_HEADER, DL_BODY, DL_WRITE, DL_IDLE, DL_LINGER, DL_KINDS };

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
    evutil_socket_t fd;          /* -1 once handed over (takeover) */
    /* EV_READ|EV_PERSIST, added at accept and kept: removed only after EOF,
     * with INPUT_CAP bytes buffered, or for a takeover. */
    struct event *rev;
    /* EV_WRITE|EV_PERSIST, added only while the socket refuses bytes. */
    struct event *wev;
    struct evbuffer *in;         /* received, not parsed yet; NULL until needed */
    struct evbuffer *out;        /* not taken by the socket yet; NULL until needed */
    bool reading;                /* rev added */
    bool writing;                /* wev added */
    bool read_eof;               /* the client has half-closed (or is gone) */
    bool parsing;                /* conn_process is on the stack */
    bool doomed;                 /* closed while busy: freed when the outermost call returns */
    int busy;                    /* calls on the stack that use this connection */
    /* deadline list membership */
    struct aos_http_conn *dl_prev;
    struct aos_http_conn *dl_next;
    int dl_kind;
    int64_t deadline_ms;         /* monotonic */
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
    char peer_ip[INET6_ADDRSTRLEN];
    /* CS_TAKEOVER: who gets the socket (aos_http_takeover) */
    aos_http_takeover_fn takeover_fn;
    void *takeover_arg;
};

struct listen_socket {
    evutil_socket_t fd;
};

struct dl_list {
    struct aos_http_conn *head;
    struct aos_http_conn *tail;
};

struct hloop {
    struct aos_http_server *server;
    struct aos_loop *loop;
    int index;
    struct dl_list deadlines[DL_KINDS];
    struct event *tick;            /* fires at the earliest deadline (or a bit before) */
    bool tick_armed;
    int64_t tick_at;
    char rbuf[READ_CHUNK];
    struct bytes head;             /* response head being built (reused) */
    struct listen_socket *sockets; /* one per listen address, owned until listeners take them */
    struct evconnlistener **listeners;
    size_t nlisteners;
    struct aos_http_conn *conns;
    struct aos_http_limits limits; /* this loop's copy; replaced by posts */
    uint64_t request_seq;
    time_t date_sec;
    char date_line[48];            /* "Date: ...\r\n", re-rendered once a second */
    size_t date_line_len;
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

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

static size_t fmt_hex(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
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

/* "Date: <IMF-fixdate>\r\n", rendered once per second per loop. */
static const char *loop_date_line(struct hloop *hl, size_t *len)
{
    time_t now = time(NULL);
    if (now != hl->date_sec || hl->date_line_len == 0) {
        struct tm tm;
        gmtime_r(&now, &tm);
        size_t n = strftime(hl->date_line, sizeof hl->date_line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        hl->date_line_len = n;
        hl->date_sec = now;
    }
    *len = hl->date_line_len;
    return hl->date_line;
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

/* "<boot id>-<loop, hex>-<sequence, hex>": at most 16 + 1 + 8 + 1 + 16
 * characters, so it always fits REQUEST_ID_MAX. */
static void make_request_id(struct hloop *hl, char out[REQUEST_ID_MAX + 1])
{
    size_t n = strlen(hl->server->boot_id);
    memcpy(out, hl->server->boot_id, n);
    out[n++] = '-';
    n += fmt_hex(out + n, (unsigned)hl->index);
    out[n++] = '-';
    n += fmt_hex(out + n, ++hl->request_seq);
    out[n] = '\0';
}

/* ----------------------------------------------------------- lifecycle */

static void req_free(struct req_impl *r)
{
    if (r == NULL)
        return;
    aos_route_match_release(&r->pub.match);
    free(r->pub.out_headers);
    free(r->raw.data);
    free(r->slots);
    free(r->headers);
    free(r->body.data);
    free(r);
}

static void dl_unlink(struct aos_http_conn *c)
{
    if (c->dl_kind == DL_NONE)
        return;
    struct dl_list *l = &c->hl->deadlines[c->dl_kind];
    if (c->dl_prev != NULL)
        c->dl_prev->dl_next = c->dl_next;
    else
        l->head = c->dl_next;
    if (c->dl_next != NULL)
        c->dl_next->dl_prev = c->dl_prev;
    else
        l->tail = c->dl_prev;
    c->dl_prev = c->dl_next = NULL;
    c->dl_kind = DL_NONE;
}

static void loop_arm_tick(struct hloop *hl, int64_t at, int64_t now)
{
    int64_t ms = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(hl->tick, &tv);
    hl->tick_armed = true;
    hl->tick_at = at;
}

/* Sets the connection's one deadline: `seconds` from now, of `kind`
 * (DL_NONE: no deadline).  Replaces the previous one. */
static void conn_deadline(struct aos_http_conn *c, int kind, double seconds)
{
    struct hloop *hl = c->hl;
    dl_unlink(c);
    if (kind == DL_NONE)
        return;
    int64_t now = mono_ms();
    int64_t at = now + (seconds > 0 ? (int64_t)(seconds * 1000.0 + 0.5) : 0);
    struct dl_list *l = &hl->deadlines[kind];
    /* Appending keeps the order, except just after a reload shortened this
     * kind's timeout: then walk back past the longer ones. */
    struct aos_http_conn *after = l->tail;
    while (after != NULL && after->deadline_ms > at)
        after = after->dl_prev;
    c->dl_prev = after;
    c->dl_next = after != NULL ? after->dl_next : l->head;
    if (c->dl_next != NULL)
        c->dl_next->dl_prev = c;
    else
        l->tail = c;
    if (after != NULL)
        after->dl_next = c;
    else
        l->head = c;
    c->dl_kind = kind;
    c->deadline_ms = at;
    /* The timer may stay armed for a later time than an earlier head it
     * no longer serves: it then fires early, finds nothing, re-arms. */
    if (!hl->tick_armed || at < hl->tick_at)
        loop_arm_tick(hl, at, now);
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
    dl_unlink(c);
    if (c->req != NULL) {
        if (c->state == CS_HANDLING) {
            /* The handler still holds the request (deferred work): it frees
             * it when it responds; the response goes nowhere. */
            c->req->pub.conn = NULL;
        } else {
            req_free(c->req);
        }
    }
    if (c->rev != NULL)
        event_free(c->rev);
    if (c->wev != NULL)
        event_free(c->wev);
    if (c->fd >= 0)
        evutil_closesocket(c->fd);
    if (c->in != NULL)
        evbuffer_free(c->in);
    if (c->out != NULL)
        evbuffer_free(c->out);
    aos_http_takeover_fn takeover_fn = c->takeover_fn;
    void *takeover_arg = c->takeover_arg;
    free(c);
    atomic_fetch_sub(&hl->server->connections, 1);
    /* A takeover that never completed still owes its caller one call. */
    if (takeover_fn != NULL)
        takeover_fn(-1, takeover_arg);
}

/* A connection is used by calls that may close it half-way (a write that
 * fails, a handler that answers at once): they bracket their work with
 * enter/leave, and a close in between only marks it; the outermost leave
 * frees it.  conn_leave returns false when it did. */
static void conn_enter(struct aos_http_conn *c) { c->busy++; }

static bool conn_leave(struct aos_http_conn *c)
{
    if (--c->busy == 0 && c->doomed) {
        conn_free(c);
        return false;
    }
    return true;
}

static void conn_close(struct aos_http_conn *c)
{
    if (c->busy > 0)
        c->doomed = true;
    else
        conn_free(c);
}

static void conn_read_on(struct aos_http_conn *c)
{
    if (!c->reading && !c->read_eof && c->fd >= 0 && event_add(c->rev, NULL) == 0)
        c->reading = true;
}

static void conn_read_off(struct aos_http_conn *c)
{
    if (c->reading) {
        event_del(c->rev);
        c->reading = false;
    }
}

static void conn_process(struct aos_http_conn *c, const char *data, size_t len);

/* ---------------------------------------------------------------- output */

/* A non-blocking socket that has nothing for us (or no room) right now. */
static bool io_retry(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

static ssize_t send_iov(evutil_socket_t fd, struct iovec *iov, int niov)
{
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
    ssize_t n;
    do {
        /* MSG_NOSIGNAL: a client gone is an error here, not a SIGPIPE. */
        n = sendmsg(fd, &m, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
}

/* Waiting for the socket: EV_WRITE on, and the write deadline restarts
 * (it limits a write that makes no progress, as bufferevents did). */
static void conn_want_write(struct aos_http_conn *c)
{
    if (!c->writing && event_add(c->wev, NULL) == 0)
        c->writing = true;
    conn_deadline(c, DL_WRITE, c->hl->limits.write_timeout);
}

/* Writes what c->out holds.  0: all out; 1: the rest waits for EV_WRITE;
 * -1: the connection failed (closed, or doomed while busy). */
static int conn_flush(struct aos_http_conn *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        struct evbuffer_iovec v[FLUSH_IOV];
        struct iovec iov[FLUSH_IOV];
        int nv = evbuffer_peek(c->out, -1, NULL, v, FLUSH_IOV);
        if (nv > FLUSH_IOV)
            nv = FLUSH_IOV;
        size_t total = 0;
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
            total += v[i].iov_len;
        }
        ssize_t n = send_iov(c->fd, iov, nv);
        if (n < 0) {
            if (io_retry(errno))
                break;
            conn_close(c);
            return -1;
        }
        evbuffer_drain(c->out, (size_t)n);
        if ((size_t)n < total)
            break; /* the socket is full */
    }
    if (evbuffer_get_length(c->out) > 0) {
        conn_want_write(c);
        return 1;
    }
    if (c->writing) {
        event_del(c->wev);
        c->writing = false;
    }
    return 0;
}

/* Sends iov[0..niov) now, as far as the socket takes it (one sendmsg in
 * the usual case); what it does not take is copied to c->out and waits
 * for EV_WRITE.  Same results as conn_flush. */
static int conn_send(struct aos_http_conn *c, struct iovec *iov, int niov)
{
    if (c->fd < 0 || c->doomed)
        return -1;
    if (c->out != NULL && evbuffer_get_length(c->out) > 0) {
        /* Behind bytes still waiting (100 Continue): keep the order. */
        for (int i = 0; i < niov; i++)
            if (iov[i].iov_len > 0 && evbuffer_add(c->out, iov[i].iov_base, iov[i].iov_len) != 0) {
                conn_close(c);
                return -1;
            }
        return conn_flush(c);
    }
    size_t total = 0;
    for (int i = 0; i < niov; i++)
        total += iov[i].iov_len;
    ssize_t n = send_iov(c->fd, iov, niov);
    if (n < 0) {
        if (!io_retry(errno)) {
            conn_close(c);
            return -1;
        }
        n = 0;
    }
    if ((size_t)n == total)
        return 0;
    if (c->out == NULL && (c->out = evbuffer_new()) == NULL) {
        conn_close(c);
        return -1;
    }
    size_t skip = (size_t)n;
    for (int i = 0; i < niov; i++) {
        size_t len = iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        if (evbuffer_add(c->out, (const char *)iov[i].iov_base + skip, len - skip) != 0) {
            conn_close(c);
            return -1;
        }
        skip = 0;
    }
    conn_want_write(c);
    return 1;
}

/* ------------------------------------------------------------ responses */

/* After refusing a request whose body may still be arriving, closing at
 * once would make the kernel answer the unread bytes with a RST that can
 * destroy our error response in flight.  Half-close, discard, then close
 * (nginx calls this lingering close). */
static void conn_start_linger(struct aos_http_conn *c)
{
    if (c->read_eof) {
        conn_close(c); /* nothing more will arrive */
        return;
    }
    shutdown(c->fd, SHUT_WR);
    c->state = CS_LINGER;
    if (c->in != NULL)
        evbuffer_drain(c->in, evbuffer_get_length(c->in));
    conn_read_on(c);
    conn_deadline(c, DL_LINGER, LINGER_SECONDS);
}

/* The response is out: next request (or close). */
static void conn_write_done(struct aos_http_conn *c)
{
    if (c->close_after_write || atomic_load(&c->hl->server->draining)) {
        if (c->linger)
            conn_start_linger(c);
        else
            conn_close(c);
        return;
    }
    c->state = CS_IDLE;
    c->header_bytes = 0;
    conn_deadline(c, DL_IDLE, c->hl->limits.idle_timeout);
    conn_read_on(c); /* if INPUT_CAP had stopped it */
    /* Pipelined requests may already sit in the input buffer, and a client
     * that half-closed is done once they are: conn_process sees to both.
     * Inside conn_process (a handler that answered at once) its loop does. */
    if (!c->parsing && (c->read_eof || (c->in != NULL && evbuffer_get_length(c->in) > 0)))
        conn_process(c, NULL, 0);
}

static void conn_on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct aos_http_conn *c = arg;
    (void)fd;
    (void)what;
    conn_enter(c);
    int r = c->out != NULL && evbuffer_get_length(c->out) > 0 ? conn_flush(c) : 0;
    if (r == 0 && !c->doomed) {
        if (c->writing) {
            event_del(c->wev);
            c->writing = false;
        }
        if (c->state == CS_WRITING) {
            conn_write_done(c);
        } else if (c->state == CS_TAKEOVER) {
            /* The stream's headers are out: hand the socket over and
             * forget it (detached first, so that freeing leaves it open). */
            evutil_socket_t sock = c->fd;
            aos_http_takeover_fn fn = c->takeover_fn;
            void *targ = c->takeover_arg;
            conn_read_off(c);
            c->takeover_fn = NULL;
            c->fd = -1;
            c->doomed = true;
            conn_leave(c);
            fn((int)sock, targ);
            return;
        }
    }
    conn_leave(c);
}

/* "HTTP/1.1 <status> <reason>\r\n" into out (at least 64 bytes). */
static size_t status_line(char *out, int status)
{
    const char *reason = aos_http_reason(status);
    size_t rlen = strlen(reason);
    memcpy(out, "HTTP/1.1 ", 9);
    size_t n = 9 + aos_fmt_u64(out + 9, (uint64_t)(status > 0 ? status : 0));
    out[n++] = ' ';
    memcpy(out + n, reason, rlen);
    n += rlen;
    out[n++] = '\r';
    out[n++] = '\n';
    return n;
}

static int head_add(struct bytes *b, const char *s, size_t len) { return bytes_append(b, s, len); }

#define HEAD_ADD_LIT(b, lit) head_add((b), (lit), sizeof(lit) - 1)

/* Renders the response head into hl->head (a buffer the loop reuses: no
 * printf, no allocation once it has grown).  content_length < 0: none
 * (takeover).  Returns 0 or -1 (out of memory). */
static int render_head(struct hloop *hl, int status, const char *content_type, const char *extra,
                       size_t extra_len, const char *request_id, int64_t content_length, const char *connection)
{
    struct bytes *b = &hl->head;
    char num[64];
    size_t dlen;
    const char *date = loop_date_line(hl, &dlen);
    int rc = 0;
    b->len = 0;
    rc |= head_add(b, num, status_line(num, status));
    rc |= head_add(b, date, dlen);
    if (content_length >= 0) {
        rc |= HEAD_ADD_LIT(b, "Content-Length: ");
        rc |= head_add(b, num, aos_fmt_u64(num, (uint64_t)content_length));
        rc |= HEAD_ADD_LIT(b, "\r\n");
    }
    rc |= HEAD_ADD_LIT(b, "X-Request-ID: ");
    rc |= head_add(b, request_id, strlen(request_id));
    rc |= HEAD_ADD_LIT(b, "\r\nX-Content-Type-Options: nosniff\r\n");
    if (content_type != NULL) {
        rc |= HEAD_ADD_LIT(b, "Content-Type: ");
        rc |= head_add(b, content_type, strlen(content_type));
        rc |= HEAD_ADD_LIT(b, "\r\n");
    }
    if (connection != NULL)
        rc |= head_add(b, connection, strlen(connection));
    if (extra_len > 0)
        rc |= head_add(b, extra, extra_len);
    rc |= HEAD_ADD_LIT(b, "\r\n");
    return rc != 0 ? -1 : 0;
}

/* Sends status line, headers and body on the connection (as much as the
 * socket takes now).  The caller holds the connection (conn_enter). */
static void conn_send_response(struct aos_http_conn *c, bool http10, int status, const char *content_type,
                               const char *extra, size_t extra_len, const char *request_id, const void *body,
                               size_t len, bool send_body)
{
    struct hloop *hl = c->hl;
    bool close = c->close_after_write || atomic_load(&hl->server->draining);
    const char *connection = close ? "Connection: close\r\n" : http10 ? "Connection: keep-alive\r\n" : NULL;
    c->close_after_write = close;
    c->state = CS_WRITING;
    conn_deadline(c, DL_NONE, 0);
    if (render_head(hl, status, content_type, extra, extra_len, request_id, (int64_t)len, connection) != 0) {
        conn_close(c);
        return;
    }
    struct iovec iov[2] = {{hl->head.data, hl->head.len}, {(void *)(uintptr_t)body, send_body ? len : 0}};
    int r = conn_send(c, iov, send_body && len > 0 ? 2 : 1);
    if (r == 0)
        conn_write_done(c);
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
    if (c->doomed)
        return;
    char rid[REQUEST_ID_MAX + 1];
    const char *request_id = rid;
    bool generated = true;
    if (c->req != NULL && c->req->request_id[0] != '\0') {
        request_id = c->req->request_id;
        generated = c->req->request_id_generated;
    } else {
        make_request_id(c->hl, rid);
    }
    conn_enter(c);
    struct json_object *obj = error_object(code, message, request_id);
    size_t len = 0;
    const char *text = obj != NULL ? aos_json_text(obj, &len) : "";
    c->close_after_write = true;
    c->linger = true;
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
    /* The request goes before the response is sent: its id is copied into
     * the head, and a sent response may start the next state at once. */
    char rid_copy[REQUEST_ID_MAX + 1];
    snprintf(rid_copy, sizeof rid_copy, "%s", request_id);
    if (c->req != NULL) {
        req_free(c->req);
        c->req = NULL;
    }
    conn_send_response(c, false, status, "application/json", NULL, 0, rid_copy, text, len, true);
    if (obj != NULL)
        json_object_put(obj);
    conn_leave(c);
}

static bool header_text_ok(const char *s, size_t *len)
{
    const char *p = s;
    for (; *p; p++)
        if (*p == '\r' || *p == '\n')
            return false;
    *len = (size_t)(p - s);
    return true;
}

void aos_http_add_header(struct aos_http_request *req, const char *name, const char *value)
{
    size_t nlen, vlen;
    if (!header_text_ok(name, &nlen) || !header_text_ok(value, &vlen)) {
        aos_warn("response header dropped: contains CR or LF", "header", name, NULL);
        return;
    }
    size_t need = req->out_headers_len + nlen + vlen + 4;
    if (need > req->out_headers_cap) {
        size_t cap = req->out_headers_cap ? req->out_headers_cap : 256;
        while (cap < need)
            cap *= 2;
        char *p = realloc(req->out_headers, cap);
        if (p == NULL)
            return;
        req->out_headers = p;
        req->out_headers_cap = cap;
    }
    char *o = req->out_headers + req->out_headers_len;
    memcpy(o, name, nlen);
    o += nlen;
    *o++ = ':';
    *o++ = ' ';
    memcpy(o, value, vlen);
    o += vlen;
    *o++ = '\r';
    *o++ = '\n';
    req->out_headers_len = need;
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
    conn_enter(c);
    if (!r->keep_alive)
        c->close_after_write = true;
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
    /* The request leaves the connection before the response goes out (a
     * response sent at once lets the connection parse its next request),
     * and is freed after (the head is rendered from its id and headers). */
    c->req = NULL;
    conn_send_response(c, r->http10, status, content_type, req->out_headers, req->out_headers_len, r->request_id,
                       body, len, !req->head);
    req_free(r);
    conn_leave(c);
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

struct takeover_fail {
    aos_http_takeover_fn fn;
    void *arg;
};

static void takeover_fail_run(void *arg)
{
    struct takeover_fail *f = arg;
    f->fn(-1, f->arg);
    free(f);
}

int aos_http_takeover(struct aos_http_request *req, int status, const char *content_type, const void *body,
                      size_t len, aos_http_takeover_fn fn, void *arg)
{
    struct req_impl *r = (struct req_impl *)req;
    struct aos_http_conn *c = req->conn;
    aos_assert(!req->responded && fn != NULL);
    if (c == NULL || req->head || strcmp(req->method, "GET") != 0 || c->doomed ||
        (c->in != NULL && evbuffer_get_length(c->in) > 0))
        return -1;
    struct hloop *hl = c->hl;
    req->responded = true;
    conn_enter(c);
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
    c->state = CS_TAKEOVER;
    c->takeover_fn = fn;
    c->takeover_arg = arg;
    c->close_after_write = true;
    /* Reading stops (one request at a time): bytes sent after the request
     * are the new owner's to discard. */
    conn_read_off(c);
    conn_deadline(c, DL_NONE, 0);
    int rc = render_head(hl, status, content_type != NULL ? content_type : "application/octet-stream",
                         req->out_headers, req->out_headers_len, r->request_id, -1, "Connection: close\r\n");
    req_free(r);
    if (rc != 0) {
        conn_close(c);
    } else {
        struct iovec iov[2] = {{hl->head.data, hl->head.len}, {(void *)(uintptr_t)body, len}};
        /* Written at once (the usual case): the hand-over still runs from
         * the loop, after the caller has returned. */
        if (conn_send(c, iov, len > 0 ? 2 : 1) == 0)
            event_active(c->wev, EV_WRITE, 1);
    }
    if (c->doomed) {
        /* The client is already gone: fn(-1) too runs from the loop, never
         * before this returns. */
        struct takeover_fail *f = malloc(sizeof *f);
        if (f != NULL) {
            f->fn = c->takeover_fn;
            f->arg = c->takeover_arg;
            if (aos_loop_post(hl->loop, takeover_fail_run, f) == 0)
                c->takeover_fn = NULL;
            else
                free(f);
        }
    }
    conn_leave(c);
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
        conn_deadline(c, DL_HEADER, c->hl->limits.header_timeout);
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
    const char *method = http_method_str((enum http_method)p->method);
    size_t mlen = strlen(method);
    if (mlen >= sizeof r->method)
        mlen = sizeof r->method - 1;
    memcpy(r->method, method, mlen);
    r->method[mlen] = '\0';
    r->pub.method = r->method;
    r->pub.head = p->method == HTTP_HEAD;
    r->http10 = p->http_major == 1 && p->http_minor == 0;

    const char *rid = aos_http_header(&r->pub, "X-Request-ID");
    r->request_id_generated = rid == NULL || !request_id_valid(rid, strlen(rid));
    if (!r->request_id_generated)
        memcpy(r->request_id, rid, strlen(rid) + 1); /* valid means at most REQUEST_ID_MAX */
    else
        make_request_id(c->hl, r->request_id);
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
    if (expect != NULL && !r->http10 && strcasecmp(expect, "100-continue") == 0) {
        struct iovec iov = {(void *)(uintptr_t) "HTTP/1.1 100 Continue\r\n\r\n", 25};
        if (conn_send(c, &iov, 1) < 0)
            return -1; /* the client is gone: stop parsing */
    }
    c->state = CS_BODY;
    /* Without a body the message completes in this same parse: the header
     * deadline may stand until then. */
    if ((p->flags & F_CHUNKED) != 0 || (p->content_length != ULLONG_MAX && p->content_length > 0))
        conn_deadline(c, DL_BODY, c->hl->limits.body_timeout);
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
    conn_deadline(c, DL_NONE, 0);
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

/* Bytes that arrived while the connection cannot parse them (a request is
 * being handled): kept in order for later, up to INPUT_CAP, then reading
 * stops until the response is out.  After a refusal they are dropped. */
static void conn_stash(struct aos_http_conn *c, const char *data, size_t len)
{
    if (c->linger || c->doomed)
        return;
    if ((c->in == NULL && (c->in = evbuffer_new()) == NULL) || evbuffer_add(c->in, data, len) != 0) {
        conn_close(c);
        return;
    }
    if (evbuffer_get_length(c->in) >= INPUT_CAP)
        conn_read_off(c);
}

static bool conn_can_parse(const struct aos_http_conn *c)
{
    return c->state == CS_IDLE || c->state == CS_HEADERS || c->state == CS_BODY;
}

/* Parses what the connection has buffered, then data[0..len) (just read,
 * in the loop's buffer), dispatching each complete request, for as long
 * as the connection can take a new one; keeps the rest.  Iterative: a
 * handler that answers at once makes the loop go on with the next
 * pipelined request instead of recursing. */
static void conn_process(struct aos_http_conn *c, const char *data, size_t len)
{
    bool was_parsing = c->parsing;
    c->parsing = true;
    conn_enter(c);
    while (!c->doomed) {
        if (c->state == CS_LINGER) {
            if (c->in != NULL)
                evbuffer_drain(c->in, evbuffer_get_length(c->in));
            break;
        }
        if (!conn_can_parse(c)) {
            if (len > 0)
                conn_stash(c, data, len);
            len = 0;
            break;
        }
        const char *p;
        size_t n;
        bool buffered = c->in != NULL && evbuffer_get_length(c->in) > 0;
        if (buffered) {
            if (len > 0)
                conn_stash(c, data, len); /* behind what came first */
            len = 0;
            if (c->doomed)
                break;
            n = evbuffer_get_contiguous_space(c->in);
            p = (const char *)evbuffer_pullup(c->in, (ev_ssize_t)n);
        } else if (len > 0) {
            p = data;
            n = len;
        } else {
            break;
        }
        if (c->state == CS_BODY)
            conn_deadline(c, DL_BODY, c->hl->limits.body_timeout); /* inactivity timer: data arrived */
        size_t parsed = http_parser_execute(&c->parser, &parser_settings, p, n);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (buffered) {
            evbuffer_drain(c->in, parsed);
        } else {
            data += parsed;
            len -= parsed;
        }
        if (c->doomed)
            break;
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            /* Pipelined bytes go to the buffer before the handler runs: a
             * takeover must see them. */
            if (len > 0)
                conn_stash(c, data, len);
            len = 0;
            if (!c->doomed)
                conn_dispatch(c);
            continue;
        }
        if (e != HPE_OK) {
            conn_parse_error(c);
            break;
        }
        if (parsed < n)
            break; /* cannot happen without an error; never spin */
    }
    if (!c->doomed && c->read_eof) {
        /* The client half-closed: a partial request never completes, and
         * the last complete one gets its answer, then the close. */
        if (conn_can_parse(c))
            conn_close(c);
        else if (c->state == CS_HANDLING && (c->in == NULL || evbuffer_get_length(c->in) == 0))
            c->close_after_write = true;
    }
    c->parsing = was_parsing;
    conn_leave(c);
}

/* EOF (error false) or a broken connection (true). */
static void conn_on_eof(struct aos_http_conn *c, bool error)
{
    conn_read_off(c);
    c->read_eof = true;
    if (error) {
        /* Client gone.  A request being handled keeps running; its
         * response is discarded (conn_free detaches it). */
        conn_close(c);
        return;
    }
    switch (c->state) {
    case CS_HANDLING:
    case CS_WRITING:
        /* A half-close after the request (printf ... | nc does it) still
         * deserves the response; close once it is written (after any
         * pipelined ones). */
        if (c->in == NULL || evbuffer_get_length(c->in) == 0)
            c->close_after_write = true;
        return;
    case CS_TAKEOVER:
        return; /* the new owner will see it */
    default:
        conn_close(c);
        return;
    }
}

static void conn_on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct aos_http_conn *c = arg;
    struct hloop *hl = c->hl;
    (void)what;
    ssize_t n;
    do {
        n = recv(fd, hl->rbuf, sizeof hl->rbuf, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        if (c->state == CS_LINGER || c->linger)
            return; /* a refused client's bytes: discarded */
        conn_process(c, hl->rbuf, (size_t)n);
        return;
    }
    if (n < 0 && io_retry(errno))
        return;
    conn_on_eof(c, n < 0);
}

static void conn_expire(struct aos_http_conn *c)
{
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
    case CS_WRITING:
    case CS_TAKEOVER:
        aos_debug("write timeout: closing", "client", c->peer_ip, NULL);
        conn_free(c);
        return;
    default:
        return;
    }
}

/* The loop's one timer: expires every connection whose deadline has come,
 * then re-arms for the earliest one left. */
static void loop_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct hloop *hl = arg;
    (void)fd;
    (void)what;
    hl->tick_armed = false;
    int64_t now = mono_ms();
    for (int k = 0; k < DL_KINDS; k++) {
        struct aos_http_conn *c;
        while ((c = hl->deadlines[k].head) != NULL && c->deadline_ms <= now) {
            dl_unlink(c);
            conn_expire(c);
        }
    }
    int64_t next = INT64_MAX;
    for (int k = 0; k < DL_KINDS; k++)
        if (hl->deadlines[k].head != NULL && hl->deadlines[k].head->deadline_ms < next)
            next = hl->deadlines[k].head->deadline_ms;
    if (next != INT64_MAX && (!hl->tick_armed || next < hl->tick_at))
        loop_arm_tick(hl, next, now);
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
    c->fd = fd;
    c->dl_kind = DL_NONE;
    c->rev = event_new(aos_loop_base(hl->loop), fd, EV_READ | EV_PERSIST, conn_on_readable, c);
    c->wev = event_new(aos_loop_base(hl->loop), fd, EV_WRITE | EV_PERSIST, conn_on_writable, c);
    if (c->rev == NULL || c->wev == NULL) {
        if (c->rev != NULL)
            event_free(c->rev);
        if (c->wev != NULL)
            event_free(c->wev);
        evutil_closesocket(fd);
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
    /* Read interest for the connection's whole life: no epoll_ctl per
     * request. */
    conn_read_on(c);
    /* A fresh connection must send its first request within the header
     * timeout, not the (longer) keep-alive idle timeout. */
    conn_deadline(c, DL_HEADER, hl->limits.header_timeout);
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
        hl->tick = evtimer_new(aos_loop_base(hl->loop), loop_on_tick, hl);
        if (hl->tick == NULL)
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
            if (hl->tick != NULL)
                event_free(hl->tick);
            aos_loop_free(hl->loop);
        }
        free(hl->head.data);
        for (size_t a = 0; hl->sockets != NULL && a < server->naddrs; a++)
            if (hl->sockets[a].fd >= 0)
                close(hl->sockets[a].fd);
        free(hl->sockets);
        free(hl->listeners);
    }
    free(server->loops);
    free(server);
}
