/* version.h — the version of sluice (sluice --version, sluice_build_info). */
#ifndef SLUICE_VERSION_H
#define SLUICE_VERSION_H

#define SLUICE_VERSION "0.1.0"

#endif
