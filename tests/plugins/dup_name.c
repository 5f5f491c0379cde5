#include "config.h"
/* File dup-name.so declares "good-agent", the name of another file: refused
 * when good-agent.so is loaded first (duplicate name). */
#include "minimal.h"

static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER,  .kind = AOS_PLUGIN_AGENT, .name = "good-agent",
    .version = "6.6.6", .ops = &minimal_ops,
};
AOS_PLUGIN_EXPORT(desc)
