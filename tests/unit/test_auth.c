#include "config.h"

/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <argon2.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/jwt.h"
#include "auth/password.h"

/*
 * Negative JWT cases are built by hand (base64url of literal JSON, HMAC
 * from OpenSSL) so each one is exactly what its name says; a baseline test
 * proves the hand builder produces tokens the verifier accepts.
 */

#define NOW INT64_C(1700000000)
#define TID "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
#define JTI "0b9a8c7d-6e5f-4a3b-9c2d-1e0f2a3b4c5d"

static const char secret_a[] = "0123456789abcdef0123456789abcdef0123456789abcdef"; /* 48 bytes */
static const char secret_b[] = "fedcba9876543210fedcba9876543210fedcba9876543210";

static struct aos_jwt_key key_of(const char *s)
{
    struct aos_jwt_key k = {(unsigned char *)(uintptr_t)s, strlen(s)};
    return k;
}

/* ------------------------------------------------------------- builders */

static void b64url(const void *in, size_t len, char *out, size_t cap)
{
    unsigned char tmp[8192];
    assert_true(4 * ((len + 2) / 3) + 1 <= sizeof tmp);
    int n = EVP_EncodeBlock(tmp, in, (int)len);
    assert_true(n >= 0);
    size_t j = 0;
    for (int i = 0; i < n && tmp[i] != '='; i++) {
        assert_true(j + 1 < cap);
        out[j++] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
    }
    out[j] = '\0';
}

/* header.payload.signature, signed with HMAC(md) over key, or with an
 * empty signature when md is NULL. */
static void make_token(const char *header, const char *payload, const char *key, const EVP_MD *md, char *out,
                       size_t cap)
{
    char h[4096], p[8192], s[256];
    b64url(header, strlen(header), h, sizeof h);
    b64url(payload, strlen(payload), p, sizeof p);
    int n = snprintf(out, cap, "%s.%s", h, p);
    assert_true(n > 0 && (size_t)n < cap);
    s[0] = '\0';
    if (md != NULL) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        assert_non_null(HMAC(md, key, (int)strlen(key), (const unsigned char *)out, (size_t)n, mac, &maclen));
        b64url(mac, maclen, s, sizeof s);
    }
    size_t used = (size_t)n;
    n = snprintf(out + used, cap - used, ".%s", s);
    assert_true(n > 0 && (size_t)n < cap - used);
}

static const char hs256_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static void payload_with(char *out, size_t cap, int64_t iat, int64_t exp)
{
    int n = snprintf(out, cap,
                     "{\"sub\":\"u-42\",\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI "\","
                     "\"iat\":%lld,\"exp\":%lld}",
                     (long long)iat, (long long)exp);
    assert_true(n > 0 && (size_t)n < cap);
}

static int verify_str(const char *keystr, const char *token, int64_t now, int leeway,
                      struct aos_jwt_claims *claims)
{
    struct aos_jwt_key k = key_of(keystr);
    /* An exactly sized heap copy without a NUL, so ASan catches overreads. */
    size_t len = strlen(token);
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, token, len);
    int rc = aos_jwt_verify(&k, copy, len, now, leeway, claims);
    free(copy);
    return rc;
}

/* Signs header/payload with key A and expects `want` at NOW. */
static void expect_signed(const char *header, const char *payload, const EVP_MD *md, int want)
{
    char tok[8192];
    make_token(header, payload, secret_a, md, tok, sizeof tok);
    int rc = verify_str(secret_a, tok, NOW, 30, NULL);
    if (rc != want)
        fail_msg("header %s payload %s: got %d (%s), want %d (%s)", header, payload, rc,
                 aos_jwt_result_text(rc), want, aos_jwt_result_text(want));
}

/* ------------------------------------------------------------- JWT */

static void test_jwt_roundtrip(void **state)
{
    (void)state;
    struct aos_jwt_key k = key_of(secret_a);
    struct aos_jwt_claims issued, got;
    char err[256];

    /* Upper-case tenant ids come out canonical (lower case). */
    char *tok = aos_jwt_issue(&k, "user-1", "6F1C2A3B-4D5E-4F60-8A7B-9C0D1E2F3A4B", "approver", 28800,
                              &issued, err, sizeof err);
    assert_non_null(tok);
    assert_string_equal(err, "");
    assert_string_equal(issued.sub, "user-1");
    assert_string_equal(issued.tid, TID);
    assert_string_equal(issued.role, "approver");
    assert_int_equal(strlen(issued.jti), 36);
    assert_int_equal(issued.exp - issued.iat, 28800);

    memset(&got, 0xAA, sizeof got);
    assert_int_equal(aos_jwt_verify(&k, tok, strlen(tok), issued.iat, 0, &got), AOS_JWT_OK);
    assert_string_equal(got.sub, issued.sub);
    assert_string_equal(got.tid, issued.tid);
    assert_string_equal(got.role, issued.role);
    assert_string_equal(got.jti, issued.jti);
    assert_int_equal(got.iat, issued.iat);
    assert_int_equal(got.exp, issued.exp);

    /* The header libjwt wrote is exactly the one we pin. */
    char hdr[64];
    b64url(hs256_header, strlen(hs256_header), hdr, sizeof hdr);
    assert_int_equal(strncmp(tok, hdr, strlen(hdr)), 0);
    assert_int_equal(tok[strlen(hdr)], '.');

    /* Each issue gets a fresh jti. */
    struct aos_jwt_claims second;
    char *tok2 = aos_jwt_issue(&k, "user-1", TID, "approver", 60, &second, err, sizeof err);
    assert_non_null(tok2);
    assert_string_not_equal(second.jti, issued.jti);
    free(tok2);
    free(tok);
}

