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
 * "body must not be null" -- callers want objects. */
struct json_object *aos_json_parse(const char *buf, size_t len, int max_depth, char *err, size_t errlen);

/* Like aos_json_parse, but additionally requires a JSON object. */
struct json_object *aos_json_parse_object(const char *buf, size_t len, int max_depth, char *err,
                                          size_t errlen);

/* Typed field access for request validation.  Each returns 0 on success,
 * 1 if the field is absent (out untouched), -1 if present with the wrong
 * type or out of bounds (err says "field 'name' must be a string of 1 to
 * 255 characters" etc.).  Returned strings point into obj. */
int aos_json_get_string(struct json_object *obj, const char *key, size_t minlen, size_t maxlen,
                        const char **out, char *err, size_t errlen);
int aos_json_get_int(struct json_object *obj, const char *key, int64_t min, int64_t max, int64_t *out,
                     char *err, size_t errlen);
int aos_json_get_bool(struct json_object *obj, const char *key, bool *out, char *err, size_t errlen);
/* Object or array child (borrowed reference). */
int aos_json_get_object(struct json_object *obj, const char *key, struct json_object **out, char *err,
                        size_t errlen);

/* Serialises obj compactly (no spaces, '/' not escaped).  The returned
 * string is owned by obj; *len receives its length. */
const char *aos_json_text(struct json_object *obj, size_t *len);

/* Builds the error body.  request_id may be NULL (omitted).  Returns a new
 * object (caller owns). */
struct json_object *aos_json_error(const char *code, const char *message, const char *request_id);

#endif
