#include "config.h"
/*
 * plugins/agent-echo, the engine's test pilot, against its contract
 * (man 7 agent-echo): the real plugin dlopen()ed through the host's loader
 * from $AOS_BUILDDIR/plugins/agent-echo/.libs, so it gets the real host
 * table, and called through aos_plugin_agent_step() the way the engine
 * calls it -- step_index counts calls, RETRY and transient failures repeat
 * a call with attempt + 1 and the same state, the call after
 * NEEDS_APPROVAL carries the same state plus the decision.  drive() plays
 * that host and records what each call returned.
 */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <libconfig.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "log.h"
#include "pii/pii.h"
#include "plugin.h"

#define NAME "agent-echo"

/* ---------------------------------------------------------------- loading */

struct loaded {
    struct aos_conf conf;
    config_t cfg;
    bool cfg_used;
    char *enable[1];
    struct aos_conf_plugin_block block;
    char dir[1024];
    struct aos_conf_errors errs;
    struct aos_plugin_set *set;
    const struct aos_plugin_instance *p;
};

/* Loads agent-echo with `settings` (libconfig text of its block's inside,
 * NULL for none).  Returns the set, or NULL with the refusal in l->errs. */
static struct aos_plugin_set *load(struct loaded *l, const char *settings)
{
    const char *b = getenv("AOS_BUILDDIR");
    char text[1024];

    memset(l, 0, sizeof(*l));
    if (b == NULL)
        fail_msg("AOS_BUILDDIR is not set (run through make check, or export it)");
    int n = snprintf(l->dir, sizeof(l->dir), "%s/plugins/" NAME "/.libs", b);
    assert_true(n > 0 && (size_t)n < sizeof(l->dir));
    l->enable[0] = (char *)NAME;
    l->conf.plugins.dir = l->dir;
    l->conf.plugins.enable = l->enable;
    l->conf.plugins.nenable = 1;
    if (settings != NULL) {
        n = snprintf(text, sizeof(text), NAME " = { %s };\n", settings);
        assert_true(n > 0 && (size_t)n < sizeof(text));
        config_init(&l->cfg);
        l->cfg_used = true;
        if (config_read_string(&l->cfg, text) != CONFIG_TRUE)
            fail_msg("bad test settings: %s", config_error_text(&l->cfg));
        l->block.name = (char *)NAME;
        l->block.setting = config_setting_get_elem(config_root_setting(&l->cfg), 0);
        l->block.file = "test.conf";
        l->block.line = 1;
        l->conf.plugins.blocks = &l->block;
        l->conf.plugins.nblocks = 1;
    }
    l->set = aos_plugin_set_load(&l->conf, NULL, &l->errs);
    if (l->set != NULL) {
        l->p = aos_plugin_set_find(l->set, NAME);
        assert_non_null(l->p);
    }
    return l->set;
}

static const struct aos_plugin_instance *must_load(struct loaded *l, const char *settings)
{
    if (load(l, settings) == NULL)
        fail_msg("cannot load " NAME ": %s", l->errs.n > 0 ? l->errs.lines[0] : "?");
    return l->p;
}

static void unload(struct loaded *l)
{
    aos_plugin_set_free(l->set);
    aos_conf_errors_free(&l->errs);
    if (l->cfg_used)
        config_destroy(&l->cfg);
    memset(l, 0, sizeof(*l));
}

/* ---------------------------------------------------------------- one call */

struct call {
    const char *input;    /* NULL: no input */
    const char *config;   /* NULL: the host had none */
    const char *state;    /* NULL: no work step done */
    const char *decision; /* NULL: not after an approval */
    uint32_t index;
    uint32_t attempt; /* 0 means 1 */
};

struct res {
    int rc;
    int status;
    char *output; /* NUL-terminated copies, or NULL */
    char *state;
    uint32_t retry_after_ms;
    uint64_t tokens_in, tokens_out, cost;
    char err[512];
};

static char *dup_buf(const struct aos_buf *b)
{
    if (b->data == NULL)
        return NULL;
    assert_int_equal(b->data[b->len], '\0');
    assert_int_equal(strlen(b->data), b->len);
    char *s = strndup(b->data, b->len);
    assert_non_null(s);
    return s;
}

static void res_free(struct res *r)
{
    free(r->output);
    free(r->state);
    memset(r, 0, sizeof *r);
}

