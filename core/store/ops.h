/*
 * Typed, tenant-scoped store operations: the only way the rest of the
 * daemon reads and writes rows.  Each runs inside a transaction the caller
 * owns (store.h: aos_store_begin/commit or aos_store_transact), so several
 * operations commit or roll back together.
 *
 * Tenant scoping: every operation on tenant-owned data takes `tenant_id`
 * and puts it in the WHERE clause (or the row it writes).  A row of another
 * tenant is indistinguishable from a missing row: AOS_DB_NOT_FOUND.  The
 * two exceptions are the sign-in lookups, aos_store_apikey_get_by_prefix
 * and aos_store_user_find_login (see there).
 *
 * Ids are canonical UUID text (36 characters + NUL).  Ids given in upper
 * case are accepted and normalised; a malformed id matches nothing
 * (AOS_DB_NOT_FOUND), on both drivers alike.
 *
 * Results: AOS_DB_OK; AOS_DB_NOT_FOUND (no such row in this tenant);
 * AOS_DB_CONSTRAINT (duplicate, invalid value such as an unknown role,
 * unknown parent); other AOS_DB_* codes from the store (store/db.h).  err
 * gets a one-line reason that never holds secrets (password hashes).
 *
 * Memory: output structs are filled by the call and released by their
 * *_clear function (arrays by *_free); on failure they are left cleared.
 * Strings inside are malloc'd unless they are fixed-size arrays.
 *
 * Times are unix milliseconds (UTC); days are "YYYY-MM-DD" in UTC.
 */
#ifndef AOS_STORE_OPS_H
#define AOS_STORE_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "store/store.h"

#define AOS_ID_LEN 37     /* UUID text + NUL */
#define AOS_ROLE_LEN 16   /* "admin" | "approver" | "user" + NUL */
#define AOS_CURSOR_LEN 64 /* keyset cursors handed to clients */
#define AOS_DAY_LEN 11    /* "YYYY-MM-DD" + NUL */

/* ---------------------------------------------------------------- helpers */

/* Wall clock in unix milliseconds. */
int64_t aos_store_now_ms(void);
/* A new random (version 4) id in canonical lower-case form. */
void aos_store_id_new(char out[AOS_ID_LEN]);
/* Copies a UUID in canonical lower-case form; false if in is not a UUID. */
bool aos_store_id_norm(const char *in, char out[AOS_ID_LEN]);
/* "YYYY-MM-DD" of a unix-ms time, in UTC. */
void aos_store_day(int64_t ms, char out[AOS_DAY_LEN]);
/* Whether role is one of "admin", "approver", "user". */
bool aos_store_role_valid(const char *role);

/* ---------------------------------------------------------------- tenants */

struct aos_tenant {
    char id[AOS_ID_LEN];
    char *name;
    /* JSON text: {"limits":{"read":{"per_minute":N,"burst":N},"write":{...}},
     * "budgets":{"tokens_day":N,"tokens_month":N,"micro_usd_day":N,
     * "micro_usd_month":N}, "plugins":[...] or null (all enabled),
     * "autonomy":"supervised"}.  Compare by value: PostgreSQL re-formats. */
    char *settings;
    bool active;
    int64_t created_at;
    int64_t updated_at;
};
void aos_tenant_clear(struct aos_tenant *t);
void aos_tenants_free(struct aos_tenant *t, size_t n);

struct aos_tenant_sync_stats {
    size_t added;   /* new rows */
    size_t updated; /* name, settings or activity changed */
    size_t unchanged;
    size_t deactivated; /* in the store, active, but no longer in config */
};

/* Makes the store's tenants match config, which is their source of truth:
 * every configured tenant is inserted or updated (name, settings, active),
 * and every active tenant NOT in the list is deactivated (its data stays;
 * nothing is ever deleted).  Idempotent: a second call changes nothing
 * (updated_at included).  Names may be swapped between tenants in one
 * call.  Run it in a write transaction. */
int aos_store_tenants_sync(struct aos_store_tx *tx, const struct aos_conf_tenant *tenants, size_t n,
                           char *err, size_t errlen);