static void test_jwt_issue_refuses_bad_input(void **state)
{
    (void)state;
    struct aos_jwt_key k = key_of(secret_a);
    struct aos_jwt_key shortk = {(unsigned char *)(uintptr_t) "short", 5};
    char err[256];
    char longsub[80];
    memset(longsub, 'x', sizeof longsub - 1);
    longsub[sizeof longsub - 1] = '\0';

    assert_null(aos_jwt_issue(&k, "u", "not-a-uuid", "user", 60, NULL, err, sizeof err));
    assert_non_null(strstr(err, "UUID"));
    assert_null(aos_jwt_issue(&k, "u", TID, "root", 60, NULL, err, sizeof err));
    assert_non_null(strstr(err, "role"));
    assert_null(aos_jwt_issue(&k, "", TID, "user", 60, NULL, err, sizeof err));
    assert_null(aos_jwt_issue(&k, longsub, TID, "user", 60, NULL, err, sizeof err));
    assert_null(aos_jwt_issue(&k, "u", TID, "user", 0, NULL, err, sizeof err));
    assert_null(aos_jwt_issue(&shortk, "u", TID, "user", 60, NULL, err, sizeof err));
    assert_null(aos_jwt_issue(NULL, "u", TID, "user", 60, NULL, err, sizeof err));
}

static void test_jwt_handmade_baseline(void **state)
{
    (void)state;
    char payload[512], tok[2048];
    struct aos_jwt_claims c;

    payload_with(payload, sizeof payload, NOW - 10, NOW + 3600);
    make_token(hs256_header, payload, secret_a, EVP_sha256(), tok, sizeof tok);
    assert_int_equal(verify_str(secret_a, tok, NOW, 0, &c), AOS_JWT_OK);
    assert_string_equal(c.sub, "u-42");
    assert_string_equal(c.tid, TID);
    assert_string_equal(c.role, "user");
    assert_string_equal(c.jti, JTI);
    assert_int_equal(c.iat, NOW - 10);
    assert_int_equal(c.exp, NOW + 3600);

    /* Header without typ, extra unknown claims: still ours. */
    expect_signed("{\"alg\":\"HS256\"}", payload, EVP_sha256(), AOS_JWT_OK);
}

static void test_jwt_expired_and_leeway(void **state)
{
    (void)state;
    struct aos_jwt_key k = key_of(secret_a);
    struct aos_jwt_claims c;
    char err[256];
    char *tok = aos_jwt_issue(&k, "u", TID, "user", 600, &c, err, sizeof err);
    assert_non_null(tok);
    size_t len = strlen(tok);

    assert_int_equal(aos_jwt_verify(&k, tok, len, c.exp - 1, 0, NULL), AOS_JWT_OK);
    assert_int_equal(aos_jwt_verify(&k, tok, len, c.exp, 0, NULL), AOS_JWT_EXPIRED);
    assert_int_equal(aos_jwt_verify(&k, tok, len, c.exp + 1000, 0, NULL), AOS_JWT_EXPIRED);
    /* Within leeway: accepted; at or beyond it: expired. */
    assert_int_equal(aos_jwt_verify(&k, tok, len, c.exp + 10, 30, NULL), AOS_JWT_OK);
    assert_int_equal(aos_jwt_verify(&k, tok, len, c.exp + 29, 30, NULL), AOS_JWT_OK);
    assert_int_equal(aos_jwt_verify(&k, tok, len, c.exp + 30, 30, NULL), AOS_JWT_EXPIRED);
    /* Negative leeway counts as none. */
    assert_int_equal(aos_jwt_verify(&k, tok, len, c.exp, -100, NULL), AOS_JWT_EXPIRED);
    free(tok);

    /* Hand-built: expired an hour ago. */
    char payload[512];
    payload_with(payload, sizeof payload, NOW - 7200, NOW - 3600);
    expect_signed(hs256_header, payload, EVP_sha256(), AOS_JWT_EXPIRED);
}

static void test_jwt_wrong_key(void **state)
{
    (void)state;
    struct aos_jwt_key ka = key_of(secret_a);
    struct aos_jwt_claims c;
    char err[256];
    char *tok = aos_jwt_issue(&ka, "u", TID, "admin", 600, &c, err, sizeof err);
    assert_non_null(tok);
    assert_int_equal(verify_str(secret_a, tok, c.iat, 0, NULL), AOS_JWT_OK);
    assert_int_equal(verify_str(secret_b, tok, c.iat, 0, NULL), AOS_JWT_BAD_SIGNATURE);
    free(tok);

    char payload[512], tok2[2048];
    payload_with(payload, sizeof payload, NOW, NOW + 60);
    make_token(hs256_header, payload, secret_b, EVP_sha256(), tok2, sizeof tok2);
    assert_int_equal(verify_str(secret_a, tok2, NOW, 0, NULL), AOS_JWT_BAD_SIGNATURE);
}

