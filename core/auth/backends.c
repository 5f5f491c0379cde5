#include "config.h"

#include "auth/backends.h"

#include "conf.h"
#include "log.h"
#include "plugin.h"
#include "runtime.h"

#include <stdio.h>
#include <string.h>

int aos_auth_role_rank(const char *role)
{
    if (role == NULL)
        return 0;
    if (strcmp(role, "user") == 0)
        return 1;
    if (strcmp(role, "approver") == 0)
        return 2;
    if (strcmp(role, "admin") == 0)
        return 3;
    return 0;
}

int aos_auth_authenticate(const struct aos_runtime *rt, const struct aos_credentials *credentials,
                          struct aos_principal *principal, char *err, size_t errlen)
{
    err[0] = '\0';
    for (size_t i = 0; i < rt->conf->auth.nbackends; i++) {
        const struct aos_plugin_instance *p = aos_plugin_set_find(rt->plugins, rt->conf->auth.backends[i]);
        if (p == NULL || aos_plugin_instance_kind(p) != AOS_PLUGIN_AUTH)
            continue; /* warned about at load */
        struct aos_principal out;
        memset(&out, 0, sizeof out);
        int r = aos_plugin_auth_authenticate(p, credentials, &out, err, errlen);
        if (r == AOS_AUTH_IGNORE)
            continue;
        if (r == AOS_AUTH_ALLOW) {
            /* A backend must name a tenant and a known role: never trust a
             * half-filled principal. */
            if (out.tenant_id[0] == '\0' || out.subject[0] == '\0' || aos_auth_role_rank(out.role) == 0) {
                snprintf(err, errlen, "auth backend %s allowed without a complete principal",
                         aos_plugin_instance_name(p));
                return AOS_AUTH_ERROR;
            }
            *principal = out;
            return AOS_AUTH_ALLOW;
        }
        if (r == AOS_AUTH_DENY)
            return AOS_AUTH_DENY;
        if (err[0] == '\0')
            snprintf(err, errlen, "auth backend %s failed", aos_plugin_instance_name(p));
        return AOS_AUTH_ERROR;
    }
    return AOS_AUTH_DENY;
}
