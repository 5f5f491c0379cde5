#include "config.h"
/*
 * The orchestration engine (orch/engine.h).
 *
 * A worker's life: claim a run (one write transaction: lease, budget
 * reservation for its next step, events), then execute steps of it until
 * it leaves `running`: for each step call the plugin, hand the checkpoint
 * to the committer and wait for it.  The committer writes every pending
 * checkpoint in one transaction (group commit), so under load many steps
 * share one fsync, and when idle each step commits at once.
 *
 * Fairness: claiming goes round the tenants that have due runs (in id
 * order, starting after the tenant served last), so one tenant's queue of
 * thousands cannot starve another tenant's single run.
 */
#include "orch/engine.h"

#include <errno.h>
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
#include "plugin.h"
#include "runtime.h"
#include "store/runs.h"
#include "store/store.h"

#define READY_TENANTS_MAX 256
#define EXPIRE_BATCH 100
#define PRUNE_BATCH 500
#define PRUNE_INTERVAL_MS 60000
#define EXPIRE_INTERVAL_MS 1000
#define ERR_LEN 512

struct event_spec {
    char type[40];
    char *payload; /* JSON object text, malloc'd */
};
#define EVENTS_PER_ITEM 6

/* One checkpoint waiting for the committer.  The strings in cp belong to
 * the submitting worker, which waits until `done`. */
struct cp_item {
    struct aos_checkpoint cp;
    char day[AOS_DAY_LEN];
    bool reserve_next;
    struct aos_budget_limits limits;
    int64_t reserve_tokens, reserve_micro_usd;
    const char *agent_name;
    /* results, reset each time the transaction body runs */
    int rc;
    int result; /* enum aos_checkpoint_result */
    char status[AOS_RUN_STATUS_LEN];
    char err[ERR_LEN];
    struct event_spec events[EVENTS_PER_ITEM];
    size_t nevents;
    bool done;
    struct cp_item *next;
};

struct worker {
    struct aos_engine *e;
    pthread_t thread;
    bool started;
    char id[AOS_WORKER_ID_LEN];
    /* in flight, guarded by e->lock, read by the keeper */
    bool active;
    char tenant_id[AOS_ID_LEN];
    char run_id[AOS_ID_LEN];
    int64_t step_started;
};

struct aos_engine {
    struct aos_conf_engine conf;
    struct aos_store *store;
    const struct aos_pii *pii;
    struct aos_events *events;

    pthread_mutex_t lock;
    pthread_cond_t wake;       /* idle workers; the keeper */
    atomic_bool stopping;
    atomic_bool enabled;
    char rr_last[AOS_ID_LEN];  /* tenant served last (fairness) */
    unsigned wake_pending;

    struct worker *workers;
    size_t nworkers;

    /* the committer */
    pthread_t committer;
    bool committer_started;
    pthread_mutex_t cp_lock;
    pthread_cond_t cp_ready; /* items queued */
    pthread_cond_t cp_done;  /* a batch finished */
    struct cp_item *queue_head, *queue_tail;
    size_t queued;
    bool committer_stop;

    pthread_t keeper;
    bool keeper_started;

    atomic_uint_fast64_t steps, checkpoints, commits, retries, lease_lost, claims, takeovers;
    atomic_uint busy;
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

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
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
 * reservation); collects its events, appended after the whole batch. */
