#include "config.h"

/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define DEPTH 32

/* Parses len bytes through an exactly sized heap copy (no NUL after it),
 * so ASan flags any read past the body. */
static struct json_object *parse_n(const char *s, size_t len, int depth, int object, char *err, size_t errlen)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, s, len);
    err[0] = '\0';
    struct json_object *o = object ? aos_json_parse_object(copy, len, depth, err, errlen)
                                   : aos_json_parse(copy, len, depth, err, errlen);
    free(copy);
    if (o != NULL)
        assert_string_equal(err, "");
    return o;
}

/* Expects s to parse; returns its compact text in out. */
static void ok_text(const char *s, const char *want)
{
    char err[256];
    struct json_object *o = parse_n(s, strlen(s), DEPTH, 0, err, sizeof err);
    if (o == NULL)
        fail_msg("\"%s\" rejected: %s", s, err);
    size_t len;
    const char *t = aos_json_text(o, &len);
    assert_string_equal(t, want);
    assert_int_equal(len, strlen(want));
    json_object_put(o);
}

static void ok(const char *s)
{
    char err[256];
    struct json_object *o = parse_n(s, strlen(s), DEPTH, 0, err, sizeof err);
    if (o == NULL)
        fail_msg("\"%s\" rejected: %s", s, err);
    json_object_put(o);
}

/* Expects a rejection with exactly this message. */
static void bad_n(const char *s, size_t len, const char *want)
{
    char err[256];
    struct json_object *o = parse_n(s, len, DEPTH, 0, err, sizeof err);
    if (o != NULL) {
        json_object_put(o);
        fail_msg("\"%.*s\" was accepted", (int)len, s);
    }
    if (strcmp(err, want) != 0)
        fail_msg("\"%.*s\": got \"%s\", want \"%s\"", (int)len, s, err, want);
}

static void bad(const char *s, const char *want) { bad_n(s, strlen(s), want); }

/* ------------------------------------------------------------ parsing */

