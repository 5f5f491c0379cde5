/*
 * The authentication chain: credentials go through the auth plugins named
 * by auth.backends, in that order.  The first ALLOW or DENY decides;
 * IGNORE passes to the next; if every backend ignores, the answer is DENY.
 * Blocking (plugins look users up in the store): pool threads only.
 */
#ifndef AOS_AUTH_BACKENDS_H
#define AOS_AUTH_BACKENDS_H

#include <aos/plugin.h>
#include <stddef.h>

struct aos_runtime;

/* Returns AOS_AUTH_ALLOW (principal filled), AOS_AUTH_DENY, or
 * AOS_AUTH_ERROR with err saying why (never a secret). */
int aos_auth_authenticate(const struct aos_runtime *rt, const struct aos_credentials *credentials,
                          struct aos_principal *principal, char *err, size_t errlen);

/* Rank of a role name: user 1 < approver 2 < admin 3; 0 if unknown. */
int aos_auth_role_rank(const char *role);

#endif
