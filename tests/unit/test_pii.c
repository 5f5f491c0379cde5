/*
 * core/pii: table-driven true and false positives per detector, code
 * point offsets, overlap rules, operators, hash keying, invalid UTF-8,
 * pathological inputs and concurrent use.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pii/pii.h"

static struct aos_pii *pii;

#define JWT_HDR "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
#define JWT_OK JWT_HDR ".eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
#define AOS_KEY "aos_ab12cd34ef56_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct tcase {
    enum aos_pii_type type;
    const char *text;
    const char *want; /* the matched substring; NULL = must not be found */
};

static const struct tcase cases[] = {
    /* EMAIL_ADDRESS */
    {AOS_PII_EMAIL_ADDRESS, "write to jane.doe@example.com today", "jane.doe@example.com"},
    {AOS_PII_EMAIL_ADDRESS, "<a+b_c@mail.example.co.uk>", "a+b_c@mail.example.co.uk"},
    {AOS_PII_EMAIL_ADDRESS, "end: x1@ex-ample.org.", "x1@ex-ample.org"},
    {AOS_PII_EMAIL_ADDRESS, "root@localhost", NULL},
    {AOS_PII_EMAIL_ADDRESS, "@example.com", NULL},
    {AOS_PII_EMAIL_ADDRESS, "x@y.z", NULL},
    {AOS_PII_EMAIL_ADDRESS, "user@-bad.com", NULL},
    /* PHONE_NUMBER */
    {AOS_PII_PHONE_NUMBER, "call +1 415 555 2671 now", "+1 415 555 2671"},
    {AOS_PII_PHONE_NUMBER, "tel +44 20 7946 0958", "+44 20 7946 0958"},
    {AOS_PII_PHONE_NUMBER, "tel: +49 (30) 1234-5678.", "+49 (30) 1234-5678"},
    {AOS_PII_PHONE_NUMBER, "+44 20 7946 0958 - 10 items", "+44 20 7946 0958"},
    {AOS_PII_PHONE_NUMBER, "office (415) 555-2671", "(415) 555-2671"},
    {AOS_PII_PHONE_NUMBER, "office 415-555-2671", "415-555-2671"},
    {AOS_PII_PHONE_NUMBER, "office 415.555.2671", "415.555.2671"},
    {AOS_PII_PHONE_NUMBER, "London 020 7946 0958", "020 7946 0958"},
    {AOS_PII_PHONE_NUMBER, "Paris 01 23 45 67 89", "01 23 45 67 89"},
    {AOS_PII_PHONE_NUMBER, "on 2024-01-15", NULL},
    {AOS_PII_PHONE_NUMBER, "on 15.01.2024", NULL},
    {AOS_PII_PHONE_NUMBER, "on 12/03/2024 10:30", NULL},
    {AOS_PII_PHONE_NUMBER, "fake 123-456-7890", NULL},
    {AOS_PII_PHONE_NUMBER, "order 4155552671", NULL},
    {AOS_PII_PHONE_NUMBER, "card 4111111111111111", NULL},
    {AOS_PII_PHONE_NUMBER, "card 4111 1111 1111 1111", NULL},
    {AOS_PII_PHONE_NUMBER, "+12 34", NULL},
    {AOS_PII_PHONE_NUMBER, "v 1.2.3.4", NULL},
    {AOS_PII_PHONE_NUMBER, "+1234567890123456789", NULL},
    /* CREDIT_CARD */
    {AOS_PII_CREDIT_CARD, "card 4111111111111111.", "4111111111111111"},
    {AOS_PII_CREDIT_CARD, "card 4111 1111 1111 1111 exp", "4111 1111 1111 1111"},
    {AOS_PII_CREDIT_CARD, "card 4111-1111-1111-1111", "4111-1111-1111-1111"},
    {AOS_PII_CREDIT_CARD, "mc 5555555555554444", "5555555555554444"},
    {AOS_PII_CREDIT_CARD, "amex 378282246310005", "378282246310005"},
    {AOS_PII_CREDIT_CARD, "amex 3782 822463 10005", "3782 822463 10005"},
    {AOS_PII_CREDIT_CARD, "disc 6011111111111117", "6011111111111117"},
    {AOS_PII_CREDIT_CARD, "card 4111 1111 1111 1111 12/28", "4111 1111 1111 1111"},
    {AOS_PII_CREDIT_CARD, "card 4111111111111111 12/28", "4111111111111111"},
    {AOS_PII_CREDIT_CARD, "qty 2 4111111111111111", "4111111111111111"},
    {AOS_PII_CREDIT_CARD, "card 4111111111111112", NULL},           /* Luhn */
    {AOS_PII_CREDIT_CARD, "card 4111 1111 1111 1112", NULL},        /* Luhn */
    {AOS_PII_CREDIT_CARD, "id 1234567890123452", NULL},             /* no card IIN */
    {AOS_PII_CREDIT_CARD, "card 4111 1111-1111 1111", NULL},        /* mixed separators */
    {AOS_PII_CREDIT_CARD, "card 41 11111111 111111", NULL},         /* not a card grouping */
    {AOS_PII_CREDIT_CARD, "run 411111111111111100000", NULL},       /* inside a longer number */
    {AOS_PII_CREDIT_CARD, "x4111111111111111", NULL},
    {AOS_PII_CREDIT_CARD, "date 2024-01-15", NULL},
    /* IBAN_CODE */
    {AOS_PII_IBAN_CODE, "iban DE89370400440532013000", "DE89370400440532013000"},
    {AOS_PII_IBAN_CODE, "iban DE89 3704 0044 0532 0130 00, thanks", "DE89 3704 0044 0532 0130 00"},
    {AOS_PII_IBAN_CODE, "GB82WEST12345698765432", "GB82WEST12345698765432"},
    {AOS_PII_IBAN_CODE, "to GB82 WEST 1234 5698 7654 32 ASAP", "GB82 WEST 1234 5698 7654 32"},
    {AOS_PII_IBAN_CODE, "FR1420041010050500013M02606", "FR1420041010050500013M02606"},
    {AOS_PII_IBAN_CODE, "NL91ABNA0417164300", "NL91ABNA0417164300"},
    {AOS_PII_IBAN_CODE, "iban DE89370400440532013001", NULL},    /* checksum */
    {AOS_PII_IBAN_CODE, "iban DE88 3704 0044 0532 0130 00", NULL}, /* check digits */
    {AOS_PII_IBAN_CODE, "iban XX89370400440532013000", NULL},    /* no such country */
    {AOS_PII_IBAN_CODE, "iban DE8937040044053201300", NULL},     /* too short */
    {AOS_PII_IBAN_CODE, "iban DE89370400440532013000X", NULL},   /* too long */
    /* US_SSN */
    {AOS_PII_US_SSN, "ssn 078-05-1120.", "078-05-1120"},
    {AOS_PII_US_SSN, "ssn 123 45 6789", "123 45 6789"},
    {AOS_PII_US_SSN, "10.0.0.1 078-05-1120 1", "078-05-1120"},
    {AOS_PII_US_SSN, "ssn 000-12-3456", NULL},
    {AOS_PII_US_SSN, "ssn 666-12-3456", NULL},
    {AOS_PII_US_SSN, "ssn 912-34-5678", NULL},
    {AOS_PII_US_SSN, "ssn 123-00-4567", NULL},
    {AOS_PII_US_SSN, "ssn 123-45-0000", NULL},
    {AOS_PII_US_SSN, "ssn 123-45 6789", NULL},
    {AOS_PII_US_SSN, "ssn 123-45-67890", NULL},
    {AOS_PII_US_SSN, "ssn 1123-45-6789", NULL},
    /* IP_ADDRESS */
    {AOS_PII_IP_ADDRESS, "from 192.168.1.1.", "192.168.1.1"},
    {AOS_PII_IP_ADDRESS, "host=10.0.0.255", "10.0.0.255"},
    {AOS_PII_IP_ADDRESS, "lo ::1 up", "::1"},
    {AOS_PII_IP_ADDRESS, "v6 2001:db8::8a2e:370:7334", "2001:db8::8a2e:370:7334"},
    {AOS_PII_IP_ADDRESS, "v6 2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:0db8:0000:0000:0000:ff00:0042:8329"},
    {AOS_PII_IP_ADDRESS, "link fe80::1%eth0", "fe80::1"},
    {AOS_PII_IP_ADDRESS, "mapped ::ffff:192.168.1.1", "::ffff:192.168.1.1"},
    {AOS_PII_IP_ADDRESS, "ip 999.1.1.1", NULL},
    {AOS_PII_IP_ADDRESS, "ip 256.1.1.1", NULL},
    {AOS_PII_IP_ADDRESS, "version 1.2.3.4.5", NULL},
    {AOS_PII_IP_ADDRESS, "version 1.2.3", NULL},
    {AOS_PII_IP_ADDRESS, "at 12:30:45", NULL},
    {AOS_PII_IP_ADDRESS, "mac 00:1a:2b:3c:4d:5e", NULL},
    {AOS_PII_IP_ADDRESS, "std::vector", NULL},
    {AOS_PII_IP_ADDRESS, "a :: b", NULL},
    {AOS_PII_IP_ADDRESS, "1:2:3:4:5:6:7:8:9", NULL},
    /* API_KEY */
    {AOS_PII_API_KEY, "key " AOS_KEY " end", AOS_KEY},
    {AOS_PII_API_KEY, "OPENAI=sk-proj-abc123DEF456ghi789JKL0", "sk-proj-abc123DEF456ghi789JKL0"},
    {AOS_PII_API_KEY, "token ghp_0123456789abcdefghijABCDEFGHIJ012345", "ghp_0123456789abcdefghijABCDEFGHIJ012345"},
    {AOS_PII_API_KEY, "aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"},
    {AOS_PII_API_KEY, "pip install sk-learn-is-a-python-package", NULL},
    {AOS_PII_API_KEY, "aos_short_abc", NULL},
    {AOS_PII_API_KEY, "AKIAIOSFODNN7EXAMPL", NULL},
    {AOS_PII_API_KEY, "ghp_short", NULL},
    {AOS_PII_API_KEY, "xAKIAIOSFODNN7EXAMPLE", NULL},
    /* JWT_TOKEN */
    {AOS_PII_JWT_TOKEN, "Authorization: Bearer " JWT_OK, JWT_OK},
    {AOS_PII_JWT_TOKEN, "unsigned eyJhbGciIDogIm5vbmUifQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0. ok",
     "eyJhbGciIDogIm5vbmUifQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0."},
    {AOS_PII_JWT_TOKEN, "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc", NULL}, /* no "alg" */
    {AOS_PII_JWT_TOKEN, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ.eyJzdWIiOiIx.abc", NULL}, /* broken JSON */
    {AOS_PII_JWT_TOKEN, JWT_HDR, NULL},
    {AOS_PII_JWT_TOKEN, "eyes.are.blue", NULL},
};

static int setup(void **state)
{
    (void)state;
    char err[256];
    pii = aos_pii_new("test key", 8, err, sizeof err);
    return pii == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    aos_pii_free(pii);
    return 0;
}

static void test_table(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct tcase *c = &cases[i];
        struct aos_pii_result *r = NULL;
        size_t n = 0;
        int rc = aos_pii_analyze(pii, c->text, strlen(c->text), AOS_PII_BIT(c->type), &r, &n);
        char got[256] = "";
        if (rc == AOS_PII_OK && n > 0)
            snprintf(got, sizeof got, "%.*s", (int)(r[0].byte_end - r[0].byte_start), c->text + r[0].byte_start);
        if (rc != AOS_PII_OK || (c->want == NULL && n != 0) ||
            (c->want != NULL && (n != 1 || r[0].type != c->type || strcmp(got, c->want) != 0))) {
            print_error("case %zu %s \"%s\": rc %d, %zu results, first \"%s\", want \"%s\"\n", i,
                        aos_pii_type_name(c->type), c->text, rc, n, got, c->want ? c->want : "(none)");
            failures++;
        }
        free(r);
        /* Unfiltered: a true positive must still be found as this type. */
        if (c->want != NULL) {
            rc = aos_pii_analyze(pii, c->text, strlen(c->text), AOS_PII_ALL, &r, &n);
            assert_int_equal(rc, AOS_PII_OK);
            bool found = false;
            for (size_t k = 0; k < n; k++)
                found |= r[k].type == c->type;
            if (!found) {
                print_error("case %zu \"%s\": lost when analysing all types\n", i, c->text);
                failures++;
            }
            free(r);
        }
    }
    assert_int_equal(failures, 0);
}

