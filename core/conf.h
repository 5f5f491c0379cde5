/*
 * Configuration: libconfig files -> one typed, validated struct aos_conf.
 *
 * Sources, in this order: the main file (aosd.conf), then every *.conf in
 * <dir of main file>/conf.d/ and <dir of main file>/tenants.d/, each
 * directory in strcmp() order (regular files only).  Groups merge across
 * files member by member at every depth (limits.read.burst in one file and
 * limits.read.per_minute in another is fine); the same leaf setting in two
 * files is an error naming both places.  The `tenants` lists of all files
 * are concatenated.
 *
 * Every setting is declared in one static table in conf.c (name, type,
 * default, range) and validated by one piece of code.  Unknown settings are
 * errors.  Every error names file:line and the setting path.
 *
 * Ownership: aos_conf_load() returns a heap struct owning every string and
 * array in it, plus the libconfig trees that plugin blocks point into.
 * aos_conf_free() releases all of it.  A loaded aos_conf is immutable and
 * may be read from any thread; a reload builds a new one.
 */
#ifndef AOS_CONF_H
#define AOS_CONF_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AOS_UUID_STR 37 /* 36 chars + NUL */

struct aos_listen {
    char *host;          /* "127.0.0.1", "::1", "0.0.0.0" (no brackets) */
    uint16_t port;
    char *text;          /* as written in the config, for log lines */
};

struct aos_conf_server {
    struct aos_listen *listen; /* default: 127.0.0.1:8080 */
    size_t nlisten;
    int threads;               /* HTTP event loops (SO_REUSEPORT); default 1 */
    int workers;               /* blocking-work thread pool size; default 4 */
    int64_t max_body_size;     /* bytes; default 1 MiB (1048576) -> 413 */
    int64_t max_header_size;   /* bytes of all request headers; default 16384 -> 431 */
    int max_headers;           /* header lines; default 100 -> 431 */
    int max_uri_size;          /* bytes; default 8192 -> 414 */
    int max_json_depth;        /* nesting of request JSON; default 32 -> 400 */
    int max_connections;       /* per node; default 10000; excess accepted then closed */
    double header_timeout;     /* s to receive a request's headers; default 10 */
    double body_timeout;       /* s of read inactivity while receiving a body; default 30 */
    double write_timeout;      /* s of write inactivity while sending; default 30 */
    double idle_timeout;       /* s a keep-alive connection may idle; default 60 */
    double drain_timeout;      /* s to finish in-flight requests on SIGTERM; default 30 */
    int pool_queue;            /* max queued blocking jobs before 503; default 1024 */
    char *data_dir;            /* default LOCALSTATEDIR "/lib/aos" */
    char *www_dir;             /* web console; default DATADIR "/aos/www" */
    char *user;                /* drop privileges to this user after bind when root; "" = don't */
    char *roles;               /* "api,worker" (default), "api" or "worker" */
};

struct aos_conf_log {
    int level;                 /* enum aos_log_lvl; default info */
    int format;                /* enum aos_log_format; default text */
};

struct aos_conf_store {
    char *driver;              /* "sqlite" (default) or "pgsql" */
    char *path;                /* sqlite file; default <data_dir>/aos.db */
    char *conninfo;            /* pgsql conninfo (secret: never logged); "" if unset */
    int pool_size;             /* pgsql connections; default 4 */
    double busy_timeout;       /* s; sqlite busy timeout; default 5 */
    bool auto_migrate;         /* default: true for sqlite, false for pgsql */
    bool auto_migrate_set;     /* whether the file set it */
};

struct aos_conf_redis {
    bool enabled;              /* true if the group is present with a url */
    char *url;                 /* redis://host:port/db or unix:///path; secret-safe logging */
    double connect_timeout;    /* s; default 2 */
};

struct aos_conf_argon2 {
    int t_cost;                /* default 2 (OWASP) */
    int m_cost_kib;            /* default 19456 (OWASP) */
    int parallelism;           /* default 1 */
};

