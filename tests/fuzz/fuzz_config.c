/* fuzz_config.c — libFuzzer target: arbitrary config files through config_load. The input is
 * written to a temp file; leading lines "--SLUICE_X=value" (Lua comments) also set that
 * environment override for the run. Beyond crashes it checks config.h's promises: a loaded config
 * holds only valid values, a failure leaves *out zeroed with one line naming the problem.
 * The Lua state config_load creates is kept small here: this file's luaL_newstate and
 * luaL_openlibs take the place of LuaJIT's (the linker prefers the executable's definitions). */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "config.h"

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_config: check failed: %s (line %d)\n", #cond, __LINE__);                   \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* ---- a small Lua state ----
 * Memory is capped, the interpreter runs with the JIT off so that a count hook stops any loop,
 * and only the libraries a config file needs are there: no io, no os.exit/execute/remove, no
 * loading of files or bytecode, no finalizers (they run with hooks off), no string patterns
 * (their backtracking runs in C, out of the hook's reach). */

#define LUA_BUDGET     (16u << 20)
#define HOOK_EVERY     1000
#define HOOK_MAX_CALLS 2000 /* about 2 million VM instructions */

static size_t lua_bytes;
static unsigned hook_calls;

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        lua_bytes -= old;
        return NULL;
    }
    if (nsize > old && lua_bytes + (nsize - old) > LUA_BUDGET) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) lua_bytes = lua_bytes - old + nsize;
    return p;
}

static int on_panic(lua_State *L)
{
    fprintf(stderr, "fuzz_config: Lua panic: %s\n", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    abort();
}

static void on_count(lua_State *L, lua_Debug *ar)
{
    if (++hook_calls > HOOK_MAX_CALLS) luaL_error(L, "instruction limit reached");
}

lua_State *luaL_newstate(void)
{
    lua_bytes = 0;
    hook_calls = 0;
    lua_State *L = lua_newstate(limited_alloc, NULL);
    if (L) lua_atpanic(L, on_panic);
    return L;
}

static void drop(lua_State *L, const char *table, const char *const *names)
{
    if (table) lua_getglobal(L, table);
    for (; *names; names++) {
        lua_pushnil(L);
        if (table)
            lua_setfield(L, -2, *names);
        else
            lua_setglobal(L, *names);
    }
    if (table) lua_pop(L, 1);
}

void luaL_openlibs(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {"", luaopen_base},
        {LUA_TABLIBNAME, luaopen_table},
        {LUA_STRLIBNAME, luaopen_string},
        {LUA_MATHLIBNAME, luaopen_math},
        {LUA_OSLIBNAME, luaopen_os},
    };
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        lua_pushcfunction(L, libs[i].func);
        lua_pushstring(L, libs[i].name);
        lua_call(L, 1, 0);
    }
    static const char *const base[] = {"dofile", "loadfile", "load", "loadstring", "newproxy", "print", NULL};
    static const char *const os[] = {"execute", "exit", "remove", "rename", "tmpname", "setlocale", NULL};
    static const char *const str[] = {"find", "match", "gmatch", "gsub", NULL};
    drop(L, NULL, base);
    drop(L, LUA_OSLIBNAME, os);
    drop(L, LUA_STRLIBNAME, str);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_sethook(L, on_count, LUA_MASKCOUNT, HOOK_EVERY);
}

/* ---- the target ---- */

/* Every override variable, as config.c lists them. */
#define NVARS       env_var_count()

static size_t env_var_count(void)
{
    size_t n = 0;
    while (config_env_var(n) != NULL) n++;
    return n;
}

static char path[64];
static int fd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char tmp[] = "/tmp/sluice-fuzz-config-XXXXXX";
    fd = mkstemp(tmp);
    CHECK(fd >= 0);
    /* Unlinked at once, so that nothing is left behind even after a crash: the file stays
     * reachable through its descriptor. */
    unlink(tmp);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    for (size_t i = 0; i < NVARS; i++) unsetenv(config_env_var(i));
    return 0;
}

