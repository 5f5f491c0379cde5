/*
 * aosd: the daemon's life, in order.
 *   parse arguments -> load and validate config (-t stops here, after the
 *   plugins are checked too; --migrate runs migrations and stops) -> load
 *   plugins -> bind -> drop privileges -> serve, bringing the store up in the
 *   background -> on SIGTERM drain -> exit.
 */
#include "config.h"

#include "api/api.h"
#include "auth/password.h"
#include "bringup.h"
#include "orch/engine.h"
#include "conf.h"
#include "events/events.h"
#include "gateway/idempotency.h"
#include "gateway/journal.h"
#include "gateway/ratelimit.h"
#include "http/router.h"
#include "http/server.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "notify.h"
#include "pii/pii.h"
#include "plugin.h"
#include "runtime.h"
#include "store/events.h"
#include "store/migrate.h"
#include "store/store.h"
#include "threadpool.h"

#include <aos/plugin.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_POLL_MS 50

struct daemon {
    const char *conf_path;
    struct aos_loop *main_loop; /* main thread: signals, drain timer, bring-up */
    struct aos_app app;
    struct aos_router *router;
    struct aos_http_server *server;
    struct aos_bringup *bringup;
    double drain_seconds;
    struct event *drain_timer;
    struct event *housekeeping_timer;
    struct timespec drain_deadline;
    bool draining;
    int exit_code;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: aosd [-c FILE] [-t]\n"
            "       aosd [-c FILE] --migrate [up | status | down N]\n"
            "       aosd --version | --help\n"
            "\n"
            "  -c, --config FILE  configuration file (default %s/aosd.conf)\n"
            "  -t, --test         check the configuration and plugins, then exit\n"
            "      --migrate      apply pending database migrations (up, the default),\n"
            "                     show where the schema stands (status), or roll back\n"
            "                     the last N (down N); then exit\n"
            "  -v, --version      print the version and the plugin ABI, then exit\n"
            "  -h, --help         print this help, then exit\n"
            "\n"
            "Signals: TERM/INT drain and exit, HUP reloads the configuration.\n"
            "See aosd(8) and aosd.conf(5).\n",
            AOSD_CONFDIR);
}

static void print_conf_errors(const struct aos_conf_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", errs->lines[i]);
}

/* Loads config, JWT key and plugins as one unit.  On failure, every reason
 * has been printed (startup/-t) or logged (reload) and NULL is returned. */
static struct aos_runtime *load_generation(const char *path, const struct aos_plugin_set *previous, bool to_log)
{
    struct aos_conf_errors errs = {0};
    struct aos_runtime *rt = NULL;
    struct aos_plugin_set *plugins = NULL;
    struct aos_jwt_key jwt = {0};
    char jwt_err[512] = "", jwt_warn[512] = "";
    struct aos_conf *conf = aos_conf_load(path, &errs);
    if (conf == NULL)
        goto fail;
    if (aos_jwt_key_load(conf->auth.jwt_secret_file, &jwt, jwt_err, sizeof jwt_err, jwt_warn, sizeof jwt_warn) !=
        0)
        goto fail;
    if (jwt_warn[0] != '\0')
        aos_logf(AOS_LVL_WARN, "auth", "%s", jwt_warn);
    plugins = aos_plugin_set_load(conf, previous, &errs);
    if (plugins == NULL)
        goto fail;
    for (size_t i = 0; i < conf->auth.nbackends; i++) {
        const struct aos_plugin_instance *p = aos_plugin_set_find(plugins, conf->auth.backends[i]);
        if (p == NULL || aos_plugin_instance_kind(p) != AOS_PLUGIN_AUTH)
            aos_logf(AOS_LVL_WARN, "auth",
                     "auth.backends names '%s', which is not an enabled auth plugin: add it to plugins.enable, "
                     "or nobody can log in through it",
                     conf->auth.backends[i]);
    }
    rt = aos_runtime_new(conf, plugins, &jwt);
    if (rt == NULL)
        goto fail;
    aos_conf_errors_free(&errs);
    return rt;
fail:
    if (jwt_err[0] != '\0') {
        if (to_log)
            aos_logf(AOS_LVL_ERROR, "auth", "%s", jwt_err);
        else
            fprintf(stderr, "%s\n", jwt_err);
    }
    if (to_log) {
        /* The loader logs its own refusals; config errors are ours. */
        if (conf == NULL)
            for (size_t i = 0; i < errs.n; i++)
                aos_logf(AOS_LVL_ERROR, "config", "%s", errs.lines[i]);
    } else if (conf == NULL) {
        print_conf_errors(&errs);
    }
    aos_jwt_key_clear(&jwt);
    aos_plugin_set_free(plugins);
    aos_conf_free(conf);
    aos_conf_errors_free(&errs);
    return NULL;
}

