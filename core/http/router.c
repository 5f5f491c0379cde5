#include "config.h"

#include "http/router.h"

#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The routes form a segment tree: each node has literal children (matched
 * by exact bytes of the raw segment) and at most one parameter child
 * shared by every route that has a parameter at that position.  Matching
 * walks literals before the parameter and backtracks, so at each depth a
 * literal wins over a parameter whatever the order of the tables.  The
 * tree points into the caller's patterns and is never written after
 * aos_router_add, so concurrent matches need no locking.
 */

/* Route methods, in the order of the Allow header.  HEAD is not a slot:
 * it is answered by the GET route. */
enum { M_GET, M_POST, M_PUT, M_PATCH, M_DELETE, M_COUNT };

static const char *const method_names[M_COUNT] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

struct rt_node;

struct rt_lit {
    const char *seg; /* into the route pattern, not NUL-terminated */
    size_t len;
    struct rt_node *node;
};

struct rt_node {
    struct rt_lit *lits;
    size_t nlits;
    struct rt_node *param;
    int route[M_COUNT]; /* entry index ending here, per method, or -1 */
    unsigned methods;   /* bit per method that has a route here */
};

struct rt_name {
    const char *name;
    size_t len;
};

struct rt_entry {
    const struct aos_route *route;
    void *ctx;
    int method;
    size_t nparams;
    struct rt_name params[AOS_ROUTE_MAX_PARAMS];
};

struct aos_router {
    struct rt_node *root;
    struct rt_entry *entries; /* index = stable route index */
    size_t n;
    size_t cap;
};

/* Error text is advisory: a truncated message is still a message, so the
 * snprintf result is deliberately not treated as a failure. */
__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n < 0)
        err[0] = '\0';
}

static struct rt_node *node_new(void)
{
    struct rt_node *n = calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    for (int i = 0; i < M_COUNT; i++)
        n->route[i] = -1;
    return n;
}

static void node_free(struct rt_node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nlits; i++)
        node_free(n->lits[i].node);
    free(n->lits);
    node_free(n->param);
    free(n);
}

struct aos_router *aos_router_new(void)
{
    struct aos_router *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->root = node_new();
    if (r->root == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

void aos_router_free(struct aos_router *router)
{
    if (router == NULL)
        return;
    node_free(router->root);
    free(router->entries);
    free(router);
}

size_t aos_router_count(const struct aos_router *router) { return router ? router->n : 0; }

const struct aos_route *aos_router_route(const struct aos_router *router, int index)
{
    if (router == NULL || index < 0 || (size_t)index >= router->n)
        return NULL;
    return router->entries[index].route;
}

/* ------------------------------------------------------------ patterns */

static int method_index(const char *method)
{
    for (int i = 0; i < M_COUNT; i++)
        if (strcmp(method, method_names[i]) == 0)
            return i;
    return -1;
}

/* RFC 3986 pchar without pct-encoded: literals are compared with the raw
 * request path, so a literal holding '%' could never match reliably. */
static int is_literal_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

static int is_name_char(unsigned char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return 1;
    return !first && c >= '0' && c <= '9';
}

/* Checks one pattern and records its parameter names.  Returns 0 or -1
 * with the reason in why. */
static int pattern_parse(const char *pat, struct rt_entry *e, char *why, size_t whylen)
{
    if (pat[0] != '/') {
        set_err(why, whylen, "pattern must start with '/'");
        return -1;
    }
    e->nparams = 0;
    const char *s = pat + 1;
    for (;;) {
        const char *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        size_t at = (size_t)(s - pat);
        if (len == 0 && end != NULL) {
            set_err(why, whylen,
                    "empty segment at byte %zu (only the last segment may be empty, for a trailing slash)",
                    at);
            return -1;
        }
        if (len > 0 && s[0] == '{') {
            if (s[len - 1] != '}') {
                set_err(why, whylen,
                        "unterminated parameter at byte %zu: a parameter is a whole segment like {name}", at);
                return -1;
            }
            const char *name = s + 1;
            size_t nlen = len - 2;
            if (nlen == 0) {
                set_err(why, whylen, "empty parameter name at byte %zu", at);
                return -1;
            }
            for (size_t i = 0; i < nlen; i++)
                if (!is_name_char((unsigned char)name[i], i == 0)) {
                    set_err(
                        why, whylen,
                        "invalid parameter name at byte %zu: use a letter or '_' then letters, digits, '_'",
                        at + 1 + i);
                    return -1;
                }
            for (size_t i = 0; i < e->nparams; i++)
                if (e->params[i].len == nlen && memcmp(e->params[i].name, name, nlen) == 0) {
                    set_err(why, whylen, "parameter {%.*s} appears twice", (int)nlen, name);
                    return -1;
                }
            if (e->nparams == AOS_ROUTE_MAX_PARAMS) {
                set_err(why, whylen, "more than %d parameters", AOS_ROUTE_MAX_PARAMS);
                return -1;
            }
            e->params[e->nparams].name = name;
            e->params[e->nparams].len = nlen;
            e->nparams++;
        } else {
            if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.')) {
                set_err(why, whylen, "dot segment at byte %zu", at);
                return -1;
            }
            for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '{' || c == '}') {
                    set_err(why, whylen, "'%c' at byte %zu: a parameter must be a whole segment like {name}",
                            c, at + i);
                    return -1;
                }
                if (!is_literal_char(c)) {
                    set_err(why, whylen, "character 0x%02x at byte %zu is not allowed in a literal segment",
                            c, at + i);
                    return -1;
                }
            }
        }
        if (end == NULL)
            break;
        s = end + 1;
    }
    return 0;
}

