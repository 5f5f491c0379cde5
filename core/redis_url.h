/*
 * The Redis address of redis.url, parsed once for every user (the rate
 * limiter, the event hub):
 *   redis://[[user]:password@]host[:port][/db]   |   unix:///path
 */
#ifndef AOS_REDIS_URL_H
#define AOS_REDIS_URL_H

struct aos_redis_target {
    char *host;     /* TCP host, or NULL for a unix socket */
    int port;       /* 6379 unless given */
    char *path;     /* unix socket path, or NULL */
    char *password; /* NULL when none */
    int db;         /* 0 unless given */
};

/* Fills *out (zeroed first; malloc'd strings).  0, or -1 for a malformed
 * URL or out of memory (then *out holds nothing). */
int aos_redis_url_parse(const char *url, struct aos_redis_target *out);
/* Frees the strings, wiping the password. */
void aos_redis_target_clear(struct aos_redis_target *t);

#endif
