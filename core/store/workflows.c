#include "config.h"
/*
 * Workflows in the store (workflows.h).  One SQL text per operation for
 * both drivers, every value a parameter, `tenant_id = $1` in every
 * statement (the conventions of ops.c).  The definition JSON is built and
 * read here with json-c, so both drivers hold the same document (jsonb
 * re-formats it on PostgreSQL: it is parsed, never compared as text).
 */
#include "store/workflows.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "store/cells.h"

#define WORKFLOW_COLS "id, tenant_id, name, definition, created_by, created_at, updated_at"
static const char SQL_WORKFLOW_INSERT[] =
    "INSERT INTO workflows (id, tenant_id, name, definition, created_by, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $6)";
static const char SQL_WORKFLOW_GET[] =
    "SELECT " WORKFLOW_COLS " FROM workflows WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL";
static const char SQL_WORKFLOW_GET_NAME[] =
    "SELECT " WORKFLOW_COLS " FROM workflows WHERE tenant_id = $1 AND name = $2 AND deleted_at IS NULL";
static const char SQL_WORKFLOW_LIST_FIRST[] = "SELECT " WORKFLOW_COLS " FROM workflows WHERE tenant_id = $1 "
                                              "AND deleted_at IS NULL ORDER BY created_at, id LIMIT $2";
/* Keyset paging off the index (tenant_id, created_at, id). */
static const char SQL_WORKFLOW_LIST_AFTER[] =
    "SELECT " WORKFLOW_COLS " FROM workflows WHERE tenant_id = $1 AND deleted_at IS NULL "
    "AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $4";
static const char SQL_WORKFLOW_UPDATE[] = "UPDATE workflows SET name = $3, definition = $4, updated_at = $5 "
                                          "WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL";
static const char SQL_WORKFLOW_DELETE[] = "UPDATE workflows SET deleted_at = $3, updated_at = $3 "
                                          "WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL";
static const char SQL_AGENT_LIVE_ID[] =
    "SELECT id FROM agents WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL";
static const char SQL_AGENT_LIVE_NAME[] =
    "SELECT id FROM agents WHERE tenant_id = $1 AND name = $2 AND deleted_at IS NULL";

/* ---------------------------------------------------------------- helpers */

static int not_found(char *err, size_t errlen, const char *what)
{
    aos_db_seterr(err, errlen, "%s not found", what);
    return AOS_DB_NOT_FOUND;
}

static int oom(char *err, size_t errlen)
{
    aos_db_seterr(err, errlen, "out of memory");
    return AOS_DB_ERROR;
}

