/* sqlparam.h — rewrites :name placeholders in a named query's SQL to $1..$n. */
#ifndef SLUICE_SQLPARAM_H
#define SLUICE_SQLPARAM_H

struct sqlparams {
    char *sql;    /* the rewritten SQL */
    char **names; /* names[i] is the name bound to $(i+1), in order of first appearance */
    int count;
};

/* Rewrites sql. A name seen twice gets the same $n. Not fooled by ::casts, '..' / E'..' literals,
 * "quoted identifiers", -- and nested block comments, $tag$ dollar-quoted bodies.
 * Returns 0 and fills *out (free with sqlparam_free), or -1 with a message in err
 * (e.g. an unterminated literal, or a positional $n placeholder). */
int sqlparam_rewrite(const char *sql, struct sqlparams *out, char *err, unsigned errlen);
void sqlparam_free(struct sqlparams *p);

#endif
