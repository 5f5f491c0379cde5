/*
 * Shared by the broken test plugins: a valid agent ops table, so each one
 * differs from a loadable plugin in exactly the way its test is about.
 * Only <aos/plugin.h> is used, like a real plugin.
 */
#ifndef AOS_TEST_MINIMAL_H
#define AOS_TEST_MINIMAL_H

#include <aos/plugin.h>

__attribute__((unused)) static int minimal_step(struct aos_ctx *ctx, const void *instance,
                                                const struct aos_step_input *in, struct aos_step_result *r)
{
    (void)ctx;
    (void)instance;
    (void)in;
    r->status = AOS_STEP_DONE;
    return 0;
}

__attribute__((unused)) static const struct aos_agent_ops minimal_ops = {
    .size = sizeof minimal_ops,
    .step = minimal_step,
};

#endif