static int apply_item(struct aos_engine *e, struct aos_store_tx *tx, struct cp_item *it)
{
    struct aos_checkpoint *cp = &it->cp;
    bool reserved = true;
    char warn[128] = "";
    int rc;

    events_clear(it->events, &it->nevents);
    it->result = 0;
    it->status[0] = '\0';
    it->err[0] = '\0';
    rc = aos_store_checkpoint(tx, cp, it->day, &it->result, it->status, it->err, sizeof it->err);
    if (rc != AOS_DB_OK || it->result != AOS_CP_OK)
        return rc;
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

struct batch {
    struct aos_engine *e;
    struct cp_item **items;
    size_t n;
};

static int batch_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct batch *b = arg;
    int rc;

    for (size_t i = 0; i < b->n; i++)
        if ((rc = apply_item(b->e, tx, b->items[i])) != AOS_DB_OK) {
            aos_db_seterr(err, errlen, "%s", b->items[i]->err);
            return rc;
        }
    /* Events last: on PostgreSQL the event lock is held from here to the commit. */
    for (size_t i = 0; i < b->n; i++) {
        struct cp_item *it = b->items[i];
        if (it->result != AOS_CP_OK)
            continue;
        if ((rc = events_append(b->e, tx, it->cp.tenant_id, it->cp.run_id, it->events, it->nevents, err, errlen)) !=
            AOS_DB_OK)
            return rc;
    }
    return AOS_DB_OK;
}

/* Sorting by tenant makes every batch take tenant locks (budget checks on
 * PostgreSQL) in one order: two nodes' batches cannot deadlock. */
static int by_tenant(const void *a, const void *b)
{
    const struct cp_item *x = *(const struct cp_item *const *)a, *y = *(const struct cp_item *const *)b;
    return strcmp(x->cp.tenant_id, y->cp.tenant_id);
}

static void commit_batch(struct aos_engine *e, struct cp_item **items, size_t n)
{
    struct batch b = {e, items, n};
    char err[ERR_LEN] = "";
    int rc;

    qsort(items, n, sizeof *items, by_tenant);
    rc = aos_store_transact(e->store, true, batch_tx, &b, err, sizeof err);
    if (rc == AOS_DB_OK) {
        atomic_fetch_add(&e->commits, 1);
        for (size_t i = 0; i < n; i++)
            items[i]->rc = AOS_DB_OK;
    } else if (n > 1 && rc != AOS_DB_UNAVAILABLE) {
        /* One bad checkpoint must not sink its batch: each on its own. */
        for (size_t i = 0; i < n; i++)
            commit_batch(e, &items[i], 1);
        return;
    } else {
        for (size_t i = 0; i < n; i++) {
            items[i]->rc = rc;
            if (items[i]->err[0] == '\0')
                snprintf(items[i]->err, sizeof items[i]->err, "%s", err);
        }
        return;
    }
    bool any_events = false;
    for (size_t i = 0; i < n; i++) {
        if (items[i]->result == AOS_CP_OK) {
            atomic_fetch_add(&e->checkpoints, 1);
            any_events = any_events || items[i]->nevents > 0;
        }
    }
    if (any_events)
        aos_events_committed(e->events);
}

static void *committer_main(void *arg)
{
    struct aos_engine *e = arg;
    size_t max = (size_t)e->conf.checkpoint_batch;
    struct cp_item **items = calloc(max, sizeof *items);
    int64_t window_us = (int64_t)(e->conf.checkpoint_window * 1e6);

    if (items == NULL) {
        aos_err("engine: out of memory starting the committer", NULL);
        return NULL;
    }
    pthread_mutex_lock(&e->cp_lock);
    for (;;) {
        while (e->queue_head == NULL && !e->committer_stop)
            pthread_cond_wait(&e->cp_ready, &e->cp_lock);
        if (e->queue_head == NULL && e->committer_stop)
            break;
        /* Group commit: if the batch is not full, give other workers the
         * window to join it -- but only when others are busy, so a lone
         * step on an idle node commits at once. */
        if (e->queued < max && window_us > 0 && atomic_load(&e->busy) > e->queued) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)(window_us * 1000);
            while (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            while (e->queued < max && atomic_load(&e->busy) > e->queued &&
                   pthread_cond_timedwait(&e->cp_ready, &e->cp_lock, &ts) == 0)
                ;
        }
        size_t n = 0;
        while (e->queue_head != NULL && n < max) {
            items[n++] = e->queue_head;
            e->queue_head = e->queue_head->next;
            e->queued--;
        }
        if (e->queue_head == NULL)
            e->queue_tail = NULL;
        pthread_mutex_unlock(&e->cp_lock);

        commit_batch(e, items, n);

        pthread_mutex_lock(&e->cp_lock);
        for (size_t i = 0; i < n; i++)
            items[i]->done = true;
        pthread_cond_broadcast(&e->cp_done);
    }
    pthread_mutex_unlock(&e->cp_lock);
    free(items);
    return NULL;
}

