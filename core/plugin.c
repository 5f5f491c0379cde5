#include "config.h"

#include "plugin.h"

#include "conf.h"
#include "log.h"
#include "pii/pii.h"
#include "store/ops.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Room for one set_error() message; longer ones are truncated. */
#define CTX_ERR_MAX 512
#define PLUGIN_NAME_MAX 63
/* A settings array without its AOS_SETTINGS_END would be read forever. */
#define SETTINGS_MAX 256
/* Larger instances are far more likely a garbage size than a real need. */
#define INSTANCE_SIZE_MAX ((size_t)16 << 20)

/* The descriptor as ABI 1.0 laid it out.  Later minors only append, so this
 * stays the minimum a 1.x plugin may declare whatever the host's minor. */
#define DESC_SIZE_1_0 (offsetof(struct aos_plugin, reserved) + sizeof(((struct aos_plugin *)0)->reserved))

/* Bytes an ops table must span to include member `m`. */
#define OPS_SPAN(type, m) (offsetof(type, m) + sizeof(((type *)0)->m))

struct aos_ctx {
    const struct aos_plugin_instance *plugin;
    char err[CTX_ERR_MAX];
};

struct aos_plugin_instance {
    char *name;
    char *path;
    void *dl;
    /* Host-side copies, zero-padded: members beyond the size the plugin
     * declared read as NULL/0, which is how older minors stay loadable. */
    struct aos_plugin desc;
    union {
        struct aos_agent_ops agent;
        struct aos_connector_ops connector;
        struct aos_auth_ops auth;
    } ops;
    void *instance;
    char **strings; /* STRING setting values, freed after fini() */
    size_t nstrings;
    bool serialise;
    bool initialised;
    pthread_mutex_t lock;
};

struct aos_plugin_set {
    struct aos_plugin_instance **items;
    size_t n;
};

struct loader {
    const struct aos_conf *conf;
    struct aos_conf_errors *errs;
    char *where; /* "enabled at FILE:LINE" */
    size_t nrefused;
};

/* ------------------------------------------------------------------ */
/* Host API table                                                     */
/* ------------------------------------------------------------------ */

