#include "config.h"
/*
 * What the route groups share to read a request (query, path, body
 * fields) and to answer a page of a list.
 */
#include "api/api.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "store/db.h"

int aos_api_query_get(const char *q, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    int found = 0;

    while (q != NULL && *q != '\0') {
        const char *end = strchr(q, '&');
        size_t len = end != NULL ? (size_t)(end - q) : strlen(q);

        if (len > nlen && strncmp(q, name, nlen) == 0 && q[nlen] == '=') {
            size_t vlen = len - nlen - 1;

            /* A repeated parameter is ambiguous: refuse it. */
            if (found || vlen >= size)
                return -1;
            memcpy(out, q + nlen + 1, vlen);
            out[vlen] = '\0';
            found = 1;
        }
        q = end != NULL ? end + 1 : NULL;
    }
    return found;
}

bool aos_api_parse_limit(const char *s, size_t max, size_t *out)
{
    char *end;
    long v;

    if (s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || (unsigned long)v > max)
        return false;
    *out = (size_t)v;
    return true;
}

void *aos_api_alloc(struct aos_http_request *req, size_t size)
{
    void *job = calloc(1, size);

    if (job == NULL)
        aos_http_respond_error(req, 500, "internal", "out of memory");
    return job;
}

void aos_api_caller_set(struct aos_api_caller *c, const struct aos_http_request *req)
{
    snprintf(c->tenant_id, sizeof c->tenant_id, "%s", req->principal.tenant_id);
    snprintf(c->principal, sizeof c->principal, "%s", req->principal.subject);
}

const char *aos_api_path_uuid(struct aos_http_request *req, const char *what)
{
    const char *id = aos_http_param(req, "id");

    if (id == NULL || !aos_api_uuid_valid(id)) {
        aos_http_respond_error(req, 404, "not_found", "no such %s", what);
        return NULL;
    }
    return id;
}

bool aos_api_page_query(struct aos_http_request *req, size_t def, size_t max, size_t *limit, char *cursor,
                        size_t cursor_size)
{
    char s[16];
    int r = aos_api_query_get(req->query, "limit", s, sizeof s);

    *limit = def;
    if (r < 0 || (r == 1 && !aos_api_parse_limit(s, max, limit))) {
        aos_http_respond_error(req, 400, "invalid_query", "limit must be an integer from 1 to %zu", max);
        return false;
    }
    if (aos_api_query_get(req->query, "cursor", cursor, cursor_size) < 0) {
        aos_http_respond_error(req, 400, "invalid_query", "malformed cursor");
        return false;
    }
    return true;
}

void aos_api_page_error(struct aos_http_request *req, int status, const char *detail)
{
    /* The only constraint a read can meet: a cursor we did not issue. */
    if (status == AOS_DB_CONSTRAINT)
        aos_http_respond_error(req, 400, "invalid_query", "malformed cursor");
    else
        aos_api_store_error(req, status, detail);
}

void aos_api_respond_page(struct aos_http_request *req, struct json_object *items, const char *next_cursor)
{
    struct json_object *o = json_object_new_object();

    json_object_object_add(o, "items", items);
    json_object_object_add(o, "next_cursor",
                           next_cursor != NULL && next_cursor[0] != '\0' ? json_object_new_string(next_cursor)
                                                                         : NULL);
    aos_http_add_header(req, "Cache-Control", "no-store");
    aos_http_respond_json(req, 200, o);
}

bool aos_api_has_control(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

bool aos_api_listed(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

bool aos_api_unknown_field(struct aos_http_request *req, struct json_object *body, const char *const *known,
                           size_t n)
{
    json_object_object_foreach(body, key, val)
    {
        (void)val;
        if (!aos_api_listed(key, known, n)) {
            aos_http_respond_error(req, 422, "invalid_request", "unknown field '%.64s'", key);
            return true;
        }
    }
    return false;
}
