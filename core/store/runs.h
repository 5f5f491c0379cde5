/*
 * Runs, their checkpointed steps, approvals and budget reservations: the
 * store side of the orchestration engine (core/orch/engine.c) and of the
 * runs/approvals API.  Conventions as in store/ops.h: every operation on a
 * tenant's rows takes the tenant id; a row of another tenant is NOT_FOUND.
 * The engine's queue operations (claim, lease renewal, approval expiry,
 * pruning) are the deliberate cross-tenant exceptions, named as such.
 *
 * The run row is its own queue entry (db/sqlite/0001_initial.up.sql):
 *   queued            claimable once run_after has passed
 *   running           owned by lease_owner until lease_expires; a run whose
 *                     lease expired is taken over (its worker died or hung)
 *   waiting_approval  until its pending approval is decided or expires
 *   budget_exceeded   until resumed (POST /runs/{id}/resume)
 *   succeeded | failed | cancelled   final
 * Steps below next_step are checkpointed: their results are in `steps`
 * and they are never executed again.
 */
#ifndef AOS_STORE_RUNS_H
#define AOS_STORE_RUNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/ops.h"

#define AOS_RUN_STATUS_LEN 20 /* "waiting_approval" + NUL, with room */
#define AOS_WORKER_ID_LEN 128

struct aos_run {
    char id[AOS_ID_LEN];
    char tenant_id[AOS_ID_LEN];
    char agent_id[AOS_ID_LEN];    /* "" for a workflow run */
    char workflow_id[AOS_ID_LEN]; /* "" for an agent run */
    char status[AOS_RUN_STATUS_LEN];
    char *created_by;
    char *input;  /* JSON */
    char *state;  /* JSON or NULL: the last CONTINUE state */
    char *output; /* JSON or NULL: final output; between workflow stages, the next stage's input */
    char *error;  /* NULL unless failed */
    int64_t next_step;
    int64_t attempt; /* failed tries of next_step so far */
    int64_t stage;   /* workflow stage (0 for agent runs) */
    bool cancel_requested;
    int64_t tokens_in, tokens_out, cost_micro_usd;
    char reserved_day[AOS_DAY_LEN]; /* "" when no reservation is held */
    int64_t reserved_tokens, reserved_micro_usd;
    int64_t run_after;
    int64_t created_at, updated_at;
    int64_t started_at, finished_at; /* 0 = not yet */
};
void aos_run_clear(struct aos_run *r);
void aos_runs_free(struct aos_run *r, size_t n);
/* Whether status is succeeded, failed or cancelled. */
bool aos_run_status_final(const char *status);

struct aos_step_row {
    int64_t seq;
    char agent_id[AOS_ID_LEN];
    int64_t attempt;
    char outcome[16]; /* done | continue | needs_approval | failed */
    char *result;     /* JSON or NULL */
    char *error;      /* NULL unless failed */
    int64_t tokens_in, tokens_out, cost_micro_usd;
    int64_t started_at, finished_at;
};
void aos_step_rows_free(struct aos_step_row *s, size_t n);

/* ------------------------------------------------------------ API side */

/* Queues a run of an agent (agent_id) or of a workflow (workflow_id):
 * exactly one is non-NULL and must be a live row of the tenant
 * (NOT_FOUND otherwise).  input: a JSON object text.  Appends nothing:
 * the caller appends the run.queued event in the same transaction. */
int aos_store_run_create(struct aos_store_tx *tx, const char *tenant_id, const char *agent_id,
                         const char *workflow_id, const char *created_by, const char *input,
                         char id_out[AOS_ID_LEN], char *err, size_t errlen);
int aos_store_run_get(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, struct aos_run *out,
                      char *err, size_t errlen);
/* The run's checkpointed steps in order.  *out malloc'd: aos_step_rows_free. */
int aos_store_run_steps(struct aos_store_tx *tx, const char *tenant_id, const char *run_id,
                        struct aos_step_row **out, size_t *n, char *err, size_t errlen);