static int seg_is_param(const char *s, size_t len) { return len > 0 && s[0] == '{'; }

/* Same shape = same segments, parameters compared as wildcards. */
static int pattern_same_shape(const char *a, const char *b)
{
    for (;;) {
        const char *ea = strchr(a, '/');
        const char *eb = strchr(b, '/');
        size_t la = ea ? (size_t)(ea - a) : strlen(a);
        size_t lb = eb ? (size_t)(eb - b) : strlen(b);
        int pa = seg_is_param(a, la);
        int pb = seg_is_param(b, lb);
        if (pa != pb)
            return 0;
        if (!pa && (la != lb || memcmp(a, b, la) != 0))
            return 0;
        if ((ea == NULL) != (eb == NULL))
            return 0;
        if (ea == NULL)
            return 1;
        a = ea + 1;
        b = eb + 1;
    }
}

static struct rt_node *node_child(struct rt_node *n, const char *seg, size_t len)
{
    if (seg_is_param(seg, len)) {
        if (n->param == NULL)
            n->param = node_new();
        return n->param;
    }
    for (size_t i = 0; i < n->nlits; i++)
        if (n->lits[i].len == len && memcmp(n->lits[i].seg, seg, len) == 0)
            return n->lits[i].node;
    struct rt_lit *lits = realloc(n->lits, (n->nlits + 1) * sizeof *lits);
    if (lits == NULL)
        return NULL;
    n->lits = lits;
    struct rt_node *child = node_new();
    if (child == NULL)
        return NULL;
    lits[n->nlits].seg = seg;
    lits[n->nlits].len = len;
    lits[n->nlits].node = child;
    n->nlits++;
    return child;
}

static int tree_insert(struct rt_node *root, const char *pat, int method, int index)
{
    struct rt_node *n = root;
    const char *s = pat + 1;
    for (;;) {
        const char *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        n = node_child(n, s, len);
        if (n == NULL)
            return -1;
        if (end == NULL)
            break;
        s = end + 1;
    }
    /* Duplicates were rejected before any insertion. */
    aos_assert(n->route[method] < 0);
    n->route[method] = index;
    n->methods |= 1u << method;
    return 0;
}

