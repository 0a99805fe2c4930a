/* fuzz_luajson.c — libFuzzer target: Lua values built by a small program in the input (strings of
 * any bytes, numbers of any bit pattern, booleans, null, tables holding earlier values: shared and
 * cyclic references included) through luajson_write and luajson_from_lua under limits the input
 * also picks. Beyond crashes and leaks it checks luajson.h's promises: an accepted text is one
 * valid JSON value no longer than max_bytes, a refusal leaves the buffer as it was, the Lua stack
 * is left as found, and both conversions agree on depth and cycles. */
#include <jansson.h>
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "luajson.h"

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_luajson: check failed: %s (line %d)\n", #cond, __LINE__);                  \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static lua_State *L;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    L = luaL_newstate();
    CHECK(L != NULL);
    return 0;
}

struct input {
    const uint8_t *p, *end;
};

static unsigned byte(struct input *in)
{
    return in->p < in->end ? *in->p++ : 0;
}

#define MAX_VALUES 64

/* Runs the program: values go on the stack (at most MAX_VALUES). Ops (byte % 8):
 * 0 string of the next n bytes, 1 number from 8 bytes, 2 small integer, 3 boolean, 4 null,
 * 5 new table, 6 t[k] = v for two earlier values (k: 1..4 or a string key), 7 a[#a+1] = v. */
static int build(struct input *in, int base)
{
    int n = 0;
    while (in->p < in->end && n < MAX_VALUES) {
        unsigned op = byte(in) % 8;
        switch (op) {
        case 0: {
            size_t len = byte(in) % 48;
            if (len > (size_t)(in->end - in->p)) len = (size_t)(in->end - in->p);
            lua_pushlstring(L, (const char *)in->p, len);
            in->p += len;
            break;
        }
        case 1: {
            uint64_t bits = 0;
            for (int i = 0; i < 8; i++) bits = bits << 8 | byte(in);
            double d;
            memcpy(&d, &bits, sizeof d);
            lua_pushnumber(L, d);
            break;
        }
        case 2:
            lua_pushnumber(L, (double)(int8_t)byte(in));
            break;
        case 3:
            lua_pushboolean(L, byte(in) & 1);
            break;
        case 4:
            lua_pushlightuserdata(L, NULL);
            break;
        case 5:
            lua_newtable(L);
            break;
        case 6:
        case 7: {
            if (n == 0) continue;
            int t = base + 1 + (int)(byte(in) % (unsigned)n), v = base + 1 + (int)(byte(in) % (unsigned)n);
            if (!lua_istable(L, t)) continue;
            if (op == 6) {
                unsigned k = byte(in) % 8;
                if (k < 4)
                    lua_pushnumber(L, k + 1);
                else
                    lua_pushlstring(L, &"abcd"[k - 4], 1);
                lua_pushvalue(L, v);
                lua_rawset(L, t);
            } else {
                lua_pushvalue(L, v);
                lua_rawseti(L, t, (int)lua_objlen(L, t) + 1);
            }
            continue;
        }
        }
        n++;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    struct input in = {data + 3, data + size};
    struct luajson_limits lim = {
        .max_bytes = (size_t)data[0] * 16 + (data[1] & 15), .max_depth = data[1] >> 4, .cut = data[2] & 1};
    int base = lua_gettop(L);
    int n = build(&in, base);
    for (int i = 1; i <= n; i++) {
        int idx = base + i, top = lua_gettop(L);

        struct buf b = BUF_INIT;
        buf_puts(&b, "[0,");
        enum luajson_status st = luajson_write(L, idx, &b, &lim);
        CHECK(lua_gettop(L) == top);
        if (st == LUAJSON_OK) {
            CHECK(b.len - 3 <= lim.max_bytes);
            CHECK(b.data[b.len] == '\0');
            json_error_t e;
            json_t *v = json_loadb(b.data + 3, b.len - 3, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
            if (v == NULL) {
                fprintf(stderr, "fuzz_luajson: invalid JSON (%s): %.*s\n", e.text, (int)(b.len - 3),
                        b.data + 3);
                abort();
            }
            json_decref(v);
        } else {
            CHECK(b.len == 3 && memcmp(b.data, "[0,", 4) == 0);
            CHECK(!lim.cut || st == LUAJSON_TOO_LARGE);
        }

        /* the same value with a larger budget: past it, depth and cycles decide alone. A text of
         * T bytes holds at most T values and T bytes of strings and keys, which cost the tree at
         * most 66 T: the tree never runs out first. */
        struct luajson_limits text_lim = lim, tree_lim = lim;
        text_lim.max_bytes = 16384;
        tree_lim.max_bytes = 66 * text_lim.max_bytes;
        struct buf text = BUF_INIT;
        enum luajson_status st_text = luajson_write(L, idx, &text, &text_lim);
        enum luajson_status st_tree;
        json_t *tree = luajson_from_lua(L, idx, &tree_lim, &st_tree);
        CHECK(lua_gettop(L) == top);
        CHECK((tree != NULL) == (st_tree == LUAJSON_OK));
        if (st_text != LUAJSON_TOO_LARGE) CHECK(st_tree == st_text);
        if (st == LUAJSON_OK) CHECK(st_text == LUAJSON_OK && text.len == b.len - 3);
        json_decref(tree);
        buf_free(&text);
        buf_free(&b);
    }
    lua_settop(L, base);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