/* One page of the tenant's runs, NEWEST first; status and agent_id
 * filter when non-NULL.  cursor/next_cursor as aos_store_agent_list. */
int aos_store_run_list(struct aos_store_tx *tx, const char *tenant_id, const char *status, const char *agent_id,
                       const char *cursor, size_t limit, struct aos_run **out, size_t *n,
                       char next_cursor[AOS_CURSOR_LEN], char *err, size_t errlen);

enum aos_run_cancel_result {
    AOS_RUN_CANCELLED = 1,        /* it was not running: now cancelled */
    AOS_RUN_CANCEL_REQUESTED = 2, /* running: its worker stops it at the next checkpoint */
    AOS_RUN_ALREADY_FINAL = 3     /* nothing done; the run had finished */
};
/* Cancels a run.  A pending approval of it is closed as rejected, and a
 * held budget reservation is released (a run parked by a draining node
 * keeps its reservation while queued).  *result says what happened. */
int aos_store_run_cancel(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, const char *by,
                         int *result, char *err, size_t errlen);
/* Requeues a budget_exceeded run (after its budget was raised).
 * CONSTRAINT if the run is in another state. */
int aos_store_run_resume(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, char *err,
                         size_t errlen);

/* ------------------------------------------------------------ approvals */

struct aos_approval {
    char id[AOS_ID_LEN];
    char tenant_id[AOS_ID_LEN];
    char run_id[AOS_ID_LEN];
    int64_t step_seq;
    char *proposal; /* JSON */
    char status[16]; /* pending | approved | rejected | expired */
    char *requested_by;
    char *decided_by; /* NULL while pending and when expired */
    char *comment;
    int64_t created_at, decided_at, expires_at; /* 0 = none */
};
void aos_approval_clear(struct aos_approval *a);
void aos_approvals_free(struct aos_approval *a, size_t n);

int aos_store_approval_get(struct aos_store_tx *tx, const char *tenant_id, const char *approval_id,
                           struct aos_approval *out, char *err, size_t errlen);
/* One page, OLDEST first; status filter when non-NULL. */
int aos_store_approval_list(struct aos_store_tx *tx, const char *tenant_id, const char *status, const char *cursor,
                            size_t limit, struct aos_approval **out, size_t *n, char next_cursor[AOS_CURSOR_LEN],
                            char *err, size_t errlen);

enum aos_decide_result {
    AOS_DECIDED = 1,        /* recorded now; the run is queued again */
    AOS_DECIDED_SAME = 2,   /* already decided the same way: nothing changed (a retried request) */
    AOS_DECIDED_OTHER = 3,  /* already decided otherwise, or expired: 409 */
    AOS_DECIDE_FOUR_EYES = 4 /* `by` started the run and four_eyes is on: 403 */
};
/* Records a decision on a pending approval once, and queues its run.
 * out receives the approval as it stands after the call. */
int aos_store_approval_decide(struct aos_store_tx *tx, const char *tenant_id, const char *approval_id,
                              const char *by, bool approve, const char *comment, bool four_eyes, int *result,
                              struct aos_approval *out, char *err, size_t errlen);

/* ------------------------------------------------------------ engine side */

/* Budgets that apply to one step: the tenant's (config) and the agent's
 * (its row); 0 or less = no limit on that measure. */
struct aos_budget_limits {
    int64_t tenant_tokens_day, tenant_tokens_month, tenant_micro_usd_day, tenant_micro_usd_month;
    int64_t agent_tokens_day, agent_tokens_month, agent_micro_usd_day, agent_micro_usd_month;
};
bool aos_budget_limits_any(const struct aos_budget_limits *b);

/* What a worker needs to execute the run's next step, read in the claim
 * transaction. */