static void test_jwt_alg_none(void **state)
{
    (void)state;
    char payload[512];
    payload_with(payload, sizeof payload, NOW, NOW + 60);
    /* The classic forgery: alg none, real payload, empty signature. */
    expect_signed("{\"alg\":\"none\"}", payload, NULL, AOS_JWT_BAD_ALG);
    expect_signed("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, NULL, AOS_JWT_BAD_ALG);
    /* ... and with a valid-looking HMAC attached, and odd spellings. */
    expect_signed("{\"alg\":\"none\"}", payload, EVP_sha256(), AOS_JWT_BAD_ALG);
    expect_signed("{\"alg\":\"None\"}", payload, NULL, AOS_JWT_BAD_ALG);
    expect_signed("{\"alg\":\"NONE\"}", payload, NULL, AOS_JWT_BAD_ALG);
    expect_signed("{\"alg\":\"hs256\"}", payload, EVP_sha256(), AOS_JWT_BAD_ALG);
    /* No alg, or not a string. */
    expect_signed("{\"typ\":\"JWT\"}", payload, EVP_sha256(), AOS_JWT_BAD_ALG);
    expect_signed("{\"alg\":256}", payload, EVP_sha256(), AOS_JWT_BAD_ALG);
    expect_signed("{\"alg\":null}", payload, EVP_sha256(), AOS_JWT_BAD_ALG);
    /* Duplicate alg: the pinned reading (last wins) must still be HS256. */
    expect_signed("{\"alg\":\"HS256\",\"alg\":\"none\"}", payload, NULL, AOS_JWT_BAD_ALG);
}

static void test_jwt_alg_hs512_same_secret(void **state)
{
    (void)state;
    char payload[512];
    payload_with(payload, sizeof payload, NOW, NOW + 60);
    /* libjwt 1.10 alone accepts these (PLATFORM-NOTES §3). */
    expect_signed("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", payload, EVP_sha512(), AOS_JWT_BAD_ALG);
    expect_signed("{\"alg\":\"HS384\",\"typ\":\"JWT\"}", payload, EVP_sha384(), AOS_JWT_BAD_ALG);
}

static void test_jwt_alg_confusion_rs256(void **state)
{
    (void)state;
    char payload[512];
    payload_with(payload, sizeof payload, NOW, NOW + 60);
    expect_signed("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload, EVP_sha256(), AOS_JWT_BAD_ALG);
    expect_signed("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", payload, EVP_sha256(), AOS_JWT_BAD_ALG);
}

static void test_jwt_truncated(void **state)
{
    (void)state;
    struct aos_jwt_key k = key_of(secret_a);
    struct aos_jwt_claims c;
    char err[256];
    char *tok = aos_jwt_issue(&k, "u", TID, "user", 600, &c, err, sizeof err);
    assert_non_null(tok);
    size_t len = strlen(tok);
    const char *d2 = strrchr(tok, '.');
    size_t sig_at = (size_t)(d2 + 1 - tok);

    /* Every proper prefix is refused. */
    for (size_t n = 0; n < len; n++) {
        int rc = aos_jwt_verify(&k, tok, n, c.iat, 0, NULL);
        if (rc == AOS_JWT_OK)
            fail_msg("prefix of %zu/%zu bytes accepted", n, len);
    }
    /* Shortened signature: the right parts, the wrong signature. */
    assert_int_equal(aos_jwt_verify(&k, tok, len - 1, c.iat, 0, NULL), AOS_JWT_BAD_SIGNATURE);
    assert_int_equal(aos_jwt_verify(&k, tok, len - 4, c.iat, 0, NULL), AOS_JWT_BAD_SIGNATURE);
    /* Signature gone entirely, and cut inside the payload. */
    assert_int_equal(aos_jwt_verify(&k, tok, sig_at, c.iat, 0, NULL), AOS_JWT_MALFORMED);
    assert_int_equal(aos_jwt_verify(&k, tok, sig_at - 1, c.iat, 0, NULL), AOS_JWT_MALFORMED);
    assert_int_equal(aos_jwt_verify(&k, tok, sig_at - 10, c.iat, 0, NULL), AOS_JWT_MALFORMED);
    free(tok);
}

static void test_jwt_garbage(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "",
        "garbage",
        ".",
        "..",
        "...",
        "a.b.c",                         /* base64url, but not JSON */
        "!!!!.####.$$$$",                /* outside the alphabet */
        "eyJhbGciOiJIUzI1NiJ9.e30=.abc", /* padding is not base64url */
        "eyJhbGciOiJIUzI1NiJ9 .e30.abc",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc",
        "eyJhbGciOiJIUzI1NiJ9.eyJh.abcd", /* payload not JSON */
        "WzFd.e30.abcd",                  /* header is [1] */
        "eyJhbGciOiJIUzI1NiJ9.WzFd.abcd", /* payload is [1] */
        "eyJhbGciOiJIUzI1NiJ9.e30.a",     /* len % 4 == 1 is never base64 */
        "e.e30.abcd",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = verify_str(secret_a, cases[i], NOW, 0, NULL);
        if (rc != AOS_JWT_MALFORMED)
            fail_msg("\"%s\": got %d (%s), want MALFORMED", cases[i], rc, aos_jwt_result_text(rc));
    }

    /* An embedded NUL is not part of any token. */
    struct aos_jwt_key k = key_of(secret_a);
    char payload[512], tok[2048];
    payload_with(payload, sizeof payload, NOW, NOW + 60);
    make_token(hs256_header, payload, secret_a, EVP_sha256(), tok, sizeof tok);
    size_t len = strlen(tok);
    tok[5] = '\0';
    assert_int_equal(aos_jwt_verify(&k, tok, len, NOW, 0, NULL), AOS_JWT_MALFORMED);
    assert_int_equal(aos_jwt_verify(&k, NULL, 0, NOW, 0, NULL), AOS_JWT_MALFORMED);
}

static void test_jwt_part_counts(void **state)
{
    (void)state;
    char payload[512], tok[2048], bad[2200];
    payload_with(payload, sizeof payload, NOW, NOW + 60);
    make_token(hs256_header, payload, secret_a, EVP_sha256(), tok, sizeof tok);
    assert_int_equal(verify_str(secret_a, tok, NOW, 0, NULL), AOS_JWT_OK);

    /* Two parts: drop the signature and its dot. */
    snprintf(bad, sizeof bad, "%.*s", (int)(strrchr(tok, '.') - tok), tok);
    assert_int_equal(verify_str(secret_a, bad, NOW, 0, NULL), AOS_JWT_MALFORMED);
    /* Four parts: a valid token with one more part. */
    snprintf(bad, sizeof bad, "%s.abcd", tok);
    assert_int_equal(verify_str(secret_a, bad, NOW, 0, NULL), AOS_JWT_MALFORMED);
    snprintf(bad, sizeof bad, "%s.", tok);
    assert_int_equal(verify_str(secret_a, bad, NOW, 0, NULL), AOS_JWT_MALFORMED);
    /* Empty header or payload. */
    snprintf(bad, sizeof bad, "%s", strchr(tok, '.'));
    assert_int_equal(verify_str(secret_a, bad, NOW, 0, NULL), AOS_JWT_MALFORMED);
    const char *d1 = strchr(tok, '.');
    snprintf(bad, sizeof bad, "%.*s.%s", (int)(d1 - tok + 1), tok, strrchr(tok, '.') + 1);
    assert_int_equal(verify_str(secret_a, bad, NOW, 0, NULL), AOS_JWT_MALFORMED);
}

static void test_jwt_huge(void **state)
{
    (void)state;
    struct aos_jwt_key k = key_of(secret_a);
    size_t n = AOS_JWT_MAX_TOKEN + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'A', n);
    big[20] = '.';
    big[40] = '.';
    assert_int_equal(aos_jwt_verify(&k, big, n, NOW, 0, NULL), AOS_JWT_TOO_LONG);
    assert_int_equal(aos_jwt_verify(&k, big, 1u << 20, NOW, 0, NULL), AOS_JWT_TOO_LONG); /* never read */
    /* Exactly at the limit it is parsed (and refused for what it is). */
    assert_int_equal(aos_jwt_verify(&k, big, AOS_JWT_MAX_TOKEN, NOW, 0, NULL), AOS_JWT_MALFORMED);
    free(big);

    /* A genuinely signed token just over the limit is still refused unread. */
    char payload[AOS_JWT_MAX_TOKEN + 512], pad[AOS_JWT_MAX_TOKEN];
    char *tok = malloc(3 * AOS_JWT_MAX_TOKEN);
    assert_non_null(tok);
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    snprintf(payload, sizeof payload,
             "{\"pad\":\"%s\",\"sub\":\"u\",\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI
             "\",\"iat\":%lld,\"exp\":%lld}",
             pad, (long long)NOW, (long long)NOW + 60);
    make_token(hs256_header, payload, secret_a, EVP_sha256(), tok, 3 * AOS_JWT_MAX_TOKEN);
    assert_true(strlen(tok) > AOS_JWT_MAX_TOKEN);
    assert_int_equal(verify_str(secret_a, tok, NOW, 0, NULL), AOS_JWT_TOO_LONG);
    free(tok);
}

