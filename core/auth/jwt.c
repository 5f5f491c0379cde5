#include "config.h"

#include "auth/jwt.h"

#include <errno.h>
#include <fcntl.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "json.h"
#include "log.h"

/* A secret file is a few dozen bytes; anything this large is the wrong file. */
#define AOS_JWT_MAX_SECRET_FILE 4096
/* HS256 signature: 32 bytes = 43 base64url characters without padding. */
#define AOS_JWT_HS256_SIG_CHARS 43
/* Our tokens carry flat claims; nesting beyond this is not ours. */
#define AOS_JWT_JSON_DEPTH 4

static const char *const aos_jwt_roles[] = {"admin", "approver", "user"};

/* ------------------------------------------------------------- key file */

static const char *errno_text(int e, char *buf, size_t len)
{
    /* GNU strerror_r (we build with _GNU_SOURCE): returns the text. */
    return strerror_r(e, buf, len);
}

int aos_jwt_key_load(const char *path, struct aos_jwt_key *key, char *err, size_t errlen, char *warning,
                     size_t warnlen)
{
    unsigned char buf[AOS_JWT_MAX_SECRET_FILE + 1];
    char ebuf[128];
    size_t got = 0;
    int fd = -1;
    int rc = -1;
    struct stat st;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (warning != NULL && warnlen > 0)
        warning[0] = '\0';
    if (key == NULL)
        return -1;
    key->secret = NULL;
    key->len = 0;
    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen,
                 "auth.jwt_secret_file is not set (point it at a file of at least %d random bytes)",
                 AOS_JWT_MIN_SECRET);
        return -1;
    }

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            snprintf(err, errlen,
                     "JWT secret file %s does not exist (create it: head -c 48 /dev/urandom | base64 > %s; "
                     "chmod 600 %s)",
                     path, path, path);
        else
            snprintf(err, errlen, "cannot open JWT secret file %s: %s", path,
                     errno_text(e, ebuf, sizeof ebuf));
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat JWT secret file %s: %s", path,
                 errno_text(errno, ebuf, sizeof ebuf));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "JWT secret file %s is not a regular file", path);
        goto out;
    }

    for (;;) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errlen, "cannot read JWT secret file %s: %s", path,
                     errno_text(errno, ebuf, sizeof ebuf));
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got == sizeof buf) {
            snprintf(err, errlen, "JWT secret file %s is larger than %d bytes; is it the right file?", path,
                     AOS_JWT_MAX_SECRET_FILE);
            goto out;
        }
    }
    /* `echo secret > file` and editors add one newline; it is not key material. */
    if (got > 0 && buf[got - 1] == '\n')
        got--;
    if (got < AOS_JWT_MIN_SECRET) {
        snprintf(err, errlen,
                 "JWT secret file %s holds %zu bytes, at least %d are required (create it: "
                 "head -c 48 /dev/urandom | base64 > %s)",
                 path, got, AOS_JWT_MIN_SECRET, path);
        goto out;
    }

    key->secret = malloc(got);
    if (key->secret == NULL) {
        snprintf(err, errlen, "out of memory loading JWT secret file %s", path);
        goto out;
    }
    memcpy(key->secret, buf, got);
    key->len = got;

    /* Group read alone is the documented deployment (root:aos 0640); group
     * write, or any access by others, is what we warn about. */
    if ((st.st_mode & 037) != 0)
        snprintf(warning, warnlen,
                 "JWT secret file %s has mode %04o, accessible beyond its owner and group read; "
                 "run: chmod 600 %s (or chown root:aos and chmod 640)",
                 path, (unsigned)(st.st_mode & 07777), path);
    rc = 0;
out:
    OPENSSL_cleanse(buf, sizeof buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

void aos_jwt_key_clear(struct aos_jwt_key *key)
{
    if (key == NULL)
        return;
    if (key->secret != NULL) {
        OPENSSL_cleanse(key->secret, key->len);
        free(key->secret);
    }
    key->secret = NULL;
    key->len = 0;
}

/* ------------------------------------------------------------- helpers */

static bool role_valid(const char *role)
{
    for (size_t i = 0; i < sizeof aos_jwt_roles / sizeof aos_jwt_roles[0]; i++)
        if (strcmp(role, aos_jwt_roles[i]) == 0)
            return true;
    return false;
}

/* Canonical lower-case form of a UUID string, or -1. */
static int uuid_canon(const char *in, char out[37])
{
    uuid_t u;
    if (in == NULL || strlen(in) != 36 || uuid_parse(in, u) != 0)
        return -1;
    uuid_unparse_lower(u, out);
    return 0;
}

static bool b64url_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static bool b64url_valid(const char *s, size_t len)
{
    if (len % 4 == 1)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!b64url_char((unsigned char)s[i]))
            return false;
    return true;
}

/* Decodes unpadded base64url s[0..len) (already checked by b64url_valid)
 * into out (capacity >= 3 * (len + 3) / 4).  Returns the byte count or -1.
 * EVP_DecodeBlock speaks padded standard base64, hence the translation. */
