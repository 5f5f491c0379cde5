#include "config.h"
/*
 * Typed, tenant-scoped store operations (ops.h).
 *
 * One SQL text per operation serves both drivers: $1..$n placeholders,
 * unix-ms integers for time, ids generated here (libuuid), flags as 0/1
 * (db/<driver>/0001_initial.up.sql states the conventions).  Every text is
 * a constant and every value a parameter: no SQL is ever built from input.
 * Every statement on tenant-owned rows has `tenant_id = $1`.
 */
#include "store/ops.h"

#include "store/cells.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <uuid/uuid.h>

/* Usage not attributed to an agent (see the usage table). */
static const char NIL_ID[] = "00000000-0000-0000-0000-000000000000";

#define NPARAMS(p) (sizeof(p) / sizeof((p)[0]))

/* ---------------------------------------------------------------- helpers */

int64_t aos_store_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void aos_store_id_new(char out[AOS_ID_LEN])
{
    uuid_t u;

    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}

bool aos_store_id_norm(const char *in, char out[AOS_ID_LEN])
{
    uuid_t u;

    if (in == NULL || strlen(in) != AOS_ID_LEN - 1 || uuid_parse(in, u) != 0)
        return false;
    uuid_unparse_lower(u, out);
    return true;
}

void aos_store_day(int64_t ms, char out[AOS_DAY_LEN])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(out, AOS_DAY_LEN, "%Y-%m-%d", &tm) != AOS_DAY_LEN - 1)
        snprintf(out, AOS_DAY_LEN, "1970-01-01"); /* a time gmtime cannot express: not from a clock */
}

bool aos_store_role_valid(const char *role)
{
    return role != NULL &&
           (strcmp(role, "admin") == 0 || strcmp(role, "approver") == 0 || strcmp(role, "user") == 0);
}

static bool day_valid(const char *day)
{
    size_t i;

    if (day == NULL || strlen(day) != AOS_DAY_LEN - 1)
        return false;
    for (i = 0; i < AOS_DAY_LEN - 1; i++) {
        if (i == 4 || i == 7) {
            if (day[i] != '-')
                return false;
        } else if (!isdigit((unsigned char)day[i])) {
            return false;
        }
    }
    return true;
}

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

/* A cell into a fixed-size id/role field; a value that does not fit is a
 * schema/driver bug, reported rather than truncated. */
static int cell_fixed(const struct aos_db_result *r, size_t row, size_t col, char *dst, size_t size,
                      char *err, size_t errlen)
{
    const char *s = aos_db_result_text(r, row, col);
    size_t len = s != NULL ? strlen(s) : 0;

    if (len >= size) {
        aos_db_seterr(err, errlen, "store returned a %zu-byte value for a %zu-byte field", len, size - 1);
        return AOS_DB_ERROR;
    }
    memcpy(dst, s != NULL ? s : "", len);
    dst[len] = '\0';
    return AOS_DB_OK;
}

/* A cell into a malloc'd string (NULL for SQL NULL). */
static int cell_dup(const struct aos_db_result *r, size_t row, size_t col, char **dst, char *err,
                    size_t errlen)
{
    const char *s = aos_db_result_text(r, row, col);

    *dst = NULL;
    if (s == NULL)
        return AOS_DB_OK;
    *dst = strdup(s);
    return *dst != NULL ? AOS_DB_OK : oom(err, errlen);
}

/* Runs a statement that must change one row: 0 rows is NOT_FOUND. */
static int exec_one(struct aos_store_tx *tx, const char *sql, const struct aos_db_param *p, size_t np,
                    const char *what, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    rc = aos_store_exec(tx, sql, p, np, &res, err, errlen);
    if (rc == AOS_DB_OK && aos_db_result_changes(res) == 0)
        rc = not_found(err, errlen, what);
    aos_db_result_free(res);
    return rc;
}

/* ---------------------------------------------------------------- tenants */

static const char SQL_TENANT_STATE[] = "SELECT id, name, active FROM tenants";
static const char SQL_TENANT_DEACTIVATE[] =
    "UPDATE tenants SET active = 0, updated_at = $2 WHERE id = $1 AND active = 1";
/* Moves a tenant's old name out of the way ('~' never appears in a
 * configured name) so that names can move between tenants in one sync. */
static const char SQL_TENANT_PARK_NAME[] = "UPDATE tenants SET name = '~' || id WHERE id = $1 AND name <> $2";
/* Changes the row only when something differs, so updated_at means
 * "changed" and a repeated sync writes nothing. */
static const char SQL_TENANT_UPSERT[] =
    "INSERT INTO tenants (id, name, settings, active, created_at, updated_at) VALUES ($1, $2, $3, 1, $4, $4) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, settings = excluded.settings, active = 1, "
    "updated_at = excluded.updated_at "
    "WHERE tenants.name <> excluded.name OR tenants.settings <> excluded.settings OR tenants.active <> 1";
#define TENANT_COLS "id, name, settings, active, created_at, updated_at"
static const char SQL_TENANT_GET[] = "SELECT " TENANT_COLS " FROM tenants WHERE id = $1";
static const char SQL_TENANT_LIST_ACTIVE[] =
    "SELECT " TENANT_COLS " FROM tenants WHERE active = 1 ORDER BY name, id";
static const char SQL_TENANT_LIST_ALL[] = "SELECT " TENANT_COLS " FROM tenants ORDER BY name, id";

void aos_tenant_clear(struct aos_tenant *t)
{
    if (t == NULL)
        return;
    free(t->name);
    free(t->settings);
    memset(t, 0, sizeof(*t));
}

void aos_tenants_free(struct aos_tenant *t, size_t n)
{
    size_t i;

    if (t == NULL)
        return;
    for (i = 0; i < n; i++)
        aos_tenant_clear(&t[i]);
    free(t);
}

static int tenant_from_row(const struct aos_db_result *r, size_t row, struct aos_tenant *t, char *err,
                           size_t errlen)
{
    int rc;

    memset(t, 0, sizeof(*t));
    if ((rc = cell_fixed(r, row, 0, t->id, sizeof(t->id), err, errlen)) != AOS_DB_OK ||
        (rc = cell_dup(r, row, 1, &t->name, err, errlen)) != AOS_DB_OK ||
        (rc = cell_dup(r, row, 2, &t->settings, err, errlen)) != AOS_DB_OK) {
        aos_tenant_clear(t);
        return rc;
    }
    t->active = aos_db_result_int(r, row, 3) != 0;
    t->created_at = aos_db_result_int(r, row, 4);
    t->updated_at = aos_db_result_int(r, row, 5);
    return AOS_DB_OK;
}

static bool json_add(struct json_object *o, const char *key, struct json_object *v)
{
    if (v == NULL)
        return false;
    if (json_object_object_add(o, key, v) != 0) {
        json_object_put(v);
        return false;
    }
    return true;
}

static struct json_object *rate_json(const struct aos_rate *r)
{
    struct json_object *o = json_object_new_object();