static void test_jwt_tampered_payload(void **state)
{
    (void)state;
    char payload[512], tok[2048], bad[2048], p64[1024];

    payload_with(payload, sizeof payload, NOW, NOW + 60);
    make_token(hs256_header, payload, secret_a, EVP_sha256(), tok, sizeof tok);
    assert_int_equal(verify_str(secret_a, tok, NOW, 0, NULL), AOS_JWT_OK);

    /* Promote ourselves to admin, keep header and signature. */
    char promoted[512];
    snprintf(promoted, sizeof promoted,
             "{\"sub\":\"u-42\",\"tid\":\"" TID "\",\"role\":\"admin\",\"jti\":\"" JTI
             "\",\"iat\":%lld,\"exp\":%lld}",
             (long long)NOW, (long long)NOW + 60);
    b64url(promoted, strlen(promoted), p64, sizeof p64);
    const char *d1 = strchr(tok, '.');
    const char *d2 = strrchr(tok, '.');
    snprintf(bad, sizeof bad, "%.*s%s%s", (int)(d1 - tok + 1), tok, p64, d2);
    assert_int_equal(verify_str(secret_a, bad, NOW, 0, NULL), AOS_JWT_BAD_SIGNATURE);

    /* Extend our own expiry the same way. */
    char longer[512];
    payload_with(longer, sizeof longer, NOW, NOW + 99999999);
    b64url(longer, strlen(longer), p64, sizeof p64);
    snprintf(bad, sizeof bad, "%.*s%s%s", (int)(d1 - tok + 1), tok, p64, d2);
    assert_int_equal(verify_str(secret_a, bad, NOW, 0, NULL), AOS_JWT_BAD_SIGNATURE);

    /* One flipped signature character. */
    snprintf(bad, sizeof bad, "%s", tok);
    char *last = bad + strlen(bad) - 5;
    *last = *last == 'A' ? 'B' : 'A';
    assert_int_equal(verify_str(secret_a, bad, NOW, 0, NULL), AOS_JWT_BAD_SIGNATURE);
}

static void test_jwt_missing_claims(void **state)
{
    (void)state;
    static const char *const names[] = {"sub", "tid", "role", "jti", "iat", "exp"};
    char payload[512];

    for (size_t skip = 0; skip < 6; skip++) {
        char body[512] = "{";
        size_t used = 1;
        const char *vals[] = {"\"u-42\"",    "\"" TID "\"", "\"user\"",
                              "\"" JTI "\"", "1699999990",  "1700003600"};
        for (size_t i = 0; i < 6; i++) {
            if (i == skip)
                continue;
            int n = snprintf(body + used, sizeof body - used, "%s\"%s\":%s", used > 1 ? "," : "", names[i],
                             vals[i]);
            assert_true(n > 0 && (size_t)n < sizeof body - used);
            used += (size_t)n;
        }
        int pn = snprintf(payload, sizeof payload, "%s}", body);
        assert_true(pn > 0 && (size_t)pn < sizeof payload);
        char tok[2048];
        make_token(hs256_header, payload, secret_a, EVP_sha256(), tok, sizeof tok);
        int rc = verify_str(secret_a, tok, NOW, 0, NULL);
        if (rc != AOS_JWT_BAD_CLAIMS)
            fail_msg("without %s: got %d (%s)", names[skip], rc, aos_jwt_result_text(rc));
    }
    expect_signed(hs256_header, "{}", EVP_sha256(), AOS_JWT_BAD_CLAIMS);
}

static void test_jwt_claim_types(void **state)
{
    (void)state;
    static const char *const cases[] = {
        /* exp / iat as strings: libjwt's get_grant_int would read them as 0 */
        "{\"sub\":\"u\",\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":\"1700003600\"}",
        "{\"sub\":\"u\",\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":\"1700000000\",\"exp\":1700003600}",
        "{\"sub\":\"u\",\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":1700003600.5}",
        "{\"sub\":\"u\",\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":true}",
        "{\"sub\":\"u\",\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":null}",
        /* tid not a UUID */
        "{\"sub\":\"u\",\"tid\":\"acme\",\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":1700003600}",
        "{\"sub\":\"u\",\"tid\":\"" TID "0\",\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":1700003600}",
        "{\"sub\":\"u\",\"tid\":42,\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":1700003600}",
        /* sub */
        "{\"sub\":\"\",\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":1700003600}",
        "{\"sub\":42,\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":1700003600}",
        "{\"sub\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"tid\":\"" TID
        "\",\"role\":\"user\",\"jti\":\"" JTI "\",\"iat\":1700000000,\"exp\":1700003600}",
        /* role */
        "{\"sub\":\"u\",\"tid\":\"" TID "\",\"role\":\"root\",\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":1700003600}",
        "{\"sub\":\"u\",\"tid\":\"" TID "\",\"role\":\"Admin\",\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":1700003600}",
        "{\"sub\":\"u\",\"tid\":\"" TID "\",\"role\":[\"admin\"],\"jti\":\"" JTI
        "\",\"iat\":1700000000,\"exp\":1700003600}",
        /* jti */
        "{\"sub\":\"u\",\"tid\":\"" TID
        "\",\"role\":\"user\",\"jti\":\"x\",\"iat\":1700000000,\"exp\":1700003600}",
        /* exp not after iat, negative iat */
        "{\"sub\":\"u\",\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":1700003600,\"exp\":1700003600}",
        "{\"sub\":\"u\",\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI
        "\",\"iat\":-1,\"exp\":1700003600}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char tok[2048];
        make_token(hs256_header, cases[i], secret_a, EVP_sha256(), tok, sizeof tok);
        int rc = verify_str(secret_a, tok, NOW, 30, NULL);
        if (rc != AOS_JWT_BAD_CLAIMS)
            fail_msg("case %zu %s: got %d (%s), want BAD_CLAIMS", i, cases[i], rc, aos_jwt_result_text(rc));
    }
}