static void host_log(struct aos_ctx *ctx, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void host_set_error(struct aos_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void host_log(struct aos_ctx *ctx, int level, const char *fmt, ...)
{
    if (fmt == NULL)
        return;
    if (level < AOS_LOG_ERROR)
        level = AOS_LOG_ERROR;
    if (level > AOS_LOG_DEBUG)
        level = AOS_LOG_DEBUG;
    const char *src = ctx != NULL && ctx->plugin != NULL ? ctx->plugin->name : "plugin";
    va_list ap;
    va_start(ap, fmt);
    aos_logfv(level, src, fmt, ap);
    va_end(ap);
}

static void host_set_error(struct aos_ctx *ctx, const char *fmt, ...)
{
    if (ctx == NULL || fmt == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    /* Truncation is acceptable: the message is a diagnostic. */
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    /* Messages end up in one-line logs and API errors. */
    for (char *c = ctx->err; *c != '\0'; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
}

static void *host_alloc(size_t size) { return malloc(size != 0 ? size : 1); }

static void host_free(void *ptr) { free(ptr); }

static char *host_strndup(const char *s, size_t n) { return s != NULL ? strndup(s, n) : NULL; }

/* ---- 1.1: store lookups for auth backends ---- */

/* Set by main (aos_plugin_host_attach_store); read by worker threads. */
static _Atomic(struct aos_store *) host_store;

void aos_plugin_host_attach_store(struct aos_store *store) { atomic_store(&host_store, store); }

/* Room for store error messages handed on through set_error(). */
#define STORE_ERR_MAX 256

/* The records as ABI 1.1 (their first version) laid them out: the least a
 * plugin may declare, whatever the host's minor. */
#define USER_RECORD_SIZE_1_1 OPS_SPAN(struct aos_user_record, password_hash)
#define APIKEY_RECORD_SIZE_1_1 OPS_SPAN(struct aos_apikey_record, expires_at_ms)

/* Checks the size the plugin declared in the record's first member and
 * zeroes that many bytes (members the host does not know read as 0). */
static int record_open(struct aos_ctx *ctx, void *out, size_t min, const char *fn, const char *type)
{
    uint32_t size;

    if (out == NULL) {
        host_set_error(ctx, "%s: no %s to fill", fn, type);
        return -1;
    }
    memcpy(&size, out, sizeof size);
    if (size < min) {
        host_set_error(ctx,
                       "%s: %s declares %" PRIu32 " bytes, ABI %d.%d needs at least %zu: set "
                       "out->size = sizeof(%s) before the call",
                       fn, type, size, AOS_ABI_MAJOR, AOS_ABI_MINOR, min, type);
        return -1;
    }
    memset(out, 0, size);
    memcpy(out, &size, sizeof size); /* record_close() reads it back */
    return 0;
}

/* Copies the host's full record into the plugin's (whose declared size
 * record_open() checked) and reports how much was filled. */
static void record_close(void *out, const void *full, size_t full_size)
{
    uint32_t size;

    memcpy(&size, out, sizeof size);
    uint32_t filled = size < full_size ? size : (uint32_t)full_size;
    memcpy(out, full, filled);
    memcpy(out, &filled, sizeof filled);
}

/* A store string into a fixed record member; false if it does not fit
 * (never truncated: a cut hash or id would be wrong, not shorter). */
static bool field_set(char *dst, size_t size, const char *src)
{
    size_t len = src != NULL ? strlen(src) : 0;

    if (len >= size)
        return false;
    memcpy(dst, src != NULL ? src : "", len);
    dst[len] = '\0';
    return true;
}

static struct aos_store *lookup_store(struct aos_ctx *ctx, const char *fn)
{
    struct aos_store *store = atomic_load(&host_store);

    if (store == NULL)
        host_set_error(ctx, "%s: no store", fn);
    return store;
}

struct user_lookup_arg {
    const char *tenant_id;
    const char *email;
    struct aos_user user;
    int matches;
};

static int user_lookup_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct user_lookup_arg *a = arg;

    aos_user_clear(&a->user); /* the transaction may run again */
    return aos_store_user_find_login(tx, a->tenant_id, a->email, &a->user, &a->matches, err, errlen);
}

static int host_user_lookup(struct aos_ctx *ctx, const char *tenant_id, const char *email,
                            struct aos_user_record *out)
{
    struct user_lookup_arg a = {.tenant_id = tenant_id, .email = email};
    struct aos_user_record rec = {.size = sizeof rec};
    char err[STORE_ERR_MAX] = "";
    int result = AOS_LOOKUP_ERROR;

    if (record_open(ctx, out, USER_RECORD_SIZE_1_1, "user_lookup", "struct aos_user_record") < 0)
        return AOS_LOOKUP_ERROR;
    struct aos_store *store = lookup_store(ctx, "user_lookup");
    if (store == NULL)
        return AOS_LOOKUP_ERROR;
    if (email == NULL || email[0] == '\0')
        return AOS_LOOKUP_NOT_FOUND;

    int rc = aos_store_transact(store, false, user_lookup_tx, &a, err, sizeof err);
    if (rc == AOS_DB_NOT_FOUND) {
        result = a.matches > 1 ? AOS_LOOKUP_AMBIGUOUS : AOS_LOOKUP_NOT_FOUND;
        goto out;
    }
    if (rc != AOS_DB_OK) {
        host_set_error(ctx, "user lookup failed: %s: %s", aos_db_status_name(rc), err);
        goto out;
    }
    if (!field_set(rec.id, sizeof rec.id, a.user.id) ||
        !field_set(rec.tenant_id, sizeof rec.tenant_id, a.user.tenant_id) ||
        !field_set(rec.role, sizeof rec.role, a.user.role) ||
        !field_set(rec.password_hash, sizeof rec.password_hash, a.user.password_hash)) {
        host_set_error(ctx,
                       "user lookup: a stored value of user %s does not fit the ABI record "
                       "(password hash longer than %d bytes?)",
                       a.user.id, AOS_PASSWORD_HASH_MAX - 1);
        goto out;
    }
    record_close(out, &rec, sizeof rec);
    result = AOS_LOOKUP_FOUND;
out:
    explicit_bzero(&rec, sizeof rec);
    aos_user_clear(&a.user);
    return result;
}

struct apikey_lookup_arg {
    const char *prefix;
    struct aos_api_key key;
    bool tenant_active;
};

static int apikey_lookup_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct apikey_lookup_arg *a = arg;
    struct aos_tenant t;

    aos_api_key_clear(&a->key); /* the transaction may run again */
    a->tenant_active = false;
    int rc = aos_store_apikey_get_by_prefix(tx, a->prefix, &a->key, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    /* The store op leaves the tenant check to its caller (ops.h). */
    rc = aos_store_tenant_get(tx, a->key.tenant_id, &t, err, errlen);
    if (rc == AOS_DB_OK)
        a->tenant_active = t.active;
    aos_tenant_clear(&t);
    return rc;
}

static int host_apikey_lookup(struct aos_ctx *ctx, const char *prefix, struct aos_apikey_record *out)
{
    struct apikey_lookup_arg a = {.prefix = prefix};
    struct aos_apikey_record rec = {.size = sizeof rec};
    char err[STORE_ERR_MAX] = "";
    int result = AOS_LOOKUP_ERROR;

    if (record_open(ctx, out, APIKEY_RECORD_SIZE_1_1, "apikey_lookup", "struct aos_apikey_record") < 0)
        return AOS_LOOKUP_ERROR;
    struct aos_store *store = lookup_store(ctx, "apikey_lookup");
    if (store == NULL)
        return AOS_LOOKUP_ERROR;
    if (prefix == NULL || prefix[0] == '\0')
        return AOS_LOOKUP_NOT_FOUND;

    int rc = aos_store_transact(store, false, apikey_lookup_tx, &a, err, sizeof err);
    if (rc == AOS_DB_NOT_FOUND || (rc == AOS_DB_OK && !a.tenant_active)) {
        result = AOS_LOOKUP_NOT_FOUND;
        goto out;
    }
    if (rc != AOS_DB_OK) {
        host_set_error(ctx, "API key lookup failed: %s: %s", aos_db_status_name(rc), err);
        goto out;
    }
    if (!field_set(rec.id, sizeof rec.id, a.key.id) ||
        !field_set(rec.tenant_id, sizeof rec.tenant_id, a.key.tenant_id) ||
        !field_set(rec.user_id, sizeof rec.user_id, a.key.user_id) ||
        !field_set(rec.role, sizeof rec.role, a.key.role) ||
        !field_set(rec.secret_hash, sizeof rec.secret_hash, a.key.secret_hash)) {
        host_set_error(ctx, "API key lookup: a stored value of key %s does not fit the ABI record", a.key.id);
        goto out;
    }
    rec.expires_at_ms = a.key.expires_at;
    record_close(out, &rec, sizeof rec);
    result = AOS_LOOKUP_FOUND;
out:
    explicit_bzero(&rec, sizeof rec);
    aos_api_key_clear(&a.key);
    return result;
}

/* ---- 1.2: PII redaction ---- */

/* Set by main (aos_plugin_host_attach_pii); read by worker threads. */
static _Atomic(const struct aos_pii *) host_pii;

void aos_plugin_host_attach_pii(const struct aos_pii *pii) { atomic_store(&host_pii, pii); }

static int host_pii_redact(struct aos_ctx *ctx, const char *text, size_t len, char **out, size_t *out_len)
{
    if (out == NULL || out_len == NULL) {
        host_set_error(ctx, "pii_redact: no output to fill");
        return -1;
    }
    *out = NULL;
    *out_len = 0;
    if (text == NULL && len > 0) {
        host_set_error(ctx, "pii_redact: NULL text of %zu bytes", len);
        return -1;
    }
    const struct aos_pii *pii = atomic_load(&host_pii);
    if (pii == NULL) {
        host_set_error(ctx, "no PII engine");
        return -1;
    }
    char *red = NULL;
    size_t red_len = 0;
    /* anonymize (not redact_all) so the caller learns why it failed. */
    int rc = aos_pii_anonymize(pii, text != NULL ? text : "", len, NULL, &red, &red_len, NULL, NULL);
    if (rc != AOS_PII_OK) {
        host_set_error(ctx, "PII redaction failed: %s", aos_pii_strerror(rc));
        return -1;
    }
    /* The engine allocates with malloc, which is what host->alloc is; the
     * plugin may therefore release the buffer with host->free. */
    *out = red;
    *out_len = red_len;
    return 0;
}

static const struct aos_host host_table = {
    .size = sizeof(struct aos_host),
    .abi_major = AOS_ABI_MAJOR,
    .abi_minor = AOS_ABI_MINOR,
    .host_version = PACKAGE_VERSION,
    .log = host_log,
    .set_error = host_set_error,
    .alloc = host_alloc,
    .free = host_free,
    .strndup = host_strndup,
    .user_lookup = host_user_lookup,
    .apikey_lookup = host_apikey_lookup,
    .pii_redact = host_pii_redact,
};

const struct aos_host *aos_plugin_host(void) { return &host_table; }

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static char *vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static char *format(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    return s;
}

static void copy_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

const char *aos_plugin_kind_name(int kind)
{
    switch (kind) {
    case AOS_PLUGIN_AGENT:
        return "agent";
    case AOS_PLUGIN_CONNECTOR:
        return "connector";
    case AOS_PLUGIN_AUTH:
        return "auth";
    default:
        return "unknown";
    }
}

static const char *setting_type_name(unsigned type)
{
    switch (type) {
    case AOS_SETTING_BOOL:
        return "a boolean (true or false)";
    case AOS_SETTING_INT:
        return "an integer";
    case AOS_SETTING_DOUBLE:
        return "a number";
    case AOS_SETTING_STRING:
        return "a string";
    default:
        return "an unknown type";
    }
}

static const char *config_type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a floating-point number";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    default:
        return "an unknown value";
    }
}

/* [a-z0-9][a-z0-9-]{0,62}: safe as a file name, a config key and a log field. */
static bool valid_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > PLUGIN_NAME_MAX || name[0] == '-')
        return false;
    for (const char *c = name; *c != '\0'; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
            return false;
    return true;
}