    if (o == NULL)
        return NULL;
    if (!json_add(o, "per_minute", json_object_new_int(r->per_minute)) ||
        !json_add(o, "burst", json_object_new_int(r->burst))) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* The settings column of a configured tenant.  json-c keeps insertion
 * order, so the same config always gives the same text (the SQLite upsert
 * compares it as text).  Returns malloc'd text or NULL (out of memory). */
static char *tenant_settings(const struct aos_conf_tenant *t)
{
    struct json_object *o = json_object_new_object();
    struct json_object *limits = NULL, *budgets = NULL, *plugins = NULL;
    char *text = NULL;
    size_t i;

    if (o == NULL)
        return NULL;
    limits = json_object_new_object();
    if (!json_add(o, "limits", limits) || !json_add(limits, "read", rate_json(&t->read)) ||
        !json_add(limits, "write", rate_json(&t->write)))
        goto out;
    budgets = json_object_new_object();
    if (!json_add(o, "budgets", budgets) ||
        !json_add(budgets, "tokens_day", json_object_new_int64(t->budget_tokens_day)) ||
        !json_add(budgets, "tokens_month", json_object_new_int64(t->budget_tokens_month)) ||
        !json_add(budgets, "micro_usd_day", json_object_new_int64(t->budget_micro_usd_day)) ||
        !json_add(budgets, "micro_usd_month", json_object_new_int64(t->budget_micro_usd_month)))
        goto out;
    if (t->nplugins > 0) {
        plugins = json_object_new_array();
        if (!json_add(o, "plugins", plugins))
            goto out;
        for (i = 0; i < t->nplugins; i++) {
            struct json_object *s = json_object_new_string(t->plugins[i]);

            if (s == NULL || json_object_array_add(plugins, s) != 0) {
                json_object_put(s);
                goto out;
            }
        }
    } else if (json_object_object_add(o, "plugins", NULL) != 0) { /* null: every enabled plugin */
        goto out;
    }
    if (!json_add(o, "autonomy",
                  json_object_new_string(t->autonomy != NULL && t->autonomy[0] != '\0' ? t->autonomy
                                                                                       : "supervised")))
        goto out;
    text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
out:
    json_object_put(o);
    return text;
}

struct tenant_state {
    char id[AOS_ID_LEN];
    bool active;
};

static int tenant_state_read(struct aos_store_tx *tx, struct tenant_state **out, size_t *n, char *err,
                             size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct tenant_state *st = NULL;
    size_t i, rows;
    int rc;

    *out = NULL;
    *n = 0;
    rc = aos_store_exec(tx, SQL_TENANT_STATE, NULL, 0, &res, err, errlen);
    if (rc != AOS_DB_OK)
        goto out;
    rows = aos_db_result_rows(res);
    if (rows == 0)
        goto out;
    st = calloc(rows, sizeof(*st));
    if (st == NULL) {
        rc = oom(err, errlen);
        goto out;
    }
    for (i = 0; i < rows; i++) {
        rc = cell_fixed(res, i, 0, st[i].id, sizeof(st[i].id), err, errlen);
        if (rc != AOS_DB_OK)
            goto out;
        st[i].active = aos_db_result_int(res, i, 2) != 0;
    }
    *out = st;
    *n = rows;
    st = NULL;
out:
    free(st);
    aos_db_result_free(res);
    return rc;
}

static const struct tenant_state *tenant_state_find(const struct tenant_state *st, size_t n, const char *id)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(st[i].id, id) == 0)
            return &st[i];
    return NULL;
}

int aos_store_tenants_sync_stats(struct aos_store_tx *tx, const struct aos_conf_tenant *tenants, size_t n,
                                 struct aos_tenant_sync_stats *stats, char *err, size_t errlen)
{
    struct aos_tenant_sync_stats local = {0, 0, 0, 0};
    struct tenant_state *st = NULL;
    struct aos_db_result *res = NULL;
    char(*ids)[AOS_ID_LEN] = NULL;
    char *settings = NULL;
    int64_t now = aos_store_now_ms();
    size_t nst = 0, i, j;
    int rc;

    if (n > 0) {
        ids = calloc(n, sizeof(*ids));
        if (ids == NULL)
            return oom(err, errlen);
    }
    for (i = 0; i < n; i++) {
        if (!aos_store_id_norm(tenants[i].id, ids[i]) || tenants[i].name == NULL ||
            tenants[i].name[0] == '\0') {
            aos_db_seterr(err, errlen, "tenant %zu of the configuration has a malformed id or no name", i + 1);
            rc = AOS_DB_CONSTRAINT;
            goto out;
        }
    }
    rc = tenant_state_read(tx, &st, &nst, err, errlen);
    if (rc != AOS_DB_OK)
        goto out;

    /* 1. Active tenants no longer configured: deactivated, never deleted. */
    for (i = 0; i < nst; i++) {
        bool configured = false;

        for (j = 0; j < n && !configured; j++)
            configured = strcmp(st[i].id, ids[j]) == 0;
        if (configured || !st[i].active)
            continue;
        struct aos_db_param p[] = {AOS_DB_P_TEXT(st[i].id), AOS_DB_P_INT(now)};
        rc = aos_store_exec(tx, SQL_TENANT_DEACTIVATE, p, NPARAMS(p), NULL, err, errlen);
        if (rc != AOS_DB_OK)
            goto out;
        local.deactivated++;
    }
    /* 2. Renamed tenants release their old names first. */
    for (i = 0; i < n; i++) {
        if (tenant_state_find(st, nst, ids[i]) == NULL)
            continue;
        struct aos_db_param p[] = {AOS_DB_P_TEXT(ids[i]), AOS_DB_P_TEXT(tenants[i].name)};
        rc = aos_store_exec(tx, SQL_TENANT_PARK_NAME, p, NPARAMS(p), NULL, err, errlen);
        if (rc != AOS_DB_OK)
            goto out;
    }
    /* 3. Insert or update each configured tenant. */
    for (i = 0; i < n; i++) {
        bool existed = tenant_state_find(st, nst, ids[i]) != NULL;

        settings = tenant_settings(&tenants[i]);
        if (settings == NULL) {
            rc = oom(err, errlen);
            goto out;
        }
        struct aos_db_param p[] = {AOS_DB_P_TEXT(ids[i]), AOS_DB_P_TEXT(tenants[i].name),
                                   AOS_DB_P_TEXT(settings), AOS_DB_P_INT(now)};
        rc = aos_store_exec(tx, SQL_TENANT_UPSERT, p, NPARAMS(p), &res, err, errlen);
        if (rc != AOS_DB_OK)
            goto out;
        if (!existed)
            local.added++;
        else if (aos_db_result_changes(res) > 0)
            local.updated++;
        else
            local.unchanged++;
        aos_db_result_free(res);
        res = NULL;
        free(settings);
        settings = NULL;
    }
    if (stats != NULL)
        *stats = local;
out:
    aos_db_result_free(res);
    free(settings);
    free(st);
    free(ids);
    return rc;
}

int aos_store_tenants_sync(struct aos_store_tx *tx, const struct aos_conf_tenant *tenants, size_t n,
                           char *err, size_t errlen)
{
    return aos_store_tenants_sync_stats(tx, tenants, n, NULL, err, errlen);
}

int aos_store_tenant_get(struct aos_store_tx *tx, const char *tenant_id, struct aos_tenant *out, char *err,
                         size_t errlen)
{
    struct aos_db_result *res = NULL;
    char id[AOS_ID_LEN];
    int rc;

    memset(out, 0, sizeof(*out));
    if (!aos_store_id_norm(tenant_id, id))
        return not_found(err, errlen, "tenant");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(id)};
    rc = aos_store_exec(tx, SQL_TENANT_GET, p, NPARAMS(p), &res, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_db_result_rows(res) == 1 ? tenant_from_row(res, 0, out, err, errlen)
                                          : not_found(err, errlen, "tenant");
    aos_db_result_free(res);
    return rc;
}

int aos_store_tenant_list(struct aos_store_tx *tx, bool include_inactive, struct aos_tenant **out, size_t *n,
                          char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct aos_tenant *list = NULL;
    size_t i, rows = 0;
    int rc;

    *out = NULL;
    *n = 0;
    rc = aos_store_exec(tx, include_inactive ? SQL_TENANT_LIST_ALL : SQL_TENANT_LIST_ACTIVE, NULL, 0, &res,
                        err, errlen);
    if (rc != AOS_DB_OK)
        goto out;
    rows = aos_db_result_rows(res);
    if (rows == 0)
        goto out;
    list = calloc(rows, sizeof(*list));
    if (list == NULL) {
        rc = oom(err, errlen);
        goto out;
    }
    for (i = 0; i < rows; i++) {
        rc = tenant_from_row(res, i, &list[i], err, errlen);
        if (rc != AOS_DB_OK)
            goto out;
    }
    *out = list;
    *n = rows;
    list = NULL;
out:
    aos_tenants_free(list, rows);
    aos_db_result_free(res);
    return rc;
}

/* ---------------------------------------------------------------- users */