static void test_jwt_claim_with_nul(void **state)
{
    (void)state;
    /* jansson inside libjwt refuses \u0000 before it checks the signature,
     * so this comes back as BAD_SIGNATURE; what matters is the refusal. */
    char tok[2048];
    make_token(hs256_header,
               "{\"sub\":\"a\\u0000b\",\"tid\":\"" TID "\",\"role\":\"user\",\"jti\":\"" JTI
               "\",\"iat\":1700000000,\"exp\":1700003600}",
               secret_a, EVP_sha256(), tok, sizeof tok);
    int rc = verify_str(secret_a, tok, NOW, 30, NULL);
    assert_true(rc == AOS_JWT_BAD_SIGNATURE || rc == AOS_JWT_BAD_CLAIMS);
}

static void test_jwt_iat_future(void **state)
{
    (void)state;
    char payload[512];
    payload_with(payload, sizeof payload, NOW + 3600, NOW + 7200);
    expect_signed(hs256_header, payload, EVP_sha256(), AOS_JWT_BAD_CLAIMS);
    /* Clock skew within leeway (30 s in expect_signed) is fine. */
    payload_with(payload, sizeof payload, NOW + 30, NOW + 7200);
    expect_signed(hs256_header, payload, EVP_sha256(), AOS_JWT_OK);
    payload_with(payload, sizeof payload, NOW + 31, NOW + 7200);
    expect_signed(hs256_header, payload, EVP_sha256(), AOS_JWT_BAD_CLAIMS);
}

static void test_jwt_result_text(void **state)
{
    (void)state;
    assert_string_equal(aos_jwt_result_text(AOS_JWT_OK), "ok");
    assert_string_equal(aos_jwt_result_text(AOS_JWT_BAD_ALG), "algorithm not allowed");
    assert_string_equal(aos_jwt_result_text(AOS_JWT_EXPIRED), "token expired");
    assert_string_equal(aos_jwt_result_text(12345), "unknown JWT result");
}

/* ------------------------------------------------------------- key file */

static char tmpdir[256];

static int key_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/aos-test-auth-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int key_teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0); /* umask-independent */
    assert_int_equal(close(fd), 0);
}

static void test_key_missing(void **state)
{
    (void)state;
    struct aos_jwt_key k = {(unsigned char *)(uintptr_t) "junk", 4};
    char path[300], err[512], warn[512];
    snprintf(path, sizeof path, "%s/nope", tmpdir);
    assert_int_equal(aos_jwt_key_load(path, &k, err, sizeof err, warn, sizeof warn), -1);
    assert_null(k.secret);
    assert_int_equal(k.len, 0);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "does not exist"));
    assert_string_equal(warn, "");

    assert_int_equal(aos_jwt_key_load(tmpdir, &k, err, sizeof err, warn, sizeof warn), -1);
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(aos_jwt_key_load("", &k, err, sizeof err, warn, sizeof warn), -1);
    assert_int_equal(aos_jwt_key_load(NULL, &k, err, sizeof err, warn, sizeof warn), -1);
}

static void test_key_short(void **state)
{
    (void)state;
    struct aos_jwt_key k;
    char path[300], err[512], warn[512];
    snprintf(path, sizeof path, "%s/short", tmpdir);

    write_file(path, "0123456789012345678901234567890", 31, 0600);
    assert_int_equal(aos_jwt_key_load(path, &k, err, sizeof err, warn, sizeof warn), -1);
    assert_non_null(strstr(err, "31 bytes"));
    assert_non_null(strstr(err, path));
    assert_null(k.secret);
    /* The newline does not count toward the minimum. */
    write_file(path, "0123456789012345678901234567890\n", 32, 0600);
    assert_int_equal(aos_jwt_key_load(path, &k, err, sizeof err, warn, sizeof warn), -1);
    write_file(path, "", 0, 0600);
    assert_int_equal(aos_jwt_key_load(path, &k, err, sizeof err, warn, sizeof warn), -1);
    /* Exactly the minimum loads. */
    write_file(path, "01234567890123456789012345678901", 32, 0600);
    assert_int_equal(aos_jwt_key_load(path, &k, err, sizeof err, warn, sizeof warn), 0);
    assert_int_equal(k.len, 32);
    aos_jwt_key_clear(&k);
    assert_null(k.secret);
    assert_int_equal(k.len, 0);

    /* Far too large: the wrong file. */
    char big[5000];
    memset(big, 'k', sizeof big);
    write_file(path, big, sizeof big, 0600);
    assert_int_equal(aos_jwt_key_load(path, &k, err, sizeof err, warn, sizeof warn), -1);
    assert_non_null(strstr(err, "larger than"));
}