/* The same, counting what changed (for a log line). */
int aos_store_tenants_sync_stats(struct aos_store_tx *tx, const struct aos_conf_tenant *tenants, size_t n,
                                 struct aos_tenant_sync_stats *stats, char *err, size_t errlen);
/* A tenant by id, active or not (out->active says).  NOT_FOUND if absent. */
int aos_store_tenant_get(struct aos_store_tx *tx, const char *tenant_id, struct aos_tenant *out, char *err,
                         size_t errlen);
/* Every tenant (only the active ones unless include_inactive), by name.
 * *out is malloc'd (NULL when *n == 0): aos_tenants_free. */
int aos_store_tenant_list(struct aos_store_tx *tx, bool include_inactive, struct aos_tenant **out, size_t *n,
                          char *err, size_t errlen);

/* ---------------------------------------------------------------- users */

struct aos_user {
    char id[AOS_ID_LEN];
    char tenant_id[AOS_ID_LEN];
    char *email;
    char *password_hash; /* NULL if none, and always NULL from lists */
    char role[AOS_ROLE_LEN];
    int64_t created_at;
    int64_t updated_at;
};
void aos_user_clear(struct aos_user *u);
void aos_users_free(struct aos_user *u, size_t n);

/* Creates a user; the caller normalises email and hashes the password
 * (password_hash may be NULL for users of another auth backend).  id_out
 * receives the new id.  CONSTRAINT: email taken in this tenant, unknown
 * role, or no such tenant. */
int aos_store_user_create(struct aos_store_tx *tx, const char *tenant_id, const char *email,
                          const char *password_hash, const char *role, char id_out[AOS_ID_LEN], char *err,
                          size_t errlen);
int aos_store_user_get(struct aos_store_tx *tx, const char *tenant_id, const char *user_id,
                       struct aos_user *out, char *err, size_t errlen);
int aos_store_user_get_by_email(struct aos_store_tx *tx, const char *tenant_id, const char *email,
                                struct aos_user *out, char *err, size_t errlen);
/* THE one deliberate cross-tenant user lookup, for sign-in: a login form
 * carries only an e-mail (and a password), and the user's tenant is what
 * we are trying to learn.  Finds the user with `email` (normalised by the
 * caller) among ACTIVE tenants only (joined with tenants.active = 1): in
 * tenant_id when it is non-NULL, else in every active tenant.  *matches
 * receives 0, 1, or 2 meaning "two or more" (the e-mail is registered in
 * several tenants: the client must name its tenant, since one password
 * cannot pick between accounts).  AOS_DB_OK with out filled (password hash
 * included) only when exactly one user matches; AOS_DB_NOT_FOUND, out
 * cleared, when none does AND when several do -- so a caller that ignores
 * *matches fails closed.  A malformed tenant_id matches nothing.
 * Cost: one probe of the (tenant_id, email) index per active tenant. */
int aos_store_user_find_login(struct aos_store_tx *tx, const char *tenant_id, const char *email,
                              struct aos_user *out, int *matches, char *err, size_t errlen);
/* One page of the tenant's users, oldest first.  cursor: NULL or "" for
 * the first page, else the next_cursor of the previous page.  limit 1..1000.
 * next_cursor (AOS_CURSOR_LEN bytes) receives the cursor of the next page,
 * or "" when this page is the last.  CONSTRAINT for a malformed cursor or
 * limit.  *out is malloc'd (NULL when *n == 0): aos_users_free. */
int aos_store_user_list(struct aos_store_tx *tx, const char *tenant_id, const char *cursor, size_t limit,
                        struct aos_user **out, size_t *n, char next_cursor[AOS_CURSOR_LEN], char *err,
                        size_t errlen);
int aos_store_user_set_role(struct aos_store_tx *tx, const char *tenant_id, const char *user_id,
                            const char *role, char *err, size_t errlen);
/* For password changes and re-hashing with new Argon2 parameters. */
int aos_store_user_set_password_hash(struct aos_store_tx *tx, const char *tenant_id, const char *user_id,
                                     const char *password_hash, char *err, size_t errlen);