#define USER_COLS "id, tenant_id, email, role, created_at, updated_at"
static const char SQL_USER_INSERT[] =
    "INSERT INTO users (id, tenant_id, email, password_hash, role, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $6)";
static const char SQL_USER_GET[] =
    "SELECT " USER_COLS ", password_hash FROM users WHERE tenant_id = $1 AND id = $2";
static const char SQL_USER_GET_EMAIL[] =
    "SELECT " USER_COLS ", password_hash FROM users WHERE tenant_id = $1 AND email = $2";
/* Sign-in lookups across tenants (aos_store_user_find_login), driven from
 * tenants so that each active tenant costs one probe of UNIQUE (tenant_id,
 * email): there is no index on email alone, by design (every index leads
 * with tenant_id).  CROSS JOIN pins that order on SQLite (its planner keeps
 * the written order for CROSS JOIN; without statistics it might otherwise
 * scan the whole users index); PostgreSQL treats it as a plain join.  No
 * ORDER BY for the same reason; LIMIT 2 tells "one" from "several". */
#define USER_LOGIN_COLS "u.id, u.tenant_id, u.email, u.role, u.created_at, u.updated_at, u.password_hash"
static const char SQL_USER_LOGIN_ANY[] = "SELECT " USER_LOGIN_COLS " FROM tenants t CROSS JOIN users u "
                                         "WHERE u.tenant_id = t.id AND t.active = 1 AND u.email = $1 LIMIT 2";
static const char SQL_USER_LOGIN_TENANT[] = "SELECT " USER_LOGIN_COLS " FROM tenants t CROSS JOIN users u "
                                            "WHERE u.tenant_id = t.id AND t.id = $1 AND t.active = 1 "
                                            "AND u.email = $2";
static const char SQL_USER_LIST_FIRST[] =
    "SELECT " USER_COLS " FROM users WHERE tenant_id = $1 ORDER BY created_at, id LIMIT $2";
/* Keyset paging: a row-value comparison both dialects run off the index
 * (tenant_id, created_at, id). */
static const char SQL_USER_LIST_AFTER[] = "SELECT " USER_COLS " FROM users WHERE tenant_id = $1 "
                                          "AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $4";
static const char SQL_USER_SET_ROLE[] =
    "UPDATE users SET role = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2";
static const char SQL_USER_SET_HASH[] =
    "UPDATE users SET password_hash = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2";
static const char SQL_USER_DELETE[] = "DELETE FROM users WHERE tenant_id = $1 AND id = $2";

void aos_user_clear(struct aos_user *u)
{
    if (u == NULL)
        return;
    free(u->email);
    if (u->password_hash != NULL) {
        explicit_bzero(u->password_hash, strlen(u->password_hash));
        free(u->password_hash);
    }
    memset(u, 0, sizeof(*u));
}

void aos_users_free(struct aos_user *u, size_t n)
{
    size_t i;

    if (u == NULL)
        return;
    for (i = 0; i < n; i++)
        aos_user_clear(&u[i]);
    free(u);
}

static int user_from_row(const struct aos_db_result *r, size_t row, struct aos_user *u, char *err,
                         size_t errlen)
{
    int rc;

    memset(u, 0, sizeof(*u));
    if ((rc = cell_fixed(r, row, 0, u->id, sizeof(u->id), err, errlen)) != AOS_DB_OK ||
        (rc = cell_fixed(r, row, 1, u->tenant_id, sizeof(u->tenant_id), err, errlen)) != AOS_DB_OK ||
        (rc = cell_dup(r, row, 2, &u->email, err, errlen)) != AOS_DB_OK ||
        (rc = cell_fixed(r, row, 3, u->role, sizeof(u->role), err, errlen)) != AOS_DB_OK ||
        (aos_db_result_cols(r) > 6 &&
         (rc = cell_dup(r, row, 6, &u->password_hash, err, errlen)) != AOS_DB_OK)) {
        aos_user_clear(u);
        return rc;
    }
    u->created_at = aos_db_result_int(r, row, 4);
    u->updated_at = aos_db_result_int(r, row, 5);
    return AOS_DB_OK;
}

int aos_store_user_create(struct aos_store_tx *tx, const char *tenant_id, const char *email,
                          const char *password_hash, const char *role, char id_out[AOS_ID_LEN], char *err,
                          size_t errlen)
{
    char tid[AOS_ID_LEN], id[AOS_ID_LEN];
    int rc;

    if (!aos_store_id_norm(tenant_id, tid))
        return not_found(err, errlen, "tenant");
    if (email == NULL || email[0] == '\0') {
        aos_db_seterr(err, errlen, "user email is empty");
        return AOS_DB_CONSTRAINT;
    }
    if (!aos_store_role_valid(role)) {
        aos_db_seterr(err, errlen, "role must be admin, approver or user");
        return AOS_DB_CONSTRAINT;
    }
    aos_store_id_new(id);
    struct aos_db_param p[] = {AOS_DB_P_TEXT(id),    AOS_DB_P_TEXT(tid),
                               AOS_DB_P_TEXT(email), AOS_DB_P_TEXT(password_hash),
                               AOS_DB_P_TEXT(role),  AOS_DB_P_INT(aos_store_now_ms())};
    rc = aos_store_exec(tx, SQL_USER_INSERT, p, NPARAMS(p), NULL, err, errlen);
    if (rc == AOS_DB_OK)
        memcpy(id_out, id, AOS_ID_LEN);
    else if (rc == AOS_DB_CONSTRAINT)
        aos_db_seterr(err, errlen, "a user with this email exists in the tenant, or the tenant does not exist");
    return rc;
}

static int user_get(struct aos_store_tx *tx, const char *sql, const char *tid, const char *key,
                    struct aos_user *out, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(key)};
    rc = aos_store_exec(tx, sql, p, NPARAMS(p), &res, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_db_result_rows(res) == 1 ? user_from_row(res, 0, out, err, errlen)
                                          : not_found(err, errlen, "user");
    aos_db_result_free(res);
    return rc;
}

int aos_store_user_get(struct aos_store_tx *tx, const char *tenant_id, const char *user_id,
                       struct aos_user *out, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], uid[AOS_ID_LEN];

    memset(out, 0, sizeof(*out));
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(user_id, uid))
        return not_found(err, errlen, "user");
    return user_get(tx, SQL_USER_GET, tid, uid, out, err, errlen);
}

int aos_store_user_get_by_email(struct aos_store_tx *tx, const char *tenant_id, const char *email,
                                struct aos_user *out, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN];

    memset(out, 0, sizeof(*out));
    if (!aos_store_id_norm(tenant_id, tid) || email == NULL)
        return not_found(err, errlen, "user");
    return user_get(tx, SQL_USER_GET_EMAIL, tid, email, out, err, errlen);
}

int aos_store_user_find_login(struct aos_store_tx *tx, const char *tenant_id, const char *email,
                              struct aos_user *out, int *matches, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    char tid[AOS_ID_LEN];
    size_t rows;
    int rc;

    memset(out, 0, sizeof(*out));
    *matches = 0;
    if (email == NULL || email[0] == '\0' || (tenant_id != NULL && !aos_store_id_norm(tenant_id, tid)))
        return not_found(err, errlen, "user");
    if (tenant_id != NULL) {
        struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(email)};
        rc = aos_store_exec(tx, SQL_USER_LOGIN_TENANT, p, NPARAMS(p), &res, err, errlen);
    } else {
        struct aos_db_param p[] = {AOS_DB_P_TEXT(email)};
        rc = aos_store_exec(tx, SQL_USER_LOGIN_ANY, p, NPARAMS(p), &res, err, errlen);
    }
    if (rc != AOS_DB_OK)
        goto out;
    rows = aos_db_result_rows(res);
    *matches = rows > 1 ? 2 : (int)rows;
    if (rows == 1)
        rc = user_from_row(res, 0, out, err, errlen);
    else if (rows == 0)
        rc = not_found(err, errlen, "user");
    else {
        aos_db_seterr(err, errlen, "the e-mail belongs to users of several tenants");
        rc = AOS_DB_NOT_FOUND;
    }
