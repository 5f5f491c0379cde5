#include "config.h"

/*
 * Configuration loader.  Every setting is declared once, in the static
 * tables below (name, kind, offset, default, range); one generic walker
 * (group_apply) validates each file's libconfig tree against them and fills
 * struct aos_conf.  Cross-setting rules and derived defaults that need the
 * merged result of all files live in conf_finish().
 *
 * Merging: every file is parsed into its own config_t (kept alive in the
 * result so plugin blocks stay valid) and applied in order.  Groups merge
 * member by member at every depth; a leaf (anything that is not a group) set
 * by two files is an error naming both places.  The top-level `tenants`
 * lists are concatenated instead.
 */

#include "conf.h"
#include "log.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <uuid/uuid.h>

#define CONF_PATH_MAX 256                /* setting paths in messages */
#define CONF_MSG_MAX 1024                /* one error line */
#define CONF_TEXT_MAX (16 * 1024 * 1024) /* bigger sources skip the integer-literal check */

/* log.level's choices are listed in enum order. */
_Static_assert(AOS_LVL_ERROR == 0 && AOS_LVL_WARN == 1 && AOS_LVL_INFO == 2 && AOS_LVL_DEBUG == 3,
               "log_levels[] must follow enum aos_log_lvl");
_Static_assert(AOS_LOG_TEXT == 0 && AOS_LOG_JSON == 1, "log_formats[] must follow enum aos_log_format");

/* ------------------------------------------------------------------ state */

struct conf_seen { /* a leaf already set by some file */
    char *path;
    const config_setting_t *setting;
};

struct conf_text { /* a source file, for the integer-literal check */
    char *file;
    char *text; /* NULL if unreadable */
};

struct conf_ctx {
    struct aos_conf *conf;
    struct aos_conf_errors *errs;
    size_t nerr;
    bool track;  /* record leaves for the duplicate check */
    bool broken; /* a file could not be read or parsed */
    struct conf_seen *seen;
    size_t nseen;
    struct conf_text *texts;
    size_t ntexts;
};

/* ----------------------------------------------------------------- tables */

struct conf_item;
struct conf_group;

/* How one kind of setting is parsed, defaulted and released.  `base` is
 * the struct the item's offsets are relative to. */
struct conf_kind {
    int (*parse)(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s, void *base);
    int (*init)(const struct conf_item *it, void *base);
    void (*release)(const struct conf_item *it, void *base);
};

/* Extra validation of one string; returns NULL or why it is wrong. */
typedef const char *(*conf_check_fn)(const char *value);

struct conf_item {
    const char *name;
    const struct conf_kind *kind;
    size_t off;
    size_t n_off; /* element count (lists) */
    long long def_int;
    double def_dbl;
    const char *def_str;
    const char *const *def_list;    /* NULL-terminated */
    long long min, max;             /* integers */
    double dmax;                    /* durations: (0, dmax]; doubles: [0, dmax] */
    const char *const *choices;     /* enums, NULL-terminated */
    const struct conf_group *group; /* nested group or list element */
    conf_check_fn check;
    unsigned flags;
};

#define F_REQUIRED 0x1u /* in a list element: must be present */
#define F_NONEMPTY 0x2u /* string "" (or an empty list) is an error */
#define F_CONCAT 0x4u   /* group list concatenated across files */

struct conf_group {
    const struct conf_item *items;
    size_t nitems;
    size_t elem_size; /* list elements: struct size */
    /* Members not in items: returns true if it took the member. */
    bool (*other)(struct conf_ctx *ctx, const config_setting_t *m, void *base);
    const char *other_hint; /* appended to "unknown setting" when no suggestion fits */
    /* After one list element is applied (elements live in arr[0..idx]). */
    void (*elem_done)(struct conf_ctx *ctx, const config_setting_t *elem, void *arr, size_t idx);
};

/* -------------------------------------------------------------- messages */

static const char *cfg_type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_INT:
        return "an integer";
    case CONFIG_TYPE_INT64:
        return "a 64-bit integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    default:
        return "nothing";
    }
}

/* Dotted path of a setting: "limits.read.burst", "tenants[1].name". */
static size_t setting_path(const config_setting_t *s, char *buf, size_t len)
{
    const config_setting_t *p = s ? config_setting_parent(s) : NULL;
    size_t n;
    int w;

    buf[0] = '\0';
    if (!s || !p)
        return 0;
    n = setting_path(p, buf, len);
    if (config_setting_is_list(p) || config_setting_is_array(p))
        w = snprintf(buf + n, len - n, "[%d]", config_setting_index(s));
    else
        w = snprintf(buf + n, len - n, "%s%s", n ? "." : "", config_setting_name(s));
    if (w < 0 || (size_t)w >= len - n)
        return strlen(buf); /* truncated: the message still names file:line */
    return n + (size_t)w;
}

static const char *setting_file(const struct conf_ctx *ctx, const config_setting_t *s)
{
    const char *f = s ? config_setting_source_file(s) : NULL;
    return f ? f : ctx->conf->path;
}

static int setting_line(const config_setting_t *s) { return s ? (int)config_setting_source_line(s) : 0; }

static void err_add(struct conf_ctx *ctx, const char *line)
{
    char **lines;
    char *copy;

    ctx->nerr++;
    if (!ctx->errs)
        return;
    copy = strdup(line);
    lines = copy ? realloc(ctx->errs->lines, (ctx->errs->n + 1) * sizeof *lines) : NULL;
    if (!lines) {
        free(copy); /* the count above still fails the load */
        return;
    }
    lines[ctx->errs->n++] = copy;
    ctx->errs->lines = lines;
}

/* "file:line: path: message"; line <= 0 drops ":line", path NULL drops "path: ". */
__attribute__((format(printf, 5, 0))) static void conf_verr(struct conf_ctx *ctx, const char *file, int line,
                                                            const char *path, const char *fmt, va_list ap)
{
    char buf[CONF_MSG_MAX];
    size_t n = 0;
    int w;

    if (line > 0)
        w = snprintf(buf, sizeof buf, "%s:%d: ", file, line);
    else
        w = snprintf(buf, sizeof buf, "%s: ", file);
    if (w > 0)
        n = (size_t)w < sizeof buf ? (size_t)w : sizeof buf - 1;
    if (path && *path) {
        w = snprintf(buf + n, sizeof buf - n, "%s: ", path);
        if (w > 0)
            n += (size_t)w < sizeof buf - n ? (size_t)w : sizeof buf - n - 1;
    }
    w = vsnprintf(buf + n, sizeof buf - n, fmt, ap);
    if (w > 0 && (size_t)w >= sizeof buf - n)
        memcpy(buf + sizeof buf - 4, "...", 4); /* truncated, and says so */
    err_add(ctx, buf);
}

__attribute__((format(printf, 5, 6))) static void
conf_err_at(struct conf_ctx *ctx, const char *file, int line, const char *path, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    conf_verr(ctx, file, line, path, fmt, ap);
    va_end(ap);
}

/* An error about setting s, located and named by s itself. */
__attribute__((format(printf, 3, 4))) static void conf_err(struct conf_ctx *ctx, const config_setting_t *s,
                                                           const char *fmt, ...)
{
    char path[CONF_PATH_MAX];
    va_list ap;

    setting_path(s, path, sizeof path);
    va_start(ap, fmt);
    conf_verr(ctx, setting_file(ctx, s), setting_line(s), path, fmt, ap);
    va_end(ap);
}

static void conf_oom(struct conf_ctx *ctx)
{
    conf_err_at(ctx, ctx->conf->path, 0, NULL, "out of memory while loading the configuration");
}

static void type_err(struct conf_ctx *ctx, const config_setting_t *s, const char *expected)
{
    conf_err(ctx, s, "expected %s, got %s", expected, cfg_type_name(config_setting_type(s)));
}

