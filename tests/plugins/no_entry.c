#include "config.h"
/* Exports a symbol, but not aos_plugin_entry: refused (missing entry point). */
#include "minimal.h"

static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER, .kind = AOS_PLUGIN_AGENT, .name = "no-entry", .version = "1.0", .ops = &minimal_ops,
};
AOS_EXPORT const struct aos_plugin *aos_plugin_entry_v0(void);
AOS_EXPORT const struct aos_plugin *aos_plugin_entry_v0(void) { return &desc; }