struct aos_conf_auth {
    char *jwt_secret_file;     /* required: the one setting without a default; not opened by conf.c */
    int token_ttl;             /* s; default 28800 (8h) */
    char **backends;           /* default ["auth-local","auth-apikey"]; not checked against plugins.enable */
    size_t nbackends;
    char *registration;        /* "closed" (default) | "open" | "admin-only" */
    char *registration_tenant; /* tenant name or id for "open"; "" otherwise */
    int password_min_length;   /* default 12 */
    int password_max_length;   /* default 128 */
    int max_concurrent_hashes; /* default = workers / 2, at least 1 */
    struct aos_conf_argon2 argon2;
};

struct aos_rate {
    int per_minute;
    int burst;
};

struct aos_conf_limits {
    bool enabled;              /* default true; AOS_TESTING=1 in the environment forces false */
    struct aos_rate read;      /* default 300/min, burst 60 */
    struct aos_rate write;     /* default 100/min, burst 30 */
    char **exempt;             /* path prefixes */
    size_t nexempt;
    char *policy;              /* "local" (default) | "redis" */
    char *redis_fail;          /* "open" | "closed" | "local" (default) */
};

/* A plugin's own block: plugins: { agent-echo = { ... }; } */
struct aos_conf_plugin_block {
    char *name;
    const config_setting_t *setting; /* points into a libconfig tree owned by aos_conf */
    const char *file;                /* source file, owned by aos_conf */
    int line;
};

struct aos_conf_plugins {
    char *dir;                 /* default AOSD_PLUGINDIR */
    char **enable;             /* plugin names, loaded as <dir>/<name>.so */
    size_t nenable;
    struct aos_conf_plugin_block *blocks;
    size_t nblocks;
    const char *enable_file;   /* where `enable` was set, for loader messages; NULL if defaulted */
    int enable_line;
};

/* Tenant overrides: a field is meaningful only if its *_set flag is true. */
struct aos_conf_tenant {
    char id[AOS_UUID_STR];     /* lower-case canonical UUID */
    char *name;                /* unique, [a-z0-9-]{1,63} */
    bool limits_set;
    struct aos_rate read;      /* each field copied from global limits when not overridden */
    struct aos_rate write;
    char **plugins;            /* allowed plugins, each in plugins.enable; NULL/0 (absent or []) = all enabled */
    size_t nplugins;
    int64_t budget_tokens_day;     /* 0 = unlimited; budgets = { tokens_day = ...; } */
    int64_t budget_tokens_month;
    int64_t budget_micro_usd_day;
    int64_t budget_micro_usd_month;
    char *autonomy;            /* "observe" | "supervised" (default) | "autonomous" */
    const char *file;          /* where declared */
    int line;
    const config_setting_t *setting; /* the tenant's group, owned by aos_conf (for messages) */
};

struct aos_chaos_rule {
    char *target;              /* "http", "store", "plugin:<name>" */
    char *fault;               /* "latency" | "error" */
    double probability;        /* 0..1 */
    int latency_ms;
};

struct aos_conf_chaos {
    bool enabled;              /* default false */
    struct aos_chaos_rule *rules;
    size_t nrules;
};

/* engine: the run executor (core/orch).  Defaults in conf.c. */
struct aos_conf_engine {
    int workers;               /* threads executing steps; 0 = no worker role; default 4 */
    double lease;              /* s a claimed run stays owned without a checkpoint; default 30 */
    double poll;               /* s between queue polls when idle; default 0.2 */
    int max_attempts;          /* tries of one step before the run fails; default 5 */
    double retry_base;         /* s, first retry delay (doubles, with jitter); default 0.2 */
    double retry_max;          /* s, cap of the retry delay; default 60 */
    double step_timeout;       /* s a step may take before its attempt counts as failed; default 300 */
    double approval_ttl;       /* s before a pending approval expires (rejected); 0 = never; default 86400 */
    bool four_eyes;            /* the user who started a run may not approve it; default true */
    int64_t step_reserve_tokens;    /* budget reserved before a step when the agent declares none; default 1000 */
    int64_t step_reserve_micro_usd; /* likewise in micro-USD; default 10000 */
    int checkpoint_batch;      /* most checkpoints per group commit; default 64 */
    double checkpoint_window;  /* s the group committer waits to fill a batch; default 0.001 */
    int committers;            /* group committers (PostgreSQL); 0 = automatic (2); SQLite: always 1 */
};

