#include "config.h"

/*
 * Configuration loader: good files load with the documented values, bad
 * files produce the exact "file:line: path: message" lines.  Each test
 * writes its files into a fresh temp dir and loads them from inside it, so
 * file names in messages are short and stable ("conf.d/b.conf:3: ...").
 */

/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"

struct fixture {
    char dir[64];
    char cwd[PATH_MAX];
    struct aos_conf_errors errs;
    struct aos_conf *conf;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);

    if (!f || !getcwd(f->cwd, sizeof f->cwd))
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/aos-test-conf.XXXXXX");
    if (!mkdtemp(f->dir) || chdir(f->dir) != 0)
        return -1;
    unsetenv("AOS_TESTING");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rc = 0;

    aos_conf_free(f->conf);
    aos_conf_errors_free(&f->errs);
    if (chdir(f->cwd) != 0 || nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        rc = -1;
    free(f);
    return rc;
}

/* Writes `text` to path (relative to the test dir), creating conf.d/ or tenants.d/. */
static void put(const char *path, const char *text)
{
    const char *slash = strrchr(path, '/');
    FILE *fp;

    if (slash) {
        char dir[256];
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        assert_true(mkdir(dir, 0755) == 0 || errno == EEXIST);
    }
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static struct aos_conf *load(struct fixture *f, const char *path)
{
    aos_conf_free(f->conf);
    aos_conf_errors_free(&f->errs);
    f->conf = aos_conf_load(path, &f->errs);
    return f->conf;
}

static void print_errors(const struct fixture *f)
{
    for (size_t i = 0; i < f->errs.n; i++)
        print_message("# error: %s\n", f->errs.lines[i]);
}

/* Loads and expects success with no error lines. */
static struct aos_conf *load_ok(struct fixture *f, const char *path)
{
    if (!load(f, path) || f->errs.n != 0)
        print_errors(f);
    assert_non_null(f->conf);
    assert_int_equal(f->errs.n, 0);
    return f->conf;
}

/* Loads, expects failure, and expects exactly `line` among the errors. */
static void load_fails_with(struct fixture *f, const char *path, const char *line)
{
    bool found = false;

    assert_null(load(f, path));
    for (size_t i = 0; i < f->errs.n; i++)
        found = found || strcmp(f->errs.lines[i], line) == 0;
    if (!found) {
        print_message("# expected: %s\n", line);
        print_errors(f);
    }
    assert_true(found);
}

static void assert_has_error(const struct fixture *f, const char *line)
{
    bool found = false;

    for (size_t i = 0; i < f->errs.n; i++)
        found = found || strcmp(f->errs.lines[i], line) == 0;
    if (!found) {
        print_message("# expected: %s\n", line);
        print_errors(f);
    }
    assert_true(found);
}

#define AUTH "auth: { jwt_secret_file = \"/etc/aos/jwt.key\"; };\n"

/* ------------------------------------------------------------ good files */

static const char design_minimal[] =
    "server:  { listen = [ \"127.0.0.1:8080\" ]; };\n"
    "store:   { driver = \"sqlite\"; path = \"/var/lib/aos/aos.db\"; };\n"
    "redis:   { url = \"redis://127.0.0.1:6379/0\"; };\n"
    "auth:    { jwt_secret_file = \"/etc/aos/jwt.key\"; };\n"
    "plugins: { dir = \"/usr/lib/aos/plugins\"; enable = [ \"agent-echo\", \"auth-local\", \"auth-apikey\" "
    "]; };\n"
    "tenants = ( { id = \"6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f\"; name = \"acme\"; } );\n";

static void test_design_minimal(void **state)
{
    struct fixture *f = *state;
    const struct aos_conf *c;
    const struct aos_conf_tenant *t;

    put("aosd.conf", design_minimal);
    c = load_ok(f, "aosd.conf");

    assert_string_equal(c->path, "aosd.conf");
    assert_int_equal(c->server.nlisten, 1);
    assert_string_equal(c->server.listen[0].host, "127.0.0.1");
    assert_int_equal(c->server.listen[0].port, 8080);
    assert_string_equal(c->server.listen[0].text, "127.0.0.1:8080");
    assert_int_equal(c->server.threads, 1);
    assert_int_equal(c->server.workers, 4);
    assert_int_equal(c->server.max_body_size, 1048576);
    assert_int_equal(c->server.max_header_size, 16384);
    assert_int_equal(c->server.max_headers, 100);
    assert_int_equal(c->server.max_uri_size, 8192);
    assert_int_equal(c->server.max_json_depth, 32);
    assert_int_equal(c->server.max_connections, 10000);
    assert_true(c->server.header_timeout == 10.0);
    assert_true(c->server.body_timeout == 30.0);
    assert_true(c->server.write_timeout == 30.0);
    assert_true(c->server.idle_timeout == 60.0);
    assert_true(c->server.drain_timeout == 30.0);
    assert_int_equal(c->server.pool_queue, 1024);
    assert_string_equal(c->server.data_dir, AOSD_STATEDIR);
    assert_string_equal(c->server.www_dir, AOSD_DATADIR "/www");
    assert_string_equal(c->server.user, "");
    assert_string_equal(c->server.roles, "api,worker");

    assert_int_equal(c->log.level, AOS_LVL_INFO);
    assert_int_equal(c->log.format, AOS_LOG_TEXT);

    assert_string_equal(c->store.driver, "sqlite");
    assert_string_equal(c->store.path, "/var/lib/aos/aos.db");
    assert_string_equal(c->store.conninfo, "");
    assert_int_equal(c->store.pool_size, 4);
    assert_true(c->store.busy_timeout == 5.0);
    assert_true(c->store.auto_migrate);
    assert_false(c->store.auto_migrate_set);

    assert_true(c->redis.enabled);
    assert_string_equal(c->redis.url, "redis://127.0.0.1:6379/0");
    assert_true(c->redis.connect_timeout == 2.0);

    assert_string_equal(c->auth.jwt_secret_file, "/etc/aos/jwt.key");
    assert_int_equal(c->auth.token_ttl, 28800);
    assert_int_equal(c->auth.nbackends, 2);
    assert_string_equal(c->auth.backends[0], "auth-local");
    assert_string_equal(c->auth.backends[1], "auth-apikey");
    assert_string_equal(c->auth.registration, "closed");
    assert_string_equal(c->auth.registration_tenant, "");
    assert_int_equal(c->auth.password_min_length, 12);
    assert_int_equal(c->auth.password_max_length, 128);
    assert_int_equal(c->auth.max_concurrent_hashes, 2);
    assert_int_equal(c->auth.argon2.t_cost, 2);
    assert_int_equal(c->auth.argon2.m_cost_kib, 19456);
    assert_int_equal(c->auth.argon2.parallelism, 1);

    assert_true(c->limits.enabled);
    assert_int_equal(c->limits.read.per_minute, 300);
    assert_int_equal(c->limits.read.burst, 60);
    assert_int_equal(c->limits.write.per_minute, 100);
    assert_int_equal(c->limits.write.burst, 30);
    assert_int_equal(c->limits.nexempt, 3);
    assert_string_equal(c->limits.exempt[0], "/api/v1/orchestration/");
    assert_string_equal(c->limits.exempt[1], "/api/v1/aoa/");
    assert_string_equal(c->limits.exempt[2], "/static/");
    assert_string_equal(c->limits.policy, "local");
    assert_string_equal(c->limits.redis_fail, "local");

    assert_string_equal(c->plugins.dir, "/usr/lib/aos/plugins");
    assert_int_equal(c->plugins.nenable, 3);
    assert_string_equal(c->plugins.enable[0], "agent-echo");
    assert_string_equal(c->plugins.enable[1], "auth-local");
    assert_string_equal(c->plugins.enable[2], "auth-apikey");
    assert_int_equal(c->plugins.nblocks, 0);
    assert_string_equal(c->plugins.enable_file, "aosd.conf");
    assert_int_equal(c->plugins.enable_line, 5);
    assert_null(aos_conf_plugin_block(c, "agent-echo"));

    assert_int_equal(c->ntenants, 1);
    t = &c->tenants[0];
    assert_string_equal(t->id, "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f");
    assert_string_equal(t->name, "acme");
    assert_false(t->limits_set);
    assert_int_equal(t->read.per_minute, 300);
    assert_int_equal(t->read.burst, 60);
    assert_int_equal(t->write.per_minute, 100);
    assert_int_equal(t->write.burst, 30);
    assert_null(t->plugins);
    assert_int_equal(t->nplugins, 0);
    assert_int_equal(t->budget_tokens_day, 0);
    assert_int_equal(t->budget_tokens_month, 0);
    assert_int_equal(t->budget_micro_usd_day, 0);
    assert_int_equal(t->budget_micro_usd_month, 0);
    assert_string_equal(t->autonomy, "supervised");
    assert_string_equal(t->file, "aosd.conf");
    assert_int_equal(t->line, 6);
    assert_ptr_equal(aos_conf_tenant_find(c, "acme"), t);
    assert_ptr_equal(aos_conf_tenant_find(c, "6F1C2A4E-9B7D-4C3A-8E2F-1A2B3C4D5E6F"), t);
    assert_null(aos_conf_tenant_find(c, "other"));

    assert_false(c->chaos.enabled);
    assert_int_equal(c->chaos.nrules, 0);
    assert_int_equal(c->governance.journal_days, 90);
    assert_int_equal(c->governance.events_days, 30);
    assert_int_equal(c->governance.runs_days, 365);
    assert_int_equal(c->governance.idempotency_hours, 24);
    assert_int_equal(c->nfiles, 1);
}

/* Only the required setting: every other value comes from the tables. */
static void test_only_required(void **state)
{
    struct fixture *f = *state;
    const struct aos_conf *c;

    put("aosd.conf", AUTH);
    c = load_ok(f, "aosd.conf");
    assert_int_equal(c->server.nlisten, 1);
    assert_string_equal(c->server.listen[0].text, "127.0.0.1:8080");
    assert_string_equal(c->store.path, AOSD_STATEDIR "/aos.db");
    assert_false(c->redis.enabled);
    assert_string_equal(c->plugins.dir, AOSD_PLUGINDIR);
    assert_int_equal(c->plugins.nenable, 0);
    assert_null(c->plugins.enable_file);
    assert_int_equal(c->ntenants, 0);
    assert_int_equal(c->limits.nexempt, 3);
}

static void test_design_limits(void **state)
{
    struct fixture *f = *state;
    const struct aos_conf *c;

    put("aosd.conf", AUTH
        "limits: { read = { per_minute = 300; burst = 60; }; write = { per_minute = 100; burst = 30; };\n"
        "  exempt = [ \"/api/v1/orchestration/\", \"/api/v1/aoa/\", \"/static/\" ]; policy = \"local\"; "
        "redis_fail = \"local\"; };\n");
    c = load_ok(f, "aosd.conf");
    assert_int_equal(c->limits.read.per_minute, 300);
    assert_int_equal(c->limits.write.burst, 30);
    assert_int_equal(c->limits.nexempt, 3);

    put("aosd.conf", AUTH
        "redis: { url = \"unix:///run/redis.sock\"; };\n"
        "limits: { read = { per_minute = 10; burst = 2; }; write = { per_minute = 5; burst = 1; };\n"
        "  exempt = [ \"/healthz\" ]; policy = \"redis\"; redis_fail = \"closed\"; enabled = false; };\n");
    c = load_ok(f, "aosd.conf");
    assert_false(c->limits.enabled);
    assert_int_equal(c->limits.read.per_minute, 10);
    assert_int_equal(c->limits.read.burst, 2);
    assert_int_equal(c->limits.write.per_minute, 5);
    assert_int_equal(c->limits.write.burst, 1);
    assert_int_equal(c->limits.nexempt, 1);
    assert_string_equal(c->limits.exempt[0], "/healthz");
    assert_string_equal(c->limits.policy, "redis");
    assert_string_equal(c->limits.redis_fail, "closed");
}

static void test_aos_testing_disables_limits(void **state)
{
    struct fixture *f = *state;

    put("aosd.conf", AUTH "limits: { enabled = true; };\n");
    assert_true(load_ok(f, "aosd.conf")->limits.enabled);
    setenv("AOS_TESTING", "1", 1);
    assert_false(load_ok(f, "aosd.conf")->limits.enabled);
    unsetenv("AOS_TESTING");
}

/* Placeholders as Makefile.am substitutes them. */
static char *read_substituted(const char *path)
{
    static const char *const subst[][2] = {
        {"@aosplugindir@", "/usr/lib/aos/plugins"},
        {"@aosconfdir@", "/etc/aos"},
        {"@statedir@", "/var/lib/aos"},
        {"@aosdatadir@", "/usr/share/aos"},
    };
    FILE *fp = fopen(path, "r");
    char *in, *out;
    size_t n, o = 0;

    assert_non_null(fp);
    in = calloc(1, 1 << 20);
    out = calloc(1, 1 << 21);
    assert_non_null(in);
    assert_non_null(out);
    n = fread(in, 1, (1 << 20) - 1, fp);
    fclose(fp);
    for (size_t i = 0; i < n;) {
        bool done = false;
        for (size_t k = 0; k < sizeof subst / sizeof subst[0] && !done; k++) {
            size_t kl = strlen(subst[k][0]);
            if (strncmp(in + i, subst[k][0], kl) == 0) {
                o += (size_t)snprintf(out + o, (1 << 21) - o, "%s", subst[k][1]);
                i += kl;
                done = true;
            }
        }
        if (!done)
            out[o++] = in[i++];
    }
    for (size_t k = 0; k < sizeof subst / sizeof subst[0]; k++)
        assert_null(strstr(out, subst[k][0])); /* each one replaced */
    free(in);
    return out;
}

static void test_reference_config(void **state)
{
    struct fixture *f = *state;
    const char *src = getenv("AOS_SRCDIR");
    const struct aos_conf *c;
    const struct aos_conf_plugin_block *b;
    char path[PATH_MAX], *text;

    if (!src)
        skip();
    snprintf(path, sizeof path, "%s/etc/aosd.conf.in", src);
    text = read_substituted(path);
    put("aosd.conf", text);
    free(text);
    c = load_ok(f, "aosd.conf");
    assert_int_equal(c->nfiles, 1);
    assert_string_equal(c->auth.jwt_secret_file, "/etc/aos/jwt.key");
    assert_string_equal(c->plugins.dir, "/usr/lib/aos/plugins");
    assert_string_equal(c->server.data_dir, "/var/lib/aos");
    assert_string_equal(c->store.path, "/var/lib/aos/aos.db");
    assert_true(c->store.auto_migrate);
    assert_int_equal(c->plugins.nenable, 3);
    assert_string_equal(c->plugins.enable[0], "agent-echo");
    assert_string_equal(c->plugins.enable[1], "auth-local");
    assert_string_equal(c->plugins.enable[2], "auth-apikey");
    b = aos_conf_plugin_block(c, "agent-echo");
    assert_non_null(b);
    assert_string_equal(b->name, "agent-echo");
    assert_true(config_setting_is_group(b->setting));
    assert_int_equal(c->ntenants, 1);
    assert_string_equal(c->tenants[0].id, "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f");
    assert_string_equal(c->tenants[0].name, "acme");
    assert_false(c->redis.enabled);
    assert_false(c->chaos.enabled);
    assert_int_equal(c->chaos.nrules, 0);
    /* The reference states the defaults: it must agree with the tables. */
    assert_int_equal(c->server.max_body_size, 1048576);
    assert_int_equal(c->auth.max_concurrent_hashes, c->server.workers / 2);
    assert_int_equal(c->governance.runs_days, 365);
}

/* The shipped tenant example is a valid tenants.d file. */
static void test_tenant_example(void **state)
{
    struct fixture *f = *state;
    const char *src = getenv("AOS_SRCDIR");
    const struct aos_conf *c;
    const struct aos_conf_tenant *t;
    char path[PATH_MAX], *text;

    if (!src)
        skip();
    snprintf(path, sizeof path, "%s/etc/tenants.d/acme.conf.example", src);
    text = read_substituted(path);
    put("tenants.d/acme.conf", text);
    free(text);
    put("aosd.conf", AUTH "plugins: { enable = [ \"agent-echo\" ]; };\n");
    c = load_ok(f, "aosd.conf");
    t = aos_conf_tenant_find(c, "acme");
    assert_non_null(t);
    assert_string_equal(t->file, "tenants.d/acme.conf");
}

static void test_confd_merge(void **state)
{
    struct fixture *f = *state;
    const struct aos_conf *c;

    put("aosd.conf", AUTH "server: { threads = 2; };\n"
                          "limits: { read = { per_minute = 5; }; };\n"
                          "@include \"extra.conf\"\n");
    put("extra.conf", "log: { level = \"debug\"; };\n");
    put("conf.d/10-a.conf", "server: { workers = 8; };\nlimits: { read = { burst = 7; }; };\n");
    put("conf.d/20-b.conf", "limits: { write = { burst = 3; }; };\nlog: { format = \"json\"; };\n");
    put("conf.d/README", "this is not a config file {{{");
    put("conf.d/.hidden.conf", "syntax error {{{");
    put("conf.d/old.conf.dpkg-old", "syntax error {{{");
    assert_int_equal(mkdir("conf.d/dir.conf", 0755), 0);
    c = load_ok(f, "aosd.conf");
    assert_int_equal(c->nfiles, 3);
    assert_string_equal(c->files[1], "conf.d/10-a.conf");
    assert_string_equal(c->files[2], "conf.d/20-b.conf");
    assert_int_equal(c->server.threads, 2);
    assert_int_equal(c->server.workers, 8);
    assert_int_equal(c->auth.max_concurrent_hashes, 4); /* half of workers */
    assert_int_equal(c->limits.read.per_minute, 5);
    assert_int_equal(c->limits.read.burst, 7);
    assert_int_equal(c->limits.write.per_minute, 100);
    assert_int_equal(c->limits.write.burst, 3);
    assert_int_equal(c->log.level, AOS_LVL_DEBUG);
    assert_int_equal(c->log.format, AOS_LOG_JSON);
}

/* @include resolves next to the main file, whatever the working directory. */
static void test_include_relative_to_main(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX];

    put("aosd.conf", "@include \"auth.conf\"\n");
    put("auth.conf", AUTH);
    put("conf.d/a.conf", "server: { threads = 3; };\n");
    snprintf(path, sizeof path, "%s/aosd.conf", f->dir);
    assert_int_equal(chdir("/"), 0);
    load_ok(f, path);
    assert_string_equal(f->conf->auth.jwt_secret_file, "/etc/aos/jwt.key");
    assert_int_equal(f->conf->server.threads, 3);
    assert_int_equal(chdir(f->dir), 0);
}

