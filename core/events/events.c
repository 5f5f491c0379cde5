#include "config.h"
/*
 * Appending events (events.h): payload redaction, then the store insert
 * (store/events.c takes the PostgreSQL ordering lock).
 */
#include "events/events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "pii/pii.h"
#include "store/events.h"
#include "store/ops.h"

/* Payloads nest little; a deeper one is refused rather than walked. */
#define PAYLOAD_MAX_DEPTH 64
/* What the store hands back was written within PAYLOAD_MAX_DEPTH. */
#define STORED_MAX_DEPTH 128

static const char REDACTED[] = "<REDACTED>";

static struct json_object *redacted_string(const struct aos_pii *pii, struct json_object *s)
{
    const char *text = json_object_get_string(s);
    size_t len = (size_t)json_object_get_string_len(s);
    char *clean = aos_pii_redact_all(pii, text, len);
    struct json_object *out;

    /* Unredactable text (a limit hit) must never be stored as is. */
    if (clean == NULL)
        return json_object_new_string(REDACTED);
    out = json_object_new_string(clean);
    free(clean);
    return out;
}

/* Replaces every string below v in place.  0, or -1 out of memory. */
static int redact_walk(const struct aos_pii *pii, struct json_object *v)
{
    if (json_object_is_type(v, json_type_object)) {
        json_object_object_foreach(v, key, child)
        {
            if (json_object_is_type(child, json_type_string)) {
                struct json_object *r = redacted_string(pii, child);

                /* Replacing an existing key's value inserts nothing: the
                 * iteration stays valid. */
                if (r == NULL || json_object_object_add(v, key, r) != 0)
                    return -1;
            } else if (redact_walk(pii, child) != 0) {
                return -1;
            }
        }
    } else if (json_object_is_type(v, json_type_array)) {
        size_t n = json_object_array_length(v);

        for (size_t i = 0; i < n; i++) {
            struct json_object *child = json_object_array_get_idx(v, i);

            if (json_object_is_type(child, json_type_string)) {
                struct json_object *r = redacted_string(pii, child);

                if (r == NULL || json_object_array_put_idx(v, i, r) != 0)
                    return -1;
            } else if (redact_walk(pii, child) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

char *aos_event_redact_payload(const struct aos_pii *pii, const char *json)
{
    char perr[128];
    struct json_object *obj;
    char *out = NULL;
    size_t len = 0;

    if (json == NULL)
        return NULL;
    obj = aos_json_parse_object(json, strlen(json), PAYLOAD_MAX_DEPTH, perr, sizeof perr);
    if (obj == NULL)
        return NULL;
    if (pii == NULL || redact_walk(pii, obj) == 0) {
        const char *text = aos_json_text(obj, &len);

        out = text != NULL ? strndup(text, len) : NULL;
    }
    json_object_put(obj);
    return out;
}

struct json_object *aos_event_to_json(const struct aos_event *e)
{
    char perr[128];
    struct json_object *o = json_object_new_object();
    struct json_object *payload;

    if (o == NULL)
        return NULL;
    payload = aos_json_parse_object(e->payload != NULL ? e->payload : "{}",
                                    e->payload != NULL ? strlen(e->payload) : 2, STORED_MAX_DEPTH, perr,
                                    sizeof perr);
    if (payload == NULL) {
        char id[24];

        snprintf(id, sizeof id, "%lld", (long long)e->id);
        aos_err("stored event payload is not a JSON object", "event", id, "error", perr, NULL);
        payload = json_object_new_object();
    }
    if (json_object_object_add(o, "id", json_object_new_int64(e->id)) != 0 ||
        json_object_object_add(o, "type", json_object_new_string(e->type)) != 0 ||
        json_object_object_add(o, "run_id",
                               e->run_id[0] != '\0' ? json_object_new_string(e->run_id) : NULL) != 0 ||
        json_object_object_add(o, "payload", payload) != 0 ||
        json_object_object_add(o, "created_at", json_object_new_int64(e->created_at)) != 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

int aos_event_append(struct aos_store_tx *tx, const struct aos_pii *pii, const char *tenant_id,
                     const char *type, const char *run_id, const char *payload_json, int64_t *id_out,
                     char *err, size_t errlen)
{
    char *payload;
    int rc;

    if (id_out != NULL)
        *id_out = 0;
    payload = aos_event_redact_payload(pii, payload_json != NULL ? payload_json : "{}");
    if (payload == NULL) {
        aos_db_seterr(err, errlen, "event payload must be a JSON object (nested at most %d deep)",
                      PAYLOAD_MAX_DEPTH - 1);
        return AOS_DB_CONSTRAINT;
    }
    rc =
        aos_store_event_insert(tx, tenant_id, type, run_id, payload, aos_store_now_ms(), id_out, err, errlen);
    free(payload);
    return rc;
}
