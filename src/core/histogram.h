/* histogram.h — a fixed-bucket latency histogram in seconds (Prometheus `le` buckets suited to
 * database latency, 0.5 ms .. 10 s). Each worker owns its own; scrapes sum them. */
#ifndef SLUICE_HISTOGRAM_H
#define SLUICE_HISTOGRAM_H

#include <stdint.h>

#define HISTOGRAM_BUCKETS 14
extern const double histogram_bounds[HISTOGRAM_BUCKETS];

struct histogram {
    uint64_t counts[HISTOGRAM_BUCKETS + 1]; /* per bucket (not cumulative); the last is +Inf */
    uint64_t count;
    double sum;
};

void histogram_observe(struct histogram *h, double seconds);
/* dst += src; src may belong to another worker (read without locks: a scrape is a snapshot). */
void histogram_add(struct histogram *dst, const struct histogram *src);
/* The q-quantile (0..1) estimated from the buckets (upper bound of the bucket), 0 when empty. */
double histogram_quantile(const struct histogram *h, double q);

#endif