/* Optimal string alignment distance, for did-you-mean; big for long names. */
static size_t edit_distance(const char *a, const char *b)
{
    enum { MAXN = 40 };
    size_t la = strlen(a), lb = strlen(b);
    size_t d[MAXN + 1][MAXN + 1];

    if (la > MAXN || lb > MAXN)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

static void unknown_setting(struct conf_ctx *ctx, const struct conf_group *g, const config_setting_t *m)
{
    const char *name = config_setting_name(m);
    const char *best = NULL;
    size_t best_d = SIZE_MAX;

    for (size_t i = 0; i < g->nitems; i++) {
        size_t d = edit_distance(name, g->items[i].name);
        if (d < best_d) {
            best_d = d;
            best = g->items[i].name;
        }
    }
    if (best && best_d <= 2 && best_d < strlen(best))
        conf_err(ctx, m, "unknown setting (did you mean '%s'?)", best);
    else if (g->other_hint)
        conf_err(ctx, m, "unknown setting (%s)", g->other_hint);
    else
        conf_err(ctx, m, "unknown setting");
}

/* ------------------------------------------------ integer-literal check */

static const char *ctx_text(struct conf_ctx *ctx, const char *file)
{
    struct conf_text *t;
    struct stat st;
    FILE *fp;
    char *text = NULL;
    size_t len = 0;

    for (size_t i = 0; i < ctx->ntexts; i++)
        if (strcmp(ctx->texts[i].file, file) == 0)
            return ctx->texts[i].text;
    t = realloc(ctx->texts, (ctx->ntexts + 1) * sizeof *t);
    if (!t)
        return NULL;
    ctx->texts = t;
    t = &ctx->texts[ctx->ntexts];
    t->file = strdup(file);
    t->text = NULL;
    if (!t->file)
        return NULL;
    ctx->ntexts++;
    fp = fopen(file, "r");
    if (!fp)
        return NULL;
    if (fstat(fileno(fp), &st) == 0 && st.st_size >= 0 && st.st_size <= CONF_TEXT_MAX &&
        (text = malloc((size_t)st.st_size + 1)) != NULL) {
        len = fread(text, 1, (size_t)st.st_size, fp);
        text[len] = '\0';
        t->text = text;
    }
    fclose(fp);
    return t->text;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '*';
}

/*
 * libconfig 1.5 silently truncates an integer literal that does not fit in
 * 32 bits unless it carries the L suffix (PLATFORM-NOTES §6), so the parsed
 * value cannot tell.  Re-read the setting's source line and look at the
 * literal as written.  Returns -1 (and reports) if it was truncated.
 */
static int literal_check(struct conf_ctx *ctx, const config_setting_t *s)
{
    const char *name = config_setting_name(s);
    const char *file = config_setting_source_file(s);
    int line = setting_line(s);
    const char *text, *p, *end;
    size_t nlen;

    if (!name || !file || line <= 0 || !(text = ctx_text(ctx, file)))
        return 0;
    for (int l = 1; l < line && text; l++) {
        text = strchr(text, '\n');
        if (text)
            text++;
    }
    if (!text)
        return 0;
    end = strchr(text, '\n');
    if (!end)
        end = text + strlen(text);
    nlen = strlen(name);
    for (p = text; p + nlen <= end; p++) {
        const char *q = p + nlen, *digits;
        bool hex = false;
        unsigned long long v;
        char lit[32];
        size_t llen;

        if (memcmp(p, name, nlen) != 0 || (p > text && name_char(p[-1])) || (q < end && name_char(*q)))
            continue;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        if (q >= end || (*q != '=' && *q != ':'))
            continue;
        q++;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        digits = q;
        if (q < end && (*q == '-' || *q == '+'))
            q++;
        if (q + 1 < end && q[0] == '0' && (q[1] == 'x' || q[1] == 'X')) {
            hex = true;
            q += 2;
            while (q < end &&
                   ((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') || (*q >= 'A' && *q <= 'F')))
                q++;
        } else {
            while (q < end && *q >= '0' && *q <= '9')
                q++;
        }
        if (q == digits || (q < end && (*q == 'L' || *q == '.' || *q == 'e' || *q == 'E')))
            continue; /* not an integer, or a proper 64-bit literal */
        llen = (size_t)(q - digits);
        if (llen >= sizeof lit)
            llen = sizeof lit - 1;
        memcpy(lit, digits, llen);
        lit[llen] = '\0';
        errno = 0;
        v = strtoull(lit + (lit[0] == '-' || lit[0] == '+'), NULL, hex ? 16 : 10);
        if (errno != ERANGE && (hex ? v <= UINT32_MAX : v <= (lit[0] == '-' ? 2147483648ULL : 2147483647ULL)))
            continue;
        /* Same name twice on one line ("read = { per_minute = ... }; write
         * = { per_minute = ... }"): blame only the literal that truncates
         * to this setting's value, as libconfig does it (modulo 2^32). */
        if (errno != ERANGE && (int32_t)(uint32_t)(lit[0] == '-' ? 0 - v : v) != config_setting_get_int(s))
            continue;
        conf_err(ctx, s, "%s does not fit in 32 bits and libconfig 1.5 truncates it silently: write %sL", lit,
                 lit);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ leaf kinds */

#define FIELD(type, base, it) ((type *)(void *)((char *)(base) + (it)->off))
#define COUNT(base, it) ((size_t *)(void *)((char *)(base) + (it)->n_off))

static int get_integer(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s,
                       long long *out)
{
    long long v;

    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        if (literal_check(ctx, s) != 0)
            return -1;
        v = config_setting_get_int(s);
        break;
    case CONFIG_TYPE_INT64:
        v = config_setting_get_int64(s);
        break;
    default:
        type_err(ctx, s, "an integer");
        return -1;
    }
    if (v < it->min || v > it->max) {
        conf_err(ctx, s, "%lld is out of range (%lld..%lld)", v, it->min, it->max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_int(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s, void *base)
{
    long long v;

    if (get_integer(ctx, it, s, &v) != 0)
        return -1;
    *FIELD(int, base, it) = (int)v;
    return 0;
}

static int init_int(const struct conf_item *it, void *base)
{
    *FIELD(int, base, it) = (int)it->def_int;
    return 0;
}

static int parse_int64(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s,
                       void *base)
{
    long long v;

    if (get_integer(ctx, it, s, &v) != 0)
        return -1;
    *FIELD(int64_t, base, it) = (int64_t)v;
    return 0;
}

static int init_int64(const struct conf_item *it, void *base)
{
    *FIELD(int64_t, base, it) = (int64_t)it->def_int;
    return 0;
}

static int parse_bool(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s, void *base)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
        type_err(ctx, s, "a boolean (true or false)");
        return -1;
    }
    *FIELD(bool, base, it) = config_setting_get_bool(s) != 0;
    return 0;
}

static int init_bool(const struct conf_item *it, void *base)
{
    *FIELD(bool, base, it) = it->def_int != 0;
    return 0;
}

static int get_number(struct conf_ctx *ctx, const config_setting_t *s, const char *expected, double *out)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        if (literal_check(ctx, s) != 0)
            return -1;
        *out = config_setting_get_int(s);
        return 0;
    case CONFIG_TYPE_INT64:
        *out = (double)config_setting_get_int64(s);
        return 0;
    case CONFIG_TYPE_FLOAT:
        *out = config_setting_get_float(s);
        return 0;
    default:
        type_err(ctx, s, expected);
        return -1;
    }
}

/* Seconds, int or float, in (0, dmax]. */
static int parse_duration(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s,
                          void *base)
{
    double v;

    if (get_number(ctx, s, "a duration in seconds (integer or float)", &v) != 0)
        return -1;
    if (!(v > 0 && v <= it->dmax)) {
        conf_err(ctx, s, "%g s is out of range (> 0 and <= %g)", v, it->dmax);
        return -1;
    }
    *FIELD(double, base, it) = v;
    return 0;
}

/* A number in [0, dmax]. */
static int parse_double(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s,
                        void *base)
{
    double v;

    if (get_number(ctx, s, "a number", &v) != 0)
        return -1;
    if (!(v >= 0 && v <= it->dmax)) {
        conf_err(ctx, s, "%g is out of range (0..%g)", v, it->dmax);
        return -1;
    }
    *FIELD(double, base, it) = v;
    return 0;
}

static int init_double(const struct conf_item *it, void *base)
{
    *FIELD(double, base, it) = it->def_dbl;
    return 0;
}

static const char *get_string(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s)
{
    const char *v, *why;

    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        type_err(ctx, s, "a string");
        return NULL;
    }
    v = config_setting_get_string(s);
    if ((it->flags & F_NONEMPTY) && !*v) {
        conf_err(ctx, s, "must not be empty");
        return NULL;
    }
    if (it->check && *v && (why = it->check(v)) != NULL) {
        conf_err(ctx, s, "\"%s\": %s", v, why);
        return NULL;
    }
    return v;
}

static int replace_string(struct conf_ctx *ctx, char **field, const char *v)
{
    char *copy = strdup(v);

    if (!copy) {
        conf_oom(ctx);
        return -1;
    }
    free(*field);
    *field = copy;
    return 0;
}

static int parse_string(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s,
                        void *base)
{
    const char *v = get_string(ctx, it, s);

    return v ? replace_string(ctx, FIELD(char *, base, it), v) : -1;
}

static int init_string(const struct conf_item *it, void *base)
{
    char *copy = strdup(it->def_str ? it->def_str : "");

    *FIELD(char *, base, it) = copy;
    return copy ? 0 : -1;
}

static void release_string(const struct conf_item *it, void *base)
{
    char **field = FIELD(char *, base, it);

    free(*field);
    *field = NULL;
}

static int choice_index(const char *const *choices, const char *v)
{
    for (int i = 0; choices[i]; i++)
        if (strcmp(choices[i], v) == 0)
            return i;
    return -1;
}

static int get_choice(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s)
{
    const char *v = get_string(ctx, it, s);
    char list[256];
    size_t n = 0;
    int i;

    if (!v)
        return -1;
    if ((i = choice_index(it->choices, v)) >= 0)
        return i;
    list[0] = '\0';
    for (int k = 0; it->choices[k]; k++) {
        int w = snprintf(list + n, sizeof list - n, "%s\"%s\"", k ? ", " : "", it->choices[k]);
        if (w < 0 || (size_t)w >= sizeof list - n)
            break; /* the table's lists are short; a cut list still helps */
        n += (size_t)w;
    }
    conf_err(ctx, s, "\"%s\" is not one of %s", v, list);
    return -1;
}

/* String with fixed choices, kept as a string. */
static int parse_strenum(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s,
                         void *base)
{
    int i = get_choice(ctx, it, s);

    return i < 0 ? -1 : replace_string(ctx, FIELD(char *, base, it), it->choices[i]);
}

/* String with fixed choices, kept as its index (an enum in choice order). */
static int parse_enum(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s, void *base)
{
    int i = get_choice(ctx, it, s);

    if (i < 0)
        return -1;
    *FIELD(int, base, it) = i;
    return 0;
}

static int init_enum(const struct conf_item *it, void *base)
{
    int i = choice_index(it->choices, it->def_str);

    aos_assert(i >= 0); /* a table default must be one of its choices */
    *FIELD(int, base, it) = i;
    return 0;
}

static int parse_uuid(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s, void *base)
{
    const char *v = get_string(ctx, it, s);
    uuid_t u;

    if (!v)
        return -1;
    if (uuid_parse(v, u) != 0) {
        conf_err(ctx, s, "\"%s\" is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", v);
        return -1;
    }
    if (uuid_is_null(u)) {
        conf_err(ctx, s, "the nil UUID is not a valid id");
        return -1;
    }
    uuid_unparse_lower(u, FIELD(char, base, it));
    return 0;
}

static int init_uuid(const struct conf_item *it, void *base)
{
    FIELD(char, base, it)[0] = '\0';
    return 0;
}

static void release_none(const struct conf_item *it, void *base)
{
    (void)it;
    (void)base;
}

/* ----------------------------------------------------------- list kinds */

static void strlist_free(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static int parse_strlist(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s,
                         void *base)
{
    int n = config_setting_length(s), bad = 0;
    char **list;

    if (config_setting_type(s) != CONFIG_TYPE_ARRAY ||
        (n > 0 && config_setting_type(config_setting_get_elem(s, 0)) != CONFIG_TYPE_STRING)) {
        type_err(ctx, s, "an array of strings: [ \"a\", \"b\" ]");
        return -1;
    }
    if (n < 0 || ((it->flags & F_NONEMPTY) && n == 0)) {
        conf_err(ctx, s, "must not be empty");
        return -1;
    }
    list = calloc((size_t)n + 1, sizeof *list);
    if (!list) {
        conf_oom(ctx);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v = config_setting_get_string(e), *why;

        if (!*v) {
            conf_err(ctx, e, "must not be empty");
            bad = 1;
            continue;
        }
        if (it->check && (why = it->check(v)) != NULL) {
            conf_err(ctx, e, "\"%s\": %s", v, why);
            bad = 1;
            continue;
        }
        for (int j = 0; j < i; j++) {
            if (list[j] && strcmp(list[j], v) == 0) {
                conf_err(ctx, e, "\"%s\" is listed twice", v);
                bad = 1;
                break;
            }
        }
        if (!(list[i] = strdup(v))) {
            conf_oom(ctx);
            bad = 1;
            break;
        }
    }
    if (bad) {
        strlist_free(list, (size_t)n);
        return -1;
    }
    strlist_free(*FIELD(char **, base, it), *COUNT(base, it));
    *FIELD(char **, base, it) = list;
    *COUNT(base, it) = (size_t)n;
    return 0;
}

static int init_strlist(const struct conf_item *it, void *base)
{
    size_t n = 0;
    char **list;

    *FIELD(char **, base, it) = NULL;
    *COUNT(base, it) = 0;
    while (it->def_list && it->def_list[n])
        n++;
    if (n == 0)
        return 0;
    list = calloc(n + 1, sizeof *list);
    if (!list)
        return -1;
    *FIELD(char **, base, it) = list;
    for (size_t i = 0; i < n; i++) {
        if (!(list[i] = strdup(it->def_list[i])))
            return -1; /* the caller frees what is there */
        *COUNT(base, it) = i + 1;
    }
    return 0;
}

static void release_strlist(const struct conf_item *it, void *base)
{
    strlist_free(*FIELD(char **, base, it), *COUNT(base, it));
    *FIELD(char **, base, it) = NULL;
    *COUNT(base, it) = 0;
}

/* "host:port", "[v6]:port" or "*:port"; returns NULL or why it is wrong. */
static const char *listen_parse_one(const char *text, struct aos_listen *out)
{
    const char *colon, *host, *hend, *port;
    char hbuf[256], *end;
    unsigned char addr[sizeof(struct in6_addr)];
    unsigned long p;
    size_t hlen;

    if (text[0] == '[') {
        host = text + 1;
        hend = strchr(host, ']');
        if (!hend || hend[1] != ':')
            return "expected \"[IPv6]:port\"";
        port = hend + 2;
    } else {
        colon = strrchr(text, ':');
        if (!colon)
            return "expected \"host:port\", \"[IPv6]:port\" or \"*:port\"";
        host = text;
        hend = colon;
        port = colon + 1;
        if (memchr(host, ':', (size_t)(hend - host)))
            return "an IPv6 address needs brackets: \"[::1]:8080\"";
    }
    hlen = (size_t)(hend - host);
    if (hlen == 0)
        return "missing host (use \"*:port\" for every address)";
    if (hlen >= sizeof hbuf)
        return "host name too long";
    memcpy(hbuf, host, hlen);
    hbuf[hlen] = '\0';
    if (text[0] == '[') {
        if (inet_pton(AF_INET6, hbuf, addr) != 1)
            return "not an IPv6 address between the brackets";
    } else if (strcmp(hbuf, "*") == 0) {
        memcpy(hbuf, "0.0.0.0", sizeof "0.0.0.0");
    } else if (inet_pton(AF_INET, hbuf, addr) != 1) {
        for (const char *c = hbuf; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                  *c == '-' || *c == '.'))
                return "host is neither an address nor a host name";
    }
    if (*port < '0' || *port > '9')
        return "missing port";
    errno = 0;
    p = strtoul(port, &end, 10);
    if (*end || errno || p < 1 || p > 65535)
        return "port must be 1..65535";
    out->host = strdup(hbuf);
    out->text = strdup(text);
    out->port = (uint16_t)p;
    if (!out->host || !out->text)
        return "out of memory";
    return NULL;
}

static void listen_free(struct aos_listen *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(l[i].host);
        free(l[i].text);
    }
    free(l);
}

static int parse_listen(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s,
                        void *base)
{
    int n = config_setting_length(s), bad = 0;
    struct aos_listen *l;

    if (config_setting_type(s) != CONFIG_TYPE_ARRAY ||
        (n > 0 && config_setting_type(config_setting_get_elem(s, 0)) != CONFIG_TYPE_STRING)) {
        type_err(ctx, s, "an array of strings: [ \"127.0.0.1:8080\" ]");
        return -1;
    }
    if (n <= 0) {
        conf_err(ctx, s, "needs at least one address");
        return -1;
    }
    l = calloc((size_t)n, sizeof *l);
    if (!l) {
        conf_oom(ctx);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v = config_setting_get_string(e), *why;

        if ((why = listen_parse_one(v, &l[i])) != NULL) {
            conf_err(ctx, e, "\"%s\": %s", v, why);
            bad = 1;
            continue;
        }
        for (int j = 0; j < i; j++) {
            if (l[j].host && l[j].port == l[i].port && strcmp(l[j].host, l[i].host) == 0) {
                conf_err(ctx, e, "\"%s\": same address as \"%s\"", v, l[j].text);
                bad = 1;
                break;
            }
        }
    }
    if (bad) {
        listen_free(l, (size_t)n);
        return -1;
    }
    listen_free(*FIELD(struct aos_listen *, base, it), *COUNT(base, it));
    *FIELD(struct aos_listen *, base, it) = l;
    *COUNT(base, it) = (size_t)n;
    return 0;
}

static int init_listen(const struct conf_item *it, void *base)
{
    size_t n = 0;
    struct aos_listen *l;

    while (it->def_list[n])
        n++;
    l = calloc(n, sizeof *l);
    *FIELD(struct aos_listen *, base, it) = l;
    *COUNT(base, it) = l ? n : 0;
    if (!l)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (listen_parse_one(it->def_list[i], &l[i]) != NULL)
            return -1; /* out of memory: the defaults are valid */
    return 0;
}

static void release_listen(const struct conf_item *it, void *base)
{
    listen_free(*FIELD(struct aos_listen *, base, it), *COUNT(base, it));
    *FIELD(struct aos_listen *, base, it) = NULL;
    *COUNT(base, it) = 0;
}

/* ----------------------------------------------------------- group kinds */

static void group_apply(struct conf_ctx *ctx, const struct conf_group *g, const config_setting_t *set,
                        void *base);

static int group_init(const struct conf_group *g, void *base)
{
    for (size_t i = 0; i < g->nitems; i++)
        if (g->items[i].kind->init(&g->items[i], base) != 0)
            return -1;
    return 0;
}

static void group_release(const struct conf_group *g, void *base)
{
    for (size_t i = 0; i < g->nitems; i++)
        g->items[i].kind->release(&g->items[i], base);
}

static int parse_group(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s,
                       void *base)
{
    if (!config_setting_is_group(s)) {
        type_err(ctx, s, "a group: { ... }");
        return -1;
    }
    group_apply(ctx, it->group, s, (char *)base + it->off);
    return 0;
}

static int init_group(const struct conf_item *it, void *base)
{
    return group_init(it->group, (char *)base + it->off);
}

static void release_group(const struct conf_item *it, void *base)
{
    group_release(it->group, (char *)base + it->off);
}

/* A list of groups, ( { ... }, { ... } ), appended to an array of structs. */
static int parse_grouplist(struct conf_ctx *ctx, const struct conf_item *it, const config_setting_t *s,
                           void *base)
{
    const struct conf_group *g = it->group;
    unsigned n = (unsigned)config_setting_length(s);
    void **arr = FIELD(void *, base, it);
    size_t *count = COUNT(base, it);
    bool track = ctx->track;
    char *grown;

    if (!config_setting_is_list(s) && !(config_setting_is_array(s) && n == 0)) {
        type_err(ctx, s, "a list of groups: ( { ... }, { ... } )");
        return -1;
    }
    if (n == 0)
        return 0;
    grown = realloc(*arr, (*count + n) * g->elem_size);
    if (!grown) {
        conf_oom(ctx);
        return -1;
    }
    *arr = grown;
    /* Inside one element libconfig already refuses duplicate names. */
    ctx->track = false;
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, i);
        void *eb = grown + *count * g->elem_size;

        if (!config_setting_is_group(e)) {
            type_err(ctx, e, "a group: { ... }");
            continue;
        }
        memset(eb, 0, g->elem_size);
        (*count)++; /* counted first so a failed init is still released */
        if (group_init(g, eb) != 0) {
            conf_oom(ctx);
            break;
        }
        group_apply(ctx, g, e, eb);
        for (size_t k = 0; k < g->nitems; k++) {
            if ((g->items[k].flags & F_REQUIRED) && !config_setting_get_member(e, g->items[k].name)) {
                char path[CONF_PATH_MAX], full[CONF_PATH_MAX + 64];

                setting_path(e, path, sizeof path);
                snprintf(full, sizeof full, "%s.%s", path, g->items[k].name);
                conf_err_at(ctx, setting_file(ctx, e), setting_line(e), full, "required");
            }
        }
        if (g->elem_done)
            g->elem_done(ctx, e, grown, *count - 1);
    }
    ctx->track = track;
    return 0;
}

