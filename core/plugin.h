/*
 * Plugin loader: turns the `plugins` section of a loaded configuration into
 * a set of initialised plugin instances, and calls into them.
 *
 * Loading is all-or-nothing.  aos_plugin_set_load() dlopen()s
 * <plugins.dir>/<name>.so for every name in plugins.enable, checks the
 * descriptor against the host's ABI (sdk/aos/plugin.h), validates the
 * plugin's config block against its settings schema, fills the instance and
 * calls init().  Any refusal (one line each, naming the file, where it was
 * enabled, the reason, both versions where relevant and the fix) is appended
 * to `errs` and logged at error level; everything loaded so far is released
 * and NULL is returned, so on a reload the caller simply keeps its old set.
 *
 * Ownership: the set owns every instance, every string copied from the
 * configuration, and the dlopen() handles.  Nothing returned by the
 * accessors outlives aos_plugin_set_free().  The configuration passed to
 * aos_plugin_set_load() is not referenced after it returns.
 *
 * Threads: load and free run on the main thread.  The call wrappers
 * (aos_plugin_agent_step() etc.) may be called from any thread while the set
 * is alive; calls into a plugin without AOS_PLUGIN_THREAD_SAFE are
 * serialised per instance.
 */
#ifndef AOS_CORE_PLUGIN_H
#define AOS_CORE_PLUGIN_H

#include <aos/plugin.h>

#include <stddef.h>
#include <stdint.h>

struct aos_conf;
struct aos_conf_errors;

struct aos_plugin_set;
struct aos_plugin_instance;

/* Loads every enabled plugin of `conf`.  With `previous` non-NULL (a
 * reload), a plugin present in both sets gets reload(new, old) after its
 * init(); `previous` itself is not modified and stays usable whatever the
 * outcome.  Returns the new set, or NULL with one line per refusal appended
 * to errs (which may be NULL).  An empty enable list yields an empty set. */
struct aos_plugin_set *aos_plugin_set_load(const struct aos_conf *conf, const struct aos_plugin_set *previous,
                                           struct aos_conf_errors *errs);

/* Calls fini() in reverse load order, then frees every instance and closes
 * every library.  NULL is a no-op.  No call into the set may be running. */
void aos_plugin_set_free(struct aos_plugin_set *set);

/* Number of loaded plugins (0 for NULL), the i-th in load order (NULL if out
 * of range), and lookup by plugin name (NULL if absent). */
size_t aos_plugin_set_count(const struct aos_plugin_set *set);
const struct aos_plugin_instance *aos_plugin_set_get(const struct aos_plugin_set *set, size_t i);
const struct aos_plugin_instance *aos_plugin_set_find(const struct aos_plugin_set *set, const char *name);

/* Properties of a loaded plugin; the strings live as long as the set. */
const char *aos_plugin_instance_name(const struct aos_plugin_instance *p);
enum aos_plugin_kind aos_plugin_instance_kind(const struct aos_plugin_instance *p);
const char *aos_plugin_instance_version(const struct aos_plugin_instance *p);
const char *aos_plugin_instance_description(const struct aos_plugin_instance *p);
const char *aos_plugin_instance_path(const struct aos_plugin_instance *p);
uint64_t aos_plugin_instance_flags(const struct aos_plugin_instance *p);
/* The filled instance struct (read-only after init), for diagnostics. */
const void *aos_plugin_instance_data(const struct aos_plugin_instance *p);

/* "agent", "connector", "auth", or "unknown". */
const char *aos_plugin_kind_name(int kind);

/* The host API table handed to every plugin's init(). */
const struct aos_host *aos_plugin_host(void);

struct aos_store;
/* Gives the host table's store lookups (user_lookup, apikey_lookup: SDK
 * 1.1) the store they query; NULL detaches.  Until a store is attached
 * the lookups fail with AOS_LOOKUP_ERROR and set_error("no store").  The
 * store is not owned: detach it (or stop calling plugins) before freeing
 * it -- no authenticate() may be running while it is detached or
 * replaced.  Lookups run on the calling (worker) thread in a read
 * transaction (aos_store_transact). */
void aos_plugin_host_attach_store(struct aos_store *store);

struct aos_pii;
/* Gives the host table's pii_redact (SDK 1.2) the engine it uses; NULL
 * detaches.  Until one is attached pii_redact fails with set_error("no PII
 * engine").  The engine is not owned: detach it (or stop calling plugins)
 * before freeing it.  A struct aos_pii is read-only after aos_pii_new, so
 * plugins may redact concurrently from any thread. */
void aos_plugin_host_attach_pii(const struct aos_pii *pii);

/*
 * Call wrappers.  Each one checks the plugin's kind, takes the instance lock
 * when the plugin is not thread-safe, hands the plugin a fresh context and,
 * when the call fails, copies the plugin's set_error() text (or a host
 * message) into err[errlen] (NUL-terminated, truncated; err may be NULL).
 */

/* Runs one agent step.  `in` is copied and its size set by the wrapper;
 * `out` is zeroed and sized first.  Returns 0 when out->status is
 * meaningful; for AOS_STEP_FAIL err holds the plugin's reason.  Returns -1
 * on an internal plugin error (treated as transient by the engine), with out
 * zeroed and nothing to release.  On 0 the caller owns out->output and
 * out->state: release them with aos_plugin_step_result_release(). */
int aos_plugin_agent_step(const struct aos_plugin_instance *p, const struct aos_step_input *in,
                          struct aos_step_result *out, char *err, size_t errlen);
/* Validates an agent config (JSON text).  0 if valid or the plugin has no
 * validate_config op; -1 with err otherwise. */
int aos_plugin_agent_validate_config(const struct aos_plugin_instance *p, const char *config,
                                     size_t config_len, char *err, size_t errlen);
/* Proxies a request through a connector.  0 with *response owned by the
 * caller (release with aos_plugin_buf_release()); -1 with err and
 * *response empty. */
int aos_plugin_connector_call(const struct aos_plugin_instance *p, const char *request, size_t request_len,
                              struct aos_buf *response, char *err, size_t errlen);
/* 0 if healthy (or the connector has no health op); -1 with err. */
int aos_plugin_connector_health(const struct aos_plugin_instance *p, char *err, size_t errlen);
/* Returns enum aos_auth_result.  On AOS_AUTH_ALLOW the principal's three
 * strings are non-empty and NUL-terminated (checked); AOS_AUTH_ERROR comes
 * with err.  `credentials` is copied and its size set by the wrapper. */
int aos_plugin_auth_authenticate(const struct aos_plugin_instance *p,
                                 const struct aos_credentials *credentials, struct aos_principal *principal,
                                 char *err, size_t errlen);

/* Frees a buffer a plugin handed over and empties it.  NULL is a no-op. */
void aos_plugin_buf_release(struct aos_buf *buf);
/* Frees out->output and out->state.  NULL is a no-op. */
void aos_plugin_step_result_release(struct aos_step_result *out);

#endif
