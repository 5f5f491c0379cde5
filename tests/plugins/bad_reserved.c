#include "config.h"
/* A reserved slot is set: refused. */
#include "minimal.h"

static const int something = 1;
static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER, .kind = AOS_PLUGIN_AGENT, .name = "bad-reserved",
    .version = "1.0",  .ops = &minimal_ops,      .reserved = {[3] = &something},
};
AOS_PLUGIN_EXPORT(desc)