static int init_grouplist(const struct conf_item *it, void *base)
{
    *FIELD(void *, base, it) = NULL;
    *COUNT(base, it) = 0;
    return 0;
}

static void release_grouplist(const struct conf_item *it, void *base)
{
    char *arr = *FIELD(char *, base, it);
    size_t n = *COUNT(base, it);

    for (size_t i = 0; i < n; i++)
        group_release(it->group, arr + i * it->group->elem_size);
    free(arr);
    *FIELD(void *, base, it) = NULL;
    *COUNT(base, it) = 0;
}

static const struct conf_kind kind_int = {parse_int, init_int, release_none};
static const struct conf_kind kind_int64 = {parse_int64, init_int64, release_none};
static const struct conf_kind kind_bool = {parse_bool, init_bool, release_none};
static const struct conf_kind kind_duration = {parse_duration, init_double, release_none};
static const struct conf_kind kind_double = {parse_double, init_double, release_none};
static const struct conf_kind kind_string = {parse_string, init_string, release_string};
static const struct conf_kind kind_strenum = {parse_strenum, init_string, release_string};
static const struct conf_kind kind_enum = {parse_enum, init_enum, release_none};
static const struct conf_kind kind_uuid = {parse_uuid, init_uuid, release_none};
static const struct conf_kind kind_strlist = {parse_strlist, init_strlist, release_strlist};
static const struct conf_kind kind_listen = {parse_listen, init_listen, release_listen};
static const struct conf_kind kind_group = {parse_group, init_group, release_group};
static const struct conf_kind kind_grouplist = {parse_grouplist, init_grouplist, release_grouplist};

