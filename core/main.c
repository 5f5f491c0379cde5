/*
 * aosd: the daemon's life, in order.
 *   parse arguments -> load and validate config (-t stops here, after the
 *   plugins are checked too) -> load plugins -> bind -> drop privileges ->
 *   serve -> on SIGTERM drain -> exit.
 */
#include "config.h"

#include "api/api.h"
#include "conf.h"
#include "http/http.h"
#include "json.h"
#include "http/router.h"
#include "http/server.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "plugin.h"
#include "runtime.h"
#include "threadpool.h"

#include <aos/plugin.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define DRAIN_POLL_MS 50

struct daemon {
    const char *conf_path;
    struct event_base *base; /* main thread: signals and drain timer only */
    struct aos_app app;
    struct aos_router *router;
    struct aos_http_server *server;
    struct event *drain_timer;
    struct timespec drain_deadline;
    bool draining;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: aosd [-c FILE] [-t]\n"
            "       aosd --version | --help\n"
            "\n"
            "  -c, --config FILE  configuration file (default %s/aosd.conf)\n"
            "  -t, --test         check the configuration and plugins, then exit\n"
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

/* Loads config + plugins as one unit.  On failure, every reason has been
 * printed (startup/-t) or logged (reload) and NULL is returned. */
static struct aos_runtime *load_generation(const char *path, const struct aos_plugin_set *previous, bool to_log)
{
    struct aos_conf_errors errs = {0};
    struct aos_runtime *rt = NULL;
    struct aos_plugin_set *plugins = NULL;
    struct aos_conf *conf = aos_conf_load(path, &errs);
    if (conf == NULL)
        goto fail;
    plugins = aos_plugin_set_load(conf, previous, &errs);
    if (plugins == NULL)
        goto fail;
    rt = aos_runtime_new(conf, plugins);
    if (rt == NULL)
        goto fail;
    aos_conf_errors_free(&errs);
    return rt;
fail:
    if (to_log) {
        /* The loader logs its own refusals; config errors are ours. */
        if (conf == NULL)
            for (size_t i = 0; i < errs.n; i++)
                aos_logf(AOS_LVL_ERROR, "config", "%s", errs.lines[i]);
    } else if (conf == NULL) {
        print_conf_errors(&errs);
    }
    aos_plugin_set_free(plugins);
    aos_conf_free(conf);
    aos_conf_errors_free(&errs);
    return NULL;
}

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

static void reload(struct daemon *d)
{
    aos_info("reloading configuration", "file", d->conf_path, NULL);
    sd_notify(0, "RELOADING=1");
    struct aos_runtime *old = aos_runtime_acquire();
    struct aos_runtime *rt = load_generation(d->conf_path, old != NULL ? old->plugins : NULL, true);
    if (rt == NULL) {
        aos_err("reload failed: keeping the previous configuration", "file", d->conf_path, NULL);
        aos_runtime_release(old);
        sd_notify(0, "READY=1");
        return;
    }
    const struct aos_conf_server *was = &old->conf->server, *now = &rt->conf->server;
    bool listen_changed = was->nlisten != now->nlisten;
    for (size_t i = 0; !listen_changed && i < now->nlisten; i++)
        listen_changed = strcmp(was->listen[i].text, now->listen[i].text) != 0;
    if (listen_changed || was->threads != now->threads || was->workers != now->workers)
        aos_warn("server.listen, server.threads and server.workers take effect only after a restart", NULL);
    aos_runtime_release(old);

    struct aos_http_limits limits;
    aos_http_limits_from_conf(&limits, now);
    aos_http_server_set_limits(d->server, &limits);
    apply_log_settings(rt->conf);
    aos_runtime_publish(rt);
    char gen[24];
    snprintf(gen, sizeof gen, "%llu", (unsigned long long)rt->generation);
    aos_info("configuration reloaded", "generation", gen, NULL);
    sd_notify(0, "READY=1");
}

static double elapsed_until(const struct timespec *deadline)
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
    if (open == 0 || elapsed_until(&d->drain_deadline) <= 0) {
        if (open > 0) {
            char n[24];
            snprintf(n, sizeof n, "%ld", open);
            aos_warn("drain timeout: closing remaining connections", "connections", n, NULL);
        }
        event_base_loopbreak(d->base);
        return;
    }
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};
    evtimer_add(d->drain_timer, &tv);
}

static void begin_drain(struct daemon *d, int signo)
{
    if (d->draining) {
        /* A second TERM/INT: stop waiting. */
        aos_warn("second stop signal: exiting without waiting", NULL);
        event_base_loopbreak(d->base);
        return;
    }
    d->draining = true;
    aos_info("draining", "signal", strsignal(signo), NULL);
    sd_notify(0, "STOPPING=1");
    atomic_store(&d->app.not_ready, "draining");
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
    begin_drain(d, (int)signo);
}

/* AOS_TESTING=1 only: echoes a JSON body so the black-box tests can
 * exercise body limits, JSON errors and the thread-pool round trip before
 * real JSON routes exist.  {"sleep_ms": N} holds a pool thread that long,
 * which makes in-flight work observable (drain, client disconnects). */
struct testing_echo {
    struct aos_http_request *req;
    struct json_object *body;
    int64_t sleep_ms;
};

