#include "config.h"
/*
 * The orchestration engine (orch/engine.h).
 *
 * A claimed run is a "flight" until it leaves `running` on this node.  A
 * flight is ready (its last checkpoint committed: its next step may run),
 * executing (a worker calls the plugin), or committing (its checkpoint
 * waits for the committer).  Workers take ready flights, execute ONE step,
 * hand the checkpoint to the committer and take the next ready flight
 * without waiting: a flight goes back to the ready queue only once its
 * checkpoint has committed, so every checkpoint is durable before the
 * next step of its run starts, while a worker keeps several runs in flight
 * and a group commit can be larger than engine.workers.
 *
 * The committer writes every pending checkpoint in one transaction (group
 * commit) and, in the same transaction, claims new runs for the workers
 * that would otherwise idle: a run costs no write transaction of its own
 * to claim.  It claims while fewer flights are ready than workers are
 * idle (at most max(workers, checkpoint_batch) flights), so slow steps
 * keep about `workers` runs claimed and fast ones fill the batch.
 *
 * On PostgreSQL there are several committers (engine.committers, 2 by
 * default), each with the flights it claimed: while the server executes
 * one's batch, the other's travels or commits, and the server's work runs
 * on two backends.  Their transactions lock disjoint runs rows; the rows
 * they share (usage, the event lock) are taken in one order, last.
 *
 * Fairness: claiming goes round the tenants that have due runs (in id
 * order, starting after the tenant served last), so one tenant's queue of
 * thousands cannot starve another tenant's single run.  The list of
 * tenants with due runs is re-read when a tenant in it has no more, when a
 * run was queued on this node (aos_engine_wake), and at the end of a round
 * at most every READY_REFRESH_MS -- not before every claim.
 */
#include "orch/engine.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "events/events.h"
#include "log.h"
#include "loop.h"
#include "plugin.h"
#include "runtime.h"
#include "store/events.h"
#include "store/runs.h"
#include "store/store.h"

#define READY_TENANTS_MAX 256
#define READY_REFRESH_MS 20
#define EXPIRE_BATCH 100
#define PRUNE_BATCH 500
#define PRUNE_INTERVAL_MS 60000
#define EXPIRE_INTERVAL_MS 1000
#define RETRY_FIRST_MS 100
#define ERR_LEN 512

struct event_spec {
    char type[40];
    char *payload; /* JSON object text, malloc'd */
};
#define EVENTS_PER_ITEM 6

enum { OP_CHECKPOINT = 0, OP_RELEASE = 1 };

struct flight;
struct committer;

/* One checkpoint (or the release of a run back to the queue) waiting for
 * the committer.  Its strings belong to its flight. */
struct cp_item {
    struct flight *f;
    int op;
    struct aos_checkpoint cp;
    char day[AOS_DAY_LEN];
    bool reserve_next;
    struct aos_budget_limits limits;
    int64_t reserve_tokens, reserve_micro_usd;
    /* results, reset each time the transaction body runs */
    int rc;
    int result; /* enum aos_checkpoint_result */
    char status[AOS_RUN_STATUS_LEN];
    char err[ERR_LEN];
    struct event_spec events[EVENTS_PER_ITEM];
    size_t nevents;
    /* a store outage: tried again with backoff while the lease may hold */
    int64_t retry_wait, retry_at;
    struct cp_item *next;
};

/* What claiming one run produced, in the committer's transaction. */
struct claim {
    struct aos_engine *e;
    char tenant_id[AOS_ID_LEN];
    const char *owner;
    struct aos_runtime *rt;
    int64_t now;
    /* out */
    bool found;
    bool runnable; /* claimed and left running: execute it */
    struct aos_claimed_run c;
    const struct aos_plugin_instance *plugin;
    struct aos_budget_limits limits;
    int64_t reserve_tokens, reserve_micro_usd;
    char day[AOS_DAY_LEN];
    char autonomy[16]; /* the agent's mode, else the tenant's */
    struct event_spec events[EVENTS_PER_ITEM];
    size_t nevents;
};

struct flight {
    char owner[AOS_WORKER_ID_LEN]; /* lease_owner of the run: unique per claim */
    struct committer *cm;          /* the committer that claimed it writes all its checkpoints */
    struct claim cl;
    struct aos_runtime *rt; /* a reference held while in flight */
    struct cp_item it;
    char *result_text; /* the step's result while it commits */
    char perr[ERR_LEN];
    char failmsg[ERR_LEN + 64];
    bool first;     /* no step executed since the claim: the decision is for it */
    bool executing; /* guarded by e->lock, read by the keeper */
    int64_t step_started;
    struct flight *next;                /* the ready queue */
    struct flight *all_prev, *all_next; /* e->flights */
};

struct worker {
    struct aos_engine *e;
    pthread_t thread;
    bool started;
};

/* A committer: a thread with its own store connection (per transaction)
 * that writes the checkpoints of the flights it claimed.  Several of them
 * (engine.committers, PostgreSQL) keep several transactions in progress
 * at once: the server executes one batch's statements while another batch
 * travels or commits.  Their sets of runs are disjoint, so their
 * transactions lock different runs rows. */
struct committer {
    struct aos_engine *e;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t ready; /* items queued, a wake-up, or stop */
    struct cp_item *queue_head, *queue_tail;
    size_t queued;
    bool stop;
    bool wake_pending; /* runs were queued: look now */
    atomic_size_t nflights; /* flights it claimed and not yet ended */
    atomic_size_t nexec;    /* of which executing a step: their checkpoints come here */
    /* the committer thread's own */
    char (*tenants)[AOS_ID_LEN]; /* tenants with due runs, in id order */
    size_t ntenants;
    int64_t tenants_read_at;
    int64_t next_probe; /* no look at an empty queue before this, unless woken */
    char rr_last[AOS_ID_LEN]; /* tenant served last (fairness) */
};

struct aos_engine {
    struct aos_conf_engine conf;
    struct aos_store *store;
    const struct aos_pii *pii;
    struct aos_events *events;
    char node_id[96];
    size_t max_flights;

    /* flights: the ready queue and the list of all, for workers and keeper */
    pthread_mutex_t lock;
    pthread_cond_t work;      /* workers: a flight is ready, or stopping */
    pthread_cond_t keeper_cv; /* the keeper's sleep */
    atomic_bool stopping;     /* set under lock */
    atomic_bool enabled;
    struct flight *ready_head, *ready_tail;
    struct flight *flights;
    atomic_size_t nready, nexec, nflights;
    atomic_size_t starved; /* times a worker found nothing ready, since the last claim */

    struct worker *workers;
    size_t nworkers;

    /* the committers */
    struct committer *committers;
    size_t ncommitters;
    pthread_mutex_t claim_lock; /* decides how many runs a committer claims */
    size_t claiming;            /* claims decided and not yet ready, under claim_lock */
    atomic_uint_fast64_t claim_seq;

    pthread_t keeper;
    bool keeper_started;

    atomic_uint_fast64_t steps, checkpoints, commits, retries, lease_lost, claims, takeovers;
};

/* ------------------------------------------------------------ helpers */

static int64_t ms_of(double seconds) { return (int64_t)(seconds * 1000.0 + 0.5); }

static void timespec_in_ms(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Whether text[0..len) is one complete JSON value without NUL bytes: what
 * the store's CHECK (json_valid) and jsonb accept.  A plugin's bad JSON
 * must fail its run, not poison a group commit. */
static bool json_text_valid(const char *text, size_t len)
{
    struct json_tokener *tok;
    struct json_object *o;
    bool ok;

    if (text == NULL || len == 0 || memchr(text, '\0', len) != NULL)
        return false;
    if ((tok = json_tokener_new_ex(64)) == NULL)
        return false;
    o = json_tokener_parse_ex(tok, text, (int)len);
    ok = o != NULL && json_tokener_get_error(tok) == json_tokener_success &&
         json_tokener_get_parse_end(tok) == len;
    json_object_put(o);
    json_tokener_free(tok);
    return ok;
}

/* Exponential backoff with full jitter in [d/2, d], d = base * 2^attempt
 * capped at max; never below the plugin's own retry_after. */
static int64_t backoff_ms(const struct aos_conf_engine *c, int64_t attempt, int64_t at_least)
{
    double d = c->retry_base;
    for (int64_t i = 0; i < attempt && d < c->retry_max; i++)
        d *= 2;
    if (d > c->retry_max)
        d = c->retry_max;
    int64_t full = ms_of(d);
    int64_t delay = full / 2 + (full > 1 ? (int64_t)arc4random_uniform((uint32_t)(full / 2 + 1)) : 0);
    return delay > at_least ? delay : at_least;
}

/* Builds a payload object; takes ownership of o. */
static char *payload_text(struct json_object *o)
{
    const char *s = o != NULL ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : NULL;
    char *text = s != NULL ? strdup(s) : NULL;
    json_object_put(o);
    return text;
}

static void add_event(struct event_spec *ev, size_t *n, size_t max, const char *type, struct json_object *payload)
{
    if (*n >= max) {
        json_object_put(payload);
        return;
    }
    snprintf(ev[*n].type, sizeof ev[*n].type, "%s", type);
    ev[*n].payload = payload_text(payload);
    (*n)++;
}

static void events_clear(struct event_spec *ev, size_t *n)
{
    for (size_t i = 0; i < *n; i++) {
        free(ev[i].payload);
        ev[i].payload = NULL;
    }
    *n = 0;
}

static int events_append(struct aos_engine *e, struct aos_store_tx *tx, const char *tenant_id, const char *run_id,
                         const struct event_spec *ev, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int rc = aos_event_append(tx, e->pii, tenant_id, ev[i].type, run_id, ev[i].payload, NULL, err, errlen);
        if (rc != AOS_DB_OK)
            return rc;
    }
    return AOS_DB_OK;
}