/* Leaves already set by an earlier file are refused, naming both places. */
static const config_setting_t *seen_find(const struct conf_ctx *ctx, const char *path)
{
    for (size_t i = 0; i < ctx->nseen; i++)
        if (strcmp(ctx->seen[i].path, path) == 0)
            return ctx->seen[i].setting;
    return NULL;
}

static int seen_add(struct conf_ctx *ctx, const config_setting_t *s)
{
    char path[CONF_PATH_MAX];
    const config_setting_t *prev;
    struct conf_seen *grown;

    setting_path(s, path, sizeof path);
    if ((prev = seen_find(ctx, path)) != NULL) {
        conf_err(ctx, s, "already set at %s:%d", setting_file(ctx, prev), setting_line(prev));
        return -1;
    }
    grown = realloc(ctx->seen, (ctx->nseen + 1) * sizeof *grown);
    if (!grown || !(grown[ctx->nseen].path = strdup(path))) {
        if (grown)
            ctx->seen = grown;
        conf_oom(ctx);
        return -1;
    }
    grown[ctx->nseen++].setting = s;
    ctx->seen = grown;
    return 0;
}

/* The one validation routine: every member of `set` against table g. */
static void group_apply(struct conf_ctx *ctx, const struct conf_group *g, const config_setting_t *set,
                        void *base)
{
    unsigned n = (unsigned)config_setting_length(set);

    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(set, i);
        const char *name = config_setting_name(m);
        const struct conf_item *it = NULL;

        for (size_t k = 0; k < g->nitems && !it; k++)
            if (strcmp(g->items[k].name, name) == 0)
                it = &g->items[k];
        if (!it) {
            if (!g->other || !g->other(ctx, m, base))
                unknown_setting(ctx, g, m);
            continue;
        }
        if (ctx->track && it->kind != &kind_group && !(it->flags & F_CONCAT) && seen_add(ctx, m) != 0)
            continue;
        it->kind->parse(ctx, it, m, base);
    }
}

/* ------------------------------------------------------- string checks */