static void test_codepoint_offsets(void **state)
{
    (void)state;
    /* h é l l o ' ' 😀 ' ' = 8 code points, 12 bytes. */
    const char *t = "h\xc3\xa9llo \xf0\x9f\x98\x80 jane@example.com \xe2\x82\xac 078-05-1120";
    struct aos_pii_result *r = NULL;
    size_t n = 0;
    assert_int_equal(aos_pii_analyze(pii, t, strlen(t), AOS_PII_ALL, &r, &n), AOS_PII_OK);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].type, AOS_PII_EMAIL_ADDRESS);
    assert_int_equal(r[0].byte_start, 12);
    assert_int_equal(r[0].start, 8);
    assert_int_equal(r[0].end, 24);
    assert_true(r[0].score == 1.0);
    assert_int_equal(r[1].type, AOS_PII_US_SSN);
    assert_int_equal(r[1].start, 27);
    assert_int_equal(r[1].end, 38);
    assert_true(r[1].score == 0.85);
    free(r);
}

static void test_nul_in_text(void **state)
{
    (void)state;
    const char t[] = "a\0jane@example.com";
    struct aos_pii_result *r = NULL;
    size_t n = 0;
    assert_int_equal(aos_pii_analyze(pii, t, sizeof t - 1, AOS_PII_ALL, &r, &n), AOS_PII_OK);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].start, 2);
    free(r);
}

