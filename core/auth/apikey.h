/*
 * API keys: "aos_<prefix>_<secret>".
 *   prefix: 12 characters [a-z0-9], random, unique; stored in clear and used
 *           to find the key (an index lookup, no scan).
 *   secret: 64 lower-case hex characters (32 random bytes); only its SHA-256
 *           (hex) is stored.  Keys are high-entropy, so a fast hash is
 *           enough: there is nothing to brute-force.
 * The full key is shown once, at creation.  The auth-apikey plugin parses
 * and hashes keys with its own copy of these rules (plugins never link
 * core code); tests keep the two in agreement.
 */
#ifndef AOS_AUTH_APIKEY_H
#define AOS_AUTH_APIKEY_H

#include <stddef.h>

#define AOS_APIKEY_PREFIX_LEN 12
#define AOS_APIKEY_SECRET_LEN 64
#define AOS_APIKEY_LEN (4 + AOS_APIKEY_PREFIX_LEN + 1 + AOS_APIKEY_SECRET_LEN) /* 81 */
#define AOS_APIKEY_HASH_LEN 64 /* hex SHA-256 */

/* Makes a new key.  key: AOS_APIKEY_LEN+1, prefix: AOS_APIKEY_PREFIX_LEN+1,
 * hash: AOS_APIKEY_HASH_LEN+1 bytes.  0, or -1 if no randomness. */
int aos_apikey_generate(char *key, char *prefix, char *hash);

/* Splits a presented key.  0, or -1 if it does not have the exact shape
 * (then nothing is looked up).  prefix: AOS_APIKEY_PREFIX_LEN+1 bytes;
 * *secret points into key. */
int aos_apikey_parse(const char *key, size_t len, char *prefix, const char **secret);

/* hex SHA-256 of the secret into hash (AOS_APIKEY_HASH_LEN+1 bytes). */
void aos_apikey_hash(const char *secret, size_t len, char *hash);

#endif
