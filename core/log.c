#include "config.h"

#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static atomic_int log_level = AOS_LVL_INFO;
static atomic_int log_format = AOS_LOG_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void aos_log_configure(int level, enum aos_log_format format)
{
    atomic_store(&log_level, level);
    atomic_store(&log_format, (int)format);
}

int aos_log_level(void) { return atomic_load(&log_level); }

int aos_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

const char *aos_log_level_name(int level)
{
    return level >= 0 && level < 4 ? level_names[level] : "unknown";
}

struct line {
    char buf[LOG_LINE_MAX];
    size_t len;
    int json;
};

static void put_raw(struct line *l, const char *s, size_t n)
{
    /* Keep room for "...\n" (and the closing brace in JSON). */
    size_t room = sizeof(l->buf) - 8 - l->len;
    if (n > room)
        n = room;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put(struct line *l, const char *s) { put_raw(l, s, strlen(s)); }

/* Writes s escaped for the current format.  Text values that contain
 * spaces, quotes or '=' are quoted so lines stay machine-parsable. */
static void put_value(struct line *l, const char *s)
{
    if (s == NULL)
        s = "-";
    int quote = l->json;
    if (!quote)
        for (const char *p = s; *p; p++)
            if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20) {
                quote = 1;
                break;
            }
    if (!quote && *s == '\0')
        quote = 1;
    if (quote)
        put_raw(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put_raw(l, esc, 2);
        } else if (*p == '\n') {
            put_raw(l, "\\n", 2);
        } else if (*p == '\t') {
            put_raw(l, "\\t", 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            put_raw(l, esc, 6);
        } else {
            put_raw(l, (const char *)p, 1);
        }
    }
    if (quote)
        put_raw(l, "\"", 1);
}

static void put_field(struct line *l, const char *key, const char *value)
{
    if (l->json) {
        put(l, ",\"");
        put(l, key);
        put(l, "\":");
    } else {
        put(l, " ");
        put(l, key);
        put(l, "=");
    }
    put_value(l, value);
}

static void begin(struct line *l, int level, const char *msg)
{
    struct timespec ts;
    struct tm tm;
    char stamp[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", ts.tv_nsec / 1000000);

    l->len = 0;
    l->json = atomic_load(&log_format) == AOS_LOG_JSON;
    if (l->json) {
        put(l, "{\"ts\":\"");
        put(l, stamp);
        put(l, "\",\"level\":\"");
        put(l, aos_log_level_name(level));
        put(l, "\",\"msg\":");
        put_value(l, msg);
    } else {
        put(l, stamp);
        put(l, " level=");
        put(l, aos_log_level_name(level));
        put(l, " msg=");
        put_value(l, msg);
    }
}

static void finish(struct line *l)
{
    if (l->len >= sizeof(l->buf) - 8)
        put_raw(l, "...", 3);
    if (l->json)
        l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    /* One write per line keeps lines whole across threads and processes;
     * a failed log write has nowhere to be reported. */
    ssize_t r = write(STDERR_FILENO, l->buf, l->len);
    (void)r;
}

void aos_logv(int level, const char *msg, va_list fields)
{
    if (level > atomic_load(&log_level))
        return;
    struct line l;
    begin(&l, level, msg);
    for (;;) {
        const char *key = va_arg(fields, const char *);
        if (key == NULL)
            break;
        put_field(&l, key, va_arg(fields, const char *));
    }
    finish(&l);
}

void aos_log(int level, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    aos_logv(level, msg, ap);
    va_end(ap);
}

void aos_logfv(int level, const char *source, const char *fmt, va_list ap)
{
    if (level > atomic_load(&log_level))
        return;
    char msg[LOG_LINE_MAX / 2];
    vsnprintf(msg, sizeof msg, fmt, ap);
    struct line l;
    begin(&l, level, msg);
    if (source != NULL)
        put_field(&l, "src", source);
    finish(&l);
}

void aos_logf(int level, const char *source, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    aos_logfv(level, source, fmt, ap);
    va_end(ap);
}

_Noreturn void aos_assert_fail(const char *expr, const char *file, int line)
{
    char where[32];
    snprintf(where, sizeof where, "%d", line);
    aos_log(AOS_LVL_ERROR, "assertion failed", "expr", expr, "file", file, "line", where, NULL);
    abort();
}