static int b64url_decode(const char *s, size_t len, unsigned char *out)
{
    char tmp[AOS_JWT_MAX_TOKEN + 4];
    size_t pad = (4 - len % 4) % 4;

    if (len + pad >= sizeof tmp || len > INT_MAX - 4)
        return -1;
    for (size_t i = 0; i < len; i++)
        tmp[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    for (size_t i = 0; i < pad; i++)
        tmp[len + i] = '=';
    int n = EVP_DecodeBlock(out, (const unsigned char *)tmp, (int)(len + pad));
    if (n < 0 || (size_t)n < pad)
        return -1;
    return n - (int)pad;
}

/* Decodes one token part and parses it as a JSON object (NULL if either fails). */
static struct json_object *part_json(const char *s, size_t len)
{
    unsigned char raw[AOS_JWT_MAX_TOKEN];
    char err[128];

    int n = b64url_decode(s, len, raw);
    if (n <= 0)
        return NULL;
    return aos_json_parse_object((const char *)raw, (size_t)n, AOS_JWT_JSON_DEPTH, err, sizeof err);
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* Copies a claim string into dst[dstlen] (needs a terminator to spare). */
static int claim_string(struct json_object *obj, const char *name, char *dst, size_t dstlen)
{
    const char *v;
    char err[128];

    if (aos_json_get_string(obj, name, 1, dstlen - 1, &v, err, sizeof err) != 0)
        return -1;
    size_t n = strlen(v);
    if (n >= dstlen) /* code points <= dstlen-1 can still be more bytes */
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

/* Type and value checks for our claims; time checks are the caller's. */
static int claims_read(struct json_object *obj, struct aos_jwt_claims *c)
{
    char err[128];
    char tmp[64];

    memset(c, 0, sizeof *c);
    if (claim_string(obj, "sub", c->sub, sizeof c->sub) != 0)
        return -1;
    if (claim_string(obj, "tid", tmp, sizeof tmp) != 0 || uuid_canon(tmp, c->tid) != 0)
        return -1;
    if (claim_string(obj, "role", c->role, sizeof c->role) != 0 || !role_valid(c->role))
        return -1;
    if (claim_string(obj, "jti", tmp, sizeof tmp) != 0 || uuid_canon(tmp, c->jti) != 0)
        return -1;
    if (aos_json_get_int(obj, "iat", 0, INT64_MAX, &c->iat, err, sizeof err) != 0)
        return -1;
    if (aos_json_get_int(obj, "exp", 0, INT64_MAX, &c->exp, err, sizeof err) != 0)
        return -1;
    if (c->exp <= c->iat)
        return -1;
    return 0;
}

/* ------------------------------------------------------------- issue */

char *aos_jwt_issue(const struct aos_jwt_key *key, const char *sub, const char *tid, const char *role,
                    int ttl, struct aos_jwt_claims *claims, char *err, size_t errlen)
{
    struct aos_jwt_claims c;
    jwt_t *jwt = NULL;
    char *token = NULL;
    uuid_t u;
    int e;

    memset(&c, 0, sizeof c);
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (key == NULL || key->secret == NULL || key->len < AOS_JWT_MIN_SECRET || key->len > INT_MAX) {
        snprintf(err, errlen, "JWT key not loaded");
        goto out;
    }
    if (sub == NULL || sub[0] == '\0' || strlen(sub) >= sizeof c.sub) {
        snprintf(err, errlen, "JWT subject must be 1 to %zu bytes", sizeof c.sub - 1);
        goto out;
    }
    if (uuid_canon(tid, c.tid) != 0) {
        snprintf(err, errlen, "JWT tenant id is not a UUID");
        goto out;
    }
    if (role == NULL || !role_valid(role)) {
        snprintf(err, errlen, "JWT role must be admin, approver or user");
        goto out;
    }
    if (ttl <= 0) {
        snprintf(err, errlen, "JWT ttl must be positive (got %d)", ttl);
        goto out;
    }
    memcpy(c.sub, sub, strlen(sub) + 1);
    memcpy(c.role, role, strlen(role) + 1);
    uuid_generate_random(u);
    uuid_unparse_lower(u, c.jti);
    c.iat = (int64_t)time(NULL);
    c.exp = c.iat + ttl;

    /* Each libjwt call reports an errno value; the first failure wins. */
    e = jwt_new(&jwt);
    if (e == 0)
        e = jwt_add_grant(jwt, "sub", c.sub);
    if (e == 0)
        e = jwt_add_grant(jwt, "tid", c.tid);
    if (e == 0)
        e = jwt_add_grant(jwt, "role", c.role);
    if (e == 0)
        e = jwt_add_grant(jwt, "jti", c.jti);
    if (e == 0)
        e = jwt_add_grant_int(jwt, "iat", (long)c.iat);
    if (e == 0)
        e = jwt_add_grant_int(jwt, "exp", (long)c.exp);
    if (e == 0)
        e = jwt_set_alg(jwt, JWT_ALG_HS256, key->secret, (int)key->len);
    if (e == 0) {
        errno = 0;
        token = jwt_encode_str(jwt);
        if (token == NULL)
            e = errno != 0 ? errno : ENOMEM;
    }
    if (e != 0) {
        char ebuf[128];
        snprintf(err, errlen, "libjwt failed to build the token: %s", errno_text(e, ebuf, sizeof ebuf));
        goto out;
    }
    if (claims != NULL)
        *claims = c;
out:
    if (jwt != NULL)
        jwt_free(jwt); /* wipes its copy of the key */
    return token;
}

/* ------------------------------------------------------------- verify */

int aos_jwt_verify(const struct aos_jwt_key *key, const char *token, size_t len, int64_t now, int leeway,
                   struct aos_jwt_claims *claims)
{
    struct json_object *header = NULL;
    struct json_object *payload = NULL;
    jwt_t *jwt = NULL;
    char copy[AOS_JWT_MAX_TOKEN + 1];
    struct aos_jwt_claims c;
    const char *alg;
    char err[128];
    int rc;

    /* Always a key: libjwt skips the signature check without one. */
    aos_assert(key != NULL && key->secret != NULL && key->len >= AOS_JWT_MIN_SECRET && key->len <= INT_MAX);

    if (len > AOS_JWT_MAX_TOKEN)
        return AOS_JWT_TOO_LONG;
    if (token == NULL || len == 0)
        return AOS_JWT_MALFORMED;

    const char *d1 = memchr(token, '.', len);
    if (d1 == NULL)
        return AOS_JWT_MALFORMED;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL)
        return AOS_JWT_MALFORMED;
    size_t hlen = (size_t)(d1 - token);
    size_t plen = (size_t)(d2 - d1 - 1);
    size_t slen = len - (size_t)(d2 + 1 - token);
    /* An empty signature is allowed this far so that {"alg":"none"} tokens
     * are reported as what they are: a wrong algorithm. */
    if (hlen == 0 || plen == 0 || !b64url_valid(token, hlen) || !b64url_valid(d1 + 1, plen) ||
        !b64url_valid(d2 + 1, slen))
        return AOS_JWT_MALFORMED;

    /* The algorithm is pinned before any signature work: libjwt would
     * happily verify HS384/HS512 with the same secret. */
    header = part_json(token, hlen);
    if (header == NULL) {
        rc = AOS_JWT_MALFORMED;
        goto out;
    }
    if (aos_json_get_string(header, "alg", 1, 16, &alg, err, sizeof err) != 0 || strcmp(alg, "HS256") != 0) {
        rc = AOS_JWT_BAD_ALG;
        goto out;
    }
    if (slen == 0) {
        rc = AOS_JWT_MALFORMED;
        goto out;
    }
    payload = part_json(d1 + 1, plen);
    if (payload == NULL) {
        rc = AOS_JWT_MALFORMED;
        goto out;
    }
    if (slen != AOS_JWT_HS256_SIG_CHARS) {
        rc = AOS_JWT_BAD_SIGNATURE;
        goto out;
    }

    memcpy(copy, token, len);
    copy[len] = '\0';
    if (jwt_decode(&jwt, copy, key->secret, (int)key->len) != 0) {
        jwt = NULL;
        rc = AOS_JWT_BAD_SIGNATURE;
        goto out;
    }
    /* Belt and braces: libjwt's own reading of the header must agree. */
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        rc = AOS_JWT_BAD_ALG;
        goto out;
    }

    /* Claims come from the exact bytes that were signed (payload), not
     * from libjwt's re-serialisation, and json-c tells us their types. */
    if (claims_read(payload, &c) != 0) {
        rc = AOS_JWT_BAD_CLAIMS;
        goto out;
    }
    if (leeway < 0)
        leeway = 0;
    if (sat_add(c.exp, leeway) <= now) {
        rc = AOS_JWT_EXPIRED;
        goto out;
    }
    if (c.iat > sat_add(now, leeway)) {
        rc = AOS_JWT_BAD_CLAIMS;
        goto out;
    }
    if (claims != NULL)
        *claims = c;
    rc = AOS_JWT_OK;
out:
    if (jwt != NULL)
        jwt_free(jwt);
    if (payload != NULL)
        json_object_put(payload);
    if (header != NULL)
        json_object_put(header);
    return rc;
}

const char *aos_jwt_result_text(int result)
{
    switch (result) {
    case AOS_JWT_OK:
        return "ok";
    case AOS_JWT_MALFORMED:
        return "malformed token";
    case AOS_JWT_BAD_SIGNATURE:
        return "bad signature";
    case AOS_JWT_BAD_ALG:
        return "algorithm not allowed";
    case AOS_JWT_EXPIRED:
        return "token expired";
    case AOS_JWT_BAD_CLAIMS:
        return "invalid claims";
    case AOS_JWT_TOO_LONG:
        return "token too long";
    default:
        return "unknown JWT result";
    }
}
