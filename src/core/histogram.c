/* histogram.c — fixed-bucket latency histograms. */
#include "histogram.h"

const double histogram_bounds[HISTOGRAM_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};

void histogram_observe(struct histogram *h, double seconds)
{
    int i = 0;
    while (i < HISTOGRAM_BUCKETS && seconds > histogram_bounds[i]) i++;
    h->counts[i]++;
    h->count++;
    h->sum += seconds;
}

void histogram_add(struct histogram *dst, const struct histogram *src)
{
    for (int i = 0; i <= HISTOGRAM_BUCKETS; i++)
        dst->counts[i] += __atomic_load_n(&src->counts[i], __ATOMIC_RELAXED);
    dst->count += __atomic_load_n(&src->count, __ATOMIC_RELAXED);
    dst->sum += src->sum;
}

double histogram_quantile(const struct histogram *h, double q)
{
    if (h->count == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.5), seen = 0;
    if (rank == 0) rank = 1;
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) return histogram_bounds[i];
    }
    return histogram_bounds[HISTOGRAM_BUCKETS - 1];
}