static void test_overlaps(void **state)
{
    (void)state;
    struct aos_pii_result *r = NULL;
    size_t n = 0;
    /* Equal scores (card and e-mail 1.0): the longer one wins. */
    const char *t1 = "4111111111111111@example.com";
    assert_int_equal(aos_pii_analyze(pii, t1, strlen(t1), AOS_PII_ALL, &r, &n), AOS_PII_OK);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].type, AOS_PII_EMAIL_ADDRESS);
    free(r);
    /* Both detectors fire on their own... */
    assert_int_equal(aos_pii_analyze(pii, t1, strlen(t1), AOS_PII_BIT(AOS_PII_CREDIT_CARD), &r, &n), AOS_PII_OK);
    assert_int_equal(n, 1);
    free(r);
    /* Higher score beats longer: phone (0.75) "+1 192.168.1.100" vs IPv4 (0.95). */
    const char *t2 = "x +1 192.168.1.100 y";
    assert_int_equal(aos_pii_analyze(pii, t2, strlen(t2), AOS_PII_BIT(AOS_PII_PHONE_NUMBER), &r, &n), AOS_PII_OK);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].end - r[0].start, 16);
    free(r);
    assert_int_equal(aos_pii_analyze(pii, t2, strlen(t2), AOS_PII_ALL, &r, &n), AOS_PII_OK);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].type, AOS_PII_IP_ADDRESS);
    assert_int_equal(r[0].start, 5);
    free(r);
    /* IPv4 inside IPv6: one finding over the whole address. */
    const char *t3 = "::ffff:10.1.2.3";
    assert_int_equal(aos_pii_analyze(pii, t3, strlen(t3), AOS_PII_ALL, &r, &n), AOS_PII_OK);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].start, 0);
    assert_int_equal(r[0].end, 15);
    free(r);
}

