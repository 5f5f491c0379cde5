#include "config.h"

#include "json.h"

#include "log.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * json-c 0.16 builds the tree, but even with JSON_TOKENER_STRICT |
 * JSON_TOKENER_VALIDATE_UTF8 it accepts input that is not JSON (RFC 8259):
 * single-quoted strings, NaN / Infinity / -Infinity, "1.", "-.5", "-01",
 * raw control characters inside strings, lone \u surrogates, overlong and
 * surrogate UTF-8, integers beyond 64 bits (silently clamped) and 1e400
 * (infinity).  Some of these survive re-serialisation (json-c prints a
 * parsed double from its source text), so a body we accept could leak
 * invalid JSON downstream.  A lexical pass over the raw bytes closes these
 * gaps; json-c still checks the structure (brackets, commas, colons,
 * depth).  When both complain, the error at the smaller byte offset is
 * reported.
 */

/* Upper bound for max_depth: json-c allocates a frame per level up front. */
#define JSON_DEPTH_CAP 1024

/* Error text is advisory: a truncated message is still a message, so the
 * snprintf result is deliberately not treated as a failure. */
__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (n < 0)
        err[0] = '\0';
}

/* For texts whose size is known to fit: truncation would be a bug. */
__attribute__((format(printf, 3, 4))) static void fmt_fixed(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    aos_assert(k >= 0 && (size_t)k < n);
}

/* ------------------------------------------------------------ lexical pass */

struct lex_err {
    size_t at;
    const char *msg; /* NULL: nested too deep */
    int byte;        /* offending byte for "unexpected character", else -1 */
};

static int lex_fail(struct lex_err *e, size_t at, const char *msg, int byte)
{
    e->at = at;
    e->msg = msg;
    e->byte = byte;
    return -1;
}

static const char *plural(size_t n) { return n == 1 ? "" : "s"; }

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* A byte that would continue a number or literal token: "01", "1.2.3",
 * "truex".  Anything else ends the token and is judged on its own. */
static int continues_token(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '+' ||
           c == '-' || c == '_';
}

