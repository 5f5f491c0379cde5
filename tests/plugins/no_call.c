#include "config.h"
/* A connector whose ops table lacks the mandatory call(): refused. */
#include "minimal.h"

static const struct aos_connector_ops ops = {.size = sizeof ops};
static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER, .kind = AOS_PLUGIN_CONNECTOR, .name = "no-call", .version = "1.0", .ops = &ops,
};
AOS_PLUGIN_EXPORT(desc)
