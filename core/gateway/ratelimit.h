/*
 * Rate limiting: token buckets, in process ("local") or shared by every
 * node through Redis ("redis").
 *
 * Semantics (both policies, identical numbers):
 *   capacity = burst tokens; refill = per_minute / 60 tokens per second,
 *   continuously (integer arithmetic: one token = 60,000,000 units, a
 *   microsecond adds per_minute units, so nothing drifts).  A bucket nobody
 *   touched starts full, so with the defaults exactly 60 immediate reads
 *   and 30 immediate writes pass, the 61st read / 31st write is refused, and
 *   one second later 5 more reads (300/60) pass.  per_minute is the
 *   sustained rate, burst the capacity: per_minute + burst would let a
 *   client take 360 reads at once, which is not what the issue specifies.
 *
 * A check takes one token from EVERY key it is given or from none (the
 * request passes only when all keys have a token; a refused request
 * charges nothing).  READ and WRITE buckets are separate even for the same
 * key string.  Redis: one Lua script per call (EVALSHA; NOSCRIPT falls
 * back to EVAL and reloads), atomic, clock = Redis TIME, an expiry on
 * every key written (a key expires when its bucket would be full again,
 * which is the same as absent); keys are <prefix>"2:"<r|w>":"<key>, the
 * value "units:last_us".  Multi-key scripts need every key in one hash
 * slot: Redis Cluster is not supported.
 *
 * Coalescing (Redis): a loop has at most one call in flight per key set
 * and rate.  Checks for that set made while it is in flight, or in the
 * same loop iteration, wait and go as ONE call with cost n; the script
 * answers how many of the n get a token, and the first ones in arrival
 * order do -- each check's result (allowed, remaining, reset, Retry-After)
 * is what n checks in a row would have got.  A lone check is sent at once
 * (at the end of the loop iteration, before hiredis would write anyway).
 * Several nodes still share one budget: every call is one atomic script.
 *
 * Threads: aos_ratelimit_new, the setters and aos_ratelimit_attach_loop
 * run before any loop runs; aos_ratelimit_check runs on `loop`'s thread
 * (any thread for the local policy); aos_ratelimit_set_limits from any
 * thread at any time; aos_ratelimit_free after every loop has stopped.
 */
#ifndef AOS_GATEWAY_RATELIMIT_H
#define AOS_GATEWAY_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/conf.h"

struct aos_ratelimit;
struct aos_loop;

enum aos_rl_class { AOS_RL_READ = 0, AOS_RL_WRITE = 1 };

struct aos_rl_result {
    bool allowed;
    int limit;               /* per_minute of the applied policy; 0 when limits are disabled */
    int burst;               /* bucket capacity */
    int window_s;            /* 60 */
    int remaining;           /* whole tokens left after this check, lowest over the keys;
                          * -1 = unknown (Redis down, redis_fail "open": nothing counted) */
    int reset_s;             /* seconds until every key's bucket is full again (rounded up) */
    int retry_after_s;       /* refused: seconds until every key has a token again (>= 1); else 0 */
    const char *policy_name; /* "read" | "write" (static) */
    bool degraded;           /* Redis policy, Redis unavailable: answered by redis_fail */
    bool unavailable;        /* redis_fail = "closed" and Redis down: refused, answer 503 (not 429) */
};

/* Called exactly once per check, on `loop`'s thread (or on the calling
 * thread, before aos_ratelimit_check returns, when answered locally).
 * r is valid only during the call. */
typedef void (*aos_rl_done_fn)(void *arg, const struct aos_rl_result *r);

/* Copies limits (enabled, read, write, exempt, policy, redis_fail) and redis (url,
 * connect_timeout); neither pointer is kept.  Tenant overrides come with
 * aos_ratelimit_set_limits.  Returns NULL (and logs why) on out of memory,
 * an unknown policy/redis_fail, or policy "redis" without a usable
 * redis.url ("redis://[:password@]host[:port][/db]" or "unix:///path"). */
struct aos_ratelimit *aos_ratelimit_new(const struct aos_conf_limits *limits,
                                        const struct aos_conf_redis *redis);

/* Policy "redis": opens this loop's Redis connection (asynchronous, via
 * the hiredis libevent adapter; reconnects on its own with backoff).  Call
 * once per HTTP loop, before the loops run.  A no-op for the local policy.
 * Returns 0 or -1 (out of memory; a Redis that is down is not an error). */