static const struct aos_plugin_instance *find_in(const struct aos_plugin_set *set, const char *name)
{
    if (set == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->items[i]->name, name) == 0)
            return set->items[i];
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Refusals                                                           */
/* ------------------------------------------------------------------ */

static void refuse(struct loader *ld, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One line per refusal: "<file> (enabled at <conf>:<line>): <reason>: <fix>",
 * appended to errs and logged. */
static void refuse(struct loader *ld, const char *path, const char *fmt, ...)
{
    ld->nrefused++;
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    char *line = msg != NULL ? format("%s (%s): %s", path, ld->where, msg) : NULL;
    free(msg);
    if (line == NULL) {
        aos_log(AOS_LVL_ERROR, "plugin refused (out of memory describing why)", "file", path, NULL);
        return;
    }
    aos_log(AOS_LVL_ERROR, "plugin refused", "error", line, NULL);
    if (ld->errs != NULL) {
        char **grown = realloc(ld->errs->lines, (ld->errs->n + 1) * sizeof *grown);
        if (grown != NULL) {
            ld->errs->lines = grown;
            ld->errs->lines[ld->errs->n++] = line;
            return;
        }
    }
    free(line);
}

/* ------------------------------------------------------------------ */
/* Settings                                                           */
/* ------------------------------------------------------------------ */

union setting_value {
    int b;
    int64_t i;
    double d;
    const char *s;
};

static size_t setting_field_size(unsigned type)
{
    switch (type) {
    case AOS_SETTING_BOOL:
        return sizeof(int);
    case AOS_SETTING_INT:
        return sizeof(int64_t);
    case AOS_SETTING_DOUBLE:
        return sizeof(double);
    case AOS_SETTING_STRING:
        return sizeof(const char *);
    default:
        return 0;
    }
}

static bool range_active(const struct aos_setting *st)
{
    return st->min <= st->max && !(st->min == 0 && st->max == 0);
}

static int parse_default(const struct aos_setting *st, union setting_value *v)
{
    memset(v, 0, sizeof *v);
    const char *t = st->default_value;
    if (t == NULL)
        return 0;
    char *end = NULL;
    switch (st->type) {
    case AOS_SETTING_BOOL:
        if (strcasecmp(t, "true") == 0)
            v->b = 1;
        else if (strcasecmp(t, "false") == 0)
            v->b = 0;
        else
            return -1;
        return 0;
    case AOS_SETTING_INT: {
        /* libconfig takes decimal or 0x hex, never octal. */
        bool hex = (t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) ||
                   (t[0] == '-' && t[1] == '0' && (t[2] == 'x' || t[2] == 'X'));
        errno = 0;
        long long n = strtoll(t, &end, hex ? 16 : 10);
        if (errno != 0 || end == t || *end != '\0')
            return -1;
        v->i = n;
        return 0;
    }
    case AOS_SETTING_DOUBLE:
        errno = 0;
        v->d = strtod(t, &end);
        if (errno != 0 || end == t || *end != '\0')
            return -1;
        return 0;
    case AOS_SETTING_STRING:
        v->s = t;
        return 0;
    default:
        return -1;
    }
}

/* Describes why `v` is outside the setting's range, or returns NULL.
 * Secret values are never echoed. */
static char *range_error(const struct aos_setting *st, const union setting_value *v)
{
    if (!range_active(st))
        return NULL;
    bool secret = (st->flags & AOS_SETTING_SECRET) != 0;
    switch (st->type) {
    case AOS_SETTING_INT:
        if (v->i >= st->min && v->i <= st->max)
            return NULL;
        if (secret)
            return format("value is out of range %" PRId64 "..%" PRId64, st->min, st->max);
        return format("%" PRId64 " is out of range %" PRId64 "..%" PRId64, v->i, st->min, st->max);
    case AOS_SETTING_DOUBLE:
        if (v->d >= (double)st->min && v->d <= (double)st->max)
            return NULL;
        if (secret)
            return format("value is out of range %" PRId64 "..%" PRId64, st->min, st->max);
        return format("%g is out of range %" PRId64 "..%" PRId64, v->d, st->min, st->max);
    case AOS_SETTING_STRING: {
        if (v->s == NULL)
            return NULL;
        size_t len = strlen(v->s);
        if ((st->min < 0 || len >= (uint64_t)st->min) && (st->max < 0 || len <= (uint64_t)st->max))
            return NULL;
        return format("length %zu is out of range %" PRId64 "..%" PRId64 " bytes", len, st->min, st->max);
    }
    default:
        return NULL;
    }
}

/* Checks the plugin's own schema; every problem found is a bug in the
 * plugin, reported as such.  Returns the number of settings or -1. */
static int check_schema(struct loader *ld, const struct aos_plugin_instance *p)
{
    const struct aos_setting *s = p->desc.settings;
    if (s == NULL)
        return 0;
    int bad = 0, n = 0;
    for (; n < SETTINGS_MAX && s[n].name != NULL; n++) {
        const struct aos_setting *st = &s[n];
        size_t fsize = setting_field_size(st->type);
        if (fsize == 0) {
            refuse(ld, p->path,
                   "settings schema: setting \"%s\" has unknown type %u (ABI 1.0 knows 1..4): "
                   "fix the plugin's settings table",
                   st->name, st->type);
            bad = 1;
            continue;
        }
        if (st->offset > p->desc.instance_size || fsize > p->desc.instance_size - st->offset) {
            refuse(ld, p->path,
                   "settings schema: setting \"%s\" (offset %zu, %zu bytes) lies outside the "
                   "%zu-byte instance: fix .instance_size or the setting's offset in the plugin",
                   st->name, st->offset, fsize, p->desc.instance_size);
            bad = 1;
        }
        for (int j = 0; j < n; j++)
            if (strcmp(s[j].name, st->name) == 0) {
                refuse(ld, p->path,
                       "settings schema: setting \"%s\" is declared twice: fix the plugin's "
                       "settings table",
                       st->name);
                bad = 1;
                break;
            }
        if ((st->flags & AOS_SETTING_REQUIRED) != 0) {
            if (st->default_value != NULL) {
                refuse(ld, p->path,
                       "settings schema: setting \"%s\" is required but has a default: drop one "
                       "of the two in the plugin",
                       st->name);
                bad = 1;
            }
            continue;
        }
        union setting_value v;
        if (parse_default(st, &v) < 0) {
            refuse(ld, p->path,
                   "settings schema: default \"%s\" of setting \"%s\" is not %s: fix the "
                   "plugin's settings table",
                   st->default_value, st->name, setting_type_name(st->type));
            bad = 1;
            continue;
        }
        char *why = range_error(st, &v);
        if (why != NULL) {
            refuse(ld, p->path,
                   "settings schema: default of setting \"%s\" is invalid (%s): fix the plugin's "
                   "settings table",
                   st->name, why);
            free(why);
            bad = 1;
        }
    }
    if (n == SETTINGS_MAX && s[n].name != NULL) {
        refuse(ld, p->path,
               "settings schema: no AOS_SETTINGS_END within %d entries: terminate the plugin's "
               "settings table",
               SETTINGS_MAX);
        bad = 1;
    }
    return bad ? -1 : n;
}

static int keep_string(struct aos_plugin_instance *p, const char *s, const char **out)
{
    char **grown = realloc(p->strings, (p->nstrings + 1) * sizeof *grown);
    if (grown == NULL)
        return -1;
    p->strings = grown;
    char *copy = strdup(s);
    if (copy == NULL)
        return -1;
    p->strings[p->nstrings++] = copy;
    *out = copy;
    return 0;
}

static int store_value(struct aos_plugin_instance *p, const struct aos_setting *st, union setting_value v)
{
    unsigned char *field = (unsigned char *)p->instance + st->offset;
    switch (st->type) {
    case AOS_SETTING_BOOL:
        memcpy(field, &v.b, sizeof v.b);
        return 0;
    case AOS_SETTING_INT:
        memcpy(field, &v.i, sizeof v.i);
        return 0;
    case AOS_SETTING_DOUBLE:
        memcpy(field, &v.d, sizeof v.d);
        return 0;
    case AOS_SETTING_STRING: {
        const char *copy = NULL;
        if (v.s != NULL && keep_string(p, v.s, &copy) < 0)
            return -1;
        memcpy(field, &copy, sizeof copy);
        return 0;
    }
    default:
        return -1;
    }
}

/* Reads a config value of the setting's type.  0, or -1 on a type
 * mismatch. */
static int read_value(const config_setting_t *cs, const struct aos_setting *st, union setting_value *v)
{
    int t = config_setting_type(cs);
    memset(v, 0, sizeof *v);
    switch (st->type) {
    case AOS_SETTING_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            return -1;
        v->b = config_setting_get_bool(cs) ? 1 : 0;
        return 0;
    case AOS_SETTING_INT:
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
            return -1;
        v->i = config_setting_get_int64(cs);
        return 0;
    case AOS_SETTING_DOUBLE:
        if (t == CONFIG_TYPE_FLOAT)
            v->d = config_setting_get_float(cs);
        else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
            v->d = (double)config_setting_get_int64(cs);
        else
            return -1;
        return 0;
    case AOS_SETTING_STRING:
        if (t != CONFIG_TYPE_STRING)
            return -1;
        v->s = config_setting_get_string(cs);
        return 0;
    default:
        return -1;
    }
}

static char *known_settings(const struct aos_setting *s, int n)
{
    if (n == 0)
        return format("this plugin takes no settings");
    char *list = NULL;
    for (int i = 0; i < n; i++) {
        char *next = format("%s%s%s", list != NULL ? list : "", list != NULL ? ", " : "", s[i].name);
        free(list);
        if (next == NULL)
            return NULL;
        list = next;
    }
    char *out = format("known settings: %s", list);
    free(list);
    return out;
}

/* " (<help>)" after a message, when the setting has help text. */
#define HELP_FMT(help) (help) != NULL ? " (" : "", (help) != NULL ? (help) : "", (help) != NULL ? ")" : ""

/* Validates the plugin's block against its schema and fills the
 * instance: config values first, then defaults.  Reports every problem. */
static int fill_settings(struct loader *ld, struct aos_plugin_instance *p)
{
    int rc = -1;
    bool *seen = NULL;
    char *known = NULL;
    const struct aos_setting *s = p->desc.settings;

    int n = check_schema(ld, p);
    if (n < 0)
        goto out;
    p->instance = calloc(1, p->desc.instance_size != 0 ? p->desc.instance_size : 1);
    seen = calloc((size_t)n + 1, sizeof *seen);
    if (p->instance == NULL || seen == NULL) {
        refuse(ld, p->path, "out of memory allocating the %zu-byte instance", p->desc.instance_size);
        goto out;
    }

    size_t before = ld->nrefused;
    const struct aos_conf_plugin_block *block = aos_conf_plugin_block(ld->conf, p->name);
    const char *bfile = block != NULL && block->file != NULL ? block->file : "(config)";
    if (block != NULL && block->setting != NULL) {
        const config_setting_t *grp = block->setting;
        if (!config_setting_is_group(grp)) {
            refuse(ld, p->path, "%s:%d: plugins.%s: must be a group { ... }, not %s", bfile, block->line,
                   p->name, config_type_name(config_setting_type(grp)));
            goto out;
        }
        int len = config_setting_length(grp);
        for (int i = 0; i < len; i++) {
            const config_setting_t *cs = config_setting_get_elem(grp, (unsigned)i);
            const char *key = config_setting_name(cs);
            const char *file = config_setting_source_file(cs);
            int line = (int)config_setting_source_line(cs);
            if (file == NULL)
                file = bfile;
            int k = 0;
            while (k < n && strcmp(s[k].name, key) != 0)
                k++;
            if (k == n) {
                if (known == NULL)
                    known = known_settings(s, n);
                refuse(ld, p->path, "%s:%d: plugins.%s.%s: unknown setting (%s)", file, line, p->name, key,
                       known != NULL ? known : "out of memory listing them");
                continue;
            }
            const struct aos_setting *st = &s[k];
            seen[k] = true;
            union setting_value v;
            if (read_value(cs, st, &v) < 0) {
                refuse(ld, p->path, "%s:%d: plugins.%s.%s: expected %s, got %s%s%s%s", file, line, p->name,
                       key, setting_type_name(st->type), config_type_name(config_setting_type(cs)),
                       HELP_FMT(st->help));
                continue;
            }
            char *why = range_error(st, &v);
            if (why != NULL) {
                refuse(ld, p->path, "%s:%d: plugins.%s.%s: %s%s%s%s", file, line, p->name, key, why,
                       HELP_FMT(st->help));
                free(why);
                continue;
            }
            if (store_value(p, st, v) < 0) {
                refuse(ld, p->path, "out of memory storing setting %s", key);
                goto out;
            }
        }
    }
    for (int k = 0; k < n; k++) {
        const struct aos_setting *st = &s[k];
        if (seen[k])
            continue;
        if ((st->flags & AOS_SETTING_REQUIRED) != 0) {
            if (block != NULL)
                refuse(ld, p->path,
                       "%s:%d: plugins.%s.%s: required setting missing (%s): add it "
                       "to the plugins.%s block",
                       bfile, block->line, p->name, st->name, st->help != NULL ? st->help : "no description",
                       p->name);
            else
                refuse(ld, p->path,
                       "plugins.%s.%s: required setting missing (%s): add a "
                       "plugins.%s block that sets it",
                       p->name, st->name, st->help != NULL ? st->help : "no description", p->name);
            continue;
        }
        union setting_value v;
        parse_default(st, &v); /* checked by check_schema() */
        if (store_value(p, st, v) < 0) {
            refuse(ld, p->path, "out of memory storing the default of %s", st->name);
            goto out;
        }
    }
    if (ld->nrefused == before)
        rc = 0;
out:
    free(known);
    free(seen);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Loading                                                            */
/* ------------------------------------------------------------------ */

static void instance_free(struct aos_plugin_instance *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nstrings; i++)
        free(p->strings[i]);
    free(p->strings);
    free(p->instance);
    pthread_mutex_destroy(&p->lock);
    if (p->dl != NULL)
        dlclose(p->dl);
    free(p->path);
    free(p->name);
    free(p);
}

static void instance_fini(struct aos_plugin_instance *p)
{
    if (!p->initialised || p->desc.fini == NULL)
        return;
    struct aos_ctx ctx = {.plugin = p};
    p->desc.fini(&ctx, p->instance);
    p->initialised = false;
    if (ctx.err[0] != '\0')
        aos_log(AOS_LVL_WARN, "plugin fini() reported an error", "plugin", p->name, "error", ctx.err, NULL);
}

/* Frees a set; with `fini`, initialised instances are finished first, in
 * reverse load order, before any library is closed. */
static void set_release(struct aos_plugin_set *set, bool fini)
{
    if (set == NULL)
        return;
    if (fini)
        for (size_t i = set->n; i-- > 0;)
            instance_fini(set->items[i]);
    for (size_t i = set->n; i-- > 0;)
        instance_free(set->items[i]);
    free(set->items);
    free(set);
}

/* Bytes ABI 1.0 requires of the kind's ops table (through its mandatory
 * op) and the host-side size of that table. */
static void ops_sizes(uint32_t kind, size_t *need, size_t *full, const char **op)
{
    switch (kind) {
    case AOS_PLUGIN_AGENT:
        *need = OPS_SPAN(struct aos_agent_ops, step);
        *full = sizeof(struct aos_agent_ops);
        *op = "step";
        break;
    case AOS_PLUGIN_CONNECTOR:
        *need = OPS_SPAN(struct aos_connector_ops, call);
        *full = sizeof(struct aos_connector_ops);
        *op = "call";
        break;
    default:
        *need = OPS_SPAN(struct aos_auth_ops, authenticate);
        *full = sizeof(struct aos_auth_ops);
        *op = "authenticate";
        break;
    }
}

static const char *ops_struct_name(uint32_t kind)
{
    switch (kind) {
    case AOS_PLUGIN_AGENT:
        return "struct aos_agent_ops";
    case AOS_PLUGIN_CONNECTOR:
        return "struct aos_connector_ops";
    default:
        return "struct aos_auth_ops";
    }
}

static bool mandatory_op_set(const struct aos_plugin_instance *p)
{
    switch (p->desc.kind) {
    case AOS_PLUGIN_AGENT:
        return p->ops.agent.step != NULL;
    case AOS_PLUGIN_CONNECTOR:
        return p->ops.connector.call != NULL;
    default:
        return p->ops.auth.authenticate != NULL;
    }
}

/* Checks everything that can be checked without running plugin code
 * beyond its entry point.  Returns 0 or -1 (refused). */
static int check_descriptor(struct loader *ld, struct aos_plugin_instance *p, const struct aos_plugin *d,
                            const struct aos_plugin_set *set)
{
    if (d->magic != AOS_PLUGIN_MAGIC) {
        refuse(ld, p->path,
               "bad descriptor magic 0x%08" PRIX32 ", expected 0x%08X (\"AOSP\"): "
               "aos_plugin_entry() does not return an aosd plugin descriptor; build it with "
               "AOS_PLUGIN_HEADER against aos-sdk %d.x",
               d->magic, AOS_PLUGIN_MAGIC, AOS_ABI_MAJOR);
        return -1;
    }
    if (d->abi_major != AOS_ABI_MAJOR) {
        refuse(ld, p->path,
               "plugin built for ABI %u.%u, host provides ABI %d.%d: rebuild the plugin against "
               "aos-sdk %d.x",
               (unsigned)d->abi_major, (unsigned)d->abi_minor, AOS_ABI_MAJOR, AOS_ABI_MINOR, AOS_ABI_MAJOR);
        return -1;
    }
    if (d->abi_minor > AOS_ABI_MINOR) {
        refuse(ld, p->path,
               "plugin built for ABI %u.%u, host provides ABI %d.%d: upgrade aosd to a version "
               "providing ABI %u.%u or later, or rebuild the plugin against aos-sdk %d.%d",
               (unsigned)d->abi_major, (unsigned)d->abi_minor, AOS_ABI_MAJOR, AOS_ABI_MINOR,
               (unsigned)d->abi_major, (unsigned)d->abi_minor, AOS_ABI_MAJOR, AOS_ABI_MINOR);
        return -1;
    }
    if (d->size < DESC_SIZE_1_0) {
        refuse(ld, p->path,
               "descriptor is %" PRIu32 " bytes, ABI %u.%u defines %zu: declare it as a struct "
               "aos_plugin starting with AOS_PLUGIN_HEADER and rebuild against aos-sdk %d.x",
               d->size, (unsigned)d->abi_major, (unsigned)d->abi_minor, (size_t)DESC_SIZE_1_0, AOS_ABI_MAJOR);
        return -1;
    }
    memcpy(&p->desc, d, d->size < sizeof p->desc ? d->size : sizeof p->desc);
    const struct aos_plugin *c = &p->desc;

    if (c->kind != AOS_PLUGIN_AGENT && c->kind != AOS_PLUGIN_CONNECTOR && c->kind != AOS_PLUGIN_AUTH) {
        refuse(ld, p->path,
               "unknown plugin kind %" PRIu32 " (ABI %d.%d knows 1 = agent, 2 = connector, "
               "3 = auth): set .kind to one of AOS_PLUGIN_AGENT, AOS_PLUGIN_CONNECTOR, "
               "AOS_PLUGIN_AUTH",
               c->kind, AOS_ABI_MAJOR, AOS_ABI_MINOR);
        return -1;
    }
    for (int i = 0; i < AOS_PLUGIN_RESERVED; i++)
        if (c->reserved[i] != NULL) {
            refuse(ld, p->path,
                   "reserved descriptor slot %d is not zero (ABI %u.%u gives it no meaning): "
                   "leave .reserved unset (designated initialisers zero it) and rebuild",
                   i, (unsigned)c->abi_major, (unsigned)c->abi_minor);
            return -1;
        }
    if (c->name == NULL) {
        refuse(ld, p->path, "descriptor has no name: set .name = \"%s\" in the plugin", p->name);
        return -1;
    }
    if (!valid_name(c->name)) {
        refuse(ld, p->path,
               "plugin name \"%.80s\" is invalid (1-%d characters of a-z, 0-9 and '-', not "
               "starting with '-'): fix .name in the plugin",
               c->name, PLUGIN_NAME_MAX);
        return -1;
    }
    const struct aos_plugin_instance *dup = find_in(set, c->name);
    if (dup != NULL) {
        refuse(ld, p->path,
               "plugin name \"%s\" is already taken by %s: two files declare the same plugin; "
               "remove one of them from plugins.enable",
               c->name, dup->path);
        return -1;
    }
    if (strcmp(c->name, p->name) != 0) {
        refuse(ld, p->path,
               "file declares plugin \"%s\" but is enabled as \"%s\": a plugin file must be named "
               "after its plugin; rename it to %s.so and enable \"%s\"",
               c->name, p->name, c->name, c->name);
        return -1;
    }
    if (c->instance_size > INSTANCE_SIZE_MAX) {
        refuse(ld, p->path,
               "instance_size %zu is implausible (limit %zu): set .instance_size = sizeof(your "
               "instance struct)",
               c->instance_size, INSTANCE_SIZE_MAX);
        return -1;
    }

    const char *kname = aos_plugin_kind_name((int)c->kind);
    size_t need, full;
    const char *op;
    ops_sizes(c->kind, &need, &full, &op);
    if (c->ops == NULL) {
        refuse(ld, p->path, "%s plugin has no ops table: set .ops to a %s", kname, ops_struct_name(c->kind));
        return -1;
    }
    uint32_t osize;
    memcpy(&osize, c->ops, sizeof osize);
    if (osize < need) {
        refuse(ld, p->path,
               "%s ops table declares %" PRIu32 " bytes, ABI %u.%u needs at least %zu (through "
               "%s()): set .size = sizeof(%s) and rebuild",
               kname, osize, (unsigned)c->abi_major, (unsigned)c->abi_minor, need, op,
               ops_struct_name(c->kind));
        return -1;
    }
    memcpy(&p->ops, c->ops, osize < full ? osize : full);
    if (!mandatory_op_set(p)) {
        refuse(ld, p->path, "%s ops table has no %s(): every %s plugin must implement it", kname, op, kname);
        return -1;
    }
    return 0;
}

/* Opens, checks and fills one plugin (no plugin code but the entry point
 * runs).  On success appends it to set. */
static int open_plugin(struct loader *ld, struct aos_plugin_set *set, const char *name)
{
    int rc = -1;
    struct aos_plugin_instance *p = calloc(1, sizeof *p);
    if (p == NULL || pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        p = NULL;
        refuse(ld, name, "out of memory");
        goto out;
    }
    p->name = strdup(name);
    p->path = format("%s/%s.so", ld->conf->plugins.dir != NULL ? ld->conf->plugins.dir : ".", name);
    if (p->name == NULL || p->path == NULL) {
        refuse(ld, name, "out of memory");
        goto out;
    }
    if (!valid_name(name)) {
        refuse(ld, p->path,
               "\"%.80s\" is not a valid plugin name (1-%d characters of a-z, 0-9 and '-', not "
               "starting with '-'): fix plugins.enable",
               name, PLUGIN_NAME_MAX);
        goto out;
    }
    if (find_in(set, name) != NULL) {
        refuse(ld, p->path, "\"%s\" is enabled twice: remove the duplicate from plugins.enable", name);
        goto out;
    }
    struct stat sb;
    if (stat(p->path, &sb) != 0) {
        if (errno == ENOENT)
            refuse(ld, p->path,
                   "no such file: install the plugin into plugins.dir (%s) or remove \"%s\" "
                   "from plugins.enable",
                   ld->conf->plugins.dir != NULL ? ld->conf->plugins.dir : ".", name);
        else
            refuse(ld, p->path, "cannot access the file: %s: check its permissions", strerror(errno));
        goto out;
    }
    dlerror();
    p->dl = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        const char *why = dlerror();
        refuse(ld, p->path,
               "dlopen failed: %s: rebuild the plugin for this system against aos-sdk %d.x, or "
               "remove \"%s\" from plugins.enable",
               why != NULL ? why : "unknown error", AOS_ABI_MAJOR, name);
        goto out;
    }
    dlerror();
    void *sym = dlsym(p->dl, AOS_PLUGIN_ENTRY_SYMBOL);
    if (sym == NULL) {
        const char *why = dlerror();
        refuse(ld, p->path,
               "no %s symbol (%s): not an aosd plugin, or built without "
               "AOS_PLUGIN_EXPORT(); rebuild it against aos-sdk %d.x",
               AOS_PLUGIN_ENTRY_SYMBOL, why != NULL ? why : "symbol is NULL", AOS_ABI_MAJOR);
        goto out;
    }
    /* ISO C has no object-to-function pointer conversion; POSIX guarantees
     * the representation, so copy the bits. */
    aos_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const struct aos_plugin *d = entry();
    if (d == NULL) {
        refuse(ld, p->path,
               "%s() returned NULL: the plugin must return its descriptor "
               "(use AOS_PLUGIN_EXPORT)",
               AOS_PLUGIN_ENTRY_SYMBOL);
        goto out;
    }
    if (check_descriptor(ld, p, d, set) < 0 || fill_settings(ld, p) < 0)
        goto out;
    p->serialise = (p->desc.flags & AOS_PLUGIN_THREAD_SAFE) == 0;

    struct aos_plugin_instance **grown = realloc(set->items, (set->n + 1) * sizeof *grown);
    if (grown == NULL) {
        refuse(ld, p->path, "out of memory");
        goto out;
    }
    set->items = grown;
    set->items[set->n++] = p;
    p = NULL;
    rc = 0;
out:
    instance_free(p);
    return rc;
}