static void test_filter_and_names(void **state)
{
    (void)state;
    enum aos_pii_type t;
    for (unsigned i = 0; i < AOS_PII_NTYPES; i++) {
        assert_int_equal(aos_pii_type_from_name(aos_pii_type_name((enum aos_pii_type)i), &t), 0);
        assert_int_equal(t, i);
    }
    assert_int_equal(aos_pii_type_from_name("email_address", &t), -1);
    assert_int_equal(aos_pii_type_from_name("PERSON", &t), -1);
    assert_null(aos_pii_type_name(AOS_PII_NTYPES));
    const char *text = "jane@example.com 078-05-1120";
    struct aos_pii_result *r = NULL;
    size_t n = 0;
    assert_int_equal(aos_pii_analyze(pii, text, strlen(text), AOS_PII_BIT(AOS_PII_US_SSN), &r, &n), AOS_PII_OK);
    assert_int_equal(n, 1);
    assert_int_equal(r[0].type, AOS_PII_US_SSN);
    free(r);
    assert_int_equal(aos_pii_analyze(pii, "", 0, AOS_PII_ALL, &r, &n), AOS_PII_OK);
    assert_int_equal(n, 0);
    assert_null(r);
}

static char *anon(const struct aos_pii *p, const char *text, const struct aos_pii_operators *ops,
                  struct aos_pii_item **items, size_t *nitems)
{
    char *out = NULL;
    size_t outlen = 0;
    int rc = aos_pii_anonymize(p, text, strlen(text), ops, &out, &outlen, items, nitems);
    assert_int_equal(rc, AOS_PII_OK);
    assert_int_equal(strlen(out), outlen);
    return out;
}

