/*
 * Stream tokens: short-lived JWTs that let a browser's EventSource, which
 * cannot send an Authorization header, open an SSE stream with the token
 * in the URL (?token=...) instead of the main access token.
 *
 * A stream token is an ordinary aos JWT (auth/jwt.h: sub, tid, role, jti,
 * iat, exp) bound to the principal who asked for it, but signed with a key
 * of its own, derived from the JWT secret as HMAC-SHA256(secret,
 * "aosd stream token v1").  The key is the mark: a stream token fails
 * signature checks as an access token (so it is never accepted as a bearer
 * token), and an access token fails them as a stream token (so the main
 * JWT is never accepted in a URL).  Rotating the JWT secret rotates both.
 */
#ifndef AOS_EVENTS_TOKEN_H
#define AOS_EVENTS_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "auth/jwt.h"

/* The derivation label (tests forge tokens with it). */
#define AOS_STREAM_TOKEN_LABEL "aosd stream token v1"

/* Issues a stream token for sub/tid/role valid ttl seconds (see
 * aos_jwt_issue for the checks).  malloc'd (free()), or NULL with err. */
char *aos_stream_token_issue(const struct aos_jwt_key *key, const char *sub, const char *tid,
                             const char *role, int ttl, struct aos_jwt_claims *claims, char *err,
                             size_t errlen);
/* Verifies a stream token as aos_jwt_verify does (AOS_JWT_* results). */
int aos_stream_token_verify(const struct aos_jwt_key *key, const char *token, size_t len, int64_t now,
                            int leeway, struct aos_jwt_claims *claims);

#endif
