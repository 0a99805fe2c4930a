/* answerfilter.h — what every answer carries, whoever made it (an endpoint, a stream, h2o's own
 * errors): X-Request-Id, traceparent, the CORS headers, and a weak ETag once the body is
 * compressed. */
#ifndef SLUICE_ANSWERFILTER_H
#define SLUICE_ANSWERFILTER_H

#include <h2o.h>

/* Registers the filter on pathconf. Register it before h2o's compress filter: h2o runs the last
 * registered filter first, and this one must see the Content-Encoding that compression sets. */
void answerfilter_register(h2o_pathconf_t *pathconf);

#endif