static void test_replace_default_and_offsets(void **state)
{
    (void)state;
    struct aos_pii_item *it = NULL;
    size_t n = 0;
    char *out = anon(pii, "\xc3\xa9 jane@example.com and 4111111111111111!", NULL, &it, &n);
    assert_string_equal(out, "\xc3\xa9 <EMAIL_ADDRESS> and <CREDIT_CARD>!");
    assert_int_equal(n, 2);
    assert_int_equal(it[0].type, AOS_PII_EMAIL_ADDRESS);
    assert_int_equal(it[0].op, AOS_PII_OP_REPLACE);
    assert_int_equal(it[0].start, 2);
    assert_int_equal(it[0].end, 17);
    assert_int_equal(it[0].byte_start, 3);
    assert_int_equal(it[1].start, 22);
    assert_int_equal(it[1].end, 35);
    free(out);
    free(it);
}

static void test_operators(void **state)
{
    (void)state;
    struct aos_pii_operators ops;
    struct aos_pii_item *it = NULL;
    size_t n = 0;
    char *out;

    aos_pii_operators_init(&ops);
    ops.def.kind = AOS_PII_OP_REDACT;
    out = anon(pii, "mail jane@example.com now", &ops, &it, &n);
    assert_string_equal(out, "mail  now");
    assert_int_equal(n, 1);
    assert_int_equal(it[0].start, 5);
    assert_int_equal(it[0].end, 5);
    assert_int_equal(it[0].op, AOS_PII_OP_REDACT);
    free(out);
    free(it);

    aos_pii_operators_init(&ops);
    ops.def.kind = AOS_PII_OP_MASK;
    out = anon(pii, "jane@example.com", &ops, NULL, NULL);
    assert_string_equal(out, "****************");
    free(out);

    /* Presidio's example: 4 chars from the end with '#'. */
    ops.has[AOS_PII_EMAIL_ADDRESS] = true;
    ops.by_type[AOS_PII_EMAIL_ADDRESS] = (struct aos_pii_operator){
        .kind = AOS_PII_OP_MASK, .masking_char = "#", .chars_to_mask = 4, .from_end = true};
    out = anon(pii, "jane@example.com 078-05-1120", &ops, &it, &n);
    assert_string_equal(out, "jane@example#### ***********");
    assert_int_equal(it[1].start, 17);
    assert_int_equal(it[1].end, 28);
    free(out);
    free(it);

    /* From the start, a multibyte masking char, more than the length. */
    ops.by_type[AOS_PII_EMAIL_ADDRESS] = (struct aos_pii_operator){
        .kind = AOS_PII_OP_MASK, .masking_char = "\xe2\x80\xa2", .chars_to_mask = 4};
    out = anon(pii, "jane@example.com", &ops, &it, &n);
    assert_string_equal(out, "\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2@example.com");
    assert_int_equal(it[0].end, 16);
    free(out);
    free(it);
    ops.by_type[AOS_PII_EMAIL_ADDRESS].chars_to_mask = 100;
    out = anon(pii, "a@example.com", &ops, NULL, NULL);
    assert_int_equal(strlen(out), 13 * 3);
    free(out);

    /* replace with a value; per-type beats DEFAULT. */
    aos_pii_operators_init(&ops);
    ops.def = (struct aos_pii_operator){.kind = AOS_PII_OP_REPLACE, .new_value = "[x]"};
    ops.has[AOS_PII_US_SSN] = true;
    ops.by_type[AOS_PII_US_SSN] = (struct aos_pii_operator){.kind = AOS_PII_OP_REDACT};
    out = anon(pii, "jane@example.com 078-05-1120 192.168.0.1", &ops, NULL, NULL);
    assert_string_equal(out, "[x]  [x]");
    free(out);

    /* Bad operators. */
    char *o = NULL;
    size_t ol = 0;
    aos_pii_operators_init(&ops);
    ops.def = (struct aos_pii_operator){.kind = AOS_PII_OP_MASK, .masking_char = "ab"};
    assert_int_equal(aos_pii_anonymize(pii, "x", 1, &ops, &o, &ol, NULL, NULL), AOS_PII_EINVAL);
    ops.def = (struct aos_pii_operator){.kind = AOS_PII_OP_MASK, .masking_char = ""};
    assert_int_equal(aos_pii_anonymize(pii, "x", 1, &ops, &o, &ol, NULL, NULL), AOS_PII_EINVAL);
    ops.def = (struct aos_pii_operator){.kind = AOS_PII_OP_REPLACE, .new_value = "\xff"};
    assert_int_equal(aos_pii_anonymize(pii, "x", 1, &ops, &o, &ol, NULL, NULL), AOS_PII_EUTF8);
    assert_null(o);

    enum aos_pii_op_kind k;
    assert_int_equal(aos_pii_op_from_name("mask", &k), 0);
    assert_int_equal(k, AOS_PII_OP_MASK);
    assert_int_equal(aos_pii_op_from_name("encrypt", &k), -1);
}

