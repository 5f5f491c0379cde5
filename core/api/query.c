#include "config.h"

#include "api/api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int aos_api_query_get(const char *q, const char *name, char *out, size_t size)
{
    size_t nlen = strlen(name);
    int found = 0;

    while (q != NULL && *q != '\0') {
        const char *end = strchr(q, '&');
        size_t len = end != NULL ? (size_t)(end - q) : strlen(q);

        if (len > nlen && strncmp(q, name, nlen) == 0 && q[nlen] == '=') {
            size_t vlen = len - nlen - 1;

            /* A repeated parameter is ambiguous: refuse it. */
            if (found || vlen >= size)
                return -1;
            memcpy(out, q + nlen + 1, vlen);
            out[vlen] = '\0';
            found = 1;
        }
        q = end != NULL ? end + 1 : NULL;
    }
    return found;
}

bool aos_api_parse_limit(const char *s, size_t max, size_t *out)
{
    char *end;
    long v;

    if (s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || (unsigned long)v > max)
        return false;
    *out = (size_t)v;
    return true;
}