static void step(const struct aos_plugin_instance *p, const struct call *c, struct res *out)
{
    struct aos_step_input in = {
        .run_id = "00000000-0000-4000-8000-000000000001",
        .tenant_id = "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f",
        .step_index = c->index,
        .attempt = c->attempt > 0 ? c->attempt : 1,
        .idempotency_key = "00000000-0000-4000-8000-000000000001:0",
        .input = c->input,
        .input_len = c->input != NULL ? strlen(c->input) : 0,
        .state = c->state,
        .state_len = c->state != NULL ? strlen(c->state) : 0,
        .decision = c->decision,
        .decision_len = c->decision != NULL ? strlen(c->decision) : 0,
        .config = c->config,
        .config_len = c->config != NULL ? strlen(c->config) : 0,
        .agent_id = "00000000-0000-4000-8000-0000000000a1",
        .agent_name = "pilot",
    };
    struct aos_step_result r;
    memset(out, 0, sizeof *out);
    out->rc = aos_plugin_agent_step(p, &in, &r, out->err, sizeof out->err);
    out->status = r.status;
    out->output = dup_buf(&r.output);
    out->state = dup_buf(&r.state);
    out->retry_after_ms = r.retry_after_ms;
    out->tokens_in = r.tokens_in;
    out->tokens_out = r.tokens_out;
    out->cost = r.cost_micro_usd;
    aos_plugin_step_result_release(&r);
}

/* One call with only an input and a state; the result is asserted by the
 * caller. */
static void step_in(const struct aos_plugin_instance *p, const char *input, const char *state,
                    struct res *out)
{
    const struct call c = {.input = input, .state = state};
    step(p, &c, out);
}

#define assert_fail_with(r, msg)                      \
    do {                                              \
        assert_int_equal((r)->rc, 0);                 \
        assert_int_equal((r)->status, AOS_STEP_FAIL); \
        assert_null((r)->output);                     \
        assert_null((r)->state);                      \
        assert_string_equal((r)->err, (msg));         \
    } while (0)

/* ---------------------------------------------------------------- a host */

/* Drives a whole run like the engine does.  decisions: one character per
 * approval, 'y' or 'n'.  trace: one letter per call -- C continue,
 * A needs approval, R retry, T transient error (rc < 0), D done, F fail.
 * Stops at DONE/FAIL, or when a call reaches max_attempts without success
 * (then the last letter is R or T, as the engine would fail the run). */
struct run {
    char trace[128];
    char *output;
    char err[512];
    uint64_t tokens_in, tokens_out, cost;
    uint32_t calls;
};

static void drive(const struct aos_plugin_instance *p, const char *input, const char *config,
                  const char *decisions, uint32_t max_attempts, struct run *run)
{
    char *state = NULL; /* the state before the current call */
    const char *decision = NULL;
    size_t nt = 0;
    uint32_t index = 0, attempt = 1;

    memset(run, 0, sizeof *run);
    for (;;) {
        assert_true(nt + 1 < sizeof run->trace);
        const struct call c = {.input = input,
                               .config = config,
                               .state = state,
                               .decision = decision,
                               .index = index,
                               .attempt = attempt};
        struct res r;
        step(p, &c, &r);
        run->calls++;
        run->tokens_in += r.tokens_in;
        run->tokens_out += r.tokens_out;
        run->cost += r.cost;
        if (r.rc < 0) {
            run->trace[nt++] = 'T';
            snprintf(run->err, sizeof run->err, "%s", r.err);
            res_free(&r);
            if (++attempt > max_attempts)
                break;
            continue;
        }
        switch (r.status) {
        case AOS_STEP_CONTINUE:
            run->trace[nt++] = 'C';
            assert_non_null(r.state);
            free(state);
            state = r.state;
            r.state = NULL;
            decision = NULL;
            index++;
            attempt = 1;
            break;
        case AOS_STEP_NEEDS_APPROVAL:
            run->trace[nt++] = 'A';
            assert_non_null(r.output);
            assert_null(r.state);
            assert_non_null(decisions);
            assert_true(*decisions == 'y' || *decisions == 'n');
            decision = *decisions++ == 'y' ? "{\"approved\":true,\"comment\":\"go\"}"
                                           : "{\"approved\":false,\"comment\":\"no\"}";
            index++;
            attempt = 1;
            break;
        case AOS_STEP_RETRY:
            run->trace[nt++] = 'R';
            attempt++;
            break;
        case AOS_STEP_DONE:
            run->trace[nt++] = 'D';
            run->output = r.output;
            r.output = NULL;
            break;
        case AOS_STEP_FAIL:
            run->trace[nt++] = 'F';
            snprintf(run->err, sizeof run->err, "%s", r.err);
            break;
        default:
            fail_msg("unknown status %d", r.status);
        }
        int status = r.status;
        res_free(&r);
        if (status == AOS_STEP_DONE || status == AOS_STEP_FAIL || attempt > max_attempts)
            break;
    }
    run->trace[nt] = '\0';
    free(state);
}

static void run_free(struct run *run)
{
    free(run->output);
    memset(run, 0, sizeof *run);
}

/* ---------------------------------------------------------------- tests */