/* The events of a whole group commit, redacted as aos_event_append does,
 * written in one call (on PostgreSQL two statements). */
struct event_batch {
    struct aos_event_new *rows;
    char **redacted;
    size_t n, cap;
};

static int event_batch_add(struct aos_engine *e, struct event_batch *eb, const char *tenant_id, const char *run_id,
                           const struct event_spec *ev, size_t n, int64_t now, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (eb->n == eb->cap) {
            size_t cap = eb->cap > 0 ? eb->cap * 2 : 64;
            struct aos_event_new *rows = realloc(eb->rows, cap * sizeof *rows);
            if (rows != NULL)
                eb->rows = rows;
            char **red = realloc(eb->redacted, cap * sizeof *red);
            if (red != NULL)
                eb->redacted = red;
            if (rows == NULL || red == NULL) {
                aos_db_seterr(err, errlen, "out of memory");
                return AOS_DB_ERROR;
            }
            eb->cap = cap;
        }
        char *payload = aos_event_redact_payload(e->pii, ev[i].payload != NULL ? ev[i].payload : "{}");
        if (payload == NULL) {
            aos_db_seterr(err, errlen, "event payload must be a JSON object");
            return AOS_DB_CONSTRAINT;
        }
        eb->redacted[eb->n] = payload;
        eb->rows[eb->n] = (struct aos_event_new){tenant_id, ev[i].type, run_id, payload, now};
        eb->n++;
    }
    return AOS_DB_OK;
}

static void event_batch_free(struct event_batch *eb)
{
    for (size_t i = 0; i < eb->n; i++)
        free(eb->redacted[i]);
    free(eb->rows);
    free(eb->redacted);
}

static struct json_object *obj_int(struct json_object *o, const char *k, int64_t v)
{
    json_object_object_add(o, k, json_object_new_int64(v));
    return o;
}

static struct json_object *obj_str(struct json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, v != NULL ? json_object_new_string(v) : NULL);
    return o;
}

/* A stored JSON text as a value of an event payload (redacted by the
 * event writer like any string in it). */
static struct json_object *obj_json(struct json_object *o, const char *k, const char *text)
{
    struct json_object *v = text != NULL ? json_tokener_parse(text) : NULL;
    json_object_object_add(o, k, v);
    return o;
}

/* Transitions of the run that end a checkpoint, as events. */
static void status_events(struct event_spec *ev, size_t *n, size_t max, const char *status, const char *error,
                          const char *output)
{
    if (strcmp(status, "succeeded") == 0)
        add_event(ev, n, max, "run.succeeded", obj_json(json_object_new_object(), "output", output));
    else if (strcmp(status, "failed") == 0)
        add_event(ev, n, max, "run.failed", obj_str(json_object_new_object(), "error", error));
    else if (strcmp(status, "cancelled") == 0)
        add_event(ev, n, max, "run.cancelled", json_object_new_object());
    else if (strcmp(status, "waiting_approval") == 0)
        add_event(ev, n, max, "run.waiting_approval", json_object_new_object());
    else if (strcmp(status, "budget_exceeded") == 0)
        add_event(ev, n, max, "run.budget_exceeded", obj_str(json_object_new_object(), "limit", error));
}

/* ------------------------------------------------------------ budgets */

/* The limits of one step: the tenant's from config, the agent's from its row. */
static void limits_for(const struct aos_conf *conf, const char *tenant_id, const struct aos_agent *agent,
                       struct aos_budget_limits *out)
{
    const struct aos_conf_tenant *t = conf != NULL ? aos_conf_tenant_find(conf, tenant_id) : NULL;

    memset(out, 0, sizeof *out);
    if (t != NULL) {
        out->tenant_tokens_day = t->budget_tokens_day;
        out->tenant_tokens_month = t->budget_tokens_month;
        out->tenant_micro_usd_day = t->budget_micro_usd_day;
        out->tenant_micro_usd_month = t->budget_micro_usd_month;
    }
    out->agent_tokens_day = agent->budget_tokens_day;
    out->agent_tokens_month = agent->budget_tokens_month;
    out->agent_micro_usd_day = agent->budget_micro_usd_day;
    out->agent_micro_usd_month = agent->budget_micro_usd_month;
}

static void reserve_amounts(const struct aos_engine *e, const struct aos_agent *agent, int64_t *tokens,
                            int64_t *micro)
{
    /* What the agent declares one step may spend, else the engine's default. */
    *tokens = agent->step_reserve_tokens >= 0 ? agent->step_reserve_tokens : e->conf.step_reserve_tokens;
    *micro = agent->step_reserve_micro_usd >= 0 ? agent->step_reserve_micro_usd : e->conf.step_reserve_micro_usd;
}

/* ------------------------------------------------------------ committer */

/* Applies one checkpoint and whatever follows from it (the next step's
 * reservation), or a release; collects its events, appended after the
 * whole batch. */
static void item_reset(struct cp_item *it)
{
    events_clear(it->events, &it->nevents);
    it->result = 0;
    it->status[0] = '\0';
    it->err[0] = '\0';
}

/* After the item's checkpoint was written (it->result, it->status). */
static int apply_item(struct aos_engine *e, struct aos_store_tx *tx, struct cp_item *it)
{
    struct aos_checkpoint *cp = &it->cp;
    bool reserved = true;
    char warn[128] = "";
    int rc;

    (void)e;
    if (it->result != AOS_CP_OK)
        return AOS_DB_OK;
    if (strcmp(it->status, "running") == 0 && it->reserve_next) {
        rc = aos_store_budget_reserve(tx, cp->tenant_id, cp->run_id, cp->agent_id, it->day, it->reserve_tokens,
                                      it->reserve_micro_usd, &it->limits, &reserved, warn, sizeof warn, it->err,
                                      sizeof it->err);
        if (rc != AOS_DB_OK)
            return rc;
        if (!reserved) {
            int stopped = 0;
            rc = aos_store_run_stop(tx, cp->tenant_id, cp->run_id, cp->worker_id, "budget_exceeded", warn, &stopped,
                                    it->err, sizeof it->err);
            if (rc != AOS_DB_OK)
                return rc;
            snprintf(it->status, sizeof it->status, "budget_exceeded");
        }
    }

    struct json_object *step = json_object_new_object();
    obj_int(step, "seq", cp->seq);
    obj_int(step, "attempt", cp->attempt);
    obj_str(step, "agent_id", cp->agent_id);
    obj_int(step, "tokens_in", cp->tokens_in);
    obj_int(step, "tokens_out", cp->tokens_out);
    obj_int(step, "cost_micro_usd", cp->cost_micro_usd);
    obj_int(step, "duration_ms", cp->finished_at - cp->started_at);
    if (cp->kind == AOS_CP_RETRY) {
        obj_str(step, "error", cp->error);
        obj_int(step, "retry_at", cp->run_after);
        add_event(it->events, &it->nevents, EVENTS_PER_ITEM, "step.retry", step);
    } else {
        static const char *const outcomes[] = {"", "continue", "done", "done", "needs_approval", "failed", ""};
        obj_str(step, "outcome", outcomes[cp->kind]);
        add_event(it->events, &it->nevents, EVENTS_PER_ITEM, "step.completed", step);
    }
    if (cp->kind == AOS_CP_APPROVAL && cp->auto_decision != NULL && strcmp(it->status, "queued") == 0) {
        struct json_object *a = json_object_new_object();
        obj_str(a, "approval_id", cp->approval_id);
        obj_int(a, "seq", cp->seq);
        obj_str(a, "decision", cp->auto_decision);
        obj_str(a, "autonomy", cp->autonomy);
        obj_json(a, "proposal", cp->result);
        add_event(it->events, &it->nevents, EVENTS_PER_ITEM, "approval.auto_decided", a);
    }
    if (cp->kind == AOS_CP_APPROVAL && strcmp(it->status, "waiting_approval") == 0) {
        struct json_object *a = json_object_new_object();
        obj_str(a, "approval_id", cp->approval_id);
        obj_int(a, "seq", cp->seq);
        obj_json(a, "proposal", cp->result);
        if (cp->approval_expires > 0)
            obj_int(a, "expires_at", cp->approval_expires);
        add_event(it->events, &it->nevents, EVENTS_PER_ITEM, "approval.requested", a);
    }
    if (cp->kind == AOS_CP_STAGE_DONE)
        add_event(it->events, &it->nevents, EVENTS_PER_ITEM, "run.stage_completed",
                  obj_int(json_object_new_object(), "stage_seq", cp->seq));
    if (warn[0] != '\0' && reserved)
        add_event(it->events, &it->nevents, EVENTS_PER_ITEM, "budget.warning",
                  obj_str(json_object_new_object(), "limits", warn));
    if (!reserved)
        add_event(it->events, &it->nevents, EVENTS_PER_ITEM, "budget.exceeded",
                  obj_str(json_object_new_object(), "limit", warn));
    status_events(it->events, &it->nevents, EVENTS_PER_ITEM, it->status,
                  strcmp(it->status, "budget_exceeded") == 0 ? warn : cp->error, cp->result);
    return AOS_DB_OK;
}