static const char *check_plugin_name(const char *v)
{
    size_t n = strlen(v);

    if (n > 63)
        return "a plugin name has at most 63 characters";
    if (!((v[0] >= 'a' && v[0] <= 'z') || (v[0] >= '0' && v[0] <= '9')))
        return "a plugin name starts with [a-z0-9]";
    for (size_t i = 1; i < n; i++)
        if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '_' || v[i] == '-'))
            return "a plugin name matches [a-z0-9][a-z0-9_-]*";
    return NULL;
}

static const char *check_tenant_name(const char *v)
{
    size_t n = strlen(v);

    if (n > 63)
        return "a tenant name has at most 63 characters";
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || (i > 0 && v[i] == '-')))
            return "a tenant name matches [a-z0-9][a-z0-9-]{0,62}";
    return NULL;
}

static const char *check_path_prefix(const char *v)
{
    return v[0] == '/' ? NULL : "a path prefix starts with '/'";
}

static const char *check_redis_url(const char *v)
{
    if (strncmp(v, "rediss://", 9) == 0)
        return "TLS (rediss://) is not supported by hiredis 0.14: use redis:// or unix://";
    if ((strncmp(v, "redis://", 8) == 0 && v[8]) || (strncmp(v, "unix://", 7) == 0 && v[7] == '/'))
        return NULL;
    return "expected redis://host:port/db or unix:///path/to/socket";
}

static const char *check_chaos_target(const char *v)
{
    if (strcmp(v, "http") == 0 || strcmp(v, "store") == 0)
        return NULL;
    if (strncmp(v, "plugin:", 7) == 0 && v[7] && check_plugin_name(v + 7) == NULL)
        return NULL;
    return "expected \"http\", \"store\" or \"plugin:<name>\"";
}

/* --------------------------------------------------------------- tables */

#define GROUP_OF(arr) .items = (arr), .nitems = sizeof(arr) / sizeof((arr)[0])

#define I_INT(n, T, f, d, lo, hi)                                                               \
    {                                                                                           \
        .name = n, .kind = &kind_int, .off = offsetof(T, f), .def_int = d, .min = lo, .max = hi \
    }
#define I_INT64(n, T, f, d, lo, hi)                                                               \
    {                                                                                             \
        .name = n, .kind = &kind_int64, .off = offsetof(T, f), .def_int = d, .min = lo, .max = hi \
    }
#define I_BOOL(n, T, f, d)                                                 \
    {                                                                      \
        .name = n, .kind = &kind_bool, .off = offsetof(T, f), .def_int = d \
    }
#define I_DUR(n, T, f, d, hi)                                                              \
    {                                                                                      \
        .name = n, .kind = &kind_duration, .off = offsetof(T, f), .def_dbl = d, .dmax = hi \
    }
#define I_DBL(n, T, f, d, hi, fl)                                                                     \
    {                                                                                                 \
        .name = n, .kind = &kind_double, .off = offsetof(T, f), .def_dbl = d, .dmax = hi, .flags = fl \
    }
#define I_STR(n, T, f, d, fl, chk)                                                                      \
    {                                                                                                   \
        .name = n, .kind = &kind_string, .off = offsetof(T, f), .def_str = d, .flags = fl, .check = chk \
    }
#define I_STRENUM(n, T, f, d, ch, fl)                                                                     \
    {                                                                                                     \
        .name = n, .kind = &kind_strenum, .off = offsetof(T, f), .def_str = d, .choices = ch, .flags = fl \
    }
#define I_ENUM(n, T, f, d, ch)                                                            \
    {                                                                                     \
        .name = n, .kind = &kind_enum, .off = offsetof(T, f), .def_str = d, .choices = ch \
    }
#define I_UUID(n, T, f, fl)                                               \
    {                                                                     \
        .name = n, .kind = &kind_uuid, .off = offsetof(T, f), .flags = fl \
    }
#define I_STRLIST(n, T, f, nf, d, chk)                                                                    \
    {                                                                                                     \
        .name = n, .kind = &kind_strlist, .off = offsetof(T, f), .n_off = offsetof(T, nf), .def_list = d, \
        .check = chk                                                                                      \
    }
#define I_LISTEN(n, T, f, nf, d)                                                                        \
    {                                                                                                   \
        .name = n, .kind = &kind_listen, .off = offsetof(T, f), .n_off = offsetof(T, nf), .def_list = d \
    }
/* A nested group whose members are fields of struct T at T.f (off 0: of the parent itself). */
#define I_GROUP(n, off_, g)                                     \
    {                                                           \
        .name = n, .kind = &kind_group, .off = off_, .group = g \
    }
#define I_GROUPLIST(n, T, f, nf, g, fl)                                                                  \
    {                                                                                                    \
        .name = n, .kind = &kind_grouplist, .off = offsetof(T, f), .n_off = offsetof(T, nf), .group = g, \
        .flags = fl                                                                                      \
    }

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const server_roles[] = {"api,worker", "api", "worker", NULL};
static const char *const store_drivers[] = {"sqlite", "pgsql", NULL};
static const char *const registrations[] = {"closed", "open", "admin-only", NULL};
static const char *const limit_policies[] = {"local", "redis", NULL};
static const char *const redis_fail_modes[] = {"local", "open", "closed", NULL};
static const char *const autonomies[] = {"observe", "supervised", "autonomous", NULL};
static const char *const chaos_faults[] = {"latency", "error", NULL};

static const char *const def_listen[] = {"127.0.0.1:8080", NULL};
static const char *const def_backends[] = {"auth-local", "auth-apikey", NULL};
static const char *const def_exempt[] = {"/api/v1/orchestration/", "/api/v1/aoa/", "/static/", NULL};

#define S struct aos_conf_server
static const struct conf_item server_items[] = {
    I_LISTEN("listen", S, listen, nlisten, def_listen),
    I_INT("threads", S, threads, 1, 1, 64),
    I_INT("workers", S, workers, 4, 1, 256),
    I_INT64("max_body_size", S, max_body_size, 1048576, 1024, 1073741824),
    I_INT64("max_header_size", S, max_header_size, 16384, 1024, 1048576),
    I_INT("max_headers", S, max_headers, 100, 1, 10000),
    I_INT("max_uri_size", S, max_uri_size, 8192, 256, 1048576),
    I_INT("max_json_depth", S, max_json_depth, 32, 2, 1000),
    I_INT("max_connections", S, max_connections, 10000, 1, 1000000),
    I_DUR("header_timeout", S, header_timeout, 10, 3600),
    I_DUR("body_timeout", S, body_timeout, 30, 3600),
    I_DUR("write_timeout", S, write_timeout, 30, 3600),
    I_DUR("idle_timeout", S, idle_timeout, 60, 86400),
    I_DUR("drain_timeout", S, drain_timeout, 30, 3600),
    I_INT("pool_queue", S, pool_queue, 1024, 1, 1000000),
    I_STR("data_dir", S, data_dir, AOSD_STATEDIR, F_NONEMPTY, NULL),
    I_STR("www_dir", S, www_dir, AOSD_DATADIR "/www", F_NONEMPTY, NULL),
    I_STR("user", S, user, "", 0, NULL),
    I_STRENUM("roles", S, roles, "api,worker", server_roles, 0),
};
#undef S

static const struct conf_item log_items[] = {
    I_ENUM("level", struct aos_conf_log, level, "info", log_levels),
    I_ENUM("format", struct aos_conf_log, format, "text", log_formats),
};

#define S struct aos_conf_store
static const struct conf_item store_items[] = {
    I_STRENUM("driver", S, driver, "sqlite", store_drivers, 0),
    I_STR("path", S, path, "", F_NONEMPTY, NULL), /* default <data_dir>/aos.db, set in conf_finish */
    I_STR("conninfo", S, conninfo, "", 0, NULL),
    I_INT("pool_size", S, pool_size, 4, 1, 256),
    I_DUR("busy_timeout", S, busy_timeout, 5, 3600),
    I_BOOL("auto_migrate", S, auto_migrate, 1), /* default by driver, set in conf_finish */
};
#undef S

static const struct conf_item redis_items[] = {
    I_STR("url", struct aos_conf_redis, url, "", F_NONEMPTY, check_redis_url),
    I_DUR("connect_timeout", struct aos_conf_redis, connect_timeout, 2, 600),
};