/* Deletes the user and (ON DELETE CASCADE) the user's API keys. */
int aos_store_user_delete(struct aos_store_tx *tx, const char *tenant_id, const char *user_id, char *err,
                          size_t errlen);

/* ---------------------------------------------------------------- API keys */

struct aos_api_key {
    char id[AOS_ID_LEN];
    char tenant_id[AOS_ID_LEN];
    char user_id[AOS_ID_LEN]; /* "" for a service key */
    char *name;
    char *prefix;
    char *secret_hash; /* only from aos_store_apikey_get_by_prefix; NULL otherwise */
    char role[AOS_ROLE_LEN];
    int64_t created_at;
    int64_t expires_at;   /* 0 = never */
    int64_t revoked_at;   /* 0 = not revoked */
    int64_t last_used_at; /* 0 = never */
};
void aos_api_key_clear(struct aos_api_key *k);
void aos_api_keys_free(struct aos_api_key *k, size_t n);

struct aos_api_key_spec {
    const char *user_id;     /* NULL for a service key */
    const char *name;        /* label; for a service key, the service's name */
    const char *prefix;      /* public lookup part of the key, unique across tenants */
    const char *secret_hash; /* the secret, hashed by the caller */
    const char *role;
    int64_t expires_at; /* unix ms; 0 = never */
};
/* CONSTRAINT: prefix taken, unknown role, user not in this tenant. */
int aos_store_apikey_create(struct aos_store_tx *tx, const char *tenant_id,
                            const struct aos_api_key_spec *spec, char id_out[AOS_ID_LEN], char *err,
                            size_t errlen);
/* A lookup not scoped by a tenant argument (with aos_store_user_find_login
 * the only ones): an API key arrives before anyone knows the tenant, and
 * the key itself names it.  Returns
 * the key with its tenant_id and secret_hash; the caller must compare the
 * secret in constant time and check the tenant (active, matching
 * X-Tenant-ID).  Revoked and expired keys are NOT_FOUND. */
int aos_store_apikey_get_by_prefix(struct aos_store_tx *tx, const char *prefix, struct aos_api_key *out,
                                   char *err, size_t errlen);
/* A key of the tenant by id (revoked included), without the secret hash. */
int aos_store_apikey_get(struct aos_store_tx *tx, const char *tenant_id, const char *key_id,
                         struct aos_api_key *out, char *err, size_t errlen);
/* The tenant's keys, oldest first, without secret hashes: all of them, or
 * only user_id's (non-NULL); revoked ones only if include_revoked. */
int aos_store_apikey_list(struct aos_store_tx *tx, const char *tenant_id, const char *user_id,
                          bool include_revoked, struct aos_api_key **out, size_t *n, char *err,
                          size_t errlen);
/* Revokes a key (kept, with revoked_at).  owner_user_id non-NULL: only if
 * the key belongs to that user (a user revoking their own key).  Revoking
 * a revoked key is AOS_DB_OK and keeps the first revocation time. */
int aos_store_apikey_revoke(struct aos_store_tx *tx, const char *tenant_id, const char *key_id,
                            const char *owner_user_id, char *err, size_t errlen);
/* Records use.  Writes at most once a minute per key, so that a busy key
 * does not turn every request into a write. */
int aos_store_apikey_touch(struct aos_store_tx *tx, const char *tenant_id, const char *key_id, char *err,
                           size_t errlen);

/* ---------------------------------------------------------------- usage */

struct aos_usage {
    int64_t tokens_in;
    int64_t tokens_out;
    int64_t micro_usd;
};
/* Adds to the tenant's counters of `day` ("YYYY-MM-DD", UTC) for agent_id
 * (NULL: not attributed to an agent) in one atomic upsert: concurrent adds
 * never lose an update.  Values must be >= 0 (CONSTRAINT otherwise). */
int aos_store_usage_add(struct aos_store_tx *tx, const char *tenant_id, const char *day, const char *agent_id,
                        const struct aos_usage *delta, char *err, size_t errlen);
/* Totals over days from_day..to_day inclusive, for one agent (agent_id) or
 * the whole tenant (NULL: every agent plus unattributed usage).  Zeros,
 * AOS_DB_OK, when nothing was recorded. */
