#include "config.h"
/*
 * older-minor: a plugin built against an SDK whose agent ops table ended
 * at step() (an older minor, as 1.0 plugins will be to a 1.1 host).  Its
 * ops table declares that smaller size; right behind it in memory sits a
 * pointer where a newer table has validate_config().  The host must load
 * the plugin and read nothing past the declared size: validating a config
 * must behave as "no validate_config op", never call `trap`.
 */
#include <aos/plugin.h>

#include <stddef.h>

struct older_agent_ops {
    uint32_t size;
    int (*step)(struct aos_ctx *ctx, const void *instance, const struct aos_step_input *input,
                struct aos_step_result *result);
};

static int older_step(struct aos_ctx *ctx, const void *instance, const struct aos_step_input *in,
                      struct aos_step_result *r)
{
    (void)ctx;
    (void)instance;
    (void)in;
    r->status = AOS_STEP_DONE;
    return 0;
}

static const struct aos_host *older_host;

static int trap(struct aos_ctx *ctx, const void *instance, const char *config, size_t len)
{
    (void)instance;
    (void)config;
    (void)len;
    if (older_host != NULL)
        older_host->set_error(ctx, "read past the declared ops size");
    return -1;
}

static int older_init(struct aos_ctx *ctx, const struct aos_host *host, void *instance)
{
    (void)ctx;
    (void)instance;
    older_host = host;
    return 0;
}

static const struct {
    struct older_agent_ops ops;
    int (*after)(struct aos_ctx *, const void *, const char *, size_t);
} older_table = {
    .ops = {.size = sizeof(struct older_agent_ops), .step = older_step},
    .after = trap,
};

static const struct aos_plugin older_plugin = {
    .magic = AOS_PLUGIN_MAGIC,
    .abi_major = 1,
    .abi_minor = 0,
    .size = sizeof(struct aos_plugin),
    .kind = AOS_PLUGIN_AGENT,
    .name = "older-minor",
    .version = "0.1",
    .init = older_init,
    .ops = &older_table.ops,
};

AOS_PLUGIN_EXPORT(older_plugin)
