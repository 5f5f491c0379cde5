/*
 * Store bring-up: connect to the store, check (or, with
 * store.auto_migrate, apply) migrations and upsert the configured tenants
 * -- without ever blocking the main loop and without exiting when the
 * database is merely down.
 *
 * While the database is unreachable the attempt repeats with exponential
 * backoff (0.5 s doubling to 30 s) and /readyz reports why.  A schema the
 * binary cannot serve (newer than it knows, or pending migrations without
 * auto_migrate) is fatal: on_fatal is called with the message.
 *
 * Everything here runs on the main loop; the blocking parts run on the
 * worker pool.
 */
#ifndef AOS_BRINGUP_H
#define AOS_BRINGUP_H

struct aos_app;
struct aos_loop;
struct aos_bringup;

typedef void (*aos_bringup_fatal_fn)(void *arg, const char *message);

struct aos_bringup *aos_bringup_new(struct aos_loop *main_loop, struct aos_app *app, aos_bringup_fatal_fn on_fatal,
                                    void *arg);
/* Starts the first attempt. */
void aos_bringup_start(struct aos_bringup *b);
/* Re-syncs tenants from the current runtime generation (after SIGHUP).
 * A no-op until the store is up; the next successful bring-up syncs. */
void aos_bringup_sync_tenants(struct aos_bringup *b);
/* Cancels retries.  Work already on the pool completes first: call after
 * the pool is drained. */
void aos_bringup_free(struct aos_bringup *b);

#endif
