#include "config.h"
/*
 * Loading libpq at run time: see libpq_dl.h for why.
 */
#define AOS_LIBPQ_DL_IMPL
#include "store/libpq_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* The soname, not "libpq.so": the unversioned link exists only with
 * libpq-dev installed, and the ABI we compiled against is version 5. */
#define LIBPQ_SONAME "libpq.so.5"

struct aos_libpq aos_libpq;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_status = -1;
static char load_error[256];

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
            return;                                                                                    \
        }                                                                                              \
    } while (0);
    AOS_LIBPQ_FUNCTIONS(AOS_LIBPQ_RESOLVE)
#undef AOS_LIBPQ_RESOLVE
    aos_libpq = t;
    load_status = 0;
}

int aos_libpq_load(char *err, size_t errlen)
{
    (void)pthread_once(&load_once, load);
    if (load_status != 0 && err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", load_error);
    return load_status;
}