static long hex4(const unsigned char *b, size_t len, size_t p)
{
    if (len < 4 || p > len - 4)
        return -1;
    long v = 0;
    for (size_t i = p; i < p + 4; i++) {
        unsigned char c = b[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Length of the well-formed UTF-8 sequence at s (Unicode table 3-7: no
 * overlongs, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t need;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return need;
}

static int lex_string(const unsigned char *b, size_t len, size_t *pos, struct lex_err *e)
{
    size_t p = *pos + 1;
    while (p < len) {
        unsigned char c = b[p];
        if (c == '"') {
            *pos = p + 1;
            return 0;
        }
        if (c == '\\') {
            if (p + 1 >= len)
                break;
            switch (b[p + 1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                continue;
            case 'u':
                break;
            default:
                return lex_fail(e, p, "invalid escape sequence in string", -1);
            }
            long u = hex4(b, len, p + 2);
            if (u < 0)
                return lex_fail(e, p, "invalid \\u escape: four hex digits expected", -1);
            if (u >= 0xDC00 && u <= 0xDFFF)
                return lex_fail(e, p, "unpaired UTF-16 surrogate in \\u escape", -1);
            if (u >= 0xD800 && u <= 0xDBFF) {
                long low = p + 7 < len && b[p + 6] == '\\' && b[p + 7] == 'u' ? hex4(b, len, p + 8) : -1;
                if (low < 0xDC00 || low > 0xDFFF)
                    return lex_fail(e, p, "unpaired UTF-16 surrogate in \\u escape", -1);
                p += 12;
            } else {
                p += 6;
            }
            continue;
        }
        if (c < 0x20)
            return lex_fail(e, p, "control character in string (escape it, e.g. \\n or \\u0000)", -1);
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n = utf8_seq(b + p, len - p);
        if (n == 0)
            return lex_fail(e, p, "invalid UTF-8", -1);
        p += n;
    }
    return lex_fail(e, len, "unexpected end of body (unterminated string)", -1);
}

/* Digits that a magnitude compare of decimal strings of equal length can
 * decide: memcmp orders ASCII digits numerically. */
static int digits_exceed(const unsigned char *d, size_t n, const char *limit)
{
    size_t ln = strlen(limit);
    return n > ln || (n == ln && memcmp(d, limit, ln) > 0);
}

/* strtod on a copy, because the body is not NUL-terminated. */
static int number_finite(const unsigned char *s, size_t n)
{
    char small[128];
    char *copy = n < sizeof small ? small : malloc(n + 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, s, n);
    copy[n] = '\0';
    int ok = isfinite(strtod(copy, NULL));
    if (copy != small)
        free(copy);
    return ok;
}

static int lex_number(const unsigned char *b, size_t len, size_t *pos, struct lex_err *e)
{
    size_t start = *pos, p = *pos;
    int neg = 0, frac = 0, expo = 0;
    if (b[p] == '-') {
        neg = 1;
        p++;
    }
    if (p >= len)
        return lex_fail(e, p, "unexpected end of body (incomplete number)", -1);
    if (!is_digit(b[p]))
        return lex_fail(e, p, "invalid number: digit expected", -1);
    size_t int_start = p;
    if (b[p] == '0')
        p++;
    else
        while (p < len && is_digit(b[p]))
            p++;
    size_t int_len = p - int_start;
    if (p < len && b[p] == '.') {
        frac = 1;
        p++;
        if (p >= len || !is_digit(b[p]))
            return lex_fail(e, p, "invalid number: digit expected after '.'", -1);
        while (p < len && is_digit(b[p]))
            p++;
    }
    if (p < len && (b[p] == 'e' || b[p] == 'E')) {
        expo = 1;
        p++;
        if (p < len && (b[p] == '+' || b[p] == '-'))
            p++;
        if (p >= len || !is_digit(b[p]))
            return lex_fail(e, p, "invalid number: digit expected in exponent", -1);
        while (p < len && is_digit(b[p]))
            p++;
    }
    if (p < len && continues_token(b[p]))
        return lex_fail(
            e, p, is_digit(b[p]) ? "invalid number: leading zeros are not allowed" : "invalid number", -1);
    if (!frac && !expo) {
        if (digits_exceed(b + int_start, int_len, neg ? "9223372036854775808" : "18446744073709551615"))
            return lex_fail(e, start, "integer outside the 64-bit range (send it as a string)", -1);
    } else if ((expo || int_len > 300) && !number_finite(b + start, p - start)) {
        return lex_fail(e, start, "number too large for a double", -1);
    }
    *pos = p;
    return 0;
}

static int lex_word(const unsigned char *b, size_t len, size_t *pos, const char *word, struct lex_err *e)
{
    size_t n = strlen(word);
    size_t p = *pos;
    if (len - p < n || memcmp(b + p, word, n) != 0 || (len - p > n && continues_token(b[p + n])))
        return lex_fail(e, p, "invalid literal (expected true, false or null)", -1);
    *pos = p + n;
    return 0;
}

/* First lexical error of buf, or 0 if there is none.  Nesting is counted
 * here too: json-c's depth counts value levels, so an empty container
 * costs it one level less than a filled one and max_depth could not be
 * exact with json-c alone. */
static int lex_check(const unsigned char *b, size_t len, int max_depth, struct lex_err *e)
{
    size_t p = 0;
    int depth = 0;
    while (p < len) {
        unsigned char c = b[p];
        int rc = 0;
        switch (c) {
        case '{':
        case '[':
            if (++depth > max_depth)
                return lex_fail(e, p, NULL, -1);
            p++;
            break;
        case '}':
        case ']':
            if (depth > 0)
                depth--;
            p++;
            break;
        case ' ':
        case '\t':
        case '\n':
        case '\r':
        case ',':
        case ':':
            p++;
            break;
        case '"':
            rc = lex_string(b, len, &p, e);
            break;
        case '-':
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7':
        case '8':
        case '9':
            rc = lex_number(b, len, &p, e);
            break;
        case 't':
            rc = lex_word(b, len, &p, "true", e);
            break;
        case 'f':
            rc = lex_word(b, len, &p, "false", e);
            break;
        case 'n':
            rc = lex_word(b, len, &p, "null", e);
            break;
        case '\'':
            return lex_fail(e, p, "strings must use double quotes", -1);
        default:
            return lex_fail(e, p, "unexpected character", c);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ parsing */

static const char *tokener_msg(enum json_tokener_error jerr)
{
    switch (jerr) {
    case json_tokener_error_parse_eof:
        return "unexpected end of body";
    case json_tokener_error_parse_unexpected:
        return "unexpected character";
    case json_tokener_error_parse_null:
    case json_tokener_error_parse_boolean:
        return "invalid literal (expected true, false or null)";
    case json_tokener_error_parse_number:
        return "invalid number";
    case json_tokener_error_parse_array:
        return "expected ',' or ']' after an array element";
    case json_tokener_error_parse_object_key_name:
        return "expected a double-quoted object key";
    case json_tokener_error_parse_object_key_sep:
        return "expected ':' after an object key";
    case json_tokener_error_parse_object_value_sep:
        return "expected ',' or '}' after an object member";
    case json_tokener_error_parse_string:
        return "invalid escape sequence in string";
    case json_tokener_error_parse_comment:
        return "comments are not allowed";
    case json_tokener_error_parse_utf8_string:
        return "invalid UTF-8";
    default:
        return json_tokener_error_desc(jerr);
    }
}

/* json-c only says "unexpected character" for [1,] and {"a":1,}. */
static int trailing_comma(const unsigned char *b, size_t at)
{
    if (b[at] != ']' && b[at] != '}')
        return 0;
    while (at > 0 && is_ws(b[at - 1]))
        at--;
    return at > 0 && b[at - 1] == ',';
}

static void depth_report(int max_depth, size_t at, char *err, size_t errlen)
{
    set_err(err, errlen, "JSON nested deeper than %d level%s at byte %zu", max_depth,
            plural((size_t)max_depth), at);
}

static void lex_report(const struct lex_err *e, int max_depth, char *err, size_t errlen)
{
    if (e->msg == NULL)
        depth_report(max_depth, e->at, err, errlen);
    else if (e->byte >= 0x20 && e->byte < 0x7f)
        set_err(err, errlen, "invalid JSON at byte %zu: %s '%c'", e->at, e->msg, e->byte);
    else if (e->byte >= 0)
        set_err(err, errlen, "invalid JSON at byte %zu: %s (byte 0x%02x)", e->at, e->msg, e->byte);
    else
        set_err(err, errlen, "invalid JSON at byte %zu: %s", e->at, e->msg);
}

struct json_object *aos_json_parse(const char *buf, size_t len, int max_depth, char *err, size_t errlen)
{
    struct json_object *obj = NULL;
    struct json_tokener *tok = NULL;
    const unsigned char *b = (const unsigned char *)buf;
    struct lex_err lex;
    size_t i;

    aos_assert(max_depth >= 1 && max_depth <= JSON_DEPTH_CAP);
    for (i = 0; buf != NULL && i < len && is_ws(b[i]); i++)
        ;
    if (buf == NULL || i == len) {
        set_err(err, errlen, "empty body");
        goto out;
    }
    /* json-c takes an int length and we may pass one byte more. */
    if (len > (size_t)INT_MAX - 1) {
        set_err(err, errlen, "body too large for JSON (%zu bytes)", len);
        goto out;
    }
    int lexbad = lex_check(b, len, max_depth, &lex) < 0;

    /* A backstop only: lex_check enforces the exact limit, and json-c needs
     * one level more for the scalars inside the deepest container. */
    tok = json_tokener_new_ex(max_depth + 1);
    if (tok == NULL) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    obj = json_tokener_parse_ex(tok, buf, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t at = json_tokener_get_parse_end(tok);
    if (jerr == json_tokener_continue) {
        /* A value without an end of its own (a bare number) needs the
         * terminator json-c expects; buf has none, so feed it separately. */
        obj = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
        at = len;
        if (jerr != json_tokener_success && jerr != json_tokener_error_depth)
            jerr = json_tokener_error_parse_eof;
    } else if (jerr == json_tokener_success && at < len) {
        /* json-c stops at a NUL byte even in strict mode. */
        for (i = at; i < len && is_ws(b[i]); i++)
            ;
        if (i < len) {
            json_object_put(obj);
            obj = NULL;
            jerr = json_tokener_error_parse_unexpected;
            at = i;
        }
    }

    if (lexbad && (jerr == json_tokener_success || lex.at <= at)) {
        lex_report(&lex, max_depth, err, errlen);
        json_object_put(obj);
        obj = NULL;
    } else if (jerr == json_tokener_error_depth) {
        depth_report(max_depth, at, err, errlen);
    } else if (jerr != json_tokener_success) {
        const char *why = at < len && trailing_comma(b, at) ? "trailing comma" : tokener_msg(jerr);
        set_err(err, errlen, "invalid JSON at byte %zu: %s", at, why);
    } else if (obj == NULL) {
        set_err(err, errlen, "body must not be null");
    }
out:
    if (tok != NULL)
        json_tokener_free(tok);
    return obj;
}

static const char *type_desc(struct json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "a boolean";
    case json_type_double:
    case json_type_int:
        return "a number";
    case json_type_object:
        return "an object";
    case json_type_array:
        return "an array";
    case json_type_string:
        return "a string";
    }
    return "an unknown type";
}

struct json_object *aos_json_parse_object(const char *buf, size_t len, int max_depth, char *err,
                                          size_t errlen)
{
    struct json_object *obj = aos_json_parse(buf, len, max_depth, err, errlen);
    if (obj != NULL && !json_object_is_type(obj, json_type_object)) {
        set_err(err, errlen, "body must be a JSON object (got %s)", type_desc(obj));
        json_object_put(obj);
        obj = NULL;
    }
    return obj;
}

/* ------------------------------------------------------------ getters */

/* 0 with *v (NULL for a JSON null), 1 absent, -1 obj not an object. */
static int field(struct json_object *obj, const char *key, struct json_object **v, char *err, size_t errlen)
{
    if (!json_object_is_type(obj, json_type_object)) {
        set_err(err, errlen, "cannot read field '%s': its parent is %s, not an object", key, type_desc(obj));
        return -1;
    }
    if (!json_object_object_get_ex(obj, key, v)) {
        set_err(err, errlen, "field '%s' is required", key);
        return 1;
    }
    return 0;
}

/* Code points, counted as bytes that do not continue a UTF-8 sequence. */
static size_t utf8_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

int aos_json_get_string(struct json_object *obj, const char *key, size_t minlen, size_t maxlen,
                        const char **out, char *err, size_t errlen)
{
    struct json_object *v;
    char rule[96];
    aos_assert(minlen <= maxlen);
    int rc = field(obj, key, &v, err, errlen);
    if (rc != 0)
        return rc;
    if (minlen == 0 && maxlen == SIZE_MAX)
        fmt_fixed(rule, sizeof rule, "a string");
    else if (maxlen == SIZE_MAX)
        fmt_fixed(rule, sizeof rule, "a string of at least %zu character%s", minlen, plural(minlen));
    else if (minlen == 0)
        fmt_fixed(rule, sizeof rule, "a string of at most %zu character%s", maxlen, plural(maxlen));
    else if (minlen == maxlen)
        fmt_fixed(rule, sizeof rule, "a string of exactly %zu character%s", minlen, plural(minlen));
    else
        fmt_fixed(rule, sizeof rule, "a string of %zu to %zu characters", minlen, maxlen);

    if (!json_object_is_type(v, json_type_string)) {
        set_err(err, errlen, "field '%s' must be %s (got %s)", key, rule, type_desc(v));
        return -1;
    }
    const char *s = json_object_get_string(v);
    size_t blen = (size_t)json_object_get_string_len(v);
    if (memchr(s, '\0', blen) != NULL) {
        set_err(err, errlen, "field '%s' must not contain \\u0000", key);
        return -1;
    }
    size_t chars = utf8_chars(s, blen);
    if (chars < minlen || chars > maxlen) {
        set_err(err, errlen, "field '%s' must be %s (got %zu character%s)", key, rule, chars, plural(chars));
        return -1;
    }
    *out = s;
    return 0;
}

int aos_json_get_int(struct json_object *obj, const char *key, int64_t min, int64_t max, int64_t *out,
                     char *err, size_t errlen)
{
    struct json_object *v;
    char rule[96];
    aos_assert(min <= max);
    int rc = field(obj, key, &v, err, errlen);
    if (rc != 0)
        return rc;
    if (min == INT64_MIN && max == INT64_MAX)
        fmt_fixed(rule, sizeof rule, "an integer");
    else if (max == INT64_MAX)
        fmt_fixed(rule, sizeof rule, "an integer of at least %" PRId64, min);
    else if (min == INT64_MIN)
        fmt_fixed(rule, sizeof rule, "an integer of at most %" PRId64, max);
    else
        fmt_fixed(rule, sizeof rule, "an integer from %" PRId64 " to %" PRId64, min, max);

    if (!json_object_is_type(v, json_type_int)) {
        set_err(err, errlen, "field '%s' must be %s (got %s)", key, rule,
                json_object_is_type(v, json_type_double) ? "a number with a fraction or exponent"
                                                         : type_desc(v));
        return -1;
    }
    int64_t i = json_object_get_int64(v);
    /* json-c keeps integers above INT64_MAX as uint64 and clamps them here. */
    if (i == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX) {
        set_err(err, errlen, "field '%s' must be %s (got %" PRIu64 ")", key, rule, json_object_get_uint64(v));
        return -1;
    }
    if (i < min || i > max) {
        set_err(err, errlen, "field '%s' must be %s (got %" PRId64 ")", key, rule, i);
        return -1;
    }
    *out = i;
    return 0;
}

int aos_json_get_bool(struct json_object *obj, const char *key, bool *out, char *err, size_t errlen)
{
    struct json_object *v;
    int rc = field(obj, key, &v, err, errlen);
    if (rc != 0)
        return rc;
    if (!json_object_is_type(v, json_type_boolean)) {
        set_err(err, errlen, "field '%s' must be true or false (got %s)", key, type_desc(v));
        return -1;
    }
    *out = json_object_get_boolean(v) != 0;
    return 0;
}

int aos_json_get_object(struct json_object *obj, const char *key, struct json_object **out, char *err,
                        size_t errlen)
{
    struct json_object *v;
    int rc = field(obj, key, &v, err, errlen);
    if (rc != 0)
        return rc;
    if (!json_object_is_type(v, json_type_object) && !json_object_is_type(v, json_type_array)) {
        set_err(err, errlen, "field '%s' must be an object or an array (got %s)", key, type_desc(v));
        return -1;
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------ output */

const char *aos_json_text(struct json_object *obj, size_t *len)
{
    size_t n = 0;
    const char *s =
        json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (len != NULL)
        *len = s != NULL ? n : 0;
    return s;
}

static int add_string(struct json_object *obj, const char *key, const char *val)
{
    struct json_object *v = json_object_new_string(val);
    if (v == NULL)
        return -1;
    if (json_object_object_add(obj, key, v) < 0) {
        json_object_put(v);
        return -1;
    }
    return 0;
}

struct json_object *aos_json_error(const char *code, const char *message, const char *request_id)
{
    struct json_object *root = json_object_new_object();
    struct json_object *e = json_object_new_object();
    struct json_object *inner = e;
    if (root == NULL || e == NULL)
        goto fail;
    if (json_object_object_add(root, "error", e) < 0)
        goto fail;
    e = NULL; /* owned by root now; inner stays valid while root lives */
    if (add_string(inner, "code", code ? code : "internal_error") < 0 ||
        add_string(inner, "message", message ? message : "") < 0 ||
        (request_id != NULL && add_string(inner, "request_id", request_id) < 0))
        goto fail;
    return root;
fail:
    json_object_put(e);
    json_object_put(root);
    return NULL;
}
