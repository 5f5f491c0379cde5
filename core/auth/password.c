#include "config.h"

#include "auth/password.h"

#include <argon2.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"

#define AOS_ARGON2_SALT_LEN 16
#define AOS_ARGON2_HASH_LEN 32
#define AOS_EMAIL_MAX 254
#define AOS_EMAIL_LOCAL_MAX 64

/* ------------------------------------------------------------- Argon2id */

static int salt_fill(unsigned char *salt, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(salt + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

int aos_password_hash(const struct aos_argon2_params *params, const char *password, size_t len,
                      char **encoded, char *err, size_t errlen)
{
    unsigned char salt[AOS_ARGON2_SALT_LEN];
    char *buf = NULL;
    int rc = -1;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (encoded == NULL)
        return -1;
    *encoded = NULL;
    if (params == NULL || (password == NULL && len > 0)) {
        snprintf(err, errlen, "password hashing called without parameters or password");
        goto out;
    }
    if (len > ARGON2_MAX_PWD_LENGTH) {
        snprintf(err, errlen, "password longer than Argon2 accepts");
        goto out;
    }
    if (salt_fill(salt, sizeof salt) != 0) {
        char ebuf[128];
        /* GNU strerror_r (_GNU_SOURCE): thread-safe, returns the text. */
        snprintf(err, errlen, "getrandom failed: %s", strerror_r(errno, ebuf, sizeof ebuf));
        goto out;
    }
    size_t enclen = argon2_encodedlen(params->t_cost, params->m_cost_kib, params->parallelism, sizeof salt,
                                      AOS_ARGON2_HASH_LEN, Argon2_id);
    buf = malloc(enclen);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    /* libargon2 wants a non-NULL pointer even for an empty password. */
    int a = argon2id_hash_encoded(params->t_cost, params->m_cost_kib, params->parallelism,
                                  password != NULL ? password : "", len, salt, sizeof salt,
                                  AOS_ARGON2_HASH_LEN, buf, enclen);
    if (a != ARGON2_OK) {
        snprintf(err, errlen, "Argon2id hashing failed (t=%u, m=%u KiB, p=%u): %s", params->t_cost,
                 params->m_cost_kib, params->parallelism, argon2_error_message(a));
        goto out;
    }
    *encoded = buf;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    return rc;
}

int aos_password_verify(const char *encoded, const char *password, size_t len)
{
    static const char prefix[] = "$argon2id$";

    if (encoded == NULL || (password == NULL && len > 0) || len > ARGON2_MAX_PWD_LENGTH)
        return -1;
    /* argon2id_verify refuses other variants too, but say it plainly:
     * an argon2i/argon2d hash in our store is corruption, not a mismatch. */
    if (strncmp(encoded, prefix, sizeof prefix - 1) != 0)
        return -1;
    int a = argon2id_verify(encoded, password != NULL ? password : "", len);
    if (a == ARGON2_OK)
        return 1;
    if (a == ARGON2_VERIFY_MISMATCH)
        return 0;
    return -1;
}

/* ------------------------------------------------------------- UTF-8 */

/* Length of the valid UTF-8 sequence at s[0..len), or 0 if invalid
 * (overlong forms, surrogates, > U+10FFFF, truncation). */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* > U+10FFFF */
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* ------------------------------------------------------------- policy */

int aos_password_policy_check(const char *password, size_t len, int min_len, int max_len, char *err,
                              size_t errlen)
{
    const unsigned char *s = (const unsigned char *)password;
    size_t count = 0;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (password == NULL && len > 0) {
        snprintf(err, errlen, "password is required");
        return -1;
    }
    for (size_t i = 0; i < len;) {
        if (s[i] == '\0') {
            snprintf(err, errlen, "password must not contain NUL characters");
            return -1;
        }
        size_t n = utf8_seq(s + i, len - i);
        if (n == 0) {
            snprintf(err, errlen, "password must be valid UTF-8");
            return -1;
        }
        i += n;
        count++;
    }
    if (min_len > 0 && count < (size_t)min_len) {
        snprintf(err, errlen, "password must be at least %d characters", min_len);
        return -1;
    }
    if (max_len > 0 && count > (size_t)max_len) {
        snprintf(err, errlen, "password must be at most %d characters", max_len);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- e-mail */

static int ascii_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

int aos_email_normalize(const char *in, char *out, size_t outlen, char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out != NULL && outlen > 0)
        out[0] = '\0';
    if (in == NULL) {
        snprintf(err, errlen, "email is required");
        return -1;
    }

    const unsigned char *s = (const unsigned char *)in;
    size_t len = strlen(in);
    while (len > 0 && ascii_space(s[0])) {
        s++;
        len--;
    }
    while (len > 0 && ascii_space(s[len - 1]))
        len--;

    if (len == 0) {
        snprintf(err, errlen, "email is required");
        return -1;
    }
    if (len > AOS_EMAIL_MAX) {
        snprintf(err, errlen, "email must be at most %d characters", AOS_EMAIL_MAX);
        return -1;
    }

    size_t at = len;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        if (c <= 0x20 || c == 0x7F) {
            snprintf(err, errlen, "email must not contain spaces or control characters");
            return -1;
        }
        if (c == '@') {
            if (at != len) {
                snprintf(err, errlen, "email must contain exactly one '@'");
                return -1;
            }
            at = i;
        }
        size_t n = utf8_seq(s + i, len - i);
        if (n == 0) {
            snprintf(err, errlen, "email must be valid UTF-8");
            return -1;
        }
        i += n;
    }
    if (at == len) {
        snprintf(err, errlen, "email must contain exactly one '@'");
        return -1;
    }
    if (at == 0) {
        snprintf(err, errlen, "email must have a name before the '@'");
        return -1;
    }
    if (at > AOS_EMAIL_LOCAL_MAX) {
        snprintf(err, errlen, "the part of the email before the '@' must be at most %d characters",
                 AOS_EMAIL_LOCAL_MAX);
        return -1;
    }

    const unsigned char *dom = s + at + 1;
    size_t dlen = len - at - 1;
    const unsigned char *dot = memchr(dom, '.', dlen);
    if (dlen == 0 || dot == NULL || dom[0] == '.' || dom[dlen - 1] == '.' ||
        memmem(dom, dlen, "..", 2) != NULL) {
        snprintf(err, errlen, "email must have a domain like example.com after the '@'");
        return -1;
    }

    if (out == NULL || outlen <= len) {
        snprintf(err, errlen, "email must be at most %zu characters", outlen > 0 ? outlen - 1 : 0);
        return -1;
    }
    /* ASCII only: multi-byte characters have no agreed case folding here. */
    for (size_t i = 0; i < len; i++)
        out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + ('a' - 'A')) : (char)s[i];
    out[len] = '\0';
    return 0;
}

/* ------------------------------------------------------------- gate */

struct aos_gate {
    pthread_mutex_t mu;
    int limit;
    int held;
};

struct aos_gate *aos_gate_new(int limit)
{
    if (limit < 1)
        return NULL;
    struct aos_gate *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    if (pthread_mutex_init(&g->mu, NULL) != 0) {
        free(g);
        return NULL;
    }
    g->limit = limit;
    return g;
}

void aos_gate_free(struct aos_gate *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->mu);
    free(g);
}

bool aos_gate_try_enter(struct aos_gate *g)
{
    bool ok;
    aos_assert(g != NULL);
    pthread_mutex_lock(&g->mu);
    ok = g->held < g->limit;
    if (ok)
        g->held++;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

void aos_gate_leave(struct aos_gate *g)
{
    aos_assert(g != NULL);
    pthread_mutex_lock(&g->mu);
    /* Leaving without entering would silently raise the limit. */
    aos_assert(g->held > 0);
    g->held--;
    pthread_mutex_unlock(&g->mu);
}
