/* server.h — the running gateway as every worker sees it: the configuration in force, the
 * workers (worker.h), the circuit breakers and TLS contexts they share. serve.c runs it. */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <h2o.h>
#include <lua.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>

#include "config.h"
#include "worker.h"

struct server {
    struct config *cfg;
    struct breaker *breakers; /* one per configured pool, shared by the workers */
    h2o_globalconf_t globalconf;
    SSL_CTX *ssl_ctx;   /* the listener's TLS context, NULL for plain HTTP; replaced on SIGHUP */
    SSL_CTX **ssl_ctxs; /* every context made, kept until exit (server.c says why) */
    size_t nssl_ctxs;
    struct config **reloaded; /* every config read on SIGHUP, freed when the server stops */
    size_t nreloaded;
    struct worker *workers;
    int nworkers;
    bool draining;             /* SIGTERM came: /health/ready answers 503, connections are not kept alive */
    pthread_barrier_t ready;   /* the workers' loops and control queues are made (serve.c) */
    pthread_barrier_t serving; /* every worker accepts on its listener (serve.c: READY=1) */
};

/* Control messages from the main thread to a worker. */
enum control { CONTROL_STOP, CONTROL_RELOAD };

#endif
