#include "config.h"
/*
 * bad-schema: two bugs in its settings table (a field outside the
 * instance, and a default that is not an integer).  Refused with one line
 * per bug, before any configuration is looked at.
 */
#include "minimal.h"

struct small {
    int64_t a;
};

static const struct aos_setting settings[] = {
    {"far", AOS_SETTING_INT, 0u, 64, "1", 0, 0, "beyond the instance"},
    {"a", AOS_SETTING_INT, 0u, offsetof(struct small, a), "many", 0, 0, "not a number"},
    AOS_SETTINGS_END};

static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER,   .kind = AOS_PLUGIN_AGENT, .name = "bad-schema",
    .version = "1.0",    .settings = settings,     .instance_size = sizeof(struct small),
    .ops = &minimal_ops,
};
AOS_PLUGIN_EXPORT(desc)
