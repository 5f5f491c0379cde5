/*
 * Structured logging to stderr.  One line per call, either
 *   text:  2026-11-25T10:00:00.123Z level=info msg="listening" addr=127.0.0.1:8080
 *   json:  {"ts":"...","level":"info","msg":"listening","addr":"127.0.0.1:8080"}
 * Fields are passed as alternating key/value strings ending with NULL so
 * both formats can quote them correctly.  Thread-safe: each line is built
 * in a local buffer and written with one write(2).
 */
#ifndef AOS_LOG_H
#define AOS_LOG_H

#include <stdarg.h>

enum aos_log_format { AOS_LOG_TEXT = 0, AOS_LOG_JSON = 1 };

/* Same numbering as the SDK's enum aos_log_level. */
enum aos_log_lvl { AOS_LVL_ERROR = 0, AOS_LVL_WARN = 1, AOS_LVL_INFO = 2, AOS_LVL_DEBUG = 3 };

void aos_log_configure(int level, enum aos_log_format format);
int aos_log_level(void);
/* Parses "error|warn|info|debug"; -1 if unknown. */
int aos_log_level_parse(const char *name);
const char *aos_log_level_name(int level);

/* aos_log(level, msg, key1, val1, key2, val2, ..., NULL).  A NULL value
 * prints as "-".  msg is a fixed text; variable data goes into fields. */
void aos_log(int level, const char *msg, ...) __attribute__((sentinel));
void aos_logv(int level, const char *msg, va_list fields);

/* printf-style message plus no fields: for messages composed elsewhere
 * (plugin log lines, config errors).  `source` becomes the field "src"
 * when non-NULL. */
void aos_logf(int level, const char *source, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void aos_logfv(int level, const char *source, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define aos_err(...) aos_log(AOS_LVL_ERROR, __VA_ARGS__)
#define aos_warn(...) aos_log(AOS_LVL_WARN, __VA_ARGS__)
#define aos_info(...) aos_log(AOS_LVL_INFO, __VA_ARGS__)
#define aos_debug(...) aos_log(AOS_LVL_DEBUG, __VA_ARGS__)

/* Broken invariant: log file:line and abort.  Never continue after one. */
#define aos_assert(cond)                                                   \
    do {                                                                   \
        if (!(cond))                                                       \
            aos_assert_fail(#cond, __FILE__, __LINE__);                    \
    } while (0)
_Noreturn void aos_assert_fail(const char *expr, const char *file, int line);

#endif
