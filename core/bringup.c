#include "config.h"

#include "bringup.h"
#include "orch/engine.h"

#include "api/api.h"
#include "conf.h"
#include "log.h"
#include "loop.h"
#include "runtime.h"
#include "store/migrate.h"
#include "store/ops.h"
#include "store/store.h"
#include "threadpool.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_FIRST 0.5
#define BACKOFF_MAX 30.0

enum job_kind { JOB_BRINGUP, JOB_SYNC };

struct aos_bringup {
    struct aos_loop *loop;
    struct aos_app *app;
    aos_bringup_fatal_fn on_fatal;
    void *arg;
    struct event *retry;
    double backoff;
    bool busy;          /* a job is on the pool */
    bool up;            /* connected, migrated, tenants synced once */
    bool sync_again;    /* a reload arrived while a job ran */
    char last_error[512];
};

struct job {
    struct aos_bringup *b;
    enum job_kind kind;
    int rc;
    bool fatal;
    char err[512];
    int migrated;       /* migrations applied by this attempt */
};

static int sync_tenants_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    const struct aos_conf *conf = arg;
    return aos_store_tenants_sync(tx, conf->tenants, conf->ntenants, err, errlen);
}

static int sync_tenants(struct aos_store *store, char *err, size_t errlen)
{
    struct aos_runtime *rt = aos_runtime_acquire();
    if (rt == NULL)
        return AOS_DB_OK;
    int rc = aos_store_transact(store, true, sync_tenants_tx, rt->conf, err, errlen);
    aos_runtime_release(rt);
    return rc;
}

static void report_applied(void *arg, int version, const char *name)
{
    struct job *j = arg;
    char v[16];
    snprintf(v, sizeof v, "%d", version);
    aos_info("migration applied", "version", v, "name", name, NULL);
    j->migrated++;
}

static bool auto_migrate(void)
{
    struct aos_runtime *rt = aos_runtime_acquire();
    bool on = rt != NULL && rt->conf->store.auto_migrate;
    aos_runtime_release(rt);
    return on;
}

/* Pool thread. */
static void job_work(void *arg)
{
    struct job *j = arg;
    struct aos_store *store = j->b->app->store;
    if (j->kind == JOB_SYNC) {
        j->rc = sync_tenants(store, j->err, sizeof j->err);
        return;
    }
    j->rc = aos_store_connect(store, j->err, sizeof j->err);
    if (j->rc != AOS_DB_OK)
        return;
    int current = 0, latest = 0;
    j->rc = aos_migrate_status(store, &current, &latest, j->err, sizeof j->err);
    if (j->rc != AOS_DB_OK) {
        /* A schema we cannot read is not an outage: retrying won't help. */
        j->fatal = j->rc == AOS_DB_SCHEMA;
        return;
    }
    if (current < latest && auto_migrate()) {
        j->rc = aos_migrate_up(store, 0, report_applied, j, j->err, sizeof j->err);
        if (j->rc != AOS_DB_OK) {
            j->fatal = j->rc != AOS_DB_UNAVAILABLE;
            return;
        }
    }
    j->rc = aos_migrate_check(store, j->err, sizeof j->err);
    if (j->rc == AOS_DB_SCHEMA) {
        j->fatal = true;
        return;
    }
    if (j->rc != AOS_DB_OK)
        return;
    j->rc = sync_tenants(store, j->err, sizeof j->err);
}

static void schedule_retry(struct aos_bringup *b)
{
    struct timeval tv = {(time_t)b->backoff, (suseconds_t)((b->backoff - (double)(time_t)b->backoff) * 1e6)};
    evtimer_add(b->retry, &tv);
    b->backoff = b->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : b->backoff * 2;
}

static void submit(struct aos_bringup *b, enum job_kind kind);

/* Main loop. */
static void job_done(void *arg)
{
    struct job *j = arg;
    struct aos_bringup *b = j->b;
    b->busy = false;
    if (j->kind == JOB_SYNC) {
        if (j->rc == AOS_DB_OK) {
            b->backoff = BACKOFF_FIRST;
            aos_info("tenants synchronised from configuration", NULL);
        } else {
            aos_err("tenant synchronisation failed: retrying", "error", j->err, NULL);
            schedule_retry(b);
        }
    } else if (j->rc == AOS_DB_OK) {
        b->up = true;
        b->backoff = BACKOFF_FIRST;
        b->last_error[0] = '\0';
        aos_app_set_unready(b->app, AOS_UNREADY_STORE, false, NULL);
        aos_app_set_unready(b->app, AOS_UNREADY_STARTING, false, NULL);
        aos_engine_set_enabled(b->app->engine, true);
        aos_info("store ready", "driver", aos_store_driver_name(b->app->store), NULL);
    } else if (j->fatal) {
        aos_app_set_unready(b->app, AOS_UNREADY_STORE, true, j->err);
        b->on_fatal(b->arg, j->err);
    } else {
        /* Log a new reason once, not every retry. */
        if (strcmp(b->last_error, j->err) != 0) {
            aos_warn("store unavailable: retrying with backoff", "error", j->err, NULL);
            snprintf(b->last_error, sizeof b->last_error, "%s", j->err);
        }
        aos_app_set_unready(b->app, AOS_UNREADY_STORE, true, j->err);
        schedule_retry(b);
    }
    free(j);
    if (b->up && b->sync_again) {
        b->sync_again = false;
        submit(b, JOB_SYNC);
    }
}

static void submit(struct aos_bringup *b, enum job_kind kind)
{
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        schedule_retry(b);
        return;
    }
    j->b = b;
    j->kind = kind;
    if (aos_pool_submit(b->app->pool, job_work, job_done, b->loop, j) != 0) {
        free(j);
        schedule_retry(b);
        return;
    }
    b->busy = true;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct aos_bringup *b = arg;
    (void)fd;
    (void)what;
    if (!b->busy)
        submit(b, b->up ? JOB_SYNC : JOB_BRINGUP);
}

struct aos_bringup *aos_bringup_new(struct aos_loop *main_loop, struct aos_app *app, aos_bringup_fatal_fn on_fatal,
                                    void *arg)
{
    struct aos_bringup *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->loop = main_loop;
    b->app = app;
    b->on_fatal = on_fatal;
    b->arg = arg;
    b->backoff = BACKOFF_FIRST;
    b->retry = evtimer_new(aos_loop_base(main_loop), on_retry, b);
    if (b->retry == NULL) {
        free(b);
        return NULL;
    }
    return b;
}

void aos_bringup_start(struct aos_bringup *b)
{
    aos_app_set_unready(b->app, AOS_UNREADY_STORE, true, "connecting");
    submit(b, JOB_BRINGUP);
}

void aos_bringup_sync_tenants(struct aos_bringup *b)
{
    if (!b->up || b->busy) {
        /* Bring-up syncs when it succeeds; a running job is followed by one more sync. */
        b->sync_again = b->up;
        return;
    }
    submit(b, JOB_SYNC);
}

void aos_bringup_free(struct aos_bringup *b)
{
    if (b == NULL)
        return;
    event_free(b->retry);
    free(b);
}
