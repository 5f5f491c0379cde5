#include "config.h"
/*
 * good-auth: a loadable, thread-safe auth backend with a required secret
 * setting.  Password credentials matching `password` are allowed as
 * `role` in `tenant`; other passwords are denied; other credential kinds
 * are ignored.  The identifier "broken" yields ALLOW with an empty
 * principal, which the host must turn into an error.
 */
#include <aos/plugin.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct auth {
    const char *password;
    const char *role;
    const char *tenant;
    const char *trace;
    const struct aos_host *host;
};

static const struct aos_setting auth_settings[] = {
    AOS_SETTING_STRING_FIELD(struct auth, password, AOS_SETTING_REQUIRED | AOS_SETTING_SECRET, NULL, 8, 64,
                             "the one accepted password"),
    AOS_SETTING_STRING_FIELD(struct auth, role, 0u, "user", 1, 31, "role granted"),
    AOS_SETTING_STRING_FIELD(struct auth, tenant, 0u, "6f1c2a4e-9b7d-4c3a-8e2f-1a2b3c4d5e6f", 36, 36,
                             "tenant granted"),
    AOS_SETTING_STRING_FIELD(struct auth, trace, 0u, "", 0, 0, "file to append lifecycle calls to"),
    AOS_SETTINGS_END};

static void trace(const struct auth *a, const char *what)
{
    if (a->trace == NULL || a->trace[0] == '\0')
        return;
    int fd = open(a->trace, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    ssize_t w = write(fd, what, strlen(what));
    (void)w;
    close(fd);
}

static int auth_init(struct aos_ctx *ctx, const struct aos_host *host, void *instance)
{
    (void)ctx;
    struct auth *a = instance;
    a->host = host;
    trace(a, "init good-auth\n");
    return 0;
}

static void auth_fini(struct aos_ctx *ctx, void *instance)
{
    (void)ctx;
    trace(instance, "fini good-auth\n");
}

static int auth_authenticate(struct aos_ctx *ctx, const void *instance, const struct aos_credentials *cred,
                             struct aos_principal *pr)
{
    (void)ctx;
    const struct auth *a = instance;
    if (cred->kind != AOS_CRED_PASSWORD)
        return AOS_AUTH_IGNORE;
    if (cred->identifier != NULL && strcmp(cred->identifier, "broken") == 0)
        return AOS_AUTH_ALLOW;
    size_t plen = strlen(a->password);
    if (cred->secret_len != plen || memcmp(cred->secret, a->password, plen) != 0)
        return AOS_AUTH_DENY;
    snprintf(pr->tenant_id, sizeof pr->tenant_id, "%s", a->tenant);
    snprintf(pr->subject, sizeof pr->subject, "%s",
             cred->identifier != NULL ? cred->identifier : "anonymous");
    snprintf(pr->role, sizeof pr->role, "%s", a->role);
    return AOS_AUTH_ALLOW;
}

static const struct aos_auth_ops auth_ops = {
    .size = sizeof auth_ops,
    .authenticate = auth_authenticate,
};

static const struct aos_plugin auth_plugin = {
    AOS_PLUGIN_HEADER,
    .kind = AOS_PLUGIN_AUTH,
    .name = "good-auth",
    .version = "1.0.0",
    .flags = AOS_PLUGIN_THREAD_SAFE,
    .settings = auth_settings,
    .instance_size = sizeof(struct auth),
    .init = auth_init,
    .fini = auth_fini,
    .ops = &auth_ops,
};

AOS_PLUGIN_EXPORT(auth_plugin)
