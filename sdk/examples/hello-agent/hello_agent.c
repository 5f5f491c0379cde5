/*
 * hello-agent: an aosd agent plugin built outside the aosd source tree,
 * against nothing but the installed SDK header:
 *
 *     cc $(pkg-config --cflags aos-sdk) -shared -fPIC -o hello-agent.so hello_agent.c
 *
 * It answers every run in one step with
 *     {"greeting":"<greeting>, <name>!","input":<the run's input>}
 * where `name` is taken from the configuration.  See README.md.
 */
#include <aos/plugin.h>

#include <stdio.h>
#include <string.h>

/* The instance: the host fills the setting fields from the plugin's config
 * block (plugins: { hello-agent = { ... }; }) before init(). */
struct hello {
    const char *greeting;        /* setting, host-owned string */
    const char *name;            /* setting, host-owned string */
    const struct aos_host *host; /* kept by init() */
};

static const struct aos_setting hello_settings[] = {
    AOS_SETTING_STRING_FIELD(struct hello, greeting, 0u, "Hello", 1, 64, "how to greet"),
    AOS_SETTING_STRING_FIELD(struct hello, name, 0u, "world", 1, 64, "whom to greet"), AOS_SETTINGS_END};

/* The texts go into JSON unescaped, so they must not need escaping. */
static int json_plain(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
            return 0;
    return 1;
}

static int hello_init(struct aos_ctx *ctx, const struct aos_host *host, void *instance)
{
    struct hello *h = instance;
    if (!json_plain(h->greeting) || !json_plain(h->name)) {
        /* Every failing callback says why; the host prints it. */
        host->set_error(ctx, "greeting and name must not contain quotes, backslashes or "
                             "control characters");
        return -1;
    }
    h->host = host;
    host->log(ctx, AOS_LOG_INFO, "ready to greet %s", h->name);
    return 0;
}

static int hello_step(struct aos_ctx *ctx, const void *instance, const struct aos_step_input *in,
                      struct aos_step_result *result)
{
    const struct hello *h = instance;
    const char *input = in->input_len > 0 ? in->input : "null";
    size_t input_len = in->input_len > 0 ? in->input_len : 4;

    /* The input is host-owned JSON, valid only during this call: copy it
     * into a buffer from host->alloc(), which the host then owns. */
    char head[160];
    int n = snprintf(head, sizeof head, "{\"greeting\":\"%s, %s!\",\"input\":", h->greeting, h->name);
    if (n < 0 || (size_t)n >= sizeof head) {
        h->host->set_error(ctx, "greeting too long");
        return -1;
    }
    size_t len = (size_t)n + input_len + 1;
    char *out = h->host->alloc(len + 1);
    if (out == NULL) {
        h->host->set_error(ctx, "out of memory");
        return -1;
    }
    memcpy(out, head, (size_t)n);
    memcpy(out + n, input, input_len);
    out[len - 1] = '}';
    out[len] = '\0';

    result->status = AOS_STEP_DONE;
    result->output.data = out;
    result->output.len = len;
    result->tokens_in = input_len / 4;
    result->tokens_out = len / 4;
    return 0;
}

static const struct aos_agent_ops hello_ops = {
    .size = sizeof hello_ops,
    .step = hello_step,
};

static const struct aos_plugin hello_plugin = {
    AOS_PLUGIN_HEADER,
    .kind = AOS_PLUGIN_AGENT,
    .name = "hello-agent", /* must match the file name: hello-agent.so */
    .version = "1.0.0",
    .description = "greets, then echoes the run's input",
    .flags = AOS_PLUGIN_THREAD_SAFE, /* the instance is read-only after init() */
    .settings = hello_settings,
    .instance_size = sizeof(struct hello),
    .init = hello_init,
    .ops = &hello_ops,
};

AOS_PLUGIN_EXPORT(hello_plugin)