/* ------------------------------------------------------------ flights */

/* One more reference to a runtime the caller holds (runtime.h counts them
 * in rt->refs; aos_runtime_release drops it). */
static struct aos_runtime *rt_ref(struct aos_runtime *rt)
{
    atomic_fetch_add(&rt->refs, 1);
    return rt;
}

static struct flight *flight_new(struct committer *cm)
{
    struct aos_engine *e = cm->e;
    struct flight *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    /* Unique across nodes, restarts and claims: a lease is never mistaken
     * for another claim's, not even one of this node. */
    snprintf(f->owner, sizeof f->owner, "%s:%" PRIu64, e->node_id, (uint64_t)atomic_fetch_add(&e->claim_seq, 1) + 1);
    f->cm = cm;
    f->first = true;
    return f;
}

static void flight_free(struct flight *f)
{
    if (f == NULL)
        return;
    events_clear(f->cl.events, &f->cl.nevents);
    events_clear(f->it.events, &f->it.nevents);
    aos_claimed_run_clear(&f->cl.c);
    free(f->result_text);
    if (f->rt != NULL)
        aos_runtime_release(f->rt);
    free(f);
}

/* Registers a claimed flight (committer). */
static void flight_add(struct aos_engine *e, struct flight *f)
{
    pthread_mutex_lock(&e->lock);
    f->all_prev = NULL;
    f->all_next = e->flights;
    if (e->flights != NULL)
        e->flights->all_prev = f;
    e->flights = f;
    atomic_fetch_add(&e->nflights, 1);
    atomic_fetch_add(&f->cm->nflights, 1);
    pthread_mutex_unlock(&e->lock);
}

/* The run left this node (finished, parked, lost, released). */
static void flight_end(struct aos_engine *e, struct flight *f)
{
    pthread_mutex_lock(&e->lock);
    if (f->all_prev != NULL)
        f->all_prev->all_next = f->all_next;
    else
        e->flights = f->all_next;
    if (f->all_next != NULL)
        f->all_next->all_prev = f->all_prev;
    atomic_fetch_sub(&e->nflights, 1);
    atomic_fetch_sub(&f->cm->nflights, 1);
    pthread_mutex_unlock(&e->lock);
    flight_free(f);
}

/* To the committer of the item's flight. */
static void enqueue(struct cp_item *it)
{
    struct committer *cm = it->f->cm;

    it->next = NULL;
    pthread_mutex_lock(&cm->lock);
    if (cm->queue_tail != NULL)
        cm->queue_tail->next = it;
    else
        cm->queue_head = it;
    cm->queue_tail = it;
    cm->queued++;
    pthread_cond_signal(&cm->ready);
    pthread_mutex_unlock(&cm->lock);
}

/* The flight's committer item, emptied for a new op on its run. */
static struct cp_item *item_prepare(struct flight *f, int op)
{
    struct cp_item *it = &f->it;
    struct aos_run *run = &f->cl.c.run;

    events_clear(it->events, &it->nevents);
    memset(it, 0, sizeof *it);
    it->f = f;
    it->op = op;
    it->cp.tenant_id = run->tenant_id;
    it->cp.run_id = run->id;
    it->cp.worker_id = f->owner;
    return it;
}

/* Hands the run back to the queue (a draining node): the committer writes it. */
static void submit_release(struct flight *f) { enqueue(item_prepare(f, OP_RELEASE)); }

/* A flight whose checkpoint committed (or a new claim) may run its next
 * step; while draining it is released instead. */
static void make_ready(struct aos_engine *e, struct flight *f)
{
    bool stopping;

    pthread_mutex_lock(&e->lock);
    stopping = atomic_load(&e->stopping);
    if (!stopping) {
        f->next = NULL;
        if (e->ready_tail != NULL)
            e->ready_tail->next = f;
        else
            e->ready_head = f;
        e->ready_tail = f;
        atomic_fetch_add(&e->nready, 1);
        pthread_cond_signal(&e->work);
    }
    pthread_mutex_unlock(&e->lock);
    if (stopping)
        submit_release(f);
}

/* How many runs to claim now: one per idle worker not already facing a
 * ready flight (or a claim another committer is making) -- or, when
 * workers went without a ready flight while checkpoints were committing
 * (fast steps), one per time that happened, so the flights outnumber the
 * workers just enough to keep them busy -- within max_flights, of which
 * each committer holds at most its share (so that every committer has
 * flights, and batches, of its own).  With reserve the claims count as
 * in progress until claims_done(). */
static size_t claims_decide(struct committer *cm, bool reserve)
{
    struct aos_engine *e = cm->e;
    size_t share = (e->max_flights + e->ncommitters - 1) / e->ncommitters;

    if (atomic_load(&e->stopping) || !atomic_load(&e->enabled))
        return 0;
    pthread_mutex_lock(&e->claim_lock);
    size_t exec = atomic_load(&e->nexec), ready = atomic_load(&e->nready) + e->claiming;
    size_t flights = atomic_load(&e->nflights) + e->claiming, mine = atomic_load(&cm->nflights);
    size_t idle = e->nworkers > exec ? e->nworkers - exec : 0;
    size_t want = idle > ready ? idle - ready : 0;
    size_t starved = atomic_load(&e->starved);
    size_t room = e->max_flights > flights ? e->max_flights - flights : 0;

    if (starved > want && flights > 0)
        want = starved > e->claiming ? starved - e->claiming : 0;
    if (share > mine && share - mine < room)
        room = share - mine;
    else if (share <= mine)
        room = 0;
    if (want > room)
        want = room;
    if (reserve)
        e->claiming += want;
    pthread_mutex_unlock(&e->claim_lock);
    return want;
}

static size_t claims_wanted(struct committer *cm) { return claims_decide(cm, false); }

/* The claims reserved by claims_decide() are flights now (or nothing). */
static void claims_done(struct aos_engine *e, size_t reserved)
{
    pthread_mutex_lock(&e->claim_lock);
    e->claiming -= reserved < e->claiming ? reserved : e->claiming;
    pthread_mutex_unlock(&e->claim_lock);
}

/* ------------------------------------------------------------ claiming */

static int stop_claimed(struct claim *cl, struct aos_store_tx *tx, const char *status, const char *why, char *err,
                        size_t errlen)
{
    int result = 0;
    int rc = aos_store_run_stop(tx, cl->tenant_id, cl->c.run.id, cl->owner, status, why, &result, err, errlen);
    if (rc == AOS_DB_OK && result == AOS_CP_OK)
        status_events(cl->events, &cl->nevents, EVENTS_PER_ITEM, status, why, NULL);
    return rc;
}

/* What follows a claim in its transaction (cl->c just claimed): its
 * events, and the checks and the budget reservation before its first step. */
