#include "config.h"
/*
 * API keys (apikey.h): "aos_<prefix>_<secret>".
 *
 * The prefix is drawn from [a-z0-9] by rejection sampling: a random byte
 * is used only when it is below 252 (= 7 * 36), so every character is
 * equally likely (a plain byte % 36 would favour the first 4 characters).
 * The secret is 32 random bytes in lower-case hex.  Both come from
 * OpenSSL's RAND_bytes (a CSPRNG seeded from the kernel).
 *
 * plugins/auth-apikey/auth_apikey.c holds its own copy of the parsing and
 * hashing rules (a plugin never links core code); tests/unit/test_authplugins.c
 * keeps the two in agreement by creating keys here and presenting them there.
 */
#include "auth/apikey.h"

#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"

#define APIKEY_TAG "aos_"
#define APIKEY_TAG_LEN 4
#define APIKEY_SECRET_BYTES (AOS_APIKEY_SECRET_LEN / 2)

static const char prefix_alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
#define PREFIX_ALPHABET_LEN (sizeof prefix_alphabet - 1) /* 36 */
/* The largest multiple of 36 that fits a byte: bytes from here up are redrawn. */
#define PREFIX_REJECT_FROM (256 - 256 % PREFIX_ALPHABET_LEN) /* 252 */

static const char hexdigits[] = "0123456789abcdef";

static void hex_encode(const unsigned char *in, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hexdigits[in[i] >> 4];
        out[2 * i + 1] = hexdigits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

static bool prefix_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

static bool hex_char(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* Fills out[0..len) with uniformly random prefix characters.  0 or -1. */
static int random_prefix(char *out, size_t len)
{
    unsigned char pool[32];
    size_t have = 0, used = 0;

    for (size_t i = 0; i < len;) {
        if (used == have) {
            /* 12 characters need ~12.2 bytes on average: one draw nearly always does. */
            if (RAND_bytes(pool, (int)sizeof pool) != 1)
                return -1;
            have = sizeof pool;
            used = 0;
        }
        unsigned char b = pool[used++];
        if (b >= PREFIX_REJECT_FROM)
            continue;
        out[i++] = prefix_alphabet[b % PREFIX_ALPHABET_LEN];
    }
    OPENSSL_cleanse(pool, sizeof pool);
    return 0;
}

int aos_apikey_generate(char *key, char *prefix, char *hash)
{
    unsigned char raw[APIKEY_SECRET_BYTES];
    char pfx[AOS_APIKEY_PREFIX_LEN + 1];
    char secret[AOS_APIKEY_SECRET_LEN + 1];
    int rc = -1;

    key[0] = '\0';
    prefix[0] = '\0';
    hash[0] = '\0';
    if (random_prefix(pfx, AOS_APIKEY_PREFIX_LEN) < 0 || RAND_bytes(raw, (int)sizeof raw) != 1) {
        aos_log(AOS_LVL_ERROR, "API key generation failed: no randomness from RAND_bytes", NULL);
        goto out;
    }
    pfx[AOS_APIKEY_PREFIX_LEN] = '\0';
    hex_encode(raw, sizeof raw, secret);
    aos_apikey_hash(secret, AOS_APIKEY_SECRET_LEN, hash);
    if (hash[0] == '\0')
        goto out;
    memcpy(key, APIKEY_TAG, APIKEY_TAG_LEN);
    memcpy(key + APIKEY_TAG_LEN, pfx, AOS_APIKEY_PREFIX_LEN);
    key[APIKEY_TAG_LEN + AOS_APIKEY_PREFIX_LEN] = '_';
    memcpy(key + APIKEY_TAG_LEN + AOS_APIKEY_PREFIX_LEN + 1, secret, AOS_APIKEY_SECRET_LEN);
    key[AOS_APIKEY_LEN] = '\0';
    memcpy(prefix, pfx, AOS_APIKEY_PREFIX_LEN + 1);
    rc = 0;
out:
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(secret, sizeof secret);
    return rc;
}

int aos_apikey_parse(const char *key, size_t len, char *prefix, const char **secret)
{
    const char *p, *s;

    if (key == NULL || len != AOS_APIKEY_LEN || memcmp(key, APIKEY_TAG, APIKEY_TAG_LEN) != 0)
        return -1;
    p = key + APIKEY_TAG_LEN;
    if (p[AOS_APIKEY_PREFIX_LEN] != '_')
        return -1;
    s = p + AOS_APIKEY_PREFIX_LEN + 1;
    for (size_t i = 0; i < AOS_APIKEY_PREFIX_LEN; i++)
        if (!prefix_char(p[i]))
            return -1;
    /* Upper-case hex is refused too: one spelling per key, so a key is
     * never accepted in a form it was not shown in. */
    for (size_t i = 0; i < AOS_APIKEY_SECRET_LEN; i++)
        if (!hex_char(s[i]))
            return -1;
    memcpy(prefix, p, AOS_APIKEY_PREFIX_LEN);
    prefix[AOS_APIKEY_PREFIX_LEN] = '\0';
    *secret = s;
    return 0;
}

void aos_apikey_hash(const char *secret, size_t len, char *hash)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok;

    if (secret == NULL)
        len = 0;
    ok = EVP_Digest(secret != NULL ? secret : "", len, md, &mdlen, EVP_sha256(), NULL);
    /* Fails only without memory or with a broken libcrypto.  An empty hash
     * matches no stored hash and is refused by the store, so the failure
     * stays closed. */
    if (ok != 1 || mdlen * 2 != AOS_APIKEY_HASH_LEN) {
        hash[0] = '\0';
        aos_log(AOS_LVL_ERROR, "SHA-256 of an API key secret failed (libcrypto)", NULL);
        return;
    }
    hex_encode(md, mdlen, hash);
}
