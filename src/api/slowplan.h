/* slowplan.h — explain_slow (sluice.policy): the plan of a slow named query, captured in the
 * background with the request's parameter values and kept for GET /admin/queries. */
#ifndef SLUICE_SLOWPLAN_H
#define SLUICE_SLOWPLAN_H

#include <jansson.h>
#include <stdbool.h>

struct worker;
struct query_def;

/* True when the scripts of q's generation set sluice.policy { explain_slow = true }. */
bool slowplan_enabled(const struct query_def *q);
/* Runs EXPLAIN (FORMAT JSON) of q with vals (q->nparams values in order, each a reference the
 * call takes over; NULL entries are SQL NULL; vals itself is malloc'd and taken over too) on
 * w's pool in a transaction that is rolled back, and stores the plan with metrics_plan_set.
 * Never blocks: it returns at once and the work finishes on w's loop; failures are logged at
 * debug level only and leave the previous plan in place. */
void slowplan_capture(struct worker *w, struct query_def *q, int pool, json_t **vals);

#endif