static void test_key_modes(void **state)
{
    (void)state;
    static const struct {
        mode_t mode;
        int warns;
    } cases[] = {
        {0600, 0}, {0400, 0}, {0640, 0}, /* root:aos 0640 is the documented deployment */
        {0644, 1}, {0604, 1}, {0660, 1}, {0666, 1}, {0620, 1},
    };
    char path[300], err[512], warn[512];
    snprintf(path, sizeof path, "%s/modes", tmpdir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct aos_jwt_key k;
        write_file(path, secret_a, strlen(secret_a), cases[i].mode);
        assert_int_equal(aos_jwt_key_load(path, &k, err, sizeof err, warn, sizeof warn), 0);
        assert_string_equal(err, "");
        assert_int_equal(k.len, strlen(secret_a));
        if (cases[i].warns) {
            char want[16];
            snprintf(want, sizeof want, "%04o", (unsigned)cases[i].mode);
            if (strstr(warn, want) == NULL || strstr(warn, path) == NULL || strstr(warn, "chmod 600") == NULL)
                fail_msg("mode %04o: warning \"%s\" lacks mode, path or fix", (unsigned)cases[i].mode, warn);
        } else if (warn[0] != '\0') {
            fail_msg("mode %04o: unexpected warning \"%s\"", (unsigned)cases[i].mode, warn);
        }
        aos_jwt_key_clear(&k);
    }
}

static void test_key_newline_stripped(void **state)
{
    (void)state;
    struct aos_jwt_key k;
    char path[300], err[512], warn[512], buf[128];
    snprintf(path, sizeof path, "%s/nl", tmpdir);

    snprintf(buf, sizeof buf, "%s\n", secret_a);
    write_file(path, buf, strlen(buf), 0600);
    assert_int_equal(aos_jwt_key_load(path, &k, err, sizeof err, warn, sizeof warn), 0);
    assert_int_equal(k.len, strlen(secret_a));
    assert_memory_equal(k.secret, secret_a, k.len);

    /* A token issued with the file's key verifies with the bare secret. */
    struct aos_jwt_claims c;
    char *tok = aos_jwt_issue(&k, "u", TID, "user", 60, &c, err, sizeof err);
    assert_non_null(tok);
    assert_int_equal(verify_str(secret_a, tok, c.iat, 0, NULL), AOS_JWT_OK);
    free(tok);
    aos_jwt_key_clear(&k);

    /* Only one newline goes; binary content is kept as is. */
    snprintf(buf, sizeof buf, "%s\n\n", secret_a);
    write_file(path, buf, strlen(buf), 0600);
    assert_int_equal(aos_jwt_key_load(path, &k, err, sizeof err, warn, sizeof warn), 0);
    assert_int_equal(k.len, strlen(secret_a) + 1);
    aos_jwt_key_clear(&k);

    unsigned char bin[40];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)(i * 37);
    bin[3] = 0;
    write_file(path, bin, sizeof bin, 0600);
    assert_int_equal(aos_jwt_key_load(path, &k, err, sizeof err, warn, sizeof warn), 0);
    assert_int_equal(k.len, sizeof bin);
    assert_memory_equal(k.secret, bin, sizeof bin);
    aos_jwt_key_clear(&k);
    aos_jwt_key_clear(&k); /* idempotent */
}

/* ------------------------------------------------------------- Argon2id */

/* Small parameters keep the suite fast; OWASP ones are used once. */
static const struct aos_argon2_params fast = {1, 256, 1};

static void test_argon2_roundtrip(void **state)
{
    (void)state;
    char *enc = NULL, *enc2 = NULL;
    char err[256];
    static const char pw[] = "correct horse battery staple";

    assert_int_equal(aos_password_hash(&fast, pw, strlen(pw), &enc, err, sizeof err), 0);
    assert_non_null(enc);
    assert_int_equal(strncmp(enc, "$argon2id$v=19$", 15), 0);
    assert_int_equal(aos_password_verify(enc, pw, strlen(pw)), 1);
    assert_int_equal(aos_password_verify(enc, "correct horse battery stapl", strlen(pw) - 1), 0);
    assert_int_equal(aos_password_verify(enc, "Correct horse battery staple", strlen(pw)), 0);
    assert_int_equal(aos_password_verify(enc, "", 0), 0);

    /* Random salt: same password, different hash, both verify. */
    assert_int_equal(aos_password_hash(&fast, pw, strlen(pw), &enc2, err, sizeof err), 0);
    assert_string_not_equal(enc, enc2);
    assert_int_equal(aos_password_verify(enc2, pw, strlen(pw)), 1);
    free(enc);
    free(enc2);

    /* The length is what counts, not a terminator. */
    assert_int_equal(aos_password_hash(&fast, "abc\0def", 7, &enc, err, sizeof err), 0);
    assert_int_equal(aos_password_verify(enc, "abc\0def", 7), 1);
    assert_int_equal(aos_password_verify(enc, "abc", 3), 0);
    free(enc);
}

static void test_argon2_owasp_params_in_string(void **state)
{
    (void)state;
    static const struct aos_argon2_params owasp = {2, 19456, 1};
    char *enc = NULL;
    char err[256];
    assert_int_equal(aos_password_hash(&owasp, "pw-owasp-0123", 13, &enc, err, sizeof err), 0);
    assert_int_equal(strncmp(enc, "$argon2id$v=19$m=19456,t=2,p=1$", 31), 0);
    assert_int_equal(strlen(enc), 97); /* 16-byte salt, 32-byte hash */
    assert_int_equal(aos_password_verify(enc, "pw-owasp-0123", 13), 1);
    free(enc);

    char *enc3 = NULL;
    static const struct aos_argon2_params other = {3, 512, 2};
    assert_int_equal(aos_password_hash(&other, "x", 1, &enc3, err, sizeof err), 0);
    assert_int_equal(strncmp(enc3, "$argon2id$v=19$m=512,t=3,p=2$", 29), 0);
    free(enc3);
}

static void test_argon2_bad_params(void **state)
{
    (void)state;
    static const struct aos_argon2_params zero_t = {0, 256, 1};
    char *enc = (char *)(uintptr_t) "sentinel";
    char err[256];
    assert_int_equal(aos_password_hash(&zero_t, "pw", 2, &enc, err, sizeof err), -1);
    assert_null(enc);
    assert_non_null(strstr(err, "t=0"));
    assert_int_equal(aos_password_hash(NULL, "pw", 2, &enc, err, sizeof err), -1);
}