static int claim_finish(struct aos_store_tx *tx, struct claim *cl, char *err, size_t errlen)
{
    struct aos_engine *e = cl->e;
    struct aos_claimed_run *c = &cl->c;
    const struct aos_conf_tenant *t;
    char why[300];
    int rc;

    cl->found = true;

    struct json_object *p = json_object_new_object();
    obj_int(p, "next_step", c->run.next_step);
    obj_int(p, "attempt", c->run.attempt + 1);
    obj_str(p, "worker", cl->owner);
    json_object_object_add(p, "taken_over", json_object_new_boolean(c->taken_over));
    add_event(cl->events, &cl->nevents, EVENTS_PER_ITEM, "run.running", p);

    /* A cancel requested while the run was running, before its node
     * parked it (drain) or died: honour it now, before any further step. */
    if (c->run.cancel_requested)
        return stop_claimed(cl, tx, "cancelled", NULL, err, errlen);
    if (c->taken_over && c->run.attempt >= e->conf.max_attempts) {
        snprintf(why, sizeof why, "step %" PRId64 " did not finish in %d attempts (timed out or its worker died)",
                 c->run.next_step, e->conf.max_attempts);
        return stop_claimed(cl, tx, "failed", why, err, errlen);
    }
    if (c->agent_deleted) {
        snprintf(why, sizeof why, "agent %s was deleted (or its workflow is broken)", c->agent.id);
        return stop_claimed(cl, tx, "failed", why, err, errlen);
    }
    cl->plugin = aos_plugin_set_find(cl->rt->plugins, c->agent.plugin);
    if (cl->plugin == NULL || aos_plugin_instance_kind(cl->plugin) != AOS_PLUGIN_AGENT ||
        (t = aos_conf_tenant_find(cl->rt->conf, cl->tenant_id)) == NULL ||
        !aos_conf_tenant_allows_plugin(t, c->agent.plugin)) {
        snprintf(why, sizeof why, "plugin '%s' is not an enabled agent plugin allowed for this tenant",
                 c->agent.plugin);
        return stop_claimed(cl, tx, "failed", why, err, errlen);
    }
    snprintf(cl->autonomy, sizeof cl->autonomy, "%s",
             c->agent.autonomy != NULL ? c->agent.autonomy : t->autonomy != NULL ? t->autonomy : "supervised");
    limits_for(cl->rt->conf, cl->tenant_id, &c->agent, &cl->limits);
    reserve_amounts(e, &c->agent, &cl->reserve_tokens, &cl->reserve_micro_usd);
    aos_store_day(cl->now, cl->day);
    bool reserved = true;
    char warn[128] = "";
    rc = aos_store_budget_reserve(tx, cl->tenant_id, c->run.id, c->agent.id, cl->day, cl->reserve_tokens,
                                  cl->reserve_micro_usd, &cl->limits, &reserved, warn, sizeof warn, err, errlen);
    if (rc != AOS_DB_OK)
        return rc;
    if (!reserved) {
        add_event(cl->events, &cl->nevents, EVENTS_PER_ITEM, "budget.exceeded",
                  obj_str(json_object_new_object(), "limit", warn));
        return stop_claimed(cl, tx, "budget_exceeded", warn, err, errlen);
    }
    if (warn[0] != '\0')
        add_event(cl->events, &cl->nevents, EVENTS_PER_ITEM, "budget.warning",
                  obj_str(json_object_new_object(), "limits", warn));
    cl->runnable = true;
    return AOS_DB_OK;
}

/* ------------------------------------------------------------ committer */

struct batch {
    struct aos_engine *e;
    struct committer *cm;
    struct cp_item **items;
    size_t n;
    size_t want;      /* runs to claim */
    bool may_probe;   /* the tenant list may be (re)read */
    struct aos_runtime *rt;
    struct flight **claimed;
    size_t nclaimed;
};

static void batch_drop_claims(struct batch *b)
{
    for (size_t i = 0; i < b->nclaimed; i++)
        flight_free(b->claimed[i]);
    b->nclaimed = 0;
}

static int read_tenants(struct aos_store_tx *tx, struct committer *cm, int64_t now, char *err, size_t errlen)
{
    int rc = aos_store_runs_ready_tenants(tx, now, cm->tenants, READY_TENANTS_MAX, &cm->ntenants, err, errlen);
    cm->tenants_read_at = now;
    if (rc != AOS_DB_OK)
        cm->ntenants = 0;
    else if (cm->ntenants == 0)
        cm->next_probe = now + ms_of(cm->e->conf.poll);
    return rc;
}

/* Claims up to b->want runs in the batch's transaction, round the
 * tenants: the runs wanted are shared out in turn, starting after the
 * tenant served last, and each tenant's share is claimed at once. */
static int claim_some(struct aos_store_tx *tx, struct batch *b, char *err, size_t errlen)
{
    struct aos_engine *e = b->e;
    struct committer *cm = b->cm;
    int64_t now = aos_store_now_ms();
    bool refreshed = false;
    int rc = AOS_DB_OK;
    struct aos_claimed_run *out = NULL;
    struct flight **fl = NULL;
    const char **owners = NULL;
    size_t *quota = NULL;

    if ((out = calloc(b->want, sizeof *out)) == NULL || (fl = calloc(b->want, sizeof *fl)) == NULL ||
        (owners = calloc(b->want, sizeof *owners)) == NULL ||
        (quota = calloc(READY_TENANTS_MAX, sizeof *quota)) == NULL) {
        aos_db_seterr(err, errlen, "out of memory");
        rc = AOS_DB_ERROR;
        goto out;
    }
    while (b->nclaimed < b->want) {
        if (cm->ntenants == 0) {
            if (refreshed || !b->may_probe)
                break;
            if ((rc = read_tenants(tx, cm, now, err, errlen)) != AOS_DB_OK)
                goto out;
            refreshed = true;
            continue;
        }
        size_t start = 0;
        while (start < cm->ntenants && strcmp(cm->tenants[start], cm->rr_last) <= 0)
            start++;
        if (start == cm->ntenants) {
            /* A round is complete: tenants that have work since may join. */
            start = 0;
            if (!refreshed && now - cm->tenants_read_at >= READY_REFRESH_MS) {
                if ((rc = read_tenants(tx, cm, now, err, errlen)) != AOS_DB_OK)
                    goto out;
                refreshed = true;
                continue;
            }
        }
        size_t t = cm->ntenants, left = b->want - b->nclaimed, served = left < t ? left : t;
        for (size_t j = 0; j < t; j++)
            quota[(start + j) % t] = j < served ? left / t + (j < left % t ? 1 : 0) : 0;
        bool exhausted = false;
        for (size_t j = 0; j < served; j++) {
            size_t i = (start + j) % t, got = 0, q = quota[i];
            for (size_t k = 0; k < q; k++) {
                if ((fl[k] = flight_new(cm)) == NULL) {
                    for (size_t m = 0; m < k; m++)
                        flight_free(fl[m]);
                    aos_db_seterr(err, errlen, "out of memory");
                    rc = AOS_DB_ERROR;
                    goto out;
                }
                owners[k] = fl[k]->owner;
            }
            rc = aos_store_run_claim_many(tx, cm->tenants[i], owners, q, now, ms_of(e->conf.lease), out, &got, err,
                                          errlen);
            for (size_t k = 0; k < q; k++) {
                struct flight *f = fl[k];
                if (rc != AOS_DB_OK || k >= got) {
                    flight_free(f);
                    continue;
                }
                f->cl.e = e;
                f->cl.owner = f->owner;
                f->cl.rt = b->rt;
                f->cl.now = now;
                memcpy(f->cl.tenant_id, cm->tenants[i], AOS_ID_LEN);
                f->cl.c = out[k]; /* moves the strings */
                memset(&out[k], 0, sizeof out[k]);
                b->claimed[b->nclaimed++] = f;
            }
            if (rc != AOS_DB_OK)
                goto out;
            if (got < q) {
                quota[i] = SIZE_MAX; /* no more: leaves the list below */
                exhausted = true;
            }
            memcpy(cm->rr_last, cm->tenants[i], AOS_ID_LEN);
        }
        if (exhausted) {
            size_t k = 0;
            for (size_t i = 0; i < t; i++)
                if (quota[i] != SIZE_MAX) {
                    if (k != i)
                        memcpy(cm->tenants[k], cm->tenants[i], AOS_ID_LEN);
                    k++;
                }
            cm->ntenants = k;
        } else {
            break; /* every share was claimed */
        }
    }
    for (size_t i = 0; i < b->nclaimed; i++) {
        struct claim *cl = &b->claimed[i]->cl;
        if (cl->found)
            continue;
        if ((rc = claim_finish(tx, cl, err, errlen)) != AOS_DB_OK)
            goto out;
    }
    if (cm->ntenants == 0)
        cm->next_probe = now + ms_of(e->conf.poll); /* the queue is empty: look again at the next poll */
out:
    free(out);
    free(fl);
    free(owners);
    free(quota);
    return rc;
}

