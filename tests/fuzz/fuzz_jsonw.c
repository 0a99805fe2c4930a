/* fuzz_jsonw.c — libFuzzer target: arbitrary bytes as the text-format value of a column through
 * jsonw_value. Input: byte 0 picks the type OID (every type jsonw or pgtype knows, their arrays
 * and unknown ones), the rest is the value. Whatever the bytes, the output must be one valid JSON
 * value (json and jsonb excepted: their text is trusted), appended after what the buffer held;
 * text comes back unchanged when it is valid UTF-8, numbers as written, bytea hex as its bytes. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jsonw.h"
#include "pgjson.h"
#include "pgtype.h"
#include "util.h"

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_jsonw: check failed: %s (line %d)\n", #cond, __LINE__);                    \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static const Oid oids[] = {
    16,   17,   18,   19,   20,   21,   23,   25,   26,   114,         700,  701,  1042, 1043,
    1082, 1083, 1114, 1184, 1186, 1266, 1700, 2950, 3802, 142,         650,  774,  790,  829,
    869,  1560, 1562, 1000, 1001, 1002, 1003, 1005, 1007, 1009,        1014, 1015, 1016, 1021,
    1022, 1028, 1182, 1183, 1115, 1185, 1187, 1231, 2951, 199,         3807, 1270, 143,  651,
    775,  791,  1040, 1041, 1561, 1563, 0,    705,  2249, 4000000000u,
};

static const char PREFIX[] = "{\"a\":"; /* what the row writer has put before the value */

static bool is_json_type(Oid t)
{
    return t == PGT_JSON || t == PGT_JSONB || t == 199 || t == 3807;
}

/* True when s is bytea hex output: "\x" and pairs of hex digits. */
static bool is_bytea_hex(const char *s, size_t n)
{
    if (n < 2 || s[0] != '\\' || s[1] != 'x' || n % 2 != 0) return false;
    for (size_t i = 2; i < n; i++)
        if (hex_digit(s[i]) < 0) return false;
    return true;
}

/* The JSON string of a bytea value is base64 of the bytes that val (hex) spells. pgtype's
 * base64 reader turns it back into lower-case hex. */
static void check_bytea_roundtrip(const json_t *got, const char *val, size_t n)
{
    CHECK(json_is_string(got));
    struct buf hex = BUF_INIT;
    char err[128];
    CHECK(pgtype_param_text(PGT_BYTEA, json_string_value(got), json_string_length(got), &hex, err,
                            sizeof err) == 0);
    CHECK(hex.len == n + 1); /* and the NUL */
    for (size_t i = 2; i < n; i++) CHECK(hex_digit(hex.data[i]) == hex_digit(val[i]));
    buf_free(&hex);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    Oid type = oids[data[0] % (sizeof oids / sizeof oids[0])];
    /* The value in a heap block of its exact size, so that ASan sees any read past its end. */
    size_t n = size - 1;
    char *val = malloc(n ? n : 1);
    CHECK(val != NULL);
    memcpy(val, data + 1, n);

    struct buf b = BUF_INIT;
    buf_puts(&b, PREFIX);
    pgjson_value(&b, type, val, n);
    CHECK(b.len >= sizeof PREFIX - 1 && memcmp(b.data, PREFIX, sizeof PREFIX - 1) == 0);
    CHECK(b.data[b.len] == '\0');
    const char *out = b.data + sizeof PREFIX - 1;
    size_t olen = b.len - (sizeof PREFIX - 1);

    if (!is_json_type(type)) {
        json_error_t e;
        json_t *got = json_loadb(out, olen, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        if (got == NULL && out[0] != '"' && (strstr(e.text, "overflow") || strstr(e.text, "too big"))) {
            /* a valid JSON number beyond what jansson holds (1e999, 99999999999999999999):
             * no server sends one for these types, and JSON itself sets no range */
            goto done;
        }
        if (got == NULL) {
            fprintf(stderr, "fuzz_jsonw: type %u: not JSON: %s at %d: %.*s\n", type, e.text, e.position,
                    (int)(olen > 300 ? 300 : olen), out);
            abort();
        }
        /* A value that went out as a string is the text itself whenever it is valid UTF-8. */
        json_t *as_text = json_stringn(val, n); /* NULL for invalid UTF-8 */
        bool bytea_b64 = type == PGT_BYTEA && is_bytea_hex(val, n);
        if (json_is_string(got) && as_text && !bytea_b64 && type != PGT_TIMESTAMP &&
            type != PGT_TIMESTAMPTZ && type != PGT_BYTEA)
            CHECK(json_equal(got, as_text));
        if (bytea_b64) check_bytea_roundtrip(got, val, n);
        switch (type) {
        case PGT_INT2:
        case PGT_INT4:
        case PGT_INT8:
        case PGT_OID:
        case PGT_FLOAT4:
        case PGT_FLOAT8:
        case PGT_NUMERIC:
            /* a number goes out as written, or else as a string */
            CHECK(json_is_string(got) || (olen == n && memcmp(out, val, n) == 0));
            break;
        case PGT_BOOL:
            if (n == 1 && val[0] == 't')
                CHECK(json_is_true(got));
            else if (n == 1 && val[0] == 'f')
                CHECK(json_is_false(got));
            else
                CHECK(json_is_string(got));
            break;
        case PGT_TIMESTAMP:
        case PGT_TIMESTAMPTZ:
            CHECK(json_is_string(got));
            break;
        default:
            if (pgtype_array_elem(type) == 0)
                CHECK(json_is_string(got));
            else
                CHECK(json_is_string(got) || json_is_array(got));
            break;
        }
        json_decref(as_text);
        json_decref(got);
    }
done:
    buf_free(&b);
    free(val);
    return 0;
}