static void test_argon2_garbage_and_other_variants(void **state)
{
    (void)state;
    static const char *const garbage[] = {
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=256,t=1,p=1$",
        "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$!!!!",
        "$2b$12$abcdefghijklmnopqrstuuJm6vBFq3rUoYvC3mG0D3kGZ2v0l0o.", /* bcrypt */
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++)
        if (aos_password_verify(garbage[i], "pw", 2) != -1)
            fail_msg("\"%s\" not refused as invalid", garbage[i]);
    assert_int_equal(aos_password_verify(NULL, "pw", 2), -1);

    /* Same password, argon2i and argon2d: well-formed, but not ours. */
    unsigned char salt[16] = "0123456789abcdef";
    char enc[128];
    assert_int_equal(argon2i_hash_encoded(1, 256, 1, "pw", 2, salt, sizeof salt, 32, enc, sizeof enc),
                     ARGON2_OK);
    assert_int_equal(strncmp(enc, "$argon2i$", 9), 0);
    assert_int_equal(aos_password_verify(enc, "pw", 2), -1);
    assert_int_equal(argon2d_hash_encoded(1, 256, 1, "pw", 2, salt, sizeof salt, 32, enc, sizeof enc),
                     ARGON2_OK);
    assert_int_equal(aos_password_verify(enc, "pw", 2), -1);
    /* ... while the id variant with the same inputs verifies. */
    assert_int_equal(argon2id_hash_encoded(1, 256, 1, "pw", 2, salt, sizeof salt, 32, enc, sizeof enc),
                     ARGON2_OK);
    assert_int_equal(aos_password_verify(enc, "pw", 2), 1);
}

/* ------------------------------------------------------------- policy */

