#include "config.h"
/*
 * Plugin loader tests.  Configurations are built by hand (struct aos_conf
 * with plugin blocks parsed by libconfig from text), so these tests depend
 * on nothing but the loader and the plugins under tests/plugins/, the
 * in-tree agent-echo and the SDK example hello-agent.
 */
/* cmocka needs these before it, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include "conf.h"
#include "log.h"
#include "pii/pii.h"
#include "plugin.h"

#include <fcntl.h>
#include <libconfig.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONF_FILE "test.conf"
#define ENABLE_LINE 7
#define MAX_PLUGINS 8

struct fx {
    struct aos_conf conf;
    config_t cfg;
    bool cfg_used;
    char *enable[MAX_PLUGINS];
    struct aos_conf_plugin_block blocks[MAX_PLUGINS];
    struct aos_conf_errors errs;
    char dir[1024];
};

static const char *builddir(void)
{
    const char *b = getenv("AOS_BUILDDIR");
    if (b == NULL)
        fail_msg("AOS_BUILDDIR is not set (run through make check, or export it)");
    return b;
}

static void fx_dir(struct fx *f, const char *sub)
{
    int n = snprintf(f->dir, sizeof f->dir, "%s/%s", builddir(), sub);
    assert_true(n > 0 && (size_t)n < sizeof f->dir);
}

/* Builds a configuration enabling `names` (NULL-terminated) from directory
 * `sub` of the build tree, with plugin blocks parsed from `blocks` (or
 * NULL).  Plugin blocks are the top-level settings of that text. */
static void fx_init(struct fx *f, const char *sub, const char *blocks, const char *const *names)
{
    memset(f, 0, sizeof *f);
    fx_dir(f, sub);
    f->conf.plugins.dir = f->dir;
    size_t n = 0;
    while (names[n] != NULL) {
        assert_true(n < MAX_PLUGINS);
        f->enable[n] = (char *)names[n];
        n++;
    }
    f->conf.plugins.enable = f->enable;
    f->conf.plugins.nenable = n;
    f->conf.plugins.enable_file = CONF_FILE;
    f->conf.plugins.enable_line = ENABLE_LINE;
    if (blocks != NULL) {
        config_init(&f->cfg);
        f->cfg_used = true;
        if (config_read_string(&f->cfg, blocks) != CONFIG_TRUE)
            fail_msg("bad test config line %d: %s", config_error_line(&f->cfg), config_error_text(&f->cfg));
        const config_setting_t *root = config_root_setting(&f->cfg);
        int len = config_setting_length(root);
        assert_true(len <= MAX_PLUGINS);
        for (int i = 0; i < len; i++) {
            const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
            f->blocks[i].name = (char *)config_setting_name(s);
            f->blocks[i].setting = s;
            f->blocks[i].file = CONF_FILE;
            f->blocks[i].line = (int)config_setting_source_line(s);
        }
        f->conf.plugins.blocks = f->blocks;
        f->conf.plugins.nblocks = (size_t)len;
    }
}

static void fx_done(struct fx *f)
{
    aos_conf_errors_free(&f->errs);
    if (f->cfg_used)
        config_destroy(&f->cfg);
}

static struct aos_plugin_set *fx_load(struct fx *f, const struct aos_plugin_set *previous)
{
    return aos_plugin_set_load(&f->conf, previous, &f->errs);
}

/* The one refusal line for plugin `name`, checked in full. */
static void assert_refusal(const struct fx *f, size_t i, const char *name, const char *reason)
{
    char want[4096];
    int n = snprintf(want, sizeof want, "%s/%s.so (enabled at " CONF_FILE ":%d): %s", f->dir, name,
                     ENABLE_LINE, reason);
    assert_true(n > 0 && (size_t)n < sizeof want);
    if (i >= f->errs.n)
        fail_msg("expected refusal #%zu \"%s\", have %zu lines", i, want, f->errs.n);
    assert_string_equal(f->errs.lines[i], want);
}

/* Loads `name` alone from tests/plugins and expects exactly `reason`. */
static void expect_refused(const char *name, const char *blocks, const char *reason)
{
    struct fx f;
    const char *names[] = {name, NULL};
    fx_init(&f, "tests/plugins/.libs", blocks, names);
    struct aos_plugin_set *set = fx_load(&f, NULL);
    assert_null(set);
    assert_int_equal(f.errs.n, 1);
    assert_refusal(&f, 0, name, reason);
    fx_done(&f);
}

static char *xformat(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xformat(const char *fmt, ...)
{
    char *s = malloc(4096);
    assert_non_null(s);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s, 4096, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && n < 4096);
    return s;
}

