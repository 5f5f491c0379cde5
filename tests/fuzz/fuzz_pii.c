/*
 * Fuzz target for core/pii: analyze, anonymize (operator chosen by the
 * first byte) and redact_all, checking the invariants callers rely on.
 * Any violation aborts, which both libFuzzer and driver.c report.
 *
 * Invalid UTF-8 must be refused; the same bytes folded to ASCII are run
 * as well so that random inputs still reach the detectors.
 */
#include "config.h"

#include "fuzz.h"
#include "pii/pii.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct aos_pii *pii;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "fuzz_pii: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

static size_t cp_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static void check_analyze(const char *t, size_t len, unsigned filter)
{
    struct aos_pii_result *r = NULL;
    size_t n = 0;
    int rc = aos_pii_analyze(pii, t, len, filter, &r, &n);
    if (!aos_pii_utf8_valid(t, len)) {
        CHECK(rc == AOS_PII_EUTF8 && r == NULL && n == 0);
        return;
    }
    CHECK(rc == AOS_PII_OK);
    size_t prev_end = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK((unsigned)r[i].type < AOS_PII_NTYPES);
        CHECK(filter == AOS_PII_ALL || (filter & AOS_PII_BIT(r[i].type)) != 0);
        CHECK(r[i].byte_start < r[i].byte_end && r[i].byte_end <= len);
        CHECK(r[i].byte_start >= prev_end); /* sorted, no overlap */
        CHECK(r[i].start == cp_count(t, r[i].byte_start));
        CHECK(r[i].end == cp_count(t, r[i].byte_end));
        CHECK(r[i].score > 0.0 && r[i].score <= 1.0);
        prev_end = r[i].byte_end;
    }
    free(r);
}

static void check_anonymize(const char *t, size_t len, unsigned char sel)
{
    struct aos_pii_operators ops;
    aos_pii_operators_init(&ops);
    ops.def.kind = (enum aos_pii_op_kind)(sel % 4);
    ops.def.chars_to_mask = (sel & 0x10) ? (long)(sel >> 5) : -1;
    ops.def.from_end = (sel & 0x08) != 0;
    ops.def.masking_char = (sel & 0x04) ? "\xe2\x80\xa2" : NULL;
    ops.has[AOS_PII_EMAIL_ADDRESS] = true;
    ops.by_type[AOS_PII_EMAIL_ADDRESS] = (struct aos_pii_operator){.kind = AOS_PII_OP_REPLACE, .new_value = "\xc3\xa9"};
    char *out = NULL;
    size_t outlen = 0, nitems = 0;
    struct aos_pii_item *items = NULL;
    int rc = aos_pii_anonymize(pii, t, len, &ops, &out, &outlen, &items, &nitems);
    if (!aos_pii_utf8_valid(t, len)) {
        CHECK(rc == AOS_PII_EUTF8 && out == NULL);
        return;
    }
    CHECK(rc == AOS_PII_OK && out != NULL);
    CHECK(out[outlen] == '\0');
    CHECK(aos_pii_utf8_valid(out, outlen));
    size_t prev = 0;
    for (size_t i = 0; i < nitems; i++) {
        CHECK(items[i].byte_start >= prev && items[i].byte_start <= items[i].byte_end && items[i].byte_end <= outlen);
        CHECK(items[i].start == cp_count(out, items[i].byte_start));
        CHECK(items[i].end == cp_count(out, items[i].byte_end));
        prev = items[i].byte_end;
    }
    free(out);
    free(items);
    char *red = aos_pii_redact_all(pii, t, len);
    CHECK(red != NULL);
    free(red);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (pii == NULL) {
        char err[256];
        pii = aos_pii_new("fuzz key", 8, err, sizeof err);
        if (pii == NULL) {
            fprintf(stderr, "fuzz_pii: %s\n", err);
            abort();
        }
    }
    unsigned char sel = size > 0 ? data[0] : 0;
    const char *t = (const char *)data;
    check_analyze(t, size, AOS_PII_ALL);
    check_analyze(t, size, AOS_PII_BIT(sel % AOS_PII_NTYPES));
    check_anonymize(t, size, sel);
    if (!aos_pii_utf8_valid(t, size) && size > 0) {
        char *ascii = malloc(size);
        CHECK(ascii != NULL);
        for (size_t i = 0; i < size; i++)
            ascii[i] = (char)(data[i] & 0x7F);
        check_analyze(ascii, size, AOS_PII_ALL);
        check_anonymize(ascii, size, sel);
        free(ascii);
    }
    return 0;
}
