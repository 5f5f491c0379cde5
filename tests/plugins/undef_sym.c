#include "config.h"
/* Needs a symbol nobody provides: dlopen(RTLD_NOW) fails and its dlerror() text
 * must reach the refusal. */
#include "minimal.h"

extern int aos_test_no_such_function(void);
static int undef_step(struct aos_ctx *ctx, const void *instance, const struct aos_step_input *in,
                      struct aos_step_result *r)
{
    (void)ctx;
    (void)instance;
    (void)in;
    r->status = aos_test_no_such_function();
    return 0;
}
static const struct aos_agent_ops ops = {.size = sizeof ops, .step = undef_step};
static const struct aos_plugin desc = {
    AOS_PLUGIN_HEADER, .kind = AOS_PLUGIN_AGENT, .name = "undef-sym", .version = "1.0", .ops = &ops,
};
AOS_PLUGIN_EXPORT(desc)