struct aos_claimed_run {
    struct aos_run run;
    struct aos_agent agent;    /* the agent of the current step (workflow: of run.stage) */
    bool agent_deleted;        /* the agent was deleted after the run was queued */
    int64_t stages;            /* 1 for an agent run; the workflow's length */
    char *decision;            /* JSON for the step after an approval, else NULL */
    bool taken_over;           /* the previous owner's lease expired */
};
void aos_claimed_run_clear(struct aos_claimed_run *c);

/* Cross-tenant: claims one run of `tenant_id` for worker_id: first a run
 * whose lease expired (its attempt counts as failed), else the oldest
 * queued run due by now.  AOS_DB_NOT_FOUND when the tenant has none.  On
 * PostgreSQL rows locked by another claimer are skipped (FOR UPDATE SKIP
 * LOCKED).  The engine goes round the tenants to be fair. */
int aos_store_run_claim(struct aos_store_tx *tx, const char *tenant_id, const char *worker_id, int64_t now,
                        int64_t lease_ms, struct aos_claimed_run *out, char *err, size_t errlen);
/* Cross-tenant, like aos_store_run_claim, for up to max runs of one
 * tenant at once: out[0..*n) in claim order (expired leases first), run i
 * leased to owners[i].  On PostgreSQL one statement for the claims (plus
 * one agent read per distinct agent, and the reads a workflow or a
 * decision needs); on SQLite one claim after the other.  *n == 0: none. */
int aos_store_run_claim_many(struct aos_store_tx *tx, const char *tenant_id, const char *const *owners, size_t max,
                             int64_t now, int64_t lease_ms, struct aos_claimed_run *out, size_t *n, char *err,
                             size_t errlen);
/* Active tenants that have a claimable run now: ids into out (up to max).
 * Cheap: one probe of the claim and lease indexes per active tenant. */
int aos_store_runs_ready_tenants(struct aos_store_tx *tx, int64_t now, char (*out)[AOS_ID_LEN], size_t max,
                                 size_t *n, char *err, size_t errlen);
/* Extends the lease of runs this worker still owns.  *renewed counts them. */
int aos_store_run_renew(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, const char *worker_id,
                        int64_t lease_expires, bool *renewed, char *err, size_t errlen);

/* Reserves `tokens`/`micro_usd` for the run's next step against limits, in
 * the usage row of (tenant, day, agent) and on the run.  A run that holds
 * a reservation already keeps it (*reserved = true).  *reserved = false
 * when a limit would be exceeded (nothing written).  *warn receives the
 * names of limits whose spend+reservations now reach 80% ("" if none). */
int aos_store_budget_reserve(struct aos_store_tx *tx, const char *tenant_id, const char *run_id,
                             const char *agent_id, const char *day, int64_t tokens, int64_t micro_usd,
                             const struct aos_budget_limits *limits, bool *reserved, char *warn, size_t warnlen,
                             char *err, size_t errlen);

/* The outcome of one executed step, as the engine checkpoints it. */
enum aos_checkpoint_kind {
    AOS_CP_CONTINUE = 1,  /* state for the next step; the run stays running */
    AOS_CP_STAGE_DONE,    /* a workflow stage finished: output feeds the next stage (run requeued) */
    AOS_CP_DONE,          /* the run succeeded with output */
    AOS_CP_APPROVAL,      /* proposal stored; the run waits */
    AOS_CP_FAILED,        /* the run failed with error */
    AOS_CP_RETRY          /* not a checkpoint: the attempt failed, retry at run_after */
};

