/* sse_fanout.c — holds N Server-Sent Events streams open on one gateway (one epoll loop, plain
 * sockets), then NOTIFYs the channel ROUNDS times through libpq and measures, for every stream,
 * the time from just before the NOTIFY was sent (its commit is in that time) to the moment the
 * event's bytes were read. Prints the latency percentiles over all streams and rounds, and the
 * gateway's RSS (VmRSS of GW_PID) with every stream open.
 *
 * Build: cc -O2 -o sse_fanout bench/sse_fanout.c $(pkg-config --cflags --libs libpq)
 * Usage: sse_fanout PORT PATH N DSN CHANNEL ROUNDS GW_PID */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    int state; /* 0 connecting, 1 request sent, 2 subscribed (the hello arrived) */
    int round_seen; /* the last round whose marker this stream read */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long rss_kb(const char *pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%s/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: %s PORT PATH N DSN CHANNEL ROUNDS GW_PID\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[3]), rounds = atoi(argv[6]);
    const char *path = argv[2], *dsn = argv[4], *channel = argv[5], *gwpid = argv[7];
    PGconn *pg = PQconnectdb(dsn);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "sse_fanout: %s", PQerrorMessage(pg));
        return 1;
    }
    char req[512];
    int reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n", path);
    struct conn *cs = calloc((size_t)n, sizeof *cs);
    int ep = epoll_create1(0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    char buf[65536];

    /* Subscribe in waves of 500 (the listen backlog), each wave complete before the next. */
    double t_sub = now_ms();
    int subscribed = 0;
    for (int base = 0; base < n; base += 500) {
        int end = base + 500 < n ? base + 500 : n;
        for (int i = base; i < end; i++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
                fprintf(stderr, "sse_fanout: connect %d: %s\n", i, strerror(errno));
                return 1;
            }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (write(fd, req, (size_t)reqlen) != reqlen) return 1;
            fcntl(fd, F_SETFL, O_NONBLOCK);
            cs[i].fd = fd;
            cs[i].state = 1;
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        double deadline = now_ms() + 30000;
        while (subscribed < end && now_ms() < deadline) {
            struct epoll_event evs[256];
            int k = epoll_wait(ep, evs, 256, 100);
            for (int j = 0; j < k; j++) {
                struct conn *c = &cs[evs[j].data.u32];
                ssize_t r = read(c->fd, buf, sizeof buf - 1);
                if (r <= 0) {
                    fprintf(stderr, "sse_fanout: stream %u closed while subscribing\n", evs[j].data.u32);
                    return 1;
                }
                buf[r] = '\0';
                if (c->state == 1 && strstr(buf, "sluice event stream")) {
                    c->state = 2;
                    subscribed++;
                }
            }
        }
        if (subscribed < end) {
            fprintf(stderr, "sse_fanout: only %d of %d streams subscribed\n", subscribed, end);
            return 1;
        }
    }
    double sub_ms = now_ms() - t_sub;
    long rss = rss_kb(gwpid);

    double *lat = malloc(sizeof *lat * (size_t)n * (size_t)rounds);
    size_t nlat = 0;
    int missing = 0;
    for (int r = 1; r <= rounds; r++) {
        char marker[64], sql[256];
        snprintf(marker, sizeof marker, "data: fanout-%d\n", r);
        snprintf(sql, sizeof sql, "SELECT pg_notify('%s', 'fanout-%d')", channel, r);
        int got = 0;
        double t0 = now_ms();
        PGresult *res = PQexec(pg, sql); /* autocommit: its commit is inside [t0, return) */
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            fprintf(stderr, "sse_fanout: %s", PQerrorMessage(pg));
            return 1;
        }
        PQclear(res);
        double deadline = t0 + 10000;
        while (got < n && now_ms() < deadline) {
            struct epoll_event evs[512];
            /* Reads in batches a millisecond apart: 10 000 clients on other machines would cost the
             * gateway no wake-up each, and one here must not either (a thread asleep in epoll_wait
             * is woken by every segment; one in nanosleep is not). Arrival times are then late by
             * up to 1 ms, never early. */
            int k = epoll_wait(ep, evs, 512, 100);
            double t = now_ms();
            for (int j = 0; j < k; j++) {
                struct conn *c = &cs[evs[j].data.u32];
                ssize_t rd = read(c->fd, buf, sizeof buf - 1);
                if (rd <= 0) continue;
                buf[rd] = '\0';
                if (c->round_seen < r && strstr(buf, marker)) {
                    c->round_seen = r;
                    lat[nlat++] = t - t0;
                    got++;
                }
            }
            if (k < 512) usleep(1000);
        }
        missing += n - got;
        usleep(200000); /* let keepalives and stragglers settle between rounds */
    }
    qsort(lat, nlat, sizeof *lat, cmp_double);
    double p50 = nlat ? lat[nlat / 2] : -1, p99 = nlat ? lat[(size_t)(nlat * 0.99)] : -1,
           max = nlat ? lat[nlat - 1] : -1;
    printf("streams=%d rounds=%d subscribe_s=%.1f rss_kb=%ld delivered=%zu missing=%d p50_ms=%.1f p99_ms=%.1f "
           "max_ms=%.1f\n",
           n, rounds, sub_ms / 1000, rss, nlat, missing, p50, p99, max);
    PQfinish(pg);
    return missing ? 1 : 0;
}