static void test_tenants_concat_sorted(void **state)
{
    struct fixture *f = *state;
    const struct aos_conf *c;
    static const char *const order[] = {"main", "confd", "upper", "lower", "ten"};

    put("aosd.conf",
        AUTH "tenants = ( { id = \"00000000-0000-4000-8000-000000000001\"; name = \"main\"; } );\n");
    put("conf.d/x.conf",
        "tenants = ( { id = \"00000000-0000-4000-8000-000000000002\"; name = \"confd\"; } );\n");
    /* strcmp order: "10-" < "9-" and "B" < "a", unlike a human sort or most locales. */
    put("tenants.d/a.conf",
        "tenants = ( { id = \"00000000-0000-4000-8000-000000000004\"; name = \"lower\"; } );\n");
    put("tenants.d/B.conf",
        "tenants = ( { id = \"00000000-0000-4000-8000-000000000003\"; name = \"upper\"; } );\n");
    put("tenants.d/b.conf",
        "tenants = ( { id = \"00000000-0000-4000-8000-000000000005\"; name = \"ten\"; } );\n");
    c = load_ok(f, "aosd.conf");
    assert_int_equal(c->ntenants, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(c->tenants[i].name, order[i]);
    assert_string_equal(c->tenants[2].file, "tenants.d/B.conf");
    assert_int_equal(c->tenants[2].line, 1);

    put("conf.d/9-late.conf", "server: { threads = 9; };\n");
    put("conf.d/10-early.conf", "server: { threads = 10; };\n");
    load_fails_with(f, "aosd.conf",
                    "conf.d/9-late.conf:1: server.threads: already set at conf.d/10-early.conf:1");
}

static void test_tenant_overrides(void **state)
{
    struct fixture *f = *state;
    const struct aos_conf_tenant *t;

    put("aosd.conf",
        AUTH "plugins: { enable = [ \"agent-echo\", \"agent-x\" ]; agent-echo = { delay_ms = 5; }; };\n"
             "limits: { read = { per_minute = 50; burst = 5; }; };\n"
             "tenants = ( { id = \"6F1C2A4E-9B7D-4C3A-8E2F-1A2B3C4D5E6F\"; name = \"acme-2\";\n"
             "  limits = { read = { burst = 9; }; write = { per_minute = 7; burst = 2; }; };\n"
             "  plugins = [ \"agent-x\" ]; autonomy = \"autonomous\";\n"
             "  budgets = { tokens_day = 1000; tokens_month = 9000000000L; micro_usd_day = 5000000; "
             "micro_usd_month = 0x7fffffff; };\n"
             "} );\n");
    load_ok(f, "aosd.conf");
    t = aos_conf_tenant_find(f->conf, "acme-2");
    assert_non_null(t);
    assert_string_equal(t->id, "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f");
    assert_true(t->limits_set);
    assert_int_equal(t->read.per_minute, 50); /* inherited */
    assert_int_equal(t->read.burst, 9);
    assert_int_equal(t->write.per_minute, 7);
    assert_int_equal(t->write.burst, 2);
    assert_int_equal(t->nplugins, 1);
    assert_string_equal(t->plugins[0], "agent-x");
    assert_string_equal(t->autonomy, "autonomous");
    assert_int_equal(t->budget_tokens_day, 1000);
    assert_true(t->budget_tokens_month == INT64_C(9000000000));
    assert_int_equal(t->budget_micro_usd_day, 5000000);
    assert_int_equal(t->budget_micro_usd_month, 0x7fffffff);
    assert_ptr_equal(aos_conf_tenant_find(f->conf, "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f"), t);
}

static void test_plugin_blocks(void **state)
{
    struct fixture *f = *state;
    const struct aos_conf_plugin_block *b;
    int v = 0;

    put("aosd.conf", AUTH "plugins: { dir = \"/opt/p\"; enable = [ \"agent-echo\", \"conn_1\" ]; };\n");
    put("conf.d/echo.conf", "plugins: {\n  agent-echo = { delay_ms = 5; anything = \"goes\"; };\n};\n");
    load_ok(f, "aosd.conf");
    assert_int_equal(f->conf->plugins.nblocks, 1);
    b = aos_conf_plugin_block(f->conf, "agent-echo");
    assert_non_null(b);
    assert_string_equal(b->file, "conf.d/echo.conf");
    assert_int_equal(b->line, 2);
    assert_int_equal(config_setting_lookup_int(b->setting, "delay_ms", &v), CONFIG_TRUE);
    assert_int_equal(v, 5);
    assert_null(aos_conf_plugin_block(f->conf, "conn_1"));
}

static void test_store_pgsql_and_types(void **state)
{
    struct fixture *f = *state;
    const struct aos_conf *c;

    put("aosd.conf", AUTH
        "store: { driver = \"pgsql\"; conninfo = \"postgresql://aosd@localhost/aosd\"; pool_size = 8; };\n"
        "server: { listen = [ \"[::1]:8443\", \"*:80\", \"localhost:9000\" ]; header_timeout = 2.5; "
        "body_timeout = 3; idle_timeout = 7L; max_body_size = 2048L; roles = \"worker\"; };\n"
        "chaos: { enabled = true; rules = ( { target = \"plugin:agent-echo\"; fault = \"latency\"; "
        "probability = 0.25; "
        "latency_ms = 5; }, { target = \"http\"; fault = \"error\"; probability = 1; } ); };\n"
        "governance: { retention = { journal_days = 0; idempotency_hours = 1; }; };\n");
    c = load_ok(f, "aosd.conf");
    assert_string_equal(c->store.driver, "pgsql");
    assert_false(c->store.auto_migrate); /* pgsql default */
    assert_int_equal(c->store.pool_size, 8);
    assert_int_equal(c->server.nlisten, 3);
    assert_string_equal(c->server.listen[0].host, "::1");
    assert_int_equal(c->server.listen[0].port, 8443);
    assert_string_equal(c->server.listen[1].host, "0.0.0.0");
    assert_int_equal(c->server.listen[1].port, 80);
    assert_string_equal(c->server.listen[1].text, "*:80");
    assert_string_equal(c->server.listen[2].host, "localhost");
    assert_true(c->server.header_timeout == 2.5);
    assert_true(c->server.body_timeout == 3.0);
    assert_true(c->server.idle_timeout == 7.0);
    assert_int_equal(c->server.max_body_size, 2048);
    assert_string_equal(c->server.roles, "worker");
    assert_true(c->chaos.enabled);
    assert_int_equal(c->chaos.nrules, 2);
    assert_string_equal(c->chaos.rules[0].target, "plugin:agent-echo");
    assert_string_equal(c->chaos.rules[0].fault, "latency");
    assert_true(c->chaos.rules[0].probability == 0.25);
    assert_int_equal(c->chaos.rules[0].latency_ms, 5);
    assert_string_equal(c->chaos.rules[1].fault, "error");
    assert_true(c->chaos.rules[1].probability == 1.0);
    assert_int_equal(c->governance.journal_days, 0);
    assert_int_equal(c->governance.events_days, 30);
    assert_int_equal(c->governance.idempotency_hours, 1);

    put("aosd.conf", AUTH "store: { driver = \"pgsql\"; conninfo = \"x\"; auto_migrate = true; };\n");
    c = load_ok(f, "aosd.conf");
    assert_true(c->store.auto_migrate);
    assert_true(c->store.auto_migrate_set);
}

/* ------------------------------------------------------------- bad files */

static void test_unknown_setting(void **state)
{
    struct fixture *f = *state;

    put("aosd.conf", AUTH "server: {\n  listne = [ \"127.0.0.1:1\" ];\n};\nloglevel = 3;\n");
    load_fails_with(f, "aosd.conf", "aosd.conf:3: server.listne: unknown setting (did you mean 'listen'?)");
    assert_has_error(f, "aosd.conf:5: loglevel: unknown setting");
    put("aosd.conf",
        AUTH "tenants = ( { id = \"6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f\"; name = \"a\"; nmae = 1; } );\n");
    load_fails_with(f, "aosd.conf", "aosd.conf:2: tenants[0].nmae: unknown setting (did you mean 'name'?)");
    put("aosd.conf", AUTH "plugins: { enable = [ \"a\" ]; enabled = [ \"b\" ]; };\n");
    load_fails_with(f, "aosd.conf", "aosd.conf:2: plugins.enabled: unknown setting (did you mean 'enable'?)");
}

static void test_wrong_type(void **state)
{
    struct fixture *f = *state;

    put("aosd.conf",
        AUTH "server: { threads = \"2\"; header_timeout = \"10s\"; listen = \"127.0.0.1:80\"; };\n"
             "limits: { enabled = 1; read = 5; };\n"
             "plugins: { enable = ( \"a\" ); };\n"
             "log: { level = 2; };\n"
             "tenants = { id = \"x\"; };\n"
             "governance: { retention = { journal_days = 1.5; }; };\n");
    load_fails_with(f, "aosd.conf", "aosd.conf:2: server.threads: expected an integer, got a string");
    assert_has_error(f,
                     "aosd.conf:2: server.header_timeout: expected a duration in seconds (integer or float), "
                     "got a string");
    assert_has_error(
        f, "aosd.conf:2: server.listen: expected an array of strings: [ \"127.0.0.1:8080\" ], got a "
           "string");
    assert_has_error(f, "aosd.conf:3: limits.enabled: expected a boolean (true or false), got an integer");
    assert_has_error(f, "aosd.conf:3: limits.read: expected a group: { ... }, got an integer");
    assert_has_error(
        f, "aosd.conf:4: plugins.enable: expected an array of strings: [ \"a\", \"b\" ], got a list");
    assert_has_error(f, "aosd.conf:5: log.level: expected a string, got an integer");
    assert_has_error(f, "aosd.conf:6: tenants: expected a list of groups: ( { ... }, { ... } ), got a group");
    assert_has_error(f, "aosd.conf:7: governance.retention.journal_days: expected an integer, got a float");
    assert_int_equal(f->errs.n, 9); /* all of them, at once */
}

static void test_out_of_range(void **state)
{
    struct fixture *f = *state;

    put("aosd.conf",
        "server: { max_body_size = 512; threads = 65; workers = 0; drain_timeout = 0; idle_timeout = -1.5; "
        "};\n"
        "auth: { jwt_secret_file = \"/k\"; password_min_length = 7; argon2 = { parallelism = 4; m_cost_kib = "
        "16; }; };\n"
        "log: { format = \"xml\"; };\n"
        "chaos: { rules = ( { target = \"disk\"; fault = \"error\"; probability = 1.5; } ); };\n");
    load_fails_with(f, "aosd.conf",
                    "aosd.conf:1: server.max_body_size: 512 is out of range (1024..1073741824)");
    assert_has_error(f, "aosd.conf:1: server.threads: 65 is out of range (1..64)");
    assert_has_error(f, "aosd.conf:1: server.workers: 0 is out of range (1..256)");
    assert_has_error(f, "aosd.conf:1: server.drain_timeout: 0 s is out of range (> 0 and <= 3600)");
    assert_has_error(f, "aosd.conf:1: server.idle_timeout: -1.5 s is out of range (> 0 and <= 86400)");
    assert_has_error(f, "aosd.conf:2: auth.password_min_length: 7 is out of range (8..1024)");
    assert_has_error(
        f, "aosd.conf:2: auth.argon2.m_cost_kib: 16 KiB is below 8 * parallelism (32 KiB), the Argon2 "
           "minimum");
    assert_has_error(f, "aosd.conf:3: log.format: \"xml\" is not one of \"text\", \"json\"");
    assert_has_error(f, "aosd.conf:4: chaos.rules[0].target: \"disk\": expected \"http\", \"store\" or "
                        "\"plugin:<name>\"");
    assert_has_error(f, "aosd.conf:4: chaos.rules[0].probability: 1.5 is out of range (0..1)");
    assert_int_equal(f->errs.n, 10);
}

static void test_bad_listen(void **state)
{
    struct fixture *f = *state;

    put("aosd.conf", AUTH "server: { listen = [\n"
                          "  \"::1:8080\",\n"
                          "  \"127.0.0.1:0\",\n"
                          "  \"127.0.0.1:65536\",\n"
                          "  \"127.0.0.1\",\n"
                          "  \":80\",\n"
                          "  \"[::1:80\",\n"
                          "  \"[fe80::zz]:80\",\n"
                          "  \"*:80\", \"*:80\" ]; };\n");
    load_fails_with(f, "aosd.conf",
                    "aosd.conf:3: server.listen[0]: \"::1:8080\": an IPv6 address needs brackets: "
                    "\"[::1]:8080\"");
    assert_has_error(f, "aosd.conf:4: server.listen[1]: \"127.0.0.1:0\": port must be 1..65535");
    assert_has_error(f, "aosd.conf:5: server.listen[2]: \"127.0.0.1:65536\": port must be 1..65535");
    assert_has_error(
        f, "aosd.conf:6: server.listen[3]: \"127.0.0.1\": expected \"host:port\", \"[IPv6]:port\" or "
           "\"*:port\"");
    assert_has_error(
        f, "aosd.conf:7: server.listen[4]: \":80\": missing host (use \"*:port\" for every address)");
    assert_has_error(f, "aosd.conf:8: server.listen[5]: \"[::1:80\": expected \"[IPv6]:port\"");
    assert_has_error(
        f, "aosd.conf:9: server.listen[6]: \"[fe80::zz]:80\": not an IPv6 address between the brackets");
    assert_has_error(f, "aosd.conf:10: server.listen[8]: \"*:80\": same address as \"*:80\"");
    assert_int_equal(f->errs.n, 8);

    put("aosd.conf", AUTH "server: { listen = [ ]; };\n");
    load_fails_with(f, "aosd.conf", "aosd.conf:2: server.listen: needs at least one address");
}

static void test_bad_tenants(void **state)
{
    struct fixture *f = *state;

    put("aosd.conf",
        AUTH "tenants = (\n"
             "  { id = \"6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f\"; name = \"acme\"; },\n"
             "  { id = \"6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6\"; name = \"Acme\"; },\n"
             "  { id = \"00000000-0000-0000-0000-000000000000\"; name = \"-acme\"; autonomy = \"full\"; },\n"
             "  { name = \"noid\"; },\n"
             "  { id = \"11111111-2222-4333-8444-555555555555\"; plugins = [ \"agent-echo\" ]; }\n"
             ");\n");
    load_fails_with(f, "aosd.conf",
                    "aosd.conf:4: tenants[1].id: \"6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6\" is not a "
                    "UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
    assert_has_error(f,
                     "aosd.conf:4: tenants[1].name: \"Acme\": a tenant name matches [a-z0-9][a-z0-9-]{0,62}");
    assert_has_error(f, "aosd.conf:5: tenants[2].id: the nil UUID is not a valid id");
    assert_has_error(
        f, "aosd.conf:5: tenants[2].name: \"-acme\": a tenant name matches [a-z0-9][a-z0-9-]{0,62}");
    assert_has_error(f,
                     "aosd.conf:5: tenants[2].autonomy: \"full\" is not one of \"observe\", \"supervised\", "
                     "\"autonomous\"");
    assert_has_error(f, "aosd.conf:6: tenants[3].id: required");
    assert_has_error(f, "aosd.conf:7: tenants[4].name: required");
    assert_has_error(f, "aosd.conf:7: tenants[4].plugins[0]: \"agent-echo\" is not in plugins.enable");
    assert_int_equal(f->errs.n, 8);
}

static void test_duplicate_tenants(void **state)
{
    struct fixture *f = *state;

    put("aosd.conf",
        AUTH "tenants = ( { id = \"6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f\"; name = \"acme\"; } );\n");
    put("tenants.d/b.conf", "tenants = (\n"
                            "  { id = \"6F1C2A4E-9B7D-4C3A-8E2F-1A2B3C4D5E6F\"; name = \"other\"; },\n"
                            "  { id = \"11111111-2222-4333-8444-555555555555\";\n"
                            "    name = \"acme\"; }\n"
                            ");\n");
    load_fails_with(f, "aosd.conf",
                    "tenants.d/b.conf:2: tenants[0].id: duplicate tenant id "
                    "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f (first declared at aosd.conf:2)");
    assert_has_error(f,
                     "tenants.d/b.conf:4: tenants[1].name: duplicate tenant name \"acme\" (first declared at "
                     "aosd.conf:2)");
    assert_int_equal(f->errs.n, 2);
}

static void test_duplicate_across_files(void **state)
{
    struct fixture *f = *state;

    put("aosd.conf", AUTH "limits: {\n"
                          "  read = { per_minute = 10; };\n"
                          "};\n"
                          "plugins: { enable = [ \"agent-echo\" ]; agent-echo = { a = 1; }; };\n");
    put("conf.d/a.conf", "auth: { token_ttl = 60; };\n");
    put("conf.d/b.conf", "# comment\n"
                         "auth: { token_ttl = 120; };\n"
                         "limits: { read = {\n"
                         "  per_minute = 20; }; };\n"
                         "plugins: { agent-echo = { b = 2; }; };\n"
                         "tenants = ( );\n");
    load_fails_with(f, "aosd.conf", "conf.d/b.conf:2: auth.token_ttl: already set at conf.d/a.conf:1");
    assert_has_error(f, "conf.d/b.conf:4: limits.read.per_minute: already set at aosd.conf:3");
    assert_has_error(f, "conf.d/b.conf:5: plugins.agent-echo: already set at aosd.conf:5");
    assert_int_equal(f->errs.n, 3);
}

static void test_syntax_error(void **state)
{
    struct fixture *f = *state;

    put("aosd.conf", AUTH "server: {\n  threads = 2;\n  workers = = 3;\n};\n");
    load_fails_with(f, "aosd.conf", "aosd.conf:4: syntax error");
    assert_int_equal(f->errs.n, 1);

    /* Errors in other files are still reported; required checks are skipped. */
    put("aosd.conf", AUTH "@include \"missing.conf\"\n");
    put("conf.d/a.conf", "server: { threads = 0; };\n");
    put("conf.d/b.conf", "server: { = 1; };\n");
    load_fails_with(f, "aosd.conf", "aosd.conf:2: syntax error: cannot open include file");
    assert_has_error(f, "conf.d/a.conf:1: server.threads: 0 is out of range (1..64)");
    assert_has_error(f, "conf.d/b.conf:1: syntax error");
    assert_int_equal(f->errs.n, 3);
}

static void test_missing_files(void **state)
{
    struct fixture *f = *state;

    load_fails_with(f, "nope.conf", "nope.conf: cannot read: No such file or directory");
    assert_int_equal(f->errs.n, 1);
    assert_int_equal(mkdir("adir", 0755), 0);
    load_fails_with(f, "adir", "adir: cannot read: Is a directory");
    /* errs is optional */
    assert_null(aos_conf_load("nope.conf", NULL));
}

static void test_required_and_cross_rules(void **state)
{
    struct fixture *f = *state;

    put("aosd.conf", "server: { threads = 2; };\n");
    load_fails_with(f, "aosd.conf",
                    "aosd.conf: auth.jwt_secret_file: required (path of a file holding >= 32 "
                    "random bytes)");
    assert_int_equal(f->errs.n, 1);

    put("aosd.conf", "auth: { jwt_secret_file = \"\"; };\n");
    load_fails_with(f, "aosd.conf", "aosd.conf:1: auth.jwt_secret_file: must not be empty");

    put("aosd.conf", AUTH "store: {\n  driver = \"pgsql\";\n};\n");
    load_fails_with(f, "aosd.conf",
                    "aosd.conf:3: store.conninfo: required when store.driver = \"pgsql\" (e.g. "
                    "\"postgresql://aosd@localhost/aosd\")");
    assert_int_equal(f->errs.n, 1);

    put("aosd.conf", "auth: { jwt_secret_file = \"/k\"; };\n"
                     "plugins: { enable = [ \"agent-echo\" ];\n"
                     "  agent-ohce = { delay_ms = 5; };\n"
                     "};\n"
                     "limits: { policy = \"redis\"; };\n"
                     "redis: { connect_timeout = 1; };\n");
    put("conf.d/reg.conf", "\nauth: { registration = \"open\"; };\n");
    load_fails_with(f, "aosd.conf",
                    "aosd.conf:3: plugins.agent-ohce: block for a plugin that is not enabled (add "
                    "\"agent-ohce\" to plugins.enable or remove the block)");
    assert_has_error(f, "aosd.conf:5: limits.policy: \"redis\" needs redis.url to be set");
    assert_has_error(f,
                     "aosd.conf:6: redis.url: required when the redis group is used (redis://host:port/db or "
                     "unix:///path)");
    assert_has_error(
        f, "conf.d/reg.conf:2: auth.registration_tenant: required when auth.registration = \"open\" (the "
           "tenant new users join, by name or id)");
    assert_int_equal(f->errs.n, 4);

    assert_int_equal(unlink("conf.d/reg.conf"), 0);
    put("aosd.conf", AUTH "plugins: { enable = [ \"Agent\", \"a\", \"a\" ]; x = 1; };\n"
                          "redis: { url = \"http://x\"; };\n");
    load_fails_with(f, "aosd.conf",
                    "aosd.conf:2: plugins.enable[0]: \"Agent\": a plugin name starts with [a-z0-9]");
    assert_has_error(f, "aosd.conf:2: plugins.enable[2]: \"a\" is listed twice");
    assert_has_error(f,
                     "aosd.conf:2: plugins.x: unknown setting (besides 'dir' and 'enable', plugins holds one "
                     "group per plugin: agent-echo = { ... };)");
    assert_has_error(f, "aosd.conf:3: redis.url: \"http://x\": expected redis://host:port/db or "
                        "unix:///path/to/socket");
    assert_int_equal(f->errs.n, 4);
}

static void test_int64_without_l(void **state)
{
    struct fixture *f = *state;

    put("aosd.conf", AUTH "server: { max_body_size = 4294967296; };\n"
                          "limits: { read = { per_minute = 9000000000; }; write = { per_minute = 5; }; };\n"
                          "tenants = ( { id = \"6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f\"; name = \"acme\";\n"
                          "  budgets = { tokens_day = 9000000000; tokens_month = 9000000000L; micro_usd_day "
                          "= -3000000000; }; } );\n");
    load_fails_with(f, "aosd.conf",
                    "aosd.conf:2: server.max_body_size: 4294967296 does not fit in 32 bits and "
                    "libconfig 1.5 truncates it silently: write 4294967296L");
    assert_has_error(
        f, "aosd.conf:3: limits.read.per_minute: 9000000000 does not fit in 32 bits and libconfig 1.5 "
           "truncates it silently: write 9000000000L");
    assert_has_error(f, "aosd.conf:5: tenants[0].budgets.tokens_day: 9000000000 does not fit in 32 bits and "
                        "libconfig 1.5 truncates it silently: write 9000000000L");
    assert_has_error(f,
                     "aosd.conf:5: tenants[0].budgets.micro_usd_day: -3000000000 does not fit in 32 bits and "
                     "libconfig 1.5 truncates it silently: write -3000000000L");
    /* write.per_minute = 5 shares the line but is fine; tokens_month has its L. */
    assert_int_equal(f->errs.n, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_design_minimal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_only_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_design_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aos_testing_disables_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_example, setup, teardown),
        cmocka_unit_test_setup_teardown(test_confd_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_include_relative_to_main, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenants_concat_sorted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_overrides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_pgsql_and_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_setting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_listen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_tenants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_tenants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_across_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_required_and_cross_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int64_without_l, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
