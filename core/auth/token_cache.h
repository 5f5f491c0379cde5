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

#endif