static int probe_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct committer *cm = arg;
    return read_tenants(tx, cm, aos_store_now_ms(), err, errlen);
}

static int batch_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct batch *b = arg;
    int rc;

    struct aos_checkpoint **cps = NULL;
    const char **days = NULL;
    int *results = NULL;
    char (*status)[AOS_RUN_STATUS_LEN] = NULL;
    size_t *idx = NULL, m = 0;
    struct event_batch eb = {0};
    int64_t now = aos_store_now_ms();

    batch_drop_claims(b); /* an earlier try of this transaction */
    /* PostgreSQL: claims first.  The checkpoints end with the usage rows,
     * which every transaction writing steps of the same agent updates (the
     * other committer's too), so their locks are best held only for the
     * events and the commit that follow.  SQLite has one writer anyway. */
    bool claims_first = aos_store_is_pgsql(b->e->store);
    if (claims_first && b->want > 0 && (rc = claim_some(tx, b, err, errlen)) != AOS_DB_OK)
        goto out;
    if (b->n > 0 && ((cps = calloc(b->n, sizeof *cps)) == NULL || (days = calloc(b->n, sizeof *days)) == NULL ||
                     (results = calloc(b->n, sizeof *results)) == NULL ||
                     (status = calloc(b->n, sizeof *status)) == NULL || (idx = calloc(b->n, sizeof *idx)) == NULL)) {
        aos_db_seterr(err, errlen, "out of memory");
        rc = AOS_DB_ERROR;
        goto out;
    }
    for (size_t i = 0; i < b->n; i++) {
        struct cp_item *it = b->items[i];
        item_reset(it);
        if (it->op == OP_RELEASE) {
            rc = aos_store_run_release(tx, it->cp.tenant_id, it->cp.run_id, it->cp.worker_id, &it->result, err,
                                       errlen);
            if (rc != AOS_DB_OK)
                goto out;
            continue;
        }
        cps[m] = &it->cp;
        days[m] = it->day;
        idx[m++] = i;
    }
    /* Every checkpoint of the batch at once (PostgreSQL: a few statements). */
    if ((rc = aos_store_checkpoints(tx, cps, days, m, results, status, err, errlen)) != AOS_DB_OK)
        goto out;
    for (size_t j = 0; j < m; j++) {
        struct cp_item *it = b->items[idx[j]];
        it->result = results[j];
        memcpy(it->status, status[j], sizeof it->status);
        if ((rc = apply_item(b->e, tx, it)) != AOS_DB_OK) {
            aos_db_seterr(err, errlen, "%s", it->err);
            goto out;
        }
    }
    if (!claims_first && b->want > 0 && (rc = claim_some(tx, b, err, errlen)) != AOS_DB_OK)
        goto out;
    /* Events last: on PostgreSQL the event lock is held from here to the commit. */
    for (size_t i = 0; i < b->n; i++) {
        struct cp_item *it = b->items[i];
        if (it->result != AOS_CP_OK || it->nevents == 0)
            continue;
        if ((rc = event_batch_add(b->e, &eb, it->cp.tenant_id, it->cp.run_id, it->events, it->nevents, now, err,
                                  errlen)) != AOS_DB_OK)
            goto out;
    }
    for (size_t i = 0; i < b->nclaimed; i++) {
        struct claim *cl = &b->claimed[i]->cl;
        if ((rc = event_batch_add(b->e, &eb, cl->tenant_id, cl->c.run.id, cl->events, cl->nevents, now, err,
                                  errlen)) != AOS_DB_OK)
            goto out;
    }
    rc = aos_store_events_insert_many(tx, eb.rows, eb.n, err, errlen);
out:
    event_batch_free(&eb);
    free(cps);
    free(days);
    free(results);
    free(status);
    free(idx);
    return rc;
}

/* Sorting by tenant makes every batch take tenant locks (budget checks on
 * PostgreSQL) in one order: two nodes' batches cannot deadlock. */
static int by_tenant(const void *a, const void *b)
{
    const struct cp_item *x = *(const struct cp_item *const *)a, *y = *(const struct cp_item *const *)b;
    return strcmp(x->cp.tenant_id, y->cp.tenant_id);
}

/* One transaction for the items and b->want claims; sets every item's rc.
 * Claims are in b->claimed when it committed. */
static void commit_batch(struct batch *b)
{
    struct aos_engine *e = b->e;
    char err[ERR_LEN] = "";
    int rc;

    if (b->n > 1)
        qsort(b->items, b->n, sizeof *b->items, by_tenant);
    rc = aos_store_transact(e->store, true, batch_tx, b, err, sizeof err);
    if (rc != AOS_DB_OK)
        batch_drop_claims(b);
    if (rc != AOS_DB_OK && b->want > 0) {
        /* Not again before the next poll: a claim that fails may fail again. */
        b->cm->ntenants = 0;
        b->cm->next_probe = aos_store_now_ms() + ms_of(e->conf.poll);
    }
    if (rc != AOS_DB_OK && b->want > 0 && rc != AOS_DB_UNAVAILABLE) {
        /* A claim must not sink the checkpoints: again without claims. */
        if (b->n == 0)
            aos_err("engine: claim failed", "error", err, NULL);
        else
            aos_warn("engine: a group commit with claims failed; its checkpoints go again without them", "error",
                     err, NULL);
        b->want = 0;
        if (b->n > 0)
            commit_batch(b);
        return;
    }
    if (rc == AOS_DB_OK) {
        bool checkpoints = false, any_events = b->nclaimed > 0;
        for (size_t i = 0; i < b->n; i++) {
            struct cp_item *it = b->items[i];
            it->rc = AOS_DB_OK;
            if (it->op == OP_CHECKPOINT)
                checkpoints = true;
            if (it->result == AOS_CP_OK && it->op == OP_CHECKPOINT) {
                atomic_fetch_add(&e->checkpoints, 1);
                any_events = any_events || it->nevents > 0;
            }
        }
        if (checkpoints)
            atomic_fetch_add(&e->commits, 1);
        if (any_events)
            aos_events_committed(e->events);
    } else if (b->n > 1 && rc != AOS_DB_UNAVAILABLE) {
        /* One bad checkpoint must not sink its batch: each on its own. */
        struct cp_item **all = b->items;
        size_t n = b->n;
        for (size_t i = 0; i < n; i++) {
            struct batch one = {e, b->cm, &all[i], 1, 0, false, NULL, NULL, 0};
            commit_batch(&one);
        }
    } else {
        for (size_t i = 0; i < b->n; i++) {
            b->items[i]->rc = rc;
            if (b->items[i]->err[0] == '\0')
                snprintf(b->items[i]->err, sizeof b->items[i]->err, "%s", err);
        }
    }
}

/* After the commit: where each item's flight goes next. */
static void item_done(struct aos_engine *e, struct cp_item *it)
{
    struct flight *f = it->f;
    struct aos_run *run = &f->cl.c.run;

    events_clear(it->events, &it->nevents);
    if (it->op == OP_RELEASE) {
        flight_end(e, f);
        return;
    }
    if (it->rc != AOS_DB_OK) {
        aos_err("engine: checkpoint failed; the run resumes from its last checkpoint when its lease expires",
                "run_id", run->id, "error", it->err, NULL);
    } else if (it->result == AOS_CP_LEASE_LOST) {
        atomic_fetch_add(&e->lease_lost, 1);
        aos_warn("engine: lost the lease of a run; its step result is dropped", "run_id", run->id, NULL);
    } else if (strcmp(it->status, "running") == 0) {
        free(run->state);
        run->state = f->result_text; /* CONTINUE: the new state */
        f->result_text = NULL;
        run->next_step++;
        run->attempt = 0;
        make_ready(e, f);
        return;
    }
    flight_end(e, f);
}

/* A store outage: the checkpoint is tried again with backoff while our
 * lease may still hold (if the first try did commit, the retry finds the
 * step done and reports a lost lease, and the run resumes from the store).
 * False when it is given up. */