/* Code points of UTF-8 text; the API hands over valid UTF-8. */
static size_t utf8_len(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

void aos_workflow_clear(struct aos_workflow *w)
{
    if (w == NULL)
        return;
    free(w->name);
    free(w->description);
    free(w->steps);
    free(w->created_by);
    memset(w, 0, sizeof(*w));
}

void aos_workflows_free(struct aos_workflow *w, size_t n)
{
    size_t i;

    if (w == NULL)
        return;
    for (i = 0; i < n; i++)
        aos_workflow_clear(&w[i]);
    free(w);
}

/* ---------------------------------------------------------------- agents of steps */

/* The id of the live agent of the tenant found by `sql` with `key`:
 * AOS_DB_OK with id_out, AOS_DB_NOT_FOUND, or a store failure. */
static int live_agent(struct aos_store_tx *tx, const char *sql, const char *tid, const char *key,
                      char id_out[AOS_ID_LEN], char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(key)};
    rc = aos_store_exec(tx, sql, p, AOS_NPARAMS(p), &res, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_db_result_rows(res) == 1 ? aos_cell_fixed(res, 0, 0, id_out, AOS_ID_LEN, err, errlen)
                                          : AOS_DB_NOT_FOUND;
    aos_db_result_free(res);
    return rc;
}

int aos_store_workflow_resolve_steps(struct aos_store_tx *tx, const char *tenant_id, const char *const *refs,
                                     size_t n, struct aos_workflow_step *out, size_t *bad, char *err,
                                     size_t errlen)
{
    char tid[AOS_ID_LEN], norm[AOS_ID_LEN];
    size_t i;
    int rc = AOS_DB_OK;

    if (bad != NULL)
        *bad = 0;
    if (n < 1 || n > AOS_WORKFLOW_STEPS_MAX) {
        aos_db_seterr(err, errlen, "a workflow has 1 to %d steps", AOS_WORKFLOW_STEPS_MAX);
        return AOS_DB_CONSTRAINT;
    }
    for (i = 0; i < n; i++) {
        if (refs[i] == NULL || refs[i][0] == '\0') {
            if (bad != NULL)
                *bad = i;
            aos_db_seterr(err, errlen, "step %zu names no agent", i + 1);
            return AOS_DB_CONSTRAINT;
        }
    }
    if (!aos_store_id_norm(tenant_id, tid)) {
        aos_db_seterr(err, errlen, "step 1: no such agent in this tenant");
        return AOS_DB_NOT_FOUND;
    }
    for (i = 0; i < n; i++) {
        rc = AOS_DB_NOT_FOUND;
        /* An id first: a name that happens to be another agent's id must
         * not shadow that agent. */
        if (aos_store_id_norm(refs[i], norm))
            rc = live_agent(tx, SQL_AGENT_LIVE_ID, tid, norm, out[i].agent_id, err, errlen);
        if (rc == AOS_DB_NOT_FOUND)
            rc = live_agent(tx, SQL_AGENT_LIVE_NAME, tid, refs[i], out[i].agent_id, err, errlen);
        if (rc == AOS_DB_NOT_FOUND) {
            if (bad != NULL)
                *bad = i;
            aos_db_seterr(err, errlen, "step %zu: no such agent in this tenant (an agent's id or name)",
                          i + 1);
        }
        if (rc != AOS_DB_OK)
            return rc;
    }
    return AOS_DB_OK;
}

/* Every step must be a live agent of the tenant: checked here too, not
 * only by the caller's resolve, so that no code path can store a chain
 * through another tenant's (or a deleted) agent. */
static int steps_check(struct aos_store_tx *tx, const char *tid, const struct aos_workflow_spec *s, char *err,
                       size_t errlen)
{
    char norm[AOS_ID_LEN], found[AOS_ID_LEN];
    size_t i;
    int rc;

    for (i = 0; i < s->nsteps; i++) {
        if (!aos_store_id_norm(s->steps[i].agent_id, norm)) {
            rc = AOS_DB_NOT_FOUND;
        } else {
            rc = live_agent(tx, SQL_AGENT_LIVE_ID, tid, norm, found, err, errlen);
        }
        if (rc == AOS_DB_NOT_FOUND) {
            aos_db_seterr(err, errlen, "step %zu: not a live agent of this tenant", i + 1);
            return AOS_DB_CONSTRAINT;
        }
        if (rc != AOS_DB_OK)
            return rc;
    }
    return AOS_DB_OK;
}

static int spec_check(const struct aos_workflow_spec *s, char *err, size_t errlen)
{
    if (s->name == NULL || s->name[0] == '\0' || utf8_len(s->name) > AOS_WORKFLOW_NAME_MAX) {
        aos_db_seterr(err, errlen, "workflow name must be 1 to %d characters", AOS_WORKFLOW_NAME_MAX);
        return AOS_DB_CONSTRAINT;
    }
    if (s->description != NULL && utf8_len(s->description) > AOS_WORKFLOW_DESCRIPTION_MAX) {
        aos_db_seterr(err, errlen, "workflow description must be at most %d characters",
                      AOS_WORKFLOW_DESCRIPTION_MAX);
        return AOS_DB_CONSTRAINT;
    }
    if (s->steps == NULL || s->nsteps < 1 || s->nsteps > AOS_WORKFLOW_STEPS_MAX) {
        aos_db_seterr(err, errlen, "a workflow has 1 to %d steps", AOS_WORKFLOW_STEPS_MAX);
        return AOS_DB_CONSTRAINT;
    }
    return AOS_DB_OK;
}

/* ---------------------------------------------------------------- definition */

/* The definition document of spec (steps' ids normalised), malloc'd. */
static char *definition_text(const struct aos_workflow_spec *s)
{
    struct json_object *doc = json_object_new_object(), *steps = json_object_new_array();
    char *text = NULL;
    char norm[AOS_ID_LEN];
    size_t i;

    if (doc == NULL || steps == NULL) {
        json_object_put(steps);
        goto out;
    }
    json_object_object_add(doc, "steps", steps);
    for (i = 0; i < s->nsteps; i++) {
        struct json_object *step = json_object_new_object();

        if (step == NULL || !aos_store_id_norm(s->steps[i].agent_id, norm) ||
            json_object_array_add(steps, step) != 0) {
            json_object_put(step);
            goto out;
        }
        if (json_object_object_add(step, "agent", json_object_new_string(norm)) != 0)
            goto out;
    }
    if (s->description != NULL &&
        json_object_object_add(doc, "description", json_object_new_string(s->description)) != 0)
        goto out;
    text =
        strdup(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
out:
    json_object_put(doc);
    return text;
}

/* Fills w's steps and description from a stored definition. */
static int definition_read(const char *text, struct aos_workflow *w, char *err, size_t errlen)
{
    struct json_object *doc = text != NULL ? json_tokener_parse(text) : NULL;
    struct json_object *steps = NULL, *desc = NULL;
    size_t i, n;
    int rc = AOS_DB_ERROR;

    if (doc == NULL || !json_object_object_get_ex(doc, "steps", &steps) ||
        !json_object_is_type(steps, json_type_array))
        goto bad;
    n = json_object_array_length(steps);
    if (n < 1 || n > AOS_WORKFLOW_STEPS_MAX)
        goto bad;
    w->steps = calloc(n, sizeof(*w->steps));
    if (w->steps == NULL) {
        rc = oom(err, errlen);
        goto out;
    }
    w->nsteps = n;
    for (i = 0; i < n; i++) {
        struct json_object *agent = NULL;

        if (!json_object_object_get_ex(json_object_array_get_idx(steps, i), "agent", &agent) ||
            !json_object_is_type(agent, json_type_string) ||
            !aos_store_id_norm(json_object_get_string(agent), w->steps[i].agent_id))
            goto bad;
    }
    if (json_object_object_get_ex(doc, "description", &desc) && desc != NULL) {
        if (!json_object_is_type(desc, json_type_string))
            goto bad;
        w->description = strdup(json_object_get_string(desc));
        if (w->description == NULL) {
            rc = oom(err, errlen);
            goto out;
        }
    }
    rc = AOS_DB_OK;
    goto out;
bad:
    /* Only this file writes definitions: a bug or a hand-edited row. */
    aos_db_seterr(err, errlen, "stored workflow %s has a malformed definition", w->id);
out:
    json_object_put(doc);
    return rc;
}

static int workflow_from_row(const struct aos_db_result *r, size_t row, struct aos_workflow *w, char *err,
                             size_t errlen)
{
    int rc;

    memset(w, 0, sizeof(*w));
    if ((rc = aos_cell_fixed(r, row, 0, w->id, sizeof(w->id), err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_fixed(r, row, 1, w->tenant_id, sizeof(w->tenant_id), err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_dup(r, row, 2, &w->name, err, errlen)) != AOS_DB_OK ||
        (rc = definition_read(aos_db_result_text(r, row, 3), w, err, errlen)) != AOS_DB_OK ||
        (rc = aos_cell_dup(r, row, 4, &w->created_by, err, errlen)) != AOS_DB_OK) {
        aos_workflow_clear(w);
        return rc;
    }
    w->created_at = aos_db_result_int(r, row, 5);
    w->updated_at = aos_db_result_int(r, row, 6);
    return AOS_DB_OK;
}

/* ---------------------------------------------------------------- operations */

int aos_store_workflow_create(struct aos_store_tx *tx, const char *tenant_id,
                              const struct aos_workflow_spec *spec, char id_out[AOS_ID_LEN], char *err,
                              size_t errlen)
{
    char tid[AOS_ID_LEN], id[AOS_ID_LEN];
    char *def = NULL;
    int rc;

    if (!aos_store_id_norm(tenant_id, tid))
        return not_found(err, errlen, "tenant");
    if ((rc = spec_check(spec, err, errlen)) != AOS_DB_OK ||
        (rc = steps_check(tx, tid, spec, err, errlen)) != AOS_DB_OK)
        return rc;
    def = definition_text(spec);
    if (def == NULL)
        return oom(err, errlen);
    aos_store_id_new(id);
    struct aos_db_param p[] = {AOS_DB_P_TEXT(id),
                               AOS_DB_P_TEXT(tid),
                               AOS_DB_P_TEXT(spec->name),
                               AOS_DB_P_TEXT(def),
                               AOS_DB_P_TEXT(spec->created_by),
                               AOS_DB_P_INT(aos_store_now_ms())};
    rc = aos_store_exec(tx, SQL_WORKFLOW_INSERT, p, AOS_NPARAMS(p), NULL, err, errlen);
    if (rc == AOS_DB_OK)
        memcpy(id_out, id, AOS_ID_LEN);
    else if (rc == AOS_DB_CONSTRAINT)
        aos_db_seterr(err, errlen,
                      "a workflow with this name exists in the tenant, or the tenant does not exist");
    free(def);
    return rc;
}

static int workflow_get(struct aos_store_tx *tx, const char *sql, const char *tid, const char *key,
                        struct aos_workflow *out, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(key)};
    rc = aos_store_exec(tx, sql, p, AOS_NPARAMS(p), &res, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_db_result_rows(res) == 1 ? workflow_from_row(res, 0, out, err, errlen)
                                          : not_found(err, errlen, "workflow");
    aos_db_result_free(res);
    return rc;
}

int aos_store_workflow_get(struct aos_store_tx *tx, const char *tenant_id, const char *workflow_id,
                           struct aos_workflow *out, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], wid[AOS_ID_LEN];

    memset(out, 0, sizeof(*out));
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(workflow_id, wid))
        return not_found(err, errlen, "workflow");
    return workflow_get(tx, SQL_WORKFLOW_GET, tid, wid, out, err, errlen);
}

int aos_store_workflow_get_by_name(struct aos_store_tx *tx, const char *tenant_id, const char *name,
                                   struct aos_workflow *out, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN];

    memset(out, 0, sizeof(*out));
    if (!aos_store_id_norm(tenant_id, tid) || name == NULL || name[0] == '\0')
        return not_found(err, errlen, "workflow");
    return workflow_get(tx, SQL_WORKFLOW_GET_NAME, tid, name, out, err, errlen);
}

static int workflow_row(const struct aos_db_result *r, size_t row, void *elem, char *err, size_t errlen)
{
    return workflow_from_row(r, row, elem, err, errlen);
}

static void workflow_list_free(void *list, size_t n) { aos_workflows_free(list, n); }

static const struct aos_page_kind workflow_page = {
    .sql_first = SQL_WORKFLOW_LIST_FIRST,
    .sql_after = SQL_WORKFLOW_LIST_AFTER,
    .elem_size = sizeof(struct aos_workflow),
    .created_at_offset = offsetof(struct aos_workflow, created_at),
    .id_offset = offsetof(struct aos_workflow, id),
    .from_row = workflow_row,
    .free_list = workflow_list_free,
};

int aos_store_workflow_list(struct aos_store_tx *tx, const char *tenant_id, const char *cursor, size_t limit,
                            struct aos_workflow **out, size_t *n, char next_cursor[AOS_CURSOR_LEN], char *err,
                            size_t errlen)
{
    void *list = NULL;
    int rc = aos_page_fetch(tx, &workflow_page, tenant_id, cursor, limit, &list, n, next_cursor, err, errlen);
    *out = list;
    return rc;
}

int aos_store_workflow_update(struct aos_store_tx *tx, const char *tenant_id, const char *workflow_id,
                              const struct aos_workflow_spec *spec, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], wid[AOS_ID_LEN];
    char *def = NULL;
    int64_t changes = 0;
    int rc;

    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(workflow_id, wid))
        return not_found(err, errlen, "workflow");
    if ((rc = spec_check(spec, err, errlen)) != AOS_DB_OK ||
        (rc = steps_check(tx, tid, spec, err, errlen)) != AOS_DB_OK)
        return rc;
    def = definition_text(spec);
    if (def == NULL)
        return oom(err, errlen);
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(wid), AOS_DB_P_TEXT(spec->name),
                               AOS_DB_P_TEXT(def), AOS_DB_P_INT(aos_store_now_ms())};
    rc = aos_exec_changes(tx, SQL_WORKFLOW_UPDATE, p, AOS_NPARAMS(p), &changes, err, errlen);
    if (rc == AOS_DB_OK && changes == 0)
        rc = not_found(err, errlen, "workflow");
    else if (rc == AOS_DB_CONSTRAINT)
        aos_db_seterr(err, errlen, "a workflow with this name exists in the tenant");
    free(def);
    return rc;
}

int aos_store_workflow_delete(struct aos_store_tx *tx, const char *tenant_id, const char *workflow_id,
                              char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], wid[AOS_ID_LEN];
    int64_t changes = 0;
    int rc;

    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(workflow_id, wid))
        return not_found(err, errlen, "workflow");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(wid), AOS_DB_P_INT(aos_store_now_ms())};
    rc = aos_exec_changes(tx, SQL_WORKFLOW_DELETE, p, AOS_NPARAMS(p), &changes, err, errlen);
    if (rc == AOS_DB_OK && changes == 0)
        rc = not_found(err, errlen, "workflow");
    return rc;
}