/* Hands a checkpoint to the committer and waits for its transaction. */
static void submit(struct aos_engine *e, struct cp_item *it)
{
    it->done = false;
    it->next = NULL;
    pthread_mutex_lock(&e->cp_lock);
    if (e->queue_tail != NULL)
        e->queue_tail->next = it;
    else
        e->queue_head = it;
    e->queue_tail = it;
    e->queued++;
    pthread_cond_signal(&e->cp_ready);
    while (!it->done)
        pthread_cond_wait(&e->cp_done, &e->cp_lock);
    pthread_mutex_unlock(&e->cp_lock);
}

/* Submits until the outcome is known: a store outage is waited out (the
 * checkpoint is retried with backoff while our lease may still hold; if
 * the first try did commit, the retry finds the step done and reports a
 * lost lease, and the run is resumed from the store by whoever claims it
 * next). */
static void submit_until_known(struct aos_engine *e, struct cp_item *it)
{
    int64_t wait = 100;
    for (;;) {
        submit(e, it);
        if (it->rc == AOS_DB_OK || (it->rc != AOS_DB_UNAVAILABLE && it->rc != AOS_DB_RETRY))
            return;
        if (wait > ms_of(e->conf.lease)) {
            return;
        }
        aos_warn("engine: checkpoint not written, retrying", "run_id", it->cp.run_id, "error", it->err, NULL);
        sleep_ms(wait);
        wait *= 2;
    }
}

/* ------------------------------------------------------------ claiming */

struct claim {
    struct aos_engine *e;
    struct worker *w;
    const char *tenant_id;
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

static int stop_claimed(struct claim *cl, struct aos_store_tx *tx, const char *status, const char *why, char *err,
                        size_t errlen)
{
    int result = 0;
    int rc = aos_store_run_stop(tx, cl->tenant_id, cl->c.run.id, cl->w->id, status, why, &result, err, errlen);
    if (rc == AOS_DB_OK && result == AOS_CP_OK)
        status_events(cl->events, &cl->nevents, EVENTS_PER_ITEM, status, why, NULL);
    return rc;
}

static int claim_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct claim *cl = arg;
    struct aos_engine *e = cl->e;
    struct aos_claimed_run *c = &cl->c;
    const struct aos_conf_tenant *t;
    char why[300];
    int rc;

    aos_claimed_run_clear(c);
    events_clear(cl->events, &cl->nevents);
    cl->found = cl->runnable = false;
    cl->plugin = NULL;
    rc = aos_store_run_claim(tx, cl->tenant_id, cl->w->id, cl->now, ms_of(e->conf.lease), c, err, errlen);
    if (rc == AOS_DB_NOT_FOUND)
        return AOS_DB_OK;
    if (rc != AOS_DB_OK)
        return rc;
    cl->found = true;

    struct json_object *p = json_object_new_object();
    obj_int(p, "next_step", c->run.next_step);
    obj_int(p, "attempt", c->run.attempt + 1);
    obj_str(p, "worker", cl->w->id);
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

static int claim_events_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct claim *cl = arg;
    int rc = claim_tx(tx, arg, err, errlen);
    if (rc == AOS_DB_OK && cl->found)
        rc = events_append(cl->e, tx, cl->tenant_id, cl->c.run.id, cl->events, cl->nevents, err, errlen);
    return rc;
}

struct ready {
    int64_t now;
    char (*ids)[AOS_ID_LEN];
    size_t n;
};

static int ready_tx(struct aos_store_tx *tx, void *arg, char *err, size_t errlen)
{
    struct ready *r = arg;
    return aos_store_runs_ready_tenants(tx, r->now, r->ids, READY_TENANTS_MAX, &r->n, err, errlen);
}

