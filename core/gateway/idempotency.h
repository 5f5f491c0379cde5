/*
 * Idempotency keys on POST (IETF draft "The Idempotency-Key HTTP Header
 * Field"; Stripe's behaviour).  A key is scoped to (tenant, principal, key)
 * and remembers a fingerprint of method, route and body plus the response:
 *   first request          -> claimed (in_progress), the handler runs
 *   repeat, same body      -> the stored status and body are replayed
 *   repeat, other body     -> 422
 *   repeat while running   -> 409
 * The claim is one INSERT ... ON CONFLICT DO NOTHING, so concurrent
 * duplicates can never both run.  A claim whose lease lapsed (the node died
 * mid-request) may be taken over; records expire after the window
 * (governance.retention.idempotency_hours).
 * The store calls block: pool threads only.
 */
#ifndef AOS_GATEWAY_IDEMPOTENCY_H
#define AOS_GATEWAY_IDEMPOTENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aos_store;

#define AOS_IDEM_KEY_MAX 255
#define AOS_IDEM_FINGERPRINT_LEN 64 /* hex SHA-256 */

/* 1..255 visible ASCII characters (0x21..0x7e). */
bool aos_idem_key_valid(const char *key);

/* hex SHA-256 over method, route pattern and body, unambiguously framed. */
void aos_idem_fingerprint(const char *method, const char *route, const char *body, size_t len,
                          char out[AOS_IDEM_FINGERPRINT_LEN + 1]);

enum aos_idem_outcome {
    AOS_IDEM_PROCEED = 0,     /* claimed: run the handler, then aos_idem_complete */
    AOS_IDEM_REPLAY = 1,      /* *stored holds the response to replay */
    AOS_IDEM_IN_PROGRESS = 2, /* the first request is still running: 409 */
    AOS_IDEM_MISMATCH = 3     /* same key, different request: 422 */
};

struct aos_idem_stored {
    int status;
    char *content_type; /* malloc'd, may be NULL */
    char *body;         /* malloc'd, NUL-terminated */
    size_t body_len;
};
void aos_idem_stored_clear(struct aos_idem_stored *s);

struct aos_idem_request {
    const char *tenant_id;
    const char *principal;
    const char *key;
    const char *fingerprint;
    int64_t now_ms;
    int64_t window_ms; /* how long a record is kept */
    int64_t lease_ms;  /* how long an in_progress claim holds */
};

/* Claims the key or reports what exists (expired records are replaced).
 * Returns AOS_DB_* with *outcome set on AOS_DB_OK. */
int aos_idem_begin(struct aos_store *store, const struct aos_idem_request *r, int *outcome,
                   struct aos_idem_stored *stored, char *err, size_t errlen);
/* Stores the response of a claimed key (state -> complete). */
int aos_idem_complete(struct aos_store *store, const struct aos_idem_request *r, int status,
                      const char *content_type, const char *body, size_t len, char *err, size_t errlen);
/* Gives up a claim still in progress (same fingerprint), so that a retry
 * runs the request again at once instead of getting 409 until the lease
 * lapses: for a response that cannot be stored (a body with a NUL byte:
 * aos_idem_complete refuses it with AOS_DB_ERROR).  AOS_DB_NOT_FOUND when
 * there is no such claim. */
int aos_idem_release(struct aos_store *store, const struct aos_idem_request *r, char *err, size_t errlen);
/* Deletes expired records of every tenant, at most `limit`; *deleted gets the count. */
int aos_idem_prune(struct aos_store *store, int64_t now_ms, size_t limit, size_t *deleted, char *err,
                   size_t errlen);

#endif