/* ------------------------------------------------------------ --migrate */

static void print_applied(void *arg, int version, const char *name)
{
    const char *verb = arg;
    printf("%s %04d_%s\n", verb, version, name);
}

static int run_migrate(const char *conf_path, int argc, char **argv)
{
    const char *action = argc > 0 ? argv[0] : "up";
    long steps = 0;
    if (strcmp(action, "down") == 0) {
        char *end = NULL;
        steps = argc == 2 ? strtol(argv[1], &end, 10) : 0;
        if (argc != 2 || *end != '\0' || steps < 1 || steps > 10000) {
            fprintf(stderr, "aosd: usage: aosd --migrate down N (N >= 1)\n");
            return 2;
        }
    } else if ((strcmp(action, "up") != 0 && strcmp(action, "status") != 0) || argc > 1) {
        fprintf(stderr, "aosd: usage: aosd --migrate [up | status | down N]\n");
        return 2;
    }

    struct aos_conf_errors errs = {0};
    struct aos_conf *conf = aos_conf_load(conf_path, &errs);
    if (conf == NULL) {
        print_conf_errors(&errs);
        aos_conf_errors_free(&errs);
        return EXIT_FAILURE;
    }
    aos_conf_errors_free(&errs);
    int rc = EXIT_FAILURE;
    char err[512];
    struct aos_store *store = NULL;
    if (aos_store_become_owner(&conf->store, err, sizeof err) != 0) {
        fprintf(stderr, "aosd: %s\n", err);
        goto out;
    }
    store = aos_store_new(&conf->store);
    if (store == NULL) {
        fprintf(stderr, "aosd: cannot create the store\n");
        goto out;
    }
    if (aos_store_connect(store, err, sizeof err) != AOS_DB_OK) {
        fprintf(stderr, "aosd: cannot connect to the %s store: %s\n", aos_store_driver_name(store), err);
        goto out;
    }
    int current = 0, latest = 0, st;
    if (strcmp(action, "status") == 0) {
        st = aos_migrate_status(store, &current, &latest, err, sizeof err);
        if (st == AOS_DB_OK) {
            printf("driver %s: schema version %d, latest known %d", aos_store_driver_name(store), current, latest);
            if (current < latest)
                printf(" (%d pending: run aosd --migrate -c %s)\n", latest - current, conf_path);
            else if (current > latest)
                printf(" (newer than this aosd: upgrade aosd)\n");
            else
                printf(" (up to date)\n");
        }
    } else if (strcmp(action, "up") == 0) {
        st = aos_migrate_up(store, 0, print_applied, "applied", err, sizeof err);
        if (st == AOS_DB_OK && aos_migrate_status(store, &current, &latest, err, sizeof err) == AOS_DB_OK)
            printf("schema at version %d (latest)\n", current);
    } else {
        st = aos_migrate_down(store, (int)steps, print_applied, "reverted", err, sizeof err);
        if (st == AOS_DB_OK && aos_migrate_status(store, &current, &latest, err, sizeof err) == AOS_DB_OK)
            printf("schema at version %d (latest known %d)\n", current, latest);
    }
    if (st != AOS_DB_OK) {
        fprintf(stderr, "aosd: migrate %s failed: %s\n", action, err);
        goto out;
    }
    rc = EXIT_SUCCESS;
out:
    aos_store_free(store);
    aos_conf_free(conf);
    return rc;
}

/* -------------------------------------------------------------- serving */