struct aos_checkpoint {
    const char *tenant_id;
    const char *run_id;
    const char *worker_id;
    const char *agent_id;
    int64_t seq; /* the step executed: must equal the run's next_step */
    int64_t attempt;
    int kind;    /* enum aos_checkpoint_kind */
    const char *result; /* JSON: state, output or proposal per kind; NULL if none */
    const char *error;  /* FAILED / RETRY: why */
    int64_t tokens_in, tokens_out, cost_micro_usd;
    int64_t started_at, finished_at;
    int64_t run_after;         /* RETRY: not before */
    int64_t lease_expires;     /* CONTINUE, STAGE_DONE: the renewed lease */
    int64_t approval_expires;  /* APPROVAL: 0 = never */
    /* APPROVAL: "approved" or "rejected" when the autonomy mode decides at
     * once (the approval is stored decided by "autonomy:<mode>" and the run
     * queued again); NULL: a person decides, the run waits. */
    const char *auto_decision;
    const char *autonomy;      /* the mode, for the record */
    char approval_id[AOS_ID_LEN]; /* APPROVAL: filled by the call */
};

enum aos_checkpoint_result {
    AOS_CP_OK = 1,         /* written; the run's new status is in *status */
    AOS_CP_LEASE_LOST = 2  /* the run is no longer this worker's: nothing written */
};
/* Writes one step's checkpoint in the caller's write transaction: the step
 * row, the run's new state and usage, and settles the step's budget
 * reservation (releases it, adds the actual usage to the usage row of the
 * reservation's day, or of `day` without one).  A run whose cancel was
 * requested ends cancelled here.  status receives the run's status after
 * the call (e.g. "running", "cancelled").  Events are the caller's.  No
 * statement fails for a lost lease (several checkpoints share one
 * transaction in a group commit). */
int aos_store_checkpoint(struct aos_store_tx *tx, struct aos_checkpoint *cp, const char *day, int *result,
                         char status[AOS_RUN_STATUS_LEN], char *err, size_t errlen);
/* The same for n checkpoints of different runs in one transaction (a
 * group commit): results[i] and status[i] as above for cps[i] (with
 * days[i]).  On PostgreSQL a constant number of statements whatever n
 * (one owner check FOR UPDATE, one INSERT of the steps, one UPDATE of the
 * runs, one usage upsert per (tenant, day, agent)); on SQLite one
 * checkpoint after the other.  Any failure fails the whole call (retry the
 * checkpoints one by one to find the culprit). */
int aos_store_checkpoints(struct aos_store_tx *tx, struct aos_checkpoint *const *cps, const char *const *days,
                          size_t n, int *results, char (*status)[AOS_RUN_STATUS_LEN], char *err, size_t errlen);
/* Ends a claimed run without executing a step (its agent was deleted, its
 * plugin is gone, its cancel was requested before a node parked it, the
 * budget is exhausted): status failed (with error), cancelled or
 * budget_exceeded; releases the lease and any budget reservation held.  LEASE_LOST as for checkpoints. */
int aos_store_run_stop(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, const char *worker_id,
                       const char *status, const char *error, int *result, char *err, size_t errlen);

/* Hands a claimed run back to the queue (a draining node): it keeps its
 * budget reservation, which the next claim reuses. */
int aos_store_run_release(struct aos_store_tx *tx, const char *tenant_id, const char *run_id, const char *worker_id,
                          int *result, char *err, size_t errlen);

/* Cross-tenant housekeeping: pending approvals whose expires_at passed are
 * closed as expired and their runs queued (the step then sees a
 * rejection).  Up to limit; ids of the affected (tenant, run, approval)
 * triples are returned for events.  *out malloc'd (free()). */
struct aos_expired_approval {
    char tenant_id[AOS_ID_LEN];
    char run_id[AOS_ID_LEN];
    char approval_id[AOS_ID_LEN];
};
int aos_store_approvals_expire(struct aos_store_tx *tx, int64_t now, size_t limit,
                               struct aos_expired_approval **out, size_t *n, char *err, size_t errlen);
/* Cross-tenant retention: deletes up to limit runs finished before
 * older_than (their steps and approvals go with them). */
int aos_store_runs_prune(struct aos_store_tx *tx, int64_t older_than, size_t limit, size_t *deleted, char *err,
                         size_t errlen);

#endif
