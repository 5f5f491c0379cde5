/*
 * A cache of verified access tokens, one per thread (each HTTP loop has
 * its own, so no lock): a token seen before is accepted without its
 * HMAC and JSON being checked again -- half of an authenticated request's
 * CPU (BENCHMARKS.md, "Peers").
 *
 * Safety: only tokens that passed aos_jwt_verify are stored; a hit needs
 * the very same bytes (compared in constant time), the same runtime
 * generation (a reload may rotate the key: everything cached before it is
 * stale) and an unexpired `exp`.  Refused tokens are never cached.
 * Direct-mapped and bounded: AOS_TOKEN_CACHE_SLOTS entries per thread,
 * allocated on first use and freed when the thread exits.
 */
#ifndef AOS_AUTH_TOKEN_CACHE_H
#define AOS_AUTH_TOKEN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/jwt.h"

#define AOS_TOKEN_CACHE_SLOTS 512
#define AOS_TOKEN_CACHE_MAX_TOKEN 512 /* longer tokens are verified every time */

/* True with *claims filled when token[0..len) was verified under
 * `generation` and exp + leeway is still after now (unix seconds). */
bool aos_token_cache_get(const char *token, size_t len, uint64_t generation, int64_t now, int leeway,
                         struct aos_jwt_claims *claims);
/* Remembers a token aos_jwt_verify accepted. */
void aos_token_cache_put(const char *token, size_t len, uint64_t generation, const struct aos_jwt_claims *claims);

/*
 * What GET /auth/me answers for a user, rendered, one small table per
 * thread (each HTTP loop its own): the answer comes from the verified
 * claims plus the user's e-mail, and reading the e-mail from the store
 * means a hop to a pool thread and back (two context switches, ~20% of
 * an authenticated request's time: BENCHMARKS.md, "Peers").
 *
 * Staleness, by design: an entry holds for AOS_USER_CACHE_TTL_MS after
 * the store read that filled it, and only within the runtime generation
 * it was rendered under (a reload may rename or remove the tenant).  So
 * a user deleted in the store (aosd itself never deletes or edits users;
 * an operator or another node may) gets 401 from /auth/me at most
 * AOS_USER_CACHE_TTL_MS later.  The role shown is the token's, part of
 * the key, as before the cache.  Misses are never cached (a 401 is
 * always the store's answer of that moment).
 */
#define AOS_USER_CACHE_SLOTS 128
#define AOS_USER_CACHE_TTL_MS 1000
#define AOS_USER_CACHE_MAX_KEY 160  /* longer keys are never cached */
#define AOS_USER_CACHE_MAX_BODY 768 /* longer bodies are never cached */

/* True with *body, *len set to the entry for key[0..key_len) when it was
 * put under `generation` less than AOS_USER_CACHE_TTL_MS before now_ms
 * (monotonic milliseconds).  *body stays valid until this thread's next
 * aos_user_cache_put. */
bool aos_user_cache_get(const char *key, size_t key_len, uint64_t generation, int64_t now_ms, const char **body,
                        size_t *len);
/* Remembers body[0..len) for key (both copied) from now_ms on. */
void aos_user_cache_put(const char *key, size_t key_len, uint64_t generation, int64_t now_ms, const char *body,
                        size_t len);

#endif