static void test_descriptor(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p = must_load(&l, NULL);
    assert_int_equal(aos_plugin_instance_kind(p), AOS_PLUGIN_AGENT);
    assert_true(aos_plugin_instance_flags(p) & AOS_PLUGIN_THREAD_SAFE);
    assert_string_equal(aos_plugin_instance_version(p), PACKAGE_VERSION);
    unload(&l);
}

/* N work steps: the work-step count travels in the state, whatever
 * step_index says. */
static void test_steps_thread_state(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p = must_load(&l, NULL);
    const char *in = "{\"steps\":3,\"x\":[1,\"two\"]}";
    struct res r;

    step_in(p, in, NULL, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, AOS_STEP_CONTINUE);
    assert_string_equal(r.state, "{\"done\":1}");
    assert_null(r.output);
    res_free(&r);

    /* step_index is not the work step: a late call with no state is the
     * first work step all the same. */
    const struct call late = {.input = in, .index = 41};
    step(p, &late, &r);
    assert_int_equal(r.status, AOS_STEP_CONTINUE);
    assert_string_equal(r.state, "{\"done\":1}");
    res_free(&r);

    step_in(p, in, "{\"done\":1}", &r);
    assert_int_equal(r.status, AOS_STEP_CONTINUE);
    assert_string_equal(r.state, "{\"done\":2}");
    res_free(&r);

    step_in(p, in, "{\"done\":2}", &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, AOS_STEP_DONE);
    assert_string_equal(r.output, "{\"echo\":{\"steps\":3,\"x\":[1,\"two\"]},\"steps\":3}");
    assert_null(r.state);
    res_free(&r);

    /* The whole run, driven like the engine. */
    struct run run;
    drive(p, "{\"steps\":5}", NULL, NULL, 3, &run);
    assert_string_equal(run.trace, "CCCCD");
    assert_string_equal(run.output, "{\"echo\":{\"steps\":5},\"steps\":5}");
    run_free(&run);

    /* Default: one step, straight to DONE; the input is echoed byte for byte. */
    drive(p, "{ \"a\" : 1.50 }", NULL, NULL, 3, &run);
    assert_string_equal(run.trace, "D");
    assert_string_equal(run.output, "{\"echo\":{ \"a\" : 1.50 },\"steps\":1}");
    run_free(&run);

    /* An input that is not an object steers nothing and is echoed. */
    drive(p, "[1,2,3]", NULL, NULL, 3, &run);
    assert_string_equal(run.trace, "D");
    assert_string_equal(run.output, "{\"echo\":[1,2,3],\"steps\":1}");
    run_free(&run);
    drive(p, NULL, NULL, NULL, 3, &run);
    assert_string_equal(run.trace, "D");
    assert_string_equal(run.output, "{\"echo\":null,\"steps\":1}");
    run_free(&run);

    /* A state the pilot did not write, or one beyond N, fails the step. */
    step_in(p, in, "{\"step\":1}", &r);
    assert_fail_with(&r, "the state is not {\"done\":<work steps done>} ({\"step\":1})");
    res_free(&r);
    step_in(p, in, "{\"done\":3}", &r);
    assert_fail_with(&r, "the state says 3 work steps are done, but the run has 3 (steps)");
    res_free(&r);
    step_in(p, in, "{\"done\":-1}", &r);
    assert_fail_with(&r, "the state says -1 work steps are done, but the run has 3 (steps)");
    res_free(&r);
    unload(&l);
}

static void test_approval_approved(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p = must_load(&l, NULL);
    const char *in = "{\"steps\":3,\"approval_at\":2}";
    struct res r;

    /* Work step 2 asks first: the proposal, no state (the host keeps the
     * one it has). */
    step_in(p, in, "{\"done\":1}", &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, AOS_STEP_NEEDS_APPROVAL);
    assert_string_equal(r.output,
                        "{\"step\":2,\"action\":\"echo\",\"input\":{\"steps\":3,\"approval_at\":2}}");
    assert_null(r.state);
    res_free(&r);

    /* The next call: same state, the decision -- work step 2 is done. */
    const struct call yes = {.input = in,
                             .state = "{\"done\":1}",
                             .index = 2,
                             .decision = "{\"approved\": true, \"comment\": \"fine\"}"};
    step(p, &yes, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, AOS_STEP_CONTINUE);
    assert_string_equal(r.state, "{\"done\":2}");
    res_free(&r);

    struct run run;
    drive(p, in, NULL, "y", 3, &run);
    assert_string_equal(run.trace, "CACD");
    assert_string_equal(run.output, "{\"echo\":{\"steps\":3,\"approval_at\":2},\"steps\":3}");
    run_free(&run);

    /* At the last work step the approved call is DONE. */
    drive(p, "{\"steps\":2,\"approval_at\":2}", NULL, "y", 3, &run);
    assert_string_equal(run.trace, "CAD");
    run_free(&run);

    /* approval_at 1 asks before any work; beyond N it never asks. */
    drive(p, "{\"steps\":2,\"approval_at\":1}", NULL, "y", 3, &run);
    assert_string_equal(run.trace, "ACD");
    run_free(&run);
    drive(p, "{\"steps\":2,\"approval_at\":3}", NULL, NULL, 3, &run);
    assert_string_equal(run.trace, "CD");
    run_free(&run);
    unload(&l);
}

