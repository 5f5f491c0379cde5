/*
 * PII detectors and operators (see pii.h).
 *
 * Every detector is one PCRE2 pattern that finds candidates plus an
 * optional C validator (checksums, ranges, inet_pton, base64+JSON) that
 * accepts, rejects or shortens a candidate.  Patterns are matched in
 * non-UTF mode: they only contain ASCII, so a match can only start and end
 * on ASCII bytes, which are always code point boundaries, and the text is
 * checked as UTF-8 once up front.  \w and \d are ASCII-only in this mode,
 * so a non-ASCII letter next to a number counts as a boundary.
 */
#include "config.h"

#include "pii/pii.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Memcheck cannot see through PCRE2's JIT code and reports false
 * "uninitialised value" errors in it; under valgrind the interpreter is
 * used instead (same results).  RUNNING_ON_VALGRIND costs a few
 * instructions and is 0 outside valgrind. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define PII_UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#endif
#endif
#ifndef PII_UNDER_VALGRIND
#define PII_UNDER_VALGRIND() false
#endif

/* Far above what the patterns below need on any input (they have no
 * nested unbounded quantifiers); a hit means something is wrong, and the
 * call fails rather than returning text unredacted. */
#define PII_MATCH_LIMIT 1000000u
#define PII_DEPTH_LIMIT 10000u
#define PII_RANDOM_KEY_LEN 32
#define JWT_HEADER_MAX 8192

typedef double (*pii_validate_fn)(const char *t, size_t len, size_t s, size_t *e, double score);

struct pii_detector {
    enum aos_pii_type type;
    double score;
    const char *pattern;
    pii_validate_fn validate;
    char needs; /* a byte every match contains: no such byte, no scan */
};

struct aos_pii {
    pcre2_code **code;
    pcre2_match_context *mctx;
    unsigned char *key;
    size_t keylen;
};

static const char *const type_names[AOS_PII_NTYPES] = {
    [AOS_PII_EMAIL_ADDRESS] = "EMAIL_ADDRESS", [AOS_PII_PHONE_NUMBER] = "PHONE_NUMBER",
    [AOS_PII_CREDIT_CARD] = "CREDIT_CARD",     [AOS_PII_IBAN_CODE] = "IBAN_CODE",
    [AOS_PII_US_SSN] = "US_SSN",               [AOS_PII_IP_ADDRESS] = "IP_ADDRESS",
    [AOS_PII_API_KEY] = "API_KEY",             [AOS_PII_JWT_TOKEN] = "JWT_TOKEN",
};

static const char *const op_names[] = {
    [AOS_PII_OP_REPLACE] = "replace",
    [AOS_PII_OP_REDACT] = "redact",
    [AOS_PII_OP_MASK] = "mask",
    [AOS_PII_OP_HASH] = "hash",
};

const char *aos_pii_type_name(enum aos_pii_type type)
{
    if ((unsigned)type >= AOS_PII_NTYPES)
        return NULL;
    return type_names[type];
}

int aos_pii_type_from_name(const char *name, enum aos_pii_type *out)
{
    if (name == NULL)
        return -1;
    for (unsigned i = 0; i < AOS_PII_NTYPES; i++) {
        if (strcmp(name, type_names[i]) == 0) {
            *out = (enum aos_pii_type)i;
            return 0;
        }
    }
    return -1;
}

const char *aos_pii_op_name(enum aos_pii_op_kind kind)
{
    if ((unsigned)kind >= sizeof op_names / sizeof op_names[0])
        return NULL;
    return op_names[kind];
}

int aos_pii_op_from_name(const char *name, enum aos_pii_op_kind *out)
{
    if (name == NULL)
        return -1;
    for (unsigned i = 0; i < sizeof op_names / sizeof op_names[0]; i++) {
        if (strcmp(name, op_names[i]) == 0) {
            *out = (enum aos_pii_op_kind)i;
            return 0;
        }
    }
    return -1;
}

