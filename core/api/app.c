#include "config.h"

#include "api/api.h"

#include "http/http.h"
#include "log.h"
#include "store/db.h"

#include <stdio.h>
#include <string.h>

void aos_app_init(struct aos_app *app)
{
    memset(app, 0, sizeof *app);
    pthread_mutex_init(&app->lock, NULL);
    app->unready = AOS_UNREADY_STARTING;
    app->started = time(NULL);
}

void aos_app_destroy(struct aos_app *app) { pthread_mutex_destroy(&app->lock); }

void aos_app_set_unready(struct aos_app *app, enum aos_unready what, bool on, const char *reason)
{
    pthread_mutex_lock(&app->lock);
    if (on)
        app->unready |= (unsigned)what;
    else
        app->unready &= ~(unsigned)what;
    if (what == AOS_UNREADY_STORE)
        snprintf(app->store_reason, sizeof app->store_reason, "%s", on && reason != NULL ? reason : "");
    pthread_mutex_unlock(&app->lock);
}

bool aos_app_unready(struct aos_app *app, enum aos_unready what)
{
    pthread_mutex_lock(&app->lock);
    bool on = (app->unready & (unsigned)what) != 0;
    pthread_mutex_unlock(&app->lock);
    return on;
}

bool aos_app_ready(struct aos_app *app, char *reason, size_t len)
{
    pthread_mutex_lock(&app->lock);
    unsigned u = app->unready;
    if (reason != NULL && len > 0) {
        reason[0] = '\0';
        size_t used = 0;
        if (u & AOS_UNREADY_DRAINING)
            used += (size_t)snprintf(reason + used, len - used, "draining");
        if ((u & AOS_UNREADY_STORE) && used < len)
            used += (size_t)snprintf(reason + used, len - used, "%sstore unavailable: %s", used ? "; " : "",
                                     app->store_reason);
        if ((u & AOS_UNREADY_STARTING) && used < len)
            snprintf(reason + used, len - used, "%sstarting", used ? "; " : "");
    }
    pthread_mutex_unlock(&app->lock);
    return u == 0;
}

void aos_api_store_error(struct aos_http_request *req, int status, const char *detail)
{
    switch (status) {
    case AOS_DB_UNAVAILABLE:
    case AOS_DB_RETRY:
        aos_http_add_header(req, "Retry-After", "2");
        aos_http_respond_error(req, 503, "store_unavailable", "the data store is unavailable; retry shortly");
        return;
    case AOS_DB_CONSTRAINT:
        aos_http_respond_error(req, 409, "conflict", "the request conflicts with existing data");
        return;
    case AOS_DB_NOT_FOUND:
        aos_http_respond_error(req, 404, "not_found", "no such resource");
        return;
    default:
        /* Database text can name tables and values: log it, don't send it. */
        aos_err("store error", "status", aos_db_status_name(status), "detail", detail, "request_id",
                req->request_id, NULL);
        aos_http_respond_error(req, 500, "internal", "internal error");
        return;
    }
}