out:
    aos_db_result_free(res);
    return rc;
}

static int user_row(const struct aos_db_result *r, size_t row, void *elem, char *err, size_t errlen)
{
    return user_from_row(r, row, elem, err, errlen);
}

static void user_list_free(void *list, size_t n) { aos_users_free(list, n); }

static const struct aos_page_kind user_page = {
    .sql_first = SQL_USER_LIST_FIRST,
    .sql_after = SQL_USER_LIST_AFTER,
    .elem_size = sizeof(struct aos_user),
    .created_at_offset = offsetof(struct aos_user, created_at),
    .id_offset = offsetof(struct aos_user, id),
    .from_row = user_row,
    .free_list = user_list_free,
};

int aos_store_user_list(struct aos_store_tx *tx, const char *tenant_id, const char *cursor, size_t limit,
                        struct aos_user **out, size_t *n, char next_cursor[AOS_CURSOR_LEN], char *err,
                        size_t errlen)
{
    void *list = NULL;
    int rc = aos_page_fetch(tx, &user_page, tenant_id, cursor, limit, &list, n, next_cursor, err, errlen);
    *out = list;
    return rc;
}

int aos_store_user_set_role(struct aos_store_tx *tx, const char *tenant_id, const char *user_id,
                            const char *role, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], uid[AOS_ID_LEN];

    if (!aos_store_role_valid(role)) {
        aos_db_seterr(err, errlen, "role must be admin, approver or user");
        return AOS_DB_CONSTRAINT;
    }
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(user_id, uid))
        return not_found(err, errlen, "user");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(uid), AOS_DB_P_TEXT(role),
                               AOS_DB_P_INT(aos_store_now_ms())};
    return exec_one(tx, SQL_USER_SET_ROLE, p, NPARAMS(p), "user", err, errlen);
}

int aos_store_user_set_password_hash(struct aos_store_tx *tx, const char *tenant_id, const char *user_id,
                                     const char *password_hash, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], uid[AOS_ID_LEN];

    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(user_id, uid))
        return not_found(err, errlen, "user");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(uid), AOS_DB_P_TEXT(password_hash),
                               AOS_DB_P_INT(aos_store_now_ms())};
    return exec_one(tx, SQL_USER_SET_HASH, p, NPARAMS(p), "user", err, errlen);
}

int aos_store_user_delete(struct aos_store_tx *tx, const char *tenant_id, const char *user_id, char *err,
                          size_t errlen)
{
    char tid[AOS_ID_LEN], uid[AOS_ID_LEN];

    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(user_id, uid))
        return not_found(err, errlen, "user");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(uid)};
    return exec_one(tx, SQL_USER_DELETE, p, NPARAMS(p), "user", err, errlen);
}

/* ---------------------------------------------------------------- API keys */

#define KEY_COLS \
    "id, tenant_id, user_id, name, prefix, role, created_at, expires_at, revoked_at, last_used_at"
static const char SQL_KEY_INSERT[] =
    "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, secret_hash, role, created_at, expires_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
static const char SQL_KEY_BY_PREFIX[] = "SELECT " KEY_COLS ", secret_hash FROM api_keys WHERE prefix = $1 "
                                        "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)";
static const char SQL_KEY_GET[] = "SELECT " KEY_COLS " FROM api_keys WHERE tenant_id = $1 AND id = $2";
/* [by user][include revoked] */
static const char *const SQL_KEY_LIST[2][2] = {
    {"SELECT " KEY_COLS " FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at, id",
     "SELECT " KEY_COLS " FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"},
    {"SELECT " KEY_COLS " FROM api_keys WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL "
     "ORDER BY created_at, id",
     "SELECT " KEY_COLS " FROM api_keys WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at, id"},
};
static const char SQL_KEY_REVOKE[] =
    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE tenant_id = $1 AND id = $2";
static const char SQL_KEY_REVOKE_OWN[] = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE "
                                         "tenant_id = $1 AND id = $2 AND user_id = $4";
static const char SQL_KEY_TOUCH[] = "UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2 "
                                    "AND (last_used_at IS NULL OR last_used_at < $4)";
#define KEY_TOUCH_INTERVAL_MS 60000

void aos_api_key_clear(struct aos_api_key *k)
{
    if (k == NULL)
        return;
    free(k->name);
    free(k->prefix);
    if (k->secret_hash != NULL) {
        explicit_bzero(k->secret_hash, strlen(k->secret_hash));
        free(k->secret_hash);
    }
    memset(k, 0, sizeof(*k));
}

void aos_api_keys_free(struct aos_api_key *k, size_t n)
{
    size_t i;

    if (k == NULL)
        return;
    for (i = 0; i < n; i++)
        aos_api_key_clear(&k[i]);
    free(k);
}

static int key_from_row(const struct aos_db_result *r, size_t row, struct aos_api_key *k, char *err,
                        size_t errlen)
{
    int rc;

    memset(k, 0, sizeof(*k));
    if ((rc = cell_fixed(r, row, 0, k->id, sizeof(k->id), err, errlen)) != AOS_DB_OK ||
        (rc = cell_fixed(r, row, 1, k->tenant_id, sizeof(k->tenant_id), err, errlen)) != AOS_DB_OK ||
        (rc = cell_fixed(r, row, 2, k->user_id, sizeof(k->user_id), err, errlen)) != AOS_DB_OK ||
        (rc = cell_dup(r, row, 3, &k->name, err, errlen)) != AOS_DB_OK ||
        (rc = cell_dup(r, row, 4, &k->prefix, err, errlen)) != AOS_DB_OK ||
        (rc = cell_fixed(r, row, 5, k->role, sizeof(k->role), err, errlen)) != AOS_DB_OK ||
        (aos_db_result_cols(r) > 10 &&
         (rc = cell_dup(r, row, 10, &k->secret_hash, err, errlen)) != AOS_DB_OK)) {
        aos_api_key_clear(k);
        return rc;
    }
    k->created_at = aos_db_result_int(r, row, 6);
    k->expires_at = aos_db_result_int(r, row, 7);
    k->revoked_at = aos_db_result_int(r, row, 8);
    k->last_used_at = aos_db_result_int(r, row, 9);
    return AOS_DB_OK;
}

int aos_store_apikey_create(struct aos_store_tx *tx, const char *tenant_id,
                            const struct aos_api_key_spec *spec, char id_out[AOS_ID_LEN], char *err,
                            size_t errlen)
{
    char tid[AOS_ID_LEN], uid[AOS_ID_LEN], id[AOS_ID_LEN];
    int rc;

    if (!aos_store_id_norm(tenant_id, tid))
        return not_found(err, errlen, "tenant");
    if (spec->user_id != NULL && !aos_store_id_norm(spec->user_id, uid))
        return not_found(err, errlen, "user");
    if (!aos_store_role_valid(spec->role)) {
        aos_db_seterr(err, errlen, "role must be admin, approver or user");
        return AOS_DB_CONSTRAINT;
    }
    if (spec->name == NULL || spec->prefix == NULL || spec->prefix[0] == '\0' || spec->secret_hash == NULL ||
        spec->secret_hash[0] == '\0' || spec->expires_at < 0) {
        aos_db_seterr(err, errlen, "API key needs a name, a prefix, a secret hash and expires_at >= 0");
        return AOS_DB_CONSTRAINT;
    }
    aos_store_id_new(id);
    struct aos_db_param p[] = {
        AOS_DB_P_TEXT(id),
        AOS_DB_P_TEXT(tid),
        spec->user_id != NULL ? AOS_DB_P_TEXT(uid) : AOS_DB_P_NULL,
        AOS_DB_P_TEXT(spec->name),
        AOS_DB_P_TEXT(spec->prefix),
        AOS_DB_P_TEXT(spec->secret_hash),
        AOS_DB_P_TEXT(spec->role),
        AOS_DB_P_INT(aos_store_now_ms()),
        spec->expires_at > 0 ? AOS_DB_P_INT(spec->expires_at) : AOS_DB_P_NULL,
    };
    rc = aos_store_exec(tx, SQL_KEY_INSERT, p, NPARAMS(p), NULL, err, errlen);
    if (rc == AOS_DB_OK)
        memcpy(id_out, id, AOS_ID_LEN);
    else if (rc == AOS_DB_CONSTRAINT)
        aos_db_seterr(err, errlen, "the key prefix is taken, or the tenant or user does not exist");
    return rc;
}

