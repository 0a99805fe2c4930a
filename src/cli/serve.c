/* serve.c — the gateway process: listeners, one event loop per worker thread, signals, and a
 * graceful stop: on SIGTERM shutdown_grace seconds of service with /health/ready at 503, then the
 * listeners close and in-flight requests drain up to shutdown_timeout. */
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <lua.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "answerfilter.h"
#include "cache.h"
#include "cached.h"
#include "cancel.h"
#include "clientwatch.h"
#include "describe.h"
#include "errorfilter.h"
#include "events.h"
#include "evhub.h"
#include "h2reset.h"
#include "listener.h"
#include "log.h"
#include "policy.h"
#include "probe.h"
#include "reqstats.h"
#include "tablecheck.h"
#include "route.h"
#include "router.h"
#include "ryw.h"
#include "script.h"
#include "sdnotify.h"
#include "server.h"
#include "tls.h"
#include "util.h"

/* --- listeners ------------------------------------------------------------------------------ */

static int parse_inet(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec) return -1;
    size_t hl = (size_t)(colon - spec);
    if (hl >= sizeof host) return -1;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) return -1;
    memset(ss, 0, sizeof *ss);
    if (host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1) return -1;
        *len = sizeof *a;
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return -1;
    *len = sizeof *a;
    return 0;
}

/* Makes way for a unix socket at path: nothing there is fine; a socket nobody accepts on (connect
 * is refused: its server is gone) is removed. Anything else stays where it is: a file that is not
 * a socket, or a socket another process still serves. Returns 0, or -1 with one line in err. */
static int clear_unix_path(const struct sockaddr_un *a, char *err, size_t errlen)
{
    const char *path = a->sun_path;
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "listen unix:%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "listen unix:%s: the path exists and is not a socket; it is left alone", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "listen unix:%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = connect(fd, (const struct sockaddr *)a, sizeof *a);
    int e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN) { /* EAGAIN: its backlog is full, so someone listens */
        snprintf(err, errlen, "listen unix:%s: another process is accepting connections on this socket",
                 path);
        return -1;
    }
    if (e != ECONNREFUSED) {
        snprintf(err, errlen, "listen unix:%s: cannot tell whether the socket is in use: %s", path,
                 strerror(e));
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "listen unix:%s: cannot remove the stale socket: %s", path, strerror(errno));
        return -1;
    }
    log_info("listen unix:%s: removed a stale socket nobody accepted on", path);
    return 0;
}

/* SO_REUSEPORT lets the workers share one address, but it would as well let a second sluice (or
 * any process of the same user that sets it) bind it too and silently take half the connections.
 * A bind without SO_REUSEPORT fails while anyone listens there: done once before the workers'
 * sockets, it tells whether the address is free. Returns 0, or -1 with one line in err. */
static int check_address_free(const char *spec, const struct sockaddr_storage *ss, socklen_t len, char *err,
                              size_t errlen)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "listen %s: %s", spec, strerror(errno));
        return -1;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on); /* TIME_WAIT leftovers are no obstacle */
    int rc = bind(fd, (const struct sockaddr *)ss, len);
    int e = errno;
    close(fd);
    if (rc == 0) return 0;
    if (e == EADDRINUSE)
        snprintf(err, errlen, "listen %s: the address is already in use by another process", spec);
    else
        snprintf(err, errlen, "listen %s: %s", spec, strerror(e));
    return -1;
}

/* Fills a unix socket address from "unix:/path". Returns 0, or -1 with err. */
static int parse_unix(const char *spec, struct sockaddr_un *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (strlen(spec + 5) >= sizeof a->sun_path) {
        snprintf(err, errlen, "listen: unix socket path too long");
        return -1;
    }
    strcpy(a->sun_path, spec + 5);
    return 0;
}

/* Before anything starts: is the listen address ours to take? Another process serving it is an
 * error; a stale unix socket is removed. Returns 0, or -1 with one line in err. */
