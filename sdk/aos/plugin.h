/*
 * aos/plugin.h -- the aosd plugin SDK.  THE one header a plugin includes.
 *
 * A plugin is a shared object loaded by aosd with dlopen(RTLD_NOW|RTLD_LOCAL).
 * It exports exactly one symbol, aos_plugin_entry(), which returns a pointer to
 * a static, constant descriptor (struct aos_plugin).  Everything the plugin
 * needs from the host reaches it through the host API table (struct aos_host)
 * handed to init(); a plugin never links against, or includes, aosd's core.
 *
 * ABI versioning (the Varnish rule)
 * ---------------------------------
 * The ABI is numbered MAJOR.MINOR.  The host loads a plugin iff
 *     plugin.abi_major == host.abi_major && plugin.abi_minor <= host.abi_minor
 * A MINOR bump only appends: new members at the end of a struct, new host
 * functions at the end of struct aos_host, new flags or enum values.  Any
 * removal, reordering, signature change or change of meaning bumps MAJOR.
 * Every struct that crosses the boundary starts with (or carries) its size, so
 * each side can tell which members the other one knows about.
 *
 * Changelog (bump AOS_ABI_* in the same commit as the change)
 *   1.0  2026-11-25  First ABI: descriptor, settings schema, agent/connector/auth
 *                    ops tables, host table with log, set_error, alloc, free,
 *                    strndup.
 *   1.1  2026-11-25  Store lookups for auth backends: host functions
 *                    user_lookup() and apikey_lookup() appended to struct
 *                    aos_host; struct aos_user_record, struct
 *                    aos_apikey_record, enum aos_lookup_result.
 *   1.2  2026-11-25  PII redaction: host function pii_redact() appended to
 *                    struct aos_host.
 *   1.3  2026-11-25  The agent's own configuration reaches its steps:
 *                    config/config_len, agent_id and agent_name appended to
 *                    struct aos_step_input (check input->size before use:
 *                    AOS_STEP_INPUT_HAS).
 *
 * Threads
 * -------
 * init(), reload() and fini() run on the host's main thread, never
 * concurrently with any other call into the same instance.  Agent step(),
 * connector call()/health() and auth authenticate() run on host worker threads
 * and are synchronous from the plugin's point of view: block as long as you
 * need (within the host's configured timeouts).  The instance is read-only
 * after init() returns.  If the descriptor does not carry
 * AOS_PLUGIN_THREAD_SAFE the host serialises all calls into one instance;
 * with the flag, calls may run concurrently on several threads.
 *
 * Memory and ownership
 * --------------------
 * - Data crosses the boundary as JSON text: UTF-8, pointer + length, not
 *   necessarily NUL-terminated unless said so.
 * - Input buffers (const pointers handed to a callback) are owned by the host
 *   and valid only for the duration of that call.  Copy what you keep.
 * - Output buffers a callback returns (aos_buf.data) must be allocated with
 *   host->alloc() (or host->strndup()); ownership passes to the host when the
 *   callback returns, whatever it returns.  Never free them yourself.
 * - String settings filled into the instance (const char *) are owned by the
 *   host and stay valid until fini() returns.
 * - The host table and the descriptor outlive every call.
 *
 * Errors
 * ------
 * Callbacks return 0 (or a positive status documented per callback) on
 * success and a negative number on failure.  A failing callback must say why
 * with host->set_error(ctx, ...); the host logs the message with the plugin's
 * name and, where relevant, returns it to the API caller.
 *
 * Minimal plugin:
 *
 *   #include <aos/plugin.h>
 *   struct echo { int64_t delay_ms; };
 *   static const struct aos_setting echo_settings[] = {
 *       AOS_SETTING_INT_FIELD(struct echo, delay_ms, "0", 0, 60000,
 *                             "Sleep this long in every step"),
 *       AOS_SETTINGS_END
 *   };
 *   static const struct aos_agent_ops echo_ops = { .size = sizeof echo_ops,
 *                                                  .step = echo_step };
 *   static const struct aos_plugin echo_plugin = {
 *       AOS_PLUGIN_HEADER,
 *       .kind = AOS_PLUGIN_AGENT, .name = "agent-echo", .version = "1.0.0",
 *       .settings = echo_settings, .instance_size = sizeof(struct echo),
 *       .init = echo_init, .ops = &echo_ops,
 *   };
 *   AOS_PLUGIN_EXPORT(echo_plugin)
 *
 * Build: cc $(pkg-config --cflags aos-sdk) -shared -fPIC -o echo.so echo.c
 */
