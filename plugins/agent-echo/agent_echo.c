#include "config.h"
/*
 * agent-echo: the reference agent and the engine's test pilot.  It echoes
 * the run's input after N work steps, and the run's input (or the agent's
 * config, or this plugin's settings) steers it through every path the
 * engine has: approvals, permanent and transient failures, retries, and
 * chosen token and cost figures.  man 7 agent-echo is the contract; tests
 * and benchmarks rely on its exact names.
 *
 *   plugins: { agent-echo = { delay_ms = 0; steps = 1; approval = false; fail_on = ""; }; };
 *   POST /api/v1/agents/{id}/runs {"input":{"steps":3,"approval_at":2}}
 *
 * Steering fields (precedence: run input > agent config > settings):
 * steps, sleep_ms, approval_at, fail_at, fail_once, retry_at, retry_always,
 * retry_after_ms, tokens_per_step, cost_micros_per_step.  Unknown input
 * fields are ignored (the input is also data to echo); an input that is not
 * a JSON object steers nothing and is echoed as it is.
 *
 * The host calls step() once per call, not per work step: step_index
 * counts calls, a RETRY or a transient failure repeats the call with
 * attempt + 1 and the same state, and the call after NEEDS_APPROVAL has the
 * same state again plus the decision.  So the work-step count lives in the
 * state: CONTINUE returns {"done":n} (n work steps done), and a NULL state
 * means none done.  Work step k = done + 1 is checked in this order:
 * retry_at (RETRY), fail_at (FAIL, or a transient error with fail_once),
 * approval_at (NEEDS_APPROVAL with {"step":k,"action":"echo","input":...}),
 * then the work: CONTINUE, or DONE with {"echo":<input>,"steps":N} when
 * k == N.  A call that carries a decision skips those checks -- they were
 * passed by the call that asked -- and does the work if approved, FAILs
 * ("rejected by approver") if not.
 *
 * With redact = true the echoed input (in the output and in a proposal) is
 * a JSON string: the input text after the host's pii_redact (SDK 1.2)
 * replaced every e-mail address, card number etc. by "<TYPE>" (a string,
 * because a replaced bare number would no longer be JSON).  A host without
 * pii_redact refuses the setting at init(); a failed redaction FAILs the
 * step -- the input is never echoed unredacted.
 *
 * Usage, reported by every call (FAIL, RETRY and NEEDS_APPROVAL too):
 * tokens_per_step T gives tokens_in = T - T/2, tokens_out = T/2; without it
 * tokens_in = input bytes / 4 and tokens_out = produced bytes / 4.
 * cost_micros_per_step C gives the cost; without it 1 micro-USD per started
 * 1000 tokens.
 *
 * Built against <aos/plugin.h> and json-c only; the instance is read-only
 * after init() and every call parses into its own objects, so the plugin is
 * thread-safe.
 */
#include <aos/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Everything that steers one call, after precedence is applied. */
struct pilot {
    int64_t steps;
    int64_t sleep_ms;    /* 0 = the setting delay_ms */
    int64_t approval_at; /* 0 = never */
    int64_t fail_at;
    int fail_once;
    int64_t retry_at;
    int retry_always;
    int64_t retry_after_ms;
    int64_t tokens_per_step;      /* -1 = estimate from the bytes */
    int64_t cost_micros_per_step; /* -1 = estimate from the tokens */
};

struct echo {
    struct pilot dflt; /* the settings: defaults for every agent */
    int64_t delay_ms;
    int approval;
    const char *fail_on;
    int redact;
    const char *trace_file;
    const struct aos_host *host; /* set by init(), not a setting */
};

#define MAX_STEPS 10000
#define MAX_SLEEP_MS 600000
#define MAX_RETRY_AFTER_MS 600000
#define MAX_UNITS INT64_C(1000000000000) /* tokens or micro-USD per call */

/* Deep enough for any input the API accepts (server.max_json_depth is at
 * most 1000 containers; json-c's depth N allows N-1). */
#define PARSE_DEPTH 1025