static void expect_hmac(const char *key, const char *data, const char *got)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    char hex[65];
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)data, strlen(data), md, &mdlen);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    assert_string_equal(got, hex);
}

static void test_hash(void **state)
{
    (void)state;
    struct aos_pii_operators ops;
    aos_pii_operators_init(&ops);
    ops.def.kind = AOS_PII_OP_HASH;
    char *a = anon(pii, "jane@example.com", &ops, NULL, NULL);
    char *b = anon(pii, "jane@example.com", &ops, NULL, NULL);
    char *c = anon(pii, "john@example.com", &ops, NULL, NULL);
    assert_int_equal(strlen(a), 64);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    expect_hmac("test key", "jane@example.com", a);

    char err[128];
    struct aos_pii *other = aos_pii_new("other key", 9, err, sizeof err);
    assert_non_null(other);
    char *d = anon(other, "jane@example.com", &ops, NULL, NULL);
    assert_string_not_equal(a, d);
    expect_hmac("other key", "jane@example.com", d);
    aos_pii_free(other);

    /* No key given: a random one, so two objects disagree. */
    struct aos_pii *r1 = aos_pii_new(NULL, 0, err, sizeof err);
    struct aos_pii *r2 = aos_pii_new(NULL, 0, err, sizeof err);
    assert_non_null(r1);
    assert_non_null(r2);
    char *e1 = anon(r1, "jane@example.com", &ops, NULL, NULL);
    char *e1b = anon(r1, "jane@example.com", &ops, NULL, NULL);
    char *e2 = anon(r2, "jane@example.com", &ops, NULL, NULL);
    assert_string_equal(e1, e1b);
    assert_string_not_equal(e1, e2);
    aos_pii_free(r1);
    aos_pii_free(r2);
    free(a);
    free(b);
    free(c);
    free(d);
    free(e1);
    free(e1b);
    free(e2);
}