static int drop_privileges(const char *user)
{
    if (user == NULL || user[0] == '\0' || geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        aos_err("cannot drop privileges: no such user", "user", user, NULL);
        return -1;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        aos_err("cannot drop privileges", "user", user, "error", strerror(errno), NULL);
        return -1;
    }
    /* Paranoia: make sure root cannot be regained. */
    if (setuid(0) == 0) {
        aos_err("privileges could be regained after setuid", "user", user, NULL);
        return -1;
    }
    aos_info("running as unprivileged user", "user", user, NULL);
    return 0;
}

static void apply_log_settings(const struct aos_conf *conf)
{
    aos_log_configure(conf->log.level, (enum aos_log_format)conf->log.format);
}

static bool store_conf_changed(const struct aos_conf_store *a, const struct aos_conf_store *b)
{
    return strcmp(a->driver, b->driver) != 0 || strcmp(a->path, b->path) != 0 ||
           strcmp(a->conninfo, b->conninfo) != 0 || a->pool_size != b->pool_size;
}

static void reload(struct daemon *d)
{
    aos_info("reloading configuration", "file", d->conf_path, NULL);
    aos_notify("RELOADING=1");
    struct aos_runtime *old = aos_runtime_acquire();
    struct aos_runtime *rt = load_generation(d->conf_path, old != NULL ? old->plugins : NULL, true);
    if (rt == NULL) {
        aos_err("reload failed: keeping the previous configuration", "file", d->conf_path, NULL);
        aos_runtime_release(old);
        aos_notify("READY=1");
        return;
    }
    const struct aos_conf_server *was = &old->conf->server, *now = &rt->conf->server;
    bool listen_changed = was->nlisten != now->nlisten;
    for (size_t i = 0; !listen_changed && i < now->nlisten; i++)
        listen_changed = strcmp(was->listen[i].text, now->listen[i].text) != 0;
    if (listen_changed || was->threads != now->threads || was->workers != now->workers)
        aos_warn("server.listen, server.threads and server.workers take effect only after a restart", NULL);
    char old_policy[16];
    snprintf(old_policy, sizeof old_policy, "%s", old->conf->limits.policy);
    if (store_conf_changed(&old->conf->store, &rt->conf->store))
        aos_warn("store.driver, store.path, store.conninfo and store.pool_size take effect only after a restart",
                 NULL);
    aos_runtime_release(old);

    struct aos_http_limits limits;
    aos_http_limits_from_conf(&limits, now);
    aos_http_server_set_limits(d->server, &limits);
    aos_journal_set_retention(d->app.journal, rt->conf->governance.journal_days);
    aos_events_set_conf(d->app.events, &rt->conf->events);
    if (aos_ratelimit_set_limits(d->app.ratelimit, &rt->conf->limits, rt->conf->tenants, rt->conf->ntenants) != 0)
        aos_err("rate limits not reloaded: keeping the previous ones", NULL);
    if (strcmp(old_policy, rt->conf->limits.policy) != 0)
        aos_warn("limits.policy takes effect only after a restart", NULL);
    apply_log_settings(rt->conf);
    aos_runtime_publish(rt);
    char gen[24];
    snprintf(gen, sizeof gen, "%llu", (unsigned long long)rt->generation);
    aos_info("configuration reloaded", "generation", gen, NULL);
    /* Config is the source of truth for tenants: upsert the new set. */
    aos_bringup_sync_tenants(d->bringup);
    aos_notify("READY=1");
}

static double seconds_until(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(deadline->tv_sec - now.tv_sec) + (double)(deadline->tv_nsec - now.tv_nsec) / 1e9;
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)fd;
    (void)what;
    long open = aos_http_server_connections(d->server);
    if (open == 0 || seconds_until(&d->drain_deadline) <= 0) {
        if (open > 0) {
            char n[24];
            snprintf(n, sizeof n, "%ld", open);
            aos_warn("drain timeout: closing remaining connections", "connections", n, NULL);
        }
        event_base_loopbreak(aos_loop_base(d->main_loop));
        return;
    }
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};
    evtimer_add(d->drain_timer, &tv);
}