/* A fresh, empty trace file; the caller unlinks and frees it. */
static char *trace_new(void)
{
    char *path = strdup("/tmp/aos-test-loader-XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    return path;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static void trace_done(char *path)
{
    unlink(path);
    free(path);
}

static int step_json(const struct aos_plugin_instance *p, const char *input, uint32_t index,
                     const char *decision, struct aos_step_result *out, char *err, size_t errlen)
{
    struct aos_step_input in = {
        .run_id = "00000000-0000-4000-8000-000000000001",
        .tenant_id = "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f",
        .step_index = index,
        .attempt = 1,
        .idempotency_key = "00000000-0000-4000-8000-000000000001:0",
        .input = input,
        .input_len = input != NULL ? strlen(input) : 0,
        .decision = decision,
        .decision_len = decision != NULL ? strlen(decision) : 0,
    };
    return aos_plugin_agent_step(p, &in, out, err, errlen);
}

/* Output of one step as a string (the test owns it). */
static char *step_output(const struct aos_plugin_instance *p, const char *input)
{
    struct aos_step_result r;
    char err[256];
    int rc = step_json(p, input, 0, NULL, &r, err, sizeof err);
    if (rc != 0)
        fail_msg("step failed: %s", err);
    assert_int_equal(r.status, AOS_STEP_DONE);
    assert_non_null(r.output.data);
    char *s = strndup(r.output.data, r.output.len);
    aos_plugin_step_result_release(&r);
    return s;
}

/* ------------------------------------------------------------------ */
/* Loading good plugins                                               */
/* ------------------------------------------------------------------ */

static const char *const auth_block = "good-auth = { password = \"correct horse\"; };\n";

static void test_good_set_loads(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"good-agent", "good-connector", "good-auth", NULL};
    fx_init(&f, "tests/plugins/.libs", auth_block, names);
    struct aos_plugin_set *set = fx_load(&f, NULL);
    assert_non_null(set);
    assert_int_equal(f.errs.n, 0);
    assert_int_equal(aos_plugin_set_count(set), 3);

    const struct aos_plugin_instance *a = aos_plugin_set_get(set, 0);
    assert_string_equal(aos_plugin_instance_name(a), "good-agent");
    assert_int_equal(aos_plugin_instance_kind(a), AOS_PLUGIN_AGENT);
    assert_string_equal(aos_plugin_instance_version(a), "2.3.4");
    assert_string_equal(aos_plugin_instance_description(a), "test agent");
    char *path = xformat("%s/good-agent.so", f.dir);
    assert_string_equal(aos_plugin_instance_path(a), path);
    free(path);
    assert_int_equal(aos_plugin_instance_flags(a) & AOS_PLUGIN_THREAD_SAFE, 0);
    assert_non_null(aos_plugin_instance_data(a));

    const struct aos_plugin_instance *c = aos_plugin_set_find(set, "good-connector");
    assert_ptr_equal(c, aos_plugin_set_get(set, 1));
    assert_int_equal(aos_plugin_instance_kind(c), AOS_PLUGIN_CONNECTOR);
    assert_int_equal(aos_plugin_instance_kind(aos_plugin_set_find(set, "good-auth")), AOS_PLUGIN_AUTH);
    assert_null(aos_plugin_set_find(set, "nope"));
    assert_null(aos_plugin_set_get(set, 3));

    assert_string_equal(aos_plugin_kind_name(AOS_PLUGIN_AGENT), "agent");
    assert_string_equal(aos_plugin_kind_name(AOS_PLUGIN_CONNECTOR), "connector");
    assert_string_equal(aos_plugin_kind_name(AOS_PLUGIN_AUTH), "auth");
    assert_string_equal(aos_plugin_kind_name(9), "unknown");
    aos_plugin_set_free(set);
    fx_done(&f);
}

static void test_empty_enable_list(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {NULL};
    fx_init(&f, "tests/plugins/.libs", NULL, names);
    struct aos_plugin_set *set = fx_load(&f, NULL);
    assert_non_null(set);
    assert_int_equal(aos_plugin_set_count(set), 0);
    assert_int_equal(aos_plugin_set_count(NULL), 0);
    aos_plugin_set_free(set);
    aos_plugin_set_free(NULL);
    fx_done(&f);
}

static void test_host_table(void **state)
{
    (void)state;
    const struct aos_host *h = aos_plugin_host();
    assert_int_equal(h->size, sizeof(struct aos_host));
    assert_int_equal(h->abi_major, AOS_ABI_MAJOR);
    assert_int_equal(h->abi_minor, AOS_ABI_MINOR);
    assert_string_equal(h->host_version, PACKAGE_VERSION);
    assert_true(AOS_HOST_HAS(h, strndup));
    char *s = h->strndup("abcdef", 3);
    assert_string_equal(s, "abc");
    h->free(s);
    void *z = h->alloc(0);
    assert_non_null(z);
    h->free(z);
    h->free(NULL);
}

/* The host table exactly as ABI 1.0 declared it.  A 1.0 plugin reads the
 * 1.1 table through this layout, so every 1.0 member must keep its offset
 * and the 1.1 functions must come after all of them. */
struct host_1_0 {
    uint32_t size;
    uint16_t abi_major;
    uint16_t abi_minor;
    const char *host_version;
    void (*log)(struct aos_ctx *ctx, int level, const char *fmt, ...);
    void (*set_error)(struct aos_ctx *ctx, const char *fmt, ...);
    void *(*alloc)(size_t size);
    void (*free)(void *ptr);
    char *(*strndup)(const char *s, size_t n);
};

static void test_host_table_1_1(void **state)
{
    (void)state;
    const struct aos_host *h = aos_plugin_host();
    assert_true(AOS_ABI_MINOR >= 1);
    assert_int_equal(offsetof(struct aos_host, size), offsetof(struct host_1_0, size));
    assert_int_equal(offsetof(struct aos_host, abi_minor), offsetof(struct host_1_0, abi_minor));
    assert_int_equal(offsetof(struct aos_host, host_version), offsetof(struct host_1_0, host_version));
    assert_int_equal(offsetof(struct aos_host, log), offsetof(struct host_1_0, log));
    assert_int_equal(offsetof(struct aos_host, set_error), offsetof(struct host_1_0, set_error));
    assert_int_equal(offsetof(struct aos_host, alloc), offsetof(struct host_1_0, alloc));
    assert_int_equal(offsetof(struct aos_host, free), offsetof(struct host_1_0, free));
    assert_int_equal(offsetof(struct aos_host, strndup), offsetof(struct host_1_0, strndup));
    assert_true(offsetof(struct aos_host, user_lookup) >= sizeof(struct host_1_0));
    assert_true(offsetof(struct aos_host, apikey_lookup) > offsetof(struct aos_host, user_lookup));

    /* Present whether or not a store is attached ... */
    assert_true(AOS_HOST_HAS(h, user_lookup));
    assert_true(AOS_HOST_HAS(h, apikey_lookup));
    /* ... and a table that a 1.0 host would have handed out lacks them. */
    struct aos_host old = *h;
    old.size = (uint32_t)sizeof(struct host_1_0);
    assert_false(AOS_HOST_HAS(&old, user_lookup));
    assert_false(AOS_HOST_HAS(&old, apikey_lookup));
    assert_true(AOS_HOST_HAS(&old, strndup));

    /* Without a store the lookups fail (tests/unit/test_authplugins.c
     * checks the "no store" message through a real plugin). */
    aos_plugin_host_attach_store(NULL);
    struct aos_user_record u;
    memset(&u, 0x5a, sizeof u);
    u.size = sizeof u;
    assert_int_equal(h->user_lookup(NULL, NULL, "a@example.com", &u), AOS_LOOKUP_ERROR);
    struct aos_apikey_record k = {.size = sizeof k};
    assert_int_equal(h->apikey_lookup(NULL, "abcdefghijkl", &k), AOS_LOOKUP_ERROR);
    /* A record smaller than its 1.1 layout is refused before anything. */
    u.size = 8;
    assert_int_equal(h->user_lookup(NULL, NULL, "a@example.com", &u), AOS_LOOKUP_ERROR);
    assert_int_equal(h->user_lookup(NULL, NULL, "a@example.com", NULL), AOS_LOOKUP_ERROR);
}

/* The host table as ABI 1.1 declared it: pii_redact comes after it. */
struct host_1_1 {
    struct host_1_0 base;
    int (*user_lookup)(struct aos_ctx *ctx, const char *tenant_id, const char *email,
                       struct aos_user_record *out);
    int (*apikey_lookup)(struct aos_ctx *ctx, const char *prefix, struct aos_apikey_record *out);
};

static void test_host_table_1_2(void **state)
{
    (void)state;
    const struct aos_host *h = aos_plugin_host();
    assert_true(AOS_ABI_MINOR >= 2);
    assert_int_equal(offsetof(struct aos_host, user_lookup), offsetof(struct host_1_1, user_lookup));
    assert_int_equal(offsetof(struct aos_host, apikey_lookup), offsetof(struct host_1_1, apikey_lookup));
    assert_true(offsetof(struct aos_host, pii_redact) >= sizeof(struct host_1_1));
    assert_true(AOS_HOST_HAS(h, pii_redact));
    struct aos_host old = *h;
    old.size = (uint32_t)sizeof(struct host_1_1);
    assert_false(AOS_HOST_HAS(&old, pii_redact));
    assert_true(AOS_HOST_HAS(&old, apikey_lookup));

    char err[256];
    struct aos_pii *pii = aos_pii_new(NULL, 0, err, sizeof err);
    assert_non_null(pii);
    char *out = (char *)"untouched";
    size_t out_len = 99;

    /* Detached: fails, output emptied. */
    aos_plugin_host_attach_pii(NULL);
    assert_true(h->pii_redact(NULL, "a@example.com", 13, &out, &out_len) < 0);
    assert_null(out);
    assert_int_equal(out_len, 0);

    aos_plugin_host_attach_pii(pii);
    /* Not NUL-terminated: only len bytes are read. */
    static const char text[] = "mail jane@example.com, card 4111111111111111.XXXX";
    static const char want[] = "mail <EMAIL_ADDRESS>, card <CREDIT_CARD>.";
    assert_int_equal(h->pii_redact(NULL, text, sizeof text - 1 - 4, &out, &out_len), 0);
    assert_non_null(out);
    assert_int_equal(out_len, strlen(want));
    assert_string_equal(out, want);
    h->free(out);

    /* Nothing to redact: a copy. */
    assert_int_equal(h->pii_redact(NULL, "plain", 5, &out, &out_len), 0);
    assert_string_equal(out, "plain");
    assert_int_equal(out_len, 5);
    h->free(out);
    assert_int_equal(h->pii_redact(NULL, NULL, 0, &out, &out_len), 0);
    assert_string_equal(out, "");
    assert_int_equal(out_len, 0);
    h->free(out);

    /* Invalid UTF-8 (an overlong '/'): refused, nothing handed out. */
    out = (char *)"untouched";
    assert_true(h->pii_redact(NULL, "a@example.com \xc0\xaf", 16, &out, &out_len) < 0);
    assert_null(out);
    assert_int_equal(out_len, 0);
    assert_true(h->pii_redact(NULL, NULL, 3, &out, &out_len) < 0);
    assert_true(h->pii_redact(NULL, "x", 1, NULL, &out_len) < 0);

    aos_plugin_host_attach_pii(NULL);
    aos_pii_free(pii);
}

/* An older minor's shorter ops table: loads, and nothing past its declared
 * size is read (the pointer behind it would fail validation).  older-minor
 * is built for ABI 1.0 (hard-coded), so this is also "a 1.0 plugin loads
 * into the 1.2 host". */
static void test_older_minor_loads(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"older-minor", NULL};
    fx_init(&f, "tests/plugins/.libs", NULL, names);
    struct aos_plugin_set *set = fx_load(&f, NULL);
    assert_non_null(set);
    const struct aos_plugin_instance *p = aos_plugin_set_find(set, "older-minor");
    assert_non_null(p);
    assert_true(AOS_ABI_MINOR > 0); /* the plugin's 1.0 is really older */
    char err[128];
    assert_int_equal(aos_plugin_agent_validate_config(p, "{}", 2, err, sizeof err), 0);
    struct aos_step_result r;
    assert_int_equal(step_json(p, "{}", 0, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.status, AOS_STEP_DONE);
    aos_plugin_step_result_release(&r);
    aos_plugin_set_free(set);
    fx_done(&f);
}

/* ------------------------------------------------------------------ */
/* Refusals, one per check                                            */
/* ------------------------------------------------------------------ */

static void test_refuse_missing_file(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"does-not-exist", NULL};
    fx_init(&f, "tests/plugins/.libs", NULL, names);
    assert_null(fx_load(&f, NULL));
    char *reason = xformat("no such file: install the plugin into plugins.dir (%s) or remove "
                           "\"does-not-exist\" from plugins.enable",
                           f.dir);
    assert_refusal(&f, 0, "does-not-exist", reason);
    free(reason);
    fx_done(&f);
}