static void test_policy(void **state)
{
    (void)state;
    char err[256];

    assert_int_equal(aos_password_policy_check("short", 5, 12, 128, err, sizeof err), -1);
    assert_string_equal(err, "password must be at least 12 characters");
    assert_int_equal(aos_password_policy_check("twelve chars", 12, 12, 128, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(aos_password_policy_check("", 0, 12, 128, err, sizeof err), -1);

    /* Code points, not bytes: 12 x "é" is 24 bytes and 12 characters. */
    char e12[64] = "", e13[64] = "";
    for (int i = 0; i < 12; i++)
        memcpy(e12 + 2 * i, "\xc3\xa9", 3); /* copies the NUL too */
    int en = snprintf(e13, sizeof e13, "%s\xc3\xa9", e12);
    assert_true(en > 0 && (size_t)en < sizeof e13);
    assert_int_equal(aos_password_policy_check(e12, strlen(e12), 12, 12, err, sizeof err), 0);
    assert_int_equal(aos_password_policy_check(e12, strlen(e12), 13, 128, err, sizeof err), -1);
    assert_int_equal(aos_password_policy_check(e13, strlen(e13), 12, 12, err, sizeof err), -1);
    assert_string_equal(err, "password must be at most 12 characters");
    /* A 4-byte character (U+1F511) counts once. */
    assert_int_equal(aos_password_policy_check("\xf0\x9f\x94\x91"
                                               "abc",
                                               7, 4, 4, err, sizeof err),
                     0);

    /* Max bounds hashing work. */
    char big[300];
    memset(big, 'a', sizeof big);
    assert_int_equal(aos_password_policy_check(big, sizeof big, 12, 128, err, sizeof err), -1);
    assert_string_equal(err, "password must be at most 128 characters");

    assert_int_equal(aos_password_policy_check("abcdef\0ghijklmn", 15, 12, 128, err, sizeof err), -1);
    assert_string_equal(err, "password must not contain NUL characters");

    static const char *const invalid[] = {
        "abcdefghijkl\xff",             /* never valid */
        "abcdefghijkl\xc0\xaf",         /* overlong '/' */
        "abcdefghijkl\xe0\x80\xaf",     /* overlong */
        "abcdefghijkl\xed\xa0\x80",     /* surrogate */
        "abcdefghijkl\xf4\x90\x80\x80", /* > U+10FFFF */
        "abcdefghijkl\xe2\x82",         /* truncated */
        "abcdefghijkl\x80",             /* lone continuation */
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        assert_int_equal(aos_password_policy_check(invalid[i], strlen(invalid[i]), 12, 128, err, sizeof err),
                         -1);
        assert_string_equal(err, "password must be valid UTF-8");
    }
    /* Truncation measured by len, not by a terminator. */
    assert_int_equal(aos_password_policy_check("abcdefghijkl\xe2\x82\xac", 14, 12, 128, err, sizeof err), -1);
    assert_int_equal(aos_password_policy_check("abcdefghijkl\xe2\x82\xac", 15, 12, 128, err, sizeof err), 0);
}

/* ------------------------------------------------------------- e-mail */

static void email_ok(const char *in, const char *want)
{
    char out[300], err[256];
    if (aos_email_normalize(in, out, sizeof out, err, sizeof err) != 0)
        fail_msg("\"%s\" refused: %s", in, err);
    assert_string_equal(out, want);
    assert_string_equal(err, "");
}

static void email_bad(const char *in, const char *want_in_err)
{
    char out[300], err[256];
    if (aos_email_normalize(in, out, sizeof out, err, sizeof err) != -1)
        fail_msg("\"%s\" accepted as \"%s\"", in, out);
    if (strstr(err, want_in_err) == NULL)
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", in, err, want_in_err);
    assert_string_equal(out, "");
}

static void test_email(void **state)
{
    (void)state;
    email_ok("alice@example.com", "alice@example.com");
    email_ok("  Alice.Smith@Example.COM \t\r\n", "alice.smith@example.com");
    email_ok("a+tag@sub.example.co.uk", "a+tag@sub.example.co.uk");
    email_ok("J\xc3\xb6rg@Example.DE", "j\xc3\xb6rg@example.de"); /* non-ASCII kept as is */

    email_bad("", "required");
    email_bad(" \t ", "required");
    email_bad("alice", "exactly one '@'");
    email_bad("a@@example.com", "exactly one '@'");
    email_bad("a@b@example.com", "exactly one '@'");
    email_bad("@example.com", "before the '@'");
    email_bad("alice@", "domain");
    email_bad("alice@localhost", "domain");
    email_bad("alice@.example.com", "domain");
    email_bad("alice@example.com.", "domain");
    email_bad("alice@example..com", "domain");
    email_bad("ali ce@example.com", "spaces");
    email_bad("alice@exa mple.com", "spaces");
    email_bad("ali\x01"
              "ce@example.com",
              "control");
    email_bad("alice@example.com\x7f", "control");
    email_bad("ali\xff@example.com", "UTF-8");

    /* Local part: 64 fits, 65 does not. */
    char buf[400];
    memset(buf, 'a', 64);
    snprintf(buf + 64, sizeof buf - 64, "@example.com");
    email_ok(buf, buf);
    memset(buf, 'a', 65);
    snprintf(buf + 65, sizeof buf - 65, "@example.com");
    email_bad(buf, "at most 64");

    /* Total: 254 fits, 255 does not: "a@" + 4 x (49 d + ".") + 48 d + ".com". */
    size_t n = (size_t)snprintf(buf, sizeof buf, "a@");
    for (int label = 0; label < 4; label++) {
        memset(buf + n, 'd', 49);
        n += 49;
        buf[n++] = '.';
    }
    memset(buf + n, 'd', 48);
    n += 48;
    snprintf(buf + n, sizeof buf - n, ".com");
    assert_int_equal(strlen(buf), 254);
    email_ok(buf, buf);
    char b255[400];
    int bn = snprintf(b255, sizeof b255, "b%s", buf);
    assert_true(bn > 0 && (size_t)bn < sizeof b255);
    email_bad(b255, "at most 254");

    /* Output buffer too small is an error, not a truncation. */
    char small[8], err[256];
    assert_int_equal(aos_email_normalize("alice@example.com", small, sizeof small, err, sizeof err), -1);
    assert_int_equal(aos_email_normalize(NULL, small, sizeof small, err, sizeof err), -1);
}

/* ------------------------------------------------------------- gate */

static void test_gate_limit(void **state)
{
    (void)state;
    assert_null(aos_gate_new(0));
    assert_null(aos_gate_new(-1));

    struct aos_gate *g = aos_gate_new(2);
    assert_non_null(g);
    assert_true(aos_gate_try_enter(g));
    assert_true(aos_gate_try_enter(g));
    assert_false(aos_gate_try_enter(g));
    assert_false(aos_gate_try_enter(g));
    aos_gate_leave(g);
    assert_true(aos_gate_try_enter(g));
    assert_false(aos_gate_try_enter(g));
    aos_gate_leave(g);
    aos_gate_leave(g);
    assert_true(aos_gate_try_enter(g));
    aos_gate_leave(g);
    aos_gate_free(g);
    aos_gate_free(NULL);
}

struct gate_run {
    struct aos_gate *g;
    atomic_int inside;
    atomic_int max_inside;
    atomic_int entered;
};

static void *gate_worker(void *arg)
{
    struct gate_run *r = arg;
    for (int i = 0; i < 20000; i++) {
        if (!aos_gate_try_enter(r->g))
            continue;
        int now = atomic_fetch_add(&r->inside, 1) + 1;
        int seen = atomic_load(&r->max_inside);
        while (now > seen && !atomic_compare_exchange_weak(&r->max_inside, &seen, now))
            ;
        atomic_fetch_add(&r->entered, 1);
        atomic_fetch_sub(&r->inside, 1);
        aos_gate_leave(r->g);
    }
    return NULL;
}

static void test_gate_threads(void **state)
{
    (void)state;
    struct gate_run r;
    pthread_t th[8];
    r.g = aos_gate_new(3);
    assert_non_null(r.g);
    atomic_init(&r.inside, 0);
    atomic_init(&r.max_inside, 0);
    atomic_init(&r.entered, 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, gate_worker, &r), 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_true(atomic_load(&r.max_inside) <= 3);
    assert_true(atomic_load(&r.entered) > 0);
    /* All left: the full capacity is available again. */
    assert_true(aos_gate_try_enter(r.g));
    assert_true(aos_gate_try_enter(r.g));
    assert_true(aos_gate_try_enter(r.g));
    assert_false(aos_gate_try_enter(r.g));
    for (int i = 0; i < 3; i++)
        aos_gate_leave(r.g);
    aos_gate_free(r.g);
}

int main(void)
{
    const struct CMUnitTest jwt_tests[] = {
        cmocka_unit_test(test_jwt_roundtrip),
        cmocka_unit_test(test_jwt_issue_refuses_bad_input),
        cmocka_unit_test(test_jwt_handmade_baseline),
        cmocka_unit_test(test_jwt_expired_and_leeway),
        cmocka_unit_test(test_jwt_wrong_key),
        cmocka_unit_test(test_jwt_alg_none),
        cmocka_unit_test(test_jwt_alg_hs512_same_secret),
        cmocka_unit_test(test_jwt_alg_confusion_rs256),
        cmocka_unit_test(test_jwt_truncated),
        cmocka_unit_test(test_jwt_garbage),
        cmocka_unit_test(test_jwt_part_counts),
        cmocka_unit_test(test_jwt_huge),
        cmocka_unit_test(test_jwt_tampered_payload),
        cmocka_unit_test(test_jwt_missing_claims),
        cmocka_unit_test(test_jwt_claim_types),
        cmocka_unit_test(test_jwt_claim_with_nul),
        cmocka_unit_test(test_jwt_iat_future),
        cmocka_unit_test(test_jwt_result_text),
        cmocka_unit_test_setup_teardown(test_key_missing, key_setup, key_teardown),
        cmocka_unit_test_setup_teardown(test_key_short, key_setup, key_teardown),
        cmocka_unit_test_setup_teardown(test_key_modes, key_setup, key_teardown),
        cmocka_unit_test_setup_teardown(test_key_newline_stripped, key_setup, key_teardown),
        cmocka_unit_test(test_argon2_roundtrip),
        cmocka_unit_test(test_argon2_owasp_params_in_string),
        cmocka_unit_test(test_argon2_bad_params),
        cmocka_unit_test(test_argon2_garbage_and_other_variants),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_gate_limit),
        cmocka_unit_test(test_gate_threads),
    };
    return cmocka_run_group_tests(jwt_tests, NULL, NULL);
}