/* Claims the next run, going round the tenants.  True with cl filled
 * (cl->runnable says whether to execute it). */
static bool claim_next(struct aos_engine *e, struct worker *w, struct claim *cl)
{
    static _Thread_local char ids[READY_TENANTS_MAX][AOS_ID_LEN];
    struct ready r = {aos_store_now_ms(), ids, 0};
    char err[ERR_LEN];
    size_t start = 0;
    int rc;

    if ((rc = aos_store_transact(e->store, false, ready_tx, &r, err, sizeof err)) != AOS_DB_OK) {
        if (rc != AOS_DB_UNAVAILABLE)
            aos_err("engine: cannot read the queue", "error", err, NULL);
        return false;
    }
    if (r.n == 0)
        return false;
    pthread_mutex_lock(&e->lock);
    for (start = 0; start < r.n && strcmp(ids[start], e->rr_last) <= 0; start++)
        ;
    if (start == r.n)
        start = 0;
    pthread_mutex_unlock(&e->lock);

    for (size_t k = 0; k < r.n; k++) {
        const char *tid = ids[(start + k) % r.n];
        cl->e = e;
        cl->w = w;
        cl->tenant_id = tid;
        cl->now = aos_store_now_ms();
        rc = aos_store_transact(e->store, true, claim_events_tx, cl, err, sizeof err);
        if (rc != AOS_DB_OK) {
            events_clear(cl->events, &cl->nevents);
            aos_claimed_run_clear(&cl->c);
            if (rc != AOS_DB_UNAVAILABLE)
                aos_err("engine: claim failed", "tenant_id", tid, "error", err, NULL);
            return false;
        }
        if (!cl->found)
            continue;
        if (cl->nevents > 0)
            aos_events_committed(e->events);
        events_clear(cl->events, &cl->nevents);
        pthread_mutex_lock(&e->lock);
        snprintf(e->rr_last, sizeof e->rr_last, "%s", tid);
        pthread_mutex_unlock(&e->lock);
        atomic_fetch_add(&e->claims, 1);
        if (cl->c.taken_over) {
            atomic_fetch_add(&e->takeovers, 1);
            aos_warn("engine: took over a run whose lease expired", "run_id", cl->c.run.id, NULL);
        }
        return true;
    }
    return false;
}

/* ------------------------------------------------------------ executing */

static void set_inflight(struct worker *w, const char *tenant_id, const char *run_id, bool active)
{
    pthread_mutex_lock(&w->e->lock);
    w->active = active;
    if (active) {
        snprintf(w->tenant_id, sizeof w->tenant_id, "%s", tenant_id);
        snprintf(w->run_id, sizeof w->run_id, "%s", run_id);
        w->step_started = aos_store_now_ms();
    }
    pthread_mutex_unlock(&w->e->lock);
}

static char *dup_buf(const struct aos_buf *b)
{
    char *s = malloc(b->len + 1);
    if (s != NULL) {
        memcpy(s, b->data, b->len);
        s[b->len] = '\0';
    }
    return s;
}

