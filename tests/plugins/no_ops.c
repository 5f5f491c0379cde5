#include "config.h"
/* An agent without an ops table: refused. */
#include "minimal.h"

static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER,
    .kind = AOS_PLUGIN_AGENT,
    .name = "no-ops",
    .version = "1.0",
};
AOS_PLUGIN_EXPORT(desc)