static void test_refuse_dlopen_failure(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"undef-sym", NULL};
    fx_init(&f, "tests/plugins/.libs", NULL, names);
    assert_null(fx_load(&f, NULL));
    char *reason = xformat("dlopen failed: %s/undef-sym.so: undefined symbol: "
                           "aos_test_no_such_function: rebuild the plugin for this system "
                           "against aos-sdk 1.x, or remove \"undef-sym\" from plugins.enable",
                           f.dir);
    assert_refusal(&f, 0, "undef-sym", reason);
    free(reason);
    fx_done(&f);
}

static void test_refuse_missing_entry(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"no-entry", NULL};
    fx_init(&f, "tests/plugins/.libs", NULL, names);
    assert_null(fx_load(&f, NULL));
    char *reason = xformat("no aos_plugin_entry symbol (%s/no-entry.so: undefined symbol: "
                           "aos_plugin_entry): not an aosd plugin, or built without "
                           "AOS_PLUGIN_EXPORT(); rebuild it against aos-sdk 1.x",
                           f.dir);
    assert_refusal(&f, 0, "no-entry", reason);
    free(reason);
    fx_done(&f);
}

static void test_refuse_null_descriptor(void **state)
{
    (void)state;
    expect_refused("null-entry", NULL,
                   "aos_plugin_entry() returned NULL: the plugin must return its descriptor "
                   "(use AOS_PLUGIN_EXPORT)");
}

static void test_refuse_bad_magic(void **state)
{
    (void)state;
    expect_refused("bad-magic", NULL,
                   "bad descriptor magic 0x12345678, expected 0x414F5350 (\"AOSP\"): "
                   "aos_plugin_entry() does not return an aosd plugin descriptor; build it with "
                   "AOS_PLUGIN_HEADER against aos-sdk 1.x");
}

static void test_refuse_wrong_major(void **state)
{
    (void)state;
    expect_refused("bad-major", NULL,
                   "plugin built for ABI 2.0, host provides ABI 1.3: rebuild the plugin against "
                   "aos-sdk 1.x");
}

static void test_refuse_newer_minor(void **state)
{
    (void)state;
    expect_refused("newer-minor", NULL,
                   "plugin built for ABI 1.4, host provides ABI 1.3: upgrade aosd to a version "
                   "providing ABI 1.4 or later, or rebuild the plugin against aos-sdk 1.3");
}

static void test_refuse_small_descriptor(void **state)
{
    (void)state;
    char *reason = xformat("descriptor is 24 bytes, ABI 1.3 defines %zu: declare it as a struct "
                           "aos_plugin starting with AOS_PLUGIN_HEADER and rebuild against "
                           "aos-sdk 1.x",
                           sizeof(struct aos_plugin));
    expect_refused("small-size", NULL, reason);
    free(reason);
}