static void test_approval_rejected(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p = must_load(&l, NULL);
    const char *in = "{\"steps\":3,\"approval_at\":2}";
    struct run run;

    drive(p, in, NULL, "n", 3, &run);
    assert_string_equal(run.trace, "CAF");
    assert_string_equal(run.err, "rejected by approver");
    assert_null(run.output);
    run_free(&run);

    struct res r;
    const struct call bad = {.input = in, .state = "{\"done\":1}", .decision = "{\"comment\":\"?\"}"};
    step(p, &bad, &r);
    assert_fail_with(&r, "the decision has no boolean \"approved\"");
    res_free(&r);
    const struct call str = {.input = in, .state = "{\"done\":1}", .decision = "{\"approved\":\"yes\"}"};
    step(p, &str, &r);
    assert_fail_with(&r, "the decision has no boolean \"approved\"");
    res_free(&r);
    unload(&l);
}

static void test_fail_at(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p = must_load(&l, NULL);
    struct run run;

    drive(p, "{\"steps\":3,\"fail_at\":2}", NULL, NULL, 3, &run);
    assert_string_equal(run.trace, "CF");
    assert_string_equal(run.err, "fail_at: work step 2 fails");
    run_free(&run);

    /* Permanent: a later attempt fails the same way. */
    struct res r;
    const struct call again = {.input = "{\"steps\":3,\"fail_at\":2}", .state = "{\"done\":1}", .attempt = 2};
    step(p, &again, &r);
    assert_fail_with(&r, "fail_at: work step 2 fails");
    res_free(&r);
    unload(&l);
}

static void test_fail_once(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p = must_load(&l, NULL);
    const char *in = "{\"steps\":3,\"fail_at\":2,\"fail_once\":true}";
    struct res r;

    /* Attempt 1: a negative return after set_error (transient); the
     * wrapper hands back nothing. */
    const struct call first = {.input = in, .state = "{\"done\":1}", .index = 1, .attempt = 1};
    step(p, &first, &r);
    assert_int_equal(r.rc, -1);
    assert_string_equal(r.err, "fail_once: work step 2 fails on its first attempt");
    assert_null(r.output);
    assert_null(r.state);
    res_free(&r);

    const struct call second = {.input = in, .state = "{\"done\":1}", .index = 1, .attempt = 2};
    step(p, &second, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, AOS_STEP_CONTINUE);
    assert_string_equal(r.state, "{\"done\":2}");
    res_free(&r);

    struct run run;
    drive(p, in, NULL, NULL, 3, &run);
    assert_string_equal(run.trace, "CTCD");
    run_free(&run);
    /* With one attempt allowed the run ends on the transient error. */
    drive(p, in, NULL, NULL, 1, &run);
    assert_string_equal(run.trace, "CT");
    assert_string_equal(run.err, "fail_once: work step 2 fails on its first attempt");
    run_free(&run);
    unload(&l);
}

static void test_retry_at(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p = must_load(&l, NULL);
    struct res r;

    const struct call first = {.input = "{\"steps\":2,\"retry_at\":1}", .attempt = 1};
    step(p, &first, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, AOS_STEP_RETRY);
    assert_int_equal(r.retry_after_ms, 10);
    assert_null(r.output);
    assert_null(r.state);
    res_free(&r);

    struct run run;
    drive(p, "{\"steps\":2,\"retry_at\":2,\"retry_after_ms\":250}", NULL, NULL, 5, &run);
    assert_string_equal(run.trace, "CRD");
    run_free(&run);
    const struct call timed = {.input = "{\"steps\":2,\"retry_at\":2,\"retry_after_ms\":250}",
                               .state = "{\"done\":1}"};
    step(p, &timed, &r);
    assert_int_equal(r.status, AOS_STEP_RETRY);
    assert_int_equal(r.retry_after_ms, 250);
    res_free(&r);

    /* retry_always: every attempt, until the host gives up. */
    drive(p, "{\"steps\":2,\"retry_at\":2,\"retry_always\":true}", NULL, NULL, 4, &run);
    assert_string_equal(run.trace, "CRRRR");
    assert_null(run.output);
    run_free(&run);
    unload(&l);
}

