/*
 * bench/sse_fanout.c: the SSE fan-out load client of bench/sse.sh.
 *
 *   sse_fanout --port P --token JWT --subs N [options]
 *
 * Opens N event streams (GET /api/v1/events/stream with the token in the
 * Authorization header) as non-blocking sockets on one epoll loop, at most
 * --concurrency handshakes at a time.  Once all are open it publishes
 * --rate events per second for --warmup + --duration seconds through the
 * AOS_TESTING route POST /api/v1/testing/events (a thread of its own, one
 * keep-alive connection, one event per request), each carrying its
 * sequence number and the CLOCK_MONOTONIC microsecond at which it was sent.
 * Every stream parses its frames and checks, per connection, that event
 * ids only grow (a repeat is a duplicate) and that sequence numbers follow
 * each other (a hole is a gap).
 *
 * Delivery latency = the time the frame was read - the time the publisher
 * sent the request that appended it: the commit, the hub's read and the
 * fan-out to every stream.  Only events sent after the warm-up count.
 *
 * With --server-pid it reads the server's VmRSS/VmHWM (/proc/PID/status)
 * before the first connect, once every stream is open (after a settle
 * second) and after the run, and its CPU time (/proc/PID/stat) over the
 * measured window.
 *
 * Output: one line of key=value pairs (sse.sh turns it into a table).
 * Exit status 0 when every stream opened and got every event exactly once
 * and in order, 1 otherwise, 2 for usage errors.
 *
 * Built by bench/sse.sh with cc directly, not by the autotools build:
 * hence no config.h (it is no part of aosd).
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF (256 * 1024)
#define CARRY_MAX 16384 /* longest partial line kept between reads */
#define HEAD_MAX 4096

enum cstate { C_IDLE, C_CONNECTING, C_HEAD, C_STREAM, C_CLOSED };

struct conn {
    int fd;
    uint8_t state;
    bool f_data; /* the frame being read has a data: line with our seq */
    uint16_t carry_len;
    char *carry; /* partial line (or response head) between reads */
    int64_t f_id;
    int64_t f_seq;
    int64_t f_t;
    int64_t last_id;
    int64_t last_seq;
    uint32_t received;
    uint32_t gaps;
    uint32_t dups;
    uint32_t heartbeats;
};

struct opts {
    const char *host;
    int port;
    const char *token;
    const char *path;
    long subs;
    long concurrency;
    double rate;
    double duration;
    double warmup;
    double settle;
    double drain;
    long pad;
    long server_pid;
    bool trace;
};

struct samples {
    uint32_t *v;
    size_t n;
    size_t cap;
};

struct publisher {
    const struct opts *o;
    struct sockaddr_in addr;
    int64_t start_us;   /* first event */
    int64_t measure_us; /* events sent from here on count */
    int64_t end_us;     /* no event after this */
    atomic_long published;
    atomic_long failed;
    atomic_bool done;
    long nseq;
    int64_t *rtt; /* per seq: the request's round trip, us */
    char err[256];
};

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_until_us(int64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000), (long)(t % 1000000) * 1000};

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* ------------------------------------------------------------ /proc */

struct proc_mem {
    long rss_kib;
    long hwm_kib;
};

static int read_mem(long pid, struct proc_mem *m)
{
    char path[64], line[256];
    FILE *f;

    m->rss_kib = m->hwm_kib = -1;
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            m->rss_kib = strtol(line + 6, NULL, 10);
        else if (strncmp(line, "VmHWM:", 6) == 0)
            m->hwm_kib = strtol(line + 6, NULL, 10);
    }
    fclose(f);
    return m->rss_kib >= 0 ? 0 : -1;
}

