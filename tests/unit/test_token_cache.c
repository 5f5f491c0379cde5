#include "config.h"
/* The per-thread cache of verified access tokens (core/auth/token_cache.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "auth/token_cache.h"

static struct aos_jwt_claims claims_for(const char *sub, int64_t exp)
{
    struct aos_jwt_claims c;
    memset(&c, 0, sizeof c);
    snprintf(c.sub, sizeof c.sub, "%s", sub);
    snprintf(c.tid, sizeof c.tid, "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f");
    snprintf(c.role, sizeof c.role, "user");
    c.exp = exp;
    return c;
}

static void test_hit_and_misses(void **state)
{
    (void)state;
    const char *tok = "aaaa.bbbb.cccc";
    struct aos_jwt_claims in = claims_for("u1", 1000), out;

    assert_false(aos_token_cache_get(tok, strlen(tok), 1, 10, 0, &out)); /* empty */
    aos_token_cache_put(tok, strlen(tok), 1, &in);
    memset(&out, 0, sizeof out);
    assert_true(aos_token_cache_get(tok, strlen(tok), 1, 10, 0, &out));
    assert_string_equal(out.sub, "u1");
    assert_int_equal(out.exp, 1000);
    /* another generation: the key may have changed */
    assert_false(aos_token_cache_get(tok, strlen(tok), 2, 10, 0, &out));
    /* other bytes of the same length, and a prefix */
    assert_false(aos_token_cache_get("aaaa.bbbb.cccd", 14, 1, 10, 0, &out));
    assert_false(aos_token_cache_get(tok, strlen(tok) - 1, 1, 10, 0, &out));
    /* expiry, with the verifier's leeway semantics: exp + leeway <= now is expired */
    assert_true(aos_token_cache_get(tok, strlen(tok), 1, 1029, 30, &out));
    assert_false(aos_token_cache_get(tok, strlen(tok), 1, 1000, 0, &out));
    /* and an expired entry is dropped, not revived by a larger leeway */
    assert_false(aos_token_cache_get(tok, strlen(tok), 1, 10, 0, &out));
}

static void test_bounds(void **state)
{
    (void)state;
    char big[AOS_TOKEN_CACHE_MAX_TOKEN + 2];
    struct aos_jwt_claims in = claims_for("u2", 1000), out;

    memset(big, 'x', sizeof big);
    aos_token_cache_put(big, sizeof big, 1, &in);
    assert_false(aos_token_cache_get(big, sizeof big, 1, 10, 0, &out)); /* too long: never cached */
    aos_token_cache_put(big, AOS_TOKEN_CACHE_MAX_TOKEN, 1, &in);
    assert_true(aos_token_cache_get(big, AOS_TOKEN_CACHE_MAX_TOKEN, 1, 10, 0, &out));
    aos_token_cache_put("", 0, 1, &in);
    assert_false(aos_token_cache_get("", 0, 1, 10, 0, &out));
    aos_token_cache_put("t.t.t", 5, 0, &in); /* generation 0 means "none" */
    assert_false(aos_token_cache_get("t.t.t", 5, 0, 10, 0, &out));
}

static void *other_thread(void *arg)
{
    struct aos_jwt_claims out;
    *(int *)arg = aos_token_cache_get("x.y.z", 5, 1, 10, 0, &out) ? 1 : 0;
    return NULL;
}

static void test_per_thread(void **state)
{
    (void)state;
    struct aos_jwt_claims in = claims_for("u3", 1000), out;
    pthread_t th;
    int seen = -1;

    aos_token_cache_put("x.y.z", 5, 1, &in);
    assert_true(aos_token_cache_get("x.y.z", 5, 1, 10, 0, &out));
    assert_int_equal(pthread_create(&th, NULL, other_thread, &seen), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(seen, 0); /* each loop thread has its own cache */
}

/* The rendered /auth/me cache: a hit needs the same key and generation,
 * and holds for exactly AOS_USER_CACHE_TTL_MS after the put. */
static void test_user_cache(void **state)
{
    (void)state;
    const char *key = "t1\nu1\nuser\n", *body = "{\"email\":\"a@b.c\"}";
    const char *got = NULL;
    size_t len = 0;

    assert_false(aos_user_cache_get(key, strlen(key), 1, 5000, &got, &len)); /* empty */
    aos_user_cache_put(key, strlen(key), 1, 5000, body, strlen(body));
    assert_true(aos_user_cache_get(key, strlen(key), 1, 5000, &got, &len));
    assert_int_equal(len, strlen(body));
    assert_memory_equal(got, body, len);
    assert_true(aos_user_cache_get(key, strlen(key), 1, 5000 + AOS_USER_CACHE_TTL_MS - 1, &got, &len));
    /* another generation (a reload), another role or user: misses */
    assert_false(aos_user_cache_get(key, strlen(key), 2, 5001, &got, &len));
    assert_false(aos_user_cache_get("t1\nu1\nadmin\n", 12, 1, 5001, &got, &len));
    assert_false(aos_user_cache_get("t1\nu2\nuser\n", 11, 1, 5001, &got, &len));
    /* the TTL is a bound: at put + TTL the store is asked again */
    assert_false(aos_user_cache_get(key, strlen(key), 1, 5000 + AOS_USER_CACHE_TTL_MS, &got, &len));
    assert_false(aos_user_cache_get(key, strlen(key), 1, 5001, &got, &len)); /* dropped, not revived */
    /* a put replaces: the latest store answer wins */
    aos_user_cache_put(key, strlen(key), 1, 9000, "{}", 2);
    assert_true(aos_user_cache_get(key, strlen(key), 1, 9000, &got, &len));
    assert_int_equal(len, 2);
}

static void test_user_cache_bounds(void **state)
{
    (void)state;
    char big[AOS_USER_CACHE_MAX_BODY + 1];
    const char *got = NULL;
    size_t len = 0;

    memset(big, 'x', sizeof big);
    aos_user_cache_put("k", 1, 1, 0, big, sizeof big);
    assert_false(aos_user_cache_get("k", 1, 1, 0, &got, &len)); /* body too long: never cached */
    aos_user_cache_put("k", 1, 1, 0, big, AOS_USER_CACHE_MAX_BODY);
    assert_true(aos_user_cache_get("k", 1, 1, 0, &got, &len));
    assert_int_equal(len, AOS_USER_CACHE_MAX_BODY);
    aos_user_cache_put(big, AOS_USER_CACHE_MAX_KEY + 1, 1, 0, "{}", 2);
    assert_false(aos_user_cache_get(big, AOS_USER_CACHE_MAX_KEY + 1, 1, 0, &got, &len)); /* key too long */
    aos_user_cache_put("g", 1, 0, 0, "{}", 2); /* generation 0 means "no runtime" */
    assert_false(aos_user_cache_get("g", 1, 0, 0, &got, &len));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_and_misses),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_per_thread),
        cmocka_unit_test(test_user_cache),
        cmocka_unit_test(test_user_cache_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
