/*
 * The application object handed to every handler (req->app), its
 * readiness state, and the registration functions of the route groups.
 */
#ifndef AOS_API_H
#define AOS_API_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <aos/plugin.h> /* AOS_ID_MAX */

struct aos_pool;
struct aos_metrics;
struct aos_router;
struct aos_http_server;
struct aos_http_request;
struct aos_store;
struct aos_gate;
struct aos_ratelimit;
struct aos_pii;
struct aos_journal;
struct aos_engine;
struct aos_run;
struct aos_step_row;
struct json_object;
struct aos_events;

/* Why the node is not ready; each condition is tracked separately so that
 * e.g. a store outage during a drain reports both. */
enum aos_unready {
    AOS_UNREADY_STARTING = 1u << 0, /* start-up not finished */
    AOS_UNREADY_STORE = 1u << 1,    /* store unreachable or not migrated */
    AOS_UNREADY_DRAINING = 1u << 2  /* SIGTERM received */
};

struct aos_app {
    struct aos_pool *pool;
    struct aos_metrics *metrics;
    struct aos_http_server *server;
    struct aos_store *store;
    struct aos_gate *login_gate; /* bounds concurrent Argon2id work */
    struct aos_pool *hash_pool;  /* runs it, at a lower CPU priority than the loops */
    struct aos_ratelimit *ratelimit;
    /* Set once the loops and the pool are gone: late completions (a Redis
     * check answered at teardown) must not start handlers any more. */
    atomic_bool stopped;
    struct aos_pii *pii;         /* PII detectors (core/pii); NULL: /pii answers 503 */
    struct aos_journal *journal; /* API journal writer (gateway/journal.h) */
    struct aos_events *events;   /* event hub (events/events.h); NULL: no live streams */
    struct aos_engine *engine;   /* the run executor (core/orch); NULL on an api-only node */
    time_t started;

    /* private: readiness, guarded by lock */
    pthread_mutex_t lock;
    unsigned unready;         /* enum aos_unready bits */
    char store_reason[256];   /* why the store is unavailable (no secrets) */
};

void aos_app_init(struct aos_app *app);
void aos_app_destroy(struct aos_app *app);
/* Sets or clears a readiness condition.  reason (store only) is copied. */
void aos_app_set_unready(struct aos_app *app, enum aos_unready what, bool on, const char *reason);
/* True if condition `what` currently holds. */
bool aos_app_unready(struct aos_app *app, enum aos_unready what);
/* True when ready; otherwise writes "draining", "store unavailable: ..."
 * etc. into reason. */
bool aos_app_ready(struct aos_app *app, char *reason, size_t len);

/* Answers a failed store call: 503 + Retry-After when the database is
 * unreachable or busy, 409 on a constraint, 404 when not found, 500
 * otherwise (the detail is logged, not sent). */
void aos_api_store_error(struct aos_http_request *req, int status, const char *detail);

/* AOS_TESTING=1 only: POST /api/v1/testing/echo (see aosd(8)). */
int aos_api_testing_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);

/* Finds name=value in a raw query string.  Meant for values that need no
 * percent-decoding (limits, cursors: digits, '.', hex, '-'); an encoded
 * one simply fails the caller's validation.  Returns 1 found (copied into
 * out), 0 absent, -1 too long for out or repeated. */
int aos_api_query_get(const char *query, const char *name, char *out, size_t size);
/* A page size: decimal 1..max, nothing else. */
bool aos_api_parse_limit(const char *s, size_t max, size_t *out);

/* Reading a request and answering a page of a list (query.c).  A function
 * that returns false or NULL has answered the request (4xx/500): the
 * caller must not touch req again. */

/* ?limit= into *limit (def when absent, else 1..max) and ?cursor= into
 * cursor (unchecked: the store refuses a cursor it did not issue).  False
 * having answered 400 invalid_query. */
bool aos_api_page_query(struct aos_http_request *req, size_t def, size_t max, size_t *limit, char *cursor,
                        size_t cursor_size);