static void begin_drain(struct daemon *d, const char *why)
{
    if (d->draining) {
        aos_warn("second stop request: exiting without waiting", NULL);
        event_base_loopbreak(aos_loop_base(d->main_loop));
        return;
    }
    d->draining = true;
    aos_info("draining", "reason", why, NULL);
    aos_notify("STOPPING=1");
    aos_app_set_unready(&d->app, AOS_UNREADY_DRAINING, true, NULL);
    struct aos_runtime *rt = aos_runtime_acquire();
    double timeout = rt != NULL ? rt->conf->server.drain_timeout : 30;
    aos_runtime_release(rt);
    clock_gettime(CLOCK_MONOTONIC, &d->drain_deadline);
    d->drain_deadline.tv_sec += (time_t)timeout;
    d->drain_deadline.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
    if (d->drain_deadline.tv_nsec >= 1000000000L) {
        d->drain_deadline.tv_sec++;
        d->drain_deadline.tv_nsec -= 1000000000L;
    }
    aos_http_server_begin_drain(d->server);
    /* Streams never end by themselves: close them (clients reconnect to
     * another node and resume with Last-Event-ID). */
    aos_events_drain(d->app.events);
    aos_engine_drain(d->app.engine);
    on_drain_tick(-1, 0, d);
}

static void on_signal(evutil_socket_t signo, short what, void *arg)
{
    struct daemon *d = arg;
    (void)what;
    if (signo == SIGHUP) {
        if (!d->draining)
            reload(d);
        return;
    }
    begin_drain(d, strsignal((int)signo));
}

/* The database holds a schema this binary cannot serve: stop, loudly. */
static void on_store_fatal(void *arg, const char *message)
{
    struct daemon *d = arg;
    aos_err("cannot use the store: stopping", "error", message, NULL);
    d->exit_code = EXIT_FAILURE;
    begin_drain(d, "store schema");
}

/* Expired idempotency records are deleted in bounded chunks, off the loop. */
#define HOUSEKEEPING_INTERVAL_S 300
#define IDEMPOTENCY_PRUNE_CHUNK 1000

static void idempotency_prune_work(void *arg)
{
    struct aos_store *store = arg;
    char err[256], n[24];
    size_t deleted = 0;
    do {
        if (aos_idem_prune(store, (int64_t)time(NULL) * 1000, IDEMPOTENCY_PRUNE_CHUNK, &deleted, err,
                           sizeof err) != AOS_DB_OK) {
            aos_debug("idempotency prune skipped", "error", err, NULL);
            return;
        }
        snprintf(n, sizeof n, "%zu", deleted);
        if (deleted > 0)
            aos_debug("expired idempotency records deleted", "count", n, NULL);
    } while (deleted == IDEMPOTENCY_PRUNE_CHUNK);
}

/* Event retention (governance.retention.events_days; 0 keeps them). */
#define EVENTS_PRUNE_CHUNK 1000

static int events_prune_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    size_t *deleted = arg;
    struct aos_runtime *rt = aos_runtime_acquire();
    int days = rt != NULL ? rt->conf->governance.events_days : 0;

    aos_runtime_release(rt);
    *deleted = 0;
    if (days <= 0)
        return AOS_DB_OK;
    return aos_store_events_prune(tx, aos_store_now_ms() - (int64_t)days * 86400 * 1000, EVENTS_PRUNE_CHUNK,
                                  deleted, err, errlen);
}

static void events_prune_work(void *arg)
{
    struct aos_store *store = arg;
    char err[256], n[24];
    size_t deleted = 0;

    do {
        if (aos_store_transact(store, true, events_prune_tx, &deleted, err, sizeof err) != AOS_DB_OK) {
            aos_debug("event retention skipped", "error", err, NULL);
            return;
        }
        snprintf(n, sizeof n, "%zu", deleted);
        if (deleted > 0)
            aos_debug("expired events deleted", "count", n, NULL);
    } while (deleted == EVENTS_PRUNE_CHUNK);
}

static void on_housekeeping(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    (void)fd;
    (void)what;
    if (!d->draining)
        aos_pool_submit(d->app.pool, idempotency_prune_work, NULL, NULL, d->app.store);
    if (!d->draining)
        aos_pool_submit(d->app.pool, events_prune_work, NULL, NULL, d->app.store);
}

static bool testing_mode(void)
{
    const char *v = getenv("AOS_TESTING");
    return v != NULL && strcmp(v, "1") == 0;
}

