#include "config.h"

#include "auth/token_cache.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    uint64_t generation; /* 0: empty (generations start at 1) */
    size_t len;
    struct aos_jwt_claims claims;
    char token[AOS_TOKEN_CACHE_MAX_TOKEN];
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_make_key(void) { (void)pthread_key_create(&cache_key, free); }

static struct slot *table(bool create)
{
    struct slot *t;

    pthread_once(&cache_once, cache_make_key);
    t = pthread_getspecific(cache_key);
    if (t == NULL && create) {
        t = calloc(AOS_TOKEN_CACHE_SLOTS, sizeof *t);
        if (t != NULL && pthread_setspecific(cache_key, t) != 0) {
            free(t);
            t = NULL;
        }
    }
    return t;
}

/* FNV-1a over the last 32 bytes (a token ends with its signature, random
 * for every token we issue): the slot only spreads tokens, and a chosen
 * collision merely evicts. */
static size_t slot_of(const char *token, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = len > 32 ? len - 32 : 0; i < len; i++) {
        h ^= (unsigned char)token[i];
        h *= 1099511628211ULL;
    }
    return (size_t)(h % AOS_TOKEN_CACHE_SLOTS);
}

bool aos_token_cache_get(const char *token, size_t len, uint64_t generation, int64_t now, int leeway,
                         struct aos_jwt_claims *claims)
{
    struct slot *t = table(false), *s;

    if (t == NULL || len == 0 || len > AOS_TOKEN_CACHE_MAX_TOKEN || generation == 0)
        return false;
    s = &t[slot_of(token, len)];
    /* Constant time over the token: a timing probe must not learn the
     * bytes of another client's cached token. */
    if (s->generation != generation || s->len != len || CRYPTO_memcmp(s->token, token, len) != 0)
        return false;
    if (s->claims.exp + leeway <= now) {
        s->generation = 0;
        return false;
    }
    *claims = s->claims;
    return true;
}

void aos_token_cache_put(const char *token, size_t len, uint64_t generation, const struct aos_jwt_claims *claims)
{
    struct slot *t, *s;

    if (len == 0 || len > AOS_TOKEN_CACHE_MAX_TOKEN || generation == 0 || (t = table(true)) == NULL)
        return;
    s = &t[slot_of(token, len)];
    memcpy(s->token, token, len);
    s->len = len;
    s->claims = *claims;
    s->generation = generation;
}

/* ------------------------------------------------------------ user cache */

struct user_slot {
    uint64_t generation; /* 0: empty */
    int64_t expires_ms;
    size_t key_len;
    size_t body_len;
    char key[AOS_USER_CACHE_MAX_KEY];
    char body[AOS_USER_CACHE_MAX_BODY];
};

static pthread_key_t user_key;
static pthread_once_t user_once = PTHREAD_ONCE_INIT;

static void user_make_key(void) { (void)pthread_key_create(&user_key, free); }

static struct user_slot *user_table(bool create)
{
    struct user_slot *t;

    pthread_once(&user_once, user_make_key);
    t = pthread_getspecific(user_key);
    if (t == NULL && create) {
        t = calloc(AOS_USER_CACHE_SLOTS, sizeof *t);
        if (t != NULL && pthread_setspecific(user_key, t) != 0) {
            free(t);
            t = NULL;
        }
    }
    return t;
}

bool aos_user_cache_get(const char *key, size_t key_len, uint64_t generation, int64_t now_ms, const char **body,
                        size_t *len)
{
    struct user_slot *t = user_table(false), *s;

    if (t == NULL || key_len == 0 || key_len > AOS_USER_CACHE_MAX_KEY || generation == 0)
        return false;
    s = &t[slot_of(key, key_len) % AOS_USER_CACHE_SLOTS];
    if (s->generation != generation || s->key_len != key_len || memcmp(s->key, key, key_len) != 0)
        return false;
    if (now_ms >= s->expires_ms) {
        s->generation = 0;
        return false;
    }
    *body = s->body;
    *len = s->body_len;
    return true;
}

void aos_user_cache_put(const char *key, size_t key_len, uint64_t generation, int64_t now_ms, const char *body,
                        size_t len)
{
    struct user_slot *t, *s;

    if (key_len == 0 || key_len > AOS_USER_CACHE_MAX_KEY || len > AOS_USER_CACHE_MAX_BODY || generation == 0 ||
        (t = user_table(true)) == NULL)
        return;
    s = &t[slot_of(key, key_len) % AOS_USER_CACHE_SLOTS];
    memcpy(s->key, key, key_len);
    s->key_len = key_len;
    memcpy(s->body, body, len);
    s->body_len = len;
    s->expires_ms = now_ms + AOS_USER_CACHE_TTL_MS;
    s->generation = generation;
}