/* Answers 200 {"items": items, "next_cursor": next_cursor, null when NULL
 * or ""}, not to be cached.  Takes over items. */
void aos_api_respond_page(struct aos_http_request *req, struct json_object *items, const char *next_cursor);
/* Answers a failed page read: 400 malformed cursor on AOS_DB_CONSTRAINT,
 * otherwise aos_api_store_error. */
void aos_api_page_error(struct aos_http_request *req, int status, const char *detail);
/* The canonical UUID in the path's {id}, or NULL having answered 404 "no
 * such <what>" (a malformed id names nothing, exactly like another
 * tenant's). */
const char *aos_api_path_uuid(struct aos_http_request *req, const char *what);

/* size zeroed bytes for work done on req's behalf (a job, a stream's
 * context; the caller free()s them), or NULL having answered 500. */
void *aos_api_alloc(struct aos_http_request *req, size_t size);
/* Whom a job acts for, kept in the job: its work runs on the pool. */
struct aos_api_caller {
    char tenant_id[AOS_ID_MAX];
    char principal[AOS_ID_MAX]; /* the principal's subject: a user or API key id */
};
/* Copies req's tenant and subject into c. */
void aos_api_caller_set(struct aos_api_caller *c, const struct aos_http_request *req);

/* True if s holds a control character (C0 or DEL): refused in names. */
bool aos_api_has_control(const char *s);
/* True if s is one of list[0..n). */
bool aos_api_listed(const char *s, const char *const *list, size_t n);
/* True having answered 422 invalid_request "unknown field '<key>'" if the
 * JSON object body has a member not in known[0..n). */
bool aos_api_unknown_field(struct aos_http_request *req, struct json_object *body, const char *const *known,
                           size_t n);

/* The auth guard (see guard.c): installed with aos_http_server_set_guard. */
void aos_api_guard(struct aos_http_request *req);
/* True for a canonical 36-character UUID (any case). */
bool aos_api_uuid_valid(const char *s);

/* /api/v1/auth/... */
int aos_api_auth_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);

/* /api/v1/agents: CRUD of the tenant's agents (see agents.c). */
int aos_api_agents_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);

/* /api/v1/workflows: CRUD of the tenant's workflows (see workflows.c). */
int aos_api_workflows_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);

/* GET /api/v1/aoa/dashboard and /api/v1/orchestration/vitals (see dashboard.c). */
int aos_api_dashboard_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);

/* /api/v1/runs, /api/v1/aoa/run, /api/v1/agents/{id}/runs (see runs.c). */
int aos_api_runs_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);
/* /api/v1/approvals (see approvals.c). */
int aos_api_approvals_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);
/* A run as the API shows it; steps only when with_steps. */
struct json_object *aos_api_run_json(const struct aos_run *r, const struct aos_step_row *steps, size_t nsteps,
                                     bool with_steps);

/* /api/v1/events (paged list), the SSE streams /api/v1/events/stream and
 * /api/v1/aoa/events, POST /api/v1/events/stream-token (see events.c). */
int aos_api_events_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);
/* Route flag: the guard also accepts a stream token (events/token.h) in
 * ?token= on this route -- and only there, and never an access token. */
#define AOS_ROUTE_STREAM_TOKEN 0x2u
/* Route flag: the response holds a secret (a new API key, a stream token),
 * so it is never stored for Idempotency-Key replay: such a POST runs each
 * time it is sent, and the header is ignored. */
#define AOS_ROUTE_NO_IDEMPOTENCY 0x4u

/* GET /api/v1/journal (tenant admins). */
int aos_api_journal_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);

/* POST /api/v1/pii/analyze and /api/v1/pii/anonymize (app->pii). */
int aos_api_pii_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);

/* /healthz, /readyz, /metrics. */
int aos_api_ops_register(struct aos_router *router, struct aos_app *app, char *err, size_t errlen);

#endif
