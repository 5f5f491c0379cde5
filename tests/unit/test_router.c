#include "config.h"

/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/router.h"

static void h_a(struct aos_http_request *req, void *ctx) { (void)req, (void)ctx; }
static void h_b(struct aos_http_request *req, void *ctx) { (void)req, (void)ctx; }

/* Matches a path given as a NUL-terminated string, through an exactly
 * sized heap copy so that ASan catches any read past path_len. */
static enum aos_route_status match(const struct aos_router *r, const char *method, const char *path,
                                   struct aos_route_match *m)
{
    size_t len = strlen(path);
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, path, len);
    enum aos_route_status st = aos_router_match(r, method, copy, len, m);
    free(copy);
    /* Parameter values live in m->buf, not in the path. */
    return st;
}

/* The route a path finds, or NULL; releases the match. */
static const struct aos_route *found(const struct aos_router *r, const char *method, const char *path)
{
    struct aos_route_match m;
    enum aos_route_status st = match(r, method, path, &m);
    const struct aos_route *rt = st == AOS_ROUTE_FOUND ? m.route : NULL;
    aos_route_match_release(&m);
    return rt;
}

static enum aos_route_status status(const struct aos_router *r, const char *method, const char *path)
{
    struct aos_route_match m;
    enum aos_route_status st = match(r, method, path, &m);
    aos_route_match_release(&m);
    return st;
}

static struct aos_router *router_with(const struct aos_route *t, size_t n, void *ctx)
{
    char err[256] = "";
    struct aos_router *r = aos_router_new();
    assert_non_null(r);
    if (aos_router_add(r, t, n, ctx, err, sizeof err) != 0)
        fail_msg("aos_router_add: %s", err);
    return r;
}

#define N(t) (sizeof(t) / sizeof((t)[0]))

/* ------------------------------------------------------------ literals */

static const struct aos_route lit_routes[] = {
    {"GET", "/healthz", h_a, AOS_ROLE_NONE, 0},        {"GET", "/api/v1/agents", h_a, AOS_ROLE_USER, 0},
    {"POST", "/api/v1/agents", h_b, AOS_ROLE_USER, 0}, {"GET", "/", h_a, AOS_ROLE_NONE, 0},
    {"GET", "/api/v1/auth/me", h_a, AOS_ROLE_USER, 0},
};