static int check_listen(const char *spec, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (strncmp(spec, "unix:", 5) == 0) {
        struct sockaddr_un *a = (struct sockaddr_un *)&ss;
        return parse_unix(spec, a, err, errlen) != 0 ? -1 : clear_unix_path(a, err, errlen);
    }
    if (parse_inet(spec, &ss, &len) != 0) return 0; /* open_listener says what is wrong */
    bool any_port = ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port == 0
                                             : ((struct sockaddr_in *)&ss)->sin_port == 0;
    return any_port ? 0 : check_address_free(spec, &ss, len, err, errlen);
}

/* Opens one listening socket. Returns the fd, or -1 with err set. */
static int open_listener(const char *spec, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;
    if (strncmp(spec, "unix:", 5) == 0) {
        struct sockaddr_un *a = (struct sockaddr_un *)&ss;
        if (parse_unix(spec, a, err, errlen) != 0) return -1;
        if (clear_unix_path(a, err, errlen) != 0) return -1;
        len = sizeof *a;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    } else {
        if (parse_inet(spec, &ss, &len) != 0) {
            snprintf(err, errlen,
                     "listen: expected \"host:port\", \"[v6]:port\" or \"unix:/path\", got \"%s\"", spec);
            return -1;
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int on = 1;
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
        }
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listen %s: %s", spec, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* --- workers -------------------------------------------------------------------------------- */

static void on_accept(h2o_socket_t *listener, const char *err)
{
    struct worker *w = listener->data;
    if (err != NULL) return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock != NULL) h2o_accept(&w->accept_ctx, sock);
}

struct control_msg {
    h2o_multithread_message_t super;
    enum control what;
};

static void send_control(struct worker *w, enum control what)
{
    struct control_msg *m = xcalloc(1, sizeof *m);
    m->what = what;
    h2o_multithread_send_message(&w->control, &m->super);
}

/* After the listener closed, the worker serves at least this long before it may stop: a request on
 * a connection accepted at the last moment is read and answered, not cut. */
#define DRAIN_LINGER_MS 100

static void stop_accepting(struct worker *w)
{
    if (w->stopping) return;
    w->stopping = true;
    w->stop_deadline_ms = now_ms() + (uint64_t)(w->srv->cfg->shutdown_timeout * 1000);
    w->stop_linger_ms = now_ms() + DRAIN_LINGER_MS;
    if (w->listener != NULL) {
        /* Connections the kernel has queued already are taken and served, not reset by the close. */
        int fd = h2o_socket_get_fd(w->listener);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        for (h2o_socket_t *sock; (sock = h2o_evloop_socket_accept(w->listener)) != NULL;)
            h2o_accept(&w->accept_ctx, sock);
        h2o_socket_read_stop(w->listener);
        h2o_socket_close(w->listener); /* closes listen_fd */
        w->listener = NULL;
    }
    events_worker_stop(w); /* event streams never end by themselves */
}

/* Reads the breaker and retry policy of the current scripts into every pool. */
static void apply_policy(struct worker *w)
{
    char err[256];
    for (int i = 0; i < w->npools; i++)
        if (policy_read(w->reg->L, &w->pools[i].breaker_policy, &w->pools[i].retry_policy, err, sizeof err) !=
            0)
            log_warn("%s", err);
}

/* Takes the server's current TLS context for new connections. */
static pthread_mutex_t tls_swap = PTHREAD_MUTEX_INITIALIZER; /* guards server.ssl_ctx */

static void adopt_tls(struct worker *w)
{
    pthread_mutex_lock(&tls_swap);
    w->accept_ctx.ssl_ctx = w->srv->ssl_ctx;
    pthread_mutex_unlock(&tls_swap);
}

/* Loads the scripts into a new generation. On success it becomes current and the old one is
 * retired: requests already running finish on it. On failure the old one keeps serving. */
static void reload(struct worker *w)
{
    char err[512];
    struct config *cfg = __atomic_load_n(&w->srv->cfg, __ATOMIC_ACQUIRE);
    for (int i = 0; i < w->npools; i++)
        pool_reconfigure(&w->pools[i], &cfg->pools[i], w->index, w->srv->nworkers);
    struct registry *next = xcalloc(1, sizeof *next);
    registry_init(next);
    next->L = script_load(w->srv->cfg, next, err, sizeof err);
    if (next->L == NULL) {
        if (w->index == 0) log_error("reload failed, the previous scripts keep serving: %s", err);
        registry_free(next);
        free(next);
        return;
    }
    describe_apply(describe_current(), next); /* described by the main thread on SIGHUP */
    adopt_tls(w);
    struct registry *old = w->reg;
    old->retired_ms = now_ms();
    old->next_retired = w->retired;
    w->retired = old;
    w->reg = next;
    apply_policy(w);
    if (w->index == 0)
        log_info("reloaded: %d named queries, %d bulk endpoints, %d handlers", next->nqueries, next->nbulks,
                 next->nhandlers);
}

static void free_generation(struct registry *r)
{
    lua_State *L = r->L;
    registry_free(r);
    script_close(L);
    free(r);
}

/* Frees retired generations nothing uses any more. The 5 s grace covers a /metrics or
 * /admin scrape on another worker that may still be reading one. */
static void on_janitor(h2o_timeout_entry_t *entry)
{
    struct worker *w = container_of(entry, struct worker, janitor);
    uint64_t now = now_ms();
    route_refresh_health(w);
    for (struct registry **pp = &w->retired; *pp;) {
        struct registry *r = *pp;
        if (r->refs == 0 && now - r->retired_ms >= 5000) {
            *pp = r->next_retired;
            free_generation(r);
        } else {
            pp = &r->next_retired;
        }
    }
    h2o_timeout_link(w->ctx.loop, &w->janitor_timeout, &w->janitor);
}

static void on_control(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    struct worker *w = container_of(receiver, struct worker, control);
    while (!h2o_linklist_is_empty(messages)) {
        struct control_msg *m =
            (struct control_msg *)H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        if (m->what == CONTROL_STOP)
            stop_accepting(w);
        else if (!w->stopping)
            reload(w);
        free(m);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct server *srv = w->srv;
    log_set_worker(w->index);
    /* The loop, the context and the control queue are made on this thread: h2o gives every socket
     * the buffer prototype (a recycling allocator in thread-local storage, not thread-safe) of the
     * thread that creates it. Made on the main thread, the queues' sockets of all workers would
     * share the main thread's, and two workers reading a control message at once would hand the
     * same buffer to both (a heap use after free). */
    h2o_context_init(&w->ctx, h2o_evloop_create(), &srv->globalconf);
    w->accept_ctx.ctx = &w->ctx;
    w->accept_ctx.hosts = srv->globalconf.hosts;
    adopt_tls(w);
    w->queue = h2o_multithread_create_queue(w->ctx.loop);
    h2o_multithread_register_receiver(w->queue, &w->control, on_control);
    events_worker_init(w);
    pthread_barrier_wait(&srv->ready);
    h2o_loop_t *loop = w->ctx.loop;

    w->npools = (int)srv->cfg->npools;
    w->pools = xcalloc((size_t)w->npools, sizeof *w->pools);
    for (int i = 0; i < w->npools; i++) {
        struct pool *p = &w->pools[i];
        pool_init(p, &srv->cfg->pools[i], w->index, srv->nworkers, loop, &srv->breakers[i]);
    }
    apply_policy(w);
    ryw_init(w);
    accesslog_init(w);
    cached_init(w);
    h2o_timeout_init(loop, &w->janitor_timeout, 1000);
    w->janitor.cb = on_janitor;
    h2o_timeout_link(loop, &w->janitor_timeout, &w->janitor);
    if (w->index == 0)
        probe_start(w->ctx.loop, w->queue, w->srv->cfg); /* replication lag for /health, off the pools */

    w->listener = h2o_evloop_socket_create(loop, w->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    w->listener->data = w;
    h2o_socket_read_start(w->listener, on_accept);
    pthread_barrier_wait(&srv->serving);

    while (!(w->stopping &&
             ((w->inflight == 0 && now_ms() >= w->stop_linger_ms) || now_ms() >= w->stop_deadline_ms)))
        h2o_evloop_run(loop, w->stopping ? 10 : INT32_MAX);
    /* Let the last responses leave before the connections go. */
    for (int i = 0; i < 5; i++) h2o_evloop_run(loop, 10);
    accesslog_flush(w);

    for (int i = 0; i < w->npools; i++) pool_close(&w->pools[i]);
    /* The loop and its context stay: idle keep-alive connections still hold timers in them, and
     * the process exits right after. */
    return NULL;
}

static void worker_dispose(struct worker *w)
{
    ryw_free(w);
    cached_free(w);
    free(w->pools);
    free_generation(w->reg);
    while (w->retired) {
        struct registry *r = w->retired;
        w->retired = r->next_retired;
        free_generation(r);
    }
    buf_free(&w->out);
    h2reset_free(w);
    accesslog_free(w);
    reqstats_free(w);
}

/* Loads cfg's scripts into a registry of its own, syncs the event channels and the cache's LISTEN
 * subscriptions with it, and describes it (describe_all), for a reload: the main thread calls it
 * on SIGHUP before the workers reload. Returns a malloc'd result (free it with describe_free and
 * free, or hand it to describe_set_current); err is "" when everything was described, else names
 * the first failure. Returns NULL, with err, when the scripts do not load. */
static struct describe_result *describe_scripts(const struct config *cfg, char *err, size_t errlen)
{
    struct registry reg;
    registry_init(&reg);
    lua_State *L = script_load(cfg, &reg, err, errlen);
    if (L == NULL) {
        registry_free(&reg);
        return NULL;
    }
    script_close(L);
    /* Before the workers reload: channels added, kept or removed, and a LISTEN for each pool
     * whose queries are cached for the first time. */
    evhub_sync(&reg);
    cached_listen(cfg, cached_pools(&reg));
    struct describe_result *d = xcalloc(1, sizeof *d);
    err[0] = '\0';
    describe_all(cfg, &reg, d, err, errlen);
    registry_free(&reg);
    return d;
}

/* --- the process ---------------------------------------------------------------------------- */

/* SIGTERM behind a load balancer: /health/ready answers 503 at once while every request, new ones
 * included, is still served for shutdown_grace seconds, so that the balancer's readiness checks
 * take the gateway out of rotation before its listener closes. A second SIGTERM, or a SIGINT,
 * ends the grace early; a SIGHUP meanwhile is not acted on. */
static void shutdown_grace(struct server *srv, const sigset_t *sigs)
{
    __atomic_store_n(&srv->draining, true, __ATOMIC_RELEASE);
    double grace = srv->cfg->shutdown_grace;
    if (grace <= 0) return;
    log_info("SIGTERM: /health/ready answers 503; serving for shutdown_grace (%gs) before draining", grace);
    uint64_t end = now_ms() + (uint64_t)(grace * 1000);
    for (uint64_t now; (now = now_ms()) < end;) {
        struct timespec left = {(time_t)((end - now) / 1000), (long)((end - now) % 1000) * 1000000};
        int sig = sigtimedwait(sigs, NULL, &left);
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("signal %d: shutdown_grace cut short", sig);
            return;
        }
        if (sig == SIGHUP) log_warn("SIGHUP during shutdown_grace: not reloading");
    }
}

/* Tells a service manager (systemd Type=notify) the state, with a STATUS line and, for a reload,
 * the monotonic time systemd 253+ wants with RELOADING=1. A failure is logged once. */
static void notify(struct server *srv, const char *state)
{
    static bool warned;
    char msg[512];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const char *status = strcmp(state, "READY=1") == 0      ? "serving"
                         : strcmp(state, "STOPPING=1") == 0 ? "draining"
                                                            : "reloading";
    int n = snprintf(msg, sizeof msg, "%s\nSTATUS=%s on %s with %d workers", state, status, srv->cfg->listen,
                     srv->nworkers);
    if (strcmp(state, "RELOADING=1") == 0)
        snprintf(msg + n, sizeof msg - (size_t)n, "\nMONOTONIC_USEC=%llu",
                 (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    if (sdnotify(msg) < 0 && !warned) {
        warned = true;
        log_warn("NOTIFY_SOCKET=%s: cannot notify the service manager: %s", getenv("NOTIFY_SOCKET"),
                 strerror(errno));
    }
}

/* The running server. Not static: the contexts and loops the workers leave at exit stay reachable
 * through it (a static that is only written could be optimized away). */
struct server *server_instance;

/* Every TLS context lives until the process exits: h2o 2.2.5 keeps a plain pointer to the
 * context of each accepted connection and creates its SSL object only when the client's first
 * bytes arrive, so a context freed after a reload could still be used. A few KiB per reload. */
static void keep_tls_context(struct server *srv, SSL_CTX *ctx)
{
    srv->ssl_ctxs = xrealloc(srv->ssl_ctxs, (srv->nssl_ctxs + 1) * sizeof *srv->ssl_ctxs);
    srv->ssl_ctxs[srv->nssl_ctxs++] = ctx;
}

/* Rereads the config file. The new config replaces the old, unless it is broken or changes what
 * only a restart can. Every config read here is kept until the server stops (a worker may still be
 * reading an older one): a few hundred bytes per reload. */
static void reload_config(struct server *srv)
{
    struct config *old = srv->cfg, *next = xcalloc(1, sizeof *next);
    char err[512];
    if (config_load(old->path, next, err, sizeof err) != 0) {
        log_error("reload: %s; the previous config stays", err);
        free(next);
        return;
    }
    bool same_pools = next->npools == old->npools;
    for (size_t i = 0; same_pools && i < old->npools; i++)
        same_pools = strcmp(next->pools[i].name, old->pools[i].name) == 0;
    if (!same_pools || next->workers != old->workers || strcmp(next->listen, old->listen) != 0 ||
        (next->tls_cert == NULL) != (old->tls_cert == NULL) || next->client_timeout != old->client_timeout ||
        next->http2 != old->http2) {
        log_error("reload: pools, workers, listen, tls on or off, client_timeout or http2 changed; they take "
                  "effect after a restart, the previous config stays");
        config_free(next);
        free(next);
        return;
    }
    if (next->tls_cert != NULL) {
        /* The certificate and key files are read again: a renewed certificate needs no restart. */
        SSL_CTX *ctx = tls_context_new(next->tls_cert, next->tls_key, next->http2, err, sizeof err);
        if (ctx == NULL) {
            log_error("reload: %s; the previous config stays", err);
            config_free(next);
            free(next);
            return;
        }
        keep_tls_context(srv, ctx);
        pthread_mutex_lock(&tls_swap);
        srv->ssl_ctx = ctx;
        pthread_mutex_unlock(&tls_swap);
    }
    log_setup((enum log_level)next->log_level, next->log_json);
    cache_set_max(next->cache_max_bytes);
    srv->reloaded = xrealloc(srv->reloaded, (srv->nreloaded + 1) * sizeof *srv->reloaded);
    srv->reloaded[srv->nreloaded++] = next;
    __atomic_store_n(&srv->cfg, next, __ATOMIC_RELEASE);
}

int serve_run(struct config *cfg)
{
    char err[512];
    if (check_listen(cfg->listen, err, sizeof err) != 0) {
        fprintf(stderr, "sluice: %s\n", err);
        return 1;
    }
    struct server *srv = server_instance = xcalloc(1, sizeof *srv);
    srv->cfg = cfg;
    srv->nworkers = cfg->workers;
    cache_set_max(cfg->cache_max_bytes);

    if (cfg->tls_cert != NULL) {
        srv->ssl_ctx = tls_context_new(cfg->tls_cert, cfg->tls_key, cfg->http2, err, sizeof err);
        if (srv->ssl_ctx == NULL) {
            fprintf(stderr, "sluice: %s\n", err);
            return 1;
        }
        keep_tls_context(srv, srv->ssl_ctx);
    }

    /* Load the scripts once up front so that a broken one stops start-up with its message. */
    struct registry probe;
    registry_init(&probe);
    lua_State *L = script_load(cfg, &probe, err, sizeof err);
    if (L == NULL) {
        fprintf(stderr, "sluice: %s\n", err);
        registry_free(&probe);
        return 1;
    }
    struct breaker_policy bp;
    struct retry_policy rp;
    if (policy_read(L, &bp, &rp, err, sizeof err) != 0) {
        fprintf(stderr, "sluice: %s\n", err);
        script_close(L);
        registry_free(&probe);
        return 1;
    }
    log_info("loaded %d named queries and %d bulk endpoints from the scripts", probe.nqueries, probe.nbulks);
    /* Types of every parameter and result column, once: the first request binds at once, and
     * /openapi.json shows them. Without the database the workers learn them on first use. */
    struct describe_result *desc = xcalloc(1, sizeof *desc);
    if (describe_all(cfg, &probe, desc, err, sizeof err) != 0) log_warn("describe: %s", err);
    describe_set_current(desc);
    int tc = tablecheck_run(cfg, &probe, err, sizeof err);
    if (tc < 0) { /* a cached query names a table the database does not have */
        fprintf(stderr, "sluice: %s\n", err);
        script_close(L);
        registry_free(&probe);
        return 1;
    }
    if (tc > 0) log_warn("%s", err);
    script_close(L);
    listener_start(cfg); /* LISTEN connections, opened for the first subscriber */
    cached_listen(cfg, cached_pools(&probe));
    evhub_init(cfg->workers);
    evhub_sync(&probe); /* a hub per channel: events are kept from now on */
    registry_free(&probe);

    h2o_config_init(&srv->globalconf);
    /* No Server header: h2o formats it with a sprintf of its own for every response. */
    srv->globalconf.server_name = h2o_iovec_init(H2O_STRLIT(""));
    /* One budget for a client to finish a TLS handshake, to send a request's head and body, or to
     * send its next request on a kept-alive connection: a slow or silent client is closed. */
    uint64_t client_ms = (uint64_t)(cfg->client_timeout * 1000);
    srv->globalconf.handshake_timeout = client_ms;
    srv->globalconf.http1.req_timeout = client_ms;
    srv->globalconf.http2.idle_timeout = client_ms;
    /* HTTP/2 only when asked for: off, plain HTTP refuses the h2c preface and Upgrade: h2c, and
     * TLS offers only http/1.1 (tls.c). h2o 2.2.5 starts a request as soon as its HEADERS arrive
     * and does not limit streams the client resets (Rapid Reset, docs/security.md); h2reset.c caps
     * them when HTTP/2 is on. */
    srv->globalconf.http1.upgrade_to_http2 = cfg->http2;
    /* h2o answers a body past its limit and closes without reading the rest, so a client still
     * sending gets a reset instead of the 413. Bodies up to 1 MiB over max_body_bytes are read
     * and refused by http.c instead, which ends cleanly. */
    srv->globalconf.max_request_entity_size = cfg->max_body_bytes + (1u << 20);
    h2o_hostconf_t *host =
        h2o_config_register_host(&srv->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_create_handler(path, sizeof(h2o_handler_t))->on_req = router_on_req;
    /* h2o sets up the filter registered last first: h2o's own errors become JSON, then 200
     * answers of compress_min_bytes or more are gzip-encoded for clients that take it (streams
     * always: their length is unknown), then every answer gets its request id, trace and CORS
     * headers. Quality 1: most of the gain on JSON for the least CPU. The fallback path only
     * answers errors, which are never compressed. */
    answerfilter_register(path);
    h2o_compress_args_t gzip = {.min_size = (size_t)cfg->compress_min_bytes, .gzip = {1}, .brotli = {-1}};
    h2o_compress_register(path, &gzip);
    errorfilter_register(path);
    answerfilter_register(&host->fallback_path);
    errorfilter_register(&host->fallback_path);
    accesslog_register(path);
    accesslog_register(&host->fallback_path);
    reqstats_register(path);
    reqstats_register(&host->fallback_path);
    clientwatch_register(path);
    clientwatch_register(&host->fallback_path);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* workers inherit the mask; only main takes signals */
    signal(SIGPIPE, SIG_IGN);

    srv->breakers = xcalloc(cfg->npools, sizeof *srv->breakers);
    for (size_t i = 0; i < cfg->npools; i++) breaker_init(&srv->breakers[i]);
    cancel_start();
    srv->workers = xcalloc((size_t)srv->nworkers, sizeof *srv->workers);
    bool is_unix = strncmp(cfg->listen, "unix:", 5) == 0;
    int shared_fd = -1;
    int rc = 0;
    for (int i = 0; i < srv->nworkers; i++) {
        struct worker *w = &srv->workers[i];
        w->srv = srv;
        w->index = i;
        w->reg = xcalloc(1, sizeof *w->reg);
        registry_init(w->reg);
        if (is_unix && shared_fd >= 0)
            w->listen_fd = dup(shared_fd);
        else
            w->listen_fd = open_listener(cfg->listen, err, sizeof err);
        if (w->listen_fd < 0) {
            fprintf(stderr, "sluice: %s\n", err);
            rc = 1;
            break;
        }
        if (is_unix && shared_fd < 0) shared_fd = w->listen_fd;
        w->reg->L = script_load(cfg, w->reg, err, sizeof err);
        if (w->reg->L == NULL) {
            fprintf(stderr, "sluice: %s\n", err);
            rc = 1;
            break;
        }
        describe_apply(desc, w->reg);
    }
    if (rc != 0) {
        if (is_unix && shared_fd >= 0) unlink(cfg->listen + 5); /* ours: bound above */
        return rc;
    }

    pthread_barrier_init(&srv->ready, NULL, (unsigned)srv->nworkers + 1);
    pthread_barrier_init(&srv->serving, NULL, (unsigned)srv->nworkers + 1);
    for (int i = 0; i < srv->nworkers; i++)
        pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]);
    /* No control message before every worker's receiver is registered. */
    pthread_barrier_wait(&srv->ready);
    pthread_barrier_destroy(&srv->ready);
    pthread_barrier_wait(&srv->serving);
    pthread_barrier_destroy(&srv->serving);
    log_info("serving on %s with %d workers", cfg->listen, srv->nworkers);
    notify(srv, "READY=1");

    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0) continue;
        if (sig == SIGHUP) {
            notify(srv, "RELOADING=1");
            log_info("SIGHUP: reloading the config and the scripts");
            reload_config(srv);
            /* Types for the reloaded definitions; the workers apply them as they reload. */
            struct describe_result *d = describe_scripts(srv->cfg, err, sizeof err);
            if (d != NULL) describe_set_current(d);
            if (err[0]) log_warn("describe: %s", err);
            for (int i = 0; i < srv->nworkers; i++) send_control(&srv->workers[i], CONTROL_RELOAD);
            notify(srv, "READY=1");
            continue;
        }
        notify(srv, "STOPPING=1");
        /* SIGINT (Ctrl-C at a terminal) stops accepting at once; SIGTERM gives the grace first */
        if (sig == SIGTERM) shutdown_grace(srv, &sigs);
        __atomic_store_n(&srv->draining, true, __ATOMIC_RELEASE);
        log_info("signal %d: draining in-flight requests (up to %gs)", sig, srv->cfg->shutdown_timeout);
        break;
    }
    for (int i = 0; i < srv->nworkers; i++) send_control(&srv->workers[i], CONTROL_STOP);
    for (int i = 0; i < srv->nworkers; i++) pthread_join(srv->workers[i].thread, NULL);
    for (int i = 0; i < srv->nworkers; i++) worker_dispose(&srv->workers[i]);
    evhub_free_all(); /* unsubscribes: before the listener stops */
    listener_stop();
    if (is_unix) unlink(cfg->listen + 5);
    cancel_stop();
    for (size_t i = 0; i < srv->nreloaded; i++) {
        config_free(srv->reloaded[i]);
        free(srv->reloaded[i]);
    }
    free(srv->reloaded);
    srv->cfg = cfg; /* main's, which it frees */
    describe_forget_all();
    /* The workers' h2o contexts and loops live until exit (idle keep-alive connections still hold
     * timers in them); server_instance keeps them reachable. */
    log_info("stopped");
    return 0;
}
