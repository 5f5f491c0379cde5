/*
 * Passwords and identities: Argon2id hashing (libargon2), the password
 * policy, e-mail normalisation, and a gate that bounds how many hashes run
 * at once so a login flood cannot take every worker thread.
 */
#ifndef AOS_AUTH_PASSWORD_H
#define AOS_AUTH_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aos_argon2_params {
    uint32_t t_cost;      /* iterations; OWASP: 2 */
    uint32_t m_cost_kib;  /* memory; OWASP: 19456 (19 MiB) */
    uint32_t parallelism; /* lanes; OWASP: 1 */
};

/* Hashes with Argon2id and a 16-byte random salt (getrandom).  *encoded is
 * a malloc'd PHC string "$argon2id$v=19$m=...,t=...,p=...$salt$hash"
 * (32-byte hash; caller free()s).  0, or -1 with err (e.g. parameters
 * libargon2 rejects) and *encoded NULL.  Takes tens of ms with OWASP
 * parameters: call it off the event loop.  password need not be
 * NUL-terminated; len bytes are hashed. */
int aos_password_hash(const struct aos_argon2_params *params, const char *password, size_t len,
                      char **encoded, char *err, size_t errlen);
/* 1 = matches, 0 = does not, -1 = `encoded` is not a valid Argon2id hash
 * (argon2i/argon2d hashes included) or libargon2 failed otherwise.  The
 * parameters come from `encoded`.  Blocking, like aos_password_hash. */
int aos_password_verify(const char *encoded, const char *password, size_t len);

/* 0, or -1 with a client-facing message ("password must be at least 12
 * characters").  Length counts UTF-8 code points; max bounds hashing work.
 * Refuses NUL bytes and invalid UTF-8 (overlongs, surrogates, > U+10FFFF,
 * truncated sequences).  min_len/max_len <= 0 mean no bound on that side. */
int aos_password_policy_check(const char *password, size_t len, int min_len, int max_len, char *err,
                              size_t errlen);

/* Trims, lower-cases the domain (and the local part: we treat addresses
 * case-insensitively), validates "local@domain.tld" shape and length (<= 254).
 * 0, or -1 with a client-facing message (out set to "").  Details: trims
 * ASCII whitespace at both ends; lower-cases ASCII only (other UTF-8 is kept
 * as is, and must be valid); exactly one '@'; local part 1..64 bytes;
 * domain has a dot, not first or last, no ".."; no spaces or control
 * characters anywhere; at most 254 bytes after trimming.  outlen must hold
 * the result and its NUL (255 always suffices), else -1. */
int aos_email_normalize(const char *in, char *out, size_t outlen, char *err, size_t errlen);

/* Counting gate: at most `limit` holders at once.  try_enter never blocks.
 * aos_gate_new returns NULL if limit < 1 or out of memory.  Every true
 * try_enter must be paired with one leave; leaving an empty gate aborts. */
struct aos_gate;
struct aos_gate *aos_gate_new(int limit);
void aos_gate_free(struct aos_gate *g);
bool aos_gate_try_enter(struct aos_gate *g);
void aos_gate_leave(struct aos_gate *g);

#endif