static bool defer_item(struct aos_engine *e, struct cp_item *it, int64_t now)
{
    it->retry_wait = it->retry_wait == 0 ? RETRY_FIRST_MS : it->retry_wait * 2;
    if (it->retry_wait > ms_of(e->conf.lease))
        return false;
    if (it->op == OP_CHECKPOINT)
        aos_warn("engine: checkpoint not written, retrying", "run_id", it->cp.run_id, "error", it->err, NULL);
    it->retry_at = now + it->retry_wait;
    return true;
}

static void *committer_main(void *arg)
{
    struct committer *cm = arg;
    struct aos_engine *e = cm->e;
    aos_thread_name("aos-commit-%zu", (size_t)(cm - e->committers));
    size_t max = (size_t)e->conf.checkpoint_batch;
    struct cp_item **items = calloc(max, sizeof *items);
    struct flight **claimed = calloc(e->max_flights, sizeof *claimed);
    struct cp_item *deferred = NULL; /* waiting for retry_at */
    int64_t window_us = (int64_t)(e->conf.checkpoint_window * 1e6);

    if (items == NULL || claimed == NULL) {
        aos_err("engine: out of memory starting the committer", NULL);
        free(items);
        free(claimed);
        return NULL;
    }
    pthread_mutex_lock(&cm->lock);
    for (;;) {
        int64_t now = aos_store_now_ms(), until = now + ms_of(e->conf.poll);
        size_t want = 0;
        bool due = false;

        for (struct cp_item *d = deferred; d != NULL; d = d->next) {
            if (d->retry_at <= now)
                due = true;
            else if (d->retry_at < until)
                until = d->retry_at;
        }
        if (cm->queue_head == NULL && !due) {
            if (cm->stop && deferred == NULL && atomic_load(&e->nflights) == 0)
                break;
            want = claims_wanted(cm);
            if (want == 0 || (!cm->wake_pending && now < cm->next_probe && cm->ntenants == 0)) {
                struct timespec ts;
                if (want > 0 && cm->next_probe < until)
                    until = cm->next_probe;
                timespec_in_ms(&ts, until - now > 0 ? until - now : 0);
                pthread_cond_timedwait(&cm->ready, &cm->lock, &ts);
                continue;
            }
        }
        /* Group commit: if the batch is not full, give the workers
         * executing a step of its flights the window to join it -- only
         * then, so a lone step on an idle node commits at once. */
        if (cm->queued < max && window_us > 0 && atomic_load(&cm->nexec) > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)(window_us * 1000);
            while (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            while (cm->queued < max && atomic_load(&cm->nexec) > 0 &&
                   pthread_cond_timedwait(&cm->ready, &cm->lock, &ts) == 0)
                ;
        }
        size_t n = 0;
        for (struct cp_item **d = &deferred; *d != NULL && n < max;) {
            if ((*d)->retry_at <= now) {
                items[n++] = *d;
                *d = (*d)->next;
            } else {
                d = &(*d)->next;
            }
        }
        while (cm->queue_head != NULL && n < max) {
            items[n++] = cm->queue_head;
            cm->queue_head = cm->queue_head->next;
            cm->queued--;
        }
        if (cm->queue_head == NULL)
            cm->queue_tail = NULL;
        want = claims_decide(cm, true);
        bool may_probe = cm->wake_pending || now >= cm->next_probe;
        if (want > 0 && cm->wake_pending) {
            cm->ntenants = 0; /* runs were queued: read the tenants again */
            cm->wake_pending = false;
        }
        pthread_mutex_unlock(&cm->lock);

        if (want > 0)
            atomic_store(&e->starved, 0);
        struct batch b = {e, cm, items, n, want, may_probe, NULL, claimed, 0};
        if (b.want > 0 && n == 0 && cm->ntenants == 0) {
            /* Nothing to commit: look at the queue in a read transaction
             * first, so an idle node takes no write lock. */
            char err[ERR_LEN];
            int rc = aos_store_transact(e->store, false, probe_tx, cm, err, sizeof err);
            if (rc != AOS_DB_OK) {
                if (rc != AOS_DB_UNAVAILABLE)
                    aos_err("engine: cannot read the queue", "error", err, NULL);
                cm->ntenants = 0;
                cm->next_probe = now + ms_of(e->conf.poll);
            }
            if (cm->ntenants == 0)
                b.want = 0;
            b.may_probe = false;
        }
        if (b.want > 0 && (b.rt = aos_runtime_acquire()) == NULL)
            b.want = 0;
        if (n > 0 || b.want > 0)
            commit_batch(&b);
        for (size_t i = 0; i < b.nclaimed; i++) {
            struct flight *f = claimed[i];
            atomic_fetch_add(&e->claims, 1);
            if (f->cl.c.taken_over) {
                atomic_fetch_add(&e->takeovers, 1);
                aos_warn("engine: took over a run whose lease expired", "run_id", f->cl.c.run.id, NULL);
            }
            events_clear(f->cl.events, &f->cl.nevents);
            if (!f->cl.runnable) {
                flight_free(f);
                continue;
            }
            f->rt = rt_ref(b.rt);
            flight_add(e, f);
            make_ready(e, f);
        }
        b.nclaimed = 0;
        claims_done(e, want);
        if (b.rt != NULL)
            aos_runtime_release(b.rt);
        now = aos_store_now_ms();
        for (size_t i = 0; i < n; i++) {
            struct cp_item *it = items[i];
            if ((it->rc == AOS_DB_UNAVAILABLE || it->rc == AOS_DB_RETRY) && defer_item(e, it, now)) {
                it->next = deferred;
                deferred = it;
                continue;
            }
            item_done(e, it);
        }
        pthread_mutex_lock(&cm->lock);
    }
    pthread_mutex_unlock(&cm->lock);
    free(items);
    free(claimed);
    return NULL;
}

/* ------------------------------------------------------------ executing */

static char *dup_buf(const struct aos_buf *b)
{
    char *s = malloc(b->len + 1);
    if (s != NULL) {
        memcpy(s, b->data, b->len);
        s[b->len] = '\0';
    }
    return s;
}

/* Executes the flight's next step and hands its checkpoint to the
 * committer (without waiting for it). */