#define S struct aos_conf_argon2
static const struct conf_item argon2_items[] = {
    I_INT("t_cost", S, t_cost, 2, 1, 100),
    I_INT("m_cost_kib", S, m_cost_kib, 19456, 8, 4194304),
    I_INT("parallelism", S, parallelism, 1, 1, 64),
};
#undef S
static const struct conf_group argon2_group = {GROUP_OF(argon2_items)};

#define S struct aos_conf_auth
static const struct conf_item auth_items[] = {
    I_STR("jwt_secret_file", S, jwt_secret_file, "", F_NONEMPTY, NULL), /* required: see conf_finish */
    I_INT("token_ttl", S, token_ttl, 28800, 60, 2592000),
    I_STRLIST("backends", S, backends, nbackends, def_backends, check_plugin_name),
    I_STRENUM("registration", S, registration, "closed", registrations, 0),
    I_STR("registration_tenant", S, registration_tenant, "", 0, NULL),
    I_INT("password_min_length", S, password_min_length, 12, 8, 1024),
    I_INT("password_max_length", S, password_max_length, 128, 8, 4096),
    I_INT("max_concurrent_hashes", S, max_concurrent_hashes, 4, 1, 1024), /* default = workers */
    I_GROUP("argon2", offsetof(S, argon2), &argon2_group),
};
#undef S

static const struct conf_item read_rate_items[] = {
    I_INT("per_minute", struct aos_rate, per_minute, 300, 1, 1000000),
    I_INT("burst", struct aos_rate, burst, 60, 1, 1000000),
};
static const struct conf_item write_rate_items[] = {
    I_INT("per_minute", struct aos_rate, per_minute, 100, 1, 1000000),
    I_INT("burst", struct aos_rate, burst, 30, 1, 1000000),
};
/* -1: inherit the global value (conf_finish). */
static const struct conf_item tenant_rate_items[] = {
    I_INT("per_minute", struct aos_rate, per_minute, -1, 1, 1000000),
    I_INT("burst", struct aos_rate, burst, -1, 1, 1000000),
};
static const struct conf_group read_rate_group = {GROUP_OF(read_rate_items)};
static const struct conf_group write_rate_group = {GROUP_OF(write_rate_items)};
static const struct conf_group tenant_rate_group = {GROUP_OF(tenant_rate_items)};

#define S struct aos_conf_limits
static const struct conf_item limits_items[] = {
    I_BOOL("enabled", S, enabled, 1),
    I_GROUP("read", offsetof(S, read), &read_rate_group),
    I_GROUP("write", offsetof(S, write), &write_rate_group),
    I_STRLIST("exempt", S, exempt, nexempt, def_exempt, check_path_prefix),
    I_STRENUM("policy", S, policy, "local", limit_policies, 0),
    I_STRENUM("redis_fail", S, redis_fail, "local", redis_fail_modes, 0),
};
#undef S

static bool plugins_block(struct conf_ctx *ctx, const config_setting_t *m, void *base);

static const struct conf_item plugins_items[] = {
    I_STR("dir", struct aos_conf_plugins, dir, AOSD_PLUGINDIR, F_NONEMPTY, NULL),
    I_STRLIST("enable", struct aos_conf_plugins, enable, nenable, NULL, check_plugin_name),
};

#define S struct aos_conf_tenant
static const struct conf_item tenant_limits_items[] = {
    I_GROUP("read", offsetof(S, read), &tenant_rate_group),
    I_GROUP("write", offsetof(S, write), &tenant_rate_group),
};
static const struct conf_group tenant_limits_group = {GROUP_OF(tenant_limits_items)};

static const struct conf_item tenant_budget_items[] = {
    I_INT64("tokens_day", S, budget_tokens_day, 0, 0, INT64_MAX),
    I_INT64("tokens_month", S, budget_tokens_month, 0, 0, INT64_MAX),
    I_INT64("micro_usd_day", S, budget_micro_usd_day, 0, 0, INT64_MAX),
    I_INT64("micro_usd_month", S, budget_micro_usd_month, 0, 0, INT64_MAX),
};
static const struct conf_group tenant_budget_group = {GROUP_OF(tenant_budget_items)};

static const struct conf_item tenant_items[] = {
    I_UUID("id", S, id, F_REQUIRED),
    I_STR("name", S, name, "", F_REQUIRED | F_NONEMPTY, check_tenant_name),
    I_GROUP("limits", 0, &tenant_limits_group),
    I_STRLIST("plugins", S, plugins, nplugins, NULL, check_plugin_name),
    I_GROUP("budgets", 0, &tenant_budget_group),
    I_STRENUM("autonomy", S, autonomy, "supervised", autonomies, 0),
};
#undef S

static void tenant_done(struct conf_ctx *ctx, const config_setting_t *elem, void *arr, size_t idx);

#define S struct aos_chaos_rule
static const struct conf_item chaos_rule_items[] = {
    I_STR("target", S, target, "", F_REQUIRED | F_NONEMPTY, check_chaos_target),
    I_STRENUM("fault", S, fault, "error", chaos_faults, F_REQUIRED),
    I_DBL("probability", S, probability, 0, 1, F_REQUIRED),
    I_INT("latency_ms", S, latency_ms, 100, 0, 600000),
};
#undef S
static const struct conf_group chaos_rule_group = {GROUP_OF(chaos_rule_items),
                                                   .elem_size = sizeof(struct aos_chaos_rule)};

static const struct conf_item chaos_items[] = {
    I_BOOL("enabled", struct aos_conf_chaos, enabled, 0),
    I_GROUPLIST("rules", struct aos_conf_chaos, rules, nrules, &chaos_rule_group, 0),
};

#define S struct aos_conf_governance
static const struct conf_item retention_items[] = {
    I_INT("journal_days", S, journal_days, 90, 0, 36500),
    I_INT("events_days", S, events_days, 30, 0, 36500),
    I_INT("runs_days", S, runs_days, 365, 0, 36500),
    I_INT("idempotency_hours", S, idempotency_hours, 24, 1, 8760),
};
#undef S
static const struct conf_group retention_group = {GROUP_OF(retention_items)};
static const struct conf_item governance_items[] = {
    I_GROUP("retention", 0, &retention_group),
};

#define S struct aos_conf_engine
static const struct conf_item engine_items[] = {
    I_INT("workers", S, workers, 4, 0, 1024),
    I_DUR("lease", S, lease, 30, 3600),
    I_DUR("poll", S, poll, 0.2, 60),
    I_INT("max_attempts", S, max_attempts, 5, 1, 1000),
    I_DUR("retry_base", S, retry_base, 0.2, 3600),
    I_DUR("retry_max", S, retry_max, 60, 86400),
    I_DUR("step_timeout", S, step_timeout, 300, 86400),
    I_DBL("approval_ttl", S, approval_ttl, 86400, 31536000, 0),
    I_BOOL("four_eyes", S, four_eyes, 1),
    I_INT64("step_reserve_tokens", S, step_reserve_tokens, 1000, 0, INT64_MAX),
    I_INT64("step_reserve_micro_usd", S, step_reserve_micro_usd, 10000, 0, INT64_MAX),
    I_INT("checkpoint_batch", S, checkpoint_batch, 64, 1, 4096),
    I_DUR("checkpoint_window", S, checkpoint_window, 0.001, 1),
    I_INT("committers", S, committers, 0, 0, 64),
};
#undef S

#define S struct aos_conf_events
static const struct conf_item events_items[] = {
    I_DUR("poll", S, poll, 0.25, 60),
    I_INT("ring", S, ring, 8192, 16, 10000000),
    I_DUR("heartbeat", S, heartbeat, 15, 3600),
    I_DUR("retry", S, retry, 3, 3600),
    I_INT("max_subscribers", S, max_subscribers, 20000, 0, 10000000),
    I_INT64("client_buffer", S, client_buffer, 262144, 4096, 1073741824),
    I_INT("stream_token_ttl", S, stream_token_ttl, 300, 10, 86400),
};
#undef S

static const struct conf_group server_group = {GROUP_OF(server_items)};
static const struct conf_group engine_group = {GROUP_OF(engine_items)};
static const struct conf_group events_group = {GROUP_OF(events_items)};
static const struct conf_group log_group = {GROUP_OF(log_items)};
static const struct conf_group store_group = {GROUP_OF(store_items)};
static const struct conf_group redis_group = {GROUP_OF(redis_items)};
static const struct conf_group auth_group = {GROUP_OF(auth_items)};
static const struct conf_group limits_group = {GROUP_OF(limits_items)};
static const struct conf_group plugins_group = {
    GROUP_OF(plugins_items),
    .other = plugins_block,
    .other_hint = "besides 'dir' and 'enable', plugins holds one group per plugin: agent-echo = { ... };",
};
static const struct conf_group tenant_group = {
    GROUP_OF(tenant_items),
    .elem_size = sizeof(struct aos_conf_tenant),
    .elem_done = tenant_done,
};
static const struct conf_group chaos_group = {GROUP_OF(chaos_items)};
static const struct conf_group governance_group = {GROUP_OF(governance_items)};

