/*
 * Internals shared by the hub (hub.c: poller, ring, Redis) and the SSE
 * writer (sse.c: subscribers on the HTTP loops).  Not for other files.
 *
 * Threads: the hub runs on a loop thread of its own; each shard (the SSE
 * streams of one HTTP loop) runs only on that loop's thread.  They share
 * the ring, under ring_mu, and the counters and settings, which are
 * atomics.
 *
 * No gap, no duplicate: events commit in id order (store/events.h), the
 * hub reads them in id order, and every subscriber remembers the last id
 * it has been given (`last_id`): it is handed only ids above it, from the
 * ring (catching up), from the store (when the ring no longer reaches that
 * far back), or from the batches the hub posts to its loop (once caught
 * up).  A subscriber switches to the batches under ring_mu when it has
 * read the ring up to the high-water mark, so every later batch holds only
 * ids it has not seen and every earlier one only ids it has.
 */
#ifndef AOS_EVENTS_HUB_INTERNAL_H
#define AOS_EVENTS_HUB_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "events/events.h"
#include "store/events.h"

struct aos_pool;
struct aos_loop;
struct event;

/* One event encoded once as an SSE frame ("id: N\ndata: {...}\n\n"),
 * shared by every subscriber that gets it.  Static frames (heartbeats)
 * are never counted or freed. */
struct aos_ev_frame {
    atomic_uint refs;
    bool is_static;
    int64_t id; /* 0: not an event (heartbeat, retry hint) */
    char tenant_id[AOS_ID_LEN];
    char type[AOS_EVENT_TYPE_MAX + 1];
    char run_id[AOS_ID_LEN];
    size_t len;
    char data[];
};

/* Encodes e (refs = 1), or NULL out of memory. */
struct aos_ev_frame *aos_ev_frame_new(const struct aos_event *e);
void aos_ev_frame_ref(struct aos_ev_frame *f);
void aos_ev_frame_unref(struct aos_ev_frame *f);

/* New events in id order, posted by the hub to every shard. */
struct aos_ev_batch {
    atomic_uint refs;
    size_t n;
    struct aos_ev_frame *frames[];
};
void aos_ev_batch_unref(struct aos_ev_batch *b);

struct aos_ev_shard;

struct aos_events {
    struct aos_store *store;
    struct aos_pool *pool;
    struct aos_loop *loop; /* the hub's own thread */
    struct event *poll_timer;
    struct event *wake_ev;  /* aos_events_committed: publish, then poll */
    struct event *again_ev; /* more rows than one read: poll again */
    atomic_bool wake_pending;
    atomic_bool started;
    atomic_bool draining;
    atomic_bool ready; /* high-water mark known */
    /* A commit was not read because no stream was open (only the poll
     * timer reads then): the high-water mark may lag the store, so the
     * next stream to open waits for a fresh starting point. */
    atomic_bool lagging;
    /* AOS_TESTING=1 with AOS_TEST_HUB_START_DELAY_MS: the read of a new
     * starting point is held back this long, so that tests can show no
     * stream starts before it (test_events.py). */
    int test_start_delay_ms;

    /* settings (events.*), reloadable */
    atomic_llong poll_ms;
    atomic_llong heartbeat_ms;
    atomic_llong retry_ms;
    atomic_llong client_buffer;
    atomic_llong max_subscribers;
    atomic_llong token_ttl;

    /* the ring of recent frames: ids in (floor, high_water], increasing */
    pthread_mutex_t ring_mu;
    struct aos_ev_frame **ring;
    size_t ring_cap;
    size_t ring_head; /* index of the oldest */
    size_t ring_len;
    int64_t floor;      /* every id <= floor must come from the store */
    int64_t high_water; /* the highest id read from the store */

    struct aos_ev_shard **shards;
    size_t nshards;

    /* counters */
    atomic_llong subscribers; /* open or reserved */
    atomic_ullong delivered;
    atomic_ullong slow_disconnects;
    atomic_ullong refused;
    atomic_ullong polls;
    atomic_ullong poll_failures;
    atomic_ullong redis_wakeups;
    atomic_bool redis_up;
    bool poll_failing; /* hub thread: to log a failure once */

    struct ev_redis *redis; /* NULL without redis.url */
};

/* Reads up to max frames with id > after for tenant/filter from the ring
 * into out (each referenced: unref them), stopping once max_bytes have
 * been collected.  *pos receives the id up to which the ring has been
 * examined; *at_end whether that is the high-water mark.  Returns the
 * number of frames, or -1 when the ring no longer reaches back to `after`
 * (after < floor: go to the store). */
long aos_ev_ring_read(struct aos_events *hub, int64_t after, const char *tenant_id,
                      const struct aos_event_filter *filter, size_t max_bytes, struct aos_ev_frame **out,
                      size_t max, int64_t *pos, bool *at_end);
/* The ring's floor now (see above). */
int64_t aos_ev_ring_floor(struct aos_events *hub);

/* sse.c: the SSE streams of one HTTP loop. */
struct aos_ev_shard *aos_ev_shard_new(struct aos_events *hub, struct aos_loop *loop);
/* Closes every stream and frees the shard; the loop must not be running. */
void aos_ev_shard_free(struct aos_ev_shard *sh);
struct aos_loop *aos_ev_shard_loop(const struct aos_ev_shard *sh);
/* Hands a batch to the shard's loop (takes one reference of b). */
void aos_ev_shard_post_batch(struct aos_ev_shard *sh, struct aos_ev_batch *b);
/* Closes every stream of the shard, on its loop.  Thread-safe. */
void aos_ev_shard_post_close_all(struct aos_ev_shard *sh);
/* The hub has read its starting point: streams waiting for it begin.
 * Thread-safe. */
void aos_ev_shard_post_ready(struct aos_ev_shard *sh);
/* Applies a new heartbeat interval, on its loop.  Thread-safe. */
void aos_ev_shard_post_settings(struct aos_ev_shard *sh);

#endif