#ifndef AOS_PLUGIN_H
#define AOS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AOS_ABI_MAJOR 1
#define AOS_ABI_MINOR 3

/* "AOSP" in ASCII, first word of every descriptor. */
#define AOS_PLUGIN_MAGIC 0x414F5350u

/* Name of the one exported symbol, for hosts and tools that dlsym() it. */
#define AOS_PLUGIN_ENTRY_SYMBOL "aos_plugin_entry"

#if defined(__GNUC__) || defined(__clang__)
#define AOS_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define AOS_EXPORT __attribute__((visibility("default")))
#else
#define AOS_PRINTF(fmt, args)
#define AOS_EXPORT
#endif

/* Opaque per-call context owned by the host.  Pass it back to host
 * functions (log, set_error) so messages are attributed to the right
 * plugin and call.  Valid only during the callback it was handed to. */
struct aos_ctx;

/* ------------------------------------------------------------------ */
/* Settings schema: the plugin declares its configuration; the host   */
/* validates the plugin's libconfig block against it (unknown keys,   */
/* types, ranges, reported with file:line) and fills the instance     */
/* before init().  Plugins never see libconfig.                        */
/* ------------------------------------------------------------------ */

enum aos_setting_type {
    AOS_SETTING_BOOL = 1,   /* instance field: int (0 or 1)              */
    AOS_SETTING_INT = 2,    /* instance field: int64_t                   */
    AOS_SETTING_DOUBLE = 3, /* instance field: double                    */
    AOS_SETTING_STRING = 4  /* instance field: const char * (host-owned) */
};

/* The setting must appear in the block; there is no default. */
#define AOS_SETTING_REQUIRED 0x1u
/* The value is a secret: the host never logs or echoes it. */
#define AOS_SETTING_SECRET 0x2u

struct aos_setting {
    const char *name;          /* libconfig setting name inside the block */
    unsigned type;             /* enum aos_setting_type                   */
    unsigned flags;            /* AOS_SETTING_REQUIRED | _SECRET          */
    size_t offset;             /* offsetof(instance struct, field)        */
    /* Default as text ("true", "42", "0.25", "hello"), parsed like the
     * config value would be.  NULL means 0 / 0.0 / false / NULL. */
    const char *default_value;
    /* INT and DOUBLE: inclusive value range; STRING: inclusive length
     * range in bytes.  Ignored when min > max or both are 0. */
    int64_t min;
    int64_t max;
    const char *help;          /* one line, shown in error messages      */
};