static int init_plugin(struct loader *ld, struct aos_plugin_instance *p)
{
    if (p->desc.init != NULL) {
        struct aos_ctx ctx = {.plugin = p};
        if (p->desc.init(&ctx, &host_table, p->instance) < 0) {
            refuse(ld, p->path,
                   "init() failed: %s: check the plugins.%s settings and the plugin's "
                   "documentation",
                   ctx.err[0] != '\0' ? ctx.err : "the plugin gave no reason", p->name);
            return -1;
        }
    }
    p->initialised = true;
    return 0;
}

static int reload_plugin(struct loader *ld, struct aos_plugin_instance *p,
                         const struct aos_plugin_set *previous)
{
    const struct aos_plugin_instance *old = find_in(previous, p->name);
    if (old == NULL || p->desc.reload == NULL)
        return 0;
    /* Only the same loaded code knows the old instance's layout. */
    if (old->dl != p->dl) {
        aos_log(AOS_LVL_INFO, "plugin now comes from another file; starting it without reload()", "plugin",
                p->name, "old", old->path, "new", p->path, NULL);
        return 0;
    }
    struct aos_ctx ctx = {.plugin = p};
    if (p->desc.reload(&ctx, p->instance, old->instance) < 0) {
        refuse(ld, p->path, "reload() failed: %s: the running instance is kept",
               ctx.err[0] != '\0' ? ctx.err : "the plugin gave no reason");
        return -1;
    }
    return 0;
}