/* utime + stime of the process, in clock ticks (-1 if unknown). */
static long long read_cpu_ticks(long pid)
{
    char path[64], buf[2048];
    FILE *f;
    size_t n;
    unsigned long long ut = 0, st = 0;

    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces: fields count from its ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* Busy ticks of the whole machine (every CPU), from /proc/stat. */
static long long read_machine_busy(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int n;

    if (f == NULL)
        return -1;
    n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return -1;
    /* user nice system idle iowait irq softirq steal: all but idle, iowait */
    return (long long)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
}

/* ------------------------------------------------------------ publisher */

static int http_connect(const struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)a, sizeof *a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads one response (Content-Length framed).  The status, or -1. */
static int read_response(int fd, char *buf, size_t size)
{
    size_t len = 0;
    char *end = NULL;
    long clen = -1;

    while (end == NULL) {
        ssize_t r;

        if (len + 1 >= size)
            return -1;
        r = recv(fd, buf + len, size - 1 - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    char *cl = strcasestr(buf, "\r\ncontent-length:");
    if (cl != NULL && cl < end)
        clen = strtol(cl + 17, NULL, 10);
    size_t have = len - (size_t)(end + 4 - buf);
    while (clen > 0 && have < (size_t)clen) {
        char sink[4096];
        ssize_t r = recv(fd, sink, sizeof sink, 0);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
    return status;
}

static void *publisher_main(void *arg)
{
    struct publisher *p = arg;
    const struct opts *o = p->o;
    double interval = 1e6 / o->rate;
    char *pad = malloc((size_t)o->pad + 1);
    char body[8192], req[12288], resp[16384];
    int fd = -1;

    if (pad == NULL) {
        snprintf(p->err, sizeof p->err, "out of memory");
        goto out;
    }
    memset(pad, 'x', (size_t)o->pad);
    pad[o->pad] = '\0';
    for (long seq = 0;; seq++) {
        int64_t due = p->start_us + (int64_t)((double)seq * interval);

        if (due > p->end_us)
            break;
        sleep_until_us(due);
        for (int attempt = 0; attempt < 2; attempt++) {
            if (fd < 0 && (fd = http_connect(&p->addr)) < 0)
                continue;
            int64_t t = now_us();
            int bl =
                snprintf(body, sizeof body,
                         "{\"events\":[{\"type\":\"bench.tick\",\"payload\":{\"seq\":%ld,\"t_us\":%" PRId64
                         ",\"pad\":\"%s\"}}]}",
                         seq, t, pad);
            int rl = snprintf(req, sizeof req,
                              "POST /api/v1/testing/events HTTP/1.1\r\nHost: bench\r\n"
                              "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                              "Content-Length: %d\r\n\r\n%s",
                              o->token, bl, body);
            if (bl < 0 || (size_t)bl >= sizeof body || rl < 0 || (size_t)rl >= sizeof req) {
                snprintf(p->err, sizeof p->err, "request too long (pad or token)");
                goto out;
            }
            int status = -1;
            if (write_all(fd, req, (size_t)rl) == 0)
                status = read_response(fd, resp, sizeof resp);
            if (status == 201) {
                if (seq < p->nseq)
                    p->rtt[seq] = now_us() - t;
                atomic_fetch_add(&p->published, 1);
                break;
            }
            /* A closed keep-alive connection gets one more try; an answer
             * that is not 201 is a failure (the seq is then a gap). */
            close(fd);
            fd = -1;
            if (status > 0 || attempt == 1) {
                atomic_fetch_add(&p->failed, 1);
                if (p->err[0] == '\0')
                    snprintf(p->err, sizeof p->err, "publish answered %d", status);
                break;
            }
        }
    }
out:
    if (fd >= 0)
        close(fd);
    free(pad);
    atomic_store(&p->done, true);
    return NULL;
}

/* ------------------------------------------------------------ streams */

struct client {
    const struct opts *o;
    struct sockaddr_in addr;
    int ep;
    struct conn *conns;
    long next;     /* the next connection to open */
    long inflight; /* connecting or waiting for the response head */
    long open;     /* streaming */
    long closed;   /* closed by the server or failed */
    long refused;  /* answered something else than 200 */
    char *rbuf;
    char req[8192];
    size_t req_len;
    struct samples lat;
    int64_t measure_us; /* latency samples: events sent from here on */
    uint64_t other_frames;
    /* per sequence number: when it was sent and first/last read */
    long nseq;
    int64_t *seq_sent;
    int64_t *seq_first;
    int64_t *seq_last;
    char first_err[160];
};

static void note_err(struct client *c, const char *what, int err)
{
    /* Truncating the message is fine: it is only shown. */
    if (c->first_err[0] == '\0' &&
        snprintf(c->first_err, sizeof c->first_err, "%.80s: %.60s", what, err ? strerror(err) : "failed") < 0)
        c->first_err[0] = '?';
}

static void conn_close(struct client *c, struct conn *k)
{
    if (k->fd >= 0) {
        epoll_ctl(c->ep, EPOLL_CTL_DEL, k->fd, NULL);
        close(k->fd);
    }
    if (k->state == C_CONNECTING || k->state == C_HEAD)
        c->inflight--;
    else if (k->state == C_STREAM)
        c->open--;
    k->fd = -1;
    k->state = C_CLOSED;
    free(k->carry);
    k->carry = NULL;
    k->carry_len = 0;
    c->closed++;
}

static int conn_start(struct client *c, struct conn *k)
{
    struct epoll_event ev;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    k->last_id = 0;
    k->last_seq = -1;
    if (fd < 0) {
        note_err(c, "socket", errno);
        k->state = C_CLOSED;
        c->closed++;
        return -1;
    }
    k->fd = fd;
    k->state = C_CONNECTING;
    c->inflight++;
    if (connect(fd, (const struct sockaddr *)&c->addr, sizeof c->addr) != 0 && errno != EINPROGRESS) {
        note_err(c, "connect", errno);
        conn_close(c, k);
        return -1;
    }
    ev.events = EPOLLOUT;
    ev.data.ptr = k;
    if (epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        note_err(c, "epoll_ctl", errno);
        conn_close(c, k);
        return -1;
    }
    return 0;
}

static void samples_add(struct samples *s, uint32_t v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1 << 20;
        uint32_t *nv = realloc(s->v, cap * sizeof *nv);

        if (nv == NULL)
            return; /* sampled less, not wrong */
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = v;
}

static int64_t num_after(const char *line, size_t len, const char *key)
{
    const char *p = memmem(line, len, key, strlen(key));

    if (p == NULL)
        return -1;
    return strtoll(p + strlen(key), NULL, 10);
}

/* One complete line of the stream (without its '\n'). */
static void stream_line(struct client *c, struct conn *k, char *line, size_t len, int64_t t)
{
    if (len == 0) { /* end of a frame */
        if (!k->f_data)
            return;
        k->f_data = false;
        if (k->f_id <= k->last_id)
            k->dups++;
        else
            k->last_id = k->f_id;
        if (k->f_seq < 0) {
            c->other_frames++;
            return;
        }
        if (k->last_seq >= 0 && k->f_seq != k->last_seq + 1) {
            if (k->f_seq <= k->last_seq)
                k->dups++;
            else
                k->gaps += (uint32_t)(k->f_seq - k->last_seq - 1);
        }
        if (k->f_seq > k->last_seq)
            k->last_seq = k->f_seq;
        k->received++;
        if (k->f_seq < c->nseq) {
            c->seq_sent[k->f_seq] = k->f_t;
            if (c->seq_first[k->f_seq] == 0 || t < c->seq_first[k->f_seq])
                c->seq_first[k->f_seq] = t;
            if (t > c->seq_last[k->f_seq])
                c->seq_last[k->f_seq] = t;
        }
        if (k->f_t >= c->measure_us && t >= k->f_t)
            samples_add(&c->lat, (uint32_t)(t - k->f_t > UINT32_MAX ? UINT32_MAX : t - k->f_t));
        return;
    }
    if (line[0] == ':') {
        k->heartbeats++;
        return;
    }
    if (len > 4 && memcmp(line, "id: ", 4) == 0) {
        k->f_id = strtoll(line + 4, NULL, 10);
        return;
    }
    if (len > 6 && memcmp(line, "data: ", 6) == 0) {
        char save = line[len];

        line[len] = '\0'; /* strtoll stops there at the latest */
        k->f_data = true;
        k->f_seq = num_after(line, len, "\"seq\":");
        k->f_t = num_after(line, len, "\"t_us\":");
        line[len] = save;
    }
}

/* Keeps line bytes for the next read.  -1 if too long. */
static int carry_set(struct conn *k, const char *p, size_t n)
{
    if (n > CARRY_MAX)
        return -1;
    if (n == 0) {
        k->carry_len = 0;
        return 0;
    }
    if (k->carry == NULL && (k->carry = malloc(CARRY_MAX)) == NULL)
        return -1;
    memmove(k->carry, p, n);
    k->carry_len = (uint16_t)n;
    return 0;
}

/* Parses buf[0..n): complete lines are handled, the rest is carried. */
static int stream_data(struct client *c, struct conn *k, char *buf, size_t n, int64_t t)
{
    size_t start = 0;

    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\n')
            continue;
        stream_line(c, k, buf + start, i - start, t);
        start = i + 1;
    }
    return carry_set(k, buf + start, n - start);
}

static void conn_readable(struct client *c, struct conn *k)
{
    /* The carry goes in front of the new bytes: lines are then contiguous. */
    size_t have = k->carry_len;
    ssize_t r;

    if (have > 0)
        memcpy(c->rbuf, k->carry, have);
    r = recv(k->fd, c->rbuf + have, READ_BUF - have - 1, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        if (k->state == C_HEAD)
            note_err(c, "connection closed before the response head", r < 0 ? errno : 0);
        conn_close(c, k);
        return;
    }
    int64_t t = now_us();
    size_t n = have + (size_t)r;
    char *buf = c->rbuf;

    buf[n] = '\0';
    if (k->state == C_HEAD) {
        char *end = strstr(buf, "\r\n\r\n");
        int status = 0;

        if (end == NULL) {
            if (n > HEAD_MAX || carry_set(k, buf, n) != 0) {
                note_err(c, "response head too long", 0);
                conn_close(c, k);
            }
            return;
        }
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
            if (c->refused++ == 0) {
                char msg[40];

                snprintf(msg, sizeof msg, "stream answered %d", status);
                note_err(c, msg, 0);
            }
            conn_close(c, k);
            return;
        }
        c->inflight--;
        c->open++;
        k->state = C_STREAM;
        size_t off = (size_t)(end + 4 - buf);
        buf += off;
        n -= off;
    }
    if (stream_data(c, k, buf, n, t) != 0) {
        note_err(c, "a line longer than the carry buffer", 0);
        conn_close(c, k);
    }
}

static void conn_writable(struct client *c, struct conn *k)
{
    int err = 0;
    socklen_t el = sizeof err;
    struct epoll_event ev;

    if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
        note_err(c, "connect", err);
        conn_close(c, k);
        return;
    }
    /* The request is small: one send on a fresh socket takes it whole. */
    if (send(k->fd, c->req, c->req_len, MSG_NOSIGNAL) != (ssize_t)c->req_len) {
        note_err(c, "send", errno);
        conn_close(c, k);
        return;
    }
    k->state = C_HEAD;
    ev.events = EPOLLIN;
    ev.data.ptr = k;
    if (epoll_ctl(c->ep, EPOLL_CTL_MOD, k->fd, &ev) != 0) {
        note_err(c, "epoll_ctl", errno);
        conn_close(c, k);
    }
}

static void open_more(struct client *c)
{
    while (c->next < c->o->subs && c->inflight < c->o->concurrency)
        conn_start(c, &c->conns[c->next++]);
}

/* Runs the loop until `until` (CLOCK_MONOTONIC us) or, when stop_when_open,
 * until every stream has been opened or has failed. */
static void run_loop(struct client *c, int64_t until, bool stop_when_open)
{
    struct epoll_event evs[1024];

    for (;;) {
        int64_t now = now_us();

        if (now >= until)
            return;
        if (stop_when_open && c->next == c->o->subs && c->inflight == 0)
            return;
        int left_ms = (int)((until - now + 999) / 1000);
        int n = epoll_wait(c->ep, evs, 1024, left_ms > 100 ? 100 : left_ms);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            note_err(c, "epoll_wait", errno);
            return;
        }
        for (int i = 0; i < n; i++) {
            struct conn *k = evs[i].data.ptr;

            if (k->state == C_CONNECTING)
                conn_writable(c, k);
            else if (k->state == C_HEAD || k->state == C_STREAM)
                conn_readable(c, k);
        }
        if (stop_when_open)
            open_more(c);
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static double pct_ms(const struct samples *s, double q)
{
    if (s->n == 0)
        return -1;
    size_t i = (size_t)(q * (double)(s->n - 1) + 0.5);

    return s->v[i] / 1000.0;
}

static void raise_nofile(long want)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur >= (rlim_t)want)
        return;
    rlim_t old_max = rl.rlim_max;
    rl.rlim_cur = (rlim_t)want;
    if (rl.rlim_max < (rlim_t)want)
        rl.rlim_max = (rlim_t)want; /* root may raise the hard limit */
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        rl.rlim_cur = old_max;
        rl.rlim_max = old_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        fprintf(stderr, "sse_fanout: cannot raise RLIMIT_NOFILE to %ld (hard limit %llu)\n", want,
                (unsigned long long)old_max);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sse_fanout --port P --token JWT --subs N [--host 127.0.0.1]\n"
               "         [--path /api/v1/events/stream] [--rate 10] [--warmup 3] [--duration 20]\n"
               "         [--settle 1] [--drain 2] [--concurrency 256] [--pad 100] [--server-pid PID]\n"
               "         [--trace]   (per event: first and last delivery, on stderr)\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"token", required_argument, NULL, 't'},
        {"path", required_argument, NULL, 'P'},
        {"subs", required_argument, NULL, 'n'},
        {"concurrency", required_argument, NULL, 'c'},
        {"rate", required_argument, NULL, 'r'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"settle", required_argument, NULL, 's'},
        {"drain", required_argument, NULL, 'D'},
        {"pad", required_argument, NULL, 'x'},
        {"server-pid", required_argument, NULL, 'S'},
        {"trace", no_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;

    *o = (struct opts){.host = "127.0.0.1",
                       .path = "/api/v1/events/stream",
                       .concurrency = 256,
                       .rate = 10,
                       .duration = 20,
                       .warmup = 3,
                       .settle = 1,
                       .drain = 2,
                       .pad = 100};
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'H':
            o->host = optarg;
            break;
        case 'p':
            o->port = atoi(optarg);
            break;
        case 't':
            o->token = optarg;
            break;
        case 'P':
            o->path = optarg;
            break;
        case 'n':
            o->subs = atol(optarg);
            break;
        case 'c':
            o->concurrency = atol(optarg);
            break;
        case 'r':
            o->rate = atof(optarg);
            break;
        case 'd':
            o->duration = atof(optarg);
            break;
        case 'w':
            o->warmup = atof(optarg);
            break;
        case 's':
            o->settle = atof(optarg);
            break;
        case 'D':
            o->drain = atof(optarg);
            break;
        case 'x':
            o->pad = atol(optarg);
            break;
        case 'S':
            o->server_pid = atol(optarg);
            break;
        case 'T':
            o->trace = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (optind != argc || o->port <= 0 || o->port > 65535 || o->token == NULL || o->subs <= 0 ||
        o->concurrency <= 0 || o->rate <= 0 || o->rate > 10000 || o->duration <= 0 || o->warmup < 0 ||
        o->settle < 0 || o->drain < 0 || o->pad < 0 || o->pad > 4000)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct client c = {0};
    struct publisher pub = {0};
    struct proc_mem m0, m1, m2;
    pthread_t th;
    int rc = 1;

    if (parse_opts(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    raise_nofile(o.subs + 64);
    c.o = &o;
    c.addr.sin_family = AF_INET;
    c.addr.sin_port = htons((uint16_t)o.port);
    if (inet_pton(AF_INET, o.host, &c.addr.sin_addr) != 1) {
        fprintf(stderr, "sse_fanout: --host must be an IPv4 address\n");
        return 2;
    }
    int rl = snprintf(c.req, sizeof c.req,
                      "GET %s HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n"
                      "Authorization: Bearer %s\r\n\r\n",
                      o.path, o.token);
    if (rl < 0 || (size_t)rl >= sizeof c.req) {
        fprintf(stderr, "sse_fanout: token or path too long\n");
        return 2;
    }
    c.req_len = (size_t)rl;
    c.conns = calloc((size_t)o.subs, sizeof *c.conns);
    c.rbuf = malloc(READ_BUF);
    c.ep = epoll_create1(EPOLL_CLOEXEC);
    if (c.conns == NULL || c.rbuf == NULL || c.ep < 0) {
        fprintf(stderr, "sse_fanout: out of memory\n");
        return 1;
    }
    for (long i = 0; i < o.subs; i++)
        c.conns[i].fd = -1;
    c.measure_us = INT64_MAX;
    c.nseq = (long)(o.rate * (o.warmup + o.duration + 1)) + 16;
    c.seq_sent = calloc((size_t)c.nseq, sizeof *c.seq_sent);
    c.seq_first = calloc((size_t)c.nseq, sizeof *c.seq_first);
    c.seq_last = calloc((size_t)c.nseq, sizeof *c.seq_last);
    if (c.seq_sent == NULL || c.seq_first == NULL || c.seq_last == NULL) {
        fprintf(stderr, "sse_fanout: out of memory\n");
        return 1;
    }

    read_mem(o.server_pid, &m0);
    int64_t t0 = now_us();
    open_more(&c);
    run_loop(&c, t0 + 120 * 1000000LL, true);
    double connect_s = (double)(now_us() - t0) / 1e6;
    run_loop(&c, now_us() + (int64_t)(o.settle * 1e6), false);
    read_mem(o.server_pid, &m1);
    long opened = c.open;

    /* Publish; the first events (warm-up) are delivered but not timed. */
    pub.o = &o;
    pub.nseq = c.nseq;
    pub.rtt = calloc((size_t)c.nseq, sizeof *pub.rtt);
    if (pub.rtt == NULL) {
        fprintf(stderr, "sse_fanout: out of memory\n");
        return 1;
    }
    pub.addr = c.addr;
    pub.start_us = now_us() + 100000;
    pub.measure_us = pub.start_us + (int64_t)(o.warmup * 1e6);
    pub.end_us = pub.measure_us + (int64_t)(o.duration * 1e6);
    c.measure_us = pub.measure_us;
    if (pthread_create(&th, NULL, publisher_main, &pub) != 0) {
        fprintf(stderr, "sse_fanout: cannot start the publisher\n");
        return 1;
    }
    run_loop(&c, pub.measure_us, false);
    long long cpu0 = read_cpu_ticks(o.server_pid), me0 = read_cpu_ticks(getpid()), all0 = read_machine_busy();
    int64_t w0 = now_us();
    run_loop(&c, pub.end_us, false);
    long long cpu1 = read_cpu_ticks(o.server_pid), me1 = read_cpu_ticks(getpid()), all1 = read_machine_busy();
    int64_t w1 = now_us();
    run_loop(&c, pub.end_us + (int64_t)(o.drain * 1e6), false);
    pthread_join(th, NULL);
    read_mem(o.server_pid, &m2);

    /* Every stream open at the start should have every published event. */
    long published = atomic_load(&pub.published);
    uint64_t received = 0, gaps = 0, dups = 0, missing = 0, hb = 0;
    for (long i = 0; i < o.subs; i++) {
        struct conn *k = &c.conns[i];

        received += k->received;
        gaps += k->gaps;
        dups += k->dups;
        hb += k->heartbeats;
        if (k->received < (uint64_t)published)
            missing += (uint64_t)published - k->received;
    }
    qsort(c.lat.v, c.lat.n, sizeof *c.lat.v, cmp_u32);
    double sum = 0;
    for (size_t i = 0; i < c.lat.n; i++)
        sum += c.lat.v[i];
    /* Per event: the first delivery (publish, commit, hub read, first
     * write) and the spread from the first to the last subscriber. */
    struct samples first = {0}, spread = {0}, rtt = {0};
    for (long q = 0; q < c.nseq; q++) {
        if (c.seq_first[q] == 0 || c.seq_sent[q] < c.measure_us)
            continue;
        samples_add(&first, (uint32_t)(c.seq_first[q] - c.seq_sent[q]));
        samples_add(&spread, (uint32_t)(c.seq_last[q] - c.seq_first[q]));
        samples_add(&rtt, (uint32_t)pub.rtt[q]);
        if (o.trace)
            fprintf(stderr, "seq %ld first %.1f ms last %.1f ms publish %.1f ms\n", q,
                    (c.seq_first[q] - c.seq_sent[q]) / 1e3, (c.seq_last[q] - c.seq_sent[q]) / 1e3,
                    pub.rtt[q] / 1e3);
    }
    qsort(first.v, first.n, sizeof *first.v, cmp_u32);
    qsort(spread.v, spread.n, sizeof *spread.v, cmp_u32);
    qsort(rtt.v, rtt.n, sizeof *rtt.v, cmp_u32);
    long ticks = sysconf(_SC_CLK_TCK);
    double cpu_pct = cpu0 >= 0 && cpu1 >= 0 && ticks > 0
                         ? 100.0 * (double)(cpu1 - cpu0) / (double)ticks / ((double)(w1 - w0) / 1e6)
                         : -1;
    double secs = (double)(w1 - w0) / 1e6;
    double client_pct =
        me0 >= 0 && me1 >= 0 && ticks > 0 ? 100.0 * (double)(me1 - me0) / (double)ticks / secs : -1;
    /* What else ran on the machine meanwhile (kernel softirq work charged
     * to no process included): figures taken next to other work are noise. */
    double foreign_pct = all0 >= 0 && all1 >= 0 && cpu_pct >= 0 && client_pct >= 0 && ticks > 0
                             ? 100.0 * (double)(all1 - all0) / (double)ticks / secs - cpu_pct - client_pct
                             : -1;
    long rss_conn = m0.rss_kib >= 0 && m1.rss_kib >= 0 ? (m1.rss_kib - m0.rss_kib) * 1024 / o.subs : -1;
    long rss_run = m0.rss_kib >= 0 && m2.rss_kib >= 0 ? (m2.rss_kib - m0.rss_kib) * 1024 / o.subs : -1;

    printf(
        "subs=%ld opened=%ld connect_s=%.2f published=%ld publish_failed=%ld expected=%" PRIu64
        " received=%" PRIu64 " missing=%" PRIu64 " gaps=%" PRIu64 " dups=%" PRIu64 " closed=%ld"
        " heartbeats=%" PRIu64 " other=%" PRIu64 " samples=%zu lat_p50_ms=%.1f lat_p99_ms=%.1f"
        " lat_max_ms=%.1f lat_mean_ms=%.1f first_p50_ms=%.1f first_max_ms=%.1f spread_p50_ms=%.1f"
        " spread_max_ms=%.1f publish_p50_ms=%.1f publish_max_ms=%.1f server_cpu_pct=%.0f client_cpu_pct=%.0f"
        " foreign_cpu_pct=%.0f rss0_kib=%ld rss_open_kib=%ld"
        " rss_end_kib=%ld hwm_kib=%ld rss_per_sub_open_b=%ld rss_per_sub_end_b=%ld\n",
        o.subs, opened, connect_s, published, atomic_load(&pub.failed),
        (uint64_t)published * (uint64_t)o.subs, received, missing, gaps, dups, c.closed, hb, c.other_frames,
        c.lat.n, pct_ms(&c.lat, 0.50), pct_ms(&c.lat, 0.99), pct_ms(&c.lat, 1.0),
        c.lat.n ? sum / (double)c.lat.n / 1000.0 : -1, pct_ms(&first, 0.5), pct_ms(&first, 1.0),
        pct_ms(&spread, 0.5), pct_ms(&spread, 1.0), pct_ms(&rtt, 0.5), pct_ms(&rtt, 1.0), cpu_pct, client_pct,
        foreign_pct, m0.rss_kib, m1.rss_kib, m2.rss_kib, m2.hwm_kib, rss_conn, rss_run);
    if (c.first_err[0] != '\0')
        fprintf(stderr, "sse_fanout: first error: %s\n", c.first_err);
    if (pub.err[0] != '\0')
        fprintf(stderr, "sse_fanout: publisher: %s\n", pub.err);
    rc = opened == o.subs && published > 0 && atomic_load(&pub.failed) == 0 && missing == 0 && gaps == 0 &&
                 dups == 0 && c.closed == 0
             ? 0
             : 1;
    for (long i = 0; i < o.subs; i++) {
        if (c.conns[i].fd >= 0)
            close(c.conns[i].fd);
        free(c.conns[i].carry);
    }
    free(c.conns);
    free(c.rbuf);
    free(c.lat.v);
    free(first.v);
    free(spread.v);
    free(rtt.v);
    free(pub.rtt);
    free(c.seq_sent);
    free(c.seq_first);
    free(c.seq_last);
    close(c.ep);
    return rc;
}