int aos_router_add(struct aos_router *router, const struct aos_route *routes, size_t n, void *ctx, char *err,
                   size_t errlen)
{
    int rc = -1;
    char why[160];
    struct rt_entry *batch = NULL;

    if (router == NULL || (routes == NULL && n > 0)) {
        set_err(err, errlen, "aos_router_add: no router or no routes");
        goto out;
    }
    if (n == 0) {
        rc = 0;
        goto out;
    }
    if (n > (size_t)INT32_MAX - router->n) {
        set_err(err, errlen, "too many routes");
        goto out;
    }
    batch = calloc(n, sizeof *batch);
    if (batch == NULL) {
        set_err(err, errlen, "out of memory");
        goto out;
    }

    /* Validate the whole table first so that a bad table adds nothing. */
    for (size_t i = 0; i < n; i++) {
        const struct aos_route *rt = &routes[i];
        const char *meth = rt->method ? rt->method : "(null)";
        const char *pat = rt->pattern ? rt->pattern : "(null)";
        struct rt_entry *e = &batch[i];
        e->route = rt;
        e->ctx = ctx;
        if (rt->method == NULL || rt->pattern == NULL) {
            set_err(err, errlen, "route %zu \"%s %s\": method and pattern are required", i, meth, pat);
            goto out;
        }
        e->method = method_index(rt->method);
        if (e->method < 0) {
            if (strcmp(rt->method, "HEAD") == 0)
                set_err(err, errlen, "route %zu \"%s %s\": no HEAD routes: a GET route answers HEAD too", i,
                        meth, pat);
            else
                set_err(err, errlen,
                        "route %zu \"%s %s\": unknown method (use GET, POST, PUT, PATCH or DELETE)", i, meth,
                        pat);
            goto out;
        }
        if (pattern_parse(rt->pattern, e, why, sizeof why) < 0) {
            set_err(err, errlen, "route %zu \"%s %s\": %s", i, meth, pat, why);
            goto out;
        }
        if (rt->handler == NULL) {
            set_err(err, errlen, "route %zu \"%s %s\": handler is NULL", i, meth, pat);
            goto out;
        }
        for (size_t j = 0; j < router->n + i; j++) {
            const struct rt_entry *o = j < router->n ? &router->entries[j] : &batch[j - router->n];
            if (o->method == e->method && pattern_same_shape(o->route->pattern, rt->pattern)) {
                set_err(
                    err, errlen,
                    "route %zu \"%s %s\": duplicate of \"%s %s\" (route index %zu): same method and shape", i,
                    meth, pat, o->route->method, o->route->pattern, j);
                goto out;
            }
        }
    }

    if (router->n + n > router->cap) {
        size_t cap = router->cap ? router->cap : 16;
        while (cap < router->n + n)
            cap *= 2;
        struct rt_entry *ent = realloc(router->entries, cap * sizeof *ent);
        if (ent == NULL) {
            set_err(err, errlen, "out of memory");
            goto out;
        }
        router->entries = ent;
        router->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        int index = (int)router->n;
        if (tree_insert(router->root, batch[i].route->pattern, batch[i].method, index) < 0) {
            /* The tree may hold a node without a route now: harmless for
             * matching, but the table is incomplete, so say so. */
            set_err(err, errlen, "out of memory (router holds part of the table; free it)");
            goto out;
        }
        router->entries[router->n++] = batch[i];
    }
    rc = 0;
out:
    free(batch);
    return rc;
}

/* ------------------------------------------------------------ matching */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The whole path is checked up front, not only the parameter segments: a
 * path that cannot be decoded is a client error whatever it would match. */
static int path_valid(const char *path, size_t len)
{
    if (memchr(path, '\0', len) != NULL)
        return 0;
    const char *p = path;
    const char *end = path + len;
    while ((p = memchr(p, '%', (size_t)(end - p))) != NULL) {
        if (end - p < 3)
            return 0;
        int hi = hexval((unsigned char)p[1]);
        int lo = hexval((unsigned char)p[2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return 0;
        p += 3;
    }
    return 1;
}

struct walk {
    const char *path;
    size_t len;
    int method; /* M_*, or -1 for a method no route can have */
    int found;
    unsigned allow;
    size_t nparams;
    size_t pstart[AOS_ROUTE_MAX_PARAMS];
    size_t plen[AOS_ROUTE_MAX_PARAMS];
};

static int walk_node(const struct rt_node *node, size_t pos, struct walk *w);

/* child matched the segment ending at end; descend or, at the end of the
 * path, see whether it holds a route for the method. */
static int walk_child(const struct rt_node *child, size_t end, struct walk *w)
{
    if (end < w->len)
        return walk_node(child, end + 1, w);
    if (w->method >= 0 && child->route[w->method] >= 0) {
        w->found = child->route[w->method];
        return 1;
    }
    w->allow |= child->methods;
    return 0;
}

static int walk_node(const struct rt_node *node, size_t pos, struct walk *w)
{
    const char *seg = w->path + pos;
    size_t rest = w->len - pos;
    const char *slash = memchr(seg, '/', rest);
    size_t seglen = slash ? (size_t)(slash - seg) : rest;

    for (size_t i = 0; i < node->nlits; i++) {
        const struct rt_lit *l = &node->lits[i];
        if (l->len == seglen && memcmp(l->seg, seg, seglen) == 0) {
            if (walk_child(l->node, pos + seglen, w))
                return 1;
            break; /* literals are unique per node */
        }
    }
    /* An empty segment ("//", trailing '/') never fills a parameter. */
    if (node->param != NULL && seglen > 0 && w->nparams < AOS_ROUTE_MAX_PARAMS) {
        w->pstart[w->nparams] = pos;
        w->plen[w->nparams] = seglen;
        w->nparams++;
        if (walk_child(node->param, pos + seglen, w))
            return 1;
        w->nparams--;
    }
    return 0;
}

/* Decodes a validated segment; returns the decoded length. */
static size_t pct_decode(char *dst, const char *src, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '%') {
            dst[o++] = (char)(hexval((unsigned char)src[i + 1]) << 4 | hexval((unsigned char)src[i + 2]));
            i += 2;
        } else {
            dst[o++] = src[i];
        }
    }
    dst[o] = '\0';
    return o;
}

