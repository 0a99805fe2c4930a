/* cancel.c — a background thread that sends CancelRequests, so the event loops never block on
 * PQcancel. */
#include "cancel.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "util.h"

struct cancel_item {
    struct cancel_item *next;
    PGcancel *cancel;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct cancel_item *head, *tail;
static bool running, stopping;
static pthread_t thread;

static void *cancel_main(void *arg)
{
    pthread_mutex_lock(&lock);
    for (;;) {
        while (head == NULL && !stopping) pthread_cond_wait(&wake, &lock);
        if (head == NULL) break;
        struct cancel_item *it = head;
        head = it->next;
        if (head == NULL) tail = NULL;
        pthread_mutex_unlock(&lock);
        char err[256];
        if (!PQcancel(it->cancel, err, sizeof err)) log_warn("cancel request failed: %s", err);
        PQfreeCancel(it->cancel);
        free(it);
        pthread_mutex_lock(&lock);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

void cancel_start(void)
{
    if (running) return;
    stopping = false;
    running = pthread_create(&thread, NULL, cancel_main, NULL) == 0;
}

void cancel_stop(void)
{
    if (!running) return;
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
    running = false;
}

void cancel_request(PGconn *pg)
{
    PGcancel *c = PQgetCancel(pg);
    if (c == NULL || !running) {
        if (c) PQfreeCancel(c);
        return;
    }
    struct cancel_item *it = xmalloc(sizeof *it);
    it->next = NULL;
    it->cancel = c;
    pthread_mutex_lock(&lock);
    if (tail)
        tail->next = it;
    else
        head = it;
    tail = it;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
}