static void test_valid(void **state)
{
    (void)state;
    ok_text("{\"name\":\"x\",\"n\":5,\"ok\":true,\"cfg\":{\"a\":[1,2.5,null,false]}}",
            "{\"name\":\"x\",\"n\":5,\"ok\":true,\"cfg\":{\"a\":[1,2.5,null,false]}}");
    ok_text(" \t\r\n{ \"a\" : 1 , \"b\" : [ ] }\n ", "{\"a\":1,\"b\":[]}");
    ok_text("{\"u\":\"http://x/y\"}", "{\"u\":\"http://x/y\"}");
    ok_text("{}", "{}");
    ok_text("[]", "[]");
    ok_text("\"s\"", "\"s\"");
    ok_text("true", "true");
    ok_text("123", "123"); /* a bare number has no end of its own */
    ok_text("-0", "0");
    ok_text("0.5e-3", "0.5e-3");
    ok_text("1E+2", "1E+2");
    ok_text("-12.25", "-12.25");
    ok_text("\"\\u00e9\\ud83d\\ude00 \\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t\"",
            "\"\xc3\xa9\xf0\x9f\x98\x80 \\\"q\\\" \\\\ / \\b\\f\\n\\r\\t\"");
    ok_text("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"",
            "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"");
    ok_text("{\"\":1}", "{\"\":1}");

    /* The length is honoured: bytes after it are not read. */
    char err[128];
    const char padded[] = "{\"a\":1}GARBAGE";
    struct json_object *o = aos_json_parse(padded, 7, DEPTH, err, sizeof err);
    assert_non_null(o);
    json_object_put(o);
    const char num[] = "42!";
    o = aos_json_parse(num, 2, DEPTH, err, sizeof err);
    assert_non_null(o);
    assert_int_equal(json_object_get_int64(o), 42);
    json_object_put(o);
}

static void test_empty_and_null(void **state)
{
    (void)state;
    char err[128] = "x";
    assert_null(aos_json_parse(NULL, 0, DEPTH, err, sizeof err));
    assert_string_equal(err, "empty body");
    assert_null(aos_json_parse(NULL, 5, DEPTH, err, sizeof err));
    assert_string_equal(err, "empty body");
    bad_n("", 0, "empty body");
    bad(" \r\n\t ", "empty body");
    bad("null", "body must not be null");
    bad("  null\n", "body must not be null");
    ok("{\"a\":null}");
    ok("[null]");
}

static void test_trailing_garbage(void **state)
{
    (void)state;
    bad("{\"a\":1} x", "invalid JSON at byte 8: unexpected character 'x'");
    bad("{\"a\":1}{}", "invalid JSON at byte 7: unexpected character");
    bad("[1]]", "invalid JSON at byte 3: unexpected character");
    bad("1 2", "invalid JSON at byte 2: unexpected character");
    bad("{} //c", "invalid JSON at byte 3: unexpected character '/'");
    bad("/*c*/{}", "invalid JSON at byte 0: unexpected character '/'");
    bad_n("{}\0xx", 5, "invalid JSON at byte 2: unexpected character (byte 0x00)");
    bad_n("1\0", 2, "invalid JSON at byte 1: unexpected character (byte 0x00)");
}

static void test_truncated(void **state)
{
    (void)state;
    bad("{\"a\":", "invalid JSON at byte 5: unexpected end of body");
    bad("{\"a\":1", "invalid JSON at byte 6: unexpected end of body");
    bad("[1,2", "invalid JSON at byte 4: unexpected end of body");
    bad("{", "invalid JSON at byte 1: unexpected end of body");
    bad("{\"a\":\"b", "invalid JSON at byte 7: unexpected end of body (unterminated string)");
    bad("\"ab\\", "invalid JSON at byte 4: unexpected end of body (unterminated string)");
    bad("\"\\u12", "invalid JSON at byte 1: invalid \\u escape: four hex digits expected");
    bad("-", "invalid JSON at byte 1: unexpected end of body (incomplete number)");
    bad("1e", "invalid JSON at byte 2: invalid number: digit expected in exponent");
    bad("tru", "invalid JSON at byte 0: invalid literal (expected true, false or null)");
    bad("[1,", "invalid JSON at byte 3: unexpected end of body");
}

static void test_not_json(void **state)
{
    (void)state;
    /* json-c's strict mode accepts all of these. */
    bad("{'a':1}", "invalid JSON at byte 1: strings must use double quotes");
    bad("[\"x\",'y']", "invalid JSON at byte 5: strings must use double quotes");
    bad("NaN", "invalid JSON at byte 0: unexpected character 'N'");
    bad("[1,NaN]", "invalid JSON at byte 3: unexpected character 'N'");
    bad("Infinity", "invalid JSON at byte 0: unexpected character 'I'");
    bad("[-Infinity]", "invalid JSON at byte 2: invalid number: digit expected");
    bad("[nan]", "invalid JSON at byte 1: invalid literal (expected true, false or null)");
    bad("[1.]", "invalid JSON at byte 3: invalid number: digit expected after '.'");
    bad("1.", "invalid JSON at byte 2: invalid number: digit expected after '.'");
    bad("-.5", "invalid JSON at byte 1: invalid number: digit expected");
    bad("[-01]", "invalid JSON at byte 3: invalid number: leading zeros are not allowed");
    bad("[01]", "invalid JSON at byte 2: invalid number: leading zeros are not allowed");
    bad("[1.e5]", "invalid JSON at byte 3: invalid number: digit expected after '.'");
    bad("{\"a\":\"x\ny\"}",
        "invalid JSON at byte 7: control character in string (escape it, e.g. \\n or \\u0000)");
    bad("[\"\t\"]", "invalid JSON at byte 2: control character in string (escape it, e.g. \\n or \\u0000)");
    bad("[\"\\ud800\"]", "invalid JSON at byte 2: unpaired UTF-16 surrogate in \\u escape");
    bad("[\"\\ud800x\"]", "invalid JSON at byte 2: unpaired UTF-16 surrogate in \\u escape");
    bad("[\"\\ud800\\u0041\"]", "invalid JSON at byte 2: unpaired UTF-16 surrogate in \\u escape");
    bad("[\"\\uDC00\"]", "invalid JSON at byte 2: unpaired UTF-16 surrogate in \\u escape");
    /* Rejected by json-c too; the message comes from whichever error is first. */
    bad("[+1]", "invalid JSON at byte 1: unexpected character '+'");
    bad("[.5]", "invalid JSON at byte 1: unexpected character '.'");
    bad("[0x10]", "invalid JSON at byte 2: invalid number");
    bad("[True]", "invalid JSON at byte 1: unexpected character 'T'");
    bad("[truex]", "invalid JSON at byte 1: invalid literal (expected true, false or null)");
    bad("\"\\x\"", "invalid JSON at byte 1: invalid escape sequence in string");
    bad("{\"a\":1,}", "invalid JSON at byte 7: trailing comma");
    bad("[1, \n]", "invalid JSON at byte 5: trailing comma");
    bad("[,]", "invalid JSON at byte 1: unexpected character");
    bad("{\"a\" 1}", "invalid JSON at byte 5: expected ':' after an object key");
    bad("{\"a\":1 \"b\":2}", "invalid JSON at byte 7: expected ',' or '}' after an object member");
    bad("[1 2]", "invalid JSON at byte 3: expected ',' or ']' after an array element");
    bad("{1:2}", "invalid JSON at byte 1: expected a double-quoted object key");
    bad("\xef\xbb\xbf{}", "invalid JSON at byte 0: unexpected character (byte 0xef)");
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    bad("\"\xff\"", "invalid JSON at byte 1: invalid UTF-8");
    bad("{\"k\":\"ab\xc3\"}", "invalid JSON at byte 8: invalid UTF-8");     /* truncated sequence */
    bad("[\"\xc0\xaf\"]", "invalid JSON at byte 2: invalid UTF-8");         /* overlong '/' */
    bad("[\"\xe0\x80\xaf\"]", "invalid JSON at byte 2: invalid UTF-8");     /* overlong, 3 bytes */
    bad("[\"\xed\xa0\x80\"]", "invalid JSON at byte 2: invalid UTF-8");     /* UTF-16 surrogate */
    bad("[\"\xf4\x90\x80\x80\"]", "invalid JSON at byte 2: invalid UTF-8"); /* above U+10FFFF */
    bad("[\"\xf5\x80\x80\x80\"]", "invalid JSON at byte 2: invalid UTF-8");
    bad("[\"\x80\"]", "invalid JSON at byte 2: invalid UTF-8");      /* lone continuation */
    bad_n("\"\xe2\x82", 3, "invalid JSON at byte 1: invalid UTF-8"); /* cut at end of body */
    bad("{\"\xff\":1}", "invalid JSON at byte 2: invalid UTF-8");    /* in a key */
}

static void nest(char *buf, size_t cap, int levels, const char *inner)
{
    size_t n = 0;
    for (int i = 0; i < levels; i++) {
        if (i % 2) {
            buf[n++] = '[';
        } else {
            memcpy(buf + n, "{\"k\":", 5);
            n += 5;
        }
        assert_true(n < cap / 2);
    }
    n += (size_t)snprintf(buf + n, cap - n, "%s", inner);
    for (int i = levels - 1; i >= 0; i--)
        buf[n++] = i % 2 ? ']' : '}';
    buf[n] = '\0';
    assert_true(n < cap);
}

static void test_depth(void **state)
{
    (void)state;
    char err[128];
    struct json_object *o;

    /* max_depth counts containers. */
    o = parse_n("{\"a\":1}", 7, 1, 0, err, sizeof err);
    assert_non_null(o);
    json_object_put(o);
    o = parse_n("[1]", 3, 1, 0, err, sizeof err);
    assert_non_null(o);
    json_object_put(o);
    o = parse_n("7", 1, 1, 0, err, sizeof err);
    assert_non_null(o);
    json_object_put(o);
    assert_null(parse_n("{\"a\":{}}", 8, 1, 0, err, sizeof err));
    assert_string_equal(err, "JSON nested deeper than 1 level at byte 5");
    o = parse_n("{\"a\":{}}", 8, 2, 0, err, sizeof err);
    assert_non_null(o);
    json_object_put(o);
    assert_null(parse_n("[[[1]]]", 7, 2, 0, err, sizeof err));
    assert_string_equal(err, "JSON nested deeper than 2 levels at byte 2");

    /* Exact boundary at 32. */
    char buf[1024];
    for (int levels = 30; levels <= 34; levels++) {
        nest(buf, sizeof buf, levels, "1");
        o = parse_n(buf, strlen(buf), 32, 0, err, sizeof err);
        if (levels <= 32) {
            if (o == NULL)
                fail_msg("%d levels rejected: %s", levels, err);
            json_object_put(o);
        } else {
            assert_null(o);
            assert_non_null(strstr(err, "JSON nested deeper than 32 levels at byte "));
        }
    }
    /* Empty containers count too (json-c alone lets one more through). */
    nest(buf, sizeof buf, 31, "[]");
    o = parse_n(buf, strlen(buf), 32, 0, err, sizeof err);
    assert_non_null(o);
    json_object_put(o);
    nest(buf, sizeof buf, 32, "{}");
    assert_null(parse_n(buf, strlen(buf), 32, 0, err, sizeof err));
    assert_non_null(strstr(err, "JSON nested deeper than 32 levels at byte "));
    nest(buf, sizeof buf, 2, "[]");
    assert_null(parse_n(buf, strlen(buf), 2, 0, err, sizeof err));
    assert_string_equal(err, "JSON nested deeper than 2 levels at byte 6"); /* {"k":[[]]} */
    /* The first error in the body is reported: here the depth, not the NaN. */
    nest(buf, sizeof buf, 40, "NaN");
    assert_null(parse_n(buf, strlen(buf), 32, 0, err, sizeof err));
    assert_non_null(strstr(err, "JSON nested deeper than 32 levels"));
}

static void test_numbers(void **state)
{
    (void)state;
    ok_text("9223372036854775807", "9223372036854775807");
    ok_text("-9223372036854775808", "-9223372036854775808");
    ok_text("18446744073709551615", "18446744073709551615");
    ok_text("[1e308,-1.5e-400,0.0]", "[1e308,-1.5e-400,0.0]");
    bad("18446744073709551616",
        "invalid JSON at byte 0: integer outside the 64-bit range (send it as a string)");
    bad("[99999999999999999999999]",
        "invalid JSON at byte 1: integer outside the 64-bit range (send it as a string)");
    bad("-9223372036854775809",
        "invalid JSON at byte 0: integer outside the 64-bit range (send it as a string)");
    bad("{\"n\":1e400}", "invalid JSON at byte 5: number too large for a double");
    bad("[-1E+309]", "invalid JSON at byte 1: number too large for a double");

    /* 400 digits with a fraction: finite check without an exponent. */
    char big[512];
    memset(big, '9', 400);
    memcpy(big + 400, ".5", 3);
    bad(big, "invalid JSON at byte 0: number too large for a double");
    /* A long but finite number takes the heap copy path. */
    memset(big, '0', 300);
    big[1] = '.';
    memcpy(big + 300, "1e5", 4);
    ok(big);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    /* Documented: accepted, the last one wins (json-c behaviour). */
    char err[128];
    const char *s = "{\"a\":1,\"a\":2}";
    struct json_object *o = parse_n(s, strlen(s), DEPTH, 1, err, sizeof err);
    assert_non_null(o);
    int64_t v = 0;
    assert_int_equal(aos_json_get_int(o, "a", 0, 10, &v, err, sizeof err), 0);
    assert_int_equal(v, 2);
    assert_string_equal(aos_json_text(o, NULL), "{\"a\":2}");
    json_object_put(o);
}

static void test_object_required(void **state)
{
    (void)state;
    char err[128];
    struct json_object *o = parse_n("{\"a\":[]}", 8, DEPTH, 1, err, sizeof err);
    assert_non_null(o);
    json_object_put(o);
    o = parse_n("[1]", 3, DEPTH, 0, err, sizeof err);
    assert_non_null(o);
    json_object_put(o);

    static const struct {
        const char *body, *err;
    } cases[] = {
        {"[1]", "body must be a JSON object (got an array)"},
        {"\"s\"", "body must be a JSON object (got a string)"},
        {"1", "body must be a JSON object (got a number)"},
        {"1.5", "body must be a JSON object (got a number)"},
        {"false", "body must be a JSON object (got a boolean)"},
        {"null", "body must not be null"},
        {"", "empty body"},
        {"{", "invalid JSON at byte 1: unexpected end of body"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_null(parse_n(cases[i].body, strlen(cases[i].body), DEPTH, 1, err, sizeof err));
        assert_string_equal(err, cases[i].err);
    }
}

static void test_err_buffer(void **state)
{
    (void)state;
    /* No err buffer is fine; a small one is truncated and terminated. */
    assert_null(aos_json_parse("[", 1, DEPTH, NULL, 0));
    char small[10];
    memset(small, 'x', sizeof small);
    assert_null(aos_json_parse("[", 1, DEPTH, small, sizeof small));
    assert_string_equal(small, "invalid J");
}

/* ------------------------------------------------------------ getters */

static struct json_object *doc(void)
{
    static const char body[] =
        "{\"name\":\"agent-1\",\"empty\":\"\",\"accents\":\"\xc3\xa9\xc3\xa9\xc3\xa9\","
        "\"nul\":\"a\\u0000b\",\"n\":42,\"neg\":-5,\"f\":1.0,\"e\":1e3,\"big\":18446744073709551615,"
        "\"min\":-9223372036854775808,\"t\":true,\"no\":false,\"z\":null,\"o\":{\"x\":1},"
        "\"arr\":[1],\"s5\":\"5\"}";
    char err[128];
    struct json_object *o = parse_n(body, sizeof body - 1, DEPTH, 1, err, sizeof err);
    if (o == NULL)
        fail_msg("doc: %s", err);
    return o;
}

static void test_get_string(void **state)
{
    (void)state;
    struct json_object *o = doc();
    char err[160];
    const char *s = "untouched";

    assert_int_equal(aos_json_get_string(o, "name", 1, 255, &s, err, sizeof err), 0);
    assert_string_equal(s, "agent-1");

    s = "untouched";
    assert_int_equal(aos_json_get_string(o, "absent", 1, 255, &s, err, sizeof err), 1);
    assert_string_equal(s, "untouched");
    assert_string_equal(err, "field 'absent' is required");

    assert_int_equal(aos_json_get_string(o, "n", 1, 255, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 'n' must be a string of 1 to 255 characters (got a number)");
    assert_int_equal(aos_json_get_string(o, "z", 1, 255, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 'z' must be a string of 1 to 255 characters (got null)");
    assert_int_equal(aos_json_get_string(o, "o", 1, 255, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 'o' must be a string of 1 to 255 characters (got an object)");
    assert_int_equal(aos_json_get_string(o, "arr", 1, 255, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 'arr' must be a string of 1 to 255 characters (got an array)");
    assert_int_equal(aos_json_get_string(o, "t", 0, SIZE_MAX, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 't' must be a string (got a boolean)");

    assert_int_equal(aos_json_get_string(o, "empty", 1, 255, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 'empty' must be a string of 1 to 255 characters (got 0 characters)");
    assert_int_equal(aos_json_get_string(o, "empty", 0, 255, &s, err, sizeof err), 0);
    assert_string_equal(s, "");
    assert_int_equal(aos_json_get_string(o, "name", 1, 6, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 'name' must be a string of 1 to 6 characters (got 7 characters)");
    assert_int_equal(aos_json_get_string(o, "name", 0, 1, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 'name' must be a string of at most 1 character (got 7 characters)");
    assert_int_equal(aos_json_get_string(o, "name", 8, SIZE_MAX, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 'name' must be a string of at least 8 characters (got 7 characters)");
    assert_int_equal(aos_json_get_string(o, "s5", 2, 2, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 's5' must be a string of exactly 2 characters (got 1 character)");
    assert_int_equal(aos_json_get_string(o, "name", 7, 7, &s, err, sizeof err), 0);

    /* Characters, not bytes: 3 code points in 6 bytes. */
    assert_int_equal(aos_json_get_string(o, "accents", 3, 3, &s, err, sizeof err), 0);
    assert_string_equal(s, "\xc3\xa9\xc3\xa9\xc3\xa9");
    assert_int_equal(aos_json_get_string(o, "accents", 0, 2, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 'accents' must be a string of at most 2 characters (got 3 characters)");

    assert_int_equal(aos_json_get_string(o, "nul", 0, SIZE_MAX, &s, err, sizeof err), -1);
    assert_string_equal(err, "field 'nul' must not contain \\u0000");

    /* Parent not an object. */
    struct json_object *arr = NULL;
    assert_int_equal(aos_json_get_object(o, "arr", &arr, err, sizeof err), 0);
    assert_int_equal(aos_json_get_string(arr, "x", 0, 9, &s, err, sizeof err), -1);
    assert_string_equal(err, "cannot read field 'x': its parent is an array, not an object");
    assert_int_equal(aos_json_get_string(NULL, "x", 0, 9, &s, err, sizeof err), -1);
    assert_string_equal(err, "cannot read field 'x': its parent is null, not an object");
    json_object_put(o);
}

static void test_get_int(void **state)
{
    (void)state;
    struct json_object *o = doc();
    char err[160];
    int64_t v = 77;

    assert_int_equal(aos_json_get_int(o, "n", 1, 100, &v, err, sizeof err), 0);
    assert_int_equal(v, 42);
    assert_int_equal(aos_json_get_int(o, "n", 42, 42, &v, err, sizeof err), 0);

    v = 77;
    assert_int_equal(aos_json_get_int(o, "absent", 1, 100, &v, err, sizeof err), 1);
    assert_int_equal(v, 77);
    assert_string_equal(err, "field 'absent' is required");

    assert_int_equal(aos_json_get_int(o, "s5", 1, 100, &v, err, sizeof err), -1);
    assert_string_equal(err, "field 's5' must be an integer from 1 to 100 (got a string)");
    assert_int_equal(aos_json_get_int(o, "z", 1, 100, &v, err, sizeof err), -1);
    assert_string_equal(err, "field 'z' must be an integer from 1 to 100 (got null)");
    assert_int_equal(aos_json_get_int(o, "f", 1, 100, &v, err, sizeof err), -1);
    assert_string_equal(
        err, "field 'f' must be an integer from 1 to 100 (got a number with a fraction or exponent)");
    assert_int_equal(aos_json_get_int(o, "e", INT64_MIN, INT64_MAX, &v, err, sizeof err), -1);
    assert_string_equal(err, "field 'e' must be an integer (got a number with a fraction or exponent)");
    assert_int_equal(aos_json_get_int(o, "t", 0, 1, &v, err, sizeof err), -1);
    assert_string_equal(err, "field 't' must be an integer from 0 to 1 (got a boolean)");

    assert_int_equal(aos_json_get_int(o, "n", 43, 100, &v, err, sizeof err), -1);
    assert_string_equal(err, "field 'n' must be an integer from 43 to 100 (got 42)");
    assert_int_equal(aos_json_get_int(o, "n", 1, 41, &v, err, sizeof err), -1);
    assert_string_equal(err, "field 'n' must be an integer from 1 to 41 (got 42)");
    assert_int_equal(aos_json_get_int(o, "neg", 0, INT64_MAX, &v, err, sizeof err), -1);
    assert_string_equal(err, "field 'neg' must be an integer of at least 0 (got -5)");
    assert_int_equal(aos_json_get_int(o, "n", INT64_MIN, 10, &v, err, sizeof err), -1);
    assert_string_equal(err, "field 'n' must be an integer of at most 10 (got 42)");

    /* 64-bit edges: above INT64_MAX is out of range even for the full range. */
    assert_int_equal(aos_json_get_int(o, "big", INT64_MIN, INT64_MAX, &v, err, sizeof err), -1);
    assert_string_equal(err, "field 'big' must be an integer (got 18446744073709551615)");
    assert_int_equal(aos_json_get_int(o, "min", INT64_MIN, INT64_MAX, &v, err, sizeof err), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(aos_json_get_int(o, "min", INT64_MIN + 1, 0, &v, err, sizeof err), -1);
    assert_string_equal(
        err, "field 'min' must be an integer from -9223372036854775807 to 0 (got -9223372036854775808)");
    json_object_put(o);
}

static void test_get_bool_object(void **state)
{
    (void)state;
    struct json_object *o = doc();
    char err[160];
    bool b = false;
    struct json_object *c = NULL;

    assert_int_equal(aos_json_get_bool(o, "t", &b, err, sizeof err), 0);
    assert_true(b);
    assert_int_equal(aos_json_get_bool(o, "no", &b, err, sizeof err), 0);
    assert_false(b);
    b = true;
    assert_int_equal(aos_json_get_bool(o, "absent", &b, err, sizeof err), 1);
    assert_true(b);
    assert_string_equal(err, "field 'absent' is required");
    assert_int_equal(aos_json_get_bool(o, "n", &b, err, sizeof err), -1);
    assert_string_equal(err, "field 'n' must be true or false (got a number)");
    assert_int_equal(aos_json_get_bool(o, "name", &b, err, sizeof err), -1);
    assert_string_equal(err, "field 'name' must be true or false (got a string)");
    assert_int_equal(aos_json_get_bool(o, "z", &b, err, sizeof err), -1);
    assert_string_equal(err, "field 'z' must be true or false (got null)");

    assert_int_equal(aos_json_get_object(o, "o", &c, err, sizeof err), 0);
    assert_true(json_object_is_type(c, json_type_object));
    assert_string_equal(aos_json_text(c, NULL), "{\"x\":1}");
    assert_int_equal(aos_json_get_object(o, "arr", &c, err, sizeof err), 0);
    assert_true(json_object_is_type(c, json_type_array));
    c = NULL;
    assert_int_equal(aos_json_get_object(o, "absent", &c, err, sizeof err), 1);
    assert_null(c);
    assert_string_equal(err, "field 'absent' is required");
    assert_int_equal(aos_json_get_object(o, "name", &c, err, sizeof err), -1);
    assert_string_equal(err, "field 'name' must be an object or an array (got a string)");
    assert_int_equal(aos_json_get_object(o, "z", &c, err, sizeof err), -1);
    assert_string_equal(err, "field 'z' must be an object or an array (got null)");
    assert_null(c);
    json_object_put(o);
}

/* ------------------------------------------------------------ output */

static void test_error_body(void **state)
{
    (void)state;
    struct json_object *e = aos_json_error("not_found", "no such agent", "req-1");
    assert_non_null(e);
    size_t len = 0;
    const char *t = aos_json_text(e, &len);
    assert_string_equal(
        t, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such agent\",\"request_id\":\"req-1\"}}");
    assert_int_equal(len, strlen(t));
    json_object_put(e);

    e = aos_json_error("invalid_request", "invalid JSON at byte 3: \"x\" / y\n", NULL);
    assert_non_null(e);
    assert_string_equal(aos_json_text(e, NULL), "{\"error\":{\"code\":\"invalid_request\",\"message\":"
                                                "\"invalid JSON at byte 3: \\\"x\\\" / y\\n\"}}");
    json_object_put(e);

    e = aos_json_error(NULL, NULL, "r");
    assert_non_null(e);
    assert_string_equal(aos_json_text(e, NULL),
                        "{\"error\":{\"code\":\"internal_error\",\"message\":\"\",\"request_id\":\"r\"}}");
    json_object_put(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_object_required),
        cmocka_unit_test(test_err_buffer),
        cmocka_unit_test(test_get_string),
        cmocka_unit_test(test_get_int),
        cmocka_unit_test(test_get_bool_object),
        cmocka_unit_test(test_error_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
