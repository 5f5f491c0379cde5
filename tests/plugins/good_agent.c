#include "config.h"
/*
 * good-agent: a loadable agent that is NOT thread-safe, with one setting of
 * every type.  Its step reports the settings it was given and the largest
 * number of its steps that ever ran at once (which the host must keep at 1).
 * init/reload/fini append a line to the `trace` file so the test can check
 * the order of lifecycle calls across plugins.
 */
#include <aos/plugin.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct good {
    const char *tag;
    const char *trace;
    int64_t count;
    double ratio;
    int flag;
    int fail_reload;
    const struct aos_host *host;
};

static const struct aos_setting good_settings[] = {
    AOS_SETTING_STRING_FIELD(struct good, tag, 0u, "a", 0, 32, "label in outputs and traces"),
    AOS_SETTING_STRING_FIELD(struct good, trace, 0u, "", 0, 0, "file to append lifecycle calls to"),
    AOS_SETTING_INT_FIELD(struct good, count, "3", 1, 10, "a number from 1 to 10"),
    AOS_SETTING_DOUBLE_FIELD(struct good, ratio, "0.5", 0, 1, "a fraction"),
    AOS_SETTING_BOOL_FIELD(struct good, flag, "true", "a switch"),
    AOS_SETTING_BOOL_FIELD(struct good, fail_reload, "false", "make reload() fail"),
    AOS_SETTINGS_END};

static atomic_int inside;
static atomic_int max_inside;

static void trace(const struct good *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(const struct good *g, const char *fmt, ...)
{
    if (g->trace == NULL || g->trace[0] == '\0')
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    int fd = open(g->trace, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || n < 0)
        return;
    ssize_t w = write(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    (void)w;
    close(fd);
}

static int good_init(struct aos_ctx *ctx, const struct aos_host *host, void *instance)
{
    struct good *g = instance;
    g->host = host;
    host->log(ctx, AOS_LOG_INFO, "good-agent %s ready", g->tag);
    trace(g, "init good-agent %s\n", g->tag);
    return 0;
}

static int good_reload(struct aos_ctx *ctx, void *instance, void *old_instance)
{
    struct good *g = instance;
    const struct good *old = old_instance;
    trace(g, "reload good-agent %s<-%s\n", g->tag, old->tag);
    if (g->fail_reload) {
        g->host->set_error(ctx, "refusing to take over from %s", old->tag);
        return -1;
    }
    return 0;
}

static void good_fini(struct aos_ctx *ctx, void *instance)
{
    (void)ctx;
    trace(instance, "fini good-agent %s\n", ((struct good *)instance)->tag);
}

static int good_step(struct aos_ctx *ctx, const void *instance, const struct aos_step_input *in,
                     struct aos_step_result *r)
{
    const struct good *g = instance;
    int now = atomic_fetch_add(&inside, 1) + 1;
    int seen = atomic_load(&max_inside);
    while (now > seen && !atomic_compare_exchange_weak(&max_inside, &seen, now))
        ;
    /* Widen the window in which a missing lock would show. */
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    atomic_fetch_sub(&inside, 1);

    const char *input = in->input != NULL ? in->input : "";
    if (strstr(input, "fail-internal") != NULL) {
        g->host->set_error(ctx, "internal trouble\nsecond line");
        return -1;
    }
    if (strstr(input, "fail-step") != NULL) {
        g->host->set_error(ctx, "asked to fail at step %u", (unsigned)in->step_index);
        r->status = AOS_STEP_FAIL;
        return 0;
    }
    if (strstr(input, "bad-status") != NULL) {
        r->output.data = g->host->strndup("{}", 2);
        r->output.len = 2;
        r->status = 42;
        return 0;
    }
    char out[256];
    int n = snprintf(out, sizeof out,
                     "{\"tag\":\"%s\",\"count\":%lld,\"ratio\":%g,\"flag\":%s,\"max_inside\":%d,"
                     "\"size\":%u}",
                     g->tag, (long long)g->count, g->ratio, g->flag ? "true" : "false",
                     atomic_load(&max_inside), (unsigned)in->size);
    if (n < 0 || (size_t)n >= sizeof out) {
        g->host->set_error(ctx, "output too long");
        return -1;
    }
    r->output.data = g->host->strndup(out, (size_t)n);
    r->output.len = (size_t)n;
    r->tokens_in = 1;
    r->status = AOS_STEP_DONE;
    return r->output.data != NULL ? 0 : -1;
}

static int good_validate(struct aos_ctx *ctx, const void *instance, const char *config, size_t config_len)
{
    const struct good *g = instance;
    if (config_len == 0 || config[0] != '{') {
        g->host->set_error(ctx, "config must be a JSON object");
        return -1;
    }
    return 0;
}

static const struct aos_agent_ops good_ops = {
    .size = sizeof good_ops,
    .step = good_step,
    .validate_config = good_validate,
};

static const struct aos_plugin good_plugin = {
    AOS_PLUGIN_HEADER,
    .kind = AOS_PLUGIN_AGENT,
    .name = "good-agent",
    .version = "2.3.4",
    .description = "test agent",
    .settings = good_settings,
    .instance_size = sizeof(struct good),
    .init = good_init,
    .reload = good_reload,
    .fini = good_fini,
    .ops = &good_ops,
};

AOS_PLUGIN_EXPORT(good_plugin)