static void test_usage(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p = must_load(&l, NULL);
    struct res r;

    /* Chosen figures on every kind of call. */
    const char *kinds[] = {
        "{\"steps\":2,\"tokens_per_step\":7,\"cost_micros_per_step\":123}",       /* CONTINUE */
        "{\"approval_at\":1,\"tokens_per_step\":7,\"cost_micros_per_step\":123}", /* APPROVAL */
        "{\"retry_at\":1,\"tokens_per_step\":7,\"cost_micros_per_step\":123}",    /* RETRY */
        "{\"fail_at\":1,\"tokens_per_step\":7,\"cost_micros_per_step\":123}",     /* FAIL */
        "{\"steps\":0,\"tokens_per_step\":7,\"cost_micros_per_step\":123}",       /* bad value */
        "{\"tokens_per_step\":7,\"cost_micros_per_step\":123}",                   /* DONE */
    };
    const int want[] = {AOS_STEP_CONTINUE, AOS_STEP_NEEDS_APPROVAL, AOS_STEP_RETRY,
                        AOS_STEP_FAIL,     AOS_STEP_FAIL,           AOS_STEP_DONE};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        step_in(p, kinds[i], NULL, &r);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.status, want[i]);
        assert_int_equal(r.tokens_in, 4);
        assert_int_equal(r.tokens_out, 3);
        assert_int_equal(r.cost, 123);
        res_free(&r);
    }

    /* Tokens only: the cost is 1 micro-USD per started 1000 tokens. */
    step_in(p, "{\"tokens_per_step\":2001}", NULL, &r);
    assert_int_equal(r.tokens_in, 1001);
    assert_int_equal(r.tokens_out, 1000);
    assert_int_equal(r.cost, 3);
    res_free(&r);
    step_in(p, "{\"tokens_per_step\":0}", NULL, &r);
    assert_int_equal(r.tokens_in + r.tokens_out + r.cost, 0);
    res_free(&r);

    /* Default estimate: input bytes / 4 in, produced bytes / 4 out. */
    const char *in = "{\"steps\":2,\"pad\":\"0123456789\"}"; /* 31 bytes */
    step_in(p, in, NULL, &r);
    assert_int_equal(r.status, AOS_STEP_CONTINUE);
    assert_int_equal(r.tokens_in, strlen(in) / 4);
    assert_int_equal(r.tokens_out, strlen("{\"done\":1}") / 4);
    assert_int_equal(r.cost, 1);
    res_free(&r);
    step_in(p, in, "{\"done\":1}", &r);
    assert_int_equal(r.status, AOS_STEP_DONE);
    assert_int_equal(r.tokens_in, strlen(in) / 4);
    assert_int_equal(r.tokens_out, strlen(r.output) / 4);
    res_free(&r);
    step_in(p, "{\"fail_at\":1}", NULL, &r);
    assert_int_equal(r.status, AOS_STEP_FAIL);
    assert_int_equal(r.tokens_in, 3);
    assert_int_equal(r.tokens_out, 0);
    assert_int_equal(r.cost, 1);
    res_free(&r);

    /* A whole run adds up: 4 calls (C A C D) of 10 tokens. */
    struct run run;
    drive(p, "{\"steps\":3,\"approval_at\":2,\"tokens_per_step\":10,\"cost_micros_per_step\":5}", NULL, "y",
          3, &run);
    assert_string_equal(run.trace, "CACD");
    assert_int_equal(run.tokens_in, 20);
    assert_int_equal(run.tokens_out, 20);
    assert_int_equal(run.cost, 20);
    run_free(&run);

    /* Big figures pass through unchanged. */
    step_in(p, "{\"tokens_per_step\":1000000000000,\"cost_micros_per_step\":1000000000000}", NULL, &r);
    assert_int_equal(r.tokens_in, 500000000000ULL);
    assert_int_equal(r.tokens_out, 500000000000ULL);
    assert_int_equal(r.cost, 1000000000000ULL);
    res_free(&r);
    unload(&l);
}

