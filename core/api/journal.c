#include "config.h"
/*
 * GET /api/v1/journal: the tenant's API journal, newest first, for its
 * admins.  The tenant comes from the principal only; the query carries
 * just the page (?limit=1..500, default 100; ?cursor= from next_cursor).
 */
#include "api/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "store/ops.h"
#include "store/store.h"
#include "threadpool.h"

#define LIMIT_DEFAULT 100
#define LIMIT_MAX 500

struct journal_job {
    struct aos_http_request *req;
    struct aos_app *app;
    char tenant_id[AOS_ID_MAX];
    char cursor[AOS_CURSOR_LEN];
    size_t limit;
    int rc;
    char err[256];
    struct aos_journal_record *items;
    size_t n;
    char next[AOS_CURSOR_LEN];
};

static void job_free(struct journal_job *j)
{
    free(j->items);
    free(j);
}

static int list_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct journal_job *j = arg;

    /* transact may run this twice: drop a first attempt's page. */
    free(j->items);
    j->items = NULL;
    return aos_store_journal_list(tx, j->tenant_id, j->cursor, j->limit, &j->items, &j->n, j->next, err,
                                  errlen);
}

static void list_work(void *arg)
{
    struct journal_job *j = arg;
    j->rc = aos_store_transact(j->app->store, false, list_tx, j, j->err, sizeof(j->err));
}

static struct json_object *text_or_null(const char *s)
{
    return s[0] != '\0' ? json_object_new_string(s) : NULL;
}

static void list_done(void *arg)
{
    struct journal_job *j = arg;
    struct json_object *items;
    size_t i;

    if (j->rc != AOS_DB_OK) {
        aos_api_page_error(j->req, j->rc, j->err);
        goto out;
    }
    items = json_object_new_array();
    for (i = 0; i < j->n; i++) {
        const struct aos_journal_record *r = &j->items[i];
        struct json_object *it = json_object_new_object();

        json_object_object_add(it, "time", json_object_new_int64(r->time_ms));
        json_object_object_add(it, "request_id", json_object_new_string(r->request_id));
        json_object_object_add(it, "principal", text_or_null(r->principal));
        json_object_object_add(it, "method", json_object_new_string(r->method));
        json_object_object_add(it, "route", json_object_new_string(r->route));
        json_object_object_add(it, "status", json_object_new_int(r->status));
        json_object_object_add(it, "latency_ms", json_object_new_double((double)r->latency_us / 1000.0));
        json_object_object_add(it, "bytes_in", json_object_new_int64(r->bytes_in));
        json_object_object_add(it, "bytes_out", json_object_new_int64(r->bytes_out));
        json_object_object_add(it, "client_ip", text_or_null(r->client_ip));
        json_object_array_add(items, it);
    }
    aos_api_respond_page(j->req, items, j->next);
out:
    job_free(j);
}

static void handle_list(struct aos_http_request *req, void *ctx)
{
    struct journal_job *j;

    (void)ctx;
    j = aos_api_alloc(req, sizeof(*j));
    if (j == NULL)
        return;
    j->req = req;
    j->app = req->app;
    if (!aos_api_page_query(req, LIMIT_DEFAULT, LIMIT_MAX, &j->limit, j->cursor, sizeof(j->cursor))) {
        job_free(j);
        return;
    }
    snprintf(j->tenant_id, sizeof(j->tenant_id), "%s", req->principal.tenant_id);
    if (aos_http_defer(req, j->app->pool, list_work, list_done, j) != 0)
        job_free(j);
}

static const struct aos_route journal_routes[] = {
    {"GET", "/api/v1/journal", handle_list, AOS_ROLE_ADMIN, 0},
};

int aos_api_journal_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen)
{
    return aos_router_add(router, journal_routes, sizeof(journal_routes) / sizeof(journal_routes[0]), app,
                          err, errlen);
}