static void test_literals(void **state)
{
    (void)state;
    int ctx;
    struct aos_router *r = router_with(lit_routes, N(lit_routes), &ctx);
    struct aos_route_match m;

    assert_int_equal(match(r, "GET", "/healthz", &m), AOS_ROUTE_FOUND);
    assert_ptr_equal(m.route, &lit_routes[0]);
    assert_ptr_equal(m.ctx, &ctx);
    assert_int_equal(m.index, 0);
    assert_int_equal(m.nparams, 0);
    assert_null(m.buf); /* no allocation without parameters */
    aos_route_match_release(&m);

    assert_ptr_equal(found(r, "GET", "/api/v1/agents"), &lit_routes[1]);
    assert_ptr_equal(found(r, "POST", "/api/v1/agents"), &lit_routes[2]);
    assert_ptr_equal(found(r, "GET", "/"), &lit_routes[3]);
    assert_ptr_equal(found(r, "GET", "/api/v1/auth/me"), &lit_routes[4]);

    assert_int_equal(status(r, "GET", "/api/v1/agent"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/api/v1/agentsx"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/api/v1/agents/extra"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/api/v1"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/HEALTHZ"), AOS_ROUTE_NOT_FOUND);
    /* Empty and relative paths are NOT_FOUND (documented choice). */
    assert_int_equal(status(r, "GET", ""), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "healthz"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "*"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(aos_router_match(r, "GET", NULL, 0, &m), AOS_ROUTE_NOT_FOUND);
    aos_route_match_release(&m);

    /* path_len is honoured: the bytes after it are not part of the path. */
    const char longer[] = "/healthzXYZ";
    assert_int_equal(aos_router_match(r, "GET", longer, 8, &m), AOS_ROUTE_FOUND);
    assert_ptr_equal(m.route, &lit_routes[0]);
    aos_route_match_release(&m);
    assert_int_equal(aos_router_match(r, "GET", longer, 9, &m), AOS_ROUTE_NOT_FOUND);
    aos_route_match_release(&m);

    aos_router_free(r);
}

/* ------------------------------------------------------------ params */

static const struct aos_route param_routes[] = {
    {"GET", "/api/v1/agents/{id}", h_a, 0, 0},
    {"GET", "/api/v1/agents/{id}/runs/{run_id}", h_b, 0, 0},
    {"GET", "/files/{name}", h_a, 0, 0},
};

static void test_params(void **state)
{
    (void)state;
    struct aos_router *r = router_with(param_routes, N(param_routes), NULL);
    struct aos_route_match m;

    assert_int_equal(match(r, "GET", "/api/v1/agents/42", &m), AOS_ROUTE_FOUND);
    assert_ptr_equal(m.route, &param_routes[0]);
    assert_int_equal(m.nparams, 1);
    assert_int_equal(m.params[0].name_len, 2);
    assert_memory_equal(m.params[0].name, "id", 2);
    assert_string_equal(m.params[0].value, "42");
    assert_int_equal(m.params[0].value_len, 2);
    assert_string_equal(aos_route_param(&m, "id"), "42");
    assert_null(aos_route_param(&m, "i"));
    assert_null(aos_route_param(&m, "idx"));
    assert_null(aos_route_param(&m, "run_id"));
    aos_route_match_release(&m);
    assert_null(m.buf);
    assert_int_equal(m.nparams, 0);
    aos_route_match_release(&m); /* twice is harmless */

    assert_int_equal(match(r, "GET", "/api/v1/agents/a-1/runs/r_2", &m), AOS_ROUTE_FOUND);
    assert_ptr_equal(m.route, &param_routes[1]);
    assert_int_equal(m.index, 1);
    assert_int_equal(m.nparams, 2);
    assert_string_equal(aos_route_param(&m, "id"), "a-1");
    assert_string_equal(aos_route_param(&m, "run_id"), "r_2");
    assert_non_null(m.buf);
    aos_route_match_release(&m);

    assert_int_equal(status(r, "GET", "/api/v1/agents/42/runs"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/api/v1/agents/42/runs/"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/api/v1/agents"), AOS_ROUTE_NOT_FOUND);
    aos_router_free(r);
}

static void test_decoding(void **state)
{
    (void)state;
    struct aos_router *r = router_with(param_routes, N(param_routes), NULL);
    struct aos_route_match m;

    assert_int_equal(match(r, "GET", "/files/hello%20world", &m), AOS_ROUTE_FOUND);
    assert_string_equal(aos_route_param(&m, "name"), "hello world");
    assert_int_equal(m.params[0].value_len, 11);
    aos_route_match_release(&m);

    /* An encoded slash stays inside the value and does not split. */
    assert_int_equal(match(r, "GET", "/files/a%2Fb", &m), AOS_ROUTE_FOUND);
    assert_ptr_equal(m.route, &param_routes[2]);
    assert_string_equal(aos_route_param(&m, "name"), "a/b");
    aos_route_match_release(&m);
    assert_int_equal(match(r, "GET", "/files/a%2fb%2F..", &m), AOS_ROUTE_FOUND);
    assert_string_equal(aos_route_param(&m, "name"), "a/b/..");
    aos_route_match_release(&m);

    /* '+' is not a space in a path; UTF-8 passes through. */
    assert_int_equal(match(r, "GET", "/files/a+b%C3%A9", &m), AOS_ROUTE_FOUND);
    assert_string_equal(aos_route_param(&m, "name"), "a+b\xc3\xa9");
    aos_route_match_release(&m);

    assert_int_equal(status(r, "GET", "/files/%zz"), AOS_ROUTE_BAD_PATH);
    assert_int_equal(status(r, "GET", "/files/%2"), AOS_ROUTE_BAD_PATH);
    assert_int_equal(status(r, "GET", "/files/%"), AOS_ROUTE_BAD_PATH);
    assert_int_equal(status(r, "GET", "/files/%g0"), AOS_ROUTE_BAD_PATH);
    assert_int_equal(status(r, "GET", "/files/a%00b"), AOS_ROUTE_BAD_PATH);
    /* Checked over the whole path, whatever it would match. */
    assert_int_equal(status(r, "GET", "/nowhere/%zz"), AOS_ROUTE_BAD_PATH);
    assert_int_equal(status(r, "GET", "/api/v1/agents/1/%00"), AOS_ROUTE_BAD_PATH);

    /* A raw NUL byte inside path_len. */
    const char raw[] = "/files/a\0b";
    assert_int_equal(aos_router_match(r, "GET", raw, sizeof raw - 1, &m), AOS_ROUTE_BAD_PATH);
    assert_null(m.route);
    aos_route_match_release(&m);

    /* Literals compare raw bytes: an encoded literal is not the literal. */
    assert_int_equal(status(r, "GET", "/fil%65s/x"), AOS_ROUTE_NOT_FOUND);
    aos_router_free(r);
}

/* ------------------------------------------------------------ priority */

static const struct aos_route prio_param_first[] = {
    {"GET", "/runs/{id}", h_a, 0, 0},
    {"GET", "/runs/stats", h_b, 0, 0},
};
static const struct aos_route prio_literal_first[] = {
    {"GET", "/runs/stats", h_b, 0, 0},
    {"GET", "/runs/{id}", h_a, 0, 0},
};

static void check_priority(const struct aos_route *t, size_t n)
{
    struct aos_router *r = router_with(t, n, NULL);
    struct aos_route_match m;
    assert_int_equal(match(r, "GET", "/runs/stats", &m), AOS_ROUTE_FOUND);
    assert_string_equal(m.route->pattern, "/runs/stats");
    assert_int_equal(m.nparams, 0);
    aos_route_match_release(&m);
    assert_int_equal(match(r, "GET", "/runs/statsx", &m), AOS_ROUTE_FOUND);
    assert_string_equal(m.route->pattern, "/runs/{id}");
    assert_string_equal(aos_route_param(&m, "id"), "statsx");
    aos_route_match_release(&m);
    aos_router_free(r);
}

static void test_priority_order_independent(void **state)
{
    (void)state;
    check_priority(prio_param_first, N(prio_param_first));
    check_priority(prio_literal_first, N(prio_literal_first));
}

static const struct aos_route backtrack_routes[] = {
    {"GET", "/a/{x}/d", h_a, 0, 0},
    {"GET", "/a/b/c", h_b, 0, 0},
    {"GET", "/{p}/y", h_a, 0, 0},
    {"GET", "/x/{q}", h_b, 0, 0},
};

static void test_priority_backtracking(void **state)
{
    (void)state;
    struct aos_router *r = router_with(backtrack_routes, N(backtrack_routes), NULL);
    struct aos_route_match m;

    assert_ptr_equal(found(r, "GET", "/a/b/c"), &backtrack_routes[1]);
    /* The literal "b" leads nowhere for ".../d": the parameter takes it. */
    assert_int_equal(match(r, "GET", "/a/b/d", &m), AOS_ROUTE_FOUND);
    assert_ptr_equal(m.route, &backtrack_routes[0]);
    assert_string_equal(aos_route_param(&m, "x"), "b");
    aos_route_match_release(&m);
    /* The leftmost literal decides: /x/{q} beats /{p}/y for /x/y. */
    assert_int_equal(match(r, "GET", "/x/y", &m), AOS_ROUTE_FOUND);
    assert_ptr_equal(m.route, &backtrack_routes[3]);
    assert_string_equal(aos_route_param(&m, "q"), "y");
    assert_null(aos_route_param(&m, "p"));
    aos_route_match_release(&m);
    assert_ptr_equal(found(r, "GET", "/z/y"), &backtrack_routes[2]);
    aos_router_free(r);
}

/* ------------------------------------------------------------ 405 / HEAD */

static const struct aos_route method_routes[] = {
    {"DELETE", "/r", h_a, 0, 0},       {"GET", "/r", h_a, 0, 0},         {"POST", "/r/{id}", h_a, 0, 0},
    {"GET", "/runs/stats", h_a, 0, 0}, {"PUT", "/runs/{id}", h_a, 0, 0}, {"DELETE", "/runs/{id}", h_a, 0, 0},
    {"PATCH", "/all", h_a, 0, 0},      {"DELETE", "/all", h_a, 0, 0},    {"PUT", "/all", h_a, 0, 0},
    {"POST", "/all", h_a, 0, 0},       {"GET", "/all", h_a, 0, 0},       {"POST", "/post-only", h_a, 0, 0},
};

static void expect_405(const struct aos_router *r, const char *method, const char *path, const char *allow)
{
    struct aos_route_match m;
    assert_int_equal(match(r, method, path, &m), AOS_ROUTE_METHOD_NOT_ALLOWED);
    assert_string_equal(m.allow, allow);
    assert_null(m.route);
    assert_null(m.buf);
    aos_route_match_release(&m);
}

static void test_method_not_allowed(void **state)
{
    (void)state;
    struct aos_router *r = router_with(method_routes, N(method_routes), NULL);

    expect_405(r, "PUT", "/r", "GET, HEAD, DELETE");
    expect_405(r, "POST", "/r", "GET, HEAD, DELETE");
    expect_405(r, "OPTIONS", "/r", "GET, HEAD, DELETE");
    expect_405(r, "get", "/r", "GET, HEAD, DELETE"); /* methods are case-sensitive */
    expect_405(r, "PATCH", "/r/1", "POST");
    expect_405(r, "OPTIONS", "/all", "GET, HEAD, POST, PUT, PATCH, DELETE");
    /* Allow is the union over every route matching the path. */
    expect_405(r, "POST", "/runs/stats", "GET, HEAD, PUT, DELETE");
    expect_405(r, "GET", "/runs/7", "PUT, DELETE");
    /* A route of the request's method matches: FOUND, even through a
     * parameter where a literal of another method exists. */
    assert_ptr_equal(found(r, "DELETE", "/runs/stats"), &method_routes[5]);
    assert_ptr_equal(found(r, "GET", "/runs/stats"), &method_routes[3]);

    assert_int_equal(status(r, "GET", "/nothing"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "OPTIONS", "/nothing"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/r/"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, NULL, "/nothing"), AOS_ROUTE_NOT_FOUND);
    expect_405(r, NULL, "/r", "GET, HEAD, DELETE");

    struct aos_route_match m;
    assert_int_equal(match(r, "GET", "/r", &m), AOS_ROUTE_FOUND);
    assert_string_equal(m.allow, ""); /* only filled for 405 */
    aos_route_match_release(&m);
    aos_router_free(r);
}

static void test_head(void **state)
{
    (void)state;
    struct aos_router *r = router_with(method_routes, N(method_routes), NULL);
    struct aos_route_match m;
    assert_int_equal(match(r, "HEAD", "/r", &m), AOS_ROUTE_FOUND);
    assert_ptr_equal(m.route, &method_routes[1]);
    assert_string_equal(m.route->method, "GET");
    assert_int_equal(m.index, 1);
    aos_route_match_release(&m);
    expect_405(r, "HEAD", "/post-only", "POST");
    expect_405(r, "HEAD", "/runs/7", "PUT, DELETE");
    assert_int_equal(status(r, "HEAD", "/nothing"), AOS_ROUTE_NOT_FOUND);
    aos_router_free(r);
}

/* ------------------------------------------------------------ slashes */

static const struct aos_route slash_routes[] = {
    {"GET", "/a", h_a, 0, 0},
    {"GET", "/b/", h_a, 0, 0},
    {"GET", "/c/{x}", h_a, 0, 0},
    {"GET", "/d/{x}/e", h_a, 0, 0},
};

static void test_trailing_slash(void **state)
{
    (void)state;
    struct aos_router *r = router_with(slash_routes, N(slash_routes), NULL);
    assert_ptr_equal(found(r, "GET", "/a"), &slash_routes[0]);
    assert_int_equal(status(r, "GET", "/a/"), AOS_ROUTE_NOT_FOUND);
    assert_ptr_equal(found(r, "GET", "/b/"), &slash_routes[1]);
    assert_int_equal(status(r, "GET", "/b"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/b//"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "//a"), AOS_ROUTE_NOT_FOUND);
    /* An empty segment never fills a parameter. */
    assert_ptr_equal(found(r, "GET", "/c/1"), &slash_routes[2]);
    assert_int_equal(status(r, "GET", "/c/"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/c//"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/c/1/"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/d//e"), AOS_ROUTE_NOT_FOUND);
    assert_ptr_equal(found(r, "GET", "/d/1/e"), &slash_routes[3]);
    aos_router_free(r);
}

/* ------------------------------------------------------------ add errors */

struct bad_case {
    struct aos_route route;
    const char *expect; /* substring of the error */
};

static void test_invalid_patterns(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {{"GET", "a/b", h_a, 0, 0}, "route 0 \"GET a/b\": pattern must start with '/'"},
        {{"GET", "", h_a, 0, 0}, "pattern must start with '/'"},
        {{"GET", "/a//b", h_a, 0, 0}, "empty segment at byte 3"},
        {{"GET", "//", h_a, 0, 0}, "empty segment at byte 1"},
        {{"GET", "/a/{", h_a, 0, 0}, "unterminated parameter at byte 3"},
        {{"GET", "/a/{x", h_a, 0, 0}, "unterminated parameter at byte 3"},
        {{"GET", "/a/{x}y", h_a, 0, 0}, "unterminated parameter at byte 3"},
        {{"GET", "/a/{}", h_a, 0, 0}, "empty parameter name at byte 3"},
        {{"GET", "/a/{1x}", h_a, 0, 0}, "invalid parameter name at byte 4"},
        {{"GET", "/a/{x-y}", h_a, 0, 0}, "invalid parameter name at byte 5"},
        {{"GET", "/a/x{y}", h_a, 0, 0}, "'{' at byte 4: a parameter must be a whole segment"},
        {{"GET", "/a/x}", h_a, 0, 0}, "'}' at byte 4"},
        {{"GET", "/a/{x}/{x}", h_a, 0, 0}, "parameter {x} appears twice"},
        {{"GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", h_a, 0, 0}, "more than 8 parameters"},
        {{"GET", "/a%20b", h_a, 0, 0}, "character 0x25 at byte 2 is not allowed"},
        {{"GET", "/a b", h_a, 0, 0}, "character 0x20 at byte 2 is not allowed"},
        {{"GET", "/a?x=1", h_a, 0, 0}, "character 0x3f at byte 2"},
        {{"GET", "/a/../b", h_a, 0, 0}, "dot segment at byte 3"},
        {{"GET", "/./b", h_a, 0, 0}, "dot segment at byte 1"},
        {{"HEAD", "/a", h_a, 0, 0}, "no HEAD routes: a GET route answers HEAD too"},
        {{"get", "/a", h_a, 0, 0}, "\"get /a\": unknown method (use GET, POST, PUT, PATCH or DELETE)"},
        {{"OPTIONS", "/a", h_a, 0, 0}, "unknown method"},
        {{NULL, "/a", h_a, 0, 0}, "method and pattern are required"},
        {{"GET", NULL, h_a, 0, 0}, "method and pattern are required"},
        {{"GET", "/a", NULL, 0, 0}, "\"GET /a\": handler is NULL"},
    };
    static const struct aos_route good = {"GET", "/good", h_a, 0, 0};

    struct aos_router *r = router_with(&good, 1, NULL);
    for (size_t i = 0; i < N(cases); i++) {
        char err[256] = "";
        if (aos_router_add(r, &cases[i].route, 1, NULL, err, sizeof err) != -1)
            fail_msg("case %zu (%s) was accepted", i,
                     cases[i].route.pattern ? cases[i].route.pattern : "NULL");
        if (strstr(err, cases[i].expect) == NULL)
            fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, cases[i].expect);
    }
    assert_int_equal(aos_router_count(r), 1);

    /* A bad route late in a table adds nothing from that table. */
    const struct aos_route table[] = {
        {"GET", "/ok1", h_a, 0, 0},
        {"GET", "/ok2", h_a, 0, 0},
        {"GET", "/bad/{", h_a, 0, 0},
    };
    char err[256] = "";
    assert_int_equal(aos_router_add(r, table, N(table), NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "route 2 \"GET /bad/{\""));
    assert_int_equal(aos_router_count(r), 1);
    assert_int_equal(status(r, "GET", "/ok1"), AOS_ROUTE_NOT_FOUND);

    /* No err buffer, or a tiny one: still -1, still terminated. */
    assert_int_equal(aos_router_add(r, table, N(table), NULL, NULL, 0), -1);
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    assert_int_equal(aos_router_add(r, table, N(table), NULL, tiny, sizeof tiny), -1);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);

    /* Valid edge patterns. */
    static const struct aos_route edge[] = {
        {"GET", "/", h_a, 0, 0},
        {"GET", "/x/", h_a, 0, 0},
        {"GET", "/v1/a:b@c!$&'()*+,;=-._~", h_a, 0, 0},
        {"GET", "/{_x9}/{Y}", h_a, 0, 0},
        {"GET", "/...", h_a, 0, 0},
    };
    assert_int_equal(aos_router_add(r, edge, N(edge), NULL, err, sizeof err), 0);
    assert_ptr_equal(found(r, "GET", "/v1/a:b@c!$&'()*+,;=-._~"), &edge[2]);
    assert_ptr_equal(found(r, "GET", "/..."), &edge[4]);
    assert_int_equal(aos_router_add(r, NULL, 0, NULL, err, sizeof err), 0);
    assert_int_equal(aos_router_count(r), 6);
    aos_router_free(r);
}

static void test_duplicates(void **state)
{
    (void)state;
    static const struct aos_route base[] = {
        {"GET", "/a/{x}", h_a, 0, 0},
        {"GET", "/a/b", h_a, 0, 0},
        {"POST", "/a/{x}", h_a, 0, 0},
        {"GET", "/a/{x}/c", h_a, 0, 0},
    };
    struct aos_router *r = router_with(base, N(base), NULL);
    char err[256] = "";

    static const struct aos_route dup_param = {"GET", "/a/{y}", h_b, 0, 0};
    assert_int_equal(aos_router_add(r, &dup_param, 1, NULL, err, sizeof err), -1);
    assert_string_equal(
        err, "route 0 \"GET /a/{y}\": duplicate of \"GET /a/{x}\" (route index 0): same method and shape");

    static const struct aos_route dup_lit = {"GET", "/a/b", h_b, 0, 0};
    assert_int_equal(aos_router_add(r, &dup_lit, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "duplicate of \"GET /a/b\" (route index 1)"));

    /* Within one table. */
    static const struct aos_route dup_in_table[] = {
        {"DELETE", "/z/{id}/w", h_a, 0, 0},
        {"PUT", "/z/{id}/w", h_a, 0, 0},
        {"DELETE", "/z/{name}/w", h_a, 0, 0},
    };
    assert_int_equal(aos_router_add(r, dup_in_table, N(dup_in_table), NULL, err, sizeof err), -1);
    assert_string_equal(err, "route 2 \"DELETE /z/{name}/w\": duplicate of \"DELETE /z/{id}/w\" (route index "
                             "4): same method and shape");
    assert_int_equal(aos_router_count(r), N(base));
    assert_int_equal(status(r, "PUT", "/z/1/w"), AOS_ROUTE_NOT_FOUND);

    /* Not duplicates: other method, literal vs parameter, other length. */
    static const struct aos_route distinct[] = {
        {"PUT", "/a/{y}", h_a, 0, 0},
        {"GET", "/a/{y}/d", h_a, 0, 0},
        {"GET", "/a/{y}/", h_a, 0, 0},
        {"GET", "/{y}/b", h_a, 0, 0},
    };
    assert_int_equal(aos_router_add(r, distinct, N(distinct), NULL, err, sizeof err), 0);
    assert_int_equal(aos_router_count(r), N(base) + N(distinct));

    /* Each route keeps its own parameter names through a shared node. */
    struct aos_route_match m;
    assert_int_equal(match(r, "GET", "/a/1/d", &m), AOS_ROUTE_FOUND);
    assert_string_equal(aos_route_param(&m, "y"), "1");
    assert_null(aos_route_param(&m, "x"));
    aos_route_match_release(&m);
    assert_int_equal(match(r, "GET", "/a/1/c", &m), AOS_ROUTE_FOUND);
    assert_string_equal(aos_route_param(&m, "x"), "1");
    aos_route_match_release(&m);
    aos_router_free(r);
}

/* ------------------------------------------------------------ scale */

#define MANY 500

static void test_many_routes(void **state)
{
    (void)state;
    static char patterns[2 * MANY][48];
    static struct aos_route table[2 * MANY];
    for (int i = 0; i < MANY; i++) {
        int k = snprintf(patterns[2 * i], sizeof patterns[0], "/g%d/items/{id}", i);
        assert_true(k > 0 && (size_t)k < sizeof patterns[0]);
        k = snprintf(patterns[2 * i + 1], sizeof patterns[0], "/g%d/items/special", i);
        assert_true(k > 0 && (size_t)k < sizeof patterns[0]);
        table[2 * i] = (struct aos_route){"GET", patterns[2 * i], h_a, 0, 0};
        table[2 * i + 1] = (struct aos_route){"GET", patterns[2 * i + 1], h_b, 0, 0};
    }
    /* Added in two tables to check that indexes continue. */
    struct aos_router *r = router_with(table, MANY, NULL);
    char err[256];
    assert_int_equal(aos_router_add(r, table + MANY, MANY, NULL, err, sizeof err), 0);
    assert_int_equal(aos_router_count(r), 2 * MANY);

    for (int i = 0; i < MANY; i++) {
        char path[64];
        struct aos_route_match m;
        snprintf(path, sizeof path, "/g%d/items/special", i);
        assert_int_equal(match(r, "GET", path, &m), AOS_ROUTE_FOUND);
        assert_int_equal(m.index, 2 * i + 1);
        aos_route_match_release(&m);
        snprintf(path, sizeof path, "/g%d/items/x%d", i, i);
        assert_int_equal(match(r, "GET", path, &m), AOS_ROUTE_FOUND);
        assert_int_equal(m.index, 2 * i);
        assert_ptr_equal(m.route, &table[2 * i]);
        char want[32];
        snprintf(want, sizeof want, "x%d", i);
        assert_string_equal(aos_route_param(&m, "id"), want);
        aos_route_match_release(&m);
    }
    assert_int_equal(status(r, "GET", "/g500/items/1"), AOS_ROUTE_NOT_FOUND);
    aos_router_free(r);
}

static void test_param_limit(void **state)
{
    (void)state;
    static const struct aos_route eight = {"GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", h_a, 0, 0};
    struct aos_router *r = router_with(&eight, 1, NULL);
    struct aos_route_match m;
    assert_int_equal(match(r, "GET", "/1/2/3/4/5/6/7/%38", &m), AOS_ROUTE_FOUND);
    assert_int_equal(m.nparams, AOS_ROUTE_MAX_PARAMS);
    static const char *const names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    for (int i = 0; i < 8; i++) {
        char want[2] = {(char)('1' + i), '\0'};
        assert_string_equal(aos_route_param(&m, names[i]), want);
        assert_memory_equal(m.params[i].name, names[i], 1);
    }
    aos_route_match_release(&m);
    assert_int_equal(status(r, "GET", "/1/2/3/4/5/6/7/8/9"), AOS_ROUTE_NOT_FOUND);
    assert_int_equal(status(r, "GET", "/1/2/3/4/5/6/7"), AOS_ROUTE_NOT_FOUND);
    aos_router_free(r);
}

static void test_index_stability(void **state)
{
    (void)state;
    static const struct aos_route t1[] = {
        {"GET", "/z", h_a, 0, 0},
        {"GET", "/a", h_a, 0, 0},
    };
    static const struct aos_route t2[] = {
        {"POST", "/a", h_a, 0, 0},
        {"GET", "/m/{id}", h_a, 0, 0},
    };
    int c1, c2;
    struct aos_router *r = router_with(t1, N(t1), &c1);
    char err[256];
    assert_int_equal(aos_router_add(r, t2, N(t2), &c2, err, sizeof err), 0);
    assert_int_equal(aos_router_count(r), 4);
    assert_ptr_equal(aos_router_route(r, 0), &t1[0]);
    assert_ptr_equal(aos_router_route(r, 1), &t1[1]);
    assert_ptr_equal(aos_router_route(r, 2), &t2[0]);
    assert_ptr_equal(aos_router_route(r, 3), &t2[1]);
    assert_null(aos_router_route(r, 4));
    assert_null(aos_router_route(r, -1));
    assert_null(aos_router_route(NULL, 0));
    assert_int_equal(aos_router_count(NULL), 0);

    struct aos_route_match m;
    assert_int_equal(match(r, "POST", "/a", &m), AOS_ROUTE_FOUND);
    assert_int_equal(m.index, 2);
    assert_ptr_equal(m.ctx, &c2);
    aos_route_match_release(&m);
    assert_int_equal(match(r, "HEAD", "/a", &m), AOS_ROUTE_FOUND);
    assert_int_equal(m.index, 1);
    assert_ptr_equal(m.ctx, &c1);
    aos_route_match_release(&m);
    assert_int_equal(match(r, "GET", "/m/9", &m), AOS_ROUTE_FOUND);
    assert_int_equal(m.index, 3);
    aos_route_match_release(&m);
    assert_int_equal(match(r, "PUT", "/a", &m), AOS_ROUTE_METHOD_NOT_ALLOWED);
    assert_int_equal(m.index, -1);
    aos_route_match_release(&m);
    aos_router_free(r);
}

/* ------------------------------------------------------------ threads */

static const struct aos_route conc_routes[] = {
    {"GET", "/api/v1/agents", h_a, 0, 0},
    {"GET", "/api/v1/agents/{id}", h_a, 0, 0},
    {"GET", "/api/v1/agents/{id}/runs/{run}", h_a, 0, 0},
    {"GET", "/api/v1/runs/stats", h_a, 0, 0},
    {"DELETE", "/api/v1/runs/{id}", h_a, 0, 0},
};

struct conc_arg {
    const struct aos_router *r;
    int seed;
    int failures;
};

static void *conc_worker(void *p)
{
    struct conc_arg *a = p;
    for (int i = 0; i < 20000; i++) {
        char path[96];
        struct aos_route_match m;
        int id = a->seed * 100000 + i;
        int len = snprintf(path, sizeof path, "/api/v1/agents/%d/runs/r%%2F%d", id, i);
        enum aos_route_status st = aos_router_match(a->r, "GET", path, (size_t)len, &m);
        char want[32];
        snprintf(want, sizeof want, "%d", id);
        const char *got = aos_route_param(&m, "id");
        char want_run[32];
        snprintf(want_run, sizeof want_run, "r/%d", i);
        const char *run = aos_route_param(&m, "run");
        if (st != AOS_ROUTE_FOUND || m.index != 2 || got == NULL || strcmp(got, want) != 0 || run == NULL ||
            strcmp(run, want_run) != 0)
            a->failures++;
        aos_route_match_release(&m);

        st = aos_router_match(a->r, "PUT", "/api/v1/runs/stats", 18, &m);
        if (st != AOS_ROUTE_METHOD_NOT_ALLOWED || strcmp(m.allow, "GET, HEAD, DELETE") != 0)
            a->failures++;
        aos_route_match_release(&m);
    }
    return NULL;
}

static void test_concurrent_matching(void **state)
{
    (void)state;
    enum { THREADS = 4 };
    struct aos_router *r = router_with(conc_routes, N(conc_routes), NULL);
    pthread_t th[THREADS];
    struct conc_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct conc_arg){r, i + 1, 0};
        assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
    aos_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_decoding),
        cmocka_unit_test(test_priority_order_independent),
        cmocka_unit_test(test_priority_backtracking),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_trailing_slash),
        cmocka_unit_test(test_invalid_patterns),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_many_routes),
        cmocka_unit_test(test_param_limit),
        cmocka_unit_test(test_index_stability),
        cmocka_unit_test(test_concurrent_matching),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
