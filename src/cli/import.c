/* import.c — `sluice import`: reads pg_stat_statements, names the hottest statements and their
 * $n constants from what the SQL compares them with (a small lexer of PostgreSQL's syntax), checks
 * that each prepares, and writes them as sluice.query definitions. Synchronous libpq: a CLI tool. */
#include "import.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "buf.h"
#include "dbconnect.h"
#include "luastr.h"
#include "ownsql.h"
#include "sqlparam.h"
#include "util.h"

/* --- lexer --------------------------------------------------------------------------------------- */

enum tok_kind { TK_WORD, TK_QIDENT, TK_STRING, TK_NUMBER, TK_PARAM, TK_OP, TK_PUNCT };

struct tok {
    enum tok_kind kind;
    size_t start, end; /* bytes of the statement */
    int param;         /* TK_PARAM: n of $n */
};

struct lexed {
    const char *s;
    struct tok *v;
    int n;
};

static bool word_start(unsigned char c)
{
    return isalpha(c) || c == '_' || c >= 0x80;
}
static bool word_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}
static bool op_char(char c)
{
    return c && strchr("+-*/<>=~!@#%^&|`?", c) != NULL;
}

/* Index just past the literal or identifier quoted by q that opens at s[i], or 0. */
static size_t close_quote(const char *s, size_t len, size_t i, char q, bool backslashes)
{
    for (size_t j = i + 1; j < len; j++) {
        if (backslashes && s[j] == '\\') {
            j++;
        } else if (s[j] == q) {
            if (j + 1 < len && s[j + 1] == q)
                j++;
            else
                return j + 1;
        }
    }
    return 0;
}

/* Splits s into tokens, leaving out white space and comments. Returns 0, or -1 on an
 * unterminated literal, identifier, comment or dollar quote. */
