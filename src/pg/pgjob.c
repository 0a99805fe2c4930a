/* pgjob.c — a named query's execution: parameters in, result out (pgjob.h). */
#include "pgjob.h"

#include <stdlib.h>

#include "endpoint.h"
#include "util.h"

struct pgjob *pgjob_new(struct query_def *q, void *owner)
{
    /* the parameter offsets follow the job in the same allocation */
    struct pgjob *job =
        xcalloc(1, sizeof *job + (size_t)(q->nparams ? q->nparams : 1) * sizeof *job->param_off);
    job->q = q;
    q->reg->refs++; /* its definitions outlive a reload while it runs */
    job->owner = owner;
    job->bad_param = -1;
    job->param_off = (int *)(job + 1);
    for (int i = 0; i < q->nparams; i++) job->param_off[i] = -1;
    buf_init(&job->params);
    return job;
}

void pgjob_free(struct pgjob *job)
{
    job->q->reg->refs--;
    if (job->result) PQclear(job->result);
    buf_free(&job->params);
    free(job);
}

void pgjob_param(struct pgjob *job, int index, const char *text, size_t len)
{
    if (text == NULL) {
        job->param_off[index] = -1;
        return;
    }
    job->param_off[index] = (int)job->params.len;
    buf_append(&job->params, text, len);
    buf_putc(&job->params, '\0');
}