static void execute_step(struct aos_engine *e, struct flight *f)
{
    struct claim *cl = &f->cl;
    struct aos_claimed_run *c = &cl->c;
    struct aos_run *run = &c->run;
    struct cp_item *it = &f->it;
    char key[AOS_ID_LEN + 24];
    struct aos_step_result res;
    const char *input = run->stage > 0 && run->output != NULL ? run->output : run->input;

    snprintf(key, sizeof key, "%s:%" PRId64, run->id, run->next_step);
    struct aos_step_input in = {
        .size = sizeof in,
        .run_id = run->id,
        .tenant_id = run->tenant_id,
        .step_index = (uint32_t)run->next_step,
        .attempt = (uint32_t)(run->attempt + 1),
        .idempotency_key = key,
        .input = input,
        .input_len = strlen(input),
        .state = run->state,
        .state_len = run->state != NULL ? strlen(run->state) : 0,
        .decision = f->first ? c->decision : NULL,
        .decision_len = f->first && c->decision != NULL ? strlen(c->decision) : 0,
        .config = c->agent.config != NULL ? c->agent.config : "{}",
        .config_len = strlen(c->agent.config != NULL ? c->agent.config : "{}"),
        .agent_id = c->agent.id,
        .agent_name = c->agent.name,
    };
    f->perr[0] = '\0';
    int64_t started = aos_store_now_ms();
    int prc = aos_plugin_agent_step(cl->plugin, &in, &res, f->perr, sizeof f->perr);
    int64_t finished = aos_store_now_ms();

    pthread_mutex_lock(&e->lock);
    f->executing = false;
    atomic_fetch_sub(&e->nexec, 1);
    atomic_fetch_sub(&f->cm->nexec, 1);
    pthread_mutex_unlock(&e->lock);
    atomic_fetch_add(&e->steps, 1);
    f->first = false;

    item_prepare(f, OP_CHECKPOINT);
    it->cp.agent_id = c->agent.id;
    it->cp.seq = run->next_step;
    it->cp.attempt = run->attempt + 1;
    it->cp.started_at = started;
    it->cp.finished_at = finished;
    aos_store_day(finished, it->day);
    it->limits = cl->limits;
    it->reserve_tokens = cl->reserve_tokens;
    it->reserve_micro_usd = cl->reserve_micro_usd;
    if (prc == 0) {
        it->cp.tokens_in = (int64_t)(res.tokens_in > INT64_MAX / 4 ? INT64_MAX / 4 : res.tokens_in);
        it->cp.tokens_out = (int64_t)(res.tokens_out > INT64_MAX / 4 ? INT64_MAX / 4 : res.tokens_out);
        it->cp.cost_micro_usd = (int64_t)(res.cost_micro_usd > INT64_MAX / 4 ? INT64_MAX / 4 : res.cost_micro_usd);
    }
    free(f->result_text);
    f->result_text = NULL;

    bool transient = prc != 0 || res.status == AOS_STEP_RETRY;
    if (transient) {
        atomic_fetch_add(&e->retries, 1);
        if (prc == 0)
            snprintf(f->perr, sizeof f->perr, "the plugin asked to retry");
        if (run->attempt + 1 >= e->conf.max_attempts) {
            it->cp.kind = AOS_CP_FAILED;
            snprintf(f->failmsg, sizeof f->failmsg, "step %" PRId64 " failed %d times; last: %s", run->next_step,
                     e->conf.max_attempts, f->perr);
            it->cp.error = f->failmsg;
        } else {
            it->cp.kind = AOS_CP_RETRY;
            it->cp.error = f->perr;
            it->cp.run_after =
                finished + backoff_ms(&e->conf, run->attempt, prc == 0 ? (int64_t)res.retry_after_ms : 0);
        }
    } else if (res.status == AOS_STEP_FAIL) {
        it->cp.kind = AOS_CP_FAILED;
        it->cp.error = f->perr[0] != '\0' ? f->perr : "the step failed";
    } else {
        const struct aos_buf *b = res.status == AOS_STEP_CONTINUE ? &res.state : &res.output;
        if (b->len > 0 && !json_text_valid(b->data, b->len)) {
            it->cp.kind = AOS_CP_FAILED;
            snprintf(f->perr, sizeof f->perr, "plugin %s returned a step result that is not JSON", c->agent.plugin);
            it->cp.error = f->perr;
        } else {
            f->result_text = b->len > 0 ? dup_buf(b) : NULL;
            it->cp.result = f->result_text;
            if (res.status == AOS_STEP_CONTINUE) {
                it->cp.kind = AOS_CP_CONTINUE;
                it->cp.lease_expires = finished + ms_of(e->conf.lease);
                it->reserve_next = true;
            } else if (res.status == AOS_STEP_NEEDS_APPROVAL) {
                it->cp.kind = AOS_CP_APPROVAL;
                if (it->cp.result == NULL)
                    it->cp.result = "{}";
                it->cp.approval_expires = e->conf.approval_ttl > 0 ? finished + ms_of(e->conf.approval_ttl) : 0;
                /* observe: no action runs (the proposal is recorded and
                 * declined); autonomous: actions run without waiting;
                 * supervised: a person decides. */
                it->cp.autonomy = cl->autonomy;
                if (strcmp(cl->autonomy, "observe") == 0)
                    it->cp.auto_decision = "rejected";
                else if (strcmp(cl->autonomy, "autonomous") == 0)
                    it->cp.auto_decision = "approved";
            } else {
                it->cp.kind = run->stage + 1 < c->stages ? AOS_CP_STAGE_DONE : AOS_CP_DONE;
                if (it->cp.result == NULL)
                    it->cp.result = "null";
            }
        }
    }
    if (prc == 0)
        aos_plugin_step_result_release(&res);
    enqueue(it);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct aos_engine *e = w->e;
    aos_thread_name("aos-worker-%zu", (size_t)(w - e->workers));

    pthread_mutex_lock(&e->lock);
    for (;;) {
        struct flight *f = e->ready_head;
        if (f == NULL) {
            if (atomic_load(&e->stopping))
                break;
            if (atomic_load(&e->nflights) > 0)
                atomic_fetch_add(&e->starved, 1); /* runs are ours, but none ready: more would help */
            pthread_cond_wait(&e->work, &e->lock);
            continue;
        }
        e->ready_head = f->next;
        if (e->ready_head == NULL)
            e->ready_tail = NULL;
        f->next = NULL;
        atomic_fetch_sub(&e->nready, 1);
        if (atomic_load(&e->stopping)) {
            /* Draining: no further step; the run goes back to the queue. */
            pthread_mutex_unlock(&e->lock);
            submit_release(f);
            pthread_mutex_lock(&e->lock);
            continue;
        }
        f->executing = true;
        f->step_started = aos_store_now_ms();
        atomic_fetch_add(&e->nexec, 1);
        atomic_fetch_add(&f->cm->nexec, 1);
        pthread_mutex_unlock(&e->lock);
        execute_step(e, f);
        pthread_mutex_lock(&e->lock);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

/* ------------------------------------------------------------ keeper */

struct renew_set {
    char (*tenants)[AOS_ID_LEN];
    char (*runs)[AOS_ID_LEN];
    char (*owners)[AOS_WORKER_ID_LEN];
    size_t n;
    int64_t expires;
};

static int renew_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct renew_set *r = arg;
    for (size_t i = 0; i < r->n; i++) {
        bool renewed;
        int rc = aos_store_run_renew(tx, r->tenants[i], r->runs[i], r->owners[i], r->expires, &renewed, err, errlen);
        if (rc != AOS_DB_OK)
            return rc;
    }
    return AOS_DB_OK;
}

/* Renews the leases of the runs in flight, except a step's past
 * step_timeout: that one loses its lease, so the run is retried (by
 * whoever claims it). */
static void renew_leases(struct aos_engine *e)
{
    size_t n, k = 0;
    char (*tenants)[AOS_ID_LEN] = NULL;
    char (*runs)[AOS_ID_LEN] = NULL;
    char (*owners)[AOS_WORKER_ID_LEN] = NULL;
    int64_t now = aos_store_now_ms();
    char err[ERR_LEN];

    pthread_mutex_lock(&e->lock);
    n = atomic_load(&e->nflights);
    if (n > 0) {
        tenants = calloc(n, AOS_ID_LEN);
        runs = calloc(n, AOS_ID_LEN);
        owners = calloc(n, AOS_WORKER_ID_LEN);
    }
    for (struct flight *f = e->flights; f != NULL && tenants != NULL && runs != NULL && owners != NULL && k < n;
         f = f->all_next) {
        if (f->executing && now - f->step_started > ms_of(e->conf.step_timeout)) {
            aos_warn("engine: step exceeded engine.step_timeout; its lease will lapse and the step be retried",
                     "run_id", f->cl.c.run.id, NULL);
            continue;
        }
        memcpy(tenants[k], f->cl.c.run.tenant_id, AOS_ID_LEN);
        memcpy(runs[k], f->cl.c.run.id, AOS_ID_LEN);
        memcpy(owners[k], f->owner, AOS_WORKER_ID_LEN);
        k++;
    }
    pthread_mutex_unlock(&e->lock);
    if (k > 0) {
        struct renew_set r = {tenants, runs, owners, k, now + ms_of(e->conf.lease)};
        if (aos_store_transact(e->store, true, renew_tx, &r, err, sizeof err) != AOS_DB_OK)
            aos_warn("engine: lease renewal failed", "error", err, NULL);
    }
    free(tenants);
    free(runs);
    free(owners);
}

struct expiry {
    struct aos_engine *e;
    int64_t now;
    size_t n;
};

static int expire_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct expiry *x = arg;
    struct aos_expired_approval *list = NULL;
    int rc = aos_store_approvals_expire(tx, x->now, EXPIRE_BATCH, &list, &x->n, err, errlen);

    for (size_t i = 0; rc == AOS_DB_OK && i < x->n; i++) {
        struct event_spec ev[2];
        size_t nev = 0;
        add_event(ev, &nev, 2, "approval.expired", obj_str(json_object_new_object(), "approval_id", list[i].approval_id));
        add_event(ev, &nev, 2, "run.queued", obj_str(json_object_new_object(), "reason", "approval expired"));
        rc = events_append(x->e, tx, list[i].tenant_id, list[i].run_id, ev, nev, err, errlen);
        events_clear(ev, &nev);
    }
    free(list);
    return rc;
}

struct prune {
    int64_t before;
    size_t deleted;
};

static int prune_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct prune *p = arg;
    return aos_store_runs_prune(tx, p->before, PRUNE_BATCH, &p->deleted, err, errlen);
}