#define AOS_SETTING_FIELD_(type_, flags_, st, field, def, lo, hi, help_) \
    { #field, (type_), (flags_), offsetof(st, field), (def), (lo), (hi), (help_) }
#define AOS_SETTING_BOOL_FIELD(st, field, def, help) \
    AOS_SETTING_FIELD_(AOS_SETTING_BOOL, 0u, st, field, def, 0, 0, help)
#define AOS_SETTING_INT_FIELD(st, field, def, lo, hi, help) \
    AOS_SETTING_FIELD_(AOS_SETTING_INT, 0u, st, field, def, lo, hi, help)
#define AOS_SETTING_DOUBLE_FIELD(st, field, def, lo, hi, help) \
    AOS_SETTING_FIELD_(AOS_SETTING_DOUBLE, 0u, st, field, def, lo, hi, help)
#define AOS_SETTING_STRING_FIELD(st, field, flags, def, minlen, maxlen, help) \
    AOS_SETTING_FIELD_(AOS_SETTING_STRING, flags, st, field, def, minlen, maxlen, help)
/* Terminates a settings array. */
#define AOS_SETTINGS_END { NULL, 0u, 0u, 0, NULL, 0, 0, NULL }

/* ------------------------------------------------------------------ */
/* Buffers                                                            */
/* ------------------------------------------------------------------ */

/* An output buffer.  data is allocated with host->alloc(); the host owns
 * it once the callback returns.  len excludes any terminating NUL. */
struct aos_buf {
    char *data;
    size_t len;
};

/* ------------------------------------------------------------------ */
/* Host API table, handed to init().  Append-only: new functions go   */
/* at the end with a MINOR bump.  A plugin built against a newer      */
/* minor checks AOS_HOST_HAS(host, fn) before calling fn.              */
/* ------------------------------------------------------------------ */

enum aos_log_level {
    AOS_LOG_ERROR = 0,
    AOS_LOG_WARN = 1,
    AOS_LOG_INFO = 2,
    AOS_LOG_DEBUG = 3
};

/* Records filled by the 1.1 store lookups (defined with the auth
 * section below). */
struct aos_user_record;
struct aos_apikey_record;

struct aos_host {
    uint32_t size;      /* sizeof(struct aos_host) as the host knows it */
    uint16_t abi_major; /* the host's ABI                              */
    uint16_t abi_minor;
    const char *host_version; /* aosd's package version, e.g. "0.1.0"  */

    /* Log one line attributed to the plugin.  Thread-safe.  Never pass
     * secrets or personal data. */
    void (*log)(struct aos_ctx *ctx, int level, const char *fmt, ...)
        AOS_PRINTF(3, 4);
    /* Record why the current callback fails (last call wins).  The
     * message is copied; keep it one line. */
    void (*set_error)(struct aos_ctx *ctx, const char *fmt, ...)
        AOS_PRINTF(2, 3);
    /* Memory whose ownership may pass to the host.  alloc returns NULL
     * on failure; free(NULL) is a no-op.  Thread-safe. */
    void *(*alloc)(size_t size);
    void (*free)(void *ptr);
    /* Copies at most n bytes of s into a NUL-terminated host->alloc()
     * buffer; NULL on allocation failure. */
    char *(*strndup)(const char *s, size_t n);

    /* 1.1: store lookups for auth backends.  Blocking (a database round
     * trip): call them only from authenticate(), which runs on a worker
     * thread.  Thread-safe.  Both return enum aos_lookup_result; on
     * AOS_LOOKUP_ERROR (negative) the host has already called set_error()
     * saying why, and the backend should answer AOS_AUTH_ERROR (the API
     * then says 503: the store, not the credentials, is at fault).  Both
     * functions are always present in a 1.1 host; while the host has no
     * store attached (tools, tests) they fail with AOS_LOOKUP_ERROR and
     * the message "no store".
     *
     * `out` is plugin memory: set out->size = sizeof *out before the call.
     * The host zeroes out->size bytes, fills the members it knows (at most
     * out->size bytes) and sets out->size to the number of bytes it
     * filled.  A size below the 1.1 record is refused (AOS_LOOKUP_ERROR).
     * Records hold password and key hashes: never log them, and wipe them
     * when done. */

    /* Finds the user who may sign in with `email` (NUL-terminated, already
     * normalised by the host: trimmed, lower-case).  tenant_id: the tenant
     * the client named (UUID text), or NULL to search every active tenant
     * -- a login form carries only an e-mail.  Users of inactive tenants
     * are never found.  Returns AOS_LOOKUP_FOUND (out filled),
     * AOS_LOOKUP_NOT_FOUND, AOS_LOOKUP_AMBIGUOUS (tenant_id was NULL and
     * the e-mail belongs to users of several tenants: out is left zeroed,
     * and the client must name its tenant), or AOS_LOOKUP_ERROR. */
    int (*user_lookup)(struct aos_ctx *ctx, const char *tenant_id, const char *email,
                       struct aos_user_record *out);
    /* Finds the API key with public `prefix` (the part between "aos_" and
     * the second '_').  Only usable keys are found: revoked keys, expired
     * keys and keys of inactive tenants are AOS_LOOKUP_NOT_FOUND.  Returns
     * AOS_LOOKUP_FOUND (out filled), AOS_LOOKUP_NOT_FOUND or
     * AOS_LOOKUP_ERROR.  The plugin compares the secret's hash with
     * out->secret_hash in constant time. */
    int (*apikey_lookup)(struct aos_ctx *ctx, const char *prefix, struct aos_apikey_record *out);

    /* 1.2: PII redaction.  Replaces every e-mail address, phone number,
     * card number, IBAN, US SSN, IP address, API key and JWT in
     * text[0..len) by "<TYPE>" (Presidio entity names: "<EMAIL_ADDRESS>",
     * "<PHONE_NUMBER>", "<CREDIT_CARD>", "<IBAN_CODE>", "<US_SSN>",
     * "<IP_ADDRESS>", "<API_KEY>", "<JWT_TOKEN>").  text need not be
     * NUL-terminated.  On success (0) *out holds the redacted UTF-8 text
     * allocated with host->alloc (NUL-terminated, *out_len bytes; release
     * it with host->free).  Negative with set_error on invalid UTF-8 or
     * when the text is too complex to scan (a match limit was hit) -- then
     * *out is NULL and *out_len 0, and the input must never be used
     * unredacted.  Always present in a 1.2 host; while the host has no PII
     * engine attached (tools, tests) it fails with "no PII engine".
     * Thread-safe; callable from any callback. */
    int (*pii_redact)(struct aos_ctx *ctx, const char *text, size_t len, char **out, size_t *out_len);
};

/* True if the host table provides member `fn` (non-NULL and inside the
 * size the host declared). */
#define AOS_HOST_HAS(host, fn)                                              \
    ((host) != NULL &&                                                      \
     (host)->size >= offsetof(struct aos_host, fn) + sizeof((host)->fn) &&  \
     (host)->fn != NULL)

/* ------------------------------------------------------------------ */
/* Agent plugins: one step of a run.                                  */
/* ------------------------------------------------------------------ */

enum aos_step_status {
    AOS_STEP_DONE = 0,           /* output is the run's final output    */
    AOS_STEP_CONTINUE = 1,       /* state is handed to the next step    */
    AOS_STEP_NEEDS_APPROVAL = 2, /* output is a proposal for a human    */
    AOS_STEP_RETRY = 3,          /* try this step again after retry_ms  */
    AOS_STEP_FAIL = 4            /* the run fails; error says why       */
};

/* Input of one step.  Every pointer is host-owned, valid during step().
 *
 * How the host drives steps: step_index counts checkpointed calls (0
 * first).  After NEEDS_APPROVAL the next call has the next index, the
 * state from before the proposal, and `decision`.  After RETRY, a negative
 * return, a timeout or a crash of the host, the SAME index is called again
 * with the same state and the next `attempt`.  A call whose result was
 * checkpointed is never made again. */
struct aos_step_input {
    uint32_t size;             /* sizeof as the host knows it            */
    const char *run_id;        /* UUID text, NUL-terminated              */
    const char *tenant_id;     /* UUID text, NUL-terminated              */
    uint32_t step_index;       /* 0 for the first step of the run        */
    uint32_t attempt;          /* 1 for the first try of this step       */
    /* Stable across attempts of the same step: "<run_id>:<step_index>".
     * Use it to make outside effects exactly-once. */
    const char *idempotency_key;
    const char *input;         /* the run's input JSON                   */
    size_t input_len;
    const char *state;         /* previous step's state JSON, or NULL    */
    size_t state_len;
    /* Set when this step follows an approval: {"approved":bool,
     * "comment":...}.  NULL otherwise. */
    const char *decision;
    size_t decision_len;
    /* ABI 1.3: the agent's JSON config object as stored by the API
     * (validated by validate_config when it was written), its id and
     * name (NUL-terminated).  config is "{}" when the agent has none. */
    const char *config;
    size_t config_len;
    const char *agent_id;
    const char *agent_name;
};

/* Whether the host filled member m of struct aos_step_input: a plugin
 * built for a newer minor may run on an older host. */
#define AOS_STEP_INPUT_HAS(in, m) \
    ((in)->size >= offsetof(struct aos_step_input, m) + sizeof((in)->m))

/* Result of one step, zero-filled by the host before the call. */
struct aos_step_result {
    uint32_t size;             /* set by the host                       */
    int status;                /* enum aos_step_status                  */
    struct aos_buf output;     /* DONE: output; NEEDS_APPROVAL: proposal */
    struct aos_buf state;      /* CONTINUE: state for the next step     */
    uint32_t retry_after_ms;   /* RETRY: earliest retry                 */
    uint64_t tokens_in;        /* usage of this step                    */
    uint64_t tokens_out;
    uint64_t cost_micro_usd;
};

struct aos_agent_ops {
    uint32_t size; /* sizeof(struct aos_agent_ops) as the plugin knows it */
    /* Runs one step.  Returns 0 when result->status is meaningful, a
     * negative number (after set_error) on an internal error, which the
     * host treats as a transient failure. */
    int (*step)(struct aos_ctx *ctx, const void *instance,
                const struct aos_step_input *input,
                struct aos_step_result *result);
    /* Optional: validates an agent's JSON config (from the API) before it
     * is stored.  Returns 0 if valid, negative with set_error otherwise. */
    int (*validate_config)(struct aos_ctx *ctx, const void *instance,
                           const char *config, size_t config_len);
};

/* ------------------------------------------------------------------ */
/* Connector plugins: proxy a request to an outside service.          */
/* ------------------------------------------------------------------ */

struct aos_connector_ops {
    uint32_t size;
    /* request/request_len: JSON text owned by the host.  On success (0)
     * response holds JSON allocated with host->alloc(). */
    int (*call)(struct aos_ctx *ctx, const void *instance,
                const char *request, size_t request_len,
                struct aos_buf *response);
    /* 0 if the outside service is reachable and healthy, negative with
     * set_error otherwise. */
    int (*health)(struct aos_ctx *ctx, const void *instance);
};

/* ------------------------------------------------------------------ */
/* Auth plugins: turn credentials into a principal.                   */
/* ------------------------------------------------------------------ */

enum aos_credential_kind {
    AOS_CRED_PASSWORD = 1, /* identifier = e-mail, secret = password     */
    AOS_CRED_API_KEY = 2,  /* secret = the whole key text                */
    AOS_CRED_BEARER = 3    /* secret = the bearer token                  */
};

struct aos_credentials {
    uint32_t size;
    int kind;               /* enum aos_credential_kind                 */
    const char *identifier; /* NUL-terminated or NULL                    */
    const char *secret;     /* NOT NUL-terminated; never log it          */
    size_t secret_len;
    const char *tenant_id;  /* requested tenant (UUID text) or NULL      */
};

#define AOS_ID_MAX 64
#define AOS_ROLE_MAX 32

struct aos_principal {
    uint32_t size;                 /* set by the host                     */
    char tenant_id[AOS_ID_MAX];    /* UUID text                           */
    char subject[AOS_ID_MAX];      /* user or key id                      */
    char role[AOS_ROLE_MAX];       /* "admin", "approver" or "user"       */
};

/* 1.1: results of host->user_lookup() and host->apikey_lookup(). */
enum aos_lookup_result {
    AOS_LOOKUP_FOUND = 0,     /* the record is filled in                  */
    AOS_LOOKUP_NOT_FOUND = 1, /* no such (usable) user or key             */
    AOS_LOOKUP_AMBIGUOUS = 2, /* user_lookup without tenant: several match */
    AOS_LOOKUP_ERROR = -1     /* store failure; set_error() says why      */
};

#define AOS_PASSWORD_HASH_MAX 256 /* PHC string + NUL                     */
#define AOS_SECRET_HASH_MAX 72    /* hex SHA-256 (64) + NUL, padded        */

/* 1.1: a user as host->user_lookup() returns it.  Strings are
 * NUL-terminated; members appended by later minors read as zero from an
 * older host (see out->size after the call). */
struct aos_user_record {
    uint32_t size;              /* in: sizeof; out: bytes filled */
    char id[AOS_ID_MAX];        /* UUID text                     */
    char tenant_id[AOS_ID_MAX]; /* UUID text                     */
    char role[AOS_ROLE_MAX];    /* "admin", "approver" or "user" */
    /* The stored Argon2id PHC string ("$argon2id$v=19$m=...").  Empty when
     * the user has no password (signs in through another backend). */
    char password_hash[AOS_PASSWORD_HASH_MAX];
};

/* 1.1: an API key as host->apikey_lookup() returns it. */
struct aos_apikey_record {
    uint32_t size;                         /* in: sizeof; out: bytes filled */
    char id[AOS_ID_MAX];                   /* the key's UUID                */
    char tenant_id[AOS_ID_MAX];            /* UUID text                     */
    char user_id[AOS_ID_MAX];              /* owner's UUID; "" = service key */
    char role[AOS_ROLE_MAX];               /* role the key grants           */
    char secret_hash[AOS_SECRET_HASH_MAX]; /* lower-case hex SHA-256 of the secret */
    int64_t expires_at_ms;                 /* unix ms; 0 = never            */
};

enum aos_auth_result {
    AOS_AUTH_ALLOW = 0,  /* principal filled in                           */
    AOS_AUTH_DENY = 1,   /* credentials of this backend's kind, but wrong */
    AOS_AUTH_IGNORE = 2, /* not this backend's kind: ask the next one     */
    AOS_AUTH_ERROR = -1  /* could not decide (set_error says why)         */
};

struct aos_auth_ops {
    uint32_t size;
    int (*authenticate)(struct aos_ctx *ctx, const void *instance,
                        const struct aos_credentials *credentials,
                        struct aos_principal *principal);
};

/* ------------------------------------------------------------------ */
/* The descriptor.                                                    */
/* ------------------------------------------------------------------ */

enum aos_plugin_kind {
    AOS_PLUGIN_AGENT = 1,     /* ops: const struct aos_agent_ops *     */
    AOS_PLUGIN_CONNECTOR = 2, /* ops: const struct aos_connector_ops * */
    AOS_PLUGIN_AUTH = 3       /* ops: const struct aos_auth_ops *      */
};

/* Calls into one instance may run concurrently (see "Threads"). */
#define AOS_PLUGIN_THREAD_SAFE 0x1u

#define AOS_PLUGIN_RESERVED 8

struct aos_plugin {
    /* These four never move, in any ABI version. */
    uint32_t magic;     /* AOS_PLUGIN_MAGIC                       */
    uint16_t abi_major; /* AOS_ABI_MAJOR the plugin was built for */
    uint16_t abi_minor; /* AOS_ABI_MINOR the plugin was built for */
    uint32_t size;      /* sizeof(struct aos_plugin)              */

    uint32_t kind;           /* enum aos_plugin_kind                      */
    const char *name;        /* unique, [a-z0-9-], e.g. "agent-echo"     */
    const char *version;     /* the plugin's own version                 */
    const char *description; /* one line                                 */
    uint64_t flags;          /* AOS_PLUGIN_THREAD_SAFE                    */

    /* Settings the plugin's config block may hold, AOS_SETTINGS_END
     * terminated, or NULL for none.  The host allocates instance_size
     * zeroed bytes, fills the fields and passes them to every callback. */
    const struct aos_setting *settings;
    size_t instance_size;

    /* Called once after the instance is filled.  0 = ready; negative =
     * refuse to load (set_error says why).  host stays valid for the
     * process lifetime: keep the pointer.  May be NULL, but then the
     * plugin never sees the host table. */
    int (*init)(struct aos_ctx *ctx, const struct aos_host *host,
                void *instance);
    /* Optional.  On configuration reload a fresh instance is created and
     * init()ed from the new config; then, before it replaces the old one,
     * reload(new, old) lets the plugin carry state across (open
     * connections, caches).  Negative = keep the old instance.  Treat
     * old_instance as read-only: the host may still keep it (when another
     * plugin refuses the reload) and calls fini() on it once replaced.
     * Only called when both instances come from the same loaded file. */
    int (*reload)(struct aos_ctx *ctx, void *instance, void *old_instance);
    /* Optional.  Release what init() acquired.  No other call into the
     * instance is running or will run. */
    void (*fini)(struct aos_ctx *ctx, void *instance);

    /* The kind's ops table; its first member is its own size. */
    const void *ops;

    /* Must be zero (NULL); later minors may give them meaning. */
    const void *reserved[AOS_PLUGIN_RESERVED];
};

/* Fills the fields that never move.  Use as the first initializer. */
#define AOS_PLUGIN_HEADER                                        \
    .magic = AOS_PLUGIN_MAGIC, .abi_major = AOS_ABI_MAJOR,       \
    .abi_minor = AOS_ABI_MINOR, .size = sizeof(struct aos_plugin)

typedef const struct aos_plugin *(*aos_plugin_entry_fn)(void);

/* The entry point keeps its C name when the plugin is written in C++
 * (the macro expands outside this header's extern "C" block). */
#ifdef __cplusplus
#define AOS_EXTERN_C extern "C"
#else
#define AOS_EXTERN_C
#endif

/* Defines the exported entry point returning `descriptor`. */
#define AOS_PLUGIN_EXPORT(descriptor)                                   \
    AOS_EXTERN_C AOS_EXPORT const struct aos_plugin *                   \
    aos_plugin_entry(void);                                             \
    AOS_EXTERN_C AOS_EXPORT const struct aos_plugin *                   \
    aos_plugin_entry(void)                                              \
    {                                                                   \
        return &(descriptor);                                           \
    }

#ifdef __cplusplus
}
#endif

#endif /* AOS_PLUGIN_H */
