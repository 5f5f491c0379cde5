/*
 * Router: a static table of routes per group, matched by method and path.
 *
 * Patterns are absolute paths whose segments are literals or parameters:
 *   "/api/v1/agents/{id}/runs".  A parameter matches one non-empty segment;
 * its value is percent-decoded (a %2F in it stays inside the value and does
 * not split segments).  Literal segments win over parameters at the same
 * depth ("/runs/stats" beats "/runs/{id}"), independent of table order.
 * A trailing slash is significant ("/a/" != "/a").
 *
 * Matching yields FOUND, METHOD_NOT_ALLOWED (with the Allow list of the
 * methods that do match the path, always including HEAD when GET is there)
 * or NOT_FOUND.  HEAD requests match GET routes.
 *
 * Details:
 * - A route is method + pattern: a request is FOUND when some route of its
 *   method matches the path; among those, literal-before-parameter decides
 *   segment by segment from the left (so DELETE /runs/stats finds DELETE
 *   /runs/{id} even if GET /runs/stats exists).  METHOD_NOT_ALLOWED only
 *   when no route of the method matches; Allow is then the union of the
 *   methods of all routes matching the path, in the fixed order
 *   "GET, HEAD, POST, PUT, PATCH, DELETE".
 * - Literal segments are compared with the raw path bytes (no decoding):
 *   "/agent%73" does not match "/agents".  Only parameter values are
 *   decoded.  '+' is not a space in a path.
 * - An empty segment ("//", or the last one of "/a/") never fills a
 *   parameter; it matches only a pattern ending in '/'.
 * - A path that is empty or does not start with '/' (e.g. "*") is
 *   NOT_FOUND.  BAD_PATH (checked over the whole path, before matching):
 *   '%' not followed by two hex digits, "%00", or a raw NUL byte.
 * - Pattern literals may use RFC 3986 pchars except '%' (no "." or ".."
 *   segments); parameter names are [A-Za-z_][A-Za-z0-9_]*.  Methods are
 *   exactly "GET", "POST", "PUT", "PATCH", "DELETE" (no HEAD routes).
 * - Route indexes are given in order of addition across all tables.
 * - Cost: no allocation for routes without parameters; one malloc (freed by
 *   aos_route_match_release) when there are.  Its failure aborts.
 *
 * Thread-safety: a router is built once (aos_router_add) and then only read;
 * aos_router_match may run on several threads at once.
 */
#ifndef AOS_HTTP_ROUTER_H
#define AOS_HTTP_ROUTER_H

#include <stddef.h>

struct aos_http_request;

typedef void (*aos_http_handler_fn)(struct aos_http_request *req, void *ctx);

/* Role a route requires; filled in by the identity work.  AOS_ROLE_NONE =
 * no authentication. */
enum aos_route_role { AOS_ROLE_NONE = 0, AOS_ROLE_USER, AOS_ROLE_APPROVER, AOS_ROLE_ADMIN };

struct aos_route {
    const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *pattern; /* "/api/v1/agents/{id}" */
    aos_http_handler_fn handler;
    int role;       /* enum aos_route_role */
    unsigned flags; /* reserved for later issues; 0 */
};

/* The route authenticates credentials when they are sent (principal set)
 * but does not require them (role NONE); the handler decides. */
#define AOS_ROUTE_AUTH_OPTIONAL 0x1u

#define AOS_ROUTE_MAX_PARAMS 8

struct aos_route_param {
    const char *name; /* points into the route pattern (not NUL-terminated at '}'): use name_len */
    size_t name_len;
    char *value; /* NUL-terminated, percent-decoded, inside aos_route_match.buf */
    size_t value_len;
};

enum aos_route_status {
    AOS_ROUTE_FOUND = 0,
    AOS_ROUTE_NOT_FOUND = 1,
    AOS_ROUTE_METHOD_NOT_ALLOWED = 2,
    AOS_ROUTE_BAD_PATH = 3
};

struct aos_route_match {
    const struct aos_route *route; /* FOUND only */
    void *ctx;                     /* the ctx given with the route's table */
    int index;                     /* stable index of the route, 0..aos_router_count()-1, for metrics */
    struct aos_route_param params[AOS_ROUTE_MAX_PARAMS];
    size_t nparams;
    char allow[96]; /* METHOD_NOT_ALLOWED: "GET, HEAD, POST" */
    char *buf;      /* decoded parameter storage, owned: free with aos_route_match_release */
};

struct aos_router;

struct aos_router *aos_router_new(void);
void aos_router_free(struct aos_router *router);

/* Adds n routes (the table must outlive the router).  Returns 0, or -1 with
 * a message in err for an invalid pattern (not starting with '/', empty or
 * malformed {param}, more than AOS_ROUTE_MAX_PARAMS params, unknown method)
 * or a duplicate (same method and same pattern shape).  The message names
 * the route's position in the table and its "METHOD pattern".  A rejected
 * table adds none of its routes (except after "out of memory"). */
int aos_router_add(struct aos_router *router, const struct aos_route *routes, size_t n, void *ctx, char *err,
                   size_t errlen);

size_t aos_router_count(const struct aos_router *router);
/* Route by stable index (for metrics labels); NULL if out of range. */
const struct aos_route *aos_router_route(const struct aos_router *router, int index);

/* Matches method (e.g. "GET") and path (no query string; raw, not decoded,
 * length path_len).  Returns the status; fills *m.  AOS_ROUTE_BAD_PATH for a
 * path that cannot be decoded (bad %XX, decoded NUL).  Call
 * aos_route_match_release(m) whatever the result.  Unless FOUND, m->route
 * and m->ctx are NULL, m->index is -1, m->nparams 0 and m->buf NULL;
 * m->allow is "" unless METHOD_NOT_ALLOWED.  path need not be
 * NUL-terminated; method must be (NULL or an unknown method matches no
 * route, but can still yield METHOD_NOT_ALLOWED). */
enum aos_route_status aos_router_match(const struct aos_router *router, const char *method, const char *path,
                                       size_t path_len, struct aos_route_match *m);
void aos_route_match_release(struct aos_route_match *m);

/* Value of parameter `name`, or NULL. */
const char *aos_route_param(const struct aos_route_match *m, const char *name);

#endif