static void *keeper_main(void *arg)
{
    struct aos_engine *e = arg;
    aos_thread_name("aos-keeper");
    int64_t renew_every = ms_of(e->conf.lease) / 3;
    int64_t last_renew = 0, last_expire = 0, last_prune = 0;
    char err[ERR_LEN];

    if (renew_every < 100)
        renew_every = 100;
    while (!atomic_load(&e->stopping) || atomic_load(&e->nflights) > 0) {
        int64_t now = aos_store_now_ms();
        if (!atomic_load(&e->enabled))
            goto wait;
        if (now - last_renew >= renew_every) {
            renew_leases(e);
            last_renew = now;
        }
        if (now - last_expire >= EXPIRE_INTERVAL_MS) {
            struct expiry x = {e, now, 0};
            if (aos_store_transact(e->store, true, expire_tx, &x, err, sizeof err) == AOS_DB_OK && x.n > 0) {
                aos_events_committed(e->events);
                aos_engine_wake(e);
            }
            last_expire = now;
        }
        if (now - last_prune >= PRUNE_INTERVAL_MS) {
            struct aos_runtime *rt = aos_runtime_acquire();
            int days = rt != NULL ? rt->conf->governance.runs_days : 0;
            if (rt != NULL)
                aos_runtime_release(rt);
            if (days > 0) {
                struct prune p = {now - (int64_t)days * 86400000, 0};
                if (aos_store_transact(e->store, true, prune_tx, &p, err, sizeof err) == AOS_DB_OK && p.deleted > 0) {
                    char count[24];
                    snprintf(count, sizeof count, "%zu", p.deleted);
                    aos_info("engine: pruned finished runs past retention", "runs", count, NULL);
                }
            }
            last_prune = now;
        }
    wait:;
        struct timespec ts;
        timespec_in_ms(&ts, 100);
        pthread_mutex_lock(&e->lock);
        /* Draining, it still renews the leases of the flights left. */
        pthread_cond_timedwait(&e->keeper_cv, &e->lock, &ts);
        pthread_mutex_unlock(&e->lock);
    }
    return NULL;
}


/* ------------------------------------------------------------ life */

struct aos_engine *aos_engine_start(const struct aos_conf_engine *conf, struct aos_store *store,
                                    const struct aos_pii *pii, struct aos_events *events, char *err,
                                    size_t errlen)
{
    struct aos_engine *e = calloc(1, sizeof *e);
    char host[64] = "node";

    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->conf = *conf;
    e->store = store;
    e->pii = pii;
    e->events = events;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->work, NULL);
    pthread_cond_init(&e->keeper_cv, NULL);
    pthread_mutex_init(&e->claim_lock, NULL);
    if (conf->workers == 0)
        return e;
    gethostname(host, sizeof host - 1);
    /* Unique across nodes and restarts: a restarted node must not mistake
     * its predecessor's leases for its own. */
    snprintf(e->node_id, sizeof e->node_id, "%.30s:%ld:%" PRId64, host, (long)getpid(), aos_store_now_ms());
    e->nworkers = (size_t)conf->workers;
    e->max_flights = conf->checkpoint_batch > conf->workers ? (size_t)conf->checkpoint_batch : e->nworkers;
    /* SQLite has one writer: a second committer would only wait for it. */
    e->ncommitters = !aos_store_is_pgsql(store) ? 1 : conf->committers > 0 ? (size_t)conf->committers : 2;
    if (e->ncommitters > e->max_flights)
        e->ncommitters = e->max_flights;
    if ((e->workers = calloc(e->nworkers, sizeof *e->workers)) == NULL ||
        (e->committers = calloc(e->ncommitters, sizeof *e->committers)) == NULL) {
        e->ncommitters = 0;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < e->ncommitters; i++) {
        e->committers[i].e = e;
        pthread_mutex_init(&e->committers[i].lock, NULL);
        pthread_cond_init(&e->committers[i].ready, NULL);
    }
    for (size_t i = 0; i < e->ncommitters; i++) {
        struct committer *cm = &e->committers[i];
        if ((cm->tenants = calloc(READY_TENANTS_MAX, sizeof *cm->tenants)) == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        if (pthread_create(&cm->thread, NULL, committer_main, cm) != 0) {
            snprintf(err, errlen, "cannot start checkpoint committer thread %zu", i);
            goto fail;
        }
        cm->started = true;
    }
    for (size_t i = 0; i < e->nworkers; i++) {
        struct worker *w = &e->workers[i];
        w->e = e;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            snprintf(err, errlen, "cannot start engine worker %zu", i);
            goto fail;
        }
        w->started = true;
    }
    if (pthread_create(&e->keeper, NULL, keeper_main, e) != 0) {
        snprintf(err, errlen, "cannot start the engine keeper thread");
        goto fail;
    }
    e->keeper_started = true;
    return e;
fail:
    aos_engine_stop(e, 0);
    return NULL;
}

void aos_engine_set_enabled(struct aos_engine *e, bool enabled)
{
    if (e == NULL)
        return;
    atomic_store(&e->enabled, enabled);
    if (enabled)
        aos_engine_wake(e);
}

void aos_engine_drain(struct aos_engine *e)
{
    if (e == NULL)
        return;
    /* Under the lock: a flight is either queued before the workers see
     * `stopping` (and released by them) or released by make_ready. */
    pthread_mutex_lock(&e->lock);
    atomic_store(&e->stopping, true);
    pthread_cond_broadcast(&e->work);
    pthread_cond_broadcast(&e->keeper_cv);
    pthread_mutex_unlock(&e->lock);
    for (size_t i = 0; i < e->ncommitters; i++) {
        struct committer *cm = &e->committers[i];
        pthread_mutex_lock(&cm->lock);
        pthread_cond_signal(&cm->ready);
        pthread_mutex_unlock(&cm->lock);
    }
}

void aos_engine_wake(struct aos_engine *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->ncommitters; i++) {
        struct committer *cm = &e->committers[i];
        pthread_mutex_lock(&cm->lock);
        cm->wake_pending = true;
        pthread_cond_signal(&cm->ready);
        pthread_mutex_unlock(&cm->lock);
    }
}

void aos_engine_stop(struct aos_engine *e, double timeout_s)
{
    bool stragglers = false;
    struct timespec ts;

    if (e == NULL)
        return;
    aos_engine_drain(e);
    timespec_in_ms(&ts, ms_of(timeout_s > 0 ? timeout_s : 0.001));
    for (size_t i = 0; i < e->nworkers; i++) {
        struct worker *w = &e->workers[i];
        if (!w->started)
            continue;
        if (pthread_timedjoin_np(w->thread, NULL, &ts) != 0) {
            stragglers = true; /* a step that would not finish: its lease lapses */
            pthread_detach(w->thread);
        }
    }
    for (size_t i = 0; i < e->ncommitters && !stragglers; i++) {
        /* The checkpoints of the last steps, and the releases. */
        struct committer *cm = &e->committers[i];
        pthread_mutex_lock(&cm->lock);
        cm->stop = true;
        pthread_cond_signal(&cm->ready);
        pthread_mutex_unlock(&cm->lock);
    }
    for (size_t i = 0; i < e->ncommitters && !stragglers; i++) {
        struct committer *cm = &e->committers[i];
        if (cm->started && pthread_timedjoin_np(cm->thread, NULL, &ts) != 0) {
            stragglers = true; /* the store is down: the leases lapse */
            for (size_t j = i; j < e->ncommitters; j++)
                if (e->committers[j].started)
                    pthread_detach(e->committers[j].thread);
        }
    }
    if (stragglers) {
        /* A straggler may still submit a checkpoint: keep the committer
         * and the engine alive; the process is about to exit. */
        aos_warn("engine: steps still running at the end of the drain; their runs resume elsewhere when their "
                 "leases expire",
                 NULL);
        return;
    }
    if (e->keeper_started)
        pthread_join(e->keeper, NULL);
    free(e->workers);
    for (size_t i = 0; i < e->ncommitters; i++) {
        struct committer *cm = &e->committers[i];
        free(cm->tenants);
        pthread_mutex_destroy(&cm->lock);
        pthread_cond_destroy(&cm->ready);
    }
    free(e->committers);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->work);
    pthread_cond_destroy(&e->keeper_cv);
    pthread_mutex_destroy(&e->claim_lock);
    free(e);
}

void aos_engine_get_stats(struct aos_engine *e, struct aos_engine_stats *out)
{
    memset(out, 0, sizeof *out);
    if (e == NULL)
        return;
    out->steps = atomic_load(&e->steps);
    out->checkpoints = atomic_load(&e->checkpoints);
    out->commits = atomic_load(&e->commits);
    out->retries = atomic_load(&e->retries);
    out->lease_lost = atomic_load(&e->lease_lost);
    out->claims = atomic_load(&e->claims);
    out->takeovers = atomic_load(&e->takeovers);
    out->busy = (unsigned)atomic_load(&e->nexec);
    out->workers = (unsigned)e->nworkers;
}
