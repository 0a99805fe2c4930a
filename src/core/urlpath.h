/* urlpath.h — the path of a request target split at its '/' and percent-decoded once, for
 * matching handler routes and route aliases and for their {param} values. h2o's own normalised
 * path is decoded already, and with every "%2F" turned into a separator, so it cannot give a
 * segment's value: this works from the raw path. */
#ifndef SLUICE_URLPATH_H
#define SLUICE_URLPATH_H

#include <stdbool.h>
#include <stddef.h>

/* The segments of a path; segs[i] holds lens[i] bytes (not NUL-terminated, may hold any byte). */
struct urlpath {
    const char **segs;
    size_t *lens;
    int n;
};

/* Percent-decodes s[0..n) into out (room for n bytes); '+' becomes a space only when
 * plus_is_space (query strings: form encoding), never in a path. Returns the decoded length, or
 * -1 when a '%' is not followed by two hex digits. */
long urlpath_decode(const char *s, size_t n, char *out, bool plus_is_space);

/* How many segments urlpath_split can give for path[0..len): one more than its '/' count. */
size_t urlpath_max_segments(const char *path, size_t len);

/* Splits path[0..len) (which stops before any '?') at each '/' and decodes every %XX in each
 * segment: a '+' stays a '+', and an encoded "%2F" stays inside its segment. Dot segments ("."
 * and "..", encoded or not) are removed as RFC 3986 5.2.4 and h2o's normalisation remove them
 * (".." at the top stays at the top); a path ending in '/' (or in a dot segment) has a last,
 * empty segment, and "/" is one empty segment. A path that does not start with '/' is read as if
 * it did. The decoded bytes go to out (room for len bytes); p->segs and p->lens must have room for
 * urlpath_max_segments entries and end up pointing into out. Returns 0, or -1 when a '%' is not
 * followed by two hex digits (p->n is then 0). */
int urlpath_split(const char *path, size_t len, char *out, struct urlpath *p);

#endif
