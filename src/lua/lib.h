/*
 * lib.h - the plugins' `zdm` libraries (zdm.socket, zdm.pg, ...: each in
 * its own file of src/lua) and what the sandbox host (host.c) offers them,
 * so that none reaches into the host's internals.
 *
 * Rules every library keeps (docs/plugins.md, "The sandbox"):
 *   - a function that changes anything calls lhx_may_act() first, so
 *     validate() and plan() stay side-effect free;
 *   - a function that waits bounds the wait by lhx_deadline_ms() and calls
 *     lhx_check() after it (raises "timed out" / "interrupted" for the
 *     runner), since the count hook does not run inside C functions;
 *   - C resources (connections, sockets) live in full userdata with a C
 *     __gc / __close metamethod, so an unwinding error frees them;
 *   - what a plugin gets back is redacted (redact_str) like zdm.exec's.
 */
#ifndef ZDM_LUA_LIB_H
#define ZDM_LUA_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

struct zdm_ctx;

/* raise "X is not allowed here" unless in run() or undo() */
void lhx_may_act(lua_State *L, const char *what);
/* raise if the call's deadline passed or a signal came */
void lhx_check(lua_State *L);
/* monotonic ms when the current call must end; 0 = none */
int64_t lhx_deadline_ms(lua_State *L);
/* bytes the plugin's Lua state may hold (ZDM_PLUGIN_MEMORY_MB) */
size_t lhx_mem_limit(lua_State *L);
/* the running step's context; NULL in load, validate() and plan() */
struct zdm_ctx *lhx_ctx(lua_State *L);
/* one line into the step's log (redacted), like zdm.log */
void lhx_log(lua_State *L, const char *msg);

/*
 * The libraries.  Each opener is called with the `zdm` table on top of the
 * stack, sets its field(s) there and leaves the stack as it was; it
 * returns 0.  The list of them, in order, is in host.c (lh_sandbox).
 */
int luaopen_zdm_socket(lua_State *L);	/* socket.c: zdm.socket */
int luaopen_zdm_secret(lua_State *L);	/* secret.c: zdm.is_secret, from_secrets */
int luaopen_zdm_pg(lua_State *L);	/* pg.c: zdm.pg (libpq) */
int luaopen_zdm_ssh(lua_State *L);	/* ssh.c: zdm.ssh */

#endif
