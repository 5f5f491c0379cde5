/*
 * bench/evhttp_peer.c: the "bare evhttp" peer of bench/http.sh.
 *
 *   evhttp_peer PORT              every request -> 200 and the 60-byte JSON
 *   evhttp_peer PORT KEYFILE      the same, but every path except /healthz
 *                                 first verifies "Authorization: Bearer <JWT>"
 *                                 (HS256, libjwt, exp checked) -> 401 if bad
 *
 * One thread, one event_base, libevent's evhttp and nothing else: the floor
 * that aosd's HTTP core (also evhttp) is compared with.  KEYFILE is aosd's
 * auth.jwt_secret_file, so the peer verifies the very token aosd issued;
 * like aosd it drops one trailing newline from the file.
 *
 * Built by bench/http.sh with cc directly, not by the autotools build:
 * hence no config.h (it is no part of aosd).  SIGTERM/SIGINT end the loop.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jwt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The same 60 bytes in every peer (nginx.conf, fastify_peer.js). */
static const char body[] = "{\"status\":\"ok\",\"service\":\"bench-peer\",\"detail\":\"0123456789\"}";

struct peer {
    unsigned char key[1024];
    size_t keylen; /* 0 = no JWT check */
};

static int verify_bearer(const struct peer *p, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (h == NULL || strncmp(h, "Bearer ", 7) != 0)
        return -1;
    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, h + 7, p->key, (int)p->keylen) != 0 || jwt == NULL)
        return -1;
    int rc = 0;
    /* jwt_decode checks the signature only: alg and exp are ours to check. */
    if (jwt_get_alg(jwt) != JWT_ALG_HS256)
        rc = -1;
    long exp = jwt_get_grant_int(jwt, "exp");
    if (rc == 0 && (exp <= 0 || (time_t)exp <= time(NULL)))
        rc = -1;
    if (rc == 0 && jwt_get_grant(jwt, "sub") == NULL)
        rc = -1;
    jwt_free(jwt);
    return rc;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    const struct peer *p = arg;
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *uri = evhttp_request_get_uri(req);
    if (p->keylen > 0 && strcmp(uri, "/healthz") != 0 && verify_bearer(p, req) != 0) {
        evhttp_add_header(out, "WWW-Authenticate", "Bearer");
        evhttp_send_reply(req, 401, "Unauthorized", NULL);
        return;
    }
    struct evbuffer *buf = evhttp_request_get_output_buffer(req);
    evhttp_add_header(out, "Content-Type", "application/json");
    evbuffer_add_reference(buf, body, sizeof body - 1, NULL, NULL);
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

static int load_key(struct peer *p, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "evhttp_peer: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = fread(p->key, 1, sizeof p->key, f);
    fclose(f);
    if (n > 0 && p->key[n - 1] == '\n')
        n--;
    if (n == 0 || n == sizeof p->key) {
        fprintf(stderr, "evhttp_peer: %s: empty or too large\n", path);
        return -1;
    }
    p->keylen = n;
    return 0;
}

int main(int argc, char **argv)
{
    static struct peer peer;
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: evhttp_peer PORT [JWT_KEY_FILE]\n");
        return 2;
    }
    char *end = NULL;
    long port = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "evhttp_peer: bad port %s\n", argv[1]);
        return 2;
    }
    if (argc == 3 && load_key(&peer, argv[2]) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    int rc = 1;
    struct event_base *base = event_base_new();
    struct evhttp *http = base != NULL ? evhttp_new(base) : NULL;
    struct event *term = NULL, *intr = NULL;
    if (http == NULL)
        goto out;
    evhttp_set_gencb(http, on_request, &peer);
    if (evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)port) != 0) {
        fprintf(stderr, "evhttp_peer: cannot bind 127.0.0.1:%ld\n", port);
        goto out;
    }
    term = evsignal_new(base, SIGTERM, on_signal, base);
    intr = evsignal_new(base, SIGINT, on_signal, base);
    if (term == NULL || intr == NULL || event_add(term, NULL) != 0 || event_add(intr, NULL) != 0)
        goto out;
    rc = event_base_dispatch(base) < 0 ? 1 : 0;
out:
    if (term != NULL)
        event_free(term);
    if (intr != NULL)
        event_free(intr);
    if (http != NULL)
        evhttp_free(http);
    if (base != NULL)
        event_base_free(base);
    return rc;
}