static void test_refuse_bad_kind(void **state)
{
    (void)state;
    expect_refused("bad-kind", NULL,
                   "unknown plugin kind 7 (ABI 1.3 knows 1 = agent, 2 = connector, 3 = auth): "
                   "set .kind to one of AOS_PLUGIN_AGENT, AOS_PLUGIN_CONNECTOR, AOS_PLUGIN_AUTH");
}

static void test_refuse_nonzero_reserved(void **state)
{
    (void)state;
    expect_refused("bad-reserved", NULL,
                   "reserved descriptor slot 3 is not zero (ABI 1.3 gives it no meaning): leave "
                   ".reserved unset (designated initialisers zero it) and rebuild");
}

static void test_refuse_invalid_name(void **state)
{
    (void)state;
    expect_refused("bad-name", NULL,
                   "plugin name \"Bad Name\" is invalid (1-63 characters of a-z, 0-9 and '-', "
                   "not starting with '-'): fix .name in the plugin");
}

static void test_refuse_name_mismatch(void **state)
{
    (void)state;
    expect_refused("wrong-name", NULL,
                   "file declares plugin \"other-name\" but is enabled as \"wrong-name\": a "
                   "plugin file must be named after its plugin; rename it to other-name.so and "
                   "enable \"other-name\"");
}

static void test_refuse_duplicate_name(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"good-agent", "dup-name", NULL};
    fx_init(&f, "tests/plugins/.libs", NULL, names);
    assert_null(fx_load(&f, NULL));
    assert_int_equal(f.errs.n, 1);
    char *reason = xformat("plugin name \"good-agent\" is already taken by %s/good-agent.so: two "
                           "files declare the same plugin; remove one of them from "
                           "plugins.enable",
                           f.dir);
    assert_refusal(&f, 0, "dup-name", reason);
    free(reason);
    fx_done(&f);
}

static void test_refuse_enabled_twice(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"good-agent", "good-agent", NULL};
    fx_init(&f, "tests/plugins/.libs", NULL, names);
    assert_null(fx_load(&f, NULL));
    assert_int_equal(f.errs.n, 1);
    assert_refusal(&f, 0, "good-agent",
                   "\"good-agent\" is enabled twice: remove the duplicate from plugins.enable");
    fx_done(&f);
}

static void test_refuse_invalid_enabled_name(void **state)
{
    (void)state;
    expect_refused("../evil", NULL,
                   "\"../evil\" is not a valid plugin name (1-63 characters of a-z, 0-9 and "
                   "'-', not starting with '-'): fix plugins.enable");
}

static void test_refuse_no_ops(void **state)
{
    (void)state;
    expect_refused("no-ops", NULL, "agent plugin has no ops table: set .ops to a struct aos_agent_ops");
}

static void test_refuse_short_ops(void **state)
{
    (void)state;
    expect_refused("short-ops", NULL,
                   "agent ops table declares 4 bytes, ABI 1.3 needs at least 16 (through "
                   "step()): set .size = sizeof(struct aos_agent_ops) and rebuild");
}

static void test_refuse_missing_mandatory_op(void **state)
{
    (void)state;
    expect_refused("no-call", NULL,
                   "connector ops table has no call(): every connector plugin must implement "
                   "it");
}

static void test_refuse_bad_schema(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"bad-schema", NULL};
    fx_init(&f, "tests/plugins/.libs", NULL, names);
    assert_null(fx_load(&f, NULL));
    assert_int_equal(f.errs.n, 2);
    assert_refusal(&f, 0, "bad-schema",
                   "settings schema: setting \"far\" (offset 64, 8 bytes) lies outside the "
                   "8-byte instance: fix .instance_size or the setting's offset in the plugin");
    assert_refusal(&f, 1, "bad-schema",
                   "settings schema: default \"many\" of setting \"a\" is not an integer: fix the "
                   "plugin's settings table");
    fx_done(&f);
}

static void test_refuse_init_failure(void **state)
{
    (void)state;
    char *trace = trace_new();
    char *blocks = xformat("good-agent = { tag = \"t\"; trace = \"%s\"; };", trace);
    struct fx f;
    const char *names[] = {"good-agent", "init-fail", NULL};
    fx_init(&f, "tests/plugins/.libs", blocks, names);
    assert_null(fx_load(&f, NULL));
    assert_int_equal(f.errs.n, 1);
    assert_refusal(&f, 0, "init-fail",
                   "init() failed: cannot reach the license server at 198.51.100.7:7000: check "
                   "the plugins.init-fail settings and the plugin's documentation");
    /* The plugin initialised before it was finished again: all or nothing. */
    char *t = slurp(trace);
    assert_string_equal(t, "init good-agent t\nfini good-agent t\n");
    free(t);
    fx_done(&f);
    free(blocks);
    trace_done(trace);
}

/* Every static problem is reported at once, and no init() runs when there
 * is one. */
static void test_refusals_all_reported_before_init(void **state)
{
    (void)state;
    char *trace = trace_new();
    char *blocks = xformat("good-agent = { trace = \"%s\"; };", trace);
    struct fx f;
    const char *names[] = {"good-agent", "bad-major", "bad-magic", NULL};
    fx_init(&f, "tests/plugins/.libs", blocks, names);
    assert_null(fx_load(&f, NULL));
    assert_int_equal(f.errs.n, 2);
    assert_non_null(strstr(f.errs.lines[0], "/bad-major.so (enabled at test.conf:7): plugin "
                                            "built for ABI 2.0, host provides ABI 1.3"));
    assert_non_null(strstr(f.errs.lines[1], "/bad-magic.so (enabled at test.conf:7): bad "
                                            "descriptor magic"));
    char *t = slurp(trace);
    assert_string_equal(t, "");
    free(t);
    fx_done(&f);
    free(blocks);
    trace_done(trace);
}

/* A conf without enable_file (built by hand elsewhere) still gives a line. */
static void test_refusal_without_enable_location(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"bad-major", NULL};
    fx_init(&f, "tests/plugins/.libs", NULL, names);
    f.conf.plugins.enable_file = NULL;
    assert_null(fx_load(&f, NULL));
    char *want = xformat("%s/bad-major.so (enabled in plugins.enable): plugin built for ABI "
                         "2.0, host provides ABI 1.3: rebuild the plugin against aos-sdk 1.x",
                         f.dir);
    assert_int_equal(f.errs.n, 1);
    assert_string_equal(f.errs.lines[0], want);
    free(want);
    fx_done(&f);
}

