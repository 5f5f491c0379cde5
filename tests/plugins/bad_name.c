#include "config.h"
/* Declares a name that is not a valid plugin name: refused. */
#include "minimal.h"

static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER, .kind = AOS_PLUGIN_AGENT, .name = "Bad Name", .version = "1.0", .ops = &minimal_ops,
};
AOS_PLUGIN_EXPORT(desc)
