#include "config.h"
/* init() fails with a reason given through set_error(): refused, reason quoted. */
#include "minimal.h"

static int fail_init(struct aos_ctx *ctx, const struct aos_host *host, void *instance)
{
    (void)instance;
    host->set_error(ctx, "cannot reach the license server at %s", "198.51.100.7:7000");
    return -1;
}

static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER, .kind = AOS_PLUGIN_AGENT, .name = "init-fail",
    .version = "1.0",  .init = fail_init,        .ops = &minimal_ops,
};
AOS_PLUGIN_EXPORT(desc)
