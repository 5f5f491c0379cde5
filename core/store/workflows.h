/*
 * Workflows in the store: a tenant's named chain of agents, each step's
 * output the next step's input (the engine, core/orch, runs them).
 *
 * Conventions are those of store/ops.h: every operation runs in the
 * caller's transaction and is scoped by `tenant_id`; another tenant's row
 * is AOS_DB_NOT_FOUND; ids are canonical UUID text (upper case accepted);
 * output structs are released by their *_clear / *_free function and are
 * left cleared on failure; times are unix milliseconds.
 *
 * Storage: workflows.definition holds {"steps":[{"agent":"<id>"},...]}
 * plus "description" when one is set (the table has no column of its
 * own for it).  Steps name agents by id only: names are resolved when a
 * workflow is written (aos_store_workflow_resolve_steps), so renaming an
 * agent does not change what a workflow runs.
 *
 * Deleting is soft, as for agents: a deleted workflow is NOT_FOUND to
 * every operation here and its name is free again; runs keep pointing
 * at it.  Deleting an agent leaves the workflows that name it alone (the
 * engine fails a run that reaches a deleted agent).
 */
#ifndef AOS_STORE_WORKFLOWS_H
#define AOS_STORE_WORKFLOWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/ops.h"
#include "store/store.h"

#define AOS_WORKFLOW_NAME_MAX 100         /* code points */
#define AOS_WORKFLOW_DESCRIPTION_MAX 1000 /* code points */
#define AOS_WORKFLOW_STEPS_MAX 32

struct aos_workflow_step {
    char agent_id[AOS_ID_LEN];
};

struct aos_workflow {
    char id[AOS_ID_LEN];
    char tenant_id[AOS_ID_LEN];
    char *name;
    char *description;               /* NULL when none */
    struct aos_workflow_step *steps; /* malloc'd, nsteps (1..AOS_WORKFLOW_STEPS_MAX) entries */
    size_t nsteps;
    char *created_by; /* principal that created it; NULL if unknown */
    int64_t created_at;
    int64_t updated_at;
};
void aos_workflow_clear(struct aos_workflow *w);
void aos_workflows_free(struct aos_workflow *w, size_t n);

/* What create and update write.  Steps are agent ids (resolve names with
 * aos_store_workflow_resolve_steps first); the store checks that each is
 * a live agent of the tenant, in the same transaction. */
struct aos_workflow_spec {
    const char *name;        /* 1..AOS_WORKFLOW_NAME_MAX code points of valid UTF-8 */
    const char *description; /* NULL = none; at most AOS_WORKFLOW_DESCRIPTION_MAX code points */
    const struct aos_workflow_step *steps;
    size_t nsteps;          /* 1..AOS_WORKFLOW_STEPS_MAX */
    const char *created_by; /* create only; NULL = unknown */
};

/* Resolves refs[0..n) -- each an agent id (any case) or an agent's exact
 * name -- to live agents of the tenant, writing out[0..n).  A ref that is
 * a UUID names the agent with that id if there is one, else the agent of
 * that name.  AOS_DB_NOT_FOUND when a ref names no live agent of the
 * tenant: *bad (may be NULL) gets its index and err says "step N" (1-based)
 * without quoting the ref.  AOS_DB_CONSTRAINT when n is 0 or above
 * AOS_WORKFLOW_STEPS_MAX, or a ref is NULL or empty. */
int aos_store_workflow_resolve_steps(struct aos_store_tx *tx, const char *tenant_id, const char *const *refs,
                                     size_t n, struct aos_workflow_step *out, size_t *bad, char *err,
                                     size_t errlen);

/* Creates a workflow; id_out receives its id.  CONSTRAINT: a live
 * workflow of the tenant has this name, a malformed field, a step that
 * is not a live agent of the tenant, or no such tenant. */
int aos_store_workflow_create(struct aos_store_tx *tx, const char *tenant_id,
                              const struct aos_workflow_spec *spec, char id_out[AOS_ID_LEN], char *err,
                              size_t errlen);
/* A live workflow of the tenant, by id or by exact name. */
int aos_store_workflow_get(struct aos_store_tx *tx, const char *tenant_id, const char *workflow_id,
                           struct aos_workflow *out, char *err, size_t errlen);
int aos_store_workflow_get_by_name(struct aos_store_tx *tx, const char *tenant_id, const char *name,
                                   struct aos_workflow *out, char *err, size_t errlen);
/* One page of the tenant's live workflows, OLDEST first (created_at, then
 * id); cursor and limit exactly as aos_store_agent_list.  *out is
 * malloc'd (NULL when *n == 0): aos_workflows_free. */
int aos_store_workflow_list(struct aos_store_tx *tx, const char *tenant_id, const char *cursor, size_t limit,
                            struct aos_workflow **out, size_t *n, char next_cursor[AOS_CURSOR_LEN], char *err,
                            size_t errlen);
/* Replaces name, description and steps of a live workflow (created_by and
 * created_at stay; spec->created_by is ignored); updated_at is now.
 * NOT_FOUND: no such live workflow in the tenant.  CONSTRAINT as for
 * create. */
int aos_store_workflow_update(struct aos_store_tx *tx, const char *tenant_id, const char *workflow_id,
                              const struct aos_workflow_spec *spec, char *err, size_t errlen);
/* Soft-deletes a live workflow.  NOT_FOUND if absent or already deleted. */
int aos_store_workflow_delete(struct aos_store_tx *tx, const char *tenant_id, const char *workflow_id,
                              char *err, size_t errlen);

#endif