int aos_store_usage_total(struct aos_store_tx *tx, const char *tenant_id, const char *agent_id,
                          const char *from_day, const char *to_day, struct aos_usage *out, char *err,
                          size_t errlen);

/* ---------------------------------------------------------------- journal */

/* The API journal (core/gateway/journal.h writes it, GET /api/v1/journal
 * reads it): one row per authenticated request.  Never bodies, headers,
 * tokens or raw paths: the route is the matched pattern.  Fixed-size
 * fields so that the writer's queue needs no allocation per request. */
#define AOS_JOURNAL_RID_LEN 129 /* X-Request-ID (server limit 128) + NUL */
#define AOS_JOURNAL_METHOD_LEN 16
#define AOS_JOURNAL_ROUTE_LEN 160
#define AOS_JOURNAL_PRINCIPAL_LEN 64
#define AOS_JOURNAL_IP_LEN 64
struct aos_journal_record {
    int64_t id; /* from lists; ignored by insert */
    char tenant_id[AOS_ID_LEN];
    int64_t time_ms;
    char request_id[AOS_JOURNAL_RID_LEN];
    char principal[AOS_JOURNAL_PRINCIPAL_LEN]; /* "" = none (stored as NULL) */
    char method[AOS_JOURNAL_METHOD_LEN];
    char route[AOS_JOURNAL_ROUTE_LEN];
    int status;
    int64_t latency_us;
    int64_t bytes_in;
    int64_t bytes_out;
    char client_ip[AOS_JOURNAL_IP_LEN]; /* "" = unknown (stored as NULL) */
    bool request_id_generated;          /* the server made the id: no PII to redact (not stored) */
};

/* Inserts recs[0..n) (repeated prepared inserts: call it in ONE write
 * transaction per batch).  A record whose tenant_id is malformed or names
 * no tenant in the store is skipped, not an error -- a batch must never
 * be poisoned by one row -- so *inserted may be < n.  Text fields must be
 * valid UTF-8 (the gateway writer keeps them printable ASCII). */
int aos_store_journal_insert(struct aos_store_tx *tx, const struct aos_journal_record *recs, size_t n,
                             size_t *inserted, char *err, size_t errlen);
/* One page of the tenant's journal, NEWEST first (time, then id).  cursor:
 * NULL or "" for the first page, else the previous page's next_cursor
 * ("<time_ms>.<id>", keyset: stable while rows are added).  limit 1..1000.
 * next_cursor gets "" on the last page.  CONSTRAINT for a malformed cursor
 * or limit.  *out is malloc'd (NULL when *n == 0): free() it. */
int aos_store_journal_list(struct aos_store_tx *tx, const char *tenant_id, const char *cursor, size_t limit,
                           struct aos_journal_record **out, size_t *n, char next_cursor[AOS_CURSOR_LEN],
                           char *err, size_t errlen);
/* Retention, across tenants: deletes up to `limit` rows with time before
 * older_than_ms, oldest ids first; *deleted says how many (call again
 * while it equals limit).  Bounded work per call: it looks only at the
 * `limit` oldest rows by id, which are the oldest by time as rows are
 * written in time order (a row stamped in the future by a clock jump
 * delays the rows behind it until its own time passes). */
int aos_store_journal_prune(struct aos_store_tx *tx, int64_t older_than_ms, size_t limit, size_t *deleted,
                            char *err, size_t errlen);

/* ---------------------------------------------------------------- agents */

/* An agent: a tenant's configured instance of an agent plugin.  Deleting
 * one is soft (deleted_at is set: runs keep referring to it); a deleted
 * agent is NOT_FOUND to every operation here and its name is free again. */
#define AOS_AGENT_NAME_MAX 100 /* code points */