static int lex(const char *s, struct lexed *out)
{
    size_t len = strlen(s), i = 0;
    int cap = 0;
    out->s = s;
    out->v = NULL;
    out->n = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        struct tok t = {TK_PUNCT, i, i + 1, 0};
        if (isspace(c)) {
            i++;
            continue;
        }
        if (c == '-' && s[i + 1] == '-') {
            while (i < len && s[i] != '\n') i++;
            continue;
        }
        if (c == '/' && s[i + 1] == '*') {
            int depth = 1;
            for (i += 2; i < len && depth > 0; i++) {
                if (s[i] == '/' && s[i + 1] == '*')
                    depth++, i++;
                else if (s[i] == '*' && s[i + 1] == '/')
                    depth--, i++;
            }
            if (depth > 0) return -1;
            continue;
        }
        if (c == '\'' || c == '"' || ((c == 'E' || c == 'e') && s[i + 1] == '\'')) {
            bool esc = c != '\'' && c != '"';
            size_t q = esc ? i + 1 : i;
            t.kind = c == '"' ? TK_QIDENT : TK_STRING;
            t.end = close_quote(s, len, q, s[q], esc);
            if (t.end == 0) return -1;
        } else if (c == '$' && isdigit((unsigned char)s[i + 1])) {
            t.kind = TK_PARAM;
            size_t j = i + 1;
            while (j < len && isdigit((unsigned char)s[j])) j++;
            t.end = j;
            t.param = atoi(s + i + 1);
        } else if (c == '$') {
            size_t j = i + 1;
            while (j < len && s[j] != '$' && (isalnum((unsigned char)s[j]) || s[j] == '_')) j++;
            if (j >= len || s[j] != '$') return -1;
            size_t tag = j - i + 1;
            const char *close = NULL;
            for (const char *p = s + j + 1; (p = strchr(p, '$')) != NULL; p++)
                if (strncmp(p, s + i, tag) == 0) {
                    close = p;
                    break;
                }
            if (close == NULL) return -1;
            t.kind = TK_STRING;
            t.end = (size_t)(close - s) + tag;
        } else if (word_start(c)) {
            size_t j = i;
            while (j < len && word_char((unsigned char)s[j])) j++;
            t.kind = TK_WORD;
            t.end = j;
            /* B'..', X'..', N'..' and U&'..' are literals too. */
            if (j == i + 1 && s[j] == '\'' && strchr("bBxXnN", c)) {
                t.kind = TK_STRING;
                t.end = close_quote(s, len, j, '\'', false);
            } else if (j == i + 1 && (c == 'u' || c == 'U') && s[j] == '&' &&
                       (s[j + 1] == '\'' || s[j + 1] == '"')) {
                t.kind = s[j + 1] == '"' ? TK_QIDENT : TK_STRING;
                t.end = close_quote(s, len, j + 1, s[j + 1], false);
            }
            if (t.end == 0) return -1;
        } else if (isdigit(c) || (c == '.' && isdigit((unsigned char)s[i + 1]))) {
            size_t j = i;
            while (j < len && (isalnum((unsigned char)s[j]) || s[j] == '.' || s[j] == '_' ||
                               ((s[j] == '+' || s[j] == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E'))))
                j++;
            t.kind = TK_NUMBER;
            t.end = j;
        } else if (c == ':' && s[i + 1] == ':') {
            t.kind = TK_OP;
            t.end = i + 2;
        } else if (op_char((char)c)) {
            size_t j = i;
            while (j < len && op_char(s[j]) && !(s[j] == '-' && s[j + 1] == '-') &&
                   !(s[j] == '/' && s[j + 1] == '*'))
                j++;
            t.kind = TK_OP;
            t.end = j;
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 64;
            out->v = xrealloc(out->v, (size_t)cap * sizeof *out->v);
        }
        out->v[out->n++] = t;
        i = t.end;
    }
    return 0;
}

/* --- reading tokens ---------------------------------------------------------------------------- */

static bool is_word(const struct lexed *lx, int k, const char *w)
{
    if (k < 0 || k >= lx->n || lx->v[k].kind != TK_WORD) return false;
    size_t n = lx->v[k].end - lx->v[k].start;
    return strlen(w) == n && strncasecmp(lx->s + lx->v[k].start, w, n) == 0;
}

static bool is_tok(const struct lexed *lx, int k, enum tok_kind kind, const char *text)
{
    if (k < 0 || k >= lx->n || lx->v[k].kind != kind) return false;
    size_t n = lx->v[k].end - lx->v[k].start;
    return strlen(text) == n && memcmp(lx->s + lx->v[k].start, text, n) == 0;
}

static bool word_in(const struct lexed *lx, int k, const char *const *words)
{
    for (; *words; words++)
        if (is_word(lx, k, *words)) return true;
    return false;
}

/* Key words that are never the column a $n is compared with. */
static const char *const reserved[] = {"all",
                                       "and",
                                       "any",
                                       "array",
                                       "as",
                                       "between",
                                       "by",
                                       "case",
                                       "current_date",
                                       "current_time",
                                       "current_timestamp",
                                       "current_user",
                                       "distinct",
                                       "else",
                                       "end",
                                       "exists",
                                       "false",
                                       "from",
                                       "having",
                                       "ilike",
                                       "in",
                                       "is",
                                       "like",
                                       "limit",
                                       "localtime",
                                       "localtimestamp",
                                       "not",
                                       "null",
                                       "offset",
                                       "on",
                                       "or",
                                       "returning",
                                       "row",
                                       "select",
                                       "session_user",
                                       "set",
                                       "some",
                                       "then",
                                       "to",
                                       "true",
                                       "user",
                                       "using",
                                       "values",
                                       "when",
                                       "where",
                                       NULL};

/* Type names that may open a typed literal: `interval '1 day'` is stored as `interval $1`. */
static const char *const literal_types[] = {
    "bigint",      "bit",     "bool",     "boolean",  "box",      "bpchar",   "bytea",   "char",  "cidr",
    "circle",      "date",    "decimal",  "float4",   "float8",   "inet",     "int",     "int2",  "int4",
    "int8",        "integer", "interval", "json",     "jsonb",    "line",     "macaddr", "money", "name",
    "numeric",     "oid",     "point",    "real",     "regclass", "smallint", "text",    "time",  "timestamp",
    "timestamptz", "timetz",  "tsquery",  "tsvector", "uuid",     "varbit",   "varchar", "xml",   NULL};

/* Index of the column token that ends at k (skipping ::casts after it), or -1. */
static int column_at(const struct lexed *lx, int k)
{
    while (k >= 2 && is_tok(lx, k - 1, TK_OP, "::")) k -= 2;
    if (k < 0) return -1;
    if (lx->v[k].kind == TK_QIDENT) return k;
    if (lx->v[k].kind == TK_WORD && !word_in(lx, k, reserved)) return k;
    return -1;
}

/* A lower-case name made of [a-z0-9_] from a column token; NULL when nothing is left. */
static char *token_name(const struct lexed *lx, int k)
{
    const struct tok *t = &lx->v[k];
    struct buf b = BUF_INIT;
    for (size_t i = t->start; i < t->end; i++) {
        unsigned char c = (unsigned char)lx->s[i];
        if (t->kind == TK_QIDENT && (i == t->start || i + 1 == t->end)) continue;
        if (isalnum(c))
            buf_putc(&b, (char)tolower(c));
        else if (b.len > 0 && b.data[b.len - 1] != '_')
            buf_putc(&b, '_');
    }
    while (b.len > 0 && b.data[b.len - 1] == '_') b.data[--b.len] = '\0';
    if (b.len == 0) {
        buf_free(&b);
        return NULL;
    }
    if (isdigit((unsigned char)b.data[0])) {
        char *s = buf_steal(&b);
        buf_puts(&b, "c_");
        buf_puts(&b, s);
        free(s);
    }
    return buf_steal(&b);
}

enum bound { B_EQ, B_LOWER, B_UPPER };

/* The bound a comparison operator at k puts on the column to its left, or -1 when k is none. */
static int comparison(const struct lexed *lx, int k)
{
    static const struct {
        const char *op;
        enum bound b;
    } ops[] = {{"=", B_EQ},     {"<>", B_EQ},   {"!=", B_EQ},   {"<", B_UPPER},
               {"<=", B_UPPER}, {">", B_LOWER}, {">=", B_LOWER}};
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
        if (is_tok(lx, k, TK_OP, ops[i].op)) return (int)ops[i].b;
    if (is_word(lx, k, "like") || is_word(lx, k, "ilike")) return B_EQ;
    return -1;
}

/* The column left of the word at k (LIKE, BETWEEN, IN, ...), skipping a NOT; -1 when none. */
static int column_left_of(const struct lexed *lx, int k)
{
    k--;
    if (is_word(lx, k, "not")) k--;
    return column_at(lx, k);
}

/* --- converting one statement -------------------------------------------------------------------- */

/* What the statement says about one $n. */
struct pinfo {
    char *base; /* the column (or "limit"), or NULL */
    enum bound bound;
    bool in_where; /* after the main WHERE: a compared column names the query ("_by_col") */
    bool compared; /* base is a column the $n is compared with (not LIMIT, OFFSET, VALUES) */
    bool seen;
};

enum frame_kind { F_PLAIN, F_IN_LIST, F_VALUES };

struct frame {
    enum frame_kind kind;
    int column; /* F_IN_LIST: the column token */
    int elem;   /* F_VALUES: the position in the tuple */
};

/* Where the main statement's verb is (after a WITH's common table expressions): its token index. */
static int main_verb(const struct lexed *lx)
{
    static const char *const verbs[] = {"select", "insert", "update", "delete", NULL};
    int depth = 0;
    for (int k = 0; k < lx->n; k++) {
        if (is_tok(lx, k, TK_PUNCT, "("))
            depth++;
        else if (is_tok(lx, k, TK_PUNCT, ")"))
            depth--;
        else if (depth == 0 && word_in(lx, k, verbs))
            return k;
    }
    return -1;
}

/* The first token at depth 0 from `from` on that is the word w, or -1. */
static int find_top(const struct lexed *lx, int from, const char *w)
{
    int depth = 0;
    for (int k = from; k < lx->n; k++) {
        if (is_tok(lx, k, TK_PUNCT, "("))
            depth++;
        else if (is_tok(lx, k, TK_PUNCT, ")"))
            depth--;
        else if (depth == 0 && is_word(lx, k, w))
            return k;
    }
    return -1;
}

/* The last part of the (maybe qualified) relation name starting at k, or -1. */
static int relation_at(const struct lexed *lx, int k)
{
    if (is_word(lx, k, "only")) k++;
    if (k >= lx->n || (lx->v[k].kind != TK_WORD && lx->v[k].kind != TK_QIDENT)) return -1;
    while (is_tok(lx, k + 1, TK_PUNCT, ".") && k + 2 < lx->n &&
           (lx->v[k + 2].kind == TK_WORD || lx->v[k + 2].kind == TK_QIDENT))
        k += 2;
    return k;
}

/* INSERT INTO t (a, b): the column tokens, in order. */
static int insert_columns(const struct lexed *lx, int verb, int **cols)
{
    *cols = NULL;
    if (!is_word(lx, verb, "insert") || !is_word(lx, verb + 1, "into")) return 0;
    int k = relation_at(lx, verb + 2);
    if (k < 0) return 0;
    k++;
    if (is_word(lx, k, "as")) k += 2;
    if (!is_tok(lx, k, TK_PUNCT, "(")) return 0;
    int n = 0;
    *cols = xcalloc((size_t)lx->n, sizeof **cols);
    for (k++; k < lx->n && !is_tok(lx, k, TK_PUNCT, ")"); k++)
        if (lx->v[k].kind == TK_WORD || lx->v[k].kind == TK_QIDENT) (*cols)[n++] = k;
    return n;
}

/* Fills info[$n] for the $n at k from the tokens around it. */
static void classify(const struct lexed *lx, int k, const struct frame *top, const int *cols, int ncols,
                     struct pinfo *p)
{
    int col = -1, b;
    enum bound bound = B_EQ;
    bool first_in_tuple = is_tok(lx, k - 1, TK_PUNCT, "(") || is_tok(lx, k - 1, TK_PUNCT, ",");
    bool last_in_tuple = is_tok(lx, k + 1, TK_PUNCT, ")") || is_tok(lx, k + 1, TK_PUNCT, ",") ||
                         is_tok(lx, k + 1, TK_OP, "::");
    if ((b = comparison(lx, k - 1)) >= 0) {
        col = column_left_of(lx, k - 1); /* col NOT LIKE $1: the NOT is skipped */
        bound = (enum bound)b;
    } else if (is_tok(lx, k - 1, TK_PUNCT, "(") && (is_word(lx, k - 2, "any") || is_word(lx, k - 2, "all")) &&
               (b = comparison(lx, k - 3)) >= 0) {
        col = column_at(lx, k - 4);
        bound = (enum bound)b;
    } else if (top && top->kind == F_IN_LIST && first_in_tuple && last_in_tuple) {
        col = top->column;
    } else if (top && top->kind == F_VALUES && first_in_tuple && last_in_tuple) {
        col = top->elem < ncols ? cols[top->elem] : -1;
    } else if (is_word(lx, k - 1, "between") ||
               (is_word(lx, k - 1, "symmetric") && is_word(lx, k - 2, "between"))) {
        col = column_left_of(lx, is_word(lx, k - 1, "between") ? k - 1 : k - 2);
        bound = B_LOWER;
    } else if (is_word(lx, k - 1, "and") && k >= 3 &&
               (lx->v[k - 2].kind == TK_PARAM || lx->v[k - 2].kind == TK_NUMBER) &&
               (is_word(lx, k - 3, "between") || is_word(lx, k - 3, "symmetric"))) {
        col = column_left_of(lx, is_word(lx, k - 3, "between") ? k - 3 : k - 4);
        bound = B_UPPER;
    } else if (is_word(lx, k - 1, "limit") || is_word(lx, k - 1, "first") || is_word(lx, k - 1, "next")) {
        p->base = xstrdup("limit");
        return;
    } else if (is_word(lx, k - 1, "offset")) {
        p->base = xstrdup("offset");
        return;
    } else if ((b = comparison(lx, k + 1)) >= 0 && k + 2 < lx->n && !is_tok(lx, k + 3, TK_PUNCT, "(")) {
        /* $1 < col: the column is on the right, the bound reversed. */
        int c = k + 2;
        while (is_tok(lx, c + 1, TK_PUNCT, ".") && c + 2 < lx->n) c += 2;
        col = column_at(lx, c);
        bound = b == B_LOWER ? B_UPPER : b == B_UPPER ? B_LOWER : B_EQ;
    }
    if (col >= 0) {
        p->base = token_name(lx, col);
        p->bound = bound;
        p->compared = !(top && top->kind == F_VALUES && first_in_tuple && last_in_tuple);
    }
}

/* When the $n at k is the value of a typed literal (`interval $1`, `timestamp with time zone
 * $1`), returns the index of the type's first token, else -1. */
static int typed_literal(const struct lexed *lx, int k)
{
    int t = k - 1;
    if (t < 0 || lx->v[t].kind != TK_WORD || is_tok(lx, t - 1, TK_PUNCT, ".")) return -1;
    if (is_word(lx, t, "zone") && is_word(lx, t - 1, "time") &&
        (is_word(lx, t - 2, "with") || is_word(lx, t - 2, "without")) &&
        (is_word(lx, t - 3, "timestamp") || is_word(lx, t - 3, "time")))
        return t - 3;
    if (is_word(lx, t, "precision") && is_word(lx, t - 1, "double")) return t - 1;
    if (is_word(lx, t, "varying") && is_word(lx, t - 1, "character")) return t - 1;
    return word_in(lx, t, literal_types) ? t : -1;
}

/* Final names: a column used by one $n is its name; several get _min / _max by bound, or _2, _3;
 * the rest p<n>; and every name unique. */
static char **final_names(struct pinfo *info, int maxn)
{
    char **names = xcalloc((size_t)maxn + 1, sizeof *names);
    for (int n = 1; n <= maxn; n++) {
        if (!info[n].seen) continue;
        char tmp[160];
        if (info[n].base == NULL) {
            snprintf(tmp, sizeof tmp, "p%d", n);
        } else {
            int uses = 0, eq_before = 0;
            for (int m = 1; m <= maxn; m++) {
                if (!info[m].seen || info[m].base == NULL || strcmp(info[m].base, info[n].base) != 0)
                    continue;
                uses++;
                if (m < n && info[m].bound == B_EQ) eq_before++;
            }
            if (uses == 1 || (info[n].bound == B_EQ && eq_before == 0))
                snprintf(tmp, sizeof tmp, "%.140s", info[n].base);
            else if (info[n].bound == B_EQ)
                snprintf(tmp, sizeof tmp, "%.140s_%d", info[n].base, eq_before + 1);
            else
                snprintf(tmp, sizeof tmp, "%.140s_%s", info[n].base,
                         info[n].bound == B_LOWER ? "min" : "max");
        }
        char name[180];
        snprintf(name, sizeof name, "%s", tmp);
        for (int suffix = 2;; suffix++) {
            bool taken = false;
            for (int m = 1; m < n && !taken; m++) taken = names[m] && strcmp(names[m], name) == 0;
            if (!taken) break;
            snprintf(name, sizeof name, "%s_%d", tmp, suffix);
        }
        names[n] = xstrdup(name);
    }
    return names;
}

/* verb_table[_by_a_b_c] from the main verb, its relation and the columns the WHERE compares. */
static char *query_name(const struct lexed *lx, int verb, const struct pinfo *info, int maxn)
{
    struct buf b = BUF_INIT;
    for (size_t i = lx->v[verb].start; i < lx->v[verb].end; i++)
        buf_putc(&b, (char)tolower((unsigned char)lx->s[i]));
    int rel = -1;
    if (is_word(lx, verb, "select")) {
        int from = find_top(lx, verb, "from");
        if (from >= 0) rel = relation_at(lx, from + 1);
    } else if (is_word(lx, verb, "insert") || is_word(lx, verb, "delete")) {
        rel = relation_at(lx, verb + 2);
    } else {
        rel = relation_at(lx, verb + 1);
    }
    if (rel < 0) /* no relation: the first function called, as in select_now */
        for (int k = verb + 1; k + 1 < lx->n && rel < 0; k++)
            if (lx->v[k].kind == TK_WORD && is_tok(lx, k + 1, TK_PUNCT, "(")) rel = k;
    char *table = rel >= 0 ? token_name(lx, rel) : NULL;
    if (table) {
        buf_printf(&b, "_%s", table);
        free(table);
    }
    int by = 0;
    for (int n = 1; n <= maxn && by < 3; n++) {
        if (!info[n].seen || !info[n].in_where || !info[n].compared || info[n].base == NULL) continue;
        bool dup = false;
        for (int m = 1; m < n && !dup; m++)
            dup = info[m].seen && info[m].in_where && info[m].compared && info[m].base &&
                  strcmp(info[m].base, info[n].base) == 0;
        if (dup) continue;
        buf_printf(&b, "%s%s", by++ ? "_" : "_by_", info[n].base);
    }
    if (b.len > 60) b.data[b.len = 60] = '\0';
    while (b.len > 0 && b.data[b.len - 1] == '_') b.data[--b.len] = '\0';
    return buf_steal(&b);
}

static bool writes_or_locks(const struct lexed *lx)
{
    static const char *const writers[] = {"insert",  "update", "delete", "merge",
                                          "nextval", "setval", "into",   NULL};
    for (int k = 0; k < lx->n; k++) {
        if (word_in(lx, k, writers)) return true;
        if (is_word(lx, k, "for") &&
            (is_word(lx, k + 1, "share") || is_word(lx, k + 1, "no") || is_word(lx, k + 1, "key")))
            return true;
    }
    return false;
}

int import_convert(const char *statement, struct import_query *out)
{
    memset(out, 0, sizeof *out);
    struct lexed lx;
    if (lex(statement, &lx) != 0 || lx.n == 0) {
        free(lx.v);
        return -1;
    }
    static const char *const dml[] = {"select", "insert", "update", "delete", "with", NULL};
    int verb = main_verb(&lx);
    if (!word_in(&lx, 0, dml) || verb < 0) {
        free(lx.v);
        return -1;
    }
    int maxn = 0;
    for (int k = 0; k < lx.n; k++) {
        if (lx.v[k].kind != TK_PARAM) continue;
        if (lx.v[k].param < 1 || lx.v[k].param > 65535) { /* not what pg_stat_statements writes */
            free(lx.v);
            return -1;
        }
        if (lx.v[k].param > maxn) maxn = lx.v[k].param;
    }
    struct pinfo *info = xcalloc((size_t)maxn + 1, sizeof *info);
    bool *typed = xcalloc((size_t)lx.n, sizeof *typed);
    int *cols;
    int ncols = insert_columns(&lx, verb, &cols);
    int where = find_top(&lx, verb, "where");

    /* One pass: parentheses (IN lists, VALUES tuples) and what each $n is compared with. */
    struct frame *stack = xcalloc((size_t)lx.n + 1, sizeof *stack);
    int depth = 0, values_depth = -1;
    for (int k = 0; k < lx.n; k++) {
        struct frame *top = depth > 0 ? &stack[depth - 1] : NULL;
        if (is_tok(&lx, k, TK_PUNCT, "(")) {
            struct frame f = {F_PLAIN, -1, 0};
            if (is_word(&lx, k - 1, "in")) {
                f.kind = F_IN_LIST;
                f.column = column_left_of(&lx, k - 1);
                if (f.column < 0) f.kind = F_PLAIN;
            } else if (depth == values_depth) {
                f.kind = F_VALUES;
            }
            stack[depth++] = f;
        } else if (is_tok(&lx, k, TK_PUNCT, ")")) {
            if (depth > 0) depth--;
        } else if (is_tok(&lx, k, TK_PUNCT, ",")) {
            if (top) top->elem++;
        } else if (is_word(&lx, k, "values")) {
            values_depth = depth;
        } else if (depth == values_depth) {
            values_depth = -1; /* ON CONFLICT, RETURNING, ... */
        }
        if (lx.v[k].kind != TK_PARAM) continue;
        int n = lx.v[k].param;
        typed[k] = typed_literal(&lx, k) >= 0;
        if (info[n].seen) continue;
        info[n].seen = true;
        info[n].in_where = where >= 0 && k > where;
        if (!typed[k]) classify(&lx, k, top, cols, ncols, &info[n]);
    }
    free(stack);
    free(cols);

    char **names = final_names(info, maxn);
    struct buf sql = BUF_INIT;
    size_t *out_at = xcalloc((size_t)lx.n, sizeof *out_at);
    size_t copied = 0;
    for (int k = 0; k < lx.n; k++) {
        buf_append(&sql, statement + copied, lx.v[k].start - copied);
        out_at[k] = sql.len;
        copied = lx.v[k].end;
        if (lx.v[k].kind != TK_PARAM) {
            buf_append(&sql, statement + lx.v[k].start, lx.v[k].end - lx.v[k].start);
            continue;
        }
        const char *name = names[lx.v[k].param];
        int type_at = typed[k] ? typed_literal(&lx, k) : -1;
        if (type_at >= 0) {
            /* interval $1 -> CAST(:p1 AS interval) */
            sql.len = out_at[type_at];
            buf_printf(&sql, "CAST(:%s AS %.*s)", name, (int)(lx.v[k - 1].end - lx.v[type_at].start),
                       statement + lx.v[type_at].start);
        } else {
            buf_printf(&sql, ":%s", name);
        }
    }
    /* Trailing white space and semicolons go. */
    while (sql.len > 0 && (isspace((unsigned char)sql.data[sql.len - 1]) || sql.data[sql.len - 1] == ';'))
        sql.data[--sql.len] = '\0';

    out->sql = buf_steal(&sql);
    out->name = query_name(&lx, verb, info, maxn);
    out->readonly = is_word(&lx, verb, "select") && !writes_or_locks(&lx);
    out->nparams = maxn;
    out->params = xcalloc((size_t)maxn + 1, sizeof *out->params);
    for (int n = 1; n <= maxn; n++) out->params[n - 1] = names[n];
    free(names);
    for (int n = 1; n <= maxn; n++) free(info[n].base);
    free(info);
    free(typed);
    free(out_at);
    free(lx.v);
    return 0;
}

/* An identifier as the server reads it: an unquoted word folded to lower case, a quoted one
 * without its quotes and with "" as one ". Returns a malloc'd string. */
static char *identifier(const struct lexed *lx, int k)
{
    const struct tok *t = &lx->v[k];
    struct buf b = BUF_INIT;
    if (t->kind == TK_QIDENT) {
        for (size_t i = t->start + 1; i + 1 < t->end; i++) {
            buf_putc(&b, lx->s[i]);
            if (lx->s[i] == '"') i++;
        }
    } else {
        for (size_t i = t->start; i < t->end; i++) buf_putc(&b, (char)tolower((unsigned char)lx->s[i]));
    }
    if (b.len == 0) {
        buf_free(&b);
        return xstrdup("");
    }
    return buf_steal(&b);
}

int import_calls(const char *statement, struct import_call **out)
{
    *out = NULL;
    struct lexed lx;
    if (lex(statement, &lx) != 0) {
        free(lx.v);
        return -1;
    }
    int n = 0;
    for (int k = 0; k + 1 < lx.n; k++) {
        bool ident = lx.v[k].kind == TK_WORD || lx.v[k].kind == TK_QIDENT;
        if (!ident || !is_tok(&lx, k + 1, TK_PUNCT, "(")) continue;
        struct import_call c = {NULL, identifier(&lx, k)};
        if (k >= 2 && is_tok(&lx, k - 1, TK_PUNCT, ".") &&
            (lx.v[k - 2].kind == TK_WORD || lx.v[k - 2].kind == TK_QIDENT))
            c.schema = identifier(&lx, k - 2);
        *out = xrealloc(*out, (size_t)(n + 1) * sizeof **out);
        (*out)[n++] = c;
    }
    free(lx.v);
    return n;
}

void import_calls_free(struct import_call *calls, int n)
{
    for (int i = 0; i < n; i++) {
        free(calls[i].schema);
        free(calls[i].name);
    }
    free(calls);
}

void import_query_free(struct import_query *q)
{
    if (q == NULL) return;
    free(q->name);
    free(q->sql);
    for (int i = 0; i < q->nparams; i++) free(q->params[i]);
    free(q->params);
    memset(q, 0, sizeof *q);
}

/* True when the statement is about the system catalogs (pg_* relations, information_schema,
 * pg_stat* functions) or sluice's own bookkeeping: not the service's SQL. Other pg_* function
 * calls, such as pg_advisory_lock(), are the service's own. */
static bool about_catalogs(const char *statement)
{
    struct lexed lx;
    if (lex(statement, &lx) != 0) return true;
    bool found = false;
    for (int k = 0; k < lx.n && !found; k++) {
        if (lx.v[k].kind != TK_WORD) continue;
        const char *w = lx.s + lx.v[k].start;
        size_t n = lx.v[k].end - lx.v[k].start;
        if (n > 3 && strncasecmp(w, "pg_", 3) == 0 &&
            (!is_tok(&lx, k + 1, TK_PUNCT, "(") || (n > 7 && strncasecmp(w, "pg_stat", 7) == 0)))
            found = true;
        if (is_word(&lx, k, "information_schema") || is_word(&lx, k, "sluice_migrations") ||
            is_word(&lx, k, "sluice_bulk_stage"))
            found = true;
    }
    free(lx.v);
    return found;
}

/* --- the command --------------------------------------------------------------------------------- */

/* True when the statement calls a volatile function (pg_proc.provolatile 'v'): one that may write
 * or take a lock, such as pg_advisory_lock() or nextval(), or whose answer changes at each call.
 * Any overload of the name counts, in the written schema or any schema when unqualified; a
 * lookup that fails counts too. Such a statement is not readonly. */
static bool calls_volatile(PGconn *pg, const char *statement)
{
    struct import_call *calls;
    int n = import_calls(statement, &calls);
    if (n < 0) return true;
    bool found = false;
    for (int i = 0; i < n && !found; i++) {
        const char *values[2] = {calls[i].name, calls[i].schema};
        PGresult *r =
            PQexecParams(pg,
                         "SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n"
                         " ON n.oid = p.pronamespace WHERE p.proname = $1"
                         " AND ($2::text IS NULL OR n.nspname = $2) AND p.provolatile = 'v' LIMIT 1",
                         2, NULL, values, NULL, NULL, 0);
        found = PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) > 0;
        PQclear(r);
    }
    import_calls_free(calls, n);
    return found;
}

/* A statement as written: its query and what pg_stat_statements counted. */
struct imported {
    struct import_query q;
    long long calls, rows;
    double total_ms;
};

static void one_line(struct buf *b, const char *s, size_t max)
{
    size_t start = b->len;
    bool space = false;
    for (; *s && b->len - start < max; s++) {
        if (isspace((unsigned char)*s)) {
            space = b->len > start;
            continue;
        }
        if (space) buf_putc(b, ' ');
        space = false;
        buf_putc(b, *s);
    }
    if (*s) buf_puts(b, " ...");
}

/* Prepares q's SQL as sluice would (after the :name rewrite) inside a rolled-back transaction.
 * Returns NULL when it prepares, else the reason (malloc'd). */
static char *try_prepare(PGconn *pg, const struct import_query *q)
{
    struct sqlparams sp;
    char err[256];
    if (sqlparam_rewrite(q->sql, &sp, err, sizeof err) != 0) return xstrdup(err);
    int named = 0;
    for (int i = 0; i < q->nparams; i++) named += q->params[i] != NULL;
    char *why = NULL;
    if (sp.count != named) {
        why = xstrdup("a :word in the statement would be read as a placeholder");
    } else {
        PQclear(PQexec(pg, "BEGIN"));
        PGresult *r = PQprepare(pg, "", sp.sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
            why = xstrdup(m ? m : PQerrorMessage(pg));
        }
        PQclear(r);
        PQclear(PQexec(pg, "ROLLBACK"));
    }
    sqlparam_free(&sp);
    return why;
}

void import_write_query(struct buf *b, const struct import_query *q, long long calls, double total_ms,
                        long long rows)
{
    double mean = calls > 0 ? total_ms / (double)calls : 0;
    buf_printf(b, "\n-- %lld calls, mean %.3f ms, total %.1f ms, %lld rows\n", calls, mean, total_ms, rows);
    buf_puts(b, "sluice.query ");
    luastr_quote(b, q->name, strlen(q->name));
    buf_puts(b, " {\n  sql = ");
    luastr_text(b, q->sql, strlen(q->sql));
    buf_puts(b, ",\n");
    if (q->readonly) buf_puts(b, "  readonly = true,\n");
    buf_puts(b, "}\n");
}

void import_write_left(struct buf *b, const char *why, const char *statement)
{
    struct buf line = BUF_INIT;
    buf_printf(&line, "  %s: ", why);
    one_line(&line, statement, 160);
    luastr_comment(b, line.data, line.len);
    buf_free(&line);
}

int import_run(const struct config *cfg, int top, const char *output)
{
    const struct pool_config *pc = config_pool(cfg, "primary");
    if (pc == NULL) pc = &cfg->pools[0];
    char why[512];
    PGconn *pg = dbconnect(pc->url, "sluice-import", 10, why, sizeof why);
    if (pg == NULL) {
        fprintf(stderr, "import: pool %s: cannot connect: %s\n", pc->name, why);
        return 1;
    }
    const char *db = PQdb(pg);
    PGresult *r = PQexec(pg, "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
        fprintf(stderr,
                "import: the pg_stat_statements extension is not installed in database \"%s\".\n"
                "  Run CREATE EXTENSION pg_stat_statements; in it (the server must also have\n"
                "  shared_preload_libraries = 'pg_stat_statements'), let the service run, then import.\n",
                db);
        PQclear(r);
        PQfinish(pg);
        return 1;
    }
    PQclear(r);
    bool pg13 = PQserverVersion(pg) >= 130000;
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT query, sum(calls)::bigint, sum(%s)::float8, sum(rows)::bigint FROM pg_stat_statements"
             " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
             " GROUP BY query ORDER BY 3 DESC",
             pg13 ? "total_exec_time" : "total_time");
    r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        fprintf(stderr, "import: cannot read pg_stat_statements: %s\n", m ? m : PQerrorMessage(pg));
        PQclear(r);
        PQfinish(pg);
        return 1;
    }

    struct imported *kept = xcalloc((size_t)top, sizeof *kept);
    int nkept = 0, nutility = 0;
    struct buf left = BUF_INIT; /* statements that did not prepare, as comment lines */
    int nleft = 0;
    for (int i = 0; i < PQntuples(r) && nkept < top; i++) {
        const char *text = PQgetvalue(r, i, 0);
        struct imported im = {.calls = atoll(PQgetvalue(r, i, 1)),
                              .total_ms = atof(PQgetvalue(r, i, 2)),
                              .rows = atoll(PQgetvalue(r, i, 3))};
        if (import_convert(text, &im.q) != 0) {
            nutility++;
            continue;
        }
        if (about_catalogs(text) || strstr(text, OWN_SQL_MARK) != NULL) { /* not the service's SQL */
            import_query_free(&im.q);
            continue;
        }
        char *why = try_prepare(pg, &im.q);
        if (why == NULL && im.q.readonly && calls_volatile(pg, text)) im.q.readonly = false;
        if (why != NULL) {
            if (nleft++ < top) import_write_left(&left, why, text);
            free(why);
            import_query_free(&im.q);
            continue;
        }
        /* Unique names: select_quotes_by_pair, select_quotes_by_pair_2, ... */
        char *base = im.q.name;
        for (int n = 2;; n++) {
            bool taken = false;
            for (int k = 0; k < nkept && !taken; k++) taken = strcmp(kept[k].q.name, im.q.name) == 0;
            if (!taken) break;
            if (im.q.name != base) free(im.q.name);
            struct buf nb = BUF_INIT;
            buf_printf(&nb, "%s_%d", base, n);
            im.q.name = buf_steal(&nb);
        }
        if (im.q.name != base) free(base);
        kept[nkept++] = im;
    }
    PQclear(r);
    char *dbname = xstrdup(db ? db : "?");
    PQfinish(pg);

    struct buf out = BUF_INIT;
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    /* The database's name may hold anything, line breaks included: one escaped comment line. */
    struct buf first = BUF_INIT;
    buf_printf(&first, "Named queries imported by `sluice import` from pg_stat_statements of database \"%s\"",
               dbname);
    luastr_comment(&out, first.data, first.len);
    buf_free(&first);
    buf_printf(&out,
               "-- on %s: the %d statements with the most total execution time (utility statements\n"
               "-- and catalog queries left out). Constants became parameters; each statement prepared.\n"
               "-- Rename the queries as you like, set single = true where one row is expected, and add\n"
               "-- route aliases; clients call them at GET|POST /query/{name}.\n",
               when, nkept);
    for (int i = 0; i < nkept; i++)
        import_write_query(&out, &kept[i].q, kept[i].calls, kept[i].total_ms, kept[i].rows);
    if (nleft > 0) {
        buf_printf(&out, "\n-- Left out: %d statement%s that did not prepare as named queries:\n", nleft,
                   nleft == 1 ? "" : "s");
        buf_append(&out, left.data, left.len);
    }

    int rc = 0;
    bool to_stdout = output == NULL || strcmp(output, "-") == 0;
    FILE *f = to_stdout ? stdout : fopen(output, "w");
    if (f == NULL || fwrite(out.data, 1, out.len, f) != out.len || (!to_stdout && fclose(f) != 0) ||
        (to_stdout && fflush(f) != 0)) {
        fprintf(stderr, "import: cannot write %s\n", to_stdout ? "to stdout" : output);
        rc = 1;
    } else {
        fprintf(
            stderr,
            "import: %d named queries written to %s; %d statements left out (did not prepare), %d utility\n",
            nkept, to_stdout ? "stdout" : output, nleft, nutility);
    }
    for (int i = 0; i < nkept; i++) import_query_free(&kept[i].q);
    free(kept);
    free(dbname);
    buf_free(&left);
    buf_free(&out);
    return rc;
}
