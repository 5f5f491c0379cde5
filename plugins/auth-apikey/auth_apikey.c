#include "config.h"
/*
 * auth-apikey: API keys "aos_<prefix>_<secret>" issued by aosd (POST
 * /api/v1/auth/api-keys, `aosctl apikey create`), stored as the SHA-256 of
 * the secret and found by their public prefix.
 *
 *   plugins: { auth-apikey = { }; };    (no settings)
 *
 * authenticate() handles AOS_CRED_API_KEY, and AOS_CRED_BEARER whose token
 * starts with "aos_" (clients may send a key as "Authorization: Bearer
 * aos_..."); every other credential is AOS_AUTH_IGNORE, so a JWT bearer
 * goes on to the next backend.
 *   well-formed key, secret matches, key usable -> ALLOW {tenant of the key,
 *                                                  subject = "key:<key id>", role of the key}
 *   malformed key (any deviation from the exact shape below), unknown
 *   prefix, wrong secret, revoked, expired, tenant inactive  -> DENY
 *   store failure, corrupt stored hash                        -> ERROR (503)
 * A malformed key is DENY, not IGNORE: the client clearly meant an API key
 * (API_KEY kind, or a bearer starting with "aos_"), and no other backend
 * should be asked to accept it.
 *
 * The key's shape and hashing are duplicated from core/auth/apikey.c on
 * purpose: a plugin includes only <aos/plugin.h> and never links core
 * code.  tests/unit/test_authplugins.c keeps the copies in agreement by
 * presenting keys made by aos_apikey_generate() to this plugin.
 *   "aos_" + 12 of [a-z0-9] + "_" + 64 of [0-9a-f]  (81 bytes, exactly)
 *   stored hash = lower-case hex SHA-256 of the 64 secret characters
 *
 * The secret's hash is compared with CRYPTO_memcmp (constant time).  The
 * host's lookup already leaves out revoked and expired keys and keys of
 * inactive tenants; the expiry is checked here again against this clock.
 * The requested tenant (credentials->tenant_id) is not checked here: the
 * key names its tenant, and the host compares the principal's tenant with
 * X-Tenant-ID (403 on mismatch).
 *
 * Links libcrypto itself.  Stateless after init(): thread-safe.
 */
#include <aos/plugin.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define KEY_TAG "aos_"
#define KEY_TAG_LEN 4
#define KEY_PREFIX_LEN 12
#define KEY_SECRET_LEN 64
#define KEY_LEN (KEY_TAG_LEN + KEY_PREFIX_LEN + 1 + KEY_SECRET_LEN) /* 81 */
#define KEY_HASH_LEN 64                                             /* hex SHA-256 */

struct apikey {
    const struct aos_host *host; /* set by init(), not a setting */
};

static int apikey_init(struct aos_ctx *ctx, const struct aos_host *host, void *instance)
{
    struct apikey *k = instance;

    if (!AOS_HOST_HAS(host, apikey_lookup)) {
        host->set_error(ctx,
                        "this aosd provides SDK ABI %u.%u without apikey_lookup(): auth-apikey "
                        "needs ABI 1.1 or later; upgrade aosd",
                        (unsigned)host->abi_major, (unsigned)host->abi_minor);
        return -1;
    }
    k->host = host;
    return 0;
}

static bool prefix_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

