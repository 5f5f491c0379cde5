#include "config.h"
/* Unknown plugin kind 7: refused. */
#include "minimal.h"

static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER, .kind = 7, .name = "bad-kind", .version = "1.0", .ops = &minimal_ops,
};
AOS_PLUGIN_EXPORT(desc)
