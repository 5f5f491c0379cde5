/*
 * The orchestration engine: worker threads that claim runs from the
 * store-backed queue, execute their steps through agent plugins, and
 * checkpoint every step by group commit.
 *
 * Threads: `engine.workers` workers (each executes one step at a time: a
 * plugin's step() blocks its worker only; between steps a worker takes
 * whichever claimed run is ready, so it keeps several runs in flight), one
 * committer (the group commit of checkpoints: one transaction for every
 * checkpoint pending within engine.checkpoint_window, up to
 * engine.checkpoint_batch, which also claims the runs the workers need
 * next), one keeper (renews the leases of runs in flight, expires
 * approvals, prunes finished runs).  None of them touches an HTTP loop.
 *
 * Guarantees (see store/runs.h): a step whose checkpoint committed is
 * never executed again; a step executed but not checkpointed (crash, lost
 * lease, timeout) is executed again -- steps are at-least-once, and the
 * step's idempotency key "<run>:<seq>" lets a plugin make outside effects
 * exactly-once.  A dead node's runs are taken over when their lease
 * expires (engine.lease).  Each checkpoint, its run's new state, its usage,
 * the budget reservation of the next step and the events it causes are
 * one transaction.
 */
#ifndef AOS_ORCH_ENGINE_H
#define AOS_ORCH_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

struct aos_store;
struct aos_pii;
struct aos_events;
struct aos_engine;

/* Starts the engine's threads (none if conf->workers == 0: an api-only
 * node).  The settings are copied: a reload does not change them.
 * pii and events may be NULL.  NULL with err on failure. */
struct aos_engine *aos_engine_start(const struct aos_conf_engine *conf, struct aos_store *store,
                                    const struct aos_pii *pii, struct aos_events *events, char *err,
                                    size_t errlen);
/* Workers claim nothing until enabled: the node enables its engine once
 * the store is connected, migrated and holds the tenants.  Thread-safe. */
void aos_engine_set_enabled(struct aos_engine *engine, bool enabled);
/* Begins the drain without waiting (SIGTERM): workers finish their step,
 * checkpoint it and release their run; nothing new is claimed. */
void aos_engine_drain(struct aos_engine *engine);
/* A run was queued on this node: wakes an idle worker now rather than at
 * its next poll.  Thread-safe; engine may be NULL. */
void aos_engine_wake(struct aos_engine *engine);
/* Drains: workers finish the step they are executing, checkpoint it and
 * hand their run back to the queue; waits up to `timeout_s` for them,
 * then leaves stragglers to their lease.  Frees the engine. */
void aos_engine_stop(struct aos_engine *engine, double timeout_s);

struct aos_engine_stats {
    uint64_t steps;          /* steps executed (every attempt) */
    uint64_t checkpoints;    /* checkpoints committed */
    uint64_t commits;        /* group-commit transactions */
    uint64_t retries;        /* attempts that failed and were retried */
    uint64_t lease_lost;     /* checkpoints dropped: the run was no longer ours */
    uint64_t claims;         /* runs claimed */
    uint64_t takeovers;      /* claims of runs whose lease had expired */
    unsigned busy;           /* workers executing a run now */
    unsigned workers;
};
void aos_engine_get_stats(struct aos_engine *engine, struct aos_engine_stats *out);

#endif
