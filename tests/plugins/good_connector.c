#include "config.h"
/*
 * good-connector: a loadable, thread-safe connector.  call() wraps the
 * request as {"got":<request>} and fails when it contains "boom"; health()
 * follows the `healthy` setting.  init/fini append to the `trace` file.
 */
#include <aos/plugin.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct conn {
    const char *trace;
    int healthy;
    const struct aos_host *host;
};

static const struct aos_setting conn_settings[] = {
    AOS_SETTING_STRING_FIELD(struct conn, trace, 0u, "", 0, 0, "file to append lifecycle calls to"),
    AOS_SETTING_BOOL_FIELD(struct conn, healthy, "true", "what health() reports"), AOS_SETTINGS_END};

static void trace(const struct conn *c, const char *what)
{
    if (c->trace == NULL || c->trace[0] == '\0')
        return;
    int fd = open(c->trace, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    ssize_t w = write(fd, what, strlen(what));
    (void)w;
    close(fd);
}

static int conn_init(struct aos_ctx *ctx, const struct aos_host *host, void *instance)
{
    (void)ctx;
    struct conn *c = instance;
    c->host = host;
    trace(c, "init good-connector\n");
    return 0;
}

static void conn_fini(struct aos_ctx *ctx, void *instance)
{
    (void)ctx;
    trace(instance, "fini good-connector\n");
}

static int conn_call(struct aos_ctx *ctx, const void *instance, const char *request, size_t request_len,
                     struct aos_buf *response)
{
    const struct conn *c = instance;
    if (memmem(request, request_len, "boom", 4) != NULL) {
        c->host->set_error(ctx, "upstream said boom");
        return -1;
    }
    size_t len = 7 + request_len + 1;
    char *buf = c->host->alloc(len + 1);
    if (buf == NULL)
        return -1;
    memcpy(buf, "{\"got\":", 7);
    memcpy(buf + 7, request, request_len);
    buf[len - 1] = '}';
    buf[len] = '\0';
    response->data = buf;
    response->len = len;
    return 0;
}

static int conn_health(struct aos_ctx *ctx, const void *instance)
{
    const struct conn *c = instance;
    if (!c->healthy) {
        c->host->set_error(ctx, "upstream unreachable");
        return -1;
    }
    return 0;
}

static const struct aos_connector_ops conn_ops = {
    .size = sizeof conn_ops,
    .call = conn_call,
    .health = conn_health,
};

static const struct aos_plugin conn_plugin = {
    AOS_PLUGIN_HEADER,
    .kind = AOS_PLUGIN_CONNECTOR,
    .name = "good-connector",
    .version = "0.9",
    .flags = AOS_PLUGIN_THREAD_SAFE,
    .settings = conn_settings,
    .instance_size = sizeof(struct conn),
    .init = conn_init,
    .fini = conn_fini,
    .ops = &conn_ops,
};

AOS_PLUGIN_EXPORT(conn_plugin)