struct aos_plugin_set *aos_plugin_set_load(const struct aos_conf *conf, const struct aos_plugin_set *previous,
                                           struct aos_conf_errors *errs)
{
    aos_assert(conf != NULL);
    struct loader ld = {.conf = conf, .errs = errs};
    struct aos_plugin_set *set = calloc(1, sizeof *set);
    if (conf->plugins.enable_file != NULL)
        ld.where = format("enabled at %s:%d", conf->plugins.enable_file, conf->plugins.enable_line);
    else
        ld.where = format("enabled in plugins.enable");
    if (set == NULL || ld.where == NULL) {
        aos_log(AOS_LVL_ERROR, "out of memory loading plugins", NULL);
        goto fail;
    }

    /* Check every plugin before running any init(): all static problems
     * are reported at once and a refused set has no side effects. */
    for (size_t i = 0; i < conf->plugins.nenable; i++)
        open_plugin(&ld, set, conf->plugins.enable[i]);
    if (ld.nrefused > 0)
        goto fail;
    for (size_t i = 0; i < set->n; i++)
        if (init_plugin(&ld, set->items[i]) < 0)
            goto fail;
    for (size_t i = 0; i < set->n; i++)
        if (reload_plugin(&ld, set->items[i], previous) < 0)
            goto fail;

