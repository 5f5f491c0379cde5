#include "config.h"
/*
 * auth-local: e-mail + password sign-in against the users in aosd's store,
 * passwords hashed with Argon2id (libargon2, which this plugin links
 * itself).
 *
 *   plugins: { auth-local = { dummy_hash_on_miss = true; }; };
 *
 * authenticate() handles AOS_CRED_PASSWORD only (every other kind is
 * AOS_AUTH_IGNORE).  It asks the host for the user (host->user_lookup,
 * SDK 1.1) in credentials->tenant_id, or in every active tenant when the
 * client named none, and verifies the password with argon2id_verify():
 *   match                           -> ALLOW {tenant, subject = user id, role}
 *   wrong password                  -> DENY
 *   unknown e-mail, no password
 *   hash (another backend's user)   -> DENY
 *   e-mail in several tenants and
 *   no tenant named                 -> DENY (see below)
 *   store failure, corrupt hash     -> ERROR (the API answers 503)
 *
 * Several tenants: one password cannot choose between two accounts, and
 * telling the client "this e-mail exists in several tenants" would confirm
 * to anyone that the address is registered.  So the answer is the same
 * DENY as for a wrong password; the client must name its tenant (the
 * host passes it as credentials->tenant_id) to sign in.  An info line
 * (without the address) lets operators see why such users fail.
 *
 * Timing: with dummy_hash_on_miss (the default) every DENY that found no
 * usable hash still runs one Argon2id verification, against a fixed hash
 * made with the OWASP parameters (m=19456 KiB, t=2, p=1; the password
 * behind it was random and discarded), so response time does not reveal
 * which e-mails exist.  The equalisation is exact only while auth.argon2
 * keeps those defaults.
 *
 * Never logs the password, the hash or the e-mail.  The instance is
 * read-only after init() and libargon2 keeps no shared state: thread-safe.
 */
#include <aos/plugin.h>

#include <argon2.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct local {
    int dummy_hash_on_miss;
    const struct aos_host *host; /* set by init(), not a setting */
};

static const struct aos_setting local_settings[] = {
    AOS_SETTING_BOOL_FIELD(struct local, dummy_hash_on_miss, "true",
                           "verify against a dummy hash when the user is unknown, so timing does "
                           "not reveal which e-mails exist"),
    AOS_SETTINGS_END};

static const char dummy_hash[] =
    "$argon2id$v=19$m=19456,t=2,p=1$jA+TbPJ2NN75t00vihNMLA$WH4DEPERyhv6J2fU51xHUDNs/Yn9RP8zeZXv768uQ/w";

static int local_init(struct aos_ctx *ctx, const struct aos_host *host, void *instance)
{
    struct local *l = instance;

    if (!AOS_HOST_HAS(host, user_lookup)) {
        host->set_error(ctx,
                        "this aosd provides SDK ABI %u.%u without user_lookup(): auth-local needs "
                        "ABI 1.1 or later; upgrade aosd",
                        (unsigned)host->abi_major, (unsigned)host->abi_minor);
        return -1;
    }
    l->host = host;
    return 0;
}

/* The password bytes libargon2 is given: never NULL (it refuses NULL even
 * with length 0). */
static const char *password_bytes(const struct aos_credentials *cred)
{
    return cred->secret != NULL ? cred->secret : "";
}

/* Spends the time of a real verification, so a miss looks like a wrong
 * password from outside. */
static void dummy_verify(const struct local *l, const struct aos_credentials *cred)
{
    if (!l->dummy_hash_on_miss || cred->secret_len > ARGON2_MAX_PWD_LENGTH)
        return;
    (void)argon2id_verify(dummy_hash, password_bytes(cred), cred->secret_len);
}

static int principal_set(char *dst, size_t size, const char *src)
{
    int n = snprintf(dst, size, "%s", src);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

static int local_authenticate(struct aos_ctx *ctx, const void *instance, const struct aos_credentials *cred,
                              struct aos_principal *pr)
{
    const struct local *l = instance;
    const struct aos_host *h = l->host;
    struct aos_user_record rec;
    int result = AOS_AUTH_DENY, a;

    if (cred->kind != AOS_CRED_PASSWORD)
        return AOS_AUTH_IGNORE;
    memset(&rec, 0, sizeof rec);
    rec.size = sizeof rec;
    if (cred->identifier == NULL || cred->identifier[0] == '\0' ||
        (cred->secret == NULL && cred->secret_len > 0)) {
        dummy_verify(l, cred);
        goto out;
    }

    switch (h->user_lookup(ctx, cred->tenant_id, cred->identifier, &rec)) {
    case AOS_LOOKUP_FOUND:
        break;
    case AOS_LOOKUP_AMBIGUOUS:
        h->log(ctx, AOS_LOG_INFO,
               "sign-in denied: the e-mail belongs to users of several tenants and the client named "
               "no tenant");
        dummy_verify(l, cred);
        goto out;
    case AOS_LOOKUP_NOT_FOUND:
        dummy_verify(l, cred);
        goto out;
    default: /* the host said why with set_error() */
        result = AOS_AUTH_ERROR;
        goto out;
    }
    if (rec.password_hash[0] == '\0' || cred->secret_len > ARGON2_MAX_PWD_LENGTH) {
        dummy_verify(l, cred);
        goto out;
    }

    a = argon2id_verify(rec.password_hash, password_bytes(cred), cred->secret_len);
    if (a == ARGON2_VERIFY_MISMATCH)
        goto out;
    if (a != ARGON2_OK) {
        /* A hash that does not decode is corruption, not a wrong password:
         * say so loudly instead of denying a user who typed it right. */
        h->set_error(ctx, "cannot verify the stored password hash of user %s: %s", rec.id,
                     argon2_error_message(a));
        result = AOS_AUTH_ERROR;
        goto out;
    }
    if (principal_set(pr->tenant_id, sizeof pr->tenant_id, rec.tenant_id) < 0 ||
        principal_set(pr->subject, sizeof pr->subject, rec.id) < 0 ||
        principal_set(pr->role, sizeof pr->role, rec.role) < 0) {
        h->set_error(ctx, "user %s: the store returned an id or role that does not fit the principal",
                     rec.id);
        result = AOS_AUTH_ERROR;
        goto out;
    }
    result = AOS_AUTH_ALLOW;
out:
    explicit_bzero(&rec, sizeof rec);
    return result;
}

static const struct aos_auth_ops local_ops = {
    .size = sizeof local_ops,
    .authenticate = local_authenticate,
};

static const struct aos_plugin local_plugin = {
    AOS_PLUGIN_HEADER,
    .kind = AOS_PLUGIN_AUTH,
    .name = "auth-local",
    .version = "1.0.0",
    .description = "e-mail and password sign-in against aosd's users (Argon2id)",
    .flags = AOS_PLUGIN_THREAD_SAFE,
    .settings = local_settings,
    .instance_size = sizeof(struct local),
    .init = local_init,
    .ops = &local_ops,
};

AOS_PLUGIN_EXPORT(local_plugin)
