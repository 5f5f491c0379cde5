#include "config.h"
/* Declares a descriptor smaller than the ABI 1.0 layout: refused. */
#include "minimal.h"

static const struct aos_plugin desc = {
    .magic = AOS_PLUGIN_MAGIC,
    .abi_major = AOS_ABI_MAJOR,
    .abi_minor = AOS_ABI_MINOR,
    .size = 24,
    .kind = AOS_PLUGIN_AGENT,
    .name = "small-size",
    .version = "1.0",
    .ops = &minimal_ops,
};
AOS_PLUGIN_EXPORT(desc)
