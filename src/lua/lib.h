/*
 * lib.h - the plugins' `zdm` libraries (zdm.exec, zdm.http, zdm.pg, ...:
 * each in its own file of src/lua) and what the sandbox host (host.c)
 * offers them, so that none reaches into the host's internals.
 *
 * Rules every library keeps (docs/plugins.md, "The sandbox"):
 *   - a function that changes anything calls lhx_may_act() first, so
 *     validate() and plan() stay side-effect free;
 *   - a function that waits bounds the wait by lhx_deadline_ms() and calls
 *     lhx_check() after it (raises "timed out" / "interrupted" for the
 *     runner), since the count hook does not run inside C functions;
 *   - C resources (connections, sockets) live in full userdata with a C
 *     __gc / __close metamethod, so an unwinding error frees them; C memory
 *     held for the length of one call can go in a guard (lhx_guard);
 *   - what a plugin gets back is redacted (redact_str) like zdm.exec's.
 */
#ifndef ZDM_LUA_LIB_H
#define ZDM_LUA_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <lua.h>

#include "base/proc.h"
#include "base/util.h"

struct zdm_ctx;

/* raise "X is not allowed here" unless the call has a step context: in
 * run(), undo() or snapshot(), not in loading, validate() or plan() */
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
 * C resources held while Lua may raise.  lhx_guard() pushes one, marked
 * to-be-closed: what it holds (an fd >= 0, json, str, sb if has_sb, pr if
 * has_pr) is released when the running C function returns or unwinds.
 */
struct lhx_guard {
	int fd;
	json_t *json;
	char *str;
	struct sbuf sb;
	bool has_sb;
	struct proc_result pr;
	bool has_pr;
};
struct lhx_guard *lhx_guard(lua_State *L);

/* for zdm.lib: whether the plugin file's top level is running, the plugin
 * search path it may load libraries from (NULL-terminated, or NULL), and
 * whether the count hook has killed the call (every instruction raises) */
bool lhx_loading(lua_State *L);
const char *const *lhx_search_path(lua_State *L);
bool lhx_killed(lua_State *L);

/*
 * A library's resource userdata: registers (once) the metatable `name` with
 * gc as both __gc and __close and a hidden __metatable, so an unwinding
 * error frees the resource and a plugin cannot swap the metatable; then
 * sets field `field` of the table on top of the stack (the `zdm` table) to
 * the C function open.
 */
void lhx_resource_lib(lua_State *L, const char *name, lua_CFunction gc,
    const char *field, lua_CFunction open);

/*
 * The libraries.  Each opener is called with the `zdm` table on top of the
 * stack, sets its field(s) there and leaves the stack as it was; it
 * returns 0.  The list of them, in order, is in sandbox.c.
 */
int luaopen_zdm_core(lua_State *L);	/* core.c: log, sleep, note, progress, is_expr, signal */
int luaopen_zdm_lib(lua_State *L);	/* lib.c: zdm.lib, plugin libraries */
int luaopen_zdm_exec(lua_State *L);	/* exec.c: zdm.exec */
int luaopen_zdm_http(lua_State *L);	/* http.c: zdm.http */
int luaopen_zdm_file(lua_State *L);	/* file.c: zdm.file.* */
int luaopen_zdm_json(lua_State *L);	/* json.c: zdm.json.encode/decode */
int luaopen_zdm_socket(lua_State *L);	/* socket.c: zdm.socket */
int luaopen_zdm_secret(lua_State *L);	/* secret.c: zdm.is_secret, from_secrets */
int luaopen_zdm_pg(lua_State *L);	/* pg.c: zdm.pg (libpq) */
int luaopen_zdm_ssh(lua_State *L);	/* ssh.c: zdm.ssh */

#endif