/* Executes steps of a claimed run until it leaves `running`. */
static void execute(struct aos_engine *e, struct worker *w, struct claim *cl)
{
    struct aos_claimed_run *c = &cl->c;
    struct aos_run *run = &c->run;
    char key[AOS_ID_LEN + 24], perr[ERR_LEN], failmsg[ERR_LEN + 64];
    bool first = true;

    for (;;) {
        struct aos_step_result res;
        struct cp_item it;
        char *result_text = NULL;
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
            .decision = first ? c->decision : NULL,
            .decision_len = first && c->decision != NULL ? strlen(c->decision) : 0,
            .config = c->agent.config != NULL ? c->agent.config : "{}",
            .config_len = strlen(c->agent.config != NULL ? c->agent.config : "{}"),
            .agent_id = c->agent.id,
            .agent_name = c->agent.name,
        };
        set_inflight(w, run->tenant_id, run->id, true);
        int64_t started = aos_store_now_ms();
        int prc = aos_plugin_agent_step(cl->plugin, &in, &res, perr, sizeof perr);
        int64_t finished = aos_store_now_ms();
        atomic_fetch_add(&e->steps, 1);

        memset(&it, 0, sizeof it);
        it.cp.tenant_id = run->tenant_id;
        it.cp.run_id = run->id;
        it.cp.worker_id = w->id;
        it.cp.agent_id = c->agent.id;
        it.cp.seq = run->next_step;
        it.cp.attempt = run->attempt + 1;
        it.cp.started_at = started;
        it.cp.finished_at = finished;
        it.agent_name = c->agent.name;
        aos_store_day(finished, it.day);
        it.limits = cl->limits;
        it.reserve_tokens = cl->reserve_tokens;
        it.reserve_micro_usd = cl->reserve_micro_usd;
        if (prc == 0) {
            it.cp.tokens_in = (int64_t)(res.tokens_in > INT64_MAX / 4 ? INT64_MAX / 4 : res.tokens_in);
            it.cp.tokens_out = (int64_t)(res.tokens_out > INT64_MAX / 4 ? INT64_MAX / 4 : res.tokens_out);
            it.cp.cost_micro_usd = (int64_t)(res.cost_micro_usd > INT64_MAX / 4 ? INT64_MAX / 4 : res.cost_micro_usd);
        }

        bool transient = prc != 0 || res.status == AOS_STEP_RETRY;
        if (transient) {
            atomic_fetch_add(&e->retries, 1);
            if (prc == 0)
                snprintf(perr, sizeof perr, "the plugin asked to retry");
            if (run->attempt + 1 >= e->conf.max_attempts) {
                it.cp.kind = AOS_CP_FAILED;
                snprintf(failmsg, sizeof failmsg, "step %" PRId64 " failed %d times; last: %s", run->next_step,
                         e->conf.max_attempts, perr);
                it.cp.error = failmsg;
            } else {
                it.cp.kind = AOS_CP_RETRY;
                it.cp.error = perr;
                it.cp.run_after = finished + backoff_ms(&e->conf, run->attempt,
                                                        prc == 0 ? (int64_t)res.retry_after_ms : 0);
            }
        } else if (res.status == AOS_STEP_FAIL) {
            it.cp.kind = AOS_CP_FAILED;
            it.cp.error = perr[0] != '\0' ? perr : "the step failed";
        } else {
            const struct aos_buf *b = res.status == AOS_STEP_CONTINUE ? &res.state : &res.output;
            if (b->len > 0 && !json_text_valid(b->data, b->len)) {
                it.cp.kind = AOS_CP_FAILED;
                snprintf(perr, sizeof perr, "plugin %s returned a step result that is not JSON", c->agent.plugin);
                it.cp.error = perr;
            } else {
                result_text = b->len > 0 ? dup_buf(b) : NULL;
                it.cp.result = result_text;
                if (res.status == AOS_STEP_CONTINUE) {
                    it.cp.kind = AOS_CP_CONTINUE;
                    it.cp.lease_expires = finished + ms_of(e->conf.lease);
                    it.reserve_next = true;
                } else if (res.status == AOS_STEP_NEEDS_APPROVAL) {
                    it.cp.kind = AOS_CP_APPROVAL;
                    if (it.cp.result == NULL)
                        it.cp.result = "{}";
                    it.cp.approval_expires = e->conf.approval_ttl > 0 ? finished + ms_of(e->conf.approval_ttl) : 0;
                    /* observe: no action runs (the proposal is recorded and
                     * declined); autonomous: actions run without waiting;
                     * supervised: a person decides. */
                    it.cp.autonomy = cl->autonomy;
                    if (strcmp(cl->autonomy, "observe") == 0)
                        it.cp.auto_decision = "rejected";
                    else if (strcmp(cl->autonomy, "autonomous") == 0)
                        it.cp.auto_decision = "approved";
                } else {
                    it.cp.kind = run->stage + 1 < c->stages ? AOS_CP_STAGE_DONE : AOS_CP_DONE;
                    if (it.cp.result == NULL)
                        it.cp.result = "null";
                }
            }
        }
        if (prc == 0)
            aos_plugin_step_result_release(&res);

        submit_until_known(e, &it);
        events_clear(it.events, &it.nevents);
        bool go_on = false;
        if (it.rc != AOS_DB_OK) {
            aos_err("engine: checkpoint failed; the run resumes from its last checkpoint when its lease expires",
                    "run_id", run->id, "error", it.err, NULL);
        } else if (it.result == AOS_CP_LEASE_LOST) {
            atomic_fetch_add(&e->lease_lost, 1);
            aos_warn("engine: lost the lease of a run; its step result is dropped", "run_id", run->id, NULL);
        } else if (strcmp(it.status, "running") == 0) {
            go_on = true;
            free(run->state);
            run->state = result_text; /* CONTINUE: the new state */
            result_text = NULL;
            run->next_step++;
            run->attempt = 0;
        }
        free(result_text);
        first = false;
        if (!go_on)
            break;
        if (atomic_load(&e->stopping)) {
            char err[ERR_LEN];
            int result = 0;
            struct aos_store_tx *tx = NULL;
            if (aos_store_begin(e->store, true, &tx, err, sizeof err) == AOS_DB_OK) {
                if (aos_store_run_release(tx, run->tenant_id, run->id, w->id, &result, err, sizeof err) == AOS_DB_OK)
                    aos_store_commit(tx, err, sizeof err);
                else
                    aos_store_rollback(tx);
            }
            break;
        }
    }
    set_inflight(w, NULL, NULL, false);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct aos_engine *e = w->e;
    struct claim *cl = calloc(1, sizeof *cl);

    if (cl == NULL) {
        aos_err("engine: out of memory starting a worker", NULL);
        return NULL;
    }
    while (!atomic_load(&e->stopping)) {
        struct aos_runtime *rt = atomic_load(&e->enabled) ? aos_runtime_acquire() : NULL;
        bool claimed = false;
        if (rt != NULL) {
            cl->rt = rt;
            claimed = claim_next(e, w, cl);
            if (claimed && cl->runnable) {
                atomic_fetch_add(&e->busy, 1);
                execute(e, w, cl);
                atomic_fetch_sub(&e->busy, 1);
            }
            aos_claimed_run_clear(&cl->c);
            aos_runtime_release(rt);
        }
        if (claimed)
            continue;
        struct timespec ts;
        timespec_in_ms(&ts, ms_of(e->conf.poll));
        pthread_mutex_lock(&e->lock);
        if (e->wake_pending == 0 && !atomic_load(&e->stopping))
            pthread_cond_timedwait(&e->wake, &e->lock, &ts);
        if (e->wake_pending > 0)
            e->wake_pending--;
        pthread_mutex_unlock(&e->lock);
    }
    free(cl);
    return NULL;
}

