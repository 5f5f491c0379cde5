#include "config.h"
/* Built for ABI 2.0: refused (major mismatch). */
#include "minimal.h"

static const struct aos_plugin desc = {
    .magic = AOS_PLUGIN_MAGIC,
    .abi_major = AOS_ABI_MAJOR + 1,
    .abi_minor = 0,
    .size = sizeof(struct aos_plugin),
    .kind = AOS_PLUGIN_AGENT,
    .name = "bad-major",
    .version = "1.0",
    .ops = &minimal_ops,
};
AOS_PLUGIN_EXPORT(desc)