/* Sets the overrides named by the leading "--NAME=value" lines. */
static void set_env(const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    while (end - p > 2 && p[0] == '-' && p[1] == '-') {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *eq = memchr(p, '=', (size_t)(eol - p));
        for (size_t i = 0; eq && i < NVARS; i++) {
            size_t len = strlen(config_env_var(i));
            if ((size_t)(eq - p - 2) == len && memcmp(p + 2, config_env_var(i), len) == 0) {
                char *v = strndup(eq + 1, (size_t)(eol - eq - 1));
                CHECK(v != NULL);
                setenv(config_env_var(i), v, 1);
                free(v);
            }
        }
        if (!nl) break;
        p = nl + 1;
    }
}

static bool name_ok(const char *s)
{
    if (!s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static bool seconds_ok(double d)
{
    return isfinite(d) && d >= 0 && d <= 1e9;
}

static void check_config(const struct config *c)
{
    CHECK(c->path && strcmp(c->path, path) == 0);
    CHECK(c->listen && c->listen[0]);
    CHECK(c->workers >= 1 && c->workers <= 1024);
    CHECK(c->admin_token == NULL || c->admin_token[0]);
    CHECK(c->max_body_bytes >= 1);
    CHECK(c->max_response_bytes >= 1);
    CHECK(seconds_ok(c->shutdown_timeout) && seconds_ok(c->shutdown_grace) && seconds_ok(c->request_timeout));
    CHECK(c->migrations && c->migrations[0]);
    CHECK(c->log_level >= 0 && c->log_level <= 3);
    CHECK(c->jwt_secret == NULL || strlen(c->jwt_secret) >= CONFIG_MIN_SECRET_BYTES);
    CHECK(c->jwt_audience == NULL || c->jwt_audience[0]);
    CHECK(c->jwt_issuer == NULL || c->jwt_issuer[0]);
    CHECK(seconds_ok(c->jwt_max_age));
    CHECK(c->npools >= 1 && c->pools);
    for (size_t i = 0; i < c->npools; i++) {
        const struct pool_config *p = &c->pools[i];
        CHECK(name_ok(p->name) && p->url);
        CHECK(i == 0 || strcmp(p->name, "primary") != 0); /* primary sorts first */
        CHECK(config_pool(c, p->name) == p);              /* names are unique */
        CHECK(p->pool_size >= 1 && p->max_overflow >= 0 && p->prepared_statement_cache_size >= 1);
        CHECK(p->statement_timeout_ms >= 0 && p->pipeline_depth >= 1 && p->max_queue >= 0);
        CHECK(p->failover_wait_ms >= 0);
        CHECK(p->read_your_writes_wait_ms >= 0);
        CHECK(seconds_ok(p->pool_timeout) && seconds_ok(p->pool_recycle) && seconds_ok(p->idle_timeout) &&
              seconds_ok(p->connect_timeout));
    }
    CHECK(c->nscripts == 0 || c->scripts);
    for (size_t i = 0; i < c->nscripts; i++) CHECK(c->scripts[i] != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A file that starts with ESC is a LuaJIT bytecode dump, which LuaJIT does not verify. */
    if (size > 0 && data[0] == 0x1b) return 0;
    CHECK(ftruncate(fd, 0) == 0);
    CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);
    set_env((const char *)data, size);

    struct config c;
    char err[512];
    memset(&c, 0x5a, sizeof c);
    memset(err, 'x', sizeof err);
    if (config_load(path, &c, err, sizeof err) == 0) {
        CHECK(err[0] == '\0');
        check_config(&c);
    } else {
        static const struct config zero;
        CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
        if (strchr(err, '\n') != NULL) {
            fprintf(stderr, "fuzz_config: error message of more than one line: %s\n", err);
            abort();
        }
        CHECK(memcmp(&c, &zero, sizeof c) == 0);
    }
    config_free(&c);
    for (size_t i = 0; i < NVARS; i++) unsetenv(config_env_var(i));
    return 0;
}