static int key_get(struct aos_store_tx *tx, const char *sql, const struct aos_db_param *p, size_t np,
                   struct aos_api_key *out, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    rc = aos_store_exec(tx, sql, p, np, &res, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_db_result_rows(res) == 1 ? key_from_row(res, 0, out, err, errlen)
                                          : not_found(err, errlen, "API key");
    aos_db_result_free(res);
    return rc;
}

int aos_store_apikey_get_by_prefix(struct aos_store_tx *tx, const char *prefix, struct aos_api_key *out,
                                   char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (prefix == NULL || prefix[0] == '\0')
        return not_found(err, errlen, "API key");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(prefix), AOS_DB_P_INT(aos_store_now_ms())};
    return key_get(tx, SQL_KEY_BY_PREFIX, p, NPARAMS(p), out, err, errlen);
}

int aos_store_apikey_get(struct aos_store_tx *tx, const char *tenant_id, const char *key_id,
                         struct aos_api_key *out, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], kid[AOS_ID_LEN];

    memset(out, 0, sizeof(*out));
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(key_id, kid))
        return not_found(err, errlen, "API key");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(kid)};
    return key_get(tx, SQL_KEY_GET, p, NPARAMS(p), out, err, errlen);
}

int aos_store_apikey_list(struct aos_store_tx *tx, const char *tenant_id, const char *user_id,
                          bool include_revoked, struct aos_api_key **out, size_t *n, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct aos_api_key *list = NULL;
    char tid[AOS_ID_LEN], uid[AOS_ID_LEN] = "";
    size_t i, rows = 0;
    int rc;

    *out = NULL;
    *n = 0;
    if (!aos_store_id_norm(tenant_id, tid) || (user_id != NULL && !aos_store_id_norm(user_id, uid)))
        return AOS_DB_OK; /* matches nothing */
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(uid)};
    rc = aos_store_exec(tx, SQL_KEY_LIST[user_id != NULL][include_revoked], p, user_id != NULL ? 2 : 1, &res,
                        err, errlen);
    if (rc != AOS_DB_OK)
        goto out;
    rows = aos_db_result_rows(res);
    if (rows == 0)
        goto out;
    list = calloc(rows, sizeof(*list));
    if (list == NULL) {
        rc = oom(err, errlen);
        goto out;
    }
    for (i = 0; i < rows; i++) {
        rc = key_from_row(res, i, &list[i], err, errlen);
        if (rc != AOS_DB_OK)
            goto out;
    }
    *out = list;
    *n = rows;
    list = NULL;
out:
    aos_api_keys_free(list, rows);
    aos_db_result_free(res);
    return rc;
}

int aos_store_apikey_revoke(struct aos_store_tx *tx, const char *tenant_id, const char *key_id,
                            const char *owner_user_id, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], kid[AOS_ID_LEN], uid[AOS_ID_LEN] = "";

    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(key_id, kid) ||
        (owner_user_id != NULL && !aos_store_id_norm(owner_user_id, uid)))
        return not_found(err, errlen, "API key");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(kid), AOS_DB_P_INT(aos_store_now_ms()),
                               AOS_DB_P_TEXT(uid)};
    if (owner_user_id != NULL)
        return exec_one(tx, SQL_KEY_REVOKE_OWN, p, 4, "API key", err, errlen);
    return exec_one(tx, SQL_KEY_REVOKE, p, 3, "API key", err, errlen);
}

int aos_store_apikey_touch(struct aos_store_tx *tx, const char *tenant_id, const char *key_id, char *err,
                           size_t errlen)
{
    char tid[AOS_ID_LEN], kid[AOS_ID_LEN];
    int64_t now = aos_store_now_ms();

    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(key_id, kid))
        return not_found(err, errlen, "API key");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(kid), AOS_DB_P_INT(now),
                               AOS_DB_P_INT(now - KEY_TOUCH_INTERVAL_MS)};
    return aos_store_exec(tx, SQL_KEY_TOUCH, p, NPARAMS(p), NULL, err, errlen);
}

/* ---------------------------------------------------------------- usage */

/* Atomic on both drivers: PostgreSQL's ON CONFLICT DO UPDATE locks the row
 * it updates; SQLite has one writer at a time. */
static const char SQL_USAGE_ADD[] =
    "INSERT INTO usage (tenant_id, day, agent_id, tokens_in, tokens_out, micro_usd, updated_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) "
    "ON CONFLICT (tenant_id, day, agent_id) DO UPDATE SET tokens_in = usage.tokens_in + excluded.tokens_in, "
    "tokens_out = usage.tokens_out + excluded.tokens_out, micro_usd = usage.micro_usd + excluded.micro_usd, "
    "updated_at = excluded.updated_at";
/* SUM(bigint) is numeric on PostgreSQL: it comes back as decimal text all
 * the same, and CAST keeps the type an integer on both. */
static const char SQL_USAGE_TENANT[] =
    "SELECT CAST(COALESCE(SUM(tokens_in), 0) AS BIGINT), CAST(COALESCE(SUM(tokens_out), 0) AS BIGINT), "
    "CAST(COALESCE(SUM(micro_usd), 0) AS BIGINT) FROM usage WHERE tenant_id = $1 AND day >= $2 AND day <= $3";
static const char SQL_USAGE_AGENT[] =
    "SELECT CAST(COALESCE(SUM(tokens_in), 0) AS BIGINT), CAST(COALESCE(SUM(tokens_out), 0) AS BIGINT), "
    "CAST(COALESCE(SUM(micro_usd), 0) AS BIGINT) FROM usage WHERE tenant_id = $1 AND day >= $2 AND day <= $3 "
    "AND agent_id = $4";

int aos_store_usage_add(struct aos_store_tx *tx, const char *tenant_id, const char *day, const char *agent_id,
                        const struct aos_usage *delta, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], aid[AOS_ID_LEN];
    int rc;

    if (!aos_store_id_norm(tenant_id, tid))
        return not_found(err, errlen, "tenant");
    if (agent_id != NULL && !aos_store_id_norm(agent_id, aid))
        return not_found(err, errlen, "agent");
    if (!day_valid(day) || delta->tokens_in < 0 || delta->tokens_out < 0 || delta->micro_usd < 0) {
        aos_db_seterr(err, errlen, "usage needs a day YYYY-MM-DD and counts >= 0");
        return AOS_DB_CONSTRAINT;
    }
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid),
                               AOS_DB_P_TEXT(day),
                               AOS_DB_P_TEXT(agent_id != NULL ? aid : NIL_ID),
                               AOS_DB_P_INT(delta->tokens_in),
                               AOS_DB_P_INT(delta->tokens_out),
                               AOS_DB_P_INT(delta->micro_usd),
                               AOS_DB_P_INT(aos_store_now_ms())};
    rc = aos_store_exec(tx, SQL_USAGE_ADD, p, NPARAMS(p), NULL, err, errlen);
    if (rc == AOS_DB_CONSTRAINT)
        aos_db_seterr(err, errlen, "usage rejected: no such tenant");
    return rc;
}