struct aos_agent {
    char id[AOS_ID_LEN];
    char tenant_id[AOS_ID_LEN];
    char *name;
    char *plugin;
    char *config;          /* JSON object text; compare by value (PostgreSQL re-formats) */
    char *autonomy;        /* "observe" | "supervised" | "autonomous"; NULL: the tenant's mode */
    char *approval_policy; /* JSON object text, "{}" when none */
    /* Budgets of the agent's own; -1 = none (the tenant's still apply). */
    int64_t budget_tokens_day;
    int64_t budget_tokens_month;
    int64_t budget_micro_usd_day;
    int64_t budget_micro_usd_month;
    /* The most one step may spend, as the agent declares it (reserved
     * against the budgets before the step runs); -1 = none declared: the
     * engine's default (engine.step_reserve_tokens / _micro_usd). */
    int64_t step_reserve_tokens;
    int64_t step_reserve_micro_usd;
    char *created_by; /* principal that created it; NULL if unknown */
    int64_t created_at;
    int64_t updated_at;
};
void aos_agent_clear(struct aos_agent *a);
void aos_agents_free(struct aos_agent *a, size_t n);

/* What create and update write.  The caller checks that the plugin exists,
 * is an agent plugin, is allowed for the tenant and accepts the config;
 * the store checks only the shapes below (CONSTRAINT otherwise). */
struct aos_agent_spec {
    const char *name;            /* 1..AOS_AGENT_NAME_MAX code points of valid UTF-8 */
    const char *plugin;          /* non-empty */
    const char *config;          /* a JSON object; NULL = "{}" */
    const char *autonomy;        /* NULL or one of the three modes */
    const char *approval_policy; /* a JSON object; NULL = "{}" */
    int64_t budget_tokens_day;   /* each >= 0, or -1 = none */
    int64_t budget_tokens_month;
    int64_t budget_micro_usd_day;
    int64_t budget_micro_usd_month;
    int64_t step_reserve_tokens; /* each >= 0, or -1 = none (the engine's default) */
    int64_t step_reserve_micro_usd;
    const char *created_by; /* create only; NULL = unknown */
};
/* A spec with every budget and step reserve "none" and everything else NULL. */
void aos_agent_spec_init(struct aos_agent_spec *spec);
/* Whether s is NULL-free valid JSON text of an object. */
bool aos_store_json_object_valid(const char *s);

/* Creates an agent; id_out receives its id.  CONSTRAINT: a live agent of
 * the tenant has this name, a malformed field, or no such tenant. */
int aos_store_agent_create(struct aos_store_tx *tx, const char *tenant_id, const struct aos_agent_spec *spec,
                           char id_out[AOS_ID_LEN], char *err, size_t errlen);
/* A live (not deleted) agent of the tenant, by id or by exact name. */
int aos_store_agent_get(struct aos_store_tx *tx, const char *tenant_id, const char *agent_id,
                        struct aos_agent *out, char *err, size_t errlen);
int aos_store_agent_get_by_name(struct aos_store_tx *tx, const char *tenant_id, const char *name,
                                struct aos_agent *out, char *err, size_t errlen);
/* One page of the tenant's live agents, OLDEST first (created_at, then
 * id).  cursor: NULL or "" for the first page, else the previous page's
 * next_cursor ("<created_at>.<id>", keyset: stable while agents are added
 * or deleted).  limit 1..1000.  next_cursor gets "" on the last page.
 * CONSTRAINT for a malformed cursor or limit.  *out is malloc'd (NULL when
 * *n == 0): aos_agents_free. */
int aos_store_agent_list(struct aos_store_tx *tx, const char *tenant_id, const char *cursor, size_t limit,
                         struct aos_agent **out, size_t *n, char next_cursor[AOS_CURSOR_LEN], char *err,
                         size_t errlen);
/* Replaces every field of a live agent but created_by/created_at with
 * spec's (spec->created_by is ignored); updated_at is now.  NOT_FOUND: no
 * such live agent in the tenant.  CONSTRAINT as for create. */
int aos_store_agent_update(struct aos_store_tx *tx, const char *tenant_id, const char *agent_id,
                           const struct aos_agent_spec *spec, char *err, size_t errlen);
/* Soft-deletes a live agent.  NOT_FOUND if absent or already deleted. */
int aos_store_agent_delete(struct aos_store_tx *tx, const char *tenant_id, const char *agent_id, char *err,
                           size_t errlen);

#endif