/* A pilot setting fills its member of the defaults directly. */
#define PILOT_SETTING(type_, member, def, lo, hi, help)                                     \
    {                                                                                       \
#member, (type_), 0u, offsetof(struct echo, dflt.member), (def), (lo), (hi), (help) \
    }

static const struct aos_setting echo_settings[] = {
    AOS_SETTING_INT_FIELD(struct echo, delay_ms, "0", 0, 60000, "milliseconds to sleep in every call"),
    PILOT_SETTING(AOS_SETTING_INT, steps, "1", 1, MAX_STEPS, "work steps before the run is DONE"),
    AOS_SETTING_BOOL_FIELD(struct echo, approval, "false",
                           "ask for approval before the last work step (approval_at = steps)"),
    PILOT_SETTING(AOS_SETTING_INT, approval_at, "0", 0, MAX_STEPS,
                  "work step that asks for approval first (0 = never)"),
    PILOT_SETTING(AOS_SETTING_INT, fail_at, "0", 0, MAX_STEPS, "work step that fails (0 = never)"),
    PILOT_SETTING(AOS_SETTING_BOOL, fail_once, "false", 0, 0,
                  "fail_at fails transiently, on the first attempt only"),
    PILOT_SETTING(AOS_SETTING_INT, retry_at, "0", 0, MAX_STEPS,
                  "work step that returns RETRY on its first attempt (0 = never)"),
    PILOT_SETTING(AOS_SETTING_BOOL, retry_always, "false", 0, 0, "retry_at returns RETRY on every attempt"),
    PILOT_SETTING(AOS_SETTING_INT, retry_after_ms, "10", 0, MAX_RETRY_AFTER_MS, "retry_after_ms of a RETRY"),
    PILOT_SETTING(AOS_SETTING_INT, tokens_per_step, "-1", -1, MAX_UNITS,
                  "tokens reported per call (-1 = input and output bytes / 4)"),
    PILOT_SETTING(AOS_SETTING_INT, cost_micros_per_step, "-1", -1, MAX_UNITS,
                  "micro-USD reported per call (-1 = 1 per started 1000 tokens)"),
    AOS_SETTING_STRING_FIELD(struct echo, fail_on, 0u, "", 0, 256,
                             "fail every call whose input contains this text (\"\" = never)"),
    AOS_SETTING_BOOL_FIELD(struct echo, redact, "false",
                           "echo the input as a string with PII replaced by <TYPE> (needs ABI 1.2)"),
    AOS_SETTING_STRING_FIELD(struct echo, trace_file, 0u, "", 0, 4096,
                             "append one line per call to this file (\"\" = off): for crash tests"),
    AOS_SETTINGS_END};

/* The steering fields a run input or an agent config may hold. */
struct field {
    const char *name;
    bool is_bool;
    size_t offset; /* into struct pilot: int64_t, or int for booleans */
    int64_t lo, hi;
};

#define INT_FIELD(member, lo, hi)                                  \
    {                                                              \
#member, false, offsetof(struct pilot, member), (lo), (hi) \
    }
#define BOOL_FIELD(member)                                  \
    {                                                       \
#member, true, offsetof(struct pilot, member), 0, 1 \
    }

