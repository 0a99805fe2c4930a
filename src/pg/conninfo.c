/* conninfo.c — passwords out of what is shown of a connection string (see conninfo.h). The
 * masking works on the text as written, with no help from libpq: it must also hide what is in a
 * string libpq cannot parse. */
#include "conninfo.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "util.h"

#define MASK "***"

/* libpq's test for a URL: the prefix, case-sensitive. */
static size_t uri_prefix(const char *s)
{
    if (strncmp(s, "postgresql://", 13) == 0) return 13;
    if (strncmp(s, "postgres://", 11) == 0) return 11;
    return 0;
}

/* True when s[0..n), percent-decoded, is password or sslpassword (any case: a string libpq
 * refuses is shown too). */
static bool secret_key(const char *s, size_t n)
{
    char key[16];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%' && i + 2 < n && hex_digit(s[i + 1]) >= 0 && hex_digit(s[i + 2]) >= 0) {
            c = (char)(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
            i += 2;
        }
        if (k + 1 >= sizeof key) return false;
        key[k++] = c;
    }
    key[k] = '\0';
    return strcasecmp(key, "password") == 0 || strcasecmp(key, "sslpassword") == 0;
}

static void redact_uri(struct buf *b, const char *s, size_t prefix)
{
    const char *rest = s + prefix;
    /* user:password@: libpq ends the user part at the first '@' before any '/'; a password with a
     * raw '@' or '/' in it is not written that way, so mask from the first ':' to the last '@'. */
    const char *at = strrchr(rest, '@');
    const char *colon = at ? memchr(rest, ':', (size_t)(at - rest)) : NULL;
    buf_append(b, s, prefix);
    if (colon != NULL) {
        buf_append(b, rest, (size_t)(colon + 1 - rest));
        buf_puts(b, MASK);
        rest = at;
    }
    /* password= in the query, wherever a '?' or '&' starts a parameter: the rest is masked, since
     * a raw '&' in the value would make where it ends a guess. */
    for (const char *p = rest; *p; p++) {
        if (*p != '?' && *p != '&') continue;
        const char *key = p + 1, *eq = key;
        while (*eq && *eq != '=' && *eq != '&') eq++;
        if (*eq == '=' && secret_key(key, (size_t)(eq - key))) {
            buf_append(b, rest, (size_t)(eq + 1 - rest));
            buf_puts(b, MASK);
            return;
        }
    }
    buf_puts(b, rest);
}

static bool is_space(char c)
{
    return isspace((unsigned char)c) != 0;
}

/* key = value pairs as libpq reads them: values plain (backslash escapes the next byte) or in
 * single quotes. After anything it cannot read, the rest is masked. */
static void redact_keywords(struct buf *b, const char *s)
{
    const char *p = s;
    bool unreadable = false;
    while (*p) {
        const char *start = p;
        while (is_space(*p)) p++;
        const char *key = p;
        while (*p && *p != '=' && !is_space(*p)) p++;
        size_t klen = (size_t)(p - key);
        while (is_space(*p)) p++;
        if (klen == 0 && *p == '\0') {
            buf_puts(b, start);
            return;
        }
        if (*p != '=' || klen == 0) { /* not key=value: unreadable from here */
            unreadable = true;
            break;
        }
        p++;
        while (is_space(*p)) p++;
        const char *value = p;
        bool closed = true;
        if (*p == '\'') {
            closed = false;
            for (p++; *p; p++) {
                if (*p == '\\' && p[1]) {
                    p++;
                } else if (*p == '\'') {
                    p++;
                    closed = true;
                    break;
                }
            }
        } else {
            for (; *p && !is_space(*p); p++)
                if (*p == '\\' && p[1]) p++;
        }
        if (!closed) {
            unreadable = true;
            break;
        }
        if (secret_key(key, klen)) {
            buf_append(b, start, (size_t)(value - start));
            buf_puts(b, MASK);
        } else {
            buf_append(b, start, (size_t)(p - start));
        }
    }
    if (unreadable) buf_puts(b, " " MASK);
}

char *url_redact(const char *url)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, "");
    if (url == NULL) return buf_steal(&b);
    size_t prefix = uri_prefix(url);
    if (prefix)
        redact_uri(&b, url, prefix);
    else if (strchr(url, '=') != NULL)
        redact_keywords(&b, url);
    else
        buf_puts(&b, url); /* a database name */
    return buf_steal(&b);
}

/* A port list as libpq takes it: digits, commas and blanks. */
static bool port_ok(const char *v)
{
    for (; *v; v++)
        if (!isdigit((unsigned char)*v) && *v != ',' && !is_space(*v)) return false;
    return true;
}

bool conninfo_usable(const char *url)
{
    if (url == NULL || *url == '\0') return true;
    if (!uri_prefix(url) && strchr(url, '=') == NULL) return true; /* libpq reads it as a dbname */
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &err);
    if (err != NULL) PQfreemem(err); /* libpq's text: it may quote the URL */
    if (opts == NULL) return false;
    bool ok = true;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL) continue;
        if (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0)
            ok &= o->val[0] == '/' || strchr(o->val, '@') == NULL; /* a socket directory may hold one */
        else if (strcmp(o->keyword, "port") == 0)
            ok &= port_ok(o->val);
    }
    PQconninfoFree(opts);
    return ok;
}
