/* errorfilter.h — gives the error responses h2o writes itself (413 for an oversized body, 400 for
 * a malformed request) the JSON error shape of every other error. */
#ifndef SLUICE_ERRORFILTER_H
#define SLUICE_ERRORFILTER_H

#include <h2o.h>

/* Registers the filter on pathconf (both the served path and the host's fallback path need it:
 * h2o answers some errors before routing). */
void errorfilter_register(h2o_pathconf_t *pathconf);

#endif