static bool hex_char(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* Splits a presented key of exactly the issued shape.  prefix receives
 * KEY_PREFIX_LEN + 1 bytes; *secret points into key.  0 or -1. */
static int key_parse(const char *key, size_t len, char *prefix, const char **secret)
{
    if (key == NULL || len != KEY_LEN || memcmp(key, KEY_TAG, KEY_TAG_LEN) != 0 ||
        key[KEY_TAG_LEN + KEY_PREFIX_LEN] != '_')
        return -1;
    const char *p = key + KEY_TAG_LEN, *s = p + KEY_PREFIX_LEN + 1;
    for (size_t i = 0; i < KEY_PREFIX_LEN; i++)
        if (!prefix_char(p[i]))
            return -1;
    for (size_t i = 0; i < KEY_SECRET_LEN; i++)
        if (!hex_char(s[i]))
            return -1;
    memcpy(prefix, p, KEY_PREFIX_LEN);
    prefix[KEY_PREFIX_LEN] = '\0';
    *secret = s;
    return 0;
}

/* hex SHA-256 of the secret into hash (KEY_HASH_LEN + 1 bytes).  0 or -1. */
static int secret_hash(const char *secret, size_t len, char *hash)
{
    static const char hexdigits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(secret, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen * 2 != KEY_HASH_LEN)
        return -1;
    for (unsigned i = 0; i < mdlen; i++) {
        hash[2 * i] = hexdigits[md[i] >> 4];
        hash[2 * i + 1] = hexdigits[md[i] & 0x0f];
    }
    hash[KEY_HASH_LEN] = '\0';
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether this backend handles the credentials at all. */
static bool is_ours(const struct aos_credentials *cred)
{
    if (cred->kind == AOS_CRED_API_KEY)
        return true;
    return cred->kind == AOS_CRED_BEARER && cred->secret != NULL && cred->secret_len >= KEY_TAG_LEN &&
           memcmp(cred->secret, KEY_TAG, KEY_TAG_LEN) == 0;
}

static int apikey_authenticate(struct aos_ctx *ctx, const void *instance, const struct aos_credentials *cred,
                               struct aos_principal *pr)
{
    const struct apikey *k = instance;
    const struct aos_host *h = k->host;
    struct aos_apikey_record rec;
    char prefix[KEY_PREFIX_LEN + 1];
    char hash[KEY_HASH_LEN + 1];
    const char *secret = NULL;
    int result = AOS_AUTH_DENY, n;

    if (!is_ours(cred))
        return AOS_AUTH_IGNORE;
    memset(&rec, 0, sizeof rec);
    rec.size = sizeof rec;
    if (key_parse(cred->secret, cred->secret_len, prefix, &secret) < 0)
        goto out;

    switch (h->apikey_lookup(ctx, prefix, &rec)) {
    case AOS_LOOKUP_FOUND:
        break;
    case AOS_LOOKUP_NOT_FOUND:
        goto out;
    case AOS_LOOKUP_ERROR: /* the host said why with set_error() */
        result = AOS_AUTH_ERROR;
        goto out;
    default:
        h->set_error(ctx, "apikey_lookup() returned an unexpected result");
        result = AOS_AUTH_ERROR;
        goto out;
    }
    if (strlen(rec.secret_hash) != KEY_HASH_LEN) {
        h->set_error(ctx, "API key %s: the stored secret hash is not a hex SHA-256", rec.id);
        result = AOS_AUTH_ERROR;
        goto out;
    }
    if (secret_hash(secret, KEY_SECRET_LEN, hash) < 0) {
        h->set_error(ctx, "SHA-256 failed (libcrypto out of memory?)");
        result = AOS_AUTH_ERROR;
        goto out;
    }
    if (CRYPTO_memcmp(hash, rec.secret_hash, KEY_HASH_LEN) != 0)
        goto out;
    if (rec.expires_at_ms != 0 && rec.expires_at_ms <= now_ms())
        goto out;

    n = snprintf(pr->subject, sizeof pr->subject, "key:%s", rec.id);
    if (n <= 0 || (size_t)n >= sizeof pr->subject ||
        snprintf(pr->tenant_id, sizeof pr->tenant_id, "%s", rec.tenant_id) >= (int)sizeof pr->tenant_id ||
        snprintf(pr->role, sizeof pr->role, "%s", rec.role) >= (int)sizeof pr->role) {
        h->set_error(ctx, "API key %s: the store returned an id or role that does not fit the principal",
                     rec.id);
        result = AOS_AUTH_ERROR;
        goto out;
    }
    result = AOS_AUTH_ALLOW;
out:
    OPENSSL_cleanse(&rec, sizeof rec);
    OPENSSL_cleanse(hash, sizeof hash);
    return result;
}

static const struct aos_auth_ops apikey_ops = {
    .size = sizeof apikey_ops,
    .authenticate = apikey_authenticate,
};

static const struct aos_plugin apikey_plugin = {
    AOS_PLUGIN_HEADER,
    .kind = AOS_PLUGIN_AUTH,
    .name = "auth-apikey",
    .version = "1.0.0",
    .description = "API keys aos_<prefix>_<secret>, found by prefix, SHA-256 compared in constant time",
    .flags = AOS_PLUGIN_THREAD_SAFE,
    .instance_size = sizeof(struct apikey),
    .init = apikey_init,
    .ops = &apikey_ops,
};

AOS_PLUGIN_EXPORT(apikey_plugin)