/* ------------------------------------------------------------ keeper */

struct renew_set {
    struct aos_engine *e;
    char (*tenants)[AOS_ID_LEN];
    char (*runs)[AOS_ID_LEN];
    const char **owners;
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

/* Renews the leases of runs whose step is within step_timeout; a step
 * past it loses its lease, so the run is retried (by whoever claims it). */
static void renew_leases(struct aos_engine *e)
{
    size_t n = e->nworkers, k = 0;
    char (*tenants)[AOS_ID_LEN] = calloc(n, AOS_ID_LEN);
    char (*runs)[AOS_ID_LEN] = calloc(n, AOS_ID_LEN);
    const char **owners = calloc(n, sizeof *owners);
    int64_t now = aos_store_now_ms();
    char err[ERR_LEN];

    if (tenants == NULL || runs == NULL || owners == NULL)
        goto out;
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; i < n; i++) {
        struct worker *w = &e->workers[i];
        if (!w->active)
            continue;
        if (now - w->step_started > ms_of(e->conf.step_timeout)) {
            aos_warn("engine: step exceeded engine.step_timeout; its lease will lapse and the step be retried",
                     "run_id", w->run_id, NULL);
            continue;
        }
        memcpy(tenants[k], w->tenant_id, AOS_ID_LEN);
        memcpy(runs[k], w->run_id, AOS_ID_LEN);
        owners[k] = w->id;
        k++;
    }
    pthread_mutex_unlock(&e->lock);
    if (k > 0) {
        struct renew_set r = {e, tenants, runs, owners, k, now + ms_of(e->conf.lease)};
        if (aos_store_transact(e->store, true, renew_tx, &r, err, sizeof err) != AOS_DB_OK)
            aos_warn("engine: lease renewal failed", "error", err, NULL);
    }
out:
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
    int64_t renew_every = ms_of(e->conf.lease) / 3;
    int64_t last_renew = 0, last_expire = 0, last_prune = 0;
    char err[ERR_LEN];

