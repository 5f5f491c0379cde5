/*
 * JSON helpers over json-c: strict, bounded parsing of request bodies and
 * the error shape of the API:
 *   {"error":{"code":"...","message":"...","request_id":"..."}}
 */
#ifndef AOS_JSON_H
#define AOS_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses exactly buf[0..len) as one JSON value: strict mode (no trailing
 * garbage, trailing commas, NaN), valid UTF-8 only, at most max_depth
 * nested containers (max_depth >= 1).  Returns a new object (caller owns,
 * json_object_put) or NULL with a human message in err ("invalid JSON at
 * byte 17: unexpected character", "JSON nested deeper than 32 levels",
 * "empty body", ...).  The JSON literal null also returns NULL with err
 * "body must not be null" -- callers want objects.
 *
 * Exact rules (RFC 8259, stricter than json-c alone):
 * - buf need not be NUL-terminated; buf NULL, len 0 or only whitespace is
 *   "empty body".  A NUL byte anywhere is an error.
 * - max_depth counts containers: 1 allows {"a":1} and [1] but not
 *   {"a":{}}; 2 allows {"a":{}} but not {"a":[[]]}.  Scalars do not count.
 *   max_depth must be 1..1024 (else abort: a programming error).
 * - Rejected with the byte offset of the first error: single-quoted
 *   strings, NaN/Infinity, comments, trailing commas, leading zeros,
 *   "1." / ".5" / "+1", raw control characters in strings, invalid UTF-8
 *   (overlongs, surrogates, > U+10FFFF, truncated), unpaired \u
 *   surrogates, integers outside [-2^63, 2^64-1] (json-c would clamp
 *   them) and numbers that overflow a double (1e400).
 * - Duplicate keys are accepted; the last one wins (json-c behaviour).
 * - "\u0000" inside a string is accepted here; aos_json_get_string
 *   rejects such strings. */
struct json_object *aos_json_parse(const char *buf, size_t len, int max_depth, char *err, size_t errlen);

/* Like aos_json_parse, but additionally requires a JSON object. */
struct json_object *aos_json_parse_object(const char *buf, size_t len, int max_depth, char *err,
                                          size_t errlen);

/* Typed field access for request validation.  Each returns 0 on success,
 * 1 if the field is absent (out untouched), -1 if present with the wrong
 * type or out of bounds (err says "field 'name' must be a string of 1 to
 * 255 characters" etc.).  Returned strings point into obj.
 *
 * - Absent: err is set to "field 'name' is required", so a caller that
 *   needs the field can answer 422 with err as is.
 * - A JSON null is a value of the wrong type, not an absent field:
 *   "field 'name' must be ... (got null)".
 * - obj that is not an object (e.g. NULL) returns -1.
 * - Strings: lengths count Unicode code points, not bytes; strings holding
 *   \u0000 are rejected.  minlen <= maxlen; SIZE_MAX = no upper bound.
 * - Integers: only JSON integers (1.0 and 1e3 are "a number with a
 *   fraction or exponent"); min <= max.
 * - Messages never echo string content (it may be personal data), only
 *   types, lengths and numbers. */
int aos_json_get_string(struct json_object *obj, const char *key, size_t minlen, size_t maxlen,
                        const char **out, char *err, size_t errlen);
int aos_json_get_int(struct json_object *obj, const char *key, int64_t min, int64_t max, int64_t *out,
                     char *err, size_t errlen);
int aos_json_get_bool(struct json_object *obj, const char *key, bool *out, char *err, size_t errlen);
/* Object or array child (borrowed reference). */
int aos_json_get_object(struct json_object *obj, const char *key, struct json_object **out, char *err,
                        size_t errlen);

/* Serialises obj compactly (no spaces, '/' not escaped).  The returned
 * string is owned by obj (valid until obj changes or is freed; not safe
 * to call on the same obj from two threads); *len receives its length
 * (len may be NULL). */
const char *aos_json_text(struct json_object *obj, size_t *len);

/* Builds the error body.  request_id may be NULL (omitted).  Returns a new
 * object (caller owns), or NULL if out of memory.  Keys come out in the
 * order code, message, request_id.  A NULL code becomes "internal_error",
 * a NULL message "". */
struct json_object *aos_json_error(const char *code, const char *message, const char *request_id);

#endif
