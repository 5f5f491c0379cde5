#include "config.h"
/* Wrong magic number: refused. */
#include "minimal.h"

static const struct aos_plugin desc = {
    .magic = 0x12345678u,
    .abi_major = AOS_ABI_MAJOR,
    .abi_minor = AOS_ABI_MINOR,
    .size = sizeof(struct aos_plugin),
    .kind = AOS_PLUGIN_AGENT,
    .name = "bad-magic",
    .version = "1.0",
    .ops = &minimal_ops,
};
AOS_PLUGIN_EXPORT(desc)
