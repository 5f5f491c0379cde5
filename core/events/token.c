#include "config.h"
/*
 * Stream tokens (token.h): the access-token format under a derived key.
 */
#include "events/token.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#define DERIVED_LEN 32

/* 0 with out filled (wipe it after use), or -1. */
static int derive(const struct aos_jwt_key *key, unsigned char out[DERIVED_LEN])
{
    unsigned int len = 0;

    if (key == NULL || key->secret == NULL || key->len == 0)
        return -1;
    if (HMAC(EVP_sha256(), key->secret, (int)key->len, (const unsigned char *)AOS_STREAM_TOKEN_LABEL,
             sizeof AOS_STREAM_TOKEN_LABEL - 1, out, &len) == NULL ||
        len != DERIVED_LEN)
        return -1;
    return 0;
}

char *aos_stream_token_issue(const struct aos_jwt_key *key, const char *sub, const char *tid,
                             const char *role, int ttl, struct aos_jwt_claims *claims, char *err,
                             size_t errlen)
{
    unsigned char k[DERIVED_LEN];
    struct aos_jwt_key dk = {.secret = k, .len = sizeof k};
    char *token;

    if (derive(key, k) != 0) {
        snprintf(err, errlen, "JWT key not loaded");
        return NULL;
    }
    token = aos_jwt_issue(&dk, sub, tid, role, ttl, claims, err, errlen);
    explicit_bzero(k, sizeof k);
    return token;
}

int aos_stream_token_verify(const struct aos_jwt_key *key, const char *token, size_t len, int64_t now,
                            int leeway, struct aos_jwt_claims *claims)
{
    unsigned char k[DERIVED_LEN];
    struct aos_jwt_key dk = {.secret = k, .len = sizeof k};
    int r;

    if (derive(key, k) != 0)
        return AOS_JWT_BAD_SIGNATURE;
    r = aos_jwt_verify(&dk, token, len, now, leeway, claims);
    explicit_bzero(k, sizeof k);
    return r;
}
