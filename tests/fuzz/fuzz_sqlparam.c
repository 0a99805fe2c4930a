/* fuzz_sqlparam.c — libFuzzer target: arbitrary SQL text through sqlparam_rewrite (:name -> $n).
 * Beyond crashes it checks the rewrite's contract: the output is the input with each placeholder
 * ":name" replaced by "$k" and nothing else changed, names[k-1] is that name, numbers are given in
 * order of first appearance, every name is used; a failure leaves *out empty with a message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlparam.h"

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_sqlparam: check failed: %s (line %d)\n", #cond, __LINE__);                 \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static int is_name_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_char(unsigned char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Walks input and output together: where they differ, the input must hold ":name" and the output
 * "$k" with names[k-1] == name. Placeholders start with ':' and their replacement with '$', so
 * the first difference is always the start of one. */
static void check_rewrite(const char *in, const struct sqlparams *p)
{
    const char *a = in, *b = p->sql;
    int next_new = 1; /* numbers appear in order of first use */
    char *used = calloc((size_t)p->count + 1, 1);
    CHECK(used != NULL);
    while (*a || *b) {
        if (*a == *b) {
            a++, b++;
            continue;
        }
        CHECK(*a == ':' && is_name_start((unsigned char)a[1]));
        CHECK(*b == '$' && b[1] >= '1' && b[1] <= '9');
        const char *name = a + 1;
        size_t n = 0;
        while (is_name_char((unsigned char)name[n])) n++;
        char *end;
        long k = strtol(b + 1, &end, 10);
        CHECK(k >= 1 && k <= p->count);
        CHECK(strlen(p->names[k - 1]) == n && memcmp(p->names[k - 1], name, n) == 0);
        if (!used[k]) {
            CHECK(k == next_new);
            next_new++;
            used[k] = 1;
        }
        a = name + n;
        b = end;
    }
    CHECK(next_new == p->count + 1); /* every name was used */
    free(used);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *sql = malloc(size + 1);
    CHECK(sql != NULL);
    memcpy(sql, data, size);
    sql[size] = '\0';

    struct sqlparams p;
    char err[256];
    err[0] = '\0';
    memset(&p, 0x5a, sizeof p); /* the rewrite must set every field itself */
    int rc = sqlparam_rewrite(sql, &p, err, sizeof err);
    if (rc == 0) {
        CHECK(p.sql != NULL);
        CHECK(p.count >= 0 && p.count <= 65535);
        CHECK(p.count == 0 || p.names != NULL);
        for (int i = 0; i < p.count; i++) {
            CHECK(p.names[i] != NULL && is_name_start((unsigned char)p.names[i][0]));
            for (int j = 0; j < i; j++) CHECK(strcmp(p.names[i], p.names[j]) != 0);
        }
        check_rewrite(sql, &p);
    } else {
        CHECK(rc == -1);
        CHECK(err[0] != '\0');
        CHECK(p.sql == NULL && p.names == NULL && p.count == 0);
    }
    sqlparam_free(&p);
    CHECK(p.sql == NULL && p.names == NULL && p.count == 0);
    free(sql);
    return 0;
}
