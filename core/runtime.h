/*
 * The runtime generation: the configuration and plugin set in force.
 *
 * SIGHUP builds a complete new generation (config parsed and validated,
 * plugins loaded and initialised) and only then publishes it; anything
 * that fails leaves the old generation in place.  Readers (request
 * handlers, workers) take a reference for as long as they use it, so an
 * old generation is freed only after its last user lets go.
 */
#ifndef AOS_RUNTIME_H
#define AOS_RUNTIME_H

#include <stdatomic.h>
#include <stdint.h>

#include "auth/jwt.h"

struct aos_conf;
struct aos_plugin_set;

struct aos_runtime {
    atomic_int refs;
    uint64_t generation;           /* 1 for the start-up config, +1 per reload */
    struct aos_conf *conf;         /* owned */
    struct aos_plugin_set *plugins; /* owned */
    struct aos_jwt_key jwt;        /* owned; re-read on every reload (key rotation) */
};

/* Takes ownership of conf and plugins (and of *jwt, which is moved and
 * zeroed; may be NULL).  Returns NULL on allocation failure
 * (then the caller still owns both). */
struct aos_runtime *aos_runtime_new(struct aos_conf *conf, struct aos_plugin_set *plugins, struct aos_jwt_key *jwt);

/* Makes rt the current generation, taking over the caller's reference;
 * the previous one is released. */
void aos_runtime_publish(struct aos_runtime *rt);
/* Current generation with one more reference (release it), or NULL. */
struct aos_runtime *aos_runtime_acquire(void);
void aos_runtime_release(struct aos_runtime *rt);
/* Drops the current generation (at exit). */
void aos_runtime_shutdown(void);

#endif