/* Takes over the caller's reference to rt. */
static int serve(struct daemon *d, struct aos_runtime *rt)
{
    int rc = EXIT_FAILURE;
    char err[256] = "";
    struct event *sig_term = NULL, *sig_int = NULL, *sig_hup = NULL;
    const struct aos_conf_server *sc = &rt->conf->server;

    aos_app_init(&d->app);
    d->main_loop = aos_loop_new("main");
    d->router = aos_router_new();
    if (d->main_loop == NULL || d->router == NULL) {
        aos_err("out of memory at start-up", NULL);
        goto out;
    }
    if (aos_api_ops_register(d->router, &d->app, err, sizeof err) != 0 ||
        aos_api_auth_register(d->router, &d->app, err, sizeof err) != 0 ||
        aos_api_agents_register(d->router, &d->app, err, sizeof err) != 0 ||
        aos_api_runs_register(d->router, &d->app, err, sizeof err) != 0 ||
        aos_api_approvals_register(d->router, &d->app, err, sizeof err) != 0 ||
        aos_api_workflows_register(d->router, &d->app, err, sizeof err) != 0 ||
        aos_api_dashboard_register(d->router, &d->app, err, sizeof err) != 0 ||
        aos_api_journal_register(d->router, &d->app, err, sizeof err) != 0 ||
        aos_api_events_register(d->router, &d->app, err, sizeof err) != 0 ||
        aos_api_pii_register(d->router, &d->app, err, sizeof err) != 0 ||
        (testing_mode() && aos_api_testing_register(d->router, &d->app, err, sizeof err) != 0)) {
        aos_err("cannot register routes", "error", err, NULL);
        goto out;
    }
    if (testing_mode())
        aos_warn("AOS_TESTING=1: testing routes enabled; never use this in production", NULL);
    d->app.metrics = aos_metrics_new(d->router);
    d->app.pool = aos_pool_new(sc->workers, sc->pool_queue);
    d->app.store = aos_store_new(&rt->conf->store);
    d->app.login_gate = aos_gate_new(rt->conf->auth.max_concurrent_hashes);
    /* As many threads as hashes may run at once (the gate refuses more):
     * a queue is never needed, but one slot keeps submit simple. */
    d->app.hash_pool = aos_pool_new_background(rt->conf->auth.max_concurrent_hashes, 1, "aos-hash", 10);
    /* NULL key: a per-process random HMAC key for the API's hash operator,
     * so the API cannot confirm guesses about values hashed elsewhere. */
    d->app.pii = aos_pii_new(NULL, 0, err, sizeof err);
    if (d->app.pii == NULL) {
        aos_err("cannot compile the PII detectors", "error", err, NULL);
        goto out;
    }
    if (d->app.store != NULL) {
        struct aos_journal_config jc = {.retention_days = rt->conf->governance.journal_days};
        d->app.journal = aos_journal_new(d->app.store, &jc);
        aos_journal_set_pii(d->app.journal, d->app.pii);
    }
    /* Plugins redact through the host table (ABI 1.2). */
    aos_plugin_host_attach_pii(d->app.pii);
    d->app.ratelimit = aos_ratelimit_new(&rt->conf->limits, &rt->conf->redis);
    if (d->app.ratelimit != NULL &&
        aos_ratelimit_set_limits(d->app.ratelimit, &rt->conf->limits, rt->conf->tenants, rt->conf->ntenants) != 0) {
        aos_err("invalid rate limits", NULL);
        goto out;
    }
    if (d->app.metrics == NULL || d->app.pool == NULL || d->app.store == NULL || d->app.login_gate == NULL ||
        d->app.hash_pool == NULL ||
        d->app.journal == NULL || d->app.ratelimit == NULL) {
        aos_err("out of memory at start-up", NULL);
        goto out;
    }
    /* The event hub: a thread of its own reads new events from the store
     * and feeds the SSE streams; Redis (if configured) wakes it early. */
    d->app.events = aos_events_new(d->app.store, d->app.pool, &rt->conf->events, &rt->conf->redis, err, sizeof err);
    if (d->app.events == NULL) {
        aos_err("cannot create the event hub", "error", err, NULL);
        goto out;
    }
    d->bringup = aos_bringup_new(d->main_loop, &d->app, on_store_fatal, d);
    d->server = aos_http_server_new(sc, d->router, d->app.metrics, &d->app);
    d->app.server = d->server;
    if (d->bringup == NULL || d->server == NULL) {
        aos_err("cannot create the HTTP server", NULL);
        goto out;
    }
    aos_http_server_set_guard(d->server, aos_api_guard);
    /* Every answered request goes to the API journal, off the hot path. */
    aos_http_server_set_observer(d->server, aos_journal_observer, d->app.journal);
    /* Each HTTP loop gets its own connection to Redis (policy "redis"). */
    for (int i = 0; i < aos_http_server_loop_count(d->server); i++)
        if (aos_ratelimit_attach_loop(d->app.ratelimit, aos_http_server_loop(d->server, i)) != 0) {
            aos_err("cannot set up the rate limiter", NULL);
            goto out;
        }
    /* SSE streams live on the HTTP loop that accepted them. */
    for (int i = 0; i < aos_http_server_loop_count(d->server); i++)
        if (aos_events_attach_loop(d->app.events, aos_http_server_loop(d->server, i)) != 0) {
            aos_err("cannot set up the event streams", NULL);
            goto out;
        }
    /* Auth backends look users and keys up through the host table. */
    aos_plugin_host_attach_store(d->app.store);
    if (aos_http_server_bind(d->server, err, sizeof err) != 0) {
        aos_err("cannot listen", "error", err, NULL);
        goto out;
    }
    if (drop_privileges(sc->user) != 0)
        goto out;
    struct {
        struct aos_conf_engine conf;
        char roles_hint[32];
    } engine_conf;
    engine_conf.conf = rt->conf->engine;
    snprintf(engine_conf.roles_hint, sizeof engine_conf.roles_hint, "%s", sc->roles);
    d->drain_seconds = sc->drain_timeout;
    /* Everything start-up needed from this generation is copied; let a
     * reload free it. */
    sc = NULL;
    aos_runtime_release(rt);
    rt = NULL;

    struct event_base *base = aos_loop_base(d->main_loop);
    sig_term = evsignal_new(base, SIGTERM, on_signal, d);
    sig_int = evsignal_new(base, SIGINT, on_signal, d);
    sig_hup = evsignal_new(base, SIGHUP, on_signal, d);
    d->drain_timer = evtimer_new(base, on_drain_tick, d);
    d->housekeeping_timer = event_new(base, -1, EV_PERSIST, on_housekeeping, d);
    struct timeval housekeeping_tv = {HOUSEKEEPING_INTERVAL_S, 0};
    if (d->housekeeping_timer == NULL || evtimer_add(d->housekeeping_timer, &housekeeping_tv) != 0)
        goto out;
    if (sig_term == NULL || sig_int == NULL || sig_hup == NULL || d->drain_timer == NULL ||
        evsignal_add(sig_term, NULL) != 0 || evsignal_add(sig_int, NULL) != 0 || evsignal_add(sig_hup, NULL) != 0)
        goto out;

    /* The engine's workers idle until bring-up enables them (store up,
     * migrated, tenants synced). */
    if (strstr(engine_conf.roles_hint, "worker") != NULL && engine_conf.conf.workers > 0) {
        d->app.engine = aos_engine_start(&engine_conf.conf, d->app.store, d->app.pii, d->app.events, err, sizeof err);
        if (d->app.engine == NULL) {
            aos_err("cannot start the engine", "error", err, NULL);
            goto out;
        }
    }
    if (aos_events_start(d->app.events) != 0) {
        aos_err("cannot start the event hub", NULL);
        goto out;
    }
    if (aos_http_server_start(d->server) != 0) {
        aos_err("cannot start the HTTP loops", NULL);
        goto out;
    }
    /* Serving starts now: /healthz answers and /readyz says why we are not
     * ready until the store is connected, migrated and has the tenants. */
    aos_bringup_start(d->bringup);
    char pid[16];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    aos_info("aosd started", "version", PACKAGE_VERSION, "pid", pid, NULL);
    aos_notify("READY=1");

    aos_loop_run(d->main_loop);
    rc = d->exit_code;
out:
    /* Steps in flight finish and checkpoint (the store is still there);
     * runs go back to the queue. */
    aos_engine_stop(d->app.engine, d->drain_seconds);
    d->app.engine = NULL;
    if (d->server != NULL)
        aos_http_server_stop(d->server);
    /* No stream is written any more; the hub's thread stops too. */
    aos_events_stop(d->app.events);
    /* The pool may still post completions: loops must outlive it, and the
     * main loop's last completions run by hand. */
    aos_pool_free(d->app.hash_pool);
    d->app.hash_pool = NULL;
    aos_pool_free(d->app.pool);
    d->app.pool = NULL;
    if (d->main_loop != NULL)
        aos_loop_run_pending(d->main_loop);
    /* Loops stopped, not yet freed: what the limiter owns on them goes first. */
    atomic_store(&d->app.stopped, true);
    aos_ratelimit_free(d->app.ratelimit);
    aos_bringup_free(d->bringup);
    /* After the HTTP loops stopped, before they are freed: the streams
     * are theirs. */
    aos_events_free(d->app.events);
    d->app.events = NULL;
    aos_http_server_free(d->server);
    /* After the loops (no more entries), before the store: flushes all. */
    aos_journal_free(d->app.journal);
    d->app.journal = NULL;
    aos_plugin_host_attach_store(NULL);
    aos_store_free(d->app.store);
    aos_gate_free(d->app.login_gate);
    aos_plugin_host_attach_pii(NULL);
    aos_pii_free(d->app.pii);
    aos_metrics_free(d->app.metrics);
    if (sig_term != NULL)
        event_free(sig_term);
    if (sig_int != NULL)
        event_free(sig_int);
    if (sig_hup != NULL)
        event_free(sig_hup);
    if (d->drain_timer != NULL)
        event_free(d->drain_timer);
    if (d->housekeeping_timer != NULL)
        event_free(d->housekeeping_timer);
    aos_loop_free(d->main_loop);
    aos_router_free(d->router);
    aos_app_destroy(&d->app);
    aos_runtime_release(rt);
    aos_info("aosd stopped", NULL);
    return rc;
}