int aos_store_usage_total(struct aos_store_tx *tx, const char *tenant_id, const char *agent_id,
                          const char *from_day, const char *to_day, struct aos_usage *out, char *err,
                          size_t errlen)
{
    struct aos_db_result *res = NULL;
    char tid[AOS_ID_LEN], aid[AOS_ID_LEN] = "";
    int rc;

    memset(out, 0, sizeof(*out));
    if (!day_valid(from_day) || !day_valid(to_day)) {
        aos_db_seterr(err, errlen, "days must be YYYY-MM-DD");
        return AOS_DB_CONSTRAINT;
    }
    if (!aos_store_id_norm(tenant_id, tid) || (agent_id != NULL && !aos_store_id_norm(agent_id, aid)))
        return AOS_DB_OK; /* nothing recorded for what cannot exist */
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(from_day), AOS_DB_P_TEXT(to_day),
                               AOS_DB_P_TEXT(aid)};
    rc = aos_store_exec(tx, agent_id != NULL ? SQL_USAGE_AGENT : SQL_USAGE_TENANT, p,
                        agent_id != NULL ? 4 : 3, &res, err, errlen);
    if (rc == AOS_DB_OK && aos_db_result_rows(res) == 1) {
        out->tokens_in = aos_db_result_int(res, 0, 0);
        out->tokens_out = aos_db_result_int(res, 0, 1);
        out->micro_usd = aos_db_result_int(res, 0, 2);
    }
    aos_db_result_free(res);
    return rc;
}

/* ---------------------------------------------------------------- journal */

/* INSERT ... SELECT ... FROM tenants: a row for a tenant the store does not
 * know inserts nothing instead of failing the batch's transaction.  Every
 * value is CAST so PostgreSQL need not infer types through the SELECT. */
static const char SQL_JOURNAL_INSERT[] =
    "INSERT INTO journal (tenant_id, ts, request_id, principal, method, route, status, latency_us, bytes_in, "
    "bytes_out, client_ip) SELECT id, CAST($2 AS BIGINT), CAST($3 AS TEXT), CAST($4 AS TEXT), "
    "CAST($5 AS TEXT), CAST($6 AS TEXT), CAST($7 AS INTEGER), CAST($8 AS BIGINT), CAST($9 AS BIGINT), "
    "CAST($10 AS BIGINT), CAST($11 AS TEXT) FROM tenants WHERE id = $1";
#define JOURNAL_COLS                                                                                     \
    "id, tenant_id, ts, request_id, principal, method, route, status, latency_us, bytes_in, bytes_out, " \
    "client_ip"
static const char SQL_JOURNAL_LIST_FIRST[] =
    "SELECT " JOURNAL_COLS " FROM journal WHERE tenant_id = $1 ORDER BY ts DESC, id DESC LIMIT $2";
static const char SQL_JOURNAL_LIST_AFTER[] = "SELECT " JOURNAL_COLS " FROM journal WHERE tenant_id = $1 "
                                             "AND (ts < $2 OR (ts = $2 AND id < $3)) "
                                             "ORDER BY ts DESC, id DESC LIMIT $4";
/* Only the $2 oldest ids are examined: bounded work however large the
 * table (there is no index on ts alone). */
static const char SQL_JOURNAL_PRUNE[] =
    "DELETE FROM journal WHERE id IN (SELECT id FROM (SELECT id, ts FROM journal ORDER BY id LIMIT $2) AS h "
    "WHERE ts < $1)";

static struct aos_db_param text_or_null(const char *s)
{
    return s[0] != '\0' ? AOS_DB_P_TEXT(s) : AOS_DB_P_NULL;
}

int aos_store_journal_insert(struct aos_store_tx *tx, const struct aos_journal_record *recs, size_t n,
                             size_t *inserted, char *err, size_t errlen)
{
    size_t i;

    *inserted = 0;
    for (i = 0; i < n; i++) {
        const struct aos_journal_record *r = &recs[i];
        struct aos_db_result *res = NULL;
        char tid[AOS_ID_LEN];
        int rc;

        if (!aos_store_id_norm(r->tenant_id, tid))
            continue;
        struct aos_db_param p[] = {
            AOS_DB_P_TEXT(tid),         AOS_DB_P_INT(r->time_ms),    AOS_DB_P_TEXT(r->request_id),
            text_or_null(r->principal), AOS_DB_P_TEXT(r->method),    AOS_DB_P_TEXT(r->route),
            AOS_DB_P_INT(r->status),    AOS_DB_P_INT(r->latency_us), AOS_DB_P_INT(r->bytes_in),
            AOS_DB_P_INT(r->bytes_out), text_or_null(r->client_ip)};
        rc = aos_store_exec(tx, SQL_JOURNAL_INSERT, p, NPARAMS(p), &res, err, errlen);
        if (rc != AOS_DB_OK)
            return rc;
        *inserted += (size_t)aos_db_result_changes(res);
        aos_db_result_free(res);
    }
    return AOS_DB_OK;
}

/* Cursor "<ts>.<id>" (both decimal): the last row of the previous page. */
static bool journal_cursor_parse(const char *cursor, int64_t *ts, int64_t *id)
{
    char *end;
    long long a, b;

    if (!isdigit((unsigned char)cursor[0]))
        return false;
    errno = 0;
    a = strtoll(cursor, &end, 10);
    if (errno != 0 || *end != '.' || !isdigit((unsigned char)end[1]))
        return false;
    b = strtoll(end + 1, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *ts = (int64_t)a;
    *id = (int64_t)b;
    return true;
}

static int journal_from_row(const struct aos_db_result *r, size_t row, struct aos_journal_record *j,
                            char *err, size_t errlen)
{
    int rc;

    j->id = aos_db_result_int(r, row, 0);
    j->time_ms = aos_db_result_int(r, row, 2);
    j->status = (int)aos_db_result_int(r, row, 7);
    j->latency_us = aos_db_result_int(r, row, 8);
    j->bytes_in = aos_db_result_int(r, row, 9);
    j->bytes_out = aos_db_result_int(r, row, 10);
    if ((rc = cell_fixed(r, row, 1, j->tenant_id, sizeof(j->tenant_id), err, errlen)) != AOS_DB_OK ||
        (rc = cell_fixed(r, row, 3, j->request_id, sizeof(j->request_id), err, errlen)) != AOS_DB_OK ||
        (rc = cell_fixed(r, row, 4, j->principal, sizeof(j->principal), err, errlen)) != AOS_DB_OK ||
        (rc = cell_fixed(r, row, 5, j->method, sizeof(j->method), err, errlen)) != AOS_DB_OK ||
        (rc = cell_fixed(r, row, 6, j->route, sizeof(j->route), err, errlen)) != AOS_DB_OK ||
        (rc = cell_fixed(r, row, 11, j->client_ip, sizeof(j->client_ip), err, errlen)) != AOS_DB_OK)
        return rc;
    return AOS_DB_OK;
}

int aos_store_journal_list(struct aos_store_tx *tx, const char *tenant_id, const char *cursor, size_t limit,
                           struct aos_journal_record **out, size_t *n, char next_cursor[AOS_CURSOR_LEN],
                           char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    struct aos_journal_record *list = NULL;
    char tid[AOS_ID_LEN];
    int64_t after_ts = 0, after_id = 0;
    size_t i, rows, take;
    bool first = cursor == NULL || cursor[0] == '\0';
    int rc;

    *out = NULL;
    *n = 0;
    next_cursor[0] = '\0';
    if (limit < 1 || limit > 1000) {
        aos_db_seterr(err, errlen, "page size must be 1 to 1000");
        return AOS_DB_CONSTRAINT;
    }
    if (!first && !journal_cursor_parse(cursor, &after_ts, &after_id)) {
        aos_db_seterr(err, errlen, "malformed cursor");
        return AOS_DB_CONSTRAINT;
    }
    if (!aos_store_id_norm(tenant_id, tid))
        return AOS_DB_OK; /* no such tenant: nothing journaled */
    /* One row more than the page tells whether another page follows. */
    if (first) {
        struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(limit + 1)};
        rc = aos_store_exec(tx, SQL_JOURNAL_LIST_FIRST, p, NPARAMS(p), &res, err, errlen);
    } else {
        struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_INT(after_ts), AOS_DB_P_INT(after_id),
                                   AOS_DB_P_INT(limit + 1)};
        rc = aos_store_exec(tx, SQL_JOURNAL_LIST_AFTER, p, NPARAMS(p), &res, err, errlen);
    }
    if (rc != AOS_DB_OK)
        goto out;
    rows = aos_db_result_rows(res);
    take = rows > limit ? limit : rows;
    if (take == 0)
        goto out;
    list = calloc(take, sizeof(*list));
    if (list == NULL) {
        rc = oom(err, errlen);
        goto out;
    }
    for (i = 0; i < take; i++) {
        rc = journal_from_row(res, i, &list[i], err, errlen);
        if (rc != AOS_DB_OK)
            goto out;
    }
    if (rows > limit)
        snprintf(next_cursor, AOS_CURSOR_LEN, "%" PRId64 ".%" PRId64, list[take - 1].time_ms,
                 list[take - 1].id);
    *out = list;
    *n = take;
    list = NULL;