const char *aos_pii_strerror(int status)
{
    switch (status) {
    case AOS_PII_OK:
        return "ok";
    case AOS_PII_EUTF8:
        return "text is not valid UTF-8";
    case AOS_PII_ENOMEM:
        return "out of memory";
    case AOS_PII_ELIMIT:
        return "pattern match limit exceeded";
    case AOS_PII_EINVAL:
        return "invalid argument";
    default:
        return "unknown error";
    }
}

/* ------------------------------------------------------------ UTF-8 */

bool aos_pii_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            min = 0x10000;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        uint32_t cp = c & (0x3Fu >> n);
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

static size_t utf8_count(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* Byte length of the code point starting at s[0] (valid UTF-8 assumed). */
static size_t utf8_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c < 0xE0)
        return 2;
    if (c < 0xF0)
        return 3;
    return 4;
}

/* ------------------------------------------------------------ validators */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static double card_check(const char *t, size_t s, size_t e, double score)
{
    char sep = 0;
    size_t group = 0, groups = 0, ndigits = 0;
    bool grouped = false;
    unsigned sum = 0;
    int digits[19];
    for (size_t i = s; i < e; i++) {
        char c = t[i];
        if (is_digit(c)) {
            if (ndigits == 19)
                return -1;
            digits[ndigits++] = c - '0';
            group++;
            continue;
        }
        if (sep != 0 && c != sep)
            return -1; /* mixed separators: a list of numbers, not a card */
        sep = c;
        grouped = true;
        /* Real groupings: 4-4-4-4(-3), Amex 4-6-5, Diners 4-6-4. */
        if (groups == 0 ? group != 4 : (group < 3 || group > 6))
            return -1;
        groups++;
        group = 0;
    }
    if (grouped && (group < 3 || group > 6 || groups < 2))
        return -1;
    if (ndigits < 13)
        return -1;
    for (size_t k = 0; k < ndigits; k++) {
        int d = digits[ndigits - 1 - k];
        if (k % 2 == 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += (unsigned)d;
    }
    return sum % 10 == 0 ? score : -1;
}

/* The pattern takes as many digits as it can, so "4111 1111 1111 1111 12/28"
 * arrives with the expiry month attached: retry without trailing groups. */
static double v_card(const char *t, size_t len, size_t s, size_t *e, double score)
{
    (void)len;
    size_t end = *e;
    for (;;) {
        double r = card_check(t, s, end, score);
        if (r >= 0) {
            *e = end;
            return r;
        }
        size_t i = end;
        while (i > s && is_digit(t[i - 1]))
            i--;
        if (i == s || end - s < 14)
            return -1;
        end = i - 1;
    }
}

struct iban_len {
    char cc[3];
    unsigned char len;
};

/* Lengths from the SWIFT IBAN registry. */
static const struct iban_len iban_lens[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
    {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22},
    {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27},
    {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28},
    {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20},
    {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24},
    {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24},
    {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24}, {"SC", 31},
    {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24},
    {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

static unsigned iban_mod97_step(unsigned rem, char c)
{
    if (is_digit(c))
        return (rem * 10 + (unsigned)(c - '0')) % 97;
    /* A=10 .. Z=35: two decimal digits. */
    return (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
}

static double v_iban(const char *t, size_t len, size_t s, size_t *e, double score)
{
    size_t want = 0;
    for (size_t k = 0; k < sizeof iban_lens / sizeof iban_lens[0]; k++)
        if (t[s] == iban_lens[k].cc[0] && t[s + 1] == iban_lens[k].cc[1])
            want = iban_lens[k].len;
    if (want == 0)
        return -1;
    /* The pattern may have run into a following group; take exactly the
     * country's length. */
    char buf[40];
    size_t n = 0, i = s;
    for (; i < *e && n < want; i++)
        if (t[i] != ' ')
            buf[n++] = t[i];
    if (n != want || (i < len && is_alnum(t[i])))
        return -1;
    unsigned rem = 0;
    for (size_t k = 4; k < n; k++)
        rem = iban_mod97_step(rem, buf[k]);
    for (size_t k = 0; k < 4; k++)
        rem = iban_mod97_step(rem, buf[k]);
    if (rem != 1)
        return -1;
    *e = i;
    return score;
}

static unsigned num(const char *p, size_t n)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(p[i] - '0');
    return v;
}

static double v_ssn(const char *t, size_t len, size_t s, size_t *e, double score)
{
    (void)len;
    (void)e;
    unsigned area = num(t + s, 3), group = num(t + s + 4, 2), serial = num(t + s + 7, 4);
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
        return -1;
    return score;
}

static double v_phone(const char *t, size_t len, size_t s, size_t *e, double score)
{
    (void)len;
    size_t digits = 0, last_digit_end = s, depth = 0;
    bool prev_sep = false;
    if (t[s] == '+') {
        /* Cut at the first doubled separator ("+44 20 7946 0958 - 10"). */
        for (size_t i = s + 1; i < *e; i++) {
            char c = t[i];
            if (is_digit(c)) {
                digits++;
                last_digit_end = i + 1;
                prev_sep = false;
            } else if (c == '(') {
                if (depth++ != 0)
                    return -1;
                prev_sep = false;
            } else if (c == ')') {
                if (depth-- != 1)
                    return -1;
                prev_sep = false;
            } else {
                if (prev_sep)
                    break;
                prev_sep = true;
            }
        }
        if (depth != 0 || digits < 8 || digits > 15)
            return -1;
        *e = last_digit_end;
        return score;
    }
    char d[16];
    for (size_t i = s; i < *e; i++) {
        if (is_digit(t[i])) {
            if (digits == sizeof d)
                return -1;
            d[digits++] = t[i];
        }
    }
    if (t[s] == '0')
        return digits >= 9 && digits <= 12 ? score : -1;
    /* NANP: area code and exchange start with 2-9. */
    if (digits != 10 || d[0] < '2' || d[3] < '2')
        return -1;
    return score;
}

static double v_inet(const char *t, size_t e, size_t s, int af)
{
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char addr[sizeof(struct in6_addr)];
    if (e - s >= sizeof buf)
        return -1;
    memcpy(buf, t + s, e - s);
    buf[e - s] = '\0';
    return inet_pton(af, buf, addr) == 1 ? 0 : -1;
}

static double v_ipv4(const char *t, size_t len, size_t s, size_t *e, double score)
{
    (void)len;
    /* glibc's inet_pton rejects octets > 255 and leading zeros. */
    return v_inet(t, *e, s, AF_INET) == 0 ? score : -1;
}

static double v_ipv6(const char *t, size_t len, size_t s, size_t *e, double score)
{
    (void)len;
    bool hex = false;
    for (size_t i = s; i < *e; i++)
        if (t[i] != ':' && t[i] != '.')
            hex = true;
    if (!hex) /* a bare "::" is punctuation far more often than an address */
        return -1;
    return v_inet(t, *e, s, AF_INET6) == 0 ? score : -1;
}

static double v_apikey(const char *t, size_t len, size_t s, size_t *e, double score)
{
    (void)len;
    if (*e - s > 4 && memcmp(t + s, "aos_", 4) == 0)
        return 1.0;
    /* Vendor prefixes followed by words ("sk-learn-...") are not keys:
     * require letters and digits in the body. */
    bool digit = false, alpha = false;
    size_t i = s;
    while (i < *e && t[i] != '-' && t[i] != '_')
        i++;
    if (memcmp(t + s, "AKIA", 4) == 0 || memcmp(t + s, "ASIA", 4) == 0)
        i = s + 4;
    for (; i < *e; i++) {
        if (is_digit(t[i]))
            digit = true;
        else if (is_alnum(t[i]))
            alpha = true;
    }
    return digit && alpha ? score : -1;
}

static double v_jwt(const char *t, size_t len, size_t s, size_t *e, double score)
{
    (void)len;
    size_t h = s;
    while (h < *e && t[h] != '.')
        h++;
    size_t n = h - s;
    if (n > JWT_HEADER_MAX || n % 4 == 1)
        return -1;
    unsigned char in[JWT_HEADER_MAX + 4];
    unsigned char out[JWT_HEADER_MAX];
    for (size_t i = 0; i < n; i++) {
        char c = t[s + i];
        in[i] = (unsigned char)(c == '-' ? '+' : c == '_' ? '/' : c);
    }
    size_t pad = (4 - n % 4) % 4;
    for (size_t i = 0; i < pad; i++)
        in[n + i] = '=';
    int dl = EVP_DecodeBlock(out, in, (int)(n + pad));
    if (dl < 0)
        return -1;
    size_t olen = (size_t)dl - pad;
    double ret = -1;
    struct json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return -1;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *obj = json_tokener_parse_ex(tok, (const char *)out, (int)olen);
    struct json_object *alg = NULL;
    if (obj != NULL && json_tokener_get_parse_end(tok) == olen && json_object_is_type(obj, json_type_object) &&
        json_object_object_get_ex(obj, "alg", &alg) && json_object_is_type(alg, json_type_string))
        ret = score;
    json_object_put(obj);
    json_tokener_free(tok);
    return ret;
}

/* The table of detectors.  Each pattern guards its ends with lookarounds
 * so that a detector does not fire inside a longer token (a card number
 * inside a longer digit run, an IP inside a version string 1.2.3.4.5). */
static const struct pii_detector detectors[] = {
    {AOS_PII_EMAIL_ADDRESS, 1.0,
     "(?<![A-Za-z0-9._%+\\-])[A-Za-z0-9_%+\\-][A-Za-z0-9._%+\\-]{0,63}@"
     "(?:[A-Za-z0-9](?:[A-Za-z0-9\\-]{0,61}[A-Za-z0-9])?\\.){1,8}[A-Za-z]{2,24}"
     "(?![A-Za-z0-9\\-]|\\.[A-Za-z0-9])",
     NULL, '@'},
    {AOS_PII_PHONE_NUMBER, 0.75,
     "(?<![\\w+])(?<!\\d[ .\\-])"
     "(?:\\+[1-9][\\d ().\\-]{6,20}\\d"                  /* +CC, any grouping */
     "|(?:\\(\\d{3}\\) ?|\\d{3}[ .\\-])\\d{3}[ .\\-]\\d{4}" /* NANP */
     "|0[1-9](?:[ .]\\d{2}){4}"                          /* FR 01 23 45 67 89 */
     "|0\\d{2,4}[ \\-]\\d{3,8}(?:[ \\-]\\d{3,4})?)"      /* trunk-0 national */
     "(?!\\w|[ .\\-]\\d)",
     v_phone, 0},
    {AOS_PII_CREDIT_CARD, 1.0, "(?<!\\w)[2-6](?:[ \\-]?\\d){12,18}(?!\\w)", v_card, 0},
    {AOS_PII_IBAN_CODE, 1.0,
     "(?<![A-Za-z0-9])[A-Z]{2}\\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])", v_iban, 0},
    {AOS_PII_US_SSN, 0.85, "(?<![\\w\\-])\\d{3}([\\- ])\\d{2}\\1\\d{4}(?!\\w|\\1\\d)", v_ssn, 0},
    {AOS_PII_IP_ADDRESS, 0.95, "(?<![\\w.])(?:\\d{1,3}\\.){3}\\d{1,3}(?!\\w|\\.\\d)", v_ipv4, '.'},
    {AOS_PII_IP_ADDRESS, 0.95,
     "(?<![\\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\\d{1,3}\\.){3}\\d{1,3}|[0-9A-Fa-f]{1,4})?"
     "(?![\\w:]|\\.\\w)",
     v_ipv6, ':'},
    {AOS_PII_API_KEY, 0.9,
     "(?<![\\w\\-])(?:aos_[a-z0-9]{12}_[0-9a-f]{64}"
     "|sk-(?:proj-|ant-)?[A-Za-z0-9_\\-]{20,200}"
     "|gh[pousr]_[A-Za-z0-9]{36,251}"
     "|github_pat_[A-Za-z0-9_]{22,251}"
     "|xox[abprs]-[A-Za-z0-9\\-]{10,200}"
     "|(?:AKIA|ASIA)[A-Z0-9]{16})(?![\\w\\-])",
     v_apikey, 0},
    {AOS_PII_JWT_TOKEN, 1.0,
     "(?<![\\w\\-])e[wy][A-Za-z0-9_\\-]{2,8190}\\.[A-Za-z0-9_\\-]{2,}\\.[A-Za-z0-9_\\-]*"
     "(?![\\w\\-]|\\.[\\w\\-])",
     v_jwt, 'e'},
};

#define NDETECTORS (sizeof detectors / sizeof detectors[0])

/* ------------------------------------------------------------ object */

/* The kernel's CSPRNG rather than OpenSSL's RAND_bytes: this runs at
 * start-up, and RAND_bytes would bring up OpenSSL's whole provider and
 * DRBG machinery (a couple of MiB of resident pages) before any request
 * needs a hash.  0, or -1. */
static int random_key(unsigned char *out, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(out, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        out += n;
        len -= (size_t)n;
    }
    return 0;
}

struct aos_pii *aos_pii_new(const void *key, size_t keylen, char *err, size_t errlen)
{
    struct aos_pii *p = calloc(1, sizeof *p);
    if (p == NULL) {
        snprintf(err, errlen, "pii: out of memory");
        return NULL;
    }
    p->code = calloc(NDETECTORS, sizeof *p->code);
    p->keylen = key != NULL ? keylen : PII_RANDOM_KEY_LEN;
    p->key = malloc(p->keylen > 0 ? p->keylen : 1);
    p->mctx = pcre2_match_context_create(NULL);
    if (p->code == NULL || p->key == NULL || p->mctx == NULL) {
        snprintf(err, errlen, "pii: out of memory");
        goto fail;
    }
    if (key != NULL) {
        memcpy(p->key, key, keylen);
    } else if (random_key(p->key, p->keylen) != 0) {
        snprintf(err, errlen, "pii: no random bytes for the hash key");
        goto fail;
    }
    pcre2_set_match_limit(p->mctx, PII_MATCH_LIMIT);
    pcre2_set_depth_limit(p->mctx, PII_DEPTH_LIMIT);
    for (size_t i = 0; i < NDETECTORS; i++) {
        int ec;
        PCRE2_SIZE eo;
        p->code[i] = pcre2_compile((PCRE2_SPTR)detectors[i].pattern, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
        if (p->code[i] == NULL) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ec, msg, sizeof msg);
            snprintf(err, errlen, "pii: pattern %s at %zu: %s", type_names[detectors[i].type], (size_t)eo,
                     (const char *)msg);
            goto fail;
        }
        /* JIT can be unavailable (e.g. W^X policies); the interpreter
         * gives the same results, only slower. */
        if (!PII_UNDER_VALGRIND())
            (void)pcre2_jit_compile(p->code[i], PCRE2_JIT_COMPLETE);
    }
    return p;
fail:
    aos_pii_free(p);
    return NULL;
}

void aos_pii_free(struct aos_pii *pii)
{
    if (pii == NULL)
        return;
    if (pii->code != NULL)
        for (size_t i = 0; i < NDETECTORS; i++)
            pcre2_code_free(pii->code[i]);
    free(pii->code);
    pcre2_match_context_free(pii->mctx);
    if (pii->key != NULL)
        explicit_bzero(pii->key, pii->keylen);
    free(pii->key);
    free(pii);
}

/* ------------------------------------------------------------ analyze */

struct cand_vec {
    struct aos_pii_result *v;
    size_t n, cap;
};

static int cand_push(struct cand_vec *cv, enum aos_pii_type type, size_t s, size_t e, double score)
{
    if (cv->n == cv->cap) {
        size_t cap = cv->cap ? cv->cap * 2 : 16;
        struct aos_pii_result *v = realloc(cv->v, cap * sizeof *v);
        if (v == NULL)
            return AOS_PII_ENOMEM;
        cv->v = v;
        cv->cap = cap;
    }
    cv->v[cv->n++] = (struct aos_pii_result){.type = type, .byte_start = s, .byte_end = e, .score = score};
    return AOS_PII_OK;
}

static int by_priority(const void *a, const void *b)
{
    const struct aos_pii_result *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    size_t lx = x->byte_end - x->byte_start, ly = y->byte_end - y->byte_start;
    if (lx != ly)
        return lx > ly ? -1 : 1;
    if (x->byte_start != y->byte_start)
        return x->byte_start < y->byte_start ? -1 : 1;
    return (int)x->type - (int)y->type;
}

static int by_start(const void *a, const void *b)
{
    const struct aos_pii_result *x = a, *y = b;
    if (x->byte_start != y->byte_start)
        return x->byte_start < y->byte_start ? -1 : 1;
    return 0;
}

static int run_detector(const struct aos_pii *pii, size_t d, const char *text, size_t len,
                        pcre2_match_data *md, struct cand_vec *cv)
{
    size_t pos = 0;
    while (pos <= len) {
        int rc = pcre2_match(pii->code[d], (PCRE2_SPTR)text, len, pos, 0, md, pii->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            return AOS_PII_OK;
        if (rc < 0) {
            if (rc == PCRE2_ERROR_NOMEMORY)
                return AOS_PII_ENOMEM;
            return AOS_PII_ELIMIT;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e <= s) {
            pos = s + 1;
            continue;
        }
        double score = detectors[d].score;
        if (detectors[d].validate != NULL)
            score = detectors[d].validate(text, len, s, &e, score);
        if (score >= 0 && e > s) {
            int r = cand_push(cv, detectors[d].type, s, e, score);
            if (r != AOS_PII_OK)
                return r;
            pos = e;
        } else {
            pos = s + 1;
        }
    }
    return AOS_PII_OK;
}

int aos_pii_analyze(const struct aos_pii *pii, const char *text, size_t len, unsigned entities,
                    struct aos_pii_result **results, size_t *n)
{
    struct cand_vec cv = {0};
    unsigned char *taken = NULL;
    pcre2_match_data *md = NULL;
    int rc = AOS_PII_OK;
    *results = NULL;
    *n = 0;
    if (pii == NULL || (text == NULL && len > 0))
        return AOS_PII_EINVAL;
    if (!aos_pii_utf8_valid(text, len))
        return AOS_PII_EUTF8;
    if (len == 0)
        return AOS_PII_OK;
    md = pcre2_match_data_create(8, NULL);
    if (md == NULL) {
        rc = AOS_PII_ENOMEM;
        goto out;
    }
    for (size_t d = 0; d < NDETECTORS; d++) {
        if (entities != AOS_PII_ALL && (entities & AOS_PII_BIT(detectors[d].type)) == 0)
            continue;
        if (detectors[d].needs != 0 && memchr(text, detectors[d].needs, len) == NULL)
            continue;
        rc = run_detector(pii, d, text, len, md, &cv);
        if (rc != AOS_PII_OK)
            goto out;
    }
    if (cv.n == 0)
        goto out;
    /* Overlaps: take candidates best first and drop any that touches a
     * byte already taken.  Cost is the total candidate length, and one
     * detector's candidates never overlap each other, so it stays linear. */
    qsort(cv.v, cv.n, sizeof *cv.v, by_priority);
    taken = calloc(len, 1);
    if (taken == NULL) {
        rc = AOS_PII_ENOMEM;
        goto out;
    }
    size_t kept = 0;
    for (size_t i = 0; i < cv.n; i++) {
        struct aos_pii_result *r = &cv.v[i];
        bool clash = false;
        for (size_t b = r->byte_start; b < r->byte_end && !clash; b++)
            clash = taken[b] != 0;
        if (clash)
            continue;
        memset(taken + r->byte_start, 1, r->byte_end - r->byte_start);
        cv.v[kept++] = *r;
    }
    cv.n = kept;
    qsort(cv.v, cv.n, sizeof *cv.v, by_start);
    /* Byte offsets to code points in one pass. */
    size_t cp = 0, b = 0;
    for (size_t i = 0; i < cv.n; i++) {
        struct aos_pii_result *r = &cv.v[i];
        cp += utf8_count(text + b, r->byte_start - b);
        r->start = cp;
        cp += utf8_count(text + r->byte_start, r->byte_end - r->byte_start);
        r->end = cp;
        b = r->byte_end;
    }
    *results = cv.v;
    *n = cv.n;
    cv.v = NULL;
out:
    free(taken);
    free(cv.v);
    pcre2_match_data_free(md);
    return rc;
}

/* ------------------------------------------------------------ anonymize */

struct sbuf {
    char *p;
    size_t len, cap;
};

static int sb_add(struct sbuf *sb, const void *data, size_t n)
{
    if (sb->p != NULL && n == 0)
        return AOS_PII_OK;
    if (sb->cap - sb->len <= n) {
        size_t cap = sb->cap ? sb->cap : 64;
        while (cap - sb->len <= n)
            cap *= 2;
        char *p = realloc(sb->p, cap);
        if (p == NULL)
            return AOS_PII_ENOMEM;
        sb->p = p;
        sb->cap = cap;
    }
    if (n > 0)
        memcpy(sb->p + sb->len, data, n);
    sb->len += n;
    sb->p[sb->len] = '\0';
    return AOS_PII_OK;
}

static int op_check(const struct aos_pii_operator *op)
{
    switch (op->kind) {
    case AOS_PII_OP_REPLACE:
        if (op->new_value != NULL && !aos_pii_utf8_valid(op->new_value, strlen(op->new_value)))
            return AOS_PII_EUTF8;
        return AOS_PII_OK;
    case AOS_PII_OP_MASK:
        if (op->masking_char != NULL) {
            size_t l = strlen(op->masking_char);
            if (l == 0 || !aos_pii_utf8_valid(op->masking_char, l) ||
                utf8_len((unsigned char)op->masking_char[0]) != l)
                return AOS_PII_EINVAL;
        }
        return AOS_PII_OK;
    case AOS_PII_OP_REDACT:
    case AOS_PII_OP_HASH:
        return AOS_PII_OK;
    }
    return AOS_PII_EINVAL;
}

static int op_apply(const struct aos_pii *pii, const struct aos_pii_operator *op, enum aos_pii_type type,
                    const char *ent, size_t n, struct sbuf *sb)
{
    switch (op->kind) {
    case AOS_PII_OP_REPLACE: {
        if (op->new_value != NULL)
            return sb_add(sb, op->new_value, strlen(op->new_value));
        char buf[32];
        int w = snprintf(buf, sizeof buf, "<%s>", type_names[type]);
        if (w < 0 || (size_t)w >= sizeof buf)
            return AOS_PII_EINVAL;
        return sb_add(sb, buf, (size_t)w);
    }
    case AOS_PII_OP_REDACT:
        return AOS_PII_OK;
    case AOS_PII_OP_MASK: {
        const char *mc = op->masking_char != NULL ? op->masking_char : "*";
        size_t mcl = strlen(mc);
        size_t cps = utf8_count(ent, n);
        size_t k = (op->chars_to_mask < 0 || (size_t)op->chars_to_mask > cps) ? cps : (size_t)op->chars_to_mask;
        size_t first = op->from_end ? cps - k : 0; /* first masked code point */
        size_t i = 0, cp = 0;
        while (i < n) {
            size_t l = utf8_len((unsigned char)ent[i]);
            int r = (cp >= first && cp < first + k) ? sb_add(sb, mc, mcl) : sb_add(sb, ent + i, l);
            if (r != AOS_PII_OK)
                return r;
            i += l;
            cp++;
        }
        return AOS_PII_OK;
    }
    case AOS_PII_OP_HASH: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        char hex[2 * EVP_MAX_MD_SIZE + 1];
        static const char digits[] = "0123456789abcdef";
        if (HMAC(EVP_sha256(), pii->key, (int)pii->keylen, (const unsigned char *)ent, n, md, &mdlen) == NULL)
            return AOS_PII_ENOMEM;
        for (unsigned i = 0; i < mdlen; i++) {
            hex[2 * i] = digits[md[i] >> 4];
            hex[2 * i + 1] = digits[md[i] & 0xF];
        }
        return sb_add(sb, hex, 2 * (size_t)mdlen);
    }
    }
    return AOS_PII_EINVAL;
}

void aos_pii_operators_init(struct aos_pii_operators *ops)
{
    memset(ops, 0, sizeof *ops);
    ops->def.kind = AOS_PII_OP_REPLACE;
    ops->def.chars_to_mask = -1;
    for (unsigned i = 0; i < AOS_PII_NTYPES; i++) {
        ops->by_type[i].kind = AOS_PII_OP_REPLACE;
        ops->by_type[i].chars_to_mask = -1;
    }
}

int aos_pii_anonymize(const struct aos_pii *pii, const char *text, size_t len,
                      const struct aos_pii_operators *ops, char **out, size_t *outlen,
                      struct aos_pii_item **items, size_t *nitems)
{
    struct aos_pii_operators defaults;
    struct aos_pii_result *res = NULL;
    struct aos_pii_item *it = NULL;
    struct sbuf sb = {0};
    size_t nres = 0;
    int rc;
    *out = NULL;
    *outlen = 0;
    if (items != NULL) {
        *items = NULL;
        *nitems = 0;
    }
    if (ops == NULL) {
        aos_pii_operators_init(&defaults);
        ops = &defaults;
    }
    rc = op_check(&ops->def);
    for (unsigned i = 0; i < AOS_PII_NTYPES && rc == AOS_PII_OK; i++)
        if (ops->has[i])
            rc = op_check(&ops->by_type[i]);
    if (rc != AOS_PII_OK)
        return rc;
    rc = aos_pii_analyze(pii, text, len, AOS_PII_ALL, &res, &nres);
    if (rc != AOS_PII_OK)
        return rc;
    if (items != NULL && nres > 0) {
        it = calloc(nres, sizeof *it);
        if (it == NULL) {
            rc = AOS_PII_ENOMEM;
            goto out;
        }
    }
    rc = sb_add(&sb, "", 0);
    size_t prev_b = 0, prev_cp = 0, out_cp = 0;
    for (size_t i = 0; i < nres && rc == AOS_PII_OK; i++) {
        const struct aos_pii_result *r = &res[i];
        const struct aos_pii_operator *op = ops->has[r->type] ? &ops->by_type[r->type] : &ops->def;
        rc = sb_add(&sb, text + prev_b, r->byte_start - prev_b);
        if (rc != AOS_PII_OK)
            break;
        out_cp += r->start - prev_cp;
        size_t ob = sb.len;
        rc = op_apply(pii, op, r->type, text + r->byte_start, r->byte_end - r->byte_start, &sb);
        if (rc != AOS_PII_OK)
            break;
        size_t added = utf8_count(sb.p + ob, sb.len - ob);
        if (it != NULL)
            it[i] = (struct aos_pii_item){.type = r->type, .op = op->kind, .start = out_cp,
                                          .end = out_cp + added, .byte_start = ob, .byte_end = sb.len};
        out_cp += added;
        prev_b = r->byte_end;
        prev_cp = r->end;
    }
    if (rc == AOS_PII_OK)
        rc = sb_add(&sb, text + prev_b, len - prev_b);
    if (rc != AOS_PII_OK)
        goto out;
    *out = sb.p;
    *outlen = sb.len;
    sb.p = NULL;
    if (items != NULL) {
        *items = it;
        *nitems = nres;
        it = NULL;
    }
out:
    free(sb.p);
    free(it);
    free(res);
    return rc;
}

char *aos_pii_redact_all(const struct aos_pii *pii, const char *text, size_t len)
{
    char *out = NULL;
    size_t outlen = 0;
    if (aos_pii_anonymize(pii, text, len, NULL, &out, &outlen, NULL, NULL) != AOS_PII_OK)
        return NULL;
    return out;
}
