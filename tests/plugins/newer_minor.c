#include "config.h"
/* Built for ABI 1.(host minor + 1), with the larger descriptor such an SDK would
 * have: refused (newer minor). */
#include "minimal.h"

struct newer_descriptor {
    struct aos_plugin base;
    const void *appended_in_next_minor[2];
};
static const struct newer_descriptor desc = {
    .base =
        {
            .magic = AOS_PLUGIN_MAGIC,
            .abi_major = AOS_ABI_MAJOR,
            .abi_minor = AOS_ABI_MINOR + 1,
            .size = sizeof(struct newer_descriptor),
            .kind = AOS_PLUGIN_AGENT,
            .name = "newer-minor",
            .version = "1.0",
            .ops = &minimal_ops,
        },
};
AOS_PLUGIN_EXPORT(desc.base)