#define S struct aos_conf
static const struct conf_item root_items[] = {
    I_GROUP("server", offsetof(S, server), &server_group),
    I_GROUP("log", offsetof(S, log), &log_group),
    I_GROUP("store", offsetof(S, store), &store_group),
    I_GROUP("redis", offsetof(S, redis), &redis_group),
    I_GROUP("auth", offsetof(S, auth), &auth_group),
    I_GROUP("limits", offsetof(S, limits), &limits_group),
    I_GROUP("plugins", offsetof(S, plugins), &plugins_group),
    I_GROUPLIST("tenants", S, tenants, ntenants, &tenant_group, F_CONCAT),
    I_GROUP("chaos", offsetof(S, chaos), &chaos_group),
    I_GROUP("governance", offsetof(S, governance), &governance_group),
    I_GROUP("engine", offsetof(S, engine), &engine_group),
    I_GROUP("events", offsetof(S, events), &events_group),
};
#undef S
static const struct conf_group root_group = {GROUP_OF(root_items)};

/* ------------------------------------------------- special members */

/* plugins: { <name> = { ... }; }: recorded, validated later by the loader. */
static bool plugins_block(struct conf_ctx *ctx, const config_setting_t *m, void *base)
{
    struct aos_conf_plugins *p = base;
    struct aos_conf_plugin_block *grown, *b;

    if (!config_setting_is_group(m))
        return false;
    if (ctx->track && seen_add(ctx, m) != 0)
        return true;
    grown = realloc(p->blocks, (p->nblocks + 1) * sizeof *grown);
    if (!grown) {
        conf_oom(ctx);
        return true;
    }
    p->blocks = grown;
    b = &grown[p->nblocks];
    if (!(b->name = strdup(config_setting_name(m)))) {
        conf_oom(ctx);
        return true;
    }
    b->setting = m;
    b->file = setting_file(ctx, m);
    b->line = setting_line(m);
    p->nblocks++;
    return true;
}

static void tenant_done(struct conf_ctx *ctx, const config_setting_t *elem, void *arr, size_t idx)
{
    struct aos_conf_tenant *all = arr, *t = &all[idx];

    t->file = setting_file(ctx, elem);
    t->line = setting_line(elem);
    t->setting = elem;
    t->limits_set = config_setting_get_member(elem, "limits") != NULL;
    for (size_t j = 0; j < idx; j++) {
        if (t->id[0] && strcmp(all[j].id, t->id) == 0)
            conf_err(ctx, config_setting_get_member(elem, "id"),
                     "duplicate tenant id %s (first declared at %s:%d)", t->id, all[j].file, all[j].line);
        if (t->name && *t->name && all[j].name && strcmp(all[j].name, t->name) == 0)
            conf_err(ctx, config_setting_get_member(elem, "name"),
                     "duplicate tenant name \"%s\" (first declared at %s:%d)", t->name, all[j].file,
                     all[j].line);
    }
}

/* ------------------------------------------------------------- finish */

static bool list_has(char *const *list, size_t n, const char *v)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], v) == 0)
            return true;
    return false;
}

/* Derived defaults and rules across settings, on the merged result. */
static void conf_finish(struct conf_ctx *ctx, struct aos_conf *c)
{
    const config_setting_t *s;
    const char *testing = getenv("AOS_TESTING");

    if (!seen_find(ctx, "auth.jwt_secret_file"))
        conf_err_at(ctx, c->path, 0, "auth.jwt_secret_file",
                    "required (path of a file holding >= 32 random bytes)");

    if (!seen_find(ctx, "store.path")) {
        size_t n = strlen(c->server.data_dir) + sizeof "/aos.db";
        char *p = malloc(n);

        if (!p) {
            conf_oom(ctx);
        } else {
            snprintf(p, n, "%s/aos.db", c->server.data_dir);
            free(c->store.path);
            c->store.path = p;
        }
    }
    c->store.auto_migrate_set = seen_find(ctx, "store.auto_migrate") != NULL;
    if (!c->store.auto_migrate_set)
        c->store.auto_migrate = strcmp(c->store.driver, "sqlite") == 0;
    if (strcmp(c->store.driver, "pgsql") == 0 && !*c->store.conninfo) {
        s = seen_find(ctx, "store.conninfo");
        if (!s)
            s = seen_find(ctx, "store.driver");
        conf_err_at(ctx, setting_file(ctx, s), setting_line(s), "store.conninfo",
                    "required when store.driver = \"pgsql\" (e.g. \"postgresql://aosd@localhost/aosd\")");
    }

    c->redis.enabled = seen_find(ctx, "redis.url") != NULL;
    if (!c->redis.enabled && (s = seen_find(ctx, "redis.connect_timeout")) != NULL)
        conf_err_at(ctx, setting_file(ctx, s), setting_line(s), "redis.url",
                    "required when the redis group is used (redis://host:port/db or unix:///path)");
    if (!c->redis.enabled && strcmp(c->limits.policy, "redis") == 0) {
        s = seen_find(ctx, "limits.policy");
        conf_err(ctx, s, "\"redis\" needs redis.url to be set");
    }
    if (testing && strcmp(testing, "1") == 0)
        c->limits.enabled = false; /* test suites hammer the API from one address */

    if (!seen_find(ctx, "auth.max_concurrent_hashes"))
        c->auth.max_concurrent_hashes = c->server.workers > 1 ? c->server.workers / 2 : 1;
    if (c->auth.password_min_length > c->auth.password_max_length) {
        s = seen_find(ctx, "auth.password_min_length");
        if (!s)
            s = seen_find(ctx, "auth.password_max_length");
        conf_err(ctx, s, "password_min_length (%d) is greater than password_max_length (%d)",
                 c->auth.password_min_length, c->auth.password_max_length);
    }
    if ((long long)c->auth.argon2.m_cost_kib < 8LL * c->auth.argon2.parallelism) {
        s = seen_find(ctx, "auth.argon2.m_cost_kib");
        if (!s)
            s = seen_find(ctx, "auth.argon2.parallelism");
        conf_err_at(ctx, setting_file(ctx, s), setting_line(s), "auth.argon2.m_cost_kib",
                    "%d KiB is below 8 * parallelism (%d KiB), the Argon2 minimum", c->auth.argon2.m_cost_kib,
                    8 * c->auth.argon2.parallelism);
    }
    if (strcmp(c->auth.registration, "open") == 0 && !*c->auth.registration_tenant) {
        s = seen_find(ctx, "auth.registration");
        conf_err_at(ctx, setting_file(ctx, s), setting_line(s), "auth.registration_tenant",
                    "required when auth.registration = \"open\" (the tenant new users join, by name or id)");
    }
    if (*c->auth.registration_tenant && !aos_conf_tenant_find(c, c->auth.registration_tenant)) {
        s = seen_find(ctx, "auth.registration_tenant");
        conf_err(ctx, s, "no tenant \"%s\" is declared", c->auth.registration_tenant);
    }

    s = seen_find(ctx, "plugins.enable");
    c->plugins.enable_file = s ? setting_file(ctx, s) : NULL;
    c->plugins.enable_line = s ? setting_line(s) : 0;
    for (size_t i = 0; i < c->plugins.nblocks; i++) {
        const struct aos_conf_plugin_block *b = &c->plugins.blocks[i];

        if (!list_has(c->plugins.enable, c->plugins.nenable, b->name))
            conf_err(ctx, b->setting,
                     "block for a plugin that is not enabled (add \"%s\" to plugins.enable or "
                     "remove the block)",
                     b->name);
    }

    for (size_t i = 0; i < c->ntenants; i++) {
        struct aos_conf_tenant *t = &c->tenants[i];
        const config_setting_t *pl = config_setting_get_member(t->setting, "plugins");

        if (t->read.per_minute < 0)
            t->read.per_minute = c->limits.read.per_minute;
        if (t->read.burst < 0)
            t->read.burst = c->limits.read.burst;
        if (t->write.per_minute < 0)
            t->write.per_minute = c->limits.write.per_minute;
        if (t->write.burst < 0)
            t->write.burst = c->limits.write.burst;
        for (size_t k = 0; pl && k < t->nplugins; k++)
            if (!list_has(c->plugins.enable, c->plugins.nenable, t->plugins[k]))
                conf_err(ctx, config_setting_get_elem(pl, (unsigned)k), "\"%s\" is not in plugins.enable",
                         t->plugins[k]);
    }
}