int main(int argc, char **argv)
{
    enum { OPT_MIGRATE = 256 };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"migrate", no_argument, NULL, OPT_MIGRATE},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct daemon d = {.conf_path = AOSD_CONFDIR "/aosd.conf", .exit_code = EXIT_SUCCESS};
    bool test_only = false, migrate = false;
    /* A fixed mmap threshold: glibc raises its own after the first large
     * block is freed, so from the second login on every Argon2id matrix
     * (auth.argon2.m_cost_kib, 19 MiB by default) came from the heap and
     * stayed resident after the hash (RSS 15 -> 99 MiB for good).  Blocks
     * this large are mmap()ed and handed back on free. */
    (void)mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tvh", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            d.conf_path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case OPT_MIGRATE:
            migrate = true;
            break;
        case 'v':
            printf("aosd %s (plugin ABI %d.%d)\n", PACKAGE_VERSION, AOS_ABI_MAJOR, AOS_ABI_MINOR);
            return EXIT_SUCCESS;
        case 'h':
            usage(stdout);
            return EXIT_SUCCESS;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (migrate)
        return run_migrate(d.conf_path, argc - optind, argv + optind);
    if (optind != argc) {
        fprintf(stderr, "aosd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    /* A peer closing mid-write must be an error code, not a dead daemon. */
    signal(SIGPIPE, SIG_IGN);
    if (aos_loop_global_init() != 0) {
        fprintf(stderr, "aosd: cannot initialise libevent threading\n");
        return EXIT_FAILURE;
    }

    struct aos_runtime *rt = load_generation(d.conf_path, NULL, false);
    if (test_only) {
        if (rt == NULL) {
            fprintf(stderr, "aosd: configuration %s is invalid\n", d.conf_path);
            return EXIT_FAILURE;
        }
        aos_runtime_release(rt);
        printf("configuration OK\n");
        return EXIT_SUCCESS;
    }
    if (rt == NULL) {
        fprintf(stderr, "aosd: not started: fix the errors above (check with: aosd -t -c %s)\n", d.conf_path);
        return EXIT_FAILURE;
    }
    apply_log_settings(rt->conf);
    aos_runtime_publish(rt);
    /* serve() takes over this reference. */
    int rc = serve(&d, aos_runtime_acquire());
    aos_runtime_shutdown();
    return rc;
}