/* input > agent config > plugin settings, field by field. */
static void test_precedence(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p =
        must_load(&l, "steps = 4; tokens_per_step = 10; retry_after_ms = 30;");
    struct run run;

    drive(p, "{}", NULL, NULL, 3, &run);
    assert_string_equal(run.trace, "CCCD");
    assert_int_equal(run.tokens_in + run.tokens_out, 40);
    run_free(&run);
    drive(p, "{}", "{\"steps\":3,\"tokens_per_step\":20}", NULL, 3, &run);
    assert_string_equal(run.trace, "CCD");
    assert_int_equal(run.tokens_in + run.tokens_out, 60);
    run_free(&run);
    drive(p, "{\"steps\":2,\"tokens_per_step\":30}", "{\"steps\":3,\"tokens_per_step\":20}", NULL, 3, &run);
    assert_string_equal(run.trace, "CD");
    assert_int_equal(run.tokens_in + run.tokens_out, 60);
    run_free(&run);
    /* Per field: steps from the input, tokens from the config. */
    drive(p, "{\"steps\":2}", "{\"steps\":3,\"tokens_per_step\":20}", NULL, 3, &run);
    assert_string_equal(run.trace, "CD");
    assert_int_equal(run.tokens_in + run.tokens_out, 40);
    run_free(&run);
    /* null means absent: the config's value stands. */
    drive(p, "{\"steps\":null}", "{\"steps\":3}", NULL, 3, &run);
    assert_string_equal(run.trace, "CCD");
    run_free(&run);
    /* "{}" is what the host passes for an agent without config. */
    drive(p, "{\"steps\":1}", "{}", NULL, 3, &run);
    assert_string_equal(run.trace, "D");
    run_free(&run);

    struct res r;
    const struct call c = {.input = "{\"retry_at\":1}", .config = "{\"retry_after_ms\":40}"};
    step(p, &c, &r);
    assert_int_equal(r.status, AOS_STEP_RETRY);
    assert_int_equal(r.retry_after_ms, 40);
    res_free(&r);
    const struct call s = {.input = "{\"retry_at\":1}"};
    step(p, &s, &r);
    assert_int_equal(r.retry_after_ms, 30);
    res_free(&r);
    unload(&l);

    /* approval = true: approval_at = N (the resolved N), unless a level
     * above names approval_at -- 0 included. */
    p = must_load(&l, "approval = true; steps = 2;");
    drive(p, "{}", NULL, "y", 3, &run);
    assert_string_equal(run.trace, "CAD");
    run_free(&run);
    drive(p, "{\"steps\":3}", NULL, "y", 3, &run);
    assert_string_equal(run.trace, "CCAD");
    run_free(&run);
    drive(p, "{}", "{\"approval_at\":1}", "y", 3, &run);
    assert_string_equal(run.trace, "ACD");
    run_free(&run);
    drive(p, "{\"approval_at\":0}", "{\"approval_at\":1}", NULL, 3, &run);
    assert_string_equal(run.trace, "CD");
    run_free(&run);
    unload(&l);

    /* Every contract field is a setting too (sleep_ms's is delay_ms). */
    p = must_load(&l,
                  "steps = 3; approval_at = 2; fail_at = 3; fail_once = true; retry_at = 1; "
                  "retry_always = false; retry_after_ms = 5; tokens_per_step = 4; cost_micros_per_step = 9;");
    drive(p, "{}", NULL, "y", 3, &run);
    assert_string_equal(run.trace, "RCACTD");
    /* Six calls; the wrapper drops what the transient one reported. */
    assert_int_equal(run.tokens_in, 10);
    assert_int_equal(run.tokens_out, 10);
    assert_int_equal(run.cost, 45);
    run_free(&run);
    unload(&l);
}

static void test_bad_values(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p = must_load(&l, NULL);
    static const struct {
        const char *input, *err;
    } cases[] = {
        {"{\"steps\":0}", "input: \"steps\": 0 is out of range 1..10000"},
        {"{\"steps\":10001}", "input: \"steps\": 10001 is out of range 1..10000"},
        {"{\"steps\":\"3\"}", "input: \"steps\" must be an integer, not a string"},
        {"{\"steps\":2.0}", "input: \"steps\" must be an integer, not a number with a fraction"},
        /* json-c saturates what int64 cannot hold. */
        {"{\"steps\":99999999999999999999999}",
         "input: \"steps\": 9223372036854775807 is out of range 1..10000"},
        {"{\"steps\":9223372036854775807}", "input: \"steps\": 9223372036854775807 is out of range 1..10000"},
        {"{\"sleep_ms\":600001}", "input: \"sleep_ms\": 600001 is out of range 0..600000"},
        {"{\"sleep_ms\":-1}", "input: \"sleep_ms\": -1 is out of range 0..600000"},
        {"{\"approval_at\":-1}", "input: \"approval_at\": -1 is out of range 0..10000"},
        {"{\"fail_at\":[1]}", "input: \"fail_at\" must be an integer, not an array"},
        {"{\"fail_once\":1}", "input: \"fail_once\" must be true or false, not an integer"},
        {"{\"retry_at\":{}}", "input: \"retry_at\" must be an integer, not an object"},
        {"{\"retry_always\":\"true\"}", "input: \"retry_always\" must be true or false, not a string"},
        {"{\"retry_after_ms\":600001}", "input: \"retry_after_ms\": 600001 is out of range 0..600000"},
        {"{\"tokens_per_step\":-1}", "input: \"tokens_per_step\": -1 is out of range 0..1000000000000"},
        {"{\"cost_micros_per_step\":1000000000001}",
         "input: \"cost_micros_per_step\": 1000000000001 is out of range 0..1000000000000"},
        /* The first refusal is reported. */
        {"{\"steps\":0,\"fail_at\":true}", "input: \"steps\": 0 is out of range 1..10000"},
    };
    struct res r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        step_in(p, cases[i].input, NULL, &r);
        assert_fail_with(&r, cases[i].err);
        res_free(&r);
    }

    /* Unknown input fields are data, not errors. */
    step_in(p, "{\"hello\":\"world\",\"steps\":1}", NULL, &r);
    assert_int_equal(r.status, AOS_STEP_DONE);
    assert_string_equal(r.output, "{\"echo\":{\"hello\":\"world\",\"steps\":1},\"steps\":1}");
    res_free(&r);

    /* A bad agent config fails the step too, naming the culprit. */
    const struct call c = {.input = "{}", .config = "{\"nested\":{\"a\":1}}"};
    step(p, &c, &r);
    assert_fail_with(&r,
                     "agent config: unknown key \"nested\" (agent-echo knows steps, sleep_ms, approval_at, "
                     "fail_at, fail_once, retry_at, retry_always, retry_after_ms, tokens_per_step, "
                     "cost_micros_per_step)");
    res_free(&r);
    const struct call c2 = {.input = "{\"steps\":2}", .config = "{\"steps\":0}"};
    step(p, &c2, &r);
    assert_fail_with(&r, "agent config: \"steps\": 0 is out of range 1..10000");
    res_free(&r);
    unload(&l);
}

