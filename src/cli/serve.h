/* serve.h — `sluice serve`: runs the gateway until SIGTERM or SIGINT. */
#ifndef SLUICE_SERVE_H
#define SLUICE_SERVE_H

#include "config.h"

/* Serves until SIGTERM/SIGINT, then drains in-flight requests up to shutdown_timeout. Returns the
 * process exit code (0 after a clean stop, 1 when start-up failed). */
int serve_run(struct config *cfg);

#endif
