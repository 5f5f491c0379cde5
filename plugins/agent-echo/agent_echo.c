#include "config.h"
/*
 * agent-echo: the reference agent.  It echoes the run's input after a
 * configurable number of steps, optionally asking for approval first, and
 * reports token usage, so the engine, approvals, budgets and the API can be
 * exercised without an outside service.
 *
 *   plugins: { agent-echo = { delay_ms = 0; steps = 1; approval = false; fail_on = ""; }; };
 *
 * Every step but the last returns CONTINUE with state {"step":N} (N counts
 * from 1).  The last returns DONE with {"echo":<input>,"steps":<steps>}; with
 * approval = true it first returns NEEDS_APPROVAL with that output as the
 * proposal, and DONE once a decision is present (FAIL if it rejected).  An
 * input containing fail_on (when non-empty) FAILs the step.
 *
 * With redact = true the output is {"echo":"<text>","steps":N}: the input
 * as a JSON string, after the host's pii_redact (SDK 1.2) replaced every
 * e-mail address, card number etc. by "<TYPE>" (a string, because a
 * replaced bare number would no longer be JSON).  A host without
 * pii_redact refuses the setting at init(); a failed redaction FAILs the
 * step -- the input is never echoed unredacted.
 *
 * Usage: tokens_in = input bytes / 4, tokens_out = produced bytes / 4, cost
 * 1 micro-USD per started 1000 tokens.
 *
 * Built against <aos/plugin.h> only; the instance is read-only after
 * init(), so the plugin is thread-safe.
 */
#include <aos/plugin.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct echo {
    int64_t delay_ms;
    int64_t steps;
    int approval;
    const char *fail_on;
    int redact;
    const struct aos_host *host; /* set by init(), not a setting */
};

static const struct aos_setting echo_settings[] = {
    AOS_SETTING_INT_FIELD(struct echo, delay_ms, "0", 0, 60000, "milliseconds to sleep in every step"),
    AOS_SETTING_INT_FIELD(struct echo, steps, "1", 1, 100, "steps before the run is DONE"),
    AOS_SETTING_BOOL_FIELD(struct echo, approval, "false",
                           "ask for approval once before the last step completes"),
    AOS_SETTING_STRING_FIELD(struct echo, fail_on, 0u, "", 0, 256,
                             "fail the step if the input contains this text (\"\" = never)"),
    AOS_SETTING_BOOL_FIELD(struct echo, redact, "false",
                           "echo the input as a string with PII replaced by <TYPE> (needs ABI 1.2)"),
    AOS_SETTINGS_END};

static int echo_init(struct aos_ctx *ctx, const struct aos_host *host, void *instance)
{
    struct echo *e = instance;
    e->host = host;
    if (e->redact && !AOS_HOST_HAS(host, pii_redact)) {
        host->set_error(ctx, "redact = true needs a host with pii_redact (ABI 1.2), this one provides ABI %u.%u",
                        (unsigned)host->abi_major, (unsigned)host->abi_minor);
        return -1;
    }
    host->log(ctx, AOS_LOG_DEBUG, "ready: steps=%lld delay_ms=%lld approval=%s", (long long)e->steps,
              (long long)e->delay_ms, e->approval ? "true" : "false");
    return 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* True if the decision JSON says "approved": false.  The host hands over
 * valid JSON; a plain scan is enough for this one key. */
static int rejected(const char *d, size_t len)
{
    static const char key[] = "\"approved\"";
    const char *k = memmem(d, len, key, sizeof key - 1);
    if (k == NULL)
        return 0;
    const char *c = k + sizeof key - 1, *end = d + len;
    while (c < end && (*c == ' ' || *c == '\t' || *c == '\n' || *c == '\r' || *c == ':'))
        c++;
    return (size_t)(end - c) >= 5 && memcmp(c, "false", 5) == 0;
}

/* {"echo":<input>,"steps":N} in host memory: the input is valid JSON, so
 * copying it verbatim needs no escaping. */
static int make_output(const struct echo *e, const char *input, size_t input_len, struct aos_buf *out)
{
    static const char head[] = "{\"echo\":";
    char tail[48];
    int tn = snprintf(tail, sizeof tail, ",\"steps\":%lld}", (long long)e->steps);
    if (tn < 0 || (size_t)tn >= sizeof tail)
        return -1;
    size_t len = sizeof head - 1 + input_len + (size_t)tn;
    char *buf = e->host->alloc(len + 1);
    if (buf == NULL)
        return -1;
    memcpy(buf, head, sizeof head - 1);
    memcpy(buf + sizeof head - 1, input, input_len);
    memcpy(buf + sizeof head - 1 + input_len, tail, (size_t)tn + 1);
    out->data = buf;
    out->len = len;
    return 0;
}

/* Appends text[0..len) (valid UTF-8, from pii_redact) to buf as a JSON
 * string body; buf must have room for 6 bytes per input byte. */
static size_t json_escape(char *buf, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(buf + n, "\\u00", 4);
            buf[n + 4] = hex[c >> 4];
            buf[n + 5] = hex[c & 0xf];
            n += 6;
        } else {
            buf[n++] = (char)c;
        }
    }
    return n;
}

