/*
 * JWT access tokens: HS256 only, with libjwt 1.10.
 *
 * libjwt 1.10 checks the signature but nothing else (PLATFORM-NOTES §3): it
 * accepts other HMAC algorithms signed with the same secret, skips the
 * check entirely when no key is given, and ignores exp.  Verification here
 * therefore pins the algorithm, always passes the key, and checks every
 * claim itself.
 */
#ifndef AOS_AUTH_JWT_H
#define AOS_AUTH_JWT_H

#include <stddef.h>
#include <stdint.h>

#define AOS_JWT_MIN_SECRET 32  /* bytes */
#define AOS_JWT_MAX_TOKEN 4096 /* longer Authorization values are refused unparsed */

struct aos_jwt_key {
    unsigned char *secret; /* owned; wiped by aos_jwt_key_clear */
    size_t len;
};

/* Reads the secret file (one trailing newline stripped; any other bytes,
 * binary included, are key material).  Errors (-1, key zeroed, err names the
 * file and the fix): missing, unreadable, not a regular file, shorter than
 * AOS_JWT_MIN_SECRET or longer than 4096 bytes.  A file with group write or
 * any access for others (mode & 037) loads (0) but fills `warning` with the
 * file, its mode and "chmod 600 ..." (empty otherwise).  Group read alone
 * (root:aos 0640, the packaged layout) is not warned about.  The caller
 * logs the warning.  On success key->secret is malloc'd: release it with
 * aos_jwt_key_clear, which wipes it. */
int aos_jwt_key_load(const char *path, struct aos_jwt_key *key, char *err, size_t errlen, char *warning,
                     size_t warnlen);
void aos_jwt_key_clear(struct aos_jwt_key *key);

struct aos_jwt_claims {
    char sub[64];  /* user id, or "key:<id>" */
    char tid[37];  /* tenant UUID */
    char role[16]; /* admin | approver | user */
    char jti[37];  /* random UUID */
    int64_t iat;   /* unix seconds */
    int64_t exp;
};

/* Issues a token valid for ttl seconds from now; fills *claims when non-NULL.
 * Returns a malloc'd NUL-terminated token (free()) or NULL with err.
 * Refuses: key not loaded, sub empty or >= 64 bytes, tid not a UUID (it is
 * written in canonical lower case), role not admin|approver|user, ttl <= 0.
 * jti is a fresh random UUID.  Header: {"alg":"HS256","typ":"JWT"}. */
char *aos_jwt_issue(const struct aos_jwt_key *key, const char *sub, const char *tid, const char *role,
                    int ttl, struct aos_jwt_claims *claims, char *err, size_t errlen);

enum aos_jwt_result {
    AOS_JWT_OK = 0,
    AOS_JWT_MALFORMED = -1, /* not three base64url parts, bad JSON, ... */
    AOS_JWT_BAD_SIGNATURE = -2,
    AOS_JWT_BAD_ALG = -3, /* anything but HS256, including "none" */
    AOS_JWT_EXPIRED = -4,
    AOS_JWT_BAD_CLAIMS = -5, /* missing/ill-typed sub, tid, role, iat, exp, jti; iat in the future */
    AOS_JWT_TOO_LONG = -6
};

/* Verifies token[0..len) at time `now` (unix seconds) allowing `leeway`
 * seconds of clock skew on exp/iat.  Fills *claims on AOS_JWT_OK.  Never
 * allocates on the refusal paths that a client controls cheaply (too long,
 * wrong part count).  token need not be NUL-terminated.  key must be loaded
 * (aborts otherwise: a NULL key would make libjwt skip the signature).
 *
 * Checks, in order (the first failure is the result):
 *   len > AOS_JWT_MAX_TOKEN                          -> TOO_LONG (unread)
 *   not 3 dot-separated unpadded base64url parts, empty header/payload,
 *   header not a JSON object                         -> MALFORMED
 *   header alg missing or != "HS256" (case-sensitive) -> BAD_ALG
 *     (so {"alg":"none"} with an empty signature is BAD_ALG)
 *   empty signature, payload not a JSON object       -> MALFORMED
 *   signature wrong (libjwt, key always given)       -> BAD_SIGNATURE
 *   sub (string, 1..63 bytes), tid (UUID string), role (admin|approver|
 *   user), jti (UUID string), iat, exp (JSON integers >= 0, exp > iat)
 *   missing or ill-typed                              -> BAD_CLAIMS
 *   exp + leeway <= now                               -> EXPIRED
 *   iat > now + leeway                                -> BAD_CLAIMS
 * Claims are read from the signed payload bytes with json-c (types
 * checked); tid and jti come back in canonical lower case.  Unknown
 * claims are ignored.  Tenant existence is the caller's check. */
int aos_jwt_verify(const struct aos_jwt_key *key, const char *token, size_t len, int64_t now, int leeway,
                   struct aos_jwt_claims *claims);
const char *aos_jwt_result_text(int result);

#endif