static const struct field fields[] = {
    INT_FIELD(steps, 1, MAX_STEPS),
    INT_FIELD(sleep_ms, 0, MAX_SLEEP_MS),
    INT_FIELD(approval_at, 0, MAX_STEPS),
    INT_FIELD(fail_at, 0, MAX_STEPS),
    BOOL_FIELD(fail_once),
    INT_FIELD(retry_at, 0, MAX_STEPS),
    BOOL_FIELD(retry_always),
    INT_FIELD(retry_after_ms, 0, MAX_RETRY_AFTER_MS),
    INT_FIELD(tokens_per_step, 0, MAX_UNITS),
    INT_FIELD(cost_micros_per_step, 0, MAX_UNITS),
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static const char known_fields[] =
    "steps, sleep_ms, approval_at, fail_at, fail_once, retry_at, retry_always, "
    "retry_after_ms, tokens_per_step, cost_micros_per_step";

static int echo_init(struct aos_ctx *ctx, const struct aos_host *host, void *instance)
{
    struct echo *e = instance;
    e->host = host;
    if (e->redact && !AOS_HOST_HAS(host, pii_redact)) {
        host->set_error(ctx,
                        "redact = true needs a host with pii_redact (ABI 1.2), this one provides ABI %u.%u",
                        (unsigned)host->abi_major, (unsigned)host->abi_minor);
        return -1;
    }
    host->log(ctx, AOS_LOG_DEBUG, "ready: steps=%lld delay_ms=%lld approval=%s approval_at=%lld",
              (long long)e->dflt.steps, (long long)e->delay_ms, e->approval ? "true" : "false",
              (long long)e->dflt.approval_at);
    return 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---------------------------------------------------------------- JSON */

static const char *type_phrase(const struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "a boolean";
    case json_type_double:
        return "a number with a fraction";
    case json_type_int:
        return "an integer";
    case json_type_object:
        return "an object";
    case json_type_array:
        return "an array";
    case json_type_string:
        return "a string";
    }
    return "an unknown JSON type";
}

/* Parses exactly text[0..len) (strict, valid UTF-8).  Returns the value
 * (caller puts it) or NULL with why[] set; a JSON null is returned as
 * NULL too, with why "null". */
static struct json_object *parse(const char *text, size_t len, char *why, size_t whylen)
{
    struct json_object *o = NULL;
    snprintf(why, whylen, "empty");
    if (text == NULL || len == 0)
        return NULL;
    if (len > INT_MAX) {
        snprintf(why, whylen, "larger than %d bytes", INT_MAX);
        return NULL;
    }
    struct json_tokener *tok = json_tokener_new_ex(PARSE_DEPTH);
    if (tok == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    /* A NUL inside the text stops the tokener early: the parse_end check
     * catches it. */
    o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (jerr == json_tokener_continue) {
        /* A bare top-level scalar at the very end waits for a delimiter
         * (PLATFORM-NOTES §7): a NUL is one, and ends the text. */
        o = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        end = len;
    }
    if (jerr == json_tokener_continue) {
        snprintf(why, whylen, "incomplete JSON");
        json_object_put(o);
        o = NULL;
    } else if (jerr != json_tokener_success) {
        snprintf(why, whylen, "invalid JSON at byte %zu: %s", end, json_tokener_error_desc(jerr));
        o = NULL;
    } else if (end != len) {
        snprintf(why, whylen, "invalid JSON at byte %zu: trailing characters", end);
        json_object_put(o);
        o = NULL;
    } else if (o == NULL) {
        snprintf(why, whylen, "null");
    }
    json_tokener_free(tok);
    return o;
}

/* Writes one steering field's value into p, or says why it is refused
 * (naming the field).  JSON null means absent. */
static int field_set(const struct field *f, const struct json_object *v, struct pilot *p, char *why,
                     size_t whylen)
{
    if (v == NULL)
        return 0;
    if (f->is_bool) {
        if (!json_object_is_type(v, json_type_boolean)) {
            snprintf(why, whylen, "\"%s\" must be true or false, not %s", f->name, type_phrase(v));
            return -1;
        }
        *(int *)(void *)((char *)p + f->offset) = json_object_get_boolean(v) ? 1 : 0;
        return 0;
    }
    if (!json_object_is_type(v, json_type_int)) {
        snprintf(why, whylen, "\"%s\" must be an integer, not %s", f->name, type_phrase(v));
        return -1;
    }
    /* json-c saturates integers beyond int64 at its limits, which are
     * outside every range here. */
    int64_t n = json_object_get_int64(v);
    if (n < f->lo || n > f->hi) {
        snprintf(why, whylen, "\"%s\": %lld is out of range %lld..%lld", f->name, (long long)n,
                 (long long)f->lo, (long long)f->hi);
        return -1;
    }
    *(int64_t *)(void *)((char *)p + f->offset) = n;
    return 0;
}

static const struct field *field_find(const char *name)
{
    for (size_t i = 0; i < NFIELDS; i++)
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    return NULL;
}

/* The bit of a field in overlay()'s `given`. */
static unsigned field_bit(const char *name)
{
    const struct field *f = field_find(name);
    return f != NULL ? 1u << (size_t)(f - fields) : 0u;
}

/* Overlays the steering fields of object `o` on p; `given` gets one bit
 * per field present.  strict: unknown keys are refused (agent config);
 * otherwise ignored (run input).  Every valid field is applied even when
 * another is refused, so the call still reports the usage it was told to;
 * the first refusal is in why[]. */
static int overlay(const struct json_object *o, bool strict, struct pilot *p, unsigned *given, char *why,
                   size_t whylen)
{
    int rc = 0;
    if (strict) {
        json_object_object_foreach((struct json_object *)o, key, val)
        {
            (void)val;
            if (field_find(key) == NULL && rc == 0) {
                snprintf(why, whylen, "unknown key \"%s\" (agent-echo knows %s)", key, known_fields);
                rc = -1;
            }
        }
    }
    for (size_t i = 0; i < NFIELDS; i++) {
        struct json_object *v = NULL;
        if (!json_object_object_get_ex(o, fields[i].name, &v) || v == NULL)
            continue;
        char fwhy[256];
        if (field_set(&fields[i], v, p, fwhy, sizeof fwhy) < 0) {
            if (rc == 0)
                snprintf(why, whylen, "%s", fwhy);
            rc = -1;
            continue;
        }
        *given |= 1u << i;
    }
    return rc;
}

/* Checks an agent config: a JSON object of known steering fields. */
static int check_config(const char *config, size_t config_len, struct json_object **out, char *why,
                        size_t whylen)
{
    char pwhy[160];
    *out = NULL;
    struct json_object *o = parse(config, config_len, pwhy, sizeof pwhy);
    if (o == NULL) {
        snprintf(why, whylen, "the config must be a JSON object (%s)", pwhy);
        return -1;
    }
    if (!json_object_is_type(o, json_type_object)) {
        snprintf(why, whylen, "the config must be a JSON object, not %s", type_phrase(o));
        json_object_put(o);
        return -1;
    }
    struct pilot scratch = {0};
    unsigned given = 0;
    if (overlay(o, true, &scratch, &given, why, whylen) < 0) {
        json_object_put(o);
        return -1;
    }
    *out = o;
    return 0;
}

static int echo_validate_config(struct aos_ctx *ctx, const void *instance, const char *config,
                                size_t config_len)
{
    const struct echo *e = instance;
    struct json_object *o = NULL;
    char why[512];
    if (check_config(config, config_len, &o, why, sizeof why) < 0) {
        e->host->set_error(ctx, "%s", why);
        return -1;
    }
    json_object_put(o);
    return 0;
}

/* ---------------------------------------------------------------- output */

struct piece {
    const char *p;
    size_t n;
};

/* Concatenates pieces into one NUL-terminated host buffer. */
static int build(const struct aos_host *h, const struct piece *pc, size_t npc, struct aos_buf *out)
{
    size_t len = 0;
    for (size_t i = 0; i < npc; i++) {
        if (pc[i].n > SIZE_MAX - 1 - len)
            return -1;
        len += pc[i].n;
    }
    char *buf = h->alloc(len + 1);
    if (buf == NULL)
        return -1;
    size_t at = 0;
    for (size_t i = 0; i < npc; i++) {
        if (pc[i].n > 0)
            memcpy(buf + at, pc[i].p, pc[i].n);
        at += pc[i].n;
    }
    buf[len] = '\0';
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

/* The input as it is echoed: verbatim (valid JSON from the host, so no
 * escaping), or with redact a JSON string of the redacted text in
 * *owned (host memory, release with host->free).  0, or -1 after
 * set_error: the host's reason when redaction failed, else memory. */
static int echo_value(struct aos_ctx *ctx, const struct echo *e, const char *input, size_t input_len,
                      struct piece *val, char **owned)
{
    const struct aos_host *h = e->host;
    *owned = NULL;
    if (!e->redact) {
        val->p = input;
        val->n = input_len;
        return 0;
    }
    char *red = NULL;
    size_t red_len = 0;
    int rc = -1;
    if (h->pii_redact(ctx, input, input_len, &red, &red_len) < 0)
        return -1; /* the host said why */
    if (red_len > (SIZE_MAX - 3) / 6) {
        h->set_error(ctx, "redacted input too large");
        goto out;
    }
    char *buf = h->alloc(red_len * 6 + 3);
    if (buf == NULL) {
        h->set_error(ctx, "out of memory building the step's result");
        goto out;
    }
    size_t n = 0;
    buf[n++] = '"';
    n += json_escape(buf + n, red, red_len);
    buf[n++] = '"';
    buf[n] = '\0';
    val->p = buf;
    val->n = n;
    *owned = buf;
    rc = 0;
out:
    h->free(red);
    return rc;
}

/* ---------------------------------------------------------------- step */

/* Work steps done so far, from the state {"done":n}; NULL state = 0. */
static int read_state(const struct aos_step_input *in, int64_t steps, int64_t *done, char *why, size_t whylen)
{
    *done = 0;
    if (in->state == NULL || in->state_len == 0)
        return 0;
    char pwhy[160];
    struct json_object *o = parse(in->state, in->state_len, pwhy, sizeof pwhy);
    struct json_object *d = NULL;
    int rc = -1;
    if (o == NULL || !json_object_object_get_ex(o, "done", &d) || !json_object_is_type(d, json_type_int)) {
        snprintf(why, whylen, "the state is not {\"done\":<work steps done>} (%.*s)",
                 (int)(in->state_len > 64 ? 64 : in->state_len), in->state);
        goto out;
    }
    *done = json_object_get_int64(d);
    if (*done < 0 || *done >= steps) {
        snprintf(why, whylen, "the state says %lld work steps are done, but the run has %lld (steps)",
                 (long long)*done, (long long)steps);
        goto out;
    }
    rc = 0;
out:
    json_object_put(o);
    return rc;
}

/* "approved" of the decision {"approved":bool,"comment":...}: 1, 0, or
 * -1 with why[] when the decision says neither. */
static int read_decision(const struct aos_step_input *in, char *why, size_t whylen)
{
    char pwhy[160];
    struct json_object *o = parse(in->decision, in->decision_len, pwhy, sizeof pwhy);
    struct json_object *a = NULL;
    int rc = -1;
    if (o == NULL || !json_object_object_get_ex(o, "approved", &a) ||
        !json_object_is_type(a, json_type_boolean))
        snprintf(why, whylen, "the decision has no boolean \"approved\"");
    else
        rc = json_object_get_boolean(a) ? 1 : 0;
    json_object_put(o);
    return rc;
}

/* Applies precedence: settings, then the agent config, then the input.
 * 0, or -1 with why[] naming the source and the field. */
static int resolve(const struct echo *e, const struct aos_step_input *in, const char *input, size_t input_len,
                   struct pilot *p, char *why, size_t whylen)
{
    struct json_object *cfg = NULL, *inp = NULL;
    unsigned given = 0;
    char fwhy[512];
    int rc = 0;

    *p = e->dflt;
    if (AOS_STEP_INPUT_HAS(in, config) && in->config != NULL && in->config_len > 0) {
        /* validate_config vetted it when it was written; checking again
         * costs little and names the culprit if the rules changed. */
        if (check_config(in->config, in->config_len, &cfg, fwhy, sizeof fwhy) < 0) {
            snprintf(why, whylen, "agent config: %s", fwhy);
            rc = -1;
        } else {
            (void)overlay(cfg, true, p, &given, fwhy, sizeof fwhy);
        }
    }
    /* Only an object steers; anything else is data to echo. */
    size_t i = 0;
    while (i < input_len && (input[i] == ' ' || input[i] == '\t' || input[i] == '\n' || input[i] == '\r'))
        i++;
    if (i < input_len && input[i] == '{') {
        char pwhy[160];
        inp = parse(input, input_len, pwhy, sizeof pwhy);
        if (inp != NULL && json_object_is_type(inp, json_type_object) &&
            overlay(inp, false, p, &given, fwhy, sizeof fwhy) < 0 && rc == 0) {
            snprintf(why, whylen, "input: %s", fwhy);
            rc = -1;
        }
    }
    /* The setting approval = true asks at the last work step, unless a
     * level above named approval_at (0 included). */
    if (!(given & field_bit("approval_at")) && p->approval_at == 0 && e->approval)
        p->approval_at = p->steps;
    if (p->sleep_ms == 0)
        p->sleep_ms = e->delay_ms;
    json_object_put(cfg);
    json_object_put(inp);
    return rc;
}

static void report_usage(const struct pilot *p, size_t input_len, struct aos_step_result *r)
{
    size_t produced = r->output.len + r->state.len;
    if (p->tokens_per_step >= 0) {
        uint64_t t = (uint64_t)p->tokens_per_step;
        r->tokens_in = t - t / 2;
        r->tokens_out = t / 2;
    } else {
        r->tokens_in = input_len / 4;
        r->tokens_out = produced / 4;
    }
    if (p->cost_micros_per_step >= 0)
        r->cost_micro_usd = (uint64_t)p->cost_micros_per_step;
    else
        r->cost_micro_usd = (r->tokens_in + r->tokens_out + 999) / 1000;
}

/* One line per call, "<run_id> <step_index> <attempt> <status>\n", written
 * with one O_APPEND write before the result goes back to the host: the
 * crash tests compare it with the checkpoints to prove that no
 * checkpointed step ever ran again.  Best effort: a failed write is
 * logged, never a failed step. */
static void trace_call(struct aos_ctx *ctx, const struct echo *e, const struct aos_step_input *in, int status,
                       int rc)
{
    char line[160];
    int n, fd;

    if (e->trace_file == NULL || e->trace_file[0] == '\0')
        return;
    n = snprintf(line, sizeof line, "%s %u %u %d\n", in->run_id != NULL ? in->run_id : "-", (unsigned)in->step_index,
                 (unsigned)in->attempt, rc < 0 ? -1 : status);
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    fd = open(e->trace_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, line, (size_t)n) != n)
        e->host->log(ctx, AOS_LOG_WARN, "trace_file %s: %s", e->trace_file, strerror(errno));
    if (fd >= 0)
        close(fd);
}

static int echo_step(struct aos_ctx *ctx, const void *instance, const struct aos_step_input *in,
                     struct aos_step_result *r)
{
    const struct echo *e = instance;
    const struct aos_host *h = e->host;
    const char *input = in->input != NULL && in->input_len > 0 ? in->input : "null";
    size_t input_len = in->input != NULL && in->input_len > 0 ? in->input_len : 4;
    struct pilot p;
    char why[600];
    char *owned = NULL;
    int rc = 0;

    int resolved = resolve(e, in, input, input_len, &p, why, sizeof why);
    if (p.sleep_ms > 0)
        sleep_ms(p.sleep_ms);
    r->status = AOS_STEP_FAIL;
    if (resolved < 0) {
        h->set_error(ctx, "%s", why);
        goto out;
    }
    if (e->fail_on != NULL && e->fail_on[0] != '\0' &&
        memmem(input, input_len, e->fail_on, strlen(e->fail_on)) != NULL) {
        h->set_error(ctx, "input contains \"%s\" (fail_on)", e->fail_on);
        goto out;
    }
    int64_t done;
    if (read_state(in, p.steps, &done, why, sizeof why) < 0) {
        h->set_error(ctx, "%s", why);
        goto out;
    }
    int64_t k = done + 1; /* the work step of this call */

    if (in->decision != NULL) {
        int approved = read_decision(in, why, sizeof why);
        if (approved < 0) {
            h->set_error(ctx, "%s", why);
            goto out;
        }
        if (!approved) {
            h->set_error(ctx, "rejected by approver");
            goto out;
        }
    } else {
        if (k == p.retry_at && (p.retry_always || in->attempt <= 1)) {
            r->status = AOS_STEP_RETRY;
            r->retry_after_ms = (uint32_t)p.retry_after_ms;
            goto out;
        }
        if (k == p.fail_at) {
            if (!p.fail_once) {
                h->set_error(ctx, "fail_at: work step %lld fails", (long long)k);
                goto out;
            }
            if (in->attempt <= 1) {
                h->set_error(ctx, "fail_once: work step %lld fails on its first attempt", (long long)k);
                rc = -1;
                goto out;
            }
        }
        if (k == p.approval_at) {
            struct piece val;
            char head[64];
            int hn =
                snprintf(head, sizeof head, "{\"step\":%lld,\"action\":\"echo\",\"input\":", (long long)k);
            if (hn < 0 || (size_t)hn >= sizeof head) {
                h->set_error(ctx, "cannot format the proposal of work step %lld", (long long)k);
                goto out;
            }
            if (echo_value(ctx, e, input, input_len, &val, &owned) < 0)
                goto out; /* FAIL: never propose the unredacted input */
            const struct piece pc[] = {{head, (size_t)hn}, val, {"}", 1}};
            if (build(h, pc, 3, &r->output) < 0) {
                h->set_error(ctx, "out of memory building the proposal");
                rc = -1;
                goto out;
            }
            r->status = AOS_STEP_NEEDS_APPROVAL;
            goto out;
        }
    }

    if (k < p.steps) {
        char st[48];
        int sn = snprintf(st, sizeof st, "{\"done\":%lld}", (long long)k);
        const struct piece pc[] = {{st, sn > 0 ? (size_t)sn : 0}};
        if (sn < 0 || (size_t)sn >= sizeof st || build(h, pc, 1, &r->state) < 0) {
            h->set_error(ctx, "out of memory building the step's state");
            rc = -1;
            goto out;
        }
        r->status = AOS_STEP_CONTINUE;
        goto out;
    }
    struct piece val;
    char tail[48];
    int tn = snprintf(tail, sizeof tail, ",\"steps\":%lld}", (long long)p.steps);
    if (tn < 0 || (size_t)tn >= sizeof tail) {
        h->set_error(ctx, "cannot format the step's result");
        goto out;
    }
    if (echo_value(ctx, e, input, input_len, &val, &owned) < 0)
        goto out; /* FAIL: a failed redaction is permanent, retrying changes nothing */
    const struct piece pc[] = {{"{\"echo\":", 8}, val, {tail, (size_t)tn}};
    if (build(h, pc, 3, &r->output) < 0) {
        h->set_error(ctx, "out of memory building the step's result");
        rc = -1;
        goto out;
    }
    r->status = AOS_STEP_DONE;
out:
    h->free(owned);
    /* Reported even when the host drops it (a negative return). */
    report_usage(&p, input_len, r);
    trace_call(ctx, e, in, r->status, rc);
    return rc;
}

static const struct aos_agent_ops echo_ops = {
    .size = sizeof echo_ops,
    .step = echo_step,
    .validate_config = echo_validate_config,
};

static const struct aos_plugin echo_plugin = {
    AOS_PLUGIN_HEADER,
    .kind = AOS_PLUGIN_AGENT,
    .name = "agent-echo",
    .version = PACKAGE_VERSION,
    .description = "the engine's test pilot: echoes its input after N steps, with approvals, failures, "
                   "retries and usage on request",
    .flags = AOS_PLUGIN_THREAD_SAFE,
    .settings = echo_settings,
    .instance_size = sizeof(struct echo),
    .init = echo_init,
    .ops = &echo_ops,
};

AOS_PLUGIN_EXPORT(echo_plugin)