/* ----------------------------------------------------------- loading */

static int file_readable(const char *path)
{
    struct stat st;
    FILE *fp = fopen(path, "r");
    int err = 0;

    if (!fp)
        return errno;
    if (fstat(fileno(fp), &st) != 0)
        err = errno;
    else if (S_ISDIR(st.st_mode))
        err = EISDIR;
    fclose(fp);
    return err;
}

static int conf_name_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);

    /* Dot files are editor and package-manager leftovers. */
    return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

static int conf_name_cmp(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name); /* byte order, not the locale's */
}

static int path_append(struct conf_ctx *ctx, char ***paths, size_t *n, char *p)
{
    char **grown;

    if (!p || !(grown = realloc(*paths, (*n + 1) * sizeof *grown))) {
        free(p);
        conf_oom(ctx);
        return -1;
    }
    grown[(*n)++] = p;
    *paths = grown;
    return 0;
}

/* dir + "/" + name; dir "" means the current directory (no "./" in messages). */
static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    const char *sep = *dir && dir[strlen(dir) - 1] != '/' ? "/" : "";

    if (p)
        snprintf(p, n, "%s%s%s", dir, sep, name);
    return p;
}

/* Appends <dir>/<sub>/<*.conf> in byte order; a missing directory is fine. */
static int conf_dir_list(struct conf_ctx *ctx, const char *dir, const char *sub, char ***paths, size_t *n)
{
    char *sdir = path_join(dir, sub);
    struct dirent **ents = NULL;
    int nents, rc = 0;

    if (!sdir) {
        conf_oom(ctx);
        return -1;
    }
    nents = scandir(sdir, &ents, conf_name_filter, conf_name_cmp);
    if (nents < 0) {
        int err = errno;

        if (err == ENOENT || err == ENOTDIR) {
            free(sdir);
            return 0;
        }
        conf_err_at(ctx, sdir, 0, NULL, "cannot read directory: %s", strerror(err));
        free(sdir);
        return -1;
    }
    for (int i = 0; i < nents; i++) {
        if (rc == 0) {
            char *p = path_join(sdir, ents[i]->d_name);
            struct stat st;

            if (!p) {
                conf_oom(ctx);
                rc = -1;
            } else if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) {
                free(p); /* a directory or dangling link named *.conf is no config file */
            } else if (path_append(ctx, paths, n, p) != 0) {
                rc = -1;
            }
        }
        free(ents[i]);
    }
    free(ents);
    free(sdir);
    return rc;
}

static void conf_read_one(struct conf_ctx *ctx, struct aos_conf *c, size_t i, const char *incdir)
{
    config_t *cfg = &c->trees[i];
    const char *file = c->files[i];
    int err;

    config_init(cfg);
    c->ntrees++;
    config_set_include_dir(cfg, incdir);
    if ((err = file_readable(file)) != 0) {
        conf_err_at(ctx, file, 0, NULL, "cannot read: %s", strerror(err));
        ctx->broken = true;
        return;
    }
    if (config_read_file(cfg, file) != CONFIG_TRUE) {
        const char *text = config_error_text(cfg);

        if (config_error_type(cfg) == CONFIG_ERR_FILE_IO)
            conf_err_at(ctx, file, 0, NULL, "cannot read: %s", text ? text : "I/O error");
        else if (text && strcmp(text, "syntax error") == 0)
            conf_err_at(ctx, config_error_file(cfg) ? config_error_file(cfg) : file, config_error_line(cfg),
                        NULL, "syntax error");
        else
            conf_err_at(ctx, config_error_file(cfg) ? config_error_file(cfg) : file, config_error_line(cfg),
                        NULL, "syntax error: %s", text ? text : "?");
        ctx->broken = true;
        return;
    }
    ctx->track = true;
    group_apply(ctx, &root_group, config_root_setting(cfg), c);
}

struct aos_conf *aos_conf_load(const char *path, struct aos_conf_errors *errs)
{
    struct aos_conf *c = calloc(1, sizeof *c);
    struct conf_ctx ctx = {.conf = c, .errs = errs};
    char *dir = NULL, **paths = NULL;
    const char *slash;
    size_t npaths = 0;
    int err;

    if (!c || !(c->path = strdup(path))) {
        struct aos_conf stub = {.path = (char *)path};
        ctx.conf = &stub;
        conf_oom(&ctx);
        free(c);
        return NULL;
    }
    if (group_init(&root_group, c) != 0) {
        conf_oom(&ctx);
        goto done;
    }
    if ((err = file_readable(path)) != 0) {
        conf_err_at(&ctx, path, 0, NULL, "cannot read: %s", strerror(err));
        goto done;
    }
    /* conf.d/ and tenants.d/ sit next to the main file; "x.conf" gives
     * "conf.d/y.conf", not "./conf.d/y.conf", in messages. */
    slash = strrchr(path, '/');
    dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup("");
    if (!dir || path_append(&ctx, &paths, &npaths, strdup(path)) != 0 ||
        conf_dir_list(&ctx, dir, "conf.d", &paths, &npaths) != 0 ||
        conf_dir_list(&ctx, dir, "tenants.d", &paths, &npaths) != 0) {
        if (!dir)
            conf_oom(&ctx);
        ctx.broken = true;
    }
    /* Sized once: settings point back into their config_t. */
    c->trees = calloc(npaths ? npaths : 1, sizeof *c->trees);
    c->files = paths;
    c->nfiles = npaths;
    paths = NULL;
    if (!c->trees) {
        conf_oom(&ctx);
        goto done;
    }
    for (size_t i = 0; i < c->nfiles; i++)
        conf_read_one(&ctx, c, i, *dir ? dir : ".");
    if (!ctx.broken)
        conf_finish(&ctx, c);

done:
    for (size_t i = 0; i < ctx.nseen; i++)
        free(ctx.seen[i].path);
    free(ctx.seen);
    for (size_t i = 0; i < ctx.ntexts; i++) {
        free(ctx.texts[i].file);
        free(ctx.texts[i].text);
    }
    free(ctx.texts);
    free(dir);
    if (ctx.nerr > 0) {
        aos_conf_free(c);
        return NULL;
    }
    return c;
}

void aos_conf_free(struct aos_conf *conf)
{
    if (!conf)
        return;
    group_release(&root_group, conf);
    for (size_t i = 0; i < conf->plugins.nblocks; i++)
        free(conf->plugins.blocks[i].name);
    free(conf->plugins.blocks);
    for (size_t i = 0; i < conf->ntrees; i++)
        config_destroy(&conf->trees[i]);
    free(conf->trees);
    for (size_t i = 0; i < conf->nfiles; i++)
        free(conf->files[i]);
    free(conf->files);
    free(conf->path);
    free(conf);
}

void aos_conf_errors_free(struct aos_conf_errors *errs)
{
    if (!errs)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->n = 0;
}

const struct aos_conf_tenant *aos_conf_tenant_find(const struct aos_conf *conf, const char *id_or_name)
{
    for (size_t i = 0; i < conf->ntenants; i++) {
        const struct aos_conf_tenant *t = &conf->tenants[i];

        if (strcasecmp(t->id, id_or_name) == 0 || (t->name && strcmp(t->name, id_or_name) == 0))
            return t;
    }
    return NULL;
}

bool aos_conf_tenant_allows_plugin(const struct aos_conf_tenant *t, const char *plugin)
{
    if (t->nplugins == 0)
        return true;
    for (size_t i = 0; i < t->nplugins; i++)
        if (strcmp(t->plugins[i], plugin) == 0)
            return true;
    return false;
}

const struct aos_conf_plugin_block *aos_conf_plugin_block(const struct aos_conf *conf, const char *name)
{
    for (size_t i = 0; i < conf->plugins.nblocks; i++)
        if (strcmp(conf->plugins.blocks[i].name, name) == 0)
            return &conf->plugins.blocks[i];
    return NULL;
}