/* Refusals and loads are logged: capture stderr around a load. */
static void test_loader_logs(void **state)
{
    (void)state;
    char *logpath = trace_new();
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    int fd = open(logpath, O_WRONLY | O_TRUNC);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);

    struct fx f;
    const char *bad[] = {"bad-major", NULL};
    fx_init(&f, "tests/plugins/.libs", NULL, bad);
    assert_null(fx_load(&f, NULL));
    fx_done(&f);
    const char *good[] = {"good-agent", NULL};
    fx_init(&f, "tests/plugins/.libs", NULL, good);
    struct aos_plugin_set *set = fx_load(&f, NULL);
    aos_plugin_set_free(set);

    dup2(saved, STDERR_FILENO);
    close(saved);
    assert_non_null(set);
    char *log = slurp(logpath);
    assert_non_null(strstr(log, "level=error msg=\"plugin refused\" error=\""));
    assert_non_null(strstr(log, "/bad-major.so (enabled at test.conf:7): plugin built for ABI "
                                "2.0, host provides ABI 1.3: rebuild the plugin against "
                                "aos-sdk 1.x\""));
    /* The plugin's own log line, attributed to it. */
    assert_non_null(strstr(log, "level=info msg=\"good-agent a ready\" src=good-agent"));
    char *loaded = xformat("level=info msg=\"plugin loaded\" name=good-agent kind=agent "
                           "version=2.3.4 abi=1.3 file=%s/good-agent.so",
                           f.dir);
    assert_non_null(strstr(log, loaded));
    free(loaded);
    free(log);
    fx_done(&f);
    trace_done(logpath);
}

/* ------------------------------------------------------------------ */
/* Settings                                                           */
/* ------------------------------------------------------------------ */

static struct aos_plugin_set *load_good_agent(struct fx *f, const char *blocks)
{
    static const char *names[] = {"good-agent", NULL};
    fx_init(f, "tests/plugins/.libs", blocks, names);
    return fx_load(f, NULL);
}

static void test_settings_defaults(void **state)
{
    (void)state;
    struct fx f;
    struct aos_plugin_set *set = load_good_agent(&f, NULL);
    assert_non_null(set);
    char *out = step_output(aos_plugin_set_find(set, "good-agent"), "{}");
    char *want = xformat("{\"tag\":\"a\",\"count\":3,\"ratio\":0.5,\"flag\":true,"
                         "\"max_inside\":1,\"size\":%zu}",
                         sizeof(struct aos_step_input));
    assert_string_equal(out, want);
    free(want);
    free(out);
    aos_plugin_set_free(set);
    fx_done(&f);
}

static void test_settings_values(void **state)
{
    (void)state;
    struct fx f;
    struct aos_plugin_set *set =
        load_good_agent(&f, "good-agent = { tag = \"x\"; count = 10; ratio = 1; flag = false; };");
    assert_non_null(set);
    assert_int_equal(f.errs.n, 0);
    char *out = step_output(aos_plugin_set_find(set, "good-agent"), "{}");
    assert_non_null(strstr(out, "{\"tag\":\"x\",\"count\":10,\"ratio\":1,\"flag\":false,"));
    free(out);
    aos_plugin_set_free(set);
    fx_done(&f);
}

static void test_settings_unknown_key(void **state)
{
    (void)state;
    expect_refused("good-agent", "good-agent = {\n  tag = \"x\";\n  cuont = 3;\n};",
                   "test.conf:3: plugins.good-agent.cuont: unknown setting (known settings: "
                   "tag, trace, count, ratio, flag, fail_reload)");
}

static void test_settings_type_mismatch(void **state)
{
    (void)state;
    expect_refused("good-agent", "good-agent = { count = \"7\"; };",
                   "test.conf:1: plugins.good-agent.count: expected an integer, got a string "
                   "(a number from 1 to 10)");
    expect_refused("good-agent", "good-agent = { flag = 1; };",
                   "test.conf:1: plugins.good-agent.flag: expected a boolean (true or false), got "
                   "an integer (a switch)");
    expect_refused("good-agent", "good-agent = { ratio = \"half\"; };",
                   "test.conf:1: plugins.good-agent.ratio: expected a number, got a string (a "
                   "fraction)");
}

static void test_settings_ranges(void **state)
{
    (void)state;
    expect_refused("good-agent", "good-agent = { count = 11; };",
                   "test.conf:1: plugins.good-agent.count: 11 is out of range 1..10 (a number "
                   "from 1 to 10)");
    expect_refused("good-agent", "good-agent = { count = 0; };",
                   "test.conf:1: plugins.good-agent.count: 0 is out of range 1..10 (a number "
                   "from 1 to 10)");
    expect_refused("good-agent", "good-agent = { ratio = 1.5; };",
                   "test.conf:1: plugins.good-agent.ratio: 1.5 is out of range 0..1 (a "
                   "fraction)");
    expect_refused("good-agent", "good-agent = { tag = \"0123456789012345678901234567890123456789\"; };",
                   "test.conf:1: plugins.good-agent.tag: length 40 is out of range 0..32 bytes "
                   "(label in outputs and traces)");
}

static void test_settings_not_a_group(void **state)
{
    (void)state;
    expect_refused("good-agent", "good-agent = 5;",
                   "test.conf:1: plugins.good-agent: must be a group { ... }, not an integer");
}

static void test_settings_every_error_reported(void **state)
{
    (void)state;
    struct fx f;
    struct aos_plugin_set *set =
        load_good_agent(&f, "good-agent = {\n count = 99;\n bogus = 1;\n flag = \"yes\";\n};");
    assert_null(set);
    assert_int_equal(f.errs.n, 3);
    assert_non_null(strstr(f.errs.lines[0], "test.conf:2: plugins.good-agent.count: 99 is out"));
    assert_non_null(strstr(f.errs.lines[1], "test.conf:3: plugins.good-agent.bogus: unknown"));
    assert_non_null(strstr(f.errs.lines[2], "test.conf:4: plugins.good-agent.flag: expected"));
    fx_done(&f);
}

static void test_settings_required(void **state)
{
    (void)state;
    expect_refused("good-auth", NULL,
                   "plugins.good-auth.password: required setting missing (the one accepted "
                   "password): add a plugins.good-auth block that sets it");
    expect_refused("good-auth", "\n\ngood-auth = { role = \"admin\"; };",
                   "test.conf:3: plugins.good-auth.password: required setting missing (the one "
                   "accepted password): add it to the plugins.good-auth block");
}

static void test_settings_secret_not_echoed(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"good-auth", NULL};
    fx_init(&f, "tests/plugins/.libs", "good-auth = { password = \"s3cr\"; };", names);
    assert_null(fx_load(&f, NULL));
    assert_int_equal(f.errs.n, 1);
    assert_refusal(&f, 0, "good-auth",
                   "test.conf:1: plugins.good-auth.password: length 4 is out of range 8..64 "
                   "bytes (the one accepted password)");
    assert_null(strstr(f.errs.lines[0], "s3cr"));
    fx_done(&f);

    fx_init(&f, "tests/plugins/.libs", "good-auth = { password = 987654321; };", names);
    assert_null(fx_load(&f, NULL));
    assert_int_equal(f.errs.n, 1);
    assert_null(strstr(f.errs.lines[0], "987654321"));
    assert_non_null(strstr(f.errs.lines[0], "expected a string, got an integer"));
    fx_done(&f);
}

/* ------------------------------------------------------------------ */
/* Calls                                                              */
/* ------------------------------------------------------------------ */