int aos_ratelimit_attach_loop(struct aos_ratelimit *rl, struct aos_loop *loop);

/* Reload: new enabled flag, default rates, exempt paths, redis_fail and per-tenant
 * overrides (tenants with limits_set; ntenants may be 0).  Everything is
 * copied.  The policy itself (local/redis) is fixed at aos_ratelimit_new.
 * Thread-safe; checks already started keep the old numbers.  Returns 0 or
 * -1 (out of memory or bad redis_fail: the old limits stay). */
int aos_ratelimit_set_limits(struct aos_ratelimit *rl, const struct aos_conf_limits *limits,
                             const struct aos_conf_tenant *tenants, size_t ntenants);

/* Takes one token from every key or from none.  Keys are the caller's
 * strings, e.g. {"p:<tenant>:<subject>", "ip:<addr>"}, copied; duplicates
 * count once.  tenant_id (canonical UUID) selects that tenant's override;
 * NULL or unknown = defaults.  loop may be NULL for the local policy; for
 * the Redis policy a loop that was not attached is treated as Redis down.
 * done(arg, result) runs exactly once (see aos_rl_done_fn).  Limits
 * disabled: allowed, limit 0, answered inline. */
void aos_ratelimit_check(struct aos_ratelimit *rl, struct aos_loop *loop, enum aos_rl_class cls,
                         const char *tenant_id, const char *const *keys, size_t nkeys, aos_rl_done_fn done,
                         void *arg);

/* Whether path starts with one of limits.exempt (the current limits, so a
 * reload applies).  Plain prefix match on the raw path: the caller passes
 * the path without the query string.  Thread-safe. */
bool aos_ratelimit_is_exempt(struct aos_ratelimit *rl, const char *path);

#define AOS_RL_MAX_HEADERS 6

struct aos_rl_header {
    const char *name; /* static string */
    char value[64];
};

/* Fills out[0..max) with the response headers for r, in this order:
 *   RateLimit-Policy: "read";q=300;w=60
 *   RateLimit: "read";r=<remaining>;t=<reset_s>
 *   X-RateLimit-Limit: 300, X-RateLimit-Remaining, X-RateLimit-Reset (= reset_s)
 *   Retry-After: <retry_after_s>          (refused only)
 * Returns how many were written (at most max).  Limits disabled (limit 0):
 * 0.  Degraded and allowed without counting ("open"): the policy only.
 * Unavailable: only Retry-After (the answer is a 503). */
size_t aos_ratelimit_headers(const struct aos_rl_result *r, struct aos_rl_header *out, size_t max);

/* Frees everything.  Checks still waiting for Redis are answered first
 * (by redis_fail, on the calling thread). */
void aos_ratelimit_free(struct aos_ratelimit *rl);

/* ---- knobs, mostly for tests and benchmarks; call before any check ---- */

/* Clock of the local buckets, in microseconds (default CLOCK_MONOTONIC). */
typedef int64_t (*aos_rl_clock_fn)(void *arg);
void aos_ratelimit_set_clock(struct aos_ratelimit *rl, aos_rl_clock_fn now_us, void *arg);
/* Prefix of Redis keys (default "aos:rl:"); copied.  The connections are
 * named "aosd-rl:<prefix>" (CLIENT SETNAME).  Returns 0 or -1. */
int aos_ratelimit_set_prefix(struct aos_ratelimit *rl, const char *prefix);
/* Upper bound on local buckets (default 200000).  Buckets live in 16
 * shards of max/16 each, at least 16 per shard (so the effective minimum
 * is 256).  A full shard drops its least recently used bucket (a bucket
 * idle long enough is full again, the same as absent). */
void aos_ratelimit_set_max_buckets(struct aos_ratelimit *rl, size_t max);
/* Seconds a Redis command may take before Redis counts as down
 * (default redis.connect_timeout). */
void aos_ratelimit_set_timeout(struct aos_ratelimit *rl, double seconds);
/* Number of local buckets alive now (all shards). */
size_t aos_ratelimit_local_count(struct aos_ratelimit *rl);
/* Whether this loop's Redis connection is up (for tests and /health). */
bool aos_ratelimit_redis_up(struct aos_ratelimit *rl, struct aos_loop *loop);
/* Script calls sent to Redis so far, all loops (coalesced checks count
 * once; a NOSCRIPT retry counts again).  Any thread. */
uint64_t aos_ratelimit_redis_calls(struct aos_ratelimit *rl);

#endif