/* events: the event log's live fan-out (core/events).  Defaults in conf.c. */
struct aos_conf_events {
    double poll;               /* s between polls of the store for new events; default 0.25 */
    int ring;                  /* recent events kept in memory for resuming streams; default 8192 */
    double heartbeat;          /* s between SSE heartbeat comments; default 15 */
    double retry;              /* s, the SSE retry: hint to clients; default 3 */
    int max_subscribers;       /* SSE streams per node; default 20000 */
    int64_t client_buffer;     /* bytes queued for one slow SSE client before it is cut off; default 262144 */
    int stream_token_ttl;      /* s a stream token is valid; default 300 */
};

struct aos_conf_governance {
    /* Retention in days; 0 = keep forever.  Defaults in conf.c. */
    int journal_days;          /* default 90 */
    int events_days;           /* default 30 */
    int runs_days;             /* default 365 */
    int idempotency_hours;     /* default 24 */
};

struct aos_conf {
    char *path;                /* main file as given */
    struct aos_conf_server server;
    struct aos_conf_log log;
    struct aos_conf_store store;
    struct aos_conf_redis redis;
    struct aos_conf_auth auth;
    struct aos_conf_limits limits;
    struct aos_conf_plugins plugins;
    struct aos_conf_tenant *tenants;
    size_t ntenants;
    struct aos_conf_chaos chaos;
    struct aos_conf_governance governance;
    struct aos_conf_engine engine;
    struct aos_conf_events events;

    /* private: libconfig trees kept alive for plugin blocks (one per file, never reallocated) */
    config_t *trees;
    size_t ntrees;
    char **files;              /* every file read, owned */
    size_t nfiles;
};

/* Error list filled by aos_conf_load, in the order found, one line each:
 *   "file:line: setting: message"   (most errors)
 *   "file: setting: message"        (a required setting no file sets)
 *   "file:line: syntax error[: libconfig's text]"
 *   "file: cannot read: <strerror>" */
struct aos_conf_errors {
    char **lines;
    size_t n;
};

/* Loads and validates `path` and its conf.d/ and tenants.d/.  Returns NULL
 * if anything is wrong, with every error found appended to errs (start with
 * a zeroed struct; the caller frees it with aos_conf_errors_free; errs may
 * be NULL).  `@include "x.conf"` resolves relative to the main file's
 * directory.  Never logs and keeps no global state: safe for SIGHUP reloads
 * while the old aos_conf is in use.  Reads the environment variable
 * AOS_TESTING (=1: limits.enabled forced false). */
struct aos_conf *aos_conf_load(const char *path, struct aos_conf_errors *errs);
void aos_conf_free(struct aos_conf *conf);
void aos_conf_errors_free(struct aos_conf_errors *errs);

/* Finds a tenant by canonical id or by name; NULL if none. */
const struct aos_conf_tenant *aos_conf_tenant_find(const struct aos_conf *conf, const char *id_or_name);
/* Whether the tenant may use the plugin: its `plugins` list names it, or
 * the list is absent or empty (every enabled plugin). */
bool aos_conf_tenant_allows_plugin(const struct aos_conf_tenant *t, const char *plugin);
/* Finds the block of plugin `name`; NULL if the config has none. */
const struct aos_conf_plugin_block *aos_conf_plugin_block(const struct aos_conf *conf, const char *name);

#endif
