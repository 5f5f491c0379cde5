#include "config.h"
/*
 * Loading libpq at run time: see libpq_dl.h for why.
 */
#define AOS_LIBPQ_DL_IMPL
#include "store/libpq_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The soname, not "libpq.so": the unversioned link exists only with
 * libpq-dev installed, and the ABI we compiled against is version 5. */
#define LIBPQ_SONAME "libpq.so.5"

struct aos_libpq aos_libpq;

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static bool loaded;
static char load_error[256];

/* Under load_lock.  A failure is not remembered: the store retries its
 * connection with backoff, and installing libpq5 meanwhile must be enough. */
static void load(void)
{
    /* RTLD_LOCAL: libpq's symbols (and its libraries') stay out of the
     * global namespace plugins resolve against.  Never dlclose()d: the
     * table is used until exit. */
    void *lib = dlopen(LIBPQ_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        const char *why = dlerror();
        snprintf(load_error, sizeof load_error,
                 "pgsql: cannot load %s (install the libpq5 package): %s", LIBPQ_SONAME,
                 why != NULL ? why : "unknown error");
        return;
    }
    struct aos_libpq t;
    memset(&t, 0, sizeof t);
#define AOS_LIBPQ_RESOLVE(name)                                                                        \
    do {                                                                                               \
        *(void **)(&t.name) = dlsym(lib, #name);                                                       \
        if (t.name == NULL) {                                                                          \
            snprintf(load_error, sizeof load_error, "pgsql: %s has no %s: libpq is too old", LIBPQ_SONAME, \
                     #name);                                                                           \
            dlclose(lib);                                                                              \
            return;                                                                                    \
        }                                                                                              \
    } while (0);
    AOS_LIBPQ_FUNCTIONS(AOS_LIBPQ_RESOLVE)
#undef AOS_LIBPQ_RESOLVE
    aos_libpq = t;
    loaded = true;
}

int aos_libpq_load(char *err, size_t errlen)
{
    pthread_mutex_lock(&load_lock);
    if (!loaded)
        load();
    bool ok = loaded;
    if (!ok && err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", load_error);
    pthread_mutex_unlock(&load_lock);
    return ok ? 0 : -1;
}
