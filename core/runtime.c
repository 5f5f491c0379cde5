#include "config.h"

#include "runtime.h"

#include "conf.h"
#include "plugin.h"

#include <pthread.h>
#include <stdlib.h>

/* The lock covers only "read pointer + take reference", so a publisher
 * cannot free the generation between the two. */
static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct aos_runtime *current;
static uint64_t last_generation;

struct aos_runtime *aos_runtime_new(struct aos_conf *conf, struct aos_plugin_set *plugins, struct aos_jwt_key *jwt)
{
    struct aos_runtime *rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        return NULL;
    atomic_init(&rt->refs, 1);
    rt->conf = conf;
    rt->plugins = plugins;
    if (jwt != NULL) {
        rt->jwt = *jwt;
        *jwt = (struct aos_jwt_key){0};
    }
    return rt;
}

void aos_runtime_publish(struct aos_runtime *rt)
{
    pthread_mutex_lock(&current_lock);
    struct aos_runtime *old = current;
    rt->generation = ++last_generation;
    current = rt;
    pthread_mutex_unlock(&current_lock);
    aos_runtime_release(old);
}

struct aos_runtime *aos_runtime_acquire(void)
{
    pthread_mutex_lock(&current_lock);
    struct aos_runtime *rt = current;
    if (rt != NULL)
        atomic_fetch_add(&rt->refs, 1);
    pthread_mutex_unlock(&current_lock);
    return rt;
}

void aos_runtime_release(struct aos_runtime *rt)
{
    if (rt == NULL || atomic_fetch_sub(&rt->refs, 1) != 1)
        return;
    aos_plugin_set_free(rt->plugins);
    aos_conf_free(rt->conf);
    aos_jwt_key_clear(&rt->jwt);
    free(rt);
}

void aos_runtime_shutdown(void)
{
    pthread_mutex_lock(&current_lock);
    struct aos_runtime *old = current;
    current = NULL;
    pthread_mutex_unlock(&current_lock);
    aos_runtime_release(old);
}