out:
    free(list);
    aos_db_result_free(res);
    return rc;
}

int aos_store_journal_prune(struct aos_store_tx *tx, int64_t older_than_ms, size_t limit, size_t *deleted,
                            char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    *deleted = 0;
    if (limit < 1 || limit > 1000000) {
        aos_db_seterr(err, errlen, "prune chunk must be 1 to 1000000");
        return AOS_DB_CONSTRAINT;
    }
    struct aos_db_param p[] = {AOS_DB_P_INT(older_than_ms), AOS_DB_P_INT(limit)};
    rc = aos_store_exec(tx, SQL_JOURNAL_PRUNE, p, NPARAMS(p), &res, err, errlen);
    if (rc == AOS_DB_OK)
        *deleted = (size_t)aos_db_result_changes(res);
    aos_db_result_free(res);
    return rc;
}

/* ---------------------------------------------------------------- agents */

#define AGENT_COLS                                                                                \
    "id, tenant_id, name, plugin, config, autonomy, approval_policy, budget_tokens_day, "         \
    "budget_tokens_month, budget_micro_usd_day, budget_micro_usd_month, created_by, created_at, " \
    "updated_at, step_reserve_tokens, step_reserve_micro_usd"
static const char SQL_AGENT_INSERT[] =
    "INSERT INTO agents (id, tenant_id, name, plugin, config, autonomy, approval_policy, budget_tokens_day, "
    "budget_tokens_month, budget_micro_usd_day, budget_micro_usd_month, created_by, created_at, updated_at, "
    "step_reserve_tokens, step_reserve_micro_usd) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15)";
static const char SQL_AGENT_GET[] =
    "SELECT " AGENT_COLS " FROM agents WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL";
static const char SQL_AGENT_GET_NAME[] =
    "SELECT " AGENT_COLS " FROM agents WHERE tenant_id = $1 AND name = $2 AND deleted_at IS NULL";
static const char SQL_AGENT_LIST_FIRST[] = "SELECT " AGENT_COLS " FROM agents WHERE tenant_id = $1 "
                                           "AND deleted_at IS NULL ORDER BY created_at, id LIMIT $2";
/* Keyset paging off the index (tenant_id, created_at, id). */
static const char SQL_AGENT_LIST_AFTER[] =
    "SELECT " AGENT_COLS " FROM agents WHERE tenant_id = $1 AND deleted_at IS NULL "
    "AND (created_at, id) > ($2, $3) ORDER BY created_at, id LIMIT $4";
static const char SQL_AGENT_UPDATE[] =
    "UPDATE agents SET name = $3, plugin = $4, config = $5, autonomy = $6, approval_policy = $7, "
    "budget_tokens_day = $8, budget_tokens_month = $9, budget_micro_usd_day = $10, "
    "budget_micro_usd_month = $11, updated_at = $12, step_reserve_tokens = $13, step_reserve_micro_usd = $14 "
    "WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL";
static const char SQL_AGENT_DELETE[] = "UPDATE agents SET deleted_at = $3, updated_at = $3 "
                                       "WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL";

void aos_agent_clear(struct aos_agent *a)
{
    if (a == NULL)
        return;
    free(a->name);
    free(a->plugin);
    free(a->config);
    free(a->autonomy);
    free(a->approval_policy);
    free(a->created_by);
    memset(a, 0, sizeof(*a));
}

void aos_agents_free(struct aos_agent *a, size_t n)
{
    size_t i;

    if (a == NULL)
        return;
    for (i = 0; i < n; i++)
        aos_agent_clear(&a[i]);
    free(a);
}

void aos_agent_spec_init(struct aos_agent_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->budget_tokens_day = -1;
    spec->budget_tokens_month = -1;
    spec->budget_micro_usd_day = -1;
    spec->budget_micro_usd_month = -1;
    spec->step_reserve_tokens = -1;
    spec->step_reserve_micro_usd = -1;
}

bool aos_store_json_object_valid(const char *s)
{
    struct json_tokener *tok;
    struct json_object *o;
    size_t len;
    bool ok;

    if (s == NULL)
        return false;
    len = strlen(s);
    if (len > INT32_MAX)
        return false;
    tok = json_tokener_new();
    if (tok == NULL)
        return false;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tok, s, (int)len);
    /* The whole text must be one object: no trailing bytes. */
    ok = o != NULL && json_tokener_get_error(tok) == json_tokener_success &&
         json_tokener_get_parse_end(tok) == len && json_object_is_type(o, json_type_object);
    json_object_put(o);
    json_tokener_free(tok);
    return ok;
}

/* Code points of UTF-8 text (continuation bytes do not count); the API
 * hands over valid UTF-8, the store only bounds the length. */