    if (renew_every < 100)
        renew_every = 100;
    while (!atomic_load(&e->stopping) || atomic_load(&e->busy) > 0) {
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
        if (!atomic_load(&e->stopping))
            pthread_cond_timedwait(&e->wake, &e->lock, &ts);
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
    pthread_cond_init(&e->wake, NULL);
    pthread_mutex_init(&e->cp_lock, NULL);
    pthread_cond_init(&e->cp_ready, NULL);
    pthread_cond_init(&e->cp_done, NULL);
    if (conf->workers == 0)
        return e;
    gethostname(host, sizeof host - 1);
    e->nworkers = (size_t)conf->workers;
    if ((e->workers = calloc(e->nworkers, sizeof *e->workers)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (pthread_create(&e->committer, NULL, committer_main, e) != 0) {
        snprintf(err, errlen, "cannot start the checkpoint committer thread");
        goto fail;
    }
    e->committer_started = true;
    for (size_t i = 0; i < e->nworkers; i++) {
        struct worker *w = &e->workers[i];
        w->e = e;
        /* Unique across nodes and restarts: a restarted node must not
         * mistake its predecessor's leases for its own. */
        snprintf(w->id, sizeof w->id, "%.30s:%ld:%" PRId64 ":%zu", host, (long)getpid(), aos_store_now_ms(), i);
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
    atomic_store(&e->stopping, true);
    pthread_mutex_lock(&e->lock);
    pthread_cond_broadcast(&e->wake);
    pthread_mutex_unlock(&e->lock);
}

void aos_engine_wake(struct aos_engine *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&e->lock);
    e->wake_pending++;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->lock);
}

void aos_engine_stop(struct aos_engine *e, double timeout_s)
{
    bool stragglers = false;

    if (e == NULL)
        return;
    atomic_store(&e->stopping, true);
    pthread_mutex_lock(&e->lock);
    pthread_cond_broadcast(&e->wake);
    pthread_mutex_unlock(&e->lock);
    for (size_t i = 0; i < e->nworkers; i++) {
        struct worker *w = &e->workers[i];
        if (!w->started)
            continue;
        struct timespec ts;
        timespec_in_ms(&ts, ms_of(timeout_s > 0 ? timeout_s : 0.001));
        if (pthread_timedjoin_np(w->thread, NULL, &ts) != 0) {
            stragglers = true; /* a step that would not finish: its lease lapses */
            pthread_detach(w->thread);
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
    if (e->committer_started) {
        pthread_mutex_lock(&e->cp_lock);
        e->committer_stop = true;
        pthread_cond_signal(&e->cp_ready);
        pthread_mutex_unlock(&e->cp_lock);
        pthread_join(e->committer, NULL);
    }
    free(e->workers);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->wake);
    pthread_mutex_destroy(&e->cp_lock);
    pthread_cond_destroy(&e->cp_ready);
    pthread_cond_destroy(&e->cp_done);
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
    out->busy = atomic_load(&e->busy);
    out->workers = (unsigned)e->nworkers;
}
