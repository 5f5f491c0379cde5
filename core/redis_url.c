#include "config.h"

#include "redis_url.h"

#include <stdlib.h>
#include <string.h>

void aos_redis_target_clear(struct aos_redis_target *t)
{
    free(t->host);
    free(t->path);
    if (t->password != NULL)
        explicit_bzero(t->password, strlen(t->password));
    free(t->password);
    memset(t, 0, sizeof *t);
}

static int parse(const char *url, struct aos_redis_target *t)
{
    const char *p;
    char *end;
    long v;

    if (strncmp(url, "unix://", 7) == 0) {
        if (url[7] != '/')
            return -1;
        t->path = strdup(url + 7);
        return t->path != NULL ? 0 : -1;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return -1;
    p = url + 8;
    const char *at = strchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon != NULL && at - colon > 1 &&
            (t->password = strndup(colon + 1, (size_t)(at - colon - 1))) == NULL)
            return -1;
        p = at + 1;
    }
    size_t hlen = strcspn(p, ":/");
    if (hlen == 0 || (t->host = strndup(p, hlen)) == NULL)
        return -1;
    t->port = 6379;
    p += hlen;
    if (*p == ':') {
        v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v < 1 || v > 65535)
            return -1;
        t->port = (int)v;
        p = end;
    }
    if (*p == '/' && p[1] != '\0') {
        v = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end != '\0' || v < 0 || v > 1000000)
            return -1;
        t->db = (int)v;
    } else if (*p != '\0' && strcmp(p, "/") != 0) {
        return -1;
    }
    return 0;
}

int aos_redis_url_parse(const char *url, struct aos_redis_target *out)
{
    memset(out, 0, sizeof *out);
    if (url == NULL || parse(url, out) != 0) {
        aos_redis_target_clear(out);
        return -1;
    }
    return 0;
}