static void test_validate_config(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p = must_load(&l, NULL);
    char err[512];
    static const char *good[] = {
        "{}",
        " { } ",
        "{\"steps\":3,\"sleep_ms\":0,\"approval_at\":2,\"fail_at\":0,\"fail_once\":false,\"retry_at\":0,"
        "\"retry_always\":true,\"retry_after_ms\":100,\"tokens_per_step\":5,\"cost_micros_per_step\":7}",
        "{\"steps\":null}",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (aos_plugin_agent_validate_config(p, good[i], strlen(good[i]), err, sizeof err) != 0)
            fail_msg("%s refused: %s", good[i], err);
    }
    static const struct {
        const char *config, *err;
    } bad[] = {
        {"{\"steps\":3,\"nested\":{\"a\":[1,\"x\"]}}",
         "unknown key \"nested\" (agent-echo knows steps, sleep_ms, approval_at, fail_at, fail_once, "
         "retry_at, "
         "retry_always, retry_after_ms, tokens_per_step, cost_micros_per_step)"},
        {"{\"approval\":true}", "unknown key \"approval\" (agent-echo knows steps, sleep_ms, approval_at, "
                                "fail_at, fail_once, retry_at, "
                                "retry_always, retry_after_ms, tokens_per_step, cost_micros_per_step)"},
        {"{\"steps\":0}", "\"steps\": 0 is out of range 1..10000"},
        {"{\"steps\":\"2\"}", "\"steps\" must be an integer, not a string"},
        {"{\"retry_always\":1}", "\"retry_always\" must be true or false, not an integer"},
        {"{\"tokens_per_step\":-5}", "\"tokens_per_step\": -5 is out of range 0..1000000000000"},
        {"[1]", "the config must be a JSON object, not an array"},
        {"\"x\"", "the config must be a JSON object, not a string"},
        {"null", "the config must be a JSON object (null)"},
        {"", "the config must be a JSON object (empty)"},
        {"{\"steps\":1} x",
         "the config must be a JSON object (invalid JSON at byte 12: unexpected character)"},
        {"5", "the config must be a JSON object, not an integer"},
        {"{\"steps\":", "the config must be a JSON object (invalid JSON at byte 9: unexpected end of data)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(
            aos_plugin_agent_validate_config(p, bad[i].config, strlen(bad[i].config), err, sizeof err), -1);
        assert_string_equal(err, bad[i].err);
    }
    /* The whole length counts: nothing hides behind a NUL. */
    assert_int_equal(aos_plugin_agent_validate_config(p, "{}\0{\"x\":1}", 10, err, sizeof err), -1);
    assert_string_equal(err,
                        "the config must be a JSON object (invalid JSON at byte 2: trailing characters)");
    unload(&l);
}

/* The settings of the first agent-echo keep working: delay_ms, steps,
 * approval, fail_on, and the schema refuses what is out of range. */
