#include "config.h"
/* The entry point returns NULL: refused. */
#include "minimal.h"

AOS_EXPORT const struct aos_plugin *aos_plugin_entry(void);
AOS_EXPORT const struct aos_plugin *aos_plugin_entry(void) { return NULL; }