    for (size_t i = 0; i < set->n; i++) {
        const struct aos_plugin_instance *p = set->items[i];
        char abi[16];
        snprintf(abi, sizeof abi, "%u.%u", (unsigned)p->desc.abi_major, (unsigned)p->desc.abi_minor);
        aos_log(AOS_LVL_INFO, "plugin loaded", "name", p->name, "kind",
                aos_plugin_kind_name((int)p->desc.kind), "version", aos_plugin_instance_version(p), "abi",
                abi, "file", p->path, NULL);
    }
    free(ld.where);
    return set;
fail:
    set_release(set, true);
    free(ld.where);
    return NULL;
}

void aos_plugin_set_free(struct aos_plugin_set *set) { set_release(set, true); }

/* ------------------------------------------------------------------ */
/* Accessors                                                          */
/* ------------------------------------------------------------------ */

size_t aos_plugin_set_count(const struct aos_plugin_set *set) { return set != NULL ? set->n : 0; }

const struct aos_plugin_instance *aos_plugin_set_get(const struct aos_plugin_set *set, size_t i)
{
    return set != NULL && i < set->n ? set->items[i] : NULL;
}

const struct aos_plugin_instance *aos_plugin_set_find(const struct aos_plugin_set *set, const char *name)
{
    return find_in(set, name);
}

