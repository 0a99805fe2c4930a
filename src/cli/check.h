/* check.h — `sluice check`: load every script and prepare every named query against the
 * database, naming each broken one with the server's message. */
#ifndef SLUICE_CHECK_H
#define SLUICE_CHECK_H

#include "config.h"

/* Returns the process exit code: 0 when every script loads and every query prepares, else 1. */
int check_run(const struct config *cfg);

#endif