static void test_settings(void **state)
{
    (void)state;
    struct loaded l;
    const struct aos_plugin_instance *p =
        must_load(&l, "steps = 2; approval = true; fail_on = \"boom\"; delay_ms = 1;");
    struct run run;
    drive(p, "{\"a\":1}", NULL, "y", 3, &run);
    assert_string_equal(run.trace, "CAD");
    assert_string_equal(run.output, "{\"echo\":{\"a\":1},\"steps\":2}");
    run_free(&run);

    struct res r;
    step_in(p, "{\"say\":\"boom\"}", NULL, &r);
    assert_fail_with(&r, "input contains \"boom\" (fail_on)");
    res_free(&r);
    unload(&l);

    assert_null(load(&l, "steps = 0;"));
    assert_int_equal(l.errs.n, 1);
    assert_non_null(strstr(l.errs.lines[0], "plugins.agent-echo.steps: 0 is out of range 1..10000"));
    unload(&l);
    assert_null(load(&l, "tokens_per_step = -2;"));
    assert_int_equal(l.errs.n, 1);
    assert_non_null(strstr(l.errs.lines[0], "tokens_per_step: -2 is out of range -1..1000000000000"));
    unload(&l);
    assert_null(load(&l, "sleep_ms = 5;"));
    assert_int_equal(l.errs.n, 1);
    assert_non_null(strstr(l.errs.lines[0], "sleep_ms"));
    unload(&l);
}

/* The agent-echo block of etc/aosd.conf.in, every setting uncommented,
 * loads and behaves like no settings at all: the reference states the
 * defaults and every name it lists exists. */
static void test_reference_block(void **state)
{
    (void)state;
    const char *src = getenv("AOS_SRCDIR");
    if (src == NULL)
        skip();
    char path[1024], line[512], settings[2048] = "";
    int n = snprintf(path, sizeof path, "%s/etc/aosd.conf.in", src);
    assert_true(n > 0 && (size_t)n < sizeof path);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    bool inside = false;
    size_t used = 0, count = 0;
    while (fgets(line, sizeof line, fp) != NULL) {
        if (!inside) {
            inside = strcmp(line, "  agent-echo = {\n") == 0;
            continue;
        }
        if (strcmp(line, "  };\n") == 0)
            break;
        /* "    # name = value;   # help" -> "name = value;" */
        const char *t = line + strspn(line, " ");
        if (strncmp(t, "# ", 2) != 0)
            continue;
        t += 2;
        const char *semi = strchr(t, ';');
        assert_non_null(semi);
        n = snprintf(settings + used, sizeof settings - used, "%.*s ", (int)(semi - t + 1), t);
        assert_true(n > 0 && (size_t)n < sizeof settings - used);
        used += (size_t)n;
        count++;
    }
    fclose(fp);
    assert_true(inside);
    assert_int_equal(count, 13);

    struct loaded l;
    const struct aos_plugin_instance *p = must_load(&l, settings);
    struct run run;
    drive(p, "{\"steps\":2}", NULL, NULL, 3, &run);
    assert_string_equal(run.trace, "CD");
    assert_string_equal(run.output, "{\"echo\":{\"steps\":2},\"steps\":2}");
    assert_int_equal(run.tokens_in, 2 * (strlen("{\"steps\":2}") / 4));
    run_free(&run);
    unload(&l);
}

/* With redact the proposal carries the redacted input too, and the host's
 * failure reaches the step's error. */
static void test_redact(void **state)
{
    (void)state;
    struct loaded l;
    char err[256];
    struct aos_pii *pii = aos_pii_new(NULL, 0, err, sizeof err);
    assert_non_null(pii);
    const struct aos_plugin_instance *p = must_load(&l, "redact = true;");
    aos_plugin_host_attach_pii(pii);

    const char *in = "{\"approval_at\":1,\"to\":\"jane@example.com\"}";
    struct run run;
    drive(p, in, NULL, "y", 3, &run);
    assert_string_equal(run.trace, "AD");
    assert_string_equal(
        run.output, "{\"echo\":\"{\\\"approval_at\\\":1,\\\"to\\\":\\\"<EMAIL_ADDRESS>\\\"}\",\"steps\":1}");
    run_free(&run);
    struct res r;
    step_in(p, in, NULL, &r);
    assert_int_equal(r.status, AOS_STEP_NEEDS_APPROVAL);
    assert_string_equal(r.output, "{\"step\":1,\"action\":\"echo\",\"input\":"
                                  "\"{\\\"approval_at\\\":1,\\\"to\\\":\\\"<EMAIL_ADDRESS>\\\"}\"}");
    res_free(&r);

    aos_plugin_host_attach_pii(NULL);
    step_in(p, in, NULL, &r);
    assert_fail_with(&r, "no PII engine");
    res_free(&r);
    unload(&l);
    aos_pii_free(pii);
}

int main(void)
{
    aos_log_configure(AOS_LVL_WARN, AOS_LOG_TEXT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),        cmocka_unit_test(test_steps_thread_state),
        cmocka_unit_test(test_approval_approved), cmocka_unit_test(test_approval_rejected),
        cmocka_unit_test(test_fail_at),           cmocka_unit_test(test_fail_once),
        cmocka_unit_test(test_retry_at),          cmocka_unit_test(test_usage),
        cmocka_unit_test(test_precedence),        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_validate_config),   cmocka_unit_test(test_settings),
        cmocka_unit_test(test_reference_block),   cmocka_unit_test(test_redact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