const char *aos_plugin_instance_name(const struct aos_plugin_instance *p) { return p->name; }

enum aos_plugin_kind aos_plugin_instance_kind(const struct aos_plugin_instance *p)
{
    return (enum aos_plugin_kind)p->desc.kind;
}

const char *aos_plugin_instance_version(const struct aos_plugin_instance *p)
{
    return p->desc.version != NULL ? p->desc.version : "unversioned";
}

const char *aos_plugin_instance_description(const struct aos_plugin_instance *p)
{
    return p->desc.description != NULL ? p->desc.description : "";
}

const char *aos_plugin_instance_path(const struct aos_plugin_instance *p) { return p->path; }

uint64_t aos_plugin_instance_flags(const struct aos_plugin_instance *p) { return p->desc.flags; }

const void *aos_plugin_instance_data(const struct aos_plugin_instance *p) { return p->instance; }

/* ------------------------------------------------------------------ */
/* Calls                                                              */
/* ------------------------------------------------------------------ */

/* The lock is the one mutable part of an otherwise read-only record. */
static void call_enter(const struct aos_plugin_instance *p)
{
    if (p->serialise)
        aos_assert(pthread_mutex_lock((pthread_mutex_t *)&p->lock) == 0);
}

static void call_leave(const struct aos_plugin_instance *p)
{
    if (p->serialise)
        aos_assert(pthread_mutex_unlock((pthread_mutex_t *)&p->lock) == 0);
}

static int check_kind(const struct aos_plugin_instance *p, uint32_t kind, char *err, size_t errlen)
{
    if (p == NULL) {
        copy_err(err, errlen, "no such plugin");
        return -1;
    }
    if (p->desc.kind == kind)
        return 0;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "plugin %s is a%s %s plugin, not a%s %s plugin", p->name,
                 p->desc.kind == AOS_PLUGIN_AGENT ? "n" : "", aos_plugin_kind_name((int)p->desc.kind),
                 kind == AOS_PLUGIN_AGENT ? "n" : "", aos_plugin_kind_name((int)kind));
    return -1;
}

