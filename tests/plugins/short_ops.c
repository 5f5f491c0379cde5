#include "config.h"
/* An ops table whose size does not reach step(): refused. */
#include "minimal.h"

static const struct aos_agent_ops ops = {.size = 4, .step = minimal_step};
static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER, .kind = AOS_PLUGIN_AGENT, .name = "short-ops", .version = "1.0", .ops = &ops,
};
AOS_PLUGIN_EXPORT(desc)