/* {"echo":"<redacted input>","steps":N} in host memory.  Returns 0, or -1
 * after set_error: the host's reason when redaction failed, else memory. */
static int make_redacted_output(struct aos_ctx *ctx, const struct echo *e, const char *input,
                                size_t input_len, struct aos_buf *out)
{
    static const char head[] = "{\"echo\":\"";
    const struct aos_host *h = e->host;
    char *red = NULL;
    size_t red_len = 0;
    char tail[48];
    int rc = -1;
    if (h->pii_redact(ctx, input, input_len, &red, &red_len) < 0)
        return -1; /* the host said why */
    int tn = snprintf(tail, sizeof tail, "\",\"steps\":%lld}", (long long)e->steps);
    if (tn < 0 || (size_t)tn >= sizeof tail || red_len > (SIZE_MAX - sizeof head - sizeof tail) / 6) {
        h->set_error(ctx, "redacted input too large");
        goto out;
    }
    char *buf = h->alloc(sizeof head - 1 + red_len * 6 + (size_t)tn + 1);
    if (buf == NULL) {
        h->set_error(ctx, "out of memory building the step's result");
        goto out;
    }
    size_t n = sizeof head - 1;
    memcpy(buf, head, n);
    n += json_escape(buf + n, red, red_len);
    memcpy(buf + n, tail, (size_t)tn + 1);
    out->data = buf;
    out->len = n + (size_t)tn;
    rc = 0;
out:
    h->free(red);
    return rc;
}

static int make_state(const struct echo *e, uint64_t n, struct aos_buf *out)
{
    char tmp[48];
    int len = snprintf(tmp, sizeof tmp, "{\"step\":%llu}", (unsigned long long)n);
    if (len < 0 || (size_t)len >= sizeof tmp)
        return -1;
    out->data = e->host->strndup(tmp, (size_t)len);
    out->len = (size_t)len;
    return out->data != NULL ? 0 : -1;
}

static int echo_step(struct aos_ctx *ctx, const void *instance, const struct aos_step_input *in,
                     struct aos_step_result *r)
{
    const struct echo *e = instance;
    const struct aos_host *h = e->host;
    const char *input = in->input != NULL && in->input_len > 0 ? in->input : "null";
    size_t input_len = in->input != NULL && in->input_len > 0 ? in->input_len : 4;

    if (e->delay_ms > 0)
        sleep_ms(e->delay_ms);
    r->tokens_in = input_len / 4;

    if (e->fail_on != NULL && e->fail_on[0] != '\0' &&
        memmem(input, input_len, e->fail_on, strlen(e->fail_on)) != NULL) {
        h->set_error(ctx, "input contains \"%s\" (fail_on)", e->fail_on);
        r->status = AOS_STEP_FAIL;
        return 0;
    }

    uint64_t n = (uint64_t)in->step_index + 1;
    int rc;
    struct aos_buf *produced;
    if (n < (uint64_t)e->steps) {
        produced = &r->state;
        rc = make_state(e, n, produced);
        r->status = AOS_STEP_CONTINUE;
    } else if (in->decision != NULL && rejected(in->decision, in->decision_len)) {
        h->set_error(ctx, "the proposal was rejected");
        r->status = AOS_STEP_FAIL;
        return 0;
    } else {
        produced = &r->output;
        if (e->redact) {
            /* Permanent (bad UTF-8, too complex) or not, the step must not
             * echo the raw input, and retrying would not change the text. */
            if (make_redacted_output(ctx, e, input, input_len, produced) < 0) {
                r->status = AOS_STEP_FAIL;
                return 0;
            }
            rc = 0;
        } else {
            rc = make_output(e, input, input_len, produced);
        }
        r->status = e->approval && in->decision == NULL ? AOS_STEP_NEEDS_APPROVAL : AOS_STEP_DONE;
    }
    if (rc < 0) {
        h->set_error(ctx, "out of memory building the step's result");
        return -1;
    }
    r->tokens_out = produced->len / 4;
    r->cost_micro_usd = (r->tokens_in + r->tokens_out + 999) / 1000;
    return 0;
}

static const struct aos_agent_ops echo_ops = {
    .size = sizeof echo_ops,
    .step = echo_step,
};

static const struct aos_plugin echo_plugin = {
    AOS_PLUGIN_HEADER,
    .kind = AOS_PLUGIN_AGENT,
    .name = "agent-echo",
    .version = PACKAGE_VERSION,
    .description = "echoes its input after N steps, optionally asking for approval",
    .flags = AOS_PLUGIN_THREAD_SAFE,
    .settings = echo_settings,
    .instance_size = sizeof(struct echo),
    .init = echo_init,
    .ops = &echo_ops,
};

AOS_PLUGIN_EXPORT(echo_plugin)