static size_t utf8_len(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

static bool autonomy_valid(const char *a)
{
    return a == NULL || strcmp(a, "observe") == 0 || strcmp(a, "supervised") == 0 ||
           strcmp(a, "autonomous") == 0;
}

static int agent_spec_check(const struct aos_agent_spec *s, char *err, size_t errlen)
{
    if (s->name == NULL || s->name[0] == '\0' || utf8_len(s->name) > AOS_AGENT_NAME_MAX) {
        aos_db_seterr(err, errlen, "agent name must be 1 to %d characters", AOS_AGENT_NAME_MAX);
        return AOS_DB_CONSTRAINT;
    }
    if (s->plugin == NULL || s->plugin[0] == '\0') {
        aos_db_seterr(err, errlen, "agent plugin is empty");
        return AOS_DB_CONSTRAINT;
    }
    if ((s->config != NULL && !aos_store_json_object_valid(s->config)) ||
        (s->approval_policy != NULL && !aos_store_json_object_valid(s->approval_policy))) {
        aos_db_seterr(err, errlen, "agent config and approval policy must be JSON objects");
        return AOS_DB_CONSTRAINT;
    }
    if (!autonomy_valid(s->autonomy)) {
        aos_db_seterr(err, errlen, "autonomy must be observe, supervised or autonomous");
        return AOS_DB_CONSTRAINT;
    }
    if (s->budget_tokens_day < -1 || s->budget_tokens_month < -1 || s->budget_micro_usd_day < -1 ||
        s->budget_micro_usd_month < -1) {
        aos_db_seterr(err, errlen, "agent budgets must be >= 0 (or -1: none)");
        return AOS_DB_CONSTRAINT;
    }
    if (s->step_reserve_tokens < -1 || s->step_reserve_micro_usd < -1) {
        aos_db_seterr(err, errlen, "agent step reserves must be >= 0 (or -1: none)");
        return AOS_DB_CONSTRAINT;
    }
    return AOS_DB_OK;
}

static struct aos_db_param budget_param(int64_t v) { return v >= 0 ? AOS_DB_P_INT(v) : AOS_DB_P_NULL; }

static int64_t budget_cell(const struct aos_db_result *r, size_t row, size_t col)
{
    return aos_db_result_is_null(r, row, col) ? -1 : aos_db_result_int(r, row, col);
}

static int agent_from_row(const struct aos_db_result *r, size_t row, struct aos_agent *a, char *err,
                          size_t errlen)
{
    int rc;

    memset(a, 0, sizeof(*a));
    if ((rc = cell_fixed(r, row, 0, a->id, sizeof(a->id), err, errlen)) != AOS_DB_OK ||
        (rc = cell_fixed(r, row, 1, a->tenant_id, sizeof(a->tenant_id), err, errlen)) != AOS_DB_OK ||
        (rc = cell_dup(r, row, 2, &a->name, err, errlen)) != AOS_DB_OK ||
        (rc = cell_dup(r, row, 3, &a->plugin, err, errlen)) != AOS_DB_OK ||
        (rc = cell_dup(r, row, 4, &a->config, err, errlen)) != AOS_DB_OK ||
        (rc = cell_dup(r, row, 5, &a->autonomy, err, errlen)) != AOS_DB_OK ||
        (rc = cell_dup(r, row, 6, &a->approval_policy, err, errlen)) != AOS_DB_OK ||
        (rc = cell_dup(r, row, 11, &a->created_by, err, errlen)) != AOS_DB_OK) {
        aos_agent_clear(a);
        return rc;
    }
    a->budget_tokens_day = budget_cell(r, row, 7);
    a->budget_tokens_month = budget_cell(r, row, 8);
    a->budget_micro_usd_day = budget_cell(r, row, 9);
    a->budget_micro_usd_month = budget_cell(r, row, 10);
    a->created_at = aos_db_result_int(r, row, 12);
    a->updated_at = aos_db_result_int(r, row, 13);
    a->step_reserve_tokens = budget_cell(r, row, 14);
    a->step_reserve_micro_usd = budget_cell(r, row, 15);
    return AOS_DB_OK;
}

int aos_store_agent_create(struct aos_store_tx *tx, const char *tenant_id, const struct aos_agent_spec *spec,
                           char id_out[AOS_ID_LEN], char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], id[AOS_ID_LEN];
    int rc;

    if (!aos_store_id_norm(tenant_id, tid))
        return not_found(err, errlen, "tenant");
    if ((rc = agent_spec_check(spec, err, errlen)) != AOS_DB_OK)
        return rc;
    aos_store_id_new(id);
    struct aos_db_param p[] = {AOS_DB_P_TEXT(id),
                               AOS_DB_P_TEXT(tid),
                               AOS_DB_P_TEXT(spec->name),
                               AOS_DB_P_TEXT(spec->plugin),
                               AOS_DB_P_TEXT(spec->config != NULL ? spec->config : "{}"),
                               AOS_DB_P_TEXT(spec->autonomy),
                               AOS_DB_P_TEXT(spec->approval_policy != NULL ? spec->approval_policy : "{}"),
                               budget_param(spec->budget_tokens_day),
                               budget_param(spec->budget_tokens_month),
                               budget_param(spec->budget_micro_usd_day),
                               budget_param(spec->budget_micro_usd_month),
                               AOS_DB_P_TEXT(spec->created_by),
                               AOS_DB_P_INT(aos_store_now_ms()),
                               budget_param(spec->step_reserve_tokens),
                               budget_param(spec->step_reserve_micro_usd)};
    rc = aos_store_exec(tx, SQL_AGENT_INSERT, p, NPARAMS(p), NULL, err, errlen);
    if (rc == AOS_DB_OK)
        memcpy(id_out, id, AOS_ID_LEN);
    else if (rc == AOS_DB_CONSTRAINT)
        aos_db_seterr(err, errlen,
                      "an agent with this name exists in the tenant, or the tenant does not exist");
    return rc;
}

static int agent_get(struct aos_store_tx *tx, const char *sql, const char *tid, const char *key,
                     struct aos_agent *out, char *err, size_t errlen)
{
    struct aos_db_result *res = NULL;
    int rc;

    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(key)};
    rc = aos_store_exec(tx, sql, p, NPARAMS(p), &res, err, errlen);
    if (rc == AOS_DB_OK)
        rc = aos_db_result_rows(res) == 1 ? agent_from_row(res, 0, out, err, errlen)
                                          : not_found(err, errlen, "agent");
    aos_db_result_free(res);
    return rc;
}

int aos_store_agent_get(struct aos_store_tx *tx, const char *tenant_id, const char *agent_id,
                        struct aos_agent *out, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], aid[AOS_ID_LEN];

    memset(out, 0, sizeof(*out));
    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(agent_id, aid))
        return not_found(err, errlen, "agent");
    return agent_get(tx, SQL_AGENT_GET, tid, aid, out, err, errlen);
}

int aos_store_agent_get_by_name(struct aos_store_tx *tx, const char *tenant_id, const char *name,
                                struct aos_agent *out, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN];

    memset(out, 0, sizeof(*out));
    if (!aos_store_id_norm(tenant_id, tid) || name == NULL || name[0] == '\0')
        return not_found(err, errlen, "agent");
    return agent_get(tx, SQL_AGENT_GET_NAME, tid, name, out, err, errlen);
}

static int agent_row(const struct aos_db_result *r, size_t row, void *elem, char *err, size_t errlen)
{
    return agent_from_row(r, row, elem, err, errlen);
}

static void agent_list_free(void *list, size_t n) { aos_agents_free(list, n); }

static const struct aos_page_kind agent_page = {
    .sql_first = SQL_AGENT_LIST_FIRST,
    .sql_after = SQL_AGENT_LIST_AFTER,
    .elem_size = sizeof(struct aos_agent),
    .created_at_offset = offsetof(struct aos_agent, created_at),
    .id_offset = offsetof(struct aos_agent, id),
    .from_row = agent_row,
    .free_list = agent_list_free,
};

int aos_store_agent_list(struct aos_store_tx *tx, const char *tenant_id, const char *cursor, size_t limit,
                         struct aos_agent **out, size_t *n, char next_cursor[AOS_CURSOR_LEN], char *err,
                         size_t errlen)
{
    void *list = NULL;
    int rc = aos_page_fetch(tx, &agent_page, tenant_id, cursor, limit, &list, n, next_cursor, err, errlen);
    *out = list;
    return rc;
}

int aos_store_agent_update(struct aos_store_tx *tx, const char *tenant_id, const char *agent_id,
                           const struct aos_agent_spec *spec, char *err, size_t errlen)
{
    char tid[AOS_ID_LEN], aid[AOS_ID_LEN];
    int rc;

    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(agent_id, aid))
        return not_found(err, errlen, "agent");
    if ((rc = agent_spec_check(spec, err, errlen)) != AOS_DB_OK)
        return rc;
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid),
                               AOS_DB_P_TEXT(aid),
                               AOS_DB_P_TEXT(spec->name),
                               AOS_DB_P_TEXT(spec->plugin),
                               AOS_DB_P_TEXT(spec->config != NULL ? spec->config : "{}"),
                               AOS_DB_P_TEXT(spec->autonomy),
                               AOS_DB_P_TEXT(spec->approval_policy != NULL ? spec->approval_policy : "{}"),
                               budget_param(spec->budget_tokens_day),
                               budget_param(spec->budget_tokens_month),
                               budget_param(spec->budget_micro_usd_day),
                               budget_param(spec->budget_micro_usd_month),
                               AOS_DB_P_INT(aos_store_now_ms()),
                               budget_param(spec->step_reserve_tokens),
                               budget_param(spec->step_reserve_micro_usd)};
    rc = exec_one(tx, SQL_AGENT_UPDATE, p, NPARAMS(p), "agent", err, errlen);
    if (rc == AOS_DB_CONSTRAINT)
        aos_db_seterr(err, errlen, "an agent with this name exists in the tenant");
    return rc;
}

int aos_store_agent_delete(struct aos_store_tx *tx, const char *tenant_id, const char *agent_id, char *err,
                           size_t errlen)
{
    char tid[AOS_ID_LEN], aid[AOS_ID_LEN];

    if (!aos_store_id_norm(tenant_id, tid) || !aos_store_id_norm(agent_id, aid))
        return not_found(err, errlen, "agent");
    struct aos_db_param p[] = {AOS_DB_P_TEXT(tid), AOS_DB_P_TEXT(aid), AOS_DB_P_INT(aos_store_now_ms())};
    return exec_one(tx, SQL_AGENT_DELETE, p, NPARAMS(p), "agent", err, errlen);
}
