/*
 * PII detection and anonymisation, modelled on Microsoft Presidio's
 * analyzer and anonymizer.
 *
 * Entity types carry Presidio's names where Presidio has one
 * (EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, US_SSN,
 * IP_ADDRESS).  Secrets have no Presidio recognizer; they are named
 * API_KEY (aos_ keys, OpenAI/Anthropic "sk-", GitHub "ghp_"/"github_pat_",
 * Slack "xox?-", AWS "AKIA"/"ASIA" access key ids) and JWT_TOKEN (three
 * base64url parts whose first decodes to a JSON object with "alg").
 *
 * Offsets reported to callers count Unicode code points, as Presidio's do
 * (Python string indexes); byte offsets are given as well for C callers.
 *
 * Scores are fixed per detector and validation:
 *   1.0  checksummed or decoded: CREDIT_CARD (Luhn), IBAN_CODE (mod-97 and
 *        the country's length), JWT_TOKEN (header is JSON with "alg"),
 *        EMAIL_ADDRESS, API_KEY of the aos_ format
 *   0.95 IP_ADDRESS (validated by inet_pton)
 *   0.9  other API_KEY formats (fixed vendor prefix, mixed letters+digits)
 *   0.85 US_SSN (pattern plus the SSA's invalid ranges)
 *   0.75 PHONE_NUMBER (pattern only)
 * Overlapping findings are resolved: the higher score wins, then the
 * longer span, then the earlier one.  Results never overlap.
 *
 * Threading: aos_pii_new compiles every pattern once (PCRE2 with JIT).
 * After that a struct aos_pii is read-only and every function below may be
 * called on it from several threads at once (match data is per call).
 *
 * Bounds: patterns are written without nested ambiguous quantifiers (work
 * is linear in the text times the longest candidate), and PCRE2 match and
 * depth limits back that up: hitting one fails the call with
 * AOS_PII_ELIMIT instead of leaking unredacted text.
 */
#ifndef AOS_PII_H
#define AOS_PII_H

#include <stdbool.h>
#include <stddef.h>

enum aos_pii_type {
    AOS_PII_EMAIL_ADDRESS = 0,
    AOS_PII_PHONE_NUMBER,
    AOS_PII_CREDIT_CARD,
    AOS_PII_IBAN_CODE,
    AOS_PII_US_SSN,
    AOS_PII_IP_ADDRESS,
    AOS_PII_API_KEY,
    AOS_PII_JWT_TOKEN,
    AOS_PII_NTYPES
};

/* Bit of a type in an entity filter; a filter of 0 means all types. */
#define AOS_PII_BIT(t) (1u << (unsigned)(t))
#define AOS_PII_ALL 0u

enum aos_pii_status {
    AOS_PII_OK = 0,
    AOS_PII_EUTF8 = -1,  /* the text (or an operator value) is not valid UTF-8 */
    AOS_PII_ENOMEM = -2,
    AOS_PII_ELIMIT = -3, /* a PCRE2 match or depth limit was hit */
    AOS_PII_EINVAL = -4  /* bad argument (e.g. a mask character that is not one code point) */
};

/* "EMAIL_ADDRESS", ...; NULL for an out-of-range value. */
const char *aos_pii_type_name(enum aos_pii_type type);
/* Exact, case-sensitive name lookup (Presidio's names are upper case).
 * Returns 0 and sets *out, or -1 if unknown. */
int aos_pii_type_from_name(const char *name, enum aos_pii_type *out);
/* Human text for a status. */
const char *aos_pii_strerror(int status);

struct aos_pii_result {
    enum aos_pii_type type;
    size_t start, end;           /* code points, end exclusive */
    size_t byte_start, byte_end; /* bytes, end exclusive */
    double score;
};

enum aos_pii_op_kind {
    AOS_PII_OP_REPLACE = 0, /* new_value, default "<TYPE>" */
    AOS_PII_OP_REDACT,      /* removed */
    AOS_PII_OP_MASK,        /* code points replaced by masking_char */
    AOS_PII_OP_HASH         /* HMAC-SHA256(key, entity text), 64 lower-case hex digits */
};

/* "replace", "redact", "mask", "hash"; from_name returns -1 if unknown. */
const char *aos_pii_op_name(enum aos_pii_op_kind kind);
int aos_pii_op_from_name(const char *name, enum aos_pii_op_kind *out);

struct aos_pii_operator {
    enum aos_pii_op_kind kind;
    const char *new_value;   /* replace: NUL-terminated UTF-8; NULL = "<TYPE>" */
    const char *masking_char; /* mask: exactly one UTF-8 code point; NULL = "*" */
    long chars_to_mask;      /* mask: < 0 = all; more than the entity has = all */
    bool from_end;           /* mask: mask the last chars_to_mask instead of the first */
};

/* Operators per type with a default, Presidio's anonymizer shape:
 * {"DEFAULT": {...}, "EMAIL_ADDRESS": {...}}.  Strings are borrowed. */
struct aos_pii_operators {
    struct aos_pii_operator def;
    struct aos_pii_operator by_type[AOS_PII_NTYPES];
    bool has[AOS_PII_NTYPES];
};

/* DEFAULT = replace with "<TYPE>", no per-type operators. */
void aos_pii_operators_init(struct aos_pii_operators *ops);

/* One anonymised entity, offsets in the OUTPUT text (as Presidio's
 * anonymizer reports them). */
struct aos_pii_item {
    enum aos_pii_type type;
    enum aos_pii_op_kind op;
    size_t start, end;           /* code points of the output text */
    size_t byte_start, byte_end; /* bytes of the output text */
};

struct aos_pii;

/* Compiles the detectors.  key/keylen is the HMAC key of the hash
 * operator (copied); key NULL (keylen ignored) draws a random 32-byte key
 * for this object, so hashes are stable only within its lifetime.  Returns
 * NULL with err set on failure. */
struct aos_pii *aos_pii_new(const void *key, size_t keylen, char *err, size_t errlen);
void aos_pii_free(struct aos_pii *pii);

/* Finds the entities of the types in `entities` (AOS_PII_BIT()s; 0 = all)
 * in text[0..len) (UTF-8, may contain NUL).  On AOS_PII_OK *results is a
 * malloc'd array of *n non-overlapping results sorted by start (NULL when
 * *n is 0; free() it).  On error *results is NULL and *n 0. */
int aos_pii_analyze(const struct aos_pii *pii, const char *text, size_t len, unsigned entities,
                    struct aos_pii_result **results, size_t *n);

/* Analyses text for all types and replaces every finding by its operator
 * (ops NULL = the aos_pii_operators_init defaults).  On AOS_PII_OK *out is
 * a malloc'd NUL-terminated string of *outlen bytes, *items a malloc'd
 * array of *nitems items sorted by start (NULL if none); free() both.
 * items may be NULL if the caller does not want them. */
int aos_pii_anonymize(const struct aos_pii *pii, const char *text, size_t len,
                      const struct aos_pii_operators *ops, char **out, size_t *outlen,
                      struct aos_pii_item **items, size_t *nitems);

/* Every finding replaced by "<TYPE>": the form the journal and the event
 * log store.  Returns a malloc'd NUL-terminated string or NULL (invalid
 * UTF-8, out of memory, limit hit) -- callers must then drop the text,
 * never store it unredacted. */
char *aos_pii_redact_all(const struct aos_pii *pii, const char *text, size_t len);

/* Strict UTF-8 check (no overlongs, surrogates or > U+10FFFF). */
bool aos_pii_utf8_valid(const char *s, size_t len);

#endif
