#include "config.h"

#include "store/store.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* aosd runs as its own user (systemd User=aos); a database file made by a
 * root aosctl or `aosd --migrate` would be unwritable for it.  So, as root
 * on SQLite, act as whoever owns the database file or, before it exists,
 * its directory. */
int aos_store_become_owner(const struct aos_conf_store *conf, char *err, size_t errlen)
{
    struct stat st;
    char dir[PATH_MAX];

    if (geteuid() != 0 || strcmp(conf->driver, "sqlite") != 0)
        return 0;
    if (stat(conf->path, &st) != 0) {
        int n = snprintf(dir, sizeof dir, "%s", conf->path);
        if (n < 0 || (size_t)n >= sizeof dir)
            return 0; /* the store will say what is wrong with the path */
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            snprintf(dir, sizeof dir, ".");
        else
            slash[slash == dir ? 1 : 0] = '\0';
        if (stat(dir, &st) != 0)
            return 0;
    }
    if (st.st_uid == 0)
        return 0;
    uid_t uid = st.st_uid;
    gid_t gid = st.st_gid;
    struct passwd *pw = getpwuid(uid);
    int rc;
    if (pw != NULL) {
        gid = pw->pw_gid;
        rc = initgroups(pw->pw_name, gid);
    } else {
        rc = setgroups(0, NULL);
    }
    if (rc != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
        snprintf(err, errlen, "cannot switch to uid %u, the owner of the database %s: %s", (unsigned)uid,
                 conf->path, strerror(errno));
        return -1;
    }
    return 0;
}