static void test_step_wrapper(void **state)
{
    (void)state;
    struct fx f;
    struct aos_plugin_set *set = load_good_agent(&f, NULL);
    assert_non_null(set);
    const struct aos_plugin_instance *p = aos_plugin_set_find(set, "good-agent");
    struct aos_step_result r;
    char err[256];

    /* The wrapper sizes both structs for the plugin. */
    char *out = step_output(p, "{}");
    char *size = xformat("\"size\":%zu}", sizeof(struct aos_step_input));
    assert_non_null(strstr(out, size));
    free(size);
    free(out);

    assert_int_equal(step_json(p, "{\"x\":\"fail-step\"}", 2, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.status, AOS_STEP_FAIL);
    assert_string_equal(err, "asked to fail at step 2");
    aos_plugin_step_result_release(&r);

    /* Internal error: the reason stays one line. */
    assert_int_equal(step_json(p, "fail-internal", 0, NULL, &r, err, sizeof err), -1);
    assert_string_equal(err, "internal trouble second line");
    assert_null(r.output.data);

    /* An unknown status is refused and the plugin's buffer released. */
    assert_int_equal(step_json(p, "bad-status", 0, NULL, &r, err, sizeof err), -1);
    assert_string_equal(err, "plugin good-agent: step() returned unknown status 42");
    assert_null(r.output.data);
    assert_int_equal(r.status, 0);

    assert_int_equal(aos_plugin_agent_validate_config(p, "{}", 2, err, sizeof err), 0);
    assert_int_equal(aos_plugin_agent_validate_config(p, "[]", 2, err, sizeof err), -1);
    assert_string_equal(err, "config must be a JSON object");

    /* Wrong kind. */
    char buf[8];
    struct aos_buf resp;
    assert_int_equal(aos_plugin_connector_call(p, "{}", 2, &resp, buf, sizeof buf), -1);
    assert_string_equal(buf, "plugin "); /* truncated, still terminated */
    assert_int_equal(aos_plugin_connector_health(p, err, sizeof err), -1);
    assert_string_equal(err, "plugin good-agent is an agent plugin, not a connector plugin");
    aos_plugin_set_free(set);
    fx_done(&f);
}

struct stepper {
    const struct aos_plugin_instance *p;
    int bad;
};

static void *stepper_run(void *arg)
{
    struct stepper *s = arg;
    for (int i = 0; i < 5; i++) {
        struct aos_step_result r;
        char err[128];
        if (step_json(s->p, "{}", 0, NULL, &r, err, sizeof err) != 0 || r.output.data == NULL ||
            strstr(r.output.data, "\"max_inside\":1,") == NULL)
            s->bad++;
        aos_plugin_step_result_release(&r);
    }
    return NULL;
}

/* good-agent is not thread-safe: its steps never overlap. */
static void test_calls_serialised(void **state)
{
    (void)state;
    struct fx f;
    struct aos_plugin_set *set = load_good_agent(&f, NULL);
    assert_non_null(set);
    pthread_t th[4];
    struct stepper st[4];
    for (int i = 0; i < 4; i++) {
        st[i] = (struct stepper){.p = aos_plugin_set_find(set, "good-agent")};
        assert_int_equal(pthread_create(&th[i], NULL, stepper_run, &st[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(st[i].bad, 0);
    }
    aos_plugin_set_free(set);
    fx_done(&f);
}

static void test_connector_and_auth_wrappers(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"good-connector", "good-auth", NULL};
    fx_init(&f, "tests/plugins/.libs",
            "good-connector = { healthy = false; };\n"
            "good-auth = { password = \"correct horse\"; role = \"approver\"; };",
            names);
    struct aos_plugin_set *set = fx_load(&f, NULL);
    assert_non_null(set);
    const struct aos_plugin_instance *c = aos_plugin_set_find(set, "good-connector");
    const struct aos_plugin_instance *a = aos_plugin_set_find(set, "good-auth");
    char err[256];

    struct aos_buf resp;
    assert_int_equal(aos_plugin_connector_call(c, "{\"q\":1}", 7, &resp, err, sizeof err), 0);
    assert_int_equal(resp.len, strlen("{\"got\":{\"q\":1}}"));
    assert_memory_equal(resp.data, "{\"got\":{\"q\":1}}", resp.len);
    aos_plugin_buf_release(&resp);
    assert_null(resp.data);
    assert_int_equal(aos_plugin_connector_call(c, "boom", 4, &resp, err, sizeof err), -1);
    assert_string_equal(err, "upstream said boom");
    assert_null(resp.data);
    assert_int_equal(aos_plugin_connector_health(c, err, sizeof err), -1);
    assert_string_equal(err, "upstream unreachable");

    struct aos_credentials cred = {.kind = AOS_CRED_PASSWORD,
                                   .identifier = "ann@example.com",
                                   .secret = "correct horse",
                                   .secret_len = 13};
    struct aos_principal pr;
    assert_int_equal(aos_plugin_auth_authenticate(a, &cred, &pr, err, sizeof err), AOS_AUTH_ALLOW);
    assert_string_equal(pr.subject, "ann@example.com");
    assert_string_equal(pr.role, "approver");
    assert_string_equal(pr.tenant_id, "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f");
    assert_int_equal(pr.size, sizeof pr);

    cred.secret_len = 5;
    assert_int_equal(aos_plugin_auth_authenticate(a, &cred, &pr, err, sizeof err), AOS_AUTH_DENY);
    assert_string_equal(pr.subject, "");
    cred.kind = AOS_CRED_API_KEY;
    assert_int_equal(aos_plugin_auth_authenticate(a, &cred, &pr, err, sizeof err), AOS_AUTH_IGNORE);
    cred.kind = AOS_CRED_PASSWORD;
    cred.identifier = "broken";
    assert_int_equal(aos_plugin_auth_authenticate(a, &cred, &pr, err, sizeof err), AOS_AUTH_ERROR);
    assert_string_equal(err, "plugin good-auth: authenticate() allowed with an empty or "
                             "unterminated principal field");
    aos_plugin_set_free(set);
    fx_done(&f);
}

/* ------------------------------------------------------------------ */
/* Lifecycle: fini order, reload                                      */
/* ------------------------------------------------------------------ */

static void test_fini_reverse_order(void **state)
{
    (void)state;
    char *trace = trace_new();
    char *blocks = xformat("good-agent = { tag = \"g\"; trace = \"%s\"; };\n"
                           "good-connector = { trace = \"%s\"; };\n"
                           "good-auth = { password = \"correct horse\"; trace = \"%s\"; };",
                           trace, trace, trace);
    struct fx f;
    const char *names[] = {"good-agent", "good-connector", "good-auth", NULL};
    fx_init(&f, "tests/plugins/.libs", blocks, names);
    struct aos_plugin_set *set = fx_load(&f, NULL);
    assert_non_null(set);
    aos_plugin_set_free(set);
    char *t = slurp(trace);
    assert_string_equal(t, "init good-agent g\ninit good-connector\ninit good-auth\n"
                           "fini good-auth\nfini good-connector\nfini good-agent g\n");
    free(t);
    fx_done(&f);
    free(blocks);
    trace_done(trace);
}

static struct aos_plugin_set *load_tagged(struct fx *f, const char *tag, const char *trace, bool fail_reload,
                                          const char *extra, const struct aos_plugin_set *previous)
{
    char *blocks = xformat("good-agent = { tag = \"%s\"; trace = \"%s\"; fail_reload = %s; };", tag, trace,
                           fail_reload ? "true" : "false");
    static const char *one[] = {"good-agent", NULL};
    const char *two[] = {"good-agent", extra, NULL};
    fx_init(f, "tests/plugins/.libs", blocks, extra != NULL ? two : one);
    struct aos_plugin_set *set = fx_load(f, previous);
    free(blocks);
    return set;
}

static void test_reload(void **state)
{
    (void)state;
    char *trace = trace_new();
    struct fx fa, fb, fc, fd;

    struct aos_plugin_set *a = load_tagged(&fa, "one", trace, false, NULL, NULL);
    assert_non_null(a);
    struct aos_plugin_set *b = load_tagged(&fb, "two", trace, false, NULL, a);
    assert_non_null(b);
    assert_int_equal(fb.errs.n, 0);

    /* A failing reload() refuses the new set; the old one keeps working. */
    struct aos_plugin_set *c = load_tagged(&fc, "three", trace, true, NULL, b);
    assert_null(c);
    assert_int_equal(fc.errs.n, 1);
    assert_refusal(&fc, 0, "good-agent",
                   "reload() failed: refusing to take over from two: the running instance is "
                   "kept");
    /* So does a failing init() of another plugin. */
    struct aos_plugin_set *d = load_tagged(&fd, "four", trace, false, "init-fail", b);
    assert_null(d);
    assert_int_equal(fd.errs.n, 1);

    char *out = step_output(aos_plugin_set_find(b, "good-agent"), "{}");
    assert_non_null(strstr(out, "\"tag\":\"two\""));
    free(out);

    aos_plugin_set_free(a);
    aos_plugin_set_free(b);
    char *t = slurp(trace);
    assert_string_equal(t, "init good-agent one\n"
                           "init good-agent two\nreload good-agent two<-one\n"
                           "init good-agent three\nreload good-agent three<-two\n"
                           "fini good-agent three\n"
                           "init good-agent four\nfini good-agent four\n"
                           "fini good-agent one\nfini good-agent two\n");
    free(t);
    fx_done(&fa);
    fx_done(&fb);
    fx_done(&fc);
    fx_done(&fd);
    trace_done(trace);
}

/* ------------------------------------------------------------------ */
/* The real plugins: agent-echo and the SDK example                   */
/* ------------------------------------------------------------------ */

static void test_agent_echo(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"agent-echo", NULL};
    fx_init(&f, "plugins/agent-echo/.libs",
            "agent-echo = { steps = 2; approval = true; fail_on = \"boom\"; delay_ms = 1; };", names);
    struct aos_plugin_set *set = fx_load(&f, NULL);
    assert_non_null(set);
    const struct aos_plugin_instance *p = aos_plugin_set_find(set, "agent-echo");
    assert_int_equal(aos_plugin_instance_kind(p), AOS_PLUGIN_AGENT);
    assert_true(aos_plugin_instance_flags(p) & AOS_PLUGIN_THREAD_SAFE);
    assert_string_equal(aos_plugin_instance_version(p), PACKAGE_VERSION);

    /* The whole contract (man 7 agent-echo) is tests/unit/test_agent_echo.c;
     * here only that the real plugin steps through the loader. */
    struct aos_step_result r;
    char err[256];
    const char *input = "{\"a\":1}";

    assert_int_equal(step_json(p, input, 0, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.status, AOS_STEP_CONTINUE);
    assert_int_equal(r.state.len, strlen("{\"done\":1}"));
    assert_memory_equal(r.state.data, "{\"done\":1}", r.state.len);
    assert_null(r.output.data);
    assert_int_equal(r.tokens_in, strlen(input) / 4);
    assert_int_equal(r.tokens_out, strlen("{\"done\":1}") / 4);
    assert_int_equal(r.cost_micro_usd, 1);
    aos_plugin_step_result_release(&r);

    assert_int_equal(step_json(p, "{\"say\":\"boom\"}", 0, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.status, AOS_STEP_FAIL);
    assert_string_equal(err, "input contains \"boom\" (fail_on)");
    aos_plugin_step_result_release(&r);

    /* A decision applies to the call it comes with. */
    assert_int_equal(step_json(p, NULL, 5, "{\"approved\":false}", &r, err, sizeof err), 0);
    assert_int_equal(r.status, AOS_STEP_FAIL);
    assert_string_equal(err, "rejected by approver");
    aos_plugin_step_result_release(&r);
    aos_plugin_set_free(set);
    fx_done(&f);

    /* Defaults: one step, straight to DONE. */
    fx_init(&f, "plugins/agent-echo/.libs", NULL, names);
    set = fx_load(&f, NULL);
    assert_non_null(set);
    char *out = step_output(aos_plugin_set_find(set, "agent-echo"), "[1,2,3]");
    assert_string_equal(out, "{\"echo\":[1,2,3],\"steps\":1}");
    free(out);
    aos_plugin_set_free(set);
    fx_done(&f);

    /* Its schema is enforced like any other. */
    fx_init(&f, "plugins/agent-echo/.libs", "agent-echo = { steps = 0; };", names);
    assert_null(fx_load(&f, NULL));
    assert_refusal(&f, 0, "agent-echo",
                   "test.conf:1: plugins.agent-echo.steps: 0 is out of range 1..10000 (work "
                   "steps before the run is DONE)");
    fx_done(&f);
}

/* agent-echo's redact setting goes through host->pii_redact, so the
 * host's error messages reach the step's err through set_error. */
static void test_agent_echo_redact(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"agent-echo", NULL};
    char err[256];
    struct aos_pii *pii = aos_pii_new(NULL, 0, err, sizeof err);
    assert_non_null(pii);
    fx_init(&f, "plugins/agent-echo/.libs", "agent-echo = { redact = true; };", names);
    struct aos_plugin_set *set = fx_load(&f, NULL);
    assert_non_null(set);
    const struct aos_plugin_instance *p = aos_plugin_set_find(set, "agent-echo");
    struct aos_step_result r;

    aos_plugin_host_attach_pii(pii);
    const char *input = "{\"to\":\"jane@example.com\",\"card\":4111111111111111,\"n\":1}";
    const char *want =
        "{\"echo\":\"{\\\"to\\\":\\\"<EMAIL_ADDRESS>\\\",\\\"card\\\":<CREDIT_CARD>,\\\"n\\\":1}\","
        "\"steps\":1}";
    assert_int_equal(step_json(p, input, 0, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.status, AOS_STEP_DONE);
    assert_int_equal(r.output.len, strlen(want));
    assert_memory_equal(r.output.data, want, r.output.len);
    assert_int_equal(r.output.data[r.output.len], '\0');
    aos_plugin_step_result_release(&r);

    /* Control characters in the redacted text are escaped. */
    char *out = step_output(p, "\"a\\\tb\x01\"");
    assert_string_equal(out, "{\"echo\":\"\\\"a\\\\\\u0009b\\u0001\\\"\",\"steps\":1}");
    free(out);

    /* Invalid UTF-8: the step fails with the host's reason, no output. */
    assert_int_equal(step_json(p, "\"\xff\"", 0, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.status, AOS_STEP_FAIL);
    assert_null(r.output.data);
    assert_string_equal(err, "PII redaction failed: text is not valid UTF-8");
    aos_plugin_step_result_release(&r);

    /* Detached engine: fails, never echoes the raw input. */
    aos_plugin_host_attach_pii(NULL);
    assert_int_equal(step_json(p, input, 0, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.status, AOS_STEP_FAIL);
    assert_null(r.output.data);
    assert_string_equal(err, "no PII engine");
    aos_plugin_step_result_release(&r);

    aos_plugin_set_free(set);
    fx_done(&f);
    aos_pii_free(pii);
}

static void test_sdk_example_hello_agent(void **state)
{
    (void)state;
    struct fx f;
    const char *names[] = {"hello-agent", NULL};
    fx_init(&f, "tests/plugins", "hello-agent = { name = \"tester\"; };", names);
    struct aos_plugin_set *set = fx_load(&f, NULL);
    assert_non_null(set);
    char *out = step_output(aos_plugin_set_find(set, "hello-agent"), "{\"x\":1}");
    assert_string_equal(out, "{\"greeting\":\"Hello, tester!\",\"input\":{\"x\":1}}");
    free(out);
    aos_plugin_set_free(set);
    fx_done(&f);

    fx_init(&f, "tests/plugins", "hello-agent = { name = \"a\\\"b\"; };", names);
    assert_null(fx_load(&f, NULL));
    assert_refusal(&f, 0, "hello-agent",
                   "init() failed: greeting and name must not contain quotes, backslashes or "
                   "control characters: check the plugins.hello-agent settings and the "
                   "plugin's documentation");
    fx_done(&f);
}

/* Through the real configuration loader: the refusal points at the real
 * file and line of plugins.enable, setting errors at their own line. */
static void test_with_conf_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/aos-test-loader-conf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = xformat("%s/aosd.conf", dir);
    char *libs = xformat("%s/tests/plugins/.libs", builddir());
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp,
            "auth: { jwt_secret_file = \"/etc/aos/jwt.key\"; };\n"
            "plugins: {\n"
            "    dir = \"%s\";\n"
            "    enable = [ \"good-agent\", \"bad-major\" ];\n"
            "    good-agent = {\n"
            "        count = 12;\n"
            "    };\n"
            "};\n",
            libs);
    fclose(fp);

    struct aos_conf_errors errs = {0};
    struct aos_conf *conf = aos_conf_load(path, &errs);
    if (conf == NULL)
        fail_msg("config refused: %s", errs.n > 0 ? errs.lines[0] : "?");
    assert_null(aos_plugin_set_load(conf, NULL, &errs));
    assert_int_equal(errs.n, 2);
    char *want = xformat("%s/good-agent.so (enabled at %s:4): %s:6: plugins.good-agent.count: 12 "
                         "is out of range 1..10 (a number from 1 to 10)",
                         libs, path, path);
    assert_string_equal(errs.lines[0], want);
    free(want);
    want = xformat("%s/bad-major.so (enabled at %s:4): plugin built for ABI 2.0, host provides "
                   "ABI 1.3: rebuild the plugin against aos-sdk 1.x",
                   libs, path);
    assert_string_equal(errs.lines[1], want);
    free(want);
    aos_conf_errors_free(&errs);
    aos_conf_free(conf);
    unlink(path);
    rmdir(dir);
    free(path);
    free(libs);
}

int main(void)
{
    aos_log_configure(AOS_LVL_INFO, AOS_LOG_TEXT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_set_loads),
        cmocka_unit_test(test_empty_enable_list),
        cmocka_unit_test(test_host_table),
        cmocka_unit_test(test_host_table_1_1),
        cmocka_unit_test(test_host_table_1_2),
        cmocka_unit_test(test_older_minor_loads),
        cmocka_unit_test(test_refuse_missing_file),
        cmocka_unit_test(test_refuse_dlopen_failure),
        cmocka_unit_test(test_refuse_missing_entry),
        cmocka_unit_test(test_refuse_null_descriptor),
        cmocka_unit_test(test_refuse_bad_magic),
        cmocka_unit_test(test_refuse_wrong_major),
        cmocka_unit_test(test_refuse_newer_minor),
        cmocka_unit_test(test_refuse_small_descriptor),
        cmocka_unit_test(test_refuse_bad_kind),
        cmocka_unit_test(test_refuse_nonzero_reserved),
        cmocka_unit_test(test_refuse_invalid_name),
        cmocka_unit_test(test_refuse_name_mismatch),
        cmocka_unit_test(test_refuse_duplicate_name),
        cmocka_unit_test(test_refuse_enabled_twice),
        cmocka_unit_test(test_refuse_invalid_enabled_name),
        cmocka_unit_test(test_refuse_no_ops),
        cmocka_unit_test(test_refuse_short_ops),
        cmocka_unit_test(test_refuse_missing_mandatory_op),
        cmocka_unit_test(test_refuse_bad_schema),
        cmocka_unit_test(test_refuse_init_failure),
        cmocka_unit_test(test_refusals_all_reported_before_init),
        cmocka_unit_test(test_refusal_without_enable_location),
        cmocka_unit_test(test_loader_logs),
        cmocka_unit_test(test_settings_defaults),
        cmocka_unit_test(test_settings_values),
        cmocka_unit_test(test_settings_unknown_key),
        cmocka_unit_test(test_settings_type_mismatch),
        cmocka_unit_test(test_settings_ranges),
        cmocka_unit_test(test_settings_not_a_group),
        cmocka_unit_test(test_settings_every_error_reported),
        cmocka_unit_test(test_settings_required),
        cmocka_unit_test(test_settings_secret_not_echoed),
        cmocka_unit_test(test_step_wrapper),
        cmocka_unit_test(test_calls_serialised),
        cmocka_unit_test(test_connector_and_auth_wrappers),
        cmocka_unit_test(test_fini_reverse_order),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_agent_echo),
        cmocka_unit_test(test_agent_echo_redact),
        cmocka_unit_test(test_sdk_example_hello_agent),
        cmocka_unit_test(test_with_conf_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