static void allow_format(char *out, size_t outlen, unsigned bits)
{
    static const char *const canon[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
    static const int slot[] = {M_GET, M_GET, M_POST, M_PUT, M_PATCH, M_DELETE};
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof canon / sizeof canon[0]; i++) {
        if (!(bits & (1u << slot[i])))
            continue;
        int k = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", canon[i]);
        /* All six methods need 36 bytes; the buffer has 96. */
        aos_assert(k > 0 && (size_t)k < outlen - used);
        used += (size_t)k;
    }
}

enum aos_route_status aos_router_match(const struct aos_router *router, const char *method, const char *path,
                                       size_t path_len, struct aos_route_match *m)
{
    aos_assert(router != NULL && m != NULL);
    m->route = NULL;
    m->ctx = NULL;
    m->index = -1;
    m->nparams = 0;
    m->allow[0] = '\0';
    m->buf = NULL;

    if (path == NULL || path_len == 0 || path[0] != '/')
        return AOS_ROUTE_NOT_FOUND;
    if (!path_valid(path, path_len))
        return AOS_ROUTE_BAD_PATH;

    struct walk w;
    w.path = path;
    w.len = path_len;
    w.method = method == NULL ? -1 : strcmp(method, "HEAD") == 0 ? M_GET : method_index(method);
    w.found = -1;
    w.allow = 0;
    w.nparams = 0;
    walk_node(router->root, 1, &w);

    if (w.found < 0) {
        if (w.allow == 0)
            return AOS_ROUTE_NOT_FOUND;
        allow_format(m->allow, sizeof m->allow, w.allow);
        return AOS_ROUTE_METHOD_NOT_ALLOWED;
    }

    const struct rt_entry *e = &router->entries[w.found];
    aos_assert(e->nparams == w.nparams);
    if (w.nparams > 0) {
        size_t total = 0;
        for (size_t i = 0; i < w.nparams; i++)
            total += w.plen[i] + 1;
        m->buf = malloc(total);
        /* No status can say "out of memory"; a request-sized malloc
         * failing means the process is done anyway. */
        aos_assert(m->buf != NULL);
        char *p = m->buf;
        for (size_t i = 0; i < w.nparams; i++) {
            m->params[i].name = e->params[i].name;
            m->params[i].name_len = e->params[i].len;
            m->params[i].value = p;
            m->params[i].value_len = pct_decode(p, path + w.pstart[i], w.plen[i]);
            p += m->params[i].value_len + 1;
        }
        m->nparams = w.nparams;
    }
    m->route = e->route;
    m->ctx = e->ctx;
    m->index = w.found;
    return AOS_ROUTE_FOUND;
}

void aos_route_match_release(struct aos_route_match *m)
{
    if (m == NULL)
        return;
    free(m->buf);
    m->buf = NULL;
    m->nparams = 0;
}

const char *aos_route_param(const struct aos_route_match *m, const char *name)
{
    if (m == NULL || name == NULL)
        return NULL;
    size_t len = strlen(name);
    for (size_t i = 0; i < m->nparams; i++)
        if (m->params[i].name_len == len && memcmp(m->params[i].name, name, len) == 0)
            return m->params[i].value;
    return NULL;
}
