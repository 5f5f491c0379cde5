#include "config.h"
/* File wrong-name.so declares the plugin "other-name": refused. */
#include "minimal.h"

static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER, .kind = AOS_PLUGIN_AGENT, .name = "other-name", .version = "1.0", .ops = &minimal_ops,
};
AOS_PLUGIN_EXPORT(desc)