static void testing_echo_work(void *arg)
{
    struct testing_echo *e = arg;
    if (e->sleep_ms > 0) {
        struct timespec ts = {(time_t)(e->sleep_ms / 1000), (long)(e->sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void testing_echo_done(void *arg)
{
    struct testing_echo *e = arg;
    struct json_object *wrap = json_object_new_object();
    json_object_object_add(wrap, "echo", e->body);
    aos_http_respond_json(e->req, 200, wrap);
    free(e);
}

static void handle_testing_echo(struct aos_http_request *req, void *ctx)
{
    struct aos_app *app = ctx;
    struct json_object *obj = aos_http_body_json(req);
    if (obj == NULL)
        return;
    char err[160];
    int64_t sleep_ms = 0;
    if (aos_json_get_int(obj, "sleep_ms", 0, 10000, &sleep_ms, err, sizeof err) < 0) {
        json_object_put(obj);
        aos_http_respond_error(req, 422, "invalid_field", "%s", err);
        return;
    }
    struct testing_echo *e = malloc(sizeof *e);
    if (e == NULL) {
        json_object_put(obj);
        aos_http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    *e = (struct testing_echo){.req = req, .body = obj, .sleep_ms = sleep_ms};
    if (aos_http_defer(req, app->pool, testing_echo_work, testing_echo_done, e) != 0) {
        json_object_put(obj);
        free(e);
    }
}

static const struct aos_route testing_routes[] = {
    {"POST", "/api/v1/testing/echo", handle_testing_echo, AOS_ROLE_NONE, 0},
};

static bool testing_mode(void)
{
    const char *v = getenv("AOS_TESTING");
    return v != NULL && strcmp(v, "1") == 0;
}

/* Takes over the caller's reference to rt. */
static int serve(struct daemon *d, struct aos_runtime *rt)
{
    int rc = EXIT_FAILURE;
    char err[256];
    struct event *sig_term = NULL, *sig_int = NULL, *sig_hup = NULL;
    const struct aos_conf_server *sc = &rt->conf->server;

    d->app.started = time(NULL);
    atomic_store(&d->app.not_ready, "starting");
    err[0] = '\0';
    d->router = aos_router_new();
    if (d->router == NULL || aos_api_ops_register(d->router, &d->app, err, sizeof err) != 0 ||
        (testing_mode() && aos_router_add(d->router, testing_routes, 1, &d->app, err, sizeof err) != 0)) {
        aos_err("cannot register routes", "error", err, NULL);
        goto out;
    }
    if (testing_mode())
        aos_warn("AOS_TESTING=1: testing routes enabled; never use this in production", NULL);
    d->app.metrics = aos_metrics_new(d->router);
    d->app.pool = aos_pool_new(sc->workers, sc->pool_queue);
    if (d->app.metrics == NULL || d->app.pool == NULL) {
        aos_err("out of memory at start-up", NULL);
        goto out;
    }
    d->server = aos_http_server_new(sc, d->router, d->app.metrics, &d->app);
    d->app.server = d->server;
    if (d->server == NULL) {
        aos_err("cannot create the HTTP server", NULL);
        goto out;
    }
    if (aos_http_server_bind(d->server, err, sizeof err) != 0) {
        aos_err("cannot listen", "error", err, NULL);
        goto out;
    }
    if (drop_privileges(sc->user) != 0)
        goto out;
    /* Everything start-up needed from this generation is copied; let a
     * reload free it. */
    sc = NULL;
    aos_runtime_release(rt);
    rt = NULL;

    d->base = event_base_new();
    if (d->base == NULL)
        goto out;
    sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
    sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
    sig_hup = evsignal_new(d->base, SIGHUP, on_signal, d);
    d->drain_timer = evtimer_new(d->base, on_drain_tick, d);
    if (sig_term == NULL || sig_int == NULL || sig_hup == NULL || d->drain_timer == NULL ||
        evsignal_add(sig_term, NULL) != 0 || evsignal_add(sig_int, NULL) != 0 || evsignal_add(sig_hup, NULL) != 0)
        goto out;

    if (aos_http_server_start(d->server) != 0) {
        aos_err("cannot start the HTTP loops", NULL);
        goto out;
    }
    /* Plugins are up (loaded before we got here); the store joins this
     * condition when it exists. */
    atomic_store(&d->app.not_ready, NULL);
    char pid[16];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    aos_info("aosd started", "version", PACKAGE_VERSION, "pid", pid, NULL);
    sd_notify(0, "READY=1");

    event_base_dispatch(d->base);

    aos_http_server_stop(d->server);
    rc = EXIT_SUCCESS;
out:
    if (sig_term != NULL)
        event_free(sig_term);
    if (sig_int != NULL)
        event_free(sig_int);
    if (sig_hup != NULL)
        event_free(sig_hup);
    if (d->drain_timer != NULL)
        event_free(d->drain_timer);
    if (d->server != NULL)
        aos_http_server_stop(d->server);
    /* The pool may still post completions: loops must outlive it. */
    aos_pool_free(d->app.pool);
    aos_http_server_free(d->server);
    aos_metrics_free(d->app.metrics);
    if (d->base != NULL)
        event_base_free(d->base);
    aos_router_free(d->router);
    aos_runtime_release(rt);
    aos_info("aosd stopped", NULL);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct daemon d = {.conf_path = AOSD_CONFDIR "/aosd.conf"};
    bool test_only = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tvh", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            d.conf_path = optarg;
            break;
        case 't':
            test_only = true;
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

    if (test_only) {
        /* Plugin refusals are logged at error level: keep them visible
         * whatever the file's log level says. */
        struct aos_runtime *rt = load_generation(d.conf_path, NULL, false);
        if (rt == NULL) {
            fprintf(stderr, "aosd: configuration %s is invalid\n", d.conf_path);
            return EXIT_FAILURE;
        }
        aos_runtime_release(rt);
        printf("configuration OK\n");
        return EXIT_SUCCESS;
    }

    struct aos_runtime *rt = load_generation(d.conf_path, NULL, false);
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