/* Puts the plugin's reason (or `fallback`) into err. */
static void call_error(const struct aos_ctx *ctx, char *err, size_t errlen, const char *fallback)
{
    copy_err(err, errlen, ctx->err[0] != '\0' ? ctx->err : fallback);
}

static bool buf_valid(const struct aos_buf *b) { return b->data != NULL || b->len == 0; }

void aos_plugin_buf_release(struct aos_buf *buf)
{
    if (buf == NULL)
        return;
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
}

void aos_plugin_step_result_release(struct aos_step_result *out)
{
    if (out == NULL)
        return;
    aos_plugin_buf_release(&out->output);
    aos_plugin_buf_release(&out->state);
}

static void step_result_reset(struct aos_step_result *out)
{
    aos_plugin_step_result_release(out);
    memset(out, 0, sizeof *out);
    out->size = sizeof *out;
}

int aos_plugin_agent_step(const struct aos_plugin_instance *p, const struct aos_step_input *in,
                          struct aos_step_result *out, char *err, size_t errlen)
{
    copy_err(err, errlen, "");
    aos_assert(in != NULL && out != NULL);
    memset(out, 0, sizeof *out);
    out->size = sizeof *out;
    if (check_kind(p, AOS_PLUGIN_AGENT, err, errlen) < 0)
        return -1;

    struct aos_step_input input = *in;
    input.size = sizeof input;
    struct aos_ctx ctx = {.plugin = p};
    call_enter(p);
    int rc = p->ops.agent.step(&ctx, p->instance, &input, out);
    call_leave(p);

    if (rc < 0) {
        call_error(&ctx, err, errlen, "step() failed without giving a reason");
        step_result_reset(out);
        return -1;
    }
    if (out->status < AOS_STEP_DONE || out->status > AOS_STEP_FAIL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "plugin %s: step() returned unknown status %d", p->name, out->status);
        step_result_reset(out);
        return -1;
    }
    if (!buf_valid(&out->output) || !buf_valid(&out->state)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "plugin %s: step() returned a buffer with a length but no data", p->name);
        step_result_reset(out);
        return -1;
    }
    out->size = sizeof *out;
    if (out->status == AOS_STEP_FAIL)
        call_error(&ctx, err, errlen, "the plugin failed the step without giving a reason");
    return 0;
}

int aos_plugin_agent_validate_config(const struct aos_plugin_instance *p, const char *config,
                                     size_t config_len, char *err, size_t errlen)
{
    copy_err(err, errlen, "");
    if (check_kind(p, AOS_PLUGIN_AGENT, err, errlen) < 0)
        return -1;
    if (p->ops.agent.validate_config == NULL)
        return 0;
    struct aos_ctx ctx = {.plugin = p};
    call_enter(p);
    int rc = p->ops.agent.validate_config(&ctx, p->instance, config, config_len);
    call_leave(p);
    if (rc < 0) {
        call_error(&ctx, err, errlen, "the configuration is invalid (the plugin gave no reason)");
        return -1;
    }
    return 0;
}

int aos_plugin_connector_call(const struct aos_plugin_instance *p, const char *request, size_t request_len,
                              struct aos_buf *response, char *err, size_t errlen)
{
    copy_err(err, errlen, "");
    aos_assert(response != NULL);
    response->data = NULL;
    response->len = 0;
    if (check_kind(p, AOS_PLUGIN_CONNECTOR, err, errlen) < 0)
        return -1;
    struct aos_ctx ctx = {.plugin = p};
    call_enter(p);
    int rc = p->ops.connector.call(&ctx, p->instance, request, request_len, response);
    call_leave(p);
    if (rc < 0) {
        call_error(&ctx, err, errlen, "call() failed without giving a reason");
        aos_plugin_buf_release(response);
        return -1;
    }
    if (!buf_valid(response)) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "plugin %s: call() returned a length but no data", p->name);
        response->len = 0;
        return -1;
    }
    return 0;
}

int aos_plugin_connector_health(const struct aos_plugin_instance *p, char *err, size_t errlen)
{
    copy_err(err, errlen, "");
    if (check_kind(p, AOS_PLUGIN_CONNECTOR, err, errlen) < 0)
        return -1;
    if (p->ops.connector.health == NULL)
        return 0;
    struct aos_ctx ctx = {.plugin = p};
    call_enter(p);
    int rc = p->ops.connector.health(&ctx, p->instance);
    call_leave(p);
    if (rc < 0) {
        call_error(&ctx, err, errlen, "unhealthy (the plugin gave no reason)");
        return -1;
    }
    return 0;
}

static bool principal_field_ok(const char *field, size_t size)
{
    return field[0] != '\0' && memchr(field, '\0', size) != NULL;
}

int aos_plugin_auth_authenticate(const struct aos_plugin_instance *p,
                                 const struct aos_credentials *credentials, struct aos_principal *principal,
                                 char *err, size_t errlen)
{
    copy_err(err, errlen, "");
    aos_assert(credentials != NULL && principal != NULL);
    memset(principal, 0, sizeof *principal);
    principal->size = sizeof *principal;
    if (check_kind(p, AOS_PLUGIN_AUTH, err, errlen) < 0)
        return AOS_AUTH_ERROR;

    struct aos_credentials cred = *credentials;
    cred.size = sizeof cred;
    struct aos_ctx ctx = {.plugin = p};
    call_enter(p);
    int rc = p->ops.auth.authenticate(&ctx, p->instance, &cred, principal);
    call_leave(p);

    switch (rc) {
    case AOS_AUTH_ALLOW:
        if (principal_field_ok(principal->tenant_id, sizeof principal->tenant_id) &&
            principal_field_ok(principal->subject, sizeof principal->subject) &&
            principal_field_ok(principal->role, sizeof principal->role)) {
            principal->size = sizeof *principal;
            return AOS_AUTH_ALLOW;
        }
        if (err != NULL && errlen > 0)
            snprintf(err, errlen,
                     "plugin %s: authenticate() allowed with an empty or unterminated "
                     "principal field",
                     p->name);
        break;
    case AOS_AUTH_DENY:
    case AOS_AUTH_IGNORE:
        memset(principal, 0, sizeof *principal);
        principal->size = sizeof *principal;
        return rc;
    default:
        if (rc < 0)
            call_error(&ctx, err, errlen, "authenticate() failed without giving a reason");
        else if (err != NULL && errlen > 0)
            snprintf(err, errlen, "plugin %s: authenticate() returned unknown result %d", p->name, rc);
        break;
    }
    memset(principal, 0, sizeof *principal);
    principal->size = sizeof *principal;
    return AOS_AUTH_ERROR;
}