static void test_redact_all(void **state)
{
    (void)state;
    const char *t = "contact jane@example.com, ssn 078-05-1120, key " AOS_KEY ", jwt " JWT_OK;
    char *out = aos_pii_redact_all(pii, t, strlen(t));
    assert_non_null(out);
    assert_string_equal(out, "contact <EMAIL_ADDRESS>, ssn <US_SSN>, key <API_KEY>, jwt <JWT_TOKEN>");
    free(out);
    out = aos_pii_redact_all(pii, "", 0);
    assert_non_null(out);
    assert_string_equal(out, "");
    free(out);
    out = aos_pii_redact_all(pii, "nothing here", 12);
    assert_string_equal(out, "nothing here");
    free(out);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\xff", "a\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80", "jane@example.com \x80", "\xc2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct aos_pii_result *r = NULL;
        size_t n = 0;
        assert_false(aos_pii_utf8_valid(bad[i], strlen(bad[i])));
        assert_int_equal(aos_pii_analyze(pii, bad[i], strlen(bad[i]), AOS_PII_ALL, &r, &n), AOS_PII_EUTF8);
        assert_null(r);
        assert_null(aos_pii_redact_all(pii, bad[i], strlen(bad[i])));
    }
    assert_true(aos_pii_utf8_valid("\xf4\x8f\xbf\xbf \xef\xbf\xbf \xc2\x80", 11));
    assert_string_equal(aos_pii_strerror(AOS_PII_EUTF8), "text is not valid UTF-8");
}

/* Inputs shaped to make a careless pattern backtrack: each must finish
 * with OK (no limit hit) and find what is findable. */
static void test_pathological(void **state)
{
    (void)state;
    static const char *const units[] = {"1", "1 ", "1-", "a.", "a@", "a@b.", ":", "1:", "1.", "ey", "eyJ.",
                                        "+1 ", "DE89 ", "A", "aos_", "sk-a", "(1", "-", "1.1.1.1."};
    size_t len = 256 * 1024;
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t ul = strlen(units[u]);
        for (size_t i = 0; i < len; i++)
            buf[i] = units[u][i % ul];
        buf[len] = '\0';
        struct aos_pii_result *r = NULL;
        size_t n = 0;
        int rc = aos_pii_analyze(pii, buf, len, AOS_PII_ALL, &r, &n);
        if (rc != AOS_PII_OK) {
            free(buf);
            fail_msg("unit \"%s\": %s", units[u], aos_pii_strerror(rc));
        }
        free(r);
    }
    free(buf);
}

struct thread_arg {
    const char *text;
    size_t want;
    int bad;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    for (int i = 0; i < 200; i++) {
        struct aos_pii_result *r = NULL;
        size_t n = 0;
        if (aos_pii_analyze(pii, a->text, strlen(a->text), AOS_PII_ALL, &r, &n) != AOS_PII_OK || n != a->want)
            a->bad++;
        free(r);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t th[4];
    struct thread_arg args[4];
    const char *text = "jane@example.com 4111111111111111 DE89370400440532013000 10.0.0.1 078-05-1120";
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){.text = text, .want = 5};
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].bad, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_codepoint_offsets),
        cmocka_unit_test(test_nul_in_text),
        cmocka_unit_test(test_overlaps),
        cmocka_unit_test(test_filter_and_names),
        cmocka_unit_test(test_replace_default_and_offsets),
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_redact_all),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_pathological),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
